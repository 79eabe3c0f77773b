"""What a request says and a response's fields, without a socket: where a URL points
(:class:`Target`), the request head built from it and the caller's fields
(:func:`build_request`), and the read-only view of a response's fields (:class:`HeaderMap`).
"""
from base64 import b64encode
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from eventloop.http11 import Headers, Request

__all__ = ["HeaderMap", "Target", "build_request", "request_fields", "USER_AGENT",
           "DEFAULT_PORTS"]

USER_AGENT = "eventloop-http/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}


class HeaderMap(Mapping):
    """A read-only, case-insensitive mapping over a message's header fields.

    ``header[name]`` and ``get`` give the field's value (repeated fields joined by ", ");
    iteration yields each distinct name once, as first spelled; ``get_all(name)`` lists every
    value and ``fields`` is the underlying :class:`eventloop.http11.Headers`, in wire order.
    """

    __slots__ = ("fields",)

    def __init__(self, fields=None):
        self.fields = fields if isinstance(fields, Headers) else Headers(fields)

    def __getitem__(self, name):
        value = self.fields.get(name) if isinstance(name, str) else None
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name, default=None):
        return self.fields.get(name, default) if isinstance(name, str) else default

    def __contains__(self, name):
        return name in self.fields

    def __iter__(self):
        seen = set()
        for name, _ in self.fields:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self):
        return len({name.lower() for name, _ in self.fields})

    def get_all(self, name):
        return self.fields.get_all(name)

    def __repr__(self):
        return "HeaderMap(%r)" % (self.fields.items(),)


class Target:
    """What a URL says about where and what to ask: scheme, host, port, request target.

    Raises ValueError (or UnicodeError, for a host IDNA cannot encode) for a URL that is not
    an absolute http(s) URL with a host.
    """

    __slots__ = ("scheme", "host", "port", "target", "host_header", "authorization")

    def __init__(self, url):
        if not isinstance(url, str):
            raise ValueError("the URL must be a str, not %s" % type(url).__name__)
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError("unsupported URL scheme %r (only http and https)" % (parts.scheme,)
                             if scheme else "no scheme in URL %r" % (url,))
        host = parts.hostname
        if not host:
            raise ValueError("no host in URL %r" % (url,))
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = parts.port                   # ValueError for a bad port
        default = DEFAULT_PORTS[scheme]
        self.scheme = scheme
        self.host = host
        self.port = default if port is None else port
        shown = "[%s]" % host if ":" in host else host
        self.host_header = shown if self.port == default else "%s:%d" % (shown, self.port)
        target = _quote_unsafe(parts.path) or "/"
        if parts.query or url.rstrip().endswith("?"):
            target += "?" + _quote_unsafe(parts.query)
        self.target = target
        self.authorization = None
        if parts.username is not None:
            credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
            self.authorization = "Basic " + b64encode(credentials.encode("utf-8")).decode("ascii")


def _quote_unsafe(text):
    """Percent-encode what cannot appear raw in a request target (controls, space, non-ASCII)."""
    if text.isascii() and text.isprintable() and " " not in text:
        return text
    return "".join(c if "!" <= c <= "~" else "".join("%%%02X" % b for b in c.encode("utf-8"))
                   for c in text)


def request_fields(headers):
    """The caller's headers as a list of (name, value) pairs (a mapping, pairs, or Headers);
    TypeError or ValueError for anything else."""
    if headers is None:
        return []
    if isinstance(headers, Headers):
        return headers.items()
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(name, value) for name, value in headers]


def build_request(method, target, fields, via=None):
    """The :class:`~eventloop.http11.Request` for ``method`` on ``target`` (a :class:`Target`)
    with the caller's ``fields``: ``Host``, ``User-Agent``, ``Accept`` and the URL's
    credentials are added unless given, and a field given with the value None is not sent
    and keeps its default out too.  Through ``via``, an http proxy (a
    :class:`~clients.http.proxy.Proxy`), an http URL is asked for in the absolute form with
    the proxy's credentials.  Raises ProtocolError (or ValueError) for an invalid field."""
    given = Headers([field for field in fields if field[1] is not None])
    given_names = {name.lower() for name, _ in fields}
    head = [] if "host" in given_names else [("Host", target.host_header)]
    head += given.items()
    if "user-agent" not in given_names:
        head.append(("User-Agent", USER_AGENT))
    if "accept" not in given_names:
        head.append(("Accept", "*/*"))
    if target.authorization and "authorization" not in given_names:
        head.append(("Authorization", target.authorization))
    request_target = target.target
    if via is not None and target.scheme == "http":
        request_target = "http://%s%s" % (target.host_header, target.target)
        if via.authorization and "proxy-authorization" not in given_names:
            head.append(("Proxy-Authorization", via.authorization))
    return Request(method, request_target, Headers._trusted(head))
