"""``--retry N``: whether and when a transfer is tried again, as a pure function.

curl's rules: a transient failure is retried while retries are left and ``--retry-max-time``
(seconds since the first attempt; 0 for no limit) has not passed.  Transient means a timeout,
a name that did not resolve (server or proxy), or an HTTP response 408, 429, 500, 502, 503 or
504; with ``--retry-connrefused`` also a refused connection, and with ``--retry-all-errors``
any failure.  The wait is ``--retry-delay`` seconds, else 1 second doubling after each retry
(at most 10 minutes); an HTTP response's ``Retry-After`` (seconds or a date) makes it longer,
and a ``Retry-After`` that would end past ``--retry-max-time`` means no retry at all.
"""
import email.utils
from dataclasses import dataclass

__all__ = ["RetryPolicy", "Outcome", "Decision", "decide", "retry_after_seconds",
           "TRANSIENT_STATUSES"]

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 600.0
# Exit codes that are transient by themselves: 28 timeout, 6 cannot resolve, 5 cannot resolve
# the proxy (and 7, cannot connect, with --retry-connrefused).
_TRANSIENT_CODES = frozenset({28, 6, 5})


@dataclass(frozen=True)
class RetryPolicy:
    """The command line's ``--retry`` options."""

    retries: int = 0
    delay: float = 0.0              # --retry-delay; 0: exponential backoff
    max_time: float = 0.0           # --retry-max-time; 0: no limit
    all_errors: bool = False        # --retry-all-errors
    connrefused: bool = False       # --retry-connrefused


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: its exit ``code`` (0 when it completed), the final response's
    ``status`` (None without one), its ``retry_after`` in seconds (None without the header) and
    whether the connection was ``refused``."""

    code: int
    status: int = None
    retry_after: float = None
    refused: bool = False


@dataclass(frozen=True)
class Decision:
    """Try again after ``delay`` seconds; ``why`` names the problem (as curl's warning does);
    ``next_backoff`` is the wait after the one following this attempt."""

    delay: float
    why: str
    next_backoff: float


def decide(policy, outcome, retries_done, backoff, elapsed):
    """The :class:`Decision` for an attempt that ended with ``outcome``, or None for no retry.

    ``retries_done``: retries made before this attempt; ``backoff``: the wait that is due now
    (``FIRST_BACKOFF`` for the first retry); ``elapsed``: seconds since the first attempt began.
    """
    if retries_done >= policy.retries:
        return None
    if policy.max_time and elapsed >= policy.max_time:
        return None
    if outcome.code in _TRANSIENT_CODES:
        why = "timeout"
    elif outcome.status in TRANSIENT_STATUSES and outcome.code in (0, 22):
        why = "HTTP error"
    elif policy.connrefused and outcome.code == 7 and outcome.refused:
        why = "connection refused"
    elif policy.all_errors and outcome.code != 0:
        why = "error"
    else:
        return None
    delay = policy.delay if policy.delay else backoff
    if why == "HTTP error" and outcome.retry_after:
        if policy.max_time and elapsed + outcome.retry_after > policy.max_time:
            return None
        delay = max(delay, outcome.retry_after)
    next_backoff = backoff if policy.delay else min(backoff * 2, MAX_BACKOFF)
    return Decision(delay, why, next_backoff)


def retry_after_seconds(value, now):
    """Seconds a ``Retry-After`` value asks to wait (``now``: the current Unix time), or None
    when it is neither a number of seconds nor an HTTP date we can read.  A number of more than
    9 digits (31 years) is no wait to keep: None too (float() of one past 308 digits overflows)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value)) if len(value) <= 9 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):     # a date of huge numbers overflows
        return None
    if when is None:
        return None
    return max(when.timestamp() - now, 0.0)
