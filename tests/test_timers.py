"""TimerQueue and Timer: unit tests, a model-based state machine, and the reactor's timer phase."""
import gc
import weakref

import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from eventloop.testing import VirtualClock, memory_reactor, pump
from eventloop.timers import TimerQueue


def make_queue(start=0.0):
    clock = VirtualClock(start)
    return clock, TimerQueue(clock)


def names(timers):
    return [t.callback for t in timers]


# ------------------------------------------------------------------- units
def test_due_timers_come_out_by_deadline_then_scheduling_order():
    clock, q = make_queue()
    for name, when in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2), ("late", 9)]:
        q.schedule(when, name)
    assert len(q) == 5 and q.next_deadline() == 1
    assert names(q.pop_due(2.5)) == ["a", "b1", "b2"]
    assert names(q.pop_due(2.5)) == []
    assert len(q) == 2 and q.next_deadline() == 3


def test_cancel_is_idempotent_and_skipped_timers_do_not_count():
    _, q = make_queue()
    first = q.schedule(1, "first")
    second = q.schedule(2, "second")
    first.cancel()
    first.cancel()
    assert first.cancelled and not first.pending
    assert len(q) == 1 and q.next_deadline() == 2
    assert names(q.pop_due(5)) == ["second"]
    second.cancel()                     # after firing: harmless
    assert len(q) == 0 and q.next_deadline() is None


def test_reset_reschedules_from_now_and_revives_a_cancelled_or_fired_timer():
    clock, q = make_queue()
    t = q.schedule(5, "t")
    clock.advance(3)
    t.reset(10)
    assert t.when == 13 and len(q) == 1
    assert names(q.pop_due(12)) == []
    t.cancel()
    t.reset(1)
    assert not t.cancelled and t.pending and t.when == 4
    assert names(q.pop_due(4)) == ["t"]
    t.reset()                           # one-shot default: its own delay again (1 s)
    assert t.when == 4 and names(q.pop_due(3)) == [] and names(q.pop_due(4)) == ["t"]


def test_a_repeating_timer_keeps_its_phase_and_skips_missed_periods():
    clock, q = make_queue()
    t = q.schedule(1, "tick", interval=1)
    assert names(q.pop_due(1.5)) == ["tick"]
    assert t.pending and t.when == 2            # from the deadline, not from "now"
    assert names(q.pop_due(7.25)) == ["tick"]   # fell behind: one call, not five
    assert t.when == 8.25
    t.reset()                                   # repeating default: one interval from now
    assert t.when == clock() + 1


def test_many_cancellations_compact_the_heap():
    _, q = make_queue()
    timers = [q.schedule(i, i) for i in range(300)]
    for t in timers[:250]:
        t.cancel()
    assert len(q) == 50
    assert len(q._heap) < 150, "stale entries are dropped once they are the majority"
    assert names(q.pop_due(1000)) == list(range(250, 300))


def test_repr_says_what_the_timer_is_doing():
    _, q = make_queue()
    t = q.schedule(2, test_repr_says_what_the_timer_is_doing, interval=0.5)
    assert "pending at 2.000" in repr(t) and "every 0.5s" in repr(t)
    t.cancel()
    assert "cancelled" in repr(t)


# --------------------------------------------------------------- the model
QUARTERS = st.integers(0, 40).map(lambda n: n / 4)     # exact in binary floating point


class TimerModel(RuleBasedStateMachine):
    """TimerQueue against a dict of pending deadlines; time advances by exact quarters."""

    timers = Bundle("timers")

    def __init__(self):
        super().__init__()
        self.clock, self.q = make_queue()
        self.pending = {}           # id -> (when, seq, interval)
        self.seq = 0
        self.objects = {}
        self.delays = {}
        self.next_id = 0

    def _push(self, tid, when, interval):
        self.pending[tid] = (when, self.seq, interval)
        self.seq += 1

    @rule(target=timers, delay=QUARTERS,
          interval=st.one_of(st.none(), st.integers(1, 12).map(lambda n: n / 4)))
    def schedule(self, delay, interval):
        tid = self.next_id
        self.next_id += 1
        when = self.clock() + delay
        self.objects[tid] = self.q.schedule(when, tid, interval=interval)
        self.delays[tid] = delay
        self._push(tid, when, interval)
        return tid

    @rule(tid=timers)
    def cancel(self, tid):
        self.objects[tid].cancel()
        self.pending.pop(tid, None)

    @rule(tid=timers, delay=st.one_of(st.none(), QUARTERS))
    def reset(self, tid, delay):
        timer = self.objects[tid]
        timer.reset(delay)
        if delay is None:       # the timer's own delay: the last it was given, or its interval
            delay = timer.interval if timer.interval is not None else self.delays[tid]
        self.delays[tid] = delay
        self.pending.pop(tid, None)
        self._push(tid, self.clock() + delay, timer.interval)

    @rule(count=st.integers(40, 80))
    def burst_of_cancelled(self, count):
        for _ in range(count):
            self.q.schedule(self.clock() + 1, "never").cancel()

    @rule(dt=QUARTERS)
    def advance(self, dt):
        now = self.clock.advance(dt)
        fired = names(self.q.pop_due(now))
        due = sorted((when, seq, tid) for tid, (when, seq, _) in self.pending.items()
                     if when <= now)
        expected = []
        for when, _, tid in due:
            expected.append(tid)
            interval = self.pending.pop(tid)[2]
            if interval is not None:
                nxt = when + interval
                self._push(tid, nxt if nxt > now else now + interval, interval)
        assert fired == expected

    @invariant()
    def agrees_with_the_model(self):
        assert len(self.q) == len(self.pending)
        deadlines = [when for when, _, _ in self.pending.values()]
        assert self.q.next_deadline() == (min(deadlines) if deadlines else None)
        for tid, timer in self.objects.items():
            assert timer.pending == (tid in self.pending)


TestTimerModel = TimerModel.TestCase


# ----------------------------------------------------------- in the reactor
@given(st.lists(st.tuples(QUARTERS, st.booleans()), max_size=30))
def test_reactor_fires_the_uncancelled_timers_in_deadline_order(plan):
    reactor = memory_reactor()
    fired = []
    timers = [reactor.call_later(delay, lambda i=i: fired.append((i, reactor.clock())))
              for i, (delay, _) in enumerate(plan)]
    for timer, (_, cancel) in zip(timers, plan):
        if cancel:
            timer.cancel()
    pump(reactor, max_passes=100)
    expected = sorted((delay, i) for i, (delay, cancel) in enumerate(plan) if not cancel)
    assert fired == [(i, delay) for delay, i in expected]


def test_a_timer_cancelled_by_an_earlier_timer_of_the_same_batch_does_not_fire():
    reactor = memory_reactor()
    fired = []
    later = []
    reactor.call_later(5, lambda: (fired.append("first"), later[0].cancel()))
    later.append(reactor.call_later(5, fired.append, "second"))
    pump(reactor, max_passes=10)
    assert fired == ["first"]


def test_a_timer_reset_by_an_earlier_timer_of_the_same_batch_fires_only_when_reset_to():
    """Core bug: pop_due() already took the second timer out for this batch, and the reactor
    checks only ``cancelled`` before running it, so reset(10) runs it now *and* at t=15."""
    reactor = memory_reactor()
    fired = []
    later = []
    reactor.call_later(5, lambda: later[0].reset(10))
    later.append(reactor.call_later(5, lambda: fired.append(reactor.clock())))
    pump(reactor, max_passes=10)
    assert fired == [15.0]


def test_a_repeating_timer_cancelled_from_its_own_callback_stops():
    reactor = memory_reactor()
    ticks = []

    def tick():
        ticks.append(reactor.clock())
        if len(ticks) == 3:
            timer.cancel()

    timer = reactor.call_every(2, tick, first=1)
    pump(reactor, max_passes=20)
    assert ticks == [1, 3, 5]


def test_call_every_rejects_a_non_positive_interval():
    reactor = memory_reactor()
    with pytest.raises(ValueError):
        reactor.call_every(0, print)


def test_a_closed_channel_with_pending_timers_is_freed_without_the_cyclic_gc():
    """Cancelled timers stay in the heap until their deadline; they must not keep the closed
    channel alive in a reference cycle (a server closing many connections would pay the
    cyclic GC for each)."""
    from eventloop import Dispatcher
    from eventloop.testing import memory_socketpair

    reactor = memory_reactor()
    ours, theirs = memory_socketpair()
    chan = Dispatcher(ours, reactor.map)
    chan.call_later(60, chan.close)
    chan.set_idle_timeout(30)
    box = [chan]
    del chan
    assert_freed_at_close(box)
    theirs.close()


def assert_freed_at_close(box):
    """Close the channel in ``box`` (a list, so that the caller keeps no reference) with the
    cyclic collector off: nothing may keep it alive."""
    chan = box.pop()
    gone = weakref.ref(chan)
    gc.disable()
    try:
        chan.close()
        del chan
        assert gone() is None, "the closed channel is only reachable through a cycle"
    finally:
        gc.enable()


def test_a_channel_whose_timers_fired_is_freed_at_close_without_the_cyclic_gc():
    """A one-shot timer that fired used to keep its owner in a cycle (the timer was in its
    own arguments), so every channel that ever had a timeout needed the cyclic collector."""
    from eventloop import Dispatcher
    from eventloop.testing import memory_socketpair

    reactor = memory_reactor()
    ours, theirs = memory_socketpair()
    chan = Dispatcher(ours, reactor.map)
    fired = []
    for i in range(20):                         # more than the list keeps before pruning
        chan.call_later(i / 10, fired.append, i)
    chan.call_later(60, fired.append, "never: cancelled at close")
    pump(reactor, lambda: len(fired) >= 20, max_passes=100)
    box = [chan]
    del chan
    assert_freed_at_close(box)
    theirs.close()


def test_an_owned_timer_that_raises_reaches_its_channels_handle_error():
    from eventloop import Dispatcher
    from eventloop.testing import memory_socketpair

    reactor = memory_reactor()
    ours, theirs = memory_socketpair()
    errors = []

    class Chan(Dispatcher):
        def handle_error(self):
            errors.append(True)
            self.close()

    chan = Chan(ours, reactor.map)
    chan.call_later(1, lambda: 1 / 0)
    pump(reactor, lambda: errors, max_passes=10)
    assert errors == [True] and not reactor.map
    theirs.close()
