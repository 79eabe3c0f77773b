"""Soak ``python -m servers.echo``: a million echo round trips, then check memory and descriptors.

    python tests/benchmarks/soak_echo.py [--roundtrips 1000000] [--connections 10] [--batch 20]
                                         [--json FILE]

The server runs as a subprocess.  Each of ``--connections`` clients sends a batch of 1 to
``--batch`` 16-byte messages (the size drawn from a seeded generator; ``CCCCCCCC:SSSSSS\\n``:
connection and sequence number, so a lost, repeated or reordered byte is caught) and waits for
exactly those bytes to come back before sending the next batch; all clients run at once on one
``selectors`` loop.  A round trip is one message echoed.

Reported: elapsed time and round trips per second; the server's resident memory (``VmRSS``)
after the first 100,000 round trips (a tenth of the run if it is shorter) and at the end; its
open descriptors (``/proc/PID/fd``) before the clients connect, while they are connected, and
after they have closed.  Passes when every byte came back in order, the end RSS is within 10 %
of the checkpoint RSS, and the descriptor count returns to its starting value.  Linux only
(it reads /proc).  ``tests/test_robust_soak.py`` runs the same soak with small bounds.
"""
import argparse
import json
import os
import random
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESSAGE = 16


def _status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %gs waiting for %s" % (timeout, what))
        threading.Event().wait(0.01)


class ServerProcess:
    """``python -m MODULE 0 -b 127.0.0.1 ARGS`` (a project server) as a subprocess; stderr goes
    to a file, where the port is read from its ``banner`` (a regex, the port its group 1)."""

    def __init__(self, module="servers.echo", args=(), banner=r"listening on 127\.0\.0\.1:(\d+)"):
        self._log = tempfile.NamedTemporaryFile("w+", prefix="soak-", suffix=".log")
        self.proc = subprocess.Popen([sys.executable, "-m", module, "0", "-b", "127.0.0.1", *args],
                                     cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._log)
        self.pid = self.proc.pid
        found = []

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (module, self.stderr()))
            m = re.search(banner, self.stderr())
            if m:
                found.append(int(m.group(1)))
            return bool(found)

        try:
            _wait_for(listening, 10, "%s to listen" % module)
        except BaseException:
            self.stop()
            raise
        self.port = found[0]

    def stderr(self):
        with open(self._log.name, errors="replace") as f:
            return f.read()

    def rss_kib(self):
        return _status(self.pid, "VmRSS")

    def fds(self):
        return _fds(self.pid)

    def cpu_seconds(self):
        return _cpu(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        text = self.stderr()
        self._log.close()
        return text


class Client:
    """One connection: sends a batch, expects exactly that batch back, then the next."""

    def __init__(self, number, port, batch, budget):
        self.number = number
        self.batch = batch
        self.budget = budget        # messages this connection sends in all
        self.rng = random.Random(number)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setblocking(False)
        self.seq = 0
        self.out = memoryview(b"")
        self.expected = b""
        self.got = bytearray()
        self.done = 0               # messages echoed so far

    @property
    def finished(self):
        return self.seq >= self.budget

    def next_batch(self):
        n, s = self.number, self.seq
        size = min(self.rng.randint(1, self.batch), self.budget - s)
        payload = b"".join(b"%08d:%06d\n" % (n, (s + i) % 1000000) for i in range(size))
        self.seq += size
        self.expected = payload
        self.out = memoryview(payload)
        self.got.clear()

    def write(self):
        sent = self.sock.send(self.out)
        self.out = self.out[sent:]

    def read(self):
        """Returns the number of messages completed by this read (0, or the whole batch)."""
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("connection %d: the server closed it after %d round trips"
                               % (self.number, self.done))
        self.got += data
        if len(self.got) < len(self.expected):
            return 0
        if self.got != self.expected:
            where = next(i for i, (a, b) in enumerate(zip(self.got, self.expected)) if a != b) \
                if len(self.got) == len(self.expected) else min(len(self.got), len(self.expected))
            raise RuntimeError("connection %d: echo differs at byte %d of a batch (got %r, sent %r)"
                               % (self.number, where, bytes(self.got[where:where + 16]),
                                  self.expected[where:where + 16]))
        n = len(self.expected) // MESSAGE
        self.done += n
        return n


def resting_fds(server):
    """The server's descriptors at rest once its reactor runs (its poller and waker are opened
    by its first pass, after the "listening" line): one connection is served and closed first,
    counted while open, then waited for."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"x\n")
        assert s.recv(65536), "the server said nothing"     # echo's x, or chat's welcome
        with_one = server.fds()
    _wait_for(lambda: server.fds() < with_one, 10, "the server to close the first connection")
    return with_one - 1


def drive_clients(sel, active, server, figures, checkpoint, progress, max_seconds, units):
    """Drive the ``active`` clients registered in ``sel`` (each with ``out``, ``write()``,
    ``read()`` returning the exchanges it completed, ``finished`` and ``next_batch()``) until
    all have finished; note the server's RSS at ``checkpoint`` exchanges in ``figures``.
    Returns ``(exchanges, seconds)``; fails after ``max_seconds``."""
    total = 0
    start = time.monotonic()
    deadline = start + max_seconds
    while active:
        if time.monotonic() > deadline:
            raise RuntimeError("soak did not finish in %ds (%d %s)" % (max_seconds, total, units))
        for key, events in sel.select(10):
            c = key.data
            if events & selectors.EVENT_WRITE and c.out:
                c.write()
                if not c.out:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            if events & selectors.EVENT_READ:
                done = c.read()
                if not done:
                    continue
                before = total
                total += done
                if before < checkpoint <= total:
                    figures["rss_kib_checkpoint"] = server.rss_kib()
                    figures["seconds_to_checkpoint"] = round(time.monotonic() - start, 2)
                if progress and before // 100_000 != total // 100_000:
                    progress(total, server.rss_kib(), time.monotonic() - start)
                if c.finished:
                    sel.unregister(c.sock)
                    active -= 1
                else:
                    c.next_batch()
                    c.write()
                    if c.out:
                        sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    sel.close()
    return total, time.monotonic() - start


def soak(roundtrips=1_000_000, connections=10, batch=20, checkpoint=None, progress=None,
         max_seconds=3600):
    """Run the soak; return the figures as a dict (``ok`` says whether every check held)."""
    if checkpoint is None:
        checkpoint = max(1, min(100_000, roundtrips // 10))
    server = ServerProcess("servers.echo")
    clients = []
    figures = {"roundtrips_wanted": roundtrips, "connections": connections, "max_batch": batch,
               "message_bytes": MESSAGE, "checkpoint_roundtrips": checkpoint}
    try:
        figures["fds_before"] = resting_fds(server)
        figures["rss_kib_start"] = server.rss_kib()
        cpu0 = server.cpu_seconds()
        sel = selectors.DefaultSelector()
        for i in range(connections):
            c = Client(i, server.port, batch, roundtrips // connections + (i < roundtrips % connections))
            clients.append(c)
            c.next_batch()
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        _wait_for(lambda: server.fds() >= figures["fds_before"] + connections, 10,
                  "the server to accept every client")
        figures["fds_connected"] = server.fds()
        total, elapsed = drive_clients(sel, connections, server, figures, checkpoint, progress,
                                       max_seconds, "round trips")
        figures["roundtrips"] = total
        figures["bytes_echoed"] = total * MESSAGE
        figures["seconds"] = round(elapsed, 2)
        figures["roundtrips_per_second"] = round(total / elapsed)
        figures["server_cpu_seconds"] = round(server.cpu_seconds() - cpu0, 2)
        figures["rss_kib_end"] = server.rss_kib()
        for c in clients:
            c.sock.close()
        clients.clear()
        fds_before = figures["fds_before"]
        try:
            _wait_for(lambda: server.fds() <= fds_before, 10, "the server to close every connection")
        except RuntimeError:
            pass
        figures["fds_after"] = server.fds()
        rss_ok = figures["rss_kib_end"] <= figures["rss_kib_checkpoint"] * 1.10
        figures["rss_growth_percent"] = round(
            100.0 * (figures["rss_kib_end"] - figures["rss_kib_checkpoint"]) / figures["rss_kib_checkpoint"], 2)
        figures["ok"] = bool(total >= roundtrips and rss_ok and figures["fds_after"] == fds_before)
    finally:
        for c in clients:
            c.sock.close()
        err = server.stop()
    figures["server_errors"] = len(re.findall(r"Traceback|ERROR", err))
    figures["ok"] = figures.get("ok", False) and figures["server_errors"] == 0
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roundtrips", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20, help="most messages per batch (default 20)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)

    def progress(total, rss, seconds):
        print("%9d round trips  %6.1fs  server RSS %d KiB" % (total, seconds, rss), flush=True)

    figures = soak(args.roundtrips, args.connections, args.batch, progress=progress)
    print(json.dumps(figures, indent=1, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1, sort_keys=True)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
