"""One contract, every backend: epoll, poll, select, selectors and the in-memory harness.

Real backends run over socket.socketpair() and 127.0.0.1 TCP with the real clock (timing
bounds are generous); the memory backend runs over MemorySocket with a VirtualClock, so its
timing assertions are exact.
"""
import logging
import socket
import sys
import threading

import pytest

from eventloop import AsyncChat, Dispatcher, DispatcherWithSend, ExitNow
from eventloop.pollers import WRITE

from backends import REAL_ONLY, SPIN_TOLERANT


def real_only(env):
    if env.memory:
        pytest.skip(REAL_ONLY)


class Reader(Dispatcher):
    """A native channel recording its reads; it never asks to write."""

    def __init__(self, sock, map, name=""):
        Dispatcher.__init__(self, sock, map)
        self.name = name
        self.data = bytearray()
        self.reads = 0
        self.writes = 0
        self.closes = 0

    def handle_read(self):
        self.reads += 1
        self.data += self.recv(65536)

    def handle_write(self):
        self.writes += 1

    def handle_close(self):
        self.closes += 1
        self.close()


# ------------------------------------------------------------ readiness
def test_read_readiness_is_delivered_then_eof(env):
    a, b = env.socketpair()
    chan = Reader(a, env.reactor.map)
    b.send(b"ping")
    env.pump(lambda: chan.data == b"ping")
    b.close()
    env.pump(lambda: chan.closes)
    assert a.fileno() == -1
    assert not env.reactor.map


def test_a_native_channel_that_does_not_want_to_write_is_never_asked(env):
    a, b = env.socketpair()
    chan = Reader(a, env.reactor.map)
    env.idle_passes(30)                 # a writable socket, 30 passes: no busy loop
    b.send(b"x")
    env.pump(lambda: chan.data)
    env.idle_passes(30)
    assert chan.writes == 0
    if env.memory:
        assert not env.reactor.poller.interest(a.fileno()) & WRITE


class Writer(Dispatcher):
    """Overrides writable() (asyncore style, asked every pass); wants to write ``budget`` times."""

    def __init__(self, sock, map):
        Dispatcher.__init__(self, sock, map)
        self.budget = 0
        self.writes = 0

    def writable(self):
        return self.budget > 0

    def handle_write(self):
        self.writes += 1
        self.budget -= 1


def test_write_readiness_arrives_only_while_asked_for(env):
    a, _b = env.socketpair()
    chan = Writer(a, env.reactor.map)
    env.idle_passes(10)
    assert chan.writes == 0
    chan.budget = 3
    env.idle_passes(10)
    assert chan.writes == 3             # once per pass while wanted, then never again


class Sender(DispatcherWithSend):
    def __init__(self, sock, map):
        DispatcherWithSend.__init__(self, sock, map)
        self.writes = 0

    def handle_write(self):
        self.writes += 1
        DispatcherWithSend.handle_write(self)


def test_a_send_queue_asks_for_write_until_drained_then_stops(env):
    a, b = env.socketpair()
    if env.memory:
        a.send_limit = 1000
        payload = b"q" * 20_000
    else:
        payload = b"q" * (4 << 20)      # far more than a socketpair buffers
    chan = Sender(a, env.reactor.map)
    chan.send(payload)
    assert chan.queued_bytes > 0
    received = bytearray()

    def drained():
        try:
            while True:
                data = b.recv(1 << 20)
                if not data:
                    break
                received.extend(data)
        except BlockingIOError:
            pass
        return chan.queued_bytes == 0

    env.pump(drained, max_passes=5000)
    drained()
    assert received == payload
    writes = chan.writes
    assert writes > 0
    env.idle_passes(20)
    assert chan.writes == writes


def test_pause_and_resume_reading_take_effect(env):
    a, b = env.socketpair()
    chan = Reader(a, env.reactor.map)
    chan.pause_reading()
    b.send(b"held back")
    env.idle_passes(10)
    assert chan.reads == 0
    if env.memory:
        assert env.reactor.poller.interest(a.fileno()) == 0
    chan.resume_reading()
    env.pump(lambda: chan.data == b"held back")
    assert chan.reads == 1


def test_listeners_never_get_write_events(env):
    lsock, addr = env.listener()
    accepted = []

    class Listener(Dispatcher):
        writes = 0

        def writable(self):         # asyncore's default answer: must not matter for listeners
            return True

        def handle_write(self):
            self.writes += 1

        def handle_accepted(self, sock, peer):
            accepted.append(sock)
            env.socks.append(sock)

    listener = Listener(map=env.reactor.map)
    listener.set_socket(lsock)
    listener.listen(5)
    client = env.client_socket()
    client.connect_ex(addr)
    env.pump(lambda: accepted)
    env.idle_passes(10)
    assert listener.writes == 0
    if env.memory:
        assert not env.reactor.poller.interest(lsock.fileno()) & WRITE


def test_connect_completes_through_write_readiness_then_stops_asking(env):
    lsock, addr = env.listener()
    lsock.listen(5)
    events = []

    class Client(Dispatcher):
        def handle_connect(self):
            events.append("connect")

        def handle_write(self):
            events.append("write")

    client = Client(map=env.reactor.map)
    client.set_socket(env.client_socket())
    client.connect(addr)
    env.pump(lambda: client.connected)
    env.idle_passes(10)
    assert events == ["connect", "write"]


# ------------------------------------------------------------- closing
def test_close_from_a_handler_stops_all_further_events(env):
    a, b = env.socketpair()
    c, d = env.socketpair()

    class CloseOnRead(Reader):
        def writable(self):
            return True             # READ|WRITE in one event: write must not follow close

        def handle_read(self):
            Reader.handle_read(self)
            self.close()

    quitter = CloseOnRead(a, env.reactor.map)
    bystander = Reader(c, env.reactor.map)
    b.send(b"bye")
    d.send(b"hello")
    env.pump(lambda: quitter.reads and bystander.data)
    d.send(b" again")
    env.pump(lambda: bystander.data == b"hello again")
    assert quitter.reads == 1 and quitter.writes == 0
    assert quitter.socket.fileno() == -1


def test_fd_reused_within_a_pass_does_not_get_the_old_channels_event(env):
    """gh-75114: a handler closes another channel whose event is pending in this pass, and a
    new channel takes the same descriptor number; the newcomer must not get that event."""
    log = []
    newcomers = []
    pair_a = env.socketpair()
    pair_b = env.socketpair()

    class Newcomer(Reader):
        def handle_read(self):
            log.append("C")
            Reader.handle_read(self)

    class Killer(Reader):
        victim = None

        def handle_read(self):
            log.append(self.name)
            Reader.handle_read(self)
            if newcomers or self.victim.socket is None or self.victim.socket.fileno() < 0:
                return
            fd = self.victim._fileno
            self.victim.close()
            sock, peer = env.socketpair(reuse_fd=fd)
            assert sock.fileno() == fd      # the number really was reused
            peer.send(b"for the newcomer")
            newcomers.append(Newcomer(sock, env.reactor.map, name="C"))

    a = Killer(pair_a[0], env.reactor.map, name="A")
    b = Killer(pair_b[0], env.reactor.map, name="B")
    a.victim, b.victim = b, a
    pair_a[1].send(b"1")
    pair_b[1].send(b"2")
    env.reactor.run_once(2.0)           # both readable in this one poll
    assert newcomers, "neither handler ran"
    assert log in (["A"], ["B"])        # the victim and the newcomer got nothing
    log.append("|")
    env.pump(lambda: newcomers[0].data == b"for the newcomer")
    assert log[-1] == "C" and log.count("C") == 1


# -------------------------------------------------------------- timers
def test_timers_fire_in_deadline_order_and_the_poll_ends_at_the_next_deadline(env):
    reactor = env.reactor
    timeouts = []
    poller = reactor.poller
    real_poll = poller.poll
    poller.poll = lambda t: (timeouts.append(t), real_poll(t))[1]
    fired = []
    start = reactor.clock()
    plan = {"c": env.delay(10), "a": env.delay(4), "b": env.delay(4), "x": env.delay(7)}
    for name in ("c", "a", "b"):
        reactor.call_later(plan[name], lambda n=name: fired.append((n, reactor.clock())))
    reactor.call_at(start + plan["x"], lambda: fired.append(("x", reactor.clock())))
    env.pump(lambda: len(fired) == 4, max_passes=SPIN_TOLERANT)
    assert [n for n, _ in fired] == ["a", "b", "x", "c"]
    for name, when in fired:
        assert when >= start + plan[name]
        if env.memory:
            assert when == start + plan[name]
        else:
            assert when < start + plan[name] + 1.0
    assert 0 <= timeouts[0] <= plan["a"]        # pump asked for 2 s; the deadline came first
    if env.memory:
        assert timeouts[0] == plan["a"]


def test_waiting_for_a_timer_does_not_spin(env):
    """The poll timeout must not be rounded down: a pass that wakes just before the deadline
    and polls again with a zero timeout spins the CPU until the deadline."""
    fired = []
    env.reactor.call_later(env.delay(5), fired.append, 1)
    passes = env.pump(lambda: fired, max_passes=SPIN_TOLERANT)
    assert passes <= 3, "%d passes to wait for one timer" % passes


def test_call_soon_runs_in_the_next_callback_phase_never_re_entrantly(env):
    """A callback queued by a callback waits for the next pass (so a pass is bounded); one
    queued by an I/O handler runs after all of that pass's I/O."""
    reactor = env.reactor
    passno = [0]
    log = []

    def requeue(n):
        log.append(("cb", n, passno[0]))
        if n < 3:
            reactor.call_soon(requeue, n + 1)

    a, b = env.socketpair()

    class Queuer(Reader):
        def handle_read(self):
            Reader.handle_read(self)
            reactor.call_soon(lambda: log.append(("from-io", passno[0])))
            log.append(("io", passno[0]))

    Queuer(a, reactor.map)
    reactor.call_soon(requeue, 0)
    assert log == []                    # nothing runs at call time
    b.send(b"x")
    for p in range(5):
        passno[0] = p
        reactor.run_once(0)
    assert log == [("io", 0), ("cb", 0, 0), ("from-io", 0),
                   ("cb", 1, 1), ("cb", 2, 2), ("cb", 3, 3)]


def test_call_later_zero_from_a_timer_fires_on_a_later_pass(env):
    reactor = env.reactor
    log = []
    passes = [0]

    def first():
        log.append(("first", passes[0]))
        reactor.call_later(0, lambda: log.append(("second", passes[0])))

    reactor.call_later(0, first)
    for p in range(3):
        passes[0] = p
        reactor.run_once(0)
    assert log == [("first", 0), ("second", 1)]


def test_call_soon_threadsafe_wakes_a_blocked_pass(env):
    real_only(env)
    reactor = env.reactor
    waiting = threading.Event()
    done = threading.Event()
    a, b = env.socketpair()
    Reader(a, reactor.map)              # an escape hatch if the wake-up is broken
    poller = reactor.poller
    real_poll = poller.poll
    poller.poll = lambda t: (waiting.set(), real_poll(t))[1]
    loop = threading.Thread(target=reactor.run_once, args=(None,), daemon=True)
    loop.start()
    try:
        assert waiting.wait(5)
        reactor.call_soon_threadsafe(done.set)
        assert done.wait(5), "call_soon_threadsafe did not wake run_once(None)"
    finally:
        if loop.is_alive() and not done.is_set():
            b.send(b"unblock")
        loop.join(5)
    assert not loop.is_alive()


def test_stop_from_a_callback_ends_run(env):
    reactor = env.reactor
    reactor.call_later(env.delay(1), reactor.stop)
    backstop = reactor.call_later(env.delay(300), _raise, ExitNow("stop() was ignored"))
    reactor.run()
    assert backstop.pending
    backstop.cancel()


def _raise(exc):
    raise exc


def test_stop_from_another_thread_ends_run(env):
    real_only(env)
    reactor = env.reactor
    waiting = threading.Event()
    a, b = env.socketpair()
    Reader(a, reactor.map)
    poller = reactor.poller
    real_poll = poller.poll
    poller.poll = lambda t: (waiting.set(), real_poll(t))[1]
    loop = threading.Thread(target=reactor.run, daemon=True)
    loop.start()
    try:
        assert waiting.wait(5)
        reactor.stop()
        loop.join(5)
        assert not loop.is_alive(), "stop() from another thread did not end run()"
    finally:
        if loop.is_alive():
            reactor.call_soon_threadsafe(_raise, ExitNow())
            b.send(b"unblock")
            loop.join(5)


# ---------------------------------------------------------- handler errors
def test_a_handler_exception_reaches_handle_error_and_the_rest_keep_working(env, caplog):
    a, b = env.socketpair()
    c, d = env.socketpair()

    class Faulty(Reader):
        def handle_read(self):
            Reader.handle_read(self)
            raise ValueError("protocol bug")

    faulty = Faulty(a, env.reactor.map)
    healthy = Reader(c, env.reactor.map)
    b.send(b"boom")
    d.send(b"one")
    with caplog.at_level(logging.ERROR, logger="eventloop"):
        env.pump(lambda: healthy.data == b"one" and faulty.reads)
    assert a.fileno() == -1, "the default handle_error closes the channel"
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)
    d.send(b" two")
    env.pump(lambda: healthy.data == b"one two")


@pytest.mark.parametrize("exc_type", [ExitNow, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("where", ["handler", "timer", "callback"])
def test_exit_exceptions_propagate_out_of_run_once(env, exc_type, where):
    a, b = env.socketpair()
    errors = []

    class Quitter(Reader):
        def handle_read(self):
            Reader.handle_read(self)
            raise exc_type("leave")

        def handle_error(self):
            errors.append(sys.exc_info())

    if where == "handler":
        Quitter(a, env.reactor.map)
        b.send(b"x")
    elif where == "timer":
        env.reactor.call_later(env.delay(1), _raise, exc_type("leave"))
    else:
        env.reactor.call_soon(_raise, exc_type("leave"))
    with pytest.raises(exc_type):
        env.pump(lambda: False, max_passes=SPIN_TOLERANT)
    assert errors == []
    env.reactor.call_soon(errors.append, "still running")
    env.reactor.run_once(0)
    assert errors == ["still running"]


# ------------------------------------------------------- channel timers
def test_channel_timers_are_cancelled_when_it_closes(env):
    a, _b = env.socketpair()
    chan = Reader(a, env.reactor.map)
    fired = []
    one = chan.call_later(env.delay(1), fired.append, 1)
    every = chan.call_later(env.delay(2), fired.append, 2)
    assert env.reactor.has_work()
    chan.close()
    assert not one.pending and not every.pending
    assert not env.reactor.has_work()
    if env.memory:
        env.clock.advance(100)
        env.reactor.run_once(0)
    assert fired == []


def test_idle_timeout_counts_from_the_last_activity(env):
    a, b = env.socketpair()
    closed_at = []

    class Idle(Reader):
        def handle_idle_timeout(self):
            closed_at.append(env.reactor.clock())
            self.close()

    start = env.reactor.clock()
    chan = Idle(a, env.reactor.map)
    chan.set_idle_timeout(env.delay(10))
    env.reactor.call_later(env.delay(6), b.send, b"activity")
    env.pump(lambda: closed_at, max_passes=SPIN_TOLERANT)
    assert chan.data == b"activity"
    if env.memory:
        assert closed_at == [16.0]
    else:
        assert start + env.delay(16) <= closed_at[0] < start + env.delay(16) + 1.0


def test_a_deadline_is_not_moved_by_activity_and_replaces_the_idle_timeout(env):
    a, b = env.socketpair()
    fired_at = []

    class Timed(Reader):
        def handle_idle_timeout(self):
            fired_at.append(env.reactor.clock())
            if len(fired_at) == 1:
                self.set_idle_timeout(env.delay(4))     # then: idle again, from now
            else:
                self.close()

    start = env.reactor.clock()
    chan = Timed(a, env.reactor.map)
    chan.set_idle_timeout(env.delay(3))
    chan.set_deadline(env.delay(10))                    # replaces it: 10, whatever happens
    for t in (2, 5, 8):
        env.reactor.call_later(env.delay(t), b.send, b"x")
    env.pump(lambda: len(fired_at) == 2, max_passes=SPIN_TOLERANT)
    assert chan.data == b"xxx"
    if env.memory:
        assert fired_at == [10.0, 14.0]
    else:
        assert start + env.delay(10) <= fired_at[0] < start + env.delay(10) + 1.0
        assert fired_at[0] + env.delay(4) <= fired_at[1] < fired_at[0] + env.delay(4) + 1.0


# ------------------------------------------------------------ map keys
class SocketKeyed(DispatcherWithSend):
    """A channel that lives in its map under its socket object, not the number (as asyncore
    programs that build ``{sock: channel}`` maps do), recording what it is told."""

    def __init__(self, sock, map):
        self.data = bytearray()
        self.closes = 0
        DispatcherWithSend.__init__(self, sock, map)

    def add_channel(self, map=None):
        (self._map if map is None else map)[self.socket] = self

    def del_channel(self, map=None):
        (self._map if map is None else map).pop(self.socket, None)
        self._fileno = None

    def handle_read(self):
        self.data += self.recv(65536)

    def handle_close(self):
        self.closes += 1
        self.close()


def test_a_channel_keyed_by_its_socket_gets_every_event_under_that_key(env):
    a, b = env.socketpair()
    chan = SocketKeyed(a, env.reactor.map)
    assert list(env.reactor.map) == [a]
    b.send(b"ping")
    env.pump(lambda: chan.data == b"ping")
    chan.send(b"x" * 300000)            # more than the buffer takes: needs write events
    got = bytearray()

    def drain():
        try:
            while len(got) < 300000:
                got.extend(b.recv(65536))
        except BlockingIOError:
            pass
        return len(got) == 300000
    env.pump(drain, max_passes=500)
    b.close()
    env.pump(lambda: chan.closes)
    assert not env.reactor.map


def test_a_new_socket_key_on_a_closed_ones_number_gets_its_own_events(env):
    """The descriptor behind a socket key is remembered per key: a closed socket's number
    reused by a new socket under another key is watched for the new one."""
    real_only(env)
    a = env.socketpair()[0]
    old = SocketKeyed(a, env.reactor.map)
    env.idle_passes(2)
    number = a.fileno()
    old.close()
    c, d = env.socketpair(reuse_fd=number)
    new = SocketKeyed(c, env.reactor.map)
    d.send(b"for the new one")
    env.pump(lambda: new.data)
    assert new.data == b"for the new one" and not old.data


@pytest.mark.parametrize("key, error", [("not a descriptor", TypeError), (2.5, TypeError),
                                        (-3, ValueError), ("closed socket", ValueError),
                                        ("bad fileno", TypeError)])
def test_a_key_select_would_refuse_raises_on_every_pass_while_it_stays(env, key, error):
    class BadFileno:
        def fileno(self):
            return "three"
    if key == "closed socket":
        key = socket.socket()
        key.close()
    elif key == "bad fileno":
        key = BadFileno()
    a, b = env.socketpair()
    good = Reader(a, env.reactor.map)
    env.reactor.map[key] = Reader(env.socketpair()[0], {})
    for _ in range(3):
        with pytest.raises(error):
            env.reactor.run_once(0)
    del env.reactor.map[key]
    b.send(b"after")
    env.pump(lambda: good.data == b"after")


# ---------------------------------------------------------- cost per pass
def test_a_pass_examines_only_the_active_channels(env, monkeypatch):
    """O(active): with many idle channels, a pass asks readable()/writable() only of the
    channels that had events or changed; classes overriding them are asked every pass."""
    idle_count = 300 if env.backend == "select" else 2000     # select: FD_SETSIZE
    reactor = env.reactor
    idle = [Reader(env.socketpair()[0], reactor.map) for _ in range(idle_count)]
    a, b = env.socketpair()
    active = Reader(a, reactor.map)

    class Polled(Reader):
        asked = 0

        def readable(self):
            self.asked += 1
            return True

    polled = Polled(env.socketpair()[0], reactor.map)
    env.idle_passes(2)                  # registers everything
    assert all(chan.socket.fileno() >= 0 for chan in idle)
    examined = []
    real_interest = reactor._interest
    monkeypatch.setattr(reactor, "_interest", lambda obj: (examined.append(obj),
                                                           real_interest(obj))[1])
    asked_before = polled.asked
    b.send(b"wake up")
    env.pump(lambda: active.data)
    env.idle_passes(5)
    passes = 5 + 1
    assert set(map(id, examined)) <= {id(active), id(polled)}
    assert sum(obj is active for obj in examined) <= 2
    assert polled.asked - asked_before >= passes     # asked every pass, as in asyncore


def test_an_override_that_only_returns_a_constant_is_not_asked_every_pass(env, monkeypatch):
    """``def writable(self): return False`` cannot change its answer: such channels cost
    nothing while idle, as if marked static_interest."""
    class Constant(Reader):
        def readable(self):
            return True

        def writable(self):
            return False

    reactor = env.reactor
    chans = [Constant(env.socketpair()[0], reactor.map) for _ in range(20)]
    env.idle_passes(2)
    examined = []
    real_interest = reactor._interest
    monkeypatch.setattr(reactor, "_interest", lambda obj: (examined.append(obj),
                                                           real_interest(obj))[1])
    env.idle_passes(5)
    assert examined == [] and all(chan.reads == 0 for chan in chans)


# ------------------------------------------------------- a chat per backend
class LineEcho(AsyncChat):
    def __init__(self, sock, map):
        AsyncChat.__init__(self, sock, map)
        self.set_terminator(b"\r\n")
        self.lines = []
        self.parts = []

    def collect_incoming_data(self, data):
        self.parts.append(data)

    def found_terminator(self):
        line = b"".join(self.parts)
        self.parts = []
        self.lines.append(line)
        self.push(line.upper() + b"\r\n")


def test_async_chat_splits_lines_and_echoes_on_every_backend(env):
    a, b = env.socketpair()
    chan = LineEcho(a, env.reactor.map)
    got = bytearray()

    def read_all():
        try:
            got.extend(b.recv(65536))
        except BlockingIOError:
            pass
        return got

    for piece in (b"he", b"llo\r", b"\nwor", b"ld\r\n\r", b"\n"):
        b.send(piece)
        env.reactor.run_once(2.0)       # the piece is ready: this pass reads it alone
    env.pump(lambda: read_all() == b"HELLO\r\nWORLD\r\n\r\n", max_passes=50)
    assert chan.lines == [b"hello", b"world", b""]
