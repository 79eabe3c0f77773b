"""servers.http frees a closed connection by reference counting alone, on every path.

With the cyclic collector off (``gc.disable()``), each scenario below runs over a real socket
against an in-process server; once the server has closed the connection, weak references to its
channel, the channel's ``Connection`` and socket must be dead, and no ``HTTPRequest`` may be
left.  A reference cycle anywhere (an exception kept with its traceback, a timer's bound method,
request <-> channel) keeps all of them alive and fails the scenario, naming what still refers
to the channel.  The scenarios: every error the server answers (400 no Host, 400 bad Host,
malformed head, 431, 413, bad chunk, 408 head and body, 505, 501 method and coding, 500 from a
handler that raises, 503 for a body that waited too long for room), a client that resets
mid-response, a handler that never answers and then the client goes away (closed or reset),
``Expect: 100-continue`` refused, lingering closes (ended by the client, or by the linger
timeout), HTTP/1.0, a client that stops reading, and the normal keep-alive and close paths;
and the case as reported: 100 requests without Host.

The server's loggers do not propagate while these run: a handler that keeps log records (as
pytest's capture does) keeps their tracebacks, and with them the frames of the channel.
"""
import gc
import logging
import socket
import struct
import threading
import weakref

import pytest

from servers.http import HTTPChannel, HTTPRequest, StaticFiles
from test_http_server import Served

QUICK = 0.3          # head, keep-alive, io and linger timeouts (seconds)
BIG = 8 << 20        # a file larger than any socket buffer


class Tracked(HTTPChannel):
    """An HTTPChannel that leaves weak references to itself, its Connection and its socket."""

    refs = []

    def __init__(self, sock, addr, server):
        Tracked.refs.extend((weakref.ref(self), weakref.ref(sock)))
        HTTPChannel.__init__(self, sock, addr, server)
        Tracked.refs.append(weakref.ref(self.conn))


class App(StaticFiles):
    """Static files, plus POST /echo (reads its body), /raise (raises) and /never (never
    answers; it keeps nothing of the request, so only the server can)."""

    def __init__(self, root):
        StaticFiles.__init__(self, root)
        self.never = threading.Event()

    def do_POST(self, request):
        if request.path == "/raise":
            raise ValueError("a handler that fails")
        if request.path == "/never":
            self.never.set()
            return
        request.respond(200, (("Content-Type", "application/octet-stream"),), request.body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "small.txt").write_bytes(b"s" * 100)
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG)
    quiet = {name: logging.getLogger(name).propagate for name in ("servers.http", "eventloop")}
    for name in quiet:
        logging.getLogger(name).propagate = False
    served = Served(App(str(root)), channel_class=Tracked, max_body=1000, head_timeout=QUICK,
                    keepalive_timeout=QUICK, io_timeout=QUICK, max_buffered_bodies=1000)
    served.server.linger_timeout = QUICK
    yield served
    served.stop()
    for name, propagate in quiet.items():
        logging.getLogger(name).propagate = propagate


def _read_to_eof(s):
    data = b""
    try:
        for _ in range(100000):
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    except ConnectionResetError:
        pass
    return data


def _reset(s):
    """Close ``s`` with a reset (SO_LINGER 0) instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _wait_closed(served):
    assert served.wait_until(lambda: not served.server.channels), "the server kept the connection"


def sends(data, shut=False):
    """A client that sends ``data`` (then shuts down its side if ``shut``) and reads to EOF;
    returns what it read."""
    def scenario(served):
        with served.connect() as s:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            return _read_to_eof(s)
    return scenario


def resets_mid_response(served):
    s = served.connect()
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    head = s.recv(65536)
    _reset(s)
    return head


def never_answered(closing):
    def scenario(served):
        served.server.app.never.clear()
        s = served.connect()
        s.sendall(b"POST /never HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert served.server.app.never.wait(5)
        if closing == "reset":
            _reset(s)
        else:
            s.close()
        _wait_closed(served)
        return b""
    return scenario


def stops_reading(served):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # before the handshake
        s.settimeout(5)
        s.connect(("127.0.0.1", served.port))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        _wait_closed(served)            # the io_timeout closes it while we hold our end
        return s.recv(100)


def lingers_until_the_timeout(served):
    with served.connect() as s:
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /")
        _wait_closed(served)            # the linger timeout ends it while we hold our end
        return s.recv(65536)


def waits_for_room_too_long(served):
    """Three bodies: the first holds part of the budget, the second needs all of it and waits,
    the third waits behind the second.  Once the first has held its room for io_timeout it is
    taken back (408) and the second gets it; the third has then waited io_timeout: 503."""
    with served.connect() as first, served.connect() as second, served.connect() as third:
        budget = served.server.body_budget
        first.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        assert served.wait_until(lambda: len(budget) == 1)
        second.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\ncd")
        assert served.wait_until(lambda: budget.waiting == 1)
        third.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nef")
        answers = [_read_to_eof(s) for s in (third, first, second)]
        assert [a[:12] for a in answers] == [b"HTTP/1.1 503", b"HTTP/1.1 408", b"HTTP/1.1 408"]
        return answers[0]


H = b"Host: x\r\n"
SCENARIOS = {
    "keep-alive, then the client closes": (sends(b"GET /small.txt HTTP/1.1\r\n" + H + b"\r\n"
                                                 b"GET /small.txt HTTP/1.1\r\n" + H + b"\r\n",
                                                 shut=True), b"200"),
    "keep-alive, closed by the keep-alive timeout": (
        sends(b"GET /small.txt HTTP/1.1\r\n" + H + b"\r\n"), b"200"),
    "Connection: close": (sends(b"GET /small.txt HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"),
                          b"200"),
    "HTTP/1.0": (sends(b"GET /small.txt HTTP/1.0\r\n\r\n"), b"200"),
    "a body read by the handler": (sends(b"POST /echo HTTP/1.1\r\n" + H
                                         + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"),
                                   b"200"),
    "a body dropped unread": (sends(b"GET /small.txt HTTP/1.1\r\n" + H
                                    + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"), b"200"),
    "400 no Host": (sends(b"GET / HTTP/1.1\r\n\r\n"), b"400"),
    "400 bad Host": (sends(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), b"400"),
    "400 malformed head": (sends(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"), b"400"),
    "400 garbage": (sends(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), b"400"),
    "431 head too large": (sends(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"), b"431"),
    "413 body too large": (sends(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n"),
                           b"413"),
    "413 chunked body too large": (sends(b"POST /echo HTTP/1.1\r\n" + H
                                         + b"Transfer-Encoding: chunked\r\n\r\n800\r\n" + b"z" * 2048),
                                   b"413"),
    "400 bad chunk": (sends(b"POST /echo HTTP/1.1\r\n" + H
                            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"), b"400"),
    "408 head": (sends(b"GET / HTTP/1.1\r\n"), b"408"),
    "408 body": (sends(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 50\r\n\r\nab"), b"408"),
    "505": (sends(b"GET / HTTP/2.0\r\n" + H + b"\r\n"), b"505"),
    "501 method": (sends(b"BREW / HTTP/1.1\r\n" + H + b"\r\n", shut=True), b"501"),
    "501 transfer coding": (sends(b"POST /echo HTTP/1.1\r\n" + H
                                  + b"Transfer-Encoding: gzip, chunked\r\n\r\n"), b"501"),
    "500 from a handler that raises": (sends(b"POST /raise HTTP/1.1\r\n" + H
                                             + b"Content-Length: 0\r\n\r\n"), b"500"),
    "503 waiting for room, 408 taken back": (waits_for_room_too_long, b"503"),
    "a client that resets mid-response": (resets_mid_response, b"200"),
    "a handler that never answers, the client closes": (never_answered("close"), b""),
    "a handler that never answers, the client resets": (never_answered("reset"), b""),
    "Expect: 100-continue refused": (sends(b"GET /small.txt HTTP/1.1\r\n" + H
                                           + b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n"),
                                     b"200"),
    "lingering close, ended by the client": (
        sends(b"GET /small.txt HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /", shut=True),
        b"200"),
    "lingering close, ended by the linger timeout": (lingers_until_the_timeout, b"200"),
    "a client that stops reading": (stops_reading, b"200"),
}


def _requests_alive():
    return sum(1 for o in gc.get_objects() if type(o) is HTTPRequest)


def _who_holds(obj):
    """What refers to ``obj`` (and what refers to those), for the failure message."""
    lines = []
    for ref in gc.get_referrers(obj):
        if type(ref) is list and ref is Tracked.refs:
            continue
        lines.append("  %s %.120r" % (type(ref).__name__, ref))
        for ref2 in gc.get_referrers(ref)[:4]:
            lines.append("    <- %s %.100r" % (type(ref2).__name__, ref2))
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nothing_of_a_closed_connection_outlives_it_without_the_cyclic_collector(served, name):
    scenario, status = SCENARIOS[name]
    gc.collect()
    gc.disable()
    try:
        Tracked.refs = []
        requests_before = _requests_alive()
        answer = scenario(served)
        assert answer.startswith(b"HTTP/1.1 " + status) if status else answer == b""
        _wait_closed(served)
        assert served.call(lambda: served.server.body_budget.held) == 0
        freed = served.wait_until(lambda: all(ref() is None for ref in Tracked.refs), 2.0)
        alive = [ref() for ref in Tracked.refs if ref() is not None]
        assert freed, "%s: still alive: %r\n%s" % (
            name, alive, _who_holds(alive[0]) if alive else "")
        del alive
        assert _requests_alive() == requests_before
        assert Tracked.refs, "no connection was made"
    finally:
        gc.enable()


def test_a_hundred_requests_without_host_leave_no_channel_alive(served):
    """The case as reported: 100 requests without Host, the cyclic collector off."""
    gc.collect()
    gc.disable()
    try:
        Tracked.refs = []
        for _ in range(100):
            assert sends(b"GET / HTTP/1.1\r\n\r\n")(served).startswith(b"HTTP/1.1 400 ")
        _wait_closed(served)
        served.wait_until(lambda: all(ref() is None for ref in Tracked.refs), 2.0)
        alive = sum(1 for o in gc.get_objects() if isinstance(o, HTTPChannel))
        assert alive == 0, "%d HTTPChannel objects alive" % alive
    finally:
        gc.enable()
