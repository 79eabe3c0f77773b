"""servers.echo and servers.chat over TLS, driven by ``openssl s_client`` with the test CA."""
import shutil
import subprocess
import sys

import pytest

from launchers import ROOT, TIMEOUT, read_until, server_process


def s_client(port, ca):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed (.ci/run installs it)")
    return subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                             "-CAfile", ca, "-verify_return_error", "-quiet", "-no_ign_eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def test_echo_over_tls_with_openssl_s_client(pki):
    with server_process("servers.echo", "--tls-cert", pki["cert"], "--tls-key", pki["key"],
                        banner=rb"listening on 127\.0\.0\.1:(\d+) \(tls\)") as port:
        client = s_client(port, pki["ca"])
        try:
            client.stdin.write(b"hello over TLS\n")
            client.stdin.flush()
            read_until(client.stdout, rb"hello over TLS\n")
        finally:
            client.stdin.close()
            assert client.wait(TIMEOUT) == 0


def test_echo_tls_flags_need_a_certificate():
    out = subprocess.run([sys.executable, "-m", "servers.echo", "--tls-key", "k.pem"],
                         cwd=ROOT, capture_output=True, timeout=60)
    assert out.returncode == 2 and b"--tls-key requires --tls-cert to be set" in out.stderr


def test_chat_over_tls_with_openssl_s_client(pki):
    with server_process("servers.chat", "--tls-cert", pki["combined"],
                        banner=rb"listening on 127\.0\.0\.1:(\d+) \(tls\)") as port:
        alice, bob = s_client(port, pki["ca"]), s_client(port, pki["ca"])
        try:
            read_until(alice.stdout, rb"\* welcome, guest\d+")
            alice.stdin.write(b"/nick alice\n")
            alice.stdin.flush()
            read_until(alice.stdout, rb"you are now known as alice")
            read_until(bob.stdout, rb"\* welcome, guest\d+")
            bob.stdin.write(b"/nick bob\nhello alice\n")
            bob.stdin.flush()
            read_until(alice.stdout, rb"<bob> hello alice")
        finally:
            for client in (alice, bob):
                client.stdin.write(b"/quit\n")
                client.stdin.close()
            for client in (alice, bob):
                assert client.wait(TIMEOUT) == 0
