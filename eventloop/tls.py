"""TLS on the reactor: a channel reads and writes through a TLS layer instead of its socket.

Call :meth:`Dispatcher.start_tls(context, server_side=..., server_hostname=..., timeout=...)
<eventloop.Dispatcher.start_tls>` on a connected channel (a server's accepted channel in its
``__init__``, a client in ``handle_connect``).  From then on ``channel.socket`` is a
:class:`TLSSocket`: ``recv`` returns decrypted bytes, ``send`` encrypts, ``close`` sends
``close_notify`` first, and nothing else about the channel changes, so ``Dispatcher``,
``DispatcherWithSend``, ``AsyncChat`` and the HTTP server's channel work over TLS as they are.
When the handshake is complete the channel's ``handle_tls_ready()`` runs; when TLS fails,
``handle_tls_error(exc, handshake)`` (by default one log line; the connection then counts as
lost: ``handle_close``).  Example, the echo server's handler over TLS::

    class TLSEcho(EchoHandler):
        def __init__(self, sock, map, context):
            EchoHandler.__init__(self, sock, map=map)
            self.start_tls(context, server_side=True, timeout=10)

How it works.  The TLS engine is an ``ssl.SSLObject`` between two ``ssl.MemoryBIO`` s, so
this module decides every byte that moves between it and the socket (the engine never
touches the socket, and can be tested with none):

* Reading: ``recv`` reads the socket into the incoming BIO and returns what the engine
  decrypts.  A socket read may hold several records; what is left decrypted-but-unread, or
  received-but-not-yet-decrypted, would be *stranded* (the socket will not become readable
  again for it), so while the channel wants input and the layer still holds some, the
  layer queues another read event for the channel (a ``call_soon`` that hands it over
  with :meth:`Reactor.deliver <eventloop.Reactor.deliver>`, as the poller's events are)
  without waiting for the socket; a channel that paused reading gets it when it resumes.
* Writing: ``send`` encrypts at most :attr:`TLSSocket.write_size` bytes at a time and hands
  the records to the kernel.  It counts bytes as sent only once their records are all in
  the kernel, and when the kernel takes part of them it keeps the rest and returns what it
  counted: the caller offers the same bytes again (the contract of OpenSSL's ``SSL_write``
  and of :class:`~eventloop.OutputQueue`, whose writer this is).  So an empty output queue
  means everything reached the kernel, and what waits inside the layer is at most one batch
  of records (a few hundred KiB with a file being sent, as there is no ``sendfile``: file
  spans are read and encrypted a chunk at a time, under the queue's back-pressure).
* Interest: the layer answers the reactor's ``readable()``/``writable()`` for the channel
  (:meth:`TLSSocket.attach` installs its own as the channel's, with its read and write event
  handlers, which call the class's: channels without TLS run exactly as before, at no cost).
  During the handshake it wants to write while records wait for the kernel, else to read
  (OpenSSL's want-write and want-read).  After it, the channel's own answers count, except
  that the layer wants to write while records of its own wait (session tickets, a key
  update, ``close_notify``), stops reading while many do (a peer that makes us answer but
  never reads), and wants to read, not write, while a write waits for the peer (a
  renegotiation: the read that a write needs).
* Timeout: ``start_tls(..., timeout=s)`` bounds the handshake with the channel's one
  timeout (:meth:`~eventloop.Dispatcher.set_deadline`); the HTTP server instead counts the
  handshake in its head timeout.
* End: ``close_notify`` from the peer reads as an EOF; a peer that closes without it reads
  as an EOF too (a disconnect), with :attr:`TLSSocket.unclean_eof` set for protocols whose
  framing needs the close (a body read to the end of the connection is then truncated).

Server name indication, ALPN and certificates are the ``ssl.SSLContext`` 's business
(``set_alpn_protocols``, ``sni_callback``, ``load_cert_chain``); :meth:`TLSSocket.
selected_alpn_protocol`, ``version()``, ``cipher()`` and ``getpeercert()`` report them.

Programs that wrap their own sockets with ``ssl.wrap_socket``/``SSLContext.wrap_socket``
(asyncore programs such as pyftpdlib's TLS handlers) are unaffected: their channel's socket
is an ``ssl.SSLSocket``, which the reactor polls like any socket.
"""
import errno
import socket
import ssl

from .pollers import READ
from .transport import DISCONNECTED

__all__ = ["TLSSocket", "start_tls", "server_context", "client_context", "describe_tls_error"]

_PEEK = socket.MSG_PEEK


def server_context(certfile, keyfile=None, password=None, alpn=None):
    """A server-side context with the ssl module's secure defaults, TLS 1.2 or later, the
    certificate chain from ``certfile`` (and its key from ``keyfile``, or from ``certfile``
    when None), and ``alpn`` (a list of protocol names) offered.  Raises ``OSError`` or
    ``ssl.SSLError`` for unreadable or mismatched files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile, password)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def client_context(cafile=None, alpn=None):
    """A verifying client context (the system store, or ``cafile``), TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def describe_tls_error(exc):
    """A short reason for a TLS failure, naming the usual mistakes."""
    reason = getattr(exc, "reason", None)
    if reason == "HTTP_REQUEST":
        return "a plain HTTP request on the TLS port"
    if reason == "WRONG_VERSION_NUMBER":
        return "not TLS (wrong version number: a plain-text client?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate verification failed: %s" % (exc.verify_message or reason)
    if isinstance(exc, ssl.SSLEOFError):
        return "the peer closed the connection"
    if reason:
        return reason.replace("_", " ").lower()
    return str(exc) or type(exc).__name__


class TLSSocket:
    """A channel's socket seen through TLS (see the module docstring).

    It has the socket methods channels use (``recv``, ``send``, ``shutdown``, ``close``,
    ``fileno``, options and addresses) and, as the writer of an
    :class:`~eventloop.OutputQueue`, ``send`` only (no ``sendmsg``, no ``sendfile``).
    ``raw`` is the TCP socket underneath.
    """

    #: Plaintext bytes encrypted per batch of records handed to the kernel.
    write_size = 128 << 10
    #: Bytes asked of the socket per read.
    read_size = 128 << 10
    #: Records of the layer's own (not the channel's data) that may wait before reading stops.
    own_backlog_limit = 64 << 10

    def __init__(self, raw, context, channel=None, *, server_side=False, server_hostname=None):
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # The engine is made when the handshake starts: on the server side, with the first
        # bytes of the ClientHello, so that a client that says nothing costs no TLS state.
        self.sslobj = None
        self.context = context
        self.server_hostname = server_hostname
        self.channel = channel
        self.server_side = server_side
        self.handshaking = True
        self.unclean_eof = False     # the peer closed without close_notify
        self._backlog = b""          # records the kernel has not taken yet
        self._inflight = 0           # plaintext bytes whose records are in the backlog
        self._eof = False            # the socket reported EOF
        self._ended = False          # the engine reported the end (close_notify, or an EOF)
        self._eof_told = False       # recv has returned b"" for it
        self._write_needs_read = False
        self._shut_wr = False        # shut down the TCP sending side once the backlog is out
        self._delivery = None        # a read event queued for input the layer holds
        self._deadline_set = False

    def __repr__(self):
        state = "handshaking" if self.handshaking else (self.version() or "open")
        return "<TLSSocket fd=%s %s>" % (self.fileno(), state)

    # ------------------------------------------------------------ the socket's face
    def fileno(self):
        return self.raw.fileno()

    def getpeername(self):
        return self.raw.getpeername()

    def getsockname(self):
        return self.raw.getsockname()

    def getsockopt(self, *args):
        return self.raw.getsockopt(*args)

    def setsockopt(self, *args):
        return self.raw.setsockopt(*args)

    def setblocking(self, flag):
        if flag:
            raise ValueError("a TLS layer on the reactor needs a non-blocking socket")
        self.raw.setblocking(False)

    def getblocking(self):
        return self.raw.getblocking()

    def gettimeout(self):
        return self.raw.gettimeout()

    @property
    def family(self):
        return self.raw.family

    @property
    def type(self):
        return self.raw.type

    # What the handshake settled.
    def selected_alpn_protocol(self):
        return self.sslobj.selected_alpn_protocol() if self.sslobj else None

    def version(self):
        return self.sslobj.version() if self.sslobj else None

    def cipher(self):
        return self.sslobj.cipher() if self.sslobj else None

    def getpeercert(self, binary_form=False):
        return self.sslobj.getpeercert(binary_form) if self.sslobj else None

    def pending(self):
        """Bytes the layer holds for the reader: decrypted, or received and not yet decrypted."""
        return (self.sslobj.pending() if self.sslobj else 0) + self._incoming.pending

    def holds_input(self):
        """True while a ``recv`` would return something without the socket (data or an EOF)."""
        if self.handshaking:
            return False
        return bool(self.sslobj.pending() or self._incoming.pending or
                    ((self._eof or self._ended) and not self._eof_told))

    # ------------------------------------------------------------------- reading
    def recv(self, bufsize, flags=0):
        """Up to ``bufsize`` decrypted bytes; ``b""`` at the end (close_notify, or an EOF with
        :attr:`unclean_eof` set).  ``BlockingIOError`` while no whole record is here (or the
        handshake is still going on).  ``MSG_PEEK`` peeks at the socket itself (whether the
        peer is still there), other flags are ignored: the socket is non-blocking."""
        if flags & _PEEK:
            return self.raw.recv(bufsize, flags)
        if self.handshaking:
            self._fill()
            if not self._handshake():
                raise BlockingIOError(errno.EAGAIN, "TLS handshake in progress")
        if self._write_needs_read:
            self._write_needs_read = False
            self._changed()
        if self._ended:
            self._eof_told = True
            return b""
        sslobj = self.sslobj
        incoming = self._incoming
        if not incoming.pending and not sslobj.pending() and not self._eof:
            self._fill()                    # (an SSLWantReadError saved: exceptions cost)
        read = sslobj.read
        pieces = []
        got = 0
        ended = False
        while got < bufsize:
            try:
                data = read(bufsize - got)
            except ssl.SSLWantReadError:
                if self._eof or not self._fill():
                    break
                continue
            except ssl.SSLZeroReturnError:
                ended = self._ended = True  # close_notify: the clean end
                break
            except ssl.SSLEOFError:
                ended = self._ended = self.unclean_eof = True
                break
            except ssl.SSLError as exc:
                self._failed(exc)
            if not data:
                ended = self._ended = True  # (how the engine reports close_notify, mostly)
                break
            pieces.append(data)
            got += len(data)
            if not incoming.pending and not sslobj.pending():
                break                       # all read: the next read would only raise
        if self._outgoing.pending:
            try:
                self._flush()               # what reading made the engine say (tickets, ...)
            except OSError:
                if not ended:
                    raise                   # (at the end, the peer may be gone: that is it)
        if got:
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if ended or self._eof or self._ended:
            self._eof_told = True
            return b""
        raise BlockingIOError(errno.EAGAIN, "no whole TLS record yet")

    def _fill(self):
        """One read of the socket into the engine: False when the kernel had nothing."""
        try:
            data = self.raw.recv(self.read_size)
        except (BlockingIOError, InterruptedError):
            return False
        if data:
            self._incoming.write(data)
        else:
            self._eof = True
            self._incoming.write_eof()
        return True

    # ------------------------------------------------------------------- writing
    def send(self, data, flags=0):
        """Encrypt and send from ``data``: the bytes whose records are all in the kernel
        (``BlockingIOError`` for none).  After a partial send, offer the same bytes again."""
        if self.handshaking:
            raise BlockingIOError(errno.EAGAIN, "TLS handshake in progress")
        sent = 0
        if self._backlog or self._outgoing.pending:
            if not self._flush():
                raise BlockingIOError(errno.EAGAIN, "TLS records wait for the kernel")
            sent, self._inflight = self._inflight, 0
        total = len(data)
        if sent < total:
            step = self.write_size
            if sent or total > step:
                view = data if type(data) is memoryview else memoryview(data)
                if view.format != "B":
                    view = view.cast("B")
            else:
                view = data                 # one batch: the engine takes it as it is
            write = self.sslobj.write
            while sent < total:
                piece = view[sent:sent + step] if sent or total > step else view
                try:
                    write(piece)
                except ssl.SSLWantReadError:
                    self._write_needs_read = True
                    self._changed()
                    break
                except ssl.SSLError as exc:
                    self._failed(exc)
                if not self._flush():
                    self._inflight = len(piece)
                    break
                sent += len(piece)
        if not sent:
            raise BlockingIOError(errno.EAGAIN, "TLS records wait for the kernel")
        return sent

    def _flush(self):
        """Hand the engine's records to the kernel: True once none wait.  Errors of the
        socket (the peer gone) propagate."""
        backlog = self._backlog
        outgoing = self._outgoing
        if outgoing.pending:
            more = outgoing.read()
            backlog = bytes(backlog) + more if backlog else more
        if not backlog:
            return True
        try:
            n = self.raw.send(backlog)
        except (BlockingIOError, InterruptedError):
            n = 0
        had = bool(self._backlog)
        if n < len(backlog):
            self._backlog = memoryview(backlog)[n:]
            if not had:
                self._changed()
            return False
        self._backlog = b""
        if had:
            self._changed()
        if self._shut_wr:
            self._shut_wr = False
            try:
                self.raw.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return True

    # ----------------------------------------------------------------- handshake
    def _handshake(self):
        """Take the handshake a step on: True once complete.  A failure goes to the channel's
        ``handle_tls_error`` and raises ConnectionAbortedError (a disconnect)."""
        sslobj = self.sslobj
        if sslobj is None:
            if self.server_side and not self._incoming.pending and not self._eof:
                return False                # no ClientHello yet: nothing to do, nothing held
            sslobj = self.sslobj = self.context.wrap_bio(
                self._incoming, self._outgoing, server_side=self.server_side,
                server_hostname=self.server_hostname)
        try:
            sslobj.do_handshake()
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLError as exc:
            try:
                self._flush()               # the alert that tells the peer why
            except OSError:
                pass
            self._failed(exc, handshake=True)
        else:
            done = True
        self._flush()
        if not done:
            return False
        self.handshaking = False
        channel = self.channel
        if self._deadline_set:
            self._deadline_set = False
            channel.set_deadline(None)
        self._changed()
        channel.handle_tls_ready()
        return True

    def _failed(self, exc, handshake=False):
        channel = self.channel
        if channel is not None:
            channel.handle_tls_error(exc, handshake)
        raise ConnectionAbortedError(errno.ECONNABORTED, "TLS %s: %s" % (
            "handshake failed" if handshake else "error", describe_tls_error(exc)))

    # ------------------------------------------------------------------- the end
    def shutdown(self, how):
        """``SHUT_WR``/``SHUT_RDWR``: send ``close_notify``, then shut down the TCP side once
        it is in the kernel.  ``SHUT_RD`` goes to the socket."""
        if how == socket.SHUT_RD:
            return self.raw.shutdown(how)
        self._notify_close()
        if self._flush():
            self.raw.shutdown(how)
        else:
            self._shut_wr = True

    def _notify_close(self):
        if self.handshaking:
            return
        try:
            self.sslobj.unwrap()
        except (ssl.SSLError, ValueError):
            pass            # (want-read: we do not wait for the peer's close_notify)

    def discard_output(self):
        """The channel closes with output unsent: no ``close_notify`` then, so that the peer
        sees the end as abrupt (a truncation), not as the end of the data."""
        self._truncated = True

    _truncated = False

    def close(self):
        """Send ``close_notify`` (if the kernel takes it now, and the channel's output was all
        sent) and close the socket."""
        self.detach()
        if not self._inflight and not self._truncated:
            self._notify_close()
            try:
                self._flush()
            except OSError:
                pass
        self._backlog = b""
        self.raw.close()

    # ------------------------------------------------------ the channel above
    def attach(self, channel):
        """Serve ``channel`` from now on: it reads and writes through this layer, which answers
        the reactor for it first (its readable/writable and event handlers; see "Interest").
        A connection kept idle (a client's pool) is attached to the next request's channel."""
        self.channel = channel
        channel.socket = self
        channel.readable = self.readable
        channel.writable = self.writable
        channel.handle_read_event = self.handle_read_event
        channel.handle_write_event = self.handle_write_event
        channel.interest_changed()

    def detach(self):
        """Serve no channel (the connection is closing, or waits idle in a pool)."""
        channel, self.channel = self.channel, None
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            delivery.cancel()
        if channel is not None:
            for name in ("readable", "writable", "handle_read_event", "handle_write_event"):
                channel.__dict__.pop(name, None)

    def _changed(self):
        channel = self.channel
        if channel is not None:
            channel.interest_changed()

    # ---------------------------------------- what the reactor asks of the channel
    # start_tls() installs these as the channel's own readable/writable and event handlers;
    # the class's methods (the channel's own answers) are called from them.
    def readable(self):
        channel = self.channel
        if channel is None:
            return False
        if self.handshaking:
            return not self._backlog
        if self._write_needs_read:
            return True
        if self._backlog and not self._inflight and len(self._backlog) > self.own_backlog_limit:
            return False
        wanted = type(channel).readable(channel)
        if wanted and self._delivery is None and self.holds_input():
            self._deliver_soon()
        return wanted

    def writable(self):
        channel = self.channel
        if channel is None:
            return False
        if self.handshaking:
            return bool(self._backlog)
        if self._backlog:
            return True
        if self._write_needs_read:
            return False
        return type(channel).writable(channel)

    def handle_read_event(self):
        channel = self.channel
        if channel is None:
            return
        if self.handshaking:
            self._fill()
            if not self._handshake() or not self.holds_input():
                return
        if self._write_needs_read:
            self._write_needs_read = False  # the read a write waited for (renegotiation)
            self._changed()
            if not type(channel).readable(channel):
                self._fill()
                return
        elif not type(channel).readable(channel):
            return
        type(channel).handle_read_event(channel)
        if self.channel is channel and self._delivery is None and self.holds_input() \
                and type(channel).readable(channel):
            self._deliver_soon()

    def handle_write_event(self):
        channel = self.channel
        if channel is None:
            return
        if self.handshaking:
            if self._flush():
                self._handshake()
            return
        if self._backlog and not self._inflight and not self._flush():
            return
        if type(channel).writable(channel):
            type(channel).handle_write_event(channel)

    def _deliver_soon(self):
        self._delivery = self.channel.reactor.call_soon(self._deliver)

    def _deliver(self):
        """A read event for the input the layer holds, delivered as the poller's are."""
        self._delivery = None
        channel = self.channel
        if channel is None:
            return
        fd = channel._fileno
        if fd is None or channel._map.get(fd) is not channel or not self.holds_input():
            return
        channel.reactor.deliver(channel, fd, READ)


def start_tls(channel, context, server_side=False, server_hostname=None, timeout=None):
    """Put a :class:`TLSSocket` between ``channel`` and its socket and start the handshake
    (the implementation of :meth:`eventloop.Dispatcher.start_tls`)."""
    raw = channel.socket
    if isinstance(raw, (TLSSocket, ssl.SSLSocket)):
        raise ValueError("%r already speaks TLS" % (channel,))
    raw.setblocking(False)
    tls = TLSSocket(raw, context, channel, server_side=server_side,
                    server_hostname=server_hostname)
    out = channel._out
    if out is not None and hasattr(out.writer, "sendfile"):
        out.writer = tls                    # a socket writer: it would bypass the layer
    tls.attach(channel)
    if timeout is not None:
        channel.set_deadline(timeout)
        tls._deadline_set = True
    try:
        if server_side:
            tls._fill()                     # the ClientHello is often here already
        tls._handshake()
    except OSError as exc:
        if exc.errno not in DISCONNECTED:
            raise
        channel.handle_close()
    return tls
