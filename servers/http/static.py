"""Static files over the handler API, on the pure logic of :mod:`servers.http.files`.

:class:`StaticFiles` serves a directory: GET and HEAD of files (validators, conditionals, one
byte range), index files, directory listings, and the 301 that adds a directory's slash.
:func:`send_file` answers any request with a file the handler chose.

Speed comes from :class:`FileCache`: per key (a request path, or a file path) it keeps the
prebuilt header fields and, for files up to ``small`` bytes, the body; one ``os.stat`` per
request revalidates the entry (inode, size, mtime and ctime must all be unchanged).  Larger
files are never read whole: the cache keeps a descriptor open on them and the channel sends
them from it with ``os.sendfile``.
"""
import collections
import errno
import os
import stat as stat_module

from . import files
from .app import Handler

__all__ = ["StaticFiles", "FileCache", "send_file"]

_HTML_FIELDS = (("Content-Type", "text/html; charset=utf-8"),)
# Errors that say the process is short of a resource for now, not that the file is missing.
_RESOURCE_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
# O_NONBLOCK: opening a FIFO must not block the loop (it has no effect on regular files).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
# Header names (lowercased) that send a request off the cached fast path.
_CONDITIONAL = frozenset({"if-modified-since", "if-none-match", "if-match", "if-unmodified-since",
                          "range", "if-range"})


class _Entry:
    """What we know about one regular file, valid while its stat identity is unchanged."""

    __slots__ = ("path", "ino", "dev", "size", "mtime_ns", "ctime_ns", "stat", "etag",
                 "last_modified", "content_type", "fields", "validators", "body", "fd")

    def __init__(self, path, st, content_type, body):
        self.path = path
        self.ino = st.st_ino
        self.dev = st.st_dev
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.ctime_ns = st.st_ctime_ns
        self.stat = st
        self.etag = files.etag_for(st)
        self.last_modified = files.http_date(st.st_mtime)
        self.content_type = content_type
        self.validators = (("Last-Modified", self.last_modified), ("ETag", self.etag))
        self.fields = (("Content-Type", content_type), ("Content-Length", str(st.st_size)),
                       ("Last-Modified", self.last_modified), ("ETag", self.etag),
                       ("Accept-Ranges", "bytes"))
        self.body = body
        self.fd = None      # a large file's descriptor while the cache holds one

    def matches(self, st):
        return (st.st_mtime_ns == self.mtime_ns and st.st_size == self.size
                and st.st_ino == self.ino and st.st_ctime_ns == self.ctime_ns
                and st.st_dev == self.dev)


class FileCache:
    """Entries by key, bounded by count and by cached body bytes (oldest evicted first).

    Files up to ``small`` bytes keep their body in the entry.  Larger ones keep an open
    descriptor instead, at most ``max_open`` of them (the least recently used is closed
    first; 0: each request opens its own).  A held descriptor keeps a deleted file's blocks
    allocated until a request finds the entry stale or it is evicted.  A cache that holds
    descriptors belongs to one thread: another could close a descriptor while it is in use.
    """

    def __init__(self, max_entries=4096, max_bytes=64 << 20, small=16 << 10, max_open=64):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.small = small
        self.max_open = max_open
        self._entries = {}
        self._bytes = 0
        self._held = collections.OrderedDict()     # key -> entry with a descriptor, LRU first

    def get(self, key):
        """The entry for ``key`` if its file is unchanged (one ``os.stat``), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            st = os.stat(entry.path)
        except (OSError, ValueError):
            self.discard(key)
            return None
        if entry.matches(st):
            return entry
        self.discard(key)
        return None

    def load(self, key, path, content_type=None):
        """Open ``path`` and cache an entry for it under ``key``.

        Returns ``(entry, fd)``: for a small file ``fd`` is None (the body is in the entry);
        for a large one it is an open descriptor, to be given back with :meth:`release`.
        Raises OSError if the file cannot be opened, IsADirectoryError if it is not a
        regular file.
        """
        fd = os.open(path, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            if not stat_module.S_ISREG(st.st_mode):
                raise IsADirectoryError(path)
            body = None
            if st.st_size <= self.small:
                body = os.read(fd, st.st_size + 1)
                st2 = os.fstat(fd)
                if len(body) != st.st_size or st2.st_mtime_ns != st.st_mtime_ns:
                    st = st2        # changing under our feet: serve what we read, cache nothing
                    body = body[:st.st_size]
                    key = None
        except BaseException:
            os.close(fd)
            raise
        entry = _Entry(path, st, content_type or files.content_type(path), body)
        if body is not None:
            os.close(fd)
            fd = None
        if key is not None:
            self._put(key, entry)
            if fd is not None:
                self._hold(key, entry, fd)
        return entry, fd

    def open(self, key, entry):
        """A descriptor on the file of the large ``entry`` (cached under ``key``), to be given
        back with :meth:`release`; None if the file changed since (the entry is dropped).
        Raises OSError if the file cannot be opened."""
        fd = entry.fd
        if fd is not None:
            self._held.move_to_end(key)
            return fd
        fd = os.open(entry.path, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not entry.matches(st):
            os.close(fd)
            self.discard(key)
            return None
        self._hold(key, entry, fd)
        return fd

    def release(self, entry, fd):
        """Give back a descriptor from :meth:`load` or :meth:`open`: closed unless held."""
        if fd is not None and fd != entry.fd:
            os.close(fd)

    def _hold(self, key, entry, fd):
        if self.max_open <= 0:
            return
        entry.fd = fd
        held = self._held
        held[key] = entry
        while len(held) > self.max_open:
            _close_fd(held.popitem(last=False)[1])

    def _put(self, key, entry):
        self.discard(key)
        entries = self._entries
        size = len(entry.body) if entry.body is not None else 0
        while entries and (len(entries) >= self.max_entries
                           or self._bytes + size > self.max_bytes):
            self.discard(next(iter(entries)))
        if size <= self.max_bytes:
            entries[key] = entry
            self._bytes += size

    def discard(self, key):
        entry = self._entries.pop(key, None)
        if entry is not None:
            if entry.body is not None:
                self._bytes -= len(entry.body)
            if entry.fd is not None:
                del self._held[key]
                _close_fd(entry)

    def close(self):
        """Close every held descriptor (the entries stay; they reopen their files on use)."""
        for entry in self._held.values():
            _close_fd(entry)
        self._held.clear()

    @property
    def open_descriptors(self):
        """How many descriptors the cache holds now."""
        return len(self._held)

    def __len__(self):
        return len(self._entries)


def _close_fd(entry):
    """Close the descriptor a cache entry holds (the entry reopens its file when next used)."""
    os.close(entry.fd)
    entry.fd = None


def serve_entry(request, entry, fd=None):
    """Answer ``request`` from a cache entry: 200, or 304/412/206/416 as its headers ask.
    ``fd`` is a descriptor on the file of a large entry (the caller keeps it)."""
    for name, _ in request.headers:
        if name[0] in "IRir" and name.lower() in _CONDITIONAL:
            return _serve_conditional(request, entry, fd)
    if entry.body is not None:
        request._channel.respond(request, 200, entry.fields, entry.body)
    else:
        request._channel.send_file_span(request, 200, entry.fields, fd, 0, entry.size)


def _serve_conditional(request, entry, fd):
    get = request.headers.get
    status = files.evaluate_conditional(get, entry.stat, entry.etag, request.method)
    if status is None and request.method == "GET":
        rng = get("Range")
        if rng is not None:
            r = files.parse_range(rng, entry.size, get("If-Range"), entry.etag,
                                  entry.stat.st_mtime)
            if r.kind == "partial":
                fields = (("Content-Type", entry.content_type),
                          ("Content-Length", str(r.length)),
                          ("Content-Range", files.content_range(r.start, r.end, entry.size)),
                          ("Last-Modified", entry.last_modified), ("ETag", entry.etag),
                          ("Accept-Ranges", "bytes"))
                if entry.body is not None:
                    request.respond(206, fields, entry.body[r.start:r.end + 1])
                else:
                    request._channel.send_file_span(request, 206, fields, fd, r.start, r.length)
                return
            if r.kind == "unsatisfiable":
                status = 416
    if status is None:
        if entry.body is not None:
            request.respond(200, entry.fields, entry.body)
        else:
            request._channel.send_file_span(request, 200, entry.fields, fd, 0, entry.size)
    elif status == 304:
        request.respond(304, entry.validators)
    elif status == 416:
        request.send_error(416, headers=(
            ("Content-Range", files.content_range(None, None, entry.size)),) + entry.validators)
    else:
        request.send_error(status)


def _serve_from(request, cache, key, path, content_type=None):
    """Serve ``path`` through ``cache`` under ``key``; 403/404 when it cannot be read."""
    entry = cache.get(key)
    fd = None
    try:
        if entry is not None and entry.body is None:
            fd = cache.open(key, entry)
            if fd is None:
                entry = None                # changed since it was cached
        if entry is None:
            entry, fd = cache.load(key, path, content_type)
    except PermissionError:
        request.send_error(403, "Permission denied.")
        return
    except OSError as exc:
        if exc.errno in _RESOURCE_SHORTAGE:
            _unavailable(request, exc)
        else:
            request.send_error(404, "File not found.")
        return
    except ValueError:
        request.send_error(404, "File not found.")
        return
    try:
        serve_entry(request, entry, fd)
    finally:
        cache.release(entry, fd)


def _unavailable(request, exc):
    """503 with Retry-After: the server cannot open the file now (out of descriptors or
    memory); a 404 would tell clients and caches that it does not exist."""
    request.send_error(503, "The server is short of resources (%s); try again shortly."
                       % (exc.strerror or exc), headers=(("Retry-After", "1"),))


# Shared by the servers of every thread, so it holds no descriptors (see FileCache).
_default_cache = FileCache(max_entries=1024, max_bytes=16 << 20, max_open=0)


def send_file(request, path, content_type=None, cache=None):
    """Answer ``request`` with the file at ``path`` (see :meth:`HTTPRequest.send_file`)."""
    _serve_from(request, cache or _default_cache, path, path, content_type)


class StaticFiles(Handler):
    """Serves the files under ``root``: GET and HEAD (405 for other known methods, 501 else).

    No request reaches outside ``root`` (:func:`servers.http.files.resolve`; symlinks leading
    out are refused unless ``follow_symlinks``).  Subclass it to add ``do_POST`` and friends.
    """

    def __init__(self, root=".", follow_symlinks=False, cache=None):
        self.root = os.path.abspath(root)
        self.follow_symlinks = follow_symlinks
        self.cache = cache if cache is not None else FileCache()

    def __repr__(self):
        return "<StaticFiles %r>" % (self.root,)

    def will_read_body(self, request):
        # A GET/HEAD body is never read here: answer without asking for it.
        return type(self)._do.get(request.method) not in (None, StaticFiles.do_GET)

    def do_GET(self, request):
        path = request.path
        cache = self.cache
        entry = cache._entries.get(path)
        if entry is not None:
            try:
                st = os.stat(entry.path)
            except (OSError, ValueError):
                st = None
            if st is not None and entry.matches(st):
                if entry.body is not None:
                    return serve_entry(request, entry)
                if entry.fd is not None:            # held: open() only marks it recently used
                    return serve_entry(request, entry, cache.open(path, entry))
                return _serve_from(request, cache, path, entry.path)
            cache.discard(path)
        r = files.resolve(self.root, path, self.follow_symlinks, request.query)
        kind = r.kind
        if kind == "file":
            _serve_from(request, cache, path, r.fs_path)
        elif kind == "dir":
            self.list_directory(request, r.fs_path)
        elif kind == "redirect":
            request.respond(301, (("Location", r.location),) + _HTML_FIELDS)
        else:
            request.send_error(404, "File not found.")

    do_HEAD = do_GET

    def list_directory(self, request, fs_dir):
        """Answer with the HTML listing of ``fs_dir`` (403 if it cannot be read)."""
        try:
            body = files.listing_html(request.path, fs_dir)
        except PermissionError:
            request.send_error(403, "No permission to list this directory.")
        except OSError as exc:
            if exc.errno in _RESOURCE_SHORTAGE:
                _unavailable(request, exc)
            else:
                request.send_error(404, "File not found.")
        else:
            request.respond(200, _HTML_FIELDS, body)
