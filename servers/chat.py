"""A line-based chat room for telnet and nc clients, on :class:`eventloop.AsyncChat`.

    python -m servers.chat [PORT] [-b ADDR]

Every connection is an ``AsyncChat`` channel with ``\\n`` as its terminator: the channel
collects the bytes of a line, and ``found_terminator`` turns the line into a message for
the room or a command.  The room itself (:class:`ChatRoom`) never sees a socket: it keeps
the members by nickname and hands each member lines to deliver.

Two limits keep one client from hurting the others: a line longer than ``max_line`` bytes
is dropped as it arrives (never buffered whole), and a member whose unsent output grows
past ``max_queued`` bytes (it is not reading) is disconnected, so it never slows the room.
"""
import argparse
import collections
import itertools
import logging
import re
import sys
import unicodedata

from eventloop import AsyncChat, Listener, format_address
from servers import add_address_arguments, cannot_listen, run_loop

__all__ = ["DEFAULT_PORT", "ChatRoom", "ChatChannel", "ChatServer", "nick_error", "strip_telnet",
           "main"]

DEFAULT_PORT = 8023

log = logging.getLogger("servers.chat")

HELP = """\
* commands:
*   /nick NAME   change your name (letters, digits, _ and -, up to 24)
*   /who         list who is here
*   /me ACTION   tell the room what you are doing
*   /quit        leave the room
*   /help        this list
* any other line goes to everyone; start it with // to send a line beginning with /"""

_NICK = re.compile(r"[\w-]{1,24}")
# Letters that display as nothing: \w accepts them, so they are refused by name.  (The
# other default-ignorable characters, such as the bidi controls U+202A-U+202E and
# U+2066-U+2069 and the zero-width U+200B-U+200D, U+2060 and U+FEFF, are format
# characters, category Cf, refused as a category.)
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")

# Telnet (RFC 854): IAC introduces a command; WILL/WONT/DO/DONT take one option byte;
# SB ... IAC SE brackets a subnegotiation; IAC IAC is a literal 0xFF data byte.
IAC, SB, SE = 255, 250, 240
_OPTION_COMMANDS = frozenset({251, 252, 253, 254})

# Control characters would let one client move the cursor or recolour other terminals.
_CONTROLS = dict.fromkeys([c for c in range(32) if c != 9] + list(range(127, 160)))


def strip_telnet(data):
    """``data`` without telnet command sequences; an escaped ``IAC IAC`` becomes one 0xFF byte.

    A sequence cut off by the end of ``data`` is dropped too.
    """
    if IAC not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        j = data.find(IAC, i)
        if j < 0:
            out += data[i:]
            break
        out += data[i:j]
        command = data[j + 1] if j + 1 < n else None
        if command == IAC:
            out.append(IAC)
            i = j + 2
        elif command in _OPTION_COMMANDS:
            i = j + 3
        elif command == SB:
            end = data.find(bytes((IAC, SE)), j + 2)
            i = n if end < 0 else end + 2
        else:
            i = j + 2
    return bytes(out)


def nick_error(nick):
    """Why ``nick`` cannot be a nickname, or None if it can.

    A name is 1 to 24 letters, digits, ``_`` or ``-``, and none of them may be invisible
    or change the direction of the text around it: a format character (category Cf: the
    bidi controls and marks, zero-width spaces and joiners, the byte-order mark, the soft
    hyphen...) or a Hangul filler would let two names look alike or garble the /who list.
    """
    for char in nick:
        if char in _BLANK_LETTERS or unicodedata.category(char) == "Cf":
            return ("a name cannot contain U+%04X %s: no invisible or direction-changing "
                    "characters" % (ord(char), unicodedata.name(char, "(a format character)")))
    if not _NICK.fullmatch(nick):
        return "a name is 1 to 24 letters, digits, _ or -"
    return None


class ChatRoom:
    """The members of the room by nickname, and the lines they are sent.

    A member is any object with a ``nick`` attribute and a ``deliver(text)`` method; the
    room never touches sockets.  Nicknames are unique without regard to case.
    """

    #: Above this many members, arrivals and departures are not announced and a newcomer is
    #: told how many are here rather than who: every announcement goes to every member, so
    #: announcing N arrivals costs N*N deliveries (minutes of CPU for 10,000 idle sockets).
    announce_limit = 200

    def __init__(self):
        self.members = {}               # nick.casefold() -> member
        self._guest_numbers = itertools.count(1)
        self._outbox = collections.deque()  # broadcasts waiting for the one in progress
        self._delivering = False

    def guest_name(self):
        """The next ``guestN`` nobody is using."""
        while True:
            nick = "guest%d" % next(self._guest_numbers)
            if nick not in self.members:
                return nick

    def nicks(self):
        return sorted((m.nick for m in self.members.values()), key=str.casefold)

    def join(self, member):
        """Admit ``member`` under a guest name and tell the others."""
        member.nick = self.guest_name()
        self.members[member.nick.casefold()] = member
        log.info("%s joined", member.nick)
        if len(self.members) <= self.announce_limit:
            self.broadcast("* %s has joined" % member.nick, exclude=member)

    def leave(self, member, notice="has left"):
        """Remove ``member`` (once; later calls do nothing) and tell the others ``nick notice``."""
        if self.members.get(member.nick.casefold()) is not member:
            return
        del self.members[member.nick.casefold()]
        log.info("%s %s", member.nick, notice)
        if len(self.members) < self.announce_limit:
            self.broadcast("* %s %s" % (member.nick, notice))

    def rename(self, member, nick):
        """Give ``member`` a new nickname; returns an error message, or None on success."""
        error = nick_error(nick)
        if error:
            return error
        holder = self.members.get(nick.casefold())
        if holder is not None and holder is not member:
            return "%s is already taken" % nick
        old = member.nick
        del self.members[old.casefold()]
        member.nick = nick
        self.members[nick.casefold()] = member
        log.info("%s is now %s", old, nick)
        self.broadcast("* %s is now known as %s" % (old, nick), exclude=member)
        return None

    def broadcast(self, text, exclude=None):
        """Deliver ``text`` to every member but ``exclude``, after any broadcast in progress.

        A delivery may disconnect a member (it stopped reading, or its connection is gone)
        whose departure is broadcast in turn; that broadcast waits until the current one is
        done, so a crowd leaving at once costs a loop, not a recursion as deep as the crowd.
        """
        self._outbox.append((text, exclude))
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._outbox:
                text, exclude = self._outbox.popleft()
                # A copy: a delivery may disconnect a member, which changes the room.
                for member in list(self.members.values()):
                    if member is not exclude:
                        member.deliver(text)
        finally:
            self._delivering = False


class ChatChannel(AsyncChat):
    """One client: lines in, commands and messages out, through ``room``."""

    max_line = 1024             # bytes in one input line, terminator excluded
    max_queued = 256 * 1024     # unsent output bytes before the client counts as not reading

    def __init__(self, sock, room, map=None):
        AsyncChat.__init__(self, sock, map)
        self.set_terminator(b"\n")
        self.room = room
        self.nick = None
        self.present = True         # False once the member has left the room
        self.line_length = 0        # bytes of the current line seen so far
        self._line = []             # its pieces, while line_length <= max_line
        room.join(self)
        self.deliver("* welcome, %s; /help lists the commands" % self.nick)
        if len(room.members) <= room.announce_limit:
            self.deliver("* here: " + ", ".join(room.nicks()))
        else:
            self.deliver("* %d here; /who lists them" % len(room.members))

    # ------------------------------------------------------------------ input
    def collect_incoming_data(self, data):
        self.line_length += len(data)
        if self.line_length <= self.max_line:
            self._line.append(data)
        elif self._line:
            self._line.clear()      # too long: drop it, and the rest up to the newline

    def found_terminator(self):
        data = b"".join(self._line)
        too_long = self.line_length > self.max_line
        self._line.clear()
        self.line_length = 0
        if not self.present:
            return                  # input that followed /quit or a disconnection
        if too_long:
            self.deliver("* line too long (the limit is %d bytes); not sent" % self.max_line)
            return
        line = strip_telnet(data)
        if line.endswith(b"\r"):
            line = line[:-1]
        self.handle_line(line.decode("utf-8", "replace").translate(_CONTROLS))

    def handle_line(self, text):
        """Act on one line of input: a ``/command`` or a message for the room."""
        if not text.strip():
            return
        if text.startswith("/") and not text.startswith("//"):
            name, _, arg = text[1:].partition(" ")
            command = getattr(self, "cmd_" + name.lower(), None)
            if command is None:
                self.deliver("* unknown command /%s; /help lists the commands" % name)
            else:
                command(arg.strip())
            return
        if text.startswith("//"):
            text = text[1:]
        self.room.broadcast("<%s> %s" % (self.nick, text), exclude=self)

    # --------------------------------------------------------------- commands
    def cmd_nick(self, name):
        if not name:
            self.deliver("* you are %s; /nick NAME changes it" % self.nick)
            return
        error = self.room.rename(self, name)
        self.deliver("* " + (error or "you are now known as %s" % self.nick))

    def cmd_who(self, _):
        nicks = self.room.nicks()
        self.deliver("* here: %s (%d)" % (", ".join(nicks), len(nicks)))

    def cmd_me(self, action):
        if not action:
            self.deliver("* usage: /me ACTION")
            return
        self.room.broadcast("* %s %s" % (self.nick, action), exclude=self)

    def cmd_quit(self, _):
        self.deliver("* bye, %s" % self.nick)
        self.leave("has left")
        self.close_when_done()

    def cmd_help(self, _):
        for line in HELP.splitlines():
            self.deliver(line)

    # ----------------------------------------------------------------- output
    def deliver(self, text):
        """Queue one line for this client, or disconnect it if it has stopped reading."""
        if not self.connected:
            return
        self.push(text.encode("utf-8") + b"\r\n")
        if self.connected and self.queued_bytes > self.max_queued:
            log.warning("%s is not reading (%d bytes queued), disconnecting",
                        self.nick, self.queued_bytes)
            self.discard_buffers()
            self.close()
            self.leave("was disconnected (not reading)")

    def leave(self, notice):
        if self.present:
            self.present = False
            self.room.leave(self, notice)

    def handle_eof(self):
        """The client shut down its sending side: it leaves the room, but every line it is
        owed (replies to what it sent) is still sent before the connection closes."""
        self.eof_received = True
        self.interest_changed()
        self.leave("has left")
        self.close_when_done()

    def handle_close(self):
        self.close()
        self.leave("has left")


class ChatServer(Listener):
    """The listener: every connection joins ``self.room``."""

    channel = ChatChannel

    def __init__(self, host="", port=DEFAULT_PORT, *, map=None):
        Listener.__init__(self, host, port, map=map)
        self.room = ChatRoom()

    def handle_accepted(self, sock, addr):
        log.info("connection from %s", format_address(addr))
        self.channel(sock, self.room, map=self._map)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m servers.chat", usage="%(prog)s [PORT] [-b ADDR]",
        description="A chat room for telnet and nc clients: every line goes to everyone "
                    "else; /help lists the commands.")
    add_address_arguments(parser, DEFAULT_PORT,
                          "TCP port (default %(default)s; 0 picks a free one)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        server = ChatServer(args.bind, args.port)
    except OSError as exc:
        return cannot_listen(parser.prog, args, exc)
    log.info("listening on %s (tcp)", format_address(server.address))
    return run_loop()


if __name__ == "__main__":
    sys.exit(main())
