"""The WSGI applications of ``bench_wsgi.py``, the same module for every server.

``hello``: a plain WSGI hello world (``Content-Length`` given); ``flask_hello``: Flask's, a
route returning the same text; ``large``: the file named by the environment variable
``WSGI_BENCH_FILE`` through ``wsgi.file_wrapper``.
"""
import os

HELLO = b"Hello, world!\n"
_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]


def hello(environ, start_response):
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


def large(environ, start_response):
    f = open(os.environ["WSGI_BENCH_FILE"], "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 1 << 16)


def __getattr__(name):
    if name == "flask_hello":         # made on first use: the other apps need no Flask
        import flask

        app = flask.Flask("bench")

        @app.route("/")
        def index():
            return flask.Response(HELLO, mimetype="text/plain")

        globals()["flask_hello"] = app
        return app
    raise AttributeError(name)
