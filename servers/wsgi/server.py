"""The WSGI server: :class:`WSGIServer` is the HTTP server (its listener, channels, limits and
timeouts) with a :class:`~servers.wsgi.handler.WSGIHandler` for its handler, and
:func:`load_application` finds the application a command line names.
"""
import importlib
import logging

from eventloop import get_reactor
from servers.http import HTTPServer

from .handler import WSGIHandler

__all__ = ["WSGIServer", "load_application", "AppNotFound"]

log = logging.getLogger("servers.wsgi")


class WSGIServer(HTTPServer):
    """Serves the WSGI ``application`` on ``address`` (or on ``sock``, bound already).

    ``threads``, ``url_scheme``, ``script_name``, ``spool_threshold``, ``high_water`` and
    ``multiprocess`` are :class:`WSGIHandler`'s; the other options (``max_body``,
    ``head_timeout``, ``keepalive_timeout``, ``io_timeout``, ``reactor``, ...) are
    :class:`~servers.http.HTTPServer`'s.  ``max_body`` defaults to 1 GiB here (as waitress's):
    bodies past ``spool_threshold`` wait in a temporary file, not in memory.
    """

    def __init__(self, address=("", 8000), application=None, *, threads=4, url_scheme="http",
                 script_name="", spool_threshold=256 << 10, high_water=256 << 10,
                 multiprocess=False, max_body=1 << 30, reactor=None, **options):
        if application is None or not callable(application):
            raise TypeError("application must be a WSGI callable, not %r" % (application,))
        handler = WSGIHandler(application, threads=threads, url_scheme=url_scheme,
                              script_name=script_name, spool_threshold=spool_threshold,
                              high_water=high_water, multiprocess=multiprocess)
        HTTPServer.__init__(self, address, handler, reactor=reactor or get_reactor(),
                            max_body=max_body, **options)
        self.handler = handler
        handler.attach(self)

    def shutdown(self, grace=5.0):
        """Stop listening, close every connection, and give the application threads ``grace``
        seconds to finish; returns how many were still busy (they are daemon threads: they do
        not keep the process alive)."""
        HTTPServer.shutdown(self)
        busy = self.handler.shutdown(grace)
        if busy:
            log.warning("%d application thread(s) still busy after %gs; leaving them", busy, grace)
        return busy

    def __repr__(self):
        return "<WSGIServer %s at %#x>" % (self.server_address, id(self))


class AppNotFound(Exception):
    """The MODULE:CALLABLE of a command line names no WSGI callable (its message says why)."""


def load_application(spec, call=False):
    """The callable ``spec`` ("MODULE:NAME", NAME a dotted path within MODULE) names; with
    ``call`` the callable is a factory and its result is returned.  AppNotFound otherwise."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise AppNotFound("%r is not MODULE:CALLABLE" % spec)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            raise AppNotFound("cannot import %r: no such module" % module_name) from None
        raise AppNotFound("cannot import %r: %s: %s" % (module_name, type(exc).__name__, exc)) \
            from None
    except Exception as exc:
        raise AppNotFound("cannot import %r: %s: %s" % (module_name, type(exc).__name__, exc)) \
            from None
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppNotFound("module %r has no attribute %r" % (module_name, name)) from None
    if call:
        if not callable(obj):
            raise AppNotFound("%s is not callable (%s)" % (spec, type(obj).__name__))
        try:
            obj = obj()
        except Exception as exc:
            raise AppNotFound("%s() failed: %s: %s" % (spec, type(exc).__name__, exc)) from None
    if not callable(obj):
        raise AppNotFound("%s is not callable (%s)%s" % (
            spec, type(obj).__name__, "" if call else "; if it is a factory, use --call"))
    return obj
