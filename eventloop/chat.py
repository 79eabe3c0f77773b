"""AsyncChat: a channel that splits its input at terminators and queues output producers.

Input: ``set_terminator(t)`` where ``t`` is

* bytes — call ``found_terminator()`` each time ``t`` is seen (``t`` itself is dropped);
* an int ``n`` — call it after ``n`` more bytes;
* None (or 0 / b"") — never: everything goes to ``collect_incoming_data``.

Data before a terminator goes to ``collect_incoming_data`` (possibly in several pieces);
a handler may change the terminator from ``found_terminator`` and the rest of the
buffered input is split with the new one.  The splitting is
:class:`eventloop.framing.TerminatorFramer`, which knows nothing of sockets: this class
reads, feeds it, and is its sink.

Output: ``push(data)`` and ``push_with_producer(p)`` queue in the channel's
:class:`~eventloop.transport.OutputQueue` (``producer_fifo`` is the queue itself); a
``None`` entry (``close_when_done``) closes the channel once everything before it is
sent.  ``push`` tries to send at once; the channel asks for write readiness only while
the queue is not empty.  A pushed :class:`~eventloop.producers.FileProducer` goes out with
``os.sendfile`` when the channel writes straight to a TCP socket (it does unless a subclass
overrides ``send``: then every byte goes through the override).
"""
import socket

from .dispatcher import Dispatcher
from .framing import TerminatorFramer, find_prefix_at_end
from .transport import OutputQueue, socket_writer

__all__ = ["AsyncChat", "find_prefix_at_end"]


class AsyncChat(Dispatcher):
    """A terminator-framed channel; subclass and define ``collect_incoming_data`` and
    ``found_terminator``."""

    ac_in_buffer_size = 65536
    ac_out_buffer_size = 65536
    use_encoding = 0
    encoding = "latin-1"

    # Per-connection defaults live on the class: an idle connection stores only what differs.
    terminator = None
    _framer = None          # the TerminatorFramer, made by the first read
    _incoming = None

    def __init__(self, sock=None, map=None):
        Dispatcher.__init__(self, sock, map)

    # ----------------------------------------------------- input side
    def collect_incoming_data(self, data):
        raise NotImplementedError("must be implemented in subclass")

    def found_terminator(self):
        raise NotImplementedError("must be implemented in subclass")

    @property
    def incoming(self):
        """The list ``_collect_incoming_data`` appends to (created on use)."""
        if self._incoming is None:
            self._incoming = []
        return self._incoming

    @incoming.setter
    def incoming(self, value):
        self._incoming = value

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

    @property
    def ac_in_buffer(self):
        """Received input not yet handed to collect_incoming_data (assigning replaces it)."""
        framer = self._framer
        return framer.buffer if framer is not None else b""

    @ac_in_buffer.setter
    def ac_in_buffer(self, data):
        self._input_framer().buffer = data

    def _input_framer(self):
        framer = self._framer
        if framer is None:
            framer = self._framer = TerminatorFramer()
        return framer

    def handle_read(self):
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
            framer = self._framer
            if framer is None:
                framer = self._framer = TerminatorFramer()
            framer.feed(data, self)

    # ---------------------------------------------------- output side
    def _output(self):
        out = self._out
        if out is None:
            # Straight to the socket (with sendfile) unless a subclass sends its own way.
            if type(self).send is Dispatcher.send and type(self.socket) is socket.socket:
                writer = socket_writer(self.socket)
            else:
                writer = self
            out = self._out = OutputQueue(self, writer, chunk=self.ac_out_buffer_size)
            if self.use_encoding:
                out.encoding = self.encoding
        return out

    @property
    def producer_fifo(self):
        """The output queue (a deque): bytes, producers, and None for close_when_done.

        Code that reaches for the queue may change it, so each access also tells the
        reactor to re-examine the channel.
        """
        out = self._output()
        if self._fileno is not None:
            self.interest_changed()
        return out.items

    def push(self, data):
        """Queue bytes for sending and try to send at once."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data argument must be byte-ish (%r)" % type(data))
        out = self._out
        if out is None:
            out = self._output()
        try:
            if self.connected:
                out.write(data)
            else:
                out.append(data)
        except OSError:
            self.handle_error()

    def push_with_producer(self, producer):
        """Queue a producer (``more()`` until it returns b'') and try to send at once."""
        out = self._output()
        if self.connected:
            try:
                out.push_producer(producer)
            except OSError:
                self.handle_error()
        else:
            out.items.append(producer)
            out.changed()

    def close_when_done(self):
        """Close once everything queued so far has been sent."""
        self._output().close_when_done()

    def handle_write(self):
        self.initiate_send()

    def initiate_send(self):
        """Send what is queued, as far as the socket takes it now."""
        out = self._out
        if out and self.connected:
            try:
                out.flush()
            except OSError:
                self.handle_error()

    def handle_close(self):
        self.close()

    def discard_buffers(self):
        """Drop unprocessed input and all queued output."""
        if self._framer is not None:
            self._framer.buffer = b""
        if self._incoming:
            del self._incoming[:]
        if self._out is not None:
            self._out.clear()
        self.interest_changed()
