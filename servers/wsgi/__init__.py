"""servers.wsgi: a PEP 3333 host on the reactor — ``python -m servers.wsgi MODULE:CALLABLE``.

The HTTP server's listener, channels, limits and timeouts (``servers.http``), with a handler
that runs a WSGI application in a pool of threads (or on the reactor thread) and never lets
those threads touch a socket.  In a program::

    import eventloop
    from servers.wsgi import WSGIServer

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, world!\\n"]

    WSGIServer(("127.0.0.1", 8000), app)
    eventloop.run()

The modules: ``server`` (the server, loading MODULE:CALLABLE), ``handler`` (the handler seam and
one request's exchange with the application), ``threads`` (the pool and the mailbox back to the
reactor), ``input`` (``wsgi.input``), and the pure ``environ`` (environ, status and header checks).
"""
from .environ import HOP_BY_HOP
from .handler import Exchange, FileWrapper, WSGIHandler
from .input import ClientDisconnected, RequestBody
from .server import AppNotFound, WSGIServer, load_application

__all__ = ["WSGIServer", "WSGIHandler", "Exchange", "FileWrapper", "RequestBody",
           "ClientDisconnected", "AppNotFound", "load_application", "HOP_BY_HOP"]
