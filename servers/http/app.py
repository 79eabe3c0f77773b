"""Handlers for custom servers: a base class that routes requests by method, and the echo handler.

A custom server is a :class:`Handler` subclass with ``do_GET(request)``, ``do_POST(request)``, ...
methods; :class:`~servers.http.server.HTTPServer` calls ``handler.handle(request)`` once the
request's body has arrived.  The handler answers through the request's verbs
(:class:`~servers.http.request.HTTPRequest`), at once or later from a reactor callback; it never
sees a socket.
"""
import html

__all__ = ["Handler", "EchoHandler", "KNOWN_METHODS"]

#: Methods defined by RFC 9110 (and PATCH): anything else is answered with 501, these with 405.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                           "TRACE", "PATCH"})

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
