"""Resource exhaustion against the real command-line servers (``python -m servers.chat`` and
``python -m servers.echo``) running as subprocesses.

* Out of descriptors (RLIMIT_NOFILE lowered to 40): accept() fails with EMFILE; the server
  keeps serving the connections it has, does not spin (CPU time read from /proc/PID/stat over
  a bounded wait), says what went wrong on stderr, and takes the backlog once descriptors free up.
* Clients that never read are disconnected once their queue passes its hard bound, while a
  reader gets every line and the server's resident memory stays bounded.
* A member flooding the room (12,000 lines of 1 KB at once) is paused by flood control: its
  lines reach the room at the default rate, a member reading 10 KB/s stays and gets each of
  them in order, and two other members still talk at once.
* A flood of over-long lines is dropped as it arrives: memory stays flat and other members
  still talk with bounded latency.
* 10,000 connections opened, held, and abandoned (RLIMIT_NOFILE raised to the hard limit in
  this process and the server; fewer, and said so, if the hard limit is lower): every
  descriptor is released, memory stays bounded, and a normal client is served throughout.

Figures are printed (``-s``) and saved to ``$ROBUST_REPORT/exhaustion.json`` when set.
"""
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from figures import figures_fixture
from eventloop import Reactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = {}

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status") or sys.platform != "linux",
                                reason="reads /proc for memory, CPU time and descriptors")


figures_report = figures_fixture("robust exhaustion", "exhaustion.json", FIGURES)



def wait(seconds):
    """Block this thread for ``seconds`` (an Event nobody sets: no time.sleep)."""
    threading.Event().wait(seconds)


def until(predicate, timeout, step=0.05, what="condition"):
    """Poll ``predicate`` until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        wait(step)


class ServerProcess:
    """``python -m MODULE 0 -b 127.0.0.1 ARGS...`` with RLIMIT_NOFILE set to ``nofile`` before
    exec; stderr goes to a file, read for the port and the server's own messages."""

    def __init__(self, module, nofile, log_path, *args):
        self.log_path = str(log_path)
        self._log = open(self.log_path, "w")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

        self.proc = subprocess.Popen([sys.executable, "-m", module, "0", "-b", "127.0.0.1", *args], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
                                     preexec_fn=limit)
        self.pid = self.proc.pid
        try:
            found = until(lambda: self.proc.poll() is not None or
                          re.search(r"listening on 127\.0\.0\.1:(\d+)", self.stderr()),
                          10, what="%s to listen" % module)
            if self.proc.poll() is not None:
                raise AssertionError("%s exited: %s" % (module, self.stderr()))
            self.port = int(found.group(1))
        except BaseException:
            self.stop()
            raise

    def stderr(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def rss_kib(self):
        return self._status("VmRSS")

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def connect(self, rcvbuf=None, source="127.0.0.1"):
        """A connection from ``source`` (any 127/8 address: the chat server's flood control
        and connection cap are per client address)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", self.port))
        return s

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.stderr()


class LineReader:
    """Lines from a blocking socket with a timeout."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until(self, wanted, limit=100_000):
        """Read lines until one equals (bytes) or matches (callable) ``wanted``; returns it."""
        for _ in range(limit):
            line = self.line()
            if (wanted(line) if callable(wanted) else line == wanted):
                return line
        raise AssertionError("%r did not arrive within %d lines" % (wanted, limit))


class PeakRss:
    """Samples the server's resident memory every 2 ms in a thread, while in a ``with``."""

    def __init__(self, server):
        self.server = server
        self.base = self.peak = server.rss_kib()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.002):
            try:
                self.peak = max(self.peak, self.server.rss_kib())
            except (OSError, KeyError):
                return
            self.samples += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    @property
    def growth(self):
        return self.peak - self.base


def echo_roundtrip(sock, payload):
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "the echo server closed the connection"
        got += chunk
    return got


def chat_member(server, nick, source="127.0.0.1"):
    """A connected member named ``nick``, from ``source``, its welcome read."""
    sock = server.connect(source=source)
    reader = LineReader(sock)
    reader.until(lambda l: l.startswith(b"* welcome"))
    sock.sendall(b"/nick %s\r\n" % nick.encode())
    reader.until(b"* you are now known as %s" % nick.encode())
    return sock, reader


def say_and_hear(speaker, listener, text):
    """Seconds from ``speaker`` saying ``text`` until ``listener`` hears it."""
    start = time.monotonic()
    speaker[0].sendall(text.encode() + b"\r\n")
    listener[1].until(lambda l: l.endswith(b"> " + text.encode()))
    return time.monotonic() - start


# ====================================================================== EMFILE
NOFILE_LOW = 40


@pytest.mark.parametrize("module", ["servers.chat", "servers.echo"])
def test_out_of_descriptors_keeps_serving_backs_off_and_recovers(module, tmp_path):
    server = ServerProcess(module, NOFILE_LOW, tmp_path / "server.log",
                           *(("--max-per-ip", "0") if module == "servers.chat" else ()))
    clients = []
    try:
        # Connections complete in the kernel's backlog whether or not the server can accept.
        for _ in range(NOFILE_LOW + 20):
            clients.append(server.connect())
        until(lambda: "accept failed" in server.stderr(), 10, what="the server to run out of descriptors")
        # The first connections were accepted and are still served.
        if module == "servers.chat":
            a, b = (clients[0], LineReader(clients[0])), (clients[1], LineReader(clients[1]))
            a[1].until(lambda l: l.startswith(b"* welcome"))
            b[1].until(lambda l: l.startswith(b"* welcome"))
            a[0].sendall(b"still here?\r\n")
            b[1].until(lambda l: l.endswith(b"> still here?"))
        else:
            assert echo_roundtrip(clients[0], b"still here?") == b"still here?"
        # The backlog it cannot take must not make it spin.
        before = server.cpu_seconds()
        wait(1.5)
        used = server.cpu_seconds() - before
        assert used < 0.5, "%s used %.2f CPU-s in 1.5 s while out of descriptors" % (module, used)
        # Free descriptors: the waiting connections are accepted and served.
        for c in clients[2:NOFILE_LOW]:
            c.close()
        last = clients[-1]
        if module == "servers.chat":
            LineReader(last).until(lambda l: l.startswith(b"* welcome"))
        else:
            assert echo_roundtrip(last, b"last one") == b"last one"
        FIGURES["EMFILE %s" % module] = {"RLIMIT_NOFILE": NOFILE_LOW, "connections": len(clients),
                                         "cpu_seconds_in_1.5s_while_out": round(used, 3)}
    finally:
        for c in clients:
            c.close()
        err = server.stop()
    assert "Too many open files" in err, "the server did not say what went wrong"


# ================================================================ never readers
def test_chat_clients_that_never_read_are_cut_off_while_readers_get_everything(tmp_path):
    # Flood control off, so that one talker can send 16 MB in a moment: the non-readers then
    # pass the hard bound (ChatChannel.max_queued_hard) long before their progress timeout.
    server = ServerProcess("servers.chat", 1024, tmp_path / "server.log", "--flood-lines", "0",
                           "--flood-bytes", "0")
    try:
        talker = chat_member(server, "talker")
        reader = chat_member(server, "reader")
        # Tiny receive windows: the server's queue for these fills quickly.
        idle = [server.connect(rcvbuf=4096) for _ in range(4)]
        reader[1].until(lambda l: l.startswith(b"* guest") and l.endswith(b"has joined")
                        and l.split()[1] == b"guest%d" % (len(idle) + 2))
        line = b"y" * 1000
        count = 16000                     # 16 MB to every member: far past the 1 MiB hard queue bound
        # The talker stays at most `window` lines ahead of the reader: the talker and the
        # reader share this process (and its GIL), and unpaced (flood control is off) the
        # talker could outrun a reader that reads past the hard bound.
        window = 200
        heard_count = [0]
        progress = threading.Condition()

        def talk():
            for i in range(count):
                with progress:
                    if not progress.wait_for(lambda: heard_count[0] >= i - window, timeout=30):
                        return
                talker[0].sendall(b"%06d " % i + line + b"\r\n")

        talking = threading.Thread(target=talk, daemon=True)
        with PeakRss(server) as rss:
            start = time.monotonic()
            talking.start()
            got = 0
            for i in range(count):
                heard = reader[1].until(lambda l: l.startswith(b"<talker> "))
                assert heard == b"<talker> %06d " % i + line, "the reader lost or reordered a line"
                got += 1
                if got % 32 == 0:
                    with progress:
                        heard_count[0] = got
                        progress.notify()
            elapsed = time.monotonic() - start
            talking.join(30)
        # Every non-reader was disconnected, and the room said so.
        notices = until(lambda: len(re.findall(r"is not reading \(\d+ bytes queued\), disconnecting",
                                               server.stderr())) >= len(idle) and server.stderr(),
                        10, what="the non-readers to be disconnected")
        assert len(re.findall(r"guest\d+ was disconnected \(not reading\)", notices)) == len(idle)
        assert rss.samples > 10 and rss.growth < 16 * 1024, "RSS grew %d KiB with 4 non-readers" % rss.growth
        assert say_and_hear(reader, talker, "still fine?") < 2.0
        FIGURES["chat never-readers"] = {"non_readers": len(idle), "lines_to_reader": got,
                                         "bytes_per_member": count * len(line), "seconds": round(elapsed, 2),
                                         "rss_kib_before": rss.base, "rss_kib_peak": rss.peak,
                                         "rss_samples": rss.samples}
        for s in idle:
            s.close()
        talker[0].close()
        reader[0].close()
    finally:
        server.stop()


# ================================================================ flood control
FLOOD_SECONDS = 5.0


def test_a_flooder_is_paused_while_a_10_kb_s_reader_stays(tmp_path):
    server = ServerProcess("servers.chat", 1024, tmp_path / "server.log")
    try:
        # The flooder's address is its own: the others are other people.
        flooder = chat_member(server, "flooder")
        a = chat_member(server, "a", "127.0.0.2")
        b = chat_member(server, "b", "127.0.0.3")
        reader = chat_member(server, "reader", "127.0.0.4")
        # The reader reads 1,000 bytes every 0.1 s (a timer on a reactor of its own).
        sock = reader[0]
        sock.setblocking(False)
        got = bytearray(reader[1].buf)
        closed = threading.Event()
        pacer = Reactor()

        def take():
            try:
                data = sock.recv(1000)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                closed.set()
                pacer.stop()
            got.extend(data)

        pacer.call_every(0.1, take)
        pacer.call_later(FLOOD_SECONDS, pacer.stop)
        pacing = threading.Thread(target=pacer.run, daemon=True)
        count = 12_000
        flood = b"".join(b"%05d " % n + b"x" * 1017 + b"\n" for n in range(count))
        sent = []

        def send_flood():
            start = time.monotonic()
            try:
                flooder[0].sendall(flood)
            except OSError:                 # closed below, while the server still held back
                return
            sent.append(time.monotonic() - start)

        flooding = threading.Thread(target=send_flood, daemon=True)
        latencies = []
        with PeakRss(server) as rss:
            cpu = server.cpu_seconds()
            start = time.monotonic()
            pacing.start()
            flooding.start()
            # Meanwhile a talks to b (4 lines a second, within flood control) and times it.
            while pacing.is_alive():
                latencies.append(say_and_hear(a, b, "ping %d" % len(latencies)))
                wait(0.25)
            elapsed = time.monotonic() - start
            pacing.join(10)
            cpu = server.cpu_seconds() - cpu
        pacer.close()
        assert not closed.is_set(), "the reader was disconnected: %s" % server.stderr()[-300:]
        *complete, _ = bytes(got).split(b"\r\n")
        lines = [l for l in complete if l.startswith(b"<flooder> ")]
        assert lines == [b"<flooder> %05d " % n + b"x" * 1017 for n in range(len(lines))], \
            "the reader lost or reordered a line"
        relayed = len(lines)
        burst, rate = 16384, 4096          # ChatChannel.flood_byte_burst, .flood_bytes
        assert relayed * 1023 <= burst + rate * elapsed, "%d lines in %.1f s" % (relayed, elapsed)
        assert relayed > burst // 1023, "the flooder was starved"
        assert not sent, "the flood went through unthrottled"
        assert max(latencies) < 0.5, "a member waited %.2fs while another flooded" % max(latencies)
        assert "is not reading" not in server.stderr()
        FIGURES["chat flood control"] = {
            "flood_lines_sent": count, "line_bytes": 1024, "seconds": round(elapsed, 2),
            "lines_relayed": relayed, "burst_lines": burst // 1023,
            "lines_per_s_after_burst": round((relayed - burst // 1023) / elapsed, 2),
            "reader_bytes_read": len(got), "pings": len(latencies),
            "max_ping_ms": round(1000 * max(latencies), 1), "server_cpu_s": round(cpu, 2),
            "rss_kib_before": rss.base, "rss_kib_peak": rss.peak, "rss_samples": rss.samples}
    finally:
        server.stop()


# ================================================================ long lines
def test_a_flood_of_long_lines_is_dropped_without_buffering(tmp_path):
    # Flood control off: the two members below talk as fast as they can, and what is
    # measured is how the long lines slow them, not how flood control paces them.
    server = ServerProcess("servers.chat", 1024, tmp_path / "server.log", "--flood-lines", "0",
                           "--flood-bytes", "0")
    try:
        a = chat_member(server, "a")
        b = chat_member(server, "b")
        flooder = chat_member(server, "flooder")
        total = 256 << 20
        piece = (b"x" * (256 * 1024 - 1) + b"\n")        # 256 KiB lines: 256 times the limit
        done = threading.Event()
        notices = []

        def flood():
            try:
                for _ in range(total // len(piece)):
                    flooder[0].sendall(piece)
            finally:
                done.set()

        def drain():        # the flooder reads its notices, so it is not cut off for not reading
            while True:
                try:
                    line = flooder[1].line()
                except (OSError, EOFError):
                    return
                if line.startswith(b"* line too long"):
                    notices.append(line)
                    if len(notices) == total // len(piece):
                        return

        threads = [threading.Thread(target=flood, daemon=True), threading.Thread(target=drain, daemon=True)]
        latencies = []
        with PeakRss(server) as rss:
            start = time.monotonic()
            for t in threads:
                t.start()
            for i in range(100_000):
                latencies.append(say_and_hear(a, b, "ping %d" % i))
                if done.is_set() and i >= 20:
                    break
            elapsed = time.monotonic() - start
            until(lambda: not threads[1].is_alive(), 30, what="every line-too-long notice")
        assert done.is_set(), "the flood did not finish within 100,000 pings"
        assert len(notices) == total // len(piece), "a long line was not refused exactly once"
        assert max(latencies) < 1.0, "a member waited %.2fs while another flooded" % max(latencies)
        assert rss.samples > 10 and rss.growth < 8 * 1024, "RSS grew %d KiB during the flood" % rss.growth
        # Nothing of the flood reached the room.
        b[0].sendall(b"/who\r\n")
        b[1].until(lambda l: l.startswith(b"* here: "))
        FIGURES["chat long-line flood"] = {"bytes": total, "line_bytes": len(piece), "seconds": round(elapsed, 2),
                                           "pings": len(latencies),
                                           "max_ping_ms": round(1000 * max(latencies), 1),
                                           "rss_kib_before": rss.base, "rss_kib_peak": rss.peak,
                                           "rss_samples": rss.samples}
    finally:
        server.stop()


# ============================================================= 10,000 sockets
WANTED = 10_000


def _raise_nofile():
    """Raise this process's descriptor limit to the hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def test_ten_thousand_connections_opened_held_and_abandoned(tmp_path):
    hard = _raise_nofile()
    n = min(WANTED, hard - 200)
    if n < 1000:
        pytest.skip("RLIMIT_NOFILE hard limit %d is too low to hold even 1,000 connections" % hard)
    if n < WANTED:
        sys.stdout.write("\nRLIMIT_NOFILE hard limit is %d: holding %d connections, not %d\n"
                         % (hard, n, WANTED))
    server = ServerProcess("servers.chat", hard, tmp_path / "server.log", "--max-per-ip", "0")
    socks = []
    try:
        # The crowd comes from 127.0.0.1; a and b are other people, elsewhere.
        a = chat_member(server, "a", "127.0.0.2")
        b = chat_member(server, "b", "127.0.0.3")
        base_fds, base_rss = server.fds(), server.rss_kib()
        start = time.monotonic()
        worst = 0.0
        deadline = start + 20
        while len(socks) < n:
            # Batches no larger than the listen backlog (128): a bigger burst overflows it and
            # the kernel drops SYNs, which costs the client a 1 s retransmission, not the server.
            for _ in range(min(100, n - len(socks))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(10)
                s.connect(("127.0.0.1", server.port))
                socks.append(s)
            until(lambda: server.fds() >= base_fds + len(socks), 10, step=0.002,
                  what="the server to accept %d" % len(socks))
            if len(socks) % 1000 == 0:
                # A normal member is still served while the crowd arrives.
                worst = max(worst, say_and_hear(a, b, "at %d" % len(socks)))
            assert time.monotonic() < deadline, (
                "only %d connections were taken in 20 s (server CPU %.1fs)" % (len(socks), server.cpu_seconds()))
        until(lambda: server.fds() >= base_fds + n, 30, what="the server to accept all %d" % n)
        opened = time.monotonic() - start
        held_rss = server.rss_kib()
        held_fds = server.fds()
        worst = max(worst, say_and_hear(a, b, "all %d here" % n))
        # Abandon them all at once, without a word.
        for s in socks:
            s.close()
        socks.clear()
        until(lambda: server.fds() <= base_fds, 60, step=0.2, what="every descriptor to be released")
        released = time.monotonic() - start - opened
        worst = max(worst, say_and_hear(b, a, "alone again"))
        end_rss = server.rss_kib()
        FIGURES["chat 10k connections"] = {
            "connections": n, "open_seconds": round(opened, 2), "release_seconds": round(released, 2),
            "fds_before": base_fds, "fds_held": held_fds, "fds_after": server.fds(),
            "rss_kib_before": base_rss, "rss_kib_held": held_rss, "rss_kib_after": end_rss,
            "worst_message_latency_s": round(worst, 3), "server_cpu_s": server.cpu_seconds()}
        assert worst < 2.0, "a normal member waited %.2fs for a message" % worst
        # Each held connection may cost the server at most 8 KiB of resident memory.
        assert held_rss - base_rss < 8 * n, "RSS grew %d KiB for %d connections" % (held_rss - base_rss, n)
        assert end_rss <= held_rss + 4096, "memory kept growing after the connections were gone"
    finally:
        for s in socks:
            s.close()
        server.stop()
