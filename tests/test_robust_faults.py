"""Fault injection on the memory backend: one channel fails, every other one finishes.

Each scenario runs several channels in one memory reactor: an echo client
(``servers.echo.EchoHandler``), a line-echo client (a plain ``AsyncChat``), two members of a
chat room (``servers.chat.ChatChannel``), and a *victim* of one of those three kinds.  The
victim's socket is seen through a :class:`Tap` that injects an error (through
``MemorySocket.inject``) into its k-th ``recv`` or ``send``; other scenarios make its handler
raise, its peer vanish, or every send take one byte.

After a fatal fault (ECONNRESET, EPIPE, a handler that raises, a vanished peer) the victim is
closed and reported (``handle_close``/``handle_error``; a log record where the class logs),
and what its peer received is a prefix of what it should have, never more.  After a
transient one (EINTR, EAGAIN) nothing is lost or repeated.  Either way, every other channel
completes byte-exact.

The faults injected are counted; the count is printed at the end of the module (``-s``) and
written to ``$ROBUST_REPORT/faults.json`` when that variable names a directory.
"""
import collections
import errno
import logging
import math
import os
import random
import socket
import sys

import pytest
from figures import counts_fixture
from hypothesis import HealthCheck, given, settings, strategies as st

from eventloop import AsyncChat
from eventloop.testing import chunkings, memory_reactor, memory_socketpair
from servers.chat import HELP, ChatChannel, ChatRoom
from servers.echo import EchoHandler

FAULTS = collections.Counter()

FATAL = {"ECONNRESET": errno.ECONNRESET, "EPIPE": errno.EPIPE}
TRANSIENT = {"EINTR": errno.EINTR, "EAGAIN": errno.EAGAIN}


faults_report = counts_fixture("robust faults", "faults.json", FAULTS, "faults injected")



# ------------------------------------------------------------------ the tap
class Tap:
    """A memory socket whose ``recv``/``send`` calls are counted; call number k of an op in
    ``faults`` (``{(op, k): errno}``) has that error injected just before it runs."""

    def __init__(self, sock, faults=None):
        self._sock = sock
        self.faults = dict(faults or {})
        self.calls = collections.Counter()
        self.fired = []

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def _step(self, op):
        self.calls[op] += 1
        code = self.faults.get((op, self.calls[op]))
        if code is not None:
            self._sock.inject(op, code)
            self.fired.append((op, self.calls[op], code))
            FAULTS["%s on %s" % (errno.errorcode[code], op)] += 1

    def recv(self, bufsize, flags=0):
        self._step("recv")
        return self._sock.recv(bufsize, flags)

    def send(self, data, flags=0):
        self._step("send")
        return self._sock.send(data, flags)


# ------------------------------------------------------------- the channels
class Watched:
    """Mixed into every channel: remembers how it was closed and every error it handled."""

    def handle_close(self):
        self.reports.append("close")
        super().handle_close()

    def handle_error(self):
        self.reports.append(sys.exc_info()[1])
        super().handle_error()


class Echo(Watched, EchoHandler):
    def __init__(self, sock, map):
        self.reports = []
        EchoHandler.__init__(self, sock, map)


class LineEcho(Watched, AsyncChat):
    """Echoes each line; after the peer's EOF it finishes sending, then closes."""

    def __init__(self, sock, map):
        self.reports = []
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


class Member(Watched, ChatChannel):
    def __init__(self, sock, room, map):
        self.reports = []
        ChatChannel.__init__(self, sock, room, map)


# ---------------------------------------------------------------- the peers
class Peer:
    """The scripted client end: sends one chunk per pass, half-closes when told, reads all."""

    def __init__(self, sock, chunks, half_close, vanish_after=None):
        self.sock = sock
        self.todo = collections.deque(chunks)
        self.current = b""
        self.half_close = half_close
        self.vanish_after = vanish_after     # close abruptly after this many chunks
        self.chunks_sent = 0
        self.got = bytearray()
        self.eof = False
        self.shut = False

    @property
    def gone(self):
        return self.sock.closed

    def step(self, send=True):
        """One pass of the client (``send``: also send the next chunk); True if it did anything."""
        acted = False
        if self.gone:
            return False
        if not send:
            pass
        elif not self.current and self.todo:
            self.current = self.todo.popleft()
        if self.current:
            try:
                n = self.sock.send(self.current)
            except BlockingIOError:
                n = 0
            except OSError:                 # the server closed: nothing more can be sent
                self.todo.clear()
                self.current = b""
                n = 0
            if n:
                acted = True
                self.current = self.current[n:]
                if not self.current:
                    self.chunks_sent += 1
                    if self.vanish_after is not None and self.chunks_sent >= self.vanish_after:
                        self.sock.close()
                        return True
        elif self.half_close and not self.shut and not self.todo:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.shut = acted = True
        while not self.eof:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except ConnectionError:
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.got += data
            acted = True
        return acted

    def lines(self):
        return bytes(self.got).split(b"\r\n")


def said_by(peer, nick):
    """The texts ``nick`` said in the room, as ``peer`` received them."""
    prefix = ("<%s> " % nick).encode()
    return [line[len(prefix):] for line in peer.lines() if line.startswith(prefix)]


# ---------------------------------------------------------------- the world
CHAT_LINES = 8


def chunked(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


def echo_payload(seed):
    return random.Random(seed).randbytes(700)


def line_payload(seed):
    rnd = random.Random(seed)
    return b"".join(b"line %d %s\n" % (i, rnd.randbytes(8).hex().encode()) for i in range(16))


def chat_script(nick):
    """What a chat client types: a name, then numbered lines."""
    return b"/nick " + nick.encode() + b"\n" + b"".join(
        b"%s says %d\n" % (nick.encode(), i) for i in range(CHAT_LINES))


def chat_said(nick):
    return [b"%s says %d" % (nick.encode(), i) for i in range(CHAT_LINES)]


VICTIM_SEND_LIMIT = 11
#: What each kind of victim's client sends, and in chunks of how many bytes.
VICTIMS = {"echo": (echo_payload(3), 40), "line": (line_payload(4), 21), "chat": (chat_script("v"), 9)}
_WORLDS = []


@pytest.fixture(autouse=True)
def _close_worlds():
    yield
    while _WORLDS:
        _WORLDS.pop().close()


class World:
    """A memory reactor holding the bystanders and one victim; ``run`` pumps it to rest;
    ``close`` releases every socket, so the next world gets the same descriptor numbers."""

    def __init__(self, send_limit=None):
        _WORLDS.append(self)
        self.reactor = memory_reactor()
        self.room = ChatRoom()
        self.peers = []
        self.send_limit = send_limit

    def _pair(self, faults, send_limit, buffer_size):
        ours, theirs = memory_socketpair(buffer_size=buffer_size)
        ours.send_limit = send_limit if send_limit is not None else self.send_limit
        return Tap(ours, faults), theirs

    def add(self, kind, payload, *, faults=None, chunk=40, send_limit=None, buffer_size=4096,
            cls=None, vanish_after=None):
        tap, theirs = self._pair(faults, send_limit, buffer_size)
        if kind == "echo":
            channel = (cls or Echo)(tap, self.reactor.map)
        elif kind == "line":
            channel = (cls or LineEcho)(tap, self.reactor.map)
        else:
            channel = (cls or Member)(tap, self.room, self.reactor.map)
        peer = Peer(theirs, chunked(payload, chunk), half_close=kind != "chat",
                    vanish_after=vanish_after)
        peer.channel, peer.tap, peer.kind, peer.payload = channel, tap, kind, payload
        self.peers.append(peer)
        return peer

    def bystanders(self):
        """An echo client, a line-echo client and two chat members, b1 and b2."""
        return [self.add("echo", echo_payload(1), chunk=33),
                self.add("line", line_payload(2), chunk=29),
                self.add("chat", chat_script("b1"), chunk=11),
                self.add("chat", chat_script("b2"), chunk=13)]

    def victim(self, kind, send_limit=VICTIM_SEND_LIMIT, **kw):
        payload, chunk = VICTIMS[kind]
        return self.add(kind, payload, chunk=chunk, send_limit=send_limit, **kw)

    def close(self):
        for peer in self.peers:
            peer.channel.close()
            peer.sock.close()
        self.reactor.close()

    def run(self, max_passes=20_000):
        """Pass until neither the peers nor the reactor can move."""
        for passes in range(max_passes):
            acted = False
            for peer in self.peers:
                acted = peer.step() or acted
            self.reactor.run_once(math.inf)
            for peer in self.peers:
                acted = peer.step(send=False) or acted
            if not acted and self.reactor.poller.stalled:
                return passes
        raise AssertionError("the world did not settle within %d passes" % max_passes)


def check_bystanders(world, peers, victim=None, victim_complete=False):
    """Every bystander finished byte-exact; chat members heard each other (and the victim)
    completely, in order, once."""
    chats = [p for p in peers if p.kind == "chat"]
    for peer in peers:
        assert all(r == "close" for r in peer.channel.reports), (peer.kind, peer.channel.reports)
        if peer.kind in ("echo", "line"):
            assert bytes(peer.got) == peer.payload, "%s bystander lost or repeated bytes" % peer.kind
            assert peer.eof and not peer.channel.connected
    nicks = {p: ("b%d" % (i + 1)) for i, p in enumerate(chats)}
    for peer in chats:
        assert peer.channel.connected and not peer.channel.reports
        for other in chats:
            if other is not peer:
                assert said_by(peer, nicks[other]) == chat_said(nicks[other])
        if victim is not None and victim.kind == "chat":
            heard = said_by(peer, "v")
            if victim_complete:
                assert heard == chat_said("v")
            else:
                assert heard == chat_said("v")[:len(heard)], "the victim's lines were repeated or reordered"
                left = [l for l in peer.lines() if l.endswith(b" has left")]
                assert len(left) == 1, left


def check_fatal(victim):
    """The victim is closed and reported, and its peer got a prefix of the right answer."""
    chan = victim.channel
    assert not chan.connected and chan.socket.closed
    assert chan.reports and chan.reports[0] == "close" or isinstance(chan.reports[0], Exception), chan.reports
    if victim.kind in ("echo", "line"):
        got = bytes(victim.got)
        assert victim.payload.startswith(got), "a failed %s channel sent bytes it never got" % victim.kind
    else:
        assert not chan.present and chan.nick.casefold() not in chan.room.members


def check_complete(victim):
    chan = victim.channel
    if victim.kind in ("echo", "line"):
        assert bytes(victim.got) == victim.payload, "a transient error lost or repeated bytes"
        assert victim.eof and not chan.connected
    else:
        assert chan.connected and chan.present and chan.reports == []
        for nick in ("b1", "b2"):
            assert said_by(victim, nick) == chat_said(nick)
        assert b"* you are now known as v" in victim.lines()


# ------------------------------------------------------------ errno faults
def _reference_calls():
    """How many times each kind of victim calls recv and send in a run without faults."""
    calls = {}
    for kind in ("echo", "line", "chat"):
        world = World()
        world.bystanders()
        victim = world.victim(kind)
        world.run()
        calls[kind] = dict(victim.tap.calls)
        world.close()
    _WORLDS.clear()
    return calls


REFERENCE_CALLS = _reference_calls()
#: Every step of every victim's life: (kind, op, k) for the k-th call of op.
EVERY_STEP = [(kind, op, k) for kind, ops in sorted(REFERENCE_CALLS.items())
              for op in ("recv", "send") for k in range(1, ops[op] + 1)]

@pytest.mark.parametrize("kind, op, step", EVERY_STEP)
@pytest.mark.parametrize("name", sorted(FATAL))
def test_a_fatal_error_closes_only_its_channel(kind, name, op, step, caplog):
    caplog.set_level(logging.INFO)
    world = World()
    peers = world.bystanders()
    victim = world.victim(kind, faults={(op, step): FATAL[name]})
    world.run()
    assert victim.tap.fired == [(op, step, FATAL[name])], "the victim made only %d %s calls" % (
        victim.tap.calls[op], op)
    check_fatal(victim)
    check_bystanders(world, peers, victim)
    # A peer that went away is not a program error: nothing is logged at ERROR.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if kind == "chat":
        assert any(r.name == "servers.chat.member" and r.getMessage().endswith("has left") for r in caplog.records)


@pytest.mark.parametrize("kind, op, step", EVERY_STEP)
@pytest.mark.parametrize("name", sorted(TRANSIENT))
def test_a_transient_error_loses_and_repeats_nothing(kind, name, op, step, caplog):
    world = World()
    peers = world.bystanders()
    victim = world.victim(kind, faults={(op, step): TRANSIENT[name]})
    world.run()
    assert victim.tap.fired == [(op, step, TRANSIENT[name])], "the victim made only %d %s calls" % (
        victim.tap.calls[op], op)
    check_complete(victim)
    check_bystanders(world, peers, victim, victim_complete=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@settings(max_examples=int(os.environ.get("ROBUST_EXAMPLES", "0")) or 40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_transient_errors_anywhere_on_every_channel_lose_nothing(data):
    """EINTR/EAGAIN on any recv or send of any channel, several at once, each cut its own way."""
    world = World(send_limit=data.draw(st.none() | st.integers(1, 9), label="send_limit"))
    schedule = st.dictionaries(st.tuples(st.sampled_from(["recv", "send"]), st.integers(1, 30)),
                               st.sampled_from(sorted(TRANSIENT.values())), max_size=6)
    peers = []
    for kind, payload in [("echo", echo_payload(5)), ("line", line_payload(6)),
                          ("chat", chat_script("b1")), ("chat", chat_script("b2"))]:
        peer = world.add(kind, payload, faults=data.draw(schedule, label=kind))
        peer.todo = collections.deque(data.draw(chunkings(payload), label=kind + " chunks"))
        peers.append(peer)
    world.run()
    check_bystanders(world, peers)
    assert sum(len(p.tap.fired) for p in peers) == sum(
        1 for p in peers for (op, k) in p.tap.faults if p.tap.calls[op] >= k)


# --------------------------------------------------------- partial sends
@pytest.mark.parametrize("kind", ["echo", "line", "chat"])
def test_one_byte_sends_everywhere_lose_nothing(kind):
    world = World(send_limit=1)
    peers = world.bystanders()
    victim = world.victim(kind, send_limit=1)
    world.run(max_passes=100_000)
    for peer in peers + [victim]:
        assert peer.tap.calls["send"] > 0
    check_complete(victim)
    check_bystanders(world, peers, victim, victim_complete=True)
    FAULTS["send_limit=1 channels"] += len(peers) + 1


# ------------------------------------------------------- handlers that raise
class Boom(RuntimeError):
    pass


def raising(kind, at):
    """A victim class whose handler raises on its ``at``-th call."""
    count = [0]

    def bump():
        count[0] += 1
        if count[0] == at:
            FAULTS["handler raised"] += 1
            raise Boom("injected failure %d" % at)

    if kind == "echo":
        class Raising(Echo):
            def handle_read(self):
                bump()
                Echo.handle_read(self)
    elif kind == "line":
        class Raising(LineEcho):
            def found_terminator(self):
                bump()
                LineEcho.found_terminator(self)
    else:
        class Raising(Member):
            def handle_line(self, text):
                bump()
                Member.handle_line(self, text)
    return Raising


@pytest.mark.parametrize("at", [1, 2, 3, 5])
@pytest.mark.parametrize("kind", ["echo", "line", "chat"])
def test_a_handler_that_raises_is_logged_and_closed_alone(kind, at, caplog):
    caplog.set_level(logging.INFO)
    world = World()
    peers = world.bystanders()
    victim = world.victim(kind, cls=raising(kind, at))
    world.run()
    check_fatal(victim)
    assert isinstance(victim.channel.reports[0], Boom)
    check_bystanders(world, peers, victim)
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "eventloop" and record.exc_info[0] is Boom
    assert "injected failure" in caplog.text        # the traceback names what went wrong


# ------------------------------------------------------------ vanishing peers
@pytest.mark.parametrize("after", [1, 2, 4, 7])
@pytest.mark.parametrize("kind", ["echo", "line", "chat"])
def test_a_peer_that_vanishes_mid_stream(kind, after, caplog):
    """The client closes without a word while its answers are still queued."""
    world = World()
    peers = world.bystanders()
    victim = world.victim(kind, send_limit=2, vanish_after=after)
    world.run()
    FAULTS["peer vanished"] += 1
    assert victim.gone and victim.chunks_sent == after
    check_fatal(victim)
    check_bystanders(world, peers, victim)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not world.reactor.map.get(victim.tap.fileno()), "a channel outlived its connection"


# ------------------------------------------------------------- half-close
@pytest.mark.parametrize("send_limit", [None, 1])
def test_chat_member_that_half_closes_still_gets_its_replies(send_limit):
    """``printf '/help\\n' | nc -N host 8023``: the client sends a line and shuts down its side.
    The replies already owed to it must still arrive before the server hangs up."""
    world = World()
    peers = world.bystanders()
    tap, theirs = world._pair(None, send_limit, 4096)
    member = Member(tap, world.room, world.reactor.map)
    peer = Peer(theirs, [b"/nick h\n/help\n/who\n"], half_close=True)
    peer.channel, peer.tap, peer.kind = member, tap, "half"
    world.peers.append(peer)
    world.run(max_passes=100_000)
    FAULTS["half-close"] += 1
    lines = peer.lines()
    assert b"* you are now known as h" in lines
    help_lines = [line.encode() for line in HELP.splitlines()]
    assert [l for l in lines if l in help_lines] == help_lines, "the /help reply was cut off by the hang-up"
    assert any(l.startswith(b"* here: ") and l.endswith(b", h (3)") for l in lines), lines
    assert peer.eof and not member.connected
    check_bystanders(world, peers)


# ------------------------------------------------------------- mass hang-up
@pytest.mark.parametrize("crowd", [20, 150])
def test_a_crowd_hanging_up_at_once_is_released_quietly(crowd, caplog):
    """Every peer but two vanishes at the same moment (a network drop, or an abusive client
    closing its sockets): each departure is announced to members who are themselves gone,
    which must neither recurse nor disturb the two who stay."""
    caplog.set_level(logging.INFO)
    world = World()
    stay = [world.add("chat", chat_script("b1"), chunk=11), world.add("chat", chat_script("b2"), chunk=13)]
    gone = [world.add("chat", b"", buffer_size=1 << 20) for _ in range(crowd)]
    world.run()
    for peer in gone:
        peer.sock.close()
    FAULTS["peer vanished"] += crowd
    world.run(max_passes=crowd * 20)
    for peer in gone:
        assert not peer.channel.connected and peer.channel.reports[:1] == ["close"], peer.channel.reports
    assert sorted(world.room.members) == ["b1", "b2"]
    for peer in stay:
        assert peer.channel.connected and peer.channel.reports == []
        left = [l for l in peer.lines() if l.endswith(b" has left")]
        assert len(left) == crowd and len(set(left)) == crowd, "a departure was announced twice or not at all"
    check_bystanders(world, stay)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]
