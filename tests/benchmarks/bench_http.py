"""Our HTTP server against nginx, ``python -m http.server`` and uvicorn, with ratios to nginx.

    python tests/benchmarks/bench_http.py [--duration 5] [--rounds 2] [--json FILE]
                                          [--uvicorn-python PATH] [--profile WORKLOAD]

Workloads (every one ``wrk -t1``, after a 1 s warm-up of the same command):

* ``small`` / ``medium``: a 1 KiB / 64 KiB file over keep-alive, ``-c50`` (requests/s), every
  request the same head;
* ``varied``: 1 KiB files over keep-alive, ``-c50``, with 10,000 distinct browser-like request
  heads cycled (one of 1,000 paths, a query and a cookie unique to each head), so that no memo
  of recent heads can hit: the realistic counterpart of ``small``;
* ``close``: the 1 KiB file with ``Connection: close``, ``-c50`` (connections/s);
* ``large``: a 64 MiB file, ``-c4`` (MB/s, 10^6 bytes/s);
* ``tls_small`` / ``tls_close`` / ``tls_large``: ``small``, ``close`` and ``large`` over HTTPS
  (``--tls-cert``; nginx with the same self-signed certificate, made with ``openssl`` at start,
  both with their TLS defaults: TLS 1.3, session tickets on, nginx's session cache off; wrk does
  not resume sessions, so every ``tls_close`` connection is a full handshake);
* ``hello``: the README's hello-world handler (``hello_app.py``) against uvicorn+uvloop+httptools
  (``uvicorn_hello.py``) and nginx's ``return 200``; ``echo``: ``python -m servers.http --echo``;
  ``hello_close``: the hello handlers with ``Connection: close``.

Servers run one process each, pinned with ``taskset -c 0``; wrk runs on CPU 1.  nginx runs with
one worker, sendfile on and no access log, from a config generated in a temporary directory;
every server listens on a free port of 127.0.0.1 and is stopped (its whole process group) at the
end, on Ctrl-C too.  Before measuring, the files' sha256 through our server and nginx must
equal the files', keep-alive must hold and ``Connection: close`` must close.

For each run the server's CPU time (``/proc``) gives a CPU-normalised figure (requests, or MB,
per server CPU-second), and the machine's busy time minus server and wrk gives the CPU "other"
processes used, and /proc/stat the CPU time the hypervisor gave to other guests (steal):
samples where either exceeds ``--max-other`` / ``--max-steal`` % of a core are flagged noisy
and left out of the medians when quieter samples exist (before each test it waits, at most
``--quiet-wait`` seconds, for the machine to go quiet).  ``--merge A.json B.json ...``
re-reports the samples of earlier runs together, with the current thresholds.  Peers are interleaved across rounds.
``--profile WORKLOAD`` instead runs our server under cProfile for one measured run and prints
the top functions by own time.  Needs ``wrk``, ``nginx`` and ``taskset`` on PATH (``apt-get
install wrk nginx-light util-linux``); uvicorn is optional (its own virtualenv).
"""
import argparse
import datetime
import hashlib
import http.client
import json
import os
import pstats
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER_CPU, CLIENT_CPU = "0", "1"
HELLO = b"Hello, world!\n"
FILES = {"small.bin": 1 << 10, "medium.bin": 64 << 10, "large.bin": 64 << 20}
DEFAULT_UVICORN_PYTHON = "/tmp/peerbench/venv/bin/python"
TICK = os.sysconf("SC_CLK_TCK")

#: name -> (path, connections, Connection: close?, wrk --timeout seconds)
WORKLOADS = {
    "small": ("/small.bin", 50, False, 10),
    "varied": ("/v/000.bin", 50, False, 10),
    "medium": ("/medium.bin", 50, False, 10),
    "close": ("/small.bin", 50, True, 10),
    "large": ("/large.bin", 4, False, 30),
    "tls_small": ("/small.bin", 50, False, 10),
    "tls_close": ("/small.bin", 50, True, 10),
    "tls_large": ("/large.bin", 4, False, 30),
    "hello": ("/hello", 50, False, 10),
    "echo": ("/hello", 50, False, 10),
    "hello_close": ("/hello", 50, True, 10),
}

#: Table rows: key, label, unit, {column: (peer, workload)}, target (column, minimum ratio).
ROWS = (
    ("small", "1 KiB file, keep-alive", "req/s",
     {"ours": ("ours", "small"), "nginx": ("nginx", "small"),
      "http.server": ("httpserver", "small")}, ("nginx", 0.4)),
    ("varied", "1 KiB files, varied browser heads, keep-alive", "req/s",
     {"ours": ("ours", "varied"), "nginx": ("nginx", "varied")}, None),
    ("medium", "64 KiB file, keep-alive", "req/s",
     {"ours": ("ours", "medium"), "nginx": ("nginx", "medium"),
      "http.server": ("httpserver", "medium")}, ("nginx", 0.6)),
    ("close", "1 KiB file, Connection: close", "conn/s",
     {"ours": ("ours", "close"), "nginx": ("nginx", "close"),
      "http.server": ("httpserver", "close")}, ("nginx", 0.7)),
    ("large", "64 MiB file, -c4", "MB/s",
     {"ours": ("ours", "large"), "nginx": ("nginx", "large"),
      "http.server": ("httpserver", "large")}, ("nginx", 0.9)),
    ("tls_small", "HTTPS 1 KiB file, keep-alive", "req/s",
     {"ours": ("ours_tls", "tls_small"), "nginx": ("nginx_tls", "tls_small")}, ("nginx", 0.4)),
    ("tls_close", "HTTPS 1 KiB file, Connection: close (new TLS connections)", "conn/s",
     {"ours": ("ours_tls", "tls_close"), "nginx": ("nginx_tls", "tls_close")}, ("nginx", 0.5)),
    ("tls_large", "HTTPS 64 MiB file, -c4", "MB/s",
     {"ours": ("ours_tls", "tls_large"), "nginx": ("nginx_tls", "tls_large")}, ("nginx", 0.7)),
    ("hello", "hello handler (nginx: return 200)", "req/s",
     {"ours": ("ours_hello", "hello"), "nginx": ("nginx", "hello"),
      "uvicorn": ("uvicorn", "hello")}, ("uvicorn", 1.0)),
    ("echo", "--echo handler (peers: hello)", "req/s",
     {"ours": ("ours_echo", "echo"), "nginx": ("nginx", "hello"),
      "uvicorn": ("uvicorn", "hello")}, None),
    ("hello_close", "hello handler, Connection: close", "conn/s",
     {"ours": ("ours_hello", "hello_close"), "nginx": ("nginx", "hello_close"),
      "uvicorn": ("uvicorn", "hello_close")}, None),
    # The ceiling for the close row: the least a Python server can do per connection.
    ("bare_close", "bare asyncore responder, Connection: close", "conn/s",
     {"ours": ("ours_bare", "hello_close"), "nginx": ("nginx", "hello_close")}, None),
)
COLUMNS = ("ours", "nginx", "http.server", "uvicorn")


class OutOfTime(Exception):
    """The run's --max-seconds budget is spent; the remaining steps are skipped."""


class CheckFailed(Exception):
    """A server answered wrongly before measuring: its figures would mean nothing."""


class Budget:
    """A deadline for the whole run; each step waits at most its own limit and what is left."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def limit(self, seconds):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime("--max-seconds reached")
        return min(seconds, left)


# ------------------------------------------------------------------ /proc readers
def busy_and_steal():
    """(busy, steal) CPU-seconds of the whole machine so far, from the first line of /proc/stat;
    busy = user + nice + system + irq + softirq."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / TICK, (v[7] if len(v) > 7 else 0) / TICK


def net_counters():
    """Machine-wide loss counters: TCP segments retransmitted, connections dropped at a full
    listen queue, packets dropped at a full per-CPU input backlog (loopback goes through it:
    ``net.core.netdev_max_backlog``).  Losses on loopback mean 200 ms+ retransmission stalls."""
    counts = {"retrans": 0, "listen_drops": 0, "backlog_drops": 0}
    for path, table, field, key in (("/proc/net/snmp", "Tcp:", "RetransSegs", "retrans"),
                                    ("/proc/net/netstat", "TcpExt:", "ListenDrops",
                                     "listen_drops")):
        try:
            with open(path) as f:
                rows = [line.split() for line in f if line.startswith(table)]
            counts[key] = int(dict(zip(rows[0][1:], rows[1][1:]))[field])
        except (OSError, IndexError, KeyError, ValueError):
            pass
    try:
        with open("/proc/net/softnet_stat") as f:
            counts["backlog_drops"] = sum(int(line.split()[1], 16) for line in f)
    except (OSError, IndexError, ValueError):
        pass
    return counts


def group_pids(pgid):
    """The pids of process group ``pgid`` (nginx: master and worker)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(name))
    return pids


def process_cpu(pid):
    """(schedstat, stat) CPU-seconds of ``pid``: run time of its live threads to the
    nanosecond, and utime+stime in ticks, which also counts threads that have exited."""
    sched = 0.0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    sched += int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                pass
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sched, (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return sched, 0.0


def cpu_snapshot(pids):
    return {pid: process_cpu(pid) for pid in pids}


def cpu_between(before, after):
    """Server CPU-seconds between two snapshots.  Per process the exact schedstat delta,
    unless ticks say more (threads that ran and exited, as in http.server's per-connection
    threads)."""
    total = 0.0
    for pid, (s0, t0) in before.items():
        s1, t1 = after.get(pid, (s0, t0))
        ds, dt = s1 - s0, t1 - t0
        total += ds if ds >= 0.9 * dt else dt
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_quiet(budget, seconds=15, threshold=0.25):
    """Wait (bounded) until the machine is less than ``threshold`` of a core busy; the load."""
    limit = time.monotonic() + budget.limit(seconds)
    while True:
        b0 = busy_and_steal()[0]
        time.sleep(0.5)
        load = (busy_and_steal()[0] - b0) / 0.5
        if load < threshold or time.monotonic() >= limit:
            return load


# ------------------------------------------------------------------ the servers
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {docroot};
        location = /hello {{
            default_type text/plain;
            return 200 "Hello, world!\\n";
        }}
    }}
}}
"""


#: nginx over TLS: the same server with the bench's certificate (its defaults otherwise, and
#: no session cache: wrk does not resume sessions anyway).
NGINX_TLS_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl backlog=1024;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        root {docroot};
    }}
}}
"""


class Peer:
    """One server under test: how to start it, which workloads it serves, whether over TLS."""

    def __init__(self, id, label, workloads, ready_path, command, tls=False):
        self.id = id
        self.label = label
        self.workloads = workloads
        self.ready_path = ready_path
        self.command = command          # port -> argv, run with cwd=ROOT
        self.tls = tls


def _ours(script):
    """A workload script of the checkout whose servers are measured (``--code``), or this one's."""
    path = os.path.join(ROOT, "tests", "benchmarks", script)
    return path if os.path.exists(path) else os.path.join(HERE, script)


def make_peers(ctx):
    py = sys.executable
    peers = [
        Peer("ours", "servers.http (static files)", ("small", "varied", "medium", "close", "large"),
             "/small.bin", lambda port: [py, "-m", "servers.http", str(port), "-b", "127.0.0.1",
                                         "-d", ctx["docroot"], "-q"]),
        Peer("ours_hello", "servers.http hello handler", ("hello", "hello_close"), "/hello",
             lambda port: [py, _ours("hello_app.py"), str(port)]),
        Peer("ours_echo", "servers.http --echo", ("echo",), "/hello",
             lambda port: [py, "-m", "servers.http", str(port), "-b", "127.0.0.1", "--echo",
                           "-q"]),
        Peer("ours_bare", "asyncore_http.py on eventloop (fixed response, no parsing)",
             ("hello_close",), "/hello",
             lambda port: [py, _ours("asyncore_http.py"), "--impl", "eventloop",
                           str(port)]),
        Peer("nginx", "nginx, 1 worker", ("small", "varied", "medium", "close", "large", "hello",
                                          "hello_close"), "/hello",
             lambda port: [ctx["nginx"], "-p", ctx["tmp"], "-e", os.path.join(ctx["tmp"],
                           "nginx-error.log"), "-c", write_nginx_conf(ctx, port)]),
        Peer("ours_tls", "servers.http --tls-cert", ("tls_small", "tls_close", "tls_large"),
             "/small.bin", lambda port: [py, "-m", "servers.http", str(port), "-b", "127.0.0.1",
                                         "-d", ctx["docroot"], "-q", "--tls-cert", ctx["cert"],
                                         "--tls-key", ctx["key"]], tls=True),
        Peer("nginx_tls", "nginx, 1 worker, TLS", ("tls_small", "tls_close", "tls_large"),
             "/small.bin", lambda port: [ctx["nginx"], "-p", ctx["tmp"], "-e", os.path.join(
                 ctx["tmp"], "nginx-error.log"), "-c", write_nginx_conf(ctx, port, tls=True)],
             tls=True),
        Peer("httpserver", "python -m http.server", ("small", "medium", "close", "large"),
             "/small.bin", lambda port: [py, "-m", "http.server", str(port), "-b", "127.0.0.1",
                                         "-d", ctx["docroot"]]),
    ]
    if ctx.get("uvicorn_python"):
        peers.append(Peer("uvicorn", "uvicorn+uvloop+httptools", ("hello", "hello_close"),
                          "/hello", lambda port: [ctx["uvicorn_python"],
                                                  os.path.join(HERE, "uvicorn_hello.py"),
                                                  str(port)]))
    return peers


def write_nginx_conf(ctx, port, tls=False):
    path = os.path.join(ctx["tmp"], "nginx-%d.conf" % port)
    conf = NGINX_CONF.format(tmp=ctx["tmp"], port=port, docroot=ctx["docroot"])
    if tls:
        head = conf[:conf.index("    server {")]
        conf = head + NGINX_TLS_SERVER.format(port=port, docroot=ctx["docroot"],
                                              cert=ctx["cert"], key=ctx["key"])
    with open(path, "w") as f:
        f.write(conf)
    return path


def make_certificate(folder):
    """A self-signed EC P-256 certificate for 127.0.0.1 (both servers use it): (cert, key)."""
    cert, key = os.path.join(folder, "bench.crt"), os.path.join(folder, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)                # nginx's master reads it as root; tidy anyway
    return cert, key


def _die_with_parent():
    """In the child before exec: get SIGKILL if this script dies without cleaning up."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Running:
    """A started server: its own session (so the whole group can be stopped), its log."""

    live = set()

    def __init__(self, argv, log_path, env=None):
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self.pgid = self.proc.pid
        self.pids = [self.proc.pid]
        Running.live.add(self)

    def stop(self, grace=5.0):
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; the leader's exit status."""
        if self not in Running.live:
            return self.proc.returncode
        Running.live.discard(self)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        deadline = time.monotonic() + grace     # nginx's worker outlives its master briefly
        while group_pids(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_pids(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        return self.proc.returncode

    @classmethod
    def stop_all(cls):
        for server in list(cls.live):
            server.stop(grace=2.0)


# ------------------------------------------------------------------ correctness
_UNVERIFIED = ssl._create_unverified_context()


def fetch(port, path, headers=None, conn=None, timeout=30, tls=False):
    """GET ``path`` (over TLS, unverified, with ``tls``); (status, lowercased headers, body
    sha256, body length, connection)."""
    if conn is None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=_UNVERIFIED) if tls else \
            http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    digest, length = hashlib.sha256(), 0
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        length += len(chunk)
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, digest.hexdigest(), \
        length, conn


def fetch_close(port, path, timeout=10, tls=False):
    """GET with ``Connection: close`` on a raw socket, read to EOF: (head, body).  EOF within
    ``timeout`` is the proof the server closed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        raw = _UNVERIFIED.wrap_socket(raw)
    with raw as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path.encode())
        data = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def wait_answering(server, port, path, seconds, tls=False):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            status, _, _, _, conn = fetch(port, path, timeout=2, tls=tls)
            conn.close()
            if status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    return False


def check(peer, port, ctx):
    """Raise CheckFailed unless ``peer`` serves its workloads correctly; notes otherwise."""
    notes = []
    tls = peer.tls
    if "small" in peer.workloads or "tls_small" in peer.workloads:
        for name, size in FILES.items():
            status, headers, digest, length, conn = fetch(port, "/" + name, tls=tls)
            conn.close()
            if status != 200 or digest != ctx["sha256"][name]:
                raise CheckFailed("%s: GET /%s -> %d, %d bytes, sha256 %s (want %s)"
                                  % (peer.id, name, status, length, digest[:16],
                                     ctx["sha256"][name][:16]))
        status, headers, _, _, conn = fetch(port, "/small.bin", tls=tls)
        kept = conn.sock is not None
        if kept:
            status2, _, digest2, _, _ = fetch(port, "/small.bin", conn=conn, tls=tls)
            if status2 != 200 or digest2 != ctx["sha256"]["small.bin"]:
                raise CheckFailed("%s: second request on a kept-alive connection failed" % peer.id)
        conn.close()
        if not kept:
            notes.append("%s: no keep-alive (answers with %s)"
                         % (peer.id, headers.get("connection", "HTTP/1.0")))
        head, body = fetch_close(port, "/small.bin", tls=tls)
        if hashlib.sha256(body).hexdigest() != ctx["sha256"]["small.bin"]:
            raise CheckFailed("%s: Connection: close: wrong body" % peer.id)
        if not re.search(r"(?im)^connection:\s*close", head):
            notes.append("%s: closes after Connection: close without saying so" % peer.id)
    if "hello" in peer.workloads:
        status, headers, digest, _, conn = fetch(port, "/hello")
        kept = conn.sock is not None
        conn.close()
        if status != 200 or digest != hashlib.sha256(HELLO).hexdigest():
            raise CheckFailed("%s: GET /hello -> %d, not %r" % (peer.id, status, HELLO))
        if not kept:
            raise CheckFailed("%s: /hello did not keep the connection alive" % peer.id)
        head, body = fetch_close(port, "/hello")
        if body != HELLO or not re.search(r"(?im)^connection:\s*close", head):
            raise CheckFailed("%s: /hello with Connection: close: %r" % (peer.id, head))
    if "echo" in peer.workloads:
        status, headers, _, length, conn = fetch(port, "/hello", {"X-Bench": "<b>"})
        conn.close()
        if status != 200 or not headers.get("content-type", "").startswith("text/html"):
            raise CheckFailed("%s: echo -> %d %s" % (peer.id, status, headers))
    return notes


# ------------------------------------------------------------------ wrk
WRK_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
#: The ``varied`` workload's heads: what a browser sends for the assets of a page, each head
#: distinct (path, query, cookie), built once in wrk's init() and cycled.
WRK_VARIED_LUA = """\
local heads = {}
local n = 0
init = function(args)
  local agents = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  }
  for i = 0, 9999 do
    local path = string.format("/v/%03d.bin?v=%d&t=%08x", i % 1000, i, (i * 2654435761) % 4294967296)
    heads[i + 1] = wrk.format("GET", path, {
      ["Host"] = wrk.host .. ":" .. wrk.port,
      ["User-Agent"] = agents[i % 3 + 1],
      ["Accept"] = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
      ["Accept-Language"] = "en-GB,en;q=0.9,fr;q=0.7",
      ["Accept-Encoding"] = "gzip, deflate, br, zstd",
      ["Referer"] = string.format("http://%s:%s/page/%d.html", wrk.host, wrk.port, i % 50),
      ["Cookie"] = string.format("session=%016x%08x; theme=dark; seen=%d", i * 7919, i, i % 97),
      ["Sec-Fetch-Dest"] = "image",
      ["Sec-Fetch-Mode"] = "no-cors",
      ["Sec-Fetch-Site"] = "same-origin",
    })
  end
end
request = function()
  n = n % 10000 + 1
  return heads[n]
end
""" + WRK_LUA
VARIED_FILES = 1000

_WRK_KEYS = ("requests", "bytes", "duration_us", "err_connect", "err_read", "err_write",
             "err_status", "err_timeout", "p50_us", "p99_us")


def run_wrk(port, workload, duration, ctx, budget, server=None, spec=None):
    """One pinned wrk run of ``workload`` (``spec``: its ``WORKLOADS`` entry, for scripts with
    workloads of their own); with ``server``, its CPU and the machine's noise."""
    path, conns, close, timeout = spec or WORKLOADS[workload]
    lua = ctx["lua_varied"] if workload == "varied" else ctx["lua"]
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
           "--timeout", "%ds" % timeout, "-s", lua]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("%s://127.0.0.1:%d%s" % ("https" if workload.startswith("tls_") else "http",
                                        port, path))
    pids = server.pids if server else []
    cpu0, net0 = cpu_snapshot(pids), net_counters()
    (busy0, steal0), ru0, wall0 = busy_and_steal(), resource.getrusage(resource.RUSAGE_CHILDREN), \
        time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         timeout=budget.limit(duration + timeout + 20)).stdout
    wall = time.monotonic() - wall0
    (busy1, steal1), ru1 = busy_and_steal(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_between(cpu0, cpu_snapshot(pids))
    net1 = net_counters()
    m = re.search(r"^BENCH ([\d ]+)$", out, re.M)
    if not m:
        raise RuntimeError("unexpected wrk output: %r" % out[-400:])
    r = dict(zip(_WRK_KEYS, (int(x) for x in m.group(1).split())))
    seconds = r["duration_us"] / 1e6
    unit_count = r["bytes"] / 1e6 if workload in ("large", "tls_large") else r["requests"]
    wrk_cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
    r.update({
        "rate": unit_count / seconds,
        "errors": r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"]
        + r["err_timeout"],
        "server_cpu_s": round(cpu, 4),
        "server_cpu_pct": 100.0 * cpu / wall,
        "per_cpu_s": unit_count / cpu if cpu > 0 else None,
        "wrk_cpu_pct": 100.0 * wrk_cpu / wall,
        "other_pct": max(0.0, 100.0 * (busy1 - busy0 - wrk_cpu - cpu) / wall),
        "steal_pct": 100.0 * (steal1 - steal0) / wall,
    })
    r.update((key, net1[key] - net0[key]) for key in net0)
    return r


# ------------------------------------------------------------------ one peer, one round
def measure_peer(peer, round_no, args, ctx, budget, samples):
    """Start ``peer``, check it (first round), run each of its workloads, appending to
    ``samples`` as they come (so an interrupted run keeps them); returns notes."""
    notes = []
    quiet = wait_quiet(budget, args.quiet_wait)
    port = free_port()
    server = Running(peer.command(port), os.path.join(ctx["logs"], "%s-r%d.log"
                                                      % (peer.id, round_no)), ctx["env"])
    try:
        if not wait_answering(server, port, peer.ready_path, budget.limit(20), peer.tls):
            raise CheckFailed("%s did not answer on port %d (log: %s)"
                              % (peer.id, port, server.log.name))
        server.pids = group_pids(server.pgid) or [server.proc.pid]
        if round_no == 0:
            notes += check(peer, port, ctx)
        for workload in peer.workloads:
            if args.workload and workload not in args.workload:
                continue
            wait_quiet(budget, args.quiet_wait)
            run_wrk(port, workload, 1, ctx, budget)
            sample = run_wrk(port, workload, args.duration, ctx, budget, server)
            sample.update(peer=peer.id, workload=workload, round=round_no,
                          quiet_before_pct=round(100 * quiet, 1))
            sample["noisy"] = is_noisy(sample, args)
            samples.append(sample)
            print("[round %d] %-10s %-11s %12s  cpu %5.2fs  wrk %3.0f%%  other %3.0f%%%s%s"
                  % (round_no, peer.id, workload, "{:,.0f}".format(sample["rate"]),
                     sample["server_cpu_s"], sample["wrk_cpu_pct"], sample["other_pct"],
                     "  errors %d" % sample["errors"] if sample["errors"] else "",
                     "  retransmits %d" % sample["retrans"] if sample["retrans"] else ""),
                  file=sys.stderr, flush=True)
            if server.proc.poll() is not None:
                raise CheckFailed("%s exited during %s" % (peer.id, workload))
    finally:
        rc = server.stop()
        if rc not in (0, -signal.SIGTERM):
            notes.append("round %d: %s exited with status %s on SIGTERM (log: %s)"
                         % (round_no, peer.id, rc, server.log.name))
    return notes


# ------------------------------------------------------------------ summary and report
def is_noisy(sample, args):
    """Whether other processes or other guests took more CPU than the thresholds allow."""
    return sample["other_pct"] > args.max_other or sample["steal_pct"] > args.max_steal


def pick(samples, peer, workload):
    """The samples of one cell: the quiet ones if any, else all (then marked noisy)."""
    cell = [s for s in samples if s["peer"] == peer and s["workload"] == workload]
    quiet = [s for s in cell if not s["noisy"]]
    return (quiet or cell), len(cell) - len(quiet), not quiet and bool(cell)


def summarize(samples):
    """Per (peer, workload): medians of rate, per-CPU rate, CPU and load, with spreads."""
    out = {}
    keys = {(s["peer"], s["workload"]) for s in samples}
    for peer, workload in sorted(keys):
        chosen, dropped, all_noisy = pick(samples, peer, workload)
        cell = {"n": len(chosen), "noisy_dropped": dropped, "all_noisy": all_noisy}
        for key in ("rate", "per_cpu_s", "server_cpu_s", "server_cpu_pct", "wrk_cpu_pct",
                    "other_pct", "steal_pct", "p50_us", "p99_us", "errors"):
            values = [s[key] for s in chosen if s.get(key) is not None]
            cell[key] = statistics.median(values) if values else None
            if key in ("rate", "per_cpu_s") and values and cell[key]:
                cell[key + "_spread"] = (max(values) - min(values)) / 2 / cell[key]
        out["%s/%s" % (peer, workload)] = cell
    rows = {}
    for key, label, unit, cols, target in ROWS:
        row = {"label": label, "unit": unit}
        for col in COLUMNS:
            ref = cols.get(col)
            row[col] = out.get("%s/%s" % ref) if ref else None
        for what in ("rate", "per_cpu_s"):
            for ref_col in ("nginx", "uvicorn"):
                ours, ref = row["ours"], row[ref_col]
                row["ours/%s_%s" % (ref_col, what)] = (
                    ours[what] / ref[what] if ours and ref and ours[what] and ref[what] else None)
        if target:
            ref_col, minimum = target
            ratio = row["ours/%s_rate" % ref_col]
            # Only quiet samples decide: a cell whose every sample was noisy gives no verdict.
            noisy = any(row[c] is not None and row[c]["all_noisy"] for c in ("ours", ref_col))
            row["target"] = {"vs": ref_col, "min": minimum, "ratio": ratio,
                             "ratio_per_cpu": row["ours/%s_per_cpu_s" % ref_col],
                             "noisy": noisy,
                             "met": None if ratio is None or noisy else ratio >= minimum}
        rows[key] = row
    return {"cells": out, "rows": rows}


def _fmt(value, spread=None):
    if value is None:
        return "n/a"
    text = "{:,.0f}".format(value) if value >= 100 else "{:,.2f}".format(value)
    if spread is not None and spread >= 0.005:
        text += " ±%.0f%%" % (100 * spread)
    return text


def _cell(cell, what):
    if cell is None:
        return "n/a"
    text = _fmt(cell[what], cell.get(what + "_spread"))
    if cell["all_noisy"]:
        text += " !"
    elif cell["noisy_dropped"]:
        text += " [n=%d]" % cell["n"]
    if what == "rate" and (cell["wrk_cpu_pct"] or 0) >= 90:
        text += " (c)"
    return text


def _table(heads, rows):
    widths = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                           for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(heads), sep] + [line(r) for r in rows])


def _ratio(value):
    return "%.2fx" % value if value is not None else "n/a"


def render(summary, samples, args, notes):
    rows = summary["rows"]
    cols = [c for c in COLUMNS if any(rows[k][c] for k in rows)]
    text = ["## Throughput (median over rounds)", ""]
    table = []
    for key, label, unit, _, target in ROWS:
        row = rows[key]
        verdict = ""
        if target:
            t = row["target"]
            verdict = ">= %.1fx %s: %s" % (t["min"], t["vs"], "noisy" if t["noisy"] else
                                            {True: "met", False: "MISSED", None: "n/a"}[t["met"]])
        table.append(["%s (%s)" % (label, unit)] + [_cell(row[c], "rate") for c in cols]
                     + [_ratio(row["ours/nginx_rate"]), _ratio(row["ours/uvicorn_rate"]), verdict])
    text.append(_table(["workload"] + cols + ["ours/nginx", "ours/uvicorn", "target"], table))
    text += ["", "## Per server CPU-second (requests, or MB for 64 MiB, per CPU-second of the "
                 "server)", ""]
    table = []
    for key, label, unit, _, _ in ROWS:
        row = rows[key]
        table.append([label] + [_cell(row[c], "per_cpu_s") for c in cols]
                     + [_ratio(row["ours/nginx_per_cpu_s"]), _ratio(row["ours/uvicorn_per_cpu_s"])])
    text.append(_table(["workload"] + cols + ["ours/nginx", "ours/uvicorn"], table))
    text += ["", "## Server CPU-seconds per %d s run (%% of a core) · wrk %% · other %% · "
                 "steal %%" % args.duration, ""]
    table = []
    for key, label, unit, _, _ in ROWS:
        row = rows[key]
        table.append([label] + ["n/a" if row[c] is None else "%.2f s (%.0f%%) · %.0f · %.0f · %.0f"
                                % (row[c]["server_cpu_s"], row[c]["server_cpu_pct"],
                                   row[c]["wrk_cpu_pct"], row[c]["other_pct"],
                                   row[c]["steal_pct"]) for c in cols])
    text.append(_table(["workload"] + cols, table))
    other = [s["other_pct"] for s in samples]
    steal = [s["steal_pct"] for s in samples]
    noisy = [s for s in samples if s["noisy"]]
    text += ["", "ours = servers.http (static files, hello_app.py's handler, or --echo); "
             "(c) = wrk used >= 90% of its core (client-bound: the server may have headroom); "
             "[n=K] = median of the K quiet samples (noisy ones left out); "
             "! = every sample noisy (no verdict)."]
    if other:
        text.append("Other processes during the runs: median %.0f%%, max %.0f%% of a core; "
                    "steal median %.0f%%, max %.0f%%; %d of %d samples noisy (other > %.0f%% "
                    "or steal > %.0f%%)."
                    % (statistics.median(other), max(other), statistics.median(steal),
                       max(steal), len(noisy), len(samples), args.max_other, args.max_steal))
    for s in noisy:
        text.append("  noisy: round %d %s %s: %s at %.0f%% other, %.0f%% steal"
                    % (s["round"], s["peer"], s["workload"], _fmt(s["rate"]), s["other_pct"],
                       s["steal_pct"]))
    for s in samples:
        if s["errors"]:
            text.append("  wrk errors: round %d %s %s: connect/read/write/status/timeout "
                        "%d/%d/%d/%d/%d of %d requests"
                        % (s["round"], s["peer"], s["workload"], s["err_connect"], s["err_read"],
                           s["err_write"], s["err_status"], s["err_timeout"], s["requests"]))
    for s in samples:
        if s.get("retrans") or s.get("listen_drops") or s.get("backlog_drops"):
            text.append("  losses: round %d %s %s: %d TCP retransmits, %d listen-queue drops, "
                        "%d input-backlog drops (machine-wide); p99 latency %.0f ms"
                        % (s["round"], s["peer"], s["workload"], s["retrans"],
                           s["listen_drops"], s["backlog_drops"], s["p99_us"] / 1000))
    for note in notes:
        text.append("  note: " + note)
    text.append("")
    for key, label, unit, _, target in ROWS:
        if target:
            t = rows[key]["target"]
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["met"]]
            text.append("%s %s: ours/%s %s (target >= %.1fx; per CPU-s %s)%s"
                        % (verdict, label, t["vs"], _ratio(t["ratio"]), t["min"],
                           _ratio(t["ratio_per_cpu"]),
                           " -- no quiet sample on one side: run again" if t["noisy"] else ""))
    return "\n".join(text)


# ------------------------------------------------------------------ setup
def make_docroot(path):
    """The three files (random bytes: nothing compresses or dedupes them); their sha256."""
    os.makedirs(path)
    digests = {}
    for name, size in FILES.items():
        digest = hashlib.sha256()
        with open(os.path.join(path, name), "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                f.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        os.chmod(os.path.join(path, name), 0o644)
        digests[name] = digest.hexdigest()
    varied = os.path.join(path, "v")
    os.makedirs(varied)
    for i in range(VARIED_FILES):
        with open(os.path.join(varied, "%03d.bin" % i), "wb") as f:
            f.write(os.urandom(1 << 10))
    for d in (path, varied):
        os.chmod(d, 0o755)
    for name in os.listdir(varied):
        os.chmod(os.path.join(varied, name), 0o644)
    os.chmod(path, 0o755)           # nginx's worker runs as an unprivileged user
    return digests


def find_uvicorn(path):
    """``path`` if that interpreter imports uvicorn, uvloop and httptools; else None."""
    if not path or not os.path.exists(path):
        return None, None
    try:
        out = subprocess.run([path, "-c", "import uvicorn, uvloop, httptools; "
                              "print(uvicorn.__version__, uvloop.__version__, httptools.__version__)"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return (path, out.stdout.strip()) if out.returncode == 0 else (None, None)


def tool_versions(ctx):
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return None
    return {"python": sys.version.split()[0], "wrk": first_line(["wrk", "-v"]),
            "nginx": first_line([ctx["nginx"], "-v"]),
            "uvicorn uvloop httptools": ctx.get("uvicorn_versions"),
            "kernel": os.uname().release, "cpus": os.cpu_count()}


def profile(args, ctx, budget):
    """Run our server for ``args.profile`` under cProfile; print the top 15 by own time."""
    workload = args.profile
    out = args.profile_out or os.path.join(ctx["logs"], "profile-%s.pstats" % workload)
    port = free_port()
    py = sys.executable
    if workload in ("hello", "hello_close"):
        argv = [py, os.path.join(HERE, "hello_app.py"), str(port), "--profile", out]
        ready = "/hello"
    else:
        argv = [py, "-m", "cProfile", "-o", out, "-m", "servers.http", str(port), "-b",
                "127.0.0.1", "-q"]
        argv += ["--echo"] if workload == "echo" else ["-d", ctx["docroot"]]
        if workload.startswith("tls_"):
            argv += ["--tls-cert", ctx["cert"], "--tls-key", ctx["key"]]
        ready = "/hello" if workload == "echo" else "/small.bin"
    server = Running(argv, os.path.join(ctx["logs"], "profile-%s.log" % workload), ctx["env"])
    try:
        if not wait_answering(server, port, ready, budget.limit(20), workload.startswith("tls_")):
            raise CheckFailed("profiled server did not answer (log: %s)" % server.log.name)
        server.pids = group_pids(server.pgid) or [server.proc.pid]
        run_wrk(port, workload, 1, ctx, budget)
        sample = run_wrk(port, workload, args.duration, ctx, budget, server)
    finally:
        server.stop(grace=20)
    print("profile of our server, %s, under cProfile: %s %s (cProfile slows it down; read the "
          "shares, not the rate)" % (workload, _fmt(sample["rate"]),
                                     "MB/s" if workload in ("large", "tls_large") else "per second"))
    stats = pstats.Stats(out)
    stats.sort_stats("tottime").print_stats(15)
    print("stats file: %s" % out)
    return 0


def merge(args):
    """Report the samples of earlier runs (their --json files) together: rounds are numbered
    on from run to run and noise is judged again with the current thresholds."""
    samples, notes, runs, offset = [], [], [], 0
    for path in args.merge:
        with open(path) as f:
            run = json.load(f)
        meta = run["meta"]
        args.duration = meta["args"]["duration"]
        rounds = 1 + max((s["round"] for s in run["samples"]), default=-1)
        for sample in run["samples"]:
            sample["round"] += offset
            sample["noisy"] = is_noisy(sample, args)
            samples.append(sample)
        notes += [n for n in run["notes"] if n not in notes]
        runs.append("%s (%d round(s) x %d s)" % (meta["date_utc"], rounds, args.duration))
        offset += rounds
    print("bench_http: merged %d run(s): %s; wrk -t1 -c50 (-c4 for 64 MiB) after a 1 s warm-up; "
          "servers on CPU %s, wrk on CPU %s" % (len(runs), "; ".join(runs), SERVER_CPU,
                                                CLIENT_CPU))
    print()
    summary = summarize(samples)
    print(render(summary, samples, args, notes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"merged": args.merge, "args": vars(args)}, "samples": samples,
                       "summary": summary, "notes": notes}, f, indent=1)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (medians)")
    parser.add_argument("--json", metavar="PATH", help="also write samples and summary here")
    parser.add_argument("--uvicorn-python", metavar="PATH", default=DEFAULT_UVICORN_PYTHON,
                        help="interpreter of a venv with uvicorn, uvloop and httptools "
                             "(default %s; skipped when missing)" % DEFAULT_UVICORN_PYTHON)
    parser.add_argument("--max-other", type=float, default=25.0, metavar="PCT",
                        help="samples with more other CPU load (%% of a core) are noisy")
    parser.add_argument("--max-steal", type=float, default=10.0, metavar="PCT",
                        help="samples with more steal time (%% of a core) are noisy")
    parser.add_argument("--merge", metavar="JSON", nargs="+",
                        help="report the samples of these earlier --json files together "
                             "instead of measuring")
    parser.add_argument("--quiet-wait", type=float, default=8.0, metavar="SECONDS",
                        help="before each test, wait at most this long for other processes "
                             "to go quiet (default 8)")
    parser.add_argument("--code", metavar="DIR",
                        help="run our servers from the checkout DIR instead of this one (an A/B "
                             "of two commits with the same script: see ab_http.py)")
    parser.add_argument("--only", metavar="PEER", action="append",
                        help="run only these peers (ours, ours_hello, ours_echo, ours_bare, nginx, "
                             "ours_tls, nginx_tls, httpserver, uvicorn); repeatable")
    parser.add_argument("--workload", metavar="NAME", action="append", choices=sorted(WORKLOADS),
                        help="run only these workloads; repeatable")
    parser.add_argument("--profile", metavar="WORKLOAD", choices=sorted(WORKLOADS),
                        help="profile our server under one workload instead")
    parser.add_argument("--profile-out", metavar="FILE", help="where to keep the profile stats")
    parser.add_argument("--max-seconds", type=float, default=1800,
                        help="bound on the whole run (default 1800)")
    args = parser.parse_args()
    if args.code:
        global ROOT
        ROOT = os.path.abspath(args.code)
    if args.merge:
        return merge(args)

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    missing = [t for t, ok in (("wrk", shutil.which("wrk")), ("taskset", shutil.which("taskset")),
                               ("nginx", nginx)) if not ok]
    if missing and not (args.profile and missing == ["nginx"]):
        print("missing: %s (apt-get install wrk nginx-light util-linux)" % ", ".join(missing),
              file=sys.stderr)
        return 2
    if os.cpu_count() < 2:
        print("needs 2 CPUs (server on CPU 0, wrk on CPU 1)", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    budget = Budget(args.max_seconds)
    tmp = tempfile.mkdtemp(prefix="bench_http-")
    os.chmod(tmp, 0o755)
    ctx = {"tmp": tmp, "docroot": os.path.join(tmp, "www"), "logs": os.path.join(tmp, "logs"),
           "lua": os.path.join(tmp, "report.lua"), "lua_varied": os.path.join(tmp, "varied.lua"),
           "nginx": nginx,
           "env": dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")}
    os.makedirs(ctx["logs"])
    with open(ctx["lua"], "w") as f:
        f.write(WRK_LUA)
    with open(ctx["lua_varied"], "w") as f:
        f.write(WRK_VARIED_LUA)
    started = time.time()
    samples, notes, failed = [], [], []
    interrupted = False
    try:
        ctx["sha256"] = make_docroot(ctx["docroot"])
        ctx["cert"], ctx["key"] = make_certificate(tmp)
        if args.profile:
            return profile(args, ctx, budget)
        ctx["uvicorn_python"], ctx["uvicorn_versions"] = find_uvicorn(args.uvicorn_python)
        peers = make_peers(ctx)
        if args.only:
            peers = [p for p in peers if p.id in args.only]
        if args.workload:
            peers = [p for p in peers if set(p.workloads) & set(args.workload)]
        if not ctx["uvicorn_python"]:
            notes.append("uvicorn skipped: %s has no uvicorn+uvloop+httptools"
                         % args.uvicorn_python)
        for round_no in range(args.rounds):
            order = peers if round_no % 2 == 0 else peers[::-1]
            for peer in order:
                if peer.id in failed:
                    continue
                try:
                    notes += measure_peer(peer, round_no, args, ctx, budget, samples)
                except CheckFailed as exc:
                    failed.append(peer.id)
                    notes.append("FAILED CHECK (not measured): %s" % exc)
                    print("FAILED CHECK: %s" % exc, file=sys.stderr)
                    continue
                except (RuntimeError, OSError, subprocess.TimeoutExpired,
                        http.client.HTTPException) as exc:
                    notes.append("round %d %s: %s: %s" % (round_no, peer.id,
                                                          type(exc).__name__, exc))
                    print("error: %s" % notes[-1], file=sys.stderr)
                    continue
    except OutOfTime as exc:
        notes.append("stopped early: %s" % exc)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers", file=sys.stderr)
        if args.profile:
            return 130
        interrupted = True
        notes.append("interrupted: partial results")
    finally:
        Running.stop_all()
        shutil.rmtree(ctx["docroot"], ignore_errors=True)

    summary = summarize(samples)
    print("bench_http: %d round(s) x %d s, wrk -t1 -c50 (-c4 for 64 MiB) after a 1 s warm-up; "
          "servers on CPU %s, wrk on CPU %s; %s UTC; load before: %s"
          % (args.rounds, args.duration, SERVER_CPU, CLIENT_CPU,
             datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
             " ".join("%.2f" % x for x in os.getloadavg())))
    print()
    print(render(summary, samples, args, notes))
    print("\nelapsed %.0f s; logs in %s" % (time.time() - started, ctx["logs"]))
    if args.json:
        meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "command": " ".join(["python"] + sys.argv), "args": vars(args),
                "versions": tool_versions(ctx), "elapsed_s": round(time.time() - started, 1)}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "samples": samples, "summary": summary, "notes": notes},
                      f, indent=1)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
