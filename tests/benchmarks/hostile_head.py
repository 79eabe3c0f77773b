"""What a head that no field pattern matches costs ``servers.http``: its CPU time, and other clients' wait.

Usage::

    python tests/benchmarks/hostile_head.py                     # --rounds 5 --gets 10
    python tests/benchmarks/hostile_head.py --compare DIR       # DIR: a checkout of another commit

Starts ``python -m servers.http -q`` (this checkout first on the import path, then DIR's) on a free
port of 127.0.0.1, serving a temporary directory with a 1 KiB file, for each of two heads:

- ``attack``: the head of issue 12, seven ``X: `` + 8,180 spaces + ``\x01`` lines (57 KB; answered 400);
- ``normal``: a head of the same size and shape whose lines are valid (spaces and ``\x01`` replaced by
  letters; answered 200).

It prints the server's CPU time for one head (``/proc/PID/schedstat``; the median over ``--rounds``
heads, each sent alone on a connection that the server then closes), and the wait of a client that
asks for the 1 KiB file while two others send that head back to back (``--gets`` GETs, one every
0.1 s; median and worst).  The server has one thread: a client waits while it parses another's head.
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LINES, RUN = 7, 8180
SMALL = b"0123456789abcdef" * 64
BANNER = re.compile(rb"port (\d+)")


def head(kind):
    """The request head ``kind`` ("attack" or "normal"), ending with ``Connection: close``."""
    filler, end = (b" ", b"\x01") if kind == "attack" else (b"a", b"b")
    fields = (b"X: " + filler * RUN + end + b"\r\n") * LINES
    return b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + fields + b"\r\n"


def server_cpu(pid):
    """CPU seconds of process ``pid`` so far (its main thread's run time, to the nanosecond)."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0]) / 1e9


def read_to_eof(sock, limit=30.0):
    """Everything ``sock`` receives until the peer closes or resets it (at most ``limit`` seconds)."""
    sock.settimeout(limit)
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return bytes(data)
        data += chunk


def cost_of_head(port, pid, raw):
    """Server CPU seconds spent on ``raw`` sent alone, and the status line it got."""
    before = server_cpu(pid)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        answer = read_to_eof(sock)
    return server_cpu(pid) - before, answer.split(b"\r\n", 1)[0]


def get_small(port):
    """Seconds one ``GET`` of the small file takes, on a connection of its own."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = read_to_eof(sock)
    if not answer.endswith(SMALL):
        raise SystemExit("unexpected answer to the GET: %r" % answer[:200])
    return time.perf_counter() - start


def under_attack(port, raw, action, attackers=2):
    """Run ``action()`` while ``attackers`` clients send ``raw`` back to back; its result and the status
    lines the attackers got."""
    stop = threading.Event()
    statuses = []

    def attack():
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(raw)
                statuses.append(read_to_eof(sock).split(b"\r\n", 1)[0])

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(attackers)]
    for thread in threads:
        thread.start()
    try:
        return action(), statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def paced_gets(port, gets, every=0.1):
    """The waits of ``gets`` GETs of the small file, one every ``every`` seconds."""
    waits = []
    pace = threading.Event()        # never set: its wait() is the pause between two GETs
    for _ in range(gets):
        waits.append(get_small(port))
        pace.wait(every)
    return waits


class Server:
    """``python -m servers.http -q`` run from ``code_dir`` on a free port, serving ``root``."""

    def __init__(self, code_dir, root):
        env = dict(os.environ, PYTHONPATH=code_dir)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servers.http", "-q", "-b", "127.0.0.1", "-d", root, "0"],
            cwd=code_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        m = BANNER.search(self.proc.stderr.readline())
        if m is None:
            self.stop()
            raise SystemExit("servers.http from %s did not start" % code_dir)
        self.port = int(m.group(1))
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stderr.close()


def measure(code_dir, root, rounds, gets):
    """``{kind: (median CPU seconds per head, median and worst GET wait seconds, status line)}``."""
    server = Server(code_dir, root)
    try:
        get_small(server.port)                      # the first request warms the server up
        out = {}
        for kind in ("normal", "attack"):
            raw = head(kind)
            costs = []
            for _ in range(rounds):
                cpu, status = cost_of_head(server.port, server.pid, raw)
                costs.append(cpu)
            waits, _ = under_attack(server.port, raw, lambda: paced_gets(server.port, gets))
            out[kind] = (statistics.median(costs), statistics.median(waits), max(waits),
                         status.decode("latin-1"))
        return out
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="heads sent alone, per kind (default 5)")
    parser.add_argument("--gets", type=int, default=10, help="GETs during each attack (default 10)")
    parser.add_argument("--compare", metavar="DIR", help="also measure the checkout in DIR")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirs = [here] + ([os.path.abspath(args.compare)] if args.compare else [])
    print("%-7s %-6s %-11s %-23s %s" % ("head", "bytes", "server CPU", "other client's wait",
                                        "answer (checkout)"))
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "small.bin"), "wb") as f:
            f.write(SMALL)
        for code_dir in dirs:
            for kind, (cpu, wait, worst, status) in measure(code_dir, root, args.rounds, args.gets).items():
                print("%-7s %-6d %8.1f ms  %8.1f ms (worst %s)  %s (%s)" % (
                    kind, len(head(kind)), cpu * 1e3, wait * 1e3, _ms(worst), status, code_dir), flush=True)
    return 0


def _ms(seconds):
    return "%.0f ms" % (seconds * 1e3) if seconds >= 0.1 else "%.1f ms" % (seconds * 1e3)


if __name__ == "__main__":
    sys.exit(main())
