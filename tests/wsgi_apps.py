"""The WSGI applications the tests serve, and :func:`serve`, which runs one in-process.

Every application goes through ``wsgiref.validate.validator`` when served (``serve`` wraps it),
so each response of the suite is checked against PEP 3333 on both sides.  The module is also
importable as ``tests.wsgi_apps`` for ``python -m servers.wsgi tests.wsgi_apps:NAME``.
"""
import contextlib
import hashlib
import json
import logging
import threading
import wsgiref.validate

from eventloop import Reactor

__all__ = ["serve", "hello", "echo_environ", "upload", "streamed", "Recorder"]

HELLO = b"Hello, world!\n"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def make_factory():
    """A factory for ``--call``."""
    return hello


not_callable = 42


def stuck(environ, start_response):
    """Never returns (for a while): says so on stderr first."""
    import sys
    import time
    print("stuck: called", file=sys.stderr, flush=True)
    time.sleep(3600)


def echo_environ(environ, start_response):
    """The environ's str values (and the wsgi.* flags) as JSON, plus the body's length."""
    size = 0
    while True:
        data = environ["wsgi.input"].read(65536)
        if not data:
            break
        size += len(data)
    shown = {k: v for k, v in environ.items() if type(v) is str}
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.url_scheme"):
        shown[key] = environ[key]
    shown["wsgi.version"] = list(environ["wsgi.version"])
    shown["body_size"] = size
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def upload(environ, start_response):
    """The sha256 and size of the body, read in lines (so both read paths are used)."""
    digest = hashlib.sha256()
    size = 0
    stream = environ["wsgi.input"]
    while True:
        line = stream.readline(100000)
        if not line:
            break
        digest.update(line)
        size += len(line)
    body = ("%s %d" % (digest.hexdigest(), size)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def streamed(environ, start_response):
    """``n`` blocks of ``size`` bytes (query ``n=..&size=..``), no Content-Length."""
    query = dict(part.split("=") for part in environ["QUERY_STRING"].split("&") if "=" in part)
    n, size = int(query.get("n", 3)), int(query.get("size", 5))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (bytes([65 + i % 26]) * size for i in range(n))


class Recorder:
    """Wraps an application to record, thread-safely, each call and each close() of what it
    returned (``calls``, ``closed``), with events to wait on."""

    def __init__(self, app):
        self.app = app
        self.calls = 0
        self.closed = 0
        self.called = threading.Event()
        self.closed_event = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.calls += 1
        self.called.set()
        result = self.app(environ, start_response)
        return _Closing(result, self)


class _Closing:
    def __init__(self, result, recorder):
        self._it = iter(result)
        self._result = result
        self._recorder = recorder

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
        with self._recorder._lock:
            self._recorder.closed += 1
        self._recorder.closed_event.set()


@contextlib.contextmanager
def serve(app, validate=True, **options):
    """Run ``WSGIServer`` for ``app`` (through the validator unless ``validate`` is False) on a
    free port of 127.0.0.1 in a reactor thread: yields the server."""
    from launchers import reactor_thread
    from servers.wsgi import WSGIServer

    reactor = Reactor()
    if validate:
        app = wsgiref.validate.validator(app)
    server = WSGIServer(("127.0.0.1", 0), app, reactor=reactor, **options)
    try:
        with reactor_thread(reactor):
            yield server
    finally:
        server.handler.shutdown(2.0)


class LogCapture(logging.Handler):
    """Records of a logger, for tests that look for a log line."""

    def __init__(self, name):
        super().__init__(logging.DEBUG)
        self.records = []
        self._logger = logging.getLogger(name)

    def __enter__(self):
        self._logger.addHandler(self)
        self._old_level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)

    def emit(self, record):
        self.records.append(record)

    def text(self):
        return "\n".join(self.format(r) for r in self.records)
