"""A line-based chat room for telnet and nc clients, on :class:`eventloop.AsyncChat`.

    python -m servers.chat [PORT] [-b ADDR] [--max-per-ip N] [-q] [--tls-cert PATH [--tls-key PATH]]

With ``--tls-cert`` the room speaks TLS (``openssl s_client -connect HOST:PORT`` is then the
telnet); a member joins once its handshake is complete.

Every connection is an ``AsyncChat`` channel with ``\\n`` as its terminator: the channel
collects the bytes of a line, and ``found_terminator`` turns the line into a message for
the room or a command.  The room itself (:class:`ChatRoom`) never sees a socket: it keeps
the members by nickname and hands each member lines to deliver.

Limits keep one client from hurting the others:

* a line longer than ``max_line`` bytes is dropped as it arrives (never buffered whole);
* flood control: the members connected from one address may send the room
  ``flood_lines`` lines and ``flood_bytes`` bytes a second together, after a burst of
  ``flood_line_burst`` lines and ``flood_byte_burst`` bytes (:class:`FloodControl`, one per
  address: :class:`AddressFloods`), so that many connections buy no more.  A member over
  it is paused: its socket is no longer read (TCP then slows the sender down) until the
  tokens are back; the room is never paused.  Arrival notices are charged to the same
  buckets: one over the limit is not sent (the member still joins), and neither is its
  departure later (see :class:`ChatRoom`);
* one address may hold at most ``ChatServer.max_per_ip`` connections (``--max-per-ip``);
* a member whose unsent output is over ``max_queued`` bytes must keep up: if, at a look
  every ``progress_timeout`` seconds, it has read nothing since the last look, or (from the
  second look on) owes more than it did then, it is disconnected, and so is a member owed
  more than ``max_queued_hard`` bytes.  What a member can be owed is thus bounded by flood
  control and the timeout (see :class:`ChatChannel`), and by ``max_queued_hard`` whatever
  the number of senders.
"""
import argparse
import collections
import itertools
import logging
import math
import re
import sys
import unicodedata

from eventloop import AsyncChat, Listener, format_address
from servers import (TokenBucket, add_address_arguments, add_quiet_argument, add_tls_arguments,
                     cannot_listen, exits_on_ctrl_c, log_to_stderr, run_loop, tls_context_from)

__all__ = ["DEFAULT_PORT", "AddressFloods", "ChatRoom", "ChatChannel", "ChatServer", "FloodControl",
           "nick_error", "strip_telnet", "main"]

DEFAULT_PORT = 8023

log = logging.getLogger("servers.chat")
#: What each member does (connects, joins, renames, leaves, floods): ``-q`` silences it.
member_log = logging.getLogger("servers.chat.member")

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


class FloodControl:
    """Two token buckets, lines and bytes: what one client address may send to the room.

    Each refills at its rate per second up to its burst; a line of ``size`` bytes takes one
    line token and ``size`` byte tokens (a line longer than the byte burst needs a full
    bucket and leaves it in debt, so it still goes, at the average rate).  A rate of 0
    means no limit.  Time is whatever clock the caller passes as ``now``.
    """

    __slots__ = ("line_rate", "byte_rate", "line_burst", "byte_burst", "_lines", "_bytes")

    def __init__(self, line_rate, line_burst, byte_rate, byte_burst, now):
        self.line_rate, self.line_burst = line_rate, line_burst
        self.byte_rate, self.byte_burst = byte_rate, byte_burst
        self._lines = TokenBucket(line_rate, line_burst, now)
        self._bytes = TokenBucket(byte_rate, byte_burst, now)

    def take(self, size, now):
        """Charge a line of ``size`` bytes and return 0 if the buckets allow it now;
        otherwise charge nothing and return how many seconds until they will."""
        wait = max(self._lines.wait(1, now), self._bytes.wait(size, now))
        if wait:
            return wait
        self._lines.spend(1)
        self._bytes.spend(size)
        return 0.0

    def charge(self, size, now):
        """Charge a line of ``size`` bytes that goes whatever the buckets hold (their debt
        bounded by one burst each)."""
        self._lines.force(1, now)
        self._bytes.force(size, now)

    def full(self, now):
        """Whether both buckets are full again by ``now`` (nothing to remember)."""
        return self._lines.full(now) and self._bytes.full(now)


class AddressFloods:
    """The :class:`FloodControl` of each client address: every connection from one address
    shares it, as IRC servers count a host's lines together, so that opening more
    connections buys no more lines, and no more arrival notices.

    An entry lives while a connection from its address is open, and after the last one
    closes until its buckets are full again: an address that connects and hangs up in a loop
    must not get a fresh burst each time.  So the table holds the addresses connected now
    and those that left in the last few seconds (a forced charge leaves at most one burst
    of debt: see :meth:`TokenBucket.force`).
    """

    def __init__(self, line_rate, line_burst, byte_rate, byte_burst):
        self.limits = (line_rate, line_burst, byte_rate, byte_burst)
        self._entries = {}                      # host -> [FloodControl, open connections]
        self._idle = collections.OrderedDict()  # hosts with none open, in the order they left

    def __len__(self):
        return len(self._entries)

    def acquire(self, host, now):
        """A new connection from ``host``: its address's FloodControl."""
        self._forget(now)
        entry = self._entries.get(host)
        if entry is None:
            entry = self._entries[host] = [FloodControl(*self.limits, now), 0]
        self._idle.pop(host, None)
        entry[1] += 1
        return entry[0]

    def connections(self, host):
        """How many connections from ``host`` are open."""
        entry = self._entries.get(host)
        return entry[1] if entry is not None else 0

    def release(self, host, now):
        """A connection from ``host`` closed."""
        entry = self._entries[host]
        entry[1] -= 1
        if not entry[1]:
            self._idle[host] = None
        self._forget(now)

    def _forget(self, now):
        """Drop the idle entries, oldest first, whose buckets are full again."""
        while self._idle:
            host = next(iter(self._idle))
            if not self._entries[host][0].full(now):
                break
            del self._idle[host]
            del self._entries[host]


class ChatRoom:
    """The members of the room by nickname, and the lines they are sent.

    A member is any object with a ``nick`` attribute and a ``deliver(text)`` method; the
    room never touches sockets.  Nicknames are unique without regard to case.

    A member may also have ``may_announce(text, departure)``: the room asks it before
    telling everyone of its arrival, and an arrival it refuses is not announced (the member
    is admitted all the same, and counted in ``unannounced``), nor is that member's
    departure later; a departure whose arrival was announced is always announced, after
    the member was asked (it is charged for it).  So the notices one member's comings and
    goings send everyone are limited by whatever ``may_announce`` applies (the channel's
    flood control: :meth:`ChatChannel.may_announce`).
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
        self.unannounced = 0            # arrivals a member's may_announce kept quiet

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
        if not 1 < len(self.members) <= self.announce_limit:     # no one to tell, or a crowd
            member_log.info("%s joined", member.nick)
            return
        text = "* %s has joined" % member.nick
        ask = getattr(member, "may_announce", None)
        if ask is None or ask(text, False):
            member_log.info("%s joined", member.nick)
            self.broadcast(text, exclude=member)
        else:
            member.arrival_unannounced = True
            self.unannounced += 1
            member_log.info("%s joined (not announced: over its address's flood limit; "
                            "%d unannounced so far)", member.nick, self.unannounced)

    def leave(self, member, notice="has left"):
        """Remove ``member`` (once; later calls do nothing) and tell the others ``nick notice``."""
        if self.members.get(member.nick.casefold()) is not member:
            return
        del self.members[member.nick.casefold()]
        member_log.info("%s %s", member.nick, notice)
        if (0 < len(self.members) < self.announce_limit
                and not getattr(member, "arrival_unannounced", False)):
            text = "* %s %s" % (member.nick, notice)
            ask = getattr(member, "may_announce", None)
            if ask is not None:
                ask(text, True)
            self.broadcast(text)

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
        member_log.info("%s is now %s", old, nick)
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
    """One client: lines in, commands and messages out, through ``room``.

    The limits are class attributes; ``flood_lines``, ``flood_bytes`` and
    ``progress_timeout`` may also be given to the constructor, or ``floods``, an
    :class:`AddressFloods` whose limits and per-address buckets it then uses.

    What a member can be owed is bounded twice.  Once it owes more than ``max_queued``
    bytes it is looked at every ``progress_timeout`` seconds (T) and cut unless it keeps
    reading and, from the second look on, owes less at each look than at the one before;
    so it never owes more than ``max_queued`` and one line plus what the others send it in
    2T.  In 2T one address's lines add at most ``flood_byte_burst + 2T * flood_bytes`` bytes
    of text (as delivered: an invalid byte becomes the 3 of U+FFFD) plus 29 bytes of
    ``<nick> `` and CRLF for each of at most ``flood_line_burst + 2T * flood_lines`` lines:
    with the defaults, 98,304 + 29 * 220 = 104,684 bytes per sending address (flood control
    is per address when the channel is given ``floods``, as :class:`ChatServer` does; per
    channel otherwise).  And whatever the number of senders, beyond ``max_queued_hard``
    (1 MiB) it is cut at once.
    """

    max_line = 1024             # bytes in one input line, terminator excluded
    max_queued = 256 * 1024     # unsent output bytes beyond which a member must catch up
    progress_timeout = 10.0     # seconds it has to get its queue shorter, or it is cut
    max_queued_hard = 1 << 20   # beyond this it is cut at once (InspIRCd's hardsendq)
    # Flood control (0: no limit).  Ten lines a second, twenty at once, is five to twenty
    # times what IRC servers allow (RFC 2813 5.8: one message per 2 s after 5; ergo: 2/s
    # after 5; InspIRCd: 1/s, threshold 10; ngircd: 3/s), so that pasting a few lines into a
    # terminal is not slowed; 4 KiB a second (ngircd: 256 bytes) keeps one sender well below
    # a 10 KB/s reader, with room for the others.
    flood_lines = 10.0          # lines per second, sustained
    flood_line_burst = 20       # lines at once
    flood_bytes = 4096.0        # bytes per second, sustained
    flood_byte_burst = 16384    # bytes at once

    _flood = None               # its FloodControl: its address's, or made when first needed
    _floods = None              # the AddressFloods it took _flood from, if any,
    _flood_host = None          # under this client address
    arrival_unannounced = False  # set by the room when its arrival was kept quiet
    _held = b""                 # input read but not yet acted on, while it is paused ...
    _held_pos = 0               # ... from this offset, which is the start of a line
    _behind = None              # while it owes over max_queued: queued_bytes at the last look,
    _pushed = 0                 # the bytes queued since,
    _looked = False             # and whether a look has been taken yet
    _told_flood = False

    #: Seconds a TLS client has to finish its handshake (before it joins the room).
    handshake_timeout = 10.0

    def __init__(self, sock, room, map=None, *, flood_lines=None, flood_bytes=None,
                 progress_timeout=None, tls_context=None, floods=None):
        AsyncChat.__init__(self, sock, map)
        if flood_lines is not None:
            self.flood_lines = flood_lines
        if flood_bytes is not None:
            self.flood_bytes = flood_bytes
        if progress_timeout is not None:
            self.progress_timeout = progress_timeout
        if floods is not None:
            # Shared with every other connection from this address (their limits, too).
            self.flood_lines, self.flood_line_burst, self.flood_bytes, \
                self.flood_byte_burst = floods.limits
            # (No address: the peer was gone before it was asked; it shares the None entry.)
            self._flood_host = self.addr[0] if self.addr else None
            self._flood = floods.acquire(self._flood_host, self.reactor.clock())
            self._floods = floods
        self.set_terminator(b"\n")
        self.room = room
        self.nick = None
        self.present = True         # False once the member has left the room
        self.line_length = 0        # bytes of the current line seen so far
        self._line = []             # its pieces, while line_length <= max_line
        if tls_context is None:
            self._join()
        else:
            self.present = False    # joins once the handshake is complete
            self.start_tls(tls_context, server_side=True, timeout=self.handshake_timeout)

    def handle_tls_ready(self):
        self.present = True
        self._join()

    def _join(self):
        room = self.room
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
        if not self._act_on(data, too_long):
            # Over the flood limit: keep this line and the rest of this read, unframed
            # (at most one read), and read nothing more until they have been acted on.
            self._held, self._held_pos = data + b"\n" + self.ac_in_buffer, 0
            self.ac_in_buffer = b""
            self.pause_reading()

    def _act_on(self, data, too_long):
        """Act on one input line (``data`` without its newline); False, having done
        nothing, if it is over the flood limit (a timer then calls :meth:`_release`)."""
        if not self.present:
            return True             # input that followed /quit or a disconnection
        if too_long:
            self.deliver("* line too long (the limit is %d bytes); not sent" % self.max_line)
            return True
        line = strip_telnet(data)
        if line.endswith(b"\r"):
            line = line[:-1]
        text = line.decode("utf-8", "replace").translate(_CONTROLS)
        if not text.strip():
            return True
        wait = self._flood_wait(text)
        if wait:
            self.call_later(wait, self._release)
            return False
        self.handle_line(text)
        return True

    def _flood_wait(self, text):
        """Seconds before the line ``text`` may go (0: it goes now, and is charged for the
        bytes it will be delivered as)."""
        if not (self.flood_lines or self.flood_bytes):
            return 0.0
        now = self.reactor.clock()
        wait = self._flood_control(now).take(len(text.encode("utf-8")), now)
        if wait and not self._told_flood:
            self._told_flood = True
            limits = [("%g lines" % self.flood_lines) if self.flood_lines else "",
                      ("%g bytes" % self.flood_bytes) if self.flood_bytes else ""]
            member_log.info("%s sends more than %s a second: its input is paused while it does",
                     self.nick, " or ".join(filter(None, limits)))
        return wait

    def _flood_control(self, now):
        """Its FloodControl (a channel made without ``floods`` has one of its own)."""
        if self._flood is None:
            self._flood = FloodControl(self.flood_lines, self.flood_line_burst,
                                       self.flood_bytes, self.flood_byte_burst, now)
        return self._flood

    def may_announce(self, text, departure):
        """Whether the room may tell everyone ``text`` about this member's arrival: only
        if its flood control has the tokens for it, as for a line it sent (which it is
        charged for).  A departure always may, and is charged all the same, so that
        connecting and hanging up in a loop gets no more notices out than the limit."""
        if not (self.flood_lines or self.flood_bytes):
            return True
        now = self.reactor.clock()
        size = len(text.encode("utf-8"))
        if departure:
            self._flood_control(now).charge(size, now)
            return True
        return not self._flood_control(now).take(size, now)

    def _release(self):
        """The tokens are back: act on the held lines, until the limit is hit again."""
        held, pos = self._held, self._held_pos
        while True:
            end = held.find(b"\n", pos)
            if end < 0:
                break
            if not self._act_on(held[pos:end], end - pos > self.max_line):
                self._held_pos = pos
                return
            pos = end + 1
        self._held, self._held_pos = b"", 0
        if pos < len(held):
            self.collect_incoming_data(held[pos:])      # the start of a line still coming
        self.resume_reading()

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
        """Queue one line for this client; once it owes more than ``max_queued`` bytes,
        it must keep up (see :meth:`_check_progress`)."""
        if not self.connected:
            return
        data = text.encode("utf-8") + b"\r\n"
        self.push(data)
        if not self.connected:
            return                  # the send found the connection gone
        if self.queued_bytes > self.max_queued_hard:
            self._cut()
        elif self._behind is not None:
            self._pushed += len(data)
        elif self.queued_bytes > self.max_queued:
            self._behind, self._pushed, self._looked = self.queued_bytes, 0, False
            self.call_later(self.progress_timeout, self._check_progress)

    def _check_progress(self):
        """A look, every ``progress_timeout`` seconds while the member owes more than
        ``max_queued``: it is cut if it has read nothing since the last look, or if it owes
        more than then (it falls further behind the room).  The first look only measures
        how far behind it is: the tail of the burst that took it over the bound may have
        arrived since."""
        queued = self.queued_bytes
        drained = self._behind + self._pushed - queued
        if queued <= self.max_queued:
            self._behind = None
        elif drained <= 0 or (self._looked and queued >= self._behind):
            self._cut()
        else:
            self._behind, self._pushed, self._looked = queued, 0, True
            self.call_later(self.progress_timeout, self._check_progress)

    def _cut(self):
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

    def close(self):
        AsyncChat.close(self)
        floods, self._floods = self._floods, None
        if floods is not None:
            floods.release(self._flood_host, self.reactor.clock())


class ChatServer(Listener):
    """The listener: every connection joins ``self.room``; the limits given (None: the
    channel class's own) go to each channel, and flood control is per client address:
    the connections from one address share one :class:`FloodControl` (``self.floods``)."""

    channel = ChatChannel
    #: Connections one address may hold at once (0: no limit); one more is told so and
    #: closed.  IRC servers allow a handful (ngircd 5); 16 leaves room for a shared address.
    max_per_ip = 16

    def __init__(self, host="", port=DEFAULT_PORT, *, map=None, flood_lines=None,
                 flood_bytes=None, progress_timeout=None, tls_context=None, max_per_ip=None):
        Listener.__init__(self, host, port, map=map)
        if max_per_ip is not None:
            self.max_per_ip = max_per_ip
        self.room = ChatRoom()
        channel = self.channel
        self.floods = AddressFloods(
            channel.flood_lines if flood_lines is None else flood_lines, channel.flood_line_burst,
            channel.flood_bytes if flood_bytes is None else flood_bytes, channel.flood_byte_burst)
        self.limits = {"progress_timeout": progress_timeout, "tls_context": tls_context,
                       "floods": self.floods}

    def handle_accepted(self, sock, addr):
        if self.max_per_ip and self.floods.connections(addr[0]) >= self.max_per_ip:
            member_log.info("connection from %s refused: %d from that address already",
                            format_address(addr), self.max_per_ip)
            if self.limits["tls_context"] is None:
                try:                # one short line fits an empty send buffer: never blocks
                    sock.send(b"* too many connections from your address (the limit is %d)\r\n"
                              % self.max_per_ip)
                except OSError:
                    pass
            sock.close()
            return
        member_log.info("connection from %s", format_address(addr))
        self.channel(sock, self.room, map=self._map, **self.limits)


def _rate(text):
    """argparse type for a rate: a number >= 0 (0: no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError("must be 0 or more, got %s" % text)
    return value


def _count(text):
    """argparse type for a count: a whole number >= 0 (0: no limit)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more, got %s" % text)
    return value


@exits_on_ctrl_c
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m servers.chat",
        usage="%(prog)s [PORT] [-b ADDR] [--flood-lines N] [--flood-bytes N] "
              "[--progress-timeout S] [--max-per-ip N] [-q] [--tls-cert PATH [--tls-key PATH]]",
        description="A chat room for telnet and nc clients: every line goes to everyone "
                    "else; /help lists the commands.")
    add_address_arguments(parser, DEFAULT_PORT,
                          "TCP port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--flood-lines", type=_rate, default=ChatChannel.flood_lines,
                        metavar="N", help="lines a second the members connected from one "
                        "address may send together, after a burst "
                        "of %d (default %%(default)g; 0: no limit)" % ChatChannel.flood_line_burst)
    parser.add_argument("--flood-bytes", type=_rate, default=ChatChannel.flood_bytes,
                        metavar="N", help="bytes a second the members connected from one "
                        "address may send together, after a burst "
                        "of %d (default %%(default)g; 0: no limit)" % ChatChannel.flood_byte_burst)
    parser.add_argument("--progress-timeout", type=_rate, default=ChatChannel.progress_timeout,
                        metavar="S", help="seconds between looks at a member owed more than "
                        "%d bytes: one that has read nothing since the last look, or owes "
                        "more than then, is disconnected (default %%(default)g)"
                        % ChatChannel.max_queued)
    parser.add_argument("--max-per-ip", type=_count, default=ChatServer.max_per_ip, metavar="N",
                        help="connections one address may hold at once; one more is told so "
                        "and closed (default %(default)s; 0: no limit)")
    add_quiet_argument(parser, "what each member does (connects, joins, renames, leaves)")
    add_tls_arguments(parser, password=False)
    args = parser.parse_args(argv)
    tls_context = tls_context_from(parser, args)

    log_to_stderr(parser.prog)
    if args.quiet:
        member_log.setLevel(logging.WARNING)
    try:
        server = ChatServer(args.bind, args.port, flood_lines=args.flood_lines,
                            flood_bytes=args.flood_bytes, progress_timeout=args.progress_timeout,
                            tls_context=tls_context, max_per_ip=args.max_per_ip)
    except OSError as exc:
        return cannot_listen(parser.prog, args, exc)
    log.info("listening on %s (%s)", format_address(server.address),
             "tcp" if tls_context is None else "tls")
    return run_loop()


if __name__ == "__main__":
    sys.exit(main())
