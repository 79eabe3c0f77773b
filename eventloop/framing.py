"""Terminator framing without sockets: the input half of ``async_chat``.

A :class:`TerminatorFramer` is fed bytes and splits them for a *sink*, an object with
asynchat's vocabulary:

* ``sink.get_terminator()`` — asked before each step, so the sink may change it at any time:
  bytes (split where it occurs; the terminator itself is dropped), an int ``n`` (the next
  ``n`` bytes), or None / ``0`` / ``b""`` (no framing: everything is data);
* ``sink.collect_incoming_data(data)`` — a piece of the current record (a record may arrive
  in several pieces);
* ``sink.found_terminator()`` — the current record is complete;
* ``sink.terminator`` — for an int terminator the framer writes back how many bytes are still
  to come (``0`` once they have all arrived), as asynchat did.

Only a possible partial terminator is kept between feeds, so the work is linear in the bytes
fed however they are split, and the records do not depend on where the splits fall (the
tests check this over every chunking).  A sink may put input back or replace it from its
handlers through :attr:`TerminatorFramer.buffer`: the framer re-reads its state after every
call it makes.
"""

__all__ = ["TerminatorFramer", "find_prefix_at_end"]

_ASK = object()     # the terminator must be asked for again (a record just ended)


def find_prefix_at_end(haystack, needle):
    """Length of the longest proper prefix of ``needle`` that ``haystack`` ends with."""
    n = len(needle) - 1
    while n and not haystack.endswith(needle[:n]):
        n -= 1
    return n


class TerminatorFramer:
    """Splits a byte stream at the terminators a sink asks for (see the module docstring).

    The unprocessed input is ``_buf[_pos:]``: between feeds it holds at most a partial
    terminator, or what a handler put back.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self):
        self._buf = b""
        self._pos = 0

    @property
    def buffer(self):
        """Input received but not yet handed to the sink (assigning replaces it)."""
        return self._buf[self._pos:] if self._pos else self._buf

    @buffer.setter
    def buffer(self, data):
        self._buf = bytes(data)
        self._pos = 0

    def __len__(self):
        return len(self._buf) - self._pos

    def feed(self, data, sink):
        """Append ``data`` to the unprocessed input and split all of it for ``sink``."""
        term = sink.get_terminator()
        if not self._buf and type(term) is bytes and term and self._one_record(data, term, sink):
            return
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos:] + data
        else:
            self._buf = data
        self._pos = 0
        while True:
            # Re-read the state: the sink's handlers may have replaced the buffer.
            buf = self._buf
            pos = self._pos
            end = len(buf)
            if pos >= end:
                self._buf, self._pos = b"", 0
                return
            if term is _ASK:
                term = sink.get_terminator()
            if not term:
                self._buf, self._pos = b"", 0
                sink.collect_incoming_data(buf[pos:] if pos else buf)
                return
            if isinstance(term, int):
                if end - pos < term:
                    self._buf, self._pos = b"", 0
                    sink.collect_incoming_data(buf[pos:] if pos else buf)
                    sink.terminator = term - (end - pos)
                    return
                self._pos = pos + term
                sink.collect_incoming_data(buf[pos:pos + term])
                sink.terminator = 0
                sink.found_terminator()
                term = _ASK
                continue
            index = buf.find(term, pos)
            if index == -1:
                # Keep only what could be the start of a terminator split across feeds.
                keep = find_prefix_at_end(buf[pos:] if pos else buf, term) if len(term) > 1 else 0
                self._buf, self._pos = (buf[end - keep:] if keep else b""), 0
                if end - keep > pos:
                    sink.collect_incoming_data(buf[pos:end - keep])
                return
            self._pos = index + len(term)
            if index > pos:
                sink.collect_incoming_data(buf[pos:index])
            sink.found_terminator()
            term = _ASK

    def _one_record(self, data, term, sink):
        """The usual case, taken without the general loop: nothing is buffered and ``data`` is
        one whole record ending in the bytes terminator ``term``.  It skips only the buffer
        bookkeeping, which has nothing to keep in this case; True when it applied."""
        index = data.find(term)
        if index == -1 or index + len(term) != len(data):
            return False
        if index:
            sink.collect_incoming_data(data[:index])
        sink.found_terminator()
        if self._buf:                   # the sink put input back: split it now
            self.feed(b"", sink)
        return True
