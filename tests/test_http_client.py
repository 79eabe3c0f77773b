"""AsyncHTTP against real servers: Python's http.server (HTTP/1.0, in a thread), a scripted raw
server on the same reactor (exact bytes, one piece per reactor pass), nginx when installed,
and the project's own servers.http when present.  Every test checks the consumer contract."""
import http.server
import importlib.util
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.http import (AsyncHTTP, FetchError, Redirect, close_idle_connections,
                          connection_pool, failures, fetch, retrieve)
from clients.http import resolver as resolver_module
from clients.http.bodies import FileBody
from eventloop import Dispatcher, Reactor
from eventloop.http11 import CLIENT, Connection
from eventloop.testing import chunkings

# ----------------------------------------------------------------------------- helpers


class CheckingConsumer:
    """Records everything and asserts the consumer contract as it goes: http_header once,
    feed only after a successful head and before close, close exactly once."""

    def __init__(self, on_close=None, on_header=None):
        self.statuses = []
        self.chunks = []
        self.closes = 0
        self.request = None
        self.on_close = on_close
        self.on_header = on_header

    def http_header(self, request):
        assert self.closes == 0, "http_header after close"
        assert not self.statuses, "http_header called twice"
        self.statuses.append(request.status)
        self.request = request
        if request.status is None:
            assert request.error, "failure without a reason"
        if self.on_header is not None:
            self.on_header(request)

    def feed(self, data):
        assert self.closes == 0, "feed after close"
        assert self.statuses and self.statuses[0] is not None, "feed before a good head"
        assert isinstance(data, bytes) and data
        self.chunks.append(data)

    def close(self):
        self.closes += 1
        assert self.closes == 1, "close called twice"
        if self.on_close is not None:
            self.on_close()

    @property
    def closed(self):
        return self.closes > 0

    @property
    def body(self):
        return b"".join(self.chunks)

    @property
    def status(self):
        return self.statuses[0] if self.statuses else None

    @property
    def error(self):
        return self.request.error if self.request is not None else None

    def check(self):
        """The whole contract, after the request ended."""
        assert self.closes == 1
        assert len(self.statuses) == 1
        if self.status is None:
            assert self.error and not self.chunks
        return self


def drive(reactor, until=None, limit=10.0):
    """Run passes until ``until()`` (default: the reactor has nothing left), at most ``limit`` s."""
    until = until or (lambda: not reactor.has_work())
    deadline = time.monotonic() + limit
    while not until():
        assert time.monotonic() < deadline, "the reactor did not settle in %ss" % limit
        reactor.run_once(0.05)


@pytest.fixture
def reactor():
    r = Reactor()
    yield r
    close_idle_connections(r)
    for channel in list(r.map.values()):
        channel.close()
    r.close()


class RawRequest:
    def __init__(self, head, body):
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = lines[0].split(" ")
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.body = body


CLOSE = "close"     # script step: close the connection
HOLD = "hold"       # script step: say nothing more (the client's timeout must act)


class ScriptedServer(Dispatcher):
    """A listener on the test's reactor.  For each request, ``respond(request, connection_number)``
    returns the steps to play: bytes (sent one item per reactor pass), CLOSE or HOLD."""

    def __init__(self, reactor, respond):
        Dispatcher.__init__(self, map=reactor.map)
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(16)
        self.port = self.socket.getsockname()[1]
        self.respond = respond
        self.connections = 0
        self.requests = []
        self.channels = []

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def handle_accepted(self, sock, addr):
        self.connections += 1
        self.channels.append(ScriptedConnection(sock, self, self.connections))

    def shutdown(self):
        for channel in self.channels:
            channel.close()
        self.close()


class ScriptedConnection(Dispatcher):
    def __init__(self, sock, server, number):
        Dispatcher.__init__(self, sock, server._map)
        self.server = server
        self.number = number
        self.buf = b""
        self.steps = []
        self.busy = False

    def handle_read(self):
        self.buf += self.recv(65536)
        self._next_request()

    def handle_close(self):
        self.close()

    def _next_request(self):
        if self.busy or b"\r\n\r\n" not in self.buf:
            return
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        request = RawRequest(head, b"")
        length = int(request.headers.get("content-length", "0"))
        if len(rest) < length:
            return
        request.body, self.buf = rest[:length], rest[length:]
        self.server.requests.append((self.number, request))
        self.steps = list(self.server.respond(request, self.number))
        self.busy = True
        self.server.reactor.call_soon(self._step)

    def _step(self):
        if self.socket is None or not self.steps:
            return
        step = self.steps.pop(0)
        if step == CLOSE:
            self.close()
            return
        if step == HOLD:
            return
        self.socket.setblocking(True)
        self.socket.sendall(step)
        self.socket.setblocking(False)
        if self.steps:
            self.server.reactor.call_soon(self._step)
        else:
            self.busy = False
            self._next_request()


def response(body=b"", status="200 OK", headers=(), version="1.1"):
    head = "HTTP/%s %s\r\nContent-Length: %d\r\n" % (version, status, len(body))
    head += "".join("%s: %s\r\n" % h for h in headers)
    return head.encode() + b"\r\n" + body


# ----------------------------------------------------------------------------- http.server

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, plus /close-delimited (no Content-Length) and /echo (the request back)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/close-delimited":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(CLOSE_DELIMITED_BODY)
            return
        if self.path.startswith("/echo"):
            return self._echo()
        return super().do_GET()

    def do_POST(self):
        self._echo()

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        out = ("%s %s\n" % (self.command, self.path)).encode() + \
            "".join("%s: %s\n" % kv for kv in self.headers.items()).encode() + b"\n" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


CLOSE_DELIMITED_BODY = bytes(range(256)) * 300
BIG = os.urandom(300_000)


class ThreadedHTTPServer:
    """Python's http.server (HTTP/1.0, one thread per connection) serving ``root``."""

    def __init__(self, root, handler=_Handler):
        handler_class = type("H", (handler,), {})
        handler_class.directory = str(root)
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: handler_class(*a, directory=str(root)))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "small.txt").write_bytes(b"hello, world\n")
    (root / "big.bin").write_bytes(BIG)
    for i in range(20):
        (root / ("f%d.txt" % i)).write_bytes(b"file %d\n" % i * (i + 1))
    (root / "dir").mkdir()
    server = ThreadedHTTPServer(root)
    yield server
    server.stop()


def get(reactor, url, consumer=None, **kwargs):
    consumer = consumer or CheckingConsumer()
    AsyncHTTP(url, consumer, reactor=reactor, **kwargs)
    return consumer


def test_get_a_file_from_http_server(reactor, site):
    c = get(reactor, site.url("/small.txt"))
    drive(reactor)
    c.check()
    assert c.status == ("HTTP/1.0", 200, "OK")
    assert c.body == b"hello, world\n"
    req = c.request
    assert req.error is None and req.url == site.url("/small.txt")
    assert req.header["content-length"] == "13" == req.header["CONTENT-LENGTH"]
    assert "Content-Type" in req.header and dict(req.header)["Content-Length"] == "13"
    assert not reactor.map


def test_large_and_close_delimited_bodies(reactor, site):
    big = get(reactor, site.url("/big.bin"))
    delimited = get(reactor, site.url("/close-delimited"))
    drive(reactor)
    assert big.check().body == BIG
    assert delimited.check().body == CLOSE_DELIMITED_BODY
    assert "content-length" not in delimited.request.header


def test_404_head_and_many_concurrent(reactor, site):
    missing = get(reactor, site.url("/nope"))
    head = get(reactor, site.url("/big.bin"), method="HEAD")
    many = [get(reactor, site.url("/f%d.txt" % i)) for i in range(20)]
    drive(reactor)
    assert missing.check().status[1] == 404 and missing.error is None and missing.body
    assert head.check().status[1] == 200 and head.body == b""
    assert head.request.header["content-length"] == str(len(BIG))
    for i, c in enumerate(many):
        assert c.check().body == b"file %d\n" % i * (i + 1)


def test_post_body_and_headers_reach_the_server(reactor, site):
    c = get(reactor, site.url("/echo?x=1"), method="POST", body=b"a=1&b=2",
            headers={"X-Test": "yes", "Content-Type": "text/plain"})
    drive(reactor)
    text = c.check().body.decode()
    assert text.startswith("POST /echo?x=1\n")
    assert "X-Test: yes" in text and "Content-Length: 7" in text and text.endswith("\na=1&b=2")
    assert "Host: 127.0.0.1:%d" % site.port in text


def test_fetch_and_retrieve(site, tmp_path):
    r = fetch(site.url("/small.txt"))
    assert (r.status, r.reason, r.body, r.url, r.history) == (
        200, "OK", b"hello, world\n", site.url("/small.txt"), [])
    assert r.headers["Content-Length"] == "13"
    assert fetch(site.url("/nope")).status == 404
    target = tmp_path / "big.bin"
    name, headers = retrieve(site.url("/big.bin"), target)
    assert name == target and target.read_bytes() == BIG
    assert headers["content-length"] == str(len(BIG))
    with pytest.raises(FetchError) as info:
        retrieve(site.url("/nope"), tmp_path / "nope")
    assert "404" in info.value.reason
    assert sorted(os.listdir(tmp_path)) == ["big.bin"]
    name, _ = retrieve(site.url("/small.txt"))
    try:
        assert open(name, "rb").read() == b"hello, world\n"
    finally:
        os.unlink(name)


def test_retrieve_writes_into_a_fifo_and_through_a_symlink_as_curl_does(site, tmp_path):
    """A target that is not a regular file is written to, not renamed over (renaming a
    temporary file over ``-o /dev/null`` replaced the device with a regular file); a symlink's
    target gets the body and the link stays a link."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    retrieve(site.url("/big.bin"), fifo)
    reader.join(10)
    assert got == [BIG] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    retrieve(site.url("/small.txt"), link)
    assert link.is_symlink() and real.read_bytes() == b"hello, world\n"
    assert sorted(os.listdir(tmp_path)) == ["link.bin", "pipe", "real.bin"]


def test_fetch_from_threads_while_another_reactor_runs(reactor, site):
    results, errors = [], []

    def worker(i):
        try:
            results.append(fetch(site.url("/f%d.txt" % i)).body)
        except Exception as exc:       # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    mine = [get(reactor, site.url("/big.bin")) for _ in range(3)]
    for t in threads:
        t.start()
    drive(reactor)
    for t in threads:
        t.join(10)
    assert not errors
    assert sorted(results) == sorted(b"file %d\n" % i * (i + 1) for i in range(6))
    assert all(c.check().body == BIG for c in mine)


def test_failures_reach_the_consumer(reactor):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()        # nothing listens there now
    refused = get(reactor, "http://127.0.0.1:%d/" % port)
    bad_scheme = get(reactor, "ftp://example.com/")
    no_host = get(reactor, "http:///path")
    bad_header = get(reactor, "http://127.0.0.1:%d/" % port, headers={"Bad Name": "x"})
    bad_headers = get(reactor, "http://127.0.0.1:%d/" % port, headers="X-A: 1")
    bad_body = get(reactor, "http://127.0.0.1:%d/" % port, method="POST", body=5)
    bad_method = get(reactor, "http://127.0.0.1:%d/" % port, method="GE T")
    drive(reactor)
    assert "headers must be a mapping" in bad_headers.check().error
    assert bad_body.check().error == "invalid request: body must be bytes or str, not int"
    assert bad_method.check().error == "invalid request: illegal method 'GE T'"
    assert refused.check().status is None and "connection refused" in refused.error
    assert "unsupported URL scheme 'ftp'" in bad_scheme.check().error
    assert "no host" in no_host.check().error
    assert "invalid request" in bad_header.check().error


def test_dns_failure_and_slow_dns_does_not_freeze_the_loop(reactor, site, monkeypatch):
    release = threading.Event()
    order = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        assert host == "slow.test"
        if not release.wait(5):
            raise socket.gaierror(socket.EAI_AGAIN, "test resolver was never released")
        return socket.getaddrinfo("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(resolver_module, "getaddrinfo", fake_getaddrinfo)
    # No timeout: no timer keeps the loop alive, only the reactor's hold() while resolving.
    slow = get(reactor, "http://slow.test:%d/small.txt" % site.port,
               CheckingConsumer(on_close=lambda: order.append("slow")), timeout=None)
    get(reactor, site.url("/small.txt"),
        CheckingConsumer(on_close=lambda: (order.append("fast"), release.set())))
    nowhere = get(reactor, "http://nowhere.test/")
    drive(reactor)
    assert order == ["fast", "slow"]
    assert slow.check().body == b"hello, world\n"
    assert slow.request.header is not None
    assert nowhere.check().error == "cannot resolve 'nowhere.test': Name or service not known"


def test_numeric_addresses_and_localhost_need_no_lookup_thread(reactor, site, monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("a resolver thread was used for %r" % (args,))

    monkeypatch.setattr(resolver_module, "getaddrinfo", no_lookup)
    consumers = [get(reactor, "http://%s:%d/small.txt" % (host, site.port))
                 for host in ("127.0.0.1", "localhost", "LOCALHOST")]
    drive(reactor)
    assert all(c.check().body == b"hello, world\n" for c in consumers)


def test_dns_timeout_lets_the_loop_finish(reactor, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(resolver_module, "getaddrinfo", lambda *a, **k: release.wait(5) and [])
    try:
        c = get(reactor, "http://slow.test/", timeout=0.2)
        started = time.monotonic()
        drive(reactor)
        assert time.monotonic() - started < 2
        assert c.check().error == "timed out resolving 'slow.test' after 0.2s"
    finally:
        release.set()


def test_connect_timeout(reactor):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())     # fills the accept queue
    try:
        c = get(reactor, "http://127.0.0.1:%d/" % listener.getsockname()[1], timeout=0.3)
        drive(reactor)
        assert c.check().status is None
        assert c.error.startswith("timed out connecting to 127.0.0.1:")
    finally:
        filler.close()
        listener.close()


# ----------------------------------------------------------------------------- scripted server

@pytest.fixture
def scripted(reactor):
    servers = []

    def make(respond):
        server = ScriptedServer(reactor, respond)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


def fetch_one(reactor, server, path="/", consumer=None, limit=10.0, **kwargs):
    consumer = get(reactor, server.url(path), consumer, **kwargs)
    watched = getattr(consumer, "consumer", consumer)     # the consumer a Redirect wraps
    drive(reactor, lambda: watched.closed, limit)
    return consumer


def chunked(pieces, ext=True, trailers=(("X-Sum", "42"),)):
    out = b""
    for i, piece in enumerate(pieces):
        out += b"%x" % len(piece)
        if ext:
            out += [b"", b";a=b", b' ; name="quoted \\" value"', b";flag"][i % 4]
        out += b"\r\n" + piece + b"\r\n"
    out += b"0" + (b";last=1" if ext else b"") + b"\r\n"
    out += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in trailers)
    return out + b"\r\n"


def test_chunked_with_extensions_and_trailers(reactor, scripted):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    server = scripted(lambda req, n: [head, chunked([b"hello, ", b"chunked ", b"world"])])
    c = fetch_one(reactor, server)
    assert c.check().body == b"hello, chunked world"
    assert c.request.trailers["x-sum"] == "42"
    assert c.request.error is None


def test_one_byte_at_a_time_with_interim_responses(reactor, scripted):
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
           + response(b"byte by byte", headers=[("X-A", "1")]))
    server = scripted(lambda req, n: [raw[i:i + 1] for i in range(len(raw))])
    c = fetch_one(reactor, server)
    assert c.check().body == b"byte by byte"
    assert c.status == ("HTTP/1.1", 200, "OK")
    assert c.request.interim == [(100, "Continue"), (103, "Early Hints")]


def _raw_response(data, body):
    framing = data.draw(st.sampled_from(["length", "chunked", "close", "interim", "http10"]))
    if framing == "chunked":
        cuts = sorted(data.draw(st.sets(st.integers(1, max(len(body) - 1, 1)), max_size=5)))
        edges = [0] + [c for c in cuts if c < len(body)] + [len(body)]
        pieces = [body[i:j] for i, j in zip(edges, edges[1:]) if j > i]
        ext = data.draw(st.booleans())
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(pieces, ext), \
            framing
    if framing == "close":
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body, framing
    if framing == "interim":
        return b"HTTP/1.1 100 Continue\r\n\r\n" + response(body), framing
    if framing == "http10":
        return response(body, version="1.0"), framing
    return response(body, headers=[("Content-Type", "application/octet-stream")]), framing


@settings(max_examples=40)
@given(data=st.data())
def test_any_chunking_of_any_framing(data):
    body = data.draw(st.binary(max_size=200))
    raw, framing = _raw_response(data, body)
    pieces = data.draw(chunkings(raw))
    if framing == "close":
        pieces = pieces + [CLOSE]
    r = Reactor()
    server = ScriptedServer(r, lambda req, n: pieces)
    try:
        c = fetch_one(r, server)
        assert c.check().body == body
        assert c.error is None and c.status[1] == 200
    finally:
        close_idle_connections(r)
        server.shutdown()
        r.close()


@settings(max_examples=30)
@given(data=st.data())
def test_truncated_bodies_are_errors_whatever_the_chunking(data):
    body = data.draw(st.binary(min_size=2, max_size=100))
    keep = data.draw(st.integers(0, len(body) - 1))
    if data.draw(st.booleans()):
        raw = response(body)[:-len(body) + keep or None] if keep else response(body)[:-len(body)]
        expected = "connection closed after %d of %d body bytes" % (keep, len(body))
    else:
        full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked([body], False, ())
        raw = full[:full.index(b"\r\n\r\n") + 4 + len(b"%x\r\n" % len(body)) + keep]
        expected = "connection closed after %d body bytes, before the end of the chunked body" % keep
    pieces = data.draw(chunkings(raw)) + [CLOSE]
    r = Reactor()
    server = ScriptedServer(r, lambda req, n: pieces)
    try:
        c = fetch_one(r, server)
        c.check()
        assert c.status[1] == 200 and c.body == body[:keep]
        assert c.error == expected
    finally:
        server.shutdown()
        r.close()


def test_server_closing_mid_body(reactor, scripted):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    server = scripted(lambda req, n: [head, b"x" * 512, CLOSE])
    c = fetch_one(reactor, server)
    c.check()
    assert c.status[1] == 200 and len(c.body) == 512
    assert c.error == "connection closed after 512 of 1000 body bytes"


@pytest.mark.parametrize("steps, reason", [
    ([CLOSE], "the server closed the connection without sending a response"),
    ([b"HTTP/1.1 200 OK\r\nContent-Le", CLOSE], "connection closed in the middle of the response head"),
    ([b"HTTP/9.9 200 OK\r\n\r\n"], "invalid response: unsupported HTTP version 'HTTP/9.9'"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"],
     "invalid response: conflicting Content-Length values ['3', '4']"),
])
def test_bad_responses_are_reported(reactor, scripted, steps, reason):
    server = scripted(lambda req, n: steps)
    c = fetch_one(reactor, server)
    assert c.check().status is None
    assert c.error == reason


def test_responses_without_body(reactor, scripted):
    answers = {"/204": [b"HTTP/1.1 204 No Content\r\n\r\n"],
               "/304": [b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"],
               "/head": [b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"]}
    server = scripted(lambda req, n: answers[req.target])
    for path, method in [("/204", "GET"), ("/304", "GET"), ("/head", "HEAD"), ("/204", "GET")]:
        c = fetch_one(reactor, server, path, method=method)
        assert c.check().body == b"" and c.error is None
    assert server.connections == 1       # all four on one kept-alive connection


def test_keep_alive_reuse_for_sequential_requests(reactor, scripted):
    server = scripted(lambda req, n: [response(req.target.encode())])
    done = []

    def chain(i):
        if i < 5:
            get(reactor, server.url("/%d" % i), CheckingConsumer(on_close=lambda: chain(i + 1)))
        done.append(i)

    chain(0)
    drive(reactor, lambda: len(done) == 6)
    assert server.connections == 1 and len(server.requests) == 5


def test_reused_connection_closed_by_the_server_is_retried_once(reactor, scripted):
    def respond(req, n):
        if n == 1 and len(server.requests) > 1:
            return [CLOSE]           # the kept-alive connection dies as the request arrives
        return [response(b"conn %d" % n)]

    server = scripted(respond)
    first = fetch_one(reactor, server, "/a")
    assert first.check().body == b"conn 1"
    second = fetch_one(reactor, server, "/b")
    assert second.check().body == b"conn 2" and second.error is None
    assert server.connections == 2


def test_reused_connection_closed_is_not_retried_for_post(reactor, scripted):
    def respond(req, n):
        return [CLOSE] if len(server.requests) > 1 else [response(b"ok")]

    server = scripted(respond)
    fetch_one(reactor, server, "/a").check()
    c = fetch_one(reactor, server, "/b", method="POST", body=b"once")
    assert c.check().status is None
    assert c.error == "the server closed the connection without sending a response"
    assert server.connections == 1


def test_idle_connection_closed_meanwhile_is_not_reused(reactor, scripted):
    server = scripted(lambda req, n: [response(b"conn %d" % n)])
    assert fetch_one(reactor, server).check().body == b"conn 1"
    server.channels[0].close()
    drive(reactor, lambda: True)
    c = fetch_one(reactor, server)
    assert c.check().body == b"conn 2" and not c.request.reused


def test_idle_timeout_waiting_for_the_response(reactor, scripted):
    server = scripted(lambda req, n: [HOLD])
    c = fetch_one(reactor, server, timeout=0.2)
    assert c.check().status is None
    assert c.error == "timed out waiting for the response: nothing from the server for 0.2s"


def test_idle_timeout_mid_body(reactor, scripted):
    server = scripted(lambda req, n: [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", HOLD])
    c = fetch_one(reactor, server, timeout=0.2)
    c.check()
    assert c.body == b"abc"
    assert c.error == "timed out receiving the body (3 bytes so far): nothing from the server " \
                      "for 0.2s"


def test_the_connect_deadline_gives_way_to_the_idle_timeout(reactor, scripted):
    # Connected at once: from then on only ``timeout`` counts, not the shorter connect bound.
    server = scripted(lambda req, n: [HOLD])
    started = time.monotonic()
    c = fetch_one(reactor, server, timeout=0.6, connect_timeout=0.1)
    assert c.check().status is None
    assert c.error == "timed out waiting for the response: nothing from the server for 0.6s"
    assert time.monotonic() - started >= 0.6


def test_the_idle_timeout_does_not_cut_the_connect_deadline_short(reactor):
    # Resolving takes longer than ``timeout``: it is bounded by ``connect_timeout`` alone.
    release = threading.Event()

    def slow(host, port, *args, **kwargs):
        release.wait(5)
        return []

    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resolver_module, "getaddrinfo", slow)
        try:
            c = get(reactor, "http://slow.test/", timeout=0.1, connect_timeout=0.5)
            drive(reactor)
        finally:
            release.set()
    assert c.check().error == "timed out resolving 'slow.test' after 0.5s"
    assert c.request.failure == failures.TIMEOUT
    assert time.monotonic() - started >= 0.5


def test_a_streamed_body_waits_one_chunk_at_a_time_for_a_server_that_does_not_read(reactor,
                                                                                 tmp_path):
    # Back-pressure: the next chunk is read from the file only once the kernel took the one
    # before, so what waits in memory stays within one chunk while the server reads nothing.
    from clients.http.bodies import CHUNK
    listener = socket.socket()          # the kernel accepts; nobody reads
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(32 << 20)
    c = CheckingConsumer()
    request = AsyncHTTP("http://127.0.0.1:%d/" % listener.getsockname()[1], c, "PUT",
                        body=FileBody([path]), reactor=reactor)
    waiting = 0
    try:
        for _ in range(2000):
            reactor.run_once(0.01)
            assert request.queued_bytes <= CHUNK
            waiting += request.queued_bytes > 0
            if waiting >= 20:
                break
        assert waiting >= 20, "the upload never had to wait for the kernel"
        assert not c.closed
    finally:
        request.abort("the test is over")
        listener.close()
    assert c.check().status is None and c.request.failure == failures.ABORTED


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "FileBody"])
def test_a_send_that_finds_the_server_gone_is_a_send_failure(reactor, tmp_path, streamed):
    """The request's first send meets a peer that has closed (EPIPE): the request fails as
    a send failure (curl's exit 55), in the error's own words, and a POST is not retried."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection_pool(reactor).checkin(("http", "127.0.0.1", 9, None), ours, Connection(CLIENT))

    class ClosesThePeer:
        def reusing(self, request):
            theirs.close()

    body = b"x" * 1000
    if streamed:
        (tmp_path / "body").write_bytes(body)
        body = FileBody([tmp_path / "body"])
    c = get(reactor, "http://127.0.0.1:9/", method="POST", body=body, observer=ClosesThePeer())
    drive(reactor)
    assert c.check().status is None
    assert c.request.reused
    assert (c.request.failure, c.error) == (failures.SEND, "connection lost: Broken pipe")


# ----------------------------------------------------------------------------- consumers

class Raising(CheckingConsumer):
    def __init__(self, where):
        super().__init__()
        self.where = where

    def http_header(self, request):
        super().http_header(request)
        if self.where == "http_header":
            raise RuntimeError("boom in header")

    def feed(self, data):
        super().feed(data)
        if self.where == "feed":
            raise RuntimeError("boom in feed")


@pytest.mark.parametrize("where", ["http_header", "feed"])
def test_consumer_exceptions_close_the_request_only(reactor, scripted, where, caplog):
    server = scripted(lambda req, n: [response(b"x" * 10)])
    bad = get(reactor, server.url("/bad"), Raising(where))
    good = get(reactor, server.url("/good"))
    drive(reactor, lambda: bad.closed and good.closed)
    bad.check()
    assert bad.error == "consumer %s() raised RuntimeError: boom in %s" % (
        where, where.replace("http_", ""))
    assert good.check().body == b"x" * 10
    assert "consumer" in caplog.text


def test_consumer_may_close_from_http_header(reactor, scripted):
    server = scripted(lambda req, n: [response(b"unwanted")])
    events = []
    c = CheckingConsumer(on_header=lambda request: (request.close(), events.append("closed")),
                         on_close=lambda: events.append("consumer close"))
    fetch_one(reactor, server, consumer=c)
    c.check()
    assert events == ["closed", "consumer close"]     # close() never nested in http_header
    assert c.body == b"" and c.error is None


# ----------------------------------------------------------------------------- redirects

def redirecting(routes):
    def respond(req, n):
        status, location = routes.get(req.target, (200, None))
        if location is None:
            return [response(("%s %s %s" % (req.method, req.target, req.body.decode())).encode())]
        return [response(b"moved", "%d Moved" % status, [("Location", location)])]
    return respond


def test_redirect_chain_through_every_status(reactor, scripted):
    server = scripted(None)
    server.respond = redirecting({"/a": (301, "/b"), "/b": (302, "c"), "/c": (303, "/d?x=1"),
                                  "/d?x=1": (307, "http://127.0.0.1:%d/e" % server.port),
                                  "/e": (308, "/f")})
    inner = CheckingConsumer()
    wrapper = Redirect(inner)
    fetch_one(reactor, server, "/a", wrapper, method="POST", body=b"data")
    inner.check()
    assert inner.body == b"GET /f "           # 301 turned POST into GET
    assert inner.request.url == server.url("/f")
    assert wrapper.history == inner.request.history == [
        (301, server.url("/b")), (302, server.url("/c")), (303, server.url("/d?x=1")),
        (307, server.url("/e")), (308, server.url("/f"))]
    assert server.connections == 1            # redirect bodies were read: the connection stayed


def test_redirect_keeps_method_for_307(reactor, scripted):
    server = scripted(redirecting({"/a": (307, "/b")}))
    inner = CheckingConsumer()
    fetch_one(reactor, server, "/a", Redirect(inner), method="POST", body=b"data")
    assert inner.check().body == b"POST /b data"


@pytest.mark.parametrize("routes, max_redirects, error", [
    ({"/a": (302, "/b"), "/b": (302, "/a")}, 10, "redirect loop: 'http://127.0.0.1:PORT/a' "
                                                  "(after 1 redirects)"),
    ({"/a": (302, "/b"), "/b": (302, "/c"), "/c": (302, "/d")}, 2,
     "more than 2 redirects: 'http://127.0.0.1:PORT/d' (after 2 redirects)"),
    ({"/a": (301, "ftp://x/")}, 10, "ftp"),
])
def test_redirect_failures(reactor, scripted, routes, max_redirects, error):
    server = scripted(redirecting(routes))
    inner = CheckingConsumer()
    fetch_one(reactor, server, "/a", Redirect(inner, max_redirects))
    assert inner.check().status is None
    assert error.replace("PORT", str(server.port)) in inner.error


def test_redirect_without_location_is_final(reactor, scripted):
    server = scripted(lambda req, n: [response(b"no location", "302 Found")])
    inner = CheckingConsumer()
    fetch_one(reactor, server, "/", Redirect(inner))
    assert inner.check().status[1] == 302 and inner.body == b"no location"


def test_redirect_to_a_dead_server_reports_the_failure(reactor, scripted):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    server = scripted(redirecting({"/": (302, "http://127.0.0.1:%d/x" % port)}))
    inner = CheckingConsumer()
    fetch_one(reactor, server, "/", Redirect(inner))
    assert inner.check().status is None and "connection refused" in inner.error


def test_fetch_redirect_and_its_failures(site):
    # http.server redirects a directory without its slash: /dir -> /dir/
    r = fetch(site.url("/dir"))
    assert r.status == 200 and r.url == site.url("/dir/")
    assert r.history == [(301, site.url("/dir/"))]
    r = fetch(site.url("/dir"), follow_redirects=False)
    assert r.status == 301 and r.headers["location"] == "/dir/"
    with pytest.raises(FetchError) as info:
        fetch(site.url("/dir"), max_redirects=0)
    assert "more than 0 redirects" in str(info.value)


# ----------------------------------------------------------------------------- nginx

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    root = tmp_path_factory.mktemp("nginx")
    (root / "html").mkdir()
    (root / "html" / "final.txt").write_bytes(b"the end\n")
    for i in range(30):
        (root / "html" / ("s%d.txt" % i)).write_bytes(b"static %d\n" % i * 100)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text("""
%s
worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %s/tmp;
    keepalive_requests 1000;
    server {
        listen 127.0.0.1:%d;
        root %s/html;
        location = /r301 { return 301 /r302; }
        location = /r302 { return 302 /r303; }
        location = /r303 { return 303 /r307; }
        location = /r307 { return 307 /r308; }
        location = /r308 { return 308 /final.txt; }
        location = /abs { absolute_redirect on; return 302 /final.txt; }
        location = /loop1 { return 302 /loop2; }
        location = /loop2 { return 302 /loop1; }
        location = /conn { return 200 "$connection"; }
        absolute_redirect off;
    }
}
""" % (user, root, root, root, port, root))
    # The socket is passed to nginx already listening (its binary-upgrade protocol), so no
    # connection can arrive before it is ready and nothing has to wait for it.
    env = dict(os.environ, NGINX="%d;" % listener.fileno())
    proc = subprocess.Popen([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root)],
                            env=env, pass_fds=[listener.fileno()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()
    yield "http://127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(10)


def test_nginx_redirect_chain_relative_locations(reactor, nginx):
    inner = CheckingConsumer()
    get(reactor, nginx + "/r301", Redirect(inner))
    drive(reactor)
    assert inner.check().body == b"the end\n"
    assert [status for status, _ in inner.request.history] == [301, 302, 303, 307, 308]
    assert inner.request.url == nginx + "/final.txt"
    r = fetch(nginx + "/abs")
    assert r.body == b"the end\n" and r.history == [(302, nginx + "/final.txt")]


def test_nginx_loop_404_and_keep_alive(reactor, nginx):
    with pytest.raises(FetchError) as info:
        fetch(nginx + "/loop1")
    assert "redirect loop" in info.value.reason
    assert fetch(nginx + "/missing").status == 404
    seen = []

    def chain(i):
        if i < 3:
            get(reactor, nginx + "/conn", CheckingConsumer(
                on_header=lambda request: seen.append(request.reused),
                on_close=lambda: chain(i + 1)))

    chain(0)
    drive(reactor)
    assert seen == [False, True, True]


def test_nginx_many_concurrent(reactor, nginx):
    consumers = [get(reactor, nginx + "/s%d.txt" % i) for i in range(30)]
    drive(reactor)
    for i, c in enumerate(consumers):
        assert c.check().body == b"static %d\n" % i * 100


# ----------------------------------------------------------------------------- servers.http

def _project_server():
    try:
        spec = importlib.util.find_spec("servers.http.__main__")
    except (ImportError, ValueError):
        spec = None
    return spec


@pytest.fixture(scope="module")
def project_server(tmp_path_factory):
    if _project_server() is None:
        pytest.skip("servers.http has no command-line server yet (python -m servers.http)")
    root = tmp_path_factory.mktemp("served")
    (root / "hello.txt").write_bytes(b"served by servers.http\n")
    (root / "big.bin").write_bytes(BIG)
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<p>index</p>\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "servers.http", "-q", "--bind", "127.0.0.1", "--directory",
         str(root), "0"], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    banner = proc.stderr.readline()     # "Serving HTTP on 127.0.0.1 port N (...) ..."
    match = re.search(r" port (\d+) ", banner)
    if match is None:
        proc.kill()
        pytest.fail("servers.http did not start: %r" % (banner + proc.stderr.read(),))
    yield "http://127.0.0.1:%s" % match.group(1)
    proc.terminate()
    proc.wait(10)
    proc.stderr.close()


def test_project_server(reactor, project_server):
    small = get(reactor, project_server + "/hello.txt")
    big = get(reactor, project_server + "/big.bin")
    inner = CheckingConsumer()
    get(reactor, project_server + "/sub", Redirect(inner))
    drive(reactor)
    assert small.check().body == b"served by servers.http\n"
    assert big.check().body == BIG
    assert inner.check().body == b"<p>index</p>\n"


def test_project_server_keep_alive_and_errors(reactor, project_server):
    seen = []

    def chain(i):
        if i < 4:
            get(reactor, project_server + "/hello.txt", CheckingConsumer(
                on_header=lambda request: seen.append((request.reused, request.status[1])),
                on_close=lambda: chain(i + 1)))

    chain(0)
    missing = get(reactor, project_server + "/missing")
    head = get(reactor, project_server + "/big.bin", method="HEAD")
    drive(reactor)
    assert seen == [(False, 200), (True, 200), (True, 200), (True, 200)]
    assert missing.check().status[1] == 404
    assert head.check().body == b"" and head.request.header["content-length"] == str(len(BIG))


# ----------------------------------------------------------------------------- the classic

def test_the_classic_example_on_the_default_reactor(site):
    """The asyncore example's shape: a consumer, a Redirect around it, then eventloop.loop()."""
    import eventloop

    class DummyConsumer:
        size = 0

        def __init__(self):
            self.lines = []

        def http_header(self, request):
            if request.status is None:
                self.lines.append("connection failed: %s" % request.error)
            else:
                self.lines.append("status => %r" % (request.status,))
                for key, value in request.header.items():
                    self.lines.append("%s = %s" % (key.lower(), value))

        def feed(self, data):
            self.size = self.size + len(data)

        def close(self):
            self.lines.append("%d bytes in body" % self.size)

    old = eventloop.set_reactor(Reactor())
    try:
        consumer = DummyConsumer()
        AsyncHTTP(site.url("/dir"), Redirect(consumer))
        failed = DummyConsumer()
        AsyncHTTP("http://127.0.0.1:1/", failed)
        eventloop.loop()
        close_idle_connections()
    finally:
        eventloop.get_reactor().close()
        eventloop.set_reactor(old)
    assert consumer.lines[0] == "status => ('HTTP/1.0', 200, 'OK')"
    assert "content-type = text/html; charset=utf-8" in consumer.lines
    assert consumer.lines[-1] == "%d bytes in body" % consumer.size and consumer.size > 100
    assert failed.lines == ["connection failed: connection refused by 127.0.0.1:1",
                            "0 bytes in body"]
