"""The client against a raw server that sends malformed numbers, over real sockets: a Content-Length that is
not a decimal number is a protocol error reported as that request's error, also on a 304 or a HEAD
response where it frames nothing; a Keep-Alive ``timeout=`` or a ``Retry-After`` that is no number we can
use is ignored.  None is ever an internal error, whatever ``str.isdigit()`` says of the characters
('²'.isdigit() is True) or however many digits there are."""
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import example, given, strategies as st

from clients.http import HeaderMap
from clients.http.client import AsyncHTTP
from clients.http.retry import retry_after_seconds
from eventloop.http11 import Headers
from test_http_client import fetch_one, reactor, scripted  # noqa: F401  (fixtures)

# Digits that are not ASCII, as a server's bytes: latin-1 superscripts, and other scripts' digits in UTF-8.
NON_ASCII_DIGITS = [b"\xb2", b"1\xb9", b"\xb3\xb3", "\u0663".encode(), "\uff15".encode(), "\u2460".encode()]
BAD_NUMBERS = NON_ASCII_DIGITS + [b"-1", b"+1", b"0x5", b"1.0", b"", b"9" * 30, b"9" * 5000, b"1, 2"]


def short(value):
    """A test id for a value of bytes, however long."""
    return repr(value) if len(value) <= 12 else "%r...(%d bytes)" % (value[:6], len(value))


@pytest.fixture
def errors(caplog):
    """The client's log records at ERROR or above (an internal error logs its traceback there)."""
    caplog.set_level(logging.ERROR, logger="clients.http")
    yield lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("status, method", [(304, "GET"), (204, "GET"), (200, "HEAD"), (200, "GET")])
@pytest.mark.parametrize("number", BAD_NUMBERS, ids=short)
def test_malformed_content_length_is_the_requests_error(reactor, scripted, errors, status, method, number):
    head = b"HTTP/1.1 %d X\r\nContent-Length: %s\r\n\r\n" % (status, number)
    server = scripted(lambda req, n: [head])
    c = fetch_one(reactor, server, method=method)
    assert c.check().status is None
    assert c.error.startswith("invalid response: ") and "Content-Length" in c.error, c.error
    assert errors() == []


def test_valid_content_length_on_a_304_still_passes(reactor, scripted, errors):
    server = scripted(lambda req, n: [b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0050\r\n\r\n"])
    c = fetch_one(reactor, server)
    assert c.check().status[1] == 304 and c.error is None and c.body == b""
    assert errors() == []


@pytest.mark.parametrize("timeout", NON_ASCII_DIGITS + [b"9" * 400, b"9" * 5000, b"-1", b"1.5", b"", b"x"],
                         ids=short)
def test_malformed_keep_alive_timeout_is_ignored(reactor, scripted, errors, timeout):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: max=5, timeout=%s\r\n\r\nok" % timeout
    server = scripted(lambda req, n: [answer])
    first = fetch_one(reactor, server, "/a")
    assert first.check().body == b"ok" and first.error is None
    second = fetch_one(reactor, server, "/b")        # the connection was kept, with the pool's own expiry
    assert second.check().body == b"ok" and second.error is None
    assert second.request.reused and server.connections == 1
    assert errors() == []


def test_keep_alive_timeout_that_is_a_number_is_kept():
    assert _expiry(b"max=5, timeout=7") == 6.0
    assert _expiry(b"timeout = 30") == 29.0


def _expiry(value):
    """What a request makes of a response's ``Keep-Alive`` field of these bytes."""
    request = object.__new__(AsyncHTTP)
    request.header = HeaderMap(Headers([("Keep-Alive", value.decode("latin-1"))]))
    return request._keep_alive_expiry()


digit_chars = st.characters(categories=["Nd", "No", "Nl"])


@given(number=st.lists(st.one_of(st.sampled_from("0123456789 "), digit_chars), max_size=8).map("".join),
       latin1=st.booleans())
@example(number="\xb2", latin1=True)
@example(number="9" * 5000, latin1=True)
def test_keep_alive_timeout_of_any_digits_never_raises(number, latin1):
    raw = number.encode("latin-1", "replace") if latin1 else number.encode()
    expiry = _expiry(b"timeout=" + raw)
    digits = raw.strip(b" ")
    if digits.isdigit() and len(digits) <= 9:            # bytes.isdigit(): ASCII digits only
        assert expiry == int(digits) - 1.0
    else:
        assert expiry is None


@given(value=st.one_of(
    st.lists(st.one_of(st.sampled_from("0123456789 "), digit_chars), max_size=8).map("".join),
    st.integers(0, 500).map(lambda n: "9" * n),
    st.tuples(st.integers(0, 10 ** 30), st.integers(0, 10 ** 30), st.integers(0, 10 ** 30)).map(
        lambda t: "Mon, %d Jan %d %d:00:00 GMT" % t)))
@example(value="9" * 400)
@example(value="Mon, 01 Jan 99999999999999999999 00:00:00 GMT")
@example(value="Mon, 01 Jan 2025 00:00:00 +99999999999999999999")
def test_retry_after_of_any_digits_never_raises(value):
    seconds = retry_after_seconds(value, 0)
    digits = value.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 9:
        assert seconds == int(digits)
    else:
        assert seconds is None or 0 <= seconds < float("inf")


def test_command_line_retry_after_of_400_digits(tmp_path):
    """``-f --retry 1`` against a 503 whose Retry-After has 400 digits: one retry after the usual
    backoff, then curl's exit 22 and the 503 on stderr (float() of the value used to overflow, and the
    program ended 0, saying nothing)."""
    answer = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nRetry-After: " + b"9" * 400 + b"\r\n\r\n"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    served = []

    def serve():
        try:
            for _ in range(2):
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    conn.recv(65536)
                    conn.sendall(answer)
                    served.append(1)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "clients.http", "-f", "--retry", "1",
             "http://127.0.0.1:%d/" % listener.getsockname()[1]],
            cwd=root, env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True, timeout=30)
    finally:
        listener.close()
        thread.join(10)
    assert (proc.returncode, len(served)) == (22, 2), proc.stderr
    assert "HTTP 503" in proc.stderr and "Traceback" not in proc.stderr
