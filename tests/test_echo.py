"""servers.echo: every byte back however the stream is cut, bounded memory when the client
does not read (back-pressure), the rest echoed after a half-close, whole datagrams over UDP,
no datagram loop from one forged datagram (the rule shared with servers.time), and 8 MiB
through socat byte-exact."""
import contextlib
import hashlib
import math
import os
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

import servers.echo as echo_module
import servers.time as time_module
from eventloop import Reactor
from eventloop.testing import (VirtualClock, chunkings, drive, memory_reactor, memory_socketpair,
                               pump)
from servers import ReplyLimiter, UDPServer
from servers.echo import EchoHandler, UDPEchoServer, start
from servers.time import UDPTimeServer

from launchers import reactor_thread, server_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 5.0
BOUND = EchoHandler.max_queued + 65536      # the most ever queued: the limit plus one read


# ------------------------------------------------------------- in memory
@given(st.data())
def test_echoes_every_byte_however_it_is_cut_then_closes(data):
    payload = data.draw(st.binary(max_size=300))
    chunks = data.draw(chunkings(payload))
    limit = data.draw(st.none() | st.integers(1, 64))
    t = drive(EchoHandler, chunks, send_limit=limit, buffer_size=128)
    assert t.sent == payload
    assert t.closed, "a half-closed client is closed once everything is echoed"


def test_back_pressure_in_memory():
    reactor = memory_reactor()
    ours, client = memory_socketpair(buffer_size=65536)
    handler = EchoHandler(ours, reactor.map)
    payload = os.urandom(4 << 20)
    sent = peak = passes = 0
    # The client writes all it can and reads nothing, until nobody can move.
    while True:
        try:
            n = client.send(payload[sent:sent + 65536])
        except BlockingIOError:
            n = 0
        sent += n
        reactor.run_once(math.inf)
        passes += 1
        peak = max(peak, handler.queued_bytes)
        if not n and reactor.poller.stalled:
            break
        assert passes < 1000
    assert not handler.reading, "the handler kept reading from a client that does not read"
    assert EchoHandler.max_queued < peak <= BOUND
    assert sent < len(payload)
    # Now the client reads: everything comes back, and the handler resumed on its own.
    echoed = bytearray()
    shut = False
    while True:
        assert passes < 10000
        if sent < len(payload):
            try:
                sent += client.send(payload[sent:sent + 65536])
            except BlockingIOError:
                pass
        elif not shut:
            client.shutdown(socket.SHUT_WR)
            shut = True
        reactor.run_once(math.inf)
        passes += 1
        peak = max(peak, handler.queued_bytes)
        try:
            data = client.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            break
        echoed += data
    assert echoed == payload and peak <= BOUND and ours.closed


# --------------------------------------------------------------- real sockets
class Recording(EchoHandler):
    """An EchoHandler that remembers its largest queue and whether it ever paused."""

    peak = 0
    paused = False

    def __init__(self, sock, map=None):
        # Small kernel buffers, so that 8 MiB cannot hide in them and the server must hold back.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        EchoHandler.__init__(self, sock, map)

    def handle_read(self):
        EchoHandler.handle_read(self)
        self.peak = max(self.peak, self.queued_bytes)
        self.paused = self.paused or not self.reading


running = reactor_thread          # (the name the tests below use)


@contextlib.contextmanager
def serving():
    reactor = Reactor()
    tcp, udp = start("127.0.0.1", 0, map=reactor.map)
    tcp.handler = Recording
    with running(reactor):
        yield reactor, tcp, udp


@pytest.fixture(scope="module")
def server():
    with serving() as running:
        yield running


def handlers(reactor):
    return [ch for ch in list(reactor.map.values()) if isinstance(ch, Recording)]


def test_back_pressure_over_tcp_8_mib(server):
    reactor, tcp, _ = server
    payload = os.urandom(8 << 20)
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        client.connect(("127.0.0.1", tcp.port))
        client.setblocking(False)
        sent = 0
        # Send without reading until the socket stays full for a while: the server stopped.
        while sent < len(payload) and select.select([], [client], [], 0.3)[1]:
            try:
                sent += client.send(payload[sent:sent + 65536])
            except BlockingIOError:
                pass
        [handler] = handlers(reactor)
        assert handler.paused, "the server kept reading from a client that does not read"
        assert handler.peak <= BOUND
        assert sent < len(payload), "8 MiB vanished into buffers: nothing was held back"
        # Now read everything (and send the rest): it all comes back, in order.
        echoed = bytearray()
        deadline = time.monotonic() + 4 * TIMEOUT
        while len(echoed) < len(payload):
            assert time.monotonic() < deadline, "echo stalled at %d bytes" % len(echoed)
            want_write = [client] if sent < len(payload) else []
            readable, writable, _ = select.select([client], want_write, [], TIMEOUT)
            if writable:
                try:
                    sent += client.send(payload[sent:sent + 65536])
                except BlockingIOError:
                    pass
            if readable:
                data = client.recv(1 << 20)
                assert data, "the server closed early"
                echoed += data
    assert echoed == payload
    assert handler.peak <= BOUND


@settings(max_examples=10)
@given(st.binary(max_size=200_000))
def test_half_close_gets_every_byte_then_eof(server, payload):
    _, tcp, _ = server
    with socket.create_connection(("127.0.0.1", tcp.port), timeout=TIMEOUT) as client:
        writer = threading.Thread(target=lambda: (client.sendall(payload),
                                                  client.shutdown(socket.SHUT_WR)))
        writer.start()
        echoed = bytearray()
        while True:
            data = client.recv(1 << 16)
            if not data:
                break
            echoed += data
        writer.join(TIMEOUT)
    assert echoed == payload


@pytest.mark.parametrize("size", [0, 1, 1472, 9000, 65507])
def test_udp_datagrams_come_back_whole(server, size):
    _, _, udp = server
    payload = os.urandom(size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(payload, ("127.0.0.1", udp.port))
        data, addr = client.recvfrom(65536)
    assert data == payload and addr == ("127.0.0.1", udp.port)


def test_tcp_and_udp_share_the_port(server):
    _, tcp, udp = server
    assert tcp.port == udp.port != 0


# -------------------------------------------------- the command line, with socat
def echo_server_process():
    return server_process("servers.echo", banner=rb"listening on 127\.0\.0\.1:(\d+) \(tcp, udp\)")


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_socat_round_trips_8_mib_byte_exact(tmp_path):
    source, result = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(os.urandom(8 << 20))
    with echo_server_process() as port:
        with open(source, "rb") as stdin, open(result, "wb") as stdout:
            subprocess.run(["socat", "-b65536", "-", "TCP:127.0.0.1:%d,shut-down" % port],
                           stdin=stdin, stdout=stdout, timeout=4 * TIMEOUT, check=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(b"ping", ("127.0.0.1", port))
            assert client.recv(64) == b"ping"

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert result.stat().st_size == 8 << 20
    assert digest(result) == digest(source)


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc is not installed")
def test_nc_over_udp():
    with echo_server_process() as port:
        result = subprocess.run(["nc", "-u", "-w1", "127.0.0.1", str(port)], input=b"hello\n",
                                capture_output=True, timeout=TIMEOUT)
    assert result.stdout == b"hello\n"


# ------------------------------------------------------------ datagram loops
# A reflector answers every datagram, and a datagram's source can be forged: "from" another
# reflector, or from the server itself, it starts an exchange that never ends.  The servers
# run with each other's sockets in one reactor: the test sends the forged datagram from the
# other server's own socket, which is exactly what the kernel would report for a forgery.
class Counted(UDPEchoServer):
    """Counts the datagrams it answers."""

    answered = 0

    def handle_datagram(self, data, addr):
        self.answered += 1
        UDPEchoServer.handle_datagram(self, data, addr)


class CountedTime(UDPTimeServer):
    answered = 0

    def handle_datagram(self, data, addr):
        self.answered += 1
        UDPTimeServer.handle_datagram(self, data, addr)


@contextlib.contextmanager
def two_reflectors():
    """A UDP echo and a UDP time server on ephemeral ports, in one reactor thread."""
    reactor = Reactor()
    echo = Counted("127.0.0.1", 0, map=reactor.map)
    clock = CountedTime("127.0.0.1", 0, map=reactor.map)
    with running(reactor):
        yield echo, clock


def ask(port, payload=b"ping"):
    """One ordinary client's datagram and the answer (bounded by TIMEOUT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(payload, ("127.0.0.1", port))
        return client.recv(65536)


@pytest.mark.parametrize("source", ["time", "echo"], ids=["echo-from-time", "echo-from-itself"])
def test_one_forged_datagram_starts_no_loop(source):
    with two_reflectors() as (echo, clock):
        forger = clock if source == "time" else echo
        forger.socket.sendto(b"x", ("127.0.0.1", echo.port))
        # Datagrams from one socket to another arrive in order: once an ordinary client's
        # answer is back, the forged datagram (sent first) has been handled, and any reply
        # to it too.  Twice, so that a loop has had every chance to show itself.
        for _ in range(2):
            assert ask(echo.port) == b"ping"
            assert len(ask(clock.port)) == 4
        assert (echo.answered, clock.answered) == (2, 2), "a forged datagram was answered"
        assert echo.refused == 1 and clock.refused == 0


def test_the_rule_refuses_exactly_the_reflector_ports():
    reactor = Reactor(wakeup=False)
    udp = UDPEchoServer("127.0.0.1", 0, map=reactor.map)
    try:
        # 7 echo, 13 daytime, 17 qotd, 19 chargen, 37 time: the reserved-port rule covers them.
        for port in (0, 7, 13, 17, 19, 37, 1023, udp.port,
                     echo_module.DEFAULT_PORT, time_module.DEFAULT_PORT):
            assert udp.refusal(("192.0.2.1", port)) is not None, port
        assert {echo_module.DEFAULT_PORT, time_module.DEFAULT_PORT} <= UDPServer.reflector_ports
        for port in (1024, 40000, 65535):
            if port not in UDPServer._ports_in_use:
                assert udp.refusal(("127.0.0.1", port)) is None, port
    finally:
        udp.close()
        reactor.close()
    assert udp.port not in UDPServer._ports_in_use, "a closed server's port is still refused"


class ScriptedSocket:
    """Stands in for a UDP socket: ``recvfrom`` returns the scripted datagrams in turn."""

    def __init__(self, datagrams):
        self.datagrams = list(datagrams)
        self.sent = []

    def recvfrom(self, size):
        if not self.datagrams:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return self.datagrams.pop(0)

    def sendto(self, data, addr):
        self.sent.append(addr)
        return len(data)


@given(st.lists(st.tuples(st.sampled_from(["127.0.0.1", "10.1.2.3"]), st.integers(0, 65535)),
                max_size=30))
def test_a_datagram_is_answered_exactly_when_its_source_port_is_safe(sources):
    # The clock stands still: of the datagrams from one safe source, the first reply_burst
    # are answered and the rest are over the rate.  Refused datagrams are not charged.
    reactor = Reactor(clock=VirtualClock(), wakeup=False)
    udp = UDPEchoServer("127.0.0.1", 0, map=reactor.map)
    real, udp.socket = udp.socket, ScriptedSocket((b"x", addr) for addr in sources)
    try:
        for _ in sources:
            udp.handle_read()
        safe = [addr for addr in sources if addr[1] >= 1024 and addr[1] != udp.port
                and addr[1] not in UDPServer.reflector_ports
                and addr[1] not in UDPServer._ports_in_use]
        answered = [addr for i, addr in enumerate(safe) if safe[:i].count(addr) < udp.reply_burst]
        assert udp.socket.sent == answered
        assert udp.refused == len(sources) - len(safe)
        assert udp.limited == len(safe) - len(answered)
    finally:
        udp.socket = real
        udp.close()
        reactor.close()


# --------------------------------------------------------- replies per source
@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 2, allow_nan=False)), max_size=200),
       st.floats(0.5, 20), st.integers(1, 10))
def test_replies_to_one_source_never_exceed_the_burst_plus_the_rate(arrivals, rate, burst):
    """Whatever the arrivals, in any interval [t0, t1] one source gets at most
    burst + rate * (t1 - t0) replies; and one that waits 1/rate between datagrams is never
    refused."""
    limiter = ReplyLimiter(rate, burst, max_sources=4)
    now, allowed = 0.0, {}
    for source, gap in arrivals:
        now += gap
        if limiter.allow(("192.0.2.1", 40000 + source), now):
            allowed.setdefault(source, []).append(now)
    for times in allowed.values():
        for i in range(len(times)):
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 1e-6
    patient = ReplyLimiter(rate, burst, max_sources=1)
    assert all(patient.allow(("192.0.2.1", 5000), k / rate) for k in range(3 * burst + 10))


def test_the_source_table_is_bounded_and_evicts_the_least_recently_heard():
    limiter = ReplyLimiter(1.0, 1, max_sources=100)
    assert limiter.allow(("192.0.2.1", 40000), 0.0)
    assert not limiter.allow(("192.0.2.1", 40000), 0.0)
    for port in range(50000, 50099):           # 99 others: the table is full, 40000 oldest
        limiter.allow(("192.0.2.2", port), 0.0)
    assert len(limiter) == 100
    assert not limiter.allow(("192.0.2.1", 40000), 0.0)    # still remembered: still empty
    for port in range(60000, 60000 + 10_000):  # a spray of forged sources
        limiter.allow(("198.51.100.1", port), 0.0)
    assert len(limiter) == 100, "a spray of sources grew the table"
    assert limiter.allow(("192.0.2.1", 40000), 0.0)         # evicted, so a fresh bucket


class Stranger:
    """A UDP server as one in another process would be: it does not know this process's
    other UDP ports, so the port rule lets the other server's datagrams through (as it
    does for a second instance on a non-default port)."""

    def refusal(self, addr):
        if addr[1] != self.port and addr[1] in UDPServer._ports_in_use:
            return None
        return UDPServer.refusal(self, addr)


class StrangeEcho(Stranger, Counted):
    pass


class StrangeTime(Stranger, CountedTime):
    pass


def test_a_loop_between_two_instances_dies_at_the_reply_rate():
    """Echo and time on ports the port rule does not know (the review's 9007 and 9037), one
    datagram forged "from" time to echo, over real sockets on a reactor whose clock stands
    still: each side answers its burst, then the first reply over the rate is dropped and
    with it the only datagram in flight.  Another forged datagram a second later gets
    exactly reply_rate more exchanges.  Without the limit the passes run out."""
    reactor = Reactor(clock=VirtualClock(), wakeup=False)
    echo = StrangeEcho("127.0.0.1", 0, map=reactor.map)
    clock = StrangeTime("127.0.0.1", 0, map=reactor.map)
    try:
        assert echo.refusal(clock.address) is None and clock.refusal(echo.address) is None

        def exchange(limited):
            clock.socket.sendto(b"hello", ("127.0.0.1", echo.port))
            pump(reactor, lambda: echo.limited + clock.limited == limited, timeout=TIMEOUT,
                 max_passes=10_000)

        exchange(1)
        burst = UDPServer.reply_burst
        assert (echo.answered, clock.answered, echo.limited, clock.limited) == (burst, burst, 1, 0)
        reactor.clock.advance(1.0)
        exchange(2)
        more = burst + int(UDPServer.reply_rate)
        assert (echo.answered, clock.answered, echo.limited, clock.limited) == (more, more, 2, 0)
        # Nothing is left in flight: a pass that waits finds no datagram.
        reactor.run_once(0.05)
        assert (echo.answered, clock.answered) == (more, more)
    finally:
        echo.close()
        clock.close()
        reactor.close()


def test_an_ordinary_client_is_answered_every_time():
    """rdate and echo clients send one datagram per request, each from a new port: a
    hundred in a row are all answered, by both servers."""
    with two_reflectors() as (echo, clock):
        for n in range(100):
            assert ask(echo.port, b"%d" % n) == b"%d" % n
            assert len(ask(clock.port)) == 4
        assert echo.limited == clock.limited == 0


def test_a_flood_of_forged_datagrams_logs_one_line_per_interval(caplog):
    caplog.set_level("DEBUG", logger="servers.echo")
    clock = VirtualClock(100.0)
    reactor = Reactor(clock=clock, wakeup=False)
    udp = UDPEchoServer("127.0.0.1", 0, map=reactor.map)
    real, udp.socket = udp.socket, ScriptedSocket([(b"x", ("127.0.0.1", udp.port))] * 1001)
    try:
        for _ in range(1000):
            udp.handle_read()
        clock.advance(udp.refusal_log_interval)
        udp.handle_read()
        assert udp.refused == 1001 and udp.socket.sent == []
    finally:
        udp.socket = real
        udp.close()
        reactor.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("not answering")]
    assert lines == ["not answering a datagram from 127.0.0.1:%d: it claims to come from our "
                     "own port (1 refused so far)" % udp.port,
                     "not answering a datagram from 127.0.0.1:%d: it claims to come from our "
                     "own port (1001 refused so far)" % udp.port]
    assert all(r.levelname == "DEBUG" for r in caplog.records if r.name == "servers.echo")
