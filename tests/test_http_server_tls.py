"""servers.http over TLS with real clients and a CA made at test time: curl, wget, http.client,
headless Chromium, our own client; idle and stalled handshakes, failing handshakes, a peer
that drops without close_notify, a 1 GiB file with flat memory, the --tls-* command line."""
import contextlib
import hashlib
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings

import pytest

from launchers import ROOT, TIMEOUT, read_until, wait_for

BANNER = rb"Serving HTTPS on 127\.0\.0\.1 port (\d+) \(https://127\.0\.0\.1:\d+/\)"


@contextlib.contextmanager
def https_server(pki, directory, *args, banner=BANNER):
    """``python -m servers.http 0 -b 127.0.0.1 --tls-cert ... --tls-key ...``: yields
    ``(port, process, log)`` where ``log()`` is what it wrote to stderr so far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "servers.http", "0", "-b", "127.0.0.1", "-d", str(directory),
         "--tls-cert", pki["cert"], "--tls-key", pki["key"], *args],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = bytearray()
    try:
        port = int(read_until(proc.stderr, banner).group(1))
        reader = threading.Thread(target=lambda: [lines.extend(chunk) for chunk in
                                                  iter(lambda: os.read(proc.stderr.fileno(),
                                                                       65536), b"")],
                                  daemon=True)
        reader.start()
        yield port, proc, lambda: bytes(lines).decode("utf-8", "replace")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(TIMEOUT)
    assert "Traceback" not in bytes(lines).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "hello.txt").write_bytes(b"hello over TLS\n")
    (root / "digits.txt").write_bytes(b"0123456789" * 100)
    (root / "sub").mkdir()
    (root / "sub" / "page.html").write_text("<h1>page</h1>")
    with open(root / "huge.bin", "wb") as f:
        f.truncate(1 << 30)
    (root / "random.bin").write_bytes(os.urandom(6 << 20))
    return root


def _raise_descriptor_limit(wanted=4096):
    """Raise this process's soft descriptor limit towards ``wanted`` (the server started after
    inherits it; a fresh machine's default, 1,024, is too few for 1,000 idle clients)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture(scope="module")
def served(pki, site):
    _raise_descriptor_limit()
    with https_server(pki, site, "--head-timeout", "2") as server:
        yield server


def curl(*args, check=True):
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60, check=check)


# ------------------------------------------------------------------------ real clients
def test_curl_get_head_range_keepalive(pki, served):
    port = served[0]
    base = "https://localhost:%d" % port
    out = curl("--cacert", pki["ca"], "-v", base + "/hello.txt", base + "/digits.txt")
    assert out.stdout == b"hello over TLS\n" + b"0123456789" * 100
    err = out.stderr.decode()
    assert "ALPN: server accepted http/1.1" in err or "ALPN, server accepted" in err
    assert re.search(r"Re-using existing connection|Reusing existing connection", err)
    head = curl("--cacert", pki["ca"], "-I", base + "/digits.txt").stdout
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 1000\r\n" in head
    ranged = curl("--cacert", pki["ca"], "-r", "10-14", "-i", base + "/digits.txt").stdout
    assert ranged.startswith(b"HTTP/1.1 206") and ranged.endswith(b"\r\n\r\n01234")


def test_wget(pki, served, tmp_path):
    if shutil.which("wget") is None:
        pytest.fail("wget is not installed (.ci/run installs it)")
    subprocess.run(["wget", "-q", "--ca-certificate", pki["ca"], "-O", str(tmp_path / "got"),
                    "https://localhost:%d/hello.txt" % served[0]], check=True, timeout=60)
    assert (tmp_path / "got").read_bytes() == b"hello over TLS\n"


def test_http_client_keepalive_tls12_and_alpn(pki, served):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_alpn_protocols(["http/1.1"])
        conn = http.client.HTTPSConnection("localhost", served[0], context=ctx, timeout=TIMEOUT)
        try:
            for _ in range(3):
                conn.request("GET", "/hello.txt")
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, b"hello over TLS\n")
            assert conn.sock.version() == version.name.replace("v1_", "v1.")
            assert conn.sock.selected_alpn_protocol() == "http/1.1"
        finally:
            conn.close()


def test_tls_older_than_1_2_is_refused(pki, served):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.fail("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", served[0]), TIMEOUT) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(raw, server_hostname="localhost")


def test_our_own_client(pki, served):
    out = subprocess.run([sys.executable, "-m", "clients.http", "--cacert", pki["ca"], "-s",
                          "https://localhost:%d/sub/page.html" % served[0]],
                         cwd=ROOT, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"<h1>page</h1>"


def test_headless_chromium_loads_a_listing(served, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "listing.png"
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
         "--user-data-dir=%s" % (tmp_path / "profile"), "--screenshot=%s" % shot,
         "--window-size=800,600", "https://127.0.0.1:%d/" % served[0]],
        capture_output=True, timeout=90)
    assert shot.exists() and shot.stat().st_size > 1000, out.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wait_for(lambda: re.search(r'"GET / HTTP/1\.1" 200', served[2]()))


# ------------------------------------------------------------- nobody waits for anybody
def test_idle_and_stalled_handshakes_delay_nobody(pki, served):
    """1,000 TCP clients that never say hello and one that stops mid-ClientHello: a client
    is served at once meanwhile, and the head timeout (2 s here) ends every one of them."""
    port = served[0]
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert soft == resource.RLIM_INFINITY or soft >= 1200, "too few descriptors: %d" % soft
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", port), TIMEOUT))
        stalled = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        idle.append(stalled)
        stalled.sendall(bytes.fromhex("160301020001") + b"\x00" * 40)   # half a ClientHello
        started = time.monotonic()
        out = curl("--cacert", pki["ca"], "https://localhost:%d/hello.txt" % port)
        assert out.stdout == b"hello over TLS\n"
        assert time.monotonic() - started < 1.5
        for sock in idle:
            sock.settimeout(TIMEOUT)
            assert sock.recv(100) == b""           # closed by the server at its head timeout
        assert time.monotonic() - started < 2 + TIMEOUT
    finally:
        for sock in idle:
            sock.close()


def test_failing_handshakes_are_one_clear_line_each(pki, served):
    port = served[0]
    out = curl("--cacert", pki["other_ca"], "https://localhost:%d/hello.txt" % port,
               check=False)
    assert out.returncode == 60, out                 # curl: the peer's certificate is not trusted
    plain = curl("-i", "http://127.0.0.1:%d/hello.txt" % port, check=False)
    assert plain.returncode == 0, plain          # a plain answer that says what went wrong
    assert plain.stdout.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert plain.stdout.endswith(b"This port speaks HTTPS: ask for https:// instead of http://\n")
    assert curl("--cacert", pki["ca"], "https://localhost:%d/hello.txt" % port).stdout \
        == b"hello over TLS\n"
    wait_for(lambda: "a plain HTTP request on the TLS port" in served[2]())
    wait_for(lambda: re.search(r"TLS handshake failed with 127\.0\.0\.1:\d+: .*unknown ca",
                               served[2]()))


def _tls(port, pki, version=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if version is not None:
        ctx.maximum_version = version
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), TIMEOUT),
                           server_hostname="localhost")


def test_peer_dropping_without_close_notify_mid_body(pki, served):
    port = served[0]
    # Mid request body: a PUT of 100,000 bytes cut after 10,000, the TCP socket closed (TLS
    # 1.2: no session ticket follows the handshake, so nothing unread turns the FIN into a RST).
    s = _tls(port, pki, ssl.TLSVersion.TLSv1_2)
    s.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"b" * 10000)
    os.close(s.detach())
    # Mid response body: the 1 GiB file, a few KiB read, then the TCP socket closed.
    s = _tls(port, pki)
    s.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    os.close(s.detach())
    assert curl("--cacert", pki["ca"], "https://localhost:%d/hello.txt" % port).stdout \
        == b"hello over TLS\n"
    # The cut body was refused (4xx: before it, or because it ended early), no traceback.
    wait_for(lambda: re.search(r'"PUT /x HTTP/1.1" 4\d\d', served[2]()))


def test_parallel_downloads_of_one_cached_file_are_exact(pki, served, site):
    """Several connections read one file through the descriptor the file cache shares (no
    sendfile over TLS): each gets every byte in its place."""
    want = hashlib.sha256((site / "random.bin").read_bytes()).hexdigest()
    downloads = [subprocess.Popen(["curl", "-sS", "--cacert", pki["ca"],
                                   "https://localhost:%d/random.bin" % served[0]],
                                  stdout=subprocess.PIPE) for _ in range(4)]
    for download in downloads:
        body, _ = download.communicate(timeout=60)
        assert hashlib.sha256(body).hexdigest() == want


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_1_gib_file_over_tls_in_flat_memory(pki, served):
    port, proc, _ = served
    before = peak = _rss_kib(proc.pid)
    download = subprocess.Popen(["curl", "-sS", "--cacert", pki["ca"], "-o", os.devnull,
                                 "-w", "%{size_download}", "https://localhost:%d/huge.bin" % port],
                                stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while download.poll() is None:
        peak = max(peak, _rss_kib(proc.pid))
        assert time.monotonic() < deadline, "the download is too slow"
        time.sleep(0.05)
    assert int(download.stdout.read()) == 1 << 30
    download.stdout.close()
    assert peak - before < 16 * 1024, "RSS grew by %d KiB" % (peak - before)


def test_http_1_0_with_p_closes_after_each_response(pki, site):
    with https_server(pki, site, "-p", "HTTP/1.0") as (port, _, _):
        base = "https://localhost:%d" % port
        out = curl("--cacert", pki["ca"], "-i", "-v", base + "/hello.txt", base + "/hello.txt")
        assert out.stdout.count(b"HTTP/1.0 200 OK\r\n") == 2
        assert out.stdout.endswith(b"hello over TLS\n")
        assert not re.search(r"Re-using existing connection|Reusing existing connection",
                             out.stderr.decode())


def test_with_workers(pki, site):
    banner = rb"Serving HTTPS on 127\.0\.0\.1 port (\d+)"
    with https_server(pki, site, "--workers", "2", banner=banner) as (port, _, _):
        for _ in range(4):
            out = curl("--cacert", pki["ca"], "-H", "Connection: close",
                       "https://localhost:%d/hello.txt" % port)
            assert out.stdout == b"hello over TLS\n"


# ------------------------------------------------------------------------ the command line
def _main(*args):
    return subprocess.run([sys.executable, "-m", "servers.http", "0", "-b", "127.0.0.1", *args],
                          cwd=ROOT, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, message", [
    (["--tls-key", "k.pem"], "--tls-key requires --tls-cert to be set"),
    (["--tls-password-file", "p"], "--tls-password-file requires --tls-cert to be set"),
])
def test_tls_options_that_need_a_certificate(args, message):
    out = _main(*args)
    assert out.returncode == 2
    assert out.stderr.decode().strip().endswith("error: " + message)


def test_unusable_tls_files_are_usage_errors(pki, tmp_path):
    out = _main("--tls-cert", str(tmp_path / "missing.pem"))
    assert out.returncode == 2 and b"cannot use the TLS certificate" in out.stderr
    assert b"Traceback" not in out.stderr
    out = _main("--tls-cert", pki["cert"], "--tls-key", pki["encrypted_key"],
                "--tls-password-file", str(tmp_path / "nope.txt"))
    assert out.returncode == 2 and b"failed to read TLS password file" in out.stderr
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the password")
    out = _main("--tls-cert", pki["cert"], "--tls-key", pki["encrypted_key"],
                "--tls-password-file", str(wrong))
    assert out.returncode == 2 and b"cannot use the TLS certificate" in out.stderr


@pytest.mark.parametrize("files", ["combined", "encrypted"])
def test_key_in_the_cert_file_or_encrypted_with_a_password_file(pki, site, files):
    if files == "combined":
        args = ["--tls-cert", pki["combined"]]
    else:
        args = ["--tls-cert", pki["cert"], "--tls-key", pki["encrypted_key"],
                "--tls-password-file", pki["password_file"]]
    proc = subprocess.Popen([sys.executable, "-m", "servers.http", "0", "-b", "127.0.0.1",
                             "-d", str(site), *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = int(read_until(proc.stderr, BANNER).group(1))
        assert curl("--cacert", pki["ca"], "https://localhost:%d/hello.txt" % port).stdout \
            == b"hello over TLS\n"
    finally:
        proc.send_signal(signal.SIGINT)
        assert b"Traceback" not in proc.communicate(timeout=TIMEOUT)[1]
