"""``python -m servers.http [PORT] [-b ADDR] [-d DIR]``: serve a directory over HTTP/1.1.

Like ``python -m http.server`` (and with its ``-b``, ``-d``, ``-p``/``--protocol``,
``-H``/``--header`` and ``--content-type``), with keep-alive, pipelining, timeouts,
``os.sendfile`` and optional pre-forked workers.  The access log (Common Log Format) goes to
stderr through the logger ``servers.http.access``; ``-q`` silences it.  Errors are one line
on stderr starting ``python -m servers.http:``; Ctrl-C exits 0 after one line.  ``--tls-cert
FILE`` (with ``--tls-key FILE`` and ``--tls-password-file FILE``, as in http.server 3.14)
serves HTTPS instead: TLS 1.2 or later, the ssl module's secure defaults, ALPN ``http/1.1``.
"""
import argparse
import logging
import os
import re
import signal
import sys

from eventloop import get_reactor
from eventloop.http11 import Headers, LocalProtocolError
from servers import add_tls_arguments, cannot_listen, exits_on_ctrl_c, interrupted, log_to_stderr, \
    tls_context_from

from . import files
from .app import EchoHandler
from .messages import PROTOCOLS, extra_fields
from .server import HTTPServer
from .static import StaticFiles
from .workers import Prefork

PROG = "python -m servers.http"

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _size(text):
    """A byte count: digits with an optional K, M or G suffix (binary units)."""
    t = text.strip().lower()
    unit = t[-1:] if t[-1:] in ("k", "m", "g") else ""
    number = t[:-1] if unit else t
    if not number.isdigit():
        raise argparse.ArgumentTypeError("not a size: %r (use e.g. 1048576, 512K, 1M)" % text)
    return int(number) * _UNITS[unit]


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError("not a positive number of seconds: %r" % text)
    return value


def _connections(text):
    """A number of connections: 1 or more."""
    n = int(text) if text.isdigit() else 0
    if n < 1:
        raise argparse.ArgumentTypeError("not a number of connections (1 or more): %r" % text)
    return n


def _workers(text):
    """A number of worker processes: 1 or more."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError("not a number of workers (1 or more): %r" % text)
    return n


_MEDIA_TYPE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+/[-!#$%&'*+.^_`|~0-9A-Za-z]+(\s*;.*)?")


def _media_type(text):
    """A Content-Type value: ``type/subtype``, with parameters if any (``text/plain;
    charset=utf-8``)."""
    try:
        (_, value), = Headers([("Content-Type", text)])
    except LocalProtocolError:
        value = ""
    if not _MEDIA_TYPE.fullmatch(value):
        raise argparse.ArgumentTypeError("not a media type: %r (use e.g. text/plain)" % text)
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a directory over HTTP/1.1 (keep-alive, ranges, sendfile).")
    parser.add_argument("port", metavar="PORT", nargs="?", type=int, default=8000,
                        help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument("-b", "--bind", metavar="ADDR", default="0.0.0.0",
                        help="address to bind (default 0.0.0.0; '::' for IPv6 and IPv4)")
    parser.add_argument("-d", "--directory", metavar="DIR", default=os.getcwd(),
                        help="directory to serve (default: the current directory)")
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="serve symlinks that lead outside DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="no access log")
    parser.add_argument("--max-body", metavar="BYTES", type=_size, default=1 << 20,
                        help="largest request body accepted (default 1M; 413 beyond)")
    parser.add_argument("--head-timeout", metavar="SECONDS", type=_seconds, default=10.0,
                        help="time allowed for a request head to arrive (default 10)")
    parser.add_argument("--keepalive-timeout", metavar="SECONDS", type=_seconds, default=5.0,
                        help="idle time before a keep-alive connection is closed (default 5)")
    parser.add_argument("--connection-limit", metavar="N", type=_connections, default=None,
                        help="connections served at once (default: as many as there are file "
                             "descriptors); when reached, idle keep-alive connections, then the "
                             "oldest ones still sending a request head, are closed to let new "
                             "ones in")
    parser.add_argument("-p", "--protocol", metavar="VERSION", choices=PROTOCOLS,
                        default="HTTP/1.1",
                        help="the HTTP version to answer with: HTTP/1.1 (the default) or "
                             "HTTP/1.0, which closes the connection after each response")
    parser.add_argument("-H", "--header", metavar=("NAME", "VALUE"), nargs=2,
                        action="append", default=[], dest="headers",
                        help="add this header to every response, error pages included "
                             "(repeatable)")
    parser.add_argument("--content-type", metavar="TYPE", type=_media_type,
                        default=files.DEFAULT_TYPE,
                        help="Content-Type of files with an unknown extension or none "
                             "(default %(default)s)")
    parser.add_argument("--workers", metavar="N", type=_workers, default=None,
                        help="pre-fork N worker processes sharing the port (default: serve "
                             "in this process)")
    parser.add_argument("--echo", action="store_true",
                        help="answer every request with a page showing its request line and "
                             "headers, instead of serving files")
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    args.tls_context = tls_context_from(parser, args, alpn=["http/1.1"])
    if not 0 <= args.port <= 65535:
        parser.error("PORT must be in 0..65535")
    try:
        args.headers = extra_fields(args.headers)
    except ValueError as exc:
        parser.error("-H/--header: %s" % exc)
    if not args.echo and not os.path.isdir(args.directory):
        parser.error("not a directory: %r" % args.directory)
    return args


def configure_logging(quiet, prog=PROG):
    """Access log lines as they are on stderr; other messages with their level (errors as
    ``prog: error: ...``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("servers.http.access")
    access.addHandler(handler)
    access.propagate = False
    access.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("servers.http").setLevel(logging.INFO)
    log_to_stderr(prog, "%(levelname)s %(name)s: %(message)s", logging.WARNING)


def _banner(address, tls=False):
    host, port = address[0], address[1]
    url_host = "[%s]" % host if ":" in host else host
    scheme = "https" if tls else "http"
    return "Serving %s on %s port %d (%s://%s:%d/) ..." % (
        scheme.upper(), host, port, scheme, url_host, port)


def serve(prog, args, make_server, run=None):
    """Serve as the command line asks (``args.bind``, ``args.port``, ``args.workers``,
    ``args.tls_context``): ``make_server(address=...)`` in this process, or in each of the
    ``--workers`` pre-forked processes ``make_server(sock=..., reactor=...)``; print the banner;
    run the reactor (or ``run(server)``) until a signal.  Returns the exit status.  The one
    start-up of servers.http and servers.wsgi."""
    tls = args.tls_context is not None
    address = (args.bind, args.port)
    try:
        if args.workers:
            prefork = Prefork(address, args.workers,
                              lambda sock, reactor: make_server(sock=sock, reactor=reactor))
            print(_banner(prefork.bind(), tls), file=sys.stderr, flush=True)
            code = prefork.run()
            if prefork.stopped_by == signal.SIGINT:
                interrupted()
            return code
        server = make_server(address=address)
    except OSError as exc:
        return cannot_listen(prog, args, exc)
    print(_banner(server.server_address, tls), file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if run is None:
        get_reactor().run()
    else:
        run(server)
    return 0


@exits_on_ctrl_c
def main(argv=None):
    args = parse_args(argv)
    configure_logging(args.quiet)
    if args.echo:
        app = EchoHandler()
    else:
        app = StaticFiles(args.directory, args.follow_symlinks, default_type=args.content_type)
    options = dict(max_body=args.max_body, head_timeout=args.head_timeout,
                   keepalive_timeout=args.keepalive_timeout, protocol=args.protocol,
                   extra_headers=args.headers, tls_context=args.tls_context,
                   connection_limit=args.connection_limit)
    return serve(PROG, args, lambda **where: HTTPServer(app=app, **where, **options))


if __name__ == "__main__":
    sys.exit(main())
