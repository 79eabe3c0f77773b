"""The events exchanged with ``Connection``: what a message is made of, independent of its bytes.

Constructors check their arguments (``LocalProtocolError``) and accept plain lists of pairs or dicts for
headers.  The parser builds events through the ``_new`` class methods, which skip the checks because the
wire grammar already enforced them.
"""

import re

from ._headers import Headers
from ._state import LocalProtocolError

__all__ = ["Request", "Response", "InformationalResponse", "Data", "EndOfMessage", "ConnectionClosed"]

_METHOD_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TARGET_RE = re.compile(r"[\x21-\x7e]+")  # visible US-ASCII (RFC 9112 section 3.2)
_REASON_BAD_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]")
_VERSIONS = ("1.1", "1.0")


def _headers(headers):
    return headers if isinstance(headers, Headers) else Headers(headers)


def _text(x, what):
    if isinstance(x, (bytes, bytearray)):
        x = x.decode("latin-1")
    if not isinstance(x, str):
        raise LocalProtocolError(f"{what} must be str, not {type(x).__name__}")
    return x


def _version(version):
    version = _text(version, "version")
    if version not in _VERSIONS:
        raise LocalProtocolError(f"unsupported HTTP version {version!r} (use '1.1' or '1.0')")
    return version


def _status(status, low, high, cls):
    if not isinstance(status, int) or isinstance(status, bool) or not low <= status <= high:
        raise LocalProtocolError(f"{cls} status must be an int in {low}..{high}, not {status!r}")
    return status


def _reason(reason):
    reason = _text(reason, "reason")
    if _REASON_BAD_RE.search(reason) is not None:
        raise LocalProtocolError(f"illegal character in reason phrase {reason!r}")
    return reason


class Event:
    """Base class: equality compares the type and every slot; repr shows every slot."""

    __slots__ = ()
    _fields = ()

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None

    def __repr__(self):
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"


class Request(Event):
    """A request head: ``method`` (any token), ``target`` (as sent), ``headers``, ``version`` ("1.1"/"1.0")."""

    __slots__ = _fields = ("method", "target", "headers", "version")

    def __init__(self, method, target, headers=None, version="1.1"):
        method = _text(method, "method")
        if _METHOD_RE.fullmatch(method) is None:
            raise LocalProtocolError(f"illegal method {method!r}")
        target = _text(target, "target")
        if _TARGET_RE.fullmatch(target) is None:
            raise LocalProtocolError(f"illegal request target {target!r}")
        self.method = method
        self.target = target
        self.headers = _headers(headers)
        self.version = _version(version)

    @classmethod
    def _new(cls, method, target, headers, version):
        self = object.__new__(cls)
        self.method = method
        self.target = target
        self.headers = headers
        self.version = version
        return self


class _ResponseBase(Event):
    __slots__ = ("status", "headers", "reason", "version", "_head")
    _fields = ("status", "headers", "reason", "version")

    _LOW, _HIGH = 0, 0

    def __init__(self, status, headers=None, reason="", version="1.1"):
        self.status = _status(status, self._LOW, self._HIGH, type(self).__name__)
        self.headers = _headers(headers)
        self.reason = _reason(reason)
        self.version = _version(version)
        self._head = None       # Connection._send_response's memo (see _response_memo)

    @classmethod
    def _new(cls, status, headers, reason, version):
        self = object.__new__(cls)
        self.status = status
        self.headers = headers
        self.reason = reason
        self.version = version
        self._head = None
        return self


class Response(_ResponseBase):
    """A final response head: ``status`` 200..999, ``headers``, ``reason`` (may be empty), ``version``."""

    __slots__ = ()
    _LOW, _HIGH = 200, 999


class InformationalResponse(_ResponseBase):
    """An interim (1xx) response head; the final ``Response`` follows it."""

    __slots__ = ()
    _LOW, _HIGH = 100, 199


class Data(Event):
    """A piece of a message body, as ``bytes`` (its chunk boundaries carry no meaning)."""

    __slots__ = _fields = ("data",)

    def __init__(self, data):
        if not isinstance(data, bytes):
            if not isinstance(data, (bytearray, memoryview)):
                raise LocalProtocolError(f"Data needs bytes, not {type(data).__name__}")
            data = bytes(data)
        self.data = data

    @classmethod
    def _new(cls, data):
        self = object.__new__(cls)
        self.data = data
        return self


class EndOfMessage(Event):
    """The end of a message body; ``trailers`` holds the chunked trailer fields (usually empty)."""

    __slots__ = _fields = ("trailers",)

    def __init__(self, trailers=None):
        self.trailers = Headers() if trailers is None else _headers(trailers)


class ConnectionClosed(Event):
    """The peer closed its sending side (received), or we are about to close ours (sent)."""

    __slots__ = ()
