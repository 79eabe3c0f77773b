"""Servers built on the eventloop reactor: time (RFC 868), echo (RFC 862), chat, http."""
import argparse
import errno
import logging
import socket
import sys

import eventloop
from eventloop import format_address


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


def cannot_listen(prog, args, exc):
    """Report a failed bind on one stderr line; returns the exit status (1)."""
    hint = " (ports below 1024 need root)" if exc.errno == errno.EACCES else ""
    print("%s: cannot listen on %s port %d: %s%s" % (prog, args.bind or "*", args.port,
                                                    exc.strerror or exc, hint), file=sys.stderr)
    return 1


def run_loop():
    """Run the default reactor until no channel is left; Ctrl-C exits 130, no traceback."""
    try:
        eventloop.loop()
    except KeyboardInterrupt:
        return 130
    return 0


class UDPServer(eventloop.Dispatcher):
    """A UDP socket bound to ``(host, port)``: subclass it and define ``handle_datagram``.

    IPv6 when ``host`` is an IPv6 address; port 0 picks a free port (see ``self.port``).
    Raises :class:`OSError` (with the socket closed) when the address cannot be bound.
    UDP may lose datagrams, so receive errors (Linux reports an earlier reply's ICMP "port
    unreachable" on the next receive) and replies the system refuses are logged at debug
    level, on the subclass's module logger, and dropped.
    """

    max_datagram = 65536        # bytes read per datagram; a longer one is cut to this

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
        self.handle_datagram(data, addr)

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
