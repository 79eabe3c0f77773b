"""RFC 868 time client: ask one server, or many at once, what time it is.

    python -m clients.time HOST [PORT] [--udp] [--timeout S]
    python -m clients.time HOST[:PORT] HOST[:PORT] ... [PORT] [--udp] [--timeout S]

As a library::

    from clients.time import gettime
    seconds = gettime("time.example.net", 37)          # int seconds since 1970

or, inside a running loop, one :class:`TimeRequest` per server: they all wait on the
same reactor, so querying ten servers takes as long as the slowest one.
"""
import argparse
import errno
import logging
import socket
import sys
import time

import eventloop
from eventloop import Dispatcher, Reactor, rfc868, strerror

__all__ = ["DEFAULT_PORT", "TimeRequestError", "TimeProtocolError", "TimeRequest", "gettime",
           "main"]

DEFAULT_PORT = 37

log = logging.getLogger("clients.time")


class TimeRequestError(OSError):
    """The time could not be read from a server: it could not be reached, it refused the
    connection, it did not answer in time, or it answered wrongly (:class:`TimeProtocolError`).

    ``host``, ``port`` and ``reason`` say which server and why; ``errno`` is set when the
    system gave one (``ECONNREFUSED``, ``ETIMEDOUT``, ...).  ``str()`` is one line.
    """

    def __init__(self, host, port, reason, errno=None):
        OSError.__init__(self, reason)
        self.errno = errno
        self.strerror = reason
        self.host = host
        self.port = port
        self.reason = reason

    def __str__(self):
        return "%s: %s" % (format_server(self.host, self.port), self.reason)


class TimeProtocolError(TimeRequestError):
    """The server answered, but not with exactly four bytes: it broke RFC 868."""


def format_server(host, port):
    """``host:port``, with IPv6 hosts in brackets."""
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class TimeRequest(Dispatcher):
    """One asynchronous query, made on the reactor that owns ``map`` (default: the default one).

    Over TCP it connects and reads until the server closes; over UDP it sends an empty
    datagram, and sends it again every ``timeout / tries`` seconds until a reply comes
    (datagrams get lost).  An address that refuses or is unreachable before answering
    makes it try the host's next address.  After ``timeout`` seconds in all it gives up.

    When done it sets either ``time`` (int seconds since 1970) or ``error`` (a
    :class:`TimeRequestError`), then calls ``callback(request)``.  Resolving ``host``
    blocks (pass an address to avoid it); everything else happens in the loop, starting
    on its next pass.
    """

    def __init__(self, host, port=DEFAULT_PORT, *, udp=False, timeout=5.0, tries=3,
                 callback=None, map=None):
        Dispatcher.__init__(self, map=map)
        if not timeout > 0 or tries < 1:
            raise ValueError("timeout must be positive and tries at least 1")
        self.host, self.port, self.udp = host, port, udp
        self.timeout, self.tries = timeout, tries
        self.callback = callback
        self.time = None
        self.error = None
        self.done = False
        self.reply = b""
        self.sent = 0               # datagrams sent so far (UDP)
        self._resend_timer = None
        try:
            self._addresses = self._resolve()
        except OSError as exc:
            self.reactor.call_soon(self._fail, self._reason(exc), exc.errno)
            return
        self.reactor.call_soon(self._connect_next)
        self.call_later(timeout, self._give_up)

    def _resolve(self):
        kind = socket.SOCK_DGRAM if self.udp else socket.SOCK_STREAM
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=kind)
        except socket.gaierror as exc:
            raise OSError(None, "cannot resolve host: %s" % exc.strerror) from None
        return [(family, address) for family, _, _, _, address in infos]

    # ------------------------------------------------------------ the exchange
    def _connect_next(self, reason="no address", err=None):
        """Open a socket to the next address; fail with the last reason when none is left."""
        while self._addresses and not self.done:
            family, address = self._addresses.pop(0)
            try:
                if self.udp:
                    self.create_socket(family, socket.SOCK_DGRAM)
                    # A connected UDP socket hears only this server, and hears its ICMP errors.
                    self.socket.connect(address)
                    self._send_datagram()
                else:
                    self.create_socket(family, socket.SOCK_STREAM)
                    self.connect(address)
                return
            except OSError as exc:
                self._drop_socket()
                reason, err = self._reason(exc), exc.errno
        self._fail(reason, err)

    def _drop_socket(self):
        """Close the socket but keep the request, and its deadline, alive."""
        if self._resend_timer is not None:
            self._resend_timer.cancel()
            self._resend_timer = None
        self.del_channel()
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        self.connected = self.connecting = False

    def _unreachable(self, reason, err):
        """This address failed: before any reply, try the next one; after, give up."""
        if self.reply or not self._addresses:
            self._fail(reason, err)
        else:
            # Next pass: this pass may still hold events for the old socket's descriptor.
            self._drop_socket()
            self.reactor.call_soon(self._connect_next, reason, err)

    def _send_datagram(self):
        self.sent += 1
        self.socket.send(b"")       # RFC 868: any datagram, even an empty one, asks the time
        if self.sent < self.tries:
            self._resend_timer = self.call_later(self.timeout / self.tries, self._resend)

    def _resend(self):
        self._resend_timer = None
        try:
            self._send_datagram()
        except OSError as exc:
            self._unreachable(self._reason(exc), exc.errno)

    def handle_connect(self):
        pass                        # nothing to send: the server speaks first

    def handle_read(self):
        try:
            data = self.socket.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:      # e.g. ICMP "port unreachable" for a datagram
            self._unreachable(self._reason(exc), exc.errno)
            return
        if self.udp:
            self._check(data)       # one datagram is the whole reply, even an empty one
        elif data:
            self.reply += data
            if len(self.reply) > 4:
                self._check(self.reply)
        else:
            self._check(self.reply)     # the server closed: that was the whole reply

    def _check(self, reply):
        if len(reply) == 4:
            self._finish(rfc868.decode(reply), None)
        elif len(reply) < 4:
            self._finish(None, TimeProtocolError(
                self.host, self.port, "short reply: %d of 4 bytes" % len(reply)))
        else:
            self._finish(None, TimeProtocolError(
                self.host, self.port, "reply longer than 4 bytes (is this an RFC 868 server?)"))

    def _give_up(self):
        if self.udp:
            reason = "no reply to %d datagram%s in %gs" % (
                self.sent, "s" if self.sent != 1 else "", self.timeout)
        elif self.reply:
            reason = "timed out after %gs: %d bytes received, the server did not close" % (
                self.timeout, len(self.reply))
        else:
            reason = "timed out after %gs" % self.timeout
        self._fail(reason, errno.ETIMEDOUT)

    # ------------------------------------------------------------- the outcome
    def _fail(self, reason, err=None):
        self._finish(None, TimeRequestError(self.host, self.port, reason, err))

    def _finish(self, seconds, error):
        if self.done:
            return
        self.done = True
        self.time, self.error = seconds, error
        self.close()
        if self.callback is not None:
            self.callback(self)

    @staticmethod
    def _reason(exc):
        return exc.strerror or str(exc) or type(exc).__name__

    def handle_close(self):
        # The poller saw a hang-up or error; the socket still holds the error, if any.
        err = 0
        if self.socket is not None and not self.done:
            try:
                err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                pass
        self._unreachable(strerror(err) if err else "connection closed by the server",
                          err or None)

    def handle_error(self):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and not self.done:
            self._unreachable(self._reason(exc), exc.errno)     # e.g. a refused connect
            return
        # A bug here or in the callback: log it with its traceback; still report a failure.
        log.error("error in %r", self, exc_info=True)
        self._fail("internal error: %r" % (exc,))


def gettime(host, port=DEFAULT_PORT, udp=False, timeout=5.0):
    """Ask one server for the time; return it as int seconds since 1970.

    ``timeout`` bounds the whole exchange; over UDP the request is sent up to three times
    within it.  Raises :class:`TimeRequestError` (an :class:`OSError`) naming the server
    and the reason, or its subclass :class:`TimeProtocolError` when the reply is not
    exactly four bytes.
    """
    reactor = Reactor(wakeup=False)
    try:
        request = TimeRequest(host, port, udp=udp, timeout=timeout, map=reactor.map)
        reactor.run_until_idle()
    finally:
        reactor.close()
    if request.error is not None:
        raise request.error
    return request.time


def parse_server(text, default_port):
    """``HOST``, ``HOST:PORT``, ``[V6ADDR]:PORT`` or a bare IPv6 address -> ``(host, port)``."""
    host, port = text, default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("bad server %r" % text)
        if rest:
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    port = _port(port) if isinstance(port, str) else port
    if not host or port is None or not 0 < port < 65536:
        raise ValueError("bad server %r" % text)
    return host, port


def _port(text):
    """The port number ``text`` spells in ASCII digits, or None (``int()`` would also take
    spaces, a sign and other scripts' digits, and raise on '²', which ``isdigit()`` lets by)."""
    return int(text) if text.isascii() and text.isdigit() else None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m clients.time",
        usage="%(prog)s HOST [PORT] [--udp] [--timeout S]\n"
              "       %(prog)s HOST[:PORT] ... [PORT] [--udp] [--timeout S]",
        description="Ask RFC 868 time servers for the time (several are asked at once) "
                    "and show how far the local clock is off.")
    parser.add_argument("servers", nargs="+", metavar="HOST",
                        help="server as HOST, HOST:PORT or [V6ADDR]:PORT; a last argument "
                             "that is a number is the PORT of the servers without one "
                             "(default %d)" % DEFAULT_PORT)
    parser.add_argument("--udp", action="store_true", help="ask over UDP instead of TCP")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="give up on a server after S seconds (default %(default)s)")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be positive")

    words, port = args.servers, DEFAULT_PORT
    if len(words) > 1 and _port(words[-1]) is not None:
        words, port = words[:-1], _port(words[-1])
    try:
        servers = [parse_server(word, port) for word in words]
    except ValueError as exc:
        parser.error(str(exc))

    prefix = len(servers) > 1
    failures = []

    def report(request):
        label = format_server(request.host, request.port) + ": " if prefix else ""
        if request.error is not None:
            failures.append(request)
            print("%s: %s" % (parser.prog, request.error), file=sys.stderr)
            return
        t = request.time
        print("%sserver time is %s" % (label, time.ctime(t)))
        print("%slocal clock is %d seconds off" % (label, int(time.time()) - t))

    try:
        for host, port in servers:
            TimeRequest(host, port, udp=args.udp, timeout=args.timeout, callback=report)
        eventloop.loop()
    except KeyboardInterrupt:
        return 130
    sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
