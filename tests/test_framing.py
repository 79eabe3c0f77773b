"""eventloop.framing.TerminatorFramer, without sockets: records do not depend on how the input is cut."""
import pytest
from hypothesis import given, strategies as st

from eventloop.framing import TerminatorFramer, find_prefix_at_end
from eventloop.testing import byte_streams, chunkings, terminators


class Sink:
    """Records what the framer hands over; ``schedule`` gives the terminator for record i."""

    def __init__(self, terminator, schedule=None):
        self.terminator = terminator
        self.schedule = schedule
        self.records = []
        self.piece = []
        self.calls = 0

    def get_terminator(self):
        self.calls += 1
        return self.terminator

    def collect_incoming_data(self, data):
        assert data, "the framer never hands over empty pieces"
        self.piece.append(bytes(data))

    def found_terminator(self):
        self.records.append(b"".join(self.piece))
        self.piece = []
        if self.schedule is not None:
            self.terminator = self.schedule(self)

    @property
    def rest(self):
        return b"".join(self.piece)


def feed_all(framer, sink, chunks):
    for chunk in chunks:
        framer.feed(chunk, sink)
    return sink


@given(st.data())
def test_bytes_terminator_splits_as_bytes_split_does_over_any_chunking(data):
    term = data.draw(terminators(max_size=5, alphabet=b"ab\r\n"), label="terminator")
    stream = data.draw(byte_streams(alphabet=b"ab\r\n", max_size=200), label="stream")
    framer = TerminatorFramer()
    sink = feed_all(framer, Sink(term), data.draw(chunkings(stream), label="chunks"))
    parts = stream.split(term)
    assert sink.records == parts[:-1]
    # What follows the last terminator was handed over, except a possible partial terminator.
    assert sink.rest + framer.buffer == parts[-1]
    assert len(framer.buffer) < len(term)


@given(st.data())
def test_records_do_not_depend_on_the_chunking(data):
    term = data.draw(terminators(max_size=4, alphabet=b"xy"), label="terminator")
    stream = data.draw(byte_streams(alphabet=b"xyz", max_size=120), label="stream")
    whole = feed_all(TerminatorFramer(), Sink(term), [stream])
    cut = feed_all(TerminatorFramer(), Sink(term), data.draw(chunkings(stream), label="chunks"))
    byte_by_byte = feed_all(TerminatorFramer(), Sink(term), [stream[i:i + 1] for i in range(len(stream))])
    assert whole.records == cut.records == byte_by_byte.records
    assert whole.rest == cut.rest == byte_by_byte.rest


@given(st.data())
def test_a_count_terminator_counts_down_across_feeds(data):
    size = data.draw(st.integers(1, 20), label="size")
    stream = data.draw(st.binary(max_size=100), label="stream")

    def again(sink):
        return size

    sink = feed_all(TerminatorFramer(), Sink(size, again), data.draw(chunkings(stream)))
    whole = len(stream) - len(stream) % size
    assert sink.records == [stream[i:i + size] for i in range(0, whole, size)]
    assert sink.rest == stream[whole:]
    assert sink.terminator == (size - len(stream) % size if len(stream) % size else size)


@pytest.mark.parametrize("term", [None, 0, b""])
@given(stream=st.binary(max_size=100), data=st.data())
def test_no_terminator_hands_over_everything_at_once(term, stream, data):
    framer = TerminatorFramer()
    sink = feed_all(framer, Sink(term), data.draw(chunkings(stream)))
    assert sink.records == [] and sink.rest == stream and framer.buffer == b""


@given(st.data())
def test_a_sink_may_switch_between_bytes_and_count_terminators(data):
    bodies = data.draw(st.lists(byte_streams(alphabet=b"\n0123x", max_size=30), max_size=6))
    stream = b"".join(b"%d\n" % len(body) + body for body in bodies)

    def next_terminator(sink):
        if sink.terminator == b"\n":
            size = int(sink.records.pop())
            if size:
                return size
            sink.records.append(b"")
        return b"\n"

    sink = feed_all(TerminatorFramer(), Sink(b"\n", next_terminator), data.draw(chunkings(stream)))
    assert sink.records == bodies and sink.rest == b""


@given(st.data())
def test_input_put_back_by_the_sink_is_split_next(data):
    tail = data.draw(byte_streams(alphabet=b"ab\n", max_size=30))
    stream = b"first\n" + tail
    framer = TerminatorFramer()

    class PutBack(Sink):
        def found_terminator(self):
            Sink.found_terminator(self)
            if len(self.records) == 1:
                framer.buffer = b"again\n" + framer.buffer

    sink = feed_all(framer, PutBack(b"\n"), data.draw(chunkings(stream)))
    assert sink.records == [b"first", b"again"] + tail.split(b"\n")[:-1]


def test_the_terminator_is_asked_for_before_every_record():
    sink = Sink(b";")
    TerminatorFramer().feed(b"a;b;c;d", sink)
    assert sink.records == [b"a", b"b", b"c"]
    assert sink.calls == 4


@given(haystack=st.binary(max_size=20), needle=st.binary(min_size=1, max_size=6))
def test_find_prefix_at_end_is_the_longest_proper_prefix(haystack, needle):
    n = find_prefix_at_end(haystack, needle)
    assert 0 <= n < len(needle)
    assert haystack.endswith(needle[:n])
    assert not any(haystack.endswith(needle[:k]) for k in range(n + 1, len(needle)))


@pytest.mark.parametrize("term", [b"\r\n\r\n", b"\n", 1000])
def test_work_is_linear_in_the_input_for_any_split(term):
    """Splitting a large stream byte by byte hands over each byte once: the buffer never grows
    beyond a partial terminator, so nothing is rescanned or recopied."""
    stream = (b"x" * 999 + b"\n") * 50
    framer = TerminatorFramer()
    sink = Sink(term, (lambda s: term) if isinstance(term, int) else None)
    largest = 0
    for i in range(len(stream)):
        framer.feed(stream[i:i + 1], sink)
        largest = max(largest, len(framer.buffer))
    assert largest < (len(term) if isinstance(term, bytes) else 1)
    assert sum(map(len, sink.records)) + len(sink.rest) + len(framer.buffer) == \
        len(stream) - (stream.count(term) * len(term) if isinstance(term, bytes) else 0)
