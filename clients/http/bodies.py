"""Request bodies streamed from disk: a sequence of in-memory pieces and files, sent in chunks.

:class:`AsyncHTTP` accepts such a body wherever it accepts bytes: the head goes out with
``Content-Length: body.length`` and the pieces follow as the socket drains, so a large upload
(``-T FILE``, a multipart form with files) never sits in memory.  A body can be sent more than
once (a 307 redirect, a retry): every :meth:`FileBody.chunks` call is a fresh pass.

Any object with an int ``length`` and such a ``chunks()`` method is a streamed body
(:func:`is_body_source`); :class:`BodyProducer` is one pass of it as a producer on the
request's :class:`eventloop.OutputQueue`, asked for its next chunk only once the kernel has
taken everything before it, so at most one chunk is held.
"""
import os

__all__ = ["FileBody", "BodyChanged", "is_body_source", "BodyProducer", "UnreadableBody"]

#: Bytes read from a file per chunk.
CHUNK = 1 << 18


class BodyChanged(OSError):
    """A file of the body is shorter than it was when the body was made (so its length would
    be a lie); the request is ended rather than sent short."""


class FileBody:
    """``pieces``: bytes, or ``(path, size)`` for a file's first ``size`` bytes (``path`` alone:
    the whole file, its size taken now).  ``length`` is the total; raises OSError for a file
    that cannot be read."""

    def __init__(self, pieces):
        self.pieces = []
        for piece in pieces:
            if isinstance(piece, (bytes, bytearray, memoryview)):
                piece = bytes(piece)
            elif isinstance(piece, tuple):
                piece = (os.fspath(piece[0]), piece[1])
            else:
                path = os.fspath(piece)
                with open(path, "rb") as f:
                    piece = (path, os.fstat(f.fileno()).st_size)
            self.pieces.append(piece)
        self.length = sum(len(p) if isinstance(p, bytes) else p[1] for p in self.pieces)

    def __repr__(self):
        return "<FileBody %d pieces, %d bytes>" % (len(self.pieces), self.length)

    def chunks(self):
        """Yield the body in order, in chunks of at most :data:`CHUNK` bytes (never empty)."""
        for piece in self.pieces:
            if isinstance(piece, bytes):
                for start in range(0, len(piece), CHUNK):
                    yield piece[start:start + CHUNK]
                continue
            path, size = piece
            with open(path, "rb") as f:
                left = size
                while left:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        raise BodyChanged("%s: %d bytes shorter than when the upload began"
                                          % (path, left))
                    left -= len(data)
                    yield data


def is_body_source(body):
    """A body streamed in pieces (:class:`FileBody`): a ``length`` and a ``chunks()`` method
    giving a fresh pass over exactly that many bytes."""
    return hasattr(body, "chunks") and isinstance(getattr(body, "length", None), int)


class UnreadableBody(Exception):
    """The body's next chunk could not be read: ``error`` is the OSError (a file that changed
    or vanished).  Not an OSError itself, so that no one takes it for a broken connection."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


class BodyProducer:
    """One pass over a streamed body, as an output queue's producer: ``more()`` is the next
    non-empty chunk, ``b""`` at the end; it raises :class:`UnreadableBody` when a chunk cannot be
    read.  ``close()`` ends the pass early (and closes the file being read)."""

    __slots__ = ("_chunks",)

    def __init__(self, body):
        self._chunks = iter(body.chunks())

    def more(self):
        try:
            for chunk in self._chunks:
                if chunk:
                    return chunk
        except OSError as exc:
            raise UnreadableBody(exc) from exc
        return b""

    def close(self):
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
