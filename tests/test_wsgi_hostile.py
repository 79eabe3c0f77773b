"""servers.wsgi against clients and applications that misbehave, over real sockets.

* A client that stops reading an endless streamed body: the application blocks in its thread
  (or, with ``--threads 0``, is no longer pulled) once ``high_water`` bytes wait, so the server
  holds at most that; when the client goes, the iterable is closed.
* A client that disconnects while the application runs, or in the middle of its upload: the
  iterable is closed, ``wsgi.input`` raises ClientDisconnected.
* An application that never returns: the other threads serve everyone else; shutdown gives it
  ``grace`` seconds and leaves it (daemon threads), reporting it.
* Pipelined requests with bodies the application does not read: answered in order.
* A 2 GiB chunked upload, sent lazily, refused by ``max_body`` with 413: the application is
  never called and the server reads little more than ``max_body``.
"""
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from launchers import ROOT, read_until, wait_for
from wsgi_apps import HELLO, Recorder, hello, serve
from test_wsgi_server import Reader, connect, get

TIMEOUT = 10.0
KIB, MIB = 1 << 10, 1 << 20


def wait_until_stable(read, window=0.3, timeout=TIMEOUT):
    """Wait until ``read()`` stops changing for ``window`` seconds (bounded): its value."""
    deadline = time.monotonic() + timeout
    last = read()
    while True:
        time.sleep(window)
        now = read()
        if now == last:
            return now
        assert time.monotonic() < deadline, "still changing: %r" % now
        last = now


class Endless:
    """An application streaming 64 KiB blocks until it is closed; counts what it produced."""

    block = b"z" * (64 * KIB)

    def __init__(self):
        self.produced = 0
        self.closed = threading.Event()

    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return self._body()

    def _body(self):
        try:
            while True:
                self.produced += len(self.block)
                yield self.block
        finally:
            self.closed.set()


@pytest.mark.parametrize("threads", [4, 0])
def test_a_client_that_stops_reading_costs_at_most_the_high_water_mark(threads):
    app = Endless()
    high = 256 * KIB
    with serve(app, threads=threads, high_water=high) as server:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
        s.settimeout(TIMEOUT)
        s.connect(server.server_address[:2])
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        produced = wait_until_stable(lambda: app.produced)
        channel, = server.channels
        sndbuf = channel.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        rcvbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # What the kernel holds (both buffers), the mark, and the blocks in hand.
        assert produced <= sndbuf + rcvbuf + high + 3 * len(app.block), produced
        assert channel.queued_bytes <= high + 2 * len(app.block)
        # Reading on makes it go on.
        got = 0
        while got < 2 * produced:
            got += len(s.recv(1 << 20))
        wait_for(lambda: app.produced > produced)
        s.close()
        assert app.closed.wait(TIMEOUT)


@pytest.mark.parametrize("threads", [4, 0])
def test_a_client_that_disconnects_while_the_app_runs_gets_its_iterable_closed(threads):
    release = threading.Event()

    def slow(environ, start_response):
        if threads:
            assert release.wait(TIMEOUT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"late"] * 1000)

    rec = Recorder(slow)
    with serve(rec, threads=threads, io_timeout=0.3) as server:
        s = connect(server)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rec.called.wait(TIMEOUT)
        s.close()
        if threads:
            wait_for(lambda: not server.channels)       # the server saw the client go
            release.set()
        assert rec.closed_event.wait(TIMEOUT)


def test_a_client_that_disconnects_mid_upload_makes_wsgi_input_raise():
    seen = []

    def reader(environ, start_response):
        try:
            environ["wsgi.input"].read(10000)
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"no"]

    rec = Recorder(reader)
    with serve(rec) as server:
        s = connect(server)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"x" * 100)
        assert rec.called.wait(TIMEOUT)
        s.close()
        wait_for(lambda: seen)
        assert seen == ["ClientDisconnected"]


def test_an_app_that_never_returns_does_not_stop_the_others_and_is_left_at_shutdown():
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/stuck":
            release.wait(60)
        return hello(environ, start_response)

    try:
        with serve(app, threads=2) as server:
            stuck = connect(server)
            stuck.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(20):
                assert get(server, "/")[2] == HELLO
            started = time.monotonic()
            assert server.shutdown(grace=0.2) == 1          # one thread still busy, left
            assert time.monotonic() - started < 2.0
            stuck.close()
    finally:
        release.set()


def test_the_cli_exits_at_sigint_after_the_graceful_timeout_even_with_a_stuck_app():
    proc = subprocess.Popen(
        [sys.executable, "-m", "servers.wsgi", "tests.wsgi_apps:stuck", "0",
         "-b", "127.0.0.1", "--graceful-timeout", "0.5"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = int(read_until(proc.stderr, rb"port (\d+)").group(1))
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until(proc.stderr, rb"stuck: called")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=TIMEOUT)[1]
        assert proc.returncode == 0
        assert time.monotonic() - started < 5.0
        assert b"still busy" in err and b"Traceback" not in err
        assert err.rstrip().endswith(b"Keyboard interrupt received, exiting.")
        s.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_pipelined_requests_with_bodies_the_app_does_not_read_answer_in_order():
    def path(environ, start_response):
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    with serve(path) as server:
        s = connect(server)
        wire = b"".join(b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                        % (i, 1000 * i, b"b" * (1000 * i)) for i in range(10))
        wire += b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
        s.sendall(wire)
        r = Reader(s)
        for i in range(10):
            assert r.response()[2] == b"/%d" % i
        assert r.response()[2] == b"/c"
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.response()[2] == b"/next"


def test_a_2_gib_chunked_upload_is_refused_by_max_body_and_the_app_is_never_called():
    rec = Recorder(hello)
    limit = 1 * MIB
    with serve(rec, max_body=limit) as server:
        s = connect(server)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (64 * KIB, b"u" * (64 * KIB))
        sent = 0
        answered = False
        while sent < 2 << 30:                       # 2 GiB, made as it goes
            if select.select([s], [], [], 0)[0]:
                answered = True
                break
            try:
                sent += s.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
        assert answered
        # The server read about max_body before refusing: what is in flight is the sockets'.
        assert sent < limit + 16 * MIB, sent
        try:
            status = Reader(s).response()[0]
        except (EOFError, ConnectionResetError):
            status = None                           # (a reset may overtake the 413)
        assert status in (413, None)
        assert rec.calls == 0


def test_when_closed_callbacks_end_with_their_request():
    """What a handler registers for the case the client leaves (``when_closed``) ends with its
    request: a long keep-alive connection keeps none of it, and a later close calls none."""
    from eventloop import Reactor
    from launchers import reactor_thread
    from servers.http import Handler, HTTPServer

    called = []

    class Registers(Handler):
        def do_GET(self, request):
            request.when_closed(lambda: called.append(request.path))
            request.respond(200, [("Content-Type", "text/plain")], b"ok")

    reactor = Reactor()
    server = HTTPServer(("127.0.0.1", 0), Registers(), reactor=reactor)
    with reactor_thread(reactor):
        s = connect(server)
        r = Reader(s)
        for i in range(30):
            s.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert r.response()[2] == b"ok"
        s.close()
        wait_for(lambda: not server.channels)
    assert set(called) <= {"/29"}


def test_a_signal_another_thread_takes_still_wakes_the_loop_through_its_wakeup_fd():
    """With application threads a signal may land on one of them; Python then runs its handler
    in the main thread only when that thread runs again.  The reactor's signal_wakeup_fd(),
    given to signal.set_wakeup_fd() (as servers.wsgi does), makes the poll return."""
    from eventloop import Reactor

    reactor = Reactor()
    handled = []
    watchdog_fired = []

    def handler(signum, frame):
        handled.append(signum)
        reactor.stop()

    go = threading.Event()

    def send_from_another_thread():
        assert go.wait(TIMEOUT)
        os.kill(os.getpid(), signal.SIGUSR1)    # the main thread blocks it: this one takes it

    def watchdog():
        watchdog_fired.append(True)
        reactor.call_soon_threadsafe(reactor.stop)

    # (Threads inherit the mask of the thread that starts them: the sender starts first.)
    sender = threading.Thread(target=send_from_another_thread)
    sender.start()
    old_handler = signal.signal(signal.SIGUSR1, handler)
    old_fd = signal.set_wakeup_fd(reactor.signal_wakeup_fd())
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    dog = threading.Timer(TIMEOUT, watchdog)
    try:
        dog.start()
        reactor.call_soon(go.set)
        reactor.run()
        sender.join()
    finally:
        dog.cancel()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, old_handler)
        reactor.close()
    assert handled == [signal.SIGUSR1] and not watchdog_fired
