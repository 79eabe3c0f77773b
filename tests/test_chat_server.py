"""servers.chat: the room's rules, the commands and nicknames (no invisible characters), lines
however they are cut, the limits that protect the room (long lines, slow readers), awkward
input (non-UTF-8, telnet commands, control characters), and three real nc clients talking
through the command-line server."""
import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import unicodedata

import pytest
from hypothesis import given, strategies as st

from eventloop.testing import chunkings, memory_reactor, memory_socketpair, pump
from servers.chat import HELP, ChatChannel, ChatRoom, strip_telnet

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
    """A room and its channels on a memory reactor."""

    def __init__(self):
        self.reactor = memory_reactor()
        self.room = ChatRoom()

    def join(self, buffer_size=65536, **limits):
        ours, theirs = memory_socketpair(buffer_size=buffer_size)
        channel = ChatChannel(ours, self.room, self.reactor.map)
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


@contextlib.contextmanager
def chat_server_process():
    proc = subprocess.Popen([sys.executable, "-m", "servers.chat", "0", "-b", "127.0.0.1"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        log = b""
        deadline = time.monotonic() + TIMEOUT
        while not re.search(rb"listening on 127\.0\.0\.1:(\d+) \(tcp\)", log):
            left = deadline - time.monotonic()
            assert left > 0 and select.select([proc.stderr], [], [], left)[0], log
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, "the server exited: %r" % log
            log += chunk
        yield int(re.search(rb":(\d+) \(", log).group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            err = proc.communicate(timeout=TIMEOUT)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1]
    assert b"Traceback" not in err


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
