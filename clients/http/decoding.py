"""``--compressed``: undoing a response's ``Content-Encoding`` (gzip, deflate), with a bound.

:class:`Decoder` is sans-IO: encoded bytes in, decoded bytes out, :class:`DecodingError` for a
coding it does not know, a corrupt stream, or a stream that expands too much.  The bound is on
the ratio of bytes out to bytes in: at most :data:`MAX_RATIO` times the encoded bytes received
so far (plus :data:`ALLOWANCE`).  One deflate layer cannot expand more than about 1032 times,
so the bound never refuses a genuine single-coded body; it stops the stacked codings
("gzip, gzip, gzip") of a decompression bomb after a little output, not after gigabytes.  No
more than the bound is ever decoded into memory: output is produced in bounded pieces.
"""
import zlib

__all__ = ["Decoder", "DecodingError", "ACCEPT_ENCODING", "MAX_RATIO", "ALLOWANCE",
           "MAX_CODINGS"]

#: What ``--compressed`` asks for.
ACCEPT_ENCODING = "deflate, gzip"
MAX_RATIO = 1100
ALLOWANCE = 1 << 20
#: Codings stacked on one body beyond this are refused (curl's limit too).
MAX_CODINGS = 5
#: Decoded bytes produced per step.
PIECE = 1 << 16


class DecodingError(Exception):
    """The body cannot be decoded; the message says why."""


class _Inflater:
    """One gzip or deflate layer.  "deflate" is meant to be zlib-wrapped (RFC 1950), but
    servers also send it raw: without a zlib header, the layer is decoded as raw deflate."""

    def __init__(self, coding):
        self.coding = coding
        self._z = zlib.decompressobj(31 if coding == "gzip" else 15)
        self._probe = b"" if coding == "deflate" else None   # held until the header is seen
        self.done = False
        self.pending = False        # output or input is left inside: call feed(b"") again

    def feed(self, data, room):
        """Decode ``data`` and what is left from before, at most ``room`` bytes of output."""
        if self.done:
            return b""              # bytes after the end of the stream are ignored
        if self._probe is not None:
            self._probe += data
            if len(self._probe) < 2:
                return b""
            data, self._probe = self._probe, None
            if not _zlib_header(data):
                self._z = zlib.decompressobj(-15)
        else:
            data = self._z.unconsumed_tail + data
        try:
            out = self._z.decompress(data, room)
        except zlib.error as exc:
            raise DecodingError("cannot decode the %s body: %s" % (self.coding, exc)) from None
        self.done = self._z.eof
        self.pending = not self.done and (len(out) == room or bool(self._z.unconsumed_tail))
        return out

    def finish(self):
        if not self.done:
            raise DecodingError("the %s body ends before the end of its stream" % self.coding)


def _zlib_header(data):
    """RFC 1950: compression method 8, and the two header bytes a multiple of 31."""
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class Decoder:
    """Decodes a body sent with ``Content-Encoding: content_encoding`` (the field's value)."""

    def __init__(self, content_encoding):
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > MAX_CODINGS:
            raise DecodingError("more than %d content codings stacked" % MAX_CODINGS)
        for coding in codings:
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise DecodingError("unsupported content coding %r" % coding)
        # Applied in the order listed, so undone from the last.
        self.layers = [_Inflater("gzip" if c == "x-gzip" else c) for c in reversed(codings)]
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def identity(self):
        return not self.layers

    def _budget(self):
        return ALLOWANCE + MAX_RATIO * self.bytes_in - self.bytes_out

    def decode(self, data):
        """The decoded bytes for ``data`` (a list of pieces; may be empty)."""
        self.bytes_in += len(data)
        if not self.layers:
            self.bytes_out += len(data)
            return [data] if data else []
        pieces = []
        self._run(0, data, pieces)
        return pieces

    def _run(self, depth, data, pieces):
        layer = self.layers[depth]
        last = depth == len(self.layers) - 1
        while True:
            room = self._budget()
            if room <= 0:
                raise DecodingError("the body expands more than %d times: refused as a "
                                    "decompression bomb" % MAX_RATIO)
            out = layer.feed(data, min(room, PIECE) if last else PIECE)
            data = b""
            if out:
                if last:
                    self.bytes_out += len(out)
                    pieces.append(out)
                else:
                    self._run(depth + 1, out, pieces)
            if not layer.pending:
                return

    def finish(self):
        """The body has ended: raises DecodingError if a layer's stream is incomplete (an empty
        body, as for a 204 or 304, is complete)."""
        if not self.bytes_in:
            return
        for layer in self.layers:
            layer.finish()
