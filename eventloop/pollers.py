"""Readiness backends: one small contract, one short class per OS mechanism.

The shape follows :mod:`selectors` (register / modify / unregister / poll), with one
addition the ``selectors`` module cannot express: *urgent* (out-of-band) data, which
asyncore reports through ``handle_expt``.  epoll and poll see it as ``POLLPRI``, select
as the exceptional set.  Any :class:`selectors.BaseSelector` can still be used through
:class:`SelectorsPoller` (without urgent-data reporting).

Event bits are plain ints so a poll result is cheap to build and to test::

    READ | WRITE | URGENT   what a channel asks for
    CLOSED                 only in results: hang-up, error, or an invalid descriptor

They are the values of poll()'s and epoll's own bits (POLLIN, POLLOUT, POLLPRI; POLLERR,
POLLHUP and POLLNVAL for CLOSED), the same on Linux, the BSDs and macOS, so those two
backends hand their results over as the kernel gives them, untranslated.
"""
import abc
import errno
import math
import select
import selectors
import sys

READ = 1            # POLLIN, EPOLLIN
URGENT = 2          # POLLPRI, EPOLLPRI
WRITE = 4           # POLLOUT, EPOLLOUT
CLOSED = 8 | 16 | 32    # POLLERR | POLLHUP | POLLNVAL (EPOLLERR, EPOLLHUP)

_POLL_LAYOUT = hasattr(select, "poll") and (select.POLLIN, select.POLLPRI, select.POLLOUT,
                                            select.POLLERR | select.POLLHUP | select.POLLNVAL
                                            ) == (READ, URGENT, WRITE, CLOSED)
_EPOLL_LAYOUT = hasattr(select, "epoll") and (select.EPOLLIN, select.EPOLLPRI, select.EPOLLOUT,
                                              select.EPOLLERR | select.EPOLLHUP
                                              ) == (READ, URGENT, WRITE, CLOSED & ~32)

__all__ = ["READ", "WRITE", "URGENT", "CLOSED", "Poller", "EpollPoller", "PollPoller",
           "SelectPoller", "SelectorsPoller", "make_poller", "available_pollers"]


class Poller(abc.ABC):
    """Watches file descriptors for readiness.

    ``register`` may raise :class:`PermissionError` for descriptors the mechanism cannot
    watch (epoll and regular files); the reactor then treats them as always ready, which
    is what poll() and select() report for regular files.
    """

    name = "abstract"

    @abc.abstractmethod
    def register(self, fd, events):
        """Start watching ``fd`` for ``events`` (READ|WRITE|URGENT)."""

    @abc.abstractmethod
    def modify(self, fd, events):
        """Change what ``fd`` is watched for."""

    @abc.abstractmethod
    def unregister(self, fd):
        """Stop watching ``fd``; a descriptor already closed is not an error."""

    @abc.abstractmethod
    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever) and return ``[(fd, bits), ...]``."""

    def close(self):
        """Release the OS resources of the poller."""

    def fileno(self):
        """The descriptor an outer loop can wait on, or -1 when the mechanism has none."""
        return -1

    def __repr__(self):
        return "<%s>" % type(self).__name__


if hasattr(select, "epoll"):
    class EpollPoller(Poller):
        """Linux epoll: cost proportional to ready descriptors, no descriptor-number limit."""

        name = "epoll"
        _TO_OS = {}
        for _bits in range(8):
            _TO_OS[_bits] = ((select.EPOLLIN if _bits & READ else 0)
                             | (select.EPOLLOUT if _bits & WRITE else 0)
                             | (select.EPOLLPRI if _bits & URGENT else 0))
        del _bits
        _IN, _OUT, _PRI = select.EPOLLIN, select.EPOLLOUT, select.EPOLLPRI
        _GONE = select.EPOLLHUP | select.EPOLLERR

        @classmethod
        def _from_os(cls, ev):
            bits = 0
            if ev & cls._IN:
                bits = READ
            if ev & cls._OUT:
                bits |= WRITE
            if ev & cls._PRI:
                bits |= URGENT
            if ev & cls._GONE:
                bits |= CLOSED
            return bits

        def __init__(self):
            self._epoll = select.epoll()
            self._max = 64
            self._bits = {}         # epoll event mask -> our bits, filled as masks are seen

        def register(self, fd, events):
            self._epoll.register(fd, self._TO_OS[events])

        def modify(self, fd, events):
            self._epoll.modify(fd, self._TO_OS[events])

        def unregister(self, fd):
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

        def poll(self, timeout):
            result = self._epoll.poll(-1 if timeout is None else max(timeout, 0.0), self._max)
            if len(result) == self._max:
                self._max = min(self._max * 2, 8192)
            if _EPOLL_LAYOUT:
                return result                   # the bits are ours already
            table = self._bits
            try:
                return [(fd, table[ev]) for fd, ev in result]
            except KeyError:
                for _, ev in result:
                    if ev not in table:
                        table[ev] = self._from_os(ev)
                return [(fd, table[ev]) for fd, ev in result]

        def close(self):
            self._epoll.close()

        def fileno(self):
            return self._epoll.fileno()


if hasattr(select, "poll"):
    class PollPoller(Poller):
        """POSIX poll(): no descriptor-number limit, cost proportional to watched descriptors."""

        name = "poll"

        def __init__(self):
            self._poll = select.poll()

        @staticmethod
        def _to_os(events):
            return ((select.POLLIN if events & READ else 0)
                    | (select.POLLOUT if events & WRITE else 0)
                    | (select.POLLPRI if events & URGENT else 0))

        def register(self, fd, events):
            self._poll.register(fd, events if _POLL_LAYOUT else self._to_os(events))

        def modify(self, fd, events):
            self._poll.modify(fd, events if _POLL_LAYOUT else self._to_os(events))

        def unregister(self, fd):
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass

        def poll(self, timeout):
            ms = None if timeout is None else max(math.ceil(timeout * 1000), 0)
            if _POLL_LAYOUT:
                return self._poll.poll(ms)      # the bits are ours already
            out = []
            for fd, ev in self._poll.poll(ms):
                bits = 0
                if ev & select.POLLIN:
                    bits = READ
                if ev & select.POLLOUT:
                    bits |= WRITE
                if ev & select.POLLPRI:
                    bits |= URGENT
                if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    bits |= CLOSED
                out.append((fd, bits))
            return out


class SelectPoller(Poller):
    """select(): everywhere, but limited to descriptor numbers below FD_SETSIZE (1024 on Linux)."""

    name = "select"

    def __init__(self):
        self._r, self._w, self._x = set(), set(), set()

    def register(self, fd, events):
        if fd >= 1024 and sys.platform != "win32":
            # The C library's fd_set cannot hold it; say so at once rather than at poll time.
            raise ValueError("select() cannot watch descriptor %d (FD_SETSIZE is 1024); "
                             "use the epoll or poll backend" % fd)
        self.modify(fd, events)

    def modify(self, fd, events):
        for bit, fds in ((READ, self._r), (WRITE, self._w), (URGENT, self._x)):
            if events & bit:
                fds.add(fd)
            else:
                fds.discard(fd)

    def unregister(self, fd):
        self._r.discard(fd)
        self._w.discard(fd)
        self._x.discard(fd)

    def poll(self, timeout):
        if not (self._r or self._w or self._x):
            # select() with three empty sets is an error on some platforms; sleep instead.
            if timeout is None:
                raise ValueError("nothing to wait for and no timeout")
            select.select([], [], [], max(timeout, 0.0))
            return []
        try:
            r, w, x = select.select(self._r, self._w, self._x,
                                    None if timeout is None else max(timeout, 0.0))
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            return self._find_bad()
        got = {}
        for fd in r:
            got[fd] = READ
        for fd in w:
            got[fd] = got.get(fd, 0) | WRITE
        for fd in x:
            got[fd] = got.get(fd, 0) | URGENT
        return list(got.items())

    def _find_bad(self):
        """select() failed with EBADF: report the closed descriptors as CLOSED."""
        bad = []
        for fd in self._r | self._w | self._x:
            try:
                select.select([fd], [], [], 0)
            except OSError:
                bad.append((fd, CLOSED))
        return bad


class SelectorsPoller(Poller):
    """Adapter for any :class:`selectors.BaseSelector` (kqueue, devpoll, ...); no urgent data."""

    def __init__(self, selector=None):
        self._sel = selector if selector is not None else selectors.DefaultSelector()
        self.name = "selectors:" + type(self._sel).__name__

    @staticmethod
    def _to_sel(events):
        return ((selectors.EVENT_READ if events & READ else 0)
                | (selectors.EVENT_WRITE if events & WRITE else 0))

    def register(self, fd, events):
        mask = self._to_sel(events)
        if mask:
            self._sel.register(fd, mask)

    def modify(self, fd, events):
        mask = self._to_sel(events)
        try:
            self._sel.get_key(fd)
        except KeyError:
            if mask:
                self._sel.register(fd, mask)
            return
        if mask:
            self._sel.modify(fd, mask)
        else:
            self._sel.unregister(fd)

    def unregister(self, fd):
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def poll(self, timeout):
        out = []
        for key, mask in self._sel.select(timeout):
            bits = ((READ if mask & selectors.EVENT_READ else 0)
                    | (WRITE if mask & selectors.EVENT_WRITE else 0))
            out.append((key.fd, bits))
        return out

    def close(self):
        self._sel.close()

    def fileno(self):
        try:
            return self._sel.fileno()
        except (AttributeError, NotImplementedError):
            return -1


def available_pollers():
    """Names accepted by :func:`make_poller`, best first."""
    names = []
    if hasattr(select, "epoll"):
        names.append("epoll")
    if hasattr(select, "kqueue"):
        names.append("kqueue")
    if hasattr(select, "poll"):
        names.append("poll")
    names += ["select", "selectors"]
    return names


def make_poller(spec=None):
    """Build a poller from a name ("epoll", "kqueue", "poll", "select", "selectors", "default"),
    a :class:`Poller`, a :class:`selectors.BaseSelector`, or None for the platform's best,
    the same mechanism :data:`selectors.DefaultSelector` picks."""
    if isinstance(spec, Poller):
        return spec
    if isinstance(spec, selectors.BaseSelector):
        return SelectorsPoller(spec)
    name = spec or "default"
    if name == "default":
        name = available_pollers()[0]
    if name == "epoll" and hasattr(select, "epoll"):
        return EpollPoller()
    if name == "kqueue" and hasattr(select, "kqueue"):
        return SelectorsPoller(selectors.KqueueSelector())
    if name == "poll" and hasattr(select, "poll"):
        return PollPoller()
    if name == "select":
        return SelectPoller()
    if name == "selectors":
        return SelectorsPoller()
    raise ValueError("unknown or unavailable poller %r (available: %s)"
                     % (spec, ", ".join(available_pollers())))
