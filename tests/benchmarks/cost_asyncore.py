"""Instructions per request of the asyncore benchmark's responder on our facades, in process.

    python tests/benchmarks/cost_asyncore.py [--compare DIR] [--requests N]

``asyncore_http.py``'s ``async_chat`` responder (the workload of ``bench_eventloop.py``) runs
on ``eventloop.install_asyncore()`` in this process; one client socket sends a request, and
``asyncore.loop(count=1)`` passes run until the response is read, N times.  Under callgrind
(``apt-get install valgrind``) the whole process is counted twice, for N and for 3N requests,
and the difference over 2N is the cost of one request cycle: a pass of the reactor, the
responder's read, framing, push and send, and the client's own send and recv (the same code
for every checkout, so a difference between checkouts is ours).  It repeats to about 0.1 %,
which wall-clock runs on a shared machine cannot.  ``--compare DIR`` measures the code of the
checkout DIR (a ``git worktree`` of another commit) with this same script.
"""
import argparse
import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"


def serve(root, requests):
    """Run the responder of ``root``'s asyncore_http.py for ``requests`` request cycles."""
    sys.path.insert(0, root)
    here = os.path.join(root, "tests", "benchmarks", "asyncore_http.py")
    if not os.path.exists(here):
        here = os.path.join(ROOT, "tests", "benchmarks", "asyncore_http.py")
    spec = importlib.util.spec_from_file_location("asyncore_http", here)
    workload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workload)
    asyncore, asynchat = workload.load("eventloop")
    if not asyncore.__file__.startswith(os.path.abspath(root)):
        raise SystemExit("measured %s, not %s" % (asyncore.__file__, root))
    listener = workload.build(asyncore, asynchat)(0)
    client = socket.create_connection(listener.socket.getsockname()[:2])
    client.setblocking(False)
    for _ in range(10):                 # the accept, and the channel joining the map
        asyncore.loop(0.05, True, count=1)
    size = len(workload.RESPONSE)
    for _ in range(requests):
        client.send(REQUEST)
        got = 0
        for _ in range(1000):
            asyncore.loop(0.5, True, count=1)
            try:
                got += len(client.recv(65536))
            except BlockingIOError:
                pass
            if got >= size:
                break
        if got != size:
            raise SystemExit("response of %d bytes, expected %d" % (got, size))


def instructions(root, requests):
    """What callgrind counts for a whole run of ``serve(root, requests)``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(tmp, "cg"),
             sys.executable, os.path.abspath(__file__), "--serve", root, "--requests",
             str(requests)], capture_output=True, text=True, timeout=1200)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode or not found:
        raise SystemExit("callgrind run failed:\n" + out.stderr[-2000:])
    return int(found.group(1))


def per_request(root, requests):
    return (instructions(root, 3 * requests) - instructions(root, requests)) / (2 * requests)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="N (default 1000)")
    parser.add_argument("--compare", metavar="DIR", help="also measure the checkout DIR")
    parser.add_argument("--serve", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.requests)
        return
    here = per_request(ROOT, args.requests)
    print("asyncore responder: {:,.0f} instructions per request ({})".format(here, ROOT))
    if args.compare:
        there = per_request(os.path.abspath(args.compare), args.requests)
        print("asyncore responder: {:,.0f} instructions per request ({})".format(
            there, args.compare))
        print("difference: {:+.2f} % (here vs compare)".format((here / there - 1) * 100))


if __name__ == "__main__":
    main()
