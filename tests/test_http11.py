"""Tests for eventloop.http11: round trips, chunking invariance, fuzzing, strictness rules, limits, the cycle."""

import pytest
from hypothesis import example, given, strategies as st

from eventloop.http11 import (
    CLIENT, CLOSED, DONE, ERROR, IDLE, MUST_CLOSE, NEED_DATA, PAUSED, SEND_BODY, SEND_RESPONSE, SERVER,
    Connection, ConnectionClosed, Data, EndOfMessage, Headers, InformationalResponse, LocalProtocolError,
    ProtocolError, RemoteProtocolError, Request, Response)

MAX_EVENTS = 10_000


# ------------------------------------------------------------------------------------------- helpers

def merge_data(events):
    """Join consecutive Data events: how a body is split into Data carries no meaning."""
    out = []
    for ev in events:
        if type(ev) is Data and out and type(out[-1]) is Data:
            out[-1] = Data(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def drain(conn, events=None):
    """Events until NEED_DATA, PAUSED or ConnectionClosed; returns (events, what stopped it).

    Events are appended to ``events`` as they come, so the caller keeps them if an error is raised.
    """
    events = [] if events is None else events
    for _ in range(MAX_EVENTS):
        ev = conn.next_event()
        if ev is NEED_DATA or ev is PAUSED:
            return events, ev
        events.append(ev)
        if type(ev) is ConnectionClosed:
            return events, ev
    raise AssertionError("next_event never asked for data")


def server_run(chunks, eof=False, **limits):
    """Feed ``chunks`` to a server that answers every complete request with an empty 200 and cycles.

    Returns (merged events, error hint or None).
    """
    conn = Connection(SERVER, **limits)
    events = []
    try:
        for chunk in [c for c in chunks if c] + ([b""] if eof else []):
            conn.receive_data(chunk)
            for _ in range(MAX_EVENTS):
                _, stop = drain(conn, events)
                if stop is not PAUSED:
                    break
                conn.send_head_and_body(Response(200, [], "OK"), b"")
                conn.start_next_cycle()
            else:
                raise AssertionError("unbounded pipelining loop")
    except RemoteProtocolError as exc:
        return merge_data(events), exc.error_status_hint
    return merge_data(events), None


def client_after(request, **limits):
    conn = Connection(CLIENT, **limits)
    conn.send(request)
    conn.send(EndOfMessage())
    return conn


def parse_request(raw, **limits):
    conn = Connection(SERVER, **limits)
    conn.receive_data(raw)
    events, _ = drain(conn)
    return merge_data(events)


def request_error(raw, eof=False, **limits):
    conn = Connection(SERVER, **limits)
    conn.receive_data(raw)
    if eof:
        conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert conn.their_state == ERROR
    assert not conn.keep_alive
    return info.value


def parse_response(raw, method="GET", eof=False, **limits):
    conn = client_after(Request(method, "/", [("Host", "h")]), **limits)
    conn.receive_data(raw)
    if eof:
        conn.receive_data(b"")
    events, _ = drain(conn)
    return merge_data(events)


GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


# ------------------------------------------------------------------------------------ strategies

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {"content-length", "transfer-encoding", "connection", "host", "expect"}
VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f")

tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)
field_names = tokens.filter(lambda n: n.lower() not in RESERVED)
field_values = st.text(alphabet=st.one_of(VISIBLE, st.sampled_from(" \t")), max_size=20).map(
    lambda v: v.strip(" \t"))
field_lists = st.lists(st.tuples(field_names, field_values), max_size=8)
# Origin-form targets: "/" then visible US-ASCII without "#" (a fragment is never sent).
targets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
                  max_size=30).map(lambda t: "/" + t)
reasons = st.text(alphabet=st.one_of(VISIBLE, st.sampled_from(" \t")), max_size=20)
bodies = st.binary(max_size=300)


@st.composite
def pieces_of(draw, data):
    """``data`` cut at arbitrary points (empty pieces allowed): how a sender hands over a body."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


@st.composite
def chunkings(draw, data):
    """``data`` as received: one piece, byte by byte, or cut at arbitrary points."""
    how = draw(st.sampled_from(["whole", "bytes", "cuts", "cuts"]))
    if how == "whole" or len(data) < 2:
        return [data]
    if how == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=20)))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def chunk_ext():
    quoted = st.lists(st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
                                st.sampled_from(['\\"', "\\\\"])), max_size=6).map(lambda s: '"' + "".join(s) + '"')
    ows = st.sampled_from(["", " ", "\t"])
    # Whitespace only after ";" and around "=": never before ";" or the CRLF.
    one = st.tuples(ows, tokens, st.one_of(st.just(""), st.tuples(ows, ows, st.one_of(tokens, quoted)).map(
        lambda t: f"{t[0]}={t[1]}{t[2]}"))).map(lambda t: f";{t[0]}{t[1]}{t[2]}")
    return st.lists(one, max_size=3).map("".join)


@st.composite
def hand_chunked(draw, body):
    """A chunked encoding of ``body`` with arbitrary chunk splits, size spellings and extensions."""
    pieces = [p for p in draw(pieces_of(body)) if p]
    out = []
    for piece in pieces:
        size = format(len(piece), "x")
        size = "0" * draw(st.integers(0, 3)) + (size.upper() if draw(st.booleans()) else size)
        out.append(f"{size}{draw(chunk_ext())}\r\n".encode() + piece + b"\r\n")
    trailers = draw(field_lists)
    out.append(f"0{draw(chunk_ext())}\r\n".encode())
    out.append("".join(f"{n}: {v}\r\n" for n, v in trailers).encode("latin-1") + b"\r\n")
    return b"".join(out), trailers


# --------------------------------------------------------------------------------- round trips

@given(method=tokens.filter(lambda m: m != "CONNECT"), target=targets, fields=field_lists, body=bodies,
       data=st.data(),
       framing=st.sampled_from(["length", "chunked", "none"]), trailers=field_lists)
def test_request_round_trip(method, target, fields, body, data, framing, trailers):
    if framing == "none":
        body = b""
    headers = [("Host", "example.com")] + fields
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    if framing != "chunked":
        trailers = []
    request = Request(method, target, headers)
    client = Connection(CLIENT)
    wire = client.send(request)
    for piece in data.draw(pieces_of(body)):
        wire += client.send(Data(piece))
    wire += client.send(EndOfMessage(trailers))
    assert client.our_state == DONE and client.their_state == SEND_RESPONSE
    expected = [request] + ([Data(body)] if body else []) + [EndOfMessage(trailers)]
    for chunks in ([wire], data.draw(chunkings(wire))):
        server = Connection(SERVER)
        events = []
        for chunk in chunks:
            server.receive_data(chunk)
            events += drain(server)[0]
        assert merge_data(events) == expected
        assert server.their_state == DONE and server.our_state == SEND_RESPONSE
        assert server.next_event() is PAUSED


@given(status=st.integers(200, 599), reason=reasons, fields=field_lists, body=bodies, data=st.data(),
       framing=st.sampled_from(["length", "chunked", "auto", "close"]), trailers=field_lists,
       method=st.sampled_from(["GET", "HEAD", "POST"]))
def test_response_round_trip(status, reason, fields, body, data, framing, trailers, method):
    version = "1.0" if framing == "close" else "1.1"
    request = Request(method, "/x", [("Host", "h")], version=version)
    client = client_after(request)
    server = Connection(SERVER)
    server.receive_data(_request_bytes(request))
    drain(server)
    headers = list(fields)
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    response = Response(status, headers, reason)
    no_body = method == "HEAD" or status in (204, 304)
    if no_body:
        body = b""
    if framing != "chunked" or no_body:
        trailers = []
    wire = server.send(response)
    for piece in data.draw(pieces_of(body)):
        wire += server.send(Data(piece))
    wire += server.send(EndOfMessage(trailers))
    if framing == "auto" and not no_body:
        assert b"\r\nTransfer-Encoding: chunked\r\n" in wire
    close_delimited = framing == "close" and not no_body
    assert server.keep_alive == (not close_delimited and version == "1.1")
    expected = [response] + ([Data(body)] if body else []) + [EndOfMessage(trailers)]
    for chunks in ([wire], data.draw(chunkings(wire))):
        conn = client_after(request)
        events = []
        for chunk in chunks + ([b""] if close_delimited else []):
            conn.receive_data(chunk)
            events += drain(conn)[0]
        if close_delimited:
            assert events[-1] == ConnectionClosed()
            events.pop()
            assert conn.their_state == CLOSED
        else:
            assert conn.their_state == (DONE if version == "1.1" else MUST_CLOSE)
        got = merge_data(events)
        if framing == "auto" and not no_body:
            assert got[0].headers.get("transfer-encoding") == "chunked"
            got[0].headers.remove("Transfer-Encoding")
        assert got == expected


def _request_bytes(request):
    return Connection(CLIENT).send(request)


@given(body=bodies, data=st.data())
def test_chunked_extensions_and_trailers_are_parsed(body, data):
    encoded, trailers = data.draw(hand_chunked(body))
    head = b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    events, hint = server_run(data.draw(chunkings(head + encoded + GET)))
    assert hint is None
    assert events[1:] == ([Data(body)] if body else []) + [EndOfMessage(trailers), events[-2], EndOfMessage()]
    assert events[-2].method == "GET"


# -------------------------------------------------------------------------- chunking invariance

CORPUS = [
    GET,
    b"\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /lf HTTP/1.1\nHost: h\nX: y  \n\n",
    b"GET /mixed HTTP/1.1\nHost: h\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /ch HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
]


@pytest.mark.parametrize("raw", CORPUS)
@pytest.mark.parametrize("tail", [b"", GET])
def test_corpus_byte_by_byte_and_with_trailing_data(raw, tail):
    whole = server_run([raw + tail])
    assert server_run([bytes([b]) for b in raw + tail]) == whole
    assert server_run([raw, tail]) == whole
    assert server_run([raw + tail], eof=True)[0][:len(whole[0])] == whole[0]


@given(data=st.data(), fields=field_lists, body=bodies, second=st.booleans())
def test_every_chunking_gives_the_same_events(data, fields, body, second):
    head = "POST /p HTTP/1.1\r\nHost: h\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    raw = head.encode("latin-1") + b"Content-Length: %d\r\n\r\n" % len(body) + body
    encoded, _ = data.draw(hand_chunked(body))
    chunked = head.encode("latin-1") + b"Transfer-Encoding: chunked\r\n\r\n" + encoded
    stream = data.draw(st.sampled_from([raw, chunked, data.draw(st.sampled_from(CORPUS))]))
    if second:
        stream += GET
    whole = server_run([stream])
    assert server_run(data.draw(chunkings(stream))) == whole


@given(data=st.data(), body=bodies, tiny=st.booleans())
def test_chunked_data_events_are_bounded_by_receives_not_chunks(data, body, tiny):
    """However a chunked body is cut into chunks and into receives, its Data joins to the body, and
    each receive yields at most one Data event: a body of many tiny chunks costs an event per
    receive, not per chunk (the cost an attacker sending 1-byte chunks could otherwise multiply)."""
    if tiny:
        encoded = b"".join(b"1\r\n%c\r\n" % b for b in body) + b"0\r\n\r\n"
    else:
        encoded, _ = data.draw(hand_chunked(body))
    head = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    receives = data.draw(chunkings(head + encoded))
    conn = Connection(SERVER)
    got = b""
    for piece in receives:
        conn.receive_data(piece)
        events, _ = drain(conn)
        datas = [ev.data for ev in events if type(ev) is Data]
        assert len(datas) <= 1, (len(datas), piece)
        got += b"".join(datas)
    assert got == body
    assert conn.their_state == DONE


def test_a_receive_of_many_one_byte_chunks_is_one_data_event():
    conn = Connection(SERVER)
    conn.receive_data(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"1\r\nx\r\n" * 5000 + b"2;e=1\r\nyz\r\n1")
    events, stop = drain(conn)
    assert [type(ev) for ev in events] == [Request, Data] and stop is NEED_DATA
    assert events[1].data == b"x" * 5000 + b"yz"
    conn.receive_data(b"\r\nw\r\n0\r\nT: v\r\n\r\n")
    events, stop = drain(conn)
    assert [type(ev) for ev in events] == [Data, EndOfMessage] and stop is PAUSED
    assert events[0].data == b"w" and events[1].trailers.get("t") == "v"


def test_an_error_after_chunk_data_comes_after_that_data():
    """Data read before a framing error is delivered first; the error follows, as before."""
    conn = Connection(SERVER)
    conn.receive_data(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"1\r\nx\r\n2\r\nyzX")
    assert type(conn.next_event()) is Request
    assert conn.next_event().data == b"xyz"
    with pytest.raises(RemoteProtocolError, match="missing CRLF after chunk data"):
        conn.next_event()


@given(data=st.data(), body=bodies, status=st.sampled_from([100, 103, 200, 204, 304, 404]))
def test_response_chunkings_give_the_same_events(data, body, status):
    encoded, _ = data.draw(hand_chunked(body))
    raw = data.draw(st.sampled_from([
        b"HTTP/1.1 %d Whatever\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body),
        b"HTTP/1.1 %d \r\nTransfer-Encoding: chunked\r\n\r\n%s" % (status, encoded),
        b"HTTP/1.0 %d\r\n\r\n%s" % (status, body),
    ]))
    if status < 200:
        raw = b"HTTP/1.1 %d Wait\r\nX: y\r\n\r\n" % status + raw.replace(b" %d" % status, b" 200", 1)

    def run(chunks):
        conn = client_after(Request("GET", "/", [("Host", "h")]))
        events = []
        try:
            for chunk in [c for c in chunks if c] + [b""]:
                conn.receive_data(chunk)
                drain(conn, events)
        except RemoteProtocolError as exc:
            return merge_data(events), exc.error_status_hint
        return merge_data(events), None

    whole = run([raw])
    assert whole[1] is None
    assert run(data.draw(chunkings(raw))) == whole


# ------------------------------------------------------------------------------------- fuzzing

def _fuzz(role, chunks, eof, method="GET"):
    conn = Connection(role, max_head=2048, max_line=512, max_fields=20, max_body=4096, max_chunk_line=64)
    if role == CLIENT:
        conn.send(Request(method, "/", [("Host", "h")]))
        conn.send(EndOfMessage())
    steps = 0
    try:
        for chunk in chunks + ([b""] if eof else []):
            conn.receive_data(chunk)
            while True:
                steps += 1
                assert steps < MAX_EVENTS, "next_event does not make progress"
                ev = conn.next_event()
                if ev is NEED_DATA or type(ev) is ConnectionClosed:
                    break
                if ev is PAUSED:
                    if role == SERVER:
                        conn.send_head_and_body(Response(200, [], ""), b"")
                    if conn.our_state != DONE:
                        break
                    conn.start_next_cycle()
                    if role == CLIENT:
                        conn.send(Request(method, "/", [("Host", "h")]))
                        conn.send(EndOfMessage())
    except RemoteProtocolError as exc:
        assert isinstance(exc.error_status_hint, int) and 400 <= exc.error_status_hint <= 505
        assert conn.their_state == ERROR
        with pytest.raises(RemoteProtocolError):
            conn.next_event()


@given(data=st.data(), blob=st.binary(max_size=400), role=st.sampled_from([CLIENT, SERVER]), eof=st.booleans(),
       method=st.sampled_from(["GET", "HEAD"]))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data, blob, role, eof, method):
    _fuzz(role, data.draw(chunkings(blob)), eof, method)


PLAUSIBLE = [
    GET + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n0\r\nA: b\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.0 404 Nope\r\n\r\nbody",
]


@given(data=st.data(), seed=st.sampled_from(PLAUSIBLE), role=st.sampled_from([CLIENT, SERVER]),
       eof=st.booleans(), edits=st.lists(st.tuples(st.integers(0, 200), st.binary(max_size=3)), max_size=4))
def test_mutated_messages_only_raise_remote_protocol_error(data, seed, role, eof, edits):
    blob = bytearray(seed)
    for where, what in edits:
        where %= len(blob) + 1
        blob[where:where + data.draw(st.integers(0, 2))] = what
    _fuzz(role, data.draw(chunkings(bytes(blob))), eof)


# ---------------------------------------------------------------------------- strictness rules

REJECT = {
    "obs-fold": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    "obs-fold-tab": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "tab-before-colon": b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
    "bad-name-char": b"GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n",
    "non-ascii-name": b"GET / HTTP/1.1\r\nHost: h\r\nX\xe9: z\r\n\r\n",
    "empty-name": b"GET / HTTP/1.1\r\nHost: h\r\n: z\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\nHost: h\r\nJunk\r\n\r\n",
    "cr-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "ctl-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
    "lf-inside-field": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n",
    "bare-cr-line-end": b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
    "cr-cr-lf": b"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n",
    "two-content-lengths": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "content-length-list": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\nab",
    "content-length-plus": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\na",
    "content-length-negative": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    "content-length-hex": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x1\r\n\r\na",
    "content-length-empty": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
    "content-length-superscript": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \xb2\r\n\r\nab",
    "content-length-huge": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    "te-and-cl": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    "te-not-chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
    "te-chunked-not-last": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "te-chunked-twice": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n",
    "te-identity": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
    "te-empty": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n",
    "no-host-1.1": b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two-hosts-1.0": b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "trailing-space": b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
    "leading-space": b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "tab-separated": b"GET\t/\tHTTP/1.1\r\nHost: h\r\n\r\n",
    "missing-version": b"GET /\r\nHost: h\r\n\r\n",
    "http-0.9": b"GET /\r\n\r\n",
    "missing-target": b"GET HTTP/1.1\r\nHost: h\r\n\r\n",
    "lowercase-http": b"GET / http/1.1\r\nHost: h\r\n\r\n",
    "version-one-digit": b"GET / HTTP/1\r\nHost: h\r\n\r\n",
    "version-3": b"GET / HTTP/3\r\nHost: h\r\n\r\n",
    "version-leading-zeros": b"GET / HTTP/01.01\r\nHost: h\r\n\r\n",
    "version-two-minor-digits": b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
    "version-two-major-digits": b"GET / HTTP/10.1\r\nHost: h\r\n\r\n",
    "version-superscript-digit": b"GET / HTTP/1.\xb9\r\nHost: h\r\n\r\n",
    "version-no-minor": b"GET / HTTP/1.\r\nHost: h\r\n\r\n",
    "target-utf8": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
    "target-overlong-slash": b"GET /\xc0\xaf HTTP/1.1\r\nHost: h\r\n\r\n",
    "target-obs-text-http-2": b"GET /\xe9 HTTP/2.0\r\nHost: h\r\n\r\n",
    "target-fragment": b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
    "target-absolute-fragment": b"GET http://h/a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk-with-get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "relative-target": b"GET index.html HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect-origin-form": b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect-without-port": b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n",
    "host-userinfo": b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n",
    "host-path": b"GET / HTTP/1.1\r\nHost: h/path\r\n\r\n",
    "host-comma-list": b"GET / HTTP/1.1\r\nHost: h, other\r\n\r\n",
    "host-comma": b"GET / HTTP/1.1\r\nHost: h,other\r\n\r\n",
    "host-empty": b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "host-empty-1.0": b"GET / HTTP/1.0\r\nHost: \r\n\r\n",
    "host-port-only": b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
    "host-bad-port": b"GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n",
    "host-two-ports": b"GET / HTTP/1.1\r\nHost: h:80:81\r\n\r\n",
    "host-bare-ipv6": b"GET / HTTP/1.1\r\nHost: ::1\r\n\r\n",
    "host-bad-ipv6": b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n",
    "host-unclosed-ipv6": b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    "host-bad-percent": b"GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n",
    "host-obs-text": b"GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n",
    "host-empty-asterisk": b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n",
    "absolute-host-mismatch": b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
    "absolute-port-mismatch": b"GET http://a:8080/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-userinfo": b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-empty-host": b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-no-authority": b"GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad-method": b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "ctl-in-target": b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
    "bare-cr-before-request": b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "chunk-size-not-hex": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk-size-negative": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    "chunk-size-0x": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\na\r\n0\r\n\r\n",
    "chunk-size-empty": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
    "chunk-size-overflow": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + b"1" * 17 + b"\r\n",
    "chunk-line-too-long": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;"
                           + b"a" * 5000,
    "chunk-size-trailing-space": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"5 \r\nhello\r\n0\r\n\r\n",
    "chunk-size-trailing-tab": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"5\t\r\nhello\r\n0\r\n\r\n",
    "chunk-size-space-before-ext": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    "chunk-ext-trailing-space": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5;a=b \r\nhello\r\n0\r\n\r\n",
    "chunk-ext-space-before-next": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5;a ;b\r\nhello\r\n0\r\n\r\n",
    "last-chunk-trailing-space": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0 \r\n\r\n",
    "chunk-size-bare-lf": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n",
    "chunk-ext-bad": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;=x\r\na\r\n0\r\n\r\n",
    "chunk-ext-unterminated-quote": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"1;a=\"x\r\na\r\n0\r\n\r\n",
    "chunk-data-no-crlf": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    "chunk-data-lf-only": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
    "trailer-obs-fold": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
    "trailer-bare-lf": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\n\r\n\r\n",
    "last-chunk-bare-lf": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
}


@pytest.mark.parametrize("name", sorted(REJECT))
def test_malformed_requests_are_rejected_with_400(name):
    exc = request_error(REJECT[name])
    assert exc.error_status_hint == 400, exc


@pytest.mark.parametrize("raw", [
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_unknown_transfer_coding_before_chunked_in_request_is_501(raw):
    assert request_error(raw).error_status_hint == 501


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/9.9"])
def test_unsupported_versions_are_505(version):
    assert request_error(b"GET / " + version + b"\r\nHost: h\r\n\r\n").error_status_hint == 505


# A version is HTTP/ DIGIT "." DIGIT (RFC 9112 section 2.3): 505 when well-formed but not 1.0/1.1, else 400.
# The alphabet has the latin-1 superscripts (str.isdigit() is True for them) and other scripts' digits.
version_bytes = st.lists(st.one_of(
    st.sampled_from([b"0", b"1", b"2", b"9", b".", b"\xb2", b"\xb9", b"+", b"-"]),
    st.characters(categories=["Nd", "No"]).map(lambda c: c.encode("utf-8"))), max_size=6).map(b"".join)


@given(version=version_bytes)
@example(version=b"1.1")
@example(version=b"1")
@example(version=b"01.01")
@example(version=b"1.10")
@example(version=b"2.0")
@example(version=b"\xd9\xa1.\xd9\xa1")        # ARABIC-INDIC DIGIT ONE, twice
def test_http_version_is_exactly_digit_dot_digit(version):
    raw = b"GET / HTTP/" + version + b"\r\nHost: h\r\n\r\n"
    if version in (b"1.1", b"1.0"):
        assert parse_request(raw)[0].version == version.decode()
    elif len(version) == 3 and version[1:2] == b"." and all(48 <= b <= 57 for b in version[::2]):
        assert request_error(raw).error_status_hint == 505
    else:
        assert request_error(raw).error_status_hint == 400


# ------------------------------------------------------------ request target and Host (RFC 9112 section 3.2)

UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
SUB_DELIMS = "!$&'()*+;="       # less ",", refused in Host (what two merged Host fields look like)
HEXDIG = "0123456789abcdefABCDEF"
reg_names = st.lists(st.one_of(
    st.sampled_from(UNRESERVED + SUB_DELIMS),
    st.tuples(st.sampled_from(HEXDIG), st.sampled_from(HEXDIG)).map(lambda t: "%" + "".join(t))),
    min_size=1, max_size=16).map("".join)
uri_hosts = st.one_of(
    reg_names,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(lambda a: f"[{a.exploded.upper()}]"))
host_values = st.tuples(uri_hosts, st.one_of(st.just(""), st.text("0123456789", max_size=5).map(
    lambda p: ":" + p))).map("".join)
# Each makes any host invalid wherever it is put (inside it: surrounding whitespace would be stripped).
HOST_BREAKERS = ["@", "/", ",", "\\", "?", "#", "[", "]", '"', "<", ">", "^", "{", "}", "|", "`", "%g",
                 "\xe9", "a b", "a\tb", ":x", "::"]


@given(host=host_values)
@example(host="[::1]:8000")
@example(host="ex%41mple.com")
@example(host="127.0.0.1")
@example(host="h:")
def test_valid_hosts_are_accepted(host):
    raw = b"GET / HTTP/1.1\r\nHost: " + host.encode("ascii") + b"\r\n\r\n"
    assert parse_request(raw)[0].headers.get("host") == host


@given(host=host_values, breaker=st.sampled_from(HOST_BREAKERS), data=st.data())
@example(host="h", breaker="@", data=None)
def test_invalid_hosts_are_400(host, breaker, data):
    where = data.draw(st.integers(0, len(host))) if data is not None else 0
    bad = host[:where] + breaker + host[where:]
    exc = request_error(b"GET / HTTP/1.1\r\nHost: " + bad.encode("latin-1") + b"\r\n\r\n")
    assert exc.error_status_hint == 400


@pytest.mark.parametrize("method, target, host", [
    ("GET", "/a?b=c&d=%20", "example.com"),
    ("GET", "/", "[v1.fe80::a+en1]:80"),
    ("OPTIONS", "*", "h"),
    ("OPTIONS", "/", "h"),
    ("CONNECT", "h:443", "h:443"),
    ("CONNECT", "[::1]:443", "[::1]:443"),
    ("GET", "http://h/x", "h"),
    ("GET", "http://H:80/x", "h"),
    ("GET", "http://h/x", "h:80"),
    ("GET", "https://h:443", "h"),
    ("GET", "http://h:8000?q", "h:8000"),
    ("GET", "http://[::1]:8000/", "[::1]:8000"),
    ("GET", "urn:isbn:0451450523", ""),
])
def test_valid_target_forms_are_accepted(method, target, host):
    raw = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")
    assert parse_request(raw)[0].target == target


def test_http10_absolute_form_without_host_is_accepted():
    assert parse_request(b"GET http://h/x HTTP/1.0\r\n\r\n")[0].target == "http://h/x"


@given(target=st.binary(min_size=1, max_size=12).filter(lambda b: b" " not in b and b"\n" not in b))
def test_targets_are_visible_ascii_without_a_fragment(target):
    raw = b"GET /" + target + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    if all(0x21 <= b <= 0x7e for b in target) and b"#" not in target:
        assert parse_request(raw)[0].target == "/" + target.decode()
    else:
        assert request_error(raw).error_status_hint == 400


def test_request_events_with_non_ascii_targets_are_refused():
    with pytest.raises(LocalProtocolError):
        Request("GET", "/caf\xe9", [("Host", "h")])


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2"])
def test_response_with_unsupported_version_is_rejected(version):
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(version + b" 200 OK\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 20x OK\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/1.1 200 O\x00K\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
])
def test_malformed_responses_are_rejected(raw):
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(raw)
    with pytest.raises(RemoteProtocolError):
        drain(conn)
    assert not conn.keep_alive


# Characters str.isdigit() takes for digits though int() refuses them or they are not ASCII: the latin-1
# superscripts as raw bytes, and other scripts' digits in UTF-8.
non_ascii_digits = st.one_of(
    st.sampled_from([b"\xb2", b"\xb3", b"\xb9"]),
    st.characters(categories=["Nd", "No"]).filter(lambda c: not "0" <= c <= "9").map(str.encode))


@given(digits=st.lists(st.one_of(st.sampled_from([b"1", b"7"]), non_ascii_digits), min_size=1, max_size=4)
       .filter(lambda parts: any(p not in (b"1", b"7") for p in parts)).map(b"".join),
    case=st.sampled_from([("GET", 304), ("GET", 204), ("HEAD", 200), ("GET", 200), ("POST", 404)]))
@example(digits=b"\xb2", case=("GET", 304))
def test_content_length_of_non_ascii_digits_is_a_protocol_error_in_every_response(digits, case):
    """Also where it frames nothing (HEAD, 204, 304): it is a size callers read."""
    method, status = case
    conn = client_after(Request(method, "/", [("Host", "h")]))
    conn.receive_data(b"HTTP/1.1 %d X\r\nContent-Length: %s\r\n\r\n" % (status, digits))
    with pytest.raises(RemoteProtocolError, match="Content-Length"):
        drain(conn)
    assert conn.their_state == ERROR and not conn.keep_alive


@given(digits=st.lists(non_ascii_digits, min_size=1, max_size=3).map(b"".join))
def test_request_content_length_of_non_ascii_digits_is_400(digits):
    exc = request_error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n" % digits)
    assert exc.error_status_hint == 400


def test_identical_repeated_content_lengths_are_merged():
    for cl in (b"Content-Length: 3\r\nContent-Length: 3\r\n", b"Content-Length: 3, 3\r\n",
               b"Content-Length: 003\r\n"):
        events = parse_request(b"POST / HTTP/1.1\r\nHost: h\r\n" + cl + b"\r\nabc")
        assert events[1:] == [Data(b"abc"), EndOfMessage()]


def test_chunk_extensions_are_accepted_and_ignored():
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"1a;name=value;x=\"q \\\" ;\"; y\r\n" + b"z" * 26 + b"\r\n"
           b"A; e = 1\r\nabcdefghij\r\n0;last\r\n\r\n")
    assert parse_request(raw)[1:] == [Data(b"z" * 26 + b"abcdefghij"), EndOfMessage()]


@pytest.mark.parametrize("line", [b"5 ", b"5\t", b"5 ;a=b", b"5;a ;b", b"5; a = \"q\" ", b"5 ; a"])
def test_whitespace_before_semicolon_or_crlf_of_a_chunk_size_line(line):
    """400 and a close in a request (no BWS there: smuggling); accepted in a response (RFC 9112's BWS
    before ";", and servers that pad the size)."""
    body = line + b"\r\nhello\r\n0\r\n\r\n"
    exc = request_error(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert exc.error_status_hint == 400 and "whitespace" in str(exc)
    events = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert events[1:] == [Data(b"hello"), EndOfMessage()]


def test_trailers_are_returned_in_end_of_message():
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:  12 \r\n\r\n")
    events = parse_request(raw)
    assert events[-1] == EndOfMessage([("Expires", "never"), ("X-Sum", "12")])
    assert events[-1].trailers.get("x-sum") == "12"


def test_leading_empty_lines_are_ignored():
    assert parse_request(b"\r\n\n\r\n" + GET)[0].target == "/"
    events, hint = server_run([GET + b"\r\n" + GET])
    assert hint is None and [type(e) for e in events] == [Request, EndOfMessage] * 2


def test_bare_lf_line_endings_are_accepted_in_heads():
    request = parse_request(b"GET /x HTTP/1.1\nHost: h\nX-A: 1 \n\n")[0]
    assert request.target == "/x" and request.headers == [("Host", "h"), ("X-A", "1")]
    response = parse_response(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi")
    assert response[1:] == [Data(b"hi"), EndOfMessage()]


def test_unknown_methods_are_not_an_error_here():
    assert parse_request(b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n")[0].method == "BREW"


def test_http10_request_without_host_is_accepted():
    assert parse_request(b"GET / HTTP/1.0\r\n\r\n")[0].version == "1.0"


def test_field_values_keep_inner_whitespace_and_obs_text():
    request = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nX: \t a \t b\xe9 \t\r\n\r\n")[0]
    assert request.headers.get("x") == "a \t b\xe9"


@pytest.mark.parametrize("line, reason", [
    (b"HTTP/1.1 200 OK", "OK"), (b"HTTP/1.1 200 ", ""), (b"HTTP/1.1 200", ""),
    (b"HTTP/1.1 404 Not  Found ", "Not  Found "), (b"HTTP/1.0 200 \xe7a va", "\xe7a va"),
])
def test_status_line_reason_may_be_empty(line, reason):
    events = parse_response(line + b"\r\nContent-Length: 0\r\n\r\n")
    assert events[0].reason == reason and events[1] == EndOfMessage()


_REFUSED_FIELDS = [
    b"",                                                        # HTTP/1.1 without Host
    b"Host: x\r\nHost: y\r\n",
    b"Host: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n",
    b"Host: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
    b"Host: x\r\nTransfer-Encoding: gzip\r\n",
]


@given(st.sampled_from(_REFUSED_FIELDS),
       st.sampled_from(["GET", "POST", "PROPFIND"]),
       st.from_regex(r"/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,40}", fullmatch=True),
       st.booleans())
def test_a_request_head_refused_after_parsing_carries_its_request_line(fields, method, target,
                                                                         space_before_fields):
    conn = Connection(SERVER)
    head = f"{method} {target} HTTP/1.1\r\n".encode() + fields + b"\r\n"
    # Leading empty lines before the request line are allowed (RFC 9112 section 2.2).
    conn.receive_data(b"\r\n" + head if space_before_fields else head)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.request_line == f"{method} {target} HTTP/1.1"


@pytest.mark.parametrize("data", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"])
def test_a_head_that_could_not_be_read_has_no_request_line(data):
    conn = Connection(SERVER)
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.request_line is None


# ------------------------------------------------------------------------------------------ limits

def test_request_line_too_long_is_414_complete_or_not():
    long_get = b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n"
    assert request_error(long_get + b"Host: h\r\n\r\n", max_line=100).error_status_hint == 414
    assert request_error(long_get[:150], max_line=100).error_status_hint == 414
    assert server_run([bytes([b]) for b in long_get[:150]], max_line=100)[1] == 414
    # A start line within the limit, then the rest of the head in pieces: parsed, and not refused.
    ok_get = b"GET /" + b"a" * 80 + b" HTTP/1.1\r\n"
    events, hint = server_run([ok_get] + [bytes([b]) for b in b"Host: h\r\nX: " + b"x" * 150 + b"\r\n\r\n"],
                              max_line=200)
    assert hint is None and events[0].headers.get("x") == "x" * 150


def test_header_section_too_large_is_431_complete_or_not():
    head = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: 0123456789\r\n" * 20
    assert request_error(head + b"\r\n", max_head=200).error_status_hint == 431
    assert request_error(head, max_head=200).error_status_hint == 431
    assert parse_request(head + b"\r\n", max_head=len(head) + 2)[0].method == "GET"


def test_field_line_too_long_is_431():
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 300 + b"\r\n\r\n"
    assert request_error(raw, max_line=100).error_status_hint == 431


def test_too_many_fields_is_431():
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 10 + b"\r\n"
    assert request_error(raw, max_fields=10).error_status_hint == 431
    assert len(parse_request(raw, max_fields=11)[0].headers) == 11


def test_too_many_trailer_fields_is_431():
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
           + b"X: y\r\n" * 10 + b"\r\n")
    assert request_error(raw, max_fields=5).error_status_hint == 431


def test_body_too_large_is_413():
    assert request_error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
                         max_body=10).error_status_hint == 413
    chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n"
    assert request_error(chunked, max_body=10).error_status_hint == 413
    events = parse_request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", max_body=10)
    assert events[1:] == [Data(b"0123456789"), EndOfMessage()]


def test_close_delimited_response_body_limit():
    conn = client_after(Request("GET", "/", [("Host", "h")]), max_body=4)
    conn.receive_data(b"HTTP/1.0 200 OK\r\n\r\nabcdef")
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.error_status_hint == 413


# ----------------------------------------------------------------------------- truncation and EOF

@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: h\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabcde",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n",
])
def test_truncated_request_is_an_error(raw):
    exc = request_error(raw, eof=True)
    assert "truncated" in str(exc)


def test_truncated_response_body_is_an_error():
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    conn.receive_data(b"")
    assert type(conn.next_event()) is Response
    assert conn.next_event() == Data(b"ab")
    with pytest.raises(RemoteProtocolError, match="truncated"):
        conn.next_event()


def test_server_closing_without_response_is_an_error():
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="without sending a response"):
        conn.next_event()


def test_close_delimited_response_ends_at_eof():
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert [type(e) for e in drain(conn)[0]] == [Response, Data]
    assert not conn.keep_alive
    conn.receive_data(b" more")
    conn.receive_data(b"")
    assert drain(conn)[0] == [Data(b" more"), EndOfMessage(), ConnectionClosed()]
    assert conn.their_state == CLOSED and conn.our_state == MUST_CLOSE


def test_eof_between_requests_is_connection_closed():
    conn = Connection(SERVER)
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()
    assert conn.their_state == CLOSED and not conn.keep_alive
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")


# ------------------------------------------------------------------------------ bodiless responses

@pytest.mark.parametrize("method, status", [("HEAD", 200), ("GET", 204), ("GET", 304), ("HEAD", 404)])
def test_head_204_304_responses_have_no_body(method, status):
    conn = client_after(Request(method, "/", [("Host", "h")]))
    conn.receive_data(b"HTTP/1.1 %d X\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n" % status
                      + b"HTTP/1.1 200 OK\r\n")
    events, stop = drain(conn)
    assert [type(e) for e in events] == [Response, EndOfMessage] and stop is PAUSED
    conn.start_next_cycle()
    assert conn.trailing_data == (b"HTTP/1.1 200 OK\r\n", False)


def test_informational_responses_come_before_the_final_one():
    conn = client_after(Request("POST", "/", [("Host", "h"), ("Expect", "100-continue")]))
    conn.receive_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    events, _ = drain(conn)
    assert events == [InformationalResponse(100, [], "Continue"),
                      InformationalResponse(103, [("Link", "</s>")], "Early Hints"),
                      Response(200, [("Content-Length", "2")], "OK"), Data(b"ok"), EndOfMessage()]


def test_server_cannot_send_body_when_there_is_none():
    for raw, status in ((b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 200), (GET, 204), (GET, 304)):
        conn = Connection(SERVER)
        conn.receive_data(raw)
        drain(conn)
        head = conn.send(Response(status, [("Content-Length", "5")]))
        assert head.endswith(b"\r\n\r\n") and b"chunked" not in head
        assert conn.send(Data(b"")) == b""
        with pytest.raises(LocalProtocolError):
            conn.send(Data(b"hello"))


def test_send_head_and_body_for_head_drops_the_body_but_keeps_its_length():
    conn = Connection(SERVER)
    conn.receive_data(b"HEAD /f HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(conn)
    out = conn.send_head_and_body(Response(200, [("Content-Type", "text/plain")], "OK"), b"12345")
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    assert conn.our_state == DONE


def _server_after(request_bytes):
    conn = Connection(SERVER)
    conn.receive_data(request_bytes)
    drain(conn)
    return conn


@given(length=st.integers(0, 1 << 40), given_length=st.booleans(),
       method=st.sampled_from(["GET", "HEAD"]))
def test_send_head_for_body_gives_the_head_send_head_and_body_would(length, given_length, method):
    """The head for a body the caller sends itself (sendfile) is the head that sending the
    body through the Connection would have produced, and the message is then complete."""
    fields = [("Content-Type", "application/octet-stream")]
    if given_length:
        fields.append(("Content-Length", str(length)))
    request = b"%s /f HTTP/1.1\r\nHost: h\r\n\r\n" % method.encode()
    ours, reference = _server_after(request), _server_after(request)
    head = ours.send_head_for_body(Response(200, fields, "OK"), length)
    if length <= 1 << 16:
        whole = reference.send_head_and_body(Response(200, fields, "OK"), b"x" * length)
        assert whole == (head if method == "HEAD" else head + b"x" * length)
    assert b"Content-Length: %d\r\n" % length in head
    assert (ours.our_state, ours.their_state) == (DONE, DONE)
    ours.start_next_cycle()


@pytest.mark.parametrize("fields, length", [
    ([("Content-Length", "10")], 9),                   # the head promises other bytes
    ([("Transfer-Encoding", "chunked")], 10),          # raw bytes cannot be chunks
])
def test_send_head_for_body_refuses_a_head_that_does_not_frame_the_body(fields, length):
    conn = _server_after(b"GET /f HTTP/1.1\r\nHost: h\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send_head_for_body(Response(200, fields, "OK"), length)
    assert conn.our_state == ERROR


def test_server_response_without_a_request_ends_keep_alive():
    conn = Connection(SERVER)
    conn.receive_data(b"GET / HT")
    assert conn.next_event() is NEED_DATA
    out = conn.send_head_and_body(Response(408, [], "Request Timeout"), b"")
    assert out == b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    assert not conn.keep_alive and conn.our_state == MUST_CLOSE


def test_unsolicited_informational_response_is_rejected():
    conn = Connection(CLIENT)
    conn.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_unsolicited_final_response_is_accepted_e_g_408():
    conn = Connection(CLIENT)
    conn.receive_data(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert [type(e) for e in drain(conn)[0]] == [Response, EndOfMessage]
    assert conn.their_state == MUST_CLOSE and not conn.keep_alive


# ------------------------------------------------------------------------------------- keep-alive

@pytest.mark.parametrize("version, connection, alive", [
    ("1.1", None, True), ("1.1", "close", False), ("1.1", "Keep-Alive, CLOSE", False),
    ("1.1", "keep-alive", True), ("1.0", None, False), ("1.0", "keep-alive", True),
    ("1.0", "Keep-Alive, Upgrade", True), ("1.0", "close", False),
])
def test_keep_alive_rules_for_requests(version, connection, alive):
    headers = [("Host", "h")] + ([("Connection", connection)] if connection else [])
    request = Request("GET", "/", headers, version=version)
    server = Connection(SERVER)
    server.receive_data(_request_bytes(request))
    assert drain(server)[0][0] == request
    assert server.keep_alive == alive
    assert server.peer_keep_alive == alive      # what the client asked, whatever we answer
    client = client_after(request)
    assert client.keep_alive == alive
    assert client.our_state == (DONE if alive else MUST_CLOSE)
    server.send_head_and_body(Response(200, [], "OK"), b"x")
    assert server.our_state == (DONE if alive else MUST_CLOSE)
    assert server.their_state == (DONE if alive else MUST_CLOSE)
    if alive:
        server.start_next_cycle()
        assert (server.our_state, server.their_state) == (IDLE, IDLE)
    else:
        with pytest.raises(LocalProtocolError):
            server.start_next_cycle()


def test_peer_keep_alive_is_what_the_peer_asked_not_what_we_decided():
    server = Connection(SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(server)
    server.send_head_and_body(Response(400, [("Connection", "close")], "Bad"), b"")
    assert not server.keep_alive and server.peer_keep_alive is True


def test_response_connection_close_ends_keep_alive():
    events = parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert events[0].status == 200
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    drain(conn)
    assert not conn.keep_alive and conn.their_state == MUST_CLOSE and conn.our_state == MUST_CLOSE


def test_server_response_framing_depends_on_the_peer_version():
    conn = Connection(SERVER)
    conn.receive_data(GET)
    drain(conn)
    head = conn.send(Response(200, [], "OK"))
    assert head == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert conn.send(Data(b"hello")) == b"5\r\nhello\r\n"
    assert conn.send(Data(b"")) == b""
    assert conn.send(EndOfMessage([("T", "1")])) == b"0\r\nT: 1\r\n\r\n"
    assert conn.keep_alive

    conn = Connection(SERVER)
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    drain(conn)
    assert conn.keep_alive
    assert conn.send(Response(200, [], "OK")) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert not conn.keep_alive
    assert conn.send(Data(b"raw")) == b"raw"
    assert conn.send(EndOfMessage()) == b""
    assert conn.our_state == MUST_CLOSE


def test_chunked_response_to_http10_client_is_refused():
    conn = Connection(SERVER)
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send(Response(200, [("Transfer-Encoding", "chunked")]))
    assert conn.our_state == ERROR


def test_chunked_request_from_http10_client_disables_keep_alive():
    events = server_run([b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"1\r\na\r\n0\r\n\r\n" + GET])
    assert [type(e) for e in events[0]] == [Request, Data, EndOfMessage]


def test_response_with_both_framings_uses_chunked_and_disables_keep_alive():
    conn = client_after(Request("GET", "/", [("Host", "h")]))
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nok\r\n0\r\n\r\n")
    assert drain(conn)[0][1:] == [Data(b"ok"), EndOfMessage()]
    assert not conn.keep_alive


def test_response_with_other_codings_before_chunked_is_passed_through():
    events = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n")
    assert events[1:] == [Data(b"\x1f\x8b"), EndOfMessage()]


def test_connect_2xx_response_has_no_body_and_hands_over_the_connection():
    conn = client_after(Request("CONNECT", "example.com:443", [("Host", "example.com:443")]))
    conn.receive_data(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01")
    events, _ = drain(conn)
    assert [type(e) for e in events] == [Response, EndOfMessage]
    assert not conn.keep_alive and conn.trailing_data == (b"\x16\x03\x01", False)


# ------------------------------------------------------------------------------ pipelining, cycle

def test_pipelining_with_paused_and_start_next_cycle():
    conn = Connection(SERVER)
    conn.receive_data(GET + b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\n")
    assert [type(e) for e in drain(conn)[0]] == [Request, EndOfMessage]
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()
    assert conn.our_state == SEND_RESPONSE
    conn.send_head_and_body(Response(200, [], "OK"), b"1")
    conn.start_next_cycle()
    events, stop = drain(conn)
    assert events[0].target == "/2" and events[1:] == [Data(b"hi"), EndOfMessage()] and stop is PAUSED
    conn.send(Response(200, [("Content-Length", "0")]))
    conn.send(EndOfMessage())
    conn.start_next_cycle()
    assert conn.next_event() is NEED_DATA
    assert conn.trailing_data == (b"GET /3 HTTP/1.1\r\n", False)
    conn.receive_data(b"Host: h\r\n\r\n")
    assert conn.next_event().target == "/3"


@given(data=st.data())
def test_buffered_bytes_counts_what_trailing_data_holds(data):
    stream = GET + b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET
    conn = Connection(SERVER)
    assert conn.buffered_bytes == 0
    for piece in data.draw(chunkings(stream)):
        conn.receive_data(piece)
        while True:
            assert conn.buffered_bytes == len(conn.trailing_data[0])
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                if conn.our_state == SEND_RESPONSE:
                    conn.send_head_and_body(Response(200, [], "OK"), b"")
                if conn.our_state == DONE and conn.their_state == DONE:
                    conn.start_next_cycle()
                else:
                    break
    assert conn.buffered_bytes == len(conn.trailing_data[0])
    assert conn.their_state == MUST_CLOSE


def test_data_after_connection_close_request_is_discarded():
    conn = Connection(SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET)
    assert [type(e) for e in drain(conn)[0]] == [Request, EndOfMessage]
    assert conn.their_state == MUST_CLOSE
    assert conn.next_event() is NEED_DATA
    assert conn.trailing_data == (b"", False)
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


def test_client_cycle_and_illegal_events():
    conn = Connection(CLIENT)
    with pytest.raises(LocalProtocolError):
        Connection(CLIENT).send(Response(200, []))
    with pytest.raises(LocalProtocolError):
        Connection(CLIENT).send(Data(b"x"))
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(Request("GET", "/", [("Host", "h")]))
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(InformationalResponse(100, []))
    out = conn.send(Request("PUT", "/f", [("Host", "h"), ("Content-Length", "3")]))
    assert out == b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
    assert (conn.our_state, conn.their_state) == (SEND_BODY, SEND_RESPONSE)
    with pytest.raises(LocalProtocolError, match="short"):
        Connection(CLIENT).send_head_and_body(Request("PUT", "/", [("Host", "h"), ("Content-Length", "3")]), b"1")
    assert conn.send(Data(b"ab")) == b"ab"
    with pytest.raises(LocalProtocolError, match="too much"):
        conn.send(Data(b"cd"))
    assert conn.our_state == ERROR and not conn.keep_alive
    with pytest.raises(LocalProtocolError):
        conn.send(EndOfMessage())


def test_client_full_exchange_and_reuse():
    conn = Connection(CLIENT)
    out = conn.send_head_and_body(Request("POST", "/f", [("Host", "h")]), b"")
    assert out == b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    assert conn.our_state == DONE
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert drain(conn) == ([Response(200, [("Content-Length", "2")], "OK"), Data(b"ok"), EndOfMessage()], PAUSED)
    conn.start_next_cycle()
    assert conn.send_head_and_body(Request("GET", "/", [("Host", "h")]), b"") == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    with pytest.raises(LocalProtocolError):
        Connection(CLIENT).send(Request("GET", "/", []))
    with pytest.raises(LocalProtocolError):
        Connection(CLIENT).send(Request("GET", "/", [("Host", "a"), ("Host", "b")]))
    with pytest.raises(LocalProtocolError):
        Connection(CLIENT).send(Request("GET", "/", [("Host", "a"), ("Transfer-Encoding", "chunked"),
                                                     ("Content-Length", "1")]))


def test_send_connection_closed():
    conn = Connection(SERVER)
    assert conn.send(ConnectionClosed()) == b""
    assert conn.our_state == CLOSED and not conn.keep_alive
    conn = Connection(SERVER)
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send(ConnectionClosed())


def test_server_can_answer_after_a_remote_error():
    conn = Connection(SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 400
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    out = conn.send_head_and_body(Response(400, [("Connection", "close")], "Bad Request"), b"bad")
    assert out == b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbad"
    assert conn.our_state == MUST_CLOSE and conn.their_state == ERROR


# ------------------------------------------------------------------------------ 100-continue

def test_expect_100_continue():
    conn = Connection(SERVER)
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
    assert type(conn.next_event()) is Request
    assert conn.they_are_waiting_for_100_continue
    assert conn.send(InformationalResponse(100, [], "Continue")) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.they_are_waiting_for_100_continue

    conn = Connection(SERVER)
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    conn.next_event()
    assert conn.they_are_waiting_for_100_continue
    conn.receive_data(b"o")
    assert conn.next_event() == Data(b"o")
    assert not conn.they_are_waiting_for_100_continue

    conn = Connection(SERVER)
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    conn.next_event()
    conn.send(Response(417, [("Content-Length", "0")]))
    assert not conn.they_are_waiting_for_100_continue


def test_expect_100_continue_is_ignored_for_http10_and_empty_bodies():
    for raw in (b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
                b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"):
        conn = Connection(SERVER)
        conn.receive_data(raw)
        assert type(conn.next_event()) is Request
        assert not conn.they_are_waiting_for_100_continue


def test_no_informational_response_to_http10():
    conn = Connection(SERVER)
    conn.receive_data(b"PUT / HTTP/1.0\r\nContent-Length: 2\r\n\r\n")
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send(InformationalResponse(100, []))
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(InformationalResponse(101, []))


# ------------------------------------------------------------------------------ Headers & events

def test_headers_multimap():
    h = Headers([("Set-Cookie", "a=1"), ("Accept", "x"), ("set-cookie", "b=2"), ("ACCEPT", "y")])
    assert h.get("accept") == "x, y" and h.get("SET-COOKIE") == "a=1" and h.get("nope", 7) == 7
    assert h.get_all("Set-Cookie") == ["a=1", "b=2"] and h.get_all("nope") == []
    assert "aCCept" in h and "nope" not in h and 3 not in h
    assert list(h)[0] == ("Set-Cookie", "a=1") and len(h) == 4
    h.set("accept", "z")
    assert h.items() == [("Set-Cookie", "a=1"), ("accept", "z"), ("set-cookie", "b=2")]
    h.add("Connection", "keep-alive, Upgrade")
    assert h.has_token("connection", "UPGRADE") and not h.has_token("connection", "close")
    h.remove("SET-cookie")
    assert h == [("accept", "z"), ("connection", "keep-alive, Upgrade")]
    assert h != [("connection", "keep-alive, Upgrade"), ("accept", "z")]
    assert Headers({"A": "1", "b": 2}) == Headers([("a", "1"), ("B", "2")])
    assert Headers(None) == Headers() and not Headers()
    assert repr(Headers([("A", " 1 ")])) == "Headers([('A', '1')])"
    assert Headers([(b"X", b"\xe9")]).get("x") == "\xe9"


@pytest.mark.parametrize("name, value", [
    ("Bad Name", "v"), ("", "v"), ("X:", "v"), ("X", "a\r\nInjected: 1"), ("X", "a\nb"), ("X", "a\x00"),
    ("X", "\u20ac"), ("N\u00e9", "v"), (None, "v"), ("X", None),
])
def test_headers_reject_invalid_fields(name, value):
    with pytest.raises(LocalProtocolError):
        Headers([(name, value)])
    with pytest.raises(LocalProtocolError):
        Headers().add(name, value)


@given(ops=st.lists(st.tuples(st.sampled_from(["add", "set", "remove"]), st.sampled_from(["A", "a", "B", "c"]),
                              field_values), max_size=12))
def test_headers_behave_like_a_list_model(ops):
    h, model = Headers(), []
    for op, name, value in ops:
        getattr(h, op)(*((name,) if op == "remove" else (name, value)))
        if op == "add":
            model.append((name, value))
        elif op == "remove":
            model = [f for f in model if f[0].lower() != name.lower()]
        else:
            idx = [i for i, f in enumerate(model) if f[0].lower() == name.lower()]
            if idx:
                model[idx[0]] = (name, value)
                model = [f for i, f in enumerate(model) if i not in idx[1:]]
            else:
                model.append((name, value))
        assert list(h) == model
        for key in "Abc":
            values = [v for n, v in model if n.lower() == key.lower()]
            assert h.get_all(key) == values
            assert h.get(key) == (", ".join(values) if values else None)


def test_event_equality_repr_and_validation():
    assert Request("GET", "/", {"Host": "h"}) == Request("GET", "/", [("host", "h")])
    assert Request("GET", "/", {"Host": "h"}) != Request("GET", "/x", [("host", "h")])
    assert Data(b"x") != Data(b"y") and Data(bytearray(b"x")) == Data(b"x")
    assert EndOfMessage() == EndOfMessage([]) and ConnectionClosed() == ConnectionClosed()
    assert repr(Response(200, [], "OK")) == "Response(status=200, headers=Headers([]), reason='OK', version='1.1')"
    assert repr(NEED_DATA) == "NEED_DATA" and repr(PAUSED) == "PAUSED"
    for bad in (lambda: Response(199, []), lambda: Response(True, []), lambda: InformationalResponse(200, []),
                lambda: Request("G T", "/"), lambda: Request("GET", "/ x"), lambda: Request("GET", ""),
                lambda: Request("GET", "/", version="2.0"), lambda: Response(200, [], "a\r\nb"),
                lambda: Data("text")):
        with pytest.raises(LocalProtocolError):
            bad()
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)
    assert RemoteProtocolError("x").error_status_hint == 400
    with pytest.raises(TypeError):
        ProtocolError("abstract")
    with pytest.raises(ValueError):
        Connection("PEER")


def test_sending_trailers_needs_chunked_and_framing_must_be_consistent():
    conn = Connection(SERVER)
    conn.receive_data(GET)
    drain(conn)
    conn.send(Response(200, [("Content-Length", "0")]))
    with pytest.raises(LocalProtocolError, match="trailers"):
        conn.send(EndOfMessage([("T", "1")]))
    conn = Connection(SERVER)
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send(Response(200, [("Content-Length", "0"), ("Transfer-Encoding", "chunked")]))
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send_head_and_body(Data(b"x"), b"")


def test_response_limits():
    conn = client_after(Request("GET", "/", [("Host", "h")]), max_line=50)
    conn.receive_data(b"HTTP/1.1 200 " + b"x" * 100)
    with pytest.raises(RemoteProtocolError, match="status line"):
        conn.next_event()
    conn = client_after(Request("GET", "/", [("Host", "h")]), max_body=10)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 413


def test_trailer_section_too_large_is_431():
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    assert request_error(head + b"X: " + b"y" * 300, max_head=200).error_status_hint == 431
    assert request_error(head + b"X: " + b"y" * 300 + b"\r\n\r\n", max_head=200).error_status_hint == 431


# ------------------------------------------------------------------------ the plain-head fast path

def _complete_parse(text, request):
    """What the complete (regex) parser makes of ``text``: the parts, or the RemoteProtocolError."""
    from eventloop.http11 import _readers
    line_re = _readers._REQUEST_LINE_RE if request else _readers._STATUS_LINE_RE
    m = line_re.match(text)
    if m is None:
        return "error"
    try:
        fields = _readers.parse_fields(text, m.end())
    except RemoteProtocolError:
        return "error"
    a, b, c = m.groups()
    return (a, b, c, fields) if request else (a, int(b), c or "", fields)


# Pieces mixing what common clients send with what the complete parser alone handles (or rejects).
_ODD = ["", " ", "\t", "\r", "\n", "\x00", "\x7f", "\x85", "\xa0", "\xe9", ":", "(", "0"]
_PIECE = st.sampled_from(_ODD + ["a", "Host", "Content-Length", "x-y", "/", "?q=1", "1.1", "GET", "HTTP/"])
_WORD = st.lists(_PIECE, max_size=4).map("".join)


@given(st.sampled_from(["GET", "POST", "M-1", "G(T", ""]), _WORD,
       st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "]),
       st.lists(st.tuples(_WORD, st.sampled_from([":", ": ", " :", ""]), _WORD), max_size=4))
@example("GET", "/a?q=1", "HTTP/1.1", [("Host", ": ", "x"), ("Content-Length", ":", " 0 "), ("host", ": ", "y")])
def test_plain_request_head_agrees_with_the_complete_parser(method, target, version, fields):
    from eventloop.http11 import _readers
    text = f"{method} {target} {version}\r\n" + "".join(f"{n}{c}{v}\r\n" for n, c, v in fields)
    plain = _readers._plain_request_head(text)
    complete = _complete_parse(text, True)
    if plain is not None:
        assert complete != "error"
        m, t, v, headers, framing = plain
        assert (m, t, v, headers._fields) == complete
        index = headers._lookup()
        assert framing == {k: index[k] for k in _readers.FRAMING_NAMES if k in index}


@given(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/3"]), st.sampled_from(["200", "099", "2000", "1x0", "204"]),
       st.sampled_from([None, "", "OK", "Not\tFound", "\xe9t\xe9", "a\rb"]),
       st.lists(st.tuples(_WORD, st.sampled_from([":", ": ", " :"]), _WORD), max_size=3))
@example("HTTP/1.1", "200", "OK", [("Content-Length", ": ", "5"), ("X", ":", "")])
def test_plain_response_head_agrees_with_the_complete_parser(version, status, reason, fields):
    from eventloop.http11 import _readers
    start = f"{version} {status}" + ("" if reason is None else " " + reason)
    text = start + "\r\n" + "".join(f"{n}{c}{v}\r\n" for n, c, v in fields)
    plain = _readers._plain_response_head(text)
    complete = _complete_parse(text, False)
    if plain is not None:
        assert complete != "error"
        v, s, r, headers, framing = plain
        assert (v, s, r, headers._fields) == complete


def test_a_remembered_head_gives_each_request_its_own_headers():
    head = b"GET /memo HTTP/1.1\r\nHost: example.com\r\nX-Memo: 1\r\n\r\n"
    first, second = Connection(SERVER), Connection(SERVER)
    first.receive_data(head)
    req1 = first.next_event()
    req1.headers.add("X-Added", "yes")
    req1.headers.remove("X-Memo")
    second.receive_data(head)
    req2 = second.next_event()
    assert req2 == Request("GET", "/memo", [("Host", "example.com"), ("X-Memo", "1")])
    assert req2.headers is not req1.headers


def test_a_remembered_head_still_meets_each_connections_limits():
    head = b"GET /memo-limits HTTP/1.1\r\nHost: example.com\r\nA: 1\r\nB: 2\r\n\r\n"
    generous = Connection(SERVER)
    generous.receive_data(head)
    assert type(generous.next_event()) is Request
    for limits, hint in (({"max_fields": 2}, 431), ({"max_head": 40}, 431), ({"max_line": 16}, 414)):
        strict = Connection(SERVER, **limits)
        strict.receive_data(head)
        with pytest.raises(RemoteProtocolError) as info:
            strict.next_event()
        assert info.value.error_status_hint == hint
