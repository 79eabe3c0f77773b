"""The asynchronous HTTP/1.1 client: :class:`AsyncHTTP`, one request as a channel on the reactor.

The classic interface (``AsyncHTTP(uri, consumer)``), done so that every outcome reaches the
consumer: its optional ``http_header(request)`` is called once the response head is parsed
(``request.status`` is None on failure and ``request.error`` says why), ``feed(data)`` once per
body piece (chunked framing already removed), and ``close()`` exactly once, whatever happened.
The bytes are framed by the shared sans-IO layer (:mod:`eventloop.http11`) and the request head
is built by :mod:`~clients.http.messages`; this module moves the bytes: the request goes out
through the channel's :class:`eventloop.OutputQueue` (a streamed body as a producer on it), names
are resolved off the loop thread (:mod:`~clients.http.resolver`), TLS is the core's layer
(:meth:`eventloop.Dispatcher.start_tls`; the contexts are :mod:`~clients.http.tls`'s), the one
channel timeout of the core bounds each step, and idle connections wait in the reactor's
:mod:`~clients.http.pool` for reuse.

A request's life is its ``phase``::

    NEW -+-> [RESOLVING] -> CONNECTING -> [TUNNELING] -> [HANDSHAKING] -> EXCHANGING -> FINISHED
         |   (a name to look up)          (https through a proxy)  (https)   ^
         +---------------------- an idle pooled connection -------------------+

Any phase may end in FINISHED (the consumer is told why); a reused connection that the server
had closed sends an idempotent request once more, on a fresh connection (EXCHANGING back to the
connect).  From the connect's start to EXCHANGING the channel's one timeout is a fixed deadline,
``connect_timeout``; in EXCHANGING it is an idle timeout, ``timeout`` without a byte moving.
The request's bytes wait for the kernel in the channel's output queue (``_out``, one per
connection), the core's one output path.

Callbacks never run inside the ``AsyncHTTP`` constructor: the request starts on the reactor's
next pass.  A consumer callback that raises is logged and ends its request (the consumer's
``close()`` is still called); a consumer's ``close()`` never runs nested inside its own
``http_header``/``feed``: a ``request.close()`` made there takes effect when the callback returns.

The blocking :func:`~clients.http.fetch` and :func:`~clients.http.retrieve` are in
:mod:`~clients.http.blocking`.
"""
import errno
import logging
import os
import socket
import ssl
import sys

from eventloop.http11 import (
    CLIENT, DONE, NEED_DATA, PAUSED, Connection, ConnectionClosed, Data, EndOfMessage,
    InformationalResponse, ProtocolError, RemoteProtocolError, Response)
from eventloop import Dispatcher, OutputQueue, SocketWriter, TLSSocket, get_reactor, \
    static_interest

from . import failures
from .bodies import BodyProducer, UnreadableBody, is_body_source
from .messages import USER_AGENT, HeaderMap, Target, build_request, request_fields
from .pool import ConnectionPool, close_idle_connections, close_quietly, connection_pool
from .proxy import Tunnel, TunnelError
from .resolver import Lookup, addresses_without_lookup
from .tls import default_ssl_context, make_ssl_context

__all__ = ["AsyncHTTP", "DEFAULT_TIMEOUT", "USER_AGENT", "IDEMPOTENT_METHODS",
           # defined in the modules they come from, and importable from here as they always were:
           "HeaderMap", "ConnectionPool", "connection_pool", "close_idle_connections",
           "default_ssl_context", "make_ssl_context"]

log = logging.getLogger("clients.http")

#: Seconds allowed to resolve, connect and finish the TLS handshake, and (separately) without
#: any byte moving once connected.
DEFAULT_TIMEOUT = 30.0
#: Methods retried once on a fresh connection when a reused one turns out to be closed.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_NO_BODY_STATUSES = (204, 304)

# The request's phases (see the module docstring).
NEW = "new"                 # constructed; starts on the next pass
RESOLVING = "resolving"     # the host name is being looked up in a thread
CONNECTING = "connecting"   # TCP connect in progress
TUNNELING = "tunneling"     # asking an HTTP proxy for a CONNECT tunnel
HANDSHAKING = "handshaking" # TLS handshake in progress
EXCHANGING = "exchanging"   # request being sent and/or response being received
FINISHED = "done"           # the consumer's close() has been (or is about to be) called


class AsyncHTTP(Dispatcher):
    """One HTTP request on the reactor, reporting to ``consumer``.

    ``uri`` is an absolute http(s) URL; ``headers`` a mapping or list of pairs (``Host``,
    ``User-Agent`` and ``Accept`` are added unless given; a value None sends neither the field
    nor its default); ``body`` bytes, str (UTF-8) or a
    :class:`~clients.http.bodies.FileBody` (streamed from disk).
    ``timeout`` (seconds, None for none) bounds name resolution + connect + TLS handshake, and
    separately each wait for the server once connected.  ``reactor`` defaults to the default
    reactor; ``ssl_context`` to :func:`default_ssl_context`; ``pool=False`` uses (and leaves)
    a fresh connection.

    Keywords for programs that need more (all passed on to the hops of a redirect chain):
    ``connect_timeout`` bounds resolve + connect + tunnel + TLS instead of ``timeout``;
    ``family`` (``socket.AF_INET`` or ``AF_INET6``) keeps only addresses of that family;
    ``proxy`` is a function of the URL giving the :class:`~clients.http.proxy.Proxy` to go
    through, or None (it may raise ValueError for one it cannot use); ``observer`` is told what
    happens on the wire (see :meth:`_observe`).

    Attributes the consumer reads: ``status`` — ``(version, code, reason)`` such as
    ``("HTTP/1.1", 200, "OK")``, or None until a head arrived and on failure; ``header`` — a
    :class:`HeaderMap`; ``error`` — None, or why the request failed (set before ``close()``,
    also after ``http_header`` when the body fails); ``failure`` — the class of that failure,
    one of the names in :mod:`clients.http.failures`; ``url``; ``trailers``; ``interim`` (the
    1xx responses skipped, as ``(code, reason)``); ``reused`` (the connection came from the
    pool); ``history`` (set by :class:`~clients.http.Redirect` on the final request);
    ``via`` (the Proxy used, or None).
    """

    #: Bytes asked of the socket per read.
    recv_size = 65536
    #: Most bytes offered to one send (the output queue's ``chunk``).
    send_size = 262144
    #: Informational (1xx) responses accepted before the final one: a server that sends them
    #: forever would otherwise keep the request alive, and its ``interim`` list growing, forever.
    max_interim = 100

    def __init__(self, uri, consumer, method="GET", headers=None, body=None,
                 timeout=DEFAULT_TIMEOUT, *, reactor=None, ssl_context=None, pool=True,
                 connect_timeout=None, family=socket.AF_UNSPEC, proxy=None, observer=None):
        reactor = reactor or get_reactor()
        Dispatcher.__init__(self, None, reactor.map)
        self.url = uri
        self.consumer = consumer
        self.method = method
        self._invalid = None          # a bad argument, reported to the consumer at start
        try:
            self.request_headers = request_fields(headers)
        except (TypeError, ValueError):
            self.request_headers = []
            self._invalid = "headers must be a mapping or (name, value) pairs, not %r" % (headers,)
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif body is not None and not isinstance(body, bytes) and not is_body_source(body):
            self._invalid = "body must be bytes or str, not %s" % type(body).__name__
            body = None
        self.body = body
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.family = family
        self.proxy = proxy
        self.observer = observer
        self.via = None
        self.ssl_context = ssl_context
        self.use_pool = pool
        self.phase = NEW
        self.status = None
        self.header = None
        self.error = None
        self.failure = None
        self.trailers = None
        self.interim = []
        self.history = []
        self.reused = False
        self._target = None
        self._request = None
        self._conn = None
        self._key = None
        self._addresses = []
        self._connect_error = None
        self._lookup = None
        self._tunnel = None
        self._bytes_in = 0            # bytes received on this connection for this request
        self._body_bytes = 0
        self._expected = None         # the response's Content-Length, when it frames the body
        self._retried = False
        self._eof = False
        self._in_callback = 0
        self._close_pending = False
        self._consumer_closed = False
        reactor.call_soon(self._start)

    def __repr__(self):
        return "<AsyncHTTP %s %s %s at %#x>" % (self.method, self.url, self.phase, id(self))

    # ---------------------------------------------------------------- interest
    @static_interest
    def writable(self):
        """Write readiness is wanted while connecting and while output is queued (what the TLS
        layer waits for, it adds itself).  Static: every change goes through interest_changed()."""
        out = self._out
        return self.connecting or (out is not None and out.pending)

    # ---------------------------------------------------------------- start
    def _start(self):
        if self.phase != NEW:
            return                  # closed before it started
        try:
            self._target = target = Target(self.url)
        except (ValueError, UnicodeError) as exc:
            return self._fail("bad URL: %s" % (exc,), failures.BAD_URL)
        if self.proxy is not None:
            try:
                self.via = self.proxy(self.url)
            except ValueError as exc:
                return self._fail(str(exc), failures.CONNECT)
        try:
            if self._invalid is not None:
                raise ValueError(self._invalid)
            self._request = build_request(self.method, target, self.request_headers, self.via)
        except (ProtocolError, TypeError, ValueError) as exc:
            return self._fail("invalid request: %s" % (exc,), failures.BAD_REQUEST)
        if target.scheme == "https":
            if self.ssl_context is None:
                self.ssl_context = default_ssl_context()
            self._key = (target.scheme, target.host, target.port, self.ssl_context)
        else:
            self._key = (target.scheme, target.host, target.port, None)
        if self.via is not None:
            self._key += self.via.key
        if self.use_pool:
            idle = connection_pool(self.reactor).checkout(self._key)
            if idle is not None:
                return self._adopt(*idle)
        self._connect_fresh()

    def _observe(self, event, *args):
        """Tell the observer (if it has a method named ``event``) what just happened:
        ``resolving(request, host)``, ``connecting(request, sockaddr)``,
        ``connected(request, sockaddr, local_sockaddr)``, ``tunnel_request(request, bytes)``,
        ``tunnel_response(request, Response)``, ``tls_established(request, ssl_socket)``,
        ``reusing(request)``, ``request_sent(request, head_bytes)`` (the head queued),
        ``interim_head(request, InformationalResponse)``, ``response_head(request)`` (before
        the consumer's ``http_header``).  The observer only watches: it must not raise, nor
        end the request from inside these calls (``call_soon`` an ``abort`` instead)."""
        method = getattr(self.observer, event, None)
        if method is not None:
            method(self, *args)

    def _peer(self):
        """``(host, port)`` of the TCP peer: the proxy when there is one."""
        if self.via is not None:
            return self.via.host, self.via.port
        return self._target.host, self._target.port

    def _connect_fresh(self):
        host, port = self._peer()
        self.set_deadline(self.connect_timeout)     # until _established (handle_idle_timeout)
        addresses = addresses_without_lookup(host, port)
        if addresses is not None:
            self._addresses = self._of_family(addresses)
            self._try_next_address()
        else:
            self.phase = RESOLVING
            self._observe("resolving", host)
            self._lookup = Lookup(self.reactor, host, port, self._resolved)

    def _of_family(self, addresses):
        if self.family == socket.AF_UNSPEC:
            return addresses
        return [address for address in addresses if address[0] == self.family]

    def _resolved(self, lookup, addresses, exc):
        if lookup is not self._lookup or self.phase != RESOLVING:
            return
        self._lookup = None
        host = self._peer()[0]
        failure = failures.RESOLVE if self.via is None else failures.RESOLVE_PROXY
        if exc is not None:
            reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else exc
            return self._fail("cannot resolve %r: %s" % (host, reason), failure)
        addresses = self._of_family(addresses)
        if not addresses:
            return self._fail("cannot resolve %r: no addresses" % (host,), failure)
        self._addresses = addresses
        self._try_next_address()

    def _try_next_address(self):
        """Connect to the next address; when none is left, fail with the last error."""
        self.phase = CONNECTING
        while self._addresses:
            family, sockaddr = self._addresses.pop(0)
            try:
                self.create_socket(family, socket.SOCK_STREAM)
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._observe("connecting", sockaddr)
                self.connect(sockaddr)
                return
            except OSError as exc:
                self._connect_error = exc
                self._drop_socket()
        self._fail(self._connect_failure_message(), failures.CONNECT)

    def _connect_failure_message(self):
        exc = self._connect_error
        where = "%s:%d" % self._peer()
        if exc is None:
            return "cannot connect to %s: no address of the family asked for" % where
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused by %s" % where
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else exc
        return "cannot connect to %s: %s" % (where, reason)

    def _connect_failed(self, exc):
        self._connect_error = exc
        self._drop_socket()
        self._try_next_address()

    def handle_connect(self):
        """TCP is up: ask the proxy for a tunnel, start TLS, or send the request."""
        self._conn = Connection(CLIENT)
        if self.observer is not None:
            try:
                local = self.socket.getsockname()
            except OSError:
                local = None
            self._observe("connected", self.addr, local)
        if self._target.scheme == "https":
            if self.via is not None:
                return self._open_tunnel()
            self._start_tls()
        else:
            self._established()

    def _start_tls(self):
        self.phase = HANDSHAKING
        self._drop_output()             # the tunnel's, if any: it wrote to the plain socket
        self.start_tls(self.ssl_context, server_hostname=self._target.host)

    def _open_tunnel(self):
        target = self._target
        host = "[%s]" % target.host if ":" in target.host else target.host
        self._tunnel = Tunnel("%s:%d" % (host, target.port), self.via.authorization)
        self.phase = TUNNELING
        self._observe("tunnel_request", self._tunnel.request)
        self._out = OutputQueue(self, SocketWriter(self.socket), chunk=self.send_size)
        self._send(self._out.write, self._tunnel.request)

    def _tunnel_received(self, data):
        try:
            response = self._tunnel.receive(data)
        except TunnelError as exc:
            if exc.status is not None:
                self._observe("tunnel_response", self._tunnel.response)
            return self._fail(str(exc), failures.TUNNEL)
        if response is not None:
            self._observe("tunnel_response", response)
            self._tunnel = None
            self._start_tls()

    def handle_tls_error(self, exc, handshake):
        """The TLS layer failed: the request fails with why (after the handshake, the loss of
        the connection that follows says it)."""
        if not handshake:
            return
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._fail("TLS certificate verification failed for %s: %s (%s)" % (
                self._target.host, exc.verify_message, exc.reason), failures.CERTIFICATE)
        if isinstance(exc, ssl.SSLEOFError):
            return self._fail("connection lost during the TLS handshake: closed by the server",
                              failures.TLS)
        self._fail("TLS handshake with %s failed: %s" % (self._target.host, exc.reason or exc),
                   failures.TLS)

    def handle_tls_ready(self):
        self._observe("tls_established", self.socket)
        self._established()

    def _adopt(self, sock, conn):
        """Continue on an idle pooled connection."""
        self.reused = True
        self._conn = conn
        self.set_socket(sock)
        if type(sock) is TLSSocket:
            sock.attach(self)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError:
            pass
        self._observe("reusing")
        self._established()

    def _established(self):
        """Connected (and TLS done): queue the request and watch the server."""
        self.phase = EXCHANGING
        self._bytes_in = 0
        self.set_idle_timeout(self.timeout)         # in place of the connect deadline
        body = self.body
        streamed = is_body_source(body)
        try:
            if streamed:
                data = self._conn.send_head_for_body(self._request, body.length)
            else:
                data = self._conn.send_head_and_body(self._request, body or b"")
        except ProtocolError as exc:
            return self._fail("invalid request: %s" % (exc,), failures.BAD_REQUEST)
        if self.observer is not None:
            self._observe("request_sent", data[:data.find(b"\r\n\r\n") + 4])
        sock = self.socket
        out = self._out = OutputQueue(self, sock if type(sock) is TLSSocket else SocketWriter(sock),
                                      chunk=self.send_size)
        self._send(out.write, data)
        if streamed and self._out is out:           # (not if that send ended the exchange)
            self._send(out.push_producer, BodyProducer(body))

    # ---------------------------------------------------------------- I/O
    def _send(self, method, *args):
        """Call ``method`` of the output queue (write, push_producer, flush): a send that
        raises ends the exchange as a send failure, a body that cannot be read as an upload
        failure.  (A send that finds the peer gone reaches :meth:`handle_close`.)"""
        try:
            method(*args)
        except UnreadableBody as exc:
            error = exc.error
            self._fail("cannot read the request body: %s" % (error.strerror or error,),
                       failures.UPLOAD)
        except OSError as exc:
            self._drop_output()
            self.interest_changed()
            self._lost(exc, failures.SEND)

    def handle_write(self):
        if self.socket is None or self.phase == FINISHED:
            return
        out = self._out
        if out is not None and out.pending:
            self._send(out.flush)

    def handle_read(self):
        if self.socket is None or self.phase == FINISHED:
            return
        sock = self.socket
        try:
            data = sock.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError as exc:
            return self._lost(exc)
        if data is not None:
            self._received(data)
            if not data or self.phase != EXCHANGING:
                return
        out = self._out
        if out is not None and out.pending:
            self._send(out.flush)

    def handle_close(self):
        """The reactor saw a hang-up or a pending socket error, or a send found the peer gone
        (the output queue then has the error: the exchange ends as a send failure with it, as
        when a send raises)."""
        if self.phase == CONNECTING and self.socket is not None:
            err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return self._connect_failed(OSError(err, os.strerror(err)) if err else
                                        ConnectionResetError(errno.ECONNRESET, "connection closed"))
        if self.phase == EXCHANGING or self.phase == TUNNELING:
            exc = self._out.error if self._out is not None else None
            if exc is not None:
                return self._lost(exc, failures.SEND)
            phase = self.phase
            self.handle_read()      # reports EOF or the error itself
            if self.phase == phase:
                self._lost(ConnectionResetError(errno.ECONNRESET, "connection closed"))
        elif self.phase != FINISHED:
            self._fail("connection closed by the server",
                       failures.TLS if self.phase == HANDSHAKING else failures.RECEIVE)

    def handle_expt(self):
        pass                        # urgent data means nothing in HTTP

    def handle_idle_timeout(self):
        """The channel's one timeout passed: the connect deadline before EXCHANGING (resolve,
        connect, tunnel and TLS handshake together), the idle timeout in it."""
        if self.phase != EXCHANGING:
            return self._fail("timed out %s after %gs" % (self._connect_step(),
                                                          self.connect_timeout), failures.TIMEOUT)
        if self.status is None:
            what = "waiting for the response"
        else:
            what = "receiving the body (%d bytes so far)" % self._body_bytes
        self._fail("timed out %s: nothing from the server for %gs" % (what, self.timeout),
                   failures.TIMEOUT)

    def _connect_step(self):
        """What the connect deadline found the request doing."""
        target = self._target
        if self.phase == RESOLVING:
            return "resolving %r" % self._peer()[0]
        if self.phase == HANDSHAKING:
            return "in the TLS handshake with %s:%d" % (target.host, target.port)
        if self.phase == TUNNELING:
            return "waiting for the proxy's CONNECT tunnel to %s:%d" % (target.host, target.port)
        return "connecting to %s:%d" % self._peer()

    def handle_error(self):
        """An exception reached the reactor from this channel: it becomes the request's error."""
        exc = sys.exc_info()[1]
        if self.phase == CONNECTING and isinstance(exc, OSError):
            return self._connect_failed(exc)
        if isinstance(exc, OSError):
            return self._lost(exc)
        log.error("internal error in %r", self, exc_info=True)
        self._fail("internal error: %r" % (exc,), failures.INTERNAL)

    # ---------------------------------------------------------------- responses
    def _received(self, data):
        if self.phase == TUNNELING:
            return self._tunnel_received(data)
        self._bytes_in += len(data)
        if not data:
            self._eof = True
            if self._truncated_by_close():
                return self._fail("connection closed without TLS close_notify after %d body "
                                  "bytes: the body (framed by the close) may be truncated"
                                  % self._body_bytes, failures.PARTIAL)
        self._conn.receive_data(data)
        self._pump()

    def _pump(self):
        conn = self._conn
        while self.phase == EXCHANGING:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                return self._bad_response(exc)
            kind = type(event)
            if kind is Data:
                self._body_bytes += len(event.data)
                self._call("feed", event.data)
            elif event is NEED_DATA:
                return
            elif kind is Response:
                self._got_head(event)
            elif kind is EndOfMessage:
                return self._complete(event)
            elif kind is InformationalResponse:
                if len(self.interim) >= self.max_interim:
                    return self._fail("invalid response: more than %d informational (1xx) "
                                      "responses" % self.max_interim, failures.BAD_RESPONSE)
                self.interim.append((event.status, event.reason))
                self._observe("interim_head", event)
            elif event is PAUSED or kind is ConnectionClosed:
                return self._fail("the server closed the connection without a response",
                                  failures.EMPTY_REPLY)

    def _got_head(self, event):
        self.status = ("HTTP/" + event.version, event.status, event.reason)
        self.header = HeaderMap(event.headers)
        self._observe("response_head")
        if (self.method != "HEAD" and event.status not in _NO_BODY_STATUSES
                and "transfer-encoding" not in event.headers):
            length = event.headers.get("content-length")
            if length is not None and length.isdigit():
                self._expected = int(length)
        self._call("http_header", self)

    def _truncated_by_close(self):
        """True when a TLS connection ended without close_notify inside a body that only the
        close frames (no Content-Length, not chunked): nothing tells a cut from the end."""
        sock = self.socket
        if type(sock) is not TLSSocket or not sock.unclean_eof or self.status is None:
            return False
        headers = self.header
        return (self._expected is None and "transfer-encoding" not in headers
                and self.method != "HEAD" and self.status[1] not in _NO_BODY_STATUSES)

    def _bad_response(self, exc):
        if self._eof and self._bytes_in == 0:
            if self._can_retry():
                return self._retry("closed")
            return self._fail("the server closed the connection without sending a response",
                              failures.EMPTY_REPLY)
        failure = failures.PARTIAL
        if self._eof and self.status is not None:
            if self._expected is not None:
                reason = "connection closed after %d of %d body bytes" % (
                    self._body_bytes, self._expected)
            else:
                reason = "connection closed after %d body bytes, before the end of the " \
                         "chunked body" % self._body_bytes
        elif self._eof:
            reason = "connection closed in the middle of the response head"
        else:
            reason = "invalid response: %s" % (exc,)
            failure = failures.BAD_RESPONSE
        self._fail(reason, failure)

    def _complete(self, end):
        self.trailers = HeaderMap(end.trailers)
        conn = self._conn
        sock = self.socket
        out = self._out                 # (None once a failed send dropped the output)
        if (self.use_pool and conn.our_state == DONE and conn.their_state == DONE
                and out is not None and not out.pending and not conn.buffered_bytes
                and not self._eof):
            conn.start_next_cycle()
            self._detach()
            connection_pool(self.reactor).checkin(self._key, sock, conn, self._keep_alive_expiry())
        self._finish()

    def _keep_alive_expiry(self):
        """Seconds the server promised to keep the connection (Keep-Alive: timeout=N), less a margin;
        None if it promised none we can read (a malformed value is ignored)."""
        value = self.header.get("keep-alive") if self.header is not None else None
        if value:
            for item in value.split(","):
                name, _, number = item.strip().partition("=")
                number = number.strip()
                # ASCII digits only: str.isdigit() is also true of '²', which int() refuses.  Longer
                # than 9 digits is past any pool's expiry anyway (and int() of a long one is slow).
                if (name.strip().lower() == "timeout" and number.isascii() and number.isdigit()
                        and len(number) <= 9):
                    return int(number) - 1.0
        return None

    def _can_retry(self):
        """A reused connection that broke before any response byte: the server had closed it
        while idle, so an idempotent request is sent once more on a fresh connection."""
        return (self.reused and not self._retried and self._bytes_in == 0
                and self.method in IDEMPOTENT_METHODS and self.phase == EXCHANGING)

    def _retry(self, why):
        log.debug("%r: reused connection unusable (%s); retrying on a new one", self, why)
        self._retried = True
        self.reused = False
        self._drop_socket()
        self._reset_exchange()
        self._connect_fresh()

    def _lost(self, exc, failure=failures.RECEIVE):
        """The connection broke (``exc``; None or an unclean TLS EOF: it closed) mid-exchange;
        ``failure`` says whether it was found sending or receiving."""
        if self._can_retry():
            return self._retry(exc)
        if exc is None or isinstance(exc, ssl.SSLEOFError):
            if self.phase == EXCHANGING and not self._eof:
                self._eof = True
                self._conn.receive_data(b"")
                return self._pump()
            return self._fail("connection closed by the server", failures.RECEIVE)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if self.status is not None:
            return self._fail("connection lost after %d body bytes: %s" % (
                self._body_bytes, reason), failure)
        self._fail("connection lost: %s" % (reason,), failure)

    def _reset_exchange(self):
        self._conn = None
        self._drop_output()
        self._bytes_in = 0
        self._eof = False
        self.reading = True

    # ---------------------------------------------------------------- endings
    def _drop_socket(self):
        """Close the socket (if any) but keep the request and its timers."""
        if self.idle_timeout is not None:
            self.set_idle_timeout(None)
        self.del_channel()
        sock, self.socket = self.socket, None
        self.connected = False
        self.connecting = False
        if sock is not None:
            close_quietly(sock)

    def _detach(self):
        """Leave the map without closing the socket (it goes to the pool)."""
        self.set_idle_timeout(None)
        self.del_channel()
        sock, self.socket = self.socket, None
        if type(sock) is TLSSocket:
            sock.detach()               # idle in the pool, then the next request's
        self._out = None                # empty, and its writer's socket is the pool's now
        self.connected = False

    def _drop_output(self):
        """Drop what is queued for the server (closing a streamed body's open file, if any)."""
        out, self._out = self._out, None
        if out is not None:
            out.clear()

    def _fail(self, reason, failure):
        """End the request with ``reason`` (``failure`` names its class, see
        :mod:`clients.http.failures`): the consumer hears of it through its callbacks."""
        if self.phase == FINISHED:
            return
        self.error = reason
        self.failure = failure
        log.debug("%r failed: %s", self, reason)
        header_seen = self.status is not None
        self._teardown()
        if not header_seen:
            self.status = None
            self._call("http_header", self)
        self._notify_close()

    def abort(self, reason, failure=failures.ABORTED):
        """End the request as failed with ``reason`` (a program's own time limit, say): like
        any failure, ``error`` and ``failure`` are set and the consumer is told."""
        self._fail(reason, failure)

    def close(self):
        """End the request now (the consumer may call this, e.g. from ``http_header``).

        The connection is not reused; the consumer's ``close()`` follows (after the consumer's
        current callback returns) unless it was already called.
        """
        if self.phase == FINISHED:
            return
        self._finish()

    def _finish(self):
        self._teardown()
        self._notify_close()

    def _teardown(self):
        self.phase = FINISHED
        if self._lookup is not None:
            self._lookup.cancel()
            self._lookup = None
        if self._out is not None:
            self._drop_output()
        Dispatcher.close(self)      # leaves the map, cancels this channel's timers, closes
        self.socket = None

    # ---------------------------------------------------------------- consumer
    def _call(self, name, *args):
        """Call the consumer's method ``name`` if it has one; an exception ends the request."""
        method = getattr(self.consumer, name, None)
        if method is None:
            return
        self._in_callback += 1
        try:
            method(*args)
        except Exception as exc:
            log.error("consumer %r raised in %s(); closing %r", self.consumer, name, self,
                      exc_info=True)
            if self.phase != FINISHED:
                self.error = "consumer %s() raised %s: %s" % (name, type(exc).__name__, exc)
                self.failure = failures.INTERNAL
                self._teardown()
                self._close_pending = True
        finally:
            self._in_callback -= 1
        if self._close_pending and not self._in_callback:
            self._notify_close()

    def _notify_close(self):
        if self._consumer_closed:
            return
        if self._in_callback:
            self._close_pending = True
            return
        self._consumer_closed = True
        self._close_pending = False
        method = getattr(self.consumer, "close", None)
        if method is None:
            return
        try:
            method()
        except Exception:
            log.error("consumer %r raised in close()", self.consumer, exc_info=True)

    # ---------------------------------------------------------------- chains
    def new_request(self, uri, consumer, method="GET", headers=None, body=None):
        """Start another request with this one's timeout, reactor, TLS context and pool setting
        (how :class:`~clients.http.Redirect` issues the next hop)."""
        return AsyncHTTP(uri, consumer, method, headers, body, self.timeout,
                         reactor=self.reactor, ssl_context=self.ssl_context, pool=self.use_pool,
                         connect_timeout=self.connect_timeout, family=self.family,
                         proxy=self.proxy, observer=self.observer)
