"""The 57 KB head of issue 12 against a live ``python -m servers.http``: seven ``X: `` + 8,180 spaces +
``\\x01`` lines, which no field pattern matches.  Parsing it must cost the server little CPU next to a
normal head of the same size (the field pattern used to retry each line at every split of its spaces:
~3 s of CPU a head, while every other client waited), and clients asking for a file meanwhile are served.
The bound is a ratio of the server's own CPU times (``/proc/PID/schedstat``), never a clock.
``python tests/benchmarks/hostile_head.py`` prints the figures (CPU, other clients' wait)."""
import importlib.util
import os

import pytest

from test_http_server_cli import ROOT, Program

# A head that no pattern matches goes through the complete parser, which tries the bad lines at each of
# their characters to name the first one: about ten times the plain-head path that a valid head takes.
# Quadratic, it was some ten thousand times.
MAX_RATIO = 40
ROUNDS = 3

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"),
                                reason="needs /proc/PID/schedstat")


def _bench():
    spec = importlib.util.spec_from_file_location(
        "hostile_head", os.path.join(ROOT, "tests", "benchmarks", "hostile_head.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(tmp_path):
    bench = _bench()
    (tmp_path / "small.bin").write_bytes(bench.SMALL)
    prog = Program("0", "-b", "127.0.0.1", "-d", str(tmp_path), "-q")
    prog.bench = bench
    yield prog
    assert prog.stop() == 0


def test_the_57_kb_head_costs_little_and_others_are_served_meanwhile(server):
    bench, port, pid = server.bench, server.port, server.proc.pid
    bench.get_small(port)                               # the first request warms the server up
    attack, normal = bench.head("attack"), bench.head("normal")
    assert len(attack) == len(normal) > 57_000
    costs = {}
    for kind, raw, status in (("normal", normal, b"HTTP/1.1 200 OK"),
                              ("attack", attack, b"HTTP/1.1 400 Bad Request")):
        samples = []
        for _ in range(ROUNDS):
            cpu, got = bench.cost_of_head(port, pid, raw)
            assert got == status
            samples.append(cpu)
        costs[kind] = min(samples)
    assert costs["attack"] <= MAX_RATIO * costs["normal"], costs

    # While two clients send it back to back, another gets its file each time it asks.
    waits, statuses = bench.under_attack(port, attack, lambda: [bench.get_small(port) for _ in range(10)])
    assert len(waits) == 10
    assert statuses and set(statuses) == {b"HTTP/1.1 400 Bad Request"}
    print("\nserver CPU per 57 KB head: normal %.2f ms, attack %.2f ms; a GET during the attack waited %.1f ms"
          " at most" % (costs["normal"] * 1e3, costs["attack"] * 1e3, max(waits) * 1e3))
