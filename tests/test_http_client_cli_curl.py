"""``python -m clients.http`` against curl, flag by flag: both run against the same local
server, and what can be observed must be the same: the exit status, the bytes on stdout, the
files written, the ``-w`` report (times excepted).  Where this client deliberately differs from
curl (the README's table says where), the test says so and checks our behaviour alone."""
import gzip
import os
import re
import socket
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curl_oracle import (CLOSE, CURL, HOLD, RESET, UA, ForwardProxy, RawServer, response,
                         run_curl, run_ours)

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is the oracle of these tests")

BODY = bytes(range(256)) * 40
TEXT = b"0123456789abcdef" * 64


def _gzip(data):
    return gzip.compress(data, mtime=0)


def _raw_deflate(data):
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


# Answers that are always the same bytes (then a close or a reset).
_FIXED = {
    "/empty": [CLOSE],
    "/short": [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", CLOSE],
    "/short-chunked": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", CLOSE],
    "/reset": [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", RESET],
    "/garbage": [b"\x16\x03\x01\x00\xa5 this is not HTTP\r\n\r\n", CLOSE],
    "/no-colon": [b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n", CLOSE],
    "/bad-chunk": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", CLOSE],
    "/huge-head": [b"HTTP/1.1 200 OK\r\n" + b"X-Filler: %s\r\n" % (b"y" * 1000) * 400 + b"\r\n",
                   CLOSE],
}


def _route(request, server):
    path = request.path
    if path == "/hello":
        return [response(b"hello\n", headers=[("Content-Type", "text/plain")])]
    if path.startswith("/r/"):
        n = int(path[3:])
        target = "/r/%d" % (n - 1) if n > 1 else "/hello"
        return [response(b"moved\n", "302 Found", [("Location", target)])]
    if path.startswith("/abs/"):
        return [response(b"", "301 Moved Permanently",
                         [("Location", server.url("/hello", "localhost"))])]
    if path.startswith("/to307"):
        return [response(b"", "307 Temporary Redirect",
                         [("Location", request.target.split("?", 1)[1])])]
    if path.startswith("/to"):
        location = request.target.split("?", 1)[1]
        return [response(b"", "302 Found", [("Location", location)])]
    if path == "/loop":
        return [response(b"", "302 Found", [("Location", "/loop")])]
    if path.startswith("/status/"):
        code = path[8:]
        return [response(b"status %s\n" % code.encode(), "%s Whatever" % code,
                         [("Content-Type", "text/x-status")])]
    if path.startswith("/echo"):
        return [response(request.head + b"\r\n\r\n" + request.body,
                         headers=[("Content-Type", "application/x-echo")])]
    if path.startswith("/patient/"):
        return [response(b"later\n", "503 Service Unavailable", [("Retry-After", "5")])]
    if path.startswith("/flaky/"):
        if server.count(path) == 0:
            return [response(b"busy\n", "503 Service Unavailable", [("Retry-After", "1")])]
        return [response(b"ok\n")]
    if path == "/interim":
        return [b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n", response(b"after\n")]
    if path == "/big":
        return [response(b"x" * (16 << 20))]
    if path == "/binary":
        return [response(BODY, headers=[("Content-Type", "application/octet-stream")])]
    if path.startswith("/cd/"):
        return [response(b"disposed\n", headers=[
            ("Content-Disposition", 'attachment; filename="%s"' % path[4:].replace("%2F", "/"))])]
    codings = {"/gzip": ("gzip", _gzip(TEXT)), "/xgzip": ("x-gzip", _gzip(TEXT)),
               "/deflate": ("deflate", zlib.compress(TEXT)),
               "/rawdeflate": ("deflate", _raw_deflate(TEXT)),
               "/gzgz": ("gzip, gzip", _gzip(_gzip(TEXT))), "/identity": ("identity", TEXT),
               "/badgzip": ("gzip", b"\x1f\x8bnot gzip at all")}
    if path in codings:
        coding, data = codings[path]
        return [response(data, headers=[("Content-Encoding", coding),
                                        ("Content-Type", "text/plain")])]
    if path in _FIXED:
        return _FIXED[path]
    if path == "/hold":
        return [HOLD]
    if path == "/noranges":
        return [response(TEXT, headers=[("Accept-Ranges", "none")])]
    return [response(b"no such thing\n", "404 Not Found")]


@pytest.fixture(scope="module")
def raw():
    server = RawServer(_route)
    yield server
    server.stop()


def both(tmp_path, args, follow=True, env=None, stdin=b"", curl_args=(), setup=None):
    """Run curl and ours with ``args`` in two fresh directories; returns (curl, ours)."""
    results = []
    for name, runner in (("curl", run_curl), ("ours", run_ours)):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        if setup is not None:
            setup(folder)
        extra = list(curl_args) if runner is run_curl else []
        results.append(runner(extra + list(args), cwd=str(folder), env=env, stdin=stdin,
                              follow=follow))
    return results


def assert_same(curl, ours):
    assert (ours.code, ours.out, ours.files) == (curl.code, curl.out, curl.files), (
        curl.err, ours.err)


# ---------------------------------------------------------------------------- output, errors

def test_body_and_several_urls_in_order(raw, tmp_path):
    curl, ours = both(tmp_path, [raw.url("/hello"), raw.url("/binary"), raw.url("/status/404")])
    assert_same(curl, ours)
    assert ours.code == 0 and ours.out.startswith(b"hello\n" + BODY)


def test_exit_status_is_the_last_urls(raw, tmp_path):
    dead = _dead_port()
    for urls in ([dead, raw.url("/hello")], [raw.url("/hello"), dead]):
        curl, ours = both(tmp_path, ["-s"] + urls)
        assert_same(curl, ours)


@pytest.mark.parametrize("flags", [[], ["-f"], ["--fail-with-body"], ["-f", "-i"]])
def test_fail_flags(raw, tmp_path, flags):
    curl, ours = both(tmp_path, flags + ["-s", raw.url("/status/404")])
    assert_same(curl, ours)
    curl, ours = both(tmp_path, flags + ["-s", "-o", "out", raw.url("/status/500")])
    assert_same(curl, ours)


def test_a_reader_that_goes_away(raw):
    # stdout is a pipe closed after 10 bytes: a write error (23), and no more downloading.
    import shlex
    import subprocess
    import sys
    from curl_oracle import ROOT
    url = raw.url("/big")
    codes = []
    for argv in ([CURL, "-s", url], [sys.executable, "-m", "clients.http", url]):
        script = "%s | head -c 10 >/dev/null; exit ${PIPESTATUS[0]}" % shlex.join(argv)
        proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, timeout=30,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        codes.append((proc.returncode, proc.stderr.count(b"\n") <= 1))
    assert codes == [(23, True), (23, True)]


def test_silent_and_show_error(raw, tmp_path):
    dead = _dead_port()
    for flags, shown in (([], True), (["-s"], False), (["-sS"], True), (["-s", "-S"], True)):
        curl, ours = both(tmp_path, flags + [dead])
        assert (curl.code, curl.out) == (ours.code, ours.out) == (7, b"")
        assert bool(ours.err) == bool(curl.err) == shown, (flags, curl.err, ours.err)


WRITE_OUT = ("%{http_code} %{response_code} %{size_download} %{num_redirects} %{url_effective} "
             "%{content_type} [%{redirect_url}] %{size_header} %{size_request} %{size_upload} "
             "%{method} %{scheme} %{http_version} %{num_headers} %{num_connects} %{remote_ip} "
             "%{remote_port} %{local_ip} %{exitcode} %{urlnum} [%{filename_effective}] "
             "%{http_connect} %{ssl_verify_result} %header{content-type} %{url}\\n")
TIMES = ("%{time_namelookup} %{time_connect} %{time_appconnect} %{time_pretransfer} "
         "%{time_starttransfer} %{time_total}\\n")


@pytest.mark.parametrize("path, flags", [
    ("/hello", []), ("/r/3", []), ("/status/503", ["-f"]), ("/echo", ["-d", "a=1&b=2"]),
    ("/hello", ["-I"]), ("/hello", ["-o", "saved"]), ("/empty", []), ("/short", [])])
def test_write_out_variables(raw, tmp_path, path, flags):
    curl, ours = both(tmp_path, ["-s", "-A", UA, "-w", WRITE_OUT] + flags + [raw.url(path)])
    assert_same(curl, ours)


def test_write_out_variables_where_we_differ(raw, tmp_path):
    # --compressed: curl also offers br and zstd, so its request is 10 bytes longer.
    fmt = WRITE_OUT.replace("%{size_request} ", "")
    curl, ours = both(tmp_path, ["-s", "-A", UA, "-w", fmt, "--compressed", raw.url("/gzip")])
    assert_same(curl, ours)
    # A redirect over the limit: curl reads its body (size_download 6), ours does not.
    fmt = WRITE_OUT.replace("%{size_download} ", "")
    curl, ours = both(tmp_path, ["-s", "-A", UA, "-w", fmt, "--max-redirs", "1", raw.url("/r/3")])
    assert_same(curl, ours)


def test_write_out_when_not_following(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-w", WRITE_OUT, "-A", UA, raw.url("/r/2")], follow=False)
    assert_same(curl, ours)
    assert b" [%s] " % raw.url("/r/1").encode() in ours.out


def test_write_out_times_and_streams(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-o", "x", "-w", TIMES + "%{stderr}to stderr%{stdout}end",
                                 raw.url("/r/1")])
    for result in (curl, ours):
        times, end = result.out.decode().split("\n")
        values = [float(t) for t in times.split()]
        assert all(re.fullmatch(r"\d+\.\d{6}", t) for t in times.split())
        namelookup, connect, appconnect, pretransfer, starttransfer, total = values
        assert appconnect == 0 and namelookup <= connect <= pretransfer <= starttransfer <= total
        assert end == "end" and result.err.endswith("to stderr")


def test_write_out_from_a_file_and_stdin(raw, tmp_path):
    fmt = tmp_path / "fmt"
    fmt.write_text("%{http_code}\\n%{content_type}\nnext line\r\ncut\rhere\n")
    curl, ours = both(tmp_path, ["-s", "-o", "x", "-w", "@" + str(fmt), raw.url("/hello")])
    assert_same(curl, ours)
    curl, ours = both(tmp_path, ["-s", "-o", "x", "-w", "@-", raw.url("/hello")],
                      stdin=b"%{http_code}")
    assert_same(curl, ours)
    assert ours.out == b"200"


_FRAGMENTS = st.sampled_from([
    "a", " ", "%", "%%", "\\", "\\n", "\\t", "\\r", "\\\\", "\\q", "{", "}", "%{", "%d",
    "%{http_code}", "%{size_download}", "%{content_type}", "%{url_effective}",
    "%{num_headers}", "%{method}", "%{exitcode}", "%{no_such_var}", "%header{content-type}",
    "%header{x-nope}", "%header{", "%{onerror}", "%{stdout}", "%{stderr}", "%{json", "é"])


@settings(max_examples=25, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=12).map("".join))
def test_write_out_formats_like_curl(raw, tmp_path_factory, fmt):
    tmp_path = tmp_path_factory.mktemp("w")
    curl, ours = both(tmp_path, ["-s", "-o", "x", "-w", fmt, raw.url("/hello")])
    assert ours.out == curl.out
    assert ours.code == curl.code == 0


def test_remote_name_create_dirs_and_header_name(raw, tmp_path):
    # Our -O names every URL's file, as curl's --remote-name-all does.
    curl, ours = both(tmp_path, ["-s", "-O", raw.url("/hello"), raw.url("/binary")],
                      curl_args=["--remote-name-all"])
    assert_same(curl, ours)
    assert ours.files == {"hello": b"hello\n", "binary": BODY}
    curl, ours = both(tmp_path, ["-s", "--create-dirs", "-o", "a/b/c.txt", raw.url("/hello")])
    assert_same(curl, ours)
    curl, ours = both(tmp_path, ["-s", "-O", "-J", raw.url("/cd/..%2F..%2Fescape.txt")])
    assert_same(curl, ours)
    assert "escape.txt" in ours.files


def test_header_name_never_overwrites(raw, tmp_path):
    def setup(folder):
        (folder / "taken.txt").write_bytes(b"mine")
    curl, ours = both(tmp_path, ["-s", "-O", "-J", raw.url("/cd/taken.txt")], setup=setup)
    assert_same(curl, ours)
    assert ours.code == 23 and ours.files == {"taken.txt": b"mine"}


def test_remote_name_never_overwrites_unlike_curl(raw, tmp_path):
    # curl -O overwrites; ours refuses (exit 23, curl's write error) and keeps the file.
    folder = tmp_path / "o"
    folder.mkdir()
    (folder / "hello").write_bytes(b"mine")
    ours = run_ours(["-s", "-O", raw.url("/hello")], cwd=str(folder))
    assert ours.code == 23 and ours.files == {"hello": b"mine"}


# ---------------------------------------------------------------------------- requests

def test_redirects_follow_and_limits(raw, tmp_path):
    for path in ("/r/3", "/abs/1", "/loop"):
        for limit in ([], ["--max-redirs", "2"], ["--max-redirs", "0"], ["-L"]):
            args = ["-s", "-w", "%{http_code} %{num_redirects} %{url_effective}"]
            curl, ours = both(tmp_path, args + limit + [raw.url(path)],
                              curl_args=["--max-redirs", "10"] if not limit else [])
            if path == "/loop":
                # curl follows a loop to its limit; ours stops at the repeat: both exit 47.
                assert ours.code == curl.code == 47
                continue
            assert_same(curl, ours)


def test_no_follow(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-i", raw.url("/r/2")], follow=False)
    assert_same(curl, ours)
    assert ours.out.startswith(b"HTTP/1.1 302 Found\r\n")


@pytest.mark.parametrize("flags, follow", [
    (["-i"], True), (["-I"], True), (["-i", "--max-redirs", "1"], True), (["-I"], False)])
def test_include_shows_every_hop(raw, tmp_path, flags, follow):
    curl, ours = both(tmp_path, ["-s"] + flags + [raw.url("/r/2")], follow=follow)
    assert_same(curl, ours)
    curl, ours = both(tmp_path, ["-s"] + flags[:1] + [raw.url("/interim")])
    assert_same(curl, ours)


def _echoed(result):
    """The request head (and body) the /echo route sent back."""
    return result.out


@pytest.mark.parametrize("flags", [
    ["-A", UA], ["-A", UA, "-e", "http://referer.example/"], ["-A", UA, "-u", "user:pa ss"],
    ["-A", UA, "-b", "a=1", "-b", "b=2"], ["-A", UA, "-H", "X-One: 1", "-H", "Accept:"],
    ["-A", UA, "-H", "Host: other.example"], ["-A", ""],
    ["-A", UA, "-r", "0-9"], ["-A", UA, "-X", "DELETE"],
    ["-A", UA, "-H", "Content-Type: text/plain", "-d", "x"],
])
def test_request_heads_are_curls(raw, tmp_path, flags):
    curl, ours = both(tmp_path, ["-s"] + flags + [raw.url("/echo?q=1")])
    assert_same(curl, ours)


def test_empty_header(raw, tmp_path):
    # "Name;" sends the field empty: curl writes "X-Empty:", ours "X-Empty: " (the same field).
    curl, ours = both(tmp_path, ["-s", "-A", UA, "-H", "X-Empty;", raw.url("/echo")])
    assert ours.code == curl.code == 0
    assert ours.out.replace(b"X-Empty: \r\n", b"X-Empty:\r\n") == curl.out


@pytest.mark.parametrize("flags", [
    ["-d", "a=1", "-d", "b=2"], ["--data-binary", "x\r\ny"], ["--data-raw", "@literal"],
    ["--data-urlencode", "name=a b&c", "--data-urlencode", "=x/y", "--data-urlencode", "z"],
    ["-G", "-d", "a=1", "--data-urlencode", "b=c d"], ["-G", "-I", "-d", "k=v"],
])
def test_data_flags(raw, tmp_path, flags):
    curl, ours = both(tmp_path, ["-s", "-A", UA] + flags + [raw.url("/echo")])
    assert_same(curl, ours)


def test_data_from_files_and_stdin(raw, tmp_path):
    payload = tmp_path / "payload"
    payload.write_bytes(b"line one\r\nline two\n\x00bin")
    for flag in ("-d", "--data-binary", "--data-urlencode"):
        curl, ours = both(tmp_path, ["-s", "-A", UA, flag, "@" + str(payload), raw.url("/echo")])
        assert_same(curl, ours)
    curl, ours = both(tmp_path, ["-s", "-A", UA, "--data-binary", "@-", raw.url("/echo")],
                      stdin=b"from\nstdin")
    assert_same(curl, ours)


def _boundary_free(result):
    out = result.out
    match = re.search(rb"boundary=(-+[0-9a-f]+)", out)
    assert match, out[:300]
    return out.replace(match.group(1), b"BOUNDARY")


def test_form_fields_and_files(raw, tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"some notes\n")
    (tmp_path / "blob").write_bytes(BODY)
    (tmp_path / "page.HTML").write_bytes(b"<p>\n")
    args = ["-F", "text=value", "-F", "file=@%s" % (tmp_path / "notes.txt"),
            "-F", "blob=@%s;type=application/x-blob" % (tmp_path / "blob"),
            "-F", "page=@%s;filename=renamed.html" % (tmp_path / "page.HTML"),
            "-F", "inline=<%s" % (tmp_path / "notes.txt"), "-F", 'quoted="a;b";type=text/x-q',
            "-F", "hdr=v;headers=X-Part: yes"]
    curl, ours = both(tmp_path, ["-s", "-A", UA] + args + [raw.url("/echo")])
    assert curl.code == ours.code == 0
    assert _boundary_free(ours) == _boundary_free(curl)


_NAME = st.text(st.characters(blacklist_characters="=;\x00", blacklist_categories=("Cs",),
                              max_codepoint=0x2ff), min_size=1, max_size=8)
_VALUE = st.text(st.characters(blacklist_characters=';"\x00', blacklist_categories=("Cs",),
                               max_codepoint=0x2ff), max_size=10).filter(
    lambda v: not v.startswith(("@", "<")) and v == v.strip(" ") and "\r" not in v)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(_NAME, _VALUE), min_size=1, max_size=4))
def test_form_fields_like_curl(raw, tmp_path_factory, fields):
    tmp_path = tmp_path_factory.mktemp("f")
    args = []
    for name, value in fields:
        if name.startswith(("-", "@")) or name != name.strip():
            name = "n" + name.strip() + "n"
        args += ["-F", "%s=%s" % (name, value)]
    curl, ours = both(tmp_path, ["-s", "-A", UA] + args + [raw.url("/echo")])
    assert curl.code == ours.code == 0
    assert _boundary_free(ours) == _boundary_free(curl)


def test_upload_file(raw, tmp_path):
    (tmp_path / "up load.bin").write_bytes(BODY)
    for url in (raw.url("/echo/"), raw.url("/echo/named"), raw.url("/echo/dir/?x=1")):
        curl, ours = both(tmp_path, ["-s", "-A", UA, "-H", "Expect:",
                                     "-T", str(tmp_path / "up load.bin"), url])
        assert_same(curl, ours)


def test_unreadable_files_to_send(raw, tmp_path):
    for flags in (["-T", "/nonexistent"], ["-F", "a=@/nonexistent"], ["-F", "a=</nonexistent"]):
        curl, ours = both(tmp_path, ["-s"] + flags + [raw.url("/echo")])
        assert_same(curl, ours)
        assert ours.code == 26


def test_streamed_bodies_are_sent_again_after_307(raw, tmp_path):
    (tmp_path / "part.txt").write_bytes(b"resent\n" * 100)
    target = raw.url("/echo/after")
    for flags in (["-T", str(tmp_path / "part.txt")], ["-F", "f=@%s" % (tmp_path / "part.txt")]):
        curl, ours = both(tmp_path, ["-s", "-A", UA, "-H", "Expect:"] + flags
                          + [raw.url("/to307?" + target)])
        assert curl.code == ours.code == 0
        if flags[0] == "-F":
            assert _boundary_free(ours) == _boundary_free(curl)
        else:
            assert_same(curl, ours)
        assert ours.out.count(b"resent\n") == 100


def test_upload_from_stdin(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-A", UA, "-T", "-", raw.url("/echo/x")], stdin=b"piped\n")
    # curl streams stdin chunked (and with Expect); ours reads it first and sends its length.
    assert ours.code == curl.code == 0
    assert ours.out.startswith(b"PUT /echo/x HTTP/1.1\r\n") and ours.out.endswith(b"\r\n\r\npiped\n")


def test_range(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-r", "0-9", raw.url("/noranges")])
    assert_same(curl, ours)


def test_credentials_dropped_across_origins(raw, tmp_path):
    other = RawServer(_route)
    try:
        target = other.url("/echo")
        curl, ours = both(tmp_path, ["-s", "-A", UA, "-u", "me:secret", raw.url("/to?" + target)])
        assert_same(curl, ours)
        assert b"Authorization" not in ours.out
        # -b: curl sends the cookie to the other origin too; ours drops it like -u.
        curl, ours = both(tmp_path, ["-s", "-A", UA, "-b", "k=v", raw.url("/to?" + target)])
        assert b"Cookie: k=v\r\n" in curl.out and b"Cookie" not in ours.out
        same_origin = raw.url("/to?" + raw.url("/echo"))
        curl, ours = both(tmp_path, ["-s", "-A", UA, "-b", "k=v", "-u", "a:b", same_origin])
        assert_same(curl, ours)
        assert b"Cookie: k=v\r\n" in ours.out and b"Authorization: Basic" in ours.out
    finally:
        other.stop()


# ---------------------------------------------------------------------------- transport

def _dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d/" % port


@pytest.mark.parametrize("path, flags", [
    ("/gzip", []), ("/xgzip", []), ("/deflate", []), ("/rawdeflate", []), ("/gzgz", []),
    ("/identity", []), ("/badgzip", []), ("/gzip", ["-i"]), ("/hello", []),
])
def test_compressed(raw, tmp_path, path, flags):
    curl, ours = both(tmp_path, ["-s", "--compressed", "-w", "%{size_download}"] + flags
                      + [raw.url(path)])
    assert_same(curl, ours)


def test_not_decoded_without_compressed(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", raw.url("/gzip")])
    assert_same(curl, ours)
    assert ours.out == _gzip(TEXT)


def test_ip_version(raw, tmp_path):
    url = raw.url("/hello", "localhost")
    for flag in ("-4", "-6"):
        curl, ours = both(tmp_path, ["-s", flag, url])
        assert_same(curl, ours)


def test_max_time_and_timeouts(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-m", "0.5", raw.url("/hold")])
    assert_same(curl, ours)
    assert ours.code == 28


def test_connect_timeout(tmp_path):
    # A listener whose backlog is full: the kernel drops further SYNs, the connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
            fillers.append(s)
        url = "http://127.0.0.1:%d/" % listener.getsockname()[1]
        curl, ours = both(tmp_path, ["-s", "--connect-timeout", "0.5", url])
        assert_same(curl, ours)
        assert ours.code == 28
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_retry(raw, tmp_path):
    # Both run at once against their own flaky URL: 503 with Retry-After: 1, then 200.
    results = {}

    def go(name, runner):
        folder = tmp_path / name
        folder.mkdir()
        results[name] = runner(["-s", "--retry", "2", "-w", " %{http_code}",
                                raw.url("/flaky/" + name)], cwd=str(folder))

    threads = [threading.Thread(target=go, args=("curl", run_curl)),
               threading.Thread(target=go, args=("ours", run_ours))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert_same(results["curl"], results["ours"])
    assert results["ours"].out == b"busy\nok\n 200"


def test_retry_gives_up(raw, tmp_path):
    # Retry-After: 5 would end past --retry-max-time 2: no retry, the 503 stands.
    curl, ours = both(tmp_path, ["-s", "--retry", "1", "--retry-max-time", "2", "-f",
                                 raw.url("/patient/%d" % os.getpid())])
    assert_same(curl, ours)
    assert ours.code == 22


# ---------------------------------------------------------------------------- exit statuses

@pytest.mark.parametrize("path", ["/empty", "/short", "/short-chunked", "/reset", "/garbage",
                                  "/no-colon", "/bad-chunk", "/huge-head", "/status/404"])
def test_exit_status_of_hostile_servers(raw, tmp_path, path):
    curl, ours = both(tmp_path, ["-s", "-o", "out", raw.url(path)])
    # curl leaves a partial file where ours leaves none (no partial file under the name).
    if ours.code in (18, 56):
        curl.files.pop("out", None)
    assert_same(curl, ours)


def test_exit_status_of_names_and_connections(tmp_path):
    for url in (_dead_port(), "http://name.invalid/", "gopher-ish://x/", "http://[::1/",
                "http://h.invalid:99999/"):
        curl, ours = both(tmp_path, ["-s", url])
        assert_same(curl, ours)


_HOSTS = st.sampled_from(["h.invalid", "a-b.invalid", "a_b.invalid", "h%20x.invalid", "",
                          "[::1]", "[zz]", "[::1", "::1", "a b", "h\\.invalid", "u@h.invalid",
                          "u:p@h.invalid", "u@v@h.invalid", "x!y.invalid", "é.invalid",
                          "h*.invalid", "a%b.invalid"])
_PORTS = st.sampled_from(["", ":", ":80", ":0", ":65535", ":65536", ":-1", ":8a", ":80:80",
                          ":00080"])
_PATHS = st.sampled_from(["", "/", "/p", "/a b", "/%zz", "/é", "?q", "#f", "/\t", "/{x}"])


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["http://", "HTTPS://", "", "//"]), _HOSTS, _PORTS, _PATHS)
def test_url_shapes_exit_like_curl(tmp_path_factory, scheme, host, port, path):
    url = scheme + host + port + path
    if not url:
        return
    tmp_path = tmp_path_factory.mktemp("u")
    curl, ours = both(tmp_path, ["-s", "--connect-timeout", "2", url])
    assert ours.code == curl.code, (url, curl.err, ours.err)


# ---------------------------------------------------------------------------- proxies

@pytest.fixture(scope="module")
def proxy():
    server = ForwardProxy()
    yield server
    server.stop()


def test_proxy_forwarding(raw, proxy, tmp_path):
    proxy.seen.clear()
    for how in (["-x", proxy.url("")], ["-x", "127.0.0.1:%d" % proxy.port],
                ["-x", "http://me:pw@127.0.0.1:%d" % proxy.port]):
        proxy.seen.clear()
        curl, ours = both(tmp_path, ["-s", "-A", UA] + how + [raw.url("/echo")])
        assert_same(curl, ours)
        assert len(proxy.seen) == 2 and proxy.seen[0] == proxy.seen[1]
        assert proxy.seen[0][1] == raw.url("/echo")


def test_proxy_from_the_environment(raw, proxy, tmp_path):
    proxy.seen.clear()
    env = {"http_proxy": proxy.url("")}
    curl, ours = both(tmp_path, ["-s", "-A", UA, raw.url("/echo")], env=env)
    assert_same(curl, ours)
    assert [s[1] for s in proxy.seen] == [raw.url("/echo")] * 2
    # HTTP_PROXY (upper case) is not read, no_proxy and --noproxy bypass, -x "" turns it off.
    proxy.seen.clear()
    for env, flags in (({"HTTP_PROXY": proxy.url("")}, []),
                       ({"http_proxy": proxy.url(""), "no_proxy": "127.0.0.1"}, []),
                       ({"http_proxy": proxy.url("")}, ["--noproxy", "*"]),
                       ({"http_proxy": proxy.url("")}, ["-x", ""])):
        curl, ours = both(tmp_path, ["-s", "-A", UA] + flags + [raw.url("/echo")], env=env)
        assert_same(curl, ours)
    assert proxy.seen == []


def test_proxy_failures(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-x", "http://proxy.invalid:1", raw.url("/hello")])
    assert_same(curl, ours)
    assert ours.code == 5
    curl, ours = both(tmp_path, ["-s", "-x", _dead_port(), raw.url("/hello")])
    assert_same(curl, ours)
    curl, ours = both(tmp_path, ["-s", "-x", "socks5://127.0.0.1:1", raw.url("/hello")])
    assert_same(curl, ours)


_LABELS = st.sampled_from(["a", "b", "ex", "example"])
# Every host is under .invalid (never looked up for real); tokens are such names, their tails,
# with or without a leading dot, "*", and IP addresses and networks.
_NAMES = st.lists(_LABELS, min_size=1, max_size=3).map(".".join)
_HOSTS_UNDER_TEST = _NAMES.map(lambda n: n + ".invalid")
_TOKENS = st.one_of(_HOSTS_UNDER_TEST, _HOSTS_UNDER_TEST.map(lambda n: "." + n), _NAMES,
                    st.sampled_from(["*", "invalid", ".invalid", "127.0.0.2", "127.0.0.0/8",
                                     "127.0.0.3/32", "10.0.0.0/8"]))


@settings(max_examples=25, deadline=None)
@given(host=st.one_of(_HOSTS_UNDER_TEST, st.sampled_from(["127.0.0.2", "127.0.0.3"])),
       tokens=st.lists(_TOKENS, max_size=3), sep=st.sampled_from([",", ", ", " "]))
def test_no_proxy_matching_like_curl(proxy, tmp_path_factory, host, tokens, sep):
    # Through the proxy: it answers (502: the name does not resolve); direct: exit 6 or 7.
    tmp_path = tmp_path_factory.mktemp("np")
    proxy.seen.clear()
    url = "http://%s:1/" % host
    curl, ours = both(tmp_path, ["-s", "-w", "%{http_code}", "--connect-timeout", "2", url],
                      env={"http_proxy": proxy.url(""), "no_proxy": sep.join(tokens)})
    assert (ours.code, ours.out) == (curl.code, curl.out), (host, tokens, curl.err, ours.err)


# ---------------------------------------------------------------------------- -v

def _lines(result, *prefixes):
    return [line for line in result.err.splitlines() if line.startswith(prefixes)]


@pytest.mark.parametrize("path", ["/r/2", "/interim", "/status/404"])
def test_verbose_trace_is_curls_shape(raw, tmp_path, path):
    curl, ours = both(tmp_path, ["-v", "-s", "-o", "out", "-A", UA, raw.url(path)])
    assert_same(curl, ours)
    for prefix in ("> ", "< ", "*   Trying ", "* Connected to ", "* Issue another request",
                   "* Re-using existing connection"):
        assert _lines(ours, prefix) == _lines(curl, prefix), prefix
    assert all(line[:2] in ("* ", "> ", "< ") for line in ours.err.splitlines()), ours.err


def test_verbose_on_failures(raw, tmp_path):
    dead = _dead_port()
    curl, ours = both(tmp_path, ["-v", "-s", dead])
    assert_same(curl, ours)
    assert _lines(ours, "*   Trying ") == _lines(curl, "*   Trying ")


# ---------------------------------------------------------------------------- -C

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """servers.http serving a directory (ranges, If-Range), in a thread."""
    from eventloop import Reactor
    from servers.http import HTTPServer, StaticFiles
    root = tmp_path_factory.mktemp("served")
    (root / "file.bin").write_bytes(BODY)
    reactor = Reactor()
    server = HTTPServer(("127.0.0.1", 0), StaticFiles(str(root)), reactor=reactor)
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()
    server.url = lambda path: "http://127.0.0.1:%d%s" % (server.server_address[1], path)
    server.root = root
    yield server
    reactor.call_soon_threadsafe(reactor.stop)
    thread.join(5)
    server.close()
    reactor.close()


def _partial(size, mtime=None):
    def setup(folder):
        path = folder / "out"
        path.write_bytes(BODY[:size])
        if mtime is not None:
            os.utime(path, (mtime, mtime))
    return setup


def test_resume(site, tmp_path):
    url = site.url("/file.bin")
    served = os.stat(site.root / "file.bin").st_mtime
    for setup, status in ((_partial(3000, served), b"206"), (_partial(len(BODY), served), b"416"),
                          (_partial(0), b"200")):
        curl, ours = both(tmp_path, ["-s", "-C", "-", "-o", "out", "-w", "%{http_code}", url],
                          setup=setup)
        assert_same(curl, ours)
        assert ours.out == status and ours.files == {"out": BODY}
    curl, ours = both(tmp_path, ["-s", "-C", "-", url])         # stdout: nothing to resume
    assert_same(curl, ours)
    curl, ours = both(tmp_path, ["-s", "-C", "100", url])
    assert_same(curl, ours)
    assert ours.out == BODY[100:]


def test_resume_is_guarded_by_if_range(site, tmp_path):
    # The partial file is not from this version of the resource (its mtime is not the
    # server's Last-Modified): curl appends to it anyway; ours asks If-Range and starts over.
    curl, ours = both(tmp_path, ["-s", "-C", "-", "-o", "out", "-w", "%{http_code}",
                                 site.url("/file.bin")], setup=_partial(3000, 1000000000))
    assert (curl.code, curl.out) == (0, b"206") and (ours.code, ours.out) == (0, b"200")
    assert ours.files == curl.files == {"out": BODY}
    # The file resumed last time carries the server's Last-Modified, so the next resume is a 206.
    folder = tmp_path / "again"
    folder.mkdir()
    _partial(3000, 1000000000)(folder)
    assert run_ours(["-s", "-o", "out", "-C", "-", site.url("/file.bin")],
                    cwd=str(folder)).code == 0
    assert os.stat(folder / "out").st_mtime == os.stat(site.root / "file.bin").st_mtime // 1


def test_resume_never_corrupts(raw, site, tmp_path):
    # A server that ignores Range: curl gives up (33); ours starts the file over.
    def setup(folder):
        (folder / "out").write_bytes(TEXT[:100])
    curl, ours = both(tmp_path, ["-s", "-C", "-", "-o", "out", raw.url("/noranges")], setup=setup)
    assert (ours.code, curl.code) == (0, 33)
    assert ours.files == {"out": TEXT} and curl.files == {"out": TEXT[:100]}
    # An offset inside a shorter file: curl appends at the end (a corrupt file); ours writes
    # from the offset.
    folder = tmp_path / "offset"
    folder.mkdir()
    (folder / "out").write_bytes(BODY[:300])
    ours = run_ours(["-s", "-C", "100", "-o", "out", site.url("/file.bin")], cwd=str(folder))
    assert ours.code == 0 and ours.files == {"out": BODY}
    ours = run_ours(["-s", "-C", "20000", "-o", "out", site.url("/file.bin")], cwd=str(folder))
    assert ours.code == 33 and ours.files == {"out": BODY}
    # Complete already (416), with -i: the heads do not go into the file either.
    ours = run_ours(["-s", "-i", "-C", "-", "-o", "out", site.url("/file.bin")], cwd=str(folder))
    assert ours.code == 0 and ours.files == {"out": BODY}


def test_an_interrupted_resume_leaves_what_it_got(raw, tmp_path):
    curl, ours = both(tmp_path, ["-s", "-C", "-", "-o", "out", raw.url("/short")])
    assert_same(curl, ours)
    assert ours.code == 18 and ours.files == {"out": b"only this"}


# ---------------------------------------------------------------------------- bombs

def test_a_decompression_bomb_is_refused(raw, tmp_path):
    from clients.http import decoding
    bomb = _gzip(_gzip(bytes(64 << 20)))
    server = RawServer(lambda request, server: [response(bomb, headers=[
        ("Content-Encoding", "gzip, gzip")])])
    try:
        ours = run_ours(["-s", "--compressed", server.url("/")])
    finally:
        server.stop()
    assert ours.code == 61
    assert len(ours.out) <= decoding.ALLOWANCE + decoding.MAX_RATIO * len(bomb)


def test_resume_range_goes_where_curl_puts_it(raw, tmp_path):
    # Ours adds If-Range after Range; the rest of the head is curl's.
    for flags in (["-C", "100", "-u", "a:b"], ["-C", "100", "-H", "Host: h.example", "-b", "c=1"]):
        curl, ours = both(tmp_path, ["-v", "-s", "-o", "out", "-A", UA] + flags
                          + [raw.url("/noranges")], setup=_partial(300))
        sent = _lines(ours, "> ")
        assert [line for line in sent if not line.startswith("> If-Range: ")] == _lines(curl, "> ")
        assert sent[sent.index("> Range: bytes=100-") + 1].startswith("> If-Range: ")
