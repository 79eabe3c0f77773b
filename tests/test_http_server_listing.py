"""What one client can make the static server do for others: directory listings rendered once
per change and bounded in size, pipelined requests taking turns with other connections, and the
file cache holding one entry per file however its path is spelled.

Costs are asserted as counts (renders, cache entries, the order requests were answered in),
never as timings.
"""
import os
import re
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers.http import Handler, StaticFiles, files
from servers.http.static import FileCache, ListingCache

from test_http_server import Served, exchange, get


@pytest.fixture
def renders(monkeypatch):
    """Counts the listing pages rendered (calls of :func:`files.listing_page`)."""
    calls = []
    real = files.listing_page

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "listing_page", counting)
    return calls


def _dir_of(root, name, count):
    path = root / name
    path.mkdir()
    for i in range(count):
        os.close(os.open(path / ("file_%05d.txt" % i), os.O_CREAT | os.O_WRONLY))
    return path


def test_pipelined_heads_of_a_listing_render_it_once(tmp_path, renders):
    _dir_of(tmp_path, "d", 200)
    served = Served(StaticFiles(str(tmp_path), listings=ListingCache(max_age=3600)))
    try:
        n = 300
        data = (b"HEAD /d/ HTTP/1.1\r\nHost: a\r\n\r\n" * n
                + b"GET /d/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        heads = exchange(served, data, count=n, method="HEAD", timeout=10)
        (page,) = exchange(served, b"GET /d/ HTTP/1.1\r\nHost: a\r\n\r\n")
        assert all(r.status == 200 for r in heads)
        assert {r.header("Content-Length") for r in heads} == {str(len(page.body))}
        assert {r.header("ETag") for r in heads} == {page.header("ETag")}
        assert page.body.count(b"<tr class=\"\">") == 200
        assert renders == ["/d/"]       # once, for 301 requests on two connections
    finally:
        served.stop()


def test_a_listing_revalidates_with_304_and_sees_changes(tmp_path, renders):
    d = _dir_of(tmp_path, "d", 3)
    clock = [1000.0]
    listings = ListingCache(max_age=5.0, clock=lambda: clock[0])
    served = Served(StaticFiles(str(tmp_path), listings=listings))
    try:
        status, h, body = get(served, "/d/")
        assert status == 200 and h["etag"].startswith('"') and "last-modified" in h
        for validator in ({"If-None-Match": h["etag"]}, {"If-Modified-Since": h["last-modified"]}):
            for method in ("GET", "HEAD"):
                status, h304, again = get(served, "/d/", validator, method)
                assert (status, again, h304["etag"]) == (304, b"", h["etag"])
        assert len(renders) == 1

        (d / "new.txt").write_bytes(b"x")       # the directory's stamp changes
        status, h2, body2 = get(served, "/d/", {"If-None-Match": h["etag"]})
        assert status == 200 and b"new.txt" in body2 and h2["etag"] != h["etag"]
        assert len(renders) == 2

        # A listed file's size is not in the directory's stamp: seen once the page is max_age old.
        (d / "new.txt").write_bytes(b"x" * 5000)
        assert get(served, "/d/")[2] == body2
        clock[0] += 5.0
        status, h3, body3 = get(served, "/d/", {"If-None-Match": h2["etag"]})
        assert status == 200 and b"4.9 KiB" in body3 and h3["etag"] != h2["etag"]
        assert len(renders) == 3
    finally:
        served.stop()


def test_the_listing_cache_is_bounded(tmp_path, renders):
    for i in range(4):
        _dir_of(tmp_path, "d%d" % i, 2)
    listings = ListingCache(max_entries=2, max_age=3600)
    served = Served(StaticFiles(str(tmp_path), listings=listings))
    try:
        for path in ("/d0/", "/d1/", "/d2/", "/d3/", "/d3/", "/d2/", "/d0/"):
            assert get(served, path)[0] == 200
        assert renders == ["/d0/", "/d1/", "/d2/", "/d3/", "/d0/"]
        assert served.call(len, listings) == 2
        one = served.call(lambda: listings._bytes)
        assert one > 2 * 1000       # pages and keys are counted
    finally:
        served.stop()


def test_a_huge_directory_lists_the_first_entries_by_name_and_says_how_many_are_left_out(tmp_path):
    big = _dir_of(tmp_path, "big", files.MAX_LISTED + 3)
    (big / "AAA").mkdir()           # a directory sorting first by name: shown, at the top
    served = Served(StaticFiles(str(tmp_path)))
    try:
        status, h, body = get(served, "/big/")
        assert status == 200
        hrefs = re.findall(rb'<a href="([^"]+)">', body)
        assert hrefs[:2] == [b"../", b"AAA/"]
        assert len(hrefs) == 1 + files.MAX_LISTED
        assert hrefs[-1] == b"file_%05d.txt" % (files.MAX_LISTED - 2)
        assert b"4 of 10,004 entries are not listed: a listing shows at most 10,000" in body
    finally:
        served.stop()


def test_a_listing_stops_at_its_byte_bound(tmp_path):
    for i in range(50):
        (tmp_path / ("%02d" % i + "&" * 200)).write_bytes(b"")
    body = files.listing_html("/", str(tmp_path))
    whole = len(body)
    body, _ = files.listing_page("/", str(tmp_path), max_bytes=whole // 2)
    shown = len(re.findall(rb'<a href=', body))
    assert 0 < shown < 50 and len(body) <= whole // 2 + 2000
    assert b"%d of 50 entries are not listed" % (50 - shown) in body


class _Recorder(Handler):
    """Answers every GET/HEAD with a tiny page and records the order of the paths it answered;
    answering the first ``/a`` it connects a second client, whose request then waits in the
    listener's backlog."""

    def __init__(self):
        self.seen = []
        self.port = None
        self.other = None

    def do_GET(self, request):
        self.seen.append(request.path)
        if request.path == "/a" and self.other is None:
            self.other = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.other.sendall(b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        request.respond(200, (("Content-Type", "text/plain"),), b"ok")


def test_a_long_pipeline_lets_another_connection_be_answered_before_it_ends():
    app = _Recorder()
    served = Served(app)
    app.port = served.port
    try:
        n = 1000
        responses = exchange(served, b"HEAD /a HTTP/1.1\r\nHost: a\r\n\r\n" * n, count=n,
                             method="HEAD", timeout=10)
        assert [r.status for r in responses] == [200] * n
        assert served.wait_until(lambda: "/b" in app.seen)
        other = app.other.makefile("rb")
        assert other.readline().startswith(b"HTTP/1.1 200")
        other.close()
        app.other.close()
        assert app.seen.count("/a") == n
        assert app.seen.index("/b") < n, "the second connection waited for the whole pipeline"
    finally:
        served.stop()


def test_one_file_under_many_spellings_is_one_cache_entry(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"y" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_bytes(b"<p>index</p>")
    app = StaticFiles(str(tmp_path))
    served = Served(app)
    try:
        spellings = ["/" * k + "f.txt" for k in range(1, 40)] + ["/%66.txt", "/f%2etxt", "/./f.txt"]
        for path in spellings:
            status, _, body = get(served, path)
            if path == "/./f.txt":
                assert status == 404        # "." is refused, as before
            else:
                assert (status, body) == (200, b"y" * 1000), path
        for path in ("/sub/", "//sub//", "/sub/index.html"):
            assert get(served, path)[2] == b"<p>index</p>"
        assert get(served, "/sub")[0] == 301    # the trailing slash is part of the key
        assert served.call(len, app.cache) == 3     # f.txt, /sub/ and /sub/index.html
    finally:
        served.stop()


def test_cache_keys_count_in_its_byte_budget(tmp_path):
    name = "n" * 200
    (tmp_path / name).write_bytes(b"0123456789")
    cache = FileCache(max_bytes=100)
    served = Served(StaticFiles(str(tmp_path), cache=cache))
    try:
        assert get(served, "/" + name)[2] == b"0123456789"
        assert served.call(len, cache) == 0     # 10 body bytes, but a 200-character key
        assert served.call(lambda: cache._bytes) == 0
    finally:
        served.stop()


_SEGMENT = st.text(st.sampled_from("ab.:%/\\\x00é2F~ C"), max_size=6)


@given(st.lists(_SEGMENT, max_size=5), st.booleans(), st.integers(1, 3))
def test_canonical_path_names_what_the_raw_path_names(segments, trailing, slashes):
    raw = "/" * slashes + "/".join(segments) + ("/" if trailing else "")
    names = files.request_names(raw)
    # Without "%", every byte percent-encoded names the same: the decoding path of
    # request_names, never its fast path.
    if "%" not in raw:
        encoded = "/" + "/".join("".join("%%%02X" % b for b in seg.encode("utf-8", "surrogatepass"))
                                 for seg in raw.split("/")[1:])
        assert files.request_names(encoded) == names
    canonical = files.canonical_path(raw)
    if names is None:
        assert canonical is None
    else:
        assert files.request_names(canonical) == names
        assert files.canonical_path(canonical) == canonical
        assert canonical.endswith("/") == (bool(names) and raw.endswith("/")) or canonical == "/"
