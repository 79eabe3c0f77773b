"""Parsers for the receiving side: a head reader and one reader per body framing.

Readers consume from the front of a ``bytearray`` (``del buf[:n]`` is amortised O(1) in CPython) and
return an event / parsed head, or ``None`` when more bytes are needed.  They raise
``RemoteProtocolError`` for malformed input.

Line endings: in heads (request/status line and header fields) a bare LF is accepted as a line end
(RFC 9112 section 2.2 allows it, for robustness); a bare CR never is.  Inside chunked framing (size lines,
the CRLF after chunk data, trailers) only CRLF is accepted: disagreeing about where a chunk ends is what
request smuggling is made of.
"""

import re

from ._events import Data, EndOfMessage
from ._headers import TOKEN, Headers
from ._state import RemoteProtocolError
from ._target import check_target

__all__ = ["HeadReader", "ContentLengthReader", "ChunkedReader", "CloseDelimitedReader", "parse_fields",
           "FRAMING_NAMES"]

# Every pattern here is unambiguous: at each point of a line at most one part of the pattern can take the
# next character.  An ambiguous one (say ``[ \t]*`` followed by a value that may also start with SP) retries
# a line that fails to match at every split between the two parts, which costs the square of its length.

# field-vchar / SP / HTAB / obs-text: every latin-1 character except the controls (HTAB allowed) and DEL.
_VALUE_CHAR = r"[^\x00-\x08\x0a-\x1f\x7f]"
# A field value after the whitespace that follows the colon: empty, or starting with a field-vchar.
_VALUE = rf"(?:[^\x00-\x20\x7f]{_VALUE_CHAR}*)?"
# request-target: visible US-ASCII only (RFC 9112 section 3.2 and RFC 3986: no raw octet above 0x7e).
_TARGET = r"[\x21-\x7e]+"

_REQUEST_LINE_RE = re.compile(rf"({TOKEN}) ({_TARGET}) HTTP/(1\.[01])\r?\n")
_STATUS_LINE_RE = re.compile(rf"HTTP/(1\.[01]) ([1-9][0-9][0-9])(?: ({_VALUE_CHAR}*))?\r?\n")
# One match per valid field line; a line that does not match is simply skipped by findall, so callers
# compare the number of matches with the number of lines.
_FIELD_RE = re.compile(rf"^({TOKEN}):[ \t]*({_VALUE})\r?\n", re.M)
_STRICT_FIELD_RE = re.compile(rf"^({TOKEN}):[ \t]*({_VALUE})\r\n", re.M)
_TOKEN_RE = re.compile(TOKEN)
_VERSION_RE = re.compile(r"HTTP/[0-9]\.[0-9]")      # HTTP-version (RFC 9112 section 2.3)
_STATUS_RE = re.compile(r"[0-9]{3}")

_HEAD_END_RE = re.compile(rb"\n\r?\n")
_LEADING_EMPTY_RE = re.compile(rb"(?:\r?\n)+")

# chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted ) ] ).
# A request's may have no whitespace before a ";" or the CRLF, only after ";" and around "=": a server and a
# proxy in front of it that disagree on where a chunk-size ends are what request smuggling is made of.  A
# response's may (RFC 9112's BWS before ";", and the padding some servers put after the size).
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_EXT_VALUE = rf"(?:{TOKEN}|{_QUOTED})"
_CHUNK_SIZE_RE = re.compile(
    rf"([0-9A-Fa-f]{{1,16}})(?:;[ \t]*{TOKEN}(?:[ \t]*=[ \t]*{_CHUNK_EXT_VALUE})?)*".encode("latin-1"))
_LENIENT_CHUNK_SIZE_RE = re.compile(
    rf"([0-9A-Fa-f]{{1,16}})[ \t]*(?:;[ \t]*{TOKEN}[ \t]*(?:=[ \t]*{_CHUNK_EXT_VALUE}[ \t]*)?)*"
    .encode("latin-1"))
_CHUNK_LINE_WHITESPACE_RE = re.compile(rb"[ \t](?:;|\Z)")
_PLAIN_SIZE_LINE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")     # valid in both, and the usual one


def _field_line_error(line):
    """Explain why one field line (without its LF) is invalid."""
    if line.endswith("\r"):
        line = line[:-1]
    if line[:1] in (" ", "\t"):
        return "obsolete line folding (a field line starting with whitespace) is not allowed"
    if not line:
        return "unexpected empty line inside the header section"
    name, colon, value = line.partition(":")
    if not colon:
        return f"header line without a colon: {line[:40]!r}"
    if _TOKEN_RE.fullmatch(name.rstrip(" \t")) is not None and name != name.rstrip(" \t"):
        return f"whitespace between field name and colon: {name!r}"
    if _TOKEN_RE.fullmatch(name) is None:
        return f"invalid field name {name[:40]!r}"
    if "\r" in value:
        return f"bare CR in value of field {name!r}"
    return f"invalid character in value of field {name!r}"


def parse_fields(text, pos, strict=False):
    """Parse the field lines of ``text`` from ``pos`` (each line ends with LF) into ``(name, value)`` tuples."""
    field_re = _STRICT_FIELD_RE if strict else _FIELD_RE
    fields = field_re.findall(text, pos)
    if len(fields) != text.count("\n", pos):
        for line in text[pos:].split("\n"):
            if field_re.fullmatch(line + "\n") is None:
                if strict and not line.endswith("\r"):
                    raise RemoteProtocolError("trailer line not terminated by CRLF")
                raise RemoteProtocolError(_field_line_error(line))
        raise AssertionError("findall and fullmatch disagree")  # unreachable: same pattern, line by line
    if "\t" in text or " \n" in text or " \r\n" in text:
        fields = [(name, value.rstrip(" \t")) for name, value in fields]
    return fields


# Field names already seen in valid field lines, mapped to their lowercase form: most messages repeat the
# same few dozen names, and a dict lookup is cheaper than the token check plus lower().  Bounded, so that a
# peer sending made-up names cannot grow it.
_KNOWN_NAMES = {}
_KNOWN_NAMES_MAX = 1024
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_BAD_VALUE_CHAR_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")

# Plain request heads parsed lately, by their text: clients repeat the same head byte for byte (a
# benchmark's, a browser's for each asset of a page), and equal text parses to equal parts.  Each hit
# gets its own Headers (handlers may change theirs); the framing dict is only read.  Only plain heads
# enter, after the limit checks of the connection at hand and the check of their target and Host; the memo
# is emptied when full.
_RECENT_HEADS = {}
_RECENT_HEADS_MAX = 256
_RECENT_HEAD_MAX_CHARS = 2048

#: The fields ``Connection`` reads from every message: framing, keep-alive, Host and Expect.
FRAMING_NAMES = frozenset({"host", "connection", "content-length", "transfer-encoding", "expect"})


def _plain_fields(lines):
    """``(fields, framing)`` for field lines in the plain shape, or None if any line is not.

    Plain: ``name:`` with a token name, then a value of field characters.  ``framing`` maps the lowercase
    names of ``FRAMING_NAMES`` present to their values, like ``Headers._lookup()`` does for every name.
    """
    fields = []
    framing = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        key = _KNOWN_NAMES.get(name)
        if key is None:
            if _TOKEN_RE.fullmatch(name) is None:
                return None
            key = name.lower()
            if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
                _KNOWN_NAMES[name] = key
        # isprintable() is a quick yes for the usual values; HTAB and obs-text need the exact check.
        if not value.isprintable() and _BAD_VALUE_CHAR_RE.search(value) is not None:
            return None
        value = value.strip(" \t")
        fields.append((name, value))
        if key in FRAMING_NAMES:
            values = framing.get(key)
            if values is None:
                framing[key] = [value]
            else:
                values.append(value)
    return fields, framing


def _plain_lines(text):
    """``(start line, field lines)`` when every line of ``text`` ends with CRLF, else None (a bare LF)."""
    lines = text.split("\r\n")
    if lines[-1]:
        return None
    return lines[0], lines[1:-1]


def _plain_request_head(text):
    """The parsed head if ``text`` (a head up to and including the CRLF of its last field line) has the
    plain shape every common client sends, else None.

    Plain: every line ends with CRLF, the request line is ``method SP target SP HTTP/1.x`` with a target of
    visible US-ASCII, and the field lines are plain (``_plain_fields``).  A head that is not goes to the
    complete parser, which accepts the rest of the grammar and names what is wrong; for a plain head both
    give the same result, this one just gets there in fewer steps.
    """
    split = _plain_lines(text)
    if split is None:
        return None
    start = split[0].split(" ")
    if len(start) != 3:
        return None
    method, target, version = start
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        return None
    if method not in _METHODS and _TOKEN_RE.fullmatch(method) is None:
        return None
    if not target or not target.isascii() or not target.isprintable():
        return None
    parsed = _plain_fields(split[1])
    if parsed is None:
        return None
    return method, target, version[5:], Headers._trusted(parsed[0]), parsed[1]


def _plain_response_head(text):
    """Like ``_plain_request_head``, for a status line ``HTTP/1.x SP 3DIGIT [SP reason]``."""
    split = _plain_lines(text)
    if split is None:
        return None
    start = split[0].split(" ", 2)
    if len(start) < 2:
        return None
    version, status = start[0], start[1]
    reason = start[2] if len(start) == 3 else ""
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        return None
    if len(status) != 3 or not (status.isascii() and status.isdigit()) or status[0] == "0":
        return None
    if not reason.isprintable():
        return None
    parsed = _plain_fields(split[1])
    if parsed is None:
        return None
    return version[5:], int(status), reason, Headers._trusted(parsed[0]), parsed[1]


class HeadReader:
    """Finds the end of a head (first empty line), checks the limits, and parses it; of a request, also
    checks the target and Host (``check_target``).

    ``read(buf)`` returns ``(method, target, version, headers, framing)`` for requests, ``(version, status,
    reason, headers, framing)`` for responses, or ``None`` if the head is not complete yet.  ``framing``
    maps each lowercase name of ``FRAMING_NAMES`` present to its values (it may hold other names too).
    The search for the end resumes where the previous one stopped, so a head that trickles in costs
    O(total bytes).
    """

    __slots__ = ("_scan", "_request", "max_line", "max_head", "max_fields")

    def __init__(self, request, max_line, max_head, max_fields):
        self._scan = 0
        self._request = request
        self.max_line = max_line
        self.max_head = max_head
        self.max_fields = max_fields

    def skip_empty_lines(self, buf):
        """Drop empty lines before a start line (RFC 9112 section 2.2); return True if ``buf`` may hold one."""
        if buf and buf[0] in b"\r\n":
            m = _LEADING_EMPTY_RE.match(buf)
            if m is not None:
                del buf[:m.end()]
                self._scan = 0
            if buf == b"\r":
                return False
        return bool(buf)

    def read(self, buf):
        if (not buf or buf[0] in b"\r\n") and not self.skip_empty_lines(buf):
            return None
        scan = self._scan
        i = buf.find(b"\r\n\r\n", scan)
        if i >= 0:
            end = i + 2
            consumed = i + 4
        else:
            m = _HEAD_END_RE.search(buf, scan)
            if m is None:
                self._check_incomplete(buf)
                self._scan = max(len(buf) - 3, 0)
                return None
            end = m.start() + 1
            consumed = m.end()
        try:
            head = self._parse(buf, end, consumed)
        except RemoteProtocolError:
            # The CRLFCRLF found may not be the first empty line if bare LFs end earlier lines.
            m = _HEAD_END_RE.search(buf, 0, consumed)
            if i < 0 or m is None or m.start() + 1 >= end:
                raise
            end = m.start() + 1
            consumed = m.end()
            head = self._parse(buf, end, consumed)
        del buf[:consumed]
        self._scan = 0
        return head

    def _check_incomplete(self, buf):
        n = len(buf)
        # ``_scan`` past max_line + 1 means an earlier call had more than max_line + 4 bytes and found the
        # start line's LF within the limit: a head trickling in is not searched again for it, piece by piece.
        if (n > self.max_line + 1 and self._scan <= self.max_line + 1
                and buf.find(b"\n", 0, self.max_line + 2) < 0):
            if self._request:
                raise RemoteProtocolError(f"request line longer than {self.max_line} bytes", 414)
            raise RemoteProtocolError(f"status line longer than {self.max_line} bytes")
        if n > self.max_head:
            raise RemoteProtocolError(f"header section larger than {self.max_head} bytes", 431)

    def _check_lines(self, text):
        lines = text.split("\n")
        if len(lines[0]) > self.max_line + 1:
            if self._request:
                raise RemoteProtocolError(f"request line longer than {self.max_line} bytes", 414)
            raise RemoteProtocolError(f"status line longer than {self.max_line} bytes")
        if max(map(len, lines)) > self.max_line + 1:
            raise RemoteProtocolError(f"header line longer than {self.max_line} bytes", 431)

    def _parse(self, buf, end, consumed):
        if consumed > self.max_head:
            raise RemoteProtocolError(f"header section larger than {self.max_head} bytes", 431)
        text = buf[:end].decode("latin-1")
        if end > self.max_line:
            self._check_lines(text)
        if text.count("\n") - 1 > self.max_fields:
            raise RemoteProtocolError(f"more than {self.max_fields} header fields", 431)
        if self._request:
            memo = _RECENT_HEADS.get(text)
            if memo is not None:
                method, target, version, fields, framing = memo
                return method, target, version, Headers._trusted(list(fields)), framing
            head = _plain_request_head(text)
            if head is not None:
                check_target(head[0], head[1], head[4].get("host"))
                if len(text) <= _RECENT_HEAD_MAX_CHARS:
                    if len(_RECENT_HEADS) >= _RECENT_HEADS_MAX:
                        _RECENT_HEADS.clear()
                    method, target, version, headers, framing = head
                    _RECENT_HEADS[text] = (method, target, version, tuple(headers._fields), framing)
                return head
            m = _REQUEST_LINE_RE.match(text)
            if m is None:
                _start_line_error(text, True)
            method, target, version = m.groups()
            headers = Headers._trusted(parse_fields(text, m.end()))
            index = headers._lookup()
            check_target(method, target, index.get("host"))
            return method, target, version, headers, index
        head = _plain_response_head(text)
        if head is not None:
            return head
        m = _STATUS_LINE_RE.match(text)
        if m is None:
            _start_line_error(text, False)
        version, status, reason = m.groups()
        headers = Headers._trusted(parse_fields(text, m.end()))
        return version, int(status), reason or "", headers, headers._lookup()


def _start_line_error(text, request):
    """Raise the error for a start line that ``_REQUEST_LINE_RE`` / ``_STATUS_LINE_RE`` refused: 505 for a
    well-formed line of another version (``HTTP/`` DIGIT ``.`` DIGIT, RFC 9112 section 2.3), else 400."""
    line = text[:text.find("\n")]
    if line.endswith("\r"):
        line = line[:-1]
    if "\r" in line:
        raise RemoteProtocolError(f"bare CR in {'request' if request else 'status'} line")
    if request:
        parts = line.split(" ")
        if len(parts) == 3 and _TOKEN_RE.fullmatch(parts[0]) is not None and parts[1]:
            method, target, version = parts
            if not (target.isascii() and target.isprintable()):
                raise RemoteProtocolError(f"bytes outside visible US-ASCII in request target {target[:80]!r}")
            if _VERSION_RE.fullmatch(version) is not None:
                raise RemoteProtocolError(f"unsupported HTTP version {version!r}", 505)
            if version.startswith("HTTP/"):
                raise RemoteProtocolError(f"malformed HTTP version {version[:20]!r} (HTTP/DIGIT.DIGIT)")
        raise RemoteProtocolError(f"malformed request line: {line[:80]!r}")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and _VERSION_RE.fullmatch(parts[0]) is not None and _STATUS_RE.fullmatch(parts[1]):
        raise RemoteProtocolError(f"unsupported HTTP version {parts[0]!r}", 505)
    raise RemoteProtocolError(f"malformed status line: {line[:80]!r}")


def _chunk_line_error(line, strict):
    """The error for a chunk-size line (bytes, without its CRLF) that the chunk-size pattern refused."""
    if strict and _CHUNK_LINE_WHITESPACE_RE.search(line) is not None:
        return RemoteProtocolError(f"whitespace before ';' or CRLF in chunk-size line {line[:40]!r}")
    return RemoteProtocolError(f"bad chunk-size line {line[:40]!r}")


#: The event for every body that ends without trailers (events are not mutated once made).
_END = EndOfMessage()


class ContentLengthReader:
    """Body of exactly ``remaining`` bytes."""

    __slots__ = ("remaining",)

    def __init__(self, length):
        self.remaining = length

    def read(self, buf, closed):
        remaining = self.remaining
        if not remaining:
            return _END
        if not buf:
            return None
        if len(buf) <= remaining:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:remaining])
            del buf[:remaining]
        self.remaining = remaining - len(data)
        return Data._new(data)


class CloseDelimitedReader:
    """Body that runs until the peer closes (responses without framing)."""

    __slots__ = ("_total", "_max_body")

    def __init__(self, max_body):
        self._total = 0
        self._max_body = max_body

    def read(self, buf, closed):
        if buf:
            self._total += len(buf)
            if self._max_body is not None and self._total > self._max_body:
                raise RemoteProtocolError(f"body larger than {self._max_body} bytes", 413)
            data = bytes(buf)
            buf.clear()
            return Data._new(data)
        if closed:
            return _END
        return None


_SIZE, _DATA, _DATA_END, _TRAILERS = range(4)


class ChunkedReader:
    """Chunked body (RFC 9112 section 7.1): size lines with optional extensions, data, CRLF, trailers.

    ``strict`` (a request's body): no whitespace before a ";" or the CRLF of a size line.
    Each ``read`` returns the data of every chunk it can complete or begin in ``buf`` as one Data
    event, so the events a body makes are bounded by the receives, not by its number of chunks.
    """

    __slots__ = ("_state", "_remaining", "_scan", "_total", "_max_body", "_max_chunk_line", "_max_head",
                 "_max_fields", "_size_re", "_plain_size_re")

    def __init__(self, max_body, max_chunk_line, max_head, max_fields, strict=True):
        self._size_re = _CHUNK_SIZE_RE if strict else _LENIENT_CHUNK_SIZE_RE
        self._plain_size_re = _PLAIN_SIZE_LINE_RE if max_chunk_line >= 16 else \
            re.compile(rb"([0-9A-Fa-f]{1,%d})\r\n" % max_chunk_line if max_chunk_line > 0 else rb"(?!)")
        self._state = _SIZE
        self._remaining = 0
        self._scan = 0
        self._total = 0
        self._max_body = max_body
        self._max_chunk_line = max_chunk_line
        self._max_head = max_head
        self._max_fields = max_fields

    def read(self, buf, closed):
        # All the chunk data in ``buf`` comes out as one Data event: consecutive chunks' data is
        # joined, so a body of tiny chunks costs one event per receive, not one per chunk.  ``pos``
        # walks the buffer and what it passed is deleted once, at the end.  An error found after some
        # data is left in the buffer: that data comes out first, and the next call raises.
        state = self._state
        if state == _DATA and len(buf) <= self._remaining:
            if not buf:
                return None
            data = bytes(buf)           # the usual case of a large chunk: the buffer is all data
            buf.clear()
            self._remaining -= len(data)
            if not self._remaining:
                self._state = _DATA_END
            return Data._new(data)
        data = None                     # the data so far (a bytearray: no object per chunk)
        pos = 0
        end = len(buf)
        scan = self._scan
        plain_size = self._plain_size_re.match
        # Each pass consumes a chunk's data, its CRLF or a size line, or stops: bounded by len(buf).
        while True:
            if state == _DATA:
                if pos == end:
                    break
                stop = pos + self._remaining
                if stop > end:
                    stop = end
                if data is None:
                    data = buf[pos:stop]
                else:
                    data += buf[pos:stop]
                self._remaining -= stop - pos
                pos = stop
                if self._remaining:
                    break
                state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    if pos < end and buf[pos] != 13 and data is None:
                        raise RemoteProtocolError("missing CRLF after chunk data")
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    if data is not None:
                        break
                    raise RemoteProtocolError("missing CRLF after chunk data")
                pos += 2
                state = _SIZE
            elif state == _SIZE:
                m = plain_size(buf, pos)        # the usual line, without extensions
                if m is not None:
                    i = m.end() - 2
                else:
                    limit = pos + self._max_chunk_line + 2
                    i = buf.find(b"\r\n", pos + scan, limit)
                    if i < 0:
                        if end >= limit:
                            if data is not None:
                                break
                            raise RemoteProtocolError(
                                f"chunk-size line longer than {self._max_chunk_line} bytes")
                        scan = max(end - pos - 1, 0)
                        break
                    m = self._size_re.fullmatch(buf, pos, i)
                    if m is None:
                        if data is not None:
                            break
                        raise _chunk_line_error(bytes(buf[pos:i]), self._size_re is _CHUNK_SIZE_RE)
                size = int(m.group(1), 16)
                total = self._total + size
                if self._max_body is not None and total > self._max_body:
                    if data is not None:
                        break
                    raise RemoteProtocolError(f"body larger than {self._max_body} bytes", 413)
                self._total = total
                pos = i + 2
                scan = 0
                if size:
                    self._remaining = size
                    state = _DATA
                else:
                    state = _TRAILERS
            else:
                break
        self._state = state
        self._scan = scan
        if pos:
            del buf[:pos]
        if data is not None:
            return Data._new(bytes(data))
        if state == _TRAILERS:
            return self._read_trailers(buf)
        return None

    def _read_trailers(self, buf):
        if buf[:2] == b"\r\n":
            del buf[:2]
            return _END
        if len(buf) < 2:
            if buf[:1] == b"\n":
                raise RemoteProtocolError("chunked body not terminated by CRLF")
            return None
        i = buf.find(b"\r\n\r\n", self._scan)
        if i < 0:
            if len(buf) > self._max_head:
                raise RemoteProtocolError(f"trailer section larger than {self._max_head} bytes", 431)
            self._scan = max(len(buf) - 3, 0)
            return None
        if i + 4 > self._max_head:
            raise RemoteProtocolError(f"trailer section larger than {self._max_head} bytes", 431)
        text = buf[:i + 2].decode("latin-1")
        if text.count("\n") > self._max_fields:
            raise RemoteProtocolError(f"more than {self._max_fields} trailer fields", 431)
        fields = parse_fields(text, 0, strict=True)
        del buf[:i + 4]
        self._scan = 0
        trailers = EndOfMessage()
        trailers.trailers = Headers._trusted(fields)
        return trailers
