"""The one output path (eventloop.transport.OutputQueue): its rules without sockets, then on
every backend through the channels that use it (DispatcherWithSend and AsyncChat)."""
import errno
import logging
import os

import pytest
from hypothesis import given, strategies as st

from eventloop import AsyncChat, DispatcherWithSend, FileProducer, simple_producer
from eventloop.pollers import WRITE
from eventloop.transport import OutputQueue, SocketWriter, socket_writer


# ------------------------------------------------------------------ doubles
class Owner:
    """Records what the queue tells it, and checks it is told only of real changes."""

    def __init__(self):
        self.queue = None
        self.told_pending = False
        self.interest_calls = 0
        self.closes = 0
        self.pauses = 0
        self.resumes = 0
        self.paused = False

    def interest_changed(self):
        self.interest_calls += 1
        assert bool(self.queue) != self.told_pending, "told of a change that did not happen"
        self.told_pending = bool(self.queue)

    def handle_close(self):
        self.closes += 1
        self.queue.clear()

    def pause_writing(self):
        assert not self.paused
        self.paused = True
        self.pauses += 1

    def resume_writing(self):
        assert self.paused
        self.paused = False
        self.resumes += 1


class FakeWriter:
    """Takes at most the next of ``capacities`` bytes per call (0: would block)."""

    def __init__(self, capacities=(), *, sendfile=True, gather=True):
        self.capacities = list(capacities)
        self.received = bytearray()
        self.calls = 0
        if not sendfile:
            self.sendfile = None
        if not gather:
            self.sendmsg = None

    def _take(self, n):
        self.calls += 1
        cap = self.capacities.pop(0) if self.capacities else 1 << 30
        if cap == 0:
            raise BlockingIOError(errno.EAGAIN, "would block")
        return min(n, cap)

    def send(self, data):
        n = self._take(len(data))
        self.received += bytes(data[:n])
        return n

    def sendmsg(self, buffers):
        joined = b"".join(bytes(b) for b in buffers)
        return self.send(joined)

    def sendfile(self, fd, offset, count):
        n = self._take(count)
        data = os.pread(fd, n, offset)
        self.received += data
        return len(data)


def make_queue(writer, **kwargs):
    owner = Owner()
    queue = OutputQueue(owner, writer, **kwargs)
    owner.queue = queue
    return owner, queue


def drain(queue, writer, rounds=10_000):
    for _ in range(rounds):
        if queue.flush():
            return
        writer.capacities = writer.capacities or [1 << 30]
    raise AssertionError("the queue did not drain")


CONTENT = bytes(range(256)) * 400              # 102,400 bytes


@pytest.fixture(scope="module")
def shared_file(tmp_path_factory):
    """A file the property tests only read (one for all their examples): its path."""
    path = tmp_path_factory.mktemp("transport") / "data.bin"
    path.write_bytes(CONTENT)
    return str(path)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path, CONTENT


# --------------------------------------------------------- the rules, pure
pieces = st.one_of(
    st.binary(min_size=0, max_size=300).map(lambda b: ("bytes", b)),
    st.binary(min_size=1, max_size=300).map(lambda b: ("memoryview", b)),
    st.binary(min_size=1, max_size=300).map(lambda b: ("bytearray", b)),
    st.binary(min_size=0, max_size=600).map(lambda b: ("producer", b)),
    st.tuples(st.integers(0, 5000), st.integers(0, 3000)).map(lambda t: ("file", t)),
)


def put(queue, piece, path, content):
    """Queue one piece; return the bytes it stands for."""
    kind, value = piece
    if kind == "bytes":
        queue.write(value)
        return value
    if kind == "memoryview":
        queue.write(memoryview(value))
        return value
    if kind == "bytearray":
        queue.write(bytearray(value))
        return value
    if kind == "producer":
        queue.push_producer(simple_producer(value, buffer_size=97))
        return value
    offset, count = value
    queue.write_file(FileProducer(open(path, "rb"), offset, count))
    return content[offset:offset + count]


@given(items=st.lists(pieces, max_size=8), capacities=st.lists(st.integers(0, 700), max_size=40),
       chunk=st.sampled_from([None, 1, 64, 1000]), sendfile=st.booleans())
def test_every_byte_arrives_once_in_order_however_the_kernel_takes_it(
        shared_file, items, capacities, chunk, sendfile):
    path, content = shared_file, CONTENT
    writer = FakeWriter(capacities, sendfile=sendfile)
    owner, queue = make_queue(writer, chunk=chunk)
    expected = b"".join(put(queue, piece, path, content) for piece in items)
    drain(queue, writer)
    assert bytes(writer.received) == expected
    assert queue.size == 0 and not queue
    assert owner.told_pending is False        # the owner's write interest ended with the output
    assert owner.closes == 0


@given(capacities=st.lists(st.integers(0, 300), min_size=1, max_size=30),
       sizes=st.lists(st.integers(1, 400), min_size=1, max_size=10),
       high=st.integers(0, 500), low=st.integers(0, 500))
def test_back_pressure_pauses_above_high_water_and_resumes_at_low_water(capacities, sizes, high, low):
    low = min(low, high)
    writer = FakeWriter(capacities)
    owner, queue = make_queue(writer, high_water=high, low_water=low)
    for size in sizes:
        queue.write(b"x" * size)
        assert owner.paused == (queue.size > high or (owner.paused and queue.size > low))
    drain(queue, writer)
    assert not owner.paused and owner.pauses == owner.resumes


def test_a_high_water_mark_of_zero_means_while_anything_is_queued():
    writer = FakeWriter([3, 0])
    owner, queue = make_queue(writer, high_water=0)
    queue.write(b"all of it goes")              # partial: 3 bytes taken
    assert owner.paused and queue.size == 11
    queue.flush()                               # would block: still paused
    assert owner.paused
    queue.flush()
    assert not owner.paused and owner.pauses == 1 and owner.resumes == 1
    queue.write(b"sent whole")                 # nothing waits: the owner hears nothing
    assert owner.pauses == 1 and owner.interest_calls == 2


def test_the_owner_may_write_again_from_resume_writing():
    writer = FakeWriter([2])
    owner, queue = make_queue(writer, high_water=0)
    follow_up = []

    def resume_writing():
        Owner.resume_writing(owner)
        if not follow_up:
            follow_up.append(True)
            queue.write(b"next")

    owner.resume_writing = resume_writing
    queue.write(b"first")
    queue.flush()
    assert bytes(writer.received) == b"firstnext" and not queue


def test_a_close_marker_closes_the_owner_once_all_before_it_is_sent():
    writer = FakeWriter([4, 0])
    owner, queue = make_queue(writer)
    queue.write(b"goodbye")
    queue.close_when_done()
    assert owner.closes == 0
    queue.flush()                               # would block
    assert owner.closes == 0
    queue.flush()
    assert bytes(writer.received) == b"goodbye" and owner.closes == 1


@pytest.mark.parametrize("code", sorted({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN}))
def test_a_peer_gone_closes_the_owner_and_is_not_an_error(code):
    class Gone(FakeWriter):
        def send(self, data):
            raise OSError(code, os.strerror(code))

    owner, queue = make_queue(Gone())
    queue.write(b"lost")
    assert owner.closes == 1 and not queue


def test_other_send_errors_reach_the_caller():
    class Broken(FakeWriter):
        def send(self, data):
            raise OSError(errno.EINVAL, "invalid")

    owner, queue = make_queue(Broken())
    with pytest.raises(OSError):
        queue.write(b"x")
    assert owner.closes == 0


def test_a_file_span_falls_back_to_reading_when_sendfile_refuses(data_file):
    path, content = data_file

    class NoSendfile(FakeWriter):
        def sendfile(self, fd, offset, count):
            raise OSError(errno.EINVAL, "not for this file")

    writer = NoSendfile()
    owner, queue = make_queue(writer)
    producer = FileProducer(open(path, "rb"), 1000, 50_000)
    queue.write_file(producer, head=b"HEAD")
    drain(queue, writer)
    assert bytes(writer.received) == b"HEAD" + content[1000:51_000]
    assert producer.file.closed


@pytest.mark.parametrize("sendfile", [True, False])
def test_a_file_that_shrinks_while_sent_is_logged_and_closes_the_owner(data_file, sendfile, caplog):
    path, content = data_file
    writer = FakeWriter([1000, 0], sendfile=sendfile)
    owner, queue = make_queue(writer)
    producer = FileProducer(open(path, "rb"), 0, len(content))
    os.truncate(path, 5000)
    with caplog.at_level(logging.ERROR, logger="eventloop"):
        queue.write_file(producer)
        drain(queue, writer)
    assert owner.closes == 1 and producer.file.closed
    assert writer.received == content[:5000]
    assert any("shrank while being sent" in r.getMessage() for r in caplog.records)


def test_a_gathered_write_sends_head_and_body_in_one_call():
    writer = FakeWriter([7])
    owner, queue = make_queue(writer)
    queue.writev([b"head\r\n", b"the body"])
    assert writer.calls == 1 and queue.size == 7
    drain(queue, writer)
    assert bytes(writer.received) == b"head\r\nthe body"


def test_clear_closes_the_producers_and_files_it_drops(data_file):
    path, _ = data_file
    owner, queue = make_queue(FakeWriter([0]))
    queue.write(b"waiting")
    span = FileProducer(open(path, "rb"), 0, 10)
    queue.write_file(span)
    queue.clear()
    assert span.file.closed and queue.size == 0 and not queue


def test_a_socket_writer_without_flags_calls_the_socket_directly():
    import socket
    a, b = socket.socketpair()
    try:
        assert socket_writer(a).send == a.send
        assert socket_writer(a, socket.MSG_DONTWAIT).send(b"x") == 1
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------- every backend
class Pusher(AsyncChat):
    def collect_incoming_data(self, data):
        pass

    def found_terminator(self):
        pass


def read_all(sock, into):
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return True
            into += data
    except BlockingIOError:
        return False


@pytest.mark.parametrize("kind", ["dispatcher_with_send", "async_chat"])
def test_channels_ask_for_write_exactly_while_output_is_queued(env, kind):
    a, b = env.socketpair()
    if env.memory:
        a.send_limit = 1000
        payload = bytes(range(256)) * 80
    else:
        payload = bytes(range(256)) * (16 << 10)        # 4 MiB: more than a socketpair holds
    chan = DispatcherWithSend(a, env.reactor.map) if kind == "dispatcher_with_send" \
        else Pusher(a, env.reactor.map)
    (chan.send if kind == "dispatcher_with_send" else chan.push)(payload)
    assert chan.queued_bytes > 0
    env.idle_passes(1)
    assert env.reactor._registered[a.fileno()][1] & WRITE
    received = bytearray()
    env.pump(lambda: read_all(b, received) or chan.queued_bytes == 0, max_passes=5000)
    read_all(b, received)
    assert received == payload
    env.idle_passes(2)
    assert not env.reactor._registered[a.fileno()][1] & WRITE


def test_a_file_pushed_on_a_channel_arrives_exact_on_every_backend(env, data_file):
    path, content = data_file
    a, b = env.socketpair()
    chan = Pusher(a, env.reactor.map)
    chan.push(b"<")
    chan.push_with_producer(FileProducer(open(path, "rb"), 10, 90_000))
    chan.push(b">")
    chan.close_when_done()
    received = bytearray()
    env.pump(lambda: read_all(b, received), max_passes=5000)
    assert received == b"<" + content[10:90_010] + b">"
    assert not env.reactor.map


@pytest.mark.parametrize("flags", [0, getattr(__import__("socket"), "MSG_DONTWAIT", 0)])
def test_a_queue_and_its_writer_are_freed_without_the_cyclic_gc(flags):
    import gc
    import socket
    import weakref

    a, b = socket.socketpair()
    try:
        owner = Owner()
        writer = socket_writer(a, flags)
        queue = owner.queue = OutputQueue(owner, writer)
        queue.write(b"x")
        refs = [weakref.ref(writer), weakref.ref(queue)]
        gc.disable()
        try:
            owner.queue = None
            del writer, queue
            assert [r() for r in refs] == [None, None]
        finally:
            gc.enable()
    finally:
        a.close()
        b.close()


def test_a_send_that_finds_the_peer_gone_leaves_the_error_but_no_cycle():
    """The queue keeps why output ended for its owner, but not the exception itself: its
    traceback holds the frames of the send, which hold the queue."""
    import gc
    import weakref

    class Gone(FakeWriter):
        def send(self, data):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    owner, queue = make_queue(Gone())
    queue.write(b"lost")
    assert owner.closes == 1
    assert isinstance(queue.error, BrokenPipeError) and queue.error.__traceback__ is None
    ref = weakref.ref(queue)
    gc.disable()
    try:
        owner.queue = None
        del queue
        assert ref() is None, "the queue is kept alive by a cycle"
    finally:
        gc.enable()


def test_file_producers_on_duplicates_of_one_descriptor_do_not_share_an_offset(tmp_path):
    """Duplicated descriptors share one file offset (a file cache hands one descriptor to
    several connections): interleaved producers must still read their own bytes."""
    path = tmp_path / "data"
    data = os.urandom(300000)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        producers = [FileProducer(open(os.dup(fd), "rb", buffering=0), start, 100000,
                                  chunk_size=4096) for start in (0, 100000, 200000)]
        got = [bytearray() for _ in producers]
        while any(p.remaining for p in producers):
            for producer, into in zip(producers, got):
                into += producer.more()
        assert [bytes(g) for g in got] == [data[:100000], data[100000:200000], data[200000:]]
    finally:
        os.close(fd)
