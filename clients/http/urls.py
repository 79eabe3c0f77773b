"""Command-line URLs read the way curl reads them, before anything is sent.

A URL without ``scheme://`` is taken as ``http://`` (``localhost:8000/x`` works); a scheme
other than http(s) is refused as unsupported (curl's exit 1); a URL that cannot be a URL is
refused as malformed (exit 3): spaces or control characters anywhere, an empty host, a port
that is not a number up to 65535, an IPv6 literal that is not one, more than one ``@``, or a
host with characters no host name has.  URLs are not globbed (as with curl's ``-g``).
"""
import ipaddress
import os
from urllib.parse import quote, unquote

__all__ = ["BadURL", "check_url", "with_upload_name", "with_query"]

SCHEMES = ("http", "https")
# Characters curl refuses in a host name (after percent-decoding), besides controls and space.
_BAD_HOST = set("!\"$&'()*+,;<=>[\\]^`{}")


class BadURL(ValueError):
    """A URL refused before any request: ``code`` is curl's exit status (1 or 3)."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code


def _has_controls(text):
    return any(c <= " " or c == "\x7f" for c in text)


def check_url(text):
    """The absolute http(s) URL that the command-line ``text`` stands for; raises BadURL."""
    if "://" not in text:
        if text.startswith("//") or not text:
            raise BadURL(3, "no host in URL %r" % (text,))
        text = "http://" + text
    scheme, _, rest = text.partition("://")
    if not scheme or not (scheme[0].isascii() and scheme[0].isalpha()) or not all(
            c.isascii() and (c.isalnum() or c in "+-.") for c in scheme):
        raise BadURL(3, "malformed scheme in URL %r" % (text,))
    if scheme.lower() not in SCHEMES:
        raise BadURL(1, "unsupported URL scheme %r (only http and https)" % (scheme,))
    if _has_controls(text):
        raise BadURL(3, "space or control character in URL %r" % (text,))
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if authority.count("@") > 1:
        raise BadURL(3, "more than one '@' in URL %r" % (text,))
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise BadURL(3, "unterminated IPv6 address in URL %r" % (text,))
        literal, port = hostport[1:close], hostport[close + 1:]
        if port and not port.startswith(":"):
            raise BadURL(3, "junk after the IPv6 address in URL %r" % (text,))
        port = port[1:]
        try:
            ipaddress.IPv6Address(unquote(literal).partition("%")[0])
        except ValueError:
            raise BadURL(3, "bad IPv6 address in URL %r" % (text,)) from None
    else:
        host, colon, port = hostport.partition(":")
        if not host:
            raise BadURL(3, "no host in URL %r" % (text,))
        decoded = unquote(host, errors="surrogateescape")
        if ":" in port or _has_controls(decoded) or _BAD_HOST.intersection(decoded):
            raise BadURL(3, "bad host name in URL %r" % (text,))
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise BadURL(3, "bad port number in URL %r" % (text,))
    return text


def with_upload_name(url, path):
    """``-T FILE``: a URL whose path ends in ``/`` (or is empty) gets FILE's name appended."""
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "?#") if i >= 0), default=len(rest))
    before, after = rest[:cut], rest[cut:]
    if "/" not in before:
        before += "/"
    if before.endswith("/"):
        before += quote(os.path.basename(path))
    return "%s://%s%s" % (scheme, before, after)


def with_query(url, query):
    """``-G``: ``query`` added to the URL's query string (before any fragment)."""
    base, hash_, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    return base + joiner + query + hash_ + fragment
