"""servers.http's fast paths over real sockets: files sent from descriptors the cache holds, the
request read at accept time, TCP_NODELAY, and the Connection's per-Response memo.

The harness (``Served``, ``read_response``, ``get``) is the one of ``test_http_server.py``.
"""
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventloop.http11 import SERVER, Connection, Headers, Response
from servers.http import FileCache, Handler, HTTPChannel, StaticFiles

from test_http_server import Served, closed_by_server, get, read_response

SMALL_LIMIT = 16 << 10


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Four files above the in-memory limit (held as descriptors) and one below it."""
    root = tmp_path_factory.mktemp("speed")
    contents = {}
    for i, size in enumerate((SMALL_LIMIT + 1, 64 << 10, 300 << 10, 3 << 20)):
        data = os.urandom(size)
        (root / ("f%d.bin" % i)).write_bytes(data)
        contents["/f%d.bin" % i] = data
    contents["/tiny.txt"] = b"tiny"
    (root / "tiny.txt").write_bytes(b"tiny")
    return root, contents


def keep_alive_gets(served, paths, method="GET"):
    """GET (or HEAD) each path in turn on one connection; the responses."""
    with served.connect() as sock:
        f = sock.makefile("rb")
        try:
            out = []
            for path in paths:
                sock.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method.encode(), path.encode()))
                out.append(read_response(f, method))
            return out
        finally:
            f.close()


# ------------------------------------------------------------ files from held descriptors


def test_large_files_are_byte_exact_and_hold_one_descriptor_each(site):
    root, contents = site
    app = StaticFiles(str(root), cache=FileCache(small=SMALL_LIMIT))
    served = Served(app)
    try:
        paths = sorted(contents) * 2
        for path, r in zip(paths, keep_alive_gets(served, paths)):
            assert (r.status, r.body) == (200, contents[path])
            assert r.header("Content-Length") == str(len(contents[path]))
        assert served.call(lambda: app.cache.open_descriptors) == 4     # not tiny.txt
        for path, r in zip(paths, keep_alive_gets(served, paths, "HEAD")):
            assert (r.status, r.body) == (200, b"")
            assert r.header("Content-Length") == str(len(contents[path]))
    finally:
        served.stop()


def test_held_descriptors_are_capped_least_recently_used_first(site):
    root, contents = site
    app = StaticFiles(str(root), cache=FileCache(small=SMALL_LIMIT, max_open=2))
    served = Served(app)
    try:
        order = ["/f0.bin", "/f1.bin", "/f2.bin", "/f0.bin", "/f3.bin", "/f1.bin", "/f0.bin"]
        for path in order:
            (r,) = keep_alive_gets(served, [path])
            assert (r.status, r.body) == (200, contents[path])
            held = served.call(lambda: sorted(k for k, e in app.cache._entries.items()
                                              if e.fd is not None))
            assert len(held) <= 2 and path in held
        assert held == ["/f0.bin", "/f1.bin"]       # f3.bin, least recently used, was closed
    finally:
        served.stop()


def test_changed_large_files_are_seen_and_their_descriptors_closed(tmp_path):
    path = tmp_path / "big.bin"
    first, second, third = os.urandom(40000), os.urandom(50000), os.urandom(30000)
    path.write_bytes(first)
    app = StaticFiles(str(tmp_path), cache=FileCache(small=SMALL_LIMIT))
    served = Served(app)
    try:
        served.call(lambda: None)
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        assert get(served, "/big.bin")[::2] == (200, first)
        path.write_bytes(second)                          # rewritten in place
        assert get(served, "/big.bin")[::2] == (200, second)
        (tmp_path / "new").write_bytes(third)
        os.replace(tmp_path / "new", path)                # replaced by another inode
        assert get(served, "/big.bin")[::2] == (200, third)
        assert served.call(lambda: app.cache.open_descriptors) == 1
        if fds is not None:
            # The server closes each client's connection when it reads the client's close:
            # wait for that, so only the cache's descriptor is counted.
            assert served.wait_until(lambda: not served.server.channels)
            assert len(os.listdir("/proc/self/fd")) <= fds + 1
        os.unlink(path)
        assert get(served, "/big.bin")[0] == 404
        assert served.call(lambda: app.cache.open_descriptors) == 0
    finally:
        served.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_ranges_of_a_held_file(site, data):
    root, contents = site
    body = contents["/f2.bin"]
    start = data.draw(st.integers(0, len(body) - 1))
    end = data.draw(st.integers(start, len(body) + 10))
    served = _shared(root)
    status, headers, got = get(served, "/f2.bin", {"Range": "bytes=%d-%d" % (start, end)})
    assert status == 206
    assert got == body[start:end + 1]
    assert headers["content-range"] == "bytes %d-%d/%d" % (start, min(end, len(body) - 1),
                                                           len(body))


_servers = {}


def _shared(root):
    if root not in _servers:
        _servers[root] = Served(StaticFiles(str(root), cache=FileCache(small=SMALL_LIMIT)))
    return _servers[root]


@pytest.fixture(scope="module", autouse=True)
def _stop_shared():
    yield
    for served in _servers.values():
        served.stop()
    _servers.clear()


def test_a_slow_download_survives_its_descriptor_being_evicted(site):
    """The socket takes only part of a 3 MiB body at once; the rest goes out from the channel's
    own duplicate, so the cache closing its descriptor meanwhile changes nothing."""
    root, contents = site
    app = StaticFiles(str(root), cache=FileCache(small=SMALL_LIMIT, max_open=1))
    served = Served(app)
    try:
        with socket.socket() as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # before the window
            slow.settimeout(5)
            slow.connect(("127.0.0.1", served.port))
            slow.sendall(b"GET /f3.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert served.wait_until(lambda: any(ch.queued_bytes for ch in served.server.channels))
            # Another file takes the one descriptor slot: the cache closes f3.bin's.
            assert get(served, "/f1.bin")[::2] == (200, contents["/f1.bin"])
            assert served.call(lambda: app.cache._entries["/f3.bin"].fd) is None
            f = slow.makefile("rb")
            r = read_response(f)
            f.close()
            assert (r.status, r.body) == (200, contents["/f3.bin"])
    finally:
        served.stop()


# ------------------------------------------------------------------ accepting connections


def test_accepted_sockets_have_nodelay(site):
    root, _ = site
    served = _shared(root)
    with served.connect() as a, served.connect() as b:
        for sock in (a, b):
            sock.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")

        def nodelay():
            return [ch.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    for ch in served.server.channels]

        values = served.call(nodelay)
        assert len(values) >= 2 and all(values)


class _Exploding(HTTPChannel):
    """A channel whose handler code fails on the request it reads."""

    def _process(self):
        raise RuntimeError("boom")


def test_a_failure_reading_at_accept_closes_that_channel_not_the_listener(site):
    root, contents = site
    served = Served(StaticFiles(str(root)), channel_class=_Exploding)
    try:
        for _ in range(3):
            with served.connect() as sock:
                sock.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                assert closed_by_server(sock)
        assert served.call(lambda: served.server.accepting)
        assert served.wait_until(lambda: not served.server.channels)
    finally:
        served.stop()


def test_requests_sent_with_the_connect_or_later_are_both_answered(site):
    root, _ = site
    served = _shared(root)
    with served.connect() as early:
        early.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        f = early.makefile("rb")
        assert read_response(f).body == b"tiny"
        assert f.read() == b""
        f.close()
    with served.connect() as late:
        # The server has accepted and found nothing to read: it must wait for readiness.
        assert served.wait_until(lambda: len(served.server.channels) >= 1)
        late.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        f = late.makefile("rb")
        assert read_response(f).body == b"tiny"
        f.close()


class _Recording(HTTPChannel):
    """Notes, as each channel closes, whether it had joined the reactor's map."""

    closes = []

    def close(self):
        if self.connected:
            type(self).closes.append(self._fileno in self._map)
        HTTPChannel.close(self)


def test_a_connection_answered_at_accept_never_joins_the_map(site):
    root, _ = site
    served = Served(StaticFiles(str(root)), channel_class=_Recording)
    _Recording.closes = []
    try:
        # With accepting paused, both requests are in the kernel before the accept.
        served.call(served.server.pause_reading)
        close_sock, keep_sock = served.connect(), served.connect()
        close_sock.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        keep_sock.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        served.call(served.server.resume_reading)
        with close_sock, keep_sock:
            f = close_sock.makefile("rb")
            assert read_response(f).body == b"tiny" and f.read() == b""
            f.close()
            assert served.wait_until(lambda: _Recording.closes == [False])
            # The keep-alive connection waits for its next request in the map, and is served.
            f = keep_sock.makefile("rb")
            assert read_response(f).body == b"tiny"
            keep_sock.sendall(b"GET /tiny.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(f).body == b"tiny" and f.read() == b""
            f.close()
            assert served.wait_until(lambda: _Recording.closes == [False, True])
    finally:
        served.stop()


class _LargeBodies(Handler):
    """A large body by each way of sending one: a file (os.sendfile), one bytes object
    (sendmsg of head and body) and a streamed body (send)."""

    big = os.urandom(16 << 20)      # more than a loopback socket buffers

    def __init__(self, file_path):
        self.file_path = file_path

    def do_GET(self, request):
        if request.path == "/file":
            request.send_file(self.file_path)
        elif request.path == "/bytes":
            request.respond(200, (("Content-Type", "application/octet-stream"),), self.big)
        elif request.path == "/stream":
            request.start_response(200, (("Content-Length", str(len(self.big))),))
            request.write(self.big)
            request.finish()
        else:
            request.respond(200, (), b"ok")


def _recv_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        assert chunk, "closed after %d of %d bytes" % (len(data), n)
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("path", ["/file", "/bytes", "/stream"])
def test_a_large_response_to_a_client_not_reading_never_blocks_the_server(tmp_path, path):
    """An accepted socket stays in blocking mode while the channel only sends with
    MSG_DONTWAIT; every other way of sending must switch it first, or this client, answered
    at accept, would stall the whole server each time it stops reading."""
    expected = _LargeBodies.big
    (tmp_path / "big.bin").write_bytes(expected)
    served = Served(_LargeBodies(str(tmp_path / "big.bin")))
    try:
        served.call(served.server.pause_reading)
        with socket.socket() as slow:
            slow.settimeout(5)
            slow.connect(("127.0.0.1", served.port))
            slow.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            served.call(served.server.resume_reading)
            assert served.wait_until(lambda: any(ch.queued_bytes for ch in served.server.channels))
            # The slow client reads nothing yet; another is served meanwhile.
            assert get(served, "/other")[::2] == (200, b"ok")
            # It reads half (the channel is woken to send more), then stops again.
            received = _recv_exactly(slow, len(expected) // 2)
            assert get(served, "/other")[::2] == (200, b"ok")
            head_end = received.index(b"\r\n\r\n") + 4
            head = received[:head_end]
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"\r\nContent-Length: %d\r\n" % len(expected) in head
            body = received[head_end:] + _recv_exactly(slow, len(expected) - (len(received) - head_end))
            assert body == expected
    finally:
        served.stop()


# ------------------------------------------------------------- the Connection's head memo


@given(st.lists(st.sampled_from(["set", "add", "remove"]), min_size=1, max_size=4))
def test_a_response_event_changed_between_sends_is_serialised_again(changes):
    resp = Response(200, Headers([("Content-Length", "2"), ("X-A", "1")]))
    expected = None
    for change in [None] + changes:
        if change == "set":
            resp.headers.set("X-A", "2")
        elif change == "add":
            resp.headers.add("X-B", "3")
        elif change == "remove":
            resp.headers.remove("X-B")
        conn = Connection(SERVER)
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.next_event()
        out = conn.send_head_and_body(resp, b"ok")
        fields = "".join("%s: %s\r\n" % pair for pair in resp.headers)
        expected = ("HTTP/1.1 200 \r\n%s\r\nok" % fields).encode()
        assert out == expected
