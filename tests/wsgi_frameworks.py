"""A Flask application and a Django application with the same six views, for the framework
tests and the benchmark: ``/hello``, ``/form`` (POST ``name``), ``/upload`` (POST a ``file``:
its sha256 and size), ``/stream`` (``?n=`` blocks, no Content-Length), ``/file`` (``?path=``,
through ``wsgi.file_wrapper``: Flask's ``send_file``, Django's ``FileResponse``), ``/error``
(the view raises).  ``flask_app`` and ``django_app`` are the WSGI callables; Django is configured
here, in code (one settings module for the process).
"""
import hashlib

HELLO = b"Hello, world!\n"


def _digest(stream):
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: stream.read(1 << 16), b""):
        digest.update(block)
        size += len(block)
    return "%s %d" % (digest.hexdigest(), size)


def _make_flask():
    import flask

    app = flask.Flask("wsgi_frameworks_flask")

    @app.route("/hello")
    def hello():
        return flask.Response(HELLO, mimetype="text/plain")

    @app.route("/form", methods=["POST"])
    def form():
        return "hello %s" % flask.request.form["name"]

    @app.route("/upload", methods=["POST"])
    def upload():
        return _digest(flask.request.files["file"].stream)

    @app.route("/stream")
    def stream():
        n = int(flask.request.args.get("n", 3))
        return flask.Response((b"block %d\n" % i for i in range(n)), mimetype="text/plain")

    @app.route("/file")
    def file():
        return flask.send_file(flask.request.args["path"], mimetype="application/octet-stream")

    @app.route("/error")
    def error():
        raise RuntimeError("flask view failed")

    return app


def _make_django():
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="tests-only", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
            INSTALLED_APPS=[], DATABASES={}, USE_TZ=True,
            DATA_UPLOAD_MAX_MEMORY_SIZE=None, LOGGING_CONFIG=None)
        django.setup()
    from django.core.wsgi import get_wsgi_application
    return get_wsgi_application()


def _django_views():
    from django.http import FileResponse, HttpResponse, StreamingHttpResponse
    from django.urls import path

    def hello(request):
        return HttpResponse(HELLO, content_type="text/plain")

    def form(request):
        return HttpResponse("hello %s" % request.POST["name"], content_type="text/plain")

    def upload(request):
        return HttpResponse(_digest(request.FILES["file"]), content_type="text/plain")

    def stream(request):
        n = int(request.GET.get("n", 3))
        return StreamingHttpResponse((b"block %d\n" % i for i in range(n)),
                                     content_type="text/plain")

    def file(request):
        return FileResponse(open(request.GET["path"], "rb"),
                            content_type="application/octet-stream")

    def error(request):
        raise RuntimeError("django view failed")

    return [path("hello", hello), path("form", form), path("upload", upload),
            path("stream", stream), path("file", file), path("error", error)]


def __getattr__(name):
    # Built on first use, so that importing the module needs neither framework.
    if name == "flask_app":
        globals()[name] = app = _make_flask()
        return app
    if name == "django_app":
        globals()[name] = app = _make_django()
        return app
    if name == "urlpatterns":
        globals()[name] = patterns = _django_views()
        return patterns
    raise AttributeError(name)
