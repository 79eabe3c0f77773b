"""Short of connections or of room for request heads, the HTTP server lets in new clients.

Slowloris: silent or trickling connections that fill the descriptor table (or a connection
limit) kept a real client out until the head timeout cut them.  Now the connections worth
least are closed to make room: idle keep-alive ones first, then the oldest still sending a
head.  Partial heads: every connection could hold a head of nearly 64 KiB; now the bytes held
in partial heads across the server are bounded (``max_buffered_heads``), the oldest answered
408 and closed beyond it.
"""
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from launchers import ROOT, TIMEOUT, read_until
from servers.http import HTTPServer, StaticFiles
from test_http_server import Served

GET_CLOSE = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
GET_KEEP = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def site(tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello\n")
    return str(tmp_path)


def _connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def _read_all(sock):
    """Everything until the server closes (each recv bounded by the socket's timeout)."""
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


def _read_response(sock):
    """One response with a Content-Length body, from a keep-alive connection."""
    out = b""
    while b"\r\n\r\n" not in out:
        data = sock.recv(65536)
        assert data, out
        out += data
    head, _, body = out.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        data = sock.recv(65536)
        assert data, out
        body += data
    return head


def _closed_by_server(sock):
    """True if the server closed ``sock`` (what it sent before, if anything, is read)."""
    sock.settimeout(0.0)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(TIMEOUT)


def test_out_of_descriptors_silent_connections_make_room_for_a_real_client(site):
    """With RLIMIT_NOFILE at 64, 80 connections that each sent one byte fill the server's
    descriptors (the rest wait in the backlog); a real client still gets its answer at once,
    not after the head timeout (60 s here), because the oldest silent ones are closed."""
    script = textwrap.dedent(r"""
        import resource, sys
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        from servers.http.__main__ import main
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, "0", "-b", "127.0.0.1", "-d", site,
                             "-q", "--head-timeout", "60"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    socks = []
    try:
        port = int(read_until(proc.stderr, rb"port (\d+) ").group(1))
        for _ in range(80):
            sock = _connect(port)
            sock.sendall(b"G")
            socks.append(sock)
        with _connect(port) as client:          # recv bounded by TIMEOUT, far below 60 s
            client.sendall(GET_CLOSE)
            answer = _read_all(client)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello\n"), answer
        assert sum(_closed_by_server(sock) for sock in socks) >= 16    # one batch at least
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        err = proc.communicate(timeout=TIMEOUT)[1]
    assert b"Traceback" not in err
    assert b"accept failed ([Errno 24] Too many open files): closed 16 connections" in err


def test_at_the_connection_limit_idle_keepalive_connections_go_first(site):
    served = Served(StaticFiles(site), connection_limit=8)
    served.server.shed_batch = 1
    idle, heads = [], []
    try:
        for _ in range(3):
            sock = _connect(served.port)
            sock.sendall(GET_KEEP)
            assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
            idle.append(sock)
        for _ in range(5):
            sock = _connect(served.port)
            sock.sendall(b"GET /hel")
            heads.append(sock)
        assert served.wait_until(lambda: len(served.server.channels) == 8)
        order = idle + heads                    # idle ones first, oldest first, then heads
        for n in range(1, 6):
            sock = _connect(served.port)        # a newcomer that starts a head and waits
            sock.sendall(b"G")
            heads.append(sock)
            held = 8 * (5 - max(n - 3, 0)) + n          # heads of 8 bytes shed from n = 4
            assert served.wait_until(lambda: served.server.head_bytes == held), n
            assert [_closed_by_server(s) for s in order] == [True] * n + [False] * (8 - n)
        with _connect(served.port) as client:
            client.sendall(GET_CLOSE)
            assert _read_all(client).startswith(b"HTTP/1.1 200 ")
        assert _closed_by_server(order[5]) and not _closed_by_server(order[6])
    finally:
        for sock in idle + heads:
            sock.close()
        served.stop()


def test_a_shed_partial_head_is_told_why(site):
    served = Served(StaticFiles(site), connection_limit=2)
    served.server.shed_batch = 1
    try:
        with _connect(served.port) as old, _connect(served.port) as young:
            old.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            young.sendall(b"GET / HTTP/1.1\r\n")
            assert served.wait_until(lambda: served.server.head_bytes == 41)
            with _connect(served.port) as client:
                client.sendall(GET_CLOSE)
                assert _read_all(client).startswith(b"HTTP/1.1 200 ")
            answer = _read_all(old)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in answer
            assert not _closed_by_server(young)
    finally:
        served.stop()


def test_bytes_held_in_partial_heads_stay_within_the_budget(site):
    """Ten connections each send 60 KB of a head and wait: at most ``max_buffered_heads``
    (256 KiB) is held; the oldest are answered 408 and closed, the newest four are kept, and
    other clients are served."""
    budget = 256 << 10
    served = Served(StaticFiles(site), max_buffered_heads=budget)
    server = served.server
    partial = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: %s\r\n" % (i, b"v" * 7000) for i in range(8)) + b"X-last: " + b"v" * 4000
    assert len(partial) > 60000
    socks = []
    most = 0
    try:
        for n in range(1, 11):
            sock = _connect(served.port)
            sock.sendall(partial)
            socks.append(sock)
            # The server has read it all when it holds it, or has shed older heads for it.
            assert served.wait_until(
                lambda: server.head_bytes == len(partial) * min(n, 4))
            most = max(most, served.call(lambda: server.head_bytes))
        assert most <= budget
        answers = [_read_all(sock) for sock in socks[:6]]
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
        assert [_closed_by_server(s) for s in socks[6:]] == [False] * 4
        assert served.call(lambda: len(server._heads)) == 4
        with _connect(served.port) as client:
            client.sendall(GET_CLOSE)
            assert _read_all(client).startswith(b"HTTP/1.1 200 ")
        for sock in socks[6:]:
            sock.close()
        assert served.wait_until(lambda: server.head_bytes == 0 and not server._heads)
    finally:
        for sock in socks:
            sock.close()
        served.stop()


def test_heads_that_complete_give_their_bytes_back(site):
    """A head read in pieces is counted while partial and not at all once complete, whichever
    way the connection then goes."""
    served = Served(StaticFiles(site), max_buffered_heads=1 << 20)
    server = served.server
    try:
        with _connect(served.port) as sock:
            sock.sendall(GET_KEEP[:20])
            assert served.wait_until(lambda: server.head_bytes == 20)
            sock.sendall(GET_KEEP[20:])
            assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
            assert served.wait_until(lambda: server.head_bytes == 0)
            sock.sendall(GET_KEEP[:10])
            assert served.wait_until(lambda: server.head_bytes == 10)
        assert served.wait_until(lambda: server.head_bytes == 0 and not server._heads)
    finally:
        served.stop()


def test_the_new_keyword_arguments_have_compatible_defaults():
    server = HTTPServer(("127.0.0.1", 0), StaticFiles(os.getcwd()))
    try:
        assert server.connection_limit is None
        assert server.max_buffered_heads == 32 << 20
    finally:
        server.close()
