"""The bytes of request bodies a server holds before its handlers take them, bounded.

A body the handler does not read is dropped as it arrives and costs nothing; one it reads is
kept only once the server's :class:`BodyBudget` has room for all of it.
"""
from collections import OrderedDict

__all__ = ["BodyBudget"]


class BodyBudget:
    """The bytes of request bodies a server holds before its handlers take them: at most ``limit``.

    A connection reserves the whole size of a body (its Content-Length; ``max_body`` when it is
    chunked, its size unknown) before it keeps any of it, and gives it back when the handler gets
    the body or the request fails.  So what is held never exceeds ``limit``, and no connection
    ever waits for room that another one can only free by receiving more: no deadlock.
    Reservations are granted in arrival order: one that does not fit waits (its connection with
    reading paused), and every later one waits behind it, so a large body is not starved by small
    ones.  While one waits, a reservation held for ``patience`` seconds (the server's io_timeout)
    is taken back and its connection answered 408: clients that hold partial bodies cannot keep
    the others waiting for longer than that.
    """

    def __init__(self, limit, reactor, patience):
        self.limit = limit
        self.held = 0
        self._reactor = reactor
        self._patience = patience
        self._holders = OrderedDict()       # channel -> (size, when granted), oldest first
        self._waiting = OrderedDict()       # channel -> size, in arrival order
        self._timer = None

    def __len__(self):
        """How many connections hold a reservation."""
        return len(self._holders)

    @property
    def waiting(self):
        """How many connections wait for room."""
        return len(self._waiting)

    def reserve(self, channel, size):
        """True when ``size`` bytes are granted to ``channel`` at once; else it waits, and
        ``channel.room_granted()`` is called when they are (or ``channel.room_taken_back()``)."""
        if not self._waiting and self.held + size <= self.limit:
            self._grant(channel, size)
            return True
        self._waiting[channel] = size
        self._watch()
        return False

    def release(self, channel):
        """Give back what ``channel`` holds, or stop it waiting; nothing if it does neither."""
        entry = self._holders.pop(channel, None)
        if entry is not None:
            self.held -= entry[0]
        elif self._waiting.pop(channel, None) is None:
            return
        self._grant_waiting()

    def _grant(self, channel, size):
        self.held += size
        self._holders[channel] = (size, self._reactor.clock())

    def _grant_waiting(self):
        waiting = self._waiting
        while waiting:
            channel, size = next(iter(waiting.items()))
            if self.held + size > self.limit:
                return
            del waiting[channel]
            self._grant(channel, size)
            channel.room_granted()

    def _watch(self):
        """Someone waits: check the oldest reservation when it is ``patience`` seconds old."""
        timer = self._timer
        if self._holders and (timer is None or not timer.pending):
            granted = next(iter(self._holders.values()))[1]
            self._timer = self._reactor.call_at(granted + self._patience, self._take_back)

    def _take_back(self):
        self._timer = None
        holders = self._holders
        now = self._reactor.clock()
        while self._waiting and holders:
            channel, (_, granted) = next(iter(holders.items()))
            if granted + self._patience > now:
                self._watch()
                return
            try:
                channel.room_taken_back()   # 408, and the reservation given back
            except Exception:
                channel.handle_error()      # as the reactor treats a channel's own timer
            self.release(channel)
