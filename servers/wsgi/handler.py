"""A WSGI application behind the HTTP server's handler seam: :class:`WSGIHandler`.

The reactor thread does all the I/O.  :meth:`WSGIHandler.handle` builds the environ and hands
the request to an application thread (a :class:`~servers.wsgi.threads.ThreadPool`); there one
:class:`Exchange` calls the application and turns what it returns into calls of the request's
verbs (``respond``, ``start_response``/``write``/``finish``, ``send_file_span``), which it
*posts* to the reactor (:class:`~servers.wsgi.threads.Mailbox`): an application thread never
touches a socket.  The request body reaches the application through ``wsgi.input``, a
:class:`~servers.wsgi.input.RequestBody` the channel fills as it arrives.

Back-pressure: an application thread that streams blocks while more than ``high_water`` bytes of
its response wait (posted, or queued in the connection's output queue), and goes on when the
queue has drained (the channel's ``resume_writing``, through ``request.when_drained``) or the
client has gone (``request.when_closed``): a slow client makes the server hold at most that.

With ``threads=0`` the application runs on the reactor thread itself (for applications that
never block): the request reaches it with its body complete, and a streamed response is pulled
from its iterable one block at a time, only while the output queue is below ``high_water``.
"""
import logging
import os
import stat
import sys
import threading

from servers.http.messages import log_escape

from .environ import ErrorStream, base_environ, check_headers, parse_status, request_environ
from .input import EMPTY_BODY, ClientDisconnected, RequestBody
from .threads import Mailbox, ThreadPool

__all__ = ["WSGIHandler", "Exchange", "FileWrapper"]

log = logging.getLogger("servers.wsgi")

_NO_BODY = frozenset({204, 304})
_END = object()


class FileWrapper:
    """``wsgi.file_wrapper``: iterates ``filelike`` in ``blksize`` blocks; the server sends it with
    ``os.sendfile`` instead when it is a regular file with a descriptor (:meth:`span`)."""

    def __init__(self, filelike, blksize=64 << 10):
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def span(self):
        """``(fd, offset, count)``: the rest of the file from its current position, or None when
        it is not a regular file with a descriptor."""
        try:
            fd = self.filelike.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            offset = self.filelike.tell() if hasattr(self.filelike, "tell") else 0
            size = os.fstat(fd).st_size
        except (AttributeError, OSError, ValueError):
            return None
        return fd, offset, max(0, size - offset)


class WSGIHandler:
    """Serves the WSGI ``application`` through the request verbs (see the module docstring).

    ``threads``: application threads (0: run it on the reactor thread); ``url_scheme``: the
    ``wsgi.url_scheme``; ``script_name``: the URL prefix the application is mounted at
    (``SCRIPT_NAME``; requests outside it get 404); ``spool_threshold``: body bytes kept in
    memory before the rest goes to a temporary file; ``high_water``: response bytes waiting for
    a client before a streaming application thread blocks; ``multiprocess``: the
    ``wsgi.multiprocess`` flag (pre-forked workers).  :meth:`attach` binds it to its server.
    """

    def __init__(self, application, *, threads=4, url_scheme="http", script_name="",
                 spool_threshold=256 << 10, high_water=256 << 10, multiprocess=False):
        if threads < 0:
            raise ValueError("threads must not be negative")
        self.application = application
        self.threads = threads
        self.url_scheme = url_scheme
        self.script_name = script_name.rstrip("/")
        self.spool_threshold = spool_threshold
        self.high_water = high_water
        self.multiprocess = multiprocess
        self.pool = None
        self.mailbox = None
        self._base = None

    def attach(self, server):
        """Take the server's address (``SERVER_NAME``/``SERVER_PORT``) and reactor; start the
        threads."""
        host, port = server.server_address[:2]
        self._base = base_environ(host, port, self.url_scheme, self.script_name,
                                  self.threads > 1, self.multiprocess, FileWrapper, ErrorStream())
        self._reactor = server._reactor
        self._batch = []
        # One condition for every exchange of this handler: few threads wait at once (at most
        # one per thread), and a waiter checks its own state when woken.
        self.cond = threading.Condition(threading.Lock())
        self.mailbox = Mailbox(server._reactor)
        if self.threads:
            self.pool = ThreadPool(self.threads)

    def shutdown(self, timeout):
        """Stop the threads (see :meth:`ThreadPool.shutdown`): how many are still busy."""
        return self.pool.shutdown(timeout) if self.pool is not None else 0

    # ----------------------------------------------------- the HTTP handler seam
    def body_sink(self, request):
        """A :class:`RequestBody` for a request that has a body: the application gets the
        request at once and reads the body as it arrives, except with ``threads=0`` and for
        chunked bodies, which are read whole first (within ``--max-body``; see the README)."""
        headers = request.headers
        chunked = headers.get("transfer-encoding") is not None
        if not chunked and headers.get("content-length") in (None, "0"):
            return None
        early = bool(self.threads) and not chunked
        ask = None
        if early and request.headers.get("expect") is not None:
            ask = lambda: self.mailbox.post(request.send_continue)  # noqa: E731
        return RequestBody(early, self.spool_threshold, ask)

    def will_read_body(self, request):
        return False        # (asked only of bodies body_sink did not take: there are none)

    def handle(self, request):
        """Build the environ of ``request`` and run the application for it."""
        body = request.body_sink
        if body is None:
            environ = request_environ(self._base, request, self.script_name, EMPTY_BODY)
        else:
            environ = request_environ(self._base, request, self.script_name, body,
                                      None if body.early else body.received)
        if environ is None:
            if body is not None:
                body.close()        # what still comes of it is dropped
            request.send_error(404, "Not under %s." % self.script_name)
            return
        exchange = Exchange(self, request, body, environ)
        # Run at the end of the loop's pass, all together, just before the reactor waits:
        # threads woken while it still works would take the GIL from it at each of its system
        # calls; and on the reactor's thread, the responses then go out in one burst, which
        # the client reads in one wake-up instead of one per response.
        batch = self._batch
        batch.append(exchange)
        if len(batch) == 1:
            self._reactor.call_soon(self._run_batch)

    def _run_batch(self):
        batch, self._batch = self._batch, []
        if self.pool is not None:
            self.pool.submit_all([exchange.run for exchange in batch])
        else:
            for exchange in batch:
                exchange.run_inline()


class Exchange:
    """One request's run of the application, and the response it makes (see the module
    docstring).  The ``_loop_*`` methods run on the reactor thread; the others on the
    application's (the reactor's, with ``threads=0``)."""

    def __init__(self, handler, request, body, environ):
        self.handler = handler
        self.request = request
        self.body = body
        self.environ = environ
        self.threaded = handler.pool is not None
        self.post = handler.mailbox.post if self.threaded else _call
        self.status = None          # the code start_response was given
        self.headers = None         # and its headers, checked, as a tuple
        self.length = None          # the application's Content-Length, if it gave one
        self.head_sent = False      # the head was posted: start_response may no longer change it
        self.complete = False       # the whole response was posted
        self.sent = 0               # body bytes the application produced after the head
        self.result = None          # the application's iterable
        self._iter = None           # with threads=0: its iterator, being pumped
        self._cond = handler.cond
        self._posted = 0            # bytes posted, not yet handed to the request
        self._queued = 0            # the connection's queued bytes, as last seen
        self._gone = False          # the client went away (or the server answered for us)
        self._drain_armed = False
        self._close_hooked = False
        self._file_sent = False
        self._closed = False        # the iterable's close() was called

    # ------------------------------------------------------------ the application's side
    def start_response(self, status, headers, exc_info=None):
        """PEP 3333's ``start_response``: returns the ``write`` callable."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info")
        code = parse_status(status)
        headers = check_headers(headers)
        length = None
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                if not value.isdigit() or not value.isascii():
                    raise ValueError("bad Content-Length %r" % value)
                length = int(value)
        self.status, self.headers, self.length = code, headers, length
        return self.write

    def write(self, data):
        """PEP 3333's ``write`` callable: ``data`` goes out before the iterable's blocks."""
        if type(data) is not bytes:
            raise TypeError("write() takes bytes, not %r" % type(data).__name__)
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if self._gone:
            raise ClientDisconnected("the client went away")
        if data:
            self._block(data)

    def _block(self, data):
        """Send one non-empty block of the body (after the head, if it is the first)."""
        if self.complete:
            raise ValueError("the application sent more than its Content-Length (%d)"
                             % self.length)
        n = len(data)
        if not self.head_sent:
            if self.status is None:
                raise AssertionError("the application returned a body before start_response()")
            if n == self.length:            # the whole body: one response, one hand-off
                return self._whole(data)
            self.head_sent = True
            self._count(n)
            self._wait_for_room(n)
            self.post(self._loop_start, self.status, self.headers, data)
        else:
            self._count(n)
            self._wait_for_room(n)
            self.post(self._loop_write, data)

    def _count(self, n):
        self.sent += n
        if self.length is not None and self.sent > self.length and self._framed():
            raise ValueError("the application sent more than its Content-Length (%d)"
                             % self.length)

    def _framed(self):
        return self.request.method != "HEAD" and self.status not in _NO_BODY

    def _wait_for_room(self, n):
        """Block while more than ``high_water`` bytes wait for the client (threads only)."""
        high = self.handler.high_water
        with self._cond:
            if self.threaded:
                while not self._gone and self._posted + self._queued > high:
                    self._cond.wait()
            if self._gone:
                raise ClientDisconnected("the client went away")
            self._posted += n

    def _whole(self, body):
        """The response in one hand-off (``body`` is all of it)."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        if self.length is not None and self.length != len(body) and self._framed():
            raise ValueError("the application's Content-Length (%d) is not its body's length (%d)"
                             % (self.length, len(body)))
        self.head_sent = self.complete = True
        self.post(self._loop_respond, self.status, self.headers, body)

    def _end(self):
        """The application's iterable is exhausted: end the response."""
        if self.complete:
            return
        if not self.head_sent:
            return self._whole(b"")
        if self.length is not None and self.sent < self.length and self._framed():
            raise ValueError("the application sent %d bytes of its Content-Length (%d)"
                             % (self.sent, self.length))
        self.complete = True
        self.post(self._loop_finish)

    def _failed(self):
        """The application (or its response) raised: log it, and answer 500 if nothing was sent,
        else cut the connection (the response cannot be completed honestly)."""
        if isinstance(sys.exc_info()[1], ClientDisconnected) or self._gone:
            log.info("%s: the client went away", log_escape(self.request.request_line))
            return
        log.error("error in the application while answering %s",
                  log_escape(self.request.request_line), exc_info=True)
        if self.complete:
            return                  # (all of the response went out: nothing to undo)
        self.complete = True
        if self.head_sent:
            self.post(self._loop_abort, "the application failed during its response")
        else:
            self.head_sent = True
            self.post(self._loop_error)

    def _file(self, wrapper):
        """Send a ``wsgi.file_wrapper`` of a regular file with ``sendfile``; False if it is not
        one (then it is iterated like any other iterable)."""
        if self.head_sent or self.status is None:
            return False
        span = wrapper.span()
        if span is None:
            return False
        fd, offset, count = span
        headers = self.headers
        if self.length is None:
            headers += (("Content-Length", str(count)),)
        elif self.length <= count or not self._framed():
            count = self.length
        else:
            raise ValueError("the application's Content-Length (%d) is more than its file's "
                             "%d bytes" % (self.length, count))
        self.head_sent = self.complete = True
        self.post(self._loop_file, self.status, headers, fd, offset, count)
        with self._cond:            # the file is closed after this returns: wait for the send
            while not self._file_sent and not self._gone:
                self._cond.wait()
        return True

    def _serve(self, result):
        """Turn the application's iterable into the response (threads: blocking as it goes)."""
        t = type(result)
        if t is FileWrapper and self._file(result):
            return
        if (t is list or t is tuple) and not self.head_sent:
            return self._whole(b"".join(result))
        for data in result:
            if data:
                if type(data) is not bytes:
                    raise TypeError("the application's iterable gave %r, not bytes"
                                    % type(data).__name__)
                self._block(data)
        self._end()

    def run(self):
        """Run the application for the request, on an application thread."""
        result = None
        try:
            result = self.handler.application(self.environ, self.start_response)
            self._serve(result)
        except Exception:
            self._failed()
        finally:
            self._close(result)

    def _close(self, result):
        """Call the iterable's ``close()`` (once), release the body."""
        if self._closed:
            return
        self._closed = True
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.error("error closing the iterable answering %s",
                          log_escape(self.request.request_line), exc_info=True)
        if self.body is not None:
            self.body.close()
        self.environ["wsgi.errors"].flush()

    # ----------------------------------------------------- threads=0: on the reactor
    def run_inline(self):
        """Run the application on the reactor thread; a streamed response is pumped."""
        result = None
        try:
            result = self.result = self.handler.application(self.environ, self.start_response)
            t = type(result)
            if t is FileWrapper and self._file(result):
                return self._close(result)
            if (t is list or t is tuple) and not self.head_sent:
                self._whole(b"".join(result))
                return self._close(result)
            self._iter = iter(result)
        except Exception:
            self._failed()
            self._close(result)
            return
        self._pump()

    def _pump(self):
        """Send blocks of the iterable while the output queue is below high water; go on when
        it has drained (or stop if the client went away)."""
        it = self._iter
        if it is None:
            return                  # (stopped already: the client went away twice over)
        request = self.request
        high = self.handler.high_water
        try:
            while not self._gone:
                if request.buffered_bytes > high:
                    self._hook_close()
                    request.when_drained(self._pump)
                    return
                data = next(it, _END)
                if data is _END:
                    self._end()
                    break
                if data:
                    if type(data) is not bytes:
                        raise TypeError("the application's iterable gave %r, not bytes"
                                        % type(data).__name__)
                    self._block(data)
        except Exception:
            self._failed()
        self._iter = None
        self._close(self.result)

    # ------------------------------------------------------------ the reactor's side
    def _usable(self):
        """Whether the response may still be written (the channel may have answered for us:
        a 408 for a body that stalled, or the client went away)."""
        if self._gone:
            return False
        if self.request.closed:
            self._loop_gone()
            return False
        return True

    def _loop_respond(self, status, headers, body):
        if self._usable() and not self.request.responded:
            self.request.respond(status, headers, body)

    def _loop_start(self, status, headers, data):
        if self._usable() and not self.request.responded:
            self.request.start_response(status, headers)
        elif not self._gone:
            self._loop_gone()
        self._loop_write(data)

    def _loop_write(self, data):
        request = self.request
        if self._usable():
            request.write(data)
        queued = request.buffered_bytes if not self._gone else 0
        with self._cond:
            self._posted -= len(data)
            self._queued = queued
            self._cond.notify_all()
        if queued and not self._drain_armed and not self._gone:
            self._drain_armed = True
            self._hook_close()
            request.when_drained(self._loop_drained)

    def _loop_drained(self):
        self._drain_armed = False
        with self._cond:
            self._queued = self.request.buffered_bytes
            self._cond.notify_all()

    def _hook_close(self):
        if not self._close_hooked:
            self._close_hooked = True
            self.request.when_closed(self._loop_gone)

    def _loop_gone(self):
        with self._cond:
            self._gone = True
            self._cond.notify_all()
        if self._iter is not None:
            self.handler.mailbox.post(self._pump)     # (which stops, and closes the iterable)

    def _loop_finish(self):
        if self._usable():
            self.request.finish()

    def _loop_file(self, status, headers, fd, offset, count):
        try:
            if self._usable() and not self.request.responded:
                self.request.send_file_span(status, headers, fd, offset, count)
        finally:
            with self._cond:
                self._file_sent = True
                self._cond.notify_all()

    def _loop_error(self):
        if self._usable() and not self.request.responded:
            self.request.send_error(500)

    def _loop_abort(self, reason):
        if self._usable():
            self.request.abort("%s: %s" % (log_escape(self.request.request_line), reason))


def _call(function, *args):
    function(*args)
