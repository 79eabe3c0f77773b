"""Servers built on the eventloop reactor: time (RFC 868), echo (RFC 862), chat, http."""
import argparse
import collections
import errno
import functools
import logging
import math
import socket
import ssl
import sys

import eventloop
from eventloop import format_address, server_context


def port_number(text):
    """argparse type for a TCP/UDP port: 0..65535 (0 lets the system pick a free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("port must be a number, got %r" % text) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535, got %s" % text)
    return port


def add_address_arguments(parser, default_port, port_help):
    """The ``[PORT] [-b ADDR]`` arguments every server takes."""
    parser.add_argument("port", nargs="?", type=port_number, default=default_port, metavar="PORT",
                        help=port_help)
    parser.add_argument("-b", "--bind", default="", metavar="ADDR",
                        help="address to listen on (default: every IPv4 interface; "
                             "an IPv6 address such as :: listens on IPv6)")


def add_tls_arguments(parser, password=True):
    """``--tls-cert``, ``--tls-key`` and (``password``) ``--tls-password-file``, as
    http.server names them."""
    parser.add_argument("--tls-cert", metavar="PATH",
                        help="serve over TLS with this certificate chain (PEM; it may also "
                             "hold the key)")
    parser.add_argument("--tls-key", metavar="PATH",
                        help="the certificate's private key, if not in the --tls-cert file")
    if password:
        parser.add_argument("--tls-password-file", metavar="PATH",
                            help="file whose content is the password of the private key")


def tls_context_from(parser, args, alpn=None):
    """The server TLS context the --tls-* arguments ask for (None without --tls-cert); a
    bad combination or an unusable file is a usage error.  The password file is read once,
    here (its whole content, surrounding white space removed)."""
    password_file = getattr(args, "tls_password_file", None)
    if args.tls_cert is None:
        if args.tls_key is not None:
            parser.error("--tls-key requires --tls-cert to be set")
        if password_file is not None:
            parser.error("--tls-password-file requires --tls-cert to be set")
        return None
    password = None
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error("failed to read TLS password file: %s" % (exc,))
    try:
        return server_context(args.tls_cert, args.tls_key, password, alpn=alpn)
    except (OSError, ssl.SSLError, ValueError) as exc:
        parser.error("cannot use the TLS certificate %s%s: %s" % (
            args.tls_cert, " and key %s" % args.tls_key if args.tls_key else "",
            getattr(exc, "strerror", None) or exc))


def add_quiet_argument(parser, what):
    """The ``-q`` every server takes: silence the per-connection log (``what`` it says)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log %s" % what)


class _Formatter(logging.Formatter):
    """``fmt`` for ordinary records; ERROR and above as ``PROG: error: message``, so that every
    error line a server writes on stderr starts with the program's name, as argparse's do."""

    def __init__(self, prog, fmt):
        logging.Formatter.__init__(self, fmt)
        self._error = logging.Formatter(prog + ": error: %(message)s")

    def format(self, record):
        if record.levelno >= logging.ERROR:
            return self._error.format(record)
        return logging.Formatter.format(self, record)


def log_to_stderr(prog, fmt="%(asctime)s %(name)s: %(message)s", level=logging.INFO):
    """Send the root logger's records at ``level`` and above to stderr: ``fmt``, or
    ``PROG: error: message`` for errors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(prog, fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def cannot_listen(prog, args, exc):
    """Report a failed bind on one stderr line; returns the exit status (1)."""
    hint = " (ports below 1024 need root)" if exc.errno == errno.EACCES else ""
    print("%s: cannot listen on %s port %d: %s%s" % (prog, args.bind or "*", args.port,
                                                    exc.strerror or exc, hint), file=sys.stderr)
    return 1


def interrupted():
    """Say, on one stderr line, that Ctrl-C stopped the server (http.server's words); the
    exit status that follows is 0.  On a terminal the line starts below the echoed ``^C``."""
    lead = "\n" if sys.stderr.isatty() else ""
    print(lead + "Keyboard interrupt received, exiting.", file=sys.stderr, flush=True)
    return 0


def exits_on_ctrl_c(main):
    """Decorate a server's ``main()``: Ctrl-C, whenever it comes (while starting, logging the
    banner or serving), ends it with one line and exit status 0, no traceback."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            return interrupted()
    return guarded


class TokenBucket:
    """``burst`` tokens that refill at ``rate`` a second: how much of something (replies,
    lines, bytes) may happen now.  A rate of 0 means no limit.  Time is whatever clock the
    caller passes as ``now``."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate, burst, now):
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = now

    def wait(self, cost, now):
        """Refill up to ``now``; return 0 if ``cost`` tokens may be spent now, else how many
        seconds until they may (a cost above the burst needs a full bucket, and then goes)."""
        if not self.rate:
            return 0.0
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        wait = (min(cost, self.burst) - self.tokens) / self.rate
        return wait if wait > 1e-9 else 0.0    # less is rounding in the refill

    def spend(self, cost):
        """Take ``cost`` tokens (the bucket may go into debt, which the refill pays first)."""
        if self.rate:
            self.tokens -= cost

    def force(self, cost, now):
        """Take ``cost`` tokens whether or not they are there (for what must happen anyway);
        the debt is never more than one burst, so the bucket is full again within two
        bursts' worth of refill."""
        if self.rate:
            self.wait(cost, now)
            self.tokens = max(self.tokens - cost, -float(self.burst))

    def full(self, now):
        """Whether the bucket has refilled to its burst by ``now`` (it is then as good as new)."""
        return not self.rate or self.tokens + (now - self.stamp) * self.rate >= self.burst


class ReplyLimiter:
    """A :class:`TokenBucket` of replies per source address, ``rate`` a second after a
    ``burst``, in a table of at most ``max_sources`` addresses.

    The table is kept in least-recently-used order; a new address beyond the bound evicts
    the one unheard of longest.  A forger who sprays ``max_sources`` addresses to evict a
    bucket thus gets one fresh burst for that many datagrams: memory stays bounded and the
    limit holds on average.
    """

    def __init__(self, rate, burst, max_sources):
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._buckets = collections.OrderedDict()

    def __len__(self):
        return len(self._buckets)

    def allow(self, addr, now):
        """Whether a reply to ``addr`` may go now (it is then charged for it)."""
        buckets = self._buckets
        bucket = buckets.get(addr)
        if bucket is None:
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)
            bucket = buckets[addr] = TokenBucket(self.rate, self.burst, now)
        else:
            buckets.move_to_end(addr)
        if bucket.wait(1, now):
            return False
        bucket.spend(1)
        return True


def run_loop():
    """Run the default reactor until no channel is left; exit status 0."""
    eventloop.loop()
    return 0


class UDPServer(eventloop.Dispatcher):
    """A UDP socket bound to ``(host, port)``: subclass it and define ``handle_datagram``.

    IPv6 when ``host`` is an IPv6 address; port 0 picks a free port (see ``self.port``).
    Raises :class:`OSError` (with the socket closed) when the address cannot be bound.
    UDP may lose datagrams, so receive errors (Linux reports an earlier reply's ICMP "port
    unreachable" on the next receive) and replies the system refuses are logged at debug
    level, on the subclass's module logger, and dropped.

    A server that answers every datagram is a reflector, and a UDP source address can be
    forged: one datagram "from" another reflector (or from this very socket) makes the two
    answer each other for ever.  So, as inetd does for its built-in services, a datagram is
    never answered when it comes from a port that may hold such a service (see
    :meth:`refusal`); each one is counted in ``refused``.  That rule cannot know every port
    another reflector may use (a second instance on 9007, say), so replies to one source
    address (host and port) are also rate-limited: ``reply_rate`` a second after a burst of
    ``reply_burst`` (:class:`ReplyLimiter`, at most ``max_sources`` addresses remembered).
    A loop between two reflectors carries one datagram, so the first reply the limit drops
    ends it; a legitimate client (rdate, one datagram per request, each request from a new
    port) never meets the limit.  Each datagram not answered for being over the rate is
    counted in ``limited``.  Both kinds of drop are logged at debug level, at most one line
    per ``refusal_log_interval`` seconds for each kind, each with its running count.
    """

    max_datagram = 65536        # bytes read per datagram; a longer one is cut to this
    #: The default ports of this project's reflectors, servers.echo (8007) and servers.time
    #: (8037), which another host (or another process here) may be running.
    reflector_ports = frozenset({8007, 8037})
    refusal_log_interval = 10.0
    #: Replies a second to one source address (0: no limit), after a burst of this many.
    reply_rate = 4.0
    reply_burst = 8
    #: Source addresses whose reply buckets are remembered (the least recently heard go).
    max_sources = 4096
    # The ports this process's open UDP servers are bound to, each with how many hold it.
    _ports_in_use = collections.Counter()

    refused = 0                 # datagrams not answered because of where they came from
    limited = 0                 # datagrams not answered because their source is over the rate
    _quiet_until = -math.inf    # no refusal is logged before this time (reactor clock)
    _limit_quiet_until = -math.inf  # nor a drop over the rate before this one
    _holds_port = False

    def __init__(self, host="", port=0, *, map=None):
        eventloop.Dispatcher.__init__(self, map=map)
        self.log = logging.getLogger(type(self).__module__)
        self.create_socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.bind((host, port))
        except OSError:
            self.close()
            raise
        self.address = self.socket.getsockname()
        self.port = self.address[1]
        self.limiter = ReplyLimiter(self.reply_rate, self.reply_burst, self.max_sources)
        self._ports_in_use[self.port] += 1
        self._holds_port = True

    def close(self):
        if self._holds_port:
            self._holds_port = False
            self._ports_in_use[self.port] -= 1
            if not self._ports_in_use[self.port]:
                del self._ports_in_use[self.port]
        eventloop.Dispatcher.close(self)

    def refusal(self, addr):
        """Why a datagram from ``addr`` must not be answered, or None to answer it.

        Refused: source ports below 1024 (where echo 7, daytime 13, qotd 17, chargen 19 and
        time 37 live, and which no ordinary client sends from), :attr:`reflector_ports`, and
        every port one of this process's UDP servers holds, this one's included: a reply to
        any of them could be answered in turn.  The address is not looked at: the same
        service on another host loops just as well.
        """
        port = addr[1]
        if port == self.port:
            return "it claims to come from our own port"
        if port < 1024:
            return "its source port is below 1024"
        if port in self.reflector_ports or port in self._ports_in_use:
            return "its source port is one of our UDP services'"
        return None

    def handle_datagram(self, data, addr):
        """One datagram ``data`` arrived from ``addr``."""

    def handle_read(self):
        try:
            data, addr = self.socket.recvfrom(self.max_datagram)
        except BlockingIOError:
            return
        except OSError as exc:
            self.log.debug("udp receive error ignored: %s", exc)
            return
        why = self.refusal(addr)
        now = self.reactor.clock()
        if why is None:
            if self.limiter.allow(addr, now):
                self.handle_datagram(data, addr)
                return
            self.limited += 1
            if now >= self._limit_quiet_until:
                self._limit_quiet_until = now + self.refusal_log_interval
                self.log.debug("not answering a datagram from %s: it is over %g replies a "
                               "second to one address (%d limited so far)",
                               format_address(addr), self.reply_rate, self.limited)
            return
        self.refused += 1
        if now >= self._quiet_until:
            self._quiet_until = now + self.refusal_log_interval
            self.log.debug("not answering a datagram from %s: %s (%d refused so far)",
                           format_address(addr), why, self.refused)

    def reply(self, data, addr):
        """Send ``data`` to ``addr`` if the system takes it (a full buffer drops it)."""
        try:
            self.socket.sendto(data, addr)
        except OSError as exc:
            self.log.debug("cannot send %d bytes to %s: %s", len(data), format_address(addr), exc)


def open_on_one_port(port, openers):
    """Call each of ``openers`` with one port number; return what they opened, in order.

    With ``port=0`` the first picks a free number and the others bind the same one (TCP and
    UDP of one service); if that number is taken for one of them, everything opened is closed
    and a new number is tried.  Raises :class:`OSError` when the address cannot be bound,
    after closing whatever was opened.
    """
    attempts = 20 if port == 0 and len(openers) > 1 else 1
    for attempt in range(attempts):
        opened = []
        try:
            for open_ in openers:
                opened.append(open_(opened[0].port if opened else port))
            return opened
        except OSError as exc:
            for server in opened:
                server.close()
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
