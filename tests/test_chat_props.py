"""AsyncChat on the memory backend: the records it finds and the bytes it sends do not depend
on how the stream was cut, on the terminator's shape, or on how much each send accepts."""
import errno

import pytest
from hypothesis import assume, given, strategies as st

from eventloop import AsyncChat, simple_producer
from eventloop.testing import byte_streams, chunkings, drive, terminators


def longest_prefix_suffix(data, term):
    """Length of the longest proper prefix of ``term`` that ``data`` ends with (the model's
    own, independent of the core's scanner)."""
    for k in range(min(len(term) - 1, len(data)), 0, -1):
        if data[-k:] == term[:k]:
            return k
    return 0


class Recorder(AsyncChat):
    """Collects records: the data before each terminator; ``rest`` is what followed the last."""

    first_terminator = None

    def __init__(self, sock, map):
        AsyncChat.__init__(self, sock, map)
        self.records = []
        self.parts = []
        self.set_terminator(self.first_terminator)

    def collect_incoming_data(self, data):
        assert data, "collect_incoming_data called with nothing"
        self.parts.append(bytes(data))

    def found_terminator(self):
        self.records.append(b"".join(self.parts))
        self.parts = []
        self.next_terminator()

    def next_terminator(self):
        pass

    @property
    def rest(self):
        return b"".join(self.parts)


def recorder(term):
    return type("BytesRecorder", (Recorder,), {"first_terminator": term})


# ------------------------------------------------------------- terminators
@given(st.data())
def test_bytes_terminator_records_do_not_depend_on_chunking(data):
    term = data.draw(terminators(max_size=8), label="terminator")
    stream = data.draw(byte_streams(alphabet=term + b"x", max_size=160), label="stream")
    chunks = data.draw(chunkings(stream), label="chunks")
    chan = drive(recorder(term), chunks).channel
    *records, rem = stream.split(term)
    assert chan.records == records
    # A possible start of the terminator stays buffered, uncollected, at EOF.
    assert chan.rest == rem[:len(rem) - longest_prefix_suffix(rem, term)]


@given(st.data())
def test_self_overlapping_terminators_split_at_every_boundary(data):
    """b"aab" after b"aaa...": each way of cutting a run of a's must still find it."""
    term = data.draw(st.sampled_from([b"aab", b"\r\n\r\n", b"abab", b"aaaa", b"abcab"]))
    pad = data.draw(st.integers(0, 6))
    stream = term[:-1] * 2 + term[0:1] * pad + term + b"tail" + term
    chunks = data.draw(chunkings(stream))
    chan = drive(recorder(term), chunks).channel
    assert chan.records == stream.split(term)[:-1]


class Fixed(Recorder):
    size = 1

    def __init__(self, sock, map):
        self.first_terminator = self.size
        Recorder.__init__(self, sock, map)

    def next_terminator(self):
        self.set_terminator(self.size)


@given(st.data())
def test_integer_terminator_records_do_not_depend_on_chunking(data):
    size = data.draw(st.integers(1, 20), label="size")
    stream = data.draw(st.binary(max_size=160), label="stream")
    chunks = data.draw(chunkings(stream), label="chunks")
    chan = drive(type("F", (Fixed,), {"size": size}), chunks).channel
    whole = len(stream) - len(stream) % size
    assert chan.records == [stream[i:i + size] for i in range(0, whole, size)]
    assert chan.rest == stream[whole:]          # a partial count is collected at once


@pytest.mark.parametrize("term", [None, 0, b""])
@given(data=st.data())
def test_no_terminator_collects_everything(term, data):
    stream = data.draw(st.binary(max_size=100))
    chan = drive(recorder(term), data.draw(chunkings(stream))).channel
    assert chan.records == [] and chan.rest == stream


# ------------------------------------------------- terminators changed mid-stream
class LengthPrefixed(Recorder):
    """``<decimal length>\\n<body>``, repeated: the terminator alternates bytes / count."""

    first_terminator = b"\n"

    def next_terminator(self):
        if self.get_terminator() == b"\n":
            size = int(self.records.pop())
            if size:
                self.set_terminator(size)
            else:
                self.records.append(b"")
        else:
            self.set_terminator(b"\n")


@given(st.data())
def test_header_then_counted_body(data):
    bodies = data.draw(st.lists(byte_streams(alphabet=b"\n0123x", max_size=30), max_size=6))
    stream = b"".join(b"%d\n" % len(body) + body for body in bodies)
    chan = drive(LengthPrefixed, data.draw(chunkings(stream))).channel
    assert chan.records == bodies
    assert chan.rest == b""


class SmtpLike(Recorder):
    """CRLF-terminated commands; after ``DATA`` a message ending in CRLF.CRLF, then commands."""

    first_terminator = b"\r\n"

    def next_terminator(self):
        if self.get_terminator() == b"\r\n" and self.records[-1] == b"DATA":
            self.set_terminator(b"\r\n.\r\n")
        else:
            self.set_terminator(b"\r\n")


def ends_at(piece, term):
    """True when ``piece + term`` first contains ``term`` right after ``piece``."""
    return (piece + term).find(term) == len(piece)


@given(st.data())
def test_command_lines_and_dot_terminated_messages(data):
    alphabet = b"\r\n.aD"
    items = data.draw(st.lists(st.tuples(st.booleans(), byte_streams(alphabet=alphabet,
                                                                      max_size=20)),
                               max_size=6))
    stream = b""
    expected = []
    for is_message, text in items:
        if is_message:
            assume(ends_at(text, b"\r\n.\r\n"))
            stream += b"DATA\r\n" + text + b"\r\n.\r\n"
            expected += [b"DATA", text]
        else:
            assume(ends_at(text, b"\r\n") and text != b"DATA")
            stream += text + b"\r\n"
            expected.append(text)
    chan = drive(SmtpLike, data.draw(chunkings(stream))).channel
    assert chan.records == expected


# ------------------------------------------------------------------- output
class Pusher(AsyncChat):
    """Queues a scripted mix of push() and producers, then close_when_done()."""

    script = ()
    out_size = 65536

    def __init__(self, sock, map):
        AsyncChat.__init__(self, sock, map)
        self.ac_out_buffer_size = self.out_size
        for piece, producer_size in self.script:
            if producer_size:
                self.push_with_producer(simple_producer(piece, buffer_size=producer_size))
            else:
                self.push(piece)
        self.close_when_done()

    def collect_incoming_data(self, data):
        pass

    def found_terminator(self):
        pass


@given(pieces=st.lists(st.tuples(st.binary(max_size=40), st.integers(0, 7)), max_size=8),
       send_limit=st.integers(1, 16), buffer_size=st.integers(1, 64),
       out_size=st.integers(1, 24))
def test_pushed_output_arrives_whole_whatever_each_send_accepts(pieces, send_limit,
                                                                buffer_size, out_size):
    cls = type("P", (Pusher,), {"script": pieces, "out_size": out_size})
    t = drive(cls, [], close=False, send_limit=send_limit, buffer_size=buffer_size)
    assert t.sent == b"".join(piece for piece, _ in pieces)
    assert t.closed, "close_when_done closes once everything is sent"
    assert t.channel.queued_bytes == 0


class Echo(AsyncChat):
    """Echoes each line; on EOF it finishes sending before closing."""

    def __init__(self, sock, map):
        AsyncChat.__init__(self, sock, map)
        self.set_terminator(b"\n")
        self.parts = []

    def collect_incoming_data(self, data):
        self.parts.append(data)

    def found_terminator(self):
        self.push(b"".join(self.parts) + b"\n")
        self.parts = []

    def handle_eof(self):
        self.eof_received = True
        self.interest_changed()
        self.close_when_done()


@given(st.data(), st.integers(1, 8))
def test_echo_of_any_chunking_and_any_send_limit(data, send_limit):
    lines = data.draw(st.lists(byte_streams(alphabet=b"ab ", max_size=12), max_size=8))
    stream = b"".join(line + b"\n" for line in lines)
    t = drive(Echo, data.draw(chunkings(stream)), send_limit=send_limit)
    assert t.sent == stream
    assert t.closed


@given(st.data())
def test_pushes_spread_over_time_arrive_in_order(data):
    pieces = data.draw(st.lists(st.binary(min_size=1, max_size=20), max_size=8))
    delays = data.draw(st.lists(st.integers(0, 5), min_size=len(pieces),
                                max_size=len(pieces)))
    limit = data.draw(st.integers(1, 8))

    class Later(Pusher):
        def __init__(self, sock, map):
            AsyncChat.__init__(self, sock, map)
            at = 0
            for piece, delay in zip(pieces, delays):
                at += delay
                self.call_later(at, self.push, piece)
            self.call_later(at, self.close_when_done)

    t = drive(Later, [], close=False, send_limit=limit)
    assert t.sent == b"".join(pieces) and t.closed


# ------------------------------------------------------------- fault injection
@pytest.mark.parametrize("code", [errno.EAGAIN, errno.EINTR])
@pytest.mark.parametrize("op", ["recv", "send"])
def test_a_transient_error_loses_and_repeats_nothing(op, code):
    """EAGAIN/EINTR mean "try again": the channel must stay open and the bytes intact."""

    class Flaky(Echo):
        def __init__(self, sock, map):
            Echo.__init__(self, sock, map)
            sock.inject(op, code)

    t = drive(Flaky, [b"one\n", b"two\n"], send_limit=3)
    assert t.sent == b"one\ntwo\n"
    assert t.unsent == b""


@pytest.mark.parametrize("code", [errno.ECONNRESET, errno.EPIPE])
def test_a_reset_peer_closes_the_channel_quietly(code, caplog):
    class Doomed(Echo):
        def __init__(self, sock, map):
            Echo.__init__(self, sock, map)
            sock.inject("send", code)

    t = drive(Doomed, [b"one\n", b"two\n"])
    assert t.closed and t.sent == b""
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# ------------------------------------------------------------- overridden hooks
# handle_read() and push() call the socket directly unless a subclass overrides recv(),
# send() or get_terminator(); an override must still be honoured on every path.
class Upper(Echo):
    """Transforms input in recv() and output in send(): both overrides must be used."""

    def recv(self, buffer_size):
        return Echo.recv(self, buffer_size).upper()

    def send(self, data):
        return Echo.send(self, bytes(data).replace(b"A", b"4"))


@given(st.data(), st.integers(1, 8))
def test_overridden_recv_and_send_see_every_byte(data, send_limit):
    lines = data.draw(st.lists(byte_streams(alphabet=b"ab", max_size=12), max_size=6))
    stream = b"".join(line + b"\n" for line in lines)
    t = drive(Upper, data.draw(chunkings(stream)), send_limit=send_limit)
    assert t.sent == stream.upper().replace(b"A", b"4")


class SwitchingTerminator(Recorder):
    """get_terminator() overridden: records alternate between ';' and ',' terminators."""

    def get_terminator(self):
        return b";" if len(self.records) % 2 == 0 else b","


@given(st.data())
def test_overridden_get_terminator_is_asked_for_every_record(data):
    stream = data.draw(byte_streams(alphabet=b";,x", max_size=60))
    t = drive(SwitchingTerminator, data.draw(chunkings(stream)))
    expected, rest, want = [], stream, b";"
    while want in rest:
        record, rest = rest.split(want, 1)
        expected.append(record)
        want = b"," if want == b";" else b";"
    assert t.channel.records == expected
    assert t.channel.rest == rest


class PutBack(Recorder):
    """found_terminator() puts input back through ac_in_buffer, once."""

    first_terminator = b"\n"
    put_back = b"again\n"

    def found_terminator(self):
        Recorder.found_terminator(self)
        if len(self.records) == 1:
            self.ac_in_buffer = self.put_back + self.ac_in_buffer


@given(st.data())
def test_input_put_back_by_a_handler_is_framed_next(data):
    stream = b"first\n" + data.draw(byte_streams(alphabet=b"ab\n", max_size=30))
    t = drive(PutBack, data.draw(chunkings(stream)))
    assert t.channel.records == [b"first", b"again"] + stream[6:].split(b"\n")[:-1]
