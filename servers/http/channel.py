"""One HTTP/1.1 connection: :class:`HTTPChannel` moves bytes between its socket and an
:class:`eventloop.http11.Connection`, and hands each complete request to the application
(``app.handle(request)``).

Its life is one field, ``phase``::

    HEAD --head read--> BODY --body read--> APP --response done--> WAIT --a byte--> HEAD
     (the first request's HEAD starts at the accept)   |                             ^
                            BODY --no room yet--> ROOM -+                             |
                                                         pipelined request: HEAD -----+
    a response that ends the connection, or a request refused: CLOSING --> LINGER --> closed

and each phase has one timeout (``_TIMEOUTS``): WAIT ``keepalive_timeout`` from the end of
the last response; HEAD ``head_timeout`` from the head's first byte (trickling does not
extend it); BODY ``io_timeout`` without progress; ROOM ``io_timeout`` from the start of the
wait (then 503); APP none (every ``io_timeout`` the channel looks whether the client is still
there); LINGER ``linger_timeout``.  While output is queued, whatever the phase, the timeout is
``io_timeout`` without progress.  All of them are the core's one channel timeout
(:meth:`eventloop.Dispatcher.timeout_due`): the timer asks the table when it fires.

Bodies: one the application does not read (``app.will_read_body(request)`` is False) is read
and dropped as it arrives, so the connection stays usable and the body costs no memory.  One it
reads is kept only once the server's :class:`~servers.http.budget.BodyBudget` has room for all
of it (ROOM until then, with reading paused and no ``100 Continue`` sent).

A handler may take bodies as they arrive instead: if it has ``body_sink(request)`` and that
returns a sink (not None), the body's pieces go to ``sink.write(data)`` as they are read, then
``sink.end()``, or ``sink.abort()`` if the body cannot complete (the connection closed, a
protocol error, a timeout); nothing is kept here and the BodyBudget is not asked.  With
``sink.early`` true the handler gets the request as soon as its head is in (the channel reads
the body on while the handler answers, and sends ``100 Continue`` only when the handler asks,
:meth:`HTTPRequest.send_continue`), else once the body is complete.

Fairness: pipelined requests are answered at most ``_PIPELINE_BURST`` per turn of the loop;
then the channel stops reading and takes the rest up in the next pass's callbacks, after
every other connection's I/O (small responses never fill the output queue, so back-pressure
alone would let one pipeline hold the loop).

Back-pressure, the invariant that keeps memory bounded: output waits in the channel's
:class:`eventloop.transport.OutputQueue`, and while anything is queued (the client reads
slower than we write) or the application has not finished its response, the channel neither
reads from the socket nor parses further requests.  Files go out with ``os.sendfile``.

A connection that broke the protocol gets its 4xx with ``Connection: close``.  A close after a
response is "lingering": the channel shuts down its sending side and discards input until the
client closes (bounded in time and bytes), so the client reads the response instead of a reset.
Only when the client itself asked to close and sent nothing after that request does the channel
close at once: nothing unread can turn the close into a reset.

A connection whose request arrived with it is read as it is accepted; if it is answered and
closed then, it never joins the reactor's map (no registration, no timer), and its descriptor
is never switched to non-blocking mode: until then its receive and sends pass
``MSG_DONTWAIT``.  A closed channel is freed by reference counting alone.
"""
import logging
import socket
import time

from eventloop import DispatcherWithSend, OutputQueue, SocketWriter
from eventloop.http11 import (
    DONE as CONN_DONE, IDLE, MUST_CLOSE, SEND_RESPONSE, SERVER, Connection, Data, EndOfMessage,
    InformationalResponse, NEED_DATA, PAUSED, RemoteProtocolError, Request)

from .messages import CLOSE, KEEP, KEEP10, common_log_line, error_page, has_field, log_escape, \
    reason_for
from .request import DONE, NOT_STARTED, STREAMING, HTTPRequest

__all__ = ["HTTPChannel", "TLSHTTPChannel", "WAIT", "HEAD", "BODY", "ROOM", "APP", "CLOSING", "LINGER", "CLOSED"]

log = logging.getLogger("servers.http")
access_log = logging.getLogger("servers.http.access")

#: The phases of a connection (see the module docstring); CLOSED once it has closed.
WAIT, HEAD, BODY, ROOM, APP, CLOSING, LINGER, CLOSED = range(8)
_PHASE_NAMES = ("WAIT", "HEAD", "BODY", "ROOM", "APP", "CLOSING", "LINGER", "CLOSED")

#: phase -> (the server attribute with its timeout, whether I/O moves the deadline); None:
#: the phase has no timeout of its own.
_TIMEOUTS = {
    WAIT: ("keepalive_timeout", False),
    HEAD: ("head_timeout", False),
    BODY: ("io_timeout", True),
    ROOM: ("io_timeout", False),
    APP: ("io_timeout", False),         # not a timeout: when to look whether the client left
    CLOSING: ("io_timeout", True),
    LINGER: ("linger_timeout", False),
}

_INFO = logging.INFO
_HTML_FIELDS = (("Content-Type", "text/html; charset=utf-8"),)
_CONTINUE = InformationalResponse(100, (), "Continue")
_NO_BODY = frozenset({204, 304})
_LINGER_MAX_BYTES = 1 << 20
_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0))     # an int: IntFlag arithmetic is slow
_GATHER_MIN = 16 << 10     # bodies from this size are not concatenated to their head
_PIPELINE_BURST = 16       # pipelined requests answered per turn of the loop

# What a channel does with the body of the request it reads: _body is None until its first
# piece, then that piece (bytes), then a bytearray; or _DISCARD, when no one will read it.
_DISCARD = object()


class _Output(OutputQueue):
    """The channel's output queue: high water 0, so ``pause_writing`` is called as soon as
    anything waits for the client."""

    high_water = 0


class HTTPChannel(DispatcherWithSend):
    """One HTTP/1.1 connection (see the module docstring for its life and its invariants)."""

    # State every connection starts with; an instance gets its own value once it changes.
    phase = HEAD
    _since = 0.0                # when the current phase's timeout started (fixed ones)
    _req = None                 # the request being read or answered
    _body = None                # its body, while it arrives (see _DISCARD)
    _room_held = False          # for that body in the server's BodyBudget
    _in_process = False         # _process is running (it is not re-entered)
    _discarded = 0              # bytes read and dropped while lingering
    _pipelined = 0              # pipelined requests answered since the last turn given up
    _head_held = 0              # (set in __init__ too, see there)
    _drain_callbacks = None
    _sink = None                # the handler's sink for the body being read (see body_sink)

    def __init__(self, sock, addr, server):
        # Dispatcher.__init__ is not called: it would ask for the peer's address, which accept()
        # gave already, and join the map.  The channel joins the map only at the end, if it has
        # to wait: most short connections are answered and closed first.
        self._map = server.channel_map
        if not _DONTWAIT or sock.gettimeout() is not None:
            sock.setblocking(False)     # else switched when joining the map (add_channel)
        self.socket = sock
        self._fileno = sock.fileno()
        self.connected = True
        self.addr = addr
        self.server = server
        self.app = server.app
        self.conn = Connection(SERVER, max_body=server.max_body)
        self._out = _Output(self, SocketWriter(sock, _DONTWAIT))
        self._clock = clock = server.clock
        self._last_io = self._since = now = clock()
        self._head_held = 0         # bytes of a partial head, as counted by the server (an
                                    # instance attribute: read on every read, a class one is slower)
        server.channels.add(self)
        self._read_at_once(now)
        if self.connected:
            self.add_channel()

    def __repr__(self):
        return "<HTTPChannel %s %s at %#x>" % (self.addr, _PHASE_NAMES[self.phase], id(self))

    def add_channel(self, map=None):
        # The reactor's handlers, and subclasses, may use the socket without MSG_DONTWAIT.
        if self.socket.getblocking():
            self.socket.setblocking(False)
        DispatcherWithSend.add_channel(self, map)

    def _output(self):
        return self._out            # made with the channel (every connection answers)

    # ------------------------------------------------------------------ input
    def _read_at_once(self, now):
        """Clients send their request right after connecting, so it is often here by the time
        we accept: read it now instead of a loop pass later.  The head timeout is armed only
        when the channel has to wait (here if nothing came, else where the wait starts)."""
        try:
            self.handle_read()
        except BlockingIOError:
            self.rearm_timeout(now + self.server.head_timeout)
        except Exception:
            self.handle_error()         # this channel's own error, not the listener's

    def handle_read(self):
        data = self.socket.recv(65536, _DONTWAIT)
        self._last_io = now = self._clock()
        phase = self.phase
        if phase == WAIT:
            self.phase = HEAD
            self._since = now
        elif phase == LINGER:
            self._discarded += len(data)
            if not data or self._discarded > _LINGER_MAX_BYTES:
                self.close()
            return
        if data:
            self.conn.receive_data(data)
        else:
            self.eof_received = True
            self.interest_changed()
            self.conn.receive_data(b"")
        self._process()
        if self.phase == HEAD:
            held = self.conn.buffered_bytes
            if held != self._head_held:
                self.server.head_bytes_changed(self, held)     # (which may shed this channel)
        elif self._head_held:
            self.server.head_bytes_changed(self, 0)

    def handle_expt(self):
        # HTTP has no use for TCP urgent data, and unread it would be reported forever.
        self.close()

    def _process(self):
        """Turn buffered input into events until one response is pending, output is queued,
        or more input is needed.  Not re-entered from handlers that answer synchronously."""
        if self._in_process:
            return
        self._in_process = True
        try:
            self._run()
        finally:
            self._in_process = False

    def _run(self):
        conn = self.conn
        next_event = conn.next_event
        out = self._out
        sink = self._sink       # (kept in step with it below: read once, it costs less)
        while not out.pending and self.phase < CLOSING:     # (CLOSED, too, is past CLOSING)
            req = self._req
            if self.phase == APP:
                if req._state != DONE and sink is None:
                    # The application is still answering: wait, and meanwhile look every
                    # io_timeout whether the client is still there (handle_idle_timeout).
                    # Reading stops once anything more has come (a pipelined request, the
                    # client's EOF): until then watching costs nothing, and stopping and
                    # starting again would cost two poller updates per request.
                    if conn.buffered_bytes or self.eof_received:
                        self.pause_reading()
                    self._since = self._last_io
                    self.rearm_timeout(self._since + self.server.io_timeout)
                    return
                if conn.our_state == CONN_DONE and conn.their_state == CONN_DONE:
                    self._next_cycle()
                    if not conn.buffered_bytes and not self.eof_received:
                        # Nothing pipelined: wait for the next request (next_event would
                        # only say NEED_DATA).
                        if not self.reading:
                            self.resume_reading()
                        return
                    self.phase = HEAD
                    self._since = self._last_io
                    self._pipelined += 1
                    if self._pipelined >= _PIPELINE_BURST:
                        # Fairness: others get their turn before the rest of this pipeline.
                        self._pipelined = 0
                        self.pause_reading()
                        self.server._reactor.call_soon(self._resume_pipeline)
                        return
                    continue
            try:
                event = next_event()
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            t = type(event)
            if t is Request:
                req = self._req = HTTPRequest(self, event, self.addr)
                if self.server.protocol == "HTTP/1.0":
                    req._close = True           # an HTTP/1.0 server closes after each response
                self._body = None
                self.phase = BODY
                body_sink = self.server.body_sink
                if body_sink is not None:
                    sink = self._start_sink(body_sink, req)
            elif t is Data:
                body = self._body
                if sink is not None:
                    sink.write(event.data)
                elif body is None:
                    waiting = not self._admit_body(req)
                    if self._body is None:
                        self._body = event.data
                    if waiting:
                        return          # reading stays paused until the body has room
                elif body is not _DISCARD:
                    if type(body) is bytes:
                        # A bytearray, not a list of pieces: a body of many tiny chunks
                        # costs its length, not a bytes object per chunk.
                        body = self._body = bytearray(body)
                    body += event.data
            elif t is EndOfMessage:
                if sink is not None:
                    self._sink = None
                    sink.end()
                    sink = None
                    if self.phase == BODY:
                        self._dispatch(req)
                elif self.phase == BODY:
                    body = self._body
                    if body is not None:            # (never None while room is held)
                        if body is not _DISCARD:
                            req.body = body if type(body) is bytes else bytes(body)
                        self._body = None
                        if self._room_held:
                            self._release_room()
                    self._dispatch(req)
            elif event is NEED_DATA:
                self._need_data()
                return
            elif event is PAUSED:
                if conn.our_state != CONN_DONE:
                    self._close_when_flushed()  # we must close (MUST_CLOSE)
                    return
                self._next_cycle()
            else:                               # ConnectionClosed
                self._close_when_flushed()
                return

    def _resume_pipeline(self):
        """Go on with the pipelined requests that waited for other connections' turn."""
        if self.connected:
            self._process()

    def _next_cycle(self):
        """Both sides are done with a request: wait for the next one."""
        self.conn.start_next_cycle()
        self._req = None
        self.phase = WAIT
        self._since = now = self._last_io
        self.rearm_timeout(now + self.server.keepalive_timeout)

    def _need_data(self):
        """The Connection needs more input: arm the phase's timeout and read on (unless the
        body waits for room, or the client waits for 100 Continue and gets it first)."""
        phase = self.phase
        server = self.server
        if phase == WAIT:
            pass                                    # (its timeout was armed on entering)
        elif phase == HEAD:
            self.rearm_timeout(self._since + server.head_timeout)
        elif phase == BODY:
            self.rearm_timeout(self._last_io + server.io_timeout)
            if self.conn.they_are_waiting_for_100_continue:
                if self._sink is not None:
                    # The handler gets the request once its body is in: the client must send it.
                    if server.protocol != "HTTP/1.0":
                        self._output().write(self.conn.send(_CONTINUE))
                elif not self._admit_body(self._req):
                    return              # 100 Continue once the body has room
                if self._body is _DISCARD:
                    # Answer now; the client may or may not send the body, so close after.
                    self._req._close = True
                    self._dispatch(self._req)
                    if self.phase >= CLOSING or not self.connected:
                        return
                else:
                    self._body = b""    # kept from here: an empty chunked body has no Data
                    if server.protocol != "HTTP/1.0":   # (HTTP/1.0 has no 1xx responses)
                        self._output().write(self.conn.send(_CONTINUE))
        elif phase == ROOM:
            return                      # reading stays paused until the body has room
        elif phase == APP:                          # the body streams to the handler
            self.rearm_timeout(self._last_io + server.io_timeout)
        if not self.reading:
            self.resume_reading()

    def _admit_body(self, req):
        """Decide where the body of ``req`` goes, before any of it is kept.  One the application
        does not read is dropped as it arrives (``_body`` becomes _DISCARD); one it reads is kept
        once the server's BodyBudget has room for all of it: False while it waits for that room
        (phase ROOM, reading paused; ``room_granted`` carries on)."""
        if self._room_held:
            return True
        if self.phase == ROOM:
            return False
        will_read_body = getattr(self.app, "will_read_body", None)
        if will_read_body is not None and not will_read_body(req):
            self._body = _DISCARD
            return True
        length = req.headers.get("content-length")     # checked by the Connection already
        size = self.server.max_body if length is None else int(length.split(",", 1)[0])
        if self.server.body_budget.reserve(self, size):
            self._room_held = True
            return True
        self.phase = ROOM
        self._since = now = self._clock()
        self.pause_reading()
        self.rearm_timeout(now + self.server.io_timeout)
        return False

    def _start_sink(self, body_sink, req):
        """Ask the handler whether it takes the body of ``req`` as it arrives (see the module
        docstring); if it does with ``early``, hand it the request now."""
        sink = body_sink(req)
        if sink is None:
            return None
        req.body_sink = self._sink = sink
        req._on_close = [sink.abort]        # (a no-op once the body is complete)
        if sink.early:
            if self.conn.they_are_waiting_for_100_continue:
                # Until it gets 100 Continue the client may or may not send the body: a response
                # before that ends the connection (send_continue takes this back).
                req._close = True
            self._dispatch(req)
        return self._sink       # (None if the dispatch already ended the request)

    def send_continue(self, req):
        """Tell a client waiting with ``Expect: 100-continue`` to send the body of ``req``."""
        if (self.connected and req is self._req and req._state == NOT_STARTED
                and self._sink is not None and self.conn.they_are_waiting_for_100_continue
                and self.server.protocol != "HTTP/1.0"):
            req._close = False
            self._output().write(self.conn.send(_CONTINUE))

    def when_closed(self, req, callback):
        """Call ``callback()`` if the connection closes while ``req`` is its request (at once
        if it has closed, or moved on); it must not write.  The callbacks are the request's:
        they go with it when the next request begins."""
        if not self.connected or req is not self._req:
            callback()
        elif req._on_close is None:
            req._on_close = [callback]
        else:
            req._on_close.append(callback)

    def room_granted(self):
        """The BodyBudget granted the room this channel waited for: read on (from the reactor,
        as this is called from whichever channel gave room back)."""
        self._room_held = True
        self.phase = BODY
        if self._body is None:
            self._body = b""        # kept from here (see the EndOfMessage case of _run)
        self._last_io = self._clock()       # the wait was ours, not the client's
        self.server._reactor.call_soon(self._process)

    def room_taken_back(self):
        """The BodyBudget took back this channel's room (the body took too long while others
        waited): 408."""
        req = self._req
        self._refuse(408, "The request body took too long.", req.request_line if req else "-")

    def _release_room(self):
        self._room_held = False
        self.server.body_budget.release(self)

    def _dispatch(self, req):
        self.phase = APP
        try:
            self.app.handle(req)
        except Exception:
            self._app_failed(req)

    def _app_failed(self, req):
        log.error("error in %r while answering %s", self.app, log_escape(req.request_line),
                  exc_info=True)
        if not self.connected:
            return
        if req._state == NOT_STARTED and self.conn.our_state == SEND_RESPONSE:
            req._close = True
            self.send_error(req, 500)
        else:
            req._state = DONE
            self.close()    # the response is cut short: closing is the only honest signal

    def _protocol_error(self, exc):
        conn = self.conn
        if conn.our_state in (IDLE, SEND_RESPONSE):
            req = self._req
            if req is not None:
                request_line = req.request_line
            elif exc.request_line is not None:      # a head read whole, then refused
                request_line = exc.request_line
            else:
                line = conn.trailing_data[0][:1024].split(b"\n", 1)[0].rstrip(b"\r")
                request_line = line.decode("latin-1")
            self._refuse(exc.error_status_hint, str(exc), request_line)
        else:
            self._drop_body()
            self._close_when_flushed()

    def _refuse(self, status, detail, request_line):
        """Answer the request being read with ``status`` (it is not read on), then close."""
        self._drop_body()
        body = error_page(status, reason_for(status), detail)
        resp = self.server.response_head(status, _HTML_FIELDS, CLOSE)
        self._output().write(self.conn.send_head_and_body(resp, body))
        if access_log.isEnabledFor(_INFO):
            self._log_access(request_line, status, len(body))
        self._close_when_flushed()

    def _drop_body(self):
        """Let go of the body being received, and of its room in the server's BodyBudget."""
        self._body = None
        sink = self._sink
        if sink is not None:
            self._sink = None
            sink.abort()
        if self._room_held:
            self._release_room()
        elif self.phase == ROOM:
            self.server.body_budget.release(self)

    # ------------------------------------------------------------ responses
    def _variant(self, req):
        if req._close or not self.conn.keep_alive:
            return CLOSE
        if req.version == "1.0":
            return KEEP10
        return KEEP

    def respond(self, req, status, headers, body):
        """Send a whole response for ``req`` (see :meth:`HTTPRequest.respond`)."""
        if not self.connected:
            req._state = DONE
            return
        if status in _NO_BODY:
            body = b""
        elif type(body) is not bytes:
            body = bytes(body)
        if req._close or not self.conn.keep_alive:
            variant = CLOSE
        else:
            variant = KEEP10 if req.version == "1.0" else KEEP
        resp = self.server.response_head(status, headers, variant)
        req.status = status
        req._state = DONE
        out = self._out
        if (len(body) >= _GATHER_MIN and not out.pending and req.method != "HEAD"
                and not has_field(headers, "transfer-encoding")):
            # A large body goes out with the head in one sendmsg, never copied behind it
            # (the head frames it by Content-Length, so the body bytes go out as they are).
            head = self.conn.send_head_for_body(resp, len(body))
            req.sent_bytes = len(body)
            out.writev((head, body))
        else:
            data = self.conn.send_head_and_body(resp, body)
            if req.method != "HEAD":
                req.sent_bytes = len(body)
            out.write(data)
        if self.connected:              # (the client may have gone during the send)
            self._response_done(req)

    def send_error(self, req, status, detail="", headers=None):
        """Answer ``req`` with ``status`` and a small HTML page."""
        body = error_page(status, reason_for(status), detail)
        fields = _HTML_FIELDS if not headers else _HTML_FIELDS + tuple(headers)
        self.respond(req, status, fields, body)

    def start_response(self, req, status, headers):
        """Send the head of a streamed response."""
        if not self.connected:
            req._state = STREAMING
            return
        variant = self._variant(req)
        if variant == KEEP10 and not has_field(headers, "content-length"):
            variant = CLOSE                     # HTTP/1.0: the body ends when we close
        resp = self.server.response_head(status, headers, variant)
        req.status = status
        req._state = STREAMING
        self._output().write(self.conn.send(resp))

    def write_body(self, req, data):
        """Send a piece of a streamed body (nothing for HEAD, 204 and 304)."""
        if not self.connected or req.method == "HEAD" or req.status in _NO_BODY:
            return
        out = self.conn.send(Data(data))
        req.sent_bytes += len(data)
        self._output().write(out)

    def finish_body(self, req):
        """End a streamed response."""
        req._state = DONE
        if not self.connected:
            return
        out = self.conn.send(EndOfMessage())
        if out:
            self._output().write(out)
        if self.connected:
            self._response_done(req)

    def send_file_span(self, req, status, headers, fd, offset, count):
        """Send a response whose body is ``count`` bytes of the open file ``fd`` from ``offset``
        (see :meth:`HTTPRequest.send_file_span`)."""
        if not self.connected:
            req._state = DONE
            return
        resp = self.server.response_head(status, headers, self._variant(req))
        req.status = status
        req._state = DONE
        if req.method == "HEAD" or count == 0:
            self._output().write(self.conn.send_head_and_body(resp, b""))
        else:
            head = self.conn.send_head_for_body(resp, count)
            req.sent_bytes = count
            try:
                self._output().write_span(fd, offset, count, head)
            except OSError as exc:          # no descriptor left for the rest of the file
                return self.abort(req, "cannot finish the response: %s" % (exc.strerror or exc))
        if self.connected:
            self._response_done(req)

    def abort(self, req, reason):
        """End the connection at once (see :meth:`HTTPRequest.abort`)."""
        log.error("%s; closing the connection to %s", log_escape(reason), self.addr[0])
        req._state = DONE
        self.close()

    def when_drained(self, callback):
        """Call ``callback()`` once the output queue is empty."""
        out = self._out
        if out is None or not out.pending:      # (None once closed)
            self.server._reactor.call_soon(callback)
        elif self._drain_callbacks is None:
            self._drain_callbacks = [callback]
        else:
            self._drain_callbacks.append(callback)

    def _response_done(self, req):
        if access_log.isEnabledFor(_INFO):
            self._log_access(req.request_line, req.status, req.sent_bytes)
        if self.conn.our_state != CONN_DONE:
            self._close_when_flushed()          # MUST_CLOSE: this response ends the connection
        elif not self._in_process:
            self._process()                     # answered later: go on with buffered requests

    def _log_access(self, request_line, status, size):
        """One access-log line (the callers ask first whether it is wanted: a request line
        is formatted only for it)."""
        access_log.info("%s", common_log_line(self.addr[0], None, None, time.time(),
                                              request_line, status, size))

    # --------------------------------------------------------------- output
    def handle_write(self):
        self._last_io = self._clock()
        self._out.flush()

    def pause_writing(self):
        """Output waits for the client (the queue's high water is 0): read nothing more until
        it has gone to the kernel, and give the client ``io_timeout`` to make progress."""
        self.pause_reading()
        self.rearm_timeout(self._last_io + self.server.io_timeout)

    def resume_writing(self):
        """Everything queued went to the kernel: run what waited for that."""
        callbacks = self._drain_callbacks
        if callbacks is not None:
            self._drain_callbacks = None
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.error("error in when_drained callback %r", callback, exc_info=True)
                    self.close()
                    return
            if self._out.pending or not self.connected:
                return
        if self.phase == CLOSING:
            self._linger()
            return
        if self.phase == WAIT:
            self._since = now = self._last_io   # the keep-alive wait starts now
            self.rearm_timeout(now + self.server.keepalive_timeout)
        self._process()

    # ------------------------------------------------------------- closing
    def _close_when_flushed(self):
        if self.phase >= CLOSING:
            return
        self.phase = CLOSING
        if self._out.pending:
            self.pause_reading()
        else:
            self._linger()              # which closes, or reads on to discard input

    def _linger(self):
        """Shut down our sending side, then discard input until the client closes; close at
        once (no shutdown needed: the FIN follows the response) when nothing more can come."""
        if self.eof_received or not self.connected or self._client_is_done():
            self.close()
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.phase = LINGER
        self._since = now = self._clock()
        self.resume_reading()
        self.rearm_timeout(now + self.server.linger_timeout)

    def _client_is_done(self):
        """True when the client said this request is its last (``Connection: close``, or
        HTTP/1.0 without keep-alive), all of it was read and nothing else is buffered: nothing
        more may arrive, so closing cannot reset the response away (lingering is for the
        other cases)."""
        conn = self.conn
        return (conn.peer_keep_alive is False and self._req is not None
                and conn.their_state in (CONN_DONE, MUST_CLOSE) and not conn.buffered_bytes)

    def handle_close(self):
        self.close()

    def shed(self, status, detail):
        """Close now, to make room for other connections (see ``HTTPServer.shed_connections``
        and ``head_bytes_changed``): a partial request head is answered ``status`` as far as
        the kernel takes it, without lingering, so nothing of this connection is kept."""
        if self.phase == HEAD and self.conn.buffered_bytes and not self._out.pending:
            body = error_page(status, reason_for(status), detail)
            resp = self.server.response_head(status, _HTML_FIELDS, CLOSE)
            self._out.write(self.conn.send_head_and_body(resp, body))
            if access_log.isEnabledFor(_INFO):
                self._log_access("-", status, len(body))
        if self.connected:
            self.close()

    def close(self):
        req = self._req
        self._drain_callbacks = None
        if self._head_held:
            self.server.head_bytes_changed(self, 0)
        if self._room_held or self.phase == ROOM:
            self._drop_body()       # (a body sink is aborted by its request's _on_close)
        self.server.channels.discard(self)
        DispatcherWithSend.close(self)
        self.phase = CLOSED
        self._req = None            # (the request refers back to the channel)
        callbacks = req._on_close if req is not None else None
        if callbacks is not None:
            req._on_close = None
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.error("error in when_closed callback %r", callback, exc_info=True)

    # ------------------------------------------------------------- timeouts
    def timeout_due(self):
        """When the current phase times out (see the module docstring): the core's channel
        timer asks this when it fires."""
        server = self.server
        if self._out.pending or self._sink is not None:
            return self._last_io + server.io_timeout      # a transfer without progress
        name, moves = _TIMEOUTS[self.phase]
        return (self._last_io if moves else self._since) + getattr(server, name)

    def handle_idle_timeout(self):
        phase = self.phase
        if self._out.pending or phase >= CLOSING:
            self.close()                    # a stalled download, or a close that never finished
        elif self._sink is not None:        # (APP: the handler got the request early)
            if self._req._state == NOT_STARTED:
                self._refuse(408, "The request body took too long.", self._req.request_line)
            else:
                self.close()
        elif phase == APP:
            if self._client_gone():
                self.close()
            else:
                self._since = now = self._clock()
                self.rearm_timeout(now + self.server.io_timeout)
        elif phase == ROOM:
            self._refuse(503, "The server is busy receiving other request bodies; try again later.",
                         self._req.request_line)
        elif phase == BODY:
            self._refuse(408, "The request body took too long.", self._req.request_line)
        elif phase == HEAD and self.conn.buffered_bytes:
            self._refuse(408, "The request head took too long.", "-")
        else:
            self.close()                    # idle between requests, or never said anything

    def _client_gone(self):
        """Whether the client closed or reset the connection, looked at without reading (the
        application is at work, reading is paused): a client that shut down its sending side
        and waited a whole io_timeout for its answer counts as gone, as with nginx."""
        try:
            return not self.socket.recv(1, socket.MSG_PEEK | _DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True


class TLSHTTPChannel(HTTPChannel):
    """An HTTPS connection: :class:`HTTPChannel` over the TLS layer of :mod:`eventloop.tls`
    (files are read and encrypted a chunk at a time: no ``sendfile``).  The handshake belongs
    to the first request's HEAD phase: the head timeout, counted from the accept, bounds it,
    and a client that never sends its ClientHello costs a descriptor and a timer until then."""

    _PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          b"Content-Length: 60\r\nConnection: close\r\n\r\n"
                          b"This port speaks HTTPS: ask for https:// instead of http://\n")

    def handle_tls_error(self, exc, handshake):
        """One log line; a plain HTTP request on the TLS port also gets a plain 400 saying so
        (as nginx does), sent as the kernel takes it, once."""
        HTTPChannel.handle_tls_error(self, exc, handshake)
        if handshake and getattr(exc, "reason", None) == "HTTP_REQUEST":
            try:
                self.socket.raw.send(self._PLAIN_HTTP_ANSWER, _DONTWAIT)
            except OSError:
                pass

    def _read_at_once(self, now):
        try:
            self.start_tls(self.server.tls_context, server_side=True)
        except Exception:
            self.handle_error()
            return
        if self.connected:
            self.rearm_timeout(now + self.server.head_timeout)
