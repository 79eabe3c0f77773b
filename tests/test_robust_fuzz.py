"""Fuzzing the pure layers: the HTTP/1.1 message layer (both roles), the AsyncChat
terminator framer, a chat room member, and the RFC 868 codec, fed arbitrary bytes cut
arbitrarily.

Contracts under test:

* ``http11.Connection.next_event`` raises nothing but ``RemoteProtocolError`` (with a 4xx/5xx
  hint), stays in ERROR afterwards, always makes progress, and gives the same events
  however the input was cut;
* the framer never raises and never loses or duplicates a byte: collected data plus the
  terminators found plus the unprocessed rest is exactly the input, whatever terminators
  (bytes, counts, None, changed mid-stream) and read sizes;
* a chat member fed any bytes never reaches ``handle_error``, and everything the room
  delivers is UTF-8 lines free of control characters;
* ``rfc868.decode`` raises ``ValueError`` exactly for lengths other than four, and round-trips.

Every property counts the inputs it tried; the counts are printed at the end of the module
(``-s``) and written to ``$ROBUST_REPORT/fuzz.json`` when that variable names a directory.
``ROBUST_EXAMPLES=N`` runs N examples per property instead of the fast default.
"""
import collections
import itertools
import os
import sys

import pytest
from figures import counts_fixture
from hypothesis import HealthCheck, given, settings, strategies as st

from eventloop import AsyncChat, rfc868
from eventloop.http11 import (
    CLIENT, DONE, ERROR, NEED_DATA, PAUSED, SEND_RESPONSE, SERVER, ConnectionClosed, Connection, Data, EndOfMessage,
    InformationalResponse, LocalProtocolError, RemoteProtocolError, Request, Response)
from eventloop.testing import byte_streams, chunkings, drive, memory_reactor, memory_socketpair, \
    pump, terminators
from servers.chat import ChatChannel, ChatRoom
from strategies import message_streams

EXAMPLES = int(os.environ.get("ROBUST_EXAMPLES", "0"))
INPUTS = collections.Counter()


def fuzz(default):
    """Settings for one property: ``default`` examples, or ``ROBUST_EXAMPLES`` when set."""
    return settings(max_examples=EXAMPLES or default, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


inputs_report = counts_fixture("robust fuzz", "fuzz.json", INPUTS, "inputs tried",
                               {"examples_per_property": EXAMPLES or "default"})



# ======================================================================= HTTP/1.1

GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
SEEDS = [
    GET,
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n0\r\nA: b\r\n\r\n",
    b"PUT /x HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc" + GET,
    b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.0 404 Nope\r\n\r\nbody",
    b"HTTP/1.0 200 OK\r\n\r\nclose-delimited body",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\nHTTP/1.1 304 x\r\n\r\n",
]


def http_streams():
    """Random bytes, a soup of grammar fragments, or well-formed messages with random edits."""
    return message_streams(SEEDS, max_bytes=300, max_messages=3, max_offset=400,
                           weights=(1, 2, 2)).map(lambda kind_and_bytes: kind_and_bytes[1])


def _normal(event):
    """An event as a comparable tuple (Data pieces are merged by the caller)."""
    t = type(event)
    if t is Request:
        return ("request", event.method, event.target, event.version, tuple(event.headers))
    if t is Response or t is InformationalResponse:
        return (t.__name__, event.status, event.reason, event.version, tuple(event.headers))
    if t is EndOfMessage:
        return ("end", tuple(event.trailers))
    if t is ConnectionClosed:
        return ("closed",)
    raise AssertionError("unexpected event %r" % (event,))


def run_http(role, chunks, eof, method):
    """Feed ``chunks`` (then EOF if ``eof``) to one side, answering as a simple peer would.

    Returns ``(events, error)``: the events with Data merged, and the RemoteProtocolError
    status hint or None.  Asserts the contract on the way.
    """
    conn = Connection(role, max_head=2048, max_line=512, max_fields=20, max_body=4096, max_chunk_line=64)

    def ask():
        conn.send(Request(method, "/", [("Host", "h")] + ([("Content-Length", "0")] if method == "POST" else [])))
        conn.send(EndOfMessage())

    if role == CLIENT:
        ask()
    total = sum(len(c) for c in chunks)
    budget = 4 * total + 50         # each event consumes input or changes state
    events = []
    body = bytearray()
    steps = 0
    try:
        for chunk in [c for c in chunks if c] + ([b""] if eof else []):
            conn.receive_data(chunk)
            while True:
                steps += 1
                assert steps <= budget, "next_event made no progress (%d steps for %d bytes)" % (steps, total)
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is PAUSED:
                    assert conn.their_state == DONE, conn
                    if role == SERVER and conn.our_state == SEND_RESPONSE:
                        conn.send_head_and_body(Response(200, [("Content-Length", "0")]), b"")
                    if conn.our_state == DONE and conn.their_state == DONE:
                        conn.start_next_cycle()
                        if role == CLIENT:
                            ask()
                        continue
                    break
                if type(event) is Data:
                    body += event.data
                    continue
                if body:
                    events.append(("data", bytes(body)))
                    body.clear()
                events.append(_normal(event))
                if type(event) is ConnectionClosed:
                    break
    except RemoteProtocolError as exc:
        hint = exc.error_status_hint
        assert isinstance(hint, int) and 400 <= hint <= 599, hint
        assert conn.their_state == ERROR and not conn.keep_alive
        with pytest.raises(RemoteProtocolError):
            conn.next_event()
        if body:
            events.append(("data", bytes(body)))
        return events, hint
    except LocalProtocolError as exc:      # our own side followed the rules: never expected
        raise AssertionError("LocalProtocolError while acting as a well-behaved peer: %s" % exc)
    if body:
        events.append(("data", bytes(body)))
    assert sum(len(e[1]) for e in events if e[0] == "data") <= total
    return events, None


@fuzz(300)
@given(data=st.data(), stream=http_streams(), eof=st.booleans())
def test_http_server_side_any_bytes_any_cuts(data, stream, eof):
    INPUTS["http server"] += 1
    whole = run_http(SERVER, [stream], eof, "GET")
    cut = run_http(SERVER, data.draw(chunkings(stream)), eof, "GET")
    assert cut[0] == whole[0], "the events depend on how the input was cut"
    assert (cut[1] is None) == (whole[1] is None)


@fuzz(300)
@given(data=st.data(), stream=http_streams(), eof=st.booleans(),
       method=st.sampled_from(["GET", "HEAD", "POST", "CONNECT"]))
def test_http_client_side_any_bytes_any_cuts(data, stream, eof, method):
    INPUTS["http client"] += 1
    whole = run_http(CLIENT, [stream], eof, method)
    cut = run_http(CLIENT, data.draw(chunkings(stream)), eof, method)
    assert cut[0] == whole[0], "the events depend on how the input was cut"
    assert (cut[1] is None) == (whole[1] is None)


# ================================================================== the framer
class Framer(AsyncChat):
    """Records exactly what the framer hands over; terminators come from a (cycled) schedule."""

    schedule = (b"\n",)
    in_size = 65536

    def __init__(self, sock, map):
        AsyncChat.__init__(self, sock, map)
        self.ac_in_buffer_size = self.in_size
        self.pieces = []
        self.errors = []
        self._next = itertools.cycle(self.schedule)
        self._advance()

    def _advance(self):
        self.current = next(self._next)
        self.set_terminator(self.current)

    def collect_incoming_data(self, data):
        assert data, "collect_incoming_data called with nothing"
        self.pieces.append(bytes(data))

    def found_terminator(self):
        if isinstance(self.current, bytes):
            self.pieces.append(self.current)
        self._advance()

    def handle_error(self):
        self.errors.append(sys.exc_info()[1])
        AsyncChat.handle_error(self)


schedules = st.lists(st.one_of(terminators(max_size=6, alphabet=b"ab\r\n"), st.integers(1, 20), st.none()),
                     min_size=1, max_size=5)


@fuzz(400)
@given(data=st.data(), schedule=schedules, in_size=st.integers(1, 64), limit=st.none() | st.integers(1, 16))
def test_framer_never_raises_loses_or_duplicates(data, schedule, in_size, limit):
    INPUTS["framer"] += 1
    stream = data.draw(st.one_of(byte_streams(alphabet=b"ab\r\n", max_size=300), st.binary(max_size=300)))
    cls = type("F", (Framer,), {"schedule": tuple(schedule), "in_size": in_size})
    t = drive(cls, data.draw(chunkings(stream)), send_limit=limit, buffer_size=128)
    chan = t.channel
    assert chan.errors == []
    assert b"".join(chan.pieces) + chan.ac_in_buffer == stream


# ================================================================== a chat member
ROOM_TEXT = st.binary(max_size=200) | byte_streams(alphabet=b"/ab\r\n\xff\xfb\xfa\xf0\x1b\x00\xc3\xa9", max_size=300)


@fuzz(200)
@given(data=st.data(), stream=ROOM_TEXT, limit=st.none() | st.integers(1, 7))
def test_chat_member_fed_any_bytes_stays_sane(data, stream, limit):
    """Whatever one member sends, nobody's channel errs and every line others get is clean."""
    INPUTS["chat member"] += 1
    reactor = memory_reactor()
    room = ChatRoom()
    errors = []

    class Member(ChatChannel):
        max_line = 40

        def handle_error(self):
            errors.append(sys.exc_info()[1])
            ChatChannel.handle_error(self)

    ours_a, peer_a = memory_socketpair(send_limit=limit)
    ours_b, peer_b = memory_socketpair(buffer_size=1 << 20)
    Member(ours_a, room, reactor.map)
    b = Member(ours_b, room, reactor.map)
    pump(reactor)
    for chunk in data.draw(chunkings(stream)):
        sent = 0
        while sent < len(chunk):
            try:
                sent += peer_a.send(chunk[sent:])
            except BlockingIOError:
                pass
            except OSError:         # the member left (/quit): the rest is not delivered
                break
            pump(reactor)
            _drain(peer_a)
    pump(reactor)
    assert errors == []
    got = _drain(peer_b)
    assert got.endswith(b"\r\n")
    for line in got.split(b"\r\n")[:-1]:
        text = line.decode("utf-8")         # raises if the room passed on invalid UTF-8
        assert not any(ord(c) < 32 and c != "\t" or 127 <= ord(c) < 160 for c in text), line
    assert b.connected


def _drain(sock):
    out = bytearray()
    while True:
        try:
            data = sock.recv(1 << 20)
        except (BlockingIOError, ConnectionError):
            break
        if not data:
            break
        out += data
    return bytes(out)


# ================================================================== RFC 868
finite_times = st.one_of(st.integers(-2 ** 80, 2 ** 80),
                         st.floats(min_value=-1e15, max_value=1e15, allow_nan=False))


@fuzz(600)
@given(data=st.data(), blob=st.binary(max_size=12), reference=finite_times)
def test_rfc868_any_bytes_any_cuts(data, blob, reference):
    """A reply collected in pieces decodes iff it is four bytes; otherwise ValueError."""
    INPUTS["rfc868 decode"] += 1
    reply = b"".join(data.draw(chunkings(blob)))
    if len(reply) != 4:
        with pytest.raises(ValueError):
            rfc868.decode(reply, reference)
        return
    t = rfc868.decode(reply, reference)
    assert isinstance(t, int)
    assert rfc868.encode(t) == reply
    assert abs(t - reference) <= 2 ** 31


@fuzz(600)
@given(value=st.integers(-2 ** 40, 2 ** 40), unix=finite_times, reference=finite_times)
def test_rfc868_values_and_times(value, unix, reference):
    INPUTS["rfc868 values"] += 1
    if 0 <= value < 2 ** 32:
        assert rfc868.to_rfc868(rfc868.from_rfc868(value, reference)) == value
    else:
        with pytest.raises(ValueError):
            rfc868.from_rfc868(value, reference)
    wire = rfc868.encode(unix)
    assert len(wire) == 4
    decoded = rfc868.decode(wire, unix)
    assert decoded == int(unix // 1)        # the nearest era to the time itself is its own
