"""eventloop.http11 parses any input in time linear in its size: hostile shapes, every parser, at the limits.

Each case is a shape (where a long run of one small hostile unit goes, what ends it, in one line or
spread over seven) built at 8 KiB and at 64 KiB, with the limits of the connection set to that size, so
the case sits at its limits.  The assertion is a cost ratio, never a clock: the CPU time of the 64 KiB
case over that of the 8 KiB case is at most 12 (linear is about 8; a parser that backtracks over a line
is about 64).  Each figure is the minimum over interleaved repeats of this thread's CPU time, with the
cyclic collector off, so that other load on the machine does not move it.
"""
import gc
import statistics
import sys
import time

import pytest
from hypothesis import Phase, example, given, settings, strategies as st

from eventloop.http11 import (
    CLIENT, NEED_DATA, PAUSED, SERVER, Connection, ConnectionClosed, EndOfMessage, RemoteProtocolError,
    Request)

SMALL, BIG = 8 * 1024, 64 * 1024
MAX_RATIO = 12
ROUNDS = 25
MAX_EVENTS = 100_000

HEAD = b"GET / HTTP/1.1\r\nHost: h\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
STATUS = b"HTTP/1.1 200 OK\r\n"

# Where the run goes: (role, bytes before the hostile lines, one line as (prefix, suffix), bytes after).
SHAPES = {
    "request field value": (SERVER, HEAD, (b"X: ", b"\r\n"), b"\r\n"),
    "request field name": (SERVER, HEAD, (b"", b": v\r\n"), b"\r\n"),
    "framing field value": (SERVER, HEAD, (b"Transfer-Encoding: ", b"\r\n"), b"\r\n"),
    "Host value": (SERVER, b"GET / HTTP/1.1\r\n", (b"Host: ", b"\r\n"), b"\r\n"),
    "request target": (SERVER, b"", (b"GET /", b" HTTP/1.1\r\n"), b"Host: h\r\n\r\n"),
    "absolute-form authority": (SERVER, b"", (b"GET http://", b"/ HTTP/1.1\r\n"), b"Host: h\r\n\r\n"),
    "request line": (SERVER, b"", (b"", b"\r\n"), b"\r\n"),
    "request line, bare LFs": (SERVER, b"", (b"", b"\n"), b"\n"),
    "trailer field value": (SERVER, CHUNKED + b"0\r\n", (b"X: ", b"\r\n"), b"\r\n"),
    "trailer field name": (SERVER, CHUNKED + b"0\r\n", (b"", b": v\r\n"), b"\r\n"),
    "chunk-size line": (SERVER, CHUNKED, (b"1", b"\r\nx\r\n"), b"0\r\n\r\n"),
    "chunk extension": (SERVER, CHUNKED, (b"1;e=", b"\r\nx\r\n"), b"0\r\n\r\n"),
    "quoted chunk extension": (SERVER, CHUNKED, (b'1;e="', b'"\r\nx\r\n'), b"0\r\n\r\n"),
    "status line reason": (CLIENT, b"", (b"HTTP/1.1 200 ", b"\r\n"), b"Content-Length: 0\r\n\r\n"),
    "status line": (CLIENT, b"", (b"HTTP/1.1", b"\r\n"), b"\r\n"),
    "response field value": (CLIENT, STATUS, (b"X: ", b"\r\n"), b"\r\n"),
    "response Content-Length": (CLIENT, STATUS, (b"Content-Length: ", b"\r\n"), b"\r\n"),
    "response chunk-size line": (CLIENT, STATUS + b"Transfer-Encoding: chunked\r\n\r\n", (b"1", b"\r\nx\r\n"),
                                 b"0\r\n\r\n"),
}
# What the runs are made of: whitespace, colons, controls, obs-text, and the characters of the grammars.
UNITS = [b" ", b"\t", b" \t", b":", b": ", b"\x01", b"\x7f", b"\x00", b"\xe9", b"\x80", b"\xff", b"\r", b"a",
         b"a ", b" a", b"0", b"9 ", b";", b";a", b";a=", b"; a = b", b"=", b'"', b"\\", b'\\"', b"%", b"%4",
         b"@", b"/", b",", b", ", b"[", b"[:", b"::", b"*", b"#", b"HTTP/1.1 ", b"\r\n", b"\n", b"\r\r\n"]
ENDS = [b"", b"\x01", b"\r", b" ", b"\x7f", b"\xff", b'"', b";", b"=", b"]"]


RATIOS = {}        # (shape, unit, end, lines, pieces) -> the ratio measured: printed at the end (-s)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if RATIOS:
        worst = max(RATIOS, key=RATIOS.get)
        sys.stdout.write("\nparsing cost, %d KiB / %d KiB, over %d cases: median %.1f, max %.1f (%s)\n" % (
            BIG // 1024, SMALL // 1024, len(RATIOS), statistics.median(RATIOS.values()), RATIOS[worst],
            worst))


def case(shape, unit, end, lines, size):
    """The bytes of ``shape`` at ``size`` bytes: ``lines`` lines, each a run of ``unit`` then ``end``."""
    role, before, (prefix, suffix), after = SHAPES[shape]
    per_line = (size - len(before) - len(after)) // lines - len(prefix) - len(suffix) - len(end)
    line = prefix + unit * (per_line // len(unit)) + end + suffix
    return role, before + line * lines + after


def parse(role, raw, size, pieces):
    """Feed ``raw`` to a connection whose limits are ``size``, in pieces of ``pieces`` bytes (0: whole);
    return the RemoteProtocolError that refused it, or None."""
    conn = Connection(role, max_line=size, max_head=size, max_fields=100, max_chunk_line=size)
    if role == CLIENT:
        conn.send(Request("POST", "/", [("Host", "h"), ("Transfer-Encoding", "chunked")]))
        conn.send(EndOfMessage())
    step = pieces or len(raw)
    try:
        for i in range(0, len(raw), step):
            conn.receive_data(raw[i:i + step])
            for _ in range(MAX_EVENTS):
                event = conn.next_event()
                if event is NEED_DATA or event is PAUSED or type(event) is ConnectionClosed:
                    break
            else:
                raise AssertionError("next_event never stopped")
            if event is not NEED_DATA:
                break
    except RemoteProtocolError as exc:
        return exc                                  # refused: what it cost is what is measured
    return None


def cpu_ns(role, raw, size, pieces):
    start = time.thread_time_ns()
    parse(role, raw, size, pieces)
    return time.thread_time_ns() - start


def cost_ratio(shape, unit, end, lines, pieces):
    """CPU time of the BIG case over the SMALL one: minima over interleaved rounds.

    Stops early once the ratio is clearly settled: within bounds (minima only fall with more rounds, and
    the big case cannot get cheaper than it is), or far out of them (a backtracking parser: no need to
    spend seconds more on it)."""
    small_case = case(shape, unit, end, lines, SMALL)
    big_case = case(shape, unit, end, lines, BIG)
    small = big = None
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(ROUNDS):
            s = cpu_ns(*small_case, SMALL, pieces)
            b = cpu_ns(*big_case, BIG, pieces)
            small = s if small is None else min(small, s)
            big = b if big is None else min(big, b)
            if i >= 1 and (big <= MAX_RATIO * small or big > 3 * MAX_RATIO * small):
                break
    finally:
        if enabled:
            gc.enable()
    return big / max(small, 1)


@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])    # a failure here is already minimal
@given(shape=st.sampled_from(sorted(SHAPES)), unit=st.sampled_from(UNITS), end=st.sampled_from(ENDS),
       lines=st.sampled_from([1, 7]), pieces=st.sampled_from([0, 0, 1024]))
@example(shape="request field value", unit=b" ", end=b"\x01", lines=7, pieces=0)    # the 57 KB attack
@example(shape="trailer field value", unit=b"\t", end=b"\r", lines=7, pieces=0)
@example(shape="response field value", unit=b" ", end=b"\x01", lines=7, pieces=0)
@example(shape="chunk extension", unit=b" ", end=b"\x01", lines=1, pieces=0)
@example(shape="request field value", unit=b" ", end=b"\x01", lines=7, pieces=1024)
def test_parsing_cost_grows_linearly(shape, unit, end, lines, pieces):
    ratio = RATIOS[shape, unit, end, lines, pieces] = cost_ratio(shape, unit, end, lines, pieces)
    assert ratio <= MAX_RATIO, f"{shape}: {BIG // 1024} KiB costs {ratio:.1f} times {SMALL // 1024} KiB"


def test_the_shapes_reach_their_limits():
    """The cases are as large as the limits allow, and none is refused for its size: a case refused before
    it is parsed would measure nothing."""
    for shape in SHAPES:
        for size in (SMALL, BIG):
            for lines in (1, 7):
                role, raw = case(shape, b"a", b"", lines, size)
                assert size - 7 * 4 <= len(raw) <= size, (shape, size, len(raw))
                error = parse(role, raw, size, 0)
                assert error is None or error.error_status_hint == 400, (shape, error)
                assert "longer than" not in str(error) and "larger than" not in str(error), (shape, error)
    role, raw = case("request field value", b" ", b"\x01", 7, BIG)
    assert 57_000 <= len(raw) <= BIG and raw.count(b"\r\n") == 10
