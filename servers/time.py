"""RFC 868 time server over TCP and UDP, in one reactor loop.

    python -m servers.time [PORT] [-b ADDR] [--tcp-only | --udp-only] [-q]

The protocol is the smallest there is: a TCP client connects and the server sends four
bytes, the seconds since 1900 (``eventloop.rfc868.encode``), then closes; a UDP client
sends any datagram, even an empty one, and gets the four bytes back.  Neither side ever
waits for the other, so neither listener needs a per-connection channel: the reactor
tells us a connection or a datagram is ready, and we answer it on the spot.
"""
import argparse
import logging
import sys
import time

from eventloop import Listener, format_address, rfc868
from servers import (UDPServer, add_address_arguments, add_quiet_argument, cannot_listen,
                     exits_on_ctrl_c, log_to_stderr, open_on_one_port, run_loop)

__all__ = ["DEFAULT_PORT", "TimeServer", "UDPTimeServer", "start", "main"]

#: 37 is the RFC's port, but only root may bind it; 8037 is ours.
DEFAULT_PORT = 8037

log = logging.getLogger("servers.time")
#: One line per request goes here; silence it (``-q``) without silencing the rest.
request_log = logging.getLogger("servers.time.request")


class TimeServer(Listener):
    """The TCP listener: each accepted connection gets the four bytes and is closed.

    ``now`` is the clock the served time comes from (inject a fixed one in tests).
    """

    def __init__(self, host="", port=DEFAULT_PORT, *, now=time.time, map=None):
        Listener.__init__(self, host, port, map=map)
        self.now = now

    def handle_accepted(self, sock, addr):
        request_log.info("time request from %s over tcp", format_address(addr))
        try:
            # Four bytes always fit in a new connection's empty send buffer: this never blocks.
            sock.send(rfc868.encode(self.now()))
        except OSError as exc:          # the client already hung up
            log.debug("cannot answer %s: %s", format_address(addr), exc)
        finally:
            sock.close()


class UDPTimeServer(UDPServer):
    """The UDP socket: every datagram that arrives, whatever it holds, gets the four bytes."""

    max_datagram = 512          # the request's content does not matter

    def __init__(self, host="", port=DEFAULT_PORT, *, now=time.time, map=None):
        UDPServer.__init__(self, host, port, map=map)
        self.now = now

    def handle_datagram(self, _, addr):
        request_log.info("time request from %s over udp", format_address(addr))
        self.reply(rfc868.encode(self.now()), addr)


def start(host="", port=DEFAULT_PORT, *, tcp=True, udp=True, now=time.time, map=None):
    """Open the chosen listeners on one port number and return them (TCP first).

    With ``port=0`` both share one ephemeral number: TCP picks it and UDP binds the same
    (retrying with a new number in the rare case UDP's is taken).  Raises :class:`OSError`
    when the address cannot be bound, after closing whatever was opened.
    """
    if not (tcp or udp):
        raise ValueError("at least one of tcp and udp is needed")
    openers = []
    if tcp:
        openers.append(lambda p: TimeServer(host, p, now=now, map=map))
    if udp:
        openers.append(lambda p: UDPTimeServer(host, p, now=now, map=map))
    return open_on_one_port(port, openers)


@exits_on_ctrl_c
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m servers.time",
        usage="%(prog)s [PORT] [-b ADDR] [--tcp-only | --udp-only] [-q]",
        description="RFC 868 time server: answers every TCP connection and every UDP "
                    "datagram with the seconds since 1900, as four bytes.")
    add_address_arguments(parser, DEFAULT_PORT,
                          "port for both transports (default %(default)s; the standard 37 "
                             "needs root; 0 picks a free one)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--tcp-only", action="store_true", help="do not serve UDP")
    only.add_argument("--udp-only", action="store_true", help="do not serve TCP")
    add_quiet_argument(parser, "each request")
    args = parser.parse_args(argv)

    log_to_stderr(parser.prog)
    if args.quiet:
        request_log.setLevel(logging.WARNING)
    try:
        servers = start(args.bind, args.port, tcp=not args.udp_only, udp=not args.tcp_only)
    except OSError as exc:
        return cannot_listen(parser.prog, args, exc)
    kinds = ", ".join("tcp" if isinstance(s, TimeServer) else "udp" for s in servers)
    log.info("listening on %s (%s)", format_address(servers[0].address), kinds)
    return run_loop()


if __name__ == "__main__":
    sys.exit(main())
