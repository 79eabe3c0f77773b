"""``python -m servers.http`` as a program: flags, banner, access log, signals, pre-forked workers."""
import http.client
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from servers.http.__main__ import parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANNER = re.compile(r"Serving HTTP on (\S+) port (\d+) \(http://(\S+):(\d+)/\) \.\.\.$")


class Program:
    """``python -m servers.http ARGS`` in a subprocess; stderr lines are collected by a thread."""

    def __init__(self, *args, cwd=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servers.http", *args], cwd=cwd or ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines = queue.Queue()
        self.seen = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        m = self.expect(BANNER)
        self.host, self.port = m.group(1), int(m.group(2))
        self.banner = m.group(0)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern, timeout=10.0):
        """The first new stderr line matching ``pattern`` (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no line matching %r in %r" % (pattern, self.seen)
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, "stderr closed; saw %r" % (self.seen,)
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def rest(self, timeout=10.0):
        """Every remaining stderr line, once the process has exited."""
        self.proc.wait(timeout)
        self._reader.join(timeout)
        out = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return out
            out.append(line)

    def get(self, path, method="GET", body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def stop(self, signum=signal.SIGTERM, timeout=10.0):
        """Signal the program, wait for it; its exit status.  Processes it leaves behind holding
        its stderr (workers that outlive their parent by more than a few seconds: orphans stop
        themselves within one) are killed, and reported as a failure."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self._reader.join(5)
            stragglers = self._reader.is_alive()
            if stragglers:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._reader.join(5)
            self.proc.stderr.close()
            assert not stragglers, "processes of the program outlived it, holding its stderr"


@pytest.fixture
def www(tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello from disk\n")
    return tmp_path


def test_defaults_are_those_of_the_issue():
    args = parse_args([])
    assert (args.port, args.bind, args.directory) == (8000, "0.0.0.0", os.getcwd())
    assert (args.max_body, args.head_timeout, args.keepalive_timeout) == (1 << 20, 10.0, 5.0)
    assert (args.workers, args.quiet, args.echo, args.follow_symlinks) == (None, False, False, False)
    args = parse_args(["8080", "-b", "::1", "-d", "/", "-q", "--max-body", "2M",
                       "--head-timeout", "0.5", "--keepalive-timeout", "1.5", "--workers", "3",
                       "--follow-symlinks", "--echo"])
    assert (args.port, args.bind, args.directory, args.quiet) == (8080, "::1", "/", True)
    assert (args.max_body, args.head_timeout, args.keepalive_timeout) == (2 << 20, 0.5, 1.5)
    assert (args.workers, args.follow_symlinks, args.echo) == (3, True, True)


@pytest.mark.parametrize("argv", [["70000"], ["-d", "/no/such/dir"], ["--max-body", "lots"],
                                  ["--head-timeout", "0"], ["--workers", "-1"], ["--workers", "0"],
                                  ["x"]])
def test_bad_arguments_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "servers.http", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_serves_a_directory_and_logs_each_request(www):
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www))
    try:
        assert prog.banner == "Serving HTTP on 127.0.0.1 port %d (http://127.0.0.1:%d/) ..." % (
            prog.port, prog.port)
        assert prog.port != 0
        status, headers, body = prog.get("/hello.txt")
        assert (status, body) == (200, b"hello from disk\n")
        prog.expect(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /hello\.txt HTTP/1\.1" 200 16$')
        assert prog.get("/")[0] == 200 and b"hello.txt" in prog.get("/")[2]
    finally:
        assert prog.stop() == 0


def test_serves_the_current_directory_by_default(www):
    prog = Program("0", "-b", "127.0.0.1", cwd=str(www))
    try:
        assert prog.get("/hello.txt")[2] == b"hello from disk\n"
    finally:
        prog.stop()


def test_quiet_has_no_access_log(www):
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www), "-q")
    try:
        assert prog.get("/hello.txt")[0] == 200
        assert prog.get("/missing")[0] == 404
    finally:
        assert prog.stop() == 0
    assert not any('"GET' in line for line in prog.seen + prog.rest())


def test_sigint_exits_cleanly(www):
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www), "-q")
    assert prog.get("/hello.txt")[0] == 200
    assert prog.stop(signal.SIGINT) == 0
    assert any("Keyboard interrupt" in line for line in prog.rest())


def test_echo_flag(www):
    prog = Program("0", "-b", "127.0.0.1", "--echo", "-q", "--max-body", "100")
    try:
        status, headers, body = prog.get("/a?b", method="PUT", body=b"12345",
                                         headers={"X-Test": "<&>"})
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"PUT /a?b HTTP/1.1" in body and b"&lt;&amp;&gt;" in body
        assert b"5 body bytes" in body
        assert prog.get("/", method="POST", body=b"x" * 101)[0] == 413
    finally:
        prog.stop()


def test_timeout_flags(www):
    import socket
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www), "-q", "--head-timeout", "0.5",
                   "--keepalive-timeout", "0.5")
    try:
        with socket.create_connection(("127.0.0.1", prog.port), timeout=5) as sock:
            t0 = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\n")
            data = b""
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
            assert data.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 3
    finally:
        prog.stop()


def test_ipv6_bind(www):
    import socket
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    prog = Program("0", "-b", "::1", "-d", str(www), "-q")
    try:
        assert prog.banner.startswith("Serving HTTP on ::1 port %d (http://[::1]:%d/)"
                                      % (prog.port, prog.port))
        conn = http.client.HTTPConnection("::1", prog.port, timeout=5)
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello from disk\n"
        conn.close()
    finally:
        prog.stop()


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_are_restarted_and_stopped(www):
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www), "-q", "--workers", "2")
    try:
        pids = {int(prog.expect(r"worker (\d+) started").group(1)) for _ in range(2)}
        assert len(pids) == 2 and prog.proc.pid not in pids
        for _ in range(10):
            assert prog.get("/hello.txt")[2] == b"hello from disk\n"
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        prog.expect(r"worker %d was killed by SIGKILL; restarting it" % victim)
        new = int(prog.expect(r"worker (\d+) started").group(1))
        assert new not in pids and _alive(new)
        workers = (pids - {victim}) | {new}
        for _ in range(20):
            assert prog.get("/hello.txt")[0] == 200
        t0 = time.monotonic()
        assert prog.stop(signal.SIGTERM) == 0
        assert time.monotonic() - t0 < 8
        assert not any(_alive(pid) for pid in workers)
    finally:
        prog.stop(signal.SIGKILL)


def test_supervisor_gives_up_on_workers_that_cannot_start():
    code = (
        "import sys\n"
        "from servers.http import Prefork\n"
        "def setup(sock, reactor):\n"
        "    raise RuntimeError('cannot start')\n"
        "p = Prefork(('127.0.0.1', 0), 2, setup)\n"
        "p.restart_pause = 0.01\n"
        "p.max_young_deaths = 4\n"
        "sys.exit(p.run())\n")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1 and time.monotonic() - t0 < 20
    assert proc.stderr.count("RuntimeError: cannot start") >= 4


def test_port_in_use_is_a_one_line_error(www):
    prog = Program("0", "-b", "127.0.0.1", "-d", str(www), "-q")
    try:
        proc = subprocess.run([sys.executable, "-m", "servers.http", str(prog.port), "-b",
                               "127.0.0.1", "-d", str(www)], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 1
        assert proc.stderr.startswith("python -m servers.http: cannot listen on 127.0.0.1 port %d:"
                                      % prog.port)
        assert "Traceback" not in proc.stderr
    finally:
        prog.stop()
