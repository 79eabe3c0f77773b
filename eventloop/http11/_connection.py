"""``Connection``: one side of an HTTP/1.1 connection, as a sans-IO state machine.

Bytes in (``receive_data``) become events out (``next_event``); events in (``send``) become bytes out.
No sockets, no clock.  The caller moves the bytes and closes the transport when ``keep_alive`` is False
and both sides are finished.
"""

from ._events import ConnectionClosed, Data, EndOfMessage, InformationalResponse, Request, Response
from ._readers import ChunkedReader, CloseDelimitedReader, ContentLengthReader, HeadReader
from ._state import (
    CLIENT, CLOSED, DONE, ERROR, IDLE, MUST_CLOSE, NEED_DATA, PAUSED, SEND_BODY, SEND_RESPONSE, SERVER,
    TRANSITIONS, LocalProtocolError, RemoteProtocolError)
from ._writers import ChunkedWriter, CloseDelimitedWriter, ContentLengthWriter, NoBodyWriter, write_head

__all__ = ["Connection"]

_EVENT_TYPES = (Request, Response, InformationalResponse, Data, EndOfMessage, ConnectionClosed)
_NO_BODY_STATUSES = (204, 304)
_METHODS_WITH_BODY = ("POST", "PUT", "PATCH")
_EMPTY_READER = ContentLengthReader(0)  # stateless once at zero: always returns EndOfMessage


def _tokens(values):
    """Lowercased, non-empty items of comma-separated list fields."""
    out = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t").lower()
            if item:
                out.append(item)
    return out


def _wants_keep_alive(version, connection_values):
    """Whether a message with this version and these Connection field values allows a persistent connection."""
    if connection_values:
        if len(connection_values) == 1:
            value = connection_values[0].lower()
            if value == "keep-alive":
                return True
            if value == "close":
                return False
        tokens = _tokens(connection_values)
        if "close" in tokens:
            return False
        if version == "1.0":
            return "keep-alive" in tokens
        return True
    return version == "1.1"


def _content_length(values, error):
    """The length declared by Content-Length field values (identical repeats merge), or raise ``error``."""
    if len(values) == 1:
        value = values[0]
        if value.isdigit() and value.isascii() and len(value) <= 18:
            return int(value)
    items = {item.strip(" \t") for value in values for item in value.split(",")}
    if len(items) != 1:
        raise error(f"conflicting Content-Length values {values!r}")
    (value,) = items
    if not (value.isdigit() and value.isascii()):
        raise error(f"Content-Length is not a decimal number: {value!r}")
    if len(value) > 18:
        raise error(f"Content-Length too large: {value!r}")
    return int(value)


def _is_chunked(values, error, request):
    """Check Transfer-Encoding values; return True if the body is chunked (the only coding we frame).

    A coding list not ending in ``chunked`` is rejected (400).  Other codings before ``chunked``: a request
    is rejected with 501 (we cannot decode them); a response is accepted and its body passed through as is.
    """
    tokens = _tokens(values)
    if tokens == ["chunked"]:
        return True
    if not tokens or tokens[-1] != "chunked" or "chunked" in tokens[:-1]:
        raise error(f"Transfer-Encoding must end with a single 'chunked', got {values!r}")
    if request:
        raise error(f"unsupported transfer coding in {values!r}", 501)
    return True


def _response_memo(event):
    """What ``_send_response`` needs from a Response's own fields, worked out once per event:
    ``(fields list, its length, head bytes without the final CRLF, the whole head, keep-alive
    by its Connection field, Transfer-Encoding values or None, Content-Length or None)``.  The
    fields list and its length tell whether the headers changed since."""
    headers = event.headers
    index = headers._lookup()
    te = index.get("transfer-encoding")
    cl = index.get("content-length")
    if te is not None and cl is not None:
        raise LocalProtocolError("response with both Transfer-Encoding and Content-Length")
    length = None if cl is None else _content_length(cl, LocalProtocolError)
    head = write_head(f"HTTP/{event.version} {event.status} {event.reason}", headers, "")
    return (headers._fields, len(headers._fields), head[:-2], head,
            _wants_keep_alive(event.version, index.get("connection")), te, length)


class Connection:
    """One side (``our_role`` is CLIENT or SERVER) of an HTTP/1.1 connection.

    Limits on what the peer sends: ``max_line`` (request/status line 414, field line 431), ``max_head``
    (whole header or trailer section, 431), ``max_fields`` (431), ``max_body`` (413, None = unlimited),
    ``max_chunk_line`` (chunk-size line, 400).
    """

    # State every connection starts with (class defaults: a server creates one per connection).
    _closed = False             # the peer's EOF has been received
    _keep_alive = True
    _reader = None              # body reader of the message being received
    _writer = None              # body writer of the message being sent
    _request_method = None      # method of this cycle's request (sent or received)
    _peer_version = None        # HTTP version of this cycle's request, as seen by a server
    peer_keep_alive = None      # whether the peer's last message head asked to keep the connection
    _waiting_100 = False        # this cycle's request carried Expect: 100-continue
    _error = None               # (message, status hint) of the RemoteProtocolError that put their_state
                                # in ERROR; not the exception, whose traceback holds our caller's frames

    def __init__(self, our_role, *, max_line=8192, max_head=65536, max_fields=100, max_body=None,
                 max_chunk_line=4096):
        if our_role not in (CLIENT, SERVER):
            raise ValueError(f"our_role must be CLIENT or SERVER, not {our_role!r}")
        self.our_role = our_role
        self.their_role = SERVER if our_role == CLIENT else CLIENT
        self.our_state = IDLE
        self.their_state = IDLE
        self._our_table = TRANSITIONS[our_role]
        self._max_head = max_head
        self._max_fields = max_fields
        self._max_body = max_body
        self._max_chunk_line = max_chunk_line
        self._buf = bytearray()
        self._head_reader = HeadReader(our_role == SERVER, max_line, max_head, max_fields)

    # ----------------------------------------------------------------------------------- properties

    @property
    def keep_alive(self):
        """False once either side asked to close, a body is close-delimited, or an error occurred."""
        return self._keep_alive

    @property
    def they_are_waiting_for_100_continue(self):
        """True while the peer's request said ``Expect: 100-continue`` and none of its body has arrived."""
        return self._waiting_100 and self.their_state == SEND_BODY

    @property
    def trailing_data(self):
        """``(unprocessed received bytes, whether the peer's EOF was received)``."""
        return bytes(self._buf), self._closed

    @property
    def buffered_bytes(self):
        """How many received bytes are not yet parsed into events (``trailing_data`` without the copy)."""
        return len(self._buf)

    def __repr__(self):
        return (f"<Connection {self.our_role} our_state={self.our_state} their_state={self.their_state}"
                f" keep_alive={self._keep_alive}>")

    # ------------------------------------------------------------------------------------- receiving

    def receive_data(self, data):
        """Append bytes received from the peer; ``b""`` means the peer closed its side (EOF)."""
        if data:
            if self._closed:
                raise LocalProtocolError("received data after the peer's EOF")
            self._buf += data
        else:
            self._closed = True

    def next_event(self):
        """The next event from the peer, ``NEED_DATA``, or ``PAUSED`` (their message is complete).

        Raises ``RemoteProtocolError`` for malformed or truncated input; their_state is then ERROR and every
        later call raises again.
        """
        state = self.their_state
        if state == ERROR:
            message, status = self._error
            raise RemoteProtocolError(f"the peer already broke the protocol: {message}", status)
        try:
            if state == SEND_BODY:
                event = self._reader.read(self._buf, self._closed)
                if event is None:
                    if self._closed:
                        raise RemoteProtocolError("peer closed the connection mid-body: message truncated")
                    return NEED_DATA
                if type(event) is EndOfMessage:
                    self.their_state = DONE
                    self._reader = None
                    if not self._keep_alive:
                        self._settle()
                else:
                    self._waiting_100 = False
                return event
            if state == IDLE or state == SEND_RESPONSE:
                head = self._head_reader.read(self._buf) if self._buf else None
                if head is None:
                    return self._no_head_yet(state)
                if self.our_role == SERVER:
                    try:
                        return self._received_request(*head)
                    except RemoteProtocolError as exc:
                        exc.request_line = f"{head[0]} {head[1]} HTTP/{head[2]}"
                        raise
                return self._received_response(*head)
            if state == DONE:
                return PAUSED
            if state == MUST_CLOSE:
                # The peer must close next.  A client's bytes after its last request are discarded unread;
                # a server's are kept for trailing_data (e.g. a tunnel after CONNECT).
                if self.our_role == SERVER:
                    self._buf.clear()
                if self._closed:
                    self.their_state = CLOSED
                    return ConnectionClosed()
                return NEED_DATA
            return ConnectionClosed()
        except RemoteProtocolError as exc:
            self.their_state = ERROR
            self._error = (str(exc), exc.error_status_hint)
            self._keep_alive = False
            self._settle()
            raise

    def _no_head_yet(self, state):
        if not self._closed:
            return NEED_DATA
        if self._buf:
            raise RemoteProtocolError("peer closed the connection mid-head: message truncated")
        if state == IDLE:
            self.their_state = CLOSED
            self._keep_alive = False
            self._settle()
            return ConnectionClosed()
        raise RemoteProtocolError("peer closed the connection without sending a response")

    def _received_request(self, method, target, version, headers, index):
        hosts = index.get("host")
        if hosts is None:
            if version == "1.1":
                raise RemoteProtocolError("HTTP/1.1 request without a Host header")
        elif len(hosts) > 1:
            raise RemoteProtocolError("request with more than one Host header")
        connection = index.get("connection")
        keep_alive = version == "1.1" if connection is None else _wants_keep_alive(version, connection)
        self.peer_keep_alive = keep_alive
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        if te is not None:
            if cl is not None:
                raise RemoteProtocolError("request with both Transfer-Encoding and Content-Length")
            _is_chunked(te, RemoteProtocolError, True)
            if version == "1.0":
                keep_alive = False  # RFC 9112 section 6.1: faulty framing, close after this message
            self._reader = self._chunked_reader()
        elif cl is not None:
            self._reader = self._length_reader(cl)
        else:
            self._reader = _EMPTY_READER
        expect = index.get("expect")
        if expect is not None:
            self._waiting_100 = (version == "1.1" and self._reader is not _EMPTY_READER
                                 and "100-continue" in _tokens(expect))
        self._request_method = method
        self._peer_version = version
        self.their_state = SEND_BODY
        if self.our_state == IDLE:
            self.our_state = SEND_RESPONSE
        if not keep_alive:
            self._keep_alive = False
        return Request._new(method, target, headers, version)

    def _chunked_reader(self):
        return ChunkedReader(self._max_body, self._max_chunk_line, self._max_head, self._max_fields,
                             strict=self.our_role == SERVER)

    def _length_reader(self, cl):
        """The reader of a received body framed by the Content-Length values ``cl`` (413 past max_body)."""
        length = _content_length(cl, RemoteProtocolError)
        if self._max_body is not None and length > self._max_body:
            raise RemoteProtocolError(f"body of {length} bytes is larger than {self._max_body}", 413)
        return ContentLengthReader(length) if length else _EMPTY_READER

    def _received_response(self, version, status, reason, headers, index):
        state = self.their_state
        if status < 200:
            if status == 101:
                raise RemoteProtocolError("101 Switching Protocols: protocol upgrades are not supported")
            if state != SEND_RESPONSE:
                raise RemoteProtocolError(f"informational response {status} without a request")
            return InformationalResponse._new(status, headers, reason, version)
        keep_alive = _wants_keep_alive(version, index.get("connection"))
        self.peer_keep_alive = keep_alive
        method = self._request_method
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            if cl is not None:
                _content_length(cl, RemoteProtocolError)    # frames nothing here, but is a size callers read
            self._reader = _EMPTY_READER
        elif method == "CONNECT" and status < 300:
            self._reader = _EMPTY_READER
            keep_alive = False  # the connection is now a tunnel: see trailing_data
        elif te is not None:
            _is_chunked(te, RemoteProtocolError, False)
            if cl is not None:
                keep_alive = False  # RFC 9112 section 6.3: Transfer-Encoding overrides; do not reuse
            self._reader = self._chunked_reader()
        elif cl is not None:
            self._reader = self._length_reader(cl)
        else:
            self._reader = CloseDelimitedReader(self._max_body)
            keep_alive = False
        self.their_state = SEND_BODY
        if not keep_alive:
            self._keep_alive = False
        return Response._new(status, headers, reason, version)

    # --------------------------------------------------------------------------------------- sending

    def send(self, event):
        """Serialise one of our events and return the bytes to transmit.

        Raises ``LocalProtocolError`` for an event that is illegal in our state or breaks the framing; our
        state is then ERROR.
        """
        try:
            return self._send(event, None)
        except LocalProtocolError:
            self._local_error()
            raise

    def send_head_and_body(self, event, body):
        """Send a Request/Response head, ``body`` and the end of the message, as one bytes object.

        Without framing headers, ``Content-Length: len(body)`` is added (responses; requests with a body or
        a POST/PUT/PATCH method).  For a response to HEAD the body is not sent (its length still sets the
        added Content-Length), so GET and HEAD can share one code path.
        """
        try:
            if type(event) is not Response and type(event) is not Request:
                raise LocalProtocolError(f"send_head_and_body needs a Request or Response, not {event!r}")
            if not isinstance(body, bytes):
                body = Data(body).data
            head = self._send(event, len(body))
            writer = self._writer
            if type(writer) is ContentLengthWriter and writer.remaining == len(body):
                self._end_our_message()     # the usual case: the body is exactly the declared length
                return head + body
            if type(writer) is NoBodyWriter and self._request_method == "HEAD" and self.our_role == SERVER:
                body = b""
            out = writer.data(body)
            end = writer.end(())
            self._end_our_message()
            if out:
                return head + out + end if end else head + out
            return head + end
        except LocalProtocolError:
            self._local_error()
            raise

    def send_head_for_body(self, event, length):
        """Send a Request/Response head for a body of ``length`` bytes that the caller transmits
        itself (with ``os.sendfile``, say): the head's bytes; the message then counts as sent.

        The head must frame exactly that body by Content-Length (given, or added as by
        :meth:`send_head_and_body`); a response to HEAD carries no body.  Raw bytes cannot be
        chunked or close-delimited, so any other framing is a LocalProtocolError.
        """
        try:
            if type(event) is not Response and type(event) is not Request:
                raise LocalProtocolError(f"send_head_for_body needs a Request or Response, not {event!r}")
            head = self._send(event, length)
            writer = self._writer
            if not (type(writer) is ContentLengthWriter and writer.remaining == length
                    or type(writer) is NoBodyWriter and self._request_method == "HEAD"
                    and self.our_role == SERVER):
                raise LocalProtocolError(f"this head does not frame a body of exactly {length} bytes")
            self._end_our_message()
            return head
        except LocalProtocolError:
            self._local_error()
            raise

    def _local_error(self):
        self.our_state = ERROR
        self._keep_alive = False
        self._settle()

    def _end_our_message(self):
        self.our_state = DONE
        self._writer = None
        if not self._keep_alive:
            self._settle()

    def _send(self, event, body_length):
        t = type(event)
        state = self.our_state
        if t is Data:
            if state != SEND_BODY:
                raise LocalProtocolError(f"can't send Data in state {state}")
            return self._writer.data(event.data)
        if t is EndOfMessage:
            if state != SEND_BODY:
                raise LocalProtocolError(f"can't send EndOfMessage in state {state}")
            out = self._writer.end(event.trailers)
            self._end_our_message()
            return out
        if t not in _EVENT_TYPES or self._our_table[state].get(t.__name__) is None:
            raise LocalProtocolError(f"can't send {t.__name__} as {self.our_role} in state {state}")
        if t is Response:
            return self._send_response(event, body_length)
        if t is Request:
            return self._send_request(event, body_length)
        if t is InformationalResponse:
            if event.status == 101:
                raise LocalProtocolError("101 Switching Protocols: protocol upgrades are not supported")
            if self._peer_version == "1.0":
                raise LocalProtocolError("can't send an informational response to an HTTP/1.0 client")
            self._waiting_100 = False
            return write_head(f"HTTP/{event.version} {event.status} {event.reason}", event.headers)
        # ConnectionClosed
        self.our_state = CLOSED
        self._keep_alive = False
        self._settle()
        return b""

    def _send_response(self, event, body_length):
        memo = event._head
        fields = event.headers._fields
        if memo is None or memo[0] is not fields or memo[1] != len(fields):
            # A server sends the same Response event many times (cached heads): read its
            # framing fields and serialise it once.
            memo = event._head = _response_memo(event)
        _, _, head, whole_head, keep_alive, te, length = memo
        status = event.status
        method = self._request_method
        if self.their_state == IDLE or self.their_state == ERROR:
            keep_alive = False  # answering no (valid) request: no cycle can follow
        extra = ""
        if method == "HEAD" or status in _NO_BODY_STATUSES or (method == "CONNECT" and status < 300):
            writer = NoBodyWriter(f"status {status}" if method != "HEAD" else "response to HEAD")
            if (body_length is not None and method == "HEAD" and te is None and length is None
                    and status not in _NO_BODY_STATUSES):
                extra = f"Content-Length: {body_length}\r\n"
        elif te is not None:
            _is_chunked(te, LocalProtocolError, False)
            if self._peer_version == "1.0" or event.version == "1.0":
                raise LocalProtocolError("can't send a chunked response to or as HTTP/1.0")
            writer = ChunkedWriter()
        elif length is not None:
            writer = ContentLengthWriter(length)
        elif body_length is not None:
            extra = f"Content-Length: {body_length}\r\n"
            writer = ContentLengthWriter(body_length)
        elif self._peer_version == "1.1" and event.version == "1.1":
            extra = "Transfer-Encoding: chunked\r\n"
            writer = ChunkedWriter()
        else:
            writer = CloseDelimitedWriter()
            keep_alive = False
        self._writer = writer
        self._waiting_100 = False
        self.our_state = SEND_BODY
        if not keep_alive:
            self._keep_alive = False
        if extra:
            return head + extra.encode("latin-1") + b"\r\n"
        return whole_head

    def _send_request(self, event, body_length):
        headers = event.headers
        index = headers._lookup()
        version = event.version
        hosts = index.get("host")
        if hosts is None:
            if version == "1.1":
                raise LocalProtocolError("HTTP/1.1 requests need a Host header")
        elif len(hosts) > 1:
            raise LocalProtocolError("a request can't have more than one Host header")
        keep_alive = _wants_keep_alive(version, index.get("connection"))
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        extra = ""
        if te is not None:
            if cl is not None:
                raise LocalProtocolError("request with both Transfer-Encoding and Content-Length")
            _is_chunked(te, LocalProtocolError, True)
            writer = ChunkedWriter()
        elif cl is not None:
            writer = ContentLengthWriter(_content_length(cl, LocalProtocolError))
        elif body_length is not None and (body_length or event.method in _METHODS_WITH_BODY):
            extra = f"Content-Length: {body_length}\r\n"
            writer = ContentLengthWriter(body_length)
        else:
            writer = NoBodyWriter("request without Content-Length or Transfer-Encoding")
        self._writer = writer
        self._request_method = event.method
        self.our_state = SEND_BODY
        if self.their_state == IDLE:
            self.their_state = SEND_RESPONSE
        if not keep_alive:
            self._keep_alive = False
        return write_head(f"{event.method} {event.target} HTTP/{version}", headers, extra)

    # ------------------------------------------------------------------------------------ the cycle

    def _settle(self):
        """Once keep-alive is off, a side that is DONE can only close next."""
        if not self._keep_alive:
            if self.our_state == DONE:
                self.our_state = MUST_CLOSE
            if self.their_state == DONE:
                self.their_state = MUST_CLOSE

    def start_next_cycle(self):
        """Return both sides to IDLE after a complete keep-alive request/response exchange.

        Raises ``LocalProtocolError`` unless both sides are DONE (which implies keep-alive).  Bytes already
        received for the next request stay buffered and are parsed by the next ``next_event`` call.
        """
        if self.our_state != DONE or self.their_state != DONE:
            raise LocalProtocolError(
                f"can't start a new cycle: our_state={self.our_state}, their_state={self.their_state}")
        self.our_state = IDLE
        self.their_state = IDLE
        self._reader = None
        self._writer = None
        self._request_method = None
        self._peer_version = None
        self._waiting_100 = False
        # The head reader needs no reset: it starts afresh after each head it returns.
