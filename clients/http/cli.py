"""``python -m clients.http``: a curl subset on the reactor (the options, and the run).

Every option that curl also has means what it means to curl (same spelling, same effect on
the wire, the output and the exit status); the differences are listed in the README's flag
table.  Ours beyond curl: every URL is fetched concurrently (output still in URL order),
redirects are followed by default (``--no-follow``), files are written under a temporary name
and renamed when complete, ``-O`` never overwrites, and ``--timeout`` bounds connect and idle
time (30 s by default).
"""
import argparse
import base64
import logging
import os
import re
import socket
import sys
import textwrap
import time
import weakref
from urllib.parse import quote_plus

from eventloop import Reactor

from .client import DEFAULT_TIMEOUT
from .decoding import ACCEPT_ENCODING
from .messages import USER_AGENT
from .multipart import FormError, form_body, parse_field
from .bodies import FileBody
from .output import OrderedOutput
from .pool import close_idle_connections
from .progress import ProgressDisplay
from .proxy import ProxySettings
from .retry import RetryPolicy
from .tls import make_ssl_context
from .transfer import Transfer, TransferSpec
from .urls import BadURL, check_url, with_query, with_upload_name
from .writeout import render

__all__ = ["main", "build_parser", "PROG", "EXIT_STATUSES"]

PROG = "python -m clients.http"
#: The exit statuses, as in curl (the ones this client can give).
EXIT_STATUSES = (
    (0, "success (with several URLs: the status of the last one, as curl's)"),
    (1, "unsupported protocol (a URL or redirect to something other than http/https; "
        "a malformed status line); failures without a curl counterpart"),
    (2, "bad command line"),
    (3, "malformed URL (or redirect Location)"),
    (5, "cannot resolve the proxy's name"),
    (6, "cannot resolve the server's name"),
    (7, "cannot connect (refused, unreachable, no address of the -4/-6 family)"),
    (8, "invalid response head"),
    (18, "partial transfer: the body ended early"),
    (22, "HTTP status 400 or more, with -f/--fail or --fail-with-body"),
    (23, "write error (output file, standard output, binary data for a terminal)"),
    (26, "read error (a file to upload or post)"),
    (28, "timeout (--connect-timeout, -m/--max-time, --timeout)"),
    (33, "range error: cannot resume (-C) from that offset"),
    (35, "TLS handshake failed"),
    (42, "aborted (a transfer stopped because another failed, with --fail-early)"),
    (43, "the request cannot be written (a method or header field HTTP does not allow)"),
    (47, "too many redirects (--max-redirs), or a redirect loop"),
    (52, "empty reply: the server closed the connection without a response"),
    (55, "send failure: the connection broke while sending"),
    (56, "receive failure: the connection broke while receiving, a refused CONNECT tunnel, "
         "an oversized head, broken chunked framing"),
    (60, "the server's certificate is not trusted (or not for that name)"),
    (61, "cannot decode the Content-Encoding (--compressed), or a decompression bomb"),
    (77, "cannot read the --cacert/--capath certificates"),
    (130, "interrupted"),
)


class Usage(Exception):
    """A problem with the command line, reported before anything is sent; ``code`` is the exit
    status (2; 26 for a file to send that cannot be read, as curl)."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class _Data(argparse.Action):
    """-d and its variants keep their order (they are joined with '&'): (flag, value) pairs."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, self.dest) or []
        items.append((self.const, values))
        setattr(namespace, self.dest, items)


def _help_epilog():
    lines = ["exit status (as curl's):"]
    for code, text in EXIT_STATUSES:
        lines += textwrap.wrap(text, 79, initial_indent="  %3d  " % code,
                               subsequent_indent=" " * 7)
    lines += textwrap.wrap("environment: http_proxy, https_proxy or HTTPS_PROXY, all_proxy or "
                           "ALL_PROXY, no_proxy or NO_PROXY, as curl reads them.", 79)
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG, description="Fetch URLs over HTTP/1.1, concurrently; a curl subset.",
        epilog=_help_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("urls", nargs="*", metavar="URL")
    p.add_argument("--url", action="append", default=[], metavar="URL",
                   help="a URL to fetch (like one on the command line)")
    out = p.add_argument_group("output and errors")
    out.add_argument("-o", "--output", action="append", default=[], metavar="FILE",
                     help="write the body of the next URL to FILE (repeat for more URLs; "
                          "'-' = stdout)")
    out.add_argument("-O", "--remote-name", "--remote-name-all", action="store_true",
                     help="save under the URL's last path segment (never overwrites)")
    out.add_argument("-J", "--remote-header-name", action="store_true",
                     help="with -O: the name the server gives in Content-Disposition (its "
                          "last part only: the file stays in the current directory)")
    out.add_argument("--output-dir", metavar="DIR", help="put -O files in DIR")
    out.add_argument("--create-dirs", action="store_true",
                     help="create the missing directories of -o FILE")
    out.add_argument("-i", "--include", action="store_true",
                     help="include the status line and headers (of every hop) in the output")
    out.add_argument("-I", "--head", action="store_true", help="send HEAD and show the headers")
    out.add_argument("-s", "--silent", action="store_true",
                     help="no progress meter, no error messages")
    out.add_argument("-S", "--show-error", action="store_true",
                     help="with -s: still show error messages")
    out.add_argument("-f", "--fail", action="store_const", const="fail", dest="fail",
                     help="HTTP status >= 400: no body, exit 22")
    out.add_argument("--fail-with-body", action="store_const", const="with-body", dest="fail",
                     help="HTTP status >= 400: the body, and exit 22")
    out.add_argument("--fail-early", action="store_true",
                     help="stop at the first failed transfer, with its exit status")
    out.add_argument("-w", "--write-out", metavar="FORMAT",
                     help="print FORMAT after each transfer (%%{http_code}, %%{time_total}...; "
                          "@FILE or @- read it)")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="trace connections and heads on stderr, as curl does")
    out.add_argument("-#", "--progress-bar", action="store_true",
                     help="a bar instead of the meter (on a terminal)")
    out.add_argument("--no-progress-meter", action="store_true", help="no progress meter")
    req = p.add_argument_group("requests")
    req.add_argument("-X", "--request", metavar="METHOD", help="request method")
    req.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                     help="add a header ('Name:' removes one, 'Name;' sends it empty)")
    for flag, kind, text in (
            (("-d", "--data", "--data-ascii"), "data",
             "request body, POST unless -X; @FILE reads FILE (without CR/LF), @- stdin"),
            (("--data-binary",), "binary", "like -d, @FILE read as it is"),
            (("--data-raw",), "raw", "like -d, without @ meaning a file"),
            (("--data-urlencode",), "urlencode", "[NAME]=VALUE or [NAME]@FILE, URL-encoded")):
        req.add_argument(*flag, action=_Data, const=kind, dest="data", metavar="DATA", help=text)
    req.add_argument("-G", "--get", action="store_true",
                     help="put the -d data in the URL's query, and GET")
    req.add_argument("-F", "--form", action="append", default=[], metavar="NAME=CONTENT",
                     help="multipart form field; NAME=@FILE uploads FILE (streamed), "
                          "NAME=<FILE sends its content")
    req.add_argument("-T", "--upload-file", metavar="FILE",
                     help="PUT FILE (streamed; '-' reads stdin)")
    req.add_argument("-r", "--range", metavar="RANGE", help="ask for bytes RANGE (e.g. 0-499)")
    req.add_argument("-C", "--continue-at", metavar="OFFSET",
                     help="resume from OFFSET ('-': the output file's size; If-Range guards it)")
    req.add_argument("-A", "--user-agent", metavar="NAME", help="User-Agent ('' for none)")
    req.add_argument("-e", "--referer", metavar="URL", help="Referer")
    req.add_argument("-u", "--user", metavar="USER:PASSWORD",
                     help="Basic authentication (not sent to another origin on redirects)")
    req.add_argument("-b", "--cookie", action="append", default=[], metavar="NAME=VALUE",
                     help="send a cookie (not stored; not sent to another origin)")
    req.add_argument("-L", "--location", dest="follow", action="store_true", default=True,
                     help="follow redirects (the default here)")
    req.add_argument("--no-follow", dest="follow", action="store_false",
                     help="do not follow redirects")
    req.add_argument("--max-redirs", "--max-redirects", type=int, default=10, metavar="N",
                     dest="max_redirects", help="at most N redirects (default 10; -1: no limit)")
    net = p.add_argument_group("transport")
    net.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                     help="connect and idle timeout in seconds (0: none; default %(default)s)")
    net.add_argument("--connect-timeout", type=float, metavar="S",
                     help="time allowed to connect (and tunnel, and TLS)")
    net.add_argument("-m", "--max-time", type=float, metavar="S",
                     help="time allowed for each transfer")
    net.add_argument("-k", "--insecure", action="store_true",
                     help="do not verify TLS certificates")
    net.add_argument("--cacert", "--cafile", dest="cafile", metavar="FILE",
                     help="trust the CA certificates in FILE")
    net.add_argument("--capath", metavar="DIR", help="trust the CA certificates in DIR")
    net.add_argument("-4", "--ipv4", dest="family", action="store_const", const=socket.AF_INET,
                     default=socket.AF_UNSPEC, help="IPv4 addresses only")
    net.add_argument("-6", "--ipv6", dest="family", action="store_const", const=socket.AF_INET6,
                     help="IPv6 addresses only")
    net.add_argument("--compressed", action="store_true",
                     help="ask for gzip/deflate and decode it (bounded against bombs)")
    net.add_argument("-x", "--proxy", metavar="[http://]HOST[:PORT]",
                     help="HTTP proxy (CONNECT for https); '' for none")
    net.add_argument("--noproxy", metavar="LIST", help="hosts reached without the proxy")
    net.add_argument("--retry", type=int, default=0, metavar="N",
                     help="retry transient failures N times")
    net.add_argument("--retry-delay", type=float, default=0.0, metavar="S",
                     help="wait S seconds between retries (default: 1, doubling)")
    net.add_argument("--retry-max-time", type=float, default=0.0, metavar="S",
                     help="no retry after S seconds")
    net.add_argument("--retry-all-errors", action="store_true", help="retry every failure")
    net.add_argument("--retry-connrefused", action="store_true",
                     help="retry refused connections too")
    net.add_argument("-Z", "--parallel", action="store_true",
                     help="accepted: transfers always run in parallel here")
    net.add_argument("--http1.1", dest="http11", action="store_true",
                     help="accepted: HTTP/1.1 is all this client speaks")
    return p


# ---------------------------------------------------------------------------- the request

def _read_source(name, stdin):
    """The bytes of ``name`` (a file, or '-' for standard input)."""
    try:
        if name == "-":
            return stdin.read()
        with open(name, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Usage("cannot read %r: %s" % (name, exc.strerror or exc))


def _data_item(kind, value, stdin):
    """One -d/--data-*/--data-urlencode argument as bytes, as curl reads it."""
    if kind == "raw":
        return value.encode("utf-8")
    if kind == "urlencode":
        eq = value.find("=")
        at = value.find("@")
        if at >= 0 and (eq < 0 or at < eq):
            name, content = value[:at], _read_source(value[at + 1:], stdin)
        elif eq >= 0:
            name, content = value[:eq], value[eq + 1:].encode("utf-8")
        else:
            name, content = "", value.encode("utf-8")
        encoded = quote_plus(content, safe="")
        return ("%s=%s" % (name, encoded) if name else encoded).encode("ascii")
    if value.startswith("@"):
        content = _read_source(value[1:], stdin)
        if kind == "binary":
            return content
        # -d @FILE reads text: without CR and LF, and only up to a NUL byte.
        return content.partition(b"\0")[0].replace(b"\r", b"").replace(b"\n", b"")
    return value.encode("utf-8")


def _custom_headers(lines):
    """-H arguments as (name, value) pairs; value None removes the field (``Name:``)."""
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            name, value = name.strip(), value.strip()
            headers.append((name, value if value else None))
        elif line.rstrip().endswith(";") and line.rstrip()[:-1].strip():
            headers.append((line.rstrip()[:-1].strip(), ""))
        else:
            raise Usage("bad header %r (expected 'Name: value')" % (line,))
        if not name or any(c in name for c in " \t\r\n"):
            raise Usage("bad header %r (expected 'Name: value')" % (line,))
    return headers


def _not_replaced(internal, custom):
    """curl's rule: a custom header replaces the internal one of that name (or, with no
    value, removes it; the None value then keeps the client's own default out too)."""
    names = {name.lower() for name, _ in custom}
    return [(name, value) for name, value in internal if name.lower() not in names]


def _internal_headers(args):
    """The fields curl itself sends for these options, in curl's order."""
    internal = []
    if args.user is not None:
        if ":" not in args.user:
            raise Usage("-u %r: give USER:PASSWORD (no password prompt here)" % (args.user,))
        token = base64.b64encode(args.user.encode("utf-8")).decode("ascii")
        internal.append(("Authorization", "Basic " + token))
    if args.range is not None:
        internal.append(("Range", "bytes=" + args.range))
    if args.user_agent is not None:
        internal.append(("User-Agent", args.user_agent or None))
    else:
        internal.append(("User-Agent", USER_AGENT))
    internal.append(("Accept", "*/*"))
    if args.compressed:
        internal.append(("Accept-Encoding", ACCEPT_ENCODING))
    if args.referer is not None:
        if args.referer.endswith(";auto"):
            raise Usage("-e ';auto' is not supported")
        internal.append(("Referer", args.referer))
    if args.cookie:
        for cookie in args.cookie:
            if "=" not in cookie:
                raise Usage("-b %r: reading cookies from a file is not supported" % (cookie,))
        internal.append(("Cookie", ";".join(args.cookie)))
    return internal


def _body(args, stdin):
    """``(method, body, length, content_type, query)`` of -d, -F or -T (all None without)."""
    if args.data:
        data = b"&".join(_data_item(kind, value, stdin) for kind, value in args.data)
        if args.get:
            return None, None, 0, None, data.decode("latin-1")
        return "POST", data, len(data), "application/x-www-form-urlencoded", None
    if args.form:
        try:
            content_type, body = form_body([parse_field(arg) for arg in args.form])
        except FormError as exc:
            raise Usage(str(exc))
        except OSError as exc:
            raise Usage("cannot read %r: %s" % (exc.filename, exc.strerror or exc), 26)
        return "POST", body, body.length, content_type, None
    if args.upload_file == "-":
        body = _read_source("-", stdin)
        return "PUT", body, len(body), None, None
    if args.upload_file is not None:
        try:
            body = FileBody([args.upload_file])
        except OSError as exc:
            raise Usage("cannot read %r: %s" % (args.upload_file, exc.strerror or exc), 26)
        return "PUT", body, body.length, None, None
    return None, None, 0, None, None


def _request_parts(args, stdin):
    """``(method, headers, range_at, body, query)`` common to every URL."""
    modes = [flag for flag, used in (("-d", args.data), ("-F", args.form),
                                     ("-T", args.upload_file)) if used]
    if len(modes) > 1 or (args.head and modes and not (modes == ["-d"] and args.get)):
        raise Usage("only one of -d, -F, -T and -I can say what to send")
    internal = _internal_headers(args)
    method, body, length, content_type, query = _body(args, stdin)
    if args.head:
        method = "HEAD"
    method = args.request or method or "GET"
    if body is not None:
        internal.append(("Content-Length", str(length)))
        if content_type:
            internal.append(("Content-Type", content_type))
    custom = _custom_headers(args.header)
    kept = _not_replaced(internal, custom)
    # curl's order: its own fields, the custom ones, then the body's framing fields
    # (Content-Length, Content-Type) unless replaced; a custom Host comes first, where the
    # client would put its own.
    body_fields = [f for f in kept if f[0] in ("Content-Length", "Content-Type")]
    head_fields = [f for f in kept if f[0] not in ("Content-Length", "Content-Type")]
    hosts = [f for f in custom if f[0].lower() == "host"]
    custom = [f for f in custom if f[0].lower() != "host"]
    headers = hosts + head_fields + custom + body_fields
    # A resume's Range goes where curl puts Range: after Host and Authorization.
    range_at = len(hosts) + sum(1 for name, _ in head_fields[:1] if name == "Authorization")
    return method, headers, range_at, body, query


def _continue_at(value):
    if value is None or value == "-":
        return value
    if not (value.isascii() and value.isdigit()):
        raise Usage("-C %r: an offset in bytes, or '-'" % (value,))
    return int(value)


def _write_out_format(value, stdin):
    """-w FORMAT, or @FILE / @- read as curl reads it: each line cut at its first CR or LF,
    and the lines joined without them."""
    if value is None or not value.startswith("@"):
        return value
    text = _read_source(value[1:], stdin).decode("utf-8", "surrogateescape")
    return "".join(re.split(r"[\r\n]", line, 1)[0] for line in text.split("\n"))


def _specs(args, stdin):
    if args.max_redirects < -1:
        raise Usage("--max-redirs must be >= -1")
    if args.remote_header_name and not args.remote_name:
        raise Usage("-J needs -O")
    urls = args.urls + args.url
    if not urls:
        raise Usage("no URL given")
    method, headers, range_at, body, query = _request_parts(args, stdin)
    policy = RetryPolicy(args.retry, args.retry_delay, args.retry_max_time,
                         args.retry_all_errors, args.retry_connrefused)
    write_out = _write_out_format(args.write_out, stdin)
    resume = _continue_at(args.continue_at)
    specs = []
    for index, text in enumerate(urls):
        output = args.output[index] if index < len(args.output) else None
        spec = TransferSpec(
            url=text, index=index, method=method, headers=headers, range_at=range_at,
            body=body, output=None if output == "-" else output,
            remote_name=args.remote_name and output is None,
            header_name=args.remote_header_name and output is None,
            output_dir=args.output_dir, create_dirs=args.create_dirs,
            stdout_explicit=output == "-", resume=resume, include=args.include or args.head,
            fail=args.fail, write_out=write_out, follow=args.follow,
            max_redirs=(1 << 30) if args.max_redirects == -1 else args.max_redirects,
            compressed=args.compressed, max_time=args.max_time or None, retry=policy,
            referer=args.referer)
        try:
            spec.url = check_url(text)
        except BadURL as exc:
            spec.bad_url = exc
        else:
            if query is not None:
                spec.url = with_query(spec.url, query)
            if args.upload_file is not None and args.upload_file != "-":
                spec.url = with_upload_name(spec.url, args.upload_file)
        specs.append(spec)
    return specs


# ---------------------------------------------------------------------------- the run

class Run:
    """Every transfer of one command line, on one private reactor."""

    def __init__(self, args, specs, stdout, stderr, environ):
        self.reactor = Reactor()
        self.clock = time.monotonic
        self.silent = args.silent
        self.show_error = args.show_error or not args.silent
        self.verbose = args.verbose
        self.fail_early = args.fail_early
        self.timeout = args.timeout if args.timeout > 0 else None
        self.connect_timeout = args.connect_timeout or None
        self.family = args.family
        self.proxy_settings = ProxySettings(args.proxy, args.noproxy, environ)
        self.proxy = self.proxy_settings.select
        self.ssl_context = None
        if args.cafile is not None or args.capath is not None or args.insecure:
            self.ssl_context = make_ssl_context(args.cafile, args.insecure, args.capath)
        self.guard_terminal = _isatty(stdout)
        # Like curl, no meter when a body goes to the terminal; and none with -v.
        to_terminal = self.guard_terminal and any(
            spec.output is None and not spec.remote_name for spec in specs)
        quiet = args.silent or args.no_progress_meter or args.verbose or to_terminal
        self.progress = ProgressDisplay(stderr, "bar" if args.progress_bar else "meter",
                                        enabled=not quiet and _isatty(stderr),
                                        columns=_columns())
        self.stdout = OrderedOutput(stdout)
        self.stderr = OrderedOutput(stderr, binary=False, before_write=self.progress.write_above)
        self.raw_stderr = stderr
        self.transfers = []
        self.pending = 0
        self.early = None
        self._numbers = weakref.WeakKeyDictionary()
        self._connections = 0
        self._warned = set()
        self._ticker = None

    # -- services for the transfers
    def connection_number(self, sock):
        """The number -v shows for a connection (#0, #1...), given on first sight."""
        number = self._numbers.get(sock)
        if number is None:
            number = self._numbers[sock] = self._connections
            self._connections += 1
        return number

    def same_connection(self, sock, number):
        """``sock`` (the TLS socket that now wraps a connection) keeps its number."""
        self._numbers[sock] = number

    def proxy_lines(self, request):
        scheme = request.url.partition(":")[0].lower()
        source = self.proxy_settings.source(scheme)
        if source is None or source[0] == "-x":
            return []
        return ["* Uses proxy env variable %s == '%s'" % source]

    def write_out(self, fmt, values, headers):
        return render(fmt, values, headers, USER_AGENT, warn=self._warn_once)

    def _warn_once(self, message):
        if message not in self._warned:
            self._warned.add(message)
            if not self.silent:
                self.raw_stderr.write("%s: warning: %s\n" % (PROG, message))

    def warn(self, slot, message):
        if not self.silent:
            slot.write("Warning: %s\n" % message)

    def report(self, slot, url, message):
        if self.show_error:
            slot.write("%s: %s: %s\n" % (PROG, url, message))

    def transfer_done(self, transfer):
        self.pending -= 1
        if self.fail_early and transfer.code and self.early is None:
            self.early = transfer
            for other in self.transfers:
                if other.code is None:
                    other.cancel()
        if self.pending <= 0 and self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
            self.progress.render()

    # -- the run
    def run(self, specs):
        for spec in specs:
            transfer = Transfer(self, spec)
            self.transfers.append(transfer)
        self.pending = len(self.transfers)
        for transfer in self.transfers:
            bad = transfer.spec.bad_url
            if bad is not None:
                transfer.refuse(bad.code, "bad URL: %s" % bad)
            else:
                transfer.start()
        if self.progress.enabled and self.pending:
            self._ticker = self.reactor.call_every(0.5, self.progress.tick)
        try:
            self.reactor.run_until_idle()
        finally:
            if self._ticker is not None:
                self._ticker.cancel()
            close_idle_connections(self.reactor)
            self.reactor.close()
        return self.exit_status()

    def exit_status(self):
        if self.stdout.broken is not None:
            self.raw_stderr.write("%s: <stdout>: cannot write output: %s\n" % (
                PROG, getattr(self.stdout.broken, "strerror", None) or self.stdout.broken))
            return 23
        if self.early is not None:
            return self.early.code
        return self.transfers[-1].code if self.transfers else 0


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _columns():
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isascii() and value.isdigit() and int(value) > 20 else None


def main(argv=None, *, stdin=None, stdout=None, stderr=None, environ=None):
    """Run the command line; returns the exit status (never raises, never prints a traceback)."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    stderr = stderr if stderr is not None else sys.stderr
    args = build_parser().parse_intermixed_args(argv)
    loggers = [logging.getLogger(name) for name in ("clients.http", "eventloop")]
    saved = [(logger, logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        # Failures are reported once, one line per URL: no log records, so no tracebacks.
        logger.propagate = False
        logger.setLevel(logging.CRITICAL + 1)
    try:
        specs = _specs(args, stdin)
        try:
            run = Run(args, specs, stdout, stderr, environ)
        except (OSError, ValueError) as exc:
            stderr.write("%s: cannot load the CA certificates: %s\n" % (
                PROG, getattr(exc, "strerror", None) or exc))
            return 77
        status = run.run(specs)
    except Usage as exc:
        stderr.write("%s: error: %s\n" % (PROG, exc))
        return exc.code
    except KeyboardInterrupt:
        stderr.write("%s: interrupted\n" % PROG)
        return 130
    finally:
        for logger, propagate, level in saved:
            logger.propagate = propagate
            logger.setLevel(level)
    try:
        stderr.flush()
    except (OSError, ValueError):
        pass
    if run.stdout.broken is not None and stdout is getattr(sys.stdout, "buffer", None):
        _silence_stdout()
    return status


def _silence_stdout():
    """After a broken pipe, point stdout at /dev/null so the interpreter's exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
