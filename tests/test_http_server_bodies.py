"""servers.http holds request bodies in bounded memory, over real sockets.

* A body no handler reads (``will_read_body`` False: StaticFiles for GET/HEAD) is dropped as it
  arrives: 100 connections each sending a 1 MiB body with ``GET`` cost the server no more than
  their connections' own state (``tracemalloc``), each gets its answer, and each connection
  stays usable for the next (pipelined) request.
* A body a handler reads arrives whole and exact, whatever its size, framing (Content-Length or
  chunked) and the cuts in the byte stream (Hypothesis), also after a dropped one.
* What the server holds in bodies not yet handed to their handlers, across all connections, is
  bounded by ``max_buffered_bodies``: 32 concurrent 1 MiB uploads through a 2 MiB budget cost
  about the budget, not 32 MiB; every upload completes, exact (no deadlock); ``Expect:
  100-continue`` is answered only once there is room; a client trickling its body holds its room
  for at most io_timeout while others wait (408), but is not cut when no one waits.
* :class:`BodyBudget` itself, on a virtual clock, under any sequence of arrivals, completions,
  departures and time (Hypothesis): never more than its limit granted, grants in arrival order,
  nobody waits while there is room for them (no deadlock), and no reservation is held for longer
  than its patience while someone waits.

The figures measured are printed at the end of the module (``-s``).
"""
import hashlib
import json
import re
import selectors
import socket
import sys
import threading
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventloop.testing import memory_reactor
from servers.http import HTTPServer, StaticFiles
from servers.http.budget import BodyBudget
from test_http_server import Served

KIB, MIB = 1 << 10, 1 << 20
SMALL = b"small file\n" * 10
# What one idle connection costs the server (HTTPChannel, Connection, socket, parser), traced:
# about 3 KiB (measured); twice that leaves room for the allocator's rounding.
PER_CONNECTION = 6 * KIB
# One read (64 KiB) and its copies on their way through the parser, at any moment.
READS = 4 * 64 * KIB
FIGURES = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    sys.stdout.write("\nhttp server bodies: %s\n" % json.dumps(FIGURES, sort_keys=True))


class Digests(StaticFiles):
    """Static files, plus POST/PUT answered with the length and SHA-256 of the body read."""

    def do_POST(self, request):
        body = request.body
        request.respond(200, (("Content-Type", "text/plain"),),
                        b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode()))

    do_PUT = do_POST


def digest(body):
    return b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "small.txt").write_bytes(SMALL)
    return str(root)


_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n")


def responses(data):
    """``[(status, body)]`` of the final responses in ``data`` (every body framed by
    Content-Length; 1xx responses skipped), and the bytes after the last complete one."""
    out = []
    while True:
        m = _STATUS.match(data)
        end = data.find(b"\r\n\r\n")
        if m is None or end < 0:
            return out, data
        status = int(m.group(1))
        if status < 200:
            data = data[end + 4:]
            continue
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", data[:end + 2])
        size = int(length.group(1)) if length else 0
        if len(data) < end + 4 + size:
            return out, data
        out.append((status, data[end + 4:end + 4 + size]))
        data = data[end + 4 + size:]


def converse(port, payloads, answers, *, piece=64 * KIB, timeout=30.0):
    """Open one connection per payload, all at once; send each payload (in ``piece``-byte
    sends, round robin, as the sockets take them) while reading; stop reading a connection once
    it has ``answers`` final responses or reaches EOF.  Returns what each connection read."""
    sel = selectors.DefaultSelector()
    conns = []
    for payload in payloads:
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        conns.append([s, memoryview(payload), 0, bytearray(), False])
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, conns[-1])
    deadline = time.monotonic() + timeout
    try:
        while any(not c[4] for c in conns):
            assert time.monotonic() < deadline, "%d connections unanswered after %gs: %r" % (
                sum(not c[4] for c in conns), timeout, [bytes(c[3][:80]) for c in conns if not c[4]])
            for key, events in sel.select(1.0):
                c = key.data
                s = c[0]
                if events & selectors.EVENT_WRITE:
                    try:
                        c[2] += s.send(c[1][c[2]:c[2] + piece])
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        c[2] = len(c[1])
                    if c[2] == len(c[1]):
                        sel.modify(s, selectors.EVENT_READ, c)
                if events & selectors.EVENT_READ:
                    try:
                        data = s.recv(16 * KIB)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    c[3] += data
                    if not data or len(responses(bytes(c[3]))[0]) >= answers:
                        c[4] = True
                        sel.unregister(s)
    finally:
        sel.close()
        for c in conns:
            c[0].close()
    return [bytes(c[3]) for c in conns]


class TracedPeak:
    """Peak traced memory above what was allocated at the start, while in a ``with``."""

    def __enter__(self):
        tracemalloc.start()
        self.base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        return self

    def __exit__(self, *exc):
        self.growth = tracemalloc.get_traced_memory()[1] - self.base
        tracemalloc.stop()


# ================================================================ bodies nobody reads
CLIENTS = 100


def test_a_body_no_handler_reads_is_dropped_as_it_arrives_100_clients_of_1mib(root):
    served = Served(Digests(root), max_body=MIB)
    try:
        payload = (b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MIB
                   + bytes(MIB) + b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        payloads = [payload] * CLIENTS
        with TracedPeak() as traced:
            got = converse(served.port, payloads, answers=2)
        for data in got:
            assert responses(data)[0] == [(200, SMALL), (200, SMALL)]
        # The bodies were 100 MiB; what the server held at most is its connections' state
        # and the reads in flight.
        bound = CLIENTS * PER_CONNECTION + READS
        FIGURES["unread 1 MiB bodies, 100 connections: traced peak KiB"] = traced.growth // KIB
        assert traced.growth < bound, "traced peak grew %d KiB (bound %d KiB)" % (
            traced.growth // KIB, bound // KIB)
        assert served.call(lambda: served.server.body_budget.held) == 0
    finally:
        served.stop()


def test_a_refused_100_continue_body_is_not_buffered_either(root):
    served = Served(Digests(root), max_body=MIB)
    try:
        payload = (b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                   b"Expect: 100-continue\r\n\r\n" % MIB + bytes(MIB))
        with TracedPeak() as traced:
            got = converse(served.port, [payload] * 20, answers=1)
        assert all(responses(data)[0] == [(200, SMALL)] for data in got)
        assert traced.growth < 20 * PER_CONNECTION + READS, traced.growth
    finally:
        served.stop()


# ================================================================ bodies that are read
MAX_BODY = 4096


@pytest.fixture(scope="module")
def digests(root):
    served = Served(Digests(root), max_body=MAX_BODY, max_buffered_bodies=MAX_BODY)
    yield served
    served.stop()


def framed(body, chunks):
    """``body`` as a request body: Content-Length when ``chunks`` is None, else chunked in
    pieces of those sizes (the rest in one last chunk)."""
    if chunks is None:
        return b"Content-Length: %d\r\n\r\n" % len(body) + body
    out, pos = [b"Transfer-Encoding: chunked\r\n\r\n"], 0
    for size in chunks + [len(body)]:
        piece = body[pos:pos + size]
        pos += len(piece)
        if piece:
            out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), body=st.binary(max_size=MAX_BODY),
       chunks=st.none() | st.lists(st.integers(1, 700), max_size=12),
       dropped=st.binary(max_size=MAX_BODY), method=st.sampled_from(["POST", "PUT"]))
def test_a_body_that_is_read_arrives_whole_and_exact(digests, data, body, chunks, dropped,
                                                     method):
    stream = (b"GET /small.txt HTTP/1.1\r\nHost: x\r\n" + framed(dropped, None)
              + method.encode() + b" /up HTTP/1.1\r\nHost: x\r\n" + framed(body, chunks)
              + b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=48), label="cuts")
    edges = [0] + sorted(set(cuts)) + [len(stream)]
    pieces = [stream[i:j] for i, j in zip(edges, edges[1:])]
    with digests.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            s.sendall(piece)
        got = bytearray()
        for _ in range(1000):
            more = s.recv(65536)
            if not more:
                break
            got += more
    answers, rest = responses(bytes(got))
    assert answers == [(200, SMALL), (200, digest(body)), (200, SMALL)] and rest == b""


# ================================================================ the server-wide budget
class RecordingBudget(BodyBudget):
    """A BodyBudget that remembers the most it ever held and the most connections that waited."""

    most_held = most_waiting = 0

    def _grant(self, channel, size):
        BodyBudget._grant(self, channel, size)
        self.most_held = max(self.most_held, self.held)

    def reserve(self, channel, size):
        granted = BodyBudget.reserve(self, channel, size)
        self.most_waiting = max(self.most_waiting, self.waiting)
        return granted


def budgeted(app, limit, **options):
    served = Served(app, max_buffered_bodies=limit, **options)
    server = served.server
    server.body_budget = RecordingBudget(limit, served.reactor, server.io_timeout)
    return served


UPLOADS = 32
BUDGET = 2 * MIB


def test_concurrent_uploads_are_bounded_by_the_budget_and_all_complete(root):
    served = budgeted(Digests(root), BUDGET, max_body=MIB)
    try:
        bodies = [bytes([i]) * (MIB - i * 1000) for i in range(UPLOADS)]
        payloads = [b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    + framed(body, None if i % 4 else [200 * KIB] * 4)
                    for i, body in enumerate(bodies)]
        with TracedPeak() as traced:
            got = converse(served.port, payloads, answers=1, timeout=60)
        for data, body in zip(got, bodies):
            assert responses(data)[0] == [(200, digest(body))]
        budget = served.server.body_budget
        assert budget.most_held <= BUDGET and budget.most_waiting > 0, (
            budget.most_held, budget.most_waiting)
        assert served.call(lambda: (budget.held, len(budget), budget.waiting)) == (0, 0, 0)
        # Held at most: the budget (a bytearray may round a body up by 1/8), a body copied to
        # bytes and hashed while it is handled, one read for each connection waiting for room,
        # and the connections' own state.  The uploads were 32 MiB.
        bound = BUDGET * 9 // 8 + 2 * MIB + UPLOADS * (64 * KIB + PER_CONNECTION) + READS
        FIGURES["32 uploads of 1 MiB, 2 MiB budget"] = {
            "traced peak KiB": traced.growth // KIB, "bound KiB": bound // KIB,
            "most held KiB": budget.most_held // KIB, "most waiting": budget.most_waiting}
        assert traced.growth < bound, "traced peak grew %d KiB (bound %d KiB)" % (
            traced.growth // KIB, bound // KIB)
    finally:
        served.stop()


def test_many_tiny_chunks_cost_their_length_not_an_object_each(root):
    served = Served(Digests(root), max_body=MIB)
    try:
        body = bytes(range(256)) * 256                  # 64 KiB in 65,536 one-byte chunks
        payload = b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + framed(
            body, [1] * len(body))
        with TracedPeak() as traced:
            (got,) = converse(served.port, [payload], answers=1)
        assert responses(got)[0] == [(200, digest(body))]
        FIGURES["64 KiB body in 1-byte chunks: traced peak KiB"] = traced.growth // KIB
        assert traced.growth < 2 * len(body) + READS, traced.growth
    finally:
        served.stop()


def _head(s, timeout=5.0):
    """Read one response head from ``s``."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = s.recv(1)
        assert more, "closed after %r" % data
        data += more
    return data


def test_100_continue_is_sent_only_once_the_body_has_room(root):
    served = budgeted(Digests(root), 1000, max_body=1000)
    budget = served.server.body_budget
    try:
        with served.connect() as first, served.connect() as second:
            first.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
            assert served.wait_until(lambda: len(budget) == 1)
            second.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                           b"Expect: 100-continue\r\n\r\n")
            assert served.wait_until(lambda: budget.waiting == 1)
            second.setblocking(False)
            with pytest.raises(BlockingIOError):   # the server decided to wait: nothing sent
                second.recv(100)
            first.sendall(b"a" * 990)
            assert _head(first).startswith(b"HTTP/1.1 200 ")
            assert _head(second).startswith(b"HTTP/1.1 100 Continue\r\n")
            second.sendall(b"hello")
            head = _head(second)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert second.recv(100) == digest(b"hello")
    finally:
        served.stop()


IO = 1.0


def _trickle(s, stop, sent, step=0.05):
    """Send one byte every ``step`` seconds until ``stop`` is set or the server stops reading;
    count them in ``sent``."""
    while not stop.wait(step):
        try:
            s.send(b"t")
        except OSError:
            return
        sent.append(1)


def test_a_trickling_body_holds_its_room_at_most_io_timeout_while_others_wait(root):
    served = budgeted(Digests(root), 1000, max_body=1000, io_timeout=IO)
    budget = served.server.body_budget
    stop = threading.Event()
    try:
        with served.connect() as slow, served.connect() as waiting:
            slow.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            trickler = threading.Thread(target=_trickle, args=(slow, stop, []))
            trickler.start()
            assert served.wait_until(lambda: len(budget) == 1)
            start = time.monotonic()
            waiting.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            assert _head(waiting, IO + 5).startswith(b"HTTP/1.1 200 ")
            served_after = time.monotonic() - start
            stop.set()
            trickler.join(5)
            assert _head(slow).startswith(b"HTTP/1.1 408 ")
            assert served_after < IO + 1.0, served_after
    finally:
        stop.set()
        served.stop()


def test_a_trickling_body_is_not_cut_while_no_one_waits(root):
    served = budgeted(Digests(root), 1000, max_body=1000, io_timeout=IO)
    stop = threading.Event()
    try:
        with served.connect() as slow:
            slow.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            sent = []
            trickler = threading.Thread(target=_trickle, args=(slow, stop, sent))
            trickler.start()
            assert served.wait_until(lambda: len(served.server.body_budget) == 1)
            slow.settimeout(0.1)
            deadline = time.monotonic() + 2.5 * IO     # the body keeps coming: no 408
            while time.monotonic() < deadline:
                with pytest.raises(socket.timeout):
                    slow.recv(100)
            stop.set()
            trickler.join(5)
            slow.sendall(b"t" * (1000 - len(sent)))
            assert _head(slow).startswith(b"HTTP/1.1 200 ")
    finally:
        stop.set()
        served.stop()


def test_max_buffered_bodies_below_max_body_is_refused(root):
    with pytest.raises(ValueError, match="at least max_body"):
        HTTPServer(("127.0.0.1", 0), StaticFiles(root), max_body=MIB, max_buffered_bodies=MIB - 1)


def test_max_body_none_means_up_to_the_budget(root):
    served = Served(Digests(root), max_body=None, max_buffered_bodies=1000)
    try:
        assert served.server.max_body == 1000
        (got,) = converse(served.port, [b"POST /up HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Length: 1001\r\n\r\n"], answers=1)
        assert responses(got)[0][0][0] == 413
    finally:
        served.stop()


# ======================================================= BodyBudget on a virtual clock
class FakeChannel:
    """What BodyBudget needs of a channel: told when room is granted, or when it is taken back."""

    def __init__(self, budget, number, size, granted):
        self.budget, self.number, self.size, self.granted = budget, number, size, granted
        self.granted_at = None
        self.taken_back = False

    def room_granted(self):
        self.granted_at = self.budget._reactor.clock()
        self.granted.append(self.number)

    def room_taken_back(self):
        self.taken_back = True
        self.budget.release(self)


LIMIT, PATIENCE = 100, 10.0

operations = st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.integers(1, LIMIT)),
    st.tuples(st.just("finish"), st.integers(0, 50)),      # a holder's body is complete
    st.tuples(st.just("leave"), st.integers(0, 50)),       # a holder or a waiter closes
    st.tuples(st.just("wait"), st.floats(0.0, 2 * PATIENCE))), max_size=60)


@given(operations)
def test_body_budget_grants_in_order_within_its_limit_and_never_deadlocks(ops):
    reactor = memory_reactor()
    budget = BodyBudget(LIMIT, reactor, PATIENCE)
    present, granted = [], []           # channels in arrival order; numbers in grant order
    for number, (op, arg) in enumerate(ops):
        if op == "arrive":
            channel = FakeChannel(budget, number, arg, granted)
            present.append(channel)
            if budget.reserve(channel, arg):
                channel.room_granted()
        elif op == "wait":
            reactor.clock.advance(arg)
            reactor.run_once(0)
        else:
            candidates = [c for c in present if op == "leave" or c.granted_at is not None]
            if candidates:
                channel = candidates[arg % len(candidates)]
                present.remove(channel)
                budget.release(channel)
        present = [c for c in present if not c.taken_back]
        holders = [c for c in present if c.granted_at is not None]
        waiting = [c for c in present if c.granted_at is None]
        assert granted == sorted(granted), "granted out of arrival order: %r" % granted
        assert budget.held == sum(c.size for c in holders) <= LIMIT
        assert (len(budget), budget.waiting) == (len(holders), len(waiting))
        if waiting:
            # No deadlock: whoever is first in line does not fit.  And once the timers have
            # run, no one has held room for as long as the patience while someone waits.
            assert waiting[0].size > LIMIT - budget.held
            if op == "wait":
                now = reactor.clock()
                assert all(now - c.granted_at < PATIENCE for c in holders)
    for channel in present:
        budget.release(channel)
    assert (budget.held, len(budget), budget.waiting) == (0, 0, 0)
