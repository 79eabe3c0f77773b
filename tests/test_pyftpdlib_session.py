"""A real legacy server run unchanged: ``python -m eventloop.run -m pyftpdlib`` serves an ftplib
session (pyftpdlib 1.5.9 is a test extra).  Its whole test suite, compared test by test on
the stdlib and on eventloop, is ``tests/compat/run_pyftpdlib_suite.py``."""
import ftplib
import io
import os
import re
import subprocess
import sys
import threading

import pytest

pytest.importorskip("pyftpdlib", reason="pyftpdlib 1.5.9 is a test extra "
                                        "(pip install -e '.[test]')")
pytestmark = pytest.mark.pyftpdlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_eventloop_run_serves_pyftpdlib_to_an_ftplib_session(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "hello.txt").write_bytes(b"hello over FTP\r\n" * 1000)
    env = dict(os.environ, PYTHONPATH=ROOT)
    # -X importtime lists every module the server imports: proof of which asyncore it ran on.
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "eventloop.run",
                             "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", "0", "-w",
                             "-d", str(served)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    imported, listening = [], []
    started = threading.Event()

    def read_stderr():
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            imported.append(line.rsplit("|", 1)[-1].strip())
            m = re.search(r"starting FTP server on 127\.0\.0\.1:(\d+)", line)
            if m:
                listening.append(int(m.group(1)))
                started.set()
        started.set()                               # the server ended: stop waiting
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert started.wait(60) and listening, "no 'starting FTP server' line: exit status %s" \
            % proc.poll()
        port = listening[0]
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=30)
        ftp.login()                                 # anonymous, with write permission (-w)
        assert ftp.nlst() == ["hello.txt"]
        got = io.BytesIO()
        ftp.retrbinary("RETR hello.txt", got.write)
        assert got.getvalue() == (served / "hello.txt").read_bytes()
        ftp.storbinary("STOR upload.bin", io.BytesIO(bytes(range(256)) * 400))
        assert (served / "upload.bin").read_bytes() == bytes(range(256)) * 400
        listing = []
        ftp.retrlines("LIST", listing.append)
        assert sorted(line.split()[-1] for line in listing) == ["hello.txt", "upload.bin"]
        ftp.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(30)
        proc.stderr.close()
    if sys.version_info < (3, 12):
        # pyftpdlib imports asyncore/asynchat here: it got eventloop's, never the stdlib's.
        assert "eventloop.asyncore" in imported and "eventloop.asynchat" in imported
        assert "asyncore" not in imported and "asynchat" not in imported
