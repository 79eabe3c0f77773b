"""The asyncore facade's channel maps: any key select() accepts, and private maps kept.

Every entry point (``poll``, ``poll2``, ``loop`` with and without ``use_poll``) on the default
map and on a private dict.  Where Python 3.11's own ``asyncore`` is importable, the same
scenario runs on it as the reference: its select() path (``poll``, ``loop(use_poll=False)``)
is what ours must match on every path.  (Its poll() path drops every event of a map keyed by
socket objects, which is what ours must not do.)
"""
import gc
import importlib
import os
import select
import socket
import sys
import warnings

import pytest
from hypothesis import given, settings, strategies as st

from eventloop import asyncore as ours
from eventloop import reactor as reactor_module


def _stdlib_asyncore():
    if "asyncore" in sys.modules and sys.modules["asyncore"] is ours:
        return None             # install_asyncore() ran in this process: no stdlib to compare
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("asyncore")
    except ImportError:
        return None


STDLIB = _stdlib_asyncore()
NO_STDLIB = "this Python has no asyncore of its own to compare with (3.12+ removed it)"

#: One pass of each entry point, waiting at most ``timeout`` seconds.
PATHS = {
    "poll": lambda mod, m, timeout=2.0: mod.poll(timeout, m),
    "poll2": lambda mod, m, timeout=2.0: mod.poll2(timeout, m),
    "loop": lambda mod, m, timeout=2.0: mod.loop(timeout, False, m, 1),
    "loop use_poll": lambda mod, m, timeout=2.0: mod.loop(timeout, True, m, 1),
}
SELECT_PATHS = ("poll", "loop")         # the stdlib's select() path, our reference


def tcp_pair():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    return server, client


def recorder(mod):
    """A channel class of ``mod`` that records every handler call it gets."""

    class Recorder(mod.dispatcher):
        want_write = False

        def __init__(self, sock, events):
            mod.dispatcher.__init__(self, sock, map={})     # not in the map under test
            self.events = events

        def writable(self):
            return self.want_write

        def handle_read(self):
            self.events.append(("read", self.recv(100)))

        def handle_write(self):
            self.events.append(("write",))
            self.want_write = False

        def handle_expt(self):
            self.events.append(("expt", self.socket.recv(1, socket.MSG_OOB)))

        def handle_close(self):
            self.events.append(("close",))
            self.close()

    return Recorder


class Wrapped:
    """A key that is neither an int nor a socket, only an object with fileno()."""

    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()


def socket_keyed_session(mod, path, which_map, key_kind="socket"):
    """Input, write readiness, urgent data and the peer's close, each one pass of ``path``,
    to a channel stored under its socket object (or a wrapper with fileno())."""
    a, b = tcp_pair()
    events = []
    chan = recorder(mod)(a, events)
    key = a if key_kind == "socket" else Wrapped(a)
    cmap = mod.socket_map if which_map == "default" else {}
    cmap[key] = chan
    run = PATHS[path]
    try:
        b.send(b"hello")
        run(mod, cmap)
        chan.want_write = True
        run(mod, cmap)
        b.send(b"!", socket.MSG_OOB)
        run(mod, cmap)
        b.close()
        run(mod, cmap)
    finally:
        cmap.pop(key, None)
        a.close()
        b.close()
    return events


EVERY_EVENT = [("read", b"hello"), ("write",), ("expt", b"!"), ("close",), ("read", b"")]


@pytest.mark.parametrize("which_map", ["private", "default"])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("key_kind", ["socket", "fileno object"])
def test_a_map_keyed_by_socket_objects_gets_every_event_on_every_path(path, which_map,
                                                                      key_kind):
    assert socket_keyed_session(ours, path, which_map, key_kind) == EVERY_EVENT


@pytest.mark.skipif(STDLIB is None, reason=NO_STDLIB)
@pytest.mark.parametrize("which_map", ["private", "default"])
@pytest.mark.parametrize("path", SELECT_PATHS)
def test_the_stdlib_select_path_gives_the_same_events(path, which_map):
    assert socket_keyed_session(STDLIB, path, which_map) == EVERY_EVENT


class _BadFileno:
    def fileno(self):
        return "three"


def _closed_socket():
    s = socket.socket()
    s.close()
    return s


BAD_KEYS = {"a string": lambda: "not a descriptor", "a float": lambda: 2.5,
            "a negative number": lambda: -3, "a closed socket": _closed_socket,
            "fileno() not an int": _BadFileno, "an object without fileno()": object}


def bad_key_errors(mod, path, which_map, make_key):
    """The exception each of three calls of ``path`` raises with a bad key in the map."""
    a, b = socket.socketpair()
    key = make_key()
    cmap = mod.socket_map if which_map == "default" else {}
    cmap[key] = recorder(mod)(a, [])
    raised = []
    try:
        for _ in range(3):
            try:
                PATHS[path](mod, cmap)
            except Exception as exc:     # noqa: BLE001 -- the type is what is compared
                raised.append(type(exc))
            else:
                raised.append(None)
    finally:
        cmap.pop(key, None)
        a.close()
        b.close()
    return raised


@pytest.mark.parametrize("which_map", ["private", "default"])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
def test_a_key_select_refuses_raises_what_select_raises_on_every_call(path, which_map, bad):
    expected = ValueError if bad in ("a negative number", "a closed socket") else TypeError
    assert bad_key_errors(ours, path, which_map, BAD_KEYS[bad]) == [expected] * 3


@pytest.mark.skipif(STDLIB is None, reason=NO_STDLIB)
@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
def test_the_stdlib_raises_the_same_for_each_bad_key(bad):
    expected = ValueError if bad in ("a negative number", "a closed socket") else TypeError
    for path in ("poll", "poll2"):
        assert bad_key_errors(STDLIB, path, "private", BAD_KEYS[bad]) == [expected] * 3


@pytest.mark.parametrize("mod", [ours] + ([STDLIB] if STDLIB else []),
                         ids=lambda mod: mod.__name__)
def test_a_bad_key_whose_channel_wants_nothing_is_never_examined(mod):
    """select() never sees a channel that is neither readable nor writable, so neither
    does its key."""
    class Idle(mod.dispatcher):
        def readable(self):
            return False

        def writable(self):
            return False

    a, b = socket.socketpair()
    cmap = {"not a descriptor": Idle(a, map={})}
    try:
        for path in sorted(PATHS):
            PATHS[path](mod, cmap, 0.0)
    finally:
        a.close()
        b.close()


# ----------------------------------------------------- private maps, kept
class CountingPoller:
    """A real poller that counts what the reactor asks of it (register/modify/unregister)."""

    def __init__(self, real):
        self.real = real
        self.calls = []
        self.name = real.name

    def register(self, fd, events):
        self.calls.append(("register", fd))
        self.real.register(fd, events)

    def modify(self, fd, events):
        self.calls.append(("modify", fd))
        self.real.modify(fd, events)

    def unregister(self, fd):
        self.calls.append(("unregister", fd))
        self.real.unregister(fd)

    def poll(self, timeout):
        return self.real.poll(timeout)

    def close(self):
        self.real.close()

    def fileno(self):
        return self.real.fileno()


@pytest.fixture
def counted(monkeypatch):
    """Every poller made from here on is a CountingPoller (the list of them is returned)."""
    real_make = reactor_module.make_poller
    made = []

    def make_counting(spec=None):
        made.append(CountingPoller(real_make(spec)))
        return made[-1]
    monkeypatch.setattr(reactor_module, "make_poller", make_counting)
    return made


class Echo(ours.dispatcher_with_send):
    """An echo channel of the facade; ``got`` collects its input."""

    def __init__(self, sock, map):
        ours.dispatcher_with_send.__init__(self, sock, map)
        self.got = bytearray()
        self.writes = 0

    def handle_read(self):
        data = self.recv(65536)
        self.got += data
        if data.startswith(b"echo "):
            self.send(data[5:])

    def handle_write(self):
        self.writes += 1
        ours.dispatcher_with_send.handle_write(self)


def idle_udp(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks


class UdpIdle(ours.dispatcher):
    def writable(self):
        return False

    def handle_read(self):
        self.recv(2048)


def poll_until(cmap, done, passes=20):
    """poll() passes over ``cmap`` (each waiting at most 0.5 s) until ``done()``; its result."""
    for _ in range(passes):
        if done():
            break
        ours.poll(0.5, cmap)
    return done()


def test_a_private_map_keeps_its_registrations_between_calls(counted):
    cmap = {}
    chans = [UdpIdle(s, map=cmap) for s in idle_udp(10)]
    for call in (lambda: ours.loop(0.0, True, cmap, 1), lambda: ours.poll(0.0, cmap),
                 lambda: ours.loop(0.0, False, cmap, 1), lambda: ours.poll2(0.0, cmap)):
        for _ in range(25):
            call()
    assert len(counted) == 1, "one poller for the map, made once"
    assert sorted(counted[0].calls) == sorted(("register", c._fileno) for c in chans)
    ours.close_all(cmap)


def test_channels_joining_and_leaving_a_private_map_touch_only_themselves(counted):
    cmap = {}
    for s in idle_udp(5):
        UdpIdle(s, map=cmap)
    ours.poll(0.0, cmap)
    poller = counted[0]
    del poller.calls[:]
    a, b = socket.socketpair()
    newcomer = Echo(a, cmap)
    b.send(b"echo back")
    b.settimeout(5)
    assert poll_until(cmap, lambda: newcomer.got)
    assert b.recv(100) == b"back"
    fd = newcomer._fileno
    newcomer.close()
    ours.poll(0.0, cmap)
    assert poller.calls[0] == ("register", fd)
    assert poller.calls[-1] == ("unregister", fd)
    assert {call[1] for call in poller.calls} == {fd}, "the other channels were left alone"
    assert newcomer.writes <= 1, "asked for writing only while output was queued"
    ours.close_all(cmap)
    b.close()
    assert len(counted) == 1


def test_a_map_changed_behind_the_channels_back_is_seen_at_the_next_call():
    """Entries stored or deleted in the dict itself, not through add_channel/del_channel."""
    cmap = {}
    member_sock, member_peer = socket.socketpair()
    member = Echo(member_sock, cmap)
    ours.poll(0.0, cmap)
    foreign_sock, foreign_peer = socket.socketpair()
    foreign = Echo(foreign_sock, {})            # a channel of another map ...
    cmap[foreign_sock.fileno()] = foreign       # ... stored here directly
    foreign_peer.send(b"to the foreigner")
    assert poll_until(cmap, lambda: foreign.got == b"to the foreigner")
    del cmap[member_sock.fileno()]              # deleted directly: no more events for it
    member_peer.send(b"nobody listens")
    foreign_peer.send(b"still here")
    assert poll_until(cmap, lambda: foreign.got.endswith(b"still here"))
    assert member.got == b""
    replacement = Echo(foreign_sock, {})        # the same socket, another channel ...
    cmap[foreign_sock.fileno()] = replacement   # ... replacing the first in place, directly
    foreign_peer.send(b"for the replacement")
    assert poll_until(cmap, lambda: replacement.got == b"for the replacement")
    assert foreign.got == b"to the foreignerstill here"
    for s in (member_sock, member_peer, foreign_sock, foreign_peer):
        s.close()


# ------------------------------------------------------------ lifetime
def _epoll_descriptors():
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + name) == "anon_inode:[eventpoll]":
                count += 1
        except OSError:
            pass
    return count


linux_only = pytest.mark.skipif(not (hasattr(select, "epoll") and os.path.isdir("/proc/self/fd")),
                                reason="counts epoll descriptors in /proc/self/fd")


@linux_only
def test_a_private_map_has_one_epoll_descriptor_while_it_has_channels():
    gc.collect()
    before = _epoll_descriptors()
    cmap = {}
    chans = [UdpIdle(s, map=cmap) for s in idle_udp(3)]
    assert _epoll_descriptors() == before, "nothing is opened until the map is polled"
    for _ in range(50):
        ours.loop(0.0, True, cmap, 1)
    assert _epoll_descriptors() == before + 1
    for chan in chans:
        chan.close()
    assert _epoll_descriptors() == before, "released when the last channel left"


@linux_only
@pytest.mark.parametrize("ending", ["closed", "dropped"])
def test_a_new_map_per_call_leaks_no_descriptor(ending):
    gc.collect()
    before_epoll = _epoll_descriptors()
    before_all = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        cmap = {}
        a, b = socket.socketpair()
        chan = Echo(a, cmap)
        b.send(b"x")
        ours.loop(0.5, True, cmap, 1)
        assert chan.got == b"x"
        b.close()
        if ending == "closed":
            chan.close()
        else:
            a.close()               # the program closes its socket but drops map and channel
        del cmap, chan
    gc.collect()
    assert _epoll_descriptors() == before_epoll
    assert len(os.listdir("/proc/self/fd")) == before_all


@linux_only
def test_a_map_built_by_hand_for_each_call_leaks_no_descriptor():
    """``asyncore.poll(map={sock: channel})``, as an IRC bot calls it."""
    gc.collect()
    before = _epoll_descriptors()
    a, b = socket.socketpair()
    bot = Echo(a, {})
    for i in range(200):
        b.send(b"line %d\n" % i)
        ours.poll(1.0, {a: bot})
        assert bot.got.endswith(b"line %d\n" % i)
    assert _epoll_descriptors() == before
    a.close()
    b.close()


# ------------------------------------------------- any sequence of changes
CHANGE = st.one_of(
    st.tuples(st.just("join"), st.just(0)),             # a facade channel joins the map
    st.tuples(st.just("close"), st.integers(0, 30)),     # a channel closes (and leaves)
    st.tuples(st.just("store"), st.just(0)),            # a foreign channel stored directly
    st.tuples(st.just("delete"), st.integers(0, 30)))    # an entry deleted directly
ROUNDS = st.lists(st.tuples(st.lists(CHANGE, max_size=3), st.sampled_from(sorted(PATHS))),
                  min_size=1, max_size=12)


def run_rounds(mod, rounds):
    """Apply each round's changes to a private map of ``mod``, send every open channel a
    token, and run one pass.  Returns what every channel had received after each pass, and
    the same by the rule asyncore follows: a pass hands every channel in the map all its
    waiting input; a channel not in the map gets nothing."""
    class Chan(mod.dispatcher):
        def writable(self):
            return False

        def handle_read(self):
            self.got += self.recv(65536)

    cmap = {}
    chans, peers, waiting, model, seen, expected = [], [], [], [], [], []
    try:
        for number, (changes, path) in enumerate(rounds):
            for op, arg in changes:
                if op in ("join", "store"):
                    a, b = socket.socketpair()
                    chan = Chan(a, map=cmap if op == "join" else {})
                    chan.got = b""
                    if op == "store":
                        cmap[a.fileno()] = chan
                    chans.append(chan)
                    peers.append(b)
                    waiting.append(b"")
                    model.append(b"")
                elif chans:
                    i = arg % len(chans)
                    fd = chans[i].socket.fileno()
                    if op == "close" and fd >= 0:
                        if cmap.get(fd) is chans[i] and chans[i]._map is not cmap:
                            del cmap[fd]        # the program removes what it stored
                        chans[i].close()
                    elif op == "delete" and fd >= 0 and cmap.get(fd) is chans[i]:
                        del cmap[fd]
            for i, chan in enumerate(chans):
                if chan.socket.fileno() >= 0:
                    peers[i].send(b"<%d>" % number)
                    waiting[i] += b"<%d>" % number
            if not cmap:
                continue
            PATHS[path](mod, cmap, 0.0)     # socketpair input is there once sent
            for i, chan in enumerate(chans):
                fd = chan.socket.fileno()
                if fd >= 0 and cmap.get(fd) is chan:
                    model[i] += waiting[i]
                    waiting[i] = b""
            seen.append([bytes(c.got) for c in chans])
            expected.append(list(model))
        return seen, expected
    finally:
        for chan in chans:
            chan.socket.close()
        for peer in peers:
            peer.close()


@settings(max_examples=60)
@given(rounds=ROUNDS)
def test_any_sequence_of_changes_to_a_private_map_reaches_the_right_channels(rounds):
    seen, expected = run_rounds(ours, rounds)
    assert seen == expected
    if STDLIB is not None:
        assert run_rounds(STDLIB, rounds) == (seen, expected)
