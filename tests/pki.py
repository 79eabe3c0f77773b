"""A certificate authority made at test time with the ``openssl`` command: a CA, a server
certificate for ``localhost`` and ``127.0.0.1`` signed by it (also with its key in the same
file, and with the key encrypted by a password), and a second CA that signed nothing here
(the "wrong CA" of failing handshakes)."""
import subprocess

__all__ = ["make_pki", "PASSWORD"]

PASSWORD = "correct horse"


def make_pki(folder):
    """Write the files into ``folder`` (a pathlib.Path): a dict of their paths."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    for name in ("ca", "other-ca"):
        openssl("genpkey", *ec, "-out", name + ".key")
        openssl("req", "-x509", "-new", "-key", name + ".key", "-subj", "/CN=eventloop %s" % name,
                "-days", "7", "-out", name + ".pem", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("genpkey", *ec, "-out", "server.key")
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr")
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                    "extendedKeyUsage=serverAuth\n"
                                    "authorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "7", "-out", "server.crt", "-extfile", "ext.cnf")
    openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:" + PASSWORD,
            "-out", "server-encrypted.key")
    (folder / "server.pem").write_bytes((folder / "server.crt").read_bytes()
                                        + (folder / "server.key").read_bytes())
    (folder / "password.txt").write_text(PASSWORD + "\n")
    return {name: str(folder / file) for name, file in [
        ("ca", "ca.pem"), ("other_ca", "other-ca.pem"), ("cert", "server.crt"),
        ("key", "server.key"), ("combined", "server.pem"),
        ("encrypted_key", "server-encrypted.key"), ("password_file", "password.txt")]}
