"""Starting what the tests talk to, with every wait bounded and everything stopped on leaving.

* :func:`reactor_thread` runs a reactor in a thread (the servers of in-process tests);
* :func:`wait_for` polls a condition with a deadline;
* :func:`server_process` runs one of the project's servers as ``python -m servers.X 0 -b
  127.0.0.1 ...`` and yields the port it prints in its banner; on leaving it sends SIGINT and
  checks that the server exited without a traceback.
"""
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 10.0

__all__ = ["ROOT", "TIMEOUT", "reactor_thread", "server_process", "read_until", "wait_for"]


def wait_for(condition, timeout=TIMEOUT, step=0.01):
    """Poll ``condition()`` every ``step`` seconds until it is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for %r" % condition
        time.sleep(step)


@contextlib.contextmanager
def reactor_thread(reactor, timeout=TIMEOUT):
    """Run ``reactor`` in a thread; on leaving, stop it, close its channels and close it."""
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()
    try:
        yield reactor
    finally:
        reactor.call_soon_threadsafe(reactor.stop)
        thread.join(timeout)
        assert not thread.is_alive(), "the reactor did not stop"
        for channel in list(reactor.map.values()):
            channel.close()
        reactor.close()


def read_until(stream, pattern, timeout=TIMEOUT):
    """Read ``stream`` (a pipe) until the bytes ``pattern`` matches what was read: the match.
    Fails if the writer exits first or ``timeout`` seconds pass."""
    log = b""
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(pattern, log)
        if match:
            return match
        left = deadline - time.monotonic()
        assert left > 0 and select.select([stream], [], [], left)[0], log
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, "the process exited: %r" % log
        log += chunk


@contextlib.contextmanager
def server_process(module, *args, banner=rb"listening on 127\.0\.0\.1:(\d+)", timeout=TIMEOUT,
                   first=()):
    """``python -m module *first 0 -b 127.0.0.1 *args``: yields the port its ``banner`` names."""
    proc = subprocess.Popen([sys.executable, "-m", module, *first, "0", "-b", "127.0.0.1", *args],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        yield int(read_until(proc.stderr, banner, timeout).group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            err = proc.communicate(timeout=timeout)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1]
    assert b"Traceback" not in err
