"""Pre-forked workers: N processes serving one port, supervised by their parent.

Each worker runs its own reactor.  With SO_REUSEPORT (Linux, the BSDs) every worker binds
and listens on its own socket and the kernel spreads new connections across them; the parent
only holds the port, bound but not listening, so it receives none.  Elsewhere the parent
listens and the workers share the inherited socket.

The parent restarts a worker that dies (after a short pause if it died young, so a worker
that crashes at start-up cannot make the parent spin), and on SIGTERM or SIGINT stops them
all: SIGTERM first, SIGKILL for any still alive after ``grace`` seconds.
"""
import errno
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback

from eventloop import Reactor, set_reactor

from .server import bind_socket

__all__ = ["Prefork"]

log = logging.getLogger("servers.http")

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Prefork:
    """Run ``setup(sock, reactor)`` in each of ``workers`` child processes.

    ``setup`` builds the worker's server on the listening socket ``sock`` and the worker's
    fresh ``reactor``; the worker then runs the reactor until it is killed or its parent dies.
    ``address`` is ``(host, port)``; after :meth:`bind`, ``server_address`` has the real port.

    A worker that dies younger than ``young`` seconds is restarted after ``restart_pause``
    seconds; after ``max_young_deaths`` such deaths in a row the workers evidently cannot start,
    and :meth:`run` stops everything and returns 1.
    """

    young = 1.0
    restart_pause = 0.5
    max_young_deaths = 10

    def __init__(self, address, workers, setup, *, reuse_port=None, backlog=1024, grace=5.0):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.address = address
        self.workers = workers
        self.setup = setup
        self.reuse_port = hasattr(socket, "SO_REUSEPORT") if reuse_port is None else reuse_port
        self.backlog = backlog
        self.grace = grace
        self.sock = None
        self.server_address = None
        self.children = {}          # pid -> start time (monotonic)
        self._stopping = False
        self.stopped_by = None      # the signal that stopped run(), once one has

    def bind(self):
        """Bind the port (listening too unless SO_REUSEPORT is used); returns the address."""
        self.sock = bind_socket(self.address, reuse_port=self.reuse_port)
        if not self.reuse_port:
            self.sock.listen(self.backlog)
        self.server_address = self.sock.getsockname()
        return self.server_address

    # ----------------------------------------------------------------- child
    def _child(self, parent):
        """The body of a worker process of ``parent`` (the supervisor's pid, taken before the
        fork: asked for after it, it would already be init's if the parent died at once);
        never returns.  It says "started" once it is serving."""
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent handles Ctrl-C
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            if self.reuse_port:
                sock = bind_socket(self.server_address, reuse_port=True)
                sock.listen(self.backlog)
                self.sock.close()
            else:
                sock = self.sock
            reactor = Reactor()
            set_reactor(reactor)

            def check_parent():
                if os.getppid() != parent:
                    reactor.stop()          # orphaned: the supervisor is gone

            reactor.call_every(1.0, check_parent)
            self.setup(sock, reactor)
            log.info("worker %d started", os.getpid())
            reactor.run()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _spawn(self):
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # Blocked across the fork, a SIGTERM cannot reach the child while it still has the
        # parent's handlers: it waits until the child has its own.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._child(parent)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.children[pid] = time.monotonic()
        return pid

    # ---------------------------------------------------------------- parent
    def run(self):
        """Start the workers and supervise them until SIGTERM/SIGINT; returns the exit status
        (0, or 1 when workers keep dying at start-up)."""
        if self.sock is None:
            self.bind()
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        handlers = {}
        old_wakeup = signal.set_wakeup_fd(wfd)

        def stop(signum, frame):
            self._stopping = True
            self.stopped_by = signum

        try:
            handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda s, f: None)
            handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, stop)
            handlers[signal.SIGINT] = signal.signal(signal.SIGINT, stop)
            for _ in range(self.workers):
                self._spawn()
            pending = []                    # monotonic times at which to start a worker
            young_deaths = 0
            code = 0
            while not self._stopping:
                timeout = None
                if pending:
                    timeout = max(min(pending) - time.monotonic(), 0.0)
                self._wait(rfd, timeout)
                for pid, status in self._reap():
                    age = time.monotonic() - self.children.pop(pid)
                    young_deaths = young_deaths + 1 if age < self.young else 0
                    log.warning("worker %d %s; restarting it", pid, _describe(status))
                    pending.append(time.monotonic() + (self.restart_pause if age < self.young else 0.0))
                if young_deaths >= self.max_young_deaths:
                    log.error("%d workers in a row died at start-up; giving up", young_deaths)
                    code = 1
                    break
                if self._stopping:
                    break
                now = time.monotonic()
                due = [t for t in pending if t <= now]
                pending = [t for t in pending if t > now]
                for _ in due:
                    self._spawn()
            self._stop_all(rfd)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            os.close(rfd)
            os.close(wfd)
            self.sock.close()
        return code

    def _wait(self, rfd, timeout):
        try:
            select.select([rfd], [], [], timeout)
        except InterruptedError:
            pass
        try:
            while os.read(rfd, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _reap(self):
        """``(pid, status)`` of every child that has exited, without blocking."""
        done = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.children:
                done.append((pid, status))
        return done

    def _stop_all(self, rfd):
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.children:
            for pid, _ in self._reap():
                del self.children[pid]
            left = deadline - time.monotonic()
            if not self.children or left <= 0:
                break
            self._wait(rfd, min(left, 0.1))
        for pid in list(self.children):
            log.warning("worker %d did not stop in %gs; killing it", pid, self.grace)
            _kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            del self.children[pid]


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _describe(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return "was killed by %s" % name
    return "exited with status %d" % os.waitstatus_to_exitcode(status)
