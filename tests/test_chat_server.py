"""servers.chat: the room's rules, the commands and nicknames (no invisible characters),
lines however they are cut, the limits that protect the room (long lines, flood control, slow
readers and the progress timeout, the hard bound), awkward input (non-UTF-8, telnet
commands, control characters), a flood over real sockets, and three real nc clients talking
through the command-line server."""
import contextlib
import itertools
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import unicodedata

import pytest
from hypothesis import given, strategies as st

from eventloop import DispatcherWithSend, Reactor
from eventloop.testing import chunkings, memory_reactor, memory_socketpair, pump
from servers.chat import (HELP, AddressFloods, ChatChannel, ChatRoom, ChatServer, FloodControl,
                          strip_telnet)

from launchers import reactor_thread, server_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 5.0


# ------------------------------------------------------------ the harness
class Peer:
    """The client end of a memory connection: what it typed, and the lines it has seen."""

    def __init__(self, sock, channel):
        self.sock = sock
        self.channel = channel
        self.buffer = bytearray()
        self.lines = []

    def send(self, data):
        assert self.sock.send(data) == len(data)

    def say(self, text):
        self.send(text.encode() + b"\r\n")

    def read(self):
        """Collect what arrived; return the complete lines that are new."""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                break
            self.buffer += data
        *complete, rest = bytes(self.buffer).split(b"\r\n")
        self.buffer = bytearray(rest)
        new = [line.decode() for line in complete]
        self.lines += new
        return new

    @property
    def hung_up(self):
        """True once the server closed the connection."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False



class Chat:
    """A room and its channels on a memory reactor; with ``per_address``, flood control is
    shared per client address (:class:`AddressFloods`), as :class:`ChatServer` does it."""

    def __init__(self, per_address=False):
        self.reactor = memory_reactor()
        self.room = ChatRoom()
        c = ChatChannel
        self.floods = AddressFloods(c.flood_lines, c.flood_line_burst, c.flood_bytes,
                                    c.flood_byte_burst) if per_address else None
        self._ports = itertools.count(40000)

    def join(self, buffer_size=65536, host=None, **limits):
        """A new member, connected from ``host`` (a port of its own) if given."""
        ours, theirs = memory_socketpair(buffer_size=buffer_size)
        if host is not None:
            theirs.bind((host, next(self._ports)))
        channel = ChatChannel(ours, self.room, self.reactor.map, floods=self.floods)
        for name, value in limits.items():
            setattr(channel, name, value)
        peer = Peer(theirs, channel)
        self.settle()
        return peer

    def settle(self, *readers):
        pump(self.reactor)
        return [peer.read() for peer in readers]


def three():
    chat = Chat()
    peers = [chat.join() for _ in range(3)]
    chat.settle(*peers)
    return chat, peers


# -------------------------------------------------------------- joining
def test_join_greets_the_newcomer_and_tells_the_others():
    chat = Chat()
    a = chat.join()
    assert a.read() == ["* welcome, guest1; /help lists the commands", "* here: guest1"]
    b = chat.join()
    assert chat.settle(a, b) == [["* guest2 has joined"],
                                 ["* welcome, guest2; /help lists the commands",
                                  "* here: guest1, guest2"]]


def test_messages_go_to_everyone_else_with_the_senders_name():
    chat, (a, b, c) = three()
    a.say("hello, room")
    assert chat.settle(a, b, c) == [[], ["<guest1> hello, room"], ["<guest1> hello, room"]]
    c.say("//slash is not a command")
    assert chat.settle(a, b, c) == [["<guest3> /slash is not a command"]] * 2 + [[]]


@given(st.data())
def test_lines_arrive_whole_however_the_input_is_cut(data):
    texts = data.draw(st.lists(st.text(st.characters(min_codepoint=32, blacklist_characters="/",
                                                     blacklist_categories=["Cs", "Cc", "Zl",
                                                                           "Zp"]),
                                       min_size=1, max_size=20).filter(str.strip),
                               min_size=1, max_size=5))
    ending = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    stream = b"".join(t.encode() + ending for t in texts)
    chat = Chat()
    a, b = chat.join(), chat.join()
    chat.settle(a, b)
    for chunk in data.draw(chunkings(stream)):
        a.send(chunk)
        chat.settle()
    assert chat.settle(b) == [["<guest1> %s" % t for t in texts]]


# -------------------------------------------------------------- commands
def test_nick_is_unique_without_regard_to_case_and_announced():
    chat, (a, b, c) = three()
    a.say("/nick Alice")
    assert chat.settle(a, b, c) == [["* you are now known as Alice"],
                                    ["* guest1 is now known as Alice"],
                                    ["* guest1 is now known as Alice"]]
    b.say("/nick alice")
    b.say("/nick no spaces")
    b.say("/nick " + "x" * 25)
    b.say("/nick bob")
    assert chat.settle(a, b, c) == [
        ["* guest2 is now known as bob"],
        ["* alice is already taken",
         "* a name is 1 to 24 letters, digits, _ or -",
         "* a name is 1 to 24 letters, digits, _ or -",
         "* you are now known as bob"],
        ["* guest2 is now known as bob"]]
    a.say("/nick alice")            # a new case for one's own name is fine
    b.say("/nick")
    assert chat.settle(a, b)[1][-1] == "* you are bob; /nick NAME changes it"
    c.say("/who")
    assert chat.settle(c) == [["* Alice is now known as alice", "* here: alice, bob, guest3 (3)"]]


INVISIBLE = ("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"    # bidi controls
             "\u200b\u200c\u200d\u2060\ufeff"                            # zero-width
             "\u200e\u200f\u061c\u00ad\u180e\u2061\u2064\U000e0041"      # marks, other Cf
             "\u115f\u1160\u3164\uffa0")                                 # Hangul fillers


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: "U+%04X" % ord(c))
def test_a_nick_with_an_invisible_or_direction_changing_character_is_refused(char):
    chat, (a, b, c) = three()
    for name in (char, "ali" + char + "ce", char * 3):
        a.say("/nick " + name)
        wanted = "* a name cannot contain U+%04X %s: no invisible or direction-changing " \
                 "characters" % (ord(char), unicodedata.name(char))
        assert chat.settle(a, b) == [[wanted], []]
    assert chat.room.nicks() == ["guest1", "guest2", "guest3"]


nick_texts = st.text(st.characters(blacklist_categories=["Cs"]) | st.sampled_from(INVISIBLE)
                     | st.sampled_from("_-aZ9"), max_size=30)


@given(nick_texts)
def test_a_nick_is_taken_exactly_when_every_character_is_visible_and_allowed(nick):
    room = ChatRoom()
    member, other = Member(), Member()
    room.join(member)
    room.join(other)
    error = room.rename(member, nick)
    invisible = [c for c in nick if unicodedata.category(c) == "Cf" or c in "\u115f\u1160\u3164\uffa0"]
    allowed = 1 <= len(nick) <= 24 and all(c.isalnum() or c in "_-" for c in nick)
    if invisible:
        assert error.startswith("a name cannot contain U+%04X " % ord(invisible[0]))
    elif allowed:
        assert error is None and member.nick == nick
        assert other.got[-1] == "* guest1 is now known as " + nick
    else:
        assert error == "a name is 1 to 24 letters, digits, _ or -"
    if error:
        assert member.nick == "guest1" and room.nicks() == ["guest1", "guest2"]
    assert not any(unicodedata.category(ch) == "Cf" for n in room.nicks() for ch in n)


def test_guest_names_skip_names_in_use():
    chat = Chat()
    a = chat.join()
    a.say("/nick guest2")
    chat.settle()
    b = chat.join()
    assert b.read()[0] == "* welcome, guest3; /help lists the commands"


def test_me_and_help_and_unknown_commands():
    chat, (a, b, c) = three()
    a.say("/me waves")
    a.say("/me")
    a.say("/dance now")
    assert chat.settle(a, b) == [["* usage: /me ACTION",
                                  "* unknown command /dance; /help lists the commands"],
                                 ["* guest1 waves"]]
    a.say("/HELP")
    [shown] = chat.settle(a)
    assert shown == HELP.splitlines()
    for command in ("/nick NAME", "/who", "/me ACTION", "/quit", "/help"):
        assert any(command in line for line in shown)


def test_quit_says_bye_tells_the_room_and_ignores_what_follows():
    chat, (a, b, c) = three()
    a.send(b"/quit\r\nthis is never sent\r\n")
    assert chat.settle(a, b, c) == [["* bye, guest1"], ["* guest1 has left"],
                                    ["* guest1 has left"]]
    assert a.hung_up and a.sock.peer.closed and not a.channel.connected
    assert chat.room.nicks() == ["guest2", "guest3"]


def test_hanging_up_leaves_the_room():
    chat, (a, b, c) = three()
    c.sock.close()
    assert chat.settle(a, b) == [["* guest3 has left"]] * 2
    assert chat.room.nicks() == ["guest1", "guest2"]


# -------------------------------------------------------------- limits
def test_a_long_line_is_refused_without_being_buffered():
    chat, (a, b, c) = three()
    limit = a.channel.max_line
    a.send(b"x" * limit + b"\n")            # exactly the limit: fine
    for _ in range(40):                      # 40 x 1000 bytes, no newline yet
        a.send(b"y" * 1000)
        chat.settle()
        assert sum(map(len, a.channel._line)) <= limit
        assert len(a.channel.ac_in_buffer) <= 1
    a.send(b"\r\nstill here\n")
    assert chat.settle(a, b) == [
        ["* line too long (the limit is %d bytes); not sent" % limit],
        ["<guest1> " + "x" * limit, "<guest1> still here"]]


def test_a_slow_reader_is_disconnected_and_never_slows_the_others():
    chat = Chat()
    a, b = chat.join(), chat.join()
    slow = chat.join(buffer_size=4096, max_queued=20_000)      # never reads
    chat.settle(a, b)
    for batch in range(20):
        for i in range(20):
            a.say("message %d.%d %s" % (batch, i, "z" * 80))
        chat.settle(a, b)
    expected = ["<guest1> message %d.%d %s" % (n // 20, n % 20, "z" * 80) for n in range(400)]
    assert [line for line in b.lines if line.startswith("<")] == expected
    notice = "* guest3 was disconnected (not reading)"
    assert notice in a.lines and notice in b.lines
    assert chat.room.nicks() == ["guest1", "guest2"]
    assert slow.sock.peer.closed and not slow.channel.connected


def test_a_slow_reader_is_cut_only_after_the_progress_timeout():
    """A member that stopped reading is cut, but not the moment its queue passes the bound:
    ``progress_timeout`` later, once its queue has not got shorter."""
    chat = Chat()
    a = chat.join(flood_lines=0, flood_bytes=0)
    slow = chat.join(buffer_size=4096, max_queued=20_000, progress_timeout=7.0)
    clock = chat.reactor.clock
    crossed = None
    for n in range(400):
        a.say("message %d %s" % (n, "z" * 80))
        chat.reactor.run_once(0)                    # one pass, no time: the line is sent
        if crossed is None and slow.channel.queued_bytes > 20_000:
            crossed = clock.now
    assert crossed is not None and slow.channel.connected, "cut at once, not after the timeout"
    chat.settle(a)
    assert not slow.channel.connected
    assert "* guest2 was disconnected (not reading)" in a.lines
    assert clock.now == pytest.approx(crossed + 7.0)


def read_at(reactor, peer, rate, step=0.5):
    """Make ``peer`` read ``rate`` bytes a second, ``rate * step`` every ``step`` seconds."""
    def read():
        try:
            data = peer.sock.recv(int(rate * step))
        except BlockingIOError:
            return
        peer.buffer += data
    return reactor.call_every(step, read)


def test_a_member_over_the_bound_that_catches_up_stays():
    """Owing more than max_queued is not enough to be cut: while the member reads and its
    queue gets shorter from one look to the next, it stays, and gets every line."""
    chat = Chat()
    a = chat.join(flood_lines=0, flood_bytes=0)
    reader = chat.join(buffer_size=4096, max_queued=20_000, progress_timeout=2.0)
    chat.settle(a, reader)
    reading = read_at(chat.reactor, reader, 1000)   # 1 KB/s: half a minute to catch up
    for n in range(300):            # 33 KB at once: far over the bound
        a.say("burst %d %s" % (n, "z" * 100))
    pump(chat.reactor, lambda: reader.channel.queued_bytes > 20_000)
    pump(chat.reactor, lambda: not reader.channel.queued_bytes or not reader.channel.connected,
         max_passes=100_000)
    reading.cancel()
    assert reader.channel.connected and chat.reactor.clock.now > 20
    reader.read()
    assert [l for l in reader.lines if l.startswith("<")] == [
        "<guest1> burst %d %s" % (n, "z" * 100) for n in range(300)]


def test_a_member_that_falls_further_behind_is_cut_and_its_queue_stays_bounded():
    """Reading, but slower than the room talks: the queue grows from one look to the next,
    so the member is cut at the second look, having never owed more than max_queued, one
    line and 2T of the inflow."""
    chat = Chat()
    a = chat.join(flood_lines=0, flood_bytes=0)
    reader = chat.join(buffer_size=4096, max_queued=20_000, progress_timeout=3.0)
    chat.settle(a, reader)
    reading = read_at(chat.reactor, reader, 1000)
    line = "z" * 491                    # 500 bytes delivered with "<guest1> " and CRLF
    talk = chat.reactor.call_every(0.25, lambda: a.say(line))     # 2 KB/s in, 1 KB/s out
    peak = 0
    crossed = []

    def cut():
        nonlocal peak
        peak = max(peak, reader.channel.queued_bytes)
        if peak > 20_000 and not crossed:
            crossed.append(chat.reactor.clock.now)
        return not reader.channel.connected

    pump(chat.reactor, cut, max_passes=100_000)
    talk.cancel()
    reading.cancel()
    assert chat.reactor.clock.now == pytest.approx(crossed[0] + 2 * 3.0, abs=0.5)
    assert 20_000 < peak <= 20_000 + 500 + 2 * 3.0 * 2000
    assert "* guest2 was disconnected (not reading)" in chat.settle(a)[0]


def test_the_hard_bound_cuts_at_once():
    chat = Chat()
    a = chat.join(flood_lines=0, flood_bytes=0)
    slow = chat.join(buffer_size=4096, max_queued=20_000, max_queued_hard=40_000)
    chat.settle(a)
    for n in range(1000):
        before = slow.channel.queued_bytes
        a.say("line %d %s" % (n, "z" * 90))
        chat.reactor.run_once(0)
        if not slow.channel.connected:
            break
    assert not slow.channel.connected
    assert 40_000 - 120 < before <= 40_000, "cut only at %d bytes" % before
    assert chat.reactor.clock.now == 0.0, "the hard bound waited for a timer"


# ---------------------------------------------------------------- flood control
FLOOD_LINE = 1023                   # bytes of text in each line of the flood: 1 KB with "\n"


def flood_line(n):
    return b"%05d " % n + b"x" * (FLOOD_LINE - 6)


@given(st.lists(st.tuples(st.floats(0, 2), st.integers(1, 1500)), min_size=1, max_size=60),
       st.sampled_from([(10.0, 20, 4096.0, 16384), (2.0, 5, 0, 0), (0, 0, 1000.0, 1024),
                        (0.5, 1, 300.0, 100)]))
def test_flood_control_releases_at_most_the_burst_plus_the_rate(lines, limits):
    """Lines offered at any times, each retried when take() says: every window of released
    lines fits the burst plus the rate times its length, and each line goes as soon as the
    buckets allow (the wait returned is exact)."""
    line_rate, line_burst, byte_rate, byte_burst = limits
    bucket = FloodControl(line_rate, line_burst, byte_rate, byte_burst, 0.0)
    now, released = 0.0, []
    for gap, size in lines:
        now += gap
        wait = bucket.take(size, now)
        if wait:
            if wait > 1e-6:
                assert bucket.take(size, now + wait * 0.999) > 0, "released before the wait was up"
            now += wait
            assert bucket.take(size, now) == 0, "still refused when the wait was up"
        released.append((now, size))
    for i in range(len(released)):
        for j in range(i, len(released)):
            span = released[j][0] - released[i][0]
            if line_rate:
                assert j - i + 1 <= line_burst + line_rate * span + 1e-6
            if byte_rate:
                sizes = [size for _, size in released[i:j + 1]]
                # A line longer than the byte burst goes on a full bucket, into debt.
                assert sum(sizes) <= byte_burst + byte_rate * span + max(0, sizes[-1] - byte_burst) + 1e-6


def test_a_paused_sender_is_not_read_and_every_line_it_sent_arrives_in_order():
    """``cat file | nc -N``: 100 lines then a half-close.  The first 20 go at once; the
    rest, read but over the limit, wait unframed while the socket is not read, and go out
    ten a second; only then does the sender leave, and nothing it sent is lost."""
    chat = Chat()
    a, b = chat.join(), chat.join()
    chat.settle(a, b)
    clock = chat.reactor.clock
    a.send(b"".join(b"line %d\n" % n for n in range(100)))
    a.sock.shutdown(socket.SHUT_WR)
    chat.reactor.run_once(0)
    assert not a.channel.reading, "still reading from a sender over its limit"
    assert b.read() == ["<guest1> line %d" % n for n in range(20)]
    arrived = {}
    for _ in range(1000):
        chat.reactor.run_once(math.inf)
        for line in b.read():
            arrived[line] = clock.now
        if len(arrived) >= 80:
            break
    assert list(arrived) == ["<guest1> line %d" % n for n in range(20, 100)]
    for n, t in enumerate(arrived.values(), 1):
        assert t == pytest.approx(n / ChatChannel.flood_lines)
    chat.settle()
    assert b.read() == ["* guest1 has left"] and not a.channel.connected


def test_a_flooder_is_paused_and_a_10_kb_s_reader_gets_every_line():
    """The issue's attack, in virtual time: one member sends 12,000 lines of 1 KB as fast
    as its socket takes them, another reads 10 KB a second.  The flooder's lines reach the
    room at the flood-control rate; the reader stays, gets each of them in order, and never
    owes more than the burst; a third member's lines reach everyone at once."""
    count = 12_000
    chat = Chat()
    flooder = chat.join()
    reader = chat.join(buffer_size=8192)
    talker = chat.join()
    watcher = chat.join(buffer_size=1 << 20)
    chat.settle(flooder, reader, talker, watcher)
    clock = chat.reactor.clock
    read_at(chat.reactor, reader, 10_000)
    said = []

    def say():
        said.append(clock.now)
        talker.say("talker %d" % len(said))

    chat.reactor.call_every(10.0, say)
    stream = b"".join(flood_line(n) + b"\n" for n in range(count))
    sent = 0
    start = clock.now
    arrivals = []                   # (time, line) as the watcher, who reads at once, sees them
    last = "<guest1> " + flood_line(count - 1).decode()
    peak = 0
    for _ in range(100_000):
        if sent < len(stream):
            try:
                sent += flooder.sock.send(stream[sent:sent + 65536])
            except BlockingIOError:
                pass
        chat.reactor.run_once(math.inf)
        peak = max(peak, reader.channel.queued_bytes)
        arrivals += [(clock.now, line) for line in watcher.read()]
        flooder.read()
        if arrivals and arrivals[-1][1] == last:
            break
    else:
        raise AssertionError("the flood did not get through")
    # Let the reader catch up (it still reads 10 KB/s), then compare.
    pump(chat.reactor, lambda: not reader.channel.queued_bytes and not reader.sock.pending,
         max_passes=10_000)
    reader.read()
    assert reader.channel.connected and not reader.hung_up
    flood = [l for l in reader.lines if l.startswith("<guest1>")]
    assert flood == ["<guest1> " + flood_line(n).decode() for n in range(count)]
    # At the bucket's rate: never more bytes by time t than the burst plus t times the rate.
    c = ChatChannel
    times = [t - start for t, line in arrivals if line.startswith("<guest1>")]
    for k, t in enumerate(times):
        assert (k + 1) * FLOOD_LINE <= c.flood_byte_burst + c.flood_bytes * t + 1e-6, (k, t)
    expected = (count * FLOOD_LINE - c.flood_byte_burst) / c.flood_bytes
    assert times[-1] == pytest.approx(expected, rel=0.01)
    assert peak <= c.flood_byte_burst * 1.1, "the reader was made to owe %d bytes" % peak
    print("\nflood in virtual time: %d lines, the last %.1f s after the first; reader owed at "
          "most %d bytes" % (len(times), times[-1], peak))
    # The talker was never held up: each of its lines reached the watcher when said.
    heard = {line: t for t, line in arrivals if line.startswith("<guest3>")}
    assert len(said) >= 290
    for n, t in enumerate(said, 1):
        if "<guest3> talker %d" % n in heard:
            assert heard["<guest3> talker %d" % n] == t
    talk = [l for l in reader.lines if l.startswith("<guest3>")]
    assert talk == ["<guest3> talker %d" % n for n in range(1, len(talk) + 1)]


# ------------------------------------------------- flood control per address
SYBIL = "192.0.2.66"                # the address every connection of the attacker comes from


class Sender:
    """Writes ``stream`` into a memory peer as its buffer takes it (nc on a pipe)."""

    def __init__(self, peer):
        self.peer, self.pending = peer, b""

    def push(self, data=b""):
        self.pending += data
        while self.pending:
            try:
                sent = self.peer.sock.send(self.pending[:65536])
            except BlockingIOError:
                return
            self.pending = self.pending[sent:]


@given(st.integers(1, 8))
def test_connections_from_one_address_share_one_flood_budget(k):
    """k connections from one address each send 60 lines of 1 KB at once: together they
    reach the room at one bucket's rate (by time t at most the byte burst plus t times the
    byte rate, and the line burst plus t times the line rate), as one connection alone does;
    with a bucket per connection, k of them would send k times as much."""
    chat = Chat(per_address=True)
    watcher = chat.join(buffer_size=1 << 22, host="198.51.100.1")
    sybils = [Sender(chat.join(host=SYBIL)) for _ in range(k)]
    chat.settle(watcher, *(s.peer for s in sybils))
    clock = chat.reactor.clock
    start = clock.now
    for n, sybil in enumerate(sybils):
        sybil.push(b"".join(flood_line(1000 * n + i) + b"\n" for i in range(60)))
    arrivals = []
    while clock.now - start < 10.0:
        chat.reactor.run_once(math.inf)
        for sybil in sybils:
            sybil.push()
            sybil.peer.read()
        arrivals += [clock.now - start for line in watcher.read() if line.startswith("<guest")]
    c = ChatChannel
    for count, t in enumerate(arrivals, 1):
        assert count * FLOOD_LINE <= c.flood_byte_burst + c.flood_bytes * t + 1e-6, (count, t)
        assert count <= c.flood_line_burst + c.flood_lines * t + 1e-6, (count, t)
    # Not starved either: the address got its whole budget for the 10 s (or all it sent).
    budget = (c.flood_byte_burst + c.flood_bytes * 10.0) // FLOOD_LINE
    assert len(arrivals) >= min(60 * k, budget - 1)


def test_a_10_kb_s_reader_stays_while_30_connections_each_within_the_limit_flood():
    """The review's sybil attack in virtual time: 30 connections from one address each send
    4 lines of 1 KB a second (one member's whole budget) for 60 s, and a member reads
    10 KB/s through a small buffer.  Their address shares one 4 KiB/s budget, under what
    the reader reads, so the reader is never cut and never owes more than a burst or so
    (with a budget per connection it owed 1 MiB and was cut after about 40 s)."""
    chat = Chat(per_address=True)
    reader = chat.join(buffer_size=8192, host="198.51.100.1")
    sybils = [Sender(chat.join(host=SYBIL)) for _ in range(30)]
    chat.settle(reader, *(s.peer for s in sybils))
    clock = chat.reactor.clock
    read_at(chat.reactor, reader, 10_000, step=0.1)
    lines = itertools.count()

    def flood():
        for sybil in sybils:
            sybil.push(b"".join(flood_line(next(lines) % 100_000) + b"\n" for _ in range(4)))

    chat.reactor.call_every(1.0, flood)
    start, peak = clock.now, 0
    for _ in range(1_000_000):
        if clock.now - start >= 60.0 or not reader.channel.connected:
            break
        chat.reactor.run_once(math.inf)
        for sybil in sybils:
            sybil.peer.read()
        peak = max(peak, reader.channel.queued_bytes)
    assert reader.channel.connected, "the reader was cut after %.1f s" % (clock.now - start)
    c = ChatChannel
    assert peak <= c.flood_byte_burst + 2 * 1100, "the reader was made to owe %d bytes" % peak
    got = [l for l in reader.read() if l.startswith("<guest")]
    assert len(got) * FLOOD_LINE <= c.flood_byte_burst + c.flood_bytes * 60.0
    assert len(got) * FLOOD_LINE >= c.flood_bytes * 50.0, "the address was starved"


def test_join_and_leave_churn_is_charged_to_the_churners_address():
    """2,000 connect-and-hang-up cycles from one address, a millisecond apart: each joins
    (and is welcomed), but the others hear of arrivals and departures only as fast as the
    address's line budget allows; every departure they hear of is one of an arrival they
    heard of, and the rest are counted as unannounced."""
    chat = Chat(per_address=True)
    members = [chat.join(host="198.51.100.%d" % n) for n in range(1, 6)]
    chat.settle(*members)
    clock = chat.reactor.clock
    start = clock.now
    cycles = 2000
    for _ in range(cycles):
        churner = chat.join(host=SYBIL)
        assert churner.read()[0].startswith("* welcome, guest")
        churner.sock.close()
        chat.settle()
        clock.advance(0.001)
    elapsed = clock.now - start
    c = ChatChannel
    notices = None
    for member in members:
        heard = member.read()
        joined = [l for l in heard if l.endswith(" has joined")]
        left = [l for l in heard if l.endswith(" has left")]
        assert len(heard) == len(joined) + len(left)
        assert [l.split()[1] for l in left] == [l.split()[1] for l in joined]
        assert notices in (None, len(heard))
        notices = len(heard)
    # Each notice took a line token: at most the burst and the refill, plus one departure
    # charged into debt.
    assert notices <= c.flood_line_burst + c.flood_lines * elapsed + 1
    assert notices >= c.flood_lines * elapsed, "the address could announce nothing"
    assert chat.room.unannounced == cycles - notices // 2
    print("\n%d join/leave cycles in %.1f s (virtual): %d notices to each member, %d "
          "arrivals unannounced" % (cycles, elapsed, notices, chat.room.unannounced))


def test_an_address_entry_lives_until_its_last_connection_closed_and_its_buckets_refilled():
    floods = AddressFloods(10.0, 20, 4096.0, 16384)
    a = floods.acquire("192.0.2.1", 0.0)
    assert floods.acquire("192.0.2.1", 0.0) is a and len(floods) == 1
    assert a.take(1000, 0.0) == 0
    floods.release("192.0.2.1", 0.0)
    floods.release("192.0.2.1", 0.0)
    assert len(floods) == 1, "forgotten while its buckets were not full: a fresh burst"
    assert floods.acquire("192.0.2.1", 0.1) is a
    floods.release("192.0.2.1", 0.1)
    floods.acquire("192.0.2.2", 1.0)       # a look at the table: 192.0.2.1 is full by now
    assert len(floods) == 1 and floods.acquire("192.0.2.1", 1.0) is not a


def test_an_address_holds_at_most_max_per_ip_connections():
    """Over real sockets: with --max-per-ip 3, a fourth connection from 127.0.0.1 is told
    why and closed, while one from 127.0.0.2 joins; once one of the three has gone, 127.0.0.1
    may connect again."""
    reactor = Reactor()
    server = ChatServer("127.0.0.1", 0, map=reactor.map, max_per_ip=3)

    def connect(source):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT,
                                        source_address=(source, 0))
        return sock, sock.makefile("rb")

    with reactor_thread(reactor):
        three = [connect("127.0.0.1") for _ in range(3)]
        for _, reader in three:
            assert reader.readline().startswith(b"* welcome, guest")
        sock, reader = connect("127.0.0.1")
        assert reader.read() == b"* too many connections from your address (the limit is 3)\r\n"
        sock.close()
        other, other_reader = connect("127.0.0.2")
        assert other_reader.readline().startswith(b"* welcome, guest")
        three[0][0].sendall(b"/quit\r\n")
        assert three[0][1].read().endswith(b"* bye, guest1\r\n")
        deadline = time.monotonic() + TIMEOUT   # the server closes its side, then forgets it
        while server.floods.connections("127.0.0.1") != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        again, again_reader = connect("127.0.0.1")
        assert again_reader.readline().startswith(b"* welcome, guest")
        for sock, reader in three + [(other, other_reader), (again, again_reader)]:
            reader.close()
            sock.close()


# ------------------------------------------------ flood control over real sockets
class LineClient(DispatcherWithSend):
    """A chat client on a client-side reactor: the lines it gets, each with the time it got
    it.  With ``pace`` it reads at most ``pace`` bytes a second (a reactor timer reads a
    tenth every 0.1 s), and never otherwise."""

    def __init__(self, port, map, pace=None, rcvbuf=None):
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        DispatcherWithSend.__init__(self, sock, map)
        self.buffer = b""
        self.lines = []             # (time, line)
        self.closed_by_server = False
        if pace:
            self.pause_reading()
            self.reactor.call_every(0.1, self.take, pace // 10)

    def take(self, size=65536):
        if not self.connected:
            return
        try:
            data = self.socket.recv(size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed_by_server = True
            self.close()
            return
        *lines, self.buffer = (self.buffer + data).split(b"\r\n")
        now = self.reactor.clock()
        self.lines += [(now, line.decode()) for line in lines]

    def handle_read(self):
        self.take()

    def said(self, nick):
        return [(t, l) for t, l in self.lines if l.startswith("<%s> " % nick)]


def run_until(reactor, predicate, seconds):
    """Run ``reactor`` until ``predicate()`` or ``seconds`` have passed; returns predicate()."""
    deadline = reactor.clock() + seconds
    pump(reactor, lambda: predicate() or reactor.clock() > deadline, timeout=0.1,
         max_passes=1_000_000)
    return predicate()


def test_over_real_sockets_a_flooder_is_paused_while_a_10_kb_s_reader_and_the_room_keep_up():
    server_reactor = Reactor()
    ChatServer("127.0.0.1", 0, map=server_reactor.map)
    port = next(iter(server_reactor.map.values())).port
    thread = threading.Thread(target=server_reactor.run, daemon=True)
    thread.start()
    clients = Reactor()
    try:
        flooder = LineClient(port, clients.map)
        reader = LineClient(port, clients.map, pace=10_000, rcvbuf=4096)
        talker = LineClient(port, clients.map)
        watcher = LineClient(port, clients.map)
        assert run_until(clients, lambda: any(l == "* here: guest1, guest2, guest3, guest4"
                                              for _, l in watcher.lines), TIMEOUT)
        said = []

        def talk():
            said.append(clients.clock())
            talker.send(b"talker %d\r\n" % len(said))

        talking = clients.call_every(0.5, talk)
        count = 12_000
        start = clients.clock()
        flooder.send(b"".join(flood_line(n) + b"\n" for n in range(count)))
        run_until(clients, lambda: False, 3.0)
        talking.cancel()
        flood = watcher.said("guest1")
        # The reader is still here, and gets every line the room got, in order (the flood
        # goes on meanwhile: what the server holds of it, it still relays).
        run_until(clients, lambda: len(reader.said("guest1")) >= len(flood)
                  or reader.closed_by_server, 4 * TIMEOUT)
        assert not reader.closed_by_server, "the reader was disconnected"
        assert not any("guest2 was disconnected" in l for _, l in watcher.lines)
        got = [l for _, l in reader.said("guest1")]
        assert got == [l for _, l in watcher.said("guest1")][:len(got)]
        assert got[:len(flood)] == ["<guest1> " + flood_line(n).decode() for n in range(len(flood))]
        # Not faster than the bucket: by each arrival, at most the burst plus the rate times
        # the time since the flood began (server and test share one monotonic clock).
        c = ChatChannel
        for k, (t, _) in enumerate(flood):
            assert (k + 1) * FLOOD_LINE <= c.flood_byte_burst + c.flood_bytes * (t - start), k
        assert len(flood) > c.flood_byte_burst // FLOOD_LINE + 2, "the flooder was starved"
        # The others were not held up: each talker line reached the watcher within 0.5 s.
        heard = dict((l, t) for t, l in watcher.said("guest3"))
        assert len(said) == 6 and len(heard) == 6
        for n, t in enumerate(said, 1):
            assert heard["<guest3> talker %d" % n] - t < 0.5
        assert [l for _, l in reader.said("guest3")] == list(heard)
    finally:
        for channel in list(clients.map.values()):
            channel.close()
        clients.close()
        server_reactor.call_soon_threadsafe(server_reactor.stop)
        thread.join(TIMEOUT)
        for channel in list(server_reactor.map.values()):
            channel.close()
        server_reactor.close()


# -------------------------------------------------------------- awkward input
def test_non_utf8_telnet_commands_and_control_characters():
    chat = Chat()
    a, b = chat.join(), chat.join()
    chat.settle(a, b)
    a.send(b"caf\xe9 ok\r\n")
    a.send(b"\xff\xfd\x01tel\xff\xf4net\xff\xfa\x18\x00xterm\xff\xf0 ok\xff\xff\r\n")
    a.send(b"\x1b[31mred\x07 and\ttab\r\n")
    assert chat.settle(b) == [["<guest1> caf\ufffd ok", "<guest1> telnet ok\ufffd",
                               "<guest1> [31mred and\ttab"]]


telnet_commands = st.one_of(
    st.builds(lambda c, o: bytes([255, c, o]), st.integers(251, 254), st.integers(0, 255)),
    st.builds(lambda c: bytes([255, c]), st.integers(240, 249).filter(lambda c: c != 250)),
    st.builds(lambda body: b"\xff\xfa" + body + b"\xff\xf0",
              st.binary(max_size=8).filter(lambda b: b"\xff" not in b)),
)


@given(st.lists(st.tuples(st.binary(max_size=10), telnet_commands), max_size=6),
       st.binary(max_size=10))
def test_strip_telnet_leaves_exactly_the_data(pieces, tail):
    def escape(data):
        return data.replace(b"\xff", b"\xff\xff")

    wire = b"".join(escape(data) + command for data, command in pieces) + escape(tail)
    assert strip_telnet(wire) == b"".join(data for data, _ in pieces) + tail


def test_strip_telnet_drops_a_sequence_cut_short():
    assert strip_telnet(b"abc\xff") == b"abc"
    assert strip_telnet(b"abc\xff\xfb") == b"abc"
    assert strip_telnet(b"abc\xff\xfa\x18xyz") == b"abc"


# ---------------------------------------------------------- the room alone
class Member:
    def __init__(self):
        self.nick = None
        self.got = []

    def deliver(self, text):
        self.got.append(text)


def test_room_leave_happens_once():
    room = ChatRoom()
    a, b = Member(), Member()
    room.join(a)
    room.join(b)
    room.leave(a)
    room.leave(a, "is gone again")
    assert b.got == ["* guest1 has left"]
    assert room.nicks() == ["guest2"]


# ----------------------------------------------- three nc clients, real sockets
class Terminal:
    """An ``nc`` process: type lines, wait for lines (bounded)."""

    def __init__(self, port):
        self.proc = subprocess.Popen(["nc", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.seen = b""

    def type(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, text):
        """Wait until a line equal to ``text`` arrives; fail after TIMEOUT seconds."""
        wanted = text.encode() + b"\r\n"
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError("no %r; got %r" % (text, self.seen))
            data = os.read(fd, 4096)
            if not data:
                raise AssertionError("connection closed before %r; got %r" % (text, self.seen))
            self.seen += data
        self.seen = self.seen.split(wanted, 1)[1]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.stdout.close()


def chat_server_process():
    return server_process("servers.chat", banner=rb"listening on 127\.0\.0\.1:(\d+) \(tcp\)")


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc is not installed")
def test_three_nc_clients_chat():
    with chat_server_process() as port, contextlib.ExitStack() as stack:
        terminals = []
        for n in (1, 2, 3):
            t = Terminal(port)
            stack.callback(t.close)
            t.expect("* welcome, guest%d; /help lists the commands" % n)
            terminals.append(t)
        alice, bob, carol = terminals
        alice.type("/nick alice")
        alice.expect("* you are now known as alice")
        bob.expect("* guest1 is now known as alice")
        bob.type("/nick bob")
        carol.expect("* guest2 is now known as bob")
        alice.type("hello from alice")
        bob.expect("<alice> hello from alice")
        carol.expect("<alice> hello from alice")
        carol.type("/me waves")
        alice.expect("* guest3 waves")
        bob.expect("* guest3 waves")
        bob.type("/who")
        bob.expect("* here: alice, bob, guest3 (3)")
        alice.type("/quit")
        alice.expect("* bye, alice")
        alice.proc.stdin.close()        # nc now exits only if the server closed its side
        assert alice.proc.wait(TIMEOUT) == 0
        bob.expect("* alice has left")
        carol.expect("* alice has left")


@pytest.mark.parametrize("args", [["--flood-lines", "-1"], ["--flood-bytes", "nan"],
                                  ["--progress-timeout", "soon"]])
def test_cli_rejects_a_bad_limit(args):
    result = subprocess.run([sys.executable, "-m", "servers.chat", *args], cwd=ROOT,
                            capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 2 and b"error: argument " + args[0].encode() in result.stderr
    assert b"Traceback" not in result.stderr
