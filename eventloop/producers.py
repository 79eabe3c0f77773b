"""Producers: objects whose ``more()`` returns the next piece of output, ``b''`` when done.

A channel pulls from a producer only when the socket can take data, so a producer can
stand for something too large to hold in memory.  :class:`FileProducer` also offers the
channel a zero-copy path: on a plain TCP socket the channel calls ``os.sendfile`` with the
producer's descriptor and offset instead of reading chunks.
"""
import os

__all__ = ["simple_producer", "FileProducer"]

_pread = getattr(os, "pread", None)


class simple_producer:
    """Hands out ``data`` in pieces of at most ``buffer_size`` bytes."""

    def __init__(self, data, buffer_size=512):
        self.data = data
        self.buffer_size = buffer_size
        self._off = 0

    def more(self):
        off = self._off
        if off >= len(self.data):
            return b""
        end = off + self.buffer_size
        piece = self.data[off:end]
        self._off = end
        return piece


class FileProducer:
    """Streams ``count`` bytes (default: to the end) of a binary file from ``offset``.

    The producer owns the file and closes it when done, or when :meth:`close` is called
    (a channel closing with the producer still queued calls it).  A file that shrinks while
    being sent raises :class:`EOFError` rather than silently sending fewer bytes.
    """

    use_sendfile = hasattr(os, "sendfile")
    _positional = True

    def __init__(self, file, offset=0, count=None, chunk_size=65536):
        self.file = file
        self.offset = offset
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        self.remaining = max(count, 0)
        self.chunk_size = chunk_size
        self._seeked = False

    def fileno(self):
        return self.file.fileno()

    def more(self):
        if self.remaining <= 0:
            self.close()
            return b""
        want = min(self.chunk_size, self.remaining)
        if _pread is not None and self._positional:
            # A positional read: the descriptor may share its offset with others (a duplicate
            # of a descriptor a file cache hands to several connections), so none is used.
            try:
                data = _pread(self.file.fileno(), want, self.offset)
            except (OSError, AttributeError, ValueError):
                self._positional = False    # not a plain file descriptor: seek and read
                return self.more()
        else:
            if not self._seeked:
                self.file.seek(self.offset)
                self._seeked = True
            data = self.file.read(want)
        if not data:
            self.close()
            raise EOFError("file shrank while being sent (%d bytes missing)" % self.remaining)
        self.offset += len(data)
        self.remaining -= len(data)
        return data

    def advance(self, sent):
        """Account for ``sent`` bytes that went out through ``os.sendfile``."""
        self.offset += sent
        self.remaining -= sent
        self._seeked = False

    def close(self):
        if self.file is not None and not self.file.closed:
            self.file.close()

    def __repr__(self):
        return "<FileProducer %r at %d, %d left>" % (getattr(self.file, "name", "?"),
                                                      self.offset, self.remaining)
