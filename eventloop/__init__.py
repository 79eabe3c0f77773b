"""eventloop: a selectors-style reactor with asyncore's API, and its drop-in facades.

Write a channel by subclassing :class:`Dispatcher` (or :class:`AsyncChat`), then run
:func:`loop`.  Legacy asyncore programs run unchanged with ``python -m eventloop.run
PROGRAM.py``, after :func:`install_asyncore`, or anywhere once ``python -m eventloop.shim
enable`` has made ``import asyncore`` work on Python 3.12+.
"""
import sys

from .chat import AsyncChat
from .framing import TerminatorFramer, find_prefix_at_end
from .dispatcher import (Dispatcher, DispatcherWithSend, FileDispatcher, FileWrapper, Listener,
                         compact_traceback, format_address, strerror)
from .pollers import available_pollers, make_poller
from .producers import FileProducer, simple_producer
from .reactor import ChannelMap, ExitNow, Reactor, get_reactor, loop, set_reactor, static_interest
from .timers import Timer
from .tls import TLSSocket, client_context, server_context
from .transport import DISCONNECTED, OutputQueue, SocketWriter, socket_writer

__all__ = ["Reactor", "ChannelMap", "Timer", "Dispatcher", "Listener", "DispatcherWithSend", "format_address", "AsyncChat",
           "OutputQueue", "SocketWriter", "socket_writer", "TLSSocket", "server_context", "client_context", "TerminatorFramer", "DISCONNECTED", "strerror",
           "FileDispatcher", "FileWrapper", "FileProducer", "simple_producer",
           "find_prefix_at_end", "compact_traceback", "ExitNow", "get_reactor", "set_reactor",
           "loop", "run", "stop", "static_interest", "call_soon", "call_soon_threadsafe", "call_later", "call_at",
           "call_every", "available_pollers", "make_poller", "install_asyncore"]


def run():
    """Run the default reactor until :func:`stop`."""
    get_reactor().run()


def stop():
    """Make the default reactor's :func:`run` / :func:`loop` return; safe from any thread."""
    get_reactor().stop()


def call_soon(callback, *args):
    return get_reactor().call_soon(callback, *args)


def call_soon_threadsafe(callback, *args):
    return get_reactor().call_soon_threadsafe(callback, *args)


def call_later(delay, callback, *args):
    return get_reactor().call_later(delay, callback, *args)


def call_at(when, callback, *args):
    return get_reactor().call_at(when, callback, *args)


def call_every(interval, callback, *args, first=None):
    return get_reactor().call_every(interval, callback, *args, first=first)


def install_asyncore():
    """Make ``import asyncore`` and ``import asynchat`` resolve to this package's facades,
    so a legacy program runs unchanged on Python 3.12+.  Returns the two modules."""
    from . import asynchat, asyncore
    sys.modules["asyncore"] = asyncore
    sys.modules["asynchat"] = asynchat
    return asyncore, asynchat
