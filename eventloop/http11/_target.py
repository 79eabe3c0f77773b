"""What a server checks of a request's target and ``Host`` before anything acts on them
(RFC 9112 section 3.2, RFC 9110 section 7.2, RFC 3986 section 3.2).

The target is one of the four forms: origin (``/path?query``), absolute (``scheme:...``), authority
(``host:port``, CONNECT only) or asterisk (``*``, OPTIONS only), never with a fragment.  ``Host`` is
``uri-host [":" port]``; it is what origin- and asterisk-form targets are relative to, so there it must name
a host, and with a target that has an authority it must name the same one.  Each refusal is a
``RemoteProtocolError`` with the 400 hint.  The bytes of the target are visible US-ASCII already (the head
reader's grammar).
"""

import ipaddress
import re

from ._state import RemoteProtocolError

__all__ = ["check_target"]

# reg-name = *( unreserved / pct-encoded / sub-delims ), less ",": a comma is what two Host fields merged
# into one look like, and no DNS name or address has one.
_REG_NAME = r"(?:[-A-Za-z0-9._~!$&'()*+;=]|%[0-9A-Fa-f]{2})*"
_IP_LITERAL = r"\[[0-9A-Fa-f:.]{2,45}\]"
_IP_FUTURE = r"\[[vV][0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+\]"
_HOST_PORT_RE = re.compile(rf"({_IP_LITERAL}|{_IP_FUTURE}|{_REG_NAME})(?::([0-9]*))?")
_SCHEME_RE = re.compile(r"[A-Za-z][-A-Za-z0-9+.]*:")
_DEFAULT_PORTS = {"http": "80", "https": "443"}

# Host values that passed the check lately: the clients of a server send very few distinct ones.  Bounded,
# so that a peer sending made-up hosts cannot grow it.
_GOOD_HOSTS = set()
_GOOD_HOSTS_MAX = 256


def _split_authority(authority, what):
    """``(lowercase host, port or None)`` of a valid ``uri-host [":" port]``, or raise."""
    m = _HOST_PORT_RE.fullmatch(authority)
    if m is None:
        if "@" in authority:
            raise RemoteProtocolError(f"userinfo in {what} {authority[:80]!r}")
        raise RemoteProtocolError(f"invalid {what} {authority[:80]!r}")
    host, port = m.groups()
    if host[:1] == "[" and host[1:2] not in ("v", "V"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise RemoteProtocolError(f"invalid IPv6 address in {what} {authority[:80]!r}") from None
    return host.lower(), port


def _check_host(host):
    """Check a ``Host`` value that origin- and asterisk-form targets are relative to: it must name a host."""
    if not _split_authority(host, "Host")[0]:
        raise RemoteProtocolError("empty host in Host")
    if len(_GOOD_HOSTS) >= _GOOD_HOSTS_MAX:
        _GOOD_HOSTS.clear()
    _GOOD_HOSTS.add(host)


def _same_authority(scheme, authority, host):
    """Whether a target's ``authority`` (valid, lowercased) and the ``Host`` value name the same host and
    port (a missing port is the scheme's default)."""
    theirs = _split_authority(host, "Host")
    default = _DEFAULT_PORTS.get(scheme)
    return (authority[0], authority[1] or default) == (theirs[0], theirs[1] or default)


def check_target(method, target, hosts):
    """Raise ``RemoteProtocolError`` (400) unless ``target`` is a valid request-target for ``method`` and
    the Host value is valid for it.  ``hosts``: the Host values, or None; with none or more than one, only
    the target is checked (the connection refuses such a request itself, or accepts it from HTTP/1.0)."""
    host = hosts[0] if hosts is not None and len(hosts) == 1 else None
    if target[0] == "/" and "#" not in target and method != "CONNECT":
        # Origin-form, what nearly every request has: only the Host is left to check, if not seen lately.
        if host is not None and host not in _GOOD_HOSTS:
            _check_host(host)
        return
    _check_other_target(method, target, host)


def _check_other_target(method, target, host):
    """``check_target`` for every target but a plain origin-form one."""
    if "#" in target:
        raise RemoteProtocolError("fragment ('#') in request target")
    if target[0] == "/":
        raise RemoteProtocolError("CONNECT needs an authority-form target (host:port)")
    if target == "*":
        if method != "OPTIONS":
            raise RemoteProtocolError(f"asterisk-form target '*' with {method} (only OPTIONS may use it)")
        if host is not None:
            _check_host(host)
        return
    if method == "CONNECT":
        authority = _split_authority(target, "request target")
        if not authority[0] or not authority[1]:
            raise RemoteProtocolError(f"CONNECT target must be host:port, got {target[:80]!r}")
        if host is not None and not _same_authority(None, authority, host):
            raise RemoteProtocolError(f"Host {host[:80]!r} does not match the target {target[:80]!r}")
        return
    m = _SCHEME_RE.match(target)
    if m is None:
        raise RemoteProtocolError(f"malformed request target {target[:80]!r}")
    scheme = m.group()[:-1].lower()
    rest = target[m.end():]
    if rest.startswith("//"):
        end = len(rest)
        for delimiter in "/?":
            i = rest.find(delimiter, 2)
            if 0 <= i < end:
                end = i
        authority = _split_authority(rest[2:end], "request target's authority")
    else:
        authority = ("", None)                      # no authority: Host must be empty (RFC 9112 section 3.2)
    if not authority[0] and scheme in _DEFAULT_PORTS:
        raise RemoteProtocolError(f"{scheme} URI without a host: {target[:80]!r}")
    if host is not None and not _same_authority(scheme, authority, host):
        raise RemoteProtocolError(f"Host {host[:80]!r} does not match the target {target[:80]!r}")
