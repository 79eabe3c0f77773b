"""``python -m servers.wsgi MODULE:CALLABLE [PORT] [-b ADDR]``: host a WSGI application.

The application runs in ``--threads`` threads (0: on the reactor thread) while the reactor does
all the I/O; ``--workers N`` pre-forks N processes, as ``python -m servers.http`` does.  The
access log (Common Log Format) goes to stderr through the logger ``servers.http.access``; ``-q``
silences it.  A MODULE:CALLABLE that cannot be loaded is a one-line error and exit status 2;
other errors are one line starting ``python -m servers.wsgi:``; Ctrl-C exits 0 after one line.
``--tls-cert FILE`` (with ``--tls-key``, ``--tls-password-file``) serves HTTPS, as
``python -m servers.http`` does; ``wsgi.url_scheme`` is then "https".
"""
import argparse
import signal
import sys

from eventloop import get_reactor
from servers import add_tls_arguments, exits_on_ctrl_c, tls_context_from
from servers.http.__main__ import _seconds, _size, _workers, configure_logging, serve

from .server import AppNotFound, WSGIServer, load_application

PROG = "python -m servers.wsgi"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve a WSGI application over HTTP/1.1 on the reactor.")
    parser.add_argument("app", metavar="MODULE:CALLABLE",
                        help="the application, e.g. myproject.wsgi:application")
    parser.add_argument("port", metavar="PORT", nargs="?", type=int, default=8000,
                        help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument("-b", "--bind", metavar="ADDR", default="0.0.0.0",
                        help="address to bind (default 0.0.0.0; '::' for IPv6 and IPv4)")
    parser.add_argument("--threads", metavar="N", type=int, default=4,
                        help="application threads (default 4; 0 runs the application on the "
                             "reactor thread: only for applications that never block)")
    parser.add_argument("--workers", metavar="N", type=_workers, default=None,
                        help="pre-fork N worker processes sharing the port (default: serve "
                             "in this process)")
    parser.add_argument("--call", action="store_true",
                        help="CALLABLE is a factory: call it (without arguments) for the "
                             "application")
    parser.add_argument("--url-scheme", metavar="SCHEME", default=None,
                        help="wsgi.url_scheme (default http, or https with --tls-cert; "
                             "https behind a TLS proxy)")
    parser.add_argument("--url-prefix", metavar="PATH", default="",
                        help="the path the application is mounted at (SCRIPT_NAME); other "
                             "paths get 404")
    parser.add_argument("-q", "--quiet", action="store_true", help="no access log")
    parser.add_argument("--max-body", metavar="BYTES", type=_size, default=1 << 30,
                        help="largest request body accepted (default 1G; 413 beyond); bodies "
                             "past 256K wait in a temporary file")
    parser.add_argument("--head-timeout", metavar="SECONDS", type=_seconds, default=10.0,
                        help="time allowed for a request head to arrive (default 10)")
    parser.add_argument("--keepalive-timeout", metavar="SECONDS", type=_seconds, default=5.0,
                        help="idle time before a keep-alive connection is closed (default 5)")
    parser.add_argument("--graceful-timeout", metavar="SECONDS", type=_seconds, default=5.0,
                        help="at exit, time given to requests still running (default 5)")
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    args.tls_context = tls_context_from(parser, args, alpn=["http/1.1"])
    if args.url_scheme is None:
        args.url_scheme = "https" if args.tls_context is not None else "http"
    if not 0 <= args.port <= 65535:
        parser.error("PORT must be in 0..65535")
    if args.threads < 0:
        parser.error("--threads must not be negative")
    prefix = args.url_prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        parser.error("--url-prefix must start with /")
    args.url_prefix = prefix
    return args


@exits_on_ctrl_c
def main(argv=None):
    args = parse_args(argv)
    configure_logging(args.quiet, PROG)
    try:
        application = load_application(args.app, args.call)
    except AppNotFound as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return 2
    options = dict(threads=args.threads, url_scheme=args.url_scheme, script_name=args.url_prefix,
                   max_body=args.max_body, head_timeout=args.head_timeout,
                   keepalive_timeout=args.keepalive_timeout,
                   multiprocess=(args.workers or 0) > 1, tls_context=args.tls_context)

    def run(server):
        # A signal may land on an application thread: the wake-up descriptor makes the
        # reactor's poll return, so the main thread runs the handler (Ctrl-C, SIGTERM) at once.
        wakeup = get_reactor().signal_wakeup_fd()
        if wakeup is not None:
            signal.set_wakeup_fd(wakeup)
        try:
            get_reactor().run()
        finally:
            # (Ctrl-C goes on to exits_on_ctrl_c, SIGTERM's SystemExit to the interpreter.)
            server.shutdown(args.graceful_timeout)

    return serve(PROG, args, lambda **where: WSGIServer(application=application, **where,
                                                         **options), run)


if __name__ == "__main__":
    sys.exit(main())
