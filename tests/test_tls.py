"""eventloop.tls: the TLS layer under unmodified channels, over memory sockets cut every way
(Hypothesis over send limits, socket read sizes and write chunkings) and over real sockets."""
import logging
import socket
import ssl
import threading

import pytest
from hypothesis import given, strategies as st

from eventloop import (AsyncChat, Dispatcher, DispatcherWithSend, Listener, Reactor,
                       client_context, server_context)
from eventloop.pollers import READ
from eventloop.testing import chunkings, connect_pair, memory_reactor
from launchers import TIMEOUT, reactor_thread
from servers.echo import EchoHandler


@pytest.fixture(scope="module")
def contexts(pki):
    server = server_context(pki["cert"], pki["key"], alpn=["http/1.1"])
    client = client_context(pki["ca"], alpn=["http/1.1"])
    return server, client


class TLSEcho(EchoHandler):
    """The echo server's handler, over TLS."""

    def __init__(self, sock, map, context, timeout=None):
        EchoHandler.__init__(self, sock, map=map)
        self.start_tls(context, server_side=True, timeout=timeout)


class Collector(DispatcherWithSend):
    """A TLS client: sends ``chunks`` once the handshake is done, collects ``expect`` bytes,
    then closes (with close_notify)."""

    recv_size = 65536

    def __init__(self, sock, map, context, chunks=(), expect=0, hostname="localhost"):
        DispatcherWithSend.__init__(self, sock, map)
        self.chunks = list(chunks)
        self.expect = expect
        self.received = bytearray()
        self.ready = False
        self.errors = []
        self.eof = False
        self.start_tls(context, server_hostname=hostname)

    def handle_tls_ready(self):
        self.ready = True
        for chunk in self.chunks:
            self.send(chunk)

    def handle_tls_error(self, exc, handshake):
        self.errors.append(exc)

    def handle_read(self):
        data = self.recv(self.recv_size)
        self.received += data
        if self.expect and len(self.received) >= self.expect:
            self.close()

    def handle_eof(self):
        self.eof = True
        self.close()

    def handle_close(self):
        self.close()


@given(data=st.data(), send_limit=st.sampled_from([None, 97, 1000, 4096]),
       read_size=st.sampled_from([1, 5, 517, 16 << 10, 128 << 10]),
       write_size=st.sampled_from([1000, 16 << 10, 128 << 10]),
       size=st.sampled_from([1, 3000, 70000]))
def test_echo_whatever_the_cuts(contexts, data, send_limit, read_size, write_size, size):
    server_ctx, client_ctx = contexts
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    chunks = data.draw(chunkings(payload) if size < 5000 else st.just([payload[:size // 3],
                                                                      payload[size // 3:]]))
    pair = connect_pair(lambda s, m: TLSEcho(s, m, server_ctx),
                        lambda s, m: Collector(s, m, client_ctx, chunks, len(payload)),
                        send_limit=send_limit, buffer_size=8192)
    for channel in (pair.server, pair.client):
        channel.socket.read_size = read_size
        channel.socket.write_size = write_size
    pair.pump(lambda: not pair.client.connected and not pair.server.connected,
              max_passes=200_000)
    assert bytes(pair.client.received) == payload
    assert pair.client.ready and not pair.client.errors


class SlowReader(AsyncChat):
    """Reads ``step`` bytes a time and pauses reading after each line until a timer resumes
    it: whatever the TLS layer holds must reach it without the socket becoming readable."""

    ac_in_buffer_size = 7

    def __init__(self, sock, map, context):
        AsyncChat.__init__(self, sock, map)
        self.set_terminator(b"\n")
        self.lines = []
        self.part = []
        self.start_tls(context, server_side=True)

    def collect_incoming_data(self, data):
        self.part.append(data)

    def found_terminator(self):
        self.lines.append(b"".join(self.part))
        self.part = []
        self.pause_reading()
        self.call_later(1.0, self.resume_reading)

    def handle_close(self):
        self.close()


def test_decrypted_input_is_never_stranded(contexts):
    server_ctx, client_ctx = contexts
    lines = [b"line %d " % i + b"x" * (i * 37) for i in range(40)]
    pair = connect_pair(lambda s, m: SlowReader(s, m, server_ctx),
                        lambda s, m: Collector(s, m, client_ctx, [b"\n".join(lines) + b"\n"]))
    pair.pump(lambda: len(pair.server.lines) == len(lines), max_passes=100_000)
    assert pair.server.lines == lines
    # It all came in a few socket reads: the rest was delivered from the layer.
    assert pair.server.socket.pending() == 0


def test_a_stalled_handshake_ends_at_its_timeout(contexts):
    server_ctx, _ = contexts
    reactor = memory_reactor()
    pair = connect_pair(lambda s, m: TLSEcho(s, m, server_ctx, timeout=10.0),
                        lambda s, m: Dispatcher(s, m), reactor=reactor)
    start = reactor.clock()
    pair.pump(lambda: not pair.server.connected)
    assert reactor.clock() - start == pytest.approx(10.0)


def test_wrong_ca_fails_on_both_sides_with_a_clear_line(pki, contexts, caplog):
    server_ctx, _ = contexts
    wrong = client_context(pki["other_ca"])
    pair = connect_pair(lambda s, m: TLSEcho(s, m, server_ctx),
                        lambda s, m: Collector(s, m, wrong, [b"hi"]))
    with caplog.at_level(logging.INFO, "eventloop"):
        pair.pump(lambda: not pair.client.connected and not pair.server.connected)
    [error] = pair.client.errors
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert not pair.client.ready and not pair.client.received
    assert any("TLS handshake failed with" in r.getMessage() for r in caplog.records)


def test_sni_and_alpn_are_negotiated(pki):
    seen = []
    server_ctx = server_context(pki["cert"], pki["key"], alpn=["h2", "http/1.1"])
    server_ctx.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    client_ctx = client_context(pki["ca"], alpn=["http/1.1"])
    pair = connect_pair(lambda s, m: TLSEcho(s, m, server_ctx),
                        lambda s, m: Collector(s, m, client_ctx, [b"ping"], 4))
    pair.pump(lambda: pair.client.received == b"ping")
    assert seen == ["localhost"]
    assert pair.client.socket.selected_alpn_protocol() == "http/1.1"
    assert pair.server.socket.selected_alpn_protocol() == "http/1.1"


class Sender(DispatcherWithSend):
    def __init__(self, sock, map, context, data, clean):
        DispatcherWithSend.__init__(self, sock, map)
        self.data = data
        self.clean = clean
        self.start_tls(context, server_side=True)

    def handle_tls_ready(self):
        self.send(self.data)
        self.call_later(0.5, self.finish)

    def finish(self):
        if self.clean:
            self.close()                # close_notify
        else:
            self.socket.raw.close()     # a peer that drops without close_notify
            self.del_channel()

    def handle_read(self):
        self.recv(100)


@pytest.mark.parametrize("clean", [True, False])
def test_close_notify_or_an_unclean_eof(contexts, clean):
    server_ctx, client_ctx = contexts
    pair = connect_pair(lambda s, m: Sender(s, m, server_ctx, b"z" * 50000, clean),
                        lambda s, m: Collector(s, m, client_ctx))
    pair.pump(lambda: pair.client.eof, max_passes=100_000)
    assert bytes(pair.client.received) == b"z" * 50000
    assert pair.client.socket.unclean_eof is (not clean)


def test_a_peer_that_never_reads_holds_back_only_a_bounded_batch(contexts):
    server_ctx, client_ctx = contexts
    big = b"q" * (4 << 20)

    class Mute(Collector):
        def readable(self):
            return False

    pair = connect_pair(lambda s, m: Sender(s, m, server_ctx, big, True),
                        lambda s, m: Mute(s, m, client_ctx), buffer_size=65536)
    pair.pump(lambda: pair.server.socket._backlog, max_passes=10_000)
    tls = pair.server.socket
    for _ in range(50):                 # nothing moves: the layer holds one batch, no more
        pair.reactor.run_once(0)
    assert 0 < len(tls._backlog) <= tls.write_size + 4096
    assert pair.server.queued_bytes > len(big) - (1 << 20)


# ------------------------------------------------------------------ real sockets
def test_real_sockets_both_ways_against_the_ssl_module(pki, contexts):
    server_ctx, _ = contexts
    reactor = Reactor()

    class Server(Listener):
        def handle_accepted(self, sock, addr):
            TLSEcho(sock, self._map, server_ctx, timeout=TIMEOUT)

    listener = Server("127.0.0.1", 0, map=reactor.map)
    payload = bytes(range(256)) * 8192          # 2 MiB, in pieces of 200,000 bytes
    ctx = ssl.create_default_context(cafile=pki["ca"])
    with reactor_thread(reactor):
        with socket.create_connection(("127.0.0.1", listener.port), TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                # (One thread: an SSLSocket may not be read and written from two at once.)
                got = bytearray()
                for start in range(0, len(payload), 200000):
                    s.sendall(payload[start:start + 200000])
                    while len(got) < min(start + 200000, len(payload)):
                        data = s.recv(1 << 20)
                        assert data
                        got += data
                assert got == payload
                assert s.version() in ("TLSv1.2", "TLSv1.3")


def test_legacy_asyncore_program_wrapping_its_own_socket(pki):
    """As pyftpdlib's TLS handlers do: the facade's dispatcher holds an ssl.SSLSocket made by
    the program, which drives its handshake from handle_read/handle_write."""
    from eventloop import asyncore
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["cert"], pki["key"])
    socket_map = {}

    class Handler(asyncore.dispatcher_with_send):
        def __init__(self, sock):
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            asyncore.dispatcher_with_send.__init__(self, sock, map=socket_map)
            self.handshaken = False

        def _handshake(self):
            try:
                self.socket.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            self.handshaken = True

        def handle_read(self):
            if not self.handshaken:
                return self._handshake()
            try:
                data = self.recv(4096)
            except ssl.SSLWantReadError:
                return
            if data:
                self.send(data.upper())

        def handle_write(self):
            if not self.handshaken:
                return self._handshake()
            asyncore.dispatcher_with_send.handle_write(self)

    class Server(asyncore.dispatcher):
        def __init__(self):
            asyncore.dispatcher.__init__(self, map=socket_map)
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.bind(("127.0.0.1", 0))
            self.listen(5)

        def handle_accepted(self, sock, addr):
            Handler(sock)

    server = Server()
    port = server.socket.getsockname()[1]
    result = []

    def client():
        c = ssl.create_default_context(cafile=pki["ca"])
        with c.wrap_socket(socket.create_connection(("127.0.0.1", port), TIMEOUT),
                           server_hostname="localhost") as s:
            s.sendall(b"hello legacy")
            result.append(s.recv(100))

    thread = threading.Thread(target=client)
    thread.start()
    import time
    deadline = time.monotonic() + TIMEOUT
    while thread.is_alive() and time.monotonic() < deadline:
        asyncore.loop(timeout=0.05, map=socket_map, count=1)
    thread.join(1)
    for channel in list(socket_map.values()):
        channel.close()
    assert result == [b"HELLO LEGACY"]


class _WriteNeedsRead:
    """An engine whose next write needs the peer first (what a renegotiation does): it raises
    SSLWantReadError once, then behaves."""

    def __init__(self, engine):
        self.engine = engine
        self.refused = 0

    def write(self, data):
        if not self.refused:
            self.refused += 1
            raise ssl.SSLWantReadError()
        return self.engine.write(data)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_a_write_that_needs_a_read_turns_interest_to_reading(contexts):
    server_ctx, client_ctx = contexts
    pair = connect_pair(lambda s, m: TLSEcho(s, m, server_ctx),
                        lambda s, m: Collector(s, m, client_ctx, [b"ping"], 8))
    pair.pump(lambda: pair.client.received == b"ping")
    tls = pair.client.socket
    tls.sslobj = _WriteNeedsRead(tls.sslobj)
    pair.client.send(b"pong")                   # refused: the write waits for a read
    assert pair.client.queued_bytes == 4
    assert tls.readable() and not tls.writable()
    # The read it waited for, as the reactor delivers it (nothing there yet: it would block).
    pair.reactor.deliver(pair.client, pair.client._fileno, READ)
    assert tls.writable()                       # so the write is tried again, and goes
    pair.pump(lambda: pair.client.received == b"pingpong")
    assert tls.sslobj.refused == 1


def test_a_silent_client_costs_no_tls_state_until_it_speaks(contexts):
    server_ctx, client_ctx = contexts
    reactor = memory_reactor()
    pair = connect_pair(lambda s, m: TLSEcho(s, m, server_ctx, timeout=10.0),
                        lambda s, m: Dispatcher(s, m), reactor=reactor)
    pair.reactor.run_once(0)
    assert pair.server.socket.sslobj is None            # no engine for a client saying nothing
    pair.client.socket.send(bytes.fromhex("160301"))    # the first bytes of a ClientHello
    pair.reactor.run_once(0)
    assert pair.server.socket.sslobj is not None and pair.server.socket.handshaking
