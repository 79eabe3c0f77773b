"""RFC 9112 / 9110 request validation over real sockets, in every mode: ``python -m servers.http`` serving
files and with ``--echo``, and a custom ``Handler``.  Each refused request gets its 400 (505 for a
well-formed version we do not speak) with ``Connection: close``, the connection is closed, no handler
sees it, and the server carries on.  Valid hosts and targets of every form still get through."""
import socket
import threading

import pytest

from servers.http import Handler
from test_http_server import Served, closed_by_server, exchange, read_response
from test_http_server_cli import Program

REFUSED = [
    (b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", 400),                       # userinfo
    (b"GET / HTTP/1.1\r\nHost: h/path\r\n\r\n", 400),                       # a path
    (b"GET / HTTP/1.1\r\nHost: h, other\r\n\r\n", 400),                     # a comma list
    (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),                              # empty, origin-form
    (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),                            # '*' only with OPTIONS
    (b"GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/01.01\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    (b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    (b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n", 400),
    (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /\xc0\xaf HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /index.html#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),                    # absolute-form, other Host
]
ACCEPTED = [b"127.0.0.1", b"127.0.0.1:8000", b"[::1]:8000", b"[::1]", b"ex%41mple.com", b"localhost:"]


def refused(served, raw, status):
    """Send ``raw`` on a new connection: its answer must be ``status``, then a close."""
    with served.connect() as sock:
        sock.sendall(raw)
        f = sock.makefile("rb")
        try:
            r = read_response(f)
        finally:
            f.close()
        assert (r.status, r.header("Connection")) == (status, "close"), (raw, r)
        assert closed_by_server(sock)


class Recorder(Handler):
    """A custom server: answers GET and POST with the target it saw, and remembers every one."""

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def do_GET(self, request):
        with self.lock:
            self.seen.append(request.target)
        request.respond(200, [("Content-Type", "text/plain")], request.target.encode())

    do_POST = do_GET


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_bytes(b"<h1>index</h1>")
    return root


class Running:
    """A ``python -m servers.http`` process, with the ``connect`` that ``exchange`` uses."""

    def __init__(self, prog):
        self.prog = prog

    def connect(self, timeout=5.0):
        return socket.create_connection(("127.0.0.1", self.prog.port), timeout=timeout)


@pytest.fixture(scope="module", params=["static", "--echo"])
def program(request, www):
    mode = [] if request.param == "static" else ["--echo"]
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www), "-q", *mode)
    yield Running(prog)
    assert prog.stop() == 0


@pytest.fixture(scope="module")
def custom():
    app = Recorder()
    served = Served(app)
    served.app = app
    yield served
    served.stop()


def ident(value):
    return repr(value)[:60] if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("raw, status", REFUSED, ids=ident)
def test_refused_by_the_program_in_both_modes(program, raw, status):
    refused(program, raw, status)
    (r,) = exchange(program, b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n")     # it carries on
    assert r.status == 200


@pytest.mark.parametrize("raw, status", REFUSED, ids=ident)
def test_refused_before_a_custom_handler_sees_it(custom, raw, status):
    before = list(custom.app.seen)
    refused(custom, raw, status)
    assert custom.app.seen == before
    (r,) = exchange(custom, b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (r.status, r.body) == (200, b"/after")


@pytest.mark.parametrize("host", ACCEPTED)
def test_valid_hosts_get_through_in_every_mode(program, custom, host):
    for served in (program, custom):
        (r,) = exchange(served, b"GET /index.html HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert r.status == 200, (host, r)


def test_valid_target_forms_get_through(program, custom):
    for served in (program, custom):
        (r,) = exchange(served, b"GET http://h:8000/index.html HTTP/1.1\r\nHost: h:8000\r\n\r\n")
        assert r.status == 200, r
        (r,) = exchange(served, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
        assert r.status != 400, r
        (r,) = exchange(served, b"POST /index.html HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5; a = b\r\nhello\r\n0\r\n\r\n")
        assert r.status != 400, r
