"""The README's code examples, run as written (so the README stays true)."""
import contextlib
import os
import re
import socket

from hypothesis import given, strategies as st

import eventloop
from eventloop.testing import chunkings, drive
from launchers import reactor_thread
from servers.echo import EchoHandler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@given(st.data())
def test_echo_returns_every_chunking(data):
    payload = data.draw(st.binary(max_size=2000))
    chunks = data.draw(chunkings(payload))
    transcript = drive(lambda sock, map: EchoHandler(sock, map), chunks)
    assert transcript.sent == payload


def _first_python_block():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@contextlib.contextmanager
def _served_by_a_private_reactor():
    """A new reactor as the default one (the README's examples use the default); yields
    ``start()``, which runs it in a thread until the ``with`` block ends."""
    reactor = eventloop.Reactor()
    old = eventloop.set_reactor(reactor)
    try:
        with contextlib.ExitStack() as stack:
            yield lambda: stack.enter_context(reactor_thread(reactor))
    finally:
        eventloop.set_reactor(old)
        for ch in list(reactor.map.values()):
            ch.close()
        reactor.close()


def test_first_reactor_program_echoes():
    """The README's first example, on an ephemeral port and a private reactor."""
    code = _first_python_block()
    assert "class EchoServer(eventloop.Dispatcher)" in code
    code = code.replace("EchoServer(8007)\neventloop.loop()", "")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    with _served_by_a_private_reactor() as start:
        server = namespace["EchoServer"](0)
        port = server.socket.getsockname()[1]
        start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"hello")
            assert c.recv(100) == b"hello"


def test_echo_over_tls_example(pki):
    """The TLS section's echo server, with the test CA's certificate, on an ephemeral port."""
    import ssl
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    [code] = [b for b in blocks if "class TLSEchoServer(Listener)" in b]
    assert 'TLSEchoServer("127.0.0.1", 8443)\neventloop.loop()' in code
    code = code.replace('TLSEchoServer("127.0.0.1", 8443)\neventloop.loop()', "")
    code = code.replace('"cert.pem"', repr(pki["cert"])).replace('"key.pem"', repr(pki["key"]))
    with _served_by_a_private_reactor() as start:
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
        server = namespace["TLSEchoServer"]("127.0.0.1", 0)
        start()
        context = ssl.create_default_context(cafile=pki["ca"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as c:
                c.sendall(b"hello over TLS")
                assert c.recv(100) == b"hello over TLS"
