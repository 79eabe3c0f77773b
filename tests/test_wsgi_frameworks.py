"""Real frameworks on servers.wsgi: a Flask app and a Django app (``wsgi_frameworks.py``), each
through ``wsgiref.validate.validator``, driven by curl, ``http.client`` and our own client
(``clients.http.fetch``): hello, a form POST, a 10 MiB upload checked by sha256, a streamed
response, ``send_file``/``FileResponse`` through ``wsgi.file_wrapper`` (also unwrapped, where it
must go out with sendfile), and a view that raises.
"""
import hashlib
import http.client
import os
import shutil
import subprocess
import urllib.parse

import pytest

from clients.http import fetch
from servers.wsgi import FileWrapper
from wsgi_apps import serve

flask = pytest.importorskip("flask")
django = pytest.importorskip("django")

import wsgi_frameworks  # noqa: E402

TIMEOUT = 30.0
UPLOAD = 10 << 20
CLIENTS = ["curl", "http.client", "clients.http"]
FRAMEWORKS = ["flask", "django"]
BOUNDARY = "----wsgi-test-boundary-7d3f"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsgi-frameworks")
    upload = os.urandom(UPLOAD)
    path = root / "upload.bin"
    path.write_bytes(upload)
    served = root / "served.bin"
    served.write_bytes(os.urandom(5 << 20))
    return {"upload": upload, "upload_path": str(path), "served": str(served)}


@pytest.fixture(scope="module", params=FRAMEWORKS)
def server(request):
    app = getattr(wsgi_frameworks, request.param + "_app")
    with serve(app) as server:
        yield server


def url(server, path):
    return "http://127.0.0.1:%d%s" % (server.server_address[1], path)


def multipart(filename, content):
    head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n' % (BOUNDARY, filename)).encode()
    return head + content + ("\r\n--%s--\r\n" % BOUNDARY).encode()


def request(client, server, path, method="GET", form=None, upload=None):
    """``(status, body)`` of one request made with ``client``."""
    headers = {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if upload is not None:
        headers["Content-Type"] = "multipart/form-data; boundary=" + BOUNDARY
    if client == "curl":
        args = ["curl", "-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}", url(server, path)]
        if form is not None:
            args += ["--data-binary", body, "-H", "Content-Type: " + headers["Content-Type"]]
        if upload is not None:
            args += ["-F", "file=@%s;type=application/octet-stream" % upload]
        out = subprocess.run(args, capture_output=True, timeout=TIMEOUT, check=True).stdout
        content, _, status = out.rpartition(b"\n")
        return int(status), content
    if upload is not None:
        with open(upload, "rb") as f:
            body = multipart("upload.bin", f.read())
    if client == "http.client":
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
    resp = fetch(url(server, path), method=method, headers=list(headers.items()), body=body,
                 timeout=TIMEOUT)
    return resp.status, resp.body


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture(params=CLIENTS)
def client(request):
    if request.param == "curl" and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return request.param


def test_hello(server, client):
    assert request(client, server, "/hello") == (200, b"Hello, world!\n")


def test_form_post(server, client):
    assert request(client, server, "/form", "POST", form={"name": "caf\u00e9 & co"}) == \
        (200, "hello caf\u00e9 & co".encode())


def test_10_mib_upload_arrives_exact(server, client, data):
    status, body = request(client, server, "/upload", "POST", upload=data["upload_path"])
    assert status == 200
    assert body.decode() == "%s %d" % (hashlib.sha256(data["upload"]).hexdigest(), UPLOAD)


def test_streamed_response(server, client):
    status, body = request(client, server, "/stream?n=50")
    assert status == 200 and body == b"".join(b"block %d\n" % i for i in range(50))


def test_file_through_wsgi_file_wrapper(server, client, data):
    status, body = request(client, server, "/file?path=" + urllib.parse.quote(data["served"]))
    with open(data["served"], "rb") as f:
        assert status == 200 and body == f.read()


def test_error_view_is_a_500_and_the_server_goes_on(server, client):
    status, body = request(client, server, "/error")
    assert status == 500 and b"failed" not in body and b"Traceback" not in body
    assert request(client, server, "/hello")[0] == 200


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_send_file_goes_out_with_sendfile_when_unwrapped(framework, data, monkeypatch):
    def no_blocks(self):
        raise AssertionError("the file was read in blocks, not sent with sendfile")

    monkeypatch.setattr(FileWrapper, "__next__", no_blocks)
    with serve(getattr(wsgi_frameworks, framework + "_app"), validate=False) as server:
        status, body = request("http.client", server,
                               "/file?path=" + urllib.parse.quote(data["served"]))
    with open(data["served"], "rb") as f:
        assert status == 200 and body == f.read()
