"""HTTPS: a CA and a server certificate made at test time, a local TLS server in a thread,
never the network.  Verification with and without the CA, --insecure, SNI, the non-blocking
handshake and its timeout, TLS keep-alive, uploads larger than the socket buffers, and data
left decrypted inside the TLS object."""
import datetime
import hashlib
import http.server
import io
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from clients.http import AsyncHTTP, FetchError, fetch, make_ssl_context
from eventloop import TLSSocket
from clients.http.__main__ import main
from clients.http.bodies import FileBody
from test_http_client import CheckingConsumer, drive, reactor  # noqa: F401  (fixture)

BIG = bytes(range(256)) * 80        # 20 KiB: more than one TLS record



def _name(common_name):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pki_with_cryptography(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder()
               .subject_name(_name("eventloop test CA")).issuer_name(_name("eventloop test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def _pki_with_openssl(folder):
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("genpkey", *ec, "-out", "ca.key")
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=eventloop test CA",
            "-days", "7", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("genpkey", *ec, "-out", "server.key")
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr")
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth\n"
                                    "authorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "7", "-out", "server.crt", "-extfile", "ext.cnf")
    (folder / "server.pem").write_bytes((folder / "server.crt").read_bytes()
                                        + (folder / "server.key").read_bytes())


@pytest.fixture(scope="module", params=["cryptography", "openssl"])
def pki(request, tmp_path_factory):
    """A CA, and a certificate for DNS name 'localhost' (no IP address) signed by it, made with
    the ``cryptography`` package or else the openssl command."""
    folder = tmp_path_factory.mktemp("pki")
    if request.param == "cryptography":
        pytest.importorskip("cryptography.x509")
        _pki_with_cryptography(folder)
    else:
        if shutil.which("openssl") is None:
            pytest.skip("the openssl command is not installed")
        _pki_with_openssl(folder)
    return {"ca": str(folder / "ca.pem"), "cert": str(folder / "server.pem")}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, Content-Length framing

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = BIG if self.path == "/big" else b"secure hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)        # one write: the body ends inside a TLS record

    def do_PUT(self):
        """Answers with the SHA-256 of the body, read once UPLOAD_GATE opens."""
        UPLOAD_GATE.wait(10)
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while left:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                break
            digest.update(piece)
            left -= len(piece)
        body = digest.hexdigest().encode("ascii")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


UPLOAD_GATE = threading.Event()


class TLSServer(http.server.ThreadingHTTPServer):
    """http.server over TLS; the handshake runs in each connection's thread and is counted,
    and the SNI names clients send are recorded."""

    daemon_threads = True

    def __init__(self, certfile):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile)
        self.context.sni_callback = lambda sslobj, name, ctx: self.server_names.append(name)
        self.server_names = []
        self.handshakes = 0
        self.failed_handshakes = 0

    def finish_request(self, request, client_address):
        request.settimeout(5)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.failed_handshakes += 1
            return
        self.handshakes += 1
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except OSError:
            pass
        finally:
            tls.close()


@pytest.fixture(scope="module")
def tls_server(pki):
    server = TLSServer(pki["cert"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = lambda path="/", host="localhost": "https://%s:%d%s" % (
        host, server.server_address[1], path)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_verified_with_cafile_and_sni_sent(reactor, pki, tls_server):
    before = len(tls_server.server_names)
    c = CheckingConsumer()
    AsyncHTTP(tls_server.url(), c, reactor=reactor, ssl_context=make_ssl_context(pki["ca"]))
    drive(reactor)
    assert c.check().body == b"secure hello\n" and c.error is None
    assert c.status == ("HTTP/1.1", 200, "OK")
    assert tls_server.server_names[before:] == ["localhost"]
    assert fetch(tls_server.url(), cafile=pki["ca"]).body == b"secure hello\n"


def test_rejected_without_the_ca(reactor, tls_server):
    c = CheckingConsumer()
    AsyncHTTP(tls_server.url(), c, reactor=reactor)     # the system store does not know our CA
    drive(reactor)
    assert c.check().status is None
    assert c.error.startswith("TLS certificate verification failed for localhost: ")
    assert "unable to get local issuer certificate" in c.error
    assert "CERTIFICATE_VERIFY_FAILED" in c.error


def test_hostname_mismatch_is_rejected(pki, tls_server):
    with pytest.raises(FetchError) as info:
        fetch(tls_server.url(host="127.0.0.1"), cafile=pki["ca"])
    assert "IP address mismatch" in info.value.reason


def test_insecure_skips_verification(tls_server):
    r = fetch(tls_server.url("/big", host="127.0.0.1"), insecure=True)
    assert r.body == BIG


def test_keep_alive_over_tls(reactor, pki, tls_server):
    context = make_ssl_context(pki["ca"])
    seen = []
    before = tls_server.handshakes

    def chain(i):
        if i < 3:
            AsyncHTTP(tls_server.url("/big"), CheckingConsumer(
                on_header=lambda request: seen.append(request.reused),
                on_close=lambda: chain(i + 1)), reactor=reactor, ssl_context=context)

    chain(0)
    drive(reactor)
    assert seen == [False, True, True]
    assert tls_server.handshakes - before == 1


UPLOAD = bytes(range(256)) * (32 << 10)     # 8 MiB: more than the socket buffers take


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "FileBody"])
def test_an_upload_larger_than_the_socket_buffers(reactor, pki, tls_server, tmp_path,
                                                  monkeypatch, streamed):
    # The server reads nothing until a send could not be made: the TLS layer took nothing
    # (BlockingIOError), the output queue kept the bytes and waited for write readiness; then
    # the whole body arrives, in order.
    refused = []
    layer_send = TLSSocket.send

    def counting_send(self, data, flags=0):
        try:
            return layer_send(self, data, flags)
        except BlockingIOError:
            if not self.handshaking:
                refused.append(len(data))
                UPLOAD_GATE.set()
            raise

    UPLOAD_GATE.clear()

    monkeypatch.setattr(TLSSocket, "send", counting_send)
    body = UPLOAD
    if streamed:
        (tmp_path / "upload").write_bytes(UPLOAD)
        body = FileBody([tmp_path / "upload"])
    c = CheckingConsumer()
    AsyncHTTP(tls_server.url("/upload"), c, "PUT", body=body, reactor=reactor,
              ssl_context=make_ssl_context(pki["ca"]))
    drive(reactor, limit=30)
    assert c.check().error is None
    assert c.body == hashlib.sha256(UPLOAD).hexdigest().encode("ascii")
    assert refused, "the kernel took every send: the test did not fill the buffers"


def test_decrypted_bytes_pending_in_the_tls_object_are_read(reactor, pki, tls_server,
                                                            monkeypatch):
    # Small reads leave the rest of what arrived inside the TLS layer (decrypted, or not yet),
    # where the poller cannot see it; the keep-alive server sends no EOF to wake the client up.
    monkeypatch.setattr(AsyncHTTP, "recv_size", 1000)
    c = CheckingConsumer()
    started = time.monotonic()
    AsyncHTTP(tls_server.url("/big"), c, reactor=reactor, timeout=3,
              ssl_context=make_ssl_context(pki["ca"]))
    drive(reactor)
    assert c.check().body == BIG and c.error is None
    assert time.monotonic() - started < 2


def test_handshake_timeout(reactor):
    listener = socket.socket()          # the kernel completes TCP connects; nobody speaks TLS
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        c = CheckingConsumer()
        AsyncHTTP("https://localhost:%d/" % listener.getsockname()[1], c, reactor=reactor,
                  timeout=0.3)
        drive(reactor)
        assert c.check().status is None
        assert c.error == "timed out in the TLS handshake with localhost:%d after 0.3s" % (
            listener.getsockname()[1])
    finally:
        listener.close()


def test_plain_http_server_on_the_https_port(reactor, tls_server):
    # A server that answers the ClientHello with plain text: a handshake error, not a hang.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        c = CheckingConsumer()
        AsyncHTTP("https://localhost:%d/" % listener.getsockname()[1], c, reactor=reactor,
                  timeout=3)
        drive(reactor)
        assert c.check().status is None
        assert c.error.startswith("TLS handshake with localhost failed: ")
    finally:
        thread.join(5)
        listener.close()


def test_cli_cafile_insecure_and_rejection(pki, tls_server):
    out, err = io.BytesIO(), io.StringIO()
    assert main(["--cafile", pki["ca"], tls_server.url()], stdout=out, stderr=err) == 0
    assert out.getvalue() == b"secure hello\n" and err.getvalue() == ""
    out, err = io.BytesIO(), io.StringIO()
    assert main(["-k", tls_server.url("/big")], stdout=out, stderr=err) == 0
    assert out.getvalue() == BIG
    out, err = io.BytesIO(), io.StringIO()
    assert main([tls_server.url()], stdout=out, stderr=err) == 60     # curl's: not trusted
    assert out.getvalue() == b""
    assert err.getvalue() == (
        "python -m clients.http: %s: TLS certificate verification failed for localhost: "
        "unable to get local issuer certificate (CERTIFICATE_VERIFY_FAILED)\n" % tls_server.url())


@pytest.mark.parametrize("clean", [True, False], ids=["close_notify", "no_close_notify"])
def test_a_body_framed_by_the_close_needs_close_notify(reactor, pki, clean):
    """A response without Content-Length ends at the close: over TLS only close_notify tells
    the end from a cut (an attacker can forge a TCP FIN, not a close_notify)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"])
    listener = socket.create_server(("127.0.0.1", 0))

    def answer():
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BIG)
            if clean:
                tls.unwrap().close()
            # else: the socket is closed without close_notify

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        c = CheckingConsumer()
        request = AsyncHTTP("https://localhost:%d/" % listener.getsockname()[1], c,
                            reactor=reactor, timeout=3, ssl_context=make_ssl_context(pki["ca"]))
        drive(reactor)
        c.check()
        if clean:
            assert c.error is None and c.body == BIG
        else:
            assert c.error == ("connection closed without TLS close_notify after %d body bytes: "
                               "the body (framed by the close) may be truncated" % len(BIG))
            assert request.failure == "partial"
    finally:
        thread.join(5)
        listener.close()
