"""Drop-in replacement for the standard library's ``asynchat`` (removed in Python 3.12).

``async_chat`` is :class:`eventloop.chat.AsyncChat` with asyncore's reporting; input
is split in O(total bytes) and output is sent with ``os.sendfile`` when a
:class:`eventloop.producers.FileProducer` is pushed onto a plain TCP socket.
"""
from . import asyncore
from .chat import AsyncChat, find_prefix_at_end
from .producers import simple_producer
from .reactor import static_interest

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end"]


class async_chat(AsyncChat, asyncore.dispatcher):
    """asynchat's async_chat: terminator-framed input, a queue of output producers."""

    @static_interest
    def readable(self):
        return True

    @static_interest
    def writable(self):
        return bool(self._out) or (not self.connected)


async_chat.__module__ = "asynchat"
