"""servers.http over real sockets: several byte ranges as ``multipart/byteranges`` (RFC 9110
sections 14.6 and 15.3.7.2) from cached bodies, from held descriptors and streamed from large
files in bounded memory; coalescing, the cap, HEAD and If-Range; curl as the client.

The pure range-set logic (``files.parse_ranges``) is tested in ``test_http_files.py``; every
response here is parsed with Python's ``email`` package, as an independent multipart reader.
Figures are printed (``-s``) and saved to ``$ROBUST_REPORT/ranges.json`` when set.
"""
import collections
import email
import gc
import logging
import os
import shutil
import socket
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.http import FileCache, Handler, StaticFiles, files, static
from figures import figures_fixture
from test_http_server import Served, get, read_response

SMALL = bytes(range(256)) * 12                      # 3 KiB: its body is cached
LARGE = os.urandom(600 << 10)                       # held as a descriptor; ranges over 64 KiB stream
TEXT = b"".join(b"line %05d\r\n" % i for i in range(300))
FIGURES = {"range sets by answer": collections.Counter()}


report = figures_fixture("byte ranges", "ranges.json", FIGURES)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    (root / "small.bin").write_bytes(SMALL)
    (root / "large.bin").write_bytes(LARGE)
    (root / "text.txt").write_bytes(TEXT)
    (root / "empty.bin").write_bytes(b"")
    with open(root / "huge.bin", "wb") as f:
        f.truncate(64 << 20)
    return root


@pytest.fixture(scope="module")
def served(site):
    s = Served(StaticFiles(str(site), cache=FileCache(small=16 << 10)))
    yield s
    s.stop()


CONTENTS = {"/small.bin": SMALL, "/large.bin": LARGE, "/text.txt": TEXT}


def parse_multipart(content_type, body):
    """The parts of a multipart/byteranges body, by the email package: [(Content-Type,
    Content-Range, payload bytes)]."""
    msg = email.message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart() and msg.get_content_type() == "multipart/byteranges"
    assert not msg.defects, msg.defects
    return [(part["Content-Type"], part["Content-Range"], part.get_payload(decode=True))
            for part in msg.get_payload()]


def expected_parts(spans, data):
    return [("bytes %d-%d/%d" % (first, last, len(data)), data[first:last + 1])
            for first, last in spans]


def check_multipart(status, headers, body, spans, data, part_type):
    assert status == 206
    assert headers["content-length"] == str(len(body))
    assert "content-range" not in headers
    parts = parse_multipart(headers["content-type"], body)
    assert [(rng, payload) for _, rng, payload in parts] == expected_parts(spans, data)
    assert {ctype for ctype, _, _ in parts} == {part_type}
    boundary = headers["content-type"].partition("boundary=")[2]
    assert all(boundary.encode() not in data[first:last + 1] for first, last in spans)


def test_two_ranges_of_a_cached_file(served):
    status, headers, body = get(served, "/small.bin", {"Range": "bytes=0-1,10-11"})
    check_multipart(status, headers, body, [(0, 1), (10, 11)], SMALL, "application/octet-stream")
    assert headers["etag"] and headers["last-modified"] and headers["accept-ranges"] == "bytes"


def test_parts_carry_the_files_content_type(served):
    status, headers, body = get(served, "/text.txt", {"Range": "bytes=-5,100-200,7-8"})
    check_multipart(status, headers, body, [(len(TEXT) - 5, len(TEXT) - 1), (100, 200), (7, 8)],
                    TEXT, "text/plain; charset=utf-8")


def test_overlapping_or_adjacent_ranges_coalesce_to_a_plain_206(served):
    for spec, (first, last) in [("bytes=0-10,5-20", (0, 20)), ("bytes=0-4,5-9", (0, 9)),
                                ("bytes=50-60,0-,10-20", (0, len(SMALL) - 1)),
                                ("bytes=100-199,-1,3000-", (100, 199))]:
        status, headers, body = get(served, "/small.bin", {"Range": spec})
        if spec.endswith("3000-"):
            # 3000- and -1 touch at the end (3071): they coalesce, 100-199 stays apart.
            check_multipart(status, headers, body, [(100, 199), (3000, 3071)], SMALL,
                            "application/octet-stream")
            continue
        assert status == 206, spec
        assert headers["content-range"] == "bytes %d-%d/%d" % (first, last, len(SMALL))
        assert body == SMALL[first:last + 1]


def test_unsatisfiable_ranges_are_dropped_and_none_left_is_416(served):
    size = len(SMALL)
    status, headers, body = get(served, "/small.bin",
                                {"Range": "bytes=%d-,0-0,%d-%d,-0" % (size, size + 5, size + 9)})
    assert (status, headers["content-range"], body) == (206, "bytes 0-0/%d" % size, SMALL[:1])
    status, headers, _ = get(served, "/small.bin",
                             {"Range": "bytes=%d-,%d-%d,-0" % (size, size + 5, size + 9)})
    assert status == 416 and headers["content-range"] == "bytes */%d" % size


def test_more_ranges_than_the_cap_get_the_whole_file(served):
    specs = ["%d-%d" % (i * 10, i * 10) for i in range(files.MAX_RANGES)]
    status, headers, body = get(served, "/small.bin", {"Range": "bytes=" + ",".join(specs)})
    check_multipart(status, headers, body, [(i * 10, i * 10) for i in range(files.MAX_RANGES)],
                    SMALL, "application/octet-stream")
    for many in (specs + ["2000-2000"], ["0-0"] * (files.MAX_RANGES + 1),
                 specs[::-1] + ["1-1"]):
        status, headers, body = get(served, "/small.bin", {"Range": "bytes=" + ",".join(many)})
        assert (status, body) == (200, SMALL)


def test_an_invalid_range_anywhere_gets_the_whole_file(served):
    for spec in ("bytes=0-1,5-4", "bytes=0-1,x", "bytes=0-1,,--2"):
        assert get(served, "/small.bin", {"Range": spec})[::2] == (200, SMALL)


def test_if_range_decides_between_the_parts_and_the_whole_file(served):
    _, h, _ = get(served, "/large.bin")
    for validator in (h["etag"], h["last-modified"]):
        status, headers, body = get(served, "/large.bin",
                                    {"Range": "bytes=0-1,-2", "If-Range": validator})
        check_multipart(status, headers, body, [(0, 1), (len(LARGE) - 2, len(LARGE) - 1)], LARGE,
                        "application/octet-stream")
    status, _, body = get(served, "/large.bin", {"Range": "bytes=0-1,-2", "If-Range": '"old"'})
    assert (status, body) == (200, LARGE)


def test_head_ignores_range_as_for_one_range(served):
    """RFC 9110 section 14.2: range handling is defined for GET only, so HEAD answers as a GET
    without Range would: 200 with the whole file's length."""
    for spec in ("bytes=0-1", "bytes=0-1,10-11"):
        with served.connect() as sock:
            sock.sendall(b"HEAD /small.bin HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n" % spec.encode())
            r = read_response(sock.makefile("rb"), "HEAD")
        assert (r.status, r.header("Content-Length"), r.header("Content-Range")) == \
            (200, str(len(SMALL)), None)


def test_an_empty_file(served):
    assert get(served, "/empty.bin", {"Range": "bytes=-5,-3"})[::2] == (200, b"")
    assert get(served, "/empty.bin", {"Range": "bytes=0-1,5-"})[0] == 416


@st.composite
def range_sets(draw, size):
    """A valid Range header for a file of ``size`` bytes with 2 to 16 specs, mostly short
    closed ranges (so that many sets stay multipart), some past the end."""
    specs = []
    short = st.integers(0, size // 16)
    for _ in range(draw(st.integers(2, files.MAX_RANGES))):
        first = draw(st.integers(0, size + 10))
        kind = draw(st.sampled_from(["closed"] * 6 + ["open", "suffix"]))
        if kind == "closed":
            specs.append("%d-%d" % (first, first + draw(short)))
        elif kind == "open":
            specs.append("%d-" % first)
        else:
            specs.append("-%d" % draw(short))
    return "bytes=" + draw(st.sampled_from([",", ", ", " ,"])).join(specs)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_valid_range_set_reassembles_exactly(served, data):
    path = data.draw(st.sampled_from(sorted(CONTENTS)))
    content = CONTENTS[path]
    header = data.draw(range_sets(len(content)))
    decision = files.parse_ranges(header, len(content), None, "", 0)
    status, headers, body = get(served, path, {"Range": header})
    FIGURES["range sets by answer"]["%s %d" % (decision.kind, status)] += 1
    if decision.kind == "unsatisfiable":
        assert status == 416 and headers["content-range"] == "bytes */%d" % len(content)
    elif decision.kind == "partial":
        ((first, last),) = decision.spans
        assert (status, body) == (206, content[first:last + 1])
        assert headers["content-range"] == "bytes %d-%d/%d" % (first, last, len(content))
    else:
        assert decision.kind == "multipart"
        check_multipart(status, headers, body, decision.spans, content,
                        files.content_type(path))


def test_a_multipart_response_keeps_the_connection_for_the_next_request(served):
    with served.connect() as sock:
        f = sock.makefile("rb")
        for spec in ("bytes=0-1,10-11", "bytes=0-99999,200000-599999", None):
            extra = b"Range: %s\r\n" % spec.encode() if spec else b""
            sock.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n%s\r\n" % extra)
        first, second, third = (read_response(f) for _ in range(3))
        f.close()
    headers = {n.lower(): v for n, v in first.headers}
    check_multipart(first.status, headers, first.body, [(0, 1), (10, 11)], LARGE,
                    "application/octet-stream")
    headers = {n.lower(): v for n, v in second.headers}
    check_multipart(second.status, headers, second.body, [(0, 99999), (200000, 599999)], LARGE,
                    "application/octet-stream")
    assert (third.status, third.body) == (200, LARGE)


def test_curl_reassembles_two_ranges(served, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out, head = tmp_path / "out", tmp_path / "head"
    subprocess.run(["curl", "-sSf", "-r", "0-1,10-11", "-D", str(head), "-o", str(out),
                    served.url("/small.bin")], check=True, timeout=30)
    lines = head.read_bytes().decode("latin-1").split("\r\n")
    assert lines[0].split(" ")[1] == "206"
    headers = {n.lower(): v.strip() for n, _, v in (line.partition(":") for line in lines[1:] if line)}
    check_multipart(206, headers, out.read_bytes(), [(0, 1), (10, 11)], SMALL,
                    "application/octet-stream")


def test_send_file_handlers_get_multipart_too(site):
    class One(Handler):
        def do_GET(self, request):
            request.send_file(str(site / "text.txt"))

    s = Served(One())
    try:
        status, headers, body = get(s, "/anything", {"Range": "bytes=0-3,20-23"})
        check_multipart(status, headers, body, [(0, 3), (20, 23)], TEXT, "text/plain; charset=utf-8")
    finally:
        s.stop()


# ------------------------------------------------------------------ streaming large parts

def _queued(served):
    return served.call(lambda: max((ch.queued_bytes for ch in served.server.channels), default=0))


def test_large_parts_stream_in_bounded_memory_to_a_client_that_reads_slowly(served):
    """Two parts of 4 MiB of a 64 MiB file: the server keeps at most a burst queued for a client
    that does not read, and the whole response arrives exact once it does."""
    size, part = 64 << 20, 4 << 20
    spans = [(0, part - 2), (size - part, size - 1)]
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", served.port))
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=%d-%d,-%d\r\n\r\n"
                     % (spans[0] + (part,)))
        assert served.wait_until(lambda: any(ch.queued_bytes for ch in served.server.channels))
        peak = max(_queued(served) for _ in range(20))
        assert 0 < peak <= static._BURST + static._BLOCK
        f = sock.makefile("rb")
        r = read_response(f)
        f.close()
    FIGURES["streamed to a client not reading"] = {
        "response_bytes": len(r.body), "server_queue_peak_bytes": peak,
        "queue_bound_bytes": static._BURST + static._BLOCK}
    headers = {n.lower(): v for n, v in r.headers}
    parts = parse_multipart(headers["content-type"], r.body)
    assert [(rng, payload) for _, rng, payload in parts] == [
        ("bytes %d-%d/%d" % (first, last, size), bytes(last - first + 1)) for first, last in spans]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_client_leaving_mid_stream_releases_everything(site):
    app = StaticFiles(str(site))
    s = Served(app)
    try:
        s.call(lambda: None)
        assert get(s, "/huge.bin", {"Range": "bytes=0-0"})[0] == 206     # the cache holds huge.bin
        before = len(os.listdir("/proc/self/fd"))
        gc.disable()            # the stream's descriptor must go with the connection, by refcount
        for _ in range(5):
            sock = s.connect()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9999999,-9999999"
                         b"\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 206 ")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()                                # abortive close, mid-stream
        assert s.wait_until(lambda: not s.server.channels)
        assert s.wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before)
        assert get(s, "/huge.bin", {"Range": "bytes=0-1,-1"})[0] == 206
    finally:
        gc.enable()
        s.stop()


def test_a_boundary_found_in_the_parts_is_never_sent(tmp_path, monkeypatch, caplog):
    """The boundary is random; one that a part holds is drawn again for parts read before the
    head is sent, and cuts the connection short if found while streaming."""
    marked = bytearray(LARGE)
    marked[1000:1032] = b"a" * 32
    marked[300000:300032] = b"f" * 32
    (tmp_path / "marked.bin").write_bytes(marked)
    s = Served(StaticFiles(str(tmp_path)))
    try:
        draws = iter(["a" * 32, "0" * 32])
        monkeypatch.setattr(static.secrets, "token_hex", lambda n: next(draws))
        status, headers, body = get(s, "/marked.bin", {"Range": "bytes=0-1,500-2000"})
        assert headers["content-type"].endswith("boundary=" + "0" * 32)
        check_multipart(status, headers, body, [(0, 1), (500, 2000)], marked,
                        "application/octet-stream")
        # Streamed (over 64 KiB of parts): the response stops before the block holding it.
        monkeypatch.setattr(static.secrets, "token_hex", lambda n: "f" * 32)
        with caplog.at_level(logging.ERROR, logger="servers.http"):
            with s.connect() as sock:
                sock.sendall(b"GET /marked.bin HTTP/1.1\r\nHost: x\r\n"
                             b"Range: bytes=0-99999,200000-\r\n\r\n")
                f = sock.makefile("rb")
                r = read_response(f)
                f.close()
            s.call(lambda: None)
        assert r.status == 206
        assert 100000 < len(r.body) < int(r.header("Content-Length"))
        assert any("holds its boundary" in rec.getMessage() for rec in caplog.records)
    finally:
        s.stop()
