"""What directory listings, long pipelines and spellings of one path cost ``python -m servers.http``
(Linux: server CPU and RSS are read from /proc).

Usage::

    python tests/benchmarks/hostile_listing.py                 # this checkout
    python tests/benchmarks/hostile_listing.py --code DIR      # the server from another checkout

It makes a served tree in a temporary directory (directories of 1,000, 10,000 and 100,000 empty
files, a 16 KiB file), starts the server on it, and prints:

* ``alias``: one 16 KiB file fetched under 4,096 spellings (``"/" * k + name``): RSS growth;
* ``pipeline``: one connection sends 2,000 pipelined ``HEAD /k1/`` (a 1,000-entry listing) in one
  send; the server CPU they cost, and how long another client's GET waited meanwhile;
* ``ten``: server CPU per GET and per HEAD of the 10,000-entry listing, on one connection;
* ``noread``: 20 clients (4 KiB receive window) each GET the 100,000-entry listing and never read:
  its size, the server's RSS growth and CPU, and a small GET's latency meanwhile.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def cpu_ms(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def make_tree(root):
    for name, count in (("k1", 1000), ("ten", 10_000), ("big", 100_000)):
        os.mkdir(os.path.join(root, name))
        for i in range(count):
            path = os.path.join(root, name, "%s_%036d" % (name, i))
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY))
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"hello\n")
    with open(os.path.join(root, "f16k.txt"), "wb") as f:
        f.write(b"y" * 16384)


def start(code, root):
    env = dict(os.environ, PYTHONPATH=code)
    proc = subprocess.Popen([sys.executable, "-u", "-m", "servers.http", "0", "-b", "127.0.0.1",
                             "-d", root], cwd=code, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    match = None
    while match is None:
        line = proc.stderr.readline()
        assert line, "the server exited"
        match = re.search(rb" port (\d+) ", line)
    port = int(match.group(1))
    threading.Thread(target=proc.stderr.read, daemon=True).start()     # drain the access log
    return proc, port


def fetch(port, request, timeout=60):
    """Send ``request`` on a new connection and read until the server closes: seconds taken."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        while s.recv(1 << 20):
            pass
    return time.monotonic() - t0


def read_response(sock, head_only):
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(1 << 16)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while not head_only and len(rest) < length:
        rest += sock.recv(1 << 20)
    return length


SMALL = b"GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def pipeline(pid, port):
    s = socket.create_connection(("127.0.0.1", port))
    c0 = cpu_ms(pid)
    s.sendall(b"HEAD /k1/ HTTP/1.1\r\nHost: a\r\n\r\n" * 2000)
    time.sleep(0.1)
    waited = fetch(port, SMALL)
    got = 0
    s.settimeout(60)
    while got < 2000:
        got += s.recv(1 << 20).count(b"HTTP/1.1 200")
    s.close()
    print("pipeline: 2,000 pipelined HEAD /k1/: %d ms server CPU; another client's GET waited "
          "%.3f s" % (cpu_ms(pid) - c0, waited))


def ten(pid, port):
    for method in ("GET", "HEAD"):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            c0 = cpu_ms(pid)
            for _ in range(10):
                s.sendall(b"%s /ten/ HTTP/1.1\r\nHost: a\r\n\r\n" % method.encode())
                length = read_response(s, method == "HEAD")
            print("ten: %s /ten/ (10,000 entries, %d byte page): %.0f ms server CPU per request"
                  % (method, length, (cpu_ms(pid) - c0) / 10))


def noread(pid, port, clients=20):
    base, c0 = rss_kb(pid), cpu_ms(pid)
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big/ HTTP/1.1\r\nHost: a\r\n\r\n")
        socks.append(s)
    length = read_response(socks[0], True)
    waited = fetch(port, SMALL)
    peak = base
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        peak = max(peak, rss_kb(pid))
        time.sleep(0.1)
    print("noread: %d clients not reading the 100,000-entry listing (%d byte page): RSS +%d KiB, "
          "%d ms server CPU; a small GET waited %.3f s"
          % (clients, length, peak - base, cpu_ms(pid) - c0, waited))
    for s in socks:
        s.close()


def alias(pid, port):
    base, c0 = rss_kb(pid), cpu_ms(pid)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        for k in range(1, 4097):
            s.sendall(b"GET " + b"/" * k + b"f16k.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            read_response(s, False)
    print("alias: one 16 KiB file under 4,096 spellings: RSS +%d KiB, %d ms server CPU"
          % (rss_kb(pid) - base, cpu_ms(pid) - c0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", default=ROOT, help="the checkout whose servers.http to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_tree(root)
        proc, port = start(os.path.abspath(args.code), root)
        try:
            fetch(port, b"GET /big/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")  # warm
            for step in (alias, pipeline, ten, noread):
                step(proc.pid, port)
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
