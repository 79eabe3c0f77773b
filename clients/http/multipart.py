"""``-F/--form``: multipart/form-data (RFC 7578) bodies, files streamed from disk.

A field is written as curl writes it: ``NAME=VALUE`` is a text field, ``NAME=@FILE`` a file
upload (its base name as filename, a Content-Type guessed from a few extensions, else
application/octet-stream), ``NAME=<FILE`` a text field whose value is read from FILE.  After
the value come ``;type=TYPE``, ``;filename=NAME`` and ``;headers=FIELD`` (unknown parameters
are dropped); a value or parameter with ``;`` or leading spaces is written in double quotes
(``\\"`` and ``\\\\`` inside).  Names and filenames go into Content-Disposition with ``"``, CR
and LF percent-encoded, as HTML forms do.  Nothing is read here: files are opened when sent.
"""
import os
import secrets

from .bodies import FileBody

__all__ = ["FormError", "Field", "parse_field", "form_body", "CONTENT_TYPES"]

#: Extensions whose Content-Type a file upload gets without ``;type=``.
CONTENT_TYPES = {
    ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
    ".svg": "image/svg+xml", ".txt": "text/plain", ".htm": "text/html", ".html": "text/html",
    ".pdf": "application/pdf", ".xml": "application/xml",
}


class FormError(ValueError):
    """A ``-F`` argument that cannot be understood."""


class Field:
    """One part: ``name``, and either ``value`` (str) or ``path`` (a file: ``upload`` says
    whether as a file upload or as a text value); ``content_type``, ``filename``, ``headers``."""

    def __init__(self, name, value=None, path=None, upload=False, content_type=None,
                 filename=None, headers=()):
        self.name = name
        self.value = value
        self.path = path
        self.upload = upload
        self.content_type = content_type
        self.filename = filename
        self.headers = list(headers)

    def __repr__(self):
        return "Field(%r, value=%r, path=%r)" % (self.name, self.value, self.path)


def _word(text, i, stop):
    """Read a value from ``text[i:]``: a double-quoted string, or up to a character in
    ``stop``; returns ``(word, index after it)``."""
    if i < len(text) and text[i] == '"':
        out = []
        i += 1
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(out), i + 1
            out.append(c)
            i += 1
        raise FormError("unterminated quoted value in %r" % (text,))
    j = i
    while j < len(text) and text[j] not in stop:
        j += 1
    return text[i:j].strip(" "), j


def parse_field(arg):
    """A :class:`Field` from one ``-F`` argument."""
    name, eq, rest = arg.partition("=")
    if not eq:
        raise FormError("%r is not NAME=CONTENT" % (arg,))
    field = Field(name)
    i = 0
    if rest[:1] in ("@", "<"):
        field.upload = rest[0] == "@"
        field.path, i = _word(rest, 1, ";,")
        if i < len(rest) and rest[i] == ",":
            raise FormError("several files in one -F field are not supported: %r" % (arg,))
        if not field.path or field.path == "-":
            raise FormError("-F %r: give a file name (reading stdin is not supported)" % (arg,))
    else:
        field.value, i = _word(rest, 0, ";")
    while i < len(rest):
        if rest[i] != ";":
            raise FormError("unexpected %r in -F %r" % (rest[i], arg))
        i += 1
        while i < len(rest) and rest[i] == " ":
            i += 1
        key, eq, _ = rest[i:].partition("=")
        if not eq or ";" in key:
            j = rest.find(";", i)
            i = len(rest) if j < 0 else j
            continue
        value, i = _word(rest, i + len(key) + 1, ";")
        key = key.strip().lower()
        if key == "type":
            field.content_type = value
        elif key == "filename":
            field.filename = value
        elif key == "headers":
            field.headers.append(value)
    return field


def _disposition_quote(text):
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _part_head(field, boundary):
    disposition = "form-data"
    if field.name:
        disposition += '; name="%s"' % _disposition_quote(field.name)
    filename = field.filename
    if filename is None and field.upload:
        filename = os.path.basename(field.path)
    if filename is not None:
        disposition += '; filename="%s"' % _disposition_quote(filename)
    content_type = field.content_type
    if content_type is None and field.upload:
        extension = os.path.splitext(field.path)[1].lower()
        content_type = CONTENT_TYPES.get(extension, "application/octet-stream")
    lines = ["--" + boundary, "Content-Disposition: " + disposition]
    if content_type:
        lines.append("Content-Type: " + content_type)
    lines.extend(field.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def new_boundary():
    """A boundary of curl's shape: 24 dashes and 16 random hex digits."""
    return "-" * 24 + secrets.token_hex(8)


def form_body(fields, boundary=None):
    """``(content_type, FileBody)`` for ``fields``; raises OSError for a file that cannot be
    read."""
    boundary = boundary or new_boundary()
    pieces = []
    for field in fields:
        pieces.append(_part_head(field, boundary))
        if field.path is not None:
            pieces.append(field.path)
        else:
            pieces.append(field.value.encode("utf-8"))
        pieces.append(b"\r\n")
    pieces.append(("--%s--\r\n" % boundary).encode("ascii"))
    return "multipart/form-data; boundary=" + boundary, FileBody(_merged(pieces))


def _merged(pieces):
    """Adjacent in-memory pieces joined, so a form of many small fields is few pieces."""
    out = []
    for piece in pieces:
        if isinstance(piece, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += piece
        else:
            out.append(piece)
    return out
