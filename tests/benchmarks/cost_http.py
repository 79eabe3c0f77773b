"""What one connection (or one keep-alive request) costs ``servers.http``, or one request costs
the client ``clients.http.AsyncHTTP``, in process.

Usage::

    python tests/benchmarks/cost_http.py                   # --workload close --batches 300
    python tests/benchmarks/cost_http.py --valgrind        # instructions, the same on every run
    python tests/benchmarks/cost_http.py --valgrind --compare ../worktree-of-another-commit
    python tests/benchmarks/cost_http.py --valgrind --workload client-keepalive

The server runs in this process on a private reactor, serving a 1 KiB file.  ``close``: 50
clients connect and send ``GET`` with ``Connection: close``; one ``handle_accept`` call accepts,
answers and closes them all (the path a connection whose request came with it takes).
``keepalive``: 50 open connections each send one request; reactor passes run until every
response is read.  Only the server's calls are timed.

The client workloads time the other side: 50 ``AsyncHTTP`` requests at a time for a 1 KiB
body, made and driven through their reactor's passes, while a plain-socket responder in the
same thread (not timed) answers them.  ``client-keepalive``: the requests reuse the pooled
connections of the batch before (the first batch connects); ``client-close``: ``pool=False``,
so each request connects, sends, reads and closes.

Wall-clock figures (minimum and median µs over batches) move with the load on the machine.
``--valgrind`` counts the CPU instructions the server's calls execute instead (``callgrind``,
collecting only inside them): user space only, no system call time, but repeatable to a
fraction of a percent, so an A/B of two commits (``--compare DIR`` runs the same measurement
with ``DIR`` first on the import path) shows changes of 1 % on a machine whose wall-clock
figures swing by 30 %.  Needs ``valgrind`` (``apt-get install valgrind``).
"""
import argparse
import functools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLIENTS = 50


def _serve(root):
    from eventloop import Reactor
    from servers.http import HTTPServer, StaticFiles

    reactor = Reactor()
    server = HTTPServer(("127.0.0.1", 0), StaticFiles(root), reactor=reactor)
    return reactor, server


def _read_all(sock):
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk


def measure_close(root, batches, run):
    """Seconds of server time per connection, one sample per batch."""
    reactor, server = _serve(root)
    port = server.server_address[1]
    request = b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    samples = []
    for _ in range(batches):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CLIENTS)]
        for client in clients:
            client.sendall(request)
        t0 = time.perf_counter()
        run(server.handle_accept)
        samples.append((time.perf_counter() - t0) / CLIENTS)
        for client in clients:
            response = _read_all(client)
            if not (response.startswith(b"HTTP/1.1 200 ") and response.endswith(SMALL)):
                raise SystemExit("unexpected response: %r" % response[:200])
            client.close()
        reactor.run_once(0)
    server.shutdown()
    reactor.close()
    return samples


def measure_keepalive(root, batches, run):
    """Seconds of server time per request, one sample per batch (one request per client)."""
    reactor, server = _serve(root)
    port = server.server_address[1]
    request = b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CLIENTS)]
    for client in clients:
        client.setblocking(False)
    for _ in range(5):
        reactor.run_once(0)
    samples = []
    for _ in range(batches):
        for client in clients:
            client.sendall(request)
        pending = {client: bytearray() for client in clients}
        spent = 0.0
        for _ in range(10000):
            t0 = time.perf_counter()
            run(functools.partial(reactor.run_once, 0))
            spent += time.perf_counter() - t0
            for client in list(pending):
                try:
                    pending[client] += client.recv(65536)
                except BlockingIOError:
                    continue
                if pending[client].endswith(SMALL):
                    del pending[client]
            if not pending:
                break
        else:
            raise SystemExit("responses did not arrive")
        samples.append(spent / CLIENTS)
    for client in clients:
        client.close()
    server.shutdown()
    reactor.close()
    return samples


def measure_client(batches, run, pool):
    """Seconds of client time per request (``AsyncHTTP`` and its reactor's passes), one sample
    per batch of 50 concurrent requests; the responder's work is not timed."""
    from eventloop import Reactor
    from clients.http import AsyncHTTP, close_idle_connections

    reactor = Reactor()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(CLIENTS * 2)
    listener.setblocking(False)
    url = "http://127.0.0.1:%d/small.bin" % listener.getsockname()[1]
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(SMALL), SMALL)
    peers = {}          # the responder's sockets -> request bytes not yet answered
    sizes = []

    class Consumer:
        __slots__ = ("size",)

        def __init__(self):
            self.size = 0

        def feed(self, data):
            self.size += len(data)

        def close(self):
            sizes.append(self.size)

    def respond():
        while True:
            try:
                peer = listener.accept()[0]
            except BlockingIOError:
                break
            peer.setblocking(False)
            peers[peer] = bytearray()
        for peer, pending in list(peers.items()):
            try:
                data = peer.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                peer.close()
                del peers[peer]
                continue
            pending += data
            while b"\r\n\r\n" in pending:
                del pending[:pending.index(b"\r\n\r\n") + 4]
                peer.sendall(response)

    def start():
        for _ in range(CLIENTS):
            AsyncHTTP(url, Consumer(), reactor=reactor, pool=pool)

    samples = []
    for _ in range(batches):
        del sizes[:]
        t0 = time.perf_counter()
        run(start)
        spent = time.perf_counter() - t0
        for _ in range(10000):
            t0 = time.perf_counter()
            run(functools.partial(reactor.run_once, 0))
            spent += time.perf_counter() - t0
            respond()
            if len(sizes) == CLIENTS:
                break
        else:
            raise SystemExit("responses did not arrive")
        if sizes != [len(SMALL)] * CLIENTS:
            raise SystemExit("unexpected body sizes: %r" % sizes)
        samples.append(spent / CLIENTS)
    close_idle_connections(reactor)
    for peer in peers:
        peer.close()
    listener.close()
    reactor.close()
    return samples


SMALL = bytes(range(256)) * 4       # the served 1 KiB file


def run_here(args):
    """Measure in this process; print the samples' figures (µs)."""
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "small.bin"), "wb") as f:
            f.write(SMALL)
        if args.collect:
            # The measured calls run inside functools.reduce, a C function callgrind can
            # toggle collection on: the other side's work is not counted.
            def run(call):
                functools.reduce(lambda _a, _b: call(), (0, 0))
        else:
            def run(call):
                call()
        if args.workload.startswith("client-"):
            samples = measure_client(args.batches, run, args.workload == "client-keepalive")
        else:
            measure = measure_close if args.workload == "close" else measure_keepalive
            samples = measure(root, args.batches, run)
        samples.sort()
    print("%s: %.2f us min, %.2f us median per %s over %d batches of %d"
          % (args.workload, samples[0] * 1e6, statistics.median(samples) * 1e6,
             _unit(args.workload), args.batches, CLIENTS))


def _unit(workload):
    return "connection" if workload == "close" else "request"


def _whose(workload):
    return "client's" if workload.startswith("client-") else "server's"


def instructions(code_dir, workload, batches):
    """Instructions callgrind counted inside the measured calls for ``batches`` batches."""
    env = dict(os.environ, PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [code_dir, os.environ.get("PYTHONPATH")])))
    cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce",
           "--callgrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__),
           "--workload", workload, "--batches", str(batches), "--collect"]
    proc = subprocess.run(cmd, env=env, cwd=code_dir, capture_output=True, text=True,
                          timeout=1200)
    if proc.returncode:
        raise SystemExit("valgrind run failed:\n" + proc.stderr[-2000:])
    m = re.search(r"(?:Collected|I\s+refs)\s*:\s*([\d,]+)", proc.stderr)
    if m is None:
        raise SystemExit("no instruction count in valgrind's output:\n" + proc.stderr[-2000:])
    return int(m.group(1).replace(",", ""))


def per_unit(code_dir, args):
    """Instructions per connection (request): the difference of two runs, so that warm-up
    and one-time costs cancel."""
    low, high = max(args.batches // 3, 1), args.batches
    n_low = instructions(code_dir, args.workload, low)
    n_high = instructions(code_dir, args.workload, high)
    return (n_high - n_low) / ((high - low) * CLIENTS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="close",
                        choices=("close", "keepalive", "client-keepalive", "client-close"))
    parser.add_argument("--batches", type=int, default=None,
                        help="batches of %d (default 300, or 60 with --valgrind)" % CLIENTS)
    parser.add_argument("--valgrind", action="store_true",
                        help="count instructions under valgrind instead of timing")
    parser.add_argument("--compare", metavar="DIR",
                        help="with --valgrind: also measure the code in DIR (another checkout)")
    parser.add_argument("--collect", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batches is None:
        args.batches = 60 if args.valgrind else 300
    if args.batches < 2:
        parser.error("--batches must be at least 2")
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not args.valgrind:
        if args.compare:
            parser.error("--compare needs --valgrind")
        if not args.collect:            # under valgrind, PYTHONPATH names the code to measure
            sys.path.insert(0, here)
        run_here(args)
        return
    unit, whose = _unit(args.workload), _whose(args.workload)
    ours = per_unit(here, args)
    print("%s: %s instructions per %s in the %s calls (%s)"
          % (args.workload, format(round(ours), ","), unit, whose, here))
    if args.compare:
        other = per_unit(os.path.abspath(args.compare), args)
        print("%s: %s instructions per %s in the %s calls (%s)"
              % (args.workload, format(round(other), ","), unit, whose,
                 os.path.abspath(args.compare)))
        print("difference: %+.2f %% (%s %+d)" % (100 * (ours - other) / other, "here vs compare",
                                               round(ours - other)))


if __name__ == "__main__":
    main()
