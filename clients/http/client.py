"""The asynchronous HTTP/1.1 client: :class:`AsyncHTTP`, one request as a channel on the reactor.

The classic interface (``AsyncHTTP(uri, consumer)``), done so that every outcome reaches the
consumer: its optional ``http_header(request)`` is called once the response head is parsed
(``request.status`` is None on failure and ``request.error`` says why), ``feed(data)`` once per
body piece (chunked framing already removed), and ``close()`` exactly once, whatever happened.
The bytes are framed by the shared sans-IO layer (:mod:`eventloop.http11`); this module only
moves them, resolves names off the loop thread, speaks TLS without blocking, enforces timeouts
and keeps idle connections for reuse.

Callbacks never run inside the ``AsyncHTTP`` constructor: the request starts on the reactor's
next pass.  A consumer callback that raises is logged and ends its request (the consumer's
``close()`` is still called); a consumer's ``close()`` never runs nested inside its own
``http_header``/``feed``: a ``request.close()`` made there takes effect when the callback returns.

:func:`fetch` and :func:`retrieve` are the synchronous conveniences; each runs a private
:class:`~eventloop.Reactor`, so they work from any thread while other reactors run.
"""
import collections
import errno
import logging
import os
import select
import socket
import ssl
import sys
import threading
import weakref
from base64 import b64encode
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from eventloop.http11 import (
    CLIENT, DONE, NEED_DATA, PAUSED, Connection, ConnectionClosed, Data, EndOfMessage, Headers,
    InformationalResponse, ProtocolError, RemoteProtocolError, Request, Response)
from eventloop import Dispatcher, Reactor, get_reactor, static_interest

from . import failures
from .proxy import Tunnel, TunnelError

__all__ = ["AsyncHTTP", "HeaderMap", "ConnectionPool", "connection_pool", "close_idle_connections",
           "default_ssl_context", "make_ssl_context", "fetch", "retrieve", "FetchResponse",
           "FetchError", "DEFAULT_TIMEOUT", "USER_AGENT"]

log = logging.getLogger("clients.http")

#: Seconds allowed to resolve, connect and finish the TLS handshake, and (separately) without
#: any byte moving once connected.
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "eventloop-http/0.1"
#: Methods retried once on a fresh connection when a reused one turns out to be closed.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUSES = (204, 304)

# The request's phases, in order (a request can also jump from any phase to DONE).
NEW = "new"                 # constructed; starts on the next pass
RESOLVING = "resolving"     # the host name is being looked up in a thread
CONNECTING = "connecting"   # TCP connect in progress
TUNNELING = "tunneling"     # asking an HTTP proxy for a CONNECT tunnel
HANDSHAKING = "handshaking" # TLS handshake in progress
EXCHANGING = "exchanging"   # request being sent and/or response being received
FINISHED = "done"           # the consumer's close() has been (or is about to be) called


class HeaderMap(Mapping):
    """A read-only, case-insensitive mapping over a message's header fields.

    ``header[name]`` and ``get`` give the field's value (repeated fields joined by ", ");
    iteration yields each distinct name once, as first spelled; ``get_all(name)`` lists every
    value and ``fields`` is the underlying :class:`eventloop.http11.Headers`, in wire order.
    """

    __slots__ = ("fields",)

    def __init__(self, fields=None):
        self.fields = fields if isinstance(fields, Headers) else Headers(fields)

    def __getitem__(self, name):
        value = self.fields.get(name) if isinstance(name, str) else None
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name, default=None):
        return self.fields.get(name, default) if isinstance(name, str) else default

    def __contains__(self, name):
        return name in self.fields

    def __iter__(self):
        seen = set()
        for name, _ in self.fields:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self):
        return len({name.lower() for name, _ in self.fields})

    def get_all(self, name):
        return self.fields.get_all(name)

    def __repr__(self):
        return "HeaderMap(%r)" % (self.fields.items(),)


# ------------------------------------------------------------------------------ URLs

class _Target:
    """What a URL says about where and what to ask: scheme, host, port, request target."""

    __slots__ = ("scheme", "host", "port", "target", "host_header", "authorization")

    def __init__(self, url):
        if not isinstance(url, str):
            raise ValueError("the URL must be a str, not %s" % type(url).__name__)
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError("unsupported URL scheme %r (only http and https)" % (parts.scheme,)
                             if scheme else "no scheme in URL %r" % (url,))
        host = parts.hostname
        if not host:
            raise ValueError("no host in URL %r" % (url,))
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = parts.port                   # ValueError for a bad port
        default = _DEFAULT_PORTS[scheme]
        self.scheme = scheme
        self.host = host
        self.port = default if port is None else port
        shown = "[%s]" % host if ":" in host else host
        self.host_header = shown if self.port == default else "%s:%d" % (shown, self.port)
        target = _quote_unsafe(parts.path) or "/"
        if parts.query or url.rstrip().endswith("?"):
            target += "?" + _quote_unsafe(parts.query)
        self.target = target
        self.authorization = None
        if parts.username is not None:
            credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
            self.authorization = "Basic " + b64encode(credentials.encode("utf-8")).decode("ascii")


def _is_body_source(body):
    """A body streamed in pieces (:class:`~clients.http.bodies.FileBody`): a ``length`` and
    a ``chunks()`` method giving a fresh pass over exactly that many bytes."""
    return hasattr(body, "chunks") and isinstance(getattr(body, "length", None), int)


def _quote_unsafe(text):
    """Percent-encode what cannot appear raw in a request target (controls, space, non-ASCII)."""
    if text.isascii() and text.isprintable() and " " not in text:
        return text
    return "".join(c if "!" <= c <= "~" else "".join("%%%02X" % b for b in c.encode("utf-8"))
                   for c in text)


def _request_headers(headers):
    """The caller's headers as a list of (name, value) pairs (a mapping, pairs, or Headers)."""
    if headers is None:
        return []
    if isinstance(headers, Headers):
        return headers.items()
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(name, value) for name, value in headers]


# ------------------------------------------------------------------------------ TLS

_default_context = None
_context_lock = threading.Lock()


def default_ssl_context():
    """The shared verifying context (system CA store, hostname checks), made on first use."""
    global _default_context
    if _default_context is None:
        with _context_lock:
            if _default_context is None:
                _default_context = make_ssl_context()
    return _default_context


def make_ssl_context(cafile=None, insecure=False, capath=None):
    """A client TLS context: verifies against the system store, or ``cafile`` / ``capath`` (a
    directory of hashed certificates) when given; ``insecure`` turns off certificate and
    hostname verification."""
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# ------------------------------------------------------------------------------ the pool

class ConnectionPool:
    """Idle keep-alive connections of one reactor, keyed by (scheme, host, port, TLS context).

    An idle connection is out of the reactor's map (it costs nothing and does not keep
    ``loop()`` running).  ``checkout`` hands back the most recently used live connection and
    drops those that expired or that the server closed meanwhile.
    """

    def __init__(self, clock, max_per_origin=64, expiry=15.0):
        self.clock = clock
        self.max_per_origin = max_per_origin
        self.expiry = expiry
        self._idle = {}     # key -> deque of (deadline, sock, conn), most recent last

    def __len__(self):
        return sum(len(q) for q in self._idle.values())

    def checkin(self, key, sock, conn, expiry=None):
        """Keep ``sock`` (with its http11 ``conn``, ready for the next cycle) for reuse."""
        expiry = self.expiry if expiry is None else min(expiry, self.expiry)
        if expiry <= 0 or self.max_per_origin <= 0:
            _close_quietly(sock)
            return
        queue = self._idle.setdefault(key, collections.deque())
        queue.append((self.clock() + expiry, sock, conn))
        while len(queue) > self.max_per_origin:
            _close_quietly(queue.popleft()[1])

    def checkout(self, key):
        """A live idle connection ``(sock, conn)`` for ``key``, or None."""
        queue = self._idle.get(key)
        now = self.clock()
        while queue:
            deadline, sock, conn = queue.pop()
            if deadline > now and not _is_stale(sock):
                if not queue:
                    del self._idle[key]
                return sock, conn
            _close_quietly(sock)
        self._idle.pop(key, None)
        return None

    def close(self):
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for queue in idle.values():
            for _, sock, _ in queue:
                _close_quietly(sock)


def _is_stale(sock):
    """True when an idle connection is unusable: closed, or readable (EOF or stray bytes)."""
    try:
        if sock.fileno() < 0:
            return True
        readable = select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    if isinstance(sock, ssl.SSLSocket):
        # TLS 1.3 session tickets can arrive after the response; they are not application data.
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return False
        except (OSError, ValueError):
            return True
    return True


def _close_quietly(sock):
    try:
        sock.close()
    except OSError:
        pass


_pools = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()      # fetch() in several threads: one private reactor each


def connection_pool(reactor=None):
    """The pool of idle connections that belongs to ``reactor`` (default: the default one)."""
    reactor = reactor or get_reactor()
    with _pools_lock:
        pool = _pools.get(reactor)
        if pool is None:
            pool = _pools[reactor] = ConnectionPool(reactor.clock)
    return pool


def close_idle_connections(reactor=None):
    """Close the idle keep-alive connections kept for ``reactor``."""
    with _pools_lock:
        pool = _pools.pop(reactor or get_reactor(), None)
    if pool is not None:
        pool.close()


# ------------------------------------------------------------------------------ names

#: The blocking resolver the lookup threads call (tests replace it).
getaddrinfo = socket.getaddrinfo


def _addresses_without_lookup(host, port):
    """``[(family, sockaddr)]`` for numeric addresses and localhost, or None if a lookup is needed."""
    if host == "localhost":
        return [(socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port, 0, 0))]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [(info[0], info[4]) for info in infos]


class _Lookup:
    """One getaddrinfo call in a daemon thread; the result comes back through the reactor.

    The reactor is held (``run_until_idle`` keeps going) until the result is delivered or the
    request gives up, whichever comes first.
    """

    def __init__(self, reactor, host, port, deliver):
        self.reactor = reactor
        self._lock = threading.Lock()
        self._held = True
        reactor.hold()
        self._deliver = deliver
        thread = threading.Thread(target=self._run, args=(host, port), daemon=True,
                                  name="resolve %s" % host)
        thread.start()

    def _run(self, host, port):
        try:
            infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result = ([(info[0], info[4]) for info in infos], None)
        except Exception as exc:        # gaierror, UnicodeError...: all become the request's error
            result = (None, exc)
        with self._lock:
            if self._held:
                self.reactor.call_soon_threadsafe(self._deliver, self, *result)
        self.cancel()

    def cancel(self):
        """Stop holding the reactor (the thread may still finish; its result is then ignored)."""
        with self._lock:
            held, self._held = self._held, False
        if held:
            self.reactor.release()


# ------------------------------------------------------------------------------ the channel

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

    #: Bytes asked of the socket per read (TLS reads continue while the socket has ``pending()``).
    recv_size = 65536
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
            self.request_headers = _request_headers(headers)
        except (TypeError, ValueError):
            self.request_headers = []
            self._invalid = "headers must be a mapping or (name, value) pairs, not %r" % (headers,)
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif body is not None and not isinstance(body, bytes) and not _is_body_source(body):
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
        self._connect_timer = None
        self._outq = collections.deque()
        self._out_off = 0
        self._body_chunks = None      # the rest of a streamed body, being sent
        self._tunnel = None
        self._tls_wants_write = False
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
        """Write readiness is wanted while connecting, while output is queued, and while the TLS
        layer waits to write (handshake).  Static: every change goes through interest_changed()."""
        return self.connecting or self._tls_wants_write or bool(self._outq)

    def _want_tls(self, read, write):
        """Follow what the TLS layer waits for: watch exactly that readiness."""
        if read:
            self.resume_reading()
        else:
            self.pause_reading()
        if write != self._tls_wants_write:
            self._tls_wants_write = write
            self.interest_changed()

    # ---------------------------------------------------------------- start
    def _start(self):
        if self.phase != NEW:
            return                  # closed before it started
        try:
            self._target = target = _Target(self.url)
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
            self._request = self._build_request(target)
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

    def _build_request(self, target):
        # A field given with the value None is not sent, and keeps its default out too.
        given = Headers([field for field in self.request_headers if field[1] is not None])
        given_names = {name.lower() for name, _ in self.request_headers}
        fields = [] if "host" in given_names else [("Host", target.host_header)]
        fields += given.items()
        if "user-agent" not in given_names:
            fields.append(("User-Agent", USER_AGENT))
        if "accept" not in given_names:
            fields.append(("Accept", "*/*"))
        if target.authorization and "authorization" not in given_names:
            fields.append(("Authorization", target.authorization))
        request_target = target.target
        if self.via is not None and target.scheme == "http":
            # Forwarded by the proxy: the absolute form, and the proxy's credentials.
            request_target = "http://%s%s" % (target.host_header, target.target)
            if self.via.authorization and "proxy-authorization" not in given_names:
                fields.append(("Proxy-Authorization", self.via.authorization))
        return Request(self.method, request_target, Headers._trusted(fields))

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
        if self.connect_timeout is not None:
            self._connect_timer = self.call_later(self.connect_timeout, self._connect_timed_out)
        addresses = _addresses_without_lookup(host, port)
        if addresses is not None:
            self._addresses = self._of_family(addresses)
            self._try_next_address()
        else:
            self.phase = RESOLVING
            self._observe("resolving", host)
            self._lookup = _Lookup(self.reactor, host, port, self._resolved)

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

    def _connect_timed_out(self):
        self._connect_timer = None
        target = self._target
        if self.phase == RESOLVING:
            what = "resolving %r" % self._peer()[0]
        elif self.phase == HANDSHAKING:
            what = "in the TLS handshake with %s:%d" % (target.host, target.port)
        elif self.phase == TUNNELING:
            what = "waiting for the proxy's CONNECT tunnel to %s:%d" % (target.host, target.port)
        else:
            what = "connecting to %s:%d" % self._peer()
        self._fail("timed out %s after %gs" % (what, self.connect_timeout), failures.TIMEOUT)

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
        self.socket = self.ssl_context.wrap_socket(
            self.socket, server_hostname=self._target.host, do_handshake_on_connect=False)
        self._handshake()

    def _open_tunnel(self):
        target = self._target
        host = "[%s]" % target.host if ":" in target.host else target.host
        self._tunnel = Tunnel("%s:%d" % (host, target.port), self.via.authorization)
        self.phase = TUNNELING
        self._observe("tunnel_request", self._tunnel.request)
        self._outq.append(self._tunnel.request)
        self._flush()
        if self._outq:
            self.interest_changed()

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

    def _handshake(self):
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            return self._want_tls(read=True, write=False)
        except ssl.SSLWantWriteError:
            return self._want_tls(read=False, write=True)
        except ssl.SSLCertVerificationError as exc:
            return self._fail("TLS certificate verification failed for %s: %s (%s)" % (
                self._target.host, exc.verify_message, exc.reason), failures.CERTIFICATE)
        except ssl.SSLError as exc:
            return self._fail("TLS handshake with %s failed: %s" % (
                self._target.host, exc.reason or exc), failures.TLS)
        except OSError as exc:
            return self._fail("connection lost during the TLS handshake: %s" % (
                exc.strerror or str(exc) or "closed by the server"), failures.TLS)
        self._want_tls(read=True, write=False)
        self._observe("tls_established", self.socket)
        self._established()

    def _adopt(self, sock, conn):
        """Continue on an idle pooled connection."""
        self.reused = True
        self._conn = conn
        self.set_socket(sock)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError:
            pass
        self._observe("reusing")
        self._established()

    def _established(self):
        """Connected (and TLS done): queue the request and watch the server."""
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self.phase = EXCHANGING
        self._bytes_in = 0
        if self.timeout is not None:
            self.set_idle_timeout(self.timeout)
        body = self.body
        try:
            if _is_body_source(body):
                data = self._conn.send_head_for_body(self._request, body.length)
                self._body_chunks = iter(body.chunks())
            else:
                data = self._conn.send_head_and_body(self._request, body or b"")
        except ProtocolError as exc:
            return self._fail("invalid request: %s" % (exc,), failures.BAD_REQUEST)
        if self.observer is not None:
            self._observe("request_sent", data[:data.find(b"\r\n\r\n") + 4])
        self._outq.append(data)
        self._flush()
        if self._outq:
            self.interest_changed()

    def _next_body_chunk(self):
        """Queue the next piece of a streamed body; False when it is all queued (or failed)."""
        try:
            chunk = next(self._body_chunks, None)
        except OSError as exc:
            self._body_chunks = None
            self._fail("cannot read the request body: %s" % (exc.strerror or exc,),
                       failures.UPLOAD)
            return False
        if chunk is None:
            self._body_chunks = None
            return False
        self._outq.append(chunk)
        return True

    # ---------------------------------------------------------------- I/O
    def _flush(self):
        """Send queued bytes until the socket would block."""
        q = self._outq
        while q and self.socket is not None:
            head = q[0]
            off = self._out_off
            chunk = memoryview(head)[off:off + self.send_size] if (
                off or len(head) > self.send_size) else head
            try:
                sent = self.socket.send(chunk)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                return
            except OSError as exc:
                q.clear()
                self.interest_changed()
                return self._lost(exc, failures.SEND)
            if not sent:
                return
            off += sent
            if off >= len(head):
                q.popleft()
                off = 0
                if not q and (self._body_chunks is None or not self._next_body_chunk()):
                    self.interest_changed()
            self._out_off = off

    def handle_write(self):
        if self.socket is None or self.phase == FINISHED:
            return
        if self.phase == HANDSHAKING:
            return self._handshake()
        if self._tls_wants_write:
            self._tls_wants_write = False
            self.interest_changed()
            self.handle_read()
        self._flush()

    def handle_read(self):
        if self.socket is None or self.phase == FINISHED:
            return
        if self.phase == HANDSHAKING:
            return self._handshake()
        sock = self.socket
        while True:
            try:
                data = sock.recv(self.recv_size)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                # The TLS layer must write before it can read on (renegotiation with a full
                # send buffer): wait for write readiness, then read again.
                self._tls_wants_write = True
                self.interest_changed()
                return
            except OSError as exc:
                return self._lost(exc)
            self._received(data)
            if not data or self.phase != EXCHANGING:
                return
            # Decrypted bytes can wait inside the TLS object with nothing left in the kernel:
            # the socket will not become readable again for them.
            pending = getattr(sock, "pending", None)
            if pending is None or not pending():
                break
        if self._outq:
            self._flush()

    def handle_close(self):
        """The reactor saw a hang-up or a pending socket error."""
        if self.phase == CONNECTING and self.socket is not None:
            err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return self._connect_failed(OSError(err, os.strerror(err)) if err else
                                        ConnectionResetError(errno.ECONNRESET, "connection closed"))
        if self.phase == EXCHANGING or self.phase == TUNNELING:
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
        if self.status is None:
            what = "waiting for the response"
        else:
            what = "receiving the body (%d bytes so far)" % self._body_bytes
        self._fail("timed out %s: nothing from the server for %gs" % (what, self.timeout),
                   failures.TIMEOUT)

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
        if (self.use_pool and conn.our_state == DONE and conn.their_state == DONE
                and not self._outq and not conn.buffered_bytes and not self._eof):
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
        self._close_body()
        self._outq.clear()
        self._out_off = 0
        self._tls_wants_write = False
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
            _close_quietly(sock)

    def _detach(self):
        """Leave the map without closing the socket (it goes to the pool)."""
        self.set_idle_timeout(None)
        self.del_channel()
        self.socket = None
        self.connected = False

    def _close_body(self):
        """Stop streaming the body (closes its open file, if any)."""
        chunks, self._body_chunks = self._body_chunks, None
        close = getattr(chunks, "close", None)
        if close is not None:
            close()

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
        self._close_body()
        self._outq.clear()
        Dispatcher.close(self)      # leaves the map, cancels this channel's timers, closes
        self.socket = None
        self._connect_timer = None

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


# ------------------------------------------------------------------------------ sync API

class FetchError(Exception):
    """:func:`fetch` or :func:`retrieve` could not get a response: ``url`` and ``reason``
    (``response`` is set when a response arrived but was refused, e.g. 404 in ``retrieve``)."""

    def __init__(self, url, reason, response=None):
        super().__init__("%s: %s" % (url, reason))
        self.url = url
        self.reason = reason
        self.response = response


class FetchResponse:
    """What :func:`fetch` returns: ``status`` (int), ``reason``, ``version``, ``headers``
    (:class:`HeaderMap`), ``body`` (bytes), ``url`` (the final URL), ``history``
    (``[(status, url)]`` of the redirects followed), ``trailers``."""

    __slots__ = ("status", "reason", "version", "headers", "body", "url", "history", "trailers")

    def __init__(self, request, body):
        self.version, self.status, self.reason = request.status
        self.headers = request.header
        self.body = body
        self.url = request.url
        self.history = list(request.history)
        self.trailers = request.trailers

    def __repr__(self):
        return "<FetchResponse %d %s %s (%d bytes)>" % (self.status, self.reason, self.url,
                                                       len(self.body))


def _run_private(url, consumer, method, headers, body, timeout, follow_redirects, max_redirects,
                 cafile, insecure, ssl_context):
    from .consumers import Redirect
    if ssl_context is None and (cafile is not None or insecure):
        ssl_context = make_ssl_context(cafile, insecure)
    reactor = Reactor()
    try:
        top = Redirect(consumer, max_redirects) if follow_redirects else consumer
        AsyncHTTP(url, top, method, headers, body, timeout, reactor=reactor,
                  ssl_context=ssl_context)
        reactor.run_until_idle()
    finally:
        close_idle_connections(reactor)
        reactor.close()


def fetch(url, method="GET", headers=None, body=None, timeout=DEFAULT_TIMEOUT,
          follow_redirects=True, max_redirects=10, cafile=None, insecure=False, *,
          ssl_context=None):
    """Send one request (following redirects unless told not to) and return a
    :class:`FetchResponse`, whatever its status.  Raises :class:`FetchError` when no complete
    response arrives (bad URL, DNS, connect, TLS, timeout, truncated body, redirect loop...)."""
    from .consumers import Collector
    collector = Collector()
    _run_private(url, collector, method, headers, body, timeout, follow_redirects,
                 max_redirects, cafile, insecure, ssl_context)
    request = collector.request
    if request is None or request.error is not None or request.status is None:
        reason = request.error if request is not None else "no response"
        raise FetchError(url, reason or "no response")
    return FetchResponse(request, collector.body)


def retrieve(url, filename=None, *, headers=None, timeout=DEFAULT_TIMEOUT,
             follow_redirects=True, max_redirects=10, cafile=None, insecure=False,
             ssl_context=None):
    """Download ``url`` into ``filename`` (a new temporary file when None), like
    ``urllib.request.urlretrieve``; returns ``(filename, headers)``.

    The body goes to a temporary name beside ``filename`` and is renamed over it only when it
    arrived complete with a status below 400; otherwise nothing is left behind and
    :class:`FetchError` is raised.
    """
    from .consumers import SaveToFile
    if filename is None:
        import tempfile
        fd, filename = tempfile.mkstemp(prefix="retrieve-")
        os.close(fd)
    sink = SaveToFile(filename, accept=lambda request: request.status[1] < 400)
    _run_private(url, sink, "GET", headers, None, timeout, follow_redirects, max_redirects,
                 cafile, insecure, ssl_context)
    request = sink.request
    if request is None or request.error is not None or request.status is None:
        raise FetchError(url, (request.error if request is not None else None) or "no response")
    if not sink.saved:
        raise FetchError(url, "HTTP %d %s" % request.status[1:], FetchResponse(request, b""))
    return filename, request.header
