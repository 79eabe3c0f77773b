"""What ``EVENTLOOP_TRACE=1`` prints: one line per registration change, dispatch and timer.

The reactor calls these only while tracing (``Reactor(trace=True)``), so they cost nothing
otherwise.  Lines go to the ``eventloop.trace`` logger, and to stderr as ``trace: ...`` when
the program has not configured logging itself.
"""
import logging

from .pollers import CLOSED, READ, URGENT, WRITE

__all__ = ["enable_output", "interest", "removed", "dispatch", "timer_fires", "callable_name"]

log = logging.getLogger("eventloop.trace")

_EVENT_NAMES = ((READ, "readable"), (WRITE, "writable"), (URGENT, "urgent"), (CLOSED, "closed"))


def enable_output():
    """Let trace lines through, to stderr unless logging is configured."""
    log.setLevel(logging.INFO)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("trace: %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def bits_name(bits):
    """``read|write|urgent`` for an interest mask ("none" for 0)."""
    return "|".join(n for b, n in ((READ, "read"), (WRITE, "write"), (URGENT, "urgent"))
                    if bits & b) or "none"


def interest(key, old, new, obj):
    """The poller now watches ``key`` for ``new`` (``old``: what it watched, or None)."""
    if old is None:
        log.info("fd %s interest %s (%s)", key, bits_name(new), type(obj).__name__)
    else:
        log.info("fd %s interest %s -> %s (%s)", key, bits_name(old), bits_name(new),
                 type(obj).__name__)


def removed(key):
    log.info("fd %s removed", key)


def dispatch(key, bits, obj):
    """One line per kind of readiness in ``bits``, naming the handler it reaches."""
    for bit, name in _EVENT_NAMES:
        if bits & bit:
            log.info("fd %s %s -> %s", key, name, _handler_name(obj, bit))


def timer_fires(callback):
    log.info("timer %s fires", callable_name(callback))


def callable_name(cb):
    """``Class.method`` for a bound method, else the function's qualified name."""
    owner = getattr(cb, "__self__", None)
    name = getattr(cb, "__name__", None) or repr(cb)
    if owner is not None:
        return "%s.%s" % (type(owner).__name__, name)
    return getattr(cb, "__qualname__", name)


def _handler_name(obj, bit):
    cls = type(obj).__name__
    if bit == READ:
        if getattr(obj, "accepting", False):
            return cls + ".handle_accept"
        if getattr(obj, "connecting", False):
            return cls + ".handle_connect"
        return cls + ".handle_read"
    if bit == WRITE:
        if getattr(obj, "connecting", False):
            return cls + ".handle_connect"
        return cls + ".handle_write"
    if bit == URGENT:
        return cls + ".handle_expt"
    return cls + ".handle_close"
