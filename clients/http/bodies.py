"""Request bodies streamed from disk: a sequence of in-memory pieces and files, sent in chunks.

:class:`AsyncHTTP` accepts such a body wherever it accepts bytes: the head goes out with
``Content-Length: body.length`` and the pieces follow as the socket drains, so a large upload
(``-T FILE``, a multipart form with files) never sits in memory.  A body can be sent more than
once (a 307 redirect, a retry): every :meth:`FileBody.chunks` call is a fresh pass.

Any object with an int ``length`` and such a ``chunks()`` method is a streamed body
(:func:`is_body_source`).
"""
import os

__all__ = ["FileBody", "BodyChanged", "is_body_source"]

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
