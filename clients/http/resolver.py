"""Host names to addresses without blocking the reactor: a lookup runs ``getaddrinfo`` in a
daemon thread and hands its result back through ``call_soon_threadsafe``.

Numeric addresses and ``localhost`` need no lookup (:func:`addresses_without_lookup`).
"""
import socket
import threading

__all__ = ["Lookup", "addresses_without_lookup", "getaddrinfo"]

#: The blocking resolver the lookup threads call (tests replace it).
getaddrinfo = socket.getaddrinfo


def addresses_without_lookup(host, port):
    """``[(family, sockaddr)]`` for numeric addresses and localhost, or None if a lookup is needed."""
    if host == "localhost":
        return [(socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port, 0, 0))]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [(info[0], info[4]) for info in infos]


class Lookup:
    """One getaddrinfo call in a daemon thread; ``deliver(lookup, addresses, exc)`` runs on the
    reactor with ``[(family, sockaddr)]`` and None, or None and the exception.

    The reactor is held (``run_until_idle`` keeps going) until the result is delivered or the
    request gives up (:meth:`cancel`), whichever comes first.
    """

    def __init__(self, reactor, host, port, deliver):
        self.reactor = reactor
        self._lock = threading.Lock()
        self._held = True
        reactor.hold()
        self._deliver = deliver
        thread = threading.Thread(target=self._run, args=(host, port), daemon=True,
                                  name="resolve %s" % host)
        thread.start()

    def _run(self, host, port):
        try:
            infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result = ([(info[0], info[4]) for info in infos], None)
        except Exception as exc:        # gaierror, UnicodeError...: all become the request's error
            result = (None, exc)
        with self._lock:
            if self._held:
                self.reactor.call_soon_threadsafe(self._deliver, self, *result)
        self.cancel()

    def cancel(self):
        """Stop holding the reactor (the thread may still finish; its result is then ignored)."""
        with self._lock:
            held, self._held = self._held, False
        if held:
            self.reactor.release()
