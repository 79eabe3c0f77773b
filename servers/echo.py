"""RFC 862 echo server over TCP and UDP: whatever arrives goes back.

    python -m servers.echo [PORT] [-b ADDR] [-q] [--tls-cert PATH [--tls-key PATH]]

The TCP side is the reactor pattern in miniature: the reactor calls ``handle_read``
when a client's bytes arrive, we queue them for sending, and the reactor calls
``handle_write`` when the socket can take them.  Two details make it a real server:

* back-pressure: a client that sends but never reads would make the queue grow without
  end, so reading pauses once ``max_queued`` bytes wait and resumes when half are gone;
* half-close: when the client shuts down its sending side, the rest is still echoed,
  then the connection is closed.
"""
import argparse
import logging
import sys

from eventloop import DispatcherWithSend, Listener, format_address
from servers import (UDPServer, add_address_arguments, add_quiet_argument, add_tls_arguments,
                     cannot_listen, exits_on_ctrl_c, log_to_stderr, open_on_one_port, run_loop,
                     tls_context_from)

__all__ = ["DEFAULT_PORT", "EchoHandler", "EchoServer", "UDPEchoServer", "start", "main"]

#: RFC 862's port is 7, which only root may bind.
DEFAULT_PORT = 8007

log = logging.getLogger("servers.echo")
#: One line per TCP connection goes here; silence it (``-q``) without silencing the rest.
connection_log = logging.getLogger("servers.echo.connection")


class EchoHandler(DispatcherWithSend):
    """One TCP client.  At most ``max_queued`` + one read (64 KiB) bytes are ever queued."""

    max_queued = 256 * 1024

    def handle_read(self):
        data = self.recv(65536)
        if data:
            self.send(data)                     # queued, then sent as the socket allows
            if self.queued_bytes > self.max_queued:
                self.pause_reading()            # the client is not reading: stop reading too

    def handle_write(self):
        self.initiate_send()
        if self.queued_bytes <= self.max_queued // 2:
            self.resume_reading()
        if self.eof_received and not self.queued_bytes:
            self.close()

    def handle_eof(self):
        """The client sent its last byte: echo what is queued, then close."""
        self.eof_received = True
        self.interest_changed()
        if not self.queued_bytes:
            self.close()


class EchoServer(Listener):
    """The TCP listener: each accepted connection becomes a ``handler`` channel, over TLS
    when a ``tls_context`` is given (the handshake bounded by ``handshake_timeout``)."""

    handler = EchoHandler
    handshake_timeout = 10.0

    def __init__(self, host="", port=DEFAULT_PORT, *, map=None, tls_context=None):
        Listener.__init__(self, host, port, map=map)
        self.tls_context = tls_context

    def handle_accepted(self, sock, addr):
        connection_log.info("connection from %s", format_address(addr))
        channel = self.handler(sock, map=self._map)
        if self.tls_context is not None:
            channel.start_tls(self.tls_context, server_side=True, timeout=self.handshake_timeout)


class UDPEchoServer(UDPServer):
    """Each datagram goes back whole to its sender (up to 65,507 bytes, the IPv4 maximum)."""

    def __init__(self, host="", port=DEFAULT_PORT, *, map=None):
        UDPServer.__init__(self, host, port, map=map)

    def handle_datagram(self, data, addr):
        self.reply(data, addr)


def start(host="", port=DEFAULT_PORT, *, map=None, tls_context=None):
    """Open ``[EchoServer, UDPEchoServer]`` on one port number (``port=0``: a free one
    that both transports share), or with ``tls_context`` the TLS ``[EchoServer]`` alone.
    Raises :class:`OSError` if the address cannot be bound."""
    if tls_context is not None:
        return [EchoServer(host, port, map=map, tls_context=tls_context)]
    return open_on_one_port(port, [lambda p: EchoServer(host, p, map=map),
                                   lambda p: UDPEchoServer(host, p, map=map)])


@exits_on_ctrl_c
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m servers.echo",
        usage="%(prog)s [PORT] [-b ADDR] [-q] [--tls-cert PATH [--tls-key PATH]]",
        description="RFC 862 echo server: sends back every byte received over TCP "
                    "and every datagram received over UDP.")
    add_address_arguments(parser, DEFAULT_PORT,
                          "port for both transports (default %(default)s; 0 picks a free one)")
    add_quiet_argument(parser, "each TCP connection")
    add_tls_arguments(parser, password=False)
    args = parser.parse_args(argv)
    tls_context = tls_context_from(parser, args)

    log_to_stderr(parser.prog)
    if args.quiet:
        connection_log.setLevel(logging.WARNING)
    try:
        servers = start(args.bind, args.port, tls_context=tls_context)
    except OSError as exc:
        return cannot_listen(parser.prog, args, exc)
    log.info("listening on %s (%s)", format_address(servers[0].address),
             "tcp, udp" if tls_context is None else "tls")
    return run_loop()


if __name__ == "__main__":
    sys.exit(main())
