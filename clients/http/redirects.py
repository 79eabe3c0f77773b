"""The redirect policy of the HTTP client, as pure functions of (request, status, Location).

Given the request just sent and the response's status and ``Location``, ``next_request``
says what to send next, or ``None`` if the response is final; ``RedirectPolicy`` follows a
whole chain and refuses loops and overlong chains. Nothing here touches a socket, so every
rule is a property test. The rules are those of browsers, requests and httpx:

* ``Location`` is stripped of surrounding whitespace and resolved against the current URL
  (RFC 3986 §5, as ``urllib.parse.urljoin``). Non-ASCII, spaces and controls are
  percent-encoded as UTF-8; a non-ASCII host is IDNA-encoded, and a host that is still not
  a plain name (spaces, ``%``-escapes) is refused. Only http(s) targets are followed. An
  empty path becomes ``/``.
* The target inherits the current fragment when ``Location`` has none (RFC 9110 §10.2.2).
* 303 turns any method but HEAD into GET; 301 and 302 turn POST into GET; every other
  case, 307 and 308 included, keeps method and body. Turning into GET drops the body and
  the ``BODY_HEADERS`` that described it.
* ``CREDENTIAL_HEADERS`` are dropped when scheme, host or port changes, except for an
  upgrade from http on port 80 to https on port 443 of the same host.
* ``Host`` is always dropped (the client derives it from the URL). Other headers keep
  their order; header names compare case-insensitively, methods case-sensitively.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

__all__ = [
    "REDIRECT_STATUSES", "BODY_HEADERS", "CREDENTIAL_HEADERS", "NOT_HTTP",
    "RedirectError", "TooManyRedirects", "RedirectLoop", "UnsupportedRedirect",
    "PlannedRequest", "next_request", "RedirectPolicy",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: The ``reason`` of an UnsupportedRedirect to a scheme the client does not speak.
NOT_HTTP = "not an http(s) URL"

#: Headers that describe a request body, dropped with it when a redirect turns into GET
#: (the Fetch standard's request-body-header names plus framing and ``Expect``).
BODY_HEADERS = frozenset({
    "content-length", "content-type", "content-encoding", "content-language",
    "content-location", "transfer-encoding", "trailer", "expect",
})

#: Headers that carry credentials for one origin; dropped when the origin changes.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters that cannot appear raw in a request target: controls, space, DEL, non-ASCII.
_UNSAFE = re.compile(r"[^\x21-\x7e]+")
# RFC 3986 reg-name without percent-escapes: what a DNS name or IPv4 address may contain.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+\Z")


class RedirectError(Exception):
    """The server's redirect will not be followed; ``reason`` says why in a few words."""

    def __init__(self, reason: str, url: str | None = None):
        super().__init__(reason if url is None else f"{reason}: {url!r}")
        self.reason = reason
        self.url = url  # the offending Location or target, when there is one


class TooManyRedirects(RedirectError):
    """The chain would exceed ``max_redirects`` hops."""


class RedirectLoop(RedirectError):
    """The chain would repeat a request it already sent."""


class UnsupportedRedirect(RedirectError):
    """The ``Location`` is missing, empty, unparsable, or not an http(s) URL."""


@dataclass
class PlannedRequest:
    """A request the client is about to send: an absolute http(s) URL, headers in order."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None


def next_request(current: PlannedRequest, status: int, location: str | None) -> PlannedRequest | None:
    """Return the request that follows ``current`` answered by ``status`` and ``location``.

    Returns ``None`` if ``status`` is not in ``REDIRECT_STATUSES`` (the response is final).
    Raises ``UnsupportedRedirect`` if it is but ``location`` gives no http(s) URL.
    ``current`` is not modified; the result never shares its header list.
    """
    if status not in REDIRECT_STATUSES:
        return None
    target = _resolve(current.url, location)
    method, body, dropped = current.method, current.body, {"host"}
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        dropped |= BODY_HEADERS
    if not _keeps_credentials(current.url, target):
        dropped |= CREDENTIAL_HEADERS
    headers = [(name, value) for name, value in current.headers if name.lower() not in dropped]
    return PlannedRequest(method, target, headers, body)


class RedirectPolicy:
    """Follows one redirect chain that starts with ``first``.

    Allows at most ``max_redirects`` hops, and refuses a hop whose method, URL (without
    fragment; scheme and host case and default port normalised) and body were already sent
    in this chain; a loop is reported before the hop limit. A refused hop leaves the policy
    unchanged.
    """

    def __init__(self, first: PlannedRequest, max_redirects: int = 10):
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {max_redirects}")
        self.first = first
        self.current = first
        self.max_redirects = max_redirects
        #: One ``(status, url)`` per hop taken: the redirect status and the URL it led to.
        self.history: list[tuple[int, str]] = []
        self._sent = {_loop_key(first)}

    def follow(self, status: int, location: str | None) -> PlannedRequest | None:
        """Return the next request of the chain, or ``None`` if the response is final.

        Raises ``UnsupportedRedirect``, ``RedirectLoop`` or ``TooManyRedirects``.
        """
        planned = next_request(self.current, status, location)
        if planned is None:
            return None
        key = _loop_key(planned)
        if key in self._sent:
            raise RedirectLoop("redirect loop", planned.url)
        if len(self.history) >= self.max_redirects:
            raise TooManyRedirects(f"more than {self.max_redirects} redirects", planned.url)
        self._sent.add(key)
        self.history.append((status, planned.url))
        self.current = planned
        return planned


def _resolve(base: str, location: str | None) -> str:
    """Return ``location`` resolved against ``base`` as an ASCII http(s) URL, or refuse it."""
    if location is None:
        raise UnsupportedRedirect("missing Location")
    location = location.strip()
    if not location:
        raise UnsupportedRedirect("empty Location")
    try:
        parts = urlsplit(urljoin(base, location))
        if parts.scheme not in _DEFAULT_PORTS:
            raise UnsupportedRedirect(NOT_HTTP, location)
        if not parts.hostname:
            raise UnsupportedRedirect("no host in Location", location)
        parts.port  # raises ValueError for a non-numeric or out-of-range port
        netloc = _ascii_netloc(parts.netloc)
        path, query = _quote_unsafe(parts.path) or "/", _quote_unsafe(parts.query)
        if "#" in location:
            fragment = _quote_unsafe(parts.fragment)
        else:
            fragment = urlsplit(base).fragment
    except ValueError as exc:  # includes UnicodeError from IDNA and from lone surrogates
        raise UnsupportedRedirect("unparsable Location", location) from exc
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _ascii_netloc(netloc: str) -> str:
    """Return ``netloc`` with the host IDNA-encoded and userinfo percent-encoded."""
    userinfo, at, hostport = netloc.rpartition("@")
    userinfo = _quote_unsafe(userinfo) + at
    if hostport.startswith("["):
        return userinfo + hostport  # an IPv6 literal, already validated by urlsplit
    host, colon, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if not _REG_NAME.match(host):
        raise ValueError(f"invalid host {host!r}")
    return userinfo + host + colon + port


def _quote_unsafe(text: str) -> str:
    return _UNSAFE.sub(lambda m: quote(m.group(), safe=""), text)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port
    return parts.scheme, parts.hostname, _DEFAULT_PORTS.get(parts.scheme) if port is None else port


def _keeps_credentials(old_url: str, new_url: str) -> bool:
    old, new = _origin(old_url), _origin(new_url)
    upgrade = old == ("http", new[1], 80) and new == ("https", old[1], 443)
    return old == new or upgrade


def _loop_key(request: PlannedRequest) -> tuple:
    parts = urlsplit(request.url)
    body = request.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body)
    elif body is not None:
        body = ("streamed", id(body))   # a body read from disk on each send: itself is the key
    return (request.method, _origin(request.url), parts.path or "/", parts.query, body)
