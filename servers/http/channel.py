"""The HTTP server's channels: :class:`HTTPServer` accepts, :class:`HTTPChannel` serves one connection.

An :class:`HTTPChannel` moves bytes between its socket and an :class:`eventloop.http11.Connection`
and hands each complete request to the application (``app.handle(request)``).  Its life, per
request: wait for a head (``head_timeout`` from the first byte, ``keepalive_timeout`` when idle
between requests), read the body (at most ``max_body`` bytes; ``100 Continue`` first when the
client asked for it and the application will read the body), let the application answer, then
start over with the next (possibly already received, pipelined) request.

A body the application does not read (``app.will_read_body(request)`` is False) is read and
dropped as it arrives, so the connection stays usable and the body costs no memory.  One it reads
is kept only once the server's :class:`BodyBudget` has room for all of it; until then the channel
waits with reading paused (and sends no ``100 Continue``).

Back-pressure, the invariant that keeps memory bounded: while output is queued (the client
is not reading fast enough) or the application has not finished its response, the channel
neither reads from the socket nor parses further requests.  Large files are queued as
:class:`eventloop.FileProducer` and sent with ``os.sendfile``.  While the application works,
the channel looks every ``io_timeout`` whether the client has gone, and closes if so.

A closed channel is freed by reference counting alone: it breaks its cycles (its timer, its
request) when it closes, and keeps no exception (their tracebacks hold frames).

A connection that broke the protocol gets its 4xx with ``Connection: close``.  A close after a
response is "lingering": the channel shuts down its sending side and discards input until the
client closes (bounded in time and bytes), so the client reads the response instead of a reset.
Only when the client itself asked to close and sent nothing after that request does the channel
close at once: nothing unread can turn the close into a reset.

A connection whose request arrived with it is read as it is accepted; if it is answered and
closed then, it never joins the reactor's map (no registration, no timer), and its descriptor
is never switched to non-blocking mode: until then the channel's own receive and sends pass
``MSG_DONTWAIT``.
"""
import errno
import logging
import os
import socket
import sys
import time
from collections import OrderedDict, deque
from http import HTTPStatus

from eventloop import Dispatcher, DispatcherWithSend, FileProducer, get_reactor, static_interest
from eventloop.http11 import (
    DONE, IDLE, MUST_CLOSE, SEND_RESPONSE, SERVER, Connection, Data, EndOfMessage, Headers,
    InformationalResponse, NEED_DATA, PAUSED, RemoteProtocolError, Request, Response)
from eventloop.reactor import DISCONNECTED

from . import files
from .app import _DONE, _NOT_STARTED, _STREAMING, HTTPRequest

__all__ = ["HTTPServer", "HTTPChannel", "BodyBudget", "SERVER_NAME", "bind_socket", "current_date"]

#: The ``Server`` header value.
SERVER_NAME = "eventloop-http/0.1 Python/%d.%d" % sys.version_info[:2]

log = logging.getLogger("servers.http")
access_log = logging.getLogger("servers.http.access")

_INFO = logging.INFO
_HTML = "text/html; charset=utf-8"
_HTML_FIELDS = (("Content-Type", _HTML),)
_CONTINUE = InformationalResponse(100, (), "Continue")
_NO_BODY = frozenset({204, 304})
_SENDFILE_CHUNK = 8 << 20
_LINGER_MAX_BYTES = 1 << 20
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_HAVE_SENDFILE = hasattr(os, "sendfile")
_GATHER_MIN = 16 << 10     # bodies from this size are not concatenated to their head

# What a channel does with the body of the request it reads: _body is None until its first
# piece, then that piece (bytes), then a bytearray; or _DISCARD, when no one will read it.
_DISCARD = object()
# Where a channel stands with its server's BodyBudget.
_NO_ROOM, _ROOM_WAITING, _ROOM_HELD = 0, 1, 2

# How the response head speaks about the connection (the ``Connection`` field it gets).
_KEEP, _CLOSE, _KEEP10 = 0, 1, 2
_VARIANT_FIELDS = {_CLOSE: ("Connection", "close"), _KEEP10: ("Connection", "keep-alive")}


def reason_for(status):
    """The reason phrase for ``status`` ("" when unknown)."""
    reason = files.REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return reason


_date = [None, ""]


def current_date(_time=time.time):
    """The ``Date`` value for now; the same str object for a whole second."""
    second = int(_time())
    if second != _date[0]:
        _date[1] = files.http_date(second)
        _date[0] = second
    return _date[1]


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


def _ignore():
    """The callback of a closed channel's cancelled timer, which waits in the reactor's heap
    until its deadline: it must not keep the channel alive till then."""


class BodyBudget:
    """The bytes of request bodies a server holds before its handlers take them: at most ``limit``.

    A connection reserves the whole size of a body (its Content-Length; ``max_body`` when it is
    chunked, its size unknown) before it keeps any of it, and gives it back when the handler gets
    the body or the request fails.  So what is held never exceeds ``limit``, and no connection
    ever waits for room that another one can only free by receiving more: no deadlock.
    Reservations are granted in arrival order: one that does not fit waits (its connection with
    reading paused), and every later one waits behind it, so a large body is not starved by small
    ones.  While one waits, a reservation held for ``patience`` seconds (the server's io_timeout)
    is taken back and its connection answered 408: clients that hold partial bodies cannot keep
    the others waiting for longer than that.
    """

    def __init__(self, limit, reactor, patience):
        self.limit = limit
        self.held = 0
        self._reactor = reactor
        self._patience = patience
        self._holders = OrderedDict()       # channel -> (size, when granted), oldest first
        self._waiting = OrderedDict()       # channel -> size, in arrival order
        self._timer = None

    def __len__(self):
        """How many connections hold a reservation."""
        return len(self._holders)

    @property
    def waiting(self):
        """How many connections wait for room."""
        return len(self._waiting)

    def reserve(self, channel, size):
        """True when ``size`` bytes are granted to ``channel`` at once; else it waits, and
        ``channel._room_granted()`` is called when they are (or ``channel._timed_out()``)."""
        if not self._waiting and self.held + size <= self.limit:
            self._grant(channel, size)
            return True
        self._waiting[channel] = size
        self._watch()
        return False

    def release(self, channel):
        """Give back what ``channel`` holds, or stop it waiting; nothing if it does neither."""
        entry = self._holders.pop(channel, None)
        if entry is not None:
            self.held -= entry[0]
        elif self._waiting.pop(channel, None) is None:
            return
        self._grant_waiting()

    def _grant(self, channel, size):
        self.held += size
        self._holders[channel] = (size, self._reactor.clock())

    def _grant_waiting(self):
        waiting = self._waiting
        while waiting:
            channel, size = next(iter(waiting.items()))
            if self.held + size > self.limit:
                return
            del waiting[channel]
            self._grant(channel, size)
            channel._room_granted()

    def _watch(self):
        """Someone waits: check the oldest reservation when it is ``patience`` seconds old."""
        timer = self._timer
        if self._holders and (timer is None or not timer.pending):
            granted = next(iter(self._holders.values()))[1]
            self._timer = self._reactor.call_at(granted + self._patience, self._take_back)

    def _take_back(self):
        self._timer = None
        holders = self._holders
        now = self._reactor.clock()
        while self._waiting and holders:
            channel, (_, granted) = next(iter(holders.items()))
            if granted + self._patience > now:
                self._watch()
                return
            try:
                channel._timed_out()        # 408, and the reservation given back
            except Exception:
                channel.handle_error()      # as the reactor treats a channel's own timer
            self.release(channel)


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
    may make no progress; ``reactor``: where to run (default: the default reactor).
    ``server_address`` is the bound address (with the real port when port 0 was asked for).
    """

    accept_batch = 64
    linger_timeout = 2.0

    def __init__(self, address=("", 8000), app=None, *, sock=None, reactor=None,
                 max_body=1 << 20, head_timeout=10.0, keepalive_timeout=5.0, io_timeout=60.0,
                 backlog=1024, server_name=SERVER_NAME, channel_class=None,
                 max_buffered_bodies=None):
        if max_buffered_bodies is None:
            max_buffered_bodies = max(64 << 20, max_body or 0)
        elif max_body is not None and max_buffered_bodies < max_body:
            raise ValueError("max_buffered_bodies (%d) must be at least max_body (%d)"
                             % (max_buffered_bodies, max_body))
        if reactor is None:
            reactor = get_reactor()
        Dispatcher.__init__(self, map=reactor.map)
        if app is None:
            from .static import StaticFiles
            app = StaticFiles(".")
        self.app = app
        self.max_body = max_buffered_bodies if max_body is None else max_body
        self.body_budget = BodyBudget(max_buffered_bodies, reactor, io_timeout)
        self._reactor = reactor
        self.head_timeout = head_timeout
        self.keepalive_timeout = keepalive_timeout
        self.io_timeout = io_timeout
        self.server_name = server_name
        self.channel_class = channel_class or HTTPChannel
        self.clock = reactor.clock
        self.channel_map = reactor.map
        self.channels = set()
        self._heads = {}
        self._heads_date = None
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
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Level-triggered readiness would spin; stop accepting for a moment.
                    log.warning("accept failed (%s); pausing accepts for 0.5 s", exc)
                    self.pause_reading()
                    self.call_later(0.5, self.resume_reading)
                    return
                raise
            try:
                if not self._nodelay_inherited:
                    self._set_nodelay(sock)
                self.channel_class(sock, addr, self)
            except OSError:
                sock.close()

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

    def response_head(self, status, headers, variant):
        """The Response event for ``status`` with the handler's ``headers`` plus Server, Date and
        the Connection field of ``variant``; identical heads are built once per second."""
        date = current_date()
        cache = self._heads
        if date is not self._heads_date:
            cache.clear()
            self._heads_date = date
        t = type(headers)
        if t is tuple:
            key = (status, headers, variant)
        elif headers is None:
            key = (status, (), variant)
        elif t is list:
            key = (status, tuple(headers), variant)
        else:
            key = None
        if key is not None:
            try:
                resp = cache.get(key)
            except TypeError:           # unhashable values: build every time
                key = None
            else:
                if resp is not None:
                    return resp
        resp = self._build_head(status, headers, variant, date)
        if key is not None and len(cache) < 1024:
            cache[key] = resp
        return resp

    def _build_head(self, status, headers, variant, date):
        if headers is None:
            given = Headers()
        elif hasattr(headers, "items") and not isinstance(headers, Headers):
            given = Headers(list(headers.items()))
        else:
            given = Headers(headers)
        names = {name.lower() for name, _ in given}
        fields = []
        if "server" not in names:
            fields.append(("Server", self.server_name))
        if "date" not in names:
            fields.append(("Date", date))
        fields.extend(given)
        if variant and "connection" not in names:
            fields.append(_VARIANT_FIELDS[variant])
        return Response(status, Headers(fields), reason_for(status))

    def __repr__(self):
        return "<HTTPServer %s at %#x>" % (self.server_address, id(self))


class HTTPChannel(DispatcherWithSend):
    """One HTTP/1.1 connection (see the module docstring for its life and its invariants).

    The output queue ``_outq`` (from DispatcherWithSend, which keeps the channel write-registered
    exactly while it is non-empty) holds bytes-like pieces and FileProducers.
    """

    # State every connection starts with; an instance gets its own value once it changes.
    _req = None                 # the request being read or answered
    _body = None                # its body, while it arrives (see _DISCARD)
    _room = _NO_ROOM            # for that body in the server's BodyBudget
    _dispatched = False         # the application has the request
    _in_process = False         # _process is running (it is not re-entered)
    _closing = False            # close (lingering) once the output queue is empty
    _lingering = False
    _linger_since = 0.0
    _discarded = 0              # bytes read and dropped while lingering
    _drain_callbacks = None
    _timer = None
    _blocking_fd = False        # the descriptor is still in blocking mode (see __init__)

    def __init__(self, sock, addr, server):
        # DispatcherWithSend.__init__ is not called: it would ask for the peer's address, which
        # accept() gave already, and join the map.  The channel sets up its map and output
        # queue itself, and joins the map only at the end, if it has to wait: most short
        # connections are answered and closed first.
        self._map = server.channel_map
        self._outq = deque()
        if _DONTWAIT and sock.gettimeout() is None:
            # An accepted descriptor starts in blocking mode.  Our recv and sends pass
            # MSG_DONTWAIT, so it is switched (one more system call) only when the channel
            # joins the map or sends a file: see _set_nonblocking.
            self._blocking_fd = True
        else:
            sock.setblocking(False)
        self.socket = sock
        self._fileno = sock.fileno()
        self.connected = True
        self.addr = addr
        self.server = server
        self.app = server.app
        self.conn = Connection(SERVER, max_body=server.max_body)
        self._clock = clock = server.clock
        now = clock()
        self._last_io = now         # last read or write progress
        self._wait_since = now      # start of the current idle wait between requests
        self._head_since = now      # first byte of the current head (the accept, for the first)
        server.channels.add(self)
        self._read_at_once(now)
        if self.connected:
            self.add_channel()

    queued_bytes = 0

    @static_interest
    def writable(self):
        return bool(self._outq)

    def _set_nonblocking(self):
        """Put the descriptor in non-blocking mode: needed before waiting for readiness (the
        reactor's handlers, and subclasses, may use the socket without MSG_DONTWAIT) and
        before ``os.sendfile``, which takes no flags."""
        if self._blocking_fd:
            self._blocking_fd = False
            self.socket.setblocking(False)

    def add_channel(self, map=None):
        self._set_nonblocking()
        DispatcherWithSend.add_channel(self, map)

    # ------------------------------------------------------------------ input
    def _read_at_once(self, now):
        """Clients send their request right after connecting, so it is often here by the time
        we accept: read it now instead of a loop pass later.  The head timer is armed only
        when the channel has to wait (here if nothing came, else where the wait starts)."""
        try:
            self.handle_read()
        except BlockingIOError:
            self._arm(now + self.server.head_timeout)
        except Exception:
            self.handle_error()         # this channel's own error, not the listener's

    def handle_read(self):
        data = self.socket.recv(65536, _DONTWAIT)
        self._last_io = now = self._clock()
        if self._head_since is None:
            self._head_since = now
        if self._lingering:
            self._discarded += len(data)
            if not data or self._discarded > _LINGER_MAX_BYTES:
                self.close()
            return
        if data:
            self.conn.receive_data(data)
        else:
            self.eof_received = True
            self.interest_changed()
            self.conn.receive_data(b"")
        self._process()

    def handle_expt(self):
        # HTTP has no use for TCP urgent data, and unread it would be reported forever.
        self.close()

    def _process(self):
        """Turn buffered input into events until one response is pending, output is queued,
        or more input is needed.  Not re-entered from handlers that answer synchronously."""
        if self._in_process:
            return
        self._in_process = True
        try:
            self._run()
        finally:
            self._in_process = False

    def _run(self):
        conn = self.conn
        next_event = conn.next_event
        while not self._outq and not self._closing and self.connected:
            req = self._req
            if req is not None and self._dispatched:
                if req._state != _DONE:
                    # The application is still answering: wait, and meanwhile look every
                    # io_timeout whether the client is still there (_on_timer).
                    self.pause_reading()
                    self._arm(self._last_io + self.server.io_timeout)
                    return
                if conn.our_state == DONE and conn.their_state == DONE:
                    self._next_cycle()
                    if not conn.buffered_bytes and not self.eof_received:
                        # Nothing pipelined: wait for the next request (next_event would
                        # only say NEED_DATA).
                        if not self.reading:
                            self.resume_reading()
                        return
                    continue
            try:
                event = next_event()
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            t = type(event)
            if t is Request:
                self._req = HTTPRequest(self, event, self.addr)
                self._body = None
                self._dispatched = False
            elif t is Data:
                body = self._body
                if body is None:
                    waiting = not self._admit_body(req)
                    if self._body is None:
                        self._body = event.data
                    if waiting:
                        return          # reading stays paused until the body has room
                elif body is not _DISCARD:
                    if type(body) is bytes:
                        # A bytearray, not a list of pieces: a body of many tiny chunks
                        # costs its length, not a bytes object per chunk.
                        body = self._body = bytearray(body)
                    body += event.data
            elif t is EndOfMessage:
                if not self._dispatched:
                    body = self._body
                    if body is not None:            # (never None while room is held)
                        if body is not _DISCARD:
                            req.body = body if type(body) is bytes else bytes(body)
                        self._body = None
                        if self._room:
                            self._release_room()
                    self._dispatch(req)
            elif event is NEED_DATA:
                if req is None and self._head_since is None:
                    if not self.reading:
                        self.resume_reading()
                else:
                    self._need_data()
                return
            elif event is PAUSED:
                if conn.our_state != DONE:
                    self._close_when_flushed()  # we must close (MUST_CLOSE)
                    return
                self._next_cycle()
            else:                               # ConnectionClosed
                self._close_when_flushed()
                return
        if self._outq and not self._closing:
            self.pause_reading()

    def _next_cycle(self):
        """Both sides are done with a request: get ready for the next one."""
        self.conn.start_next_cycle()
        self._req = None
        self._head_since = None
        self._wait_since = now = self._last_io
        self._arm(now + self.server.keepalive_timeout)

    def _need_data(self):
        conn = self.conn
        req = self._req
        if req is not None:
            if not self._dispatched:
                self._arm(self._last_io + self.server.io_timeout)    # waiting for the body
                if self._room == _ROOM_WAITING:
                    return              # reading stays paused until the body has room
                if conn.they_are_waiting_for_100_continue:
                    if not self._admit_body(req):
                        return          # 100 Continue once the body has room
                    if self._body is _DISCARD:
                        # Answer now; the client may or may not send the body, so close after.
                        req._close = True
                        self._dispatch(req)
                        if self._closing or not self.connected:
                            return
                    else:
                        self._body = b""    # kept from here: an empty chunked body has no Data
                        self._write(conn.send(_CONTINUE))
        elif self._head_since is not None:
            # Part of a head may be here: it must be complete within head_timeout.
            self._arm(self._head_since + self.server.head_timeout)
        if not self.reading:
            self.resume_reading()

    def _admit_body(self, req):
        """Decide where the body of ``req`` goes, before any of it is kept.  One the application
        does not read is dropped as it arrives (``_body`` becomes _DISCARD); one it reads is kept
        once the server's BodyBudget has room for all of it: False while it waits for that room,
        with reading paused (``_room_granted`` carries on)."""
        if self._room:
            return self._room == _ROOM_HELD
        will_read_body = getattr(self.app, "will_read_body", None)
        if will_read_body is not None and not will_read_body(req):
            self._body = _DISCARD
            return True
        length = req.headers.get("content-length")     # checked by the Connection already
        size = self.server.max_body if length is None else int(length.split(",", 1)[0])
        if self.server.body_budget.reserve(self, size):
            self._room = _ROOM_HELD
            return True
        self._room = _ROOM_WAITING
        self.pause_reading()
        return False

    def _room_granted(self):
        """The BodyBudget granted the room this channel waited for: read on (from the reactor,
        as this is called from whichever channel gave room back)."""
        self._room = _ROOM_HELD
        if self._body is None:
            self._body = b""        # kept from here (see the EndOfMessage case of _run)
        self._last_io = self._clock()       # the wait was ours, not the client's
        self.server._reactor.call_soon(self._process)

    def _release_room(self):
        self._room = _NO_ROOM
        self.server.body_budget.release(self)

    def _dispatch(self, req):
        self._dispatched = True
        try:
            self.app.handle(req)
        except Exception:
            self._app_failed(req)

    def _app_failed(self, req):
        log.error("error in %r while answering %s", self.app,
                  files.log_escape(req.request_line), exc_info=True)
        if not self.connected:
            return
        if req._state == _NOT_STARTED and self.conn.our_state == SEND_RESPONSE:
            req._close = True
            self.send_error(req, 500)
        else:
            req._state = _DONE
            self.close()    # the response is cut short: closing is the only honest signal

    def _protocol_error(self, exc):
        conn = self.conn
        if conn.our_state in (IDLE, SEND_RESPONSE):
            req = self._req
            if req is not None:
                request_line = req.request_line
            elif exc.request_line is not None:      # a head read whole, then refused
                request_line = exc.request_line
            else:
                line = conn.trailing_data[0][:1024].split(b"\n", 1)[0].rstrip(b"\r")
                request_line = line.decode("latin-1")
            self._refuse(exc.error_status_hint, str(exc), request_line)
        else:
            self._drop_body()
            self._close_when_flushed()

    def _refuse(self, status, detail, request_line):
        """Answer the request being read with ``status`` (it is not read on), then close."""
        self._drop_body()
        body = files.error_page(status, reason_for(status), detail)
        resp = self.server.response_head(status, _HTML_FIELDS, _CLOSE)
        self._write(self.conn.send_head_and_body(resp, body))
        if access_log.isEnabledFor(_INFO):
            access_log.info("%s", files.common_log_line(
                self.addr[0], None, None, time.time(), request_line, status, len(body)))
        self._close_when_flushed()

    def _drop_body(self):
        """Let go of the body being received, and of its room in the server's BodyBudget."""
        self._body = None
        if self._room:
            self._release_room()

    # ------------------------------------------------------------ responses
    def _variant(self, req):
        if req._close or not self.conn.keep_alive:
            return _CLOSE
        if req.version == "1.0":
            return _KEEP10
        return _KEEP

    def respond(self, req, status, headers, body):
        """Send a whole response for ``req`` (see :meth:`HTTPRequest.respond`)."""
        if not self.connected:
            req._state = _DONE
            return
        if status in _NO_BODY:
            body = b""
        elif type(body) is not bytes:
            body = bytes(body)
        if req._close or not self.conn.keep_alive:
            variant = _CLOSE
        else:
            variant = _KEEP10 if req.version == "1.0" else _KEEP
        resp = self.server.response_head(status, headers, variant)
        req.status = status
        req._state = _DONE
        if (len(body) >= _GATHER_MIN and not self._outq and req.method != "HEAD"
                and not _has_field(headers, "transfer-encoding")):
            # A large body goes out with the head in one sendmsg, never copied behind it
            # (the head frames it by Content-Length, so the body bytes go out as they are).
            head = self.conn.send_head_for_body(resp, len(body))
            req.sent_bytes = len(body)
            self._send_gather(head, body)
            self._response_done(req)
            return
        data = self.conn.send_head_and_body(resp, body)
        if req.method != "HEAD":
            req.sent_bytes = len(body)
        self._write(data)
        if not self.connected:
            return                              # the client went away during the send
        self._response_done(req)

    def _send_gather(self, head, body):
        """Send ``head`` then ``body`` (nothing queued before them) with one sendmsg; queue
        what the socket does not take."""
        try:
            sent = self.socket.sendmsg((head, body), (), _DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno not in DISCONNECTED:
                raise
            self.close()
            return
        if sent < len(head):
            self._queue_rest(head, sent)
            self._outq.append(body)
            self.queued_bytes += len(body)
        elif sent < len(head) + len(body):
            self._queue_rest(body, sent - len(head))

    def send_error(self, req, status, detail="", headers=None):
        """Answer ``req`` with ``status`` and a small HTML page."""
        body = files.error_page(status, reason_for(status), detail)
        fields = _HTML_FIELDS if not headers else _HTML_FIELDS + tuple(headers)
        self.respond(req, status, fields, body)

    def start_response(self, req, status, headers):
        """Send the head of a streamed response."""
        if not self.connected:
            req._state = _STREAMING
            return
        variant = self._variant(req)
        if variant == _KEEP10 and not _has_length(headers):
            variant = _CLOSE                    # HTTP/1.0: the body ends when we close
        resp = self.server.response_head(status, headers, variant)
        data = self.conn.send(resp)
        req.status = status
        req._state = _STREAMING
        self._write(data)

    def write_body(self, req, data):
        """Send a piece of a streamed body (nothing for HEAD, 204 and 304)."""
        if not self.connected or req.method == "HEAD" or req.status in _NO_BODY:
            return
        out = self.conn.send(Data(data))
        req.sent_bytes += len(data)
        self._write(out)

    def finish_body(self, req):
        """End a streamed response."""
        req._state = _DONE
        if not self.connected:
            return
        out = self.conn.send(EndOfMessage())
        if out:
            self._write(out)
        self._response_done(req)

    def send_file_span(self, req, status, headers, fd, offset, count):
        """Send a response whose body is ``count`` bytes of the open file ``fd`` from ``offset``
        (the head must carry that Content-Length).  ``fd`` stays the caller's, who may close it
        once this returns: the body goes out at once with ``os.sendfile``, and what the socket
        does not take is sent later from a duplicate of ``fd``."""
        if not self.connected:
            req._state = _DONE
            return
        resp = self.server.response_head(status, headers, self._variant(req))
        req.status = status
        req._state = _DONE
        if req.method == "HEAD" or count == 0:
            self._write(self.conn.send_head_and_body(resp, b""))
        else:
            head = self.conn.send_head_for_body(resp, count)
            req.sent_bytes = count
            self._send_head_and_span(head, fd, offset, count)
        self._response_done(req)

    def _send_head_and_span(self, head, fd, offset, count):
        self._set_nonblocking()         # for os.sendfile, here or from the FileProducer
        sent_head = sent = 0
        if not self._outq and _HAVE_SENDFILE:
            try:
                sent_head = self.socket.send(head, _MSG_MORE)
                if sent_head == len(head):
                    sent = os.sendfile(self._fileno, fd, offset, count)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in DISCONNECTED:
                    self.close()
                    return
                if sent_head < len(head):
                    raise
                # os.sendfile refused this socket or file: the FileProducer falls back to reads.
        if sent == count:
            return
        try:
            file = open(os.dup(fd), "rb", buffering=0)
        except OSError as exc:
            log.warning("cannot finish a response to %s: %s; closing the connection",
                        self.addr[0], exc.strerror or exc)
            self.close()
            return
        self._write_file(memoryview(head)[sent_head:], FileProducer(file, offset + sent, count - sent))

    def when_drained(self, callback):
        """Call ``callback()`` once the output queue is empty."""
        if not self._outq:
            self.reactor.call_soon(callback)
        elif self._drain_callbacks is None:
            self._drain_callbacks = [callback]
        else:
            self._drain_callbacks.append(callback)

    def _response_done(self, req):
        if access_log.isEnabledFor(_INFO):
            access_log.info("%s", files.common_log_line(
                self.addr[0], None, None, time.time(), req.request_line, req.status,
                req.sent_bytes))
        if self.conn.our_state != DONE:
            self._close_when_flushed()          # MUST_CLOSE: this response ends the connection
        elif not self._in_process:
            self._wait_since = self._clock()
            self._process()                     # answered later: go on with buffered requests

    # --------------------------------------------------------------- output
    def _write(self, data):
        """Send ``data`` now if nothing is queued, queue what the socket does not take."""
        q = self._outq
        if q:
            q.append(data)
            self.queued_bytes += len(data)
            return
        try:
            sent = self.socket.send(data, _DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno in DISCONNECTED:
                self.close()
                return
            raise
        if sent != len(data):
            self._queue_rest(data, sent)

    def _queue_rest(self, data, sent):
        """The socket took ``sent`` bytes of ``data``: queue the rest, wait for writability."""
        rest = memoryview(data)[sent:]
        self._outq.append(rest)
        self.queued_bytes += len(rest)
        self.interest_changed()
        self.pause_reading()
        self._arm(self._last_io + self.server.io_timeout)

    def _write_file(self, head, producer):
        q = self._outq
        if q:
            if head:
                q.append(head)
                self.queued_bytes += len(head)
            q.append(producer)
            return
        try:
            sent = self.socket.send(head, _MSG_MORE) if head else 0
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            producer.close()
            if exc.errno in DISCONNECTED:
                self.close()
                return
            raise
        if sent < len(head):
            rest = memoryview(head)[sent:]
            q.append(rest)
            self.queued_bytes += len(rest)
        q.append(producer)
        self.interest_changed()
        self.pause_reading()
        self._arm(self._last_io + self.server.io_timeout)
        if sent == len(head):
            try:
                self.handle_write()
            except OSError as exc:
                if exc.errno not in DISCONNECTED:
                    raise
                self.close()

    def handle_write(self):
        q = self._outq
        self._last_io = self._clock()
        while q:
            item = q[0]
            if type(item) is FileProducer:
                if not self._send_file_piece(item):
                    return
                continue
            try:
                sent = self.socket.send(item)
            except BlockingIOError:
                return
            self.queued_bytes -= sent
            if sent < len(item):
                q[0] = (item if type(item) is memoryview else memoryview(item))[sent:]
                return
            q.popleft()
        self.interest_changed()
        self._drained()

    def _send_file_piece(self, producer):
        """Send from a FileProducer; True when it is finished and off the queue."""
        if producer.remaining > 0:
            if producer.use_sendfile:
                try:
                    sent = os.sendfile(self._fileno, producer.fileno(), producer.offset,
                                       min(producer.remaining, _SENDFILE_CHUNK))
                except BlockingIOError:
                    return False
                except OSError as exc:
                    if exc.errno in DISCONNECTED:
                        raise
                    producer.use_sendfile = False   # e.g. a file system without sendfile
                    return False
                if sent == 0:
                    producer.close()
                    log.error("%s shrank while being sent; closing the connection",
                              getattr(producer.file, "name", "a file"))
                    self.close()
                    return False
                producer.advance(sent)
            else:
                data = producer.more()
                self._outq.appendleft(data)
                self.queued_bytes += len(data)
                return True
            if producer.remaining > 0:
                return False
        producer.close()
        self._outq.remove(producer)
        return True

    def _drained(self):
        """The output queue just emptied."""
        self._wait_since = self._last_io
        callbacks = self._drain_callbacks
        if callbacks is not None:
            self._drain_callbacks = None
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.error("error in when_drained callback %r", callback, exc_info=True)
                    self.close()
                    return
            if self._outq or not self.connected:
                return
        if self._closing:
            self._linger()
        else:
            self._process()

    # ------------------------------------------------------------- closing
    def _close_when_flushed(self):
        if self._closing:
            return
        self._closing = True
        if self._outq:
            self.pause_reading()
        else:
            self._linger()              # which closes, or reads on to discard input

    def _linger(self):
        """Shut down our sending side, then discard input until the client closes; close at
        once (no shutdown needed: the FIN follows the response) when nothing more can come."""
        if self.eof_received or not self.connected or self._client_is_done():
            self.close()
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._lingering = True
        self._linger_since = now = self._clock()
        self.resume_reading()
        self._arm(now + self.server.linger_timeout)

    def _client_is_done(self):
        """True when the client said this request is its last (``Connection: close``, or
        HTTP/1.0 without keep-alive), all of it was read and nothing else is buffered: nothing
        more may arrive, so closing cannot reset the response away (lingering is for the
        other cases)."""
        conn = self.conn
        return (conn.peer_keep_alive is False and self._req is not None
                and conn.their_state in (DONE, MUST_CLOSE) and not conn.buffered_bytes)

    def handle_close(self):
        self.close()

    def close(self):
        if self._outq:
            for item in self._outq:
                if type(item) is FileProducer:
                    item.close()
            self._outq.clear()
            self.queued_bytes = 0
        self._drain_callbacks = None
        if self._room:
            self._release_room()
        self.server.channels.discard(self)
        DispatcherWithSend.close(self)
        # Break the channel's reference cycles (its timer's callback, its request), so that
        # refcounting frees a closed connection at once, without the cyclic collector.
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
            timer.callback = _ignore
        self._req = None

    # ------------------------------------------------------------- timeouts
    def _arm(self, when):
        """Make sure the timer fires no later than ``when`` (it re-checks the state then)."""
        timer = self._timer
        if timer is None:
            self._timer = self.server._reactor.call_at(when, self._on_timer)
        elif when < timer.when:
            timer.reset(when - self._clock())

    def _deadline(self):
        """When the current wait times out (None: the application is at work)."""
        server = self.server
        if self._lingering:
            return self._linger_since + server.linger_timeout
        if self._outq:
            return self._last_io + server.io_timeout      # the client is not reading
        if self._req is not None:
            if self._dispatched:
                return None
            return self._last_io + server.io_timeout      # the body is not coming
        if self._head_since is not None:
            return self._head_since + server.head_timeout
        return self._wait_since + server.keepalive_timeout

    def _on_timer(self):
        self._timer = None
        if not self.connected:
            return
        deadline = self._deadline()
        now = self._clock()
        if deadline is None:
            if self._client_gone():
                self.close()
            else:
                self._arm(now + self.server.io_timeout)
        elif now < deadline:
            self._arm(deadline)
        else:
            self._timed_out()

    def _client_gone(self):
        """Whether the client closed or reset the connection, looked at without reading (the
        application is at work, reading is paused): a client that shut down its sending side
        and waited a whole io_timeout for its answer counts as gone, as with nginx."""
        try:
            return not self.socket.recv(1, socket.MSG_PEEK | _DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _timed_out(self):
        req = self._req
        if self._lingering or self._closing or self._outq:
            self.close()                    # a stalled download, or a close that never finished
        elif self._room == _ROOM_WAITING:
            self._refuse(503, "The server is busy receiving other request bodies; try again later.",
                         req.request_line)
        elif req is None and self.conn.buffered_bytes or req is not None and not self._dispatched:
            # Part of a request arrived, too slowly: say so, then close.
            what = "request head" if req is None else "request body"
            line = req.request_line if req is not None else "-"
            self._refuse(408, "The %s took too long." % what, line)
        else:
            self.close()                    # idle between requests, or never said anything


def _has_length(headers):
    return _has_field(headers, "content-length")


def _has_field(headers, lowercase_name):
    if not headers:
        return False
    pairs = headers.items() if hasattr(headers, "items") and not isinstance(headers, Headers) \
        else headers
    return any(str(name).lower() == lowercase_name for name, _ in pairs)
