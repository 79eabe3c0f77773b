"""Drop-in replacement for the standard library's ``asyncore`` (removed in Python 3.12).

Every public name of Python 3.11's module is here with the same behaviour, as a thin
layer over :mod:`eventloop`'s reactor.  What differs is what users complained about:

* ``loop()`` and ``poll()`` keep registrations in an epoll/poll backend between passes and
  between calls, for the default map and for a private dict map alike, so a pass costs in
  proportion to the active channels (classes that override ``readable()`` /
  ``writable()`` are still asked on every pass, as asyncore did);
* a map may be keyed by descriptor numbers or by objects with ``fileno()`` (sockets), as
  asyncore's ``select()`` path allowed, on every path; events reach the channel under the
  key it was stored with;
* ``use_poll`` is accepted, and both of its values are served by the best poller the
  platform has, so no program dies at descriptor 1024;
* events go only to the channel registered when the poll began (CPython gh-75114);
* ``dispatcher_with_send`` queues output in O(total bytes).

Module globals (``socket``, ``socket_map``) are looked up when called, so programs and
tests that rebind them keep working.  ``import asyncore`` resolves to this module after
``eventloop.install_asyncore()``, in a program run with ``python -m eventloop.run``, and on
Python 3.12+ once ``python -m eventloop.shim enable`` has run.
"""
import errno
import os
import select
import socket
import sys
import weakref

from . import dispatcher as _core
from . import reactor as _reactor
from .dispatcher import compact_traceback, strerror as _strerror  # noqa: F401  (asyncore._strerror, which programs and CPython's own tests call)
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


class _MapReactor(_reactor.Reactor):
    """The reactor kept for one private dict map between ``loop()``/``poll()`` calls.

    The map is the program's own dict, so nothing tells the reactor when it changes.  This
    module's channels report what they do to it (joining, leaving, interest changes; see
    :meth:`dispatcher.add_channel`), so a pass re-examines only those; anything else in the
    map cannot report and is asked every pass, as asyncore asked everyone.  What the program
    does to the dict itself is caught before every pass by comparing its size and its newest
    entry with what the reactor last saw (O(1)): insertion order puts every added key last,
    so keys added or deleted directly change one of the two, and the whole map is then
    re-examined once.  A value replaced in place under an existing key directly is noticed
    at the next event on its descriptor.

    Its lifetime is the map's: a plain dict cannot be weakly referenced, so the channels
    that joined the map hold this reactor (``_map_reactor``) and :data:`_map_reactors` holds
    it weakly.  When the last of them leaves an empty map, its epoll descriptor is closed;
    when the map and its channels are dropped unclosed, the reactor goes with them.
    """

    def __init__(self, map):
        _reactor.Reactor.__init__(self, map=map, wakeup=False, observed=True)
        self._members = 0               # channels holding this reactor
        self._rescan_due = True         # the first pass examines whatever the map holds
        self._note_shape()

    def _note_shape(self):
        cmap = self.map
        self._size = len(cmap)
        self._newest = next(reversed(cmap.items())) if cmap else None

    def _same_shape(self):
        """True unless keys were added or deleted since :meth:`_note_shape` (O(1))."""
        cmap = self.map
        if len(cmap) != self._size:
            return False
        if not cmap:
            return True
        key, channel = next(reversed(cmap.items()))
        newest = self._newest
        return channel is newest[1] and (key is newest[0] or key == newest[0])

    def join(self, key, channel):
        """``channel`` enters the map under ``key`` and will report its changes."""
        if not self._same_shape():
            self._rescan_due = True
        self.map[key] = channel
        self.touch(key)
        self._note_shape()
        self._members += 1

    def leave(self, key):
        """The channel under ``key`` leaves the map (its socket is closed after this)."""
        if not self._same_shape():
            self._rescan_due = True
        cmap = self.map
        if key in cmap:
            self.forget(key)
            del cmap[key]
        self._note_shape()
        self._members -= 1
        if self._members <= 0 and not cmap:
            self.close()                # a later pass would make the poller again

    def _asks_every_pass(self, obj):
        return getattr(obj, "_map_reactor", None) is not self or \
            _reactor._asks_every_pass(obj)

    def run_once(self, timeout=None):
        if self._rescan_due or not self._same_shape():
            self._rescan_due = False
            self.resync()
            self._note_shape()
        _reactor.Reactor.run_once(self, timeout)


#: ``id(map) -> weakref to its _MapReactor``, for the private maps channels have joined.
_map_reactors = {}


def _joined_reactor(map):
    """The :class:`_MapReactor` of ``map``, if any of this module's channels joined it."""
    ref = _map_reactors.get(id(map))
    if ref is not None:
        reactor = ref()
        if reactor is not None and reactor.map is map:
            return reactor
    return None


def _map_reactor_for(map):
    """The :class:`_MapReactor` of a private dict ``map``, made on first use."""
    reactor = _joined_reactor(map)
    if reactor is None:
        reactor = _MapReactor(map)
        key = id(map)

        def gone(ref, key=key):
            if _map_reactors.get(key) is ref:
                del _map_reactors[key]
        _map_reactors[key] = weakref.ref(reactor, gone)
    return reactor


def _reactor_for(map):
    """The reactor that owns ``map`` (then False), or a one-off reactor for a dict no channel
    of this module joined (then True: close it after the call)."""
    if isinstance(map, _reactor.ChannelMap):
        return map.reactor, False
    reactor = _joined_reactor(map)
    if reactor is not None:
        return reactor, False
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

    _map_reactor = None     # the _MapReactor of the private dict map this channel is in

    def add_channel(self, map=None):
        """Enter ``map`` (default: the channel's); in a private dict map, also join the
        reactor kept for it, which this channel then tells about its changes."""
        if map is None:
            map = self._map
        if type(map) is dict:
            reactor = _map_reactor_for(map)
            reactor.join(self._fileno, self)
            self._map_reactor = reactor
        else:
            map[self._fileno] = self

    def del_channel(self, map=None):
        if map is None:
            map = self._map
        reactor = self._map_reactor
        if reactor is not None and reactor.map is map:
            self._map_reactor = None
            reactor.leave(self._fileno)
            self._fileno = None
        else:
            _core.Dispatcher.del_channel(self, map)

    def interest_changed(self):
        reactor = self._map_reactor
        if reactor is None:
            _core.Dispatcher.interest_changed(self)
        elif self._fileno is not None:
            reactor.touch(self._fileno)

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
