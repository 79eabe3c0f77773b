"""Roles, per-side states, the transition tables that drive them, and the errors raised when a rule is broken.

Each side of a connection (CLIENT and SERVER) has exactly one state field.  An event moves a side along
``CLIENT_TRANSITIONS`` / ``SERVER_TRANSITIONS``; an event that is not a key for the current state is illegal.
Two rules act across sides: a Request moves the server from IDLE to SEND_RESPONSE, and once keep-alive is off
a side that reaches DONE is moved on to MUST_CLOSE.
"""

__all__ = [
    "CLIENT", "SERVER",
    "IDLE", "SEND_RESPONSE", "SEND_BODY", "DONE", "MUST_CLOSE", "CLOSED", "ERROR",
    "NEED_DATA", "PAUSED",
    "ProtocolError", "LocalProtocolError", "RemoteProtocolError",
]

CLIENT = "CLIENT"
SERVER = "SERVER"

IDLE = "IDLE"
SEND_RESPONSE = "SEND_RESPONSE"
SEND_BODY = "SEND_BODY"
DONE = "DONE"
MUST_CLOSE = "MUST_CLOSE"
CLOSED = "CLOSED"
ERROR = "ERROR"


class _Sentinel:
    """A named singleton returned by ``Connection.next_event`` instead of an event."""

    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name

    def __reduce__(self):
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
PAUSED = _Sentinel("PAUSED")


class ProtocolError(Exception):
    """The HTTP/1.1 rules were broken; ``error_status_hint`` is the status a server should answer with."""

    def __init__(self, msg, error_status_hint=400):
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        super().__init__(msg)
        self.error_status_hint = error_status_hint


class LocalProtocolError(ProtocolError):
    """Our caller broke the rules (an illegal event, a malformed header, too many body bytes...)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the rules: its bytes are malformed, too large, or truncated.

    ``request_line``: for a request head that was read whole and then refused (no Host,
    conflicting framing fields...), its request line as received, for the server's log; else None.
    """

    request_line = None


# Keys are event class names so that this module needs no import of the event classes.
CLIENT_TRANSITIONS = {
    IDLE: {"Request": SEND_BODY, "ConnectionClosed": CLOSED},
    SEND_BODY: {"Data": SEND_BODY, "EndOfMessage": DONE},
    DONE: {"ConnectionClosed": CLOSED},
    MUST_CLOSE: {"ConnectionClosed": CLOSED},
    CLOSED: {"ConnectionClosed": CLOSED},
    ERROR: {},
}

SERVER_TRANSITIONS = {
    # A server may answer before (or without) a complete request, e.g. 400 after a malformed head or 408.
    IDLE: {"Response": SEND_BODY, "ConnectionClosed": CLOSED},
    SEND_RESPONSE: {"InformationalResponse": SEND_RESPONSE, "Response": SEND_BODY},
    SEND_BODY: {"Data": SEND_BODY, "EndOfMessage": DONE},
    DONE: {"ConnectionClosed": CLOSED},
    MUST_CLOSE: {"ConnectionClosed": CLOSED},
    CLOSED: {"ConnectionClosed": CLOSED},
    ERROR: {},
}

TRANSITIONS = {CLIENT: CLIENT_TRANSITIONS, SERVER: SERVER_TRANSITIONS}
