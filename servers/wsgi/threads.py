"""The two ways between the reactor and the application threads.

* :class:`ThreadPool`: a fixed set of threads taking the calls the reactor submits, in order;
* :class:`Mailbox`: calls the application threads post for the reactor thread, delivered in
  the order posted, in batches: one wake-up of the reactor carries every call posted while
  it was busy, instead of one wake-up (a system call each side) per call.
"""
import logging
import queue
import threading
import time

__all__ = ["ThreadPool", "Mailbox"]

log = logging.getLogger("servers.wsgi")


class ThreadPool:
    """``threads`` daemon threads running the callables given to :meth:`submit`, in order."""

    def __init__(self, threads, name="wsgi"):
        self._queue = queue.SimpleQueue()
        self.running = 0            # calls being run now (for shutdown's report)
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name="%s-%d" % (name, i), daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, call):
        """Run ``call()`` on the next free thread."""
        self._queue.put(call)

    def submit_all(self, calls):
        """Run each of ``calls`` on the next free thread, in order."""
        put = self._queue.put
        for call in calls:
            put(call)

    def _work(self):
        get = self._queue.get
        while True:
            call = get()
            if call is None:
                return
            with self._lock:
                self.running += 1
            try:
                call()
            except BaseException:   # (the calls log their own errors: this is a last resort)
                log.error("error in a WSGI thread", exc_info=True)
            finally:
                with self._lock:
                    self.running -= 1

    def shutdown(self, timeout):
        """Let the threads finish what they run, for at most ``timeout`` seconds; returns how
        many are still busy then (daemon threads: they do not keep the process alive)."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self._threads)


class Mailbox:
    """Calls posted from any thread, run on the reactor's thread in the order posted."""

    def __init__(self, reactor):
        self._reactor = reactor
        self._lock = threading.Lock()
        self._calls = []

    def post(self, function, *args):
        """Run ``function(*args)`` on the reactor thread, after every call posted before it."""
        with self._lock:
            calls = self._calls
            calls.append((function, args))
            if len(calls) > 1:
                return                  # a delivery is scheduled already
        self._reactor.call_soon_threadsafe(self._deliver)

    def _deliver(self):
        with self._lock:
            calls, self._calls = self._calls, []
        for function, args in calls:
            try:
                function(*args)
            except Exception:
                log.error("error in %r", function, exc_info=True)
