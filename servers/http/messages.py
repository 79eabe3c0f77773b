"""HTTP messages as the server writes them, and its log lines: no sockets, no files.

Status reasons and error pages; HTTP-dates (``Date``, ``Last-Modified``, and parsing the
validators' dates); :class:`ResponseHeads`, which adds ``Server``, ``Date`` and ``Connection``
to a handler's fields and builds each distinct head once a second; and the access log's
Common Log Format lines, escaped so that no request can forge or split a line.
"""
import calendar
import functools
import html
import math
import re
import sys
import time
from http import HTTPStatus
from typing import Optional

from eventloop.http11 import Headers, LocalProtocolError, Response

__all__ = ["SERVER_NAME", "REASONS", "reason_for", "error_page", "http_date", "parse_http_date",
           "current_date", "ResponseHeads", "KEEP", "CLOSE", "KEEP10", "PROTOCOLS",
           "extra_fields", "has_field", "log_escape", "common_log_line"]

#: The ``Server`` header value.
SERVER_NAME = "eventloop-http/0.1 Python/%d.%d" % sys.version_info[:2]


# ------------------------------------------------------------------ status pages
REASONS: dict = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def error_page(status: int, reason: str, detail: str = "") -> bytes:
    """Return a small UTF-8 HTML body for an error *status*; *reason* and *detail*
    are HTML-escaped."""
    heading = html.escape(f"{int(status)} {reason}", quote=True)
    body = f"<p>{html.escape(detail, quote=True)}</p>\n" if detail else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{heading}</title>\n<style>body{{font:15px/1.45 system-ui,sans-serif;"
        "margin:2em auto;max-width:40em;padding:0 1em}h1{font-size:1.3em}</style>\n"
        f"</head>\n<body>\n<h1>{heading}</h1>\n{body}</body>\n</html>\n"
    ).encode("utf-8")


def reason_for(status: int) -> str:
    """The reason phrase for ``status`` ("" when unknown)."""
    reason = REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return reason


# ------------------------------------------------------------------ dates
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
              "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
           "Nov", "Dec")
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(_MONTHS)}


@functools.lru_cache(maxsize=256)
def _format_http_date(second: int) -> str:
    t = time.gmtime(second)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} "
            f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def http_date(ts: float) -> str:
    """Format the Unix time *ts* as an IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Fractions of a second are dropped (floor).  Results are cached per second, since
    every response carries ``Date`` and most carry ``Last-Modified``.
    """
    return _format_http_date(math.floor(ts))


_DAY_ALT = "|".join(_DAYS)
_MONTH_ALT = "|".join(_MONTHS)
_IMF_FIXDATE = re.compile(
    rf"(?:{_DAY_ALT}), ([0-9]{{2}}) ({_MONTH_ALT}) ([0-9]{{4}}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT", re.ASCII)
_RFC850_DATE = re.compile(
    rf"(?:{'|'.join(_LONG_DAYS)}), ([0-9]{{2}})-({_MONTH_ALT})-([0-9]{{2}}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT", re.ASCII)
_ASCTIME_DATE = re.compile(
    rf"(?:{_DAY_ALT}) ({_MONTH_ALT}) ([0-9]{{2}}| [0-9]) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})", re.ASCII)


def _two_digit_year(yy: int, now: Optional[float]) -> int:
    # RFC 9110 section 5.6.7: a year more than 50 years ahead is the most recent past one.
    current = time.gmtime(time.time() if now is None else now).tm_year
    year = current - current % 100 + yy
    if year > current + 50:
        year -= 100
    elif year <= current - 50:
        year += 100
    return year


def _timestamp(year: int, month: int, day: int, hour: int, minute: int,
               second: int) -> Optional[int]:
    if year < 1 or hour > 23 or minute > 59 or second > 60:
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def parse_http_date(s: Optional[str], now: Optional[float] = None) -> Optional[int]:
    """Parse an HTTP-date into Unix seconds, or return None if *s* is not one.

    Accepts IMF-fixdate and the obsolete RFC 850 and asctime forms (RFC 9110 section
    5.6.7), case-sensitively, with surrounding spaces or tabs.  An RFC 850 two-digit
    year is placed within 50 years of *now* (default: the current time).
    """
    if not isinstance(s, str):
        return None
    s = s.strip(" \t")
    m = _IMF_FIXDATE.fullmatch(s)
    if m:
        day, month, year, hour, minute, second = m.groups()
        year = int(year)
    else:
        m = _RFC850_DATE.fullmatch(s)
        if m:
            day, month, year, hour, minute, second = m.groups()
            year = _two_digit_year(int(year), now)
        else:
            m = _ASCTIME_DATE.fullmatch(s)
            if not m:
                return None
            month, day, hour, minute, second, year = m.groups()
            year = int(year)
    return _timestamp(year, _MONTH_NUMBER[month], int(day), int(hour), int(minute),
                      int(second))


_date = [None, ""]


def current_date(_time=time.time) -> str:
    """The ``Date`` value for now; the same str object for a whole second."""
    second = int(_time())
    if second != _date[0]:
        _date[1] = http_date(second)
        _date[0] = second
    return _date[1]


# ------------------------------------------------------------------ response heads
#: How a response head speaks about its connection: as HTTP/1.1 keeps it (no field),
#: closing it (``Connection: close``), or keeping an HTTP/1.0 one (``keep-alive``).
KEEP, CLOSE, KEEP10 = 0, 1, 2
_CONNECTION_FIELDS = {CLOSE: ("Connection", "close"), KEEP10: ("Connection", "keep-alive")}

#: The protocols a server may answer with (http.server's ``protocol_version``): HTTP/1.0
#: closes the connection after every response.
PROTOCOLS = ("HTTP/1.0", "HTTP/1.1")

# Fields that frame the message or manage the connection: the server alone writes them, so an
# extra field may not name them (a second Content-Length would make every response invalid).
_SERVER_OWNED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                           "upgrade", "trailer", "te"})


def extra_fields(pairs):
    """Check ``(name, value)`` pairs meant for every response (``-H NAME VALUE``): a tuple of
    valid fields.  Raises ValueError, naming the field, for a name that is not a token or is
    one the server must own (framing, connection), or a value with CR, LF, NUL or another
    control character."""
    fields = []
    for name, value in pairs:
        try:
            field, = Headers([(name, value)])
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        if field[0].lower() in _SERVER_OWNED:
            raise ValueError("the server sets %s itself" % field[0])
        fields.append(field)
    return tuple(fields)


class ResponseHeads:
    """Builds the :class:`~eventloop.http11.Response` for a status and a handler's fields, adding
    ``Server``, ``Date``, the server's ``extra`` fields (see :func:`extra_fields`) and the
    ``Connection`` field of the variant (KEEP, CLOSE, KEEP10) unless the handler gave them; an
    extra ``Server`` or ``Date`` replaces the server's own.  ``version`` is the status line's
    ("1.1", or "1.0" for a server speaking HTTP/1.0).  Identical heads are built once per
    second: most responses repeat the fields of a few earlier ones (the file cache hands out
    the same tuples)."""

    max_memo = 1024

    def __init__(self, server_name=SERVER_NAME, *, version="1.1", extra=()):
        self.server_name = server_name
        self.version = version
        self.extra = tuple(extra)
        self._extra_names = {name.lower() for name, _ in self.extra}
        self._memo = {}
        self._memo_date = None

    def __call__(self, status, headers, variant):
        date = current_date()
        memo = self._memo
        if date is not self._memo_date:
            memo.clear()
            self._memo_date = date
        t = type(headers)
        if t is tuple:
            key = (status, headers, variant)
        elif headers is None:
            key = (status, (), variant)
        elif t is list:
            key = (status, tuple(headers), variant)
        else:
            key = None
        if key is not None:
            try:
                resp = memo.get(key)
            except TypeError:           # unhashable values: build every time
                key = None
            else:
                if resp is not None:
                    return resp
        resp = self._build(status, headers, variant, date)
        if key is not None and len(memo) < self.max_memo:
            memo[key] = resp
        return resp

    def _build(self, status, headers, variant, date):
        if headers is None:
            given = Headers()
        elif hasattr(headers, "items") and not isinstance(headers, Headers):
            given = Headers(list(headers.items()))
        else:
            given = Headers(headers)
        names = {name.lower() for name, _ in given}
        ours = names | self._extra_names
        fields = []
        if "server" not in ours:
            fields.append(("Server", self.server_name))
        if "date" not in ours:
            fields.append(("Date", date))
        fields.extend(given)
        fields.extend(self.extra)
        if variant and "connection" not in names:
            fields.append(_CONNECTION_FIELDS[variant])
        return Response(status, Headers(fields), reason_for(status), self.version)


def has_field(headers, lowercase_name) -> bool:
    """Whether a handler's ``headers`` (pairs, a mapping or Headers) hold ``lowercase_name``."""
    if not headers:
        return False
    pairs = headers.items() if hasattr(headers, "items") and not isinstance(headers, Headers) \
        else headers
    return any(str(name).lower() == lowercase_name for name, _ in pairs)


# ------------------------------------------------------------------ access log
def _escape_char(c: str) -> str:
    if c.isprintable() and c != '"' and c != "\\":
        return c
    code = ord(c)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def log_escape(s: str) -> str:
    """Make *s* safe for one access-log line: control and other non-printable
    characters, ``"`` and ``\\`` become ``\\xNN`` (``\\uNNNN``/``\\UNNNNNNNN`` past
    U+00FF), so a request cannot forge or split log lines (gh-100001)."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return s
    return "".join(map(_escape_char, s))


@functools.lru_cache(maxsize=64)
def _clf_date(second: int) -> str:
    t = time.gmtime(second)
    return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def common_log_line(host: str, ident: Optional[str], user: Optional[str], when: float,
                    request_line: str, status: int, size: Optional[int]) -> str:
    """Return one Common Log Format line (no newline), time in UTC.

    ``host ident user [10/Oct/2000:13:55:36 +0000] "request line" status size``;
    a missing or empty host/ident/user and a None size print as ``-``.  Every text
    field goes through ``log_escape``; spaces in the unquoted ones become ``\\x20``.
    """
    size_text = "-" if size is None else str(int(size))
    return (f"{_log_word(host)} {_log_word(ident)} {_log_word(user)} "
            f"[{_clf_date(math.floor(when))}] "
            f'"{log_escape(request_line)}" {int(status)} {size_text}')


def _log_word(s: Optional[str]) -> str:
    # Unquoted CLF fields are space-separated, so a space would shift the fields.
    return log_escape(s).replace(" ", "\\x20") if s else "-"
