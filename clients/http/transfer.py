"""One URL of ``python -m clients.http``: its attempts (``--retry``), the hops of each attempt
(redirects), what it writes (body, ``-i`` heads, ``-v`` trace, ``-w`` report) and its exit status.

A :class:`Transfer` is at once the consumer of the final response (through
:class:`~clients.http.Redirect` when following) and the observer of every hop
(:meth:`AsyncHTTP._observe`), from which come the ``-v`` lines, the heads ``-i`` shows for each
hop, and the sizes and times of ``-w``.
"""
import dataclasses
import email.utils
import os
import time
from urllib.parse import urljoin, urlsplit

from . import failures, trace
from .client import AsyncHTTP
from .consumers import Redirect
from .decoding import Decoder, DecodingError
from .output import FileOutput, OutputError, ResumeOutput, header_filename, remote_name
from .redirects import REDIRECT_STATUSES
from .retry import FIRST_BACKOFF, Outcome, RetryPolicy, decide, retry_after_seconds

__all__ = ["TransferSpec", "Transfer", "exit_code", "EXIT_CODES"]

#: curl's exit status for each class of failure the client reports.
EXIT_CODES = {
    failures.BAD_URL: 3, failures.BAD_REQUEST: 43, failures.RESOLVE: 6,
    failures.RESOLVE_PROXY: 5, failures.CONNECT: 7, failures.TUNNEL: 56, failures.TLS: 35,
    failures.CERTIFICATE: 60, failures.TIMEOUT: 28, failures.SEND: 55, failures.RECEIVE: 56,
    failures.EMPTY_REPLY: 52, failures.PARTIAL: 18, failures.BAD_RESPONSE: 8,
    failures.TOO_MANY_REDIRECTS: 47, failures.BAD_REDIRECT: 3, failures.REDIRECT_SCHEME: 1,
    failures.UPLOAD: 26, failures.WRITE: 23, failures.DECODING: 61, failures.ABORTED: 42,
    failures.INTERNAL: 1,
}
HTTP_ERROR = 22
RANGE_ERROR = 33
# What curl says about invalid responses, by what our parser found (first match wins).
_BAD_RESPONSE_CODES = (("malformed status line", 1), ("unsupported HTTP version", 1),
                       ("section larger than", 56), ("chunk", 56))
# Bodies smaller than this go out in one piece with the head, and curl counts them in
# size_request too.
_INLINE_BODY = 65536
BINARY_WARNING = ('Binary output can mess up your terminal. Use "--output -" to tell it to '
                  'output it to your terminal anyway, or consider "--output <FILE>" to save '
                  'to a file.')


def exit_code(request):
    """curl's exit status for a request that failed (``request.failure`` is set)."""
    if request.failure == failures.BAD_RESPONSE:
        for words, code in _BAD_RESPONSE_CODES:
            if words in (request.error or ""):
                return code
    return EXIT_CODES.get(request.failure, 1)


@dataclasses.dataclass
class TransferSpec:
    """What the command line asks of one URL."""

    url: str
    index: int = 0
    method: str = "GET"
    headers: list = dataclasses.field(default_factory=list)
    range_at: int = 0                   # where a resume's Range and If-Range go in headers
    body: object = None
    output: str = None                  # a file name; None: standard output
    remote_name: bool = False           # -O: the name comes from the URL (never overwrite)
    header_name: bool = False           # -J: ... or from Content-Disposition
    output_dir: str = None
    create_dirs: bool = False
    stdout_explicit: bool = False       # -o - : binary output to a terminal is fine
    resume: object = None               # None, "-" (from the file's size) or an offset
    include: bool = False
    fail: str = None                    # None, "fail" or "with-body"
    write_out: str = None
    follow: bool = True
    max_redirs: int = 10
    compressed: bool = False
    max_time: float = None
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    referer: str = None
    bad_url: Exception = None           # the command line refused the URL (urls.BadURL)


class Transfer:
    """One URL: started by :meth:`start`, tells ``run.transfer_done(self)`` when it is over,
    with ``code`` (the exit status) set."""

    def __init__(self, run, spec):
        self.run = run
        self.spec = spec
        self.out = run.stdout.slot()
        self.err = run.stderr.slot()
        self.meter = run.progress.add()
        self.code = None
        self.message = None
        self.retries = 0
        self.backoff = FIRST_BACKOFF
        self.first_start = None
        self.hop = None
        self.cancelled = False
        self.quiet = False              # ended without a line of its own on stderr
        self.retry_timer = None

    # ------------------------------------------------------------------ attempts
    def start(self):
        self.first_start = self.run.clock()
        self._attempt()

    def _reset(self):
        now = self.run.clock()
        self.t0 = now
        self.times = {}
        self.hop = None
        self.hops = 0
        self.hop_start = now
        self.request = None
        self.last_head = None           # (status, fields, url) of the last response head
        self.heads = []                 # heads not yet written (-i)
        self.size_header = self.size_request = self.size_upload = 0
        self.num_connects = 0
        self.downloaded = 0
        self.http_connect = 0
        self.number = None              # -v's number of the connection
        self.remote = self.local = None
        self.sink = None
        self.written = False            # something went into the file (a head, a body)
        self.filename = None
        self.discard = False
        self.http_failed = False
        self.decoder = None
        self.own = None                 # (code, message) of a failure found here, not by the client
        self.expired = False
        self.timer = None

    def _attempt(self):
        self._reset()
        spec = self.spec
        try:
            self.offset, extra = self._resume_headers()
        except OutputError as exc:
            self.own = (RANGE_ERROR, str(exc))
            return self._finish(RANGE_ERROR)
        headers = spec.headers
        if extra:       # a resume's Range replaces -r's
            headers = [f for f in headers if f[0] != "Range"]
        headers = headers[:spec.range_at] + extra + headers[spec.range_at:]
        consumer = Redirect(self, spec.max_redirs) if spec.follow else self
        run = self.run
        self.hop = AsyncHTTP(spec.url, consumer, spec.method, headers, spec.body, run.timeout,
                             reactor=run.reactor, ssl_context=run.ssl_context,
                             connect_timeout=run.connect_timeout, family=run.family,
                             proxy=run.proxy, observer=self)
        if spec.max_time:
            self.timer = run.reactor.call_later(spec.max_time, self._expire)

    def _resume_headers(self):
        """The resume offset of this attempt, and the Range/If-Range fields that ask for it."""
        spec = self.spec
        if spec.resume is None:
            return 0, []
        path = self._path()
        size = None
        if path is not None:
            try:
                stat = os.stat(path)
                size = stat.st_size
            except OSError:
                pass
        offset = (size or 0) if spec.resume == "-" else spec.resume
        if path is not None and offset and (size or 0) < offset:
            raise OutputError("cannot resume %r from byte %d: it has only %d bytes"
                              % (path, offset, size or 0))
        if not offset:
            return 0, []
        extra = [("Range", "bytes=%d-" % offset)]
        if size is not None:
            extra.append(("If-Range", email.utils.formatdate(stat.st_mtime, usegmt=True)))
        return offset, extra

    def _path(self):
        """The output file when its name is known before the response (not with -J)."""
        spec = self.spec
        if spec.output is not None:
            return spec.output
        if spec.remote_name:
            name = remote_name(spec.url)
            return os.path.join(spec.output_dir, name) if spec.output_dir else name
        return None

    def _expire(self):
        self.timer = None
        self.expired = True
        if self.hop is not None:
            self._abort_for_time(self.hop)

    def _abort_for_time(self, request):
        request.abort("operation timed out after %g seconds (--max-time)" % self.spec.max_time,
                      failures.TIMEOUT)

    # ------------------------------------------------------------------ the observer
    def _note(self, name):
        self.times.setdefault(name, self.run.clock())

    def _verbose(self, *lines):
        if self.run.verbose:
            self.err.write("".join(line + "\n" for line in lines))

    def _see(self, request):
        """Every observer call starts here: a new request object is the next hop."""
        if request is self.hop and self.hops:
            return
        if self.hops:
            self._verbose("* Issue another request to this URL: '%s'" % request.url)
            self.times = {}
        self.hop = request
        self.hops += 1
        self.hop_start = self.run.clock()
        if self.expired:        # the time ran out between two hops
            request.reactor.call_soon(self._abort_for_time, request)

    def resolving(self, request, host):
        self._see(request)

    def connecting(self, request, sockaddr):
        self._see(request)
        self._note("namelookup")
        if request.via is not None and "connect" not in self.times:
            self._verbose(*self.run.proxy_lines(request))
        self._verbose(trace.trying_line(sockaddr))

    def connected(self, request, sockaddr, local):
        self._see(request)
        self._note("connect")
        self.num_connects += 1
        self.remote, self.local = sockaddr, local
        number = self.number = self.run.connection_number(request.socket)
        host = request.via.host if request.via is not None else urlsplit(request.url).hostname
        self._verbose(trace.connected_line(host, sockaddr, number))

    def reusing(self, request):
        self._see(request)
        self._note("namelookup")
        self._note("connect")
        self.remote = request.addr
        try:
            self.local = request.socket.getsockname()
        except OSError:
            pass
        self._verbose("* Re-using existing connection #%d with host %s" % (
            self.run.connection_number(request.socket), urlsplit(request.url).hostname))

    def tunnel_request(self, request, data):
        self._see(request)
        target = data.split(b" ", 2)[1].decode("latin-1")
        self._verbose("* Establish HTTP proxy tunnel to %s" % target,
                      *trace.head_lines(">", data))

    def tunnel_response(self, request, response):
        self._see(request)
        self.http_connect = response.status
        status = ("HTTP/" + response.version, response.status, response.reason)
        data = trace.head_bytes(status, response.headers.items())
        self.size_header += len(data)
        self._verbose(*trace.head_lines("<", data))
        if 200 <= response.status < 300:
            self._verbose("* CONNECT tunnel established, response %d" % response.status)

    def tls_established(self, request, sock):
        self._see(request)
        self._note("appconnect")
        self.run.same_connection(sock, self.number)
        self._verbose(*trace.tls_lines(sock, urlsplit(request.url).hostname))

    def request_sent(self, request, head):
        self._see(request)
        self._note("pretransfer")
        self.size_request += len(head)
        body = request.body
        if body is not None:
            length = body.length if hasattr(body, "length") else len(body)
            self.size_upload = length
            if isinstance(body, bytes) and length < _INLINE_BODY:
                self.size_request += length
        self.meter.expect(up_total=self.size_upload)
        self._verbose(*trace.head_lines(">", head))

    def interim_head(self, request, event):
        self._see(request)
        self._note("starttransfer")
        self._head(("HTTP/" + event.version, event.status, event.reason), event.headers.items(),
                   interim=True)

    def response_head(self, request):
        self._see(request)
        self._note("starttransfer")
        self.meter.update(up=self.size_upload)
        self.last_head = (request.status, request.header.fields.items(), request.url)
        self._head(request.status, self.last_head[1])

    def _head(self, status, fields, interim=False):
        data = trace.head_bytes(status, fields)
        self.size_header += len(data)
        lines = trace.head_lines("<", data)
        self._verbose(*(lines[:-1] if interim else lines))     # curl: no blank line after a 1xx
        if self.spec.include:
            self.heads.append(data)

    # ------------------------------------------------------------------ the consumer
    def http_header(self, request):
        self.request = request
        if request.status is None:
            if self.to_stdout:
                self._write_heads()     # the heads of the hops before the failure
            return
        status = request.status[1]
        spec = self.spec
        resumed_complete = self.offset and status == 416
        if spec.fail and status >= 400 and not resumed_complete:
            self.http_failed = True
            if spec.fail == "fail":
                self.discard = True
        if self.offset:
            self._check_resume(request, status)
        if not self.discard and spec.compressed and request.method != "HEAD":
            encoding = request.header.get("content-encoding")
            if encoding:
                try:
                    self.decoder = Decoder(encoding)
                except DecodingError as exc:
                    return request.abort(str(exc), failures.DECODING)
        try:
            self._open_sink(request)
        except OutputError as exc:
            return request.abort(str(exc), failures.WRITE)
        self._write_heads()
        if self.discard:
            request.close()
            return
        length = request.header.get("content-length")
        if length and length.isascii() and length.isdigit() and self.decoder is None:
            self.meter.expect(down_total=int(length))

    def _check_resume(self, request, status):
        """A resumed transfer: 206 from the offset appends, 200 starts the file over, 416 means
        it is complete; anything else leaves the file alone."""
        if status == 206:
            value = request.header.get("content-range") or ""
            first = value.partition(" ")[2].partition("-")[0].strip()
            if first != str(self.offset):
                self.own = (RANGE_ERROR, "asked to resume from byte %d, the server sent %r"
                            % (self.offset, value))
                self.discard = True
        elif status == 200:
            self.offset = 0
        else:
            self.discard = True

    @property
    def to_stdout(self):
        return self.spec.output is None and not self.spec.remote_name

    def _open_sink(self, request):
        spec = self.spec
        if self.to_stdout:
            return
        path = self._path()
        if spec.header_name:
            name = header_filename(request.header.get("content-disposition"))
            if name:
                path = os.path.join(spec.output_dir, name) if spec.output_dir else name
        self.filename = path
        if self.discard and (not self.heads or spec.resume is not None):
            return                      # nothing to write (a resumed file is left alone)
        if spec.resume is not None:
            self.sink = ResumeOutput(path, self.offset, spec.create_dirs)
        else:
            self.sink = FileOutput(path, overwrite=not spec.remote_name,
                                   create_dirs=spec.create_dirs)
        self.sink.open(request)

    def _write_heads(self):
        heads, self.heads = self.heads, []
        for data in heads:
            self._write(data, check=False)

    def _write(self, data, check=True):
        if not self.to_stdout:
            if self.sink is not None:
                self.sink.write(data)
                self.written = True
            return
        if check and self.run.guard_terminal and not self.spec.stdout_explicit and b"\0" in data:
            raise OutputError(BINARY_WARNING)
        if self.run.stdout.broken is not None:
            self.quiet = True           # the run reports the broken stdout once
            raise OutputError("cannot write to standard output")
        self.out.write(data)

    def feed(self, data):
        self.downloaded += len(data)
        self.meter.update(down=self.downloaded)
        if self.discard:
            return
        request = self.request
        try:
            pieces = self.decoder.decode(data) if self.decoder is not None else [data]
            for piece in pieces:
                self._write(piece)
        except DecodingError as exc:
            request.abort(str(exc), failures.DECODING)
        except OutputError as exc:
            request.abort(str(exc), failures.WRITE)

    def close(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        request = self.request
        if (self.decoder is not None and request is not None and request.error is None
                and not self.discard):
            try:
                self.decoder.finish()
            except DecodingError as exc:
                self.own = (EXIT_CODES[failures.DECODING], str(exc))
        code = self._attempt_code()
        decision = self._retry(code)
        if self.sink is not None:
            keep = decision is None and (code == 0 or (code == HTTP_ERROR and self.written))
            try:
                self.sink.commit(keep)
            except OutputError as exc:
                self.own = (EXIT_CODES[failures.WRITE], str(exc))
                code = self.own[0]
        if decision is None:
            return self._finish(code)
        self.retries += 1
        self.backoff = decision.next_backoff
        left = self.spec.retry.retries - self.retries
        self.run.warn(self.err, "Problem : %s. Will retry in %g seconds. %d retries left."
                      % (decision.why, decision.delay, left))
        self.meter.restart()
        self.retry_timer = self.run.reactor.call_later(decision.delay, self._retry_now)

    def _retry_now(self):
        self.retry_timer = None
        self._attempt()

    def _attempt_code(self):
        if self.own is not None:
            return self.own[0]
        request = self.request
        if request is None:
            return 1
        if request.error is not None:
            return exit_code(request)
        return HTTP_ERROR if self.http_failed else 0

    def _retry(self, code):
        policy = self.spec.retry
        if not policy.retries:
            return None
        request = self.request
        status = self.last_head[0][1] if self.last_head is not None else None
        retry_after = None
        if request is not None and request.header is not None:
            retry_after = retry_after_seconds(request.header.get("retry-after"), time.time())
        refused = (request is not None and request.failure == failures.CONNECT
                   and "refused" in (request.error or ""))
        outcome = Outcome(code, status if request is None or request.status else None,
                          retry_after, refused)
        return decide(policy, outcome, self.retries, self.backoff,
                      self.run.clock() - self.first_start)

    # ------------------------------------------------------------------ the end
    def refuse(self, code, message):
        """End before any request: the command line refused the URL."""
        self._reset()
        self.own = (code, message)
        self._finish(code)

    def cancel(self):
        """``--fail-early``: another transfer failed; end this one without a report."""
        self.cancelled = True
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
            self._finish(EXIT_CODES[failures.ABORTED])
        elif self.hop is not None:
            self.hop.abort("cancelled: another transfer failed (--fail-early)")

    def failure_message(self, code):
        if self.own is not None:
            return self.own[1]
        request = self.request
        if request is not None and request.error is not None:
            return request.error
        if code == HTTP_ERROR and self.last_head is not None:
            return "HTTP %d %s" % self.last_head[0][1:]
        return None

    def _finish(self, code):
        self.code = code
        self.message = self.failure_message(code) if code else None
        self.meter.finish()
        if not self.cancelled:
            if self.spec.write_out is not None:
                out, err = self.run.write_out(self.spec.write_out, self.values(),
                                              self.last_head[1] if self.last_head else ())
                self.out.write(out.encode("utf-8", "surrogateescape"))
                if err:
                    self.err.write(err)
            if self.message is not None and not self.quiet:
                self.run.report(self.err, self.spec.url, self.message)
        self.out.close()
        self.err.close()
        self.run.transfer_done(self)

    def values(self):
        """The ``-w`` variables of the last attempt."""
        end = self.run.clock()
        total = end - self.t0
        redirect = self.hop_start - self.t0 if self.hops > 1 else 0.0

        def since(name):
            when = self.times.get(name)
            return when - self.t0 if when is not None else 0.0

        status, fields, url = self.last_head or (None, (), None)
        hop = self.hop
        effective = hop.url if hop is not None else self.spec.url
        redirect_url = None
        if status is not None and status[1] in REDIRECT_STATUSES and url == effective:
            location = dict((k.lower(), v) for k, v in fields).get("location")
            if location:
                redirect_url = urljoin(url, location.strip())
        content_type = None
        for name, value in fields:
            if name.lower() == "content-type":
                content_type = value
                break
        remote = trace.address(self.remote) if self.remote else (None, None)
        local = trace.address(self.local) if self.local else (None, None)
        code = status[1] if status is not None else 0
        return {
            "http_code": code, "response_code": code, "http_connect": self.http_connect,
            "http_version": status[0][5:] if status is not None else "0",
            "content_type": content_type, "num_headers": len(fields),
            "num_redirects": max(self.hops - 1, 0), "num_connects": self.num_connects,
            "redirect_url": redirect_url, "url_effective": effective, "url": self.spec.url,
            "urlnum": self.spec.index, "method": hop.method if hop is not None else None,
            "scheme": urlsplit(effective).scheme.upper(), "size_download": self.downloaded,
            "size_header": self.size_header, "size_request": self.size_request,
            "size_upload": self.size_upload,
            "speed_download": int(self.downloaded / total) if total > 0 else 0,
            "speed_upload": int(self.size_upload / total) if total > 0 else 0,
            "remote_ip": remote[0], "remote_port": remote[1], "local_ip": local[0],
            "local_port": local[1], "ssl_verify_result": 0, "proxy_ssl_verify_result": 0,
            "num_certs": 0, "exitcode": self.code, "errormsg": self.message,
            "filename_effective": self.filename, "referer": self.spec.referer,
            "time_namelookup": since("namelookup"), "time_connect": since("connect"),
            "time_appconnect": since("appconnect"), "time_pretransfer": since("pretransfer"),
            "time_starttransfer": since("starttransfer"), "time_redirect": redirect,
            "time_total": total,
        }
