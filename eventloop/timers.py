"""Timers on a monotonic clock: a heap of deadlines with lazy cancellation.

``TimerQueue`` knows nothing about I/O; the reactor asks it for the next deadline (its
poll timeout) and for the timers that are due, one at a time, so a timer that an earlier
callback cancelled or reset is never handed out.  Cancelled timers stay in the heap until
they reach the top or until they are the majority, when the heap is rebuilt.
"""
import heapq
import itertools

__all__ = ["Timer", "TimerQueue"]


class Timer:
    """A scheduled call.  ``cancel()`` is idempotent; ``reset()`` reschedules it.

    ``interval`` is None for a one-shot timer and the period for a repeating one
    (the next deadline is computed from the previous deadline, so it does not drift).
    ``delay`` is how far ahead the timer was scheduled: what ``reset()`` restarts it with.
    """

    __slots__ = ("when", "callback", "args", "interval", "delay", "cancelled", "_queue", "_seq",
                 "owner", "__weakref__")

    def __init__(self, queue, when, callback, args, interval=None, delay=0.0):
        self._queue = queue
        self.when = when
        self.callback = callback
        self.args = args
        self.interval = interval
        self.delay = delay
        self.cancelled = False
        self.owner = None
        self._seq = None            # the heap entry that is live for this timer, if any

    @property
    def pending(self):
        """True while the timer waits in its queue."""
        return self._seq is not None

    def cancel(self):
        """Stop the timer from firing; harmless if it already fired or was cancelled."""
        self.cancelled = True
        self._queue._retire(self)

    def reset(self, delay=None):
        """Fire ``delay`` seconds from now (default: the timer's own delay, or its interval if
        it repeats), also after it fired or was cancelled."""
        if delay is None:
            delay = self.interval if self.interval is not None else self.delay
        else:
            self.delay = delay
        self._queue._retire(self)
        self.cancelled = False
        self._queue._push(self, self._queue.clock() + delay)

    def __repr__(self):
        name = getattr(self.callback, "__qualname__", repr(self.callback))
        state = "pending at %.3f" % self.when if self.pending else (
            "cancelled" if self.cancelled else "done")
        every = "" if self.interval is None else " every %gs" % self.interval
        return "<Timer %s %s%s>" % (name, state, every)


class TimerQueue:
    """A heap of :class:`Timer` ordered by deadline, then by scheduling order."""

    def __init__(self, clock):
        self.clock = clock
        self._heap = []
        self._seq = itertools.count()
        self._stale = 0             # heap entries whose timer was cancelled or rescheduled
        self.active = 0

    def __len__(self):
        return self.active

    def schedule(self, when, callback, args=(), interval=None):
        """Add a timer firing at clock time ``when``."""
        timer = Timer(self, when, callback, args, interval, max(when - self.clock(), 0.0))
        self._push(timer, when)
        return timer

    def _push(self, timer, when):
        timer.when = when
        timer._seq = next(self._seq)
        self.active += 1
        heapq.heappush(self._heap, (when, timer._seq, timer))

    def _retire(self, timer):
        """Make the timer's heap entry stale (it is skipped when it reaches the top)."""
        if timer._seq is None:
            return
        timer._seq = None
        self.active -= 1
        self._stale += 1
        if self._stale > 64 and self._stale > len(self._heap) // 2:
            self._heap = [e for e in self._heap if e[1] == e[2]._seq]
            heapq.heapify(self._heap)
            self._stale = 0

    def _drop_stale_top(self):
        heap = self._heap
        while heap and heap[0][1] != heap[0][2]._seq:
            heapq.heappop(heap)
            if self._stale:
                self._stale -= 1

    def next_deadline(self):
        """The earliest pending deadline, or None when no timer is pending."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def due(self, now):
        """Remove and yield, one at a time and in deadline order, the timers due at ``now`` that
        were scheduled before this call; each is taken from the heap only when the previous
        one's callback has run, so one that it cancelled or reset is not handed out.

        Repeating timers are rescheduled as they are handed out, so a callback may cancel them.
        """
        heap = self._heap
        limit = self._seq_limit()
        while True:
            self._drop_stale_top()
            if not heap or heap[0][0] > now or heap[0][1] >= limit:
                return
            when, _, timer = heapq.heappop(heap)
            timer._seq = None
            self.active -= 1
            if timer.interval is not None:
                nxt = when + timer.interval
                if nxt <= now:
                    # Fell behind (a long pause): skip missed periods instead of firing a burst.
                    nxt = now + timer.interval
                self._push(timer, nxt)
            yield timer

    def pop_due(self, now):
        """The timers :meth:`due` would hand out now, as a list."""
        return list(self.due(now))

    def _seq_limit(self):
        """A sequence number above every entry scheduled so far (later ones get higher)."""
        limit = next(self._seq)
        self._seq = itertools.count(limit)
        return limit
