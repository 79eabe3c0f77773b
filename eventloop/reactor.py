"""The reactor: one loop, three phases per pass.

1. **wait for I/O** (``_wait_for_io``, ``_deliver``) — sync the channels whose interest may
   have changed into the OS poller, poll with a timeout that ends at the next timer deadline,
   and hand each event to its channel;
2. **fire due timers** (``_fire_timers``) — those due when the phase starts;
3. **run ready callbacks** (``_run_ready``) — those queued when the phase starts (``call_soon``).

Channels live in a :class:`ChannelMap` (``fd -> channel``), the same dict asyncore
called ``socket_map``.  A key is what ``select.select`` accepts: a descriptor number, or
an object with ``fileno()`` (a socket); the OS poller watches its descriptor, and events
go to the channel under the original key.  Registrations persist in the poller; a pass
re-examines only

* the descriptors touched since the last pass (added, removed, a channel said its
  interest changed, or it handled anything but plain input), and
* channels whose class overrides ``readable()``/``writable()``: those keep asyncore's
  ask-every-pass semantics, because their answer can change without telling us (an
  override that only returns a constant, or one marked :func:`static_interest`, cannot).

So a pass costs in proportion to the active channels, not to all of them.

An event is delivered only to the object that was registered for the descriptor when
the poll began, and only while that object is still in the map: a handler that closes
another channel whose descriptor number is then reused cannot misdirect an event to the
newcomer (CPython gh-75114).
"""
import collections
import errno
import logging
import os
import socket
import threading
import time
import weakref

from . import trace as _trace
from .pollers import CLOSED, READ, URGENT, WRITE, make_poller
from .timers import TimerQueue
from .transport import DISCONNECTED

__all__ = ["Reactor", "ChannelMap", "ExitNow", "static_interest", "get_reactor", "set_reactor", "loop",
           "RERAISED"]

log = logging.getLogger("eventloop")


class ExitNow(Exception):
    """Raised by a handler to leave the loop at once (it is not passed to ``handle_error``)."""


#: Exceptions a handler may raise that end the loop instead of reaching ``handle_error``.
RERAISED = (ExitNow, KeyboardInterrupt, SystemExit)



class ChannelMap(dict):
    """``fd -> channel``, telling its reactor which descriptors changed.

    Adding a channel only marks it: nothing reaches the OS poller until a pass runs
    (asyncore's tests put fake sockets in maps).  Removing one unregisters it at once,
    before its socket is closed, so a reused descriptor number starts clean.
    """

    __slots__ = ("reactor", "__weakref__")

    def __init__(self, reactor):
        dict.__init__(self)
        self.reactor = reactor

    def __setitem__(self, fd, channel):
        dict.__setitem__(self, fd, channel)
        self.reactor._dirty.add(fd)

    def __delitem__(self, fd):
        dict.__delitem__(self, fd)
        self.reactor._forget(fd)

    def pop(self, fd, *default):
        had = fd in self
        value = dict.pop(self, fd, *default)
        if had:
            self.reactor._forget(fd)
        return value

    def popitem(self):
        fd, channel = dict.popitem(self)
        self.reactor._forget(fd)
        return fd, channel

    def setdefault(self, fd, channel=None):
        if fd not in self:
            self[fd] = channel
        return dict.__getitem__(self, fd)

    def update(self, *args, **kwargs):
        for fd, channel in dict(*args, **kwargs).items():
            self[fd] = channel

    def clear(self):
        for fd in list(self):
            del self[fd]

    def touch(self, fd):
        """The channel at ``fd`` may want different events: re-examine it next pass."""
        self.reactor._dirty.add(fd)

    def __reduce__(self):
        return (dict, (dict(self),))


def static_interest(method):
    """Decorate a ``readable``/``writable`` override whose answer changes only when the channel
    says so with ``interest_changed()``: the reactor then keeps it registered instead of asking
    it on every pass.  (After write, urgent or hang-up events the reactor re-examines the
    channel anyway, so a forgotten call cannot turn into a busy loop.)"""
    method._static_interest = True
    return method


def _descriptor(key):
    """The descriptor a channel-map key stands for, read as ``select.select`` reads it: an int,
    or the int its ``fileno()`` returns.  Any other key raises TypeError, a negative number
    ValueError, as select() does."""
    if isinstance(key, int):
        fd = int(key)
    else:
        try:
            fileno = key.fileno
        except AttributeError:
            raise TypeError("channel map key %r is neither a descriptor number nor an object "
                            "with a fileno() method" % (key,)) from None
        fd = fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() of channel map key %r returned %r, not an int" % (key, fd))
    if fd < 0:
        raise ValueError("channel map key %r stands for no descriptor (%d)" % (key, fd))
    return fd


_kind_cache = weakref.WeakKeyDictionary()


#: co_flags of generator and coroutine functions, whose call never returns the constant.
_NOT_PLAIN = 0x20 | 0x80 | 0x100 | 0x200


def _keeps_its_answer(method):
    """True for a readable()/writable() whose answer changes only when the channel says so:
    one marked :func:`static_interest`, or one whose whole body is ``return CONSTANT`` (as in
    asyncore's ``def writable(self): return False``), which cannot change at all."""
    if getattr(method, "_static_interest", False):
        return True
    code = getattr(method, "__code__", None)
    if code is None or code.co_flags & _NOT_PLAIN or code.co_names:
        return False
    import dis      # only for classes that override the two methods, once per class
    ops = [i.opname for i in dis.get_instructions(code) if i.opname not in ("RESUME", "NOP")]
    return ops in (["LOAD_CONST", "RETURN_VALUE"], ["RETURN_CONST"])


def _asks_every_pass(obj):
    """True when the reactor must call the object's readable()/writable() on every pass."""
    cls = type(obj)
    try:
        return _kind_cache[cls]
    except (KeyError, TypeError):
        pass
    polled = not (_keeps_its_answer(getattr(cls, "readable", None))
                  and _keeps_its_answer(getattr(cls, "writable", None)))
    try:
        _kind_cache[cls] = polled
    except TypeError:
        pass
    return polled


class Reactor:
    """A single-threaded event loop over a :class:`ChannelMap` of asyncore-style channels.

    ``poller`` is a backend name ("epoll", "poll", "select", ...), a poller, a
    :class:`selectors.BaseSelector`, or None for the platform's best.  ``clock`` is the
    monotonic time source timers use (a virtual clock in tests).  ``map`` may be a plain
    dict of channels, in which case every channel is re-examined on every pass, unless
    ``observed`` is true: then the caller reports every change to it (:meth:`touch`,
    :meth:`forget`, :meth:`resync`), and a pass re-examines only those, as with a
    :class:`ChannelMap`.
    """

    def __init__(self, poller=None, *, clock=time.monotonic, map=None, wakeup=True, trace=None,
                 observed=False):
        self._dirty = set()
        self.map = ChannelMap(self) if map is None else map
        self._observed = observed or (isinstance(self.map, ChannelMap)
                                      and self.map.reactor is self)
        self._poller_spec = poller
        self._poller = None
        # The reactor's view of the map, all keyed by map key (a descriptor number, or a
        # socket for maps that asyncore programs build themselves):
        #   _registered    key -> (channel, events): what the OS poller watches, and for whom;
        #                  a key is here only while that channel is in the map and wants events.
        #   _always_ready  key -> events: keys the poller refuses (regular files under epoll),
        #                  reported ready on every pass; never also in _registered.
        #   _polled        keys whose channel is asked readable()/writable() on every pass
        #                  (asyncore's rule for overrides); each is in the map.
        #   _dirty         keys to re-examine at the next pass: added, removed, interest changed,
        #                  or an event other than plain input; in the map or not.
        # With a plain dict for a map nobody reports changes, so every key is examined.
        self._registered = {}
        self._always_ready = {}
        self._polled = set()
        # Socket keys only: key -> the descriptor registered for it, and back.
        self._fd_of = {}
        self._key_of = {}
        self.clock = clock
        self._timers = TimerQueue(clock)
        self._ready = collections.deque()
        self._stopping = False
        self._busy = 0
        self._thread_lock = threading.Lock()
        self._want_wakeup = wakeup
        self._waker = None
        self._waker_fd = None
        if trace is None:
            trace = os.environ.get("EVENTLOOP_TRACE", "") not in ("", "0")
        self.trace = bool(trace)
        if self.trace:
            _trace.enable_output()
        _all_reactors.add(self)

    # ----------------------------------------------------------------- backend
    @property
    def poller(self):
        """The OS poller, created on first use (so a reactor made before ``fork()`` is safe)."""
        if self._poller is None:
            self._poller = make_poller(self._poller_spec)
            if self._want_wakeup:
                self._open_waker()
        return self._poller

    def fileno(self):
        """The poller's descriptor, for embedding in another loop (-1 for poll/select)."""
        return self.poller.fileno()

    def signal_wakeup_fd(self):
        """The descriptor to give ``signal.set_wakeup_fd()`` in a program with threads: a
        signal that one of them takes still wakes a loop waiting in the poller (Python runs
        its handler in the main thread only once that thread runs again).  None when the
        reactor was made with ``wakeup=False``."""
        if self.poller is not None and self._waker is not None:
            return self._waker[1].fileno()
        return None

    def _open_waker(self):
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        self._waker = (r, w)
        self._waker_fd = r.fileno()
        self._poller.register(r.fileno(), READ)

    def _wake(self):
        waker = self._waker
        if waker is not None:
            try:
                waker[1].send(b"\0")
            except OSError:
                pass            # a full buffer already guarantees a wake-up

    def _drain_waker(self):
        try:
            while self._waker[0].recv(4096):
                pass
        except OSError:
            pass

    def close(self):
        """Release the poller and the wake-up pair (channels are left alone)."""
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        if self._waker is not None:
            for s in self._waker:
                s.close()
        self._start_afresh()

    def _after_fork(self):
        """In a forked child: the poller and waker belong to the parent; start afresh."""
        self._poller = None
        self._start_afresh()

    def _start_afresh(self):
        """Forget the OS poller's registrations and the waker; every channel is re-examined
        (and registered again) on the next pass."""
        self._waker = None
        self._waker_fd = None
        self._registered.clear()
        self._polled.clear()
        self._always_ready.clear()
        self._fd_of.clear()
        self._key_of.clear()
        self._dirty.update(self.map)

    # ------------------------------------------- maps whose changes are reported
    def touch(self, key):
        """The channel at ``key`` was added or replaced, or may want other events: re-examine
        it next pass (a :class:`ChannelMap` reports this by itself)."""
        self._dirty.add(key)

    def forget(self, key):
        """The channel at ``key`` is leaving the map: stop watching its descriptor now, before
        its socket is closed (a :class:`ChannelMap` reports this by itself)."""
        self._forget(key)

    def resync(self):
        """The map may have changed unreported: re-examine every channel next pass, and drop
        the registrations of keys no longer in it (one walk of the map)."""
        self._dirty.update(self.map)
        self._dirty.update(self._registered)
        self._dirty.update(self._always_ready)

    # ------------------------------------------------------------ interest sync
    def _forget(self, key):
        if self.trace:
            _trace.removed(key)
        self._dirty.discard(key)
        self._polled.discard(key)
        self._always_ready.pop(key, None)
        self._unregister(key)

    def _unregister(self, key):
        """Drop the registration of ``key``, if any, and stop watching its descriptor unless
        another key has taken the number over since (a socket key closed and reused)."""
        if self._registered.pop(key, None) is None:
            return
        fd = self._fd_of.pop(key, key) if self._fd_of else key
        owner = self._key_of.get(fd, fd) if self._key_of else fd
        if owner is key or owner == key:
            if fd is not key:
                del self._key_of[fd]
            if self._poller is not None:
                self._poller.unregister(fd)

    def _descriptor_to_register(self, key, todo):
        """The descriptor to give the OS poller for ``key``.  A key select() would refuse
        raises as select() does; every examined key stays due for the next pass, which
        raises again while the key is in the map."""
        if key.__class__ is int and key >= 0:
            return key
        try:
            return _descriptor(key)
        except (TypeError, ValueError):
            self._dirty.update(todo)
            raise

    @staticmethod
    def _interest(obj):
        events = 0
        if obj.readable():
            events = READ | URGENT
        if obj.writable() and not getattr(obj, "accepting", False):
            events |= WRITE
        return events

    def _sync(self):
        """Bring the OS poller in line with the channels that may have changed."""
        todo = self._to_examine()
        if todo:
            poller = self.poller
            registered = self._registered
            cmap = self.map
            interest = self._interest
            for key in todo:
                entry = registered.get(key)
                # What a channel asked on every pass mostly answers: the same as before, for
                # the object registered; nothing to reconcile (descriptor-number keys only).
                if entry is not None and key.__class__ is int and entry[0] is cmap.get(key) \
                        and entry[1] == interest(entry[0]):
                    continue
                self._reconcile(key, poller, todo)

    def _to_examine(self):
        """The keys to look at this pass: those touched since the last, and the channels asked
        every pass; with a map nobody reports on, every key (registered or in the map)."""
        if self._observed:
            todo = self._dirty
            self._dirty = set()
            if self._polled:
                todo |= self._polled
            return todo
        todo = set(self.map)
        todo.update(self._registered)
        todo.update(self._always_ready)
        self._dirty.clear()
        return todo

    def _reconcile(self, key, poller, todo):
        """Make the poller watch ``key`` for what its channel wants now, or forget it."""
        registered = self._registered
        obj = self.map.get(key)
        if obj is None:
            if key in registered or key in self._always_ready:
                self._forget(key)
            return
        events = self._interest(obj)
        entry = registered.get(key)
        if entry is not None and key.__class__ is not int and \
                self._descriptor_to_register(key, todo) != self._fd_of.get(key):
            self._unregister(key)       # the socket was closed, its number reused
            entry = None
        if entry is not None and entry[0] is obj:
            if entry[1] != events:
                self._change(key, obj, entry[1], events, poller)
            return
        if entry is not None:           # a different object took over this descriptor
            self._unregister(key)
        if key in self._always_ready:
            if events:
                self._always_ready[key] = events
            else:
                del self._always_ready[key]
            return
        if key.__class__ is not int or self._asks_every_pass(obj):
            # A channel under a socket key cannot name it in interest_changed(): ask it.
            self._polled.add(key)
        if events:
            self._register(key, obj, events, poller, todo)

    def _change(self, key, obj, old, events, poller):
        """A registered channel wants other events (none: it leaves the poller)."""
        if self.trace:
            _trace.interest(key, old, events, obj)
        if not events:
            self._unregister(key)
            return
        fd = self._fd_of.get(key, key) if self._fd_of else key
        try:
            poller.modify(fd, events)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self._register_failed(key, obj, events, exc)
                return
            poller.register(fd, events)   # closed and reopened behind our back
        self._registered[key] = (obj, events)

    def _register(self, key, obj, events, poller, todo):
        if self.trace:
            _trace.interest(key, None, events, obj)
        fd = self._descriptor_to_register(key, todo)
        try:
            poller.register(fd, events)
        except FileExistsError:
            poller.modify(fd, events)
        except (OSError, ValueError, TypeError) as exc:
            self._register_failed(key, obj, events, exc)
            return
        self._registered[key] = (obj, events)
        if fd is not key:
            self._fd_of[key] = fd
            self._key_of[fd] = key

    #: Whether the reactor must ask a channel's readable()/writable() on every pass.
    _asks_every_pass = staticmethod(_asks_every_pass)

    def _register_failed(self, key, obj, events, exc):
        if isinstance(exc, PermissionError):
            # epoll refuses regular files; poll() and select() call them always ready.
            self._always_ready[key] = events
            return
        # Like poll()'s POLLNVAL: the descriptor is unusable, so the channel is told it closed.
        log.debug("cannot watch fd %r for %s: %s", key, type(obj).__name__, exc)
        self._ready.append(_Deferred(self._dispatch, (obj, key, CLOSED)))

    # --------------------------------------------------------------- dispatch
    def _dispatch(self, obj, fd, bits):
        """Deliver one poll result to one channel, as asyncore's readwrite() does."""
        cmap = self.map
        try:
            if bits == READ:
                # Input alone, the commonest event, needs nothing more: without more input it
                # does not recur, so the channel is not re-examined (see below).
                obj.handle_read_event()
                return
            if bits & READ:
                obj.handle_read_event()
            if bits & WRITE and cmap.get(fd) is obj:
                obj.handle_write_event()
            if bits & URGENT and cmap.get(fd) is obj:
                obj.handle_expt_event()
            if bits & CLOSED and not bits & (READ | WRITE) and cmap.get(fd) is obj:
                # Hang-up or error with nothing readable/writable to report it through
                # (with either, the handler's recv/send sees the error itself, as with select).
                obj.handle_close()
        except Exception as exc:
            self._handler_failed(obj, exc)
        if bits != READ and self._observed:
            # A write-ready channel that forgot interest_changed() would be woken again and
            # again; re-examining it after such events keeps that from becoming a busy loop.
            # Read events need no check: without input they do not recur.
            self._dirty.add(fd)

    def deliver(self, obj, key, events):
        """Hand ``events`` to the channel ``obj`` at ``key`` now, as poll results are handed
        (its handlers' errors go where theirs go): for a layer above the socket that holds
        input the socket will not report again (:mod:`eventloop.tls`)."""
        self._dispatch(obj, key, events)

    @staticmethod
    def _handler_failed(obj, exc):
        """What asyncore's readwrite() does with an exception from a handler (called while
        it is being handled, so ``raise`` re-raises it)."""
        if isinstance(exc, (BlockingIOError, InterruptedError)):
            return                                    # spurious readiness: the next pass retries
        if isinstance(exc, RERAISED):
            raise
        if isinstance(exc, OSError) and exc.errno in DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()

    def _trace_dispatch(self, obj, fd, bits):
        _trace.dispatch(fd, bits, obj)
        self._dispatch(obj, fd, bits)

    # ------------------------------------------------------------- the pass
    def run_once(self, timeout=None):
        """One pass: wait for I/O at most ``timeout`` seconds (None: until something happens)
        and deliver it, fire the timers due then, run the callbacks queued then."""
        events = self._wait_for_io(timeout)
        if events:
            self._deliver(events)
        if self._timers.active:
            self._fire_timers()
        if self._ready:
            self._run_ready()

    def _wait_for_io(self, timeout):
        """Phase 1: bring the poller in line with the channels, then wait, at most until the
        next timer is due, and not at all while callbacks are queued or a descriptor is
        always ready.  Returns the events, by map key."""
        if self._dirty or self._polled or not self._observed:
            self._sync()
        if self._ready or self._always_ready:
            timeout = 0.0
        elif self._timers.active:
            deadline = self._timers.next_deadline()
            if deadline is not None:
                wait = max(deadline - self.clock(), 0.0)
                if timeout is None or wait < timeout:
                    timeout = wait
        poller = self._poller or self.poller        # (made on first use, with its waker)
        if timeout is None and not self._registered and self._waker is None:
            raise RuntimeError("run_once(None) would block forever: nothing to wait for")
        events = poller.poll(timeout)
        if self._key_of:
            events = self._events_by_key(events)
        if self._always_ready:
            events = events + list(self._always_ready.items())
        return events

    def _deliver(self, events):
        """Phase 1, continued: each event goes to the channel registered for its key when the
        poll began, and only while that channel is still in the map."""
        registered = self._registered
        cmap = self.map
        dispatch = self._trace_dispatch if self.trace else self._dispatch
        for key, bits in events:
            entry = registered.get(key)
            if entry is not None:
                obj = entry[0]
                if cmap.get(key) is obj:
                    dispatch(obj, key, bits)
                else:
                    self._dirty.add(key)    # replaced or removed unreported: re-examine it
            elif key == self._waker_fd:
                self._drain_waker()
            elif key in self._always_ready:
                obj = cmap.get(key)
                if obj is not None:
                    dispatch(obj, key, bits)

    def _fire_timers(self):
        """Phase 2: the timers due now, in deadline order; one that an earlier callback
        cancelled or reset is not handed out (see TimerQueue.due)."""
        for timer in self._timers.due(self.clock()):
            if self.trace:
                _trace.timer_fires(timer.callback)
            self._run_callback(timer.callback, timer.args, timer.owner)

    def _run_ready(self):
        """Phase 3: the callbacks queued before this phase began (those they queue wait for
        the next pass)."""
        ready = self._ready
        for _ in range(len(ready)):
            item = ready.popleft()
            self._run_callback(item.callback, item.args)

    def _events_by_key(self, events):
        """Poll results for descriptors registered under a socket key, under that key."""
        key_of = self._key_of
        return [(key_of.get(fd, fd), bits) for fd, bits in events]

    def _run_callback(self, callback, args, owner=None):
        try:
            callback(*args)
        except RERAISED:
            raise
        except Exception:
            if owner is None:
                owner = getattr(callback, "__self__", None)
            if owner is not None and hasattr(owner, "handle_error") and \
                    hasattr(owner, "handle_read_event"):
                owner.handle_error()
            else:
                log.exception("error in callback %s", _trace.callable_name(callback))

    def timeout(self):
        """Seconds until the reactor next has work without I/O (a timer or a queued callback),
        or None; a host loop that embeds the reactor waits at most this long before
        calling ``run_once(0)``."""
        if self._ready or self._always_ready or (self._dirty and self._observed):
            return 0.0
        deadline = self._timers.next_deadline()
        return None if deadline is None else max(deadline - self.clock(), 0.0)

    def run(self):
        """Run passes until :meth:`stop` is called."""
        self._stopping = False
        try:
            while not self._stopping:
                self.run_once(None)
        finally:
            self._stopping = False

    def run_until_idle(self, timeout=None):
        """Run passes while channels, timers, queued callbacks or :meth:`hold` s remain, or until
        :meth:`stop`.  ``timeout`` bounds each wait (not the total)."""
        self._stopping = False
        try:
            while not self._stopping and self.has_work():
                self.run_once(timeout)
        finally:
            self._stopping = False

    def has_work(self):
        """True while anything could still happen: channels, timers, callbacks or holds."""
        return bool(self.map or self._timers.active or self._ready or self._busy)

    def stop(self):
        """Make :meth:`run` return after the current pass; safe from any thread."""
        self._stopping = True
        self._wake()

    def hold(self):
        """Keep :meth:`run_until_idle` running while work happens elsewhere (e.g. a resolver
        thread); pair each call with :meth:`release`."""
        with self._thread_lock:
            self._busy += 1

    def release(self):
        with self._thread_lock:
            self._busy -= 1
        self._wake()

    # ----------------------------------------------------------- scheduling
    def call_soon(self, callback, *args):
        """Run ``callback(*args)`` in the next pass's callback phase (after its I/O)."""
        handle = _Deferred(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args):
        """Like :meth:`call_soon`, from any thread: wakes the loop if it is waiting."""
        handle = _Deferred(callback, args)
        with self._thread_lock:
            self._ready.append(handle)
        self._wake()
        return handle

    def call_later(self, delay, callback, *args):
        """Run ``callback(*args)`` ``delay`` seconds from now; returns a :class:`Timer`."""
        return self._timers.schedule(self.clock() + delay, callback, args)

    def call_at(self, when, callback, *args):
        """Run ``callback(*args)`` when the reactor's clock reaches ``when``."""
        return self._timers.schedule(when, callback, args)

    def call_every(self, interval, callback, *args, first=None):
        """Run ``callback(*args)`` every ``interval`` seconds (first after ``first``, default
        ``interval``) until the returned timer is cancelled."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        start = interval if first is None else first
        return self._timers.schedule(self.clock() + start, callback, args, interval)

    def time(self):
        """The reactor's clock."""
        return self.clock()

    def __repr__(self):
        backend = self._poller.name if self._poller is not None else (self._poller_spec or "default")
        return "<Reactor %s channels=%d timers=%d>" % (backend, len(self.map), self._timers.active)


class _Deferred:
    """A queued callback; ``cancel()`` turns it into a no-op."""

    __slots__ = ("callback", "args")

    def __init__(self, callback, args):
        self.callback = callback
        self.args = args

    def cancel(self):
        self.callback = _noop
        self.args = ()


def _noop():
    pass


_all_reactors = weakref.WeakSet()


def _reset_after_fork():
    for reactor in list(_all_reactors):
        reactor._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

_default = None
_default_lock = threading.Lock()


def get_reactor():
    """The process-wide default reactor (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Reactor()
    return _default


def set_reactor(reactor):
    """Replace the default reactor (e.g. with one on a virtual clock); returns the old one."""
    global _default
    old, _default = _default, reactor
    return old


def loop(timeout=None, reactor=None):
    """Run the default reactor (or ``reactor``) until no channels, timers or callbacks remain,
    like ``asyncore.loop()`` in the classic examples."""
    (reactor or get_reactor()).run_until_idle(timeout)
