"""HTTP proxies: which one a URL goes through (``-x``, ``http_proxy``, ``no_proxy``...), and the
``CONNECT`` tunnel that carries https through one.

The choice follows curl's rules: ``-x URL`` (or ``--proxy``) wins over the environment, and
``-x ""`` turns proxies off; otherwise ``http_proxy`` (lower case only: ``HTTP_PROXY`` can be
set by a CGI request's ``Proxy:`` header) serves http URLs, ``https_proxy`` or ``HTTPS_PROXY``
https ones, and ``all_proxy`` / ``ALL_PROXY`` both.  ``--noproxy LIST`` (or ``no_proxy`` /
``NO_PROXY``) names the hosts reached directly: ``*`` alone is every host; a name matches itself
and its subdomains (a leading dot is ignored), case-insensitively; an IP address matches
itself, or with ``/BITS`` a whole network.  A proxy URL is ``[http://][USER:PASS@]HOST[:PORT]``
(port 1080 by default); other proxy schemes (https, socks) are refused.

Nothing here touches a socket: :class:`Tunnel` is fed bytes and says when the tunnel is open.
"""
import ipaddress
import os
from base64 import b64encode
from urllib.parse import unquote, urlsplit

from eventloop.http11 import (CLIENT, Connection, EndOfMessage, Headers, NEED_DATA,
                              RemoteProtocolError, Request, Response)

__all__ = ["Proxy", "ProxySettings", "no_proxy_matches", "Tunnel", "TunnelError"]

DEFAULT_PORT = 1080


class Proxy:
    """Where to send requests instead: ``host``, ``port``, and ``authorization`` (the
    ``Proxy-Authorization`` value, from the URL's user and password) or None."""

    __slots__ = ("url", "host", "port", "authorization")

    def __init__(self, url):
        text = url.strip()
        if "://" not in text:
            text = "http://" + text
        parts = urlsplit(text)
        if parts.scheme.lower() != "http":
            raise ValueError("unsupported proxy scheme %r in %r (only http:// proxies)"
                             % (parts.scheme, url))
        try:
            port = parts.port
        except ValueError:
            raise ValueError("bad port in proxy %r" % (url,)) from None
        if not parts.hostname:
            raise ValueError("no host in proxy %r" % (url,))
        self.url = url
        self.host = parts.hostname
        self.port = DEFAULT_PORT if port is None else port
        self.authorization = None
        if parts.username is not None:
            credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
            self.authorization = "Basic " + b64encode(credentials.encode("utf-8")).decode("ascii")

    @property
    def key(self):
        """What tells two proxies apart for connection reuse."""
        return (self.host, self.port, self.authorization)

    def __repr__(self):
        return "<Proxy %s:%d>" % (self.host, self.port)


def _strip_brackets(host):
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def no_proxy_matches(host, no_proxy):
    """Whether ``host`` (a name or an IP address, as in a URL) is in the list ``no_proxy``."""
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    host = _strip_brackets(host).rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for token in no_proxy.replace(",", " ").split():
        if address is not None:
            network = _network(_strip_brackets(token))
            if network is not None and address in network:
                return True
            continue
        name = token.lstrip(".").rstrip(".").lower()
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _network(token):
    """The addresses an IP token of a no_proxy list stands for, or None if it is not one."""
    try:
        if "/" in token:
            return ipaddress.ip_network(token, strict=False)
        address = ipaddress.ip_address(token)
    except ValueError:
        return None
    return ipaddress.ip_network(address)


class ProxySettings:
    """The proxy choice of one run: ``proxy`` (the ``-x`` value: None to read the environment,
    "" for none), ``noproxy`` (the ``--noproxy`` list: None to read the environment),
    ``environ`` (default ``os.environ``).  ``select(url)`` gives the :class:`Proxy` or None;
    it raises ValueError for a proxy that cannot be used."""

    def __init__(self, proxy=None, noproxy=None, environ=None):
        environ = os.environ if environ is None else environ
        self.proxy = proxy
        self.environ = environ
        self.noproxy = noproxy if noproxy is not None else (
            _env(environ, "no_proxy", "NO_PROXY") or "")

    def source(self, scheme):
        """``(name, value)``: the setting that names the proxy for ``scheme`` URLs, or None."""
        if self.proxy is not None:
            return ("-x", self.proxy) if self.proxy else None
        names = ("http_proxy",) if scheme == "http" else ("https_proxy", "HTTPS_PROXY")
        for name in names + ("all_proxy", "ALL_PROXY"):
            value = self.environ.get(name)
            if value:
                return name, value
        return None

    def select(self, url):
        parts = urlsplit(url)
        found = self.source(parts.scheme.lower())
        if found is None or no_proxy_matches(parts.hostname or "", self.noproxy):
            return None
        return Proxy(found[1])


def _env(environ, *names):
    for name in names:
        value = environ.get(name)
        if value is not None:
            return value
    return None


class TunnelError(Exception):
    """The proxy did not open the tunnel: ``status`` is its answer (None when it sent none)."""

    def __init__(self, reason, status=None):
        super().__init__(reason)
        self.status = status


class Tunnel:
    """One ``CONNECT host:port`` exchange, sans-IO: send :attr:`request`, then :meth:`receive`
    what the proxy answers until it returns the Response (2xx: the tunnel is open).  Raises
    :class:`TunnelError` for any other answer, a malformed one, or bytes after the answer (the
    origin cannot speak before our TLS hello)."""

    def __init__(self, authority, authorization=None):
        fields = [("Host", authority)]
        if authorization:
            fields.append(("Proxy-Authorization", authorization))
        self.authority = authority
        self._conn = Connection(CLIENT)
        self.request = (self._conn.send(Request("CONNECT", authority, Headers(fields)))
                        + self._conn.send(EndOfMessage()))
        self.response = None

    def receive(self, data):
        """Feed bytes from the proxy (``b""`` at EOF); the 2xx Response once complete, else None."""
        conn = self._conn
        conn.receive_data(data)
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    return None
                if type(event) is Response:
                    break
        except RemoteProtocolError as exc:
            raise TunnelError("invalid answer from the proxy to CONNECT %s: %s"
                              % (self.authority, exc)) from None
        self.response = event
        if not 200 <= event.status < 300:
            raise TunnelError("CONNECT tunnel to %s failed: the proxy answered %d %s"
                              % (self.authority, event.status, event.reason), event.status)
        if conn.trailing_data[0]:
            raise TunnelError("the proxy sent data after its answer to CONNECT %s"
                              % (self.authority,), event.status)
        return event
