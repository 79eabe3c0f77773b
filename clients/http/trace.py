"""``-v/--verbose``: curl's trace on standard error, and the heads ``-i`` shows, as text.

curl's shape: ``* `` lines say what the client does (connect, TLS, proxy, redirect), ``> ``
lines are the request head as sent, ``< `` lines each response head as received (a blank
``> ``/``< `` line ends a head).  Pure functions of what the client reports to its observer.
"""
__all__ = ["head_bytes", "head_lines", "address", "trying_line", "connected_line",
           "tls_lines"]


def head_bytes(status, fields):
    """A response head as bytes: ``status`` is ``(version, code, reason)``, ``fields`` pairs.

    The client parses heads into fields; this writes them back one ``Name: value`` a line
    (what servers send, so what ``-i`` shows matches what came over the wire in practice).
    """
    lines = ["%s %d %s" % status]
    lines.extend("%s: %s" % field for field in fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def head_lines(prefix, data):
    """``data`` (a head, ending with the blank line) as trace lines starting with ``prefix``."""
    text = data.decode("latin-1")
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    return ["%s %s" % (prefix, line) for line in text.split("\r\n")] + [prefix + " "]


def address(sockaddr):
    """``(ip, port)`` of a socket address (IPv4 or IPv6)."""
    return sockaddr[0], sockaddr[1]


def _shown(ip):
    return "[%s]" % ip if ":" in ip else ip


def trying_line(sockaddr):
    ip, port = address(sockaddr)
    return "*   Trying %s:%d..." % (_shown(ip), port)


def connected_line(host, sockaddr, number):
    ip, port = address(sockaddr)
    return "* Connected to %s (%s) port %d (#%d)" % (host, ip, port, number)


def _name(parts):
    return ", ".join("%s=%s" % item for rdn in parts for item in rdn)


def tls_lines(sock, host):
    """What curl says once a TLS handshake is done: protocol, cipher, and the certificate
    (only known when it was verified: ``-k`` leaves nothing to show)."""
    lines = []
    cipher = sock.cipher()
    if cipher:
        lines.append("* SSL connection using %s / %s" % (sock.version(), cipher[0]))
    alpn = sock.selected_alpn_protocol()
    if alpn:
        lines.append("* ALPN: server accepted %s" % alpn)
    cert = sock.getpeercert()
    if not cert:
        lines.append("* Server certificate not verified (--insecure)")
        return lines
    lines.append("* Server certificate:")
    lines.append("*  subject: %s" % _name(cert.get("subject", ())))
    if "notBefore" in cert:
        lines.append("*  start date: %s" % cert["notBefore"])
    if "notAfter" in cert:
        lines.append("*  expire date: %s" % cert["notAfter"])
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
    if names:
        lines.append("*  subjectAltName: %s" % ", ".join(names))
    lines.append("*  issuer: %s" % _name(cert.get("issuer", ())))
    lines.append("*  SSL certificate verify ok.")
    return lines

