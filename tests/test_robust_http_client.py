"""Robustness of the HTTP client against hostile servers: every request ends in one clean,
reported outcome, within a bound, without unbounded memory.

* Fuzz: arbitrary bytes, soups of HTTP grammar fragments and mutated real responses, cut at
  arbitrary points, played by a raw server on the client's reactor, then a close or silence.
  The consumer contract holds every time (``http_header`` once, ``feed`` only after a good
  head, ``close`` exactly once, a reason with every failure), and the outcome is the one the
  sans-IO layer finds in the same bytes: that response and body, that error, or a timeout.
* Hostile servers (a raw socket server in a thread): garbage; a head whose fields never end
  (must fail at the 64 KiB head limit), and trailers that never end; a chunk-size line that
  never ends, and a chunk that claims a billion bytes (fail fast, no giant allocation);
  interim (1xx) responses forever; redirects forever, to a new URL each time (the hop limit)
  or in a loop; a head or a body trickling one byte a second, past a 0.5 s timeout; a
  server that never reads a 32 MiB upload.  Each is met through all three faces
  of the client: ``AsyncHTTP`` (consumer contract), ``fetch()`` (``FetchError`` with a
  reason) and ``python -m clients.http`` (curl's exit status for that failure, one stderr line
  naming the URL and the reason, no traceback).
* Soak (``-m stress``): ``SOAK_REQUESTS / 20`` GETs through one reactor's connection pool
  against ``python -m servers.http``: connections reused, memory flat, no descriptor leaked.

Inputs tried are printed at the end of the module (``-s``) and written, with the figures, to
``$ROBUST_REPORT/http_client.json`` when that variable names a directory.
``ROBUST_EXAMPLES=N`` runs N fuzz examples instead of the fast default.
"""
import collections
import gc
import importlib.util
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
from figures import counts_fixture
from hypothesis import HealthCheck, given, settings, strategies as st

from clients.http import AsyncHTTP, FetchError, Redirect, close_idle_connections, fetch
from clients.http import connection_pool as client_pool
from eventloop import Dispatcher, Reactor
from eventloop.http11 import (
    CLIENT, Connection, Data, EndOfMessage, InformationalResponse, NEED_DATA, RemoteProtocolError,
    Request, Response)
from eventloop.testing import chunkings
from strategies import message_streams
from test_http_client import CheckingConsumer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = "python -m clients.http"
EXAMPLES = int(os.environ.get("ROBUST_EXAMPLES", "0"))
INPUTS = collections.Counter()
OUTCOMES = collections.Counter()    # of the fuzzed requests: response, invalid, timeout
FIGURES = {"fuzz outcomes": OUTCOMES}


report = counts_fixture("robust http client", "http_client.json", INPUTS, "inputs tried",
                        lambda: {"examples_per_property": EXAMPLES or "default", "figures": FIGURES})



class ErrorLog(logging.Handler):
    """Keeps every record at ERROR or above that the client logs."""

    def __init__(self):
        logging.Handler.__init__(self, logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        logging.getLogger("clients.http").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("clients.http").removeHandler(self)


# ================================================================== fuzz on one reactor
HOLD = object()         # after the bytes: say nothing more (the client's timeout must act)
CLOSE = object()        # after the bytes: close the connection
QUICK = 0.2             # the client's timeout in the fuzz (seconds)


class Playback(Dispatcher):
    """A listener on the client's reactor: each connection reads the request head, then plays
    ``pieces`` (one per reactor pass) and ends with ``ending`` (HOLD or CLOSE)."""

    def __init__(self, reactor, pieces, ending):
        Dispatcher.__init__(self, map=reactor.map)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(8)
        self.port = self.socket.getsockname()[1]
        self.pieces = pieces
        self.ending = ending
        self.peers = []

    def handle_accepted(self, sock, addr):
        self.peers.append(_Player(sock, self))

    def shutdown(self):
        for peer in self.peers:
            peer.close()
        self.close()


class _Player(Dispatcher):
    """One connection of a Playback server."""

    def __init__(self, sock, server):
        Dispatcher.__init__(self, sock, server._map)
        self.server = server
        self.todo = list(server.pieces)
        self.head = b""
        self.playing = False

    def handle_read(self):
        data = self.recv(65536)
        if self.playing or not data:
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            self.playing = True
            self.reactor.call_soon(self._play)

    def _play(self):
        if not self.connected:
            return
        if self.todo:
            piece = self.todo.pop(0)
            try:
                self.socket.setblocking(True)
                self.socket.settimeout(2)
                self.socket.sendall(piece)
                self.socket.setblocking(False)
            except OSError:             # the client gave up: it may
                self.close()
                return
            self.reactor.call_soon(self._play)
        elif self.server.ending is CLOSE:
            self.close()

    def handle_close(self):
        self.close()


GET = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
RESPONSE_SEEDS = [
    GET,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n0\r\nA: b\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + GET,
    b"HTTP/1.0 200 OK\r\n\r\nclose-delimited body",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnope",
    b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
]


def response_streams():
    """Random bytes, a soup of grammar fragments, or real responses with random edits: ``(kind, bytes)``."""
    return message_streams(RESPONSE_SEEDS, max_bytes=300, max_messages=2, max_offset=300, weights=(1, 1, 3))


Outcome = collections.namedtuple("Outcome", "status body error")


def expected_outcome(stream, closed):
    """What the sans-IO client makes of ``stream`` (then the EOF if ``closed``) after a GET:
    ``Outcome(status, body, error)``; ``error`` is None, "invalid" (the response broke the
    rules or stopped short) or "timeout" (more was needed, and nothing came)."""
    conn = Connection(CLIENT)
    conn.send(Request("GET", "/", [("Host", "h")]))
    conn.send(EndOfMessage())
    if stream:                          # b"" would be the EOF
        conn.receive_data(stream)
    if closed:
        conn.receive_data(b"")
    status, body = None, bytearray()
    try:
        for _ in range(4 * len(stream) + 10):
            event = conn.next_event()
            if type(event) is Response:
                status = event.status
            elif type(event) is Data:
                body += event.data
            elif type(event) is EndOfMessage:
                return Outcome(status, bytes(body), None)
            elif event is NEED_DATA:
                return Outcome(status, bytes(body), "timeout")
            elif type(event) is not InformationalResponse:
                return Outcome(status, bytes(body), "invalid")      # closed without a response
    except RemoteProtocolError:
        return Outcome(status, bytes(body), "invalid")
    raise AssertionError("the sans-IO layer made no progress on %r" % (stream,))


@settings(max_examples=EXAMPLES or 60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), case=response_streams(), closed=st.booleans())
def test_any_response_bytes_any_cuts(data, case, closed):
    kind, stream = case
    pieces = [p for p in data.draw(chunkings(stream)) if p]
    INPUTS["client responses (%s)" % kind] += 1
    expected = expected_outcome(stream, closed)
    reactor = Reactor()
    server = Playback(reactor, pieces, CLOSE if closed else HOLD)
    consumer = CheckingConsumer()
    start = time.monotonic()
    try:
        with ErrorLog() as errors:
            AsyncHTTP("http://127.0.0.1:%d/" % server.port, consumer, timeout=QUICK, reactor=reactor,
                      pool=False)
            deadline = start + 5
            while not consumer.closed:
                assert time.monotonic() < deadline, "the request did not end within 5 s"
                reactor.run_once(0.05)
        took = time.monotonic() - start
    finally:
        server.shutdown()
        reactor.close()
    consumer.check()
    assert errors.records == [], [r.getMessage() for r in errors.records]
    FIGURES["fuzz slowest request (s)"] = round(max(took, FIGURES.get("fuzz slowest request (s)", 0)), 3)
    got_status = consumer.status[1] if consumer.status is not None else None
    if expected.error is None:
        OUTCOMES["response"] += 1
        assert consumer.error is None, (consumer.error, expected)
        assert (got_status, consumer.body) == (expected.status, expected.body)
    else:
        OUTCOMES[expected.error] += 1
        assert consumer.error, expected
        if expected.error == "timeout":
            assert "timed out" in consumer.error, (consumer.error, expected)
        else:
            assert "timed out" not in consumer.error, (consumer.error, expected)
        assert got_status == expected.status
        assert expected.body.startswith(consumer.body)


# ====================================================================== hostile servers
class HostileServer:
    """A raw TCP server in a thread.  Each connection's request head is read, then
    ``behaviour(peer, target)`` plays until it returns, the client goes away, or the server's
    time (``max_seconds``) is up; :meth:`close` stops everything."""

    def __init__(self, behaviour, max_seconds=3.0):
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.deadline = time.monotonic() + max_seconds
        self.stopped = threading.Event()
        self.targets = []           # request targets, in arrival order
        self.sent = 0               # bytes sent on every connection
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    @property
    def alive(self):
        return not self.stopped.is_set() and time.monotonic() < self.deadline

    def _accept(self):
        while self.alive:
            if not select.select([self.listener], [], [], 0.05)[0]:
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn):
        conn.settimeout(2)
        try:
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                target = head.split(b" ", 2)[1].decode("latin-1")
                with self._lock:
                    self.targets.append(target)
                self.behaviour(_Peer(conn, self), target)
        except OSError:             # the client went away: what these servers wait for
            pass

    def close(self):
        self.stopped.set()
        self._threads[0].join(5)        # the accept loop sees ``stopped`` within 50 ms
        self.listener.close()
        for t in self._threads:
            t.join(5)


class _Peer:
    """One connection of a HostileServer: counted sends and bounded waits."""

    def __init__(self, conn, server):
        self.conn = conn
        self.server = server

    def send(self, data):
        self.conn.sendall(data)
        with self.server._lock:
            self.server.sent += len(data)

    def forever(self, data):
        """Send ``data`` again and again while the server is alive."""
        while self.server.alive:
            self.send(data)

    def trickle(self, data, interval):
        """One byte of ``data`` every ``interval`` seconds while the server is alive."""
        for i in range(len(data)):
            if not self.server.alive:
                return
            self.send(data[i:i + 1])
            self.server.stopped.wait(interval)


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
TLS_HELLO = bytes.fromhex("160301020001") + bytes(range(256)) * 16     # not HTTP at all


def garbage(peer, target):
    peer.send(TLS_HELLO + b"\r\n\r\n")


def garbage_then_hang_up(peer, target):
    peer.send(TLS_HELLO)


def endless_fields(peer, target):
    peer.send(b"HTTP/1.1 200 OK\r\n")
    peer.forever(b"".join(b"X-Forever-%d: %s\r\n" % (i, b"f" * 40) for i in range(1000)))


def endless_chunk_size_line(peer, target):
    peer.send(CHUNKED_HEAD)
    peer.forever(b"1" * 65536)


def endless_trailers(peer, target):
    peer.send(CHUNKED_HEAD + b"2\r\nok\r\n0\r\n")
    peer.forever(b"".join(b"X-Trailer-%d: %s\r\n" % (i, b"t" * 40) for i in range(1000)))


def billion_byte_chunk(peer, target):
    peer.send(CHUNKED_HEAD + b"3b9aca00\r\n")
    for _ in range(16):
        peer.send(b"x" * 65536)


def interim_forever(peer, target):
    peer.forever(b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)


def redirects_forever(peer, target):
    hop = int(target.rsplit("/", 1)[1] or 0) if target.startswith("/r/") else 0
    while peer.server.alive:
        peer.send(b"HTTP/1.1 302 Found\r\nLocation: /r/%d\r\nContent-Length: 0\r\n\r\n" % (hop + 1))
        hop += 1
        # Keep-alive: the next hop may come on this connection.
        head = b""
        while b"\r\n\r\n" not in head:
            data = peer.conn.recv(65536)
            if not data:
                return
            head += data
        with peer.server._lock:
            peer.server.targets.append(head.split(b" ", 2)[1].decode("latin-1"))


def redirect_loop(peer, target):
    while peer.server.alive:
        location = b"/b" if target == "/a" else b"/a"
        peer.send(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location)
        head = b""
        while b"\r\n\r\n" not in head:
            data = peer.conn.recv(65536)
            if not data:
                return
            head += data
        target = head.split(b" ", 2)[1].decode("latin-1")
        with peer.server._lock:
            peer.server.targets.append(target)


def trickled_head(peer, target):
    peer.trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1.0)


def trickled_body(peer, target):
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx")
    peer.server.stopped.wait(1.0)
    peer.trickle(b"y" * 99, 1.0)


def never_reads(peer, target):
    peer.server.stopped.wait(10)


TIMEOUT = 0.5           # the client's timeout against hostile servers (seconds)
FAIL_WITHIN = 2.0       # every hostile scenario must end in a failure this soon
UPLOAD = 32 << 20       # what the client tries to send to a server that never reads it
TIMED_OUT = "nothing from the server for 0\\.5s$"

Hostile = collections.namedtuple("Hostile", "behaviour path reason requests exit")
HOSTILE = {     # the reason is a regex; requests: how many the server must have seen;
                # exit: the CLI's exit status (curl's for that class of failure)
    "garbage": Hostile(garbage, "/", r"invalid response: malformed status line: ", 1, 1),
    "garbage, then hang up": Hostile(
        garbage_then_hang_up, "/", r"connection closed in the middle of the response head$", 1, 18),
    "endless header fields": Hostile(
        endless_fields, "/", r"invalid response: header section larger than 65536 bytes$", 1, 56),
    "endless chunk-size line": Hostile(
        endless_chunk_size_line, "/", r"invalid response: chunk-size line longer than 4096 bytes$", 1,
        56),
    "endless trailer fields": Hostile(
        endless_trailers, "/", r"invalid response: trailer section larger than 65536 bytes$", 1, 56),
    "billion-byte chunk": Hostile(
        billion_byte_chunk, "/",
        r"connection closed after 1048576 body bytes, before the end of the chunked body$", 1, 18),
    "interim responses forever": Hostile(
        interim_forever, "/", r"invalid response: more than \d+ informational", 1, 8),
    "redirects forever": Hostile(
        redirects_forever, "/r/0", r"more than 10 redirects: '.*/r/11' \(after 10 redirects\)$", 11,
        47),
    "redirect loop": Hostile(redirect_loop, "/a", r"redirect loop: '.*/a' \(after 1 redirects\)$", 2,
                             47),
    "head at 1 byte/s": Hostile(trickled_head, "/", r"timed out waiting for the response: " + TIMED_OUT,
                                1, 28),
    "body at 1 byte/s": Hostile(
        trickled_body, "/", r"timed out receiving the body \(1 bytes so far\): " + TIMED_OUT, 1, 28),
    "a 32 MiB upload never read": Hostile(
        never_reads, "/upload", r"timed out waiting for the response: " + TIMED_OUT, 1, 28),
}


def via_async(url, body, exit):
    """AsyncHTTP through Redirect: the consumer contract holds; returns the reason."""
    reactor = Reactor()
    inner = CheckingConsumer()
    try:
        with ErrorLog() as errors:
            AsyncHTTP(url, Redirect(inner), "GET" if body is None else "POST", body=body, timeout=TIMEOUT,
                      reactor=reactor)
            deadline = time.monotonic() + 20
            while not inner.closed:
                assert time.monotonic() < deadline, "the request did not end within 20 s"
                reactor.run_once(0.05)
    finally:
        close_idle_connections(reactor)
        reactor.close()
    inner.check()
    assert errors.records == [], [r.getMessage() for r in errors.records]
    assert inner.error, "no failure reported"
    return inner.error


def via_fetch(url, body, exit):
    with pytest.raises(FetchError) as info:
        fetch(url, "GET" if body is None else "POST", body=body, timeout=TIMEOUT)
    assert info.value.url == url and str(info.value) == "%s: %s" % (url, info.value.reason)
    return info.value.reason


def via_cli(url, body, exit):
    upload = [] if body is None else ["--data-binary", "@-"]
    proc = subprocess.run([sys.executable, "-m", "clients.http", "--timeout", str(TIMEOUT)] + upload + [url],
                          input=body, cwd=ROOT, capture_output=True, timeout=60)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == exit, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = "%s: %s: " % (PROG, url)
    assert lines[0].startswith(prefix), lines
    return lines[0][len(prefix):]


FACES = {"AsyncHTTP": via_async, "fetch": via_fetch, "CLI": via_cli}


@pytest.mark.parametrize("face", sorted(FACES))
@pytest.mark.parametrize("scenario", list(HOSTILE))
def test_hostile_server_ends_in_one_clean_reported_failure(scenario, face):
    behaviour, path, reason, requests, exit = HOSTILE[scenario]
    server = HostileServer(behaviour)
    INPUTS["hostile servers"] += 1
    body = b"u" * UPLOAD if behaviour is never_reads else None
    traced = face != "CLI"
    try:
        if traced:
            tracemalloc.start()
        start = time.monotonic()
        got = FACES[face](server.url(path), body, exit)
        took = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1] if traced else None
    finally:
        if traced:
            tracemalloc.stop()
        server.close()
    FIGURES["%s via %s" % (scenario, face)] = {
        "seconds": round(took, 3), "server_bytes_sent": server.sent, "requests_seen": len(server.targets),
        "reason": got, "client_peak_traced_kib": peak // 1024 if peak is not None else None}
    assert re.search(reason, got), (got, reason)
    assert took < FAIL_WITHIN, "%s took %.2fs to fail" % (scenario, took)
    assert len(server.targets) == requests, server.targets
    if traced:
        # Nothing like the billion bytes claimed, or everything an endless server sent (and the
        # upload, which is the caller's, at most once more).
        assert peak < (16 << 20) + len(body or b""), "the client traced %d KiB at its peak" % (peak // 1024)


# ======================================================================== soak
def _load_soak_http():
    spec = importlib.util.spec_from_file_location(
        "soak_http", os.path.join(ROOT, "tests", "benchmarks", "soak_http.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Check:
    """A consumer that checks one soak response and starts the next request when it closes."""

    def __init__(self, soak, number, expected):
        self.soak = soak
        self.number = number
        self.expected = expected
        self.chunks = []
        self.request = None

    def http_header(self, request):
        self.request = request

    def feed(self, data):
        self.chunks.append(data)

    def close(self):
        self.soak.finished(self)


class _ClientSoak:
    """``total`` GETs through one reactor's pool, ``parallel`` in flight at any time; ``run()``
    returns once every one has been answered and checked."""

    def __init__(self, reactor, url, total, parallel, bodies):
        self.reactor = reactor
        self.url = url
        self.total = total
        self.parallel = parallel
        self.bodies = bodies
        self.started = 0
        self.done = 0
        self.reused = 0
        self.failures = []

    def run(self, max_seconds):
        deadline = time.monotonic() + max_seconds
        for _ in range(self.parallel):
            self.start()
        while self.done < self.total:
            assert not self.failures, self.failures[:5]
            assert time.monotonic() < deadline, "only %d of %d requests in %ds" % (
                self.done, self.total, max_seconds)
            self.reactor.run_once(1.0)
        assert not self.failures, self.failures[:5]

    def start(self):
        if self.started < self.total:
            i = self.started % len(self.bodies)
            self.started += 1
            AsyncHTTP(self.url % i, _Check(self, self.started, self.bodies[i]), timeout=10,
                      reactor=self.reactor)

    def finished(self, check):
        # Called from the consumer's close(), where an exception would only be logged.
        request = check.request
        if request.error is not None or request.status[1] != 200:
            self.failures.append("request %d: %s %s" % (check.number, request.status, request.error))
        elif b"".join(check.chunks) != check.expected:
            self.failures.append("request %d: wrong body" % check.number)
        self.done += 1
        self.reused += request.reused
        self.start()


def _own_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.stress
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for descriptors")
def test_keep_alive_client_requests_leak_neither_memory_nor_descriptors(tmp_path):
    """``SOAK_REQUESTS / 20`` GETs (at least 1,000), ten at a time through one reactor's pool,
    against ``python -m servers.http``: every body right, the pooled connections reused, traced
    memory flat after the first tenth (measured with nothing in flight), and every descriptor
    back once the pool is closed."""
    total = max(1000, int(os.environ.get("SOAK_REQUESTS", "200000")) // 20)
    soak_http = _load_soak_http()
    bodies = [soak_http.file_body(i) for i in range(soak_http.FILES)]
    for i, body in enumerate(bodies):
        (tmp_path / ("%d.txt" % i)).write_bytes(body)
    server = soak_http.ServerProcess(str(tmp_path))
    reactor = Reactor()
    url = "http://127.0.0.1:%d/%%d.txt" % server.port
    fds_before = _own_fds()
    tracemalloc.start()
    try:
        start = time.monotonic()
        # A tenth first; then, with nothing in flight, the checkpoint; then the rest.
        warm_up = _ClientSoak(reactor, url, total // 10, 10, bodies)
        warm_up.run(300)
        gc.collect()
        traced_warm, fds_warm = tracemalloc.get_traced_memory()[0], _own_fds()
        rest = _ClientSoak(reactor, url, total - total // 10, 10, bodies)
        rest.run(300)
        elapsed = time.monotonic() - start
        gc.collect()
        traced_end, fds_end = tracemalloc.get_traced_memory()[0], _own_fds()
        pooled = len(client_pool(reactor))
    finally:
        tracemalloc.stop()
        close_idle_connections(reactor)
        reactor.close()
        err = server.stop()
    fds_after = _own_fds()
    reused = warm_up.reused + rest.reused
    FIGURES["client soak"] = {
        "requests": total, "seconds": round(elapsed, 2), "requests_per_second": round(total / elapsed),
        "reused_connections": reused, "pooled_at_end": pooled,
        "traced_bytes_checkpoint": traced_warm, "traced_bytes_end": traced_end,
        "fds_before": fds_before, "fds_checkpoint": fds_warm, "fds_end": fds_end,
        "fds_after_pool_closed": fds_after}
    assert reused >= total - 10, "connections were not reused"
    assert pooled <= 10 and fds_end == fds_warm and fds_after <= fds_before, FIGURES["client soak"]
    # 9/10 of the requests came and went after the checkpoint, and memory did not follow.  The
    # allowance: cancelled timers wait in the reactor's heap (up to 64 of them, lazily dropped)
    # and keep the few requests they belong to alive meanwhile.
    assert traced_end - traced_warm < 128 << 10, FIGURES["client soak"]
    assert "Traceback" not in err
