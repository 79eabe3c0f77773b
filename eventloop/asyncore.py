"""Drop-in replacement for the standard library's ``asyncore`` (removed in Python 3.12).

Every public name of Python 3.11's module is here with the same behaviour, as a thin
layer over :mod:`eventloop`'s reactor.  What differs is what users complained about:

* ``loop()`` keeps registrations in an epoll/poll backend between passes, so a pass
  costs in proportion to the active channels (classes that override ``readable()`` /
  ``writable()`` are still asked on every pass, as asyncore did);
* ``use_poll`` is accepted, and both of its values are served by the best poller the
  platform has, so no program dies at descriptor 1024;
* events go only to the channel registered when the poll began (CPython gh-75114);
* ``dispatcher_with_send`` queues output in O(total bytes).

Module globals (``socket``, ``socket_map``) are looked up when called, so programs and
tests that rebind them keep working.  ``eventloop.install_asyncore()`` makes
``import asyncore`` resolve to this module.
"""
import errno
import os
import select
import socket
import sys

from . import dispatcher as _core
from . import reactor as _reactor
from .dispatcher import compact_traceback, strerror as _strerror
from .pollers import CLOSED, READ, URGENT, WRITE
from .reactor import ExitNow

__all__ = ["dispatcher", "dispatcher_with_send", "file_wrapper", "file_dispatcher", "loop",
           "poll", "poll2", "poll3", "readwrite", "read", "write", "close_all",
           "compact_traceback", "ExitNow", "socket_map"]

_reraised_exceptions = _reactor.RERAISED
_DISCONNECTED = _reactor.DISCONNECTED

#: The default channel map: the default reactor's, so facade and native channels share a loop.
socket_map = _reactor.get_reactor().map


def read(obj):
    try:
        obj.handle_read_event()
    except _reraised_exceptions:
        raise
    except Exception:
        obj.handle_error()


def write(obj):
    try:
        obj.handle_write_event()
    except _reraised_exceptions:
        raise
    except Exception:
        obj.handle_error()


def _exception(obj):
    try:
        obj.handle_expt_event()
    except _reraised_exceptions:
        raise
    except Exception:
        obj.handle_error()


def readwrite(obj, flags):
    """Dispatch poll() flags to ``obj`` (POLLIN, POLLOUT, POLLPRI, then hang-up/error)."""
    try:
        if flags & select.POLLIN:
            obj.handle_read_event()
        if flags & select.POLLOUT:
            obj.handle_write_event()
        if flags & select.POLLPRI:
            obj.handle_expt_event()
        if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            obj.handle_close()
    except OSError as e:
        if e.errno not in _DISCONNECTED:
            obj.handle_error()
        else:
            obj.handle_close()
    except _reraised_exceptions:
        raise
    except Exception:
        obj.handle_error()


def _reactor_for(map):
    """The reactor that owns ``map``, or a one-off reactor for a plain dict (then True)."""
    owner = getattr(map, "reactor", None)
    if isinstance(owner, _reactor.Reactor):
        return owner, False
    return _reactor.Reactor(map=map, wakeup=False), True


def _one_pass(timeout, map):
    if map is None:
        map = socket_map
    if not map:
        return
    reactor, temporary = _reactor_for(map)
    try:
        reactor.run_once(timeout)
    finally:
        if temporary:
            reactor.close()


def poll(timeout=0.0, map=None):
    """One pass over ``map`` (default ``socket_map``), waiting at most ``timeout`` seconds."""
    _one_pass(timeout, map)


def poll2(timeout=0.0, map=None):
    """Same as :func:`poll`: both use the platform's best poller, with urgent data reported."""
    _one_pass(timeout, map)


poll3 = poll2


def loop(timeout=30.0, use_poll=False, map=None, count=None):
    """Run passes while ``map`` (default ``socket_map``) has channels, at most ``count`` times.

    ``use_poll`` is accepted for compatibility; every value uses the best poller.
    """
    if map is None:
        map = socket_map
    reactor, temporary = _reactor_for(map)
    try:
        if count is None:
            while map:
                reactor.run_once(timeout)
        else:
            while map and count > 0:
                reactor.run_once(timeout)
                count -= 1
    finally:
        if temporary:
            reactor.close()


class _AsyncoreManners:
    """asyncore's reporting: ``log`` to stderr, ``log_info`` printed, errors printed compactly."""

    def log(self, message):
        sys.stderr.write("log: %s\n" % str(message))

    def log_info(self, message, type="info"):
        if type not in self.ignore_log_types:
            print("%s: %s" % (type, message))

    def handle_error(self):
        nil, t, v, tbinfo = compact_traceback()
        self_repr = self._safe_repr()
        self.log_info("uncaptured python exception, closing channel %s (%s:%s %s)"
                      % (self_repr, t, v, tbinfo), "error")
        self.handle_close()

    @staticmethod
    def _default_map():
        return socket_map

    def create_socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)


class dispatcher(_AsyncoreManners, _core.Dispatcher):
    """asyncore's dispatcher: readable and writable unless overridden (asyncore semantics)."""

    accept_batch = 1        # asyncore accepted one connection per event; subclasses may raise it

    def handle_accept_shortage(self, exc):
        # asyncore let the error reach handle_error; so do we (readable() cannot pause here).
        raise exc

    @_reactor.static_interest
    def readable(self):
        return True

    @_reactor.static_interest
    def writable(self):
        return True


class dispatcher_with_send(_core.DispatcherWithSend, dispatcher):
    """A dispatcher that buffers output from ``send()`` and writes it when the socket allows."""

    @_reactor.static_interest
    def writable(self):
        return (not self.connected) or bool(self._out)


file_wrapper = _core.FileWrapper


class file_dispatcher(_core.FileDispatcher, dispatcher):
    """A dispatcher over a file descriptor (pipes, terminals)."""


def close_all(map=None, ignore_all=False):
    """Close every channel in ``map`` (default ``socket_map``) and empty it."""
    if map is None:
        map = socket_map
    for x in list(map.values()):
        try:
            x.close()
        except OSError as exc:
            if exc.errno == errno.EBADF:
                pass
            elif not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except Exception:
            if not ignore_all:
                raise
    map.clear()


# asyncore named its classes after the module; keep what repr() and tracebacks show.
for _cls in (dispatcher, dispatcher_with_send, file_dispatcher):
    _cls.__module__ = "asyncore"
del _cls

# Names the standard module exposed through its own imports, kept for code that used them.
EALREADY, EINPROGRESS, EWOULDBLOCK, ECONNRESET, EINVAL, ENOTCONN, ESHUTDOWN, EISCONN, \
    EBADF, ECONNABORTED, EPIPE, EAGAIN = (errno.EALREADY, errno.EINPROGRESS, errno.EWOULDBLOCK,
                                          errno.ECONNRESET, errno.EINVAL, errno.ENOTCONN,
                                          errno.ESHUTDOWN, errno.EISCONN, errno.EBADF,
                                          errno.ECONNABORTED, errno.EPIPE, errno.EAGAIN)
errorcode = errno.errorcode
_unused = (os, READ, WRITE, URGENT, CLOSED)
