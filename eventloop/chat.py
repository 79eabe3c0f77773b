"""AsyncChat: a channel that splits its input at terminators and queues output producers.

Input: ``set_terminator(t)`` where ``t`` is

* bytes — call ``found_terminator()`` each time ``t`` is seen (``t`` itself is dropped);
* an int ``n`` — call it after ``n`` more bytes;
* None (or 0 / b"") — never: everything goes to ``collect_incoming_data``.

Data before a terminator goes to ``collect_incoming_data`` (possibly in several pieces);
a handler may change the terminator from ``found_terminator`` and the rest of the
buffered input is split with the new one.  Only a possible partial terminator is kept
between reads, so input is handled in O(total bytes) however it arrives.

Output: ``push(data)`` and ``push_with_producer(p)`` append to ``producer_fifo``; a
``None`` entry (``close_when_done``) closes the channel once everything before it is
sent.  ``push`` tries to send at once; the channel asks for write readiness only while
the queue is not empty.
"""
import collections
import os
import socket

from .dispatcher import Dispatcher
from .producers import FileProducer
from .reactor import DISCONNECTED, _static

__all__ = ["AsyncChat", "find_prefix_at_end"]


def find_prefix_at_end(haystack, needle):
    """Length of the longest proper prefix of ``needle`` that ``haystack`` ends with."""
    n = len(needle) - 1
    while n and not haystack.endswith(needle[:n]):
        n -= 1
    return n


class AsyncChat(Dispatcher):
    """A terminator-framed channel; subclass and define ``collect_incoming_data`` and
    ``found_terminator``."""

    ac_in_buffer_size = 65536
    ac_out_buffer_size = 65536
    use_encoding = 0
    encoding = "latin-1"

    # Per-connection defaults live on the class: an idle connection stores only what differs.
    _inbuf = b""
    _inpos = 0
    queued_bytes = 0
    terminator = None
    _fifo = None            # the output deque, created by the first output that must wait
    _incoming = None
    # Fast paths (see __init_subclass__): set while no subclass overrides the method named.
    _plain_send = True      # initiate_send()
    _plain_recv = True      # recv()
    _plain_sock_send = True  # send()
    _plain_terminator = True  # get_terminator()

    def __init__(self, sock=None, map=None):
        Dispatcher.__init__(self, sock, map)

    @property
    def producer_fifo(self):
        """The output queue: bytes, producers, and None for close_when_done (created on use).

        Code that reaches for the queue may change it, so each access also tells the
        reactor to re-examine the channel (this class's own methods use ``_fifo``).
        """
        if self._fileno is not None:
            self.interest_changed()
        return self._output_queue()

    @producer_fifo.setter
    def producer_fifo(self, fifo):
        self._fifo = fifo
        if self._fileno is not None:
            self.interest_changed()

    def _output_queue(self):
        fifo = self._fifo
        if fifo is None:
            fifo = self._fifo = collections.deque()
        return fifo

    @property
    def incoming(self):
        """The list ``_collect_incoming_data`` appends to (created on use)."""
        if self._incoming is None:
            self._incoming = []
        return self._incoming

    @incoming.setter
    def incoming(self, value):
        self._incoming = value

    # ----------------------------------------------------- input side
    def collect_incoming_data(self, data):
        raise NotImplementedError("must be implemented in subclass")

    def found_terminator(self):
        raise NotImplementedError("must be implemented in subclass")

    def _collect_incoming_data(self, data):
        self.incoming.append(data)

    def _get_data(self):
        data = b"".join(self.incoming)
        del self.incoming[:]
        return data

    def set_terminator(self, term):
        """Set the input delimiter: bytes, a byte count, or None (see the module doc)."""
        if isinstance(term, str) and self.use_encoding:
            term = bytes(term, self.encoding)
        elif isinstance(term, int) and term < 0:
            raise ValueError("the number of received bytes must be positive")
        self.terminator = term

    def get_terminator(self):
        return self.terminator

    def handle_read(self):
        if self._plain_recv:
            # Dispatcher.recv() inlined: one Python call less for every read.
            try:
                data = self.socket.recv(self.ac_in_buffer_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as why:
                if why.errno in DISCONNECTED:
                    self.handle_close()
                else:
                    self.handle_error()
                return
            if not data:
                self.handle_eof()
                return
            self._feed(data)
            return
        try:
            data = self.recv(self.ac_in_buffer_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.handle_error()
            return
        if self.use_encoding and isinstance(data, str):
            data = bytes(data, self.encoding)
        if data:
            self._feed(data)

    @property
    def ac_in_buffer(self):
        """Received input not yet handed to collect_incoming_data (a copy, made on access)."""
        return self._inbuf[self._inpos:] if self._inpos else self._inbuf

    @ac_in_buffer.setter
    def ac_in_buffer(self, data):
        self._inbuf = data
        self._inpos = 0

    def _feed(self, data):
        """Split ``data``, appended to any partial terminator kept from the previous read.

        The unprocessed input is ``(self._inbuf, self._inpos)``: handlers see it through
        ``ac_in_buffer`` and may replace it, so the state is re-read after every call.
        """
        if not self._inbuf and self._plain_terminator:
            term = self.terminator
            if type(term) is bytes and term:
                index = data.find(term)
                if index != -1 and index + len(term) == len(data):
                    # The usual case, a whole message in one read: no buffer to keep.
                    if index:
                        self.collect_incoming_data(data[:index])
                    self.found_terminator()
                    if self._inbuf:
                        self._feed(b"")     # the handler put input back
                    return
        if self._inbuf:
            rest = self._inbuf[self._inpos:] if self._inpos else self._inbuf
            self._inbuf = rest + data if rest else data
        else:
            self._inbuf = data
        self._inpos = 0
        while True:
            buf = self._inbuf
            pos = self._inpos
            end = len(buf)
            if pos >= end:
                break
            term = self.terminator if self._plain_terminator else self.get_terminator()
            if type(term) is bytes and term:
                index = buf.find(term, pos)
                if index == -1:
                    # Keep only what could be the start of a terminator split across reads.
                    keep = find_prefix_at_end(buf[pos:] if pos else buf, term) if len(term) > 1 else 0
                    self._inbuf, self._inpos = (buf[end - keep:] if keep else b""), 0
                    if end - keep > pos:
                        self.collect_incoming_data(buf[pos:end - keep])
                    return
                after = index + len(term)
                self._inpos = after
                if index > pos:
                    self.collect_incoming_data(buf[pos:index])
                self.found_terminator()
                if after == end and self._inpos == after and self._inbuf is buf:
                    self._inbuf, self._inpos = b"", 0     # all consumed, input left alone
                    return
            elif not term:
                self._inbuf, self._inpos = b"", 0
                self.collect_incoming_data(buf[pos:] if pos else buf)
            elif isinstance(term, int):
                if end - pos < term:
                    self._inbuf, self._inpos = b"", 0
                    self.collect_incoming_data(buf[pos:] if pos else buf)
                    self.terminator = term - (end - pos)
                else:
                    self._inpos = pos + term
                    self.collect_incoming_data(buf[pos:pos + term])
                    self.terminator = 0
                    self.found_terminator()
            else:
                index = buf.find(term, pos)
                if index != -1:
                    self._inpos = index + len(term)
                    if index > pos:
                        self.collect_incoming_data(buf[pos:index])
                    self.found_terminator()
                else:
                    keep = find_prefix_at_end(buf[pos:] if pos else buf, term) if len(term) > 1 else 0
                    self._inbuf, self._inpos = (buf[end - keep:] if keep else b""), 0
                    if end - keep > pos:
                        self.collect_incoming_data(buf[pos:end - keep])
                    break
        if self._inpos and self._inpos >= len(self._inbuf):
            self._inbuf, self._inpos = b"", 0

    # ---------------------------------------------------- output side
    def push(self, data):
        """Queue bytes for sending and try to send at once."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data argument must be byte-ish (%r)" % type(data))
        size = self.ac_out_buffer_size
        n = len(data)
        if not self._fifo and n <= size and self.connected and self._plain_send:
            # Nothing queued: send at once and queue only what the socket did not take, so
            # the usual small response costs one send() and no queue or interest change.
            if self._plain_sock_send:
                # Dispatcher.send() inlined, for the same reason as in handle_read().
                try:
                    sent = self.socket.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as why:
                    if why.errno in DISCONNECTED:
                        self.handle_close()
                    else:
                        self.handle_error()
                    return
            else:
                try:
                    sent = self.send(data) or 0
                except OSError:
                    self.handle_error()
                    return
            if sent >= n:
                return
            if not self.connected:
                return      # send() found the peer gone and closed the channel
            data = data[sent:]
            n -= sent
        fifo = self._output_queue()
        was_empty = not fifo
        if n > size:
            for i in range(0, n, size):
                fifo.append(data[i:i + size])
        else:
            fifo.append(data)
        self.queued_bytes += n
        self.initiate_send()
        if was_empty and fifo:
            self.interest_changed()

    def push_with_producer(self, producer):
        """Queue a producer (``more()`` until it returns b'') and try to send at once."""
        fifo = self._output_queue()
        was_empty = not fifo
        fifo.append(producer)
        self.initiate_send()
        if was_empty and fifo:
            self.interest_changed()

    @_static
    def writable(self):
        return self.connecting or bool(self._fifo)

    def close_when_done(self):
        """Close once everything queued so far has been sent."""
        self._output_queue().append(None)
        self.interest_changed()

    def handle_write(self):
        self.initiate_send()

    def handle_close(self):
        self.close()

    def close(self):
        for item in self._fifo or ():
            closer = getattr(item, "close", None)
            if closer is not None and not isinstance(item, (bytes, bytearray, memoryview)):
                try:
                    closer()
                except Exception:
                    pass
        Dispatcher.close(self)

    def initiate_send(self):
        """Send from the head of the queue (one send, or one producer pull and send)."""
        fifo = self._fifo
        while fifo and self.connected:
            first = fifo[0]
            if not first:
                del fifo[0]
                if first is None:
                    self.interest_changed()
                    self.handle_close()
                    return
                continue
            obs = self.ac_out_buffer_size
            try:
                data = first[:obs]
            except TypeError:
                if type(first) is FileProducer and first.use_sendfile and \
                        type(self.socket) is socket.socket:
                    if self._sendfile(first):
                        return
                    continue
                data = first.more()
                if data:
                    fifo.appendleft(data)
                    self.queued_bytes += len(data)
                else:
                    del fifo[0]
                continue
            if self.use_encoding and isinstance(data, str):
                data = bytes(data, self.encoding)
            try:
                sent = self.send(data)
            except OSError:
                self.handle_error()
                return
            if sent:
                self.queued_bytes -= sent
                if sent < len(data) or obs < len(first):
                    fifo[0] = first[sent:]
                else:
                    del fifo[0]
                if not fifo:
                    self.interest_changed()
            return
        if fifo is not None and not fifo:
            # Emptied without a send (an exhausted producer, an empty chunk): stop writing.
            self.interest_changed()

    def _sendfile(self, producer):
        """Zero-copy send from a FileProducer; True when a system call was made."""
        if producer.remaining <= 0:
            producer.close()
            del self._fifo[0]
            return False
        try:
            sent = os.sendfile(self._fileno, producer.fileno(), producer.offset,
                               min(producer.remaining, 1 << 20))
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno in DISCONNECTED:
                self.handle_close()
                return True
            # The descriptor pair cannot use sendfile (e.g. an unusual file system):
            # fall back to reading chunks, transparently.
            producer.use_sendfile = False
            return False
        if sent == 0:
            producer.close()
            raise EOFError("file shrank while being sent (%d bytes missing)" % producer.remaining)
        producer.advance(sent)
        if producer.remaining <= 0:
            producer.close()
            del self._fifo[0]
            if not self._fifo:
                self.interest_changed()
        return True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The fast paths may bypass a method only when no class in between overrides it.
        cls._plain_send = cls.initiate_send is AsyncChat.initiate_send
        cls._plain_recv = cls.recv is Dispatcher.recv
        cls._plain_sock_send = cls.send is Dispatcher.send
        cls._plain_terminator = cls.get_terminator is AsyncChat.get_terminator

    def discard_buffers(self):
        """Drop unprocessed input and all queued output."""
        self.ac_in_buffer = b""
        if self._incoming:
            del self._incoming[:]
        if self._fifo:
            self._fifo.clear()
        self.queued_bytes = 0
        self.interest_changed()
