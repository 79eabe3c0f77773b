"""servers.time: the exact four bytes over TCP and UDP, one port number for both, the
request log, the command line, and rdate as a real client."""
import calendar
import contextlib
import math
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from launchers import reactor_thread

from eventloop import Reactor
from eventloop.testing import memory_socketpair
from servers.time import TimeServer, UDPTimeServer, start

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 5.0


def expected_bytes(unix_time):
    """RFC 868 by hand: whole seconds since 1900-01-01, modulo 2**32, big-endian."""
    seconds_1900_to_1970 = (70 * 365 + 17) * 86400
    return struct.pack(">I", (math.floor(unix_time) + seconds_1900_to_1970) % 2**32)


@contextlib.contextmanager
def serving(**kwargs):
    """Time servers on 127.0.0.1, on an ephemeral port, run by a reactor in a thread."""
    reactor = Reactor()
    servers = start("127.0.0.1", 0, map=reactor.map, **kwargs)
    with reactor_thread(reactor, TIMEOUT):
        yield servers


def tcp_reply(port, host="127.0.0.1"):
    """Everything a TCP server sends before it closes."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        chunks = []
        while True:
            data = sock.recv(64)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def udp_reply(port, payload=b"", host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(payload, (host, port))
        return sock.recv(1024)


class Clock:
    """A settable time source for the server's ``now``."""

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self):
        return self.value


@pytest.fixture(scope="module")
def fixed():
    clock = Clock(1234567890.75)
    with serving(now=clock) as servers:
        yield clock, servers


unix_times = st.one_of(st.integers(-2208988800, 2**33),
                       st.floats(-2208988800.0, 2.0**33, allow_nan=False))


# ------------------------------------------------------------------ the value
def test_classic_value_exactly(fixed):
    clock, servers = fixed
    clock.value = 1234567890.75
    assert tcp_reply(servers[0].port) == struct.pack("!I", 3443556690)
    assert udp_reply(servers[1].port) == struct.pack("!I", 3443556690)


@settings(max_examples=25)
@given(unix_times)
def test_tcp_sends_exactly_the_four_bytes_then_closes(fixed, unix_time):
    clock, servers = fixed
    clock.value = unix_time
    assert tcp_reply(servers[0].port) == expected_bytes(unix_time)


@settings(max_examples=25)
@given(unix_times, st.binary(max_size=600))
def test_udp_answers_any_datagram_even_an_empty_one(fixed, unix_time, payload):
    clock, servers = fixed
    clock.value = unix_time
    assert udp_reply(servers[1].port, payload) == expected_bytes(unix_time)


def test_one_port_number_for_both_transports(fixed):
    _, (tcp, udp) = fixed
    assert isinstance(tcp, TimeServer) and isinstance(udp, UDPTimeServer)
    assert tcp.port == udp.port != 0


class FailingSocket:
    """Stands in for the UDP socket: every call fails as a real one can (an ICMP error left
    by an earlier reply, a full send buffer)."""

    def __init__(self):
        self.calls = []

    def recvfrom(self, size):
        self.calls.append("recvfrom")
        if len(self.calls) == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return b"", ("127.0.0.1", 50000)     # an ordinary client port (see UDPServer.refusal)

    def sendto(self, data, addr):
        self.calls.append("sendto")
        raise BlockingIOError(11, "Resource temporarily unavailable")


def test_udp_errors_never_stop_the_server():
    reactor = Reactor(wakeup=False)
    udp = UDPTimeServer("127.0.0.1", 0, now=Clock(0), map=reactor.map)
    real, udp.socket = udp.socket, FailingSocket()
    try:
        udp.handle_read()           # the receive fails: ignored
        udp.handle_read()           # the reply cannot be sent: dropped, as UDP may
        assert udp.socket.calls == ["recvfrom", "recvfrom", "sendto"]
    finally:
        udp.socket = real
        udp.close()
        reactor.close()


def test_a_datagram_forged_from_the_server_itself_is_not_answered():
    """Sent from the server's own socket, as a forgery would claim: answering it would make
    the server answer itself for ever (and a time server to an echo server likewise)."""
    with serving(now=Clock(0), tcp=False) as (udp,):
        answered = []
        real = udp.handle_datagram
        udp.handle_datagram = lambda data, addr: (answered.append(addr), real(data, addr))
        udp.socket.sendto(b"", ("127.0.0.1", udp.port))
        for _ in range(2):          # answers come in order: the forgery was handled first
            assert udp_reply(udp.port) == expected_bytes(0)
        assert len(answered) == 2 and udp.address not in answered
        assert udp.refused == 1


def test_a_client_that_hung_up_costs_nothing():
    server_side, client_side = memory_socketpair()
    client_side.close()
    reactor = Reactor(wakeup=False)
    server = TimeServer("127.0.0.1", 0, now=Clock(0), map=reactor.map)
    try:
        server.handle_accepted(server_side, ("127.0.0.1", 9))     # the send fails: no error
        assert server_side.closed
    finally:
        server.close()
        reactor.close()


@pytest.mark.parametrize("tcp,udp", [(True, False), (False, True)])
def test_one_transport_only(tcp, udp):
    with serving(now=Clock(0), tcp=tcp, udp=udp) as servers:
        assert len(servers) == 1
        port = servers[0].port
        if tcp:
            assert tcp_reply(port) == expected_bytes(0)
        else:
            assert udp_reply(port) == expected_bytes(0)


def test_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    reactor = Reactor()
    try:
        servers = start("::1", 0, now=Clock(86400), map=reactor.map)
    except OSError as exc:
        reactor.close()
        pytest.skip("cannot bind ::1: %s" % exc)
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()
    try:
        assert servers[0].socket.family == socket.AF_INET6
        assert tcp_reply(servers[0].port, "::1") == expected_bytes(86400)
        assert udp_reply(servers[1].port, b"x", "::1") == expected_bytes(86400)
    finally:
        reactor.call_soon_threadsafe(reactor.stop)
        thread.join(TIMEOUT)
        for channel in list(reactor.map.values()):
            channel.close()
        reactor.close()


def test_one_log_line_per_request(fixed, caplog):
    _, (tcp, udp) = fixed
    caplog.set_level("INFO", logger="servers.time.request")
    tcp_reply(tcp.port)
    udp_reply(udp.port)
    lines = [r.getMessage() for r in caplog.records if r.name == "servers.time.request"]
    assert len(lines) == 2
    assert re.fullmatch(r"time request from 127\.0\.0\.1:\d+ over tcp", lines[0])
    assert re.fullmatch(r"time request from 127\.0\.0\.1:\d+ over udp", lines[1])


def test_port_in_use_is_an_oserror_and_leaves_nothing_open():
    reactor = Reactor()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            start("127.0.0.1", taken.getsockname()[1], map=reactor.map)
    assert not reactor.map
    reactor.close()


# -------------------------------------------------------------- command line
class Server:
    """``python -m servers.time`` as a subprocess, with the port it reported."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "servers.time", *args], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.log = b""
        match = self.wait_for(rb"listening on 127\.0\.0\.1:(\d+) \(([a-z, ]+)\)")
        self.port = int(match.group(1))
        self.transports = match.group(2).decode()

    def wait_for(self, pattern):
        """Read stderr until ``pattern`` matches (bounded by TIMEOUT)."""
        deadline = time.monotonic() + TIMEOUT
        fd = self.proc.stderr.fileno()
        while True:
            match = re.search(pattern, self.log)
            if match:
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise AssertionError("no %r in the server's log: %r" % (pattern, self.log))
            data = os.read(fd, 4096)
            if not data:
                self.stop()
                raise AssertionError("the server exited: %r" % self.log)
            self.log += data

    def stop(self):
        """Interrupt it; returns (exit status, its whole stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rest = self.proc.communicate(timeout=TIMEOUT)[1]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest = self.proc.communicate()[1]
        self.log += rest or b""
        return self.proc.returncode, self.log.decode()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def test_cli_serves_both_transports_and_logs_requests():
    with Server("0", "-b", "127.0.0.1") as server:
        assert server.transports == "tcp, udp"
        before = time.time()
        value = struct.unpack("!I", tcp_reply(server.port))[0] - 2208988800
        assert math.floor(before) <= value <= time.time()
        value = struct.unpack("!I", udp_reply(server.port))[0] - 2208988800
        assert math.floor(before) <= value <= time.time()
        server.wait_for(rb"over tcp.*\n.*over udp")
        status, log = server.stop()
    assert status == 0 and "Traceback" not in log


def test_cli_quiet_silences_the_request_lines():
    with Server("0", "-b", "127.0.0.1", "-q", "--tcp-only") as server:
        assert server.transports == "tcp"
        assert len(tcp_reply(server.port)) == 4
        status, log = server.stop()
    assert "listening on" in log and "time request" not in log


def test_cli_reports_a_port_it_cannot_have():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "servers.time", str(port), "-b",
                                 "127.0.0.1"], cwd=ROOT, capture_output=True, timeout=TIMEOUT)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert err.count("\n") == 1 and "cannot listen" in err and str(port) in err
    assert "Traceback" not in err


def test_cli_rejects_bad_arguments():
    result = subprocess.run([sys.executable, "-m", "servers.time", "--tcp-only", "--udp-only"],
                            cwd=ROOT, capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 2 and b"not allowed with" in result.stderr


# --------------------------------------------------------- a real client: rdate
def rdate(port, *flags):
    """rdate's answer as Unix time (it prints the server's time in ctime form, in TZ)."""
    result = subprocess.run(["rdate", "-p", *flags, "-o", str(port), "127.0.0.1"],
                            capture_output=True, timeout=TIMEOUT, env={**os.environ, "TZ": "UTC"})
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode().strip().split("\t")[-1].replace("rdate: ", "")
    return calendar.timegm(time.strptime(text.strip(), "%a %b %d %H:%M:%S %Z %Y"))


@pytest.mark.skipif(shutil.which("rdate") is None, reason="rdate is not installed")
@pytest.mark.parametrize("flags", [(), ("-u",)], ids=["tcp", "udp"])
def test_rdate_reads_our_time(flags):
    with serving() as servers:
        assert abs(rdate(servers[0].port, *flags) - time.time()) <= 1.0


@pytest.mark.skipif(shutil.which("rdate") is None, reason="rdate is not installed")
def test_rdate_reads_an_injected_time_exactly():
    with serving(now=Clock(1234567890.5)) as servers:
        assert rdate(servers[0].port) == 1234567890
        assert rdate(servers[0].port, "-u") == 1234567890
