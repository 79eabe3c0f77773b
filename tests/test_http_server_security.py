"""servers.http security: no request reads outside the served directory (not even by racing a
symlink swap against the server), request data never reaches a response head unescaped, and the
access log cannot be forged (gh-100001).  The race's figures are printed (``-s``) and saved to
``$ROBUST_REPORT/security.json`` when set."""
import html
import logging
import os
import re
import subprocess
import sys
import time
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.http import FileCache, StaticFiles
from figures import figures_fixture
from test_http_server import Served, exchange, get, read_response

SECRET = b"TOP-SECRET-CONTENT-7f3a"
FIGURES = {}


report = figures_fixture("symlink races", "security.json", FIGURES)


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    base = tmp_path_factory.mktemp("jail")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "x.txt").write_bytes(SECRET)
    root = base / "www"
    root.mkdir()
    (root / "small.txt").write_bytes(b"public")
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_bytes(b"inner")
    os.symlink(base / "secret.txt", root / "link_out")
    os.symlink(base / "outside", root / "dir_out")
    os.symlink(root / "small.txt", root / "link_in")
    os.symlink("/etc/passwd", root / "passwd")
    evil = root / "evil\r\nSet-Cookie: a=1"
    evil.mkdir()
    return {"base": base, "root": str(root)}


@pytest.fixture(scope="module")
def served(jail):
    s = Served(StaticFiles(jail["root"]))
    yield s
    s.stop()


TRAVERSALS = [
    "/../secret.txt", "/../../../../etc/passwd", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
    "/.%2e/secret.txt", "/%2e./secret.txt", "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt",
    "/sub/..%2f..%2fsecret.txt", "/sub/%2e%2e/%2e%2e/secret.txt", "/..%5csecret.txt",
    "/sub/..\\..\\secret.txt", "/%5c..%5csecret.txt", "/%00", "/small.txt%00.html",
    "/%00/../secret.txt", "/C:/secret.txt", "/c:%5csecret.txt", "//etc/passwd", "/etc/passwd",
    "/%2fetc%2fpasswd", "/%c0%ae%c0%ae/secret.txt", "/%ff%fe/secret.txt", "/sub/../../secret.txt",
    "/./small.txt/../../secret.txt", "/link_out", "/dir_out/x.txt", "/dir_out/", "/passwd",
    "http://x/../secret.txt", "http://x/%2e%2e/secret.txt", "*", "/~/secret.txt",
    "/%25%32%65%25%32%65/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_attempts_find_nothing(served, target):
    (r,) = exchange(served, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode("latin-1"))
    assert SECRET not in r.body and b"root:" not in r.body
    assert r.status in (400, 404)


def test_symlinks_inside_are_served(served):
    assert get(served, "/link_in")[::2] == (200, b"public")


def test_follow_symlinks_serves_links_leading_out(jail):
    s = Served(StaticFiles(jail["root"], follow_symlinks=True))
    try:
        assert get(s, "/link_out")[::2] == (200, SECRET)
        assert get(s, "/dir_out/x.txt")[::2] == (200, SECRET)
        assert get(s, "/%2e%2e/secret.txt")[0] == 404     # traversal is still refused
    finally:
        s.stop()


def test_a_cached_file_replaced_by_a_link_out_is_not_served(jail, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.txt").write_bytes(b"ok")
    s = Served(StaticFiles(str(root)))
    try:
        assert get(s, "/f.txt")[::2] == (200, b"ok")          # now cached
        os.unlink(root / "f.txt")
        os.symlink(jail["base"] / "secret.txt", root / "f.txt")
        status, _, body = get(s, "/f.txt")
        assert status == 404 and SECRET not in body
    finally:
        s.stop()


def test_a_cached_file_whose_directory_becomes_a_link_out_is_not_served(tmp_path):
    """The file keeps its inode, size, mtime and ctime when its directory is moved out of the
    root and a symlink to it put in its place: only a fresh lookup beneath the root sees it."""
    root, outside = tmp_path / "www", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    for name, size in (("small", 20), ("large", 100000)):
        (root / name).mkdir()
        (root / name / "f.bin").write_bytes(SECRET * (size // len(SECRET)))
    s = Served(StaticFiles(str(root), cache=FileCache(small=1024)))
    try:
        for name in ("small", "large"):
            path = "/%s/f.bin" % name
            assert get(s, path)[0] == 200                     # cached (body or descriptor)
            os.rename(root / name, outside / name)
            os.symlink(outside / name, root / name)
            for _ in range(2):
                status, _, body = get(s, path)
                assert (status, SECRET in body) == (404, False)
    finally:
        s.stop()


# A process that swaps ``link`` between its targets as fast as it can (each swap atomic: a new
# link renamed over the old), for at most the seconds given.
SWAPPER = r"""
import os, sys, time
link, seconds, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
spare = link + ".new"
deadline = time.monotonic() + seconds
print("swapping", flush=True)
while time.monotonic() < deadline:
    for target in targets:
        try:
            os.unlink(spare)
        except FileNotFoundError:
            pass
        os.symlink(target, spare)
        os.replace(spare, link)
"""
RACE_REQUESTS = 20000
RACE_SECONDS = 8.0


def write_tree(base, contents):
    """Create the files of ``contents`` ({path relative to base: bytes}) and their directories."""
    for rel, data in contents.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def race_tree(tmp_path):
    write_tree(tmp_path, {"www/inside.txt": b"inside", "www/real/x.txt": b"inside",
                          "secret.txt": SECRET, "outside/x.txt": SECRET})
    return tmp_path


@pytest.mark.parametrize("link, targets, target", [
    ("f", ("www/inside.txt", "secret.txt"), "/f"),
    ("d", ("www/real", "outside"), "/d/x.txt"),
], ids=["file-link", "directory-link"])
def test_a_symlink_swapped_in_and_out_never_serves_the_outside(race_tree, link, targets, target):
    """Another process swaps a symlink between a file (or directory) inside the root and one
    outside while a client asks for it again and again.  Before the lookups were made
    race-free, the check (realpath) and the open were separate steps, and the swap won within
    a few hundred requests.  The cache holds no bodies here, so every request is looked up."""
    root = race_tree / "www"
    link_path = str(root / link)
    targets = [str(race_tree / t) for t in targets]
    os.symlink(targets[0], link_path)
    served = Served(StaticFiles(str(root), cache=FileCache(max_bytes=0)))
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, link_path, str(RACE_SECONDS)]
                               + targets, stdout=subprocess.PIPE)
    statuses = {}
    try:
        assert swapper.stdout.readline() == b"swapping\n"
        request = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode()
        deadline = time.monotonic() + RACE_SECONDS
        with served.connect() as sock:
            f = sock.makefile("rb")
            for i in range(RACE_REQUESTS):
                if time.monotonic() > deadline:
                    break
                sock.sendall(request)
                r = read_response(f)
                assert SECRET not in r.body, "outside content served at request %d" % i
                assert (r.status, r.body) in ((200, b"inside"), (404, r.body))
                statuses[r.status] = statuses.get(r.status, 0) + 1
            f.close()
    finally:
        swapper.kill()
        swapper.wait()
        served.stop()
    FIGURES["swapped %s link" % ("file" if link == "f" else "directory")] = {
        "requests": sum(statuses.values()), "by_status": statuses, "outside_served": 0}
    assert statuses.get(200) and statuses.get(404), statuses     # the swaps did race the requests


def test_a_link_swapped_just_after_it_is_read_is_not_followed_out(race_tree, monkeypatch):
    """The same race, made certain: the link is swapped to the outside right after the server
    reads it.  The server must go on with what it read (inside), and from then on find the
    link leading out: 404, never the outside file from its cache."""
    root = race_tree / "www"
    link_path = root / "f"
    os.symlink(root / "inside.txt", link_path)
    spare = root / "f.new"
    os.symlink(race_tree / "secret.txt", spare)
    real_readlink = os.readlink
    swaps = []

    def readlink(path, *args, **kwargs):
        target = real_readlink(path, *args, **kwargs)
        if os.path.basename(os.fsdecode(path)) == "f" and not swaps:
            os.replace(spare, link_path)
            swaps.append(target)
        return target

    served = Served(StaticFiles(str(root)))
    try:
        monkeypatch.setattr(os, "readlink", readlink)
        first = get(served, "/f")
        monkeypatch.setattr(os, "readlink", real_readlink)
        assert swaps, "the server never read the link"
        assert first[::2] == (200, b"inside")
        for _ in range(3):
            status, _, body = get(served, "/f")
            assert (status, SECRET in body) == (404, False)
    finally:
        served.stop()


def _link_rows(body):
    """{link text: (size cell, date cell)} for the rows of a listing marked as links."""
    rows = re.findall(r'<tr class="[^"]*link[^"]*"><td><a href="([^"]*)">([^<]*)</a></td>'
                      r'<td class="size"[^>]*>([^<]*)</td><td class="date">([^<]*)</td>',
                      body.decode())
    return {html.unescape(text): (href, size, date) for href, text, size, date in rows}


def test_listing_describes_a_symlink_only_where_a_request_for_it_is_served(tmp_path):
    root, outside = tmp_path / "www", tmp_path / "outside"
    write_tree(tmp_path, {"www/sub/in.txt": b"x" * 1234, "outside/secret.txt": SECRET * 1000})
    links = {"inlink": root / "sub" / "in.txt", "indirlink": root / "sub",
             "outlink": outside / "secret.txt", "outdir": outside,
             "dangling": root / "nothing", "loop": root / "loop"}
    for name, target in links.items():
        os.symlink(target, root / name)
    s = Served(StaticFiles(str(root)))
    try:
        status, _, body = get(s, "/")
        assert status == 200
        rows = _link_rows(body)
        assert rows["inlink"][1:] != ("-", "-") and "1.2 KiB" in rows["inlink"][1]
        assert "indirlink/" in rows and rows["indirlink/"][2] != "-"
        for name in ("outlink", "outdir", "dangling", "loop"):
            assert rows[name] == (name, "-", "-"), rows     # no size, date or trailing slash
        assert b"22.5 KiB" not in body and b"23000 bytes" not in body     # the secret's size
        # ... consistently with what a request for each link gets.
        for text, (href, size, date) in rows.items():
            served = get(s, "/" + href)[0] == 200
            assert served == ((size, date) != ("-", "-")), text
    finally:
        s.stop()


# A tree of symlink shapes: chains, relative and absolute, with "..", to files and to directories,
# inside and out, dangling and looping.  The model of what may be served is os.path.realpath's.
LINKS = {
    "chain1": "chain2", "chain2": "sub/chain3", "sub/chain3": "../small.txt",
    "abs_in": "{root}/sub/inner.txt", "abs_out": "{base}/secret.txt",
    "up_and_back": "../www/small.txt", "up_out": "../outside/x.txt",
    "dirlink": "sub", "dirlink_abs": "{root}/sub", "outdir": "{base}/outside",
    "sub/parent": "..", "sub/grandparent": "../..", "sub/self": ".",
    "dangling": "nothing-here", "dangling_out": "{base}/nothing", "loop": "loop",
    "loop_a": "loop_b", "loop_b": "loop_a", "sub/dotdot_chain": "../chain1",
    "sub/deep": "../dirlink/../dirlink_abs/inner.txt", "via_outdir": "outdir/../www/small.txt",
}
LINK_SEGMENTS = sorted({name.split("/")[-1] for name in LINKS} | {
    "small.txt", "sub", "inner.txt", "x.txt", "secret.txt", "outside", "www", "..", "%2e%2e",
    ".%2E", "%2e", ".", "", "%2F", "index.html"})


@pytest.fixture(scope="module")
def link_tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("links")
    root = base / "www"
    write_tree(base, {"www/small.txt": b"public", "www/sub/inner.txt": b"inner",
                      "secret.txt": SECRET, "outside/x.txt": SECRET})
    for name, target in LINKS.items():
        os.symlink(target.format(root=root, base=base), root / name)
    served = Served(StaticFiles(str(root)))
    yield str(root), served
    served.stop()


def _model_status(root, target):
    """What a request for ``target`` should get, by os.path.realpath: 200, 301 or 404."""
    names = []
    for raw in target.split("/")[1:]:
        segment = unquote(raw)
        if segment in (".", "..") or "/" in segment:
            return 404
        if segment:
            names.append(segment)
    real = os.path.realpath(os.path.join(root, *names))
    if not (real == root or real.startswith(root + os.sep)):
        return 404
    if os.path.isfile(real):
        return 404 if target.endswith("/") else 200
    if os.path.isdir(real):
        return 200 if target.endswith("/") else 301
    return 404


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(LINK_SEGMENTS), min_size=1, max_size=6),
       st.sampled_from(["/", "//"]), st.booleans())
def test_symlink_shapes_are_served_exactly_as_their_real_paths_allow(link_tree, segments, lead,
                                                                   trailing):
    root, served = link_tree
    target = lead + "/".join(segments) + ("/" if trailing and segments[-1] else "")
    (r,) = exchange(served, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    assert SECRET not in r.body
    assert r.status == _model_status(os.path.realpath(root), target), target
    if r.status == 200 and not target.endswith("/"):
        assert r.body in (b"public", b"inner")


SEGMENTS = st.sampled_from(["..", ".", "%2e%2e", "%2E.", "%2f", "%5c", "\\", "%00", "secret.txt",
                            "small.txt", "sub", "link_out", "dir_out", "x.txt", "", "%25", "a%",
                            "%c0%ae", "C:", "inner.txt", "~"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(SEGMENTS, min_size=1, max_size=7), st.booleans())
def test_no_path_leads_outside(served, segments, trailing):
    target = "/" + "/".join(segments) + ("/" if trailing else "")
    (r,) = exchange(served, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    assert SECRET not in r.body
    if r.status == 200:
        assert r.body in (b"public", b"inner") or r.body.startswith(b"<!DOCTYPE html>")


ALLOWED_HEADERS = {"server", "date", "content-type", "content-length", "last-modified", "etag",
                   "accept-ranges", "location", "connection", "content-range", "allow"}


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=40).map(
    lambda b: bytes(c for c in b if c > 0x20 and c != 0x7f) or b"x"))
def test_request_data_never_makes_a_header(served, junk):
    target = b"/sub" + junk if junk[:1] != b"/" else junk
    (r,) = exchange(served, b"GET %s HTTP/1.1\r\nHost: x\r\nX-Y: \xff\xfe%s\r\n\r\n" % (target, junk))
    for name, value in r.headers:
        assert name.lower() in ALLOWED_HEADERS
        assert all(0x20 <= ord(c) < 0x7f for c in value)


def test_redirect_location_is_percent_encoded(served):
    (r,) = exchange(served, b"GET /evil%0D%0ASet-Cookie:%20a=1?q=%0d%0a<x> HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 301
    assert [n.lower() for n, _ in r.headers].count("set-cookie") == 0
    assert r.header("Location") == "/evil%0D%0ASet-Cookie:%20a=1/?q=%0d%0a%3Cx%3E"


def test_access_log_lines_cannot_be_forged(served, caplog):
    with caplog.at_level(logging.INFO, logger="servers.http.access"):
        exchange(served, b"GET /x\r\n127.0.0.1 - - forged HTTP/1.1\r\nHost: x\r\n\r\n")
        exchange(served, b"GET /\xe2\x80\xae\x1b]0;title\x07 HTTP/1.1\r\nHost: x\r\n\r\n")
        served.call(lambda: None)
    lines = [r.getMessage() for r in caplog.records if r.name == "servers.http.access"]
    assert lines and all(line.isprintable() and "\n" not in line for line in lines)
    assert not any(line.startswith("127.0.0.1 - - forged") for line in lines)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=30))
def test_any_request_line_logs_as_one_printable_line(served, junk):
    junk = junk.replace(b"\n", b"").replace(b"\r", b"") or b"x"
    handler_records = []

    class Grab(logging.Handler):
        def emit(self, record):
            handler_records.append(record.getMessage())

    grab = Grab()
    log = logging.getLogger("servers.http.access")
    old = log.level
    log.addHandler(grab)
    log.setLevel(logging.INFO)
    try:
        (r,) = exchange(served, b"GET /" + junk + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        served.call(lambda: None)
    finally:
        log.removeHandler(grab)
        log.setLevel(old)
    assert r.status in (200, 301, 400, 404) and len(handler_records) == 1
    line = handler_records[0]
    assert line.isprintable() and line.count('"') == 2
