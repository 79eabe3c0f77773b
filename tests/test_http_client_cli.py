"""``python -m clients.http``: output routing, options, exit status, failure lines; and the pure
parts of the command line (write-out, retry policy, decoding, forms, proxy choice, URLs,
progress lines) on their own.  The comparisons with curl are in test_http_client_cli_curl.py."""
import gzip
import io
import os
import socket
import subprocess
import sys
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.http import decoding, failures
from clients.http.__main__ import main, remote_name
from clients.http.bodies import BodyChanged, FileBody
from clients.http.cli import EXIT_STATUSES, build_parser
from clients.http.decoding import Decoder, DecodingError
from clients.http.multipart import FormError, form_body, parse_field
from clients.http.output import header_filename
from clients.http.progress import (METER_HEAD, ProgressDisplay, bar_line, meter_line, size5,
                                   time8)
from clients.http.proxy import Proxy, ProxySettings, Tunnel, TunnelError, no_proxy_matches
from clients.http.retry import FIRST_BACKOFF, Outcome, RetryPolicy, decide, retry_after_seconds
from clients.http.transfer import EXIT_CODES
from clients.http.urls import BadURL, check_url, with_query, with_upload_name
from clients.http.writeout import VARIABLES, render
from test_http_client import BIG, site  # noqa: F401  (fixture)

PROG = "python -m clients.http"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*argv, stdin=b"", environ=None):
    out, err = io.BytesIO(), io.StringIO()
    status = main(list(argv), stdin=io.BytesIO(stdin), stdout=out, stderr=err,
                  environ=environ or {})
    return status, out.getvalue(), err.getvalue()


def test_body_to_stdout(site):
    assert run(site.url("/small.txt")) == (0, b"hello, world\n", "")


def test_include_and_head(site):
    status, out, err = run("-i", site.url("/small.txt"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert status == 0 and body == b"hello, world\n"
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and b"\r\nContent-Length: 13" in head
    status, out, err = run("-I", site.url("/big.bin"))
    assert status == 0 and out.endswith(b"\r\n\r\n")
    assert b"Content-Length: %d\r\n" % len(BIG) in out


def test_several_urls_concurrently_in_argument_order(site):
    urls = [site.url("/big.bin"), site.url("/small.txt"), site.url("/f3.txt")]
    status, out, err = run(*urls)
    assert (status, err) == (0, "")
    assert out == BIG + b"hello, world\n" + b"file 3\n" * 4


def test_stdout_order_does_not_follow_completion_order():
    fast_done = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve_one():
        conn, _ = listener.accept()
        with conn:
            request = conn.recv(4096)
            if b"GET /slow" in request:
                fast_done.wait(5)           # answer only after /fast has been answered
                body = b"slow body\n"
            else:
                body = b"fast body\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            if body == b"fast body\n":
                fast_done.set()

    threads = [threading.Thread(target=serve_one, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    port = listener.getsockname()[1]
    try:
        status, out, err = run("-w", "[%{url_effective}]\\n", "http://127.0.0.1:%d/slow" % port,
                               "http://127.0.0.1:%d/fast" % port)
    finally:
        for t in threads:
            t.join(5)
        listener.close()
    assert (status, err) == (0, "")
    assert out == b"slow body\n[http://127.0.0.1:%d/slow]\nfast body\n[http://127.0.0.1:%d/fast]\n" % (
        port, port)


def test_output_files(site, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run("-o", "one.bin", "-o", "two.txt", site.url("/big.bin"),
                           site.url("/small.txt"), site.url("/f0.txt"))
    assert (status, err) == (0, "")
    assert out == b"file 0\n"               # a third URL without -o goes to stdout
    assert (tmp_path / "one.bin").read_bytes() == BIG
    assert (tmp_path / "two.txt").read_bytes() == b"hello, world\n"
    assert sorted(os.listdir(tmp_path)) == ["one.bin", "two.txt"]     # no temporary left


def test_remote_name_never_overwrites(site, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("-O", site.url("/small.txt"), site.url("/")) == (0, b"", "")
    assert (tmp_path / "small.txt").read_bytes() == b"hello, world\n"
    assert (tmp_path / "index.html").read_bytes().startswith(b"<!DOCTYPE HTML>")
    (tmp_path / "small.txt").write_bytes(b"mine")
    status, out, err = run("-O", site.url("/small.txt"))
    assert status == 23                 # curl's write error
    assert err == "%s: %s: refusing to overwrite existing file 'small.txt'\n" % (
        PROG, site.url("/small.txt"))
    assert (tmp_path / "small.txt").read_bytes() == b"mine"


def test_output_dir(site, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "into").mkdir()
    assert run("-O", "--output-dir", "into", site.url("/small.txt")) == (0, b"", "")
    assert (tmp_path / "into" / "small.txt").read_bytes() == b"hello, world\n"


@pytest.mark.parametrize("url, name", [
    ("http://h/a/b.tar.gz?x=1#f", "b.tar.gz"), ("http://h/", "index.html"), ("http://h", "index.html"),
    ("http://h/dir/", "index.html"), ("http://h/%2e%2e", "index.html"),
    ("http://h/a%2Fb", "b"), ("http://h/caf%C3%A9.txt", "caf\u00e9.txt")])
def test_remote_name(url, name):
    assert remote_name(url) == name


@pytest.mark.parametrize("value, name", [
    ('attachment; filename="a.txt"', "a.txt"), ("attachment; filename=b.bin; size=3", "b.bin"),
    ('attachment; filename="../../etc/passwd"', "passwd"), ('inline; filename=".."', ""),
    ("attachment", ""), ('attachment; xfilename="no"', ""), ('FILENAME="C:\\\\x\\\\y.txt"', "y.txt"),
    ('attachment; filename="red\x1b[31m.txt"', ""), ('attachment; filename="caf\u00e9"', "caf\u00e9"),
    (None, "")])
def test_header_filename_stays_in_the_current_directory(value, name):
    assert header_filename(value) == name


def test_method_data_and_headers(site, tmp_path):
    status, out, err = run("--data", "a=1", "-H", "X-One: 1", "-H", "x-two:2",
                           site.url("/echo"))
    text = out.decode()
    assert status == 0 and text.startswith("POST /echo\n")
    assert "X-One: 1\n" in text and "x-two: 2\n" in text and text.endswith("\n\na=1")
    assert "Content-Type: application/x-www-form-urlencoded\n" in text
    (tmp_path / "payload").write_bytes(b"\x00binary\xff")
    status, out, err = run("-X", "POST", "--data-binary", "@%s" % (tmp_path / "payload"),
                           "-H", "Content-Type: application/octet-stream", site.url("/echo"))
    assert out.endswith(b"\n\n\x00binary\xff") and b"octet-stream" in out
    status, out, err = run("--data", "@-", site.url("/echo"), stdin=b"from stdin")
    assert out.endswith(b"\n\nfrom stdin")


def test_redirect_options(site):
    status, out, err = run("-i", "--no-follow", site.url("/dir"))
    assert status == 0 and out.startswith(b"HTTP/1.0 301 ") and b"\r\nLocation: /dir/\r\n" in out
    status, out, err = run(site.url("/dir"))
    assert status == 0 and b"Directory listing for /dir/" in out
    status, out, err = run("-L", "--max-redirs", "0", site.url("/dir"))
    assert status == 47 and out == b""
    assert err == "%s: %s: more than 0 redirects: '%s' (after 0 redirects)\n" % (
        PROG, site.url("/dir"), site.url("/dir/"))
    assert run("--max-redirects", "0", site.url("/dir"))[0] == 47


def _dead_url():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    url = "http://127.0.0.1:%d/" % dead.getsockname()[1]
    dead.close()
    return url


def test_failures_one_line_each_and_exit_status(site):
    dead_url = _dead_url()
    status, out, err = run(site.url("/small.txt"), site.url("/nope"), dead_url, "gopher://x/",
                           "--timeout", "5")
    assert status == 1              # the last URL's: an unsupported protocol, as curl says
    assert out.startswith(b"hello, world\n")        # the 404 page follows, as curl does
    assert err.splitlines() == [
        "%s: %s: connection refused by 127.0.0.1:%s" % (PROG, dead_url, dead_url.split(":")[2][:-1]),
        "%s: gopher://x/: bad URL: unsupported URL scheme 'gopher' (only http and https)" % PROG]
    assert run("-f", site.url("/nope"))[:2] == (22, b"")
    assert run("-s", dead_url) == (7, b"", "")
    assert run("-sS", dead_url)[2] != ""


def test_fail_early(site):
    dead_url = _dead_url()
    status, out, err = run("--fail-early", "-f", site.url("/nope"), site.url("/small.txt"))
    assert status == 22
    assert run("--fail-early", site.url("/small.txt"), dead_url)[0] == 7


def test_usage_errors(site, capsys):
    assert run("-H", "no colon", site.url())[0] == 2
    assert run("--data", "@/nonexistent/file", site.url())[0] == 2
    assert run("-u", "nopassword", site.url())[0] == 2
    assert run("-b", "cookies.txt", site.url())[0] == 2
    assert run("-d", "x", "-F", "a=b", site.url())[0] == 2
    assert run("-J", site.url())[0] == 2
    assert run("-C", "ten", site.url())[0] == 2
    assert run("-F", "novalue", site.url())[0] == 2
    assert run()[0] == 2
    assert run("--cacert", "/nonexistent.pem", site.url())[0] == 77
    with pytest.raises(SystemExit) as info:
        main(["--no-such-option"])
    assert info.value.code == 2


class BrokenPipe(io.RawIOBase):
    def writable(self):
        return True

    def write(self, data):
        raise BrokenPipeError(32, "Broken pipe")


def test_broken_stdout(site):
    err = io.StringIO()
    status = main([site.url("/big.bin")], stdout=BrokenPipe(), stderr=err)
    assert status == 23
    assert err.getvalue() == "%s: <stdout>: cannot write output: Broken pipe\n" % PROG


def test_as_a_program_never_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "clients.http", "http://127.0.0.1:1/", "http://[::1/", "ftp://x/"],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "%s: http://127.0.0.1:1/: connection refused by 127.0.0.1:1" % PROG,
        "%s: http://[::1/: bad URL: unterminated IPv6 address in URL 'http://[::1/'" % PROG,
        "%s: ftp://x/: bad URL: unsupported URL scheme 'ftp' (only http and https)" % PROG]


def test_help_documents_every_exit_status():
    text = build_parser().format_help()
    for code, _ in EXIT_STATUSES:
        assert "\n  %3d  " % code in text
    documented = {code for code, _ in EXIT_STATUSES}
    assert set(EXIT_CODES.values()) <= documented
    assert {22, 23, 33, 61, 77} <= documented


def test_every_failure_has_an_exit_status():
    names = [getattr(failures, name) for name in failures.__all__]
    assert set(names) == set(EXIT_CODES)


# ----------------------------------------------------------------------------- write-out

_VALUES = {"http_code": 200, "size_download": 5, "time_total": 0.25, "content_type": "text/x",
           "url_effective": "http://h/", "exitcode": 0}


def test_write_out_rendering():
    assert render("%{http_code} %{size_download} %{time_total}\\n", _VALUES) == (
        "200 5 0.250000\n", "")
    assert render("%{http_connect}|%{content_type}|%{redirect_url}|", {}) == ("000|||", "")
    assert render("a%{stderr}b%{stdout}c", {}) == ("ac", "b")
    assert render("ok%{onerror}failed", {"exitcode": 0}) == ("ok", "")
    assert render("ok%{onerror}failed", {"exitcode": 7}) == ("okfailed", "")
    assert render("%header{X-A}|%header{x-b}", {}, [("x-a", " 1 "), ("X-A", "2")]) == (
        "1|", "")
    assert render("100%% \\q \\\\ %d %{", {}) == ("100% \\q \\\\ %d %{", "")
    warned = []
    assert render("[%{nope}]", {}, warn=warned.append) == ("[]", "")
    assert warned == ["unknown --write-out variable: 'nope'"]


def test_write_out_json():
    import json
    text, _ = render("%{json}", dict(_VALUES, errormsg=None), version="x/1")
    parsed = json.loads(text)
    assert parsed["http_code"] == 200 and parsed["time_total"] == 0.25
    assert parsed["curl_version"] == "x/1" and set(VARIABLES) <= set(parsed)
    text, _ = render("%{header_json}", {}, [("A", "1"), ("b", "2"), ("a", "3")])
    assert json.loads(text) == {"a": ["1", "3"], "b": ["2"]}


@given(st.text(max_size=60))
def test_write_out_never_fails(fmt):
    out, err = render(fmt, _VALUES, [("Content-Type", "x")])
    assert isinstance(out, str) and isinstance(err, str)
    if "%" not in fmt and "\\" not in fmt:
        assert out == fmt


# ----------------------------------------------------------------------------- retry

@given(code=st.sampled_from([0, 6, 7, 18, 22, 28, 47, 52, 56]),
       status=st.none() | st.sampled_from([200, 404, 408, 429, 500, 501, 503, 504]),
       retry_after=st.none() | st.floats(0, 100), done=st.integers(0, 5),
       retries=st.integers(0, 5), delay=st.sampled_from([0.0, 0.5, 3.0]),
       max_time=st.sampled_from([0.0, 5.0]), elapsed=st.floats(0, 10),
       all_errors=st.booleans(), connrefused=st.booleans(), refused=st.booleans())
def test_retry_decisions(code, status, retry_after, done, retries, delay, max_time, elapsed,
                         all_errors, connrefused, refused):
    policy = RetryPolicy(retries, delay, max_time, all_errors, connrefused)
    decision = decide(policy, Outcome(code, status, retry_after, refused), done, FIRST_BACKOFF,
                      elapsed)
    transient = (code in (6, 28) or (status in (408, 429, 500, 502, 503, 504) and code in (0, 22))
                 or (connrefused and code == 7 and refused) or (all_errors and code != 0))
    if done >= retries or (max_time and elapsed >= max_time) or not transient:
        assert decision is None
        return
    if decision is None:        # only a Retry-After past --retry-max-time refuses
        assert retry_after and max_time and elapsed + retry_after > max_time
        return
    assert decision.delay >= (delay or FIRST_BACKOFF)
    assert decision.next_backoff == (FIRST_BACKOFF if delay else 2 * FIRST_BACKOFF)


def test_retry_backoff_doubles_up_to_ten_minutes():
    policy, backoff, waits = RetryPolicy(20), FIRST_BACKOFF, []
    for done in range(12):
        decision = decide(policy, Outcome(28), done, backoff, 0.0)
        waits.append(decision.delay)
        backoff = decision.next_backoff
    assert waits[:5] == [1, 2, 4, 8, 16] and waits[-1] == 600


def test_retry_after_values():
    assert retry_after_seconds("120", 0) == 120
    assert retry_after_seconds(" 3 ", 0) == 3
    assert retry_after_seconds("Thu, 01 Jan 1970 00:01:00 GMT", 30) == 30
    assert retry_after_seconds("Thu, 01 Jan 1970 00:01:00 GMT", 100) == 0
    assert retry_after_seconds("soon", 0) is None and retry_after_seconds(None, 0) is None
    assert retry_after_seconds("\u0663", 0) is None        # not an ASCII digit


# ----------------------------------------------------------------------------- decoding

@settings(max_examples=40)
@given(data=st.binary(max_size=5000), coding=st.sampled_from(
    ["gzip", "x-gzip", "deflate", "rawdeflate", "gzip, gzip", "identity", "deflate, gzip"]),
    cuts=st.lists(st.integers(0, 6000), max_size=8))
def test_decoding_is_exact_however_the_body_is_cut(data, coding, cuts):
    encoded = data
    header = coding
    for layer in [c.strip() for c in coding.split(",")]:
        if layer in ("gzip", "x-gzip"):
            encoded = gzip.compress(encoded)
        elif layer == "deflate":
            encoded = zlib.compress(encoded)
        elif layer == "rawdeflate":
            c = zlib.compressobj(wbits=-15)
            encoded = c.compress(encoded) + c.flush()
            header = "deflate"
    decoder = Decoder(header)
    points = sorted({min(c, len(encoded)) for c in cuts} | {0, len(encoded)})
    out = b"".join(piece for a, b in zip(points, points[1:])
                   for piece in decoder.decode(encoded[a:b]))
    decoder.finish()
    assert out == data


def test_decompression_bomb_is_refused_in_bounded_memory():
    import tracemalloc
    bomb = gzip.compress(gzip.compress(bytes(256 << 20)))       # 256 MiB of zeros, nested
    assert len(bomb) < 50000
    decoder = Decoder("gzip, gzip")
    produced = 0
    tracemalloc.start()
    try:
        with pytest.raises(DecodingError, match="decompression bomb"):
            for i in range(0, len(bomb), 1000):
                produced += sum(len(p) for p in decoder.decode(bomb[i:i + 1000]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert produced <= decoding.ALLOWANCE + decoding.MAX_RATIO * len(bomb)
    assert peak < 8 << 20


def test_a_single_layer_at_the_deflate_limit_is_not_a_bomb():
    zeros = bytes(64 << 20)
    encoded = zlib.compress(zeros, 9)
    decoder = Decoder("deflate")
    assert sum(len(p) for i in range(0, len(encoded), 4096)
               for p in decoder.decode(encoded[i:i + 4096])) == len(zeros)


@pytest.mark.parametrize("coding, data, match", [
    ("br", b"x", "unsupported content coding"), ("gzip", b"\x1f\x8bnope", "cannot decode"),
    ("gzip, " * 6 + "gzip", b"", "stacked")])
def test_decoding_errors(coding, data, match):
    with pytest.raises(DecodingError, match=match):
        Decoder(coding).decode(data)


def test_truncated_stream():
    decoder = Decoder("gzip")
    decoder.decode(gzip.compress(b"abc" * 1000)[:-10])
    with pytest.raises(DecodingError, match="ends before"):
        decoder.finish()


# ----------------------------------------------------------------------------- forms, bodies

def test_form_field_syntax(tmp_path):
    f = parse_field('a="x;y";type=text/q;filename=n.txt;headers=X-H: 1;bogus')
    assert (f.name, f.value, f.content_type, f.filename, f.headers) == (
        "a", "x;y", "text/q", "n.txt", ["X-H: 1"])
    f = parse_field('up=@"my;file.txt";type=a/b')
    assert (f.path, f.upload, f.content_type) == ("my;file.txt", True, "a/b")
    assert parse_field("t=<notes").upload is False
    for bad in ("novalue", 'a="unterminated', "a=@x,y", "a=@-"):
        with pytest.raises(FormError):
            parse_field(bad)


def test_form_body_streams_files(tmp_path):
    (tmp_path / "big.bin").write_bytes(BIG)
    content_type, body = form_body([parse_field("f=@%s" % (tmp_path / "big.bin")),
                                    parse_field("t=v")], boundary="B")
    assert content_type == "multipart/form-data; boundary=B"
    chunks = list(body.chunks())
    assert max(len(c) for c in chunks) <= 1 << 18
    whole = b"".join(chunks)
    assert len(whole) == body.length
    assert whole.startswith(b'--B\r\nContent-Disposition: form-data; name="f"; filename="big.bin"'
                            b"\r\nContent-Type: application/octet-stream\r\n\r\n" + BIG[:100])
    assert whole.endswith(b'\r\n--B\r\nContent-Disposition: form-data; name="t"\r\n\r\nv\r\n--B--\r\n')
    assert b"".join(body.chunks()) == whole            # every pass is the same body


def test_a_file_that_shrinks_is_not_sent_short(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    body = FileBody([path])
    path.write_bytes(b"x" * 10)
    with pytest.raises(BodyChanged):
        b"".join(body.chunks())


def test_upload_of_a_file_that_changes_fails_cleanly(site, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    body = FileBody([path])
    path.write_bytes(b"")
    from clients.http import AsyncHTTP
    from test_http_client import CheckingConsumer, drive
    from eventloop import Reactor
    reactor = Reactor()
    c = CheckingConsumer()
    try:
        AsyncHTTP(site.url("/echo"), c, "PUT", body=body, reactor=reactor)
        drive(reactor)
    finally:
        reactor.close()
    assert c.check().request.failure == failures.UPLOAD
    assert "shorter than when the upload began" in c.error


# ----------------------------------------------------------------------------- proxies

@pytest.mark.parametrize("host, no_proxy, expected", [
    ("example.com", "example.com", True), ("www.example.com", "example.com", True),
    ("www.example.com", ".example.com", True), ("notexample.com", "example.com", False),
    ("EXAMPLE.com", "example.COM", True), ("example.com.", "example.com", True),
    ("a.b", "*", True), ("a.b", "*,x", False), ("a.b", "", False), ("10.1.2.3", "10.0.0.0/8", True),
    ("10.1.2.3", "10.1.2.3", True), ("10.1.2.4", "10.1.2.3", False), ("[::1]", "::1", True),
    ("::1", "::/0", True), ("10.1.2.3", "example.com, 10.1.0.0/16", True),
    ("host", " host ", True), ("10.0.0.1", "10.0.0.0/33", False)])
def test_no_proxy(host, no_proxy, expected):
    assert no_proxy_matches(host, no_proxy) is expected


def test_proxy_settings_precedence():
    env = {"http_proxy": "a:1", "HTTP_PROXY": "ignored:1", "HTTPS_PROXY": "b:2",
           "all_proxy": "c:3", "no_proxy": "direct.example"}
    settings_ = ProxySettings(environ=env)
    assert settings_.select("http://x/").key == ("a", 1, None)
    assert settings_.select("https://x/").key == ("b", 2, None)
    assert settings_.select("http://direct.example/") is None
    assert ProxySettings(environ={"ALL_PROXY": "c"}).select("http://x/").port == 1080
    assert ProxySettings("", environ=env).select("http://x/") is None
    assert ProxySettings("d:4", environ=env).select("http://direct.example/") is None
    assert ProxySettings("d:4", "", environ=env).select("http://direct.example/").port == 4
    assert Proxy("http://u%40x:p%3a@h:9").authorization == "Basic dUB4OnA6"
    for bad in ("socks5://h:1", "https://h:1", "http://:1", "h:99999"):
        with pytest.raises(ValueError):
            Proxy(bad)


def test_tunnel_exchange():
    tunnel = Tunnel("example.com:443", "Basic eDp5")
    assert tunnel.request == (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                              b"Proxy-Authorization: Basic eDp5\r\n\r\n")
    assert tunnel.receive(b"HTTP/1.1 200 Connection established\r\n") is None
    assert tunnel.receive(b"\r\n").status == 200
    for answer, match in ((b"HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", "407"),
                          (b"garbage\r\n\r\n", "invalid answer"),
                          (b"HTTP/1.1 200 OK\r\n\r\nearly", "data after")):
        with pytest.raises(TunnelError, match=match):
            Tunnel("h:1").receive(answer)
    with pytest.raises(TunnelError):
        t = Tunnel("h:1")
        t.receive(b"HTTP/1.1 20")
        t.receive(b"")


# ----------------------------------------------------------------------------- URLs

@pytest.mark.parametrize("text, url", [
    ("localhost:8000/x", "http://localhost:8000/x"), ("HTTPS://h/", "HTTPS://h/"),
    ("http://[::1]:80/", "http://[::1]:80/"), ("http://u:p@h/", "http://u:p@h/"),
    ("http://h:/", "http://h:/"), ("http://é.example/é", "http://é.example/é")])
def test_urls_accepted(text, url):
    assert check_url(text) == url


@pytest.mark.parametrize("text, code", [
    ("ftp://h/", 1), ("gopher://h/", 1), ("//h/", 3), ("http://", 3), ("http://h:65536/", 3),
    ("http://h:8a/", 3), ("http://[zz]/", 3), ("http://::1/", 3), ("http://a b/", 3),
    ("http://h/a b", 3), ("http://h/\x01", 3), ("http://a@b@h/", 3), ("http://h%20x/", 3),
    ("http://h\\x/", 3), ("1http://h/", 3)])
def test_urls_refused(text, code):
    with pytest.raises(BadURL) as info:
        check_url(text)
    assert info.value.code == code


def test_url_helpers():
    assert with_upload_name("http://h", "/tmp/a b.txt") == "http://h/a%20b.txt"
    assert with_upload_name("http://h/d/?q=1", "f") == "http://h/d/f?q=1"
    assert with_upload_name("http://h/name", "f") == "http://h/name"
    assert with_query("http://h/p#frag", "a=1") == "http://h/p?a=1#frag"
    assert with_query("http://h/p?x", "a=1") == "http://h/p?x&a=1"


# ----------------------------------------------------------------------------- progress

class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_meter_columns():
    assert [size5(n) for n in (0, 99999, 100000, 10239999, 10 << 20, 100 << 20, 12 << 30,
                               200 << 30, 20 << 40)] == [
        "    0", "99999", "  97k", "9999k", "10.0M", " 100M", "12.0G", " 200G", "  20T"]
    assert [time8(s) for s in (None, 0, 0.9, 1, 3725, 100 * 3600, 2e9)] == [
        "--:--:--", "--:--:--", "--:--:--", " 0:00:01", " 1:02:05", "  4d 04h", "  23148d"]
    line = meter_line(300000, 120000, None, 0, 0.6, 193000)
    assert line == " 40  292k   40  117k    0     0   195k      0  0:00:01 --:--:-- --:--:--  188k"
    assert len(line) == 78 and len(METER_HEAD.splitlines()[0]) == 79


@given(total=st.none() | st.integers(0, 1 << 60), done=st.integers(0, 1 << 60),
       up=st.integers(0, 1 << 40), elapsed=st.floats(0, 1e9), current=st.floats(0, 1e15))
def test_meter_line_is_always_78_columns(total, done, up, elapsed, current):
    line = meter_line(total, done, up or None, up, elapsed, current)
    assert len(line) == 78 and line.isprintable()


@given(fraction=st.none() | st.floats(-1, 2), width=st.integers(1, 300), tick=st.integers(0, 10**6))
def test_bar_line_fits(fraction, width, tick):
    line = bar_line(fraction, width, tick)
    assert len(line) == max(width - 8, 10) + 7 and line.isprintable()


def test_display_shows_transfers_over_a_second_in_place():
    out, clock = FakeTTY(), Clock()
    display = ProgressDisplay(out, clock=clock, columns=80)
    slow, quick = display.add(), display.add()
    slow.expect(down_total=4 << 20)
    clock.now = 0.5
    quick.update(down=10)
    quick.finish()                      # done in half a second: never drawn
    display.tick()
    assert out.getvalue() == ""
    clock.now = 1.5
    slow.update(down=1 << 20)
    display.tick()
    first = out.getvalue()
    assert first.startswith(METER_HEAD) and first.count("\n") == 3
    assert first.splitlines()[2].startswith(" 25 4096k   25 1024k")
    clock.now = 2.5
    display.write_above("a message\n")
    after = out.getvalue()[len(first):]
    assert after.startswith("\x1b[3F\x1b[Ja message\n" + METER_HEAD)
    slow.update(down=4 << 20)
    slow.finish()
    assert out.getvalue().rsplit("\n", 2)[-2].startswith("100 4096k  100 4096k")


def test_display_bar_and_disabled():
    out, clock = FakeTTY(), Clock()
    display = ProgressDisplay(out, "bar", clock=clock, columns=40)
    meter = display.add()
    meter.expect(down_total=100)
    clock.now = 2
    meter.update(down=50)
    display.tick()
    assert out.getvalue() == "#" * 16 + " " * 16 + "  50.0%\n"
    quiet = io.StringIO()
    display = ProgressDisplay(quiet, enabled=False, clock=clock)
    meter = display.add()
    clock.now = 10
    display.tick()
    display.write_above("text\n")
    assert quiet.getvalue() == "text\n"


def test_uploads_stream_from_disk(tmp_path):
    """-T and -F send a 32 MiB file without holding it: the client's traced peak stays small."""
    import tracemalloc
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(32 << 20)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    received = []

    def count():
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(20)
                data, total = b"", 0
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                total = len(rest)
                while total < length:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                received.append(total)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

    thread = threading.Thread(target=count, daemon=True)
    thread.start()
    url = "http://127.0.0.1:%d/" % listener.getsockname()[1]
    tracemalloc.start()
    try:
        first = run("-T", str(big), url)
        second = run("-F", "f=@%s" % big, url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        thread.join(30)
        listener.close()
    assert first[:2] == second[:2] == (0, b"ok\n")
    assert received[0] == 32 << 20 and received[1] > 32 << 20
    assert peak < 4 << 20, "traced peak %d KiB" % (peak // 1024)
