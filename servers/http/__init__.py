"""servers.http: an HTTP/1.1 server on the reactor — static files, or your own handler.

``python -m servers.http [PORT] [-b ADDR] [-d DIR]`` serves a directory.  A custom server::

    import eventloop
    from servers.http import Handler, HTTPServer

    class Hello(Handler):
        def do_GET(self, request):
            request.respond(200, [("Content-Type", "text/plain")], b"Hello, world!\\n")

    HTTPServer(("127.0.0.1", 8000), Hello())
    eventloop.run()

The modules, from the top down: ``server`` (the listener and accept loop), ``workers``
(pre-forked processes), ``channel`` (one connection), ``request`` (what a handler may call),
``app`` (handler base classes), ``static`` (files over the handler API), ``budget`` (request
bodies held across connections), and the pure ``files`` (paths, validators, ranges, listings)
and ``messages`` (status pages, dates, response heads, log lines).
"""
from .app import KNOWN_METHODS, EchoHandler, Handler
from .budget import BodyBudget
from .channel import HTTPChannel
from .messages import SERVER_NAME
from .request import HTTPRequest
from .server import HTTPServer, bind_socket
from .static import FileCache, StaticFiles, send_file
from .workers import Prefork

__all__ = ["HTTPServer", "HTTPChannel", "HTTPRequest", "Handler", "StaticFiles", "FileCache",
           "EchoHandler", "Prefork", "BodyBudget", "send_file", "bind_socket", "KNOWN_METHODS",
           "SERVER_NAME"]
