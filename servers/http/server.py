"""The HTTP server's listening side: a bound socket, the accept loop, and per-connection setup.

:class:`HTTPServer` listens (on ``address``, or on a socket bound already, as pre-forked workers
get theirs from :func:`bind_socket`) and hands each accepted socket to a new
:class:`~servers.http.channel.HTTPChannel`; it also holds what its connections share: the
application, the limits and timeouts, the :class:`~servers.http.budget.BodyBudget` and the
:class:`~servers.http.messages.ResponseHeads`.
"""
import errno
import heapq
import logging
import socket
from collections import OrderedDict

from eventloop import Dispatcher, get_reactor

from .budget import BodyBudget
from .channel import HEAD, WAIT, HTTPChannel, TLSHTTPChannel
from .messages import PROTOCOLS, SERVER_NAME, ResponseHeads, extra_fields
from .static import StaticFiles

__all__ = ["HTTPServer", "bind_socket"]

log = logging.getLogger("servers.http")


def bind_socket(address, reuse_port=False):
    """A TCP socket bound (not yet listening) to ``address`` = ``(host, port)``.

    ``host`` "" means 0.0.0.0; an IPv6 wildcard (``::``) also accepts IPv4 where the system
    allows it.  ``reuse_port`` sets SO_REUSEPORT (pre-forked workers each bind their own).
    """
    host, port = address[0], address[1]
    if not host:
        host = "0.0.0.0"
    family, type_, proto, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and sockaddr[0] == "::":
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except (OSError, AttributeError):
                pass
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class HTTPServer(Dispatcher):
    """Listens on ``address`` (or on ``sock``, bound already) and serves ``app`` on each connection.

    ``app`` has ``handle(request)`` and ``will_read_body(request)`` (see
    :class:`servers.http.app.Handler`); default: static files of the current directory.
    ``max_body``: largest request body accepted (413 beyond; None: up to
    ``max_buffered_bodies``); ``max_buffered_bodies``: bytes of request bodies held, across all
    connections, before their handlers take them (default: 64 MiB, or ``max_body`` if larger;
    see :class:`BodyBudget`; a body no handler reads is dropped as it arrives and costs
    nothing); ``head_timeout``: seconds for a request head to arrive, from its first byte (from
    the accept for the first request); ``keepalive_timeout``: seconds an idle connection is
    kept between requests; ``io_timeout``: seconds a transfer (body upload, response download)
    may make no progress; ``protocol``: "HTTP/1.1", or "HTTP/1.0" to answer every request as
    HTTP/1.0 and close the connection after it (http.server's ``protocol_version``);
    ``extra_headers``: ``(name, value)`` pairs added to every response, error pages included
    (ValueError if one is not a valid field, or names a framing or connection field);
    ``reactor``: where to run (default: the default reactor); ``tls_context``: an
    ``ssl.SSLContext`` to serve HTTPS with (see :func:`eventloop.server_context`), the
    handshake bounded by ``head_timeout``.
    ``connection_limit`` (waitress's name; default None: as many as there are descriptors):
    connections served at once; when it is reached, or an accept fails for want of
    descriptors, the connections worth least make room for new ones (:meth:`shed_connections`).
    ``max_buffered_heads``: bytes of partial request heads held, across all connections
    (default 32 MiB); beyond it the oldest partial heads are answered 408 and closed at once.
    ``server_address`` is the bound address (with the real port when port 0 was asked for).
    """

    accept_batch = 64
    linger_timeout = 2.0
    shed_batch = 16         # connections closed at a time when short of them

    def __init__(self, address=("", 8000), app=None, *, sock=None, reactor=None,
                 max_body=1 << 20, head_timeout=10.0, keepalive_timeout=5.0, io_timeout=60.0,
                 backlog=1024, server_name=SERVER_NAME, channel_class=None,
                 max_buffered_bodies=None, protocol="HTTP/1.1", extra_headers=(),
                 tls_context=None, connection_limit=None, max_buffered_heads=32 << 20):
        if protocol not in PROTOCOLS:
            raise ValueError("protocol must be one of %s, not %r"
                             % (", ".join(PROTOCOLS), protocol))
        if max_buffered_bodies is None:
            max_buffered_bodies = max(64 << 20, max_body or 0)
        elif max_body is not None and max_buffered_bodies < max_body:
            raise ValueError("max_buffered_bodies (%d) must be at least max_body (%d)"
                             % (max_buffered_bodies, max_body))
        if reactor is None:
            reactor = get_reactor()
        Dispatcher.__init__(self, map=reactor.map)
        if app is None:
            app = StaticFiles(".")
        self.app = app
        self.body_sink = getattr(app, "body_sink", None)    # see HTTPChannel: streamed bodies
        self.max_body = max_buffered_bodies if max_body is None else max_body
        self.body_budget = BodyBudget(max_buffered_bodies, reactor, io_timeout)
        self.protocol = protocol
        self.response_head = ResponseHeads(server_name, version=protocol[5:],
                                           extra=extra_fields(extra_headers))
        self._reactor = reactor
        self.head_timeout = head_timeout
        self.keepalive_timeout = keepalive_timeout
        self.io_timeout = io_timeout
        self.server_name = server_name
        self.tls_context = tls_context
        self.connection_limit = connection_limit
        self.max_buffered_heads = max_buffered_heads
        self.head_bytes = 0                 # held in partial request heads, all connections
        self._heads = OrderedDict()         # channels holding some, oldest first
        self.channel_class = channel_class or (TLSHTTPChannel if tls_context else HTTPChannel)
        self.clock = reactor.clock
        self.channel_map = reactor.map
        self.channels = set()
        if sock is None:
            sock = bind_socket(address)
        sock.setblocking(False)
        self._nodelay_inherited = None      # unknown until the first connection
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._nodelay_inherited = False     # e.g. a Unix socket handed in: set per connection
        self.set_socket(sock)
        self._socket_args = (int(sock.family), int(sock.type), sock.proto) \
            if type(sock) is socket.socket else None
        self.server_address = sock.getsockname()
        self.addr = self.server_address
        self.listen(backlog)

    def handle_accept(self):
        # socket.accept() converts the listener's family and type to enums for every
        # connection, though they never change: a plain listener's are kept in _socket_args.
        args = self._socket_args
        listener = self.socket
        limit = self.connection_limit
        for _ in range(self.accept_batch):
            try:
                if args is None:                # not a plain socket.socket: its own accept()
                    sock, addr = listener.accept()
                else:
                    fd, addr = listener._accept()
                    sock = socket.socket(*args, fileno=fd)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE) and \
                        self.shed_connections("accept failed (%s)" % exc):
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting("accept failed (%s)" % exc)
                    return
                raise
            if limit is not None and len(self.channels) >= limit and \
                    not self.shed_connections("%d connections (the connection limit)" % limit):
                sock.close()            # every connection is busy: this one is refused
                self._pause_accepting("%d connections, all busy (the connection limit)" % limit)
                return
            try:
                if not self._nodelay_inherited:
                    self._set_nodelay(sock)
                self.channel_class(sock, addr, self)
            except OSError:
                sock.close()

    def _pause_accepting(self, why):
        # Level-triggered readiness would spin; stop accepting for a moment.
        log.warning("%s; pausing accepts for 0.5 s", why)
        self.pause_reading()
        self.call_later(0.5, self.resume_reading)

    def shed_connections(self, why):
        """Close up to ``shed_batch`` connections to make room for new ones (as nginx reuses
        idle keep-alive connections when short of them): idle keep-alive ones (WAIT) first,
        longest idle first, then ones still waiting for a request head (HEAD), oldest first:
        they had the most time.  None with output queued.  True if any was closed (logged
        with ``why``).

        One pass over the connections for each batch: O(connections / shed_batch) per
        connection let in."""
        waiting, heads = [], []
        for channel in self.channels:
            if channel.phase == WAIT and not channel.queued_bytes:
                waiting.append((channel._since, id(channel), channel))
            elif channel.phase == HEAD and not channel.queued_bytes:
                heads.append((channel._since, id(channel), channel))
        victims = heapq.nsmallest(self.shed_batch, waiting)
        if len(victims) < self.shed_batch:
            victims += heapq.nsmallest(self.shed_batch - len(victims), heads)
        for _, _, channel in victims:
            channel.shed(503, "The server has too many connections; try again later.")
        if victims:
            log.warning("%s: closed %d connections to make room (%d idle, %d waiting for a head)",
                        why, len(victims), min(len(victims), len(waiting)),
                        max(len(victims) - len(waiting), 0))
        return bool(victims)

    def head_bytes_changed(self, channel, held):
        """``channel`` now holds ``held`` bytes of a partial request head (0: none): keep the
        server's total, and past ``max_buffered_heads`` answer the oldest partial heads 408
        and close them until it fits.  O(1) per call, and per connection shed."""
        self.head_bytes += held - channel._head_held
        channel._head_held = held
        heads = self._heads
        if not held:
            heads.pop(channel, None)
            return
        if channel not in heads:
            heads[channel] = None
        while self.head_bytes > self.max_buffered_heads and heads:
            victim = next(iter(heads))
            victim.shed(408, "The request head took too long: the server holds too many "
                             "partial request heads.")
            if victim._head_held:               # (not closed: account for it anyway)
                self.head_bytes_changed(victim, 0)

    def _set_nodelay(self, sock):
        """Set TCP_NODELAY on an accepted socket.  Linux and the BSDs copy it from the
        listening socket (set in __init__): the first connection tells, later ones skip it."""
        if self._nodelay_inherited is None:
            self._nodelay_inherited = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            if self._nodelay_inherited:
                return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_close(self):
        self.close()

    def shutdown(self):
        """Stop listening and close every connection of this server."""
        self.close()
        for channel in list(self.channels):
            channel.close()

    def __repr__(self):
        return "<HTTPServer %s at %#x>" % (self.server_address, id(self))
