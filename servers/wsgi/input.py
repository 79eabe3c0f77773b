"""``wsgi.input``: a request body that the reactor fills as it arrives and the application reads.

:class:`RequestBody` is the channel's body sink (``write``/``end``/``abort``, called on the
reactor thread) and the application's input stream (``read``/``readline``/``readlines``/
iteration, on its thread, blocking until the bytes it asks for have arrived).  The first
``spool_threshold`` bytes are kept in memory; the rest goes to an anonymous temporary file, so a
large upload costs disk, not memory (``--max-body`` bounds both: the channel's HTTP parser refuses
a body past it).  The first read asks the server, once, to send ``100 Continue`` (``on_first_read``),
for clients that wait for it before sending the body.
"""
import os
import tempfile
import threading

__all__ = ["RequestBody", "EMPTY_BODY", "ClientDisconnected"]

_BLOCK = 64 << 10


class ClientDisconnected(OSError):
    """The client went away: raised by ``wsgi.input`` reads and by the ``write()`` callable
    (the application may let it propagate; the server then closes the response's iterable)."""


class RequestBody:
    """A request body, fed by the reactor and read by the application (see the module docstring).

    ``early`` is the channel's question: hand the request to the application before the body is in.
    """

    def __init__(self, early, spool_threshold, on_first_read=None):
        self.early = early
        self._threshold = spool_threshold
        self._on_first_read = on_first_read
        self._cond = threading.Condition(threading.Lock())
        self._buf = bytearray()     # bytes in memory not yet read, from _pos
        self._pos = 0
        self._file = None           # the spool: bytes past the threshold, read from _file_pos
        self._file_pos = 0
        self._file_end = 0
        self.received = 0           # bytes arrived so far
        self.complete = False       # the whole body has arrived
        self.failed = None          # why it cannot complete (a str), else None
        self._closed = False

    # ------------------------------------------------------------ the reactor's side
    def write(self, data):
        """A piece of the body arrived (dropped once the response is done: see close)."""
        with self._cond:
            self.received += len(data)
            if self._closed:
                return
            if self._file is None and self.received <= self._threshold:
                self._buf += data
            else:
                if self._file is None:
                    self._file = tempfile.TemporaryFile(prefix="wsgi-body-")
                os.pwrite(self._file.fileno(), data, self._file_end)
                self._file_end += len(data)
            self._cond.notify_all()

    def end(self):
        """The whole body has arrived."""
        with self._cond:
            self.complete = True
            self._cond.notify_all()

    def abort(self, why="the client went away"):
        """The body will not complete: blocked and later reads raise :class:`ClientDisconnected`."""
        with self._cond:
            if not self.complete:
                self.failed = why
            self._cond.notify_all()

    def close(self):
        """Release the spool file; what still arrives is dropped (the server calls this once the
        response is done)."""
        with self._cond:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
            self._buf = bytearray()
            self._pos = 0

    # ------------------------------------------------------------- the application's side
    def _next_piece(self, size, line):
        """Block until some of the body is available, and take up to ``size`` bytes of it (up to
        and with the first newline if ``line``): b"" at the end of the body.  The caller holds
        the lock."""
        if self._on_first_read is not None:
            ask, self._on_first_read = self._on_first_read, None
            ask()
        while True:
            buf = self._buf
            start = self._pos
            if start < len(buf):
                end = min(len(buf), start + size)
                if line:
                    i = buf.find(b"\n", start, end)
                    if i >= 0:
                        end = i + 1
                data = bytes(buf[start:end])
                if end == len(buf):
                    buf.clear()
                    self._pos = 0
                elif end > _BLOCK and end > len(buf) >> 1:
                    del buf[:end]       # reclaim what was read (amortised linear)
                    self._pos = 0
                else:
                    self._pos = end
                return data
            if self._file_pos < self._file_end:
                count = min(size, self._file_end - self._file_pos, _BLOCK)
                data = os.pread(self._file.fileno(), count, self._file_pos)
                if line:
                    i = data.find(b"\n")
                    if i >= 0:
                        data = data[:i + 1]
                self._file_pos += len(data)
                return data
            if self.complete:
                return b""
            if self.failed is not None:
                raise ClientDisconnected(self.failed)
            self._cond.wait()

    def read(self, size=-1):
        """``size`` bytes, or fewer at the end of the body (all the rest if ``size`` is negative
        or None); blocks until they have arrived."""
        if size is None or size < 0:
            size = 1 << 62
        parts = []
        with self._cond:
            while size > 0:
                data = self._next_piece(min(size, 1 << 30), False)
                if not data:
                    break
                parts.append(data)
                size -= len(data)
        return b"".join(parts)

    def readline(self, size=-1):
        """One line with its ``\\n`` (or its first ``size`` bytes); b"" at the end."""
        if size is None or size < 0:
            size = 1 << 62
        parts = []
        with self._cond:
            while size > 0:
                data = self._next_piece(size, True)
                if not data:
                    break
                parts.append(data)
                size -= len(data)
                if data[-1] == 10:      # b"\n"
                    break
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _EmptyBody:
    """``wsgi.input`` of a request without a body (stateless, so one serves every request)."""

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())

    def close(self):
        pass


EMPTY_BODY = _EmptyBody()
