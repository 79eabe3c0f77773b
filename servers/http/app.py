"""The handler API for custom servers: a request object, and a base class that routes by method.

A custom server is a :class:`Handler` subclass with ``do_GET(request)``, ``do_POST(request)``, ...
methods; :class:`~servers.http.channel.HTTPServer` calls ``handler.handle(request)`` once the
request's body has arrived (``request.body``, at most ``max_body`` bytes).  The handler answers
through the request, at once or later from a reactor callback:

* ``request.respond(status, headers=None, body=b"")`` — a whole response in one send;
* ``request.start_response(status, headers)``, ``request.write(data)`` ..., ``request.finish()``
  — a streamed one (chunked for HTTP/1.1 unless the headers give a Content-Length);
* ``request.send_file(path)`` — a file, with validators, ranges and ``os.sendfile``;
* ``request.send_error(status, detail="")`` — a small HTML error page.

The server adds ``Date``, ``Server`` and ``Connection`` and frames the body; handlers never see
sockets.  Header values that contain CR, LF or other control characters are refused
(``LocalProtocolError``, answered with 500), so request data cannot split a response head.
Everything runs on the reactor's thread; from another thread, go through
``reactor.call_soon_threadsafe``.
"""
import html

__all__ = ["HTTPRequest", "Handler", "EchoHandler", "KNOWN_METHODS"]

#: Methods defined by RFC 9110 (and PATCH): anything else is answered with 501, these with 405.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                           "TRACE", "PATCH"})

# Response progress of a request: nothing sent, head sent (streaming), response complete.
_NOT_STARTED, _STREAMING, _DONE = 0, 1, 2


class HTTPRequest:
    """One request, as a handler sees it, and the verbs that answer it.

    ``method``, ``target`` (as sent), ``path`` (the target's path, still percent-encoded),
    ``query`` (after ``?``, without it; "" if none), ``version`` ("1.1" or "1.0"), ``headers``
    (an :class:`eventloop.http11.Headers`: ``get(name)``, ``get_all(name)``, iteration over
    ``(name, value)`` pairs), ``body`` (bytes; b"" when the handler's ``will_read_body`` said
    no: the body was dropped as it arrived), ``client_address``.  ``status`` is the status
    sent (None before), ``sent_bytes`` the body bytes sent so far.
    """

    __slots__ = ("method", "target", "path", "query", "version", "headers", "body",
                 "client_address", "status", "sent_bytes", "_channel", "_state", "_close")

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
        self._channel = channel
        self._state = _NOT_STARTED
        self._close = False

    def __repr__(self):
        return "<HTTPRequest %s %s HTTP/%s>" % (self.method, self.target, self.version)

    @property
    def request_line(self):
        """``METHOD target HTTP/version``, as received (for logs and echo pages)."""
        return "%s %s HTTP/%s" % (self.method, self.target, self.version)

    @property
    def responded(self):
        """True once the response head has been sent."""
        return self._state != _NOT_STARTED

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
        if self._state != _STREAMING:
            raise RuntimeError("%r: write() needs start_response() first" % (self,))
        if data:
            self._channel.write_body(self, data)

    def finish(self):
        """End a streamed response; the connection then serves the client's next request."""
        if self._state != _STREAMING:
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

    def send_file(self, path, content_type=None):
        """Answer with the file at the filesystem ``path`` (the handler vouches for it): 200, 206,
        304, 412 or 416 from the request's validators and Range, or 404 if it is not a
        readable regular file.  Large files go out with ``os.sendfile``."""
        if self._state:
            raise RuntimeError("%r: response already started" % (self,))
        from .static import send_file
        send_file(self, path, content_type)

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


class Handler:
    """Base class for custom servers: define ``do_<METHOD>(self, request)`` methods.

    HEAD falls back to ``do_GET`` (the server drops the body).  A request for a method without a
    ``do_`` method gets 405 with ``Allow`` if the method is in :data:`KNOWN_METHODS`, else 501.
    Override :meth:`handle` to take every request yourself.
    """

    _do = {}
    _allow = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        do = {}
        for name in dir(cls):
            if name.startswith("do_") and callable(getattr(cls, name, None)):
                do[name[3:]] = getattr(cls, name)
        if "GET" in do and "HEAD" not in do:
            do["HEAD"] = do["GET"]
        cls._do = do
        cls._allow = ", ".join(sorted(do))

    def handle(self, request):
        """Route ``request`` to its ``do_`` method (called by the server once the body is in)."""
        method = self._do.get(request.method)
        if method is None:
            self.method_not_allowed(request)
        else:
            method(self, request)

    def will_read_body(self, request):
        """Whether :meth:`handle` uses the body, asked once per request that has one.  If not, the
        body is dropped as it arrives (``request.body`` stays b""), and a client that sent
        ``Expect: 100-continue`` gets the answer at once (the connection closes after it); if so,
        it is kept in memory (within the server's ``max_buffered_bodies``), after
        ``100 Continue`` when the client asked for it."""
        return request.method in self._do or type(self).handle is not Handler.handle

    def method_not_allowed(self, request):
        """405 with ``Allow`` for a known method, 501 for any other."""
        if request.method in KNOWN_METHODS:
            request.send_error(405, headers=(("Allow", self._allow),))
        else:
            request.send_error(501)


_ECHO_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Echo</title></head><body>
<h1>Your request</h1><pre>%s</pre>
<table>%s</table><p>%d body bytes</p></body></html>
"""


class EchoHandler(Handler):
    """The request-echo server of the classic asynchat example: every request, whatever its
    method, gets an HTML page showing its request line and headers (``--echo``)."""

    def handle(self, request):
        rows = "".join("<tr><th>%s</th><td>%s</td></tr>\n" % (html.escape(name), html.escape(value))
                       for name, value in request.headers)
        page = _ECHO_PAGE % (html.escape(request.request_line), rows, len(request.body))
        request.respond(200, [("Content-Type", "text/html; charset=utf-8")], page.encode())
