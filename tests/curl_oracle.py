"""curl as the oracle for ``python -m clients.http``: run both against the same local servers
and compare what can be observed (exit status, stdout bytes, files written, ``-w`` output).

* :func:`run_curl` runs the real curl (always with ``-L``: redirects are followed by default
  here; with ``follow=False``, ours gets ``--no-follow``); :func:`run_ours` runs our ``main()``
  in this process (fast), or with ``subprocess=True`` as a program.
* :class:`RawServer` answers with exact bytes from a route function, in threads, and records
  every request (head and body) — for hostile and byte-exact cases.
* :class:`ForwardProxy` forwards absolute-form requests and tunnels ``CONNECT``, recording what
  it was asked.
Every wait is bounded; servers stop at the end of their fixture.
"""
import io
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURL = shutil.which("curl")
UA = "oracle/1"        # both clients send this User-Agent, so request heads can be compared
CLOSE = "close"
RESET = "reset"
HOLD = "hold"


@dataclass
class Result:
    code: int
    out: bytes
    err: str
    files: dict = field(default_factory=dict)

    def same(self, other):
        """The observable result, for assertions: (exit status, stdout, files)."""
        return (self.code, self.out, self.files) == (other.code, other.out, other.files)


def snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def run_curl(args, cwd=None, env=None, stdin=b"", follow=True, timeout=30):
    argv = [CURL, "-q", "-g"] + (["-L"] if follow else []) + list(args)
    environ = _clean_env(env)
    proc = subprocess.run(argv, cwd=cwd, env=environ, input=stdin, capture_output=True,
                          timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"),
                  snapshot(cwd) if cwd else {})


def run_ours(args, cwd=None, env=None, stdin=b"", follow=True, subprocess_=False, timeout=30):
    argv = ([] if follow else ["--no-follow"]) + list(args)
    environ = _clean_env(env)
    if subprocess_:
        environ["PYTHONPATH"] = ROOT
        proc = subprocess.run([sys.executable, "-m", "clients.http"] + argv, cwd=cwd,
                              env=environ, input=stdin, capture_output=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"),
                      snapshot(cwd) if cwd else {})
    from clients.http.cli import main
    out, err = io.BytesIO(), io.StringIO()
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        code = main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=environ)
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue(), snapshot(cwd) if cwd else {})


def _clean_env(env):
    """The environment without any proxy setting the machine has, plus ``env``."""
    environ = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                    "curl_ca_bundle", "ssl_cert_file", "ssl_cert_dir")}
    environ["HOME"] = environ.get("HOME", "/nonexistent")
    environ.update(env or {})
    return environ


# ---------------------------------------------------------------------------- raw server

class RawRequest:
    def __init__(self, head, body):
        self.head = head
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = lines[0].split(" ", 2)
        self.path = self.target.split("?", 1)[0]
        self.headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers.append((name.strip(), value.strip()))
        self.body = body

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def response(body=b"", status="200 OK", headers=(), length=True):
    head = "HTTP/1.1 %s\r\n" % status
    if length:
        head += "Content-Length: %d\r\n" % len(body)
    head += "".join("%s: %s\r\n" % h for h in headers)
    return head.encode("latin-1") + b"\r\n" + body


class RawServer:
    """``route(request, server)`` gives the steps answering a request: bytes (sent), CLOSE,
    RESET (close with an RST), HOLD (say nothing until the server stops), or a function of the
    connection that takes it over.  Keep-alive: after the steps, the next request on the
    connection is read."""

    def __init__(self, route, host="127.0.0.1", family=socket.AF_INET):
        self.route = route
        self.requests = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.counts = {}
        self.listener = socket.socket(family)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.host = host
        self.threads = []
        self._conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path="/", host=None):
        host = host or self.host
        shown = "[%s]" % host if ":" in host else host
        return "http://%s:%d%s" % (shown, self.port, path)

    def count(self, key):
        """How many times ``key`` was asked for before (0 the first time)."""
        with self.lock:
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
        return n

    def _accept(self):
        while not self.stopped.is_set():
            ready = select.select([self.listener], [], [], 0.1)[0]
            if not ready:
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _recv(self, conn, buf):
        while not self.stopped.is_set():
            ready = select.select([conn], [], [], 0.1)[0]
            if ready:
                data = conn.recv(65536)
                return buf + data if data else None
        return None

    def _serve(self, conn):
        buf = b""
        try:
            while not self.stopped.is_set():
                while b"\r\n\r\n" not in buf:
                    buf = self._recv(conn, buf)
                    if buf is None:
                        return
                head, _, buf = buf.partition(b"\r\n\r\n")
                request = RawRequest(head, b"")
                length = int(request.header("content-length") or 0)
                while len(buf) < length:
                    buf = self._recv(conn, buf)
                    if buf is None:
                        return
                request.body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.requests.append(request)
                for step in self.route(request, self):
                    if step == CLOSE:
                        return
                    if step == RESET:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        return
                    if step == HOLD:
                        self.stopped.wait(30)
                        return
                    if callable(step):
                        step(conn)          # takes the connection over
                        return
                    conn.sendall(step)
                if (request.header("connection") or "").lower() == "close":
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


# ---------------------------------------------------------------------------- proxies

class ForwardProxy(RawServer):
    """An HTTP proxy: absolute-form requests are forwarded to their origin (one connection
    each, closed after the answer); ``CONNECT host:port`` opens a tunnel (``refuse``: answer
    403 instead).  ``seen`` lists the request lines it was asked."""

    def __init__(self, refuse=False):
        self.seen = []
        self.refuse = refuse
        super().__init__(self._answer)

    def _answer(self, request, server):
        with self.lock:
            self.seen.append((request.method, request.target, request.header("host"),
                              request.header("proxy-authorization")))
        if request.method == "CONNECT":
            return self._tunnel(request)
        return self._forward(request)

    def _forward(self, request):
        from urllib.parse import urlsplit
        parts = urlsplit(request.target)
        if parts.scheme != "http" or not parts.hostname:
            return [response(b"absolute http URLs only\n", "400 Bad Request"), CLOSE]
        lines = request.head.decode("latin-1").split("\r\n")
        origin_target = parts.path or "/"
        if parts.query:
            origin_target += "?" + parts.query
        start = "%s %s %s" % (request.method, origin_target, request.version)
        kept = [line for line in lines[1:] if not line.lower().startswith(
            ("proxy-connection:", "proxy-authorization:", "connection:"))]
        head = "\r\n".join([start] + kept + ["Connection: close", "", ""]).encode("latin-1")
        try:
            with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as up:
                up.sendall(head + request.body)
                with up.makefile("rb") as answer_stream:
                    answer = answer_stream.read()       # the origin closes after its answer
        except OSError as exc:
            return [response(("cannot reach %s: %s\n" % (parts.netloc, exc)).encode(),
                             "502 Bad Gateway"), CLOSE]
        return [answer, CLOSE]

    def _tunnel(self, request):
        if self.refuse:
            return [response(b"no tunnels here\n", "403 Forbidden"), CLOSE]
        host, _, port = request.target.rpartition(":")
        try:
            up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            return [response(b"", "502 Bad Gateway"), CLOSE]
        return [b"HTTP/1.1 200 Connection established\r\n\r\n",
                lambda conn: _relay(conn, up, self.stopped)]


def _relay(a, b, stopped):
    try:
        while not stopped.is_set():
            ready = select.select([a, b], [], [], 0.1)[0]
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        pass
    finally:
        b.close()
