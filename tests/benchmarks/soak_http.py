"""Soak ``python -m servers.http``: a million keep-alive GETs, then check memory and descriptors.

    python tests/benchmarks/soak_http.py [--requests 1000000] [--connections 10] [--batch 20]
                                         [--json FILE]

The server runs as a subprocess serving a temporary directory of ten 1 KiB files, each
starting with its own name.  Each of ``--connections`` clients pipelines a batch of 1 to
``--batch`` GETs (the files and the batch sizes drawn from a seeded generator) on its
keep-alive connection and reads exactly that many responses before sending the next batch;
every response must be ``200`` with ``Content-Length: 1024`` and the body of the file asked
for, in order.  All clients run at once on one ``selectors`` loop.

Reported: elapsed time and requests per second; the server's CPU time; its resident memory
(``VmRSS``) after the first 100,000 requests (a tenth of the run if it is shorter) and at the
end; its open descriptors (``/proc/PID/fd``) before the clients connect, while they are
connected, and after they have closed.  Passes when every response was right, the end RSS is
within 10 % of the checkpoint RSS, the descriptor count returns to its starting value and the
server logged no error.  Linux only (it reads /proc).  ``tests/test_robust_http_server.py``
runs the same soak with ``SOAK_REQUESTS`` requests (``-m stress``).
"""
import argparse
import json
import os
import random
import re
import selectors
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak_echo  # noqa: E402  (beside this script: the server process and waits they share)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = 10
FILE_SIZE = 1024


def file_body(i):
    return (b"soak file %d\n" % i).ljust(FILE_SIZE, b"~")


def ServerProcess(root):
    """``python -m servers.http 0 -b 127.0.0.1 -d ROOT -q`` as a subprocess (see soak_echo)."""
    return soak_echo.ServerProcess("servers.http", ("-d", root, "-q"),
                                   banner=r"Serving HTTP on 127\.0\.0\.1 port (\d+)")


class Client:
    """One keep-alive connection: pipelines a batch of GETs, checks exactly that many
    responses, then sends the next batch."""

    def __init__(self, number, port, batch, budget):
        self.number = number
        self.batch = batch
        self.budget = budget            # requests this connection sends in all
        self.rng = random.Random(number)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.sent = 0
        self.out = memoryview(b"")
        self.wanted = []                # file numbers of the batch in flight, in order
        self.next_answer = 0            # index into wanted
        self.buf = bytearray()
        self.done = 0                   # responses checked so far

    @property
    def finished(self):
        return self.sent >= self.budget

    def next_batch(self):
        size = min(self.rng.randint(1, self.batch), self.budget - self.sent)
        self.wanted = [self.rng.randrange(FILES) for _ in range(size)]
        self.next_answer = 0
        self.sent += size
        self.out = memoryview(b"".join(b"GET /%d.txt HTTP/1.1\r\nHost: soak\r\n\r\n" % i
                                       for i in self.wanted))

    def write(self):
        sent = self.sock.send(self.out)
        self.out = self.out[sent:]

    def read(self):
        """Returns the number of responses completed by this read (0, or the whole batch)."""
        data = self.sock.recv(262144)
        if not data:
            raise RuntimeError("connection %d: the server closed it after %d responses"
                               % (self.number, self.done))
        buf = self.buf
        buf += data
        pos = 0
        wanted = self.wanted
        while self.next_answer < len(wanted):
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0 or len(buf) < end + 4 + FILE_SIZE:
                break
            head = bytes(buf[pos:end + 2])
            if not head.startswith(b"HTTP/1.1 200 OK\r\n") or b"\r\nContent-Length: 1024\r\n" not in head:
                raise RuntimeError("connection %d, response %d: unexpected head %r"
                                   % (self.number, self.done + self.next_answer, head[:300]))
            body = buf[end + 4:end + 4 + FILE_SIZE]
            if body != BODIES[wanted[self.next_answer]]:
                raise RuntimeError("connection %d, response %d: body of the wrong file or damaged "
                                   "(%r, wanted file %d)" % (self.number, self.done + self.next_answer,
                                                             bytes(body[:16]), wanted[self.next_answer]))
            pos = end + 4 + FILE_SIZE
            self.next_answer += 1
        del buf[:pos]
        if self.next_answer < len(wanted):
            return 0
        if buf:
            raise RuntimeError("connection %d: %d bytes more than was asked for" % (self.number, len(buf)))
        self.done += len(wanted)
        return len(wanted)


BODIES = [file_body(i) for i in range(FILES)]


def _fetch_once(port):
    """GET one file with Connection: close and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /0.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass


def soak(requests=1_000_000, connections=10, batch=20, checkpoint=None, progress=None,
         max_seconds=3600):
    """Run the soak; return the figures as a dict (``ok`` says whether every check held)."""
    if checkpoint is None:
        checkpoint = max(1, min(100_000, requests // 10))
    root = tempfile.mkdtemp(prefix="soak-http-")
    for i in range(FILES):
        with open(os.path.join(root, "%d.txt" % i), "wb") as f:
            f.write(file_body(i))
    server = ServerProcess(root)
    clients = []
    figures = {"requests_wanted": requests, "connections": connections, "max_batch": batch,
               "file_bytes": FILE_SIZE, "checkpoint_requests": checkpoint}
    try:
        # One request first: the server's reactor then runs, its poller and waker opened,
        # so that they are not counted among the clients' descriptors below.
        _fetch_once(server.port)
        figures["fds_before"] = server.fds()
        figures["rss_kib_start"] = server.rss_kib()
        cpu0 = server.cpu_seconds()
        sel = selectors.DefaultSelector()
        active = 0
        for i in range(connections):
            c = Client(i, server.port, batch, requests // connections + (i < requests % connections))
            clients.append(c)
            if c.finished:
                continue
            c.next_batch()
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            active += 1
        soak_echo._wait_for(lambda: server.fds() >= figures["fds_before"] + connections, 10,
                  "the server to accept every client")
        figures["fds_connected"] = server.fds()
        total, elapsed = soak_echo.drive_clients(sel, active, server, figures, checkpoint,
                                                 progress, max_seconds, "requests")
        figures["requests"] = total
        figures["body_bytes"] = total * FILE_SIZE
        figures["seconds"] = round(elapsed, 2)
        figures["requests_per_second"] = round(total / elapsed) if elapsed else None
        figures["server_cpu_seconds"] = round(server.cpu_seconds() - cpu0, 2)
        figures["rss_kib_end"] = server.rss_kib()
        for c in clients:
            c.sock.close()
        clients.clear()
        fds_before = figures["fds_before"]
        try:
            soak_echo._wait_for(lambda: server.fds() <= fds_before, 10, "the server to close every connection")
        except RuntimeError:
            pass
        figures["fds_after"] = server.fds()
        rss_ok = figures["rss_kib_end"] <= figures["rss_kib_checkpoint"] * 1.10
        checkpoint_rss = figures["rss_kib_checkpoint"]
        figures["rss_growth_percent"] = round(
            100.0 * (figures["rss_kib_end"] - checkpoint_rss) / checkpoint_rss, 2)
        figures["ok"] = bool(total >= requests and rss_ok and figures["fds_after"] == fds_before)
    finally:
        for c in clients:
            c.sock.close()
        err = server.stop()
        shutil.rmtree(root, ignore_errors=True)
    figures["server_errors"] = len(re.findall(r"Traceback|ERROR", err))
    figures["ok"] = figures.get("ok", False) and figures["server_errors"] == 0
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20, help="most requests pipelined at once (default 20)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)

    def progress(total, rss, seconds):
        print("%9d requests  %6.1fs  server RSS %d KiB" % (total, seconds, rss), flush=True)

    figures = soak(args.requests, args.connections, args.batch, progress=progress)
    print(json.dumps(figures, indent=1, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1, sort_keys=True)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
