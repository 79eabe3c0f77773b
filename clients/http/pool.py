"""Idle keep-alive connections, kept per reactor for the next request to the same origin.

:func:`connection_pool` gives a reactor's :class:`ConnectionPool` (made on first use, dropped
with the reactor); :func:`close_idle_connections` closes what it holds.  A pooled connection is
a socket and its :class:`eventloop.http11.Connection`, ready for the next cycle, out of the
reactor's map.
"""
import collections
import select
import threading
import weakref

from eventloop import get_reactor

from .tls import only_tls_records

__all__ = ["ConnectionPool", "connection_pool", "close_idle_connections", "close_quietly"]


class ConnectionPool:
    """Idle keep-alive connections of one reactor, keyed by (scheme, host, port, TLS context).

    An idle connection is out of the reactor's map (it costs nothing and does not keep
    ``loop()`` running).  ``checkout`` hands back the most recently used live connection and
    drops those that expired or that the server closed meanwhile.
    """

    def __init__(self, clock, max_per_origin=64, expiry=15.0):
        self.clock = clock
        self.max_per_origin = max_per_origin
        self.expiry = expiry
        self._idle = {}     # key -> deque of (deadline, sock, conn), most recent last

    def __len__(self):
        return sum(len(q) for q in self._idle.values())

    def checkin(self, key, sock, conn, expiry=None):
        """Keep ``sock`` (with its http11 ``conn``, ready for the next cycle) for reuse."""
        expiry = self.expiry if expiry is None else min(expiry, self.expiry)
        if expiry <= 0 or self.max_per_origin <= 0:
            close_quietly(sock)
            return
        queue = self._idle.setdefault(key, collections.deque())
        queue.append((self.clock() + expiry, sock, conn))
        while len(queue) > self.max_per_origin:
            close_quietly(queue.popleft()[1])

    def checkout(self, key):
        """A live idle connection ``(sock, conn)`` for ``key``, or None."""
        queue = self._idle.get(key)
        now = self.clock()
        while queue:
            deadline, sock, conn = queue.pop()
            if deadline > now and not _is_stale(sock):
                if not queue:
                    del self._idle[key]
                return sock, conn
            close_quietly(sock)
        self._idle.pop(key, None)
        return None

    def close(self):
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for queue in idle.values():
            for _, sock, _ in queue:
                close_quietly(sock)


def _is_stale(sock):
    """True when an idle connection is unusable: closed, or readable (EOF or stray bytes)."""
    try:
        if sock.fileno() < 0:
            return True
        readable = select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return True
    return bool(readable) and not only_tls_records(sock)


def close_quietly(sock):
    """Close ``sock``, ignoring the error of one already broken."""
    try:
        sock.close()
    except OSError:
        pass


_pools = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()      # fetch() in several threads: one private reactor each


def connection_pool(reactor=None):
    """The pool of idle connections that belongs to ``reactor`` (default: the default one)."""
    reactor = reactor or get_reactor()
    with _pools_lock:
        pool = _pools.get(reactor)
        if pool is None:
            pool = _pools[reactor] = ConnectionPool(reactor.clock)
    return pool


def close_idle_connections(reactor=None):
    """Close the idle keep-alive connections kept for ``reactor``."""
    with _pools_lock:
        pool = _pools.pop(reactor or get_reactor(), None)
    if pool is not None:
        pool.close()
