"""The blocking conveniences: :func:`fetch` (one response, in memory) and :func:`retrieve` (one
download, to a file).

Each call runs its own private :class:`~eventloop.Reactor` until its request has ended, so they
work from any thread while other reactors run; the connections it kept are closed with it.
"""
import os
import tempfile

from eventloop import Reactor

from .client import DEFAULT_TIMEOUT, AsyncHTTP
from .consumers import Collector, Redirect, SaveToFile
from .pool import close_idle_connections
from .tls import make_ssl_context

__all__ = ["fetch", "retrieve", "FetchResponse", "FetchError"]


class FetchError(Exception):
    """:func:`fetch` or :func:`retrieve` could not get a response: ``url`` and ``reason``
    (``response`` is set when a response arrived but was refused, e.g. 404 in ``retrieve``)."""

    def __init__(self, url, reason, response=None):
        super().__init__("%s: %s" % (url, reason))
        self.url = url
        self.reason = reason
        self.response = response


class FetchResponse:
    """What :func:`fetch` returns: ``status`` (int), ``reason``, ``version``, ``headers``
    (:class:`~clients.http.HeaderMap`), ``body`` (bytes), ``url`` (the final URL), ``history``
    (``[(status, url)]`` of the redirects followed), ``trailers``."""

    __slots__ = ("status", "reason", "version", "headers", "body", "url", "history", "trailers")

    def __init__(self, request, body):
        self.version, self.status, self.reason = request.status
        self.headers = request.header
        self.body = body
        self.url = request.url
        self.history = list(request.history)
        self.trailers = request.trailers

    def __repr__(self):
        return "<FetchResponse %d %s %s (%d bytes)>" % (self.status, self.reason, self.url,
                                                       len(self.body))


def _run_private(url, consumer, method, headers, body, timeout, follow_redirects, max_redirects,
                 cafile, insecure, ssl_context):
    if ssl_context is None and (cafile is not None or insecure):
        ssl_context = make_ssl_context(cafile, insecure)
    reactor = Reactor()
    try:
        top = Redirect(consumer, max_redirects) if follow_redirects else consumer
        AsyncHTTP(url, top, method, headers, body, timeout, reactor=reactor,
                  ssl_context=ssl_context)
        reactor.run_until_idle()
    finally:
        close_idle_connections(reactor)
        reactor.close()


def fetch(url, method="GET", headers=None, body=None, timeout=DEFAULT_TIMEOUT,
          follow_redirects=True, max_redirects=10, cafile=None, insecure=False, *,
          ssl_context=None):
    """Send one request (following redirects unless told not to) and return a
    :class:`FetchResponse`, whatever its status.  Raises :class:`FetchError` when no complete
    response arrives (bad URL, DNS, connect, TLS, timeout, truncated body, redirect loop...)."""
    collector = Collector()
    _run_private(url, collector, method, headers, body, timeout, follow_redirects,
                 max_redirects, cafile, insecure, ssl_context)
    request = collector.request
    if request is None or request.error is not None or request.status is None:
        reason = request.error if request is not None else "no response"
        raise FetchError(url, reason or "no response")
    return FetchResponse(request, collector.body)


def retrieve(url, filename=None, *, headers=None, timeout=DEFAULT_TIMEOUT,
             follow_redirects=True, max_redirects=10, cafile=None, insecure=False,
             ssl_context=None):
    """Download ``url`` into ``filename`` (a new temporary file when None), like
    ``urllib.request.urlretrieve``; returns ``(filename, headers)``.

    The body goes to a temporary name beside ``filename`` and is renamed over it only when it
    arrived complete with a status below 400; otherwise nothing is left behind and
    :class:`FetchError` is raised.
    """
    if filename is None:
        fd, filename = tempfile.mkstemp(prefix="retrieve-")
        os.close(fd)
    sink = SaveToFile(filename, accept=lambda request: request.status[1] < 400)
    _run_private(url, sink, "GET", headers, None, timeout, follow_redirects, max_redirects,
                 cafile, insecure, ssl_context)
    request = sink.request
    if request is None or request.error is not None or request.status is None:
        raise FetchError(url, (request.error if request is not None else None) or "no response")
    if not sink.saved:
        raise FetchError(url, "HTTP %d %s" % request.status[1:], FetchResponse(request, b""))
    return filename, request.header
