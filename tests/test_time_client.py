"""clients.time: gettime and TimeRequest against our server and against servers that
misbehave (refuse, say too little, say too much, say nothing), UDP retransmission, many
servers at once, and the command line's output and one-line errors."""
import contextlib
import errno
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from launchers import reactor_thread

from clients.time import (TimeProtocolError, TimeRequest, TimeRequestError, gettime,
                          parse_server)
from eventloop import Dispatcher, Reactor
from servers.time import start

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 5.0
NOW = 1234567890.25


class Clock:
    def __init__(self, value):
        self.value = value

    def __call__(self):
        return self.value


class FakeTCP(Dispatcher):
    """A broken time server: sends ``reply`` to each client, then closes unless ``hold``."""

    def __init__(self, reply, hold=False, map=None):
        Dispatcher.__init__(self, map=map)
        self.reply, self.hold, self.held = reply, hold, []
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(16)
        self.port = self.socket.getsockname()[1]

    def handle_accepted(self, sock, addr):
        sock.sendall(self.reply)
        if self.hold:
            self.held.append(sock)
        else:
            sock.close()

    def close(self):
        for sock in self.held:
            sock.close()
        Dispatcher.close(self)


class FakeUDP(Dispatcher):
    """A UDP time server that ignores the first ``drop`` datagrams, then sends ``reply``."""

    def __init__(self, reply=b"", drop=0, map=None):
        Dispatcher.__init__(self, map=map)
        self.reply, self.drop, self.received = reply, drop, 0
        self.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]

    def handle_read(self):
        _, addr = self.socket.recvfrom(512)
        self.received += 1
        if self.received > self.drop:
            self.socket.sendto(self.reply, addr)


@contextlib.contextmanager
def serving(*factories):
    """Channels built by ``factory(map)``, run by a reactor in a thread; yields them."""
    reactor = Reactor()
    channels = [factory(reactor.map) for factory in factories]
    with reactor_thread(reactor, TIMEOUT):
        yield channels


def time_servers(now):
    return lambda map: start("127.0.0.1", 0, now=now, map=map)


def closed_port(kind=socket.SOCK_STREAM):
    """A port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ours():
    clock = Clock(NOW)
    with serving(time_servers(clock)) as [[tcp, udp]]:
        yield clock, tcp.port


# ------------------------------------------------------------------ gettime
@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_gettime_returns_the_servers_seconds(ours, udp):
    clock, port = ours
    clock.value = NOW
    assert gettime("127.0.0.1", port, udp=udp, timeout=TIMEOUT) == 1234567890


# Within 68 years of the local clock the era is never in doubt.
@settings(max_examples=20)
@given(st.floats(-60 * 365 * 86400.0, 60 * 365 * 86400.0), st.booleans())
def test_gettime_is_exact_for_any_time_near_now(ours, offset, udp):
    clock, port = ours
    clock.value = time.time() + offset
    expected = int(clock.value // 1)
    assert gettime("127.0.0.1", port, udp=udp, timeout=TIMEOUT) == expected


@pytest.mark.parametrize("reply,reason", [
    (b"", "short reply: 0 of 4 bytes"),
    (b"abc", "short reply: 3 of 4 bytes"),
    (b"abcde", "reply longer than 4 bytes"),
    (b"x" * 70000, "reply longer than 4 bytes"),
])
@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_a_reply_that_is_not_four_bytes_is_a_protocol_error(reply, reason, udp):
    fake = (lambda map: FakeUDP(reply[:65507], map=map)) if udp else \
        (lambda map: FakeTCP(reply, map=map))
    with serving(fake) as [server]:
        with pytest.raises(TimeProtocolError) as info:
            gettime("127.0.0.1", server.port, udp=udp, timeout=TIMEOUT)
    assert isinstance(info.value, TimeRequestError) and isinstance(info.value, OSError)
    assert info.value.reason.startswith(reason)
    assert str(info.value).startswith("127.0.0.1:%d: %s" % (server.port, reason))


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_refused(udp):
    port = closed_port(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    with pytest.raises(TimeRequestError) as info:
        gettime("127.0.0.1", port, udp=udp, timeout=TIMEOUT)
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value) == "127.0.0.1:%d: Connection refused" % port


def test_tcp_silence_times_out():
    with serving(lambda map: FakeTCP(b"", hold=True, map=map)) as [server]:
        started = time.monotonic()
        with pytest.raises(TimeRequestError) as info:
            gettime("127.0.0.1", server.port, timeout=0.3)
        assert 0.29 <= time.monotonic() - started < 3
    assert info.value.errno == errno.ETIMEDOUT
    assert info.value.reason == "timed out after 0.3s"


def test_four_bytes_and_no_close_times_out_naming_the_bytes():
    with serving(lambda map: FakeTCP(b"abcd", hold=True, map=map)) as [server]:
        with pytest.raises(TimeRequestError, match="4 bytes received, the server did not close"):
            gettime("127.0.0.1", server.port, timeout=0.3)


def test_udp_retransmits_a_bounded_number_of_times_then_gives_up():
    with serving(lambda map: FakeUDP(drop=10**9, map=map)) as [server]:
        with pytest.raises(TimeRequestError) as info:
            gettime("127.0.0.1", server.port, udp=True, timeout=0.45)
        assert server.received == 3
    assert info.value.errno == errno.ETIMEDOUT
    assert info.value.reason == "no reply to 3 datagrams in 0.45s"


def test_udp_retransmission_recovers_lost_datagrams():
    reply = (1234567890 + 2208988800).to_bytes(4, "big")
    with serving(lambda map: FakeUDP(reply, drop=2, map=map)) as [server]:
        assert gettime("127.0.0.1", server.port, udp=True, timeout=0.6) == 1234567890
        assert server.received == 3


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_an_address_that_refuses_makes_it_try_the_next(ours, monkeypatch, udp):
    clock, port = ours
    clock.value = NOW
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    dead = [("127.0.0.1", closed_port(kind)), ("127.0.0.1", closed_port(kind))]
    addresses = [(socket.AF_INET, kind, 0, "", a) for a in dead + [("127.0.0.1", port)]]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses)
    assert gettime("two.example", port, udp=udp, timeout=TIMEOUT) == 1234567890
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses[:2])
    with pytest.raises(TimeRequestError) as info:
        gettime("two.example", port, udp=udp, timeout=TIMEOUT)
    assert info.value.errno == errno.ECONNREFUSED


def test_unresolvable_host():
    with pytest.raises(TimeRequestError, match=r"^nonexistent\.invalid:37: cannot resolve host"):
        gettime("nonexistent.invalid", timeout=TIMEOUT)


def test_bad_arguments():
    with pytest.raises(ValueError):
        gettime("127.0.0.1", 37, timeout=0)


# ------------------------------------------------------ many at once, in a loop
def test_many_servers_queried_at_once_in_one_loop(ours):
    clock, port = ours
    clock.value = NOW
    # Listeners nobody runs: the kernel completes the handshakes, and nothing ever answers.
    silent = [FakeTCP(b"", hold=True, map={}) for _ in range(3)]
    reactor = Reactor()
    done = []
    try:
        started = time.monotonic()
        for udp in (False, True):
            TimeRequest("127.0.0.1", port, udp=udp, timeout=TIMEOUT, callback=done.append,
                        map=reactor.map)
        for fake in silent:
            TimeRequest("127.0.0.1", fake.port, timeout=0.4, callback=done.append,
                        map=reactor.map)
        TimeRequest("127.0.0.1", closed_port(), callback=done.append, map=reactor.map)
        reactor.run_until_idle()
        elapsed = time.monotonic() - started
    finally:
        for fake in silent:
            fake.close()
        reactor.close()
    assert len(done) == 6 and all(r.done for r in done)
    assert [r.time for r in done if r.error is None] == [1234567890, 1234567890]
    errors = sorted(r.error.errno for r in done if r.error is not None)
    assert errors == sorted([errno.ECONNREFUSED] + [errno.ETIMEDOUT] * 3)
    assert elapsed < 1.0, "three 0.4 s timeouts ran one after another"


def test_a_failing_callback_is_logged_not_raised(ours, caplog):
    _, port = ours
    reactor = Reactor()

    def broken(request):
        raise RuntimeError("boom")

    try:
        request = TimeRequest("127.0.0.1", port, callback=broken, map=reactor.map)
        reactor.run_until_idle()
    finally:
        reactor.close()
    assert request.done and request.error is None
    assert "boom" in caplog.text


# ---------------------------------------------------------- parsing servers
@pytest.mark.parametrize("text,expected", [
    ("example.org", ("example.org", 37)),
    ("example.org:8037", ("example.org", 8037)),
    ("127.0.0.1:1", ("127.0.0.1", 1)),
    ("::1", ("::1", 37)),
    ("[::1]", ("::1", 37)),
    ("[::1]:8037", ("::1", 8037)),
])
def test_parse_server(text, expected):
    assert parse_server(text, 37) == expected


@pytest.mark.parametrize("text", ["host:", ":37", "host:0", "host:65536", "[::1", "[::1]x",
                                  "host:port", "host:\u00b2", "host:\uff18", "host: 8", "host:+8"])
def test_parse_server_rejects(text):
    with pytest.raises(ValueError):
        parse_server(text, 37)


# ------------------------------------------------------------- command line
def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "clients.time", *args], cwd=ROOT,
                            capture_output=True, timeout=3 * TIMEOUT)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


CTIME = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"


@pytest.mark.parametrize("udp", [(), ("--udp",)], ids=["tcp", "udp"])
def test_cli_prints_the_classic_two_lines(ours, udp):
    clock, port = ours
    clock.value = time.time() - 100
    status, out, err = run_cli("127.0.0.1", str(port), *udp)
    assert status == 0 and err == ""
    assert re.fullmatch(r"server time is %s\nlocal clock is (1\d\d) seconds off\n" % CTIME, out)
    assert 99 <= int(re.search(r"is (\d+) seconds", out).group(1)) <= 102


def test_cli_several_servers_concurrently_each_prefixed(ours):
    clock, port = ours
    clock.value = time.time()
    dead = closed_port()
    status, out, err = run_cli("127.0.0.1:%d" % port, "localhost", "127.0.0.1:%d" % dead,
                               str(port))
    assert status == 1
    for host in ("127.0.0.1", "localhost"):
        prefix = re.escape("%s:%d: " % (host, port))
        assert re.search(r"^%sserver time is %s$" % (prefix, CTIME), out, re.M)
        assert re.search(r"^%slocal clock is -?[01] seconds off$" % prefix, out, re.M)
    assert err == "python -m clients.time: 127.0.0.1:%d: Connection refused\n" % dead


@pytest.mark.parametrize("case", ["refused", "three bytes", "five bytes", "silent"])
def test_cli_errors_are_one_line_and_a_nonzero_exit(case):
    factories = {"three bytes": lambda map: FakeTCP(b"abc", map=map),
                 "five bytes": lambda map: FakeTCP(b"abcde", map=map),
                 "silent": lambda map: FakeTCP(b"", hold=True, map=map)}
    reason = {"refused": "Connection refused", "three bytes": "short reply: 3 of 4 bytes",
              "five bytes": "reply longer than 4 bytes", "silent": "timed out after 0.5s"}
    with serving(*[factories[case]] if case in factories else []) as servers:
        port = servers[0].port if servers else closed_port()
        started = time.monotonic()
        status, out, err = run_cli("127.0.0.1", str(port), "--timeout", "0.5")
        assert time.monotonic() - started < 2 * TIMEOUT
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m clients.time: 127.0.0.1:%d: %s" % (port, reason[case]))


def test_cli_udp_silence_is_one_line_too():
    with serving(lambda map: FakeUDP(drop=10**9, map=map)) as [server]:
        status, out, err = run_cli("127.0.0.1", str(server.port), "--udp", "--timeout", "0.3")
        assert server.received == 3
    assert status == 1 and out == ""
    assert err == "python -m clients.time: 127.0.0.1:%d: no reply to 3 datagrams in 0.3s\n" % (
        server.port)


@pytest.mark.parametrize("args", [["host:0"], ["host", "--timeout", "0"], []])
def test_cli_usage_errors(args):
    status, out, err = run_cli(*args)
    assert status == 2 and "usage:" in err and "Traceback" not in err


def test_cli_refuses_a_port_in_other_digits_without_a_traceback():
    code, out, err = run_cli("127.0.0.1:\u00b2")
    assert code == 2 and "Traceback" not in err and "bad server" in err
