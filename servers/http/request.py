"""The request a handler gets, and the verbs that answer it: everything a handler may call.

A handler answers through the request, at once or later from a reactor callback:

* ``request.respond(status, headers=None, body=b"")`` — a whole response in one send;
* ``request.start_response(status, headers)``, ``request.write(data)`` ..., ``request.finish()``
  — a streamed one (chunked for HTTP/1.1 unless the headers give a Content-Length), with
  ``request.when_drained(callback)`` and ``request.buffered_bytes`` to stream much in bounded
  memory;
* ``request.send_file(path)`` — a file, with validators, ranges and ``os.sendfile``;
  ``request.send_file_span(status, headers, fd, offset, count)`` — part of an open file;
* ``request.send_error(status, detail="")`` — a small HTML error page;
* ``request.abort(reason)`` — end the connection when a response cannot be completed.

The server adds ``Date``, ``Server`` and ``Connection`` and frames the body; handlers never see
sockets.  Header values that contain CR, LF or other control characters are refused
(``LocalProtocolError``, answered with 500), so request data cannot split a response head.
Everything runs on the reactor's thread; from another thread, go through
``reactor.call_soon_threadsafe``.
"""
from . import static

__all__ = ["HTTPRequest", "NOT_STARTED", "STREAMING", "DONE"]

#: A request's response progress: nothing sent, head sent (streaming), response complete.
NOT_STARTED, STREAMING, DONE = 0, 1, 2


class HTTPRequest:
    """One request, as a handler sees it, and the verbs that answer it.

    ``method``, ``target`` (as sent), ``path`` (the target's path, still percent-encoded),
    ``query`` (after ``?``, without it; "" if none), ``version`` ("1.1" or "1.0"), ``headers``
    (an :class:`eventloop.http11.Headers`: ``get(name)``, ``get_all(name)``, iteration over
    ``(name, value)`` pairs), ``body`` (bytes; b"" when the handler's ``will_read_body`` said
    no: the body was dropped as it arrived), ``client_address``.  ``status`` is the status
    sent (None before), ``sent_bytes`` the body bytes sent so far.  ``body_sink`` is what the
    handler's ``body_sink(request)`` gave, when the body goes there instead of into ``body``.
    """

    __slots__ = ("method", "target", "path", "query", "version", "headers", "body",
                 "client_address", "status", "sent_bytes", "body_sink", "_channel", "_state",
                 "_close", "_on_close")

    def __init__(self, channel, event, client_address):
        self.method = event.method
        target = self.target = event.target
        if target[0] != "/":
            target = _origin_form(target)
        path, _, self.query = target.partition("?")
        self.path = path
        self.version = event.version
        self.headers = event.headers
        self.body = b""
        self.client_address = client_address
        self.status = None
        self.sent_bytes = 0
        self.body_sink = None
        self._channel = channel
        self._state = NOT_STARTED
        self._close = False
        self._on_close = None       # when_closed callbacks

    def __repr__(self):
        return "<HTTPRequest %s %s HTTP/%s>" % (self.method, self.target, self.version)

    @property
    def request_line(self):
        """``METHOD target HTTP/version``, as received (for logs and echo pages)."""
        return "%s %s HTTP/%s" % (self.method, self.target, self.version)

    @property
    def responded(self):
        """True once the response head has been sent."""
        return self._state != NOT_STARTED

    @property
    def closed(self):
        """True once the client connection is gone: further output is silently dropped."""
        return not self._channel.connected

    def respond(self, status, headers=None, body=b""):
        """Send a complete response: ``headers`` is a list/tuple of ``(name, value)`` pairs or a
        dict; Content-Length is added from ``body`` (not sent for HEAD)."""
        if self._state:
            raise RuntimeError("%r: response already started" % (self,))
        self._channel.respond(self, status, headers, body)

    def start_response(self, status, headers=None):
        """Send the head of a streamed response; follow with :meth:`write` calls and :meth:`finish`."""
        if self._state:
            raise RuntimeError("%r: response already started" % (self,))
        self._channel.start_response(self, status, headers)

    def write(self, data):
        """Send a piece of a streamed response body (queued if the socket is full)."""
        if self._state != STREAMING:
            raise RuntimeError("%r: write() needs start_response() first" % (self,))
        if data:
            self._channel.write_body(self, data)

    def finish(self):
        """End a streamed response; the connection then serves the client's next request."""
        if self._state != STREAMING:
            raise RuntimeError("%r: finish() needs start_response() first" % (self,))
        self._channel.finish_body(self)

    def when_drained(self, callback):
        """Call ``callback()`` once everything written so far has gone to the kernel (at once,
        through the reactor, if nothing is queued): the way to stream much data in bounded memory."""
        self._channel.when_drained(callback)

    @property
    def buffered_bytes(self):
        """Output bytes queued for this connection and not yet accepted by the kernel."""
        return self._channel.queued_bytes

    def send_continue(self):
        """Send ``100 Continue`` now if the client waits for it (``Expect: 100-continue``) before
        sending the body, which goes to ``body_sink`` (a handler that got the request early
        calls this when it first wants the body)."""
        self._channel.send_continue(self)

    def when_closed(self, callback):
        """Call ``callback()`` if the connection closes before this request is done with (at
        once if it has closed): for work elsewhere (another thread) that must learn the client
        went away.  It must not write."""
        self._channel.when_closed(self, callback)

    def send_file(self, path, content_type=None):
        """Answer with the file at the filesystem ``path`` (the handler vouches for it): 200, 206,
        304, 412 or 416 from the request's validators and Range, or 404 if it is not a
        readable regular file.  Large files go out with ``os.sendfile``."""
        if self._state:
            raise RuntimeError("%r: response already started" % (self,))
        static.send_file(self, path, content_type)

    def send_file_span(self, status, headers, fd, offset, count):
        """Answer with ``count`` bytes of the open file ``fd`` from ``offset`` as the body (the
        ``headers`` must carry that Content-Length).  ``fd`` stays the caller's, who may close it
        once this returns: what the kernel does not take at once is sent later, with
        ``os.sendfile``, from a duplicate of it."""
        if self._state:
            raise RuntimeError("%r: response already started" % (self,))
        self._channel.send_file_span(self, status, headers, fd, offset, count)

    def abort(self, reason):
        """End the connection at once, logging ``reason``: for a response that cannot be
        completed honestly (a file that changed while it was sent), where a cut is the only
        true signal to the client."""
        self._channel.abort(self, reason)

    def send_error(self, status, detail="", headers=None):
        """Answer with ``status`` and a small HTML page; ``detail`` is shown HTML-escaped."""
        self._channel.send_error(self, status, detail, headers)


def _origin_form(target):
    """The path-and-query part of an absolute-form target (``http://host/p?q`` -> ``/p?q``);
    other targets (``*``, authority-form) are returned unchanged."""
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        slash = rest.find("/")
        query = rest.find("?")
        if slash < 0 or 0 <= query < slash:
            return "/" + (rest[query:] if query >= 0 else "")
        return rest[slash:]
    return target
