"""An asynchronous HTTP/1.1 client on the reactor: the classic ``AsyncHTTP(uri, consumer)``.

::

    from clients.http import AsyncHTTP, Redirect
    import eventloop

    class Printer:
        def http_header(self, request):      # optional; request.status is None on failure
            print(request.status or request.error)
        def feed(self, data):                # body pieces, de-chunked
            print(len(data), "bytes")
        def close(self):                     # exactly once, whatever happened
            print("done")

    AsyncHTTP("http://localhost:8000/", Redirect(Printer()))
    eventloop.loop()

``fetch(url)`` and ``retrieve(url, filename)`` are the blocking conveniences;
``python -m clients.http URL...`` is the command-line client.
"""
from .blocking import FetchError, FetchResponse, fetch, retrieve
from .client import DEFAULT_TIMEOUT, AsyncHTTP
from .consumers import Collector, Redirect, SaveToFile
from .messages import HeaderMap
from .pool import ConnectionPool, close_idle_connections, connection_pool
from .redirects import RedirectError, RedirectLoop, TooManyRedirects, UnsupportedRedirect
from .tls import default_ssl_context, make_ssl_context

__all__ = ["AsyncHTTP", "Redirect", "Collector", "SaveToFile", "fetch", "retrieve",
           "FetchError", "FetchResponse", "HeaderMap", "ConnectionPool", "connection_pool",
           "close_idle_connections", "default_ssl_context", "make_ssl_context",
           "DEFAULT_TIMEOUT", "RedirectError", "RedirectLoop", "TooManyRedirects",
           "UnsupportedRedirect"]
