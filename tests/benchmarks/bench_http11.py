"""CPU cost of one keep-alive request cycle of the sans-IO HTTP/1.1 server side, in process.

    python tests/benchmarks/bench_http11.py [--rounds 7] [--number 20000]

No sockets and no reactor: each case replays, on one ``Connection(SERVER)``, the calls that
``servers.http.channel.HTTPChannel`` makes for a GET answered from the static file cache:

1. ``receive_data(request bytes)``;
2. ``next_event()`` -> Request, then ``HTTPRequest(channel, event, addr)`` as ``_run`` does;
3. the static handler's scan of the request's header names (``serve_entry``);
4. ``next_event()`` -> EndOfMessage;
5. ``send_head_and_body(response, body)`` with the server's cached Response event (six
   fields including Content-Length): a small body for ``respond``; for ``send_file_span``,
   ``send_head_for_body`` (the channel sends the file's bytes itself);
6. ``start_next_cycle()`` once both sides are DONE, then ``next_event()`` -> NEED_DATA.

Cases: a wrk-style request (Host only) and a browser-style one (eight typical fields), each
answered both ways, and browser-style requests for 1000 different paths (each head differs from
the last 256, so the parser's memo of recent heads never helps).  It also times ``HTTPRequest`` construction alone.  Every figure is the
best, over ``--rounds``, of the mean µs per cycle over ``--number`` cycles (time.perf_counter).
Pin it for steadier numbers: ``taskset -c 0 python tests/benchmarks/bench_http11.py``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from eventloop.http11 import DONE, NEED_DATA, PAUSED, SERVER, Connection, EndOfMessage, Request  # noqa: E402
from eventloop.http11 import Headers, Response  # noqa: E402
from servers.http.request import HTTPRequest  # noqa: E402

WRK_GET = b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
BROWSER_GET = (
    b"GET /small.bin HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"\r\n")
BODY = b"x" * 1024
# What HTTPServer.response_head builds for a cached static file: one event, sent again and again.
RESPONSE = Response(200, Headers([
    ("Server", "servers.http/1.0"), ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY))),
    ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"), ("ETag", '"5f-400"'),
    ("Accept-Ranges", "bytes")]), "OK")
CONDITIONAL = frozenset({"if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
                         "if-range", "range"})
ADDR = ("127.0.0.1", 54321)


def cycle(conn, heads, body, n):
    """Run ``n`` request cycles as the channel does, sending ``heads`` in turn; return the seconds taken."""
    heads = heads * (n // len(heads) + 1)
    receive_data = conn.receive_data
    next_event = conn.next_event
    # An int body stands for a file the channel sends itself (send_file_span).
    send_head_and_body = conn.send_head_for_body if type(body) is int else conn.send_head_and_body
    t0 = time.perf_counter()
    for i in range(n):
        receive_data(heads[i])
        event = next_event()
        req = HTTPRequest(None, event, ADDR)
        for name, _ in req.headers:
            c = name[0]
            if (c == "I" or c == "R" or c == "i" or c == "r") and name.lower() in CONDITIONAL:
                raise AssertionError("conditional")
        event = next_event()
        send_head_and_body(RESPONSE, body)
        if conn.our_state == DONE and conn.their_state == DONE:
            conn.start_next_cycle()
        event = next_event()
    elapsed = time.perf_counter() - t0
    if event is not NEED_DATA:
        raise AssertionError(f"cycle ended with {event!r}")
    return elapsed


def check(data, body):
    """One cycle with every event checked, so that the timed loop measures the right thing."""
    conn = Connection(SERVER)
    conn.receive_data(data)
    assert type(conn.next_event()) is Request
    assert type(conn.next_event()) is EndOfMessage
    assert conn.next_event() is PAUSED
    if type(body) is int:
        out = conn.send_head_for_body(RESPONSE, body)
    else:
        out = conn.send_head_and_body(RESPONSE, body)
    assert out.endswith(b"\r\n\r\n" + body) if type(body) is bytes else out.endswith(b"\r\n\r\n")
    conn.start_next_cycle()
    assert conn.next_event() is NEED_DATA


def construct(event, n):
    t0 = time.perf_counter()
    for _ in range(n):
        HTTPRequest(None, event, ADDR)
    return time.perf_counter() - t0


def best(fn, rounds, number):
    return min(fn(number) for _ in range(rounds)) / number * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    span = len(BODY)
    cases = [("wrk GET, respond", WRK_GET, BODY), ("wrk GET, send_file_span", WRK_GET, span),
             ("browser GET, respond", BROWSER_GET, BODY), ("browser GET, send_file_span", BROWSER_GET, span)]
    distinct = [BROWSER_GET.replace(b"/small.bin", b"/asset-%d.js" % i) for i in range(1000)]
    for name, data, body in cases + [("browser GET, 1000 paths, respond", distinct, BODY)]:
        heads = data if type(data) is list else [data]
        check(heads[0], body)
        conn = Connection(SERVER)
        us = best(lambda n: cycle(conn, heads, body, n), args.rounds, args.number)
        print(f"{name:34s} {us:6.2f} µs/cycle")
    for name, data in (("wrk", WRK_GET), ("browser", BROWSER_GET)):
        conn = Connection(SERVER)
        conn.receive_data(data)
        event = conn.next_event()
        us = best(lambda n: construct(event, n), args.rounds, args.number)
        print(f"{'HTTPRequest(' + name + ')':34s} {us:6.2f} µs")


if __name__ == "__main__":
    main()
