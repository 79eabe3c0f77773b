"""Soak runs (``-m stress``): long enough to show a leak, bounded by environment variables so
CI runs them small.

* ``SOAK_ROUNDTRIPS`` (default 200,000) echo round trips against ``python -m servers.echo``
  through ``tests/benchmarks/soak_echo.py``: every byte back in order, resident memory at the
  end within 10 % of the checkpoint (after the first 100,000 round trips, or a tenth of a
  shorter run), descriptors back to their starting count.  The README's million is
  ``python tests/benchmarks/soak_echo.py``.
* ``SOAK_CHURN`` (default 1,000) connections opened, used and closed one after another against
  the echo and chat servers: descriptors back to the start, memory flat after a warm-up.
* ``SOAK_CHANNELS`` (default 20,000) echo channels born, used and closed in one memory
  reactor: nothing is left in the reactor, its poller or its timers, and traced Python
  memory does not grow with the number of channels.

Figures are printed (``-s``) and saved to ``$ROBUST_REPORT/soak.json`` when set.
"""
import gc
import importlib.util
import math
import os
import socket
import sys
import tracemalloc

import pytest

from figures import figures_fixture
from eventloop.testing import memory_reactor, memory_socketpair
from servers.echo import EchoHandler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = {}

pytestmark = [pytest.mark.stress,
              pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for memory and descriptors")]


def _load_soak_echo():
    spec = importlib.util.spec_from_file_location(
        "soak_echo", os.path.join(ROOT, "tests", "benchmarks", "soak_echo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


soak_echo = _load_soak_echo()


figures_report = figures_fixture("robust soak", "soak.json", FIGURES)



def test_echo_round_trips_leak_neither_memory_nor_descriptors():
    roundtrips = int(os.environ.get("SOAK_ROUNDTRIPS", "200000"))
    figures = soak_echo.soak(roundtrips, connections=10, batch=20, max_seconds=600)
    FIGURES["echo soak"] = figures
    assert figures["roundtrips"] == roundtrips
    assert figures["bytes_echoed"] == roundtrips * soak_echo.MESSAGE
    assert figures["rss_kib_end"] <= figures["rss_kib_checkpoint"] * 1.10, figures
    assert figures["fds_connected"] == figures["fds_before"] + 10
    assert figures["fds_after"] == figures["fds_before"], "the server kept descriptors of closed clients"
    assert figures["server_errors"] == 0
    assert figures["ok"]


def _churn(server, talk, count, fds0):
    """Open, use and close ``count`` connections one after another, from 200 loopback
    addresses in turn (so that the chat room's per-address flood control sees 200 clients,
    not one sending every line); returns the RSS after the first tenth (the warm-up)."""
    warm = None
    for i in range(count):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                      source_address=("127.0.0.%d" % (2 + i % 200), 0)) as s:
            talk(s, i)
        if i + 1 == max(1, count // 10):
            soak_echo._wait_for(lambda: server.fds() <= fds0, 10, "the server to close the connections")
            warm = server.rss_kib()
    return warm


def _echo_talk(s, i):
    payload = b"%d\n" % i * 10
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        assert chunk, "the echo server hung up early"
        got += chunk
    assert got == payload


def _chat_talk(s, i):
    s.sendall(b"/nick churn%d\r\n/quit\r\n" % i)
    got = b""
    while True:                     # the server says bye, then hangs up
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    assert b"* bye, churn%d\r\n" % i in got, got[-200:]


@pytest.mark.parametrize("module", ["servers.echo", "servers.chat"])
def test_connection_churn_leaks_nothing(module):
    count = int(os.environ.get("SOAK_CHURN", "1000"))
    server = soak_echo.ServerProcess(module)
    try:
        fds0 = soak_echo.resting_fds(server)
        rss0 = server.rss_kib()
        warm = _churn(server, _echo_talk if module == "servers.echo" else _chat_talk, count, fds0)
        soak_echo._wait_for(lambda: server.fds() <= fds0, 10, "the server to close every connection")
        end = server.rss_kib()
        FIGURES["churn %s" % module] = {"connections": count, "fds_before": fds0, "fds_after": server.fds(),
                                        "rss_kib_start": rss0, "rss_kib_warm": warm, "rss_kib_end": end}
        assert server.fds() == fds0
        assert end <= warm * 1.10, "RSS grew from %d to %d KiB over %d connections" % (warm, end, count)
    finally:
        err = server.stop()
    assert "Traceback" not in err


def test_memory_reactor_forgets_every_closed_channel():
    """Channels born and closed in one reactor leave nothing behind: not in the map, the
    poller, the registrations or the timers, and traced memory stays flat."""
    count = int(os.environ.get("SOAK_CHANNELS", "20000"))
    reactor = memory_reactor()
    payload = b"x" * 100

    def one(i):
        ours, theirs = memory_socketpair()
        ours.send_limit = 37                # the channel's sends are partial
        handler = EchoHandler(ours, reactor.map)
        handler.set_idle_timeout(60)
        assert theirs.send(payload) == len(payload)
        theirs.shutdown(socket.SHUT_WR)
        got = b""
        for _ in range(100):
            reactor.run_once(math.inf)
            try:
                got += theirs.recv(65536)
            except BlockingIOError:
                pass
            if not handler.connected:
                break
        got += theirs.recv(65536) if theirs.pending else b""
        assert got == payload and not handler.connected, (i, got)
        theirs.close()

    tracemalloc.start()
    try:
        for i in range(count // 10):
            one(i)
        gc.collect()
        warm, _ = tracemalloc.get_traced_memory()
        for i in range(count // 10, count):
            one(i)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    FIGURES["memory reactor channels"] = {"channels": count, "traced_bytes_warm": warm, "traced_bytes_end": end}
    assert not reactor.has_work(), "a closed channel left a map entry, a timer or a callback"
    assert reactor.poller._watched == {} and reactor._registered == {}, "a descriptor is still watched"
    # Not one byte per channel: 9/10 of the channels came and went after the warm-up.
    assert end - warm < count, "traced memory grew by %d bytes over %d channels" % (end - warm, count)
