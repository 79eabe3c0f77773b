"""What PEP 3333 says passes between server and application, as pure functions: no sockets.

:func:`base_environ` holds the keys every request of a server shares; :func:`request_environ`
adds one request's (method, paths, query, headers, client address); :func:`parse_status` and
:func:`check_headers` validate what the application hands ``start_response``, so that nothing it
says can split or reframe the response (CR/LF and other controls, hop-by-hop fields).
"""
import logging
import re
import threading
from urllib.parse import unquote_to_bytes

__all__ = ["base_environ", "request_environ", "parse_status", "check_headers", "HOP_BY_HOP",
           "ErrorStream"]

#: Fields that describe one connection, not the message (RFC 9110 section 7.6.1): the server
#: owns them, an application may not send them (PEP 3333).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_STATUS = re.compile(r"([1-9][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*\Z")

_ENV_NAMES = {}                 # field name as received -> its environ key (HTTP_...)
_ENV_NAMES_MAX = 4096


class ErrorStream:
    """``wsgi.errors``: text the application writes goes to the ``logging`` logger ``name``,
    one record per line (a partial line waits for its end, or for :meth:`flush`)."""

    def __init__(self, name="servers.wsgi.errors"):
        self._log = logging.getLogger(name)
        self._partial = ""
        self._lock = threading.Lock()       # (one stream serves every application thread)

    def write(self, text):
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            self._log.error("%s", line)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        with self._lock:
            partial, self._partial = self._partial, ""
        if partial:
            self._log.error("%s", partial)


def base_environ(server_name, server_port, url_scheme, script_name, multithread, multiprocess,
                 file_wrapper, errors):
    """The keys every request of one server shares (each request gets a copy)."""
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SCRIPT_NAME": script_name,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": errors,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": file_wrapper,
    }


def _env_name(name):
    key = _ENV_NAMES.get(name)
    if key is None:
        if "_" in name:
            # A client could otherwise pass "X_Forwarded_For" for a proxy's X-Forwarded-For:
            # both would be HTTP_X_FORWARDED_FOR (as nginx, waitress and gunicorn do, drop it).
            key = ""
        else:
            lower = name.lower()
            key = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}.get(
                lower) or "HTTP_" + name.upper().replace("-", "_")
        if len(_ENV_NAMES) < _ENV_NAMES_MAX:
            _ENV_NAMES[name] = key
    return key


def request_environ(base, request, script_name, wsgi_input, content_length=None):
    """The environ for ``request`` (an :class:`~servers.http.HTTPRequest`): ``PATH_INFO`` is the
    percent-decoded path as latin-1 (PEP 3333), less ``script_name``; None when the path is not
    under ``script_name``.  Repeated fields are joined with ", " (Cookie with "; ", RFC 6265);
    ``content_length``, when given, replaces the client's (a chunked body read whole)."""
    path = request.path
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    if script_name:
        if path != script_name and not path.startswith(script_name + "/"):
            return None
        path = path[len(script_name):]
    environ = base.copy()
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = request.query
    environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
    address = request.client_address
    if type(address) is tuple:
        environ["REMOTE_ADDR"] = address[0]
        environ["REMOTE_PORT"] = str(address[1])
    else:
        environ["REMOTE_ADDR"] = ""         # a Unix socket's peer has no address
    environ["wsgi.input"] = wsgi_input
    for name, value in request.headers:
        key = _ENV_NAMES.get(name) or _env_name(name)
        if not key:
            continue
        if key in environ:
            if key == "CONTENT_LENGTH" or key == "CONTENT_TYPE":
                continue                    # (the parser checked repeats agree)
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        environ[key] = value
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
    return environ


_CHECKED_MAX = 1024
_checked_statuses = {}          # status string -> its code, for statuses found good
_checked_headers = {}           # header tuples found good (most responses repeat a few)


def parse_status(status):
    """The code of a WSGI status string (``"200 OK"``); ValueError if it is not one."""
    code = _checked_statuses.get(status) if type(status) is str else None
    if code is not None:
        return code
    code = _parse_status(status)
    if len(_checked_statuses) < _CHECKED_MAX:
        _checked_statuses[status] = code
    return code


def _parse_status(status):
    if type(status) is not str:
        raise TypeError("status must be a str, not %r" % type(status).__name__)
    m = _STATUS.match(status)
    if m is None:
        raise ValueError("bad status %r: it must be 3 digits, a space and a reason, "
                         "without control characters" % status)
    return int(m.group(1))


def check_headers(headers):
    """``headers`` (a list of ``(name, value)`` str pairs) as a tuple, after checking that every
    name is a token, no value holds a control character (CR, LF, ...) or a character beyond
    latin-1, and no field is hop-by-hop; ValueError or TypeError otherwise."""
    if type(headers) is not list:
        raise TypeError("headers must be a list, not %r" % type(headers).__name__)
    try:
        key = tuple(headers)
        if key in _checked_headers:     # (exact types are checked before a tuple is kept)
            return key
    except TypeError:
        key = None                      # unhashable: checked below, and refused
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2:
            raise TypeError("each header must be a (name, value) tuple, not %r" % (pair,))
        name, value = pair
        if type(name) is not str or type(value) is not str:
            raise TypeError("header names and values must be str: %r" % (pair,))
        if _TOKEN.match(name) is None:
            raise ValueError("bad header name %r" % name)
        if _BAD_VALUE.search(value) is not None:
            raise ValueError("bad value for header %s: %r (control or non-latin-1 character)"
                             % (name, value))
        if name.lower() in HOP_BY_HOP:
            raise ValueError("hop-by-hop header %r: the server owns the connection" % name)
    if key is None:
        key = tuple(headers)
    if len(_checked_headers) < _CHECKED_MAX:
        _checked_headers[key] = True
    return key
