"""Backends for contract suites: one reactor per backend (epoll, poll, select, selectors and the
in-memory harness) with the sockets a test needs, and the ``env`` fixture (in conftest.py) that runs a test on each.

Real backends run over socket.socketpair() and 127.0.0.1 TCP with the real clock (timing bounds
are generous); the memory backend runs over MemorySocket with a VirtualClock, so its timing
assertions are exact.
"""
import os
import socket
import time

from eventloop import Reactor
from eventloop.testing import MemorySocket, VirtualClock, memory_reactor, memory_socketpair, pump

BACKENDS = ["epoll", "poll", "select", "selectors", "memory"]
#: Passes allowed for waits on timers elsewhere than in the test about spinning near a deadline.
SPIN_TOLERANT = 10_000
REAL_ONLY = "the memory world is single-threaded: nothing can wake a blocked pass"


class Env:
    """A reactor on one backend plus the sockets it needs, closed afterwards."""

    def __init__(self, backend):
        self.backend = backend
        self.memory = backend == "memory"
        if self.memory:
            self.clock = VirtualClock()
            self.reactor = memory_reactor(self.clock)
        else:
            self.clock = time.monotonic
            self.reactor = Reactor(backend)
        self.socks = []

    def socketpair(self, reuse_fd=None):
        """A connected non-blocking pair; ``reuse_fd`` makes the first end take that (free)
        descriptor number."""
        if self.memory:
            pair = memory_socketpair(filenos=(reuse_fd, None))
        else:
            pair = socket.socketpair()
            if reuse_fd == pair[1].fileno():
                pair = (pair[1], pair[0])       # the OS gave the number to the other end
            if reuse_fd is not None and reuse_fd != pair[0].fileno():
                os.dup2(pair[0].fileno(), reuse_fd)
                moved = socket.socket(fileno=reuse_fd)
                pair[0].close()
                pair = (moved, pair[1])
        for s in pair:
            s.setblocking(False)
        self.socks.extend(pair)
        return pair

    def listener(self):
        """A listening socket and the address clients connect to."""
        if self.memory:
            sock = MemorySocket()
            sock.bind(("memory", "contract-%d" % sock.fileno()))
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        self.socks.append(sock)
        return sock, sock.getsockname()

    def client_socket(self):
        sock = MemorySocket() if self.memory else socket.socket(socket.AF_INET,
                                                                 socket.SOCK_STREAM)
        sock.setblocking(False)
        self.socks.append(sock)
        return sock

    def pump(self, until, max_passes=50):
        return pump(self.reactor, until, max_passes=max_passes, timeout=2.0)

    def idle_passes(self, n):
        """``n`` passes that do not wait (on memory: do not jump the clock either)."""
        for _ in range(n):
            self.reactor.run_once(0)

    def delay(self, seconds):
        """``seconds`` on the virtual clock; a hundredth of that on the real one."""
        return seconds if self.memory else seconds / 100.0

    def close(self):
        for chan in list(self.reactor.map.values()):
            chan.close()
        for s in self.socks:
            s.close()
        self.reactor.close()
