"""``python -m servers.wsgi MODULE:CALLABLE``, as a process: what cannot be loaded is one line
on stderr and exit status 2; ``--call``; the access log line per request and ``-q``;
``--url-prefix``; ``--workers`` (pre-forked, ``wsgi.multiprocess``); ``--threads 0``;
``--max-body``; ``--tls-cert`` (HTTPS, ``wsgi.url_scheme`` https).
"""
import http.client
import json
import ssl
import subprocess
import sys

import pytest

from launchers import ROOT, read_until, server_process

BANNER = rb"port (\d+) \(http"
TIMEOUT = 10.0


def run(*args):
    return subprocess.run([sys.executable, "-m", "servers.wsgi", *args], cwd=ROOT,
                          capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("spec, message", [
    ("tests.no_such_module:app", b"cannot import 'tests.no_such_module': no such module"),
    ("tests.wsgi_apps:nope", b"module 'tests.wsgi_apps' has no attribute 'nope'"),
    ("tests.wsgi_apps:not_callable", b"tests.wsgi_apps:not_callable is not callable (int)"),
    ("tests.wsgi_apps", b"is not MODULE:CALLABLE"),
    ("tests.wsgi_apps:hello --call", b"tests.wsgi_apps:hello() failed"),
])
def test_what_cannot_be_loaded_is_one_line_and_exit_2(spec, message):
    result = run(*spec.split())
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"python -m servers.wsgi: error: ")
    assert message in lines[0]


def test_an_import_that_fails_inside_the_module_says_why():
    result = run("tests.wsgi_broken_module:app")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert b"ZeroDivisionError" in result.stderr


def fetch(port, path, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_serves_with_an_access_log_line_per_request():
    proc = subprocess.Popen([sys.executable, "-m", "servers.wsgi", "tests.wsgi_apps:hello", "0",
                             "-b", "127.0.0.1"], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        port = int(read_until(proc.stderr, BANNER).group(1))
        assert fetch(port, "/some/where?x=1") == (200, b"Hello, world!\n")
        read_until(proc.stderr, rb'127\.0\.0\.1 - - \[[^]]+\] "GET /some/where\?x=1 HTTP/1\.1" 200 14')
    finally:
        proc.terminate()
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0


def test_quiet_call_prefix_threads_0_and_max_body():
    with server_process("servers.wsgi", "--call", "-q", "--threads", "0", "--url-prefix", "/app",
                        "--max-body", "1K", banner=BANNER,
                        first=["tests.wsgi_apps:make_factory"]) as port:
        assert fetch(port, "/app/x") == (200, b"Hello, world!\n")
        assert fetch(port, "/x")[0] == 404
        assert fetch(port, "/app/x", "POST", b"y" * 1025)[0] == 413


def test_workers_share_the_port_and_say_multiprocess():
    proc = subprocess.Popen([sys.executable, "-m", "servers.wsgi", "tests.wsgi_apps:echo_environ",
                             "0", "-b", "127.0.0.1", "--workers", "2", "-q"], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        port = int(read_until(proc.stderr, BANNER).group(1))
        read_until(proc.stderr, rb"worker \d+ started(.|\n)*worker \d+ started")
        env = json.loads(fetch(port, "/")[1])
        assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is True
    finally:
        proc.terminate()
        err = proc.communicate(timeout=TIMEOUT)[1]
    assert proc.returncode == 0 and b"Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--threads", "-1"], b"--threads must not be negative"),
    (["--url-prefix", "app"], b"--url-prefix must start with /"),
    (["--max-body", "lots"], b"not a size"),
    (["--workers", "0"], b"not a number of workers"),
])
def test_bad_options_are_usage_errors(args, message):
    result = run("tests.wsgi_apps:hello", *args)
    assert result.returncode == 2 and message in result.stderr


def test_tls_cert_serves_https_with_url_scheme_https(pki):
    proc = subprocess.Popen([sys.executable, "-m", "servers.wsgi", "tests.wsgi_apps:echo_environ",
                             "0", "-b", "127.0.0.1", "-q", "--tls-cert", pki["cert"],
                             "--tls-key", pki["key"]], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        port = int(read_until(proc.stderr, rb"Serving HTTPS on 127\.0\.0\.1 port (\d+) "
                                           rb"\(https://").group(1))
        context = ssl.create_default_context(cafile=pki["ca"])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=context)
        try:
            conn.request("POST", "/x", body=b"y" * 300000)
            resp = conn.getresponse()
            env = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 200 and env["wsgi.url_scheme"] == "https"
        assert env["body_size"] == 300000
    finally:
        proc.terminate()
        err = proc.communicate(timeout=TIMEOUT)[1]
    assert proc.returncode == 0 and b"Traceback" not in err


def test_tls_key_without_cert_is_a_usage_error():
    result = run("tests.wsgi_apps:hello", "--tls-key", "k.pem")
    assert result.returncode == 2 and b"--tls-key requires --tls-cert" in result.stderr
