"""``python -m clients.http`` on a terminal (a pty): the progress meter and bar appear for a
transfer that lasts over a second, one line per URL, never with ``-s`` or when standard error
is not a terminal; binary data is not written to a terminal (exit 23, as curl) unless
``-o -`` says so.  The slow transfers trickle from servers.http on reactor timers, so they
take a known time (1.2 s) without anything sleeping."""
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time

import pytest

from clients.http.progress import METER_HEAD
from curl_oracle import CURL, ROOT
from eventloop import Reactor
from servers.http import Handler, HTTPServer

PIECES = 12                 # a slow body: 12 pieces, 0.1 s apart
PIECE = b"x" * 1000
BINARY = bytes(range(256)) * 4


class Trickle(Handler):
    """/slow (Content-Length known), /slow-chunked (not), /quick, /binary."""

    def __init__(self, reactor):
        self.reactor = reactor

    def do_GET(self, request):
        if request.path == "/quick":
            return request.respond(200, [("Content-Type", "text/plain")], b"quick\n")
        if request.path == "/binary":
            return request.respond(200, [("Content-Type", "application/octet-stream")], BINARY)
        headers = [("Content-Type", "application/octet-stream")]
        if request.path == "/slow":
            headers.append(("Content-Length", str(PIECES * len(PIECE))))
        request.start_response(200, headers)
        self._next(request, PIECES)

    def _next(self, request, left):
        if request.closed:
            return
        if not left:
            return request.finish()
        request.write(PIECE)
        self.reactor.call_later(0.1, self._next, request, left - 1)


@pytest.fixture(scope="module")
def slow():
    reactor = Reactor()
    server = HTTPServer(("127.0.0.1", 0), Trickle(reactor), reactor=reactor)
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield lambda path: "http://127.0.0.1:%d%s" % (port, path)
    reactor.call_soon_threadsafe(reactor.stop)
    thread.join(5)
    server.close()
    reactor.close()


def _read_all(fd, proc, deadline):
    """Everything written to the pty master ``fd`` until ``proc`` ends and the pty is drained."""
    chunks = []
    while time.monotonic() < deadline:
        ready = select.select([fd], [], [], 0.1)[0]
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:             # EIO: the slave side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode("utf-8", "replace")


def run_many(*commands, terminal="stderr", program=None):
    """Run the commands at once, each with ``terminal`` (stderr or stdout) on a pty of its own;
    returns ``[(exit status, what the pty got, the other stream)]``."""
    started = []
    env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="100")
    for args in commands:
        master, slave = pty.openpty()
        argv = (program or [sys.executable, "-m", "clients.http"]) + list(args)
        streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, terminal: slave}
        if terminal == "none":
            streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, **streams)
        os.close(slave)
        started.append((proc, master))
    deadline = time.monotonic() + 30
    results = []
    for proc, master in started:
        seen = _read_all(master, proc, deadline)
        os.close(master)
        out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        other = out if terminal == "stderr" else err
        if terminal == "none":
            seen, other = err.decode("utf-8", "replace"), out
        results.append((proc.returncode, seen, other))
    return results


def _meter_lines(screen):
    """The meter lines of the last redraw."""
    last = screen.rsplit("\x1b[J", 1)[-1]
    return [line for line in last.replace("\r", "").split("\n")
            if re.match(r"^ *\d+ +\S+ +\d+ ", line)]


def test_meter_and_bar_on_a_terminal(slow):
    started = time.monotonic()
    (code, meter, _), (bar_code, bar, _), (chunked_code, chunked, _) = run_many(
        ["-o", os.devnull, slow("/slow")], ["-#", "-o", os.devnull, slow("/slow")],
        ["-#", "-o", os.devnull, slow("/slow-chunked")])
    assert time.monotonic() - started < 20
    assert code == bar_code == chunked_code == 0
    assert meter.startswith(METER_HEAD.replace("\n", "\r\n"))
    assert _meter_lines(meter)[-1].startswith("100 12000  100 12000    0     0")
    assert "#" * 40 in bar and bar.rstrip().endswith("100.0%")
    assert "#=#=#" in chunked or "100.0%" in chunked


def test_one_line_per_url(slow):
    [(code, screen, out)] = run_many(["-o", os.devnull, "-o", os.devnull, slow("/slow"),
                                      slow("/slow-chunked")])
    assert code == 0
    lines = _meter_lines(screen)
    assert len(lines) == 2 and lines[0].startswith("100 12000") and " 12000 " in lines[1]


def test_never_with_silent_nor_without_a_terminal_nor_for_quick_transfers(slow):
    results = run_many(["-s", "-o", os.devnull, slow("/slow")],
                       ["--no-progress-meter", "-o", os.devnull, slow("/slow")],
                       ["-o", os.devnull, slow("/quick")])
    results += run_many(["-o", os.devnull, slow("/slow")], terminal="none")
    for code, screen, _ in results:
        assert (code, screen) == (0, "")


@pytest.mark.skipif(CURL is None, reason="curl is the oracle")
def test_binary_output_to_a_terminal_is_refused_as_curl_does(slow):
    ours, theirs = run_many([slow("/binary")], terminal="stdout"), run_many(
        ["-s", "-S", slow("/binary")], terminal="stdout", program=[CURL])
    (code, screen, err), (curl_code, curl_screen, _) = ours[0], theirs[0]
    assert code == curl_code == 23
    assert screen == curl_screen == ""
    assert b"Binary output can mess up your terminal" in err
    [(code, screen, err)] = run_many(["-o", "-", slow("/binary")], terminal="stdout")
    assert code == 0 and len(screen) > 500
    [(code, screen, err)] = run_many([slow("/quick")], terminal="stdout")
    assert (code, screen) == (0, "quick\r\n")
