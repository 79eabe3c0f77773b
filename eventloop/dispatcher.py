"""Channels: a socket plus the handlers the reactor calls when it is ready.

:class:`Dispatcher` has asyncore's vocabulary and lifecycle.  Its four booleans encode
one state at a time::

    fresh --connect()--> connecting --writable/readable--> connected --close()--> closed
    fresh --listen()---> accepting ----------------------------------> close() --> closed
    accepted socket ---------------> connected

``closing`` is asyncore's spare flag (set by nobody, read by some subclasses).

Unlike asyncore's ``dispatcher``, a native channel asks for write readiness only while a
connect is pending (subclasses with output queues add "while output is queued"), so an
idle channel costs nothing; errors go to :mod:`logging`; and a peer that shuts down its
sending side calls :meth:`Dispatcher.handle_eof`, which a channel may override to keep
writing on the half-closed connection.
"""
import errno
import logging
import os
import socket
import ssl
from socket import AF_INET, SOCK_STREAM
import sys
import warnings

from .reactor import ExitNow, get_reactor, static_interest
from .tls import describe_tls_error, start_tls as _start_tls
from .transport import DISCONNECTED, OutputQueue

__all__ = ["Dispatcher", "Listener", "DispatcherWithSend", "format_address", "FileWrapper", "FileDispatcher",
           "compact_traceback", "strerror"]

log = logging.getLogger("eventloop")

_RESOURCE_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_CONNECT_PENDING = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK})


def strerror(err):
    """A message for an errno value, never failing (unknown values get a generic text)."""
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        if err in errno.errorcode:
            return errno.errorcode[err]
        return "Unknown error %s" % err


def compact_traceback():
    """The current exception as ``((file, function, line), type, value, info)``, where
    ``info`` lists every frame as ``[file|function|line]``."""
    exc_type, exc_value, tb = sys.exc_info()
    if tb is None:
        raise AssertionError("traceback does not exist")
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    info = " ".join("[%s|%s|%s]" % frame for frame in frames)
    return frames[-1], exc_type, exc_value, info


def _owner_closed():
    """The callback of a timer whose channel has closed (it no longer fires for it)."""


class Dispatcher:
    """A channel on the reactor: subclass it and override the ``handle_*`` methods.

    ``map`` is the channel map to live in (default: the default reactor's).
    """

    debug = False
    connected = False
    accepting = False
    connecting = False
    closing = False
    addr = None
    reading = True          # False while paused by pause_reading()
    eof_received = False    # the peer shut down its sending side
    ignore_log_types = frozenset({"warning"})
    socket = None
    _backoff = None
    idle_timeout = None     # seconds without I/O before handle_idle_timeout (set_idle_timeout)
    _deadline = None        # the fixed clock time of set_deadline, if that is the timeout
    _idle = None            # the timer behind either
    _fileno = None
    _timers = None
    _out = None             # the channel's OutputQueue, once it has output (subclasses make it)

    def __init__(self, sock=None, map=None):
        self._map = self._default_map() if map is None else map
        self._fileno = None
        if sock is not None:
            sock.setblocking(False)
            self.set_socket(sock, map)
            self.connected = True
            try:
                self.addr = sock.getpeername()
            except OSError as err:
                if err.errno in (errno.ENOTCONN, errno.EINVAL):
                    # An unconnected socket (e.g. a datagram socket) is still a fine channel.
                    self.connected = False
                else:
                    self.del_channel(map)
                    raise
        else:
            self.socket = None

    @staticmethod
    def _default_map():
        return get_reactor().map

    @property
    def reactor(self):
        """The reactor whose map this channel lives in (the default one for plain dicts)."""
        return getattr(self._map, "reactor", None) or get_reactor()

    def __repr__(self):
        cls = type(self)
        status = [cls.__module__ + "." + cls.__qualname__]
        if self.accepting and self.addr:
            status.append("listening")
        elif self.connected:
            status.append("connected")
        if self.addr is not None:
            try:
                status.append("%s:%d" % self.addr)
            except TypeError:
                status.append(repr(self.addr))
        return "<%s at %#x>" % (" ".join(status), id(self))

    # ------------------------------------------------------------ the map
    def add_channel(self, map=None):
        if map is None:
            map = self._map
        map[self._fileno] = self

    def del_channel(self, map=None):
        fd = self._fileno
        if map is None:
            map = self._map
        if fd in map:
            del map[fd]
        self._fileno = None

    def interest_changed(self):
        """Tell the reactor that readable()/writable() may answer differently now."""
        touch = getattr(self._map, "touch", None)
        if touch is not None and self._fileno is not None:
            touch(self._fileno)

    # --------------------------------------------------------- the socket
    def create_socket(self, family=AF_INET, type=SOCK_STREAM):
        """Create a non-blocking socket for this channel and add the channel to its map."""
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock, map=None):
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self):
        """Set SO_REUSEADDR so a restarted server can bind its port at once."""
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,
                                   self.socket.getsockopt(socket.SOL_SOCKET,
                                                          socket.SO_REUSEADDR) | 1)
        except OSError:
            pass

    # ------------------------------------------------- interest (static)
    @static_interest
    def readable(self):
        """Whether to watch for input: while reading is not paused and no EOF was seen."""
        return self.reading and not self.eof_received

    @static_interest
    def writable(self):
        """Whether to watch for output readiness: while a connect is pending, and while output
        is queued (subclasses that write keep theirs in ``_out``, an OutputQueue)."""
        return self.connecting or bool(self._out)

    @property
    def queued_bytes(self):
        """Bytes queued for the kernel and not yet taken (see :class:`~eventloop.OutputQueue`)."""
        out = self._out
        return out.size if out is not None else 0

    def pause_reading(self):
        """Stop watching for input (back-pressure); :meth:`resume_reading` undoes it."""
        if self.reading:
            self.reading = False
            self.interest_changed()

    def resume_reading(self):
        if not self.reading:
            self.reading = True
            self.interest_changed()

    # --------------------------------------------------- socket methods
    def listen(self, num):
        self.accepting = True
        self.interest_changed()
        if os.name == "nt" and num > 5:
            num = 5
        return self.socket.listen(num)

    def bind(self, addr):
        self.addr = addr
        return self.socket.bind(addr)

    def connect(self, address):
        """Start a non-blocking connect; ``handle_connect`` runs once it completes."""
        self.connected = False
        self.connecting = True
        self.interest_changed()
        err = self.socket.connect_ex(address)
        if err in _CONNECT_PENDING or (err == errno.EINVAL and os.name in ("nt", "ce")):
            self.addr = address
            return
        if err in (0, errno.EISCONN):
            self.addr = address
            self.handle_connect_event()
        else:
            raise OSError(err, errno.errorcode.get(err, strerror(err)))

    def accept(self):
        """Accept one pending connection: ``(sock, addr)``, or None when there is none."""
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            return None
        except OSError as why:
            if why.errno in (errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EAGAIN):
                return None
            raise
        return conn, addr

    def send(self, data):
        """Send what the socket takes now; 0 when it would block or the peer is gone."""
        try:
            return self.socket.send(data)
        except OSError as why:
            if why.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                return 0
            if why.errno in DISCONNECTED:
                self.handle_close()
                return 0
            raise

    def recv(self, buffer_size):
        """Receive up to ``buffer_size`` bytes; ``b''`` after the peer closed (see handle_eof)."""
        try:
            data = self.socket.recv(buffer_size)
        except OSError as why:
            if why.errno in DISCONNECTED:
                self.handle_close()
                return b""
            raise
        if not data:
            self.handle_eof()
            return b""
        return data

    def close(self):
        """Leave the map, drop queued output (closing the files and producers in it), cancel
        the channel's timers and close the socket."""
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        out = self._out
        if out is not None:
            self._out = None
            if out.pending:
                out.clear()
                discard = getattr(self.socket, "discard_output", None)
                if discard is not None:
                    discard()           # a TLS layer: the end is abrupt, no close_notify
        timers = self._timers
        if timers:
            self._timers = None
            for timer in timers:
                timer.cancel()
                # A cancelled timer waits in the heap until its deadline, and its callback
                # and args refer to this channel: drop them, so a closed channel is freed at
                # once by refcounting, neither kept alive by the heap nor left to the cyclic GC.
                timer.callback = _owner_closed
                timer.args = ()
                timer.owner = None
        self._idle = None
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as why:
                if why.errno not in (errno.ENOTCONN, errno.EBADF):
                    raise

    # ------------------------------------------------------ timers
    def call_later(self, delay, callback, *args):
        """A timer owned by this channel: cancelled automatically when the channel closes, and
        an exception from its callback goes to the channel's ``handle_error``."""
        timer = self.reactor.call_later(delay, callback, *args)
        timer.owner = self
        timers = self._timers
        if timers is None:
            self._timers = [timer]
        else:
            if len(timers) >= 8:
                # Forget the timers that fired (one-shots are done with); the list stays short.
                timers[:] = [t for t in timers if t.pending]
            timers.append(timer)
        return timer

    def set_idle_timeout(self, seconds):
        """Call :meth:`handle_idle_timeout` after ``seconds`` without I/O (None: never).

        Each read or write event moves the deadline.  A channel has one timeout: this
        replaces any set before, as :meth:`set_deadline` does.
        """
        self.idle_timeout = seconds
        self._deadline = None
        if seconds is not None:
            self._last_activity = now = self.reactor.clock()
            self.rearm_timeout(now + seconds)

    def set_deadline(self, seconds):
        """Call :meth:`handle_idle_timeout` ``seconds`` from now whatever I/O happens (None:
        never): a bound on a whole step, such as a request head that may not trickle in."""
        self.idle_timeout = None
        if seconds is None:
            self._deadline = None
            return
        self._deadline = self.reactor.clock() + seconds
        self.rearm_timeout(self._deadline)

    def note_activity(self):
        """Record I/O for the idle timeout (the event handlers do this)."""
        self._last_activity = self.reactor.clock()

    def timeout_due(self):
        """When the channel's timeout expires (reactor clock), or None for never.

        The one timer behind every timeout asks this only when it fires, and fires again
        later if the answer moved: so a channel whose deadline follows its state (as the
        HTTP server's does) overrides this, and calls :meth:`rearm_timeout` only when a
        deadline may come sooner than the one the timer waits for.
        """
        if self._deadline is not None:
            return self._deadline
        if self.idle_timeout is not None:
            return self._last_activity + self.idle_timeout
        return None

    def rearm_timeout(self, when):
        """Make sure the timeout timer fires no later than clock time ``when`` (cheap when
        it already does: busy channels cost no heap operations)."""
        timer = self._idle          # (set only while pending: _check_idle and close clear it)
        if timer is not None:
            if timer.when <= when:
                return
            timer.cancel()
        self._idle = self.call_later(max(when - self.reactor.clock(), 0.0), self._check_idle)

    def _check_idle(self):
        self._idle = None
        due = self.timeout_due()
        if due is None:
            return
        if self.reactor.clock() >= due:
            self.idle_timeout = self._deadline = None
            self.handle_idle_timeout()
        else:
            self.rearm_timeout(due)

    def handle_idle_timeout(self):
        """The timeout set with :meth:`set_idle_timeout` or :meth:`set_deadline` passed: by
        default, close."""
        log.info("%r timed out, closing", self)
        self.handle_close()

    # ------------------------------------------------------ logging
    def log(self, message):
        log.debug("%s", message)

    def log_info(self, message, type="info"):
        if type in self.ignore_log_types:
            return
        level = {"info": logging.INFO, "warning": logging.WARNING,
                 "error": logging.ERROR}.get(type, logging.INFO)
        log.log(level, "%s", message)

    # ------------------------------------------- events from the reactor
    def handle_read_event(self):
        if self.idle_timeout is not None:
            self._last_activity = self.reactor.clock()
        if self.accepting:
            self.handle_accept()
        elif not self.connected:
            if self.connecting:
                self.handle_connect_event()
            self.handle_read()
        else:
            self.handle_read()

    def handle_connect_event(self):
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False
        self.interest_changed()

    def handle_write_event(self):
        if self.idle_timeout is not None:
            self._last_activity = self.reactor.clock()
        if self.accepting:
            return          # listeners are never write-registered; a stray event means nothing
        if not self.connected:
            if self.connecting:
                self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self):
        # Either an error is pending on the socket, or urgent (out-of-band) data arrived.
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self.handle_close()
        else:
            self.handle_expt()

    # ---------------------------------------------- overridable handlers
    def handle_error(self):
        """An exception escaped a handler: log it with its traceback and close this channel."""
        log.error("uncaptured exception in %s, closing it", self._safe_repr(), exc_info=True)
        self.handle_close()

    def _safe_repr(self):
        try:
            return repr(self)
        except Exception:
            return "<__repr__(self) failed for object at %0x>" % id(self)

    def handle_expt(self):
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self):
        self.log_info("unhandled read event", "warning")

    def handle_write(self):
        self.log_info("unhandled write event", "warning")

    def handle_connect(self):
        self.log_info("unhandled connect event", "warning")

    #: Connections accepted per readiness event (asyncore accepted one).
    accept_batch = 16
    #: Seconds to stop accepting after running out of descriptors; doubles up to 2 s.
    accept_backoff = 0.05

    def handle_accept(self):
        """Accept up to ``accept_batch`` pending connections, each to ``handle_accepted``."""
        for _ in range(self.accept_batch):
            try:
                pair = self.accept()
            except OSError as exc:
                if exc.errno in _RESOURCE_SHORTAGE:
                    self.handle_accept_shortage(exc)
                    return
                raise
            if pair is None:
                return
            self.handle_accepted(*pair)
        self._backoff = None

    def handle_accept_shortage(self, exc):
        """accept() failed for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).

        Existing connections keep being served; the listener stops accepting for a short,
        growing pause instead of spinning at 100% CPU on a backlog it cannot take.
        """
        delay = self._backoff = min((self._backoff or self.accept_backoff / 2) * 2, 2.0)
        log.warning("%s: accept failed (%s); retrying in %.2fs", self._safe_repr(),
                    exc.strerror or exc, delay)
        self.pause_reading()
        self.call_later(delay, self.resume_reading)

    def handle_accepted(self, sock, addr):
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_eof(self):
        """The peer shut down its sending side (recv returned b'').  By default, close.

        Override to finish writing first; reading stops until the channel closes.
        """
        self.eof_received = True
        self.interest_changed()
        self.handle_close()

    def handle_close(self):
        self.log_info("unhandled close event", "warning")
        self.close()

    # ------------------------------------------------------------------ TLS
    def start_tls(self, context, *, server_side=False, server_hostname=None, timeout=None):
        """Speak TLS on this connected channel from now on (see :mod:`eventloop.tls`):
        ``self.socket`` becomes a :class:`~eventloop.tls.TLSSocket` through which the
        channel's reads and writes go, and the handshake starts.  ``context`` is an
        ``ssl.SSLContext``; ``server_hostname`` names the server to verify and to ask for
        (SNI) on the client side; ``timeout`` bounds the handshake (the channel's one
        timeout, :meth:`set_deadline`).  :meth:`handle_tls_ready` runs once it is complete.
        Returns the TLSSocket."""
        return _start_tls(self, context, server_side, server_hostname, timeout)

    def handle_tls_ready(self):
        """The TLS handshake is complete (the channel's data flows from now on)."""

    def handle_tls_error(self, exc, handshake):
        """The TLS layer failed with ``exc`` (an ``ssl.SSLError``; ``handshake``: during the
        handshake): one log line.  The connection then counts as lost (``handle_close``)."""
        peer = self.addr
        try:
            peer = format_address(peer)
        except (TypeError, IndexError):
            pass
        level = logging.INFO if isinstance(exc, ssl.SSLEOFError) else logging.WARNING
        log.log(level, "TLS %s with %s: %s", "handshake failed" if handshake else "error",
                peer, describe_tls_error(exc))


class Listener(Dispatcher):
    """A listening TCP socket on ``(host, port)``: subclass it and define ``handle_accepted``.

    IPv6 when ``host`` is an IPv6 address; port 0 picks a free port (see ``self.port``).
    Raises :class:`OSError` (with the socket closed) when the address cannot be bound.
    """

    def __init__(self, host="", port=0, *, backlog=socket.SOMAXCONN, map=None):
        Dispatcher.__init__(self, map=map)
        self.create_socket(socket.AF_INET6 if ":" in host else socket.AF_INET, SOCK_STREAM)
        try:
            self.set_reuse_addr()
            self.bind((host, port))
            self.listen(backlog)
        except OSError:
            self.close()
            raise
        self.address = self.socket.getsockname()
        self.port = self.address[1]


def format_address(addr):
    """``host:port`` for a socket address, with IPv6 hosts in brackets."""
    host, port = addr[0], addr[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class DispatcherWithSend(Dispatcher):
    """A dispatcher whose :meth:`send` queues output and writes it as the socket allows.

    The output waits in an :class:`~eventloop.transport.OutputQueue` (the one output path every
    channel shares), made when first needed and dropped at close; the channel asks for write
    readiness exactly while it holds something.
    """

    out_chunk = 65536       # most bytes offered to one send()

    def _output(self):
        out = self._out
        if out is None:
            out = self._out = OutputQueue(self, _BaseSend(self), chunk=self.out_chunk)
        return out

    @property
    def out_buffer(self):
        """The unsent output as bytes (compatibility view; assigning replaces it)."""
        out = self._out
        if not out:
            return b""
        return b"".join(bytes(item) for item in out.items)

    @out_buffer.setter
    def out_buffer(self, data):
        out = self._output()
        out.clear()
        if data:
            out.append(bytes(data))
        self.interest_changed()

    def initiate_send(self):
        """Send what is queued, as far as the socket takes it now."""
        out = self._out
        if out:
            out.flush()

    def handle_write(self):
        self.initiate_send()

    def send(self, data):
        """Queue ``data`` and try to send at once."""
        if self.debug:
            self.log_info("sending %r" % (data,))
        if data:
            self._output().write(data)

class _BaseSend:
    """The writer of a DispatcherWithSend: asyncore sends its queue with the base class's
    ``send`` (the subclass's own ``send`` is the one that queues)."""

    __slots__ = ("channel",)

    def __init__(self, channel):
        self.channel = channel

    def send(self, data):
        return Dispatcher.send(self.channel, data)


class FileWrapper:
    """A file descriptor with the socket methods asyncore uses (recv/send/close/fileno).

    It owns a duplicate of the descriptor it is given.
    """

    def __init__(self, fd):
        self.fd = os.dup(fd)

    def __del__(self):
        if self.fd >= 0:
            warnings.warn("unclosed file %r" % self, ResourceWarning, source=self)
        self.close()

    def recv(self, *args):
        return os.read(self.fd, *args)

    def send(self, *args):
        return os.write(self.fd, *args)

    def getsockopt(self, level, optname, buflen=None):
        if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
            return 0
        raise OSError(errno.ENOTSOCK, "a file has no socket option %r" % (optname,))

    read = recv
    write = send

    def close(self):
        if self.fd < 0:
            return
        fd = self.fd
        self.fd = -1
        os.close(fd)

    def fileno(self):
        return self.fd

    def setblocking(self, flag):
        os.set_blocking(self.fd, flag)


class FileDispatcher(Dispatcher):
    """A dispatcher over a file descriptor (a pipe, a terminal, a regular file)."""

    def __init__(self, fd, map=None):
        Dispatcher.__init__(self, None, map)
        self.connected = True
        try:
            fd = fd.fileno()
        except AttributeError:
            pass
        self.set_file(fd)
        os.set_blocking(fd, False)

    def set_file(self, fd):
        self.socket = FileWrapper(fd)
        self._fileno = self.socket.fileno()
        self.add_channel()


# Re-exported for callers that catch it from this module.
ExitNow = ExitNow
