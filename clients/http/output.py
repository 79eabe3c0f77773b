"""Where the command line's transfers write: standard output and error in URL order, and files.

Transfers run concurrently, but what they print comes out as if they had run one after the
other: each transfer gets a :class:`Slot` of :class:`OrderedOutput`; the first unfinished slot
writes through, later ones are held (bodies spill to a temporary file past 8 MiB) until every
slot before them is closed.  Files are written by :class:`FileOutput` under a temporary name
and renamed when the transfer succeeds (so no partial file is ever left under the name), or,
when resuming (``-C``), in place, so that an interrupted transfer leaves what it got.
"""
import email.utils
import os
import tempfile
from urllib.parse import unquote, urlsplit

from .consumers import SaveToFile

__all__ = ["OrderedOutput", "Slot", "FileOutput", "ResumeOutput", "remote_name",
           "header_filename", "OutputError"]


class OutputError(Exception):
    """A file cannot be created or written; the message says which and why."""


class OrderedOutput:
    """One stream shared by transfers in order; ``binary`` streams spool bytes to disk."""

    def __init__(self, stream, binary=True, before_write=None):
        self.stream = stream
        self.binary = binary
        self.before_write = before_write    # called with the data about to be written
        self.slots = []
        self.head = 0
        self.broken = None

    def slot(self):
        slot = Slot(self, len(self.slots))
        self.slots.append(slot)
        return slot

    def write(self, data):
        if self.broken is not None or not data:
            return
        try:
            if self.before_write is not None:
                self.before_write(data)
            else:
                self.stream.write(data)
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            self.broken = exc

    def advance(self):
        while self.head < len(self.slots):
            slot = self.slots[self.head]
            slot.drain()
            if not slot.closed:
                return
            self.head += 1


class Slot:
    """One transfer's share of an :class:`OrderedOutput`."""

    def __init__(self, output, index):
        self.output = output
        self.index = index
        self.closed = False
        self.written = 0
        self._spool = None

    @property
    def live(self):
        """True when what is written now reaches the stream now."""
        return self.output.head == self.index

    def write(self, data):
        self.written += len(data)
        if self.live:
            self.output.write(data)
            return
        if self._spool is None:
            self._spool = (tempfile.SpooledTemporaryFile(max_size=8 << 20) if self.output.binary
                           else [])
        if self.output.binary:
            self._spool.write(data)
        else:
            self._spool.append(data)

    def drain(self):
        spool, self._spool = self._spool, None
        if spool is None:
            return
        if not self.output.binary:
            self.output.write("".join(spool))
            return
        spool.seek(0)
        while True:
            block = spool.read(1 << 16)
            if not block:
                break
            self.output.write(block)
        spool.close()

    def close(self):
        if not self.closed:
            self.closed = True
            self.output.advance()


def remote_name(url):
    """The file name ``-O`` saves ``url`` under: the last path segment, else index.html."""
    return _safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1])) or "index.html"


def _safe_name(name):
    """``name`` reduced to a plain file name in the current directory (no directory part, no
    control characters), or "" if nothing is left."""
    name = os.path.basename(name.replace("\\", "/")).strip()
    if name in ("", ".", "..") or not name.isprintable():
        return ""
    return name


def header_filename(value):
    """``-J``: the file name a Content-Disposition value proposes, kept to a plain name (no
    directory part, so the file stays in the current directory), or "" for none."""
    if not value:
        return ""
    lowered = value.lower()
    at = lowered.find("filename=")
    while at > 0 and lowered[at - 1] not in "; \t":
        at = lowered.find("filename=", at + 1)
    if at < 0:
        return ""
    rest = value[at + len("filename="):].lstrip()
    if rest.startswith('"'):
        end = rest.find('"', 1)
        name = rest[1:end] if end > 0 else rest[1:]
    else:
        name = rest.split(";", 1)[0].strip()
    return _safe_name(name)


def _http_date_seconds(value):
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, AttributeError):
        return None


def _failed(what, path, exc):
    return OutputError("cannot %s %r: %s" % (what, path, exc.strerror or exc))


class _Target:
    """A file the body goes to: ``path``, whose directories ``create_dirs`` makes first."""

    def __init__(self, path, create_dirs):
        self.path = path
        self.create_dirs = create_dirs

    def _make_dirs(self):
        if self.create_dirs:
            folder = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise _failed("create the directory", folder, exc) from None

    def write(self, data):
        try:
            self._put(data)
        except OSError as exc:
            raise _failed("write", self.path, exc) from None


class FileOutput(_Target):
    """A transfer's body to ``path``, through :class:`~clients.http.SaveToFile`: written under a
    temporary name beside it and renamed over it at :meth:`commit` if the transfer succeeded
    (``overwrite=False``: only if the name is still free)."""

    def __init__(self, path, overwrite=True, create_dirs=False):
        super().__init__(path, create_dirs)
        self.overwrite = overwrite
        self._save = None
        self._ok = False

    def open(self, request):
        self._make_dirs()
        if not self.overwrite and os.path.exists(self.path):
            raise OutputError("refusing to overwrite existing file %r" % (self.path,))
        self._save = SaveToFile(self.path, accept=lambda request: self._ok,
                                overwrite=self.overwrite)
        try:
            self._save.http_header(request)
        except OSError as exc:
            self._save = None
            raise _failed("create", self.path, exc) from None

    def _put(self, data):
        self._save.feed(data)

    def commit(self, ok):
        """Rename into place if ``ok`` and the request succeeded, else remove the temporary."""
        save, self._save = self._save, None
        if save is None:
            return
        self._ok = ok
        save.close()
        if save.error:
            raise OutputError(save.error)


class ResumeOutput(_Target):
    """``-C``: the body written into ``path`` itself from byte ``offset`` on (the bytes before
    it are kept), so that an interrupted transfer can be resumed in turn (``offset`` 0: the
    server sent the whole representation and the file starts over).  The file's modification
    time is set to the response's Last-Modified, which the next resume sends as If-Range."""

    def __init__(self, path, offset, create_dirs=False):
        super().__init__(path, create_dirs)
        self.offset = offset
        self._file = None
        self._modified = None

    def open(self, request):
        self._make_dirs()
        try:
            self._file = open(self.path, "r+b" if os.path.exists(self.path) else "w+b")
            self._file.seek(self.offset)
            self._file.truncate()
        except OSError as exc:
            raise _failed("write", self.path, exc) from None
        modified = request.header.get("last-modified") if request.header is not None else None
        self._modified = _http_date_seconds(modified) if modified else None

    def _put(self, data):
        self._file.write(data)

    def commit(self, ok):
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.close()
            if self._modified is not None:
                os.utime(self.path, (self._modified, self._modified))
        except OSError as exc:
            raise _failed("write", self.path, exc) from None
