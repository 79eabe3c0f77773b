"""Hypothesis strategies the tests share (those for byte streams cut every way, terminators and
the like are public, in :mod:`eventloop.testing`).

:func:`message_streams` is what the fuzzers feed the HTTP/1.1 layer, the server and the client:
random bytes, a soup of grammar fragments, or real messages with random edits.
"""
from hypothesis import strategies as st

__all__ = ["HTTP_FRAGMENTS", "message_streams"]

# Pieces of the grammar, so that random concatenations reach deep into the parser.
HTTP_FRAGMENTS = [
    b"GET", b"HEAD", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b" ", b"  ", b"/", b"*", b"/a?b#c",
    b"example.com:443", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.12", b"http/1.1",
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\n", b"Host: h", b"Host:", b"host: a, b",
    b"Content-Length: ", b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: 5, 5",
    b"Content-Length: 99999999999999999999", b"Content-Length: -1",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, chunked",
    b"Connection: close", b"Connection: keep-alive", b"Connection: upgrade, close",
    b"Expect: 100-continue", b"Trailer: X", b"X: y", b"X:\ty\t", b" folded", b"\tfolded", b":",
    b"0", b"5", b"a", b"F", b"ffffffffffffffff", b"10000000000000000", b";ext", b";e=\"q\\\"\"", b";=",
    b"0\r\n\r\n", b"5\r\nhello\r\n", b"hello", b"\x00", b"\x7f", b"\xff", b"\xe9",
    b"HTTP/1.1 200 OK", b"HTTP/1.1 100 Continue", b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified", b"HTTP/1.0 404", b"HTTP/1.1 999 ",
    b"HTTP/1.1 099 x", b"HTTP/1.1 2000 x",
]


@st.composite
def message_streams(draw, seeds, *, max_bytes=300, max_messages=3, max_offset=400,
                    weights=(1, 2, 2)):
    """``(kind, bytes)``: ``kind`` "bytes" (random, up to ``max_bytes``), "soup" (fragments of
    the grammar and random bytes) or "mutant" (1 to ``max_messages`` of ``seeds`` with up to
    four random edits, each within ``max_offset`` of the start), drawn in the proportions of
    ``weights``."""
    kind = draw(st.sampled_from(["bytes"] * weights[0] + ["soup"] * weights[1]
                                + ["mutant"] * weights[2]))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=max_bytes))
    if kind == "soup":
        parts = draw(st.lists(st.one_of(st.sampled_from(HTTP_FRAGMENTS), st.binary(max_size=4)),
                              max_size=40))
        return kind, b"".join(parts)
    blob = bytearray(b"".join(draw(st.lists(st.sampled_from(seeds), min_size=1,
                                            max_size=max_messages))))
    edits = st.tuples(st.integers(0, max_offset), st.integers(0, 3),
                      st.one_of(st.sampled_from(HTTP_FRAGMENTS), st.binary(max_size=3)))
    for where, cut, what in draw(st.lists(edits, max_size=4)):
        where %= len(blob) + 1
        blob[where:where + cut] = what
    return kind, bytes(blob)
