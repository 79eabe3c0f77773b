"""``python -m clients.http`` over TLS, against curl: ``--cacert``, ``--capath``, ``-k``, exit
35 (handshake) and 60 (certificate), ``-v``'s TLS lines, and https through a ``CONNECT`` proxy
(``-x``, ``https_proxy``).  The CA and the server are test_http_client_tls.py's (made at
test time, with the cryptography package and with openssl)."""
import shutil
import socket
import subprocess
import threading

import pytest

from curl_oracle import CURL, UA, ForwardProxy, run_curl, run_ours
from test_http_client_tls import pki, tls_server as tls  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(CURL is None or shutil.which("openssl") is None,
                                reason="curl is the oracle, openssl makes the CA")


@pytest.fixture(scope="module")
def capath(pki, tmp_path_factory):
    """A directory with the CA under its hashed name (what --capath reads)."""
    hashed = tmp_path_factory.mktemp("capath")
    shutil.copy(pki["ca"], hashed / "ca.pem")
    subprocess.run(["openssl", "rehash", str(hashed)], check=True, capture_output=True,
                   timeout=60)
    return str(hashed)


@pytest.fixture(scope="module")
def proxy():
    server = ForwardProxy()
    yield server
    server.stop()


def both(args, env=None):
    return run_curl(args, env=env), run_ours(args, env=env)


def assert_same(curl, ours):
    assert (ours.code, ours.out) == (curl.code, curl.out), (curl.err, ours.err)


@pytest.mark.parametrize("flags, host, code", [
    (["--cacert", "{ca}"], "localhost", 0), (["--capath", "{capath}"], "localhost", 0),
    (["--cafile", "{ca}"], "localhost", 0), ([], "localhost", 60),
    (["--cacert", "{ca}"], "127.0.0.1", 60), (["-k"], "127.0.0.1", 0),
    (["-k", "--cacert", "{ca}"], "127.0.0.1", 0)])
def test_verification(pki, capath, tls, flags, host, code):
    # (%{ssl_verify_result} is not compared: ours is always 0.)
    ours_flags = [f.format(capath=capath, **pki) for f in flags]
    curl_flags = ["--cacert" if f == "--cafile" else f for f in ours_flags]
    fmt = ["-s", "-w", " %{http_code}", "-A", UA]
    curl = run_curl(fmt + curl_flags + [tls.url("/big", host)])
    ours = run_ours(fmt + ours_flags + [tls.url("/big", host)])
    assert_same(curl, ours)
    assert ours.code == code


def test_bad_ca_file(tmp_path, tls):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    for path in (str(tmp_path / "junk.pem"), str(tmp_path / "missing.pem")):
        curl, ours = both(["-s", "--cacert", path, tls.url()])
        assert (ours.code, ours.out) == (curl.code, curl.out) == (77, b"")


def _answer_once(answer):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        for _ in range(2):                  # one connection for curl, one for ours
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(4096)
                    conn.sendall(answer)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("answer", [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", b""])
def test_handshake_failures(answer):
    listener, thread = _answer_once(answer)
    try:
        url = "https://localhost:%d/" % listener.getsockname()[1]
        curl, ours = both(["-s", url])
        assert_same(curl, ours)
        assert ours.code == 35
    finally:
        listener.close()
        thread.join(5)


def test_verbose_tls_and_times(pki, tls):
    ours = run_ours(["-v", "-o", "/dev/null", "--cacert", pki["ca"], "-w",
                     "%{time_connect} %{time_appconnect} %{time_pretransfer}", tls.url()])
    assert ours.code == 0
    lines = ours.err.splitlines()
    assert any(line.startswith("* SSL connection using TLSv1.") for line in lines)
    assert "*  subject: commonName=localhost" in lines
    assert "*  SSL certificate verify ok." in lines
    connect, appconnect, pretransfer = map(float, ours.out.split())
    assert 0 < connect <= appconnect <= pretransfer


def test_https_through_a_connect_proxy(pki, tls, proxy):
    for flags, env in ((["-x", proxy.url("")], None), ([], {"https_proxy": proxy.url("")}),
                       ([], {"HTTPS_PROXY": proxy.url("")})):
        proxy.seen.clear()
        curl, ours = both(["-s", "--cacert", pki["ca"], "-w", " %{http_connect}"] + flags
                          + [tls.url("/big")], env=env)
        assert_same(curl, ours)
        assert ours.code == 0 and ours.out.endswith(b" 200")
        authority = "localhost:%d" % tls.server_address[1]
        assert [(method, target) for method, target, _, _ in proxy.seen] == [
            ("CONNECT", authority)] * 2


def test_proxy_credentials_and_verbose(pki, tls, proxy):
    proxy.seen.clear()
    ours = run_ours(["-v", "-o", "/dev/null", "--cacert", pki["ca"], "-x",
                     "http://user:pw@" + proxy.url("").split("//")[1], tls.url()])
    assert ours.code == 0
    assert proxy.seen[0][3] == "Basic dXNlcjpwdw=="
    lines = ours.err.splitlines()
    at = lines.index("> CONNECT localhost:%d HTTP/1.1" % tls.server_address[1])
    assert lines[at - 1].startswith("* Establish HTTP proxy tunnel to localhost:")
    assert "< HTTP/1.1 200 Connection established" in lines
    assert "* CONNECT tunnel established, response 200" in lines


def test_a_refused_tunnel(pki, tls):
    refusing = ForwardProxy(refuse=True)
    try:
        curl, ours = both(["-s", "--cacert", pki["ca"], "-w", "%{http_connect}", "-x",
                           refusing.url(""), tls.url()])
        assert_same(curl, ours)
        assert (ours.code, ours.out) == (56, b"403")
    finally:
        refusing.stop()
