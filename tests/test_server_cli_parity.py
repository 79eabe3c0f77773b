"""The servers' command lines (issue 15): servers.http's http.server flags (``-p/--protocol``,
``-H/--header``, ``--content-type``) and what all four servers share: ``-q``, Ctrl-C exiting 0
with one line and no traceback, error lines that start ``python -m servers.X:``, and
``--workers 0`` refused.  Real sockets, real subprocesses (and curl where it is installed)."""
import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given, strategies as st

from eventloop import Reactor
from servers.http import Handler, HTTPServer, StaticFiles
from servers.http.messages import extra_fields
from tests.launchers import ROOT, TIMEOUT, reactor_thread, read_until

ENV = dict(os.environ, PYTHONPATH=ROOT)
INTERRUPTED = "Keyboard interrupt received, exiting."

#: module -> (extra arguments, the banner naming the port)
SERVERS = {
    "servers.http": ((), rb"Serving HTTP on 127\.0\.0\.1 port (\d+) "),
    "servers.echo": ((), rb"listening on 127\.0\.0\.1:(\d+) \(tcp, udp\)"),
    "servers.chat": ((), rb"listening on 127\.0\.0\.1:(\d+) \(tcp\)"),
    "servers.time": ((), rb"listening on 127\.0\.0\.1:(\d+) \(tcp, udp\)"),
}


class Server:
    """``python -m MODULE 0 -b 127.0.0.1 ARGS`` in a subprocess, started once its banner is out."""

    def __init__(self, module, *args, cwd=ROOT):
        banner = SERVERS[module][1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "0", "-b", "127.0.0.1", *args], cwd=cwd, env=ENV,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            match = read_until(self.proc.stderr, banner)
        except BaseException:
            self.proc.kill()
            self.proc.communicate()
            raise
        self.port = int(match.group(1))
        self.head = match.string[:match.end()]      # stderr read so far

    def wait_for(self, pattern):
        """Read stderr until ``pattern`` (bytes) appears in what was read after the banner."""
        match = read_until(self.proc.stderr, pattern)
        self.head += match.string
        return match

    def interrupt(self, timeout=TIMEOUT):
        """Ctrl-C: SIGINT, then wait (at most ``timeout`` seconds); ``(status, stderr text)``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            err = self.proc.communicate(timeout=timeout)[1]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            err = self.proc.communicate()[1]
            raise AssertionError("no exit within %gs of SIGINT: %r" % (timeout, err))
        return self.proc.returncode, (self.head + err).decode()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run(module, *args):
    """``python -m MODULE ARGS`` to completion: ``(status, stderr text)``."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return proc.returncode, proc.stderr.decode()


def read_to_eof(sock, timeout=5.0):
    """Everything the peer sends until it closes (fails if it has not within ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


@pytest.fixture
def www(tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello from disk\n")
    (tmp_path / "blob.zzz").write_bytes(b"unknown kind\n")
    (tmp_path / "README").write_bytes(b"no extension\n")
    (tmp_path / "sub").mkdir()
    return tmp_path


# ----------------------------------------------------------------- -p/--protocol HTTP/1.0
def test_http10_answers_as_http10_and_closes_even_when_asked_to_keep_alive(www):
    with Server("servers.http", "-d", str(www), "-q", "-p", "HTTP/1.0") as server:
        for request in (b"GET /hello.txt HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                        b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                # A second request pipelined behind the first is never answered: the server
                # closes after the first response.
                sock.sendall(request + request)
                data = read_to_eof(sock)
            assert data.startswith(b"HTTP/1.0 200 OK\r\n")
            assert data.count(b"HTTP/1.") == 1 and data.endswith(b"\r\n\r\nhello from disk\n")
            assert b"\r\nConnection: close\r\n" in data
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/hello.txt", headers={"Connection": "keep-alive"})
        response = conn.getresponse()
        assert (response.status, response.version, response.will_close) == (200, 10, True)
        assert response.read() == b"hello from disk\n"
        conn.close()
        status, err = server.interrupt()
    assert status == 0 and "Traceback" not in err


def test_the_default_protocol_is_http11_with_keep_alive(www):
    with Server("servers.http", "-d", str(www), "-q") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(2):
            conn.request("GET", "/hello.txt")
            response = conn.getresponse()
            assert (response.version, response.will_close) == (11, False)
            assert response.read() == b"hello from disk\n"
        conn.close()
        assert server.interrupt()[0] == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("flags", [[], ["--http1.0"]], ids=["curl", "curl--http1.0"])
def test_curl_sees_http10_and_a_closed_connection(www, flags):
    with Server("servers.http", "-d", str(www), "-q", "-p", "HTTP/1.0") as server:
        url = "http://127.0.0.1:%d/hello.txt" % server.port
        proc = subprocess.run(["curl", "-sv", *flags, url, url], capture_output=True,
                              timeout=30)
        assert proc.returncode == 0 and proc.stdout == b"hello from disk\n" * 2
        trace = proc.stderr.decode()
        assert trace.count("< HTTP/1.0 200 OK") == 2
        # Each response ends its connection: curl opens a second one for the second URL.
        assert "Closing connection 0" in trace and "(#1)" in trace
        assert "Re-using existing connection" not in trace
        assert server.interrupt()[0] == 0


class _Streamer(Handler):
    """Streams a body of unknown length; reads (and counts) any request body."""

    def do_GET(self, request):
        request.start_response(200, [("Content-Type", "text/plain")])
        request.write(b"streamed ")
        request.write(b"body")
        request.finish()

    def do_POST(self, request):
        request.respond(200, [("Content-Type", "text/plain")], b"%d" % len(request.body))


@contextlib.contextmanager
def in_process(app, **options):
    reactor = Reactor()
    server = HTTPServer(("127.0.0.1", 0), app, reactor=reactor, **options)
    with reactor_thread(reactor):
        yield server.server_address[1]


def test_http10_streams_by_closing_never_chunked_and_sends_no_100_continue():
    with in_process(_Streamer(), protocol="HTTP/1.0") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            data = read_to_eof(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK\r\n") and body == b"streamed body"
        assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 5\r\n\r\nhello")
            data = read_to_eof(sock)
        assert data.startswith(b"HTTP/1.0 200 OK\r\n") and data.endswith(b"\r\n\r\n5")
        assert b" 100 " not in data
    # The same handler on the default protocol: chunked, and 100 Continue before the answer.
    with in_process(_Streamer()) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            assert b"Transfer-Encoding: chunked" in read_to_eof(sock)


def test_a_server_refuses_a_protocol_it_does_not_speak():
    with pytest.raises(ValueError):
        HTTPServer(("127.0.0.1", 0), _Streamer(), reactor=Reactor(), protocol="HTTP/2")


# ------------------------------------------------------------------------- -H/--header
def _headers_of(port, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheaders()
    finally:
        conn.close()


def test_extra_headers_are_on_every_response(www):
    with Server("servers.http", "-d", str(www), "-q", "-H", "X-Frame-Options", "DENY",
                "-H", "Cache-Control", "no-store, max-age=0",
                "-H", "X-Frame-Options", "SAMEORIGIN") as server:
        status, headers = _headers_of(server.port, "/hello.txt")
        etag = dict(headers)["ETag"]
        answers = [(status, headers),
                   _headers_of(server.port, "/hello.txt", {"If-None-Match": etag}),
                   _headers_of(server.port, "/hello.txt", method="HEAD"),
                   _headers_of(server.port, "/missing"),
                   _headers_of(server.port, "/"),                  # the listing
                   _headers_of(server.port, "/sub"),               # redirect to /sub/
                   _headers_of(server.port, "/", method="DELETE"),
                   _headers_of(server.port, "/hello.txt", {"Range": "bytes=0-1"})]
        assert [s for s, _ in answers] == [200, 304, 200, 404, 200, 301, 405, 206]
        for _, headers in answers:
            extra = [(n, v) for n, v in headers if n in ("X-Frame-Options", "Cache-Control")]
            assert extra == [("X-Frame-Options", "DENY"), ("Cache-Control", "no-store, max-age=0"),
                             ("X-Frame-Options", "SAMEORIGIN")]
        # A request refused before any handler sees it (a malformed head) gets them too.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")         # no Host
            data = read_to_eof(sock)
        assert data.startswith(b"HTTP/1.1 400 ") and b"\r\nX-Frame-Options: DENY\r\n" in data
        assert server.interrupt()[0] == 0


_TOKEN = st.text("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                 min_size=1, max_size=20)
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                               blacklist_characters="\x7f"), max_size=40).map(str.strip)
_OWNED = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
          "trailer", "te", "server", "date"}


@given(fields=st.lists(st.tuples(_TOKEN.filter(lambda n: n.lower() not in _OWNED), _VALUE),
                       min_size=1, max_size=3))
def test_any_valid_extra_header_reaches_the_client_as_given(fields):
    with in_process(_Streamer(), extra_headers=fields) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            head = read_to_eof(sock).partition(b"\r\n\r\n")[0].decode("latin-1")
    lines = head.split("\r\n")[1:]
    sent = ["%s: %s" % (name, value) if value else "%s: " % name for name, value in fields]
    start = lines.index(sent[0])
    assert [line.rstrip(" ") for line in lines[start:start + len(sent)]] == \
        [line.rstrip(" ") for line in sent]


_BAD_VALUE = st.tuples(_VALUE, st.sampled_from("\r\n\x00"), _VALUE).map("".join)
_BAD_NAME = st.one_of(
    st.just(""),
    st.tuples(_TOKEN, st.sampled_from(' :\t"(),/;<=>?@[\\]{}\r\n\x00é'), st.text(max_size=3))
    .map("".join))


@given(name=_TOKEN, value=_BAD_VALUE)
def test_a_value_with_cr_lf_or_nul_is_refused(name, value):
    with pytest.raises(ValueError):
        extra_fields([(name, value)])


@given(name=_BAD_NAME, value=_VALUE)
def test_a_name_that_is_not_a_token_is_refused(name, value):
    with pytest.raises(ValueError):
        extra_fields([(name, value)])


@pytest.mark.parametrize("name,value", [("X-Bad Name", "v"), ("X-Split", "a\r\nSet-Cookie: x"),
                                        ("X-Ctl", "a\x01b"), ("Content-Length", "5"),
                                        ("Transfer-Encoding", "chunked"), ("Bad:", "v")])
def test_an_invalid_header_is_a_startup_error(www, name, value):
    status, err = run("servers.http", "0", "-b", "127.0.0.1", "-d", str(www),
                      "-H", name, value)
    assert status == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("python -m servers.http: error: -H/--header: ")


def test_an_extra_server_header_replaces_ours(www):
    with Server("servers.http", "-d", str(www), "-q", "-H", "Server", "mine") as server:
        headers = _headers_of(server.port, "/hello.txt")[1]
        assert [v for n, v in headers if n == "Server"] == ["mine"]
        assert server.interrupt()[0] == 0


# ----------------------------------------------------------------------- --content-type
def test_content_type_names_the_type_of_unknown_extensions_only(www):
    with Server("servers.http", "-d", str(www), "-q", "--content-type",
                "text/plain; charset=utf-8") as server:
        types = {path: dict(_headers_of(server.port, path)[1])["Content-Type"]
                 for path in ("/blob.zzz", "/README", "/hello.txt", "/")}
        assert server.interrupt()[0] == 0
    assert types == {"/blob.zzz": "text/plain; charset=utf-8",
                     "/README": "text/plain; charset=utf-8",
                     "/hello.txt": "text/plain; charset=utf-8",
                     "/": "text/html; charset=utf-8"}
    with Server("servers.http", "-d", str(www), "-q") as server:
        assert dict(_headers_of(server.port, "/blob.zzz")[1])["Content-Type"] == \
            "application/octet-stream"
        assert server.interrupt()[0] == 0


def test_static_files_take_a_default_type(www):
    with in_process(StaticFiles(str(www), default_type="text/x-unknown")) as port:
        assert dict(_headers_of(port, "/blob.zzz")[1])["Content-Type"] == "text/x-unknown"
        assert dict(_headers_of(port, "/hello.txt")[1])["Content-Type"] == \
            "text/plain; charset=utf-8"


@pytest.mark.parametrize("argv", [["--content-type", "plain"], ["--content-type", ""],
                                  ["--content-type", "text/plain\r\nX: y"],
                                  ["-p", "HTTP/2"], ["-p", "http/1.0"], ["--workers", "0"],
                                  ["--workers", "-3"], ["-H", "X-Only-A-Name"]])
def test_bad_http_arguments_are_usage_errors(argv):
    status, err = run("servers.http", *argv)
    assert status == 2 and "Traceback" not in err and "usage:" in err
    assert err.splitlines()[-1].startswith("python -m servers.http: error: ")


# ------------------------------------------------------- what the four servers share
@pytest.mark.parametrize("module", sorted(SERVERS))
def test_ctrl_c_exits_0_with_one_line_and_no_traceback(module, www):
    with Server(module, *(["-d", str(www)] if module == "servers.http" else [])) as server:
        status, err = server.interrupt()
    assert status == 0 and "Traceback" not in err
    after = err.split(server.head.decode(), 1)[1]
    assert after.strip("\n").splitlines() == [INTERRUPTED]


def test_ctrl_c_stops_pre_forked_workers_with_one_line(www):
    with Server("servers.http", "-d", str(www), "-q", "--workers", "2") as server:
        pids = {int(server.wait_for(rb"worker (\d+) started").group(1)) for _ in range(2)}
        assert _headers_of(server.port, "/hello.txt")[0] == 200
        t0 = time.monotonic()
        status, err = server.interrupt()
        assert time.monotonic() - t0 < TIMEOUT
    assert status == 0 and "Traceback" not in err
    after = err.split(server.head.decode(), 1)[1]
    assert after.strip("\n").splitlines() == [INTERRUPTED]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)         # (reaped by the supervisor: not even a zombie is left)


def _chat_greeting(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        assert sock.recv(4096)


def _echo_once(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        sock.sendall(b"ping")
        assert sock.recv(4096) == b"ping"


def _http_once(port):
    assert _headers_of(port, "/hello.txt")[0] == 200


def _time_once(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        assert len(read_to_eof(sock)) == 4


_VISIT = {"servers.chat": (_chat_greeting, "connection from"),
          "servers.echo": (_echo_once, "connection from"),
          "servers.http": (_http_once, '"GET /hello.txt HTTP/1.1" 200'),
          "servers.time": (_time_once, "time request from")}


@pytest.mark.parametrize("quiet", [False, True], ids=["logged", "quiet"])
@pytest.mark.parametrize("module", sorted(SERVERS))
def test_quiet_silences_the_per_connection_log(module, quiet, www):
    visit, line = _VISIT[module]
    args = ["-d", str(www)] if module == "servers.http" else []
    with Server(module, *args, *(["-q"] if quiet else [])) as server:
        visit(server.port)
        if not quiet:
            server.wait_for(re.escape(line.encode()))
        else:
            visit(server.port)      # (two visits: a line for the first would be out by now)
        status, err = server.interrupt()
    assert status == 0 and (line in err) is not quiet


@pytest.mark.parametrize("module", sorted(SERVERS))
def test_a_port_in_use_is_one_error_line_naming_the_program(module):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, err = run(module, str(port), "-b", "127.0.0.1", "-q")
    assert status == 1 and "Traceback" not in err
    assert err.splitlines() == [err.rstrip("\n")]
    assert err.startswith("%s: cannot listen on 127.0.0.1 port %d: " % (module_prog(module), port))


@pytest.mark.parametrize("module", sorted(SERVERS))
@pytest.mark.parametrize("argv", [["70000"], ["--no-such-flag"]], ids=["port", "flag"])
def test_a_usage_error_names_the_program(module, argv):
    status, err = run(module, *argv)
    assert status == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("%s: error: " % module_prog(module))


def test_a_directory_that_is_not_there_is_a_usage_error():
    status, err = run("servers.http", "-d", "/no/such/directory")
    assert status == 2 and err.splitlines()[-1] == \
        "python -m servers.http: error: not a directory: '/no/such/directory'"


def module_prog(module):
    return "python -m " + module
