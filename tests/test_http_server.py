"""servers.http over real sockets: static files, HTTP/1.1 semantics, errors, timeouts, the handler API.

Each server runs in-process on its own Reactor in a background thread (``Served``); clients are raw
sockets, ``http.client``, curl and wget.  ``test_http_server_security.py`` and
``test_http_server_cli.py`` import the harness from here.
"""
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventloop import Reactor
from servers.http import SERVER_NAME, EchoHandler, Handler, HTTPServer, StaticFiles, files, messages

# ----------------------------------------------------------------------------- harness


class Served:
    """An HTTPServer for ``app`` on 127.0.0.1, its own reactor running in a daemon thread."""

    def __init__(self, app, **options):
        self.reactor = Reactor()
        self.server = HTTPServer(("127.0.0.1", 0), app, reactor=self.reactor, **options)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.reactor.run, name="http-server", daemon=True)
        self._thread.start()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the reactor's thread; return its result."""
        done = threading.Event()
        box = []

        def run():
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # handed back to the test thread
                box.append((False, exc))
            done.set()

        self.reactor.call_soon_threadsafe(run)
        assert done.wait(5), "reactor thread did not answer"
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def wait_until(self, predicate, timeout=5.0):
        """True once ``predicate()``, checked on the reactor's thread every 10 ms, holds; False
        after ``timeout`` seconds."""
        done = threading.Event()

        def check():
            # The timer repeats until cancelled below; it may fire before call() returns it.
            if not done.is_set() and predicate():
                done.set()

        timer = self.call(self.reactor.call_every, 0.01, check)
        try:
            return done.wait(timeout)
        finally:
            self.reactor.call_soon_threadsafe(timer.cancel)

    def stop(self):
        self.call(self.server.shutdown)
        self.reactor.call_soon_threadsafe(self.reactor.stop)
        self._thread.join(5)
        assert not self._thread.is_alive()
        self.reactor.close()

    def connect(self, timeout=5.0):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def client(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)


class Resp:
    """A parsed response: ``status``, ``reason``, ``version``, ``headers`` (pairs), ``body``."""

    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<Resp %d %r %r>" % (self.status, self.headers, self.body[:60])


def read_response(f, method="GET"):
    """Read one response from the buffered socket file ``f`` (EOFError if the server closed)."""
    line = f.readline(70000)
    if not line:
        raise EOFError("connection closed before a response")
    version, status, reason = (line.decode("latin-1").rstrip("\r\n").split(" ", 2) + [""])[:3]
    status = int(status)
    headers = []
    while True:
        line = f.readline(70000)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name, value.strip()))
    resp = Resp(version, status, reason, headers, b"")
    if method == "HEAD" or status in (204, 304) or status < 200:
        return resp
    te = resp.header("Transfer-Encoding")
    cl = resp.header("Content-Length")
    if te is not None and "chunked" in te.lower():
        parts = []
        for _ in range(100000):
            size = int(f.readline(1000).split(b";")[0], 16)
            if size == 0:
                while f.readline(70000) not in (b"\r\n", b""):
                    pass
                break
            parts.append(f.read(size))
            assert f.read(2) == b"\r\n"
        resp.body = b"".join(parts)
    elif cl is not None:
        resp.body = f.read(int(cl))
    else:
        resp.body = f.read()
    return resp


def exchange(served, data, count=1, method="GET", timeout=5.0):
    """Send ``data`` on a new connection and read ``count`` responses."""
    with served.connect(timeout) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        try:
            return [read_response(f, method) for _ in range(count)]
        finally:
            f.close()


def closed_by_server(sock, timeout=5.0):
    """Read until EOF (True) or an error; everything read is discarded.  Bounded by ``timeout``."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    return False


def get(served, path, headers=None, method="GET", body=None):
    conn = served.client()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def make_tree(root):
    """The served tree used by these tests; returns a dict of interesting contents."""
    os.makedirs(root)
    small = b"".join(b"line %04d of a small text file\n" % i for i in range(34))[:1024]
    big = os.urandom(3 << 20)
    for rel, data in [("small.txt", small), ("big.bin", big), ("empty.txt", b""),
                      ("with index/index.html", b"<h1>index.html</h1>"),
                      ("htm/index.htm", b"<h1>index.htm</h1>"),
                      ("listing/a.txt", b"a"), ("listing/<b>&\"q\".txt", b"x"),
                      ("listing/sub/deep.txt", b"deep"), ("unicode/caf\u00e9.txt", b"cafe"),
                      ("tree/one.txt", b"one"), ("tree/d/two.txt", b"two" * 1000),
                      ("tree/d/e/three.bin", os.urandom(200000))]:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return {"small": small, "big": big}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    root = str(base / "www")
    contents = make_tree(root)
    contents["root"] = root
    return contents


@pytest.fixture(scope="module")
def static(tree):
    served = Served(StaticFiles(tree["root"]), max_body=4096, head_timeout=5.0,
                    keepalive_timeout=5.0)
    yield served
    served.stop()


# ------------------------------------------------------------------------ static files


def test_get_small_file_with_every_header(static, tree):
    status, h, body = get(static, "/small.txt")
    st_ = os.stat(os.path.join(tree["root"], "small.txt"))
    assert status == 200 and body == tree["small"]
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert h["content-length"] == "1024"
    assert h["last-modified"] == messages.http_date(st_.st_mtime)
    assert h["etag"] == files.etag_for(st_)
    assert h["accept-ranges"] == "bytes"
    assert h["server"] == SERVER_NAME
    assert messages.parse_http_date(h["date"]) is not None
    assert abs(messages.parse_http_date(h["date"]) - time.time()) < 5


def test_head_has_the_headers_and_no_body(static, tree):
    (r,) = exchange(static, b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", method="HEAD")
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Length") == str(len(tree["big"]))
    assert r.header("Content-Type") == "application/octet-stream"
    # Nothing followed the head: the next response on the connection starts cleanly.
    r1, r2 = exchange(static, b"HEAD /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\n", 2, method="HEAD")
    assert r1.header("Content-Length") == "1024" and r2.status == 200


def test_large_file_is_byte_exact_through_http_client(static, tree):
    status, h, body = get(static, "/big.bin")
    assert status == 200 and h["content-length"] == str(len(tree["big"]))
    assert hashlib.sha256(body).digest() == hashlib.sha256(tree["big"]).digest()


def test_empty_file(static):
    assert get(static, "/empty.txt")[::2] == (200, b"")


@pytest.mark.parametrize("path,expected", [("/with%20index/", b"<h1>index.html</h1>"),
                                           ("/htm/", b"<h1>index.htm</h1>")])
def test_index_files(static, path, expected):
    status, h, body = get(static, path)
    assert (status, body) == (200, expected)
    assert h["content-type"] == "text/html; charset=utf-8"


def test_directory_listing_is_html_and_escaped(static):
    status, h, body = get(static, "/listing/")
    assert status == 200 and h["content-type"] == "text/html; charset=utf-8"
    text = body.decode()
    assert "<title>Index of /listing/</title>" in text
    assert 'href="a.txt"' in text and 'href="sub/"' in text
    assert "&lt;b&gt;&amp;&quot;q&quot;.txt" in text and "<b>&" not in text


def test_unicode_names(static):
    assert get(static, "/unicode/caf%C3%A9.txt")[::2] == (200, b"cafe")
    assert "caf\u00e9.txt" in get(static, "/unicode/")[2].decode()


def test_directory_without_slash_redirects_keeping_the_query(static):
    status, h, body = get(static, "/listing?sort=name&x=%2F")
    assert status == 301 and h["location"] == "/listing/?sort=name&x=%2F"
    assert h["content-length"] == "0"


@pytest.mark.parametrize("target", ["//listing", "///listing", "//evil.example/../listing",
                                    "/%2Flisting"])
def test_redirects_never_leave_the_host(static, target):
    (r,) = exchange(static, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    if r.status == 301:
        location = r.header("Location")
        assert location.startswith("/") and not location.startswith("//")
    else:
        assert r.status == 404


def test_not_found_has_a_small_html_page(static):
    status, h, body = get(static, "/no/such/file")
    assert status == 404 and h["content-type"] == "text/html; charset=utf-8"
    assert b"404 Not Found" in body and len(body) < 1000


# ------------------------------------------------------------------------- conditionals


def test_if_none_match_gives_304(static):
    _, h, _ = get(static, "/small.txt")
    (r,) = exchange(static, b"GET /small.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n"
                    % h["etag"].encode())
    assert r.status == 304 and r.body == b""
    assert r.header("ETag") == h["etag"] and r.header("Last-Modified") == h["last-modified"]
    assert r.header("Date") and r.header("Server") == SERVER_NAME
    assert r.header("Content-Length") is None
    assert get(static, "/small.txt", {"If-None-Match": '"other"'})[0] == 200
    assert get(static, "/big.bin", {"If-None-Match": "*"})[0] == 304


def test_if_modified_since(static):
    _, h, _ = get(static, "/big.bin")
    assert get(static, "/big.bin", {"If-Modified-Since": h["last-modified"]})[0] == 304
    assert get(static, "/big.bin", {"If-Modified-Since": messages.http_date(0)})[0] == 200
    assert get(static, "/big.bin", {"If-Modified-Since": "garbage"})[0] == 200


def test_if_match_failure_is_412(static):
    status, _, body = get(static, "/small.txt", {"If-Match": '"nope"'})
    assert status == 412 and b"412" in body


# ------------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("name", ["small", "big"])
@pytest.mark.parametrize("spec,start,end", [("bytes=0-9", 0, 9), ("bytes=10-", 10, None),
                                            ("bytes=-7", -7, None), ("bytes=5-5", 5, 5),
                                            ("bytes=100-99999999", 100, None)])
def test_single_range_is_206(static, tree, name, spec, start, end):
    data = tree[name]
    path = "/small.txt" if name == "small" else "/big.bin"
    status, h, body = get(static, path, {"Range": spec})
    first = start if start >= 0 else len(data) + start
    last = len(data) - 1 if end is None else end
    assert status == 206 and body == data[first:last + 1]
    assert h["content-range"] == "bytes %d-%d/%d" % (first, last, len(data))
    assert h["content-length"] == str(last - first + 1)


def test_unsatisfiable_range_is_416(static, tree):
    status, h, body = get(static, "/big.bin", {"Range": "bytes=%d-" % len(tree["big"])})
    assert status == 416 and h["content-range"] == "bytes */%d" % len(tree["big"])
    assert b"416" in body


def test_invalid_ranges_and_bad_units_get_the_whole_file(static, tree):
    # (Several valid ranges get multipart/byteranges: test_http_ranges.py.)
    for spec in ("bytes=0-1,5-4", "items=0-1", "bytes=x-y"):
        status, _, body = get(static, "/small.txt", {"Range": spec})
        assert (status, body) == (200, tree["small"])


def test_if_range(static, tree):
    _, h, _ = get(static, "/small.txt")
    assert get(static, "/small.txt", {"Range": "bytes=0-3", "If-Range": h["etag"]})[0] == 206
    assert get(static, "/small.txt", {"Range": "bytes=0-3",
                                      "If-Range": h["last-modified"]})[0] == 206
    status, _, body = get(static, "/small.txt", {"Range": "bytes=0-3", "If-Range": '"old"'})
    assert (status, body) == (200, tree["small"])


def test_range_is_ignored_for_head(static):
    (r,) = exchange(static, b"HEAD /small.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n",
                    method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "1024"


def test_file_changes_are_seen(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"first")
    served = Served(StaticFiles(str(tmp_path)))
    try:
        assert get(served, "/f.txt")[2] == b"first"
        (tmp_path / "f.txt").write_bytes(b"second version")
        assert get(served, "/f.txt")[2] == b"second version"
        os.unlink(tmp_path / "f.txt")
        assert get(served, "/f.txt")[0] == 404
    finally:
        served.stop()


# ------------------------------------------------------------ keep-alive and pipelining


def test_http11_keeps_the_connection_open(static, tree):
    conn = static.client()
    try:
        socks = set()
        for path in ("/small.txt", "/big.bin", "/listing/", "/nope", "/small.txt"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            socks.add(id(conn.sock))
            assert r.getheader("Connection") is None
        assert len(socks) == 1
    finally:
        conn.close()


def test_http10_keep_alive_on_request(static, tree):
    with static.connect() as sock:
        f = sock.makefile("rb")
        for _ in range(3):
            sock.sendall(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = read_response(f)
            assert r.status == 200 and r.body == tree["small"]
            assert r.header("Connection") == "keep-alive"
        f.close()


def test_http10_without_keep_alive_closes(static, tree):
    with static.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.0\r\n\r\n")
        f = sock.makefile("rb")
        r = read_response(f)
        assert r.body == tree["small"] and r.header("Connection") == "close"
        assert f.read() == b""
        f.close()


def test_connection_close_is_honoured(static, tree):
    with static.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        f = sock.makefile("rb")
        r = read_response(f)
        assert r.status == 200 and r.header("Connection") == "close"
        assert f.read() == b""          # the second request is not answered
        f.close()


PIPELINE = (b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\n")


def _read_pipeline(f):
    return [read_response(f, m) for m in ("GET", "GET", "HEAD", "GET")]


def test_pipelined_requests_are_answered_in_order(static, tree):
    with static.connect() as sock:
        sock.sendall(PIPELINE)
        f = sock.makefile("rb")
        r = _read_pipeline(f)
        f.close()
    assert [x.status for x in r] == [200, 404, 200, 200]
    assert r[0].body == tree["small"] and r[2].header("Content-Length") == str(len(tree["big"]))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.integers(min_value=1, max_value=len(PIPELINE) - 1), max_size=8, unique=True))
def test_pipelines_in_any_chunking(static, tree, cuts):
    cuts = sorted(cuts)
    pieces = [PIPELINE[a:b] for a, b in zip([0] + cuts, cuts + [len(PIPELINE)])]
    with static.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
        f = sock.makefile("rb")
        r = _read_pipeline(f)
        f.close()
    assert [x.status for x in r] == [200, 404, 200, 200]
    assert r[0].body == tree["small"]


def test_pipelined_large_responses_stay_in_order(static, tree):
    req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    r = exchange(static, req * 3, 6, timeout=20)
    assert [x.body for x in r] == [tree["big"], tree["small"]] * 3


def test_idle_connection_gets_no_408(static):
    with static.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        f = sock.makefile("rb")
        assert read_response(f).status == 200
        f.close()


# ----------------------------------------------------------------------- 100-continue


class BodyEcho(Handler):
    """Echoes the body of POST and PUT; GET says hello."""

    def do_GET(self, request):
        request.respond(200, [("Content-Type", "text/plain")], b"Hello, world!\n")

    def do_POST(self, request):
        request.respond(200, (("Content-Type", "application/octet-stream"),), request.body)

    do_PUT = do_POST


@pytest.fixture(scope="module")
def echo_body():
    served = Served(BodyEcho(), max_body=64 << 10)
    yield served
    served.stop()


def test_expect_100_continue_when_the_handler_reads_the_body(echo_body):
    with echo_body.connect() as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        f = sock.makefile("rb")
        interim = read_response(f)
        assert (interim.status, interim.reason) == (100, "Continue")
        sock.sendall(b"hello")
        r = read_response(f)
        assert (r.status, r.body) == (200, b"hello")
        f.close()


def test_no_100_continue_when_the_body_is_not_wanted(static):
    with static.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        f = sock.makefile("rb")
        r = read_response(f)
        assert r.status == 200 and r.header("Connection") == "close"
        assert f.read() == b""
        f.close()
    with static.connect() as sock:
        sock.sendall(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        f = sock.makefile("rb")
        r = read_response(f)
        assert r.status == 405 and r.header("Allow") == "GET, HEAD"
        f.close()


def test_a_body_sent_without_expect_is_read_and_skipped(static, tree):
    r = exchange(static, b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                         b"GET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\n", 2)
    assert [x.status for x in r] == [200, 200] and r[0].body == tree["small"]


# ----------------------------------------------------------------------------- errors


def _error(served, data):
    with served.connect() as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        r = read_response(f)
        rest = f.read()     # the server closes after a protocol error
        f.close()
    return r, rest


@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                       # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded: no\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 8000 + b"\r\n" * 1
     + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 7000) for i in range(10)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101))
     + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n", 413),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/3\r\nHost: x\r\n\r\n", 400),                              # not HTTP/DIGIT.DIGIT
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
])
def test_protocol_errors(static, data, status):
    r, rest = _error(static, data)
    assert r.status == status
    assert r.header("Connection") == "close"
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert (b"%d " % status) in r.body and rest == b""
    assert get(static, "/small.txt")[0] == 200          # the server carries on


def test_chunked_body_over_the_limit_is_413(echo_body):
    chunk = b"%x\r\n%s\r\n" % (40000, b"z" * 40000)
    with echo_body.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunk + chunk)
        f = sock.makefile("rb")
        r = read_response(f)
        f.close()
    assert r.status == 413


def test_chunked_body_within_the_limit(echo_body):
    (r,) = exchange(echo_body, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert (r.status, r.body) == (200, b"hello world")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])
def test_other_known_methods_on_files_are_405(static, method):
    status, h, body = get(static, "/small.txt", method=method)
    assert status == 405 and h["allow"] == "GET, HEAD" and b"405" in body


def test_unknown_methods_are_501(static):
    (r,) = exchange(static, b"BREW /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 501 and b"501" in r.body


def test_truncated_head_at_eof(static):
    with static.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost")
        sock.shutdown(socket.SHUT_WR)
        f = sock.makefile("rb")
        r = read_response(f)
        f.close()
    assert r.status == 400


def test_half_closed_client_still_gets_its_responses(static, tree):
    with static.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        sock.shutdown(socket.SHUT_WR)
        f = sock.makefile("rb")
        r = [read_response(f), read_response(f)]
        assert f.read() == b""
        f.close()
    assert [x.body for x in r] == [tree["small"]] * 2


# ---------------------------------------------------------------------------- timeouts


@pytest.fixture
def quick(tree):
    served = Served(StaticFiles(tree["root"]), head_timeout=0.5, keepalive_timeout=0.5)
    yield served
    served.stop()


def test_slow_head_gets_408_and_is_closed(quick):
    with quick.connect() as sock:
        t0 = time.monotonic()
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHo")
        f = sock.makefile("rb")
        r = read_response(f)
        assert r.status == 408 and r.header("Connection") == "close"
        assert f.read() == b""
        f.close()
        assert 0.4 < time.monotonic() - t0 < 3


def test_head_deadline_is_not_extended_by_trickling(quick):
    with quick.connect() as sock:
        t0 = time.monotonic()
        sock.sendall(b"G")
        sock.settimeout(0.2)
        # Keep trickling a byte every 0.2 s: the head still times out ~0.5 s after it began.
        got = b""
        for byte in b"ET / HTTP/1.1\r\nHost: x\r\n":
            try:
                got = sock.recv(65536)
            except socket.timeout:
                pass
            if got:
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
        assert got.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - t0 < 3


def test_silent_connection_is_closed_without_a_response(quick):
    with quick.connect() as sock:
        t0 = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(100) == b""
        assert 0.4 < time.monotonic() - t0 < 3


def test_idle_keepalive_connection_is_closed(quick):
    with quick.connect() as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        f = sock.makefile("rb")
        assert read_response(f).status == 200
        t0 = time.monotonic()
        assert f.read() == b""
        f.close()
        assert 0.4 < time.monotonic() - t0 < 3


def test_stalled_body_gets_408(tree):
    served = Served(BodyEcho(), io_timeout=0.5)
    try:
        with served.connect() as sock:
            t0 = time.monotonic()
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            f = sock.makefile("rb")
            r = read_response(f)
            assert r.status == 408 and b"request body" in r.body
            assert f.read() == b""
            f.close()
            assert 0.4 < time.monotonic() - t0 < 3
    finally:
        served.stop()


def test_trickling_clients_do_not_delay_a_normal_one(tree):
    served = Served(StaticFiles(tree["root"]), head_timeout=30, keepalive_timeout=30)
    slow = []
    try:
        for i in range(50):
            s = served.connect()
            s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: slow\r\nX-")
            slow.append(s)
        conn = served.client()
        t0 = time.monotonic()
        for i in range(20):
            for s in slow[i::20]:
                s.sendall(b"a")                 # one more byte from some slow clients
            conn.request("GET", "/small.txt")
            r = conn.getresponse()
            assert r.status == 200 and len(r.read()) == 1024
        conn.close()
        assert time.monotonic() - t0 < 3
        assert served.call(lambda: len(served.server.channels)) >= 50
    finally:
        for s in slow:
            s.close()
        served.stop()


def test_head_timeout_closes_every_slowloris(tree):
    served = Served(StaticFiles(tree["root"]), head_timeout=0.5)
    slow = []
    try:
        for i in range(50):
            s = served.connect()
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        t0 = time.monotonic()
        assert all(closed_by_server(s, 5) for s in slow)
        assert time.monotonic() - t0 < 4
    finally:
        for s in slow:
            s.close()
        served.stop()


# ------------------------------------------------------------------- back-pressure / memory


def test_client_that_stops_reading_costs_bounded_memory(tree):
    served = Served(StaticFiles(tree["root"]))
    try:
        with served.connect() as sock:
            # Pipelined requests for a large file, never reading a byte of the answers.  Once
            # the client's sends block, the server has stopped reading: check what it holds.
            request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (b"p" * 4000)
            sock.settimeout(1.0)
            with pytest.raises(socket.timeout):
                for _ in range(100000):
                    sock.sendall(request)

            def state():
                ch = next(iter(served.server.channels))
                return ch._out.held, ch.reading, len(ch._out), len(ch.conn.trailing_data[0])

            held, reading, items, buffered = served.call(state)
            assert not reading            # input is not read while output is stuck
            assert held < 1 << 20 and items <= 3      # (the file itself waits unread)
            assert buffered <= 3 * 65536
    finally:
        served.stop()


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_client_vanishing_mid_download_releases_everything(tmp_path):
    with open(tmp_path / "huge.bin", "wb") as f:
        f.truncate(64 << 20)
    app = StaticFiles(str(tmp_path))
    served = Served(app)
    try:
        served.call(lambda: None)         # the reactor thread has opened its poller by now
        before = _open_fds() + 1          # the file cache keeps one descriptor on huge.bin
        for _ in range(5):
            sock = served.connect()
            sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()                              # abortive close: RST
        assert served.wait_until(lambda: not served.server.channels)
        assert served.call(lambda: app.cache.open_descriptors) == 1
        assert _open_fds() <= before
        assert get(served, "/huge.bin", {"Range": "bytes=0-3"})[::2] == (206, b"\0" * 4)
    finally:
        served.stop()


def test_stalled_reader_is_dropped_after_io_timeout(tree):
    served = Served(StaticFiles(tree["root"]), io_timeout=0.5)
    try:
        with served.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            t0 = time.monotonic()
            assert served.call(lambda: len(served.server.channels)) == 1
            # Not reading: the transfer makes no progress and the server gives up on it.
            assert served.wait_until(lambda: not served.server.channels)
            assert 0.4 < time.monotonic() - t0 < 3
    finally:
        served.stop()


def test_late_answer_to_a_vanished_client_is_harmless(demo):
    with demo.connect() as sock:
        sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    done = threading.Event()
    demo.reactor.call_soon_threadsafe(demo.reactor.call_later, 0.1, done.set)
    assert done.wait(5)
    assert get(demo, "/hello")[0] == 200


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _parallel_downloads(size, clients, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    root = tmp_path / "sparse"
    root.mkdir()
    with open(root / "huge.bin", "wb") as f:
        f.truncate(size)
    served = Served(StaticFiles(str(root)), io_timeout=60)
    try:
        before = _rss_kib()
        procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                                   served.url("/huge.bin")], stdout=subprocess.PIPE)
                 for _ in range(clients)]
        peak = before
        deadline = time.monotonic() + 120
        for p in procs:
            while True:
                peak = max(peak, _rss_kib())
                try:
                    p.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    assert time.monotonic() < deadline, "downloads too slow"
        sizes = [int(p.stdout.read()) for p in procs]
        for p in procs:
            p.stdout.close()
        assert sizes == [size] * clients
        assert peak - before < 32 * 1024, "RSS grew by %d KiB" % (peak - before)
    finally:
        served.stop()


def test_memory_stays_flat_for_10_parallel_256mib_downloads(tmp_path):
    _parallel_downloads(256 << 20, 10, tmp_path)


@pytest.mark.stress
def test_memory_stays_flat_for_10_parallel_1gib_downloads(tmp_path):
    _parallel_downloads(1 << 30, 10, tmp_path)


# -------------------------------------------------------------------------- real clients


def test_curl_download_is_byte_exact(static, tree, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = tmp_path / "out.bin"
    subprocess.run(["curl", "-sSf", "-o", str(out), static.url("/big.bin")], check=True,
                   timeout=30)
    assert out.read_bytes() == tree["big"]
    # And a resumed download (Range) completes the same file.
    part = tmp_path / "part.bin"
    part.write_bytes(tree["big"][:12345])
    subprocess.run(["curl", "-sSf", "-C", "-", "-o", str(part), static.url("/big.bin")],
                   check=True, timeout=30)
    assert part.read_bytes() == tree["big"]


def test_wget_mirrors_a_tree(static, tree, tmp_path):
    if shutil.which("wget") is None:
        pytest.skip("wget is not installed")
    dest = tmp_path / "mirror"
    subprocess.run(["wget", "-q", "-r", "-np", "-nH", "-R", "index.html*", "-P", str(dest),
                    static.url("/tree/")], check=True, timeout=60)
    for rel in ("tree/one.txt", "tree/d/two.txt", "tree/d/e/three.bin"):
        with open(os.path.join(tree["root"], rel), "rb") as f:
            assert (dest / rel).read_bytes() == f.read()


# ------------------------------------------------------------------------- handler API


class Demo(Handler):
    """Exercises every way of answering."""

    def do_GET(self, request):
        path = request.path
        if path == "/hello":
            request.respond(200, [("Content-Type", "text/plain")], b"Hello, world!\n")
        elif path == "/query":
            request.respond(200, {"Content-Type": "text/plain"},
                            ("%s|%s|%s" % (request.path, request.query, request.target)).encode())
        elif path == "/stream":
            request.start_response(200, [("Content-Type", "text/plain")])
            parts = iter([b"one ", b"two ", b"three"])
            reactor = request._channel.reactor

            def more():
                part = next(parts, None)
                if part is None:
                    request.finish()
                else:
                    request.write(part)
                    reactor.call_later(0.01, more)

            more()
        elif path == "/sized-stream":
            request.start_response(200, [("Content-Length", "10")])
            request.write(b"01234")
            request.write(b"56789")
            request.finish()
        elif path == "/drained":
            chunk = b"x" * 65536
            left = [64]
            request.start_response(200, [("Content-Type", "application/octet-stream")])

            def pump():
                while left[0] and request.buffered_bytes < 256 << 10:
                    request.write(chunk)
                    left[0] -= 1
                if left[0]:
                    request.when_drained(pump)
                else:
                    request.finish()

            pump()
        elif path == "/file":
            request.send_file(self.file)
        elif path == "/missing-file":
            request.send_file("/nonexistent/file")
        elif path == "/inject":
            request.respond(200, [("X-Echo", request.query.replace("_", "\r\n"))], b"no")
        elif path == "/crash":
            raise RuntimeError("handler bug")
        elif path == "/late":
            request._channel.reactor.call_later(0.05, request.respond, 200, None, b"late")
        else:
            request.send_error(404, "no route for <%s>" % path)

    def do_POST(self, request):
        request.respond(201, [("Content-Type", "application/octet-stream")], request.body)


@pytest.fixture(scope="module")
def demo(tree):
    app = Demo()
    app.file = os.path.join(tree["root"], "big.bin")
    served = Served(app)
    yield served
    served.stop()


def test_hello(demo):
    status, h, body = get(demo, "/hello")
    assert (status, body) == (200, b"Hello, world!\n")
    assert h["content-length"] == "14" and h["content-type"] == "text/plain"
    assert h["server"] == SERVER_NAME and "date" in h


def test_request_fields(demo):
    assert get(demo, "/query?a=1&b=%20")[2] == b"/query|a=1&b=%20|/query?a=1&b=%20"
    (r,) = exchange(demo, b"GET http://example.com/query?z HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert r.body == b"/query|z|http://example.com/query?z"


def test_post_body_echo(demo):
    body = os.urandom(50000)
    status, h, got = get(demo, "/anything", method="POST", body=body)
    assert (status, got) == (201, body)


def test_head_on_a_handler_sends_no_body(demo):
    (r,) = exchange(demo, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "14"
    r1, r2 = exchange(demo, b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 2, method="HEAD")
    assert r1.status == 200 and r2.status == 200


def test_streamed_response_is_chunked(demo):
    (r,) = exchange(demo, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.header("Transfer-Encoding") == "chunked" and r.body == b"one two three"


def test_streamed_response_with_length(demo):
    (r,) = exchange(demo, b"GET /sized-stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.header("Content-Length") == "10" and r.body == b"0123456789"


def test_streamed_response_to_http10_ends_with_close(demo):
    with demo.connect() as sock:
        sock.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        f = sock.makefile("rb")
        r = read_response(f)
        f.close()
    assert r.header("Connection") == "close" and r.body == b"one two three"


def test_closing_against_the_clients_wish_lingers_so_late_input_causes_no_reset(demo):
    """The client asked for keep-alive but the response must end the connection: the client
    may have sent more already, so the server reads on (and discards) until the client
    closes, instead of resetting the connection (which can destroy the response)."""
    with demo.connect() as sock:
        sock.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        f = sock.makefile("rb")
        r = read_response(f)
        assert r.header("Connection") == "close" and f.read() == b""
        f.close()
        sock.sendall(b"GET /hello HTTP/1.0\r\n\r\n")     # in flight when the server closed
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        assert sock.recv(100) == b"", "the server reset the connection instead of lingering"


def test_closing_as_the_client_asked_does_not_wait_for_the_client(static, tree):
    """``Connection: close`` from the client: nothing more can come, so the server closes
    at once; the client sees the end of the stream without closing first."""
    static.server.linger_timeout = 60.0     # a lingering server would outwait this test
    try:
        with static.connect() as sock:
            sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            f = sock.makefile("rb")
            assert read_response(f).body == tree["small"]
            assert f.read() == b""
            f.close()
            assert static.wait_until(lambda: not static.server.channels, timeout=10.0), \
                "the server waited for the client to close first"
    finally:
        del static.server.linger_timeout


def test_pipelined_requests_wait_for_a_late_response(demo):
    r = exchange(demo, b"GET /late HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 3)
    assert [x.body for x in r] == [b"late", b"Hello, world!\n", b"one two three"]


def test_when_drained_streams_in_bounded_memory(demo):
    status, _, body = get(demo, "/drained")
    assert status == 200 and body == b"x" * (64 * 65536)


def test_send_file_from_a_handler(demo, tree):
    status, h, body = get(demo, "/file", {"Range": "bytes=1-4"})
    assert (status, body) == (206, tree["big"][1:5])
    assert get(demo, "/file")[2] == tree["big"]
    assert get(demo, "/missing-file")[0] == 404


def test_header_injection_is_refused(demo):
    status, h, body = get(demo, "/inject?a_Set-Cookie:%20x=1")
    assert status == 500 and "set-cookie" not in h


def test_handler_errors_are_500_and_logged(demo, caplog):
    with caplog.at_level(logging.ERROR, logger="servers.http"):
        status, h, body = get(demo, "/crash")
    assert status == 500 and h["connection"] == "close"
    assert any("RuntimeError" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert get(demo, "/hello")[0] == 200


def test_error_detail_is_escaped(demo):
    status, _, body = get(demo, "/<script>")
    assert status == 404 and b"<script>" not in body and b"&lt;script&gt;" in body


def test_unrouted_methods(demo):
    assert get(demo, "/hello", method="DELETE")[0:2:1][0] == 405
    assert get(demo, "/hello", method="DELETE")[1]["allow"] == "GET, HEAD, POST"
    assert exchange(demo, b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n")[0].status == 501


def test_echo_handler_escapes_what_it_shows():
    served = Served(EchoHandler())
    try:
        (r,) = exchange(served, b"GET /a?<b>=1 HTTP/1.1\r\nHost: x\r\nX-Evil: <script>alert(1)"
                                b"</script>\r\nContent-Length: 3\r\n\r\nabc")
    finally:
        served.stop()
    page = r.body.decode()
    assert r.status == 200 and r.header("Content-Type") == "text/html; charset=utf-8"
    assert "GET /a?&lt;b&gt;=1 HTTP/1.1" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "<th>X-Evil</th>" in page and "3 body bytes" in page


# -------------------------------------------------------------------------- access log


def test_access_log_is_common_log_format(static, caplog):
    with caplog.at_level(logging.INFO, logger="servers.http.access"):
        get(static, "/small.txt")
        get(static, "/nope")
        static.call(lambda: None)       # the server thread has logged by now
    lines = [r.getMessage() for r in caplog.records if r.name == "servers.http.access"]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                        r'"GET /small\.txt HTTP/1\.1" 200 1024', lines[0])
    assert lines[1].endswith('"GET /nope HTTP/1.1" 404 %d' % len(messages.error_page(
        404, "Not Found", "File not found.")))


@pytest.mark.parametrize("fields", [
    b"",                                                        # HTTP/1.1 without Host
    b"Host: x\r\nHost: y\r\n",
    b"Host: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n",   # smuggling
    b"Host: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
])
def test_a_head_refused_after_parsing_is_logged_with_its_request_line(static, caplog, fields):
    with caplog.at_level(logging.INFO, logger="servers.http.access"):
        (r,) = exchange(static, b"GET /small.txt?q=1 HTTP/1.1\r\n" + fields + b"\r\n")
        static.call(lambda: None)
    assert r.status == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "servers.http.access"]
    assert len(lines) == 1 and '"GET /small.txt?q=1 HTTP/1.1" 400 ' in lines[0]
    assert get(static, "/small.txt")[0] == 200
    static.call(lambda: None)   # its access log line is out before the next test listens


def test_access_log_escapes_control_characters(static, caplog):
    with caplog.at_level(logging.INFO, logger="servers.http.access"):
        exchange(static, b"GET /\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n")   # 400: control char
        exchange(static, b"GET /a\x85b\x9bc\"d HTTP/1.1\r\nHost: x\r\n\r\n")  # C1 controls
        static.call(lambda: None)
    lines = [r.getMessage() for r in caplog.records if r.name == "servers.http.access"]
    assert len(lines) == 2
    for line in lines:
        assert line.isprintable() and "\x1b" not in line
    assert "\\x1b[31mred" in lines[0] and lines[0].endswith(" 400 " + lines[0].split()[-1])
    assert "/a\\x85b\\x9bc\\x22d" in lines[1]
