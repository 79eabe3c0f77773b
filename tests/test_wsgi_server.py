"""servers.wsgi against PEP 3333, over real sockets on 127.0.0.1, every application through
``wsgiref.validate.validator`` (except the ones built to break the rules, whose breakage the
validator would report before our server saw it).

What is checked: the environ (required keys, paths decoded as latin-1 of the raw bytes,
SCRIPT_NAME, headers, client and server addresses, the mode flags); ``wsgi.input`` streaming
the body as it arrives, ``100 Continue`` only when the application first reads, spooling past
the threshold, chunked bodies; ``start_response`` with ``exc_info``; the ``write()`` callable;
the iterable's ``close()``; framing (the application's Content-Length, chunked on 1.1,
close-delimited on 1.0, HEAD); keep-alive and pipelining in order; errors (500 without a
traceback, a log line with it, the connection goes on); header validation; ``wsgi.file_wrapper``
with and without a descriptor; ``--threads 0``.
"""
import hashlib
import http.client
import io
import json
import os
import socket
import sys
import threading
import time

import pytest
from hypothesis import given, strategies as st

from servers.wsgi import HOP_BY_HOP
from servers.wsgi.environ import check_headers, parse_status
from wsgi_apps import (HELLO, LogCapture, Recorder, echo_environ, hello, serve, streamed,
                       upload)

TIMEOUT = 10.0
MODES = [4, 0]          # --threads: a pool, and the reactor thread itself


def connect(server):
    s = socket.create_connection(server.server_address[:2], timeout=TIMEOUT)
    return s


class Reader:
    """Reads responses off a socket one after another (pipelined ones included)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _until(self, mark):
        while mark not in self.buf:
            self._fill()
        i = self.buf.index(mark) + len(mark)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only=False):
        """``(status, {lowercase name: value}, body)``; interim (1xx) responses are returned too."""
        head = self._until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if head_only or status < 200 or status in (204, 304):
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    return status, headers, body
                body += self._exactly(size)
                self._exactly(2)
        while True:                         # close-delimited
            try:
                self._fill()
            except EOFError:
                body, self.buf = self.buf, b""
                return status, headers, body


def get(server, path, method="GET", headers=None, body=None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=TIMEOUT)
    try:
        headers = headers or {}
        conn.request(method, path, body=body, headers=headers,
                     encode_chunked="Transfer-Encoding" in headers)
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


# ------------------------------------------------------------------------------ environ
@pytest.mark.parametrize("threads", MODES)
def test_hello_and_the_environ(threads):
    with serve(echo_environ, threads=threads) as server:
        status, headers, body = get(
            server, "/caf%C3%A9%2Fx/%41?q=1&r=%20", headers={
                "X-Thing": "a", "Cookie": "a=1", "User-Agent": "t", "X_Forwarded_For": "evil"})
        assert status == 200
        env = json.loads(body)
        port = server.server_address[1]
        assert env["REQUEST_METHOD"] == "GET"
        assert env["SCRIPT_NAME"] == ""
        assert env["PATH_INFO"] == "/caf\xc3\xa9/x/A"      # latin-1 of the decoded bytes
        assert env["QUERY_STRING"] == "q=1&r=%20"           # as sent
        assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(port)
        assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert env["REMOTE_ADDR"] == "127.0.0.1" and int(env["REMOTE_PORT"]) > 0
        assert env["HTTP_X_THING"] == "a" and env["HTTP_COOKIE"] == "a=1"
        assert "HTTP_X_FORWARDED_FOR" not in env            # the underscore spelling is dropped
        assert env["HTTP_HOST"] == "127.0.0.1:%d" % port
        assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
        assert env["wsgi.multithread"] is (threads > 1) and env["wsgi.multiprocess"] is False
        assert env["wsgi.run_once"] is False
        assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


def test_repeated_fields_are_joined_and_cookies_with_semicolons():
    with serve(echo_environ) as server:
        s = connect(server)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nCookie: a=1\r\n"
                  b"Cookie: b=2\r\nConnection: close\r\n\r\n")
        status, _, body = Reader(s).response()
        env = json.loads(body)
        assert env["HTTP_X_A"] == "1, 2" and env["HTTP_COOKIE"] == "a=1; b=2"


def test_url_prefix_is_script_name_and_other_paths_get_404():
    with serve(echo_environ, script_name="/app", url_scheme="https") as server:
        env = json.loads(get(server, "/app/x/y")[2])
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/x/y")
        assert env["wsgi.url_scheme"] == "https"
        env = json.loads(get(server, "/app")[2])
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "")
        assert get(server, "/application")[0] == 404
        assert get(server, "/")[0] == 404


# ------------------------------------------------------------------------------ bodies
@pytest.mark.parametrize("threads", MODES)
@pytest.mark.parametrize("chunked", [False, True])
def test_bodies_arrive_whole_in_memory_and_spooled(threads, chunked):
    data = os.urandom(300 << 10) + b"\n".join(b"line %d" % i for i in range(5000))
    with serve(upload, threads=threads, spool_threshold=64 << 10) as server:
        headers = {"Transfer-Encoding": "chunked"} if chunked else {}
        body = iter([data[i:i + 50000] for i in range(0, len(data), 50000)]) if chunked else data
        status, _, answer = get(server, "/", "POST", headers, body)
        assert status == 200
        assert answer.decode() == "%s %d" % (hashlib.sha256(data).hexdigest(), len(data))


def test_a_chunked_body_is_read_whole_and_gets_its_content_length():
    with serve(echo_environ) as server:
        s = connect(server)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        env = json.loads(Reader(s).response()[2])
        assert env["CONTENT_LENGTH"] == "11" and env["body_size"] == 11
        assert "HTTP_TRANSFER_ENCODING" not in env


def test_the_app_gets_the_request_at_the_head_and_reads_the_body_as_it_arrives():
    seen = []
    got_head = threading.Event()

    def app(environ, start_response):
        got_head.set()
        stream = environ["wsgi.input"]
        while True:
            line = stream.readline()
            if not line:
                break
            seen.append(line)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(seen)]

    with serve(app) as server:
        s = connect(server)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n")
        assert got_head.wait(TIMEOUT)               # called before any of the body was sent
        s.sendall(b"one\n")
        deadline = time.monotonic() + TIMEOUT
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [b"one\n"]                   # read while the rest has not come
        s.sendall(b"two\nthree\n")
        assert Reader(s).response()[2] == b"3"


def test_100_continue_only_when_the_app_first_reads():
    go = threading.Event()
    called = threading.Event()

    def app(environ, start_response):
        called.set()
        assert go.wait(TIMEOUT)
        data = environ["wsgi.input"].read(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [data]

    with serve(app) as server:
        s = connect(server)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert called.wait(TIMEOUT)
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(100)                             # nothing yet: the app has not read
        s.settimeout(TIMEOUT)
        go.set()
        reader = Reader(s)
        assert reader.response()[0] == 100
        s.sendall(b"hello")
        assert reader.response()[2] == b"hello"


def test_an_app_that_answers_without_reading_an_expected_body_closes_the_connection():
    with serve(hello) as server:
        s = connect(server)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        status, headers, body = Reader(s).response()
        assert (status, body) == (200, HELLO) and headers["connection"] == "close"


def test_max_body_413_and_the_app_is_not_called():
    rec = Recorder(hello)
    with serve(rec, max_body=1000) as server:
        assert get(server, "/", "POST", body=b"x" * 1001)[0] == 413
        s = connect(server)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"100\r\n" + b"y" * 256 + b"\r\n" * 1 + b"400\r\n" + b"y" * 1024 + b"\r\n")
        assert Reader(s).response()[0] == 413
        assert get(server, "/", "POST", body=b"x" * 1000)[0] == 200
        assert rec.calls == 1


# ------------------------------------------------------------------------------ responses
@pytest.mark.parametrize("threads", MODES)
def test_framing_content_length_chunked_close_delimited_and_head(threads):
    with serve(streamed, threads=threads) as server:
        s = connect(server)
        r = Reader(s)
        s.sendall(b"GET /?n=3&size=4 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = r.response()
        assert headers["transfer-encoding"] == "chunked" and body == b"AAAABBBBCCCC"
        s.sendall(b"HEAD /?n=3&size=4 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = r.response(head_only=True)
        s.sendall(b"GET /?n=1&size=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.response()[2] == b"AA"             # nothing of the HEAD's body came between
        s10 = connect(server)
        s10.sendall(b"GET /?n=2&size=3 HTTP/1.0\r\n\r\n")
        status, headers, body = Reader(s10).response()
        assert body == b"AAABBB" and "content-length" not in headers
        assert "transfer-encoding" not in headers   # close-delimited
        status, headers, body = get(server, "/x")
        assert len(body) == 15
    with serve(hello, threads=threads) as server:
        status, headers, body = get(server, "/")
        assert headers["content-length"] == str(len(HELLO)) and body == HELLO
        assert "transfer-encoding" not in headers


@pytest.mark.parametrize("threads", MODES)
def test_keep_alive_and_pipelined_requests_with_bodies_answer_in_order(threads):
    with serve(upload, threads=threads) as server:
        s = connect(server)
        bodies = [b"first", b"", b"x" * 70000, b"last\nline"]
        wire = b""
        for body in bodies:
            wire += b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        wire += b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        s.sendall(wire)
        r = Reader(s)
        for body in bodies + [b"abc"]:
            assert r.response()[2].decode() == "%s %d" % (hashlib.sha256(body).hexdigest(), len(body))


@pytest.mark.parametrize("threads", MODES)
def test_write_callable_then_iterable(threads):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"two,")
        return [b"three"]

    with serve(app, threads=threads) as server:
        assert get(server, "/")[2] == b"one,two,three"


@pytest.mark.parametrize("threads", MODES)
def test_an_app_raising_before_start_response_gets_500_without_traceback(threads):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("secret detail")
        return hello(environ, start_response)

    with serve(app, threads=threads) as server, LogCapture("servers.wsgi") as logs:
        s = connect(server)
        r = Reader(s)
        s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = r.response()
        assert status == 500 and b"secret" not in body and b"Traceback" not in body
        assert r.response()[2] == HELLO             # the connection goes on
        assert any(rec.exc_info and "secret detail" in str(rec.exc_info[1])
                   for rec in logs.records)


def test_exc_info_replaces_the_head_before_it_is_sent_and_reraises_after():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry"]

    def late(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never"

    with serve(app) as server:
        assert get(server, "/")[:1] == (503,)
    with serve(late, validate=False) as server, LogCapture("servers.wsgi") as logs:
        s = connect(server)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert b"partial" in data and b"never" not in data
        assert not data.endswith(b"0\r\n\r\n")      # cut, not completed
        assert any("late" in str(rec.exc_info[1]) for rec in logs.records if rec.exc_info)


@pytest.mark.parametrize("bad", [
    [("X-Evil", "a\r\nSet-Cookie: owned=1")], [("X-Evil", "a\nb")], [("Bad Name", "x")],
    [("Connection", "close")], [("Transfer-Encoding", "chunked")], [("Keep-Alive", "5")],
    [("X-Not-Latin1", "\u20ac")]])
def test_bad_headers_from_the_app_get_500_and_a_log_line_never_a_split_response(bad):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")] + bad)
        return [b"body"]

    with serve(app, validate=False) as server, LogCapture("servers.wsgi") as logs:
        s = connect(server)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = Reader(s)
        for _ in range(2):
            status, headers, body = r.response()
            assert status == 500 and "set-cookie" not in headers and "x-evil" not in headers
        assert logs.records


@given(name=st.text(max_size=20), value=st.text(max_size=20))
def test_check_headers_refuses_every_control_character_and_hop_by_hop_name(name, value):
    bad = (not name or any(c not in "!#$%&'*+-.^_`|~" and not (c.isascii() and c.isalnum())
                           for c in name)
           or name.lower() in HOP_BY_HOP
           or any(ord(c) > 255 or (ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value))
    if bad:
        with pytest.raises((ValueError, TypeError)):
            check_headers([(name, value)])
    else:
        assert check_headers([(name, value)]) == ((name, value),)


def test_parse_status():
    assert parse_status("200 OK") == 200 and parse_status("599 ") == 599
    for bad in ("200", "20 OK", "200OK", "200 O\r\nK", "099 x", b"200 OK"):
        with pytest.raises((ValueError, TypeError)):
            parse_status(bad)


@pytest.mark.parametrize("threads", MODES)
def test_close_is_called_after_success_and_after_errors(threads):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/fail":
            def gen():
                yield b"a"
                raise RuntimeError("mid-body")
            return gen()
        return iter([b"fine"])

    rec = Recorder(app)
    with serve(rec, threads=threads) as server:
        assert get(server, "/")[2] == b"fine"
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            get(server, "/fail")
        deadline = time.monotonic() + TIMEOUT
        while rec.closed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rec.closed == rec.calls == 2


def test_content_length_that_disagrees_with_the_body_is_an_app_error():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"short"]

    # A list is known whole before anything is sent: 500.  (Bare: the validator would make it
    # an iterator.)
    with serve(app, validate=False) as server, LogCapture("servers.wsgi"):
        assert get(server, "/")[0] == 500
    # Streamed, the shortfall shows at the end: the response is cut, never completed.
    with serve(app) as server, LogCapture("servers.wsgi") as logs:
        with pytest.raises(http.client.IncompleteRead):
            get(server, "/")
        assert any("5 bytes of its Content-Length (10)" in str(r.exc_info[1])
                   for r in logs.records if r.exc_info)


# ------------------------------------------------------------------------------ files
class _NoRead(io.FileIO):
    """A real file whose read() must not be used: served right only through sendfile."""

    def read(self, *args):
        raise AssertionError("read() used: the file was not sent with sendfile")

    readinto = read


@pytest.mark.parametrize("threads", MODES)
def test_file_wrapper_uses_sendfile_for_real_files_and_blocks_otherwise(tmp_path, threads):
    data = os.urandom(3 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"] == "/real":
            f = _NoRead(str(path))
            f.seek(100)
            return environ["wsgi.file_wrapper"](f)
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 8192)

    # The validator (and any middleware) wraps the iterable, hiding the file wrapper from the
    # server: the sendfile path is served unwrapped, its close() seen through the file.
    closed = []

    class Tracked(_NoRead):
        def close(self):
            closed.append(True)
            super().close()

    def bare(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        f = Tracked(str(path))
        f.seek(100)
        return environ["wsgi.file_wrapper"](f)

    with serve(bare, validate=False, threads=threads) as server:
        status, headers, body = get(server, "/real")
        assert body == data[100:] and headers["content-length"] == str(len(data) - 100)
        assert get(server, "/real", "HEAD")[2] == b""
    assert closed == [True, True]
    rec = Recorder(app)
    with serve(rec, threads=threads) as server:
        status, headers, body = get(server, "/bytes")
        assert body == data
    assert rec.closed == 1


# ------------------------------------------------------------------------------ the modes
def test_threads_0_runs_the_app_on_the_reactor_thread():
    threads = []

    def app(environ, start_response):
        threads.append(threading.current_thread().name)
        return hello(environ, start_response)

    with serve(app, threads=0) as server:
        get(server, "/")
    with serve(app, threads=2) as server:
        get(server, "/")
    assert threads[0] != threads[1] and threads[1].startswith("wsgi-")


def test_wsgi_errors_goes_to_logging_one_record_per_line():
    def app(environ, start_response):
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["line\n", "partial"])
        errors.flush()
        return hello(environ, start_response)

    with serve(app) as server, LogCapture("servers.wsgi.errors") as logs:
        assert get(server, "/")[2] == HELLO
        messages = [r.getMessage() for r in logs.records]
    assert messages == ["first line", "second line", "partial"]
