"""Tests for servers.http.files: path resolution, listings, validators, ranges, logs."""
import ast
import calendar
import datetime
import email
import html
import html.parser
import os
import re
import shutil
import stat
import tempfile
import time
from types import SimpleNamespace
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, strategies as st

from servers.http import files
from servers.http.files import (
    CONTENT_TYPES, RangeResult, byteranges_framing, coalesce_ranges, content_range, content_type,
    etag_for, evaluate_conditional, listing_html, parse_range, parse_ranges, resolve,
)
from servers.http.messages import (REASONS, common_log_line, error_page, http_date, log_escape,
                                   parse_http_date)

RFC_EXAMPLE = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT


# --------------------------------------------------------------------------
# Helpers

class PageParser(html.parser.HTMLParser):
    """Collects tags, hrefs and link texts of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.hrefs = []
        self.link_texts = []
        self.title = ""
        self.text = []
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])
            self.link_texts.append("")
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in == "a":
            self.link_texts[-1] += data
        elif self._in == "title":
            self.title += data


def parse_page(body: bytes) -> PageParser:
    parser = PageParser()
    parser.feed(body.decode("utf-8"))
    parser.close()
    return parser


LISTING_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "table",
                "thead", "tbody", "tr", "th", "td", "a"}


def fake_stat(mtime=RFC_EXAMPLE + 0.25, size=1000):
    return SimpleNamespace(st_mtime=mtime, st_mtime_ns=int(mtime * 1e9), st_size=size)


class FakeEntry:
    """An os.DirEntry stand-in for listing tests that need sizes no test should write."""

    def __init__(self, name, size=0, is_dir=False, is_link=False, mtime=0.0,
                 broken=False):
        self.name = name
        self._dir, self._link, self._broken = is_dir, is_link, broken
        mode = stat.S_IFDIR | 0o755 if is_dir else stat.S_IFREG | 0o644
        self._stat = SimpleNamespace(st_size=size, st_mtime=mtime, st_mode=mode)

    def is_dir(self, follow_symlinks=True):
        return self._dir

    def is_symlink(self):
        return self._link

    def stat(self, follow_symlinks=True):
        if self._broken:
            raise FileNotFoundError(self.name)
        return self._stat


def is_inside(root, path):
    root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


# --------------------------------------------------------------------------
# The module keeps to its contract

def test_module_imports_no_platform_tables_or_io():
    tree = ast.parse(open(files.__file__, encoding="utf-8").read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert not imported & {"mimetypes", "socket", "selectors", "asyncore", "asynchat"}


# --------------------------------------------------------------------------
# Content types

@pytest.mark.parametrize("name, expected", [
    ("index.html", "text/html; charset=utf-8"),
    ("INDEX.HTM", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("mod.mjs", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("feed.xml", "application/xml; charset=utf-8"),
    ("logo.svg", "image/svg+xml; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("README.md", "text/markdown; charset=utf-8"),
    ("setup.py", "text/x-python; charset=utf-8"),
    ("photo.JPG", "image/jpeg"),
    ("a.png", "image/png"),
    ("m.wasm", "application/wasm"),
    ("f.woff2", "font/woff2"),
    ("song.mp3", "audio/mpeg"),
    ("clip.webm", "video/webm"),
    ("dist/pkg.tar.gz", "application/gzip"),
    ("doc.pdf", "application/pdf"),
    ("Makefile", "application/octet-stream"),
    (".bashrc", "application/octet-stream"),
    ("archive.unknownext", "application/octet-stream"),
    ("trailingdot.", "application/octet-stream"),
])
def test_content_type_table(name, expected):
    assert content_type(name) == expected


@given(ext=st.sampled_from(sorted(CONTENT_TYPES)), data=st.data())
def test_content_type_is_case_insensitive_and_charset_only_on_text(ext, data):
    mixed = "".join(data.draw(st.sampled_from([c.lower(), c.upper()])) for c in ext)
    result = content_type("dir.d/file." + mixed)
    assert result == content_type("file." + ext)
    base = CONTENT_TYPES[ext]
    textual = (base.startswith("text/") or base.endswith(("+xml", "+json"))
               or base in ("application/json", "application/xml",
                           "application/yaml", "application/toml"))
    assert result == (base + "; charset=utf-8" if textual else base)


# --------------------------------------------------------------------------
# resolve(): a real tree with symlinks and a fifo

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    root = base / "root"
    outside = base / "outside"
    sibling = base / "rootx"  # shares root's name as a string prefix
    for d in (root, outside, sibling):
        d.mkdir()
    (outside / "secret.txt").write_text("secret")
    (sibling / "secret").write_text("secret")
    (root / "sub").mkdir()
    (root / "sub" / "file.txt").write_text("hello")
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<p>html</p>")
    (root / "site" / "index.htm").write_text("<p>htm</p>")
    (root / "site2").mkdir()
    (root / "site2" / "index.htm").write_text("<p>htm</p>")
    (root / "dirindex").mkdir()
    (root / "dirindex" / "index.html").mkdir()
    (root / "leakyindex").mkdir()
    (root / "leakyindex" / "index.html").symlink_to(outside / "secret.txt")
    (root / "evil.com").mkdir()
    (root / "a file.txt").write_text("spaces")
    (root / "café.txt").write_text("unicode")
    (root / "100%.txt").write_text("percent")
    (root / "inlink").symlink_to(root / "sub" / "file.txt")
    (root / "indirlink").symlink_to(root / "sub")
    (root / "outlink").symlink_to(outside / "secret.txt")
    (root / "outdir").symlink_to(outside)
    (root / "sib").symlink_to(sibling)
    (root / "dangling").symlink_to(root / "nothing-here")
    (root / "loop").symlink_to(root / "loop")
    (root / "devnull").symlink_to("/dev/null")
    os.mkfifo(root / "fifo")
    return SimpleNamespace(root=str(root), outside=str(outside))


@pytest.mark.parametrize("url, kind, rel", [
    ("/", "dir", ""),
    ("/sub/", "dir", "sub"),
    ("//sub///", "dir", "sub"),
    ("/sub/file.txt", "file", "sub/file.txt"),
    ("/site/", "file", "site/index.html"),
    ("/site2/", "file", "site2/index.htm"),
    ("/dirindex/", "dir", "dirindex"),
    ("/leakyindex/", "dir", "leakyindex"),
    ("/a%20file.txt", "file", "a file.txt"),
    ("/caf%C3%A9.txt", "file", "café.txt"),
    ("/café.txt", "file", "café.txt"),
    ("/100%25.txt", "file", "100%.txt"),
    ("/inlink", "file", "inlink"),
    ("/indirlink/file.txt", "file", "indirlink/file.txt"),
])
def test_resolve_serves(tree, url, kind, rel):
    result = resolve(tree.root, url)
    assert result.kind == kind
    assert result.fs_path == os.path.join(tree.root, *rel.split("/") if rel else [])
    assert result.stat == os.stat(result.fs_path)


@pytest.mark.parametrize("url", [
    "/nothing", "/sub/file.txt/", "/sub/nothing/",
    # escaping the root, plainly or encoded
    "/../outside/secret.txt", "/sub/../../outside/secret.txt",
    "/%2e%2e/outside/secret.txt", "/%2E%2E/outside/secret.txt", "/.%2e/outside/secret.txt",
    "/sub/%2e%2e/%2e%2e/outside/secret.txt", "/..", "/./sub/",
    # a decoded slash never makes a new segment
    "/sub%2ffile.txt", "/sub%2Ffile.txt", "/..%2foutside%2fsecret.txt",
    "/%2e%2e%2f%2e%2e%2foutside",
    # backslashes, NUL, drive letters, bad escapes, bad UTF-8 (overlong dots too)
    "/sub\\file.txt", "/sub%5cfile.txt", "/..\\outside", "/sub/file.txt%00",
    "/sub/file.txt\x00", "/C:/Windows", "/c%3a/x", "/100%.txt", "/%zz", "/%",
    "/caf%E9.txt", "/%c0%ae%c0%ae/outside", "/%ff",
    # not an origin-form path at all
    "", "*", "sub/file.txt", "http://example.com/", "C:\\secret",
    # symlinks that leave the root, dangling, looping; non-regular files
    "/outlink", "/outdir/", "/outdir/secret.txt", "/sib/secret", "/dangling",
    "/loop", "/fifo", "/devnull",
])
def test_resolve_refuses(tree, url):
    result = resolve(tree.root, url)
    assert result.kind == "notfound"
    assert result.fs_path is None and result.stat is None


@pytest.mark.parametrize("url, kind", [
    ("/outlink", "file"), ("/outdir/", "dir"), ("/outdir/secret.txt", "file"),
    ("/sib/secret", "file"), ("/leakyindex/", "file"),
    ("/fifo", "notfound"), ("/devnull", "notfound"), ("/dangling", "notfound"),
    ("/outdir/../outside/secret.txt", "notfound"), ("/%2e%2e/outside/", "notfound"),
])
def test_resolve_follow_symlinks(tree, url, kind):
    assert resolve(tree.root, url, follow_symlinks=True).kind == kind


@pytest.mark.parametrize("url, query, location", [
    ("/sub", "", "/sub/"),
    ("/sub", "a=1&b=%20", "/sub/?a=1&b=%20"),
    ("//sub", "", "/sub/"),
    ("//evil.com", "", "/evil.com/"),
    ("///evil.com", "x", "/evil.com/?x"),
    ("/indirlink", "", "/indirlink/"),
    ("/sub/../sub", "", None),
])
def test_resolve_redirects_directories(tree, url, query, location):
    result = resolve(tree.root, url, query=query)
    if location is None:
        assert result.kind == "notfound"
    else:
        assert result.kind == "redirect"
        assert result.location == location


@given(slashes=st.integers(1, 5), query=st.text(max_size=20))
def test_redirect_location_is_never_protocol_relative(tree, slashes, query):
    result = resolve(tree.root, "/" * slashes + "evil.com", query=query)
    assert result.kind == "redirect"
    assert result.location.startswith("/evil.com/")
    assert not result.location.startswith("//")
    assert all(0x21 <= ord(c) < 0x7f for c in result.location)


EVIL_SEGMENTS = st.one_of(
    st.sampled_from([
        "..", ".", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2e", "%2f", "%2F", "%5c", "\\",
        "%00", "\x00", "..\\..", "..%2f..", "%c0%ae%c0%ae", "C:", "c%3A", "%", "%%32e",
        "outside", "secret.txt", "outlink", "outdir", "sib", "secret", "sub",
        "indirlink", "file.txt", "loop", "fifo", "devnull", "", "~", "..;", ".. ",
    ]),
    st.text(max_size=8),
    st.text(max_size=8).map(lambda s: quote(s, safe="")),
    st.text(alphabet="./\\%2eEfF5cC0", max_size=10),
)


@given(segments=st.lists(EVIL_SEGMENTS, max_size=8), lead=st.sampled_from(["/", "//", ""]),
       trailing=st.booleans(), follow=st.booleans())
def test_generated_paths_never_leave_root(tree, segments, lead, trailing, follow):
    url = lead + "/".join(segments) + ("/" if trailing else "")
    result = resolve(tree.root, url, follow_symlinks=follow)
    assert result.kind in ("file", "dir", "redirect", "notfound")
    if result.kind == "notfound":
        return
    # Lexically the path always stays below the root ...
    assert os.path.normpath(result.fs_path).startswith(tree.root)
    # ... and without follow_symlinks so does every symlink on the way.
    if not follow:
        assert is_inside(tree.root, result.fs_path)
    if result.kind == "redirect":
        assert result.location.startswith("/") and not result.location.startswith("//")


def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_root_lookups_leave_only_the_roots_descriptor_open(tree):
    before = _open_descriptors()
    root = files.Root(tree.root)
    assert _open_descriptors() == before + 1
    urls = ["/", "/sub/file.txt", "/site/", "/indirlink/file.txt", "/outdir/secret.txt",
            "/loop", "/dangling", "/fifo", "/sub", "/nothing/at/all", "/leakyindex/"]
    for url in urls * 3:
        r = root.lookup(url)
        if r.fd is not None:
            os.close(r.fd)
        try:
            root.stat(r.names or ("nothing",))
        except OSError:
            pass
    assert _open_descriptors() == before + 1
    root.close()
    assert _open_descriptors() == before


def test_root_lookup_opens_what_it_found(tree):
    root = files.Root(tree.root)
    try:
        r = root.lookup("/inlink")
        assert r.kind == "file" and r.names == ("inlink",)
        assert os.read(r.fd, 100) == b"hello"
        assert os.fstat(r.fd).st_ino == os.stat(os.path.join(tree.root, "sub", "file.txt")).st_ino
        os.close(r.fd)
        r = root.lookup("/indirlink/")
        assert r.kind == "dir" and os.path.samestat(os.fstat(r.fd),
                                                   os.stat(os.path.join(tree.root, "sub")))
        os.close(r.fd)
        assert root.lookup("/indirlink").fd is None            # a redirect holds nothing
        with pytest.raises(IsADirectoryError):
            root.open(("sub",))
        with pytest.raises(FileNotFoundError):
            root.open(("outlink",))
    finally:
        root.close()


def test_a_root_switched_to_another_directory_is_served_within_a_second(tmp_path, monkeypatch):
    """A symlink switched to a new release (or a replaced DIR) is seen at the first lookup a
    second later, cached files included; a missing root is not found."""
    now = [1000.0]
    monkeypatch.setattr(files, "_monotonic", lambda: now[0])
    for release in ("one", "two"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "index.html").write_text(release)
    os.symlink(tmp_path / "one", tmp_path / "www")
    root = files.Root(str(tmp_path / "www"))
    try:
        def served(names):
            fd = root.open(names)
            try:
                return os.read(fd, 10)
            finally:
                os.close(fd)

        assert served(("index.html",)) == b"one"
        st = root.stat(("index.html",))
        os.symlink(tmp_path / "two", tmp_path / "www.new")
        os.replace(tmp_path / "www.new", tmp_path / "www")
        now[0] += 1.01
        assert root.stat(("index.html",)) != st
        assert served(("index.html",)) == b"two"
        assert root.lookup("/", open_it=False).fs_path == str(tmp_path / "www" / "index.html")
        os.unlink(tmp_path / "www")
        now[0] += 1.01
        with pytest.raises(FileNotFoundError):
            root.stat(("index.html",))
        assert root.lookup("/index.html").kind == "notfound"
    finally:
        root.close()


def test_a_root_of_slash_follows_absolute_links_anywhere(tree):
    link = os.path.join(tree.root, "sub", "file.txt")
    result = resolve("/", quote(link))
    assert result.kind == "file" and result.stat == os.stat(link)
    assert resolve("/", quote(os.path.join(tree.root, "outlink"))).kind == "file"


def test_too_many_links_are_a_loop(tmp_path):
    for i in range(45):
        os.symlink("l%d" % (i + 1), tmp_path / ("l%d" % i))
    (tmp_path / "l45").write_text("end")
    assert resolve(str(tmp_path), "/l10").kind == "file"       # 35 links to the end
    assert resolve(str(tmp_path), "/l0").kind == "notfound"    # 45: taken for a loop


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may read any directory")
def test_files_in_a_directory_that_may_be_searched_but_not_read_are_served(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("f")
    (tmp_path / "d").chmod(0o311)
    try:
        assert resolve(str(tmp_path), "/d/f.txt").kind == "file"
    finally:
        (tmp_path / "d").chmod(0o755)


# --------------------------------------------------------------------------
# Directory listings

def test_listing_of_a_real_directory(tree):
    body = listing_html("/", tree.root)
    page = parse_page(body)
    assert page.title == "Index of /"
    assert "../" not in page.hrefs  # no parent link at the top
    assert set(page.tags) <= LISTING_TAGS
    # Symlinks are shown, including ones that dangle or leave the root.
    for name in ("inlink", "outlink", "outdir/", "dangling", "sub/", "fifo"):
        assert name in page.link_texts
    dirs = [t for t in page.link_texts if t.endswith("/")]
    assert page.link_texts[:len(dirs)] == dirs  # directories first
    assert dirs == sorted(dirs, key=str.casefold)
    plain = page.link_texts[len(dirs):]
    assert plain == sorted(plain, key=str.casefold)
    assert b'class="link"' in body and b'class="dir link"' in body
    assert "a%20file.txt" in page.hrefs and "caf%C3%A9.txt" in page.hrefs
    assert "100%25.txt" in page.hrefs


def test_listing_of_a_subdirectory_has_parent_link_and_decoded_title(tree):
    page = parse_page(listing_html("/sub/", os.path.join(tree.root, "sub")))
    assert page.title == "Index of /sub/"
    assert page.hrefs[0] == "../"
    assert page.hrefs[1:] == ["file.txt"]
    page = parse_page(listing_html("/a%20b/%3Cscript%3E/", os.path.join(tree.root, "sub")))
    assert page.title == "Index of /a b/<script>/"
    assert "script" not in page.tags


def test_listing_sizes_dates_and_order_from_entries():
    mtime = calendar.timegm((2024, 2, 29, 13, 5, 59))
    entries = [
        FakeEntry("B.bin", size=1234, mtime=mtime),
        FakeEntry("a.txt", size=0, mtime=mtime),
        FakeEntry("Zdir", is_dir=True, mtime=mtime),
        FakeEntry("adir", is_dir=True, mtime=mtime),
        FakeEntry("huge", size=5 * 1024 ** 3 + 1, mtime=mtime),
        FakeEntry("edge", size=1024 * 1024 - 1, mtime=mtime),
        FakeEntry("broken", is_link=True, broken=True),
        FakeEntry("javascript:alert(1)", size=1, mtime=mtime),
    ]
    body = listing_html("/x/", "/unused", entries=entries).decode("utf-8")
    page = parse_page(body.encode())
    assert page.link_texts == ["Parent directory", "adir/", "Zdir/", "a.txt", "B.bin",
                               "broken", "edge", "huge", "javascript:alert(1)"]
    assert "javascript%3Aalert%281%29" in page.hrefs  # never a scheme
    assert '"1234 bytes">1.2 KiB<' in body
    assert '"0 bytes">0 B<' in body
    assert ">5.0 GiB<" in body
    assert ">1.0 MiB<" in body  # 1023.99... KiB rounds up a unit, not to "1024.0 KiB"
    assert "2024-02-29 13:05" in body


def test_listing_describes_a_link_by_what_a_request_for_it_would_serve():
    mtime = calendar.timegm((2024, 2, 29, 13, 5, 59))
    served = {"to_file": FakeEntry("x", size=4321, mtime=mtime)._stat,
              "to_dir": FakeEntry("y", is_dir=True, mtime=mtime)._stat}
    entries = [FakeEntry(name, size=999999, is_dir=name.endswith("dir"), is_link=True,
                         mtime=mtime) for name in ("to_file", "to_dir", "out_file", "out_dir")]
    body = listing_html("/", "/unused", entries=entries,
                        link_target=lambda entry: served.get(entry.name)).decode()
    page = parse_page(body.encode())
    assert page.link_texts == ["to_dir/", "out_dir", "out_file", "to_file"]
    assert '"4321 bytes">4.2 KiB<' in body and "976.6 KiB" not in body    # never the link's own
    assert body.count("2024-02-29 13:05") == 2
    for name in ("out_dir", "out_file"):
        assert (f'<tr class="link"><td><a href="{name}">{name}</a></td>'
                '<td class="size">-</td><td class="date">-</td></tr>') in body


def test_listing_propagates_permission_errors():
    def unreadable():
        raise PermissionError("denied")
        yield  # pragma: no cover

    with pytest.raises(PermissionError):
        listing_html("/", "/unused", entries=unreadable())


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read any directory")
def test_listing_of_an_unreadable_directory_raises(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(PermissionError):
            listing_html("/locked/", str(locked))
    finally:
        locked.chmod(0o755)


FS_NAMES = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1, max_size=30,
).filter(lambda n: n not in (".", "..") and len(n.encode("utf-8")) <= 255)


@given(names=st.dictionaries(FS_NAMES, st.booleans(), max_size=8))
def test_generated_names_are_escaped_and_hrefs_round_trip(tmp_path_factory, names):
    base = str(tmp_path_factory.getbasetemp())
    root = tempfile.mkdtemp(dir=base)
    try:
        for name, is_dir in names.items():
            path = os.path.join(root, name)
            if is_dir:
                os.mkdir(path)
            else:
                with open(path, "wb") as f:
                    f.write(b"x" * len(name))
        body = listing_html("/", root)
        page = parse_page(body)
        shown = {name + ("/" if is_dir else "") for name, is_dir in names.items()}
        assert set(page.tags) <= LISTING_TAGS  # no markup smuggled in by a name
        assert set(page.link_texts) == shown
        in_order = sorted(shown, key=lambda n: (not n.endswith("/"), n.casefold(), n))
        assert page.link_texts == in_order
        assert {unquote(href, errors="strict") for href in page.hrefs} == shown
        for name in names:
            assert html.escape(name, quote=True).encode() in body
        for href in page.hrefs:
            assert href.endswith("/") == (href.count("/") == 1)
            decoded = unquote(href)
            if "\\" in decoded or re.match(r"[A-Za-z]:", decoded):
                continue  # names resolve() refuses on purpose
            result = resolve(root, "/" + href)
            assert result.kind == ("dir" if href.endswith("/") else "file")
            assert result.fs_path == os.path.join(root, decoded.rstrip("/"))
    finally:
        shutil.rmtree(root)


# --------------------------------------------------------------------------
# Entity tags and HTTP dates

def test_etag_is_strong_and_tracks_size_and_mtime(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    os.utime(path, ns=(0, 1_700_000_000_123_456_789))
    first = etag_for(os.stat(path))
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', first)
    assert first == etag_for(os.stat(path))
    assert first == '"%x-3"' % 1_700_000_000_123_456_789
    os.utime(path, ns=(0, 1_700_000_000_123_456_790))
    second = etag_for(os.stat(path))
    path.write_bytes(b"abcd")
    os.utime(path, ns=(0, 1_700_000_000_123_456_790))
    assert len({first, second, etag_for(os.stat(path))}) == 3


def test_http_date_known_values():
    assert http_date(RFC_EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(RFC_EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT"


@pytest.mark.parametrize("text", [
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    " \tSun, 06 Nov 1994 08:49:37 GMT\t ",
])
def test_parse_http_date_accepts_the_three_forms(text):
    assert parse_http_date(text, now=1_700_000_000) == RFC_EXAMPLE


@pytest.mark.parametrize("text", [
    None, "", "garbage", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
    "sun, 06 nov 1994 08:49:37 gmt", "Sun, 6 Nov 1994 08:49:37 GMT",
    "Sun, 32 Nov 1994 08:49:37 GMT", "Mon, 29 Feb 1993 00:00:00 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
    "Sun, 06 Nov 0000 08:49:37 GMT", "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
    "Sun, 06-Nov-94 08:49:37 GMT", "Sunday, 06 Nov 1994 08:49:37 GMT",
    "Sun Nov 6 08:49:37 1994", "784111777",
])
def test_parse_http_date_rejects_garbage(text):
    assert parse_http_date(text) is None


@given(st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                    max_value=datetime.datetime(2100, 12, 31, 23, 59, 59)))
def test_http_date_round_trips_in_all_three_forms(dt):
    ts = dt.replace(tzinfo=datetime.timezone.utc).timestamp()
    second = int(ts)
    imf = http_date(ts)
    assert parse_http_date(imf) == second
    assert imf == dt.strftime("%a, %d %b %Y %H:%M:%S GMT")  # C locale in tests
    rfc850 = dt.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    assert parse_http_date(rfc850, now=second) == second
    asctime = f"{dt:%a %b} {dt.day:2d} {dt:%H:%M:%S %Y}"
    assert parse_http_date(asctime) == second


@given(yy=st.integers(0, 99), now_year=st.integers(1970, 2200))
def test_two_digit_years_land_within_fifty_years_of_now(yy, now_year):
    now = calendar.timegm((now_year, 6, 1, 0, 0, 0))
    ts = parse_http_date(f"Monday, 01-Jan-{yy:02d} 00:00:00 GMT", now=now)
    # The weekday is not checked against the date, so any 01-Jan parses.
    year = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).year
    assert year % 100 == yy
    assert now_year - 50 < year <= now_year + 50


@given(st.text(max_size=40))
def test_parse_http_date_never_raises(text):
    result = parse_http_date(text)
    assert result is None or isinstance(result, int)


# --------------------------------------------------------------------------
# Conditional requests

ETAG = '"5e1-3e8"'
MTIME = RFC_EXAMPLE + 0.5
LAST_MODIFIED = http_date(MTIME)
EARLIER = http_date(MTIME - 1)
LATER = http_date(MTIME + 3600)


@pytest.mark.parametrize("headers, method, expected", [
    ({}, "GET", None),
    # If-None-Match: weak comparison, lists, "*"
    ({"If-None-Match": ETAG}, "GET", 304),
    ({"If-None-Match": ETAG}, "HEAD", 304),
    ({"If-None-Match": "W/" + ETAG}, "GET", 304),
    ({"If-None-Match": '"other", ' + ETAG}, "GET", 304),
    ({"If-None-Match": '"other",W/"x" ,' + ETAG}, "GET", 304),
    ({"If-None-Match": "*"}, "GET", 304),
    ({"If-None-Match": '"other"'}, "GET", None),
    ({"If-None-Match": ""}, "GET", None),
    ({"If-None-Match": ETAG}, "POST", 412),
    # If-Modified-Since only counts without If-None-Match, and only for GET/HEAD
    ({"If-Modified-Since": LAST_MODIFIED}, "GET", 304),
    ({"If-Modified-Since": LATER}, "GET", 304),
    ({"If-Modified-Since": EARLIER}, "GET", None),
    ({"If-Modified-Since": "yesterday"}, "GET", None),
    ({"If-Modified-Since": LAST_MODIFIED}, "POST", None),
    ({"If-None-Match": '"other"', "If-Modified-Since": LATER}, "GET", None),
    ({"If-None-Match": ETAG, "If-Modified-Since": EARLIER}, "GET", 304),
    # If-Match: strong comparison
    ({"If-Match": ETAG}, "GET", None),
    ({"If-Match": "*"}, "GET", None),
    ({"If-Match": '"other", ' + ETAG}, "GET", None),
    ({"If-Match": "W/" + ETAG}, "GET", 412),
    ({"If-Match": '"other"'}, "GET", 412),
    ({"If-Match": ""}, "GET", 412),
    # If-Unmodified-Since only counts without If-Match
    ({"If-Unmodified-Since": EARLIER}, "GET", 412),
    ({"If-Unmodified-Since": LAST_MODIFIED}, "GET", None),
    ({"If-Unmodified-Since": "garbage"}, "GET", None),
    ({"If-Match": ETAG, "If-Unmodified-Since": EARLIER}, "GET", None),
    # Precedence: the If-Match family is evaluated first
    ({"If-Match": '"other"', "If-None-Match": ETAG}, "GET", 412),
    ({"If-Unmodified-Since": EARLIER, "If-None-Match": ETAG}, "GET", 412),
    ({"If-Match": ETAG, "If-None-Match": ETAG}, "GET", 304),
    ({"If-Match": ETAG, "If-None-Match": '"other"',
      "If-Modified-Since": LATER}, "GET", None),
])
def test_evaluate_conditional_table(headers, method, expected):
    assert evaluate_conditional(headers.get, fake_stat(MTIME), ETAG,
                                method=method) == expected


def test_evaluate_conditional_with_a_weak_etag_of_our_own():
    weak = "W/" + ETAG
    stat = fake_stat(MTIME)
    assert evaluate_conditional({"If-Match": ETAG}.get, stat, weak) == 412
    assert evaluate_conditional({"If-None-Match": ETAG}.get, stat, weak) == 304


@given(mtime=st.floats(0, 4e9), since=st.floats(0, 4e9))
def test_if_modified_since_compares_whole_seconds(mtime, since):
    headers = {"If-Modified-Since": http_date(since)}
    result = evaluate_conditional(headers.get, fake_stat(mtime), ETAG)
    assert result == (304 if int(mtime) <= int(since) else None)


# --------------------------------------------------------------------------
# Ranges

SIZE = 1000


@pytest.mark.parametrize("header, expected", [
    (None, ("full", 0, 999)),
    ("bytes=0-499", ("partial", 0, 499)),
    ("bytes=500-999", ("partial", 500, 999)),
    ("bytes=500-", ("partial", 500, 999)),
    ("bytes=0-", ("partial", 0, 999)),
    ("bytes=999-", ("partial", 999, 999)),
    ("bytes=0-0", ("partial", 0, 0)),
    ("bytes=0-99999", ("partial", 0, 999)),
    ("bytes=-500", ("partial", 500, 999)),
    ("bytes=-1", ("partial", 999, 999)),
    ("bytes=-5000", ("partial", 0, 999)),
    ("BYTES=0-1", ("partial", 0, 1)),
    ("bytes= 0-1 ", ("partial", 0, 1)),
    ("bytes=0-1,", ("partial", 0, 1)),
    ("bytes=007-008", ("partial", 7, 8)),
    ("bytes=1000-", ("unsatisfiable", None, None)),
    ("bytes=1000-2000", ("unsatisfiable", None, None)),
    ("bytes=-0", ("unsatisfiable", None, None)),
    ("bytes=" + "9" * 5000 + "-", ("unsatisfiable", None, None)),
    ("bytes=0-" + "9" * 5000, ("partial", 0, 999)),
    ("bytes=-" + "9" * 5000, ("partial", 0, 999)),
    # malformed or multiple: ignored
    ("bytes=5-4", ("full", 0, 999)),
    ("bytes=0-1,5-6", ("full", 0, 999)),
    ("bytes=0-1, -5", ("full", 0, 999)),
    ("bytes=", ("full", 0, 999)),
    ("bytes=,", ("full", 0, 999)),
    ("bytes 0-1", ("full", 0, 999)),
    ("items=0-1", ("full", 0, 999)),
    ("bytes=abc", ("full", 0, 999)),
    ("bytes=-", ("full", 0, 999)),
    ("bytes=--1", ("full", 0, 999)),
    ("bytes=1--2", ("full", 0, 999)),
    ("bytes=+1-2", ("full", 0, 999)),
    ("bytes=0x1-2", ("full", 0, 999)),
    ("bytes=1 -2", ("full", 0, 999)),
    ("bytes=\u0661-\u0662", ("full", 0, 999)),
])
def test_parse_range_table(header, expected):
    assert tuple(parse_range(header, SIZE, None, ETAG, MTIME)) == expected


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-", "unsatisfiable"), ("bytes=0-10", "unsatisfiable"),
    ("bytes=-5", "full"), ("bytes=-0", "unsatisfiable"), (None, "full"),
])
def test_parse_range_of_an_empty_file(header, expected):
    assert parse_range(header, 0, None, ETAG, MTIME).kind == expected


@pytest.mark.parametrize("if_range, kind", [
    (ETAG, "partial"),
    (" " + ETAG + " ", "partial"),
    ('"other"', "full"),
    ("W/" + ETAG, "full"),  # If-Range needs a strong match
    (LAST_MODIFIED, "partial"),
    (EARLIER, "full"),
    (LATER, "full"),
    ("garbage", "full"),
    ("", "full"),
])
def test_if_range(if_range, kind):
    assert parse_range("bytes=0-9", SIZE, if_range, ETAG, MTIME).kind == kind
    assert parse_range(None, SIZE, if_range, ETAG, MTIME).kind == "full"


def test_if_range_never_matches_a_weak_etag_of_our_own():
    assert parse_range("bytes=0-9", SIZE, ETAG, "W/" + ETAG, MTIME).kind == "full"


@given(header=st.one_of(st.text(max_size=30),
                        st.text(alphabet="bytes=-, 0123456789", max_size=30)),
       size=st.integers(0, 10 ** 12))
def test_parse_range_stays_within_the_file(header, size):
    result = parse_range(header, size, None, ETAG, MTIME)
    assert isinstance(result, RangeResult)
    if result.kind == "partial":
        assert 0 <= result.start <= result.end <= size - 1
        assert result.length == result.end - result.start + 1
    elif result.kind == "full":
        assert (result.start, result.end, result.length) == (0, size - 1, size)
    else:
        assert result.kind == "unsatisfiable" and result.length == 0


@given(first=st.integers(0, 3000), last=st.none() | st.integers(0, 3000),
       size=st.integers(0, 2000))
def test_int_ranges_match_a_model(first, last, size):
    header = f"bytes={first}-" + ("" if last is None else str(last))
    result = parse_range(header, size, None, ETAG, MTIME)
    if last is not None and last < first:
        expected = ("full", 0, size - 1)
    elif first >= size:
        expected = ("unsatisfiable", None, None)
    else:
        expected = ("partial", first, size - 1 if last is None else min(last, size - 1))
    assert tuple(result) == expected


@given(suffix=st.integers(1, 3000), size=st.integers(1, 2000))
def test_suffix_ranges_select_the_last_bytes(suffix, size):
    result = parse_range(f"bytes=-{suffix}", size, None, ETAG, MTIME)
    assert result.kind == "partial"
    assert result.end == size - 1
    assert result.length == min(suffix, size)


FULL = ("full", ((0, SIZE - 1),))


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-1,5-6", ("multipart", ((0, 1), (5, 6)))),
    ("bytes=5-6,0-1", ("multipart", ((5, 6), (0, 1)))),            # the request's order
    ("bytes=-1, 0-0", ("multipart", ((999, 999), (0, 0)))),
    ("bytes=0-1,3-4", ("multipart", ((0, 1), (3, 4)))),              # a one-byte gap: two parts
    ("bytes=0-1,1-2", ("partial", ((0, 2),))),                      # overlapping
    ("bytes=0-1,2-3", ("partial", ((0, 3),))),                      # adjacent
    ("bytes=0-,-500", ("partial", ((0, 999),))),
    ("bytes=10-20,0-1,15-30", ("multipart", ((0, 1), (10, 30)))),    # coalesced: ascending
    ("bytes=0-1,,5-6,", ("multipart", ((0, 1), (5, 6)))),
    ("bytes=0-1,1000-,-0,5000-6000", ("partial", ((0, 1),))),        # unsatisfiable ones dropped
    ("bytes=1000-,2000-3000,-0", ("unsatisfiable", ())),
    ("bytes=" + ",".join(["0-0"] * 16), ("partial", ((0, 0),))),     # 16: the cap
    ("bytes=" + ",".join(["%d-%d" % (i, i) for i in range(0, 32, 2)]),
     ("multipart", tuple((i, i) for i in range(0, 32, 2)))),
    ("bytes=" + ",".join(["0-0"] * 17), FULL),                       # over the cap
    ("bytes=" + ",".join(["%d-%d" % (i, i) for i in range(50, 0, -3)]), FULL),
    ("bytes=0-1,5-4", FULL), ("bytes=0-1,x", FULL), ("bytes=0-1, 2 -3", FULL),
    ("bytes=,,", FULL), ("items=0-1,2-3", FULL),
])
def test_parse_ranges_table(header, expected):
    assert tuple(parse_ranges(header, SIZE, None, ETAG, MTIME)) == expected


def test_parse_ranges_of_an_empty_file_and_if_range():
    assert parse_ranges("bytes=-5,-3", 0, None, ETAG, MTIME).kind == "full"
    assert parse_ranges("bytes=0-1,-0", 0, None, ETAG, MTIME).kind == "unsatisfiable"
    assert parse_ranges("bytes=0-1,5-6", SIZE, ETAG, ETAG, MTIME).kind == "multipart"
    assert parse_ranges("bytes=0-1,5-6", SIZE, '"old"', ETAG, MTIME) == FULL
    assert parse_range("bytes=0-1,5-6", SIZE, None, ETAG, MTIME).kind == "full"
    assert tuple(parse_range("bytes=0-1,1-5", SIZE, None, ETAG, MTIME)) == ("partial", 0, 5)


RANGE_SPECS = st.one_of(
    st.tuples(st.integers(0, 250), st.integers(0, 250)).map(lambda t: "%d-%d" % t),
    st.integers(0, 250).map("%d-".__mod__),
    st.integers(0, 250).map("-%d".__mod__),
    st.sampled_from(["", " ", "x", "1--2", "-", "0x1-2"]),
)


def _covered(spans):
    return {i for first, last in spans for i in range(first, last + 1)}


def _touching(spans):
    ordered = sorted(spans)
    return any(b[0] <= a[1] + 1 for a, b in zip(ordered, ordered[1:]))


@given(specs=st.lists(RANGE_SPECS, max_size=20), size=st.integers(0, 200))
def test_parse_ranges_matches_a_model(specs, size):
    header = "bytes=" + ",".join(specs)
    result = parse_ranges(header, size, None, ETAG, MTIME)
    full = ("full", ((0, size - 1),))
    listed = [spec.strip(" \t") for spec in specs if spec.strip(" \t")]
    wanted = []
    for spec in listed:
        m = re.fullmatch(r"([0-9]+)-([0-9]*)", spec)
        if m:
            first, last = int(m.group(1)), int(m.group(2)) if m.group(2) else None
            if last is not None and last < first:
                return assert_full(result, full, spec)
            if first < size:
                wanted.append((first, size - 1 if last is None else min(last, size - 1)))
            continue
        m = re.fullmatch(r"-([0-9]+)", spec)
        if not m:
            return assert_full(result, full, spec)
        if int(m.group(1)) and size:
            wanted.append((max(0, size - int(m.group(1))), size - 1))
    if not listed or len(listed) > files.MAX_RANGES:
        return assert_full(result, full, header)
    if not wanted:
        suffix_of_empty = size == 0 and any(re.fullmatch(r"-0*[1-9][0-9]*", s) for s in listed)
        assert tuple(result) == (full if suffix_of_empty else ("unsatisfiable", ()))
        return
    assert result.kind == ("partial" if len(result.spans) == 1 else "multipart")
    assert _covered(result.spans) == _covered(wanted)              # every byte asked, no other
    assert not _touching(result.spans)
    assert len(result.spans) <= files.MAX_RANGES
    if not _touching(wanted):
        assert list(result.spans) == wanted                         # in the request's order


def assert_full(result, full, why):
    assert tuple(result) == full, why


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)).map(
    lambda t: (t[0], t[0] + t[1])), max_size=12))
def test_coalesce_ranges(spans):
    merged = coalesce_ranges(spans)
    assert _covered(merged) == _covered(spans)
    assert merged == sorted(merged) and not _touching(merged)


@given(data=st.binary(min_size=1, max_size=3000), picks=st.lists(
    st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=16),
    content_type=st.sampled_from(["application/octet-stream", "text/plain; charset=utf-8"]))
def test_byteranges_framing_reassembles_with_the_email_parser(data, picks, content_type):
    spans = [(int(a * (len(data) - 1)), int(a * (len(data) - 1)) +
              int(b * (len(data) - 1 - int(a * (len(data) - 1))))) for a, b in picks]
    boundary = "b0undary" * 4
    if any(boundary.encode() in data[first:last + 1] for first, last in spans):
        return
    heads, tail, length = byteranges_framing(spans, len(data), content_type, boundary)
    body = b"".join([p for head, (first, last) in zip(heads, spans)
                     for p in (head, data[first:last + 1])] + [tail])
    assert len(body) == length
    msg = email.message_from_bytes(b"Content-Type: multipart/byteranges; boundary=%s\r\n\r\n"
                                   % boundary.encode() + body)
    assert not msg.defects
    got = [(p["Content-Type"], p["Content-Range"], p.get_payload(decode=True))
           for p in msg.get_payload()]
    assert got == [(content_type, "bytes %d-%d/%d" % (first, last, len(data)),
                    data[first:last + 1]) for first, last in spans]


def test_byteranges_framing_refuses_a_content_type_that_would_split_the_head():
    with pytest.raises(ValueError):
        byteranges_framing([(0, 1)], 10, "text/plain\r\nX-Evil: 1", "b" * 32)


@pytest.mark.parametrize("shape", [",", " ", "\t,", "0", "-", "0-0,", "9", "-9,", "1-"])
def test_parse_ranges_costs_linear_work(shape):
    """A hostile Range header (one shape repeated) costs work linear in its size: 64 KiB of it
    costs at most 40 times as much as 4 KiB (16 if exactly linear, 256 if quadratic).  Costs
    are CPU time of this process, the best of runs interleaved between the two sizes, so that
    other processes on the machine do not count."""
    headers = {size: "bytes=" + shape * (size // len(shape)) for size in (4 << 10, 64 << 10)}
    best = dict.fromkeys(headers, float("inf"))
    for _ in range(9):
        for size, header in headers.items():
            t0 = time.process_time()
            for _ in range(10):
                parse_ranges(header, 10 ** 9, None, ETAG, MTIME)
            best[size] = min(best[size], time.process_time() - t0)
    assert best[64 << 10] / best[4 << 10] <= 40


def test_content_range():
    assert content_range(0, 499, 1000) == "bytes 0-499/1000"
    assert content_range(None, None, 1000) == "bytes */1000"
    result = parse_range("bytes=-10", 1000, None, ETAG, MTIME)
    assert content_range(result.start, result.end, 1000) == "bytes 990-999/1000"


# --------------------------------------------------------------------------
# Error pages and reasons

def test_reasons_cover_what_the_server_sends():
    for status in (100, 200, 206, 301, 304, 400, 403, 404, 405, 408, 412, 413, 414,
                   416, 417, 431, 500, 501, 503, 505):
        assert REASONS[status] and REASONS[status] == REASONS[status].strip()
    assert REASONS[404] == "Not Found" and REASONS[416] == "Range Not Satisfiable"


def test_error_page_escapes_detail():
    body = error_page(404, "Not Found", '<script>alert("x")</script> & more')
    assert b"<script>" not in body
    assert b"&lt;script&gt;" in body
    page = parse_page(body)
    assert page.title == "404 Not Found"
    assert "script" not in page.tags


@given(detail=st.text(max_size=60), reason=st.text(max_size=20))
def test_error_page_never_carries_markup_from_its_inputs(detail, reason):
    body = error_page(500, reason, detail)
    page = parse_page(body)
    assert set(page.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "p"}
    text = "".join(page.text)
    assert f"500 {reason}".replace("\r", "\n") in text.replace("\r", "\n")
    assert detail.replace("\r", "\n") in text.replace("\r", "\n")


# --------------------------------------------------------------------------
# Access log

@pytest.mark.parametrize("raw, escaped", [
    ("GET / HTTP/1.1", "GET / HTTP/1.1"),
    ("a\nb", "a\\x0ab"),
    ("a\r\n127.0.0.1 - - [forged]", "a\\x0d\\x0a127.0.0.1 - - [forged]"),
    ('say "hi"', "say \\x22hi\\x22"),
    ("back\\slash", "back\\x5cslash"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("\x00\x7f\x85\xa0", "\\x00\\x7f\\x85\\xa0"),
    ("caf\u00e9", "caf\u00e9"),
    ("\u2028\u202e", "\\u2028\\u202e"),
    ("\U000e0001", "\\U000e0001"),
])
def test_log_escape_table(raw, escaped):
    assert log_escape(raw) == escaped


_UNESCAPE = re.compile(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})|\\U([0-9a-f]{8})")


@given(st.text())
def test_log_escape_is_printable_and_reversible(s):
    escaped = log_escape(s)
    assert escaped.isprintable()
    assert '"' not in escaped
    assert _UNESCAPE.sub(lambda m: chr(int(next(g for g in m.groups() if g), 16)),
                         escaped) == s


def test_common_log_line_format():
    when = calendar.timegm((2000, 10, 10, 13, 55, 36)) + 0.9
    line = common_log_line("127.0.0.1", None, "frank", when,
                           'GET /a"b\n HTTP/1.1', 200, 2326)
    assert line == ('127.0.0.1 - frank [10/Oct/2000:13:55:36 +0000] '
                    '"GET /a\\x22b\\x0a HTTP/1.1" 200 2326')
    assert common_log_line("::1", "", "", 0, "GET / HTTP/1.0", 304, None) == (
        '::1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.0" 304 -')


CLF = re.compile(r'(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+|-)')


@given(user=st.text(max_size=10), request_line=st.text(max_size=40),
       size=st.none() | st.integers(0, 10 ** 12))
def test_common_log_line_cannot_be_forged(user, request_line, size):
    line = common_log_line("10.0.0.1", None, user, 1_700_000_000, request_line, 404, size)
    assert line.isprintable()
    m = CLF.fullmatch(line)
    assert m is not None
    assert m.group(5) == log_escape(request_line)
    assert m.group(7) == ("-" if size is None else str(size))
