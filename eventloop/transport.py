"""The one output path: where bytes wait before the kernel takes them.

Every channel that writes keeps its pending output in one :class:`OutputQueue`:
``DispatcherWithSend``, ``AsyncChat``, the HTTP server's channel and the HTTP client.  The queue
holds, in order:

* bytes-like pieces (bytes, bytearray, memoryview);
* producers: objects whose ``more()`` returns the next piece, ``b""`` when done (asynchat's);
* file spans: :class:`~eventloop.producers.FileProducer` (``count`` bytes of a file from
  ``offset``), sent with ``os.sendfile`` when the writer has it, else read and sent in pieces;
* close markers (:meth:`OutputQueue.close_when_done`): the owner's ``handle_close()`` runs once
  everything queued before the marker has been sent.

The rules, written once for every channel:

* A write goes out at once when nothing is queued before it; only what the kernel did not
  take waits.  :meth:`OutputQueue.flush` (the owner calls it when its socket is writable) sends
  from the head until the queue is empty, a send is partial (the kernel's buffer is full), or
  ``burst`` bytes went out, so that one busy channel cannot hold the loop.
* The owner wants write readiness exactly while output is queued: the queue calls its
  ``interest_changed()`` each time it turns from empty to not empty and back.
* Back-pressure: when the queued bytes rise above ``high_water`` the owner's
  ``pause_writing()`` is called, and when they fall to ``low_water`` its ``resume_writing()``
  (a high-water mark of 0 means "while anything is queued").
* A send that finds the peer gone (ECONNRESET, EPIPE, ...) calls the owner's
  ``handle_close()``, with the error in the queue's ``error`` for it to read; any other error
  propagates to the caller (from a reactor event, to the channel's ``handle_error()``).
* A file that shrinks while it is being sent cannot be completed honestly: that is logged as an
  error and the owner's ``handle_close()`` runs (the peer sees the connection end early).

The queue never touches a socket: it writes through a *writer*, an object with
``send(data) -> int`` (0, or ``BlockingIOError``, when the kernel takes nothing now) and,
optionally, ``send_more(data)`` (the same, hinting that more follows at once),
``sendmsg(buffers) -> int`` (gathered) and ``sendfile(fd, offset, count) -> int``.  A plain
socket's writer is :class:`SocketWriter`.  The TLS layer (:class:`eventloop.tls.TLSSocket`) is
another writer: its ``send`` encrypts and sends, counting bytes only once their records are in
the kernel (BlockingIOError while the layer waits; it tells the reactor itself whether for
readability or writability), and it has no ``sendfile`` (no kernel TLS), so file spans are read
``file_read_chunk`` bytes at a time and sent with the same back-pressure.  Nothing above the
writer changes.
"""
import errno
import logging
import os
import socket
from collections import deque

from .producers import FileProducer

__all__ = ["OutputQueue", "SocketWriter", "socket_writer", "DISCONNECTED"]

log = logging.getLogger("eventloop")

#: errno values meaning "the peer is gone": they close the channel, they are not errors.
DISCONNECTED = frozenset({errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                          errno.ECONNABORTED, errno.EPIPE, errno.EBADF})

_BYTES_LIKE = (bytes, bytearray, memoryview)


class SocketWriter:
    """A writer for a plain socket (see the module docstring).

    ``flags`` go with every send: ``MSG_DONTWAIT`` lets a channel write to a descriptor that is
    still in blocking mode (one system call less for a connection answered at once);
    ``sendfile``, which takes no flags, then puts the descriptor in non-blocking mode first.
    Without flags, ``send`` is the socket's own method (see :func:`socket_writer`).
    """

    __slots__ = ("sock", "flags", "__weakref__")

    def __init__(self, sock, flags=0):
        self.sock = sock
        self.flags = flags

    def send(self, data):
        return self.sock.send(data, self.flags)

    def send_more(self, data):
        return self.sock.send(data, self.flags | _MSG_MORE)

    def sendmsg(self, buffers):
        return self.sock.sendmsg(buffers, (), self.flags)

    def sendfile(self, fd, offset, count):
        sock = self.sock
        if self.flags and sock.getblocking():
            sock.setblocking(False)
        return os.sendfile(sock.fileno(), fd, offset, count)


class _PlainSocketWriter(SocketWriter):
    """A SocketWriter without flags whose ``send`` is the socket's own method, so that a send
    makes no Python call in between (it skips nothing: the flags it would pass are 0)."""

    __slots__ = ("send",)

    def __init__(self, sock):
        SocketWriter.__init__(self, sock)
        self.send = sock.send


def socket_writer(sock, flags=0):
    """The writer for ``sock`` with ``flags``: a :class:`SocketWriter`."""
    return SocketWriter(sock, flags) if flags else _PlainSocketWriter(sock)


class OutputQueue:
    """A channel's pending output and the rules for sending it (see the module docstring).

    ``owner`` gets ``interest_changed()``, ``handle_close()`` and, if it has them,
    ``pause_writing()`` / ``resume_writing()``: always at the end of one of the queue's
    methods, never in the middle, so an owner may write again from any of them.  ``chunk``
    caps the bytes offered to one send (None: whole pieces).  ``size`` counts the bytes queued
    for the kernel, which is what the water marks watch: pieces, the unsent part of file
    spans, and what producers have produced but not yet sent; :attr:`held` is the part of it
    held in memory.
    """

    __slots__ = ("owner", "writer", "size", "_items", "pending", "_paused", "__dict__",
                 "__weakref__")

    #: Most bytes one :meth:`flush` sends before it returns to the loop.
    burst = 4 << 20
    #: Most bytes asked of one ``sendfile`` call.
    file_chunk = 8 << 20
    #: Bytes of a file read at a time when the writer has no ``sendfile`` (TLS): what one
    #: connection holds of a file span in memory, at most.
    file_read_chunk = 256 << 10
    #: Why output ended, when a send found the peer gone (the OSError), for the owner's
    #: ``handle_close()`` to read; None otherwise.
    error = None
    # Settings (class defaults, given per queue or by a subclass; see the class docstring):
    chunk = None
    high_water = None
    low_water = 0
    encoding = None         # set to let str pieces through, encoded (asynchat's use_encoding)

    def __init__(self, owner, writer, *, chunk=None, high_water=None, low_water=0):
        self.owner = owner
        self.writer = writer
        self.size = 0
        self._items = None      # the deque, made when something first has to wait
        self.pending = False    # output is queued (as the owner was last told: see changed)
        self._paused = False    # pause_writing() was called, resume_writing() not yet
        if chunk is not None:
            self.chunk = chunk
        if high_water is not None:
            self.high_water = high_water
        if low_water:
            self.low_water = low_water

    def __bool__(self):
        return bool(self._items)

    def __len__(self):
        return len(self._items) if self._items else 0

    @property
    def held(self):
        """Bytes held in memory: the queued pieces (a file span holds none until it is read)."""
        return sum(len(item) for item in self._items or () if isinstance(item, _BYTES_LIKE))

    @property
    def items(self):
        """The queue itself (a deque), for code that inspects or edits it (asynchat's
        ``producer_fifo``).  Whoever edits it calls :meth:`changed` afterwards."""
        if self._items is None:
            self._items = deque()
        return self._items

    # --------------------------------------------------------------- writing
    def write(self, data):
        """Queue ``data`` (bytes-like), sending at once what the kernel takes if nothing is
        queued before it."""
        if self._items or (self.chunk is not None and len(data) > self.chunk):
            self._append(data)
            if len(self._items) == 1:
                self._send_some()
            self.changed()
            return
        try:
            sent = self.writer.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._send_failed(exc)
            return
        if sent != len(data):
            self._append(memoryview(data)[sent:] if sent else data)
            self.changed()

    def writev(self, buffers):
        """Queue several pieces, sent with one gathered system call when nothing is queued
        before them and the writer can gather."""
        sendmsg = getattr(self.writer, "sendmsg", None)
        if self._items or sendmsg is None:
            for data in buffers:
                self.write(data)
            return
        try:
            sent = sendmsg(buffers)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._send_failed(exc)
            return
        for data in buffers:
            n = len(data)
            if sent >= n:
                sent -= n
            else:
                self._append(memoryview(data)[sent:] if sent else data)
                sent = 0
        self.changed()

    def write_file(self, producer, head=b""):
        """Queue ``head`` then the file span ``producer`` (a FileProducer).  With nothing queued
        before them, the head and as much of the file as the kernel takes go out at once."""
        if head:
            if self._items:
                self._append(head)
            else:
                send_more = getattr(self.writer, "send_more", None) or self.writer.send
                try:
                    sent = send_more(head)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as exc:
                    producer.close()
                    self._send_failed(exc)
                    return
                if sent != len(head):
                    self._append(memoryview(head)[sent:])
        self._add(producer, producer.remaining)
        if self._items[0] is producer:
            self._send_some()
        self.changed()

    def append(self, data):
        """Queue ``data`` without trying to send it now (the owner is not connected yet)."""
        self._append(data)
        self.changed()

    def write_span(self, fd, offset, count, head=b""):
        """Queue ``head`` then ``count`` bytes of the open file ``fd`` from ``offset``.  ``fd``
        stays the caller's, who may close it once this returns: with nothing queued before,
        the head and as much of the file as the kernel takes go out now (``sendfile``), and
        only a rest is queued, from a duplicate of ``fd`` (OSError if none can be made)."""
        sent = 0
        sendfile = getattr(self.writer, "sendfile", None)
        if not self._items and sendfile is not None and count > 0:
            try:
                if head:
                    send_more = getattr(self.writer, "send_more", None) or self.writer.send
                    n = send_more(head)
                    head = memoryview(head)[n:] if n < len(head) else b""
                if not head:
                    sent = sendfile(fd, offset, count)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if exc.errno in DISCONNECTED or head:
                    self._send_failed(exc)
                    return
                # sendfile refused this pair of descriptors: the producer reads instead.
            if sent == count:
                return
        file = open(os.dup(fd), "rb", buffering=0)
        self.write_file(FileProducer(file, offset + sent, count - sent,
                                     chunk_size=65536 if sendfile else self.file_read_chunk),
                        head)

    def push_producer(self, producer):
        """Queue a producer; it is asked for data only when the kernel can take some."""
        self._add(producer, 0)
        if self._items[0] is producer:
            self._send_some()
        self.changed()

    def close_when_done(self):
        """Queue a close marker: the owner's ``handle_close()`` once all before it is sent."""
        self._add(None, 0)
        self.changed()

    def _append(self, data):
        if type(data) is memoryview and data.format != "B":
            data = data.cast("B")
        self._add(data, len(data))

    def _add(self, item, size):
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        self.size += size

    # --------------------------------------------------------------- sending
    def flush(self):
        """Send from the head of the queue until it is empty, a send is partial, or ``burst``
        bytes went out (the owner calls this when its socket is writable).  Returns True when
        nothing is left queued."""
        if self._items:
            self._send_some()
            self.changed()
        return not self._items

    def _send_some(self):
        """The sending loop of :meth:`flush`; the owner is told nothing here."""
        items = self._items
        budget = self.burst
        chunk = self.chunk
        send = self.writer.send
        while items and budget > 0:
            item = items[0]
            kind = type(item)
            if kind is str and self.encoding:
                item = items[0] = item.encode(self.encoding)
                kind = bytes
            if kind is bytes or kind is memoryview or kind is bytearray:
                if not item:
                    items.popleft()
                    continue
                piece = item if chunk is None or len(item) <= chunk else memoryview(item)[:chunk]
                try:
                    sent = send(piece)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    self._send_failed(exc)
                    return
                if not sent:
                    return
                if items is not self._items or not items or items[0] is not item:
                    return              # the send itself closed or reset the channel
                self.size -= sent
                budget -= sent
                if sent < len(item):
                    items[0] = (item if kind is memoryview else memoryview(item))[sent:]
                    if sent < len(piece):
                        return          # the kernel's buffer is full
                else:
                    items.popleft()
            elif item is None:
                items.popleft()
                self.changed()
                self.owner.handle_close()
                return
            elif kind is FileProducer:
                sent = self._send_file(item, budget)
                if sent < 0:
                    return
                budget -= sent
            else:
                data = item.more()
                if data:
                    if type(data) is str and self.encoding:
                        data = data.encode(self.encoding)
                    items.appendleft(data)
                    self.size += len(data)
                else:
                    items.popleft()

    def _send_file(self, producer, budget):
        """Send from the file span at the head: the bytes sent, or -1 to stop (the kernel is
        full, or the owner was closed)."""
        items = self._items
        if producer.remaining <= 0:
            producer.close()
            items.popleft()
            return 0
        sendfile = getattr(self.writer, "sendfile", None)
        if sendfile is not None and producer.use_sendfile:
            want = min(producer.remaining, self.file_chunk, budget)
            try:
                sent = sendfile(producer.fileno(), producer.offset, want)
            except (BlockingIOError, InterruptedError):
                return -1
            except OSError as exc:
                if exc.errno in DISCONNECTED:
                    self._send_failed(exc)
                    return -1
                # This pair of descriptors cannot use sendfile (e.g. an unusual file
                # system): read and send instead, from where it stopped.
                producer.use_sendfile = False
                return 0
            if sent == 0:
                return self._file_shrank(producer)
            producer.advance(sent)
            self.size -= sent
            if producer.remaining <= 0:
                producer.close()
                items.popleft()
            elif sent < want:
                return -1               # the kernel's buffer is full
            return sent
        try:
            data = producer.more()
        except EOFError:
            return self._file_shrank(producer)
        # The bytes move from the span to a piece at the head: the queued size is unchanged.
        if producer.remaining <= 0:
            producer.close()
            items.popleft()
        items.appendleft(data)
        return 0

    def _file_shrank(self, producer):
        log.error("%s shrank while being sent (%d bytes missing); closing the connection",
                  getattr(producer.file, "name", "a file"), producer.remaining)
        producer.close()
        self.owner.handle_close()
        return -1

    def _send_failed(self, exc):
        """A send raised: the peer is gone (close the owner), or it is an error (raise it)."""
        if exc.errno not in DISCONNECTED:
            raise exc
        # A copy: the error itself holds, in its traceback, the frames of the send, and they
        # hold this queue and its owner (a cycle that would keep a closed channel alive).
        self.error = OSError(exc.errno, exc.strerror)
        self.owner.handle_close()

    # ------------------------------------------------------------ bookkeeping
    def changed(self):
        """Tell the owner what changed since it was last told: output pending or not (its write
        interest), above high water or back to low water (back-pressure)."""
        pending = bool(self._items)
        if pending != self.pending:
            self.pending = pending
            self.owner.interest_changed()
        size = self.size
        if self._paused:
            if size <= self.low_water:
                self._paused = False
                resume = getattr(self.owner, "resume_writing", None)
                if resume is not None:
                    resume()
        elif self.high_water is not None and size > self.high_water:
            self._paused = True
            pause = getattr(self.owner, "pause_writing", None)
            if pause is not None:
                pause()

    def clear(self):
        """Drop everything queued, closing the producers and files among it.  The owner is not
        told: it is closing, or starting afresh."""
        items = self._items
        self._items = None
        self.size = 0
        self.pending = False
        self._paused = False
        for item in items or ():
            if item is not None and not isinstance(item, _BYTES_LIKE):
                closer = getattr(item, "close", None)
                if closer is not None:
                    try:
                        closer()
                    except Exception:
                        log.debug("error closing %r", item, exc_info=True)

    def __repr__(self):
        return "<OutputQueue %d items, %d bytes%s>" % (len(self), self.size,
                                                       ", paused" if self._paused else "")


_MSG_MORE = int(getattr(socket, "MSG_MORE", 0))     # an int: IntFlag arithmetic is slow
