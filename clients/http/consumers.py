"""Consumers for :class:`~clients.http.AsyncHTTP`: objects with the optional
``http_header(request)``, and ``feed(data)`` and ``close()``.

* :class:`Redirect` wraps a consumer and follows redirects, so the wrapped consumer sees
  only the final response;
* :class:`Collector` keeps the body in memory (what :func:`~clients.http.fetch` uses);
* :class:`SaveToFile` writes the body to a temporary name and renames it over the target
  only when the response arrived complete and was accepted.
"""
import os
import secrets
import stat

from . import failures
from .redirects import (NOT_HTTP, REDIRECT_STATUSES, PlannedRequest, RedirectError,
                        RedirectPolicy, UnsupportedRedirect)

__all__ = ["Redirect", "Collector", "SaveToFile", "MAX_REDIRECT_BODY"]

#: A redirect response's body is read (so its connection can be reused) up to this size;
#: past it the hop's connection is dropped instead.
MAX_REDIRECT_BODY = 65536


class Redirect:
    """Follow 301, 302, 303, 307 and 308 responses that carry a ``Location``, with
    :class:`~clients.http.redirects.RedirectPolicy` (method and body rewriting, credential
    stripping, at most ``max_redirects`` hops, no loops).

    The wrapped ``consumer`` sees one ``http_header`` — the final response's, or a failure
    (``request.status`` None, ``request.error`` e.g. "redirect loop: ...") when a redirect
    cannot be followed — then the final body and one ``close()``.  ``history`` (here and on
    the final request) lists the hops taken as ``(status, url)``.  A 3xx without
    ``Location`` is a final response.  The next hop starts once the redirect response's body
    has been read, so keep-alive connections are reused along the chain.
    """

    def __init__(self, consumer, max_redirects=10):
        self.consumer = consumer
        self.max_redirects = max_redirects
        self.history = []
        self.request = None         # the request whose response the consumer sees
        self._policy = None
        self._hop = None            # the request answered by a redirect being followed
        self._next = None           # the PlannedRequest to send when that hop closes
        self._discarded = 0

    def http_header(self, request):
        status = request.status
        if status is not None and status[1] in REDIRECT_STATUSES and "location" in request.header:
            try:
                if self._policy is None:      # the first redirect: ``request`` is the first hop
                    first = PlannedRequest(request.method, request.url,
                                           list(request.request_headers), request.body)
                    self._policy = RedirectPolicy(first, self.max_redirects)
                planned = self._policy.follow(status[1], request.header["location"])
            except (RedirectError, ValueError) as exc:
                request.status = None
                request.error = "%s (after %d redirects)" % (exc, len(self.history))
                request.failure = _redirect_failure(exc)
                self._deliver(request)
                request.close()
                return
            self.history = list(self._policy.history)
            self._hop = request
            self._next = planned
            self._discarded = 0
            return
        self._deliver(request)

    def _deliver(self, request):
        self.request = request
        request.history = list(self.history)
        http_header = getattr(self.consumer, "http_header", None)
        if http_header is not None:
            http_header(request)

    def feed(self, data):
        if self._next is not None:
            self._discarded += len(data)
            if self._discarded > MAX_REDIRECT_BODY:
                self._hop.close()
            return
        self.consumer.feed(data)

    def close(self):
        if self._next is not None:
            planned, self._next = self._next, None
            hop, self._hop = self._hop, None
            hop.new_request(planned.url, self, planned.method, planned.headers, planned.body)
            return
        self.consumer.close()


def _redirect_failure(exc):
    """The :mod:`~clients.http.failures` name for a redirect that is not followed."""
    if not isinstance(exc, UnsupportedRedirect):
        return failures.TOO_MANY_REDIRECTS
    if exc.reason == NOT_HTTP:
        return failures.REDIRECT_SCHEME
    return failures.BAD_REDIRECT


class Collector:
    """Keeps the response: ``request`` (after ``http_header``), ``body`` (bytes), ``closed``."""

    def __init__(self):
        self.request = None
        self.chunks = []
        self.closed = False

    def http_header(self, request):
        self.request = request

    def feed(self, data):
        self.chunks.append(data)

    def close(self):
        self.closed = True

    @property
    def body(self):
        return b"".join(self.chunks)


class SaveToFile:
    """Writes the body to ``path``, never leaving a partial file under that name.

    The body goes to a new hidden file beside ``path`` (created with the usual permissions);
    at ``close()`` it is renamed over ``path`` if the request succeeded and ``accept(request)``
    (default: always) says yes, else removed.  ``overwrite=False`` refuses an existing
    ``path`` (the request is closed with ``error`` saying so).  ``saved`` tells the outcome.

    As with curl, a ``path`` that is a symlink has its target replaced (the link stays), and
    one that is not a regular file (a device such as ``/dev/null``, a FIFO) is written to
    directly: renaming over it would destroy it.
    """

    def __init__(self, path, accept=None, overwrite=True):
        self.path = os.fspath(path)
        self.accept = accept
        self.overwrite = overwrite
        self.request = None
        self.saved = False
        self.error = None
        self._file = None
        self._temp = None           # the hidden file being written, when not written in place
        self._target = None         # what it is renamed over: the real path of ``path``

    def http_header(self, request):
        self.request = request
        if request.status is None:
            return
        if not self.overwrite and os.path.exists(self.path):
            self.error = request.error = "refusing to overwrite existing file %r" % (self.path,)
            request.failure = failures.WRITE
            request.close()
            return
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            self._file = open(self.path, "wb")     # a device or FIFO: into it, as it is
            return
        self._open_temp(os.path.realpath(self.path))

    def _open_temp(self, target):
        folder, name = os.path.split(target)
        for _ in range(100):
            temp = os.path.join(folder, ".%s.%s.part" % (name, secrets.token_hex(4)))
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                             0o666)
            except FileExistsError:
                continue
            self._temp = temp
            self._target = target
            self._file = os.fdopen(fd, "wb")
            return
        raise FileExistsError("no free temporary name beside %r" % (self.path,))

    def feed(self, data):
        if self._file is not None:
            self._file.write(data)

    def close(self):
        request = self.request
        if self._file is None:
            return
        ok = request is not None and request.error is None and request.status is not None
        try:
            self._file.close()
            if ok and (self.accept is None or self.accept(request)):
                if self._temp is None:
                    pass                                # written in place
                elif self.overwrite:
                    os.replace(self._temp, self._target)
                else:
                    os.link(self._temp, self._target)   # atomic: fails if the name exists
                self.saved = True
        except OSError as exc:
            self.error = "cannot save %r: %s" % (self.path, exc.strerror or exc)
        finally:
            self._file = None
            if self._temp is not None and (not self.saved or not self.overwrite):
                try:
                    os.unlink(self._temp)
                except OSError:
                    pass
