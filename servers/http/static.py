"""Static files over the handler API, on the logic of :mod:`servers.http.files`.

:class:`StaticFiles` serves a directory: GET and HEAD of files (validators, conditionals, byte
ranges, several as ``multipart/byteranges``), index files, directory listings, and the 301 that
adds a directory's slash.  :func:`send_file` answers any request with a file the handler chose.

Speed comes from :class:`FileCache`: per key (a request path in its canonical spelling, so
that other spellings of it cost no entry of their own, or a file path) it keeps the
prebuilt header fields and, for files up to ``small`` bytes, the body; each request revalidates
the entry (inode, size, mtime and ctime must all be unchanged) with one ``os.stat``, or, for a
file :class:`StaticFiles` found, by looking its path up again beneath the root, race-free (one
``fstatat`` for a file directly in the root, one more ``openat`` per directory on the way).
Larger files are never read whole: the cache keeps a descriptor open on them and the channel
sends them from it with ``os.sendfile``.  Directory listings are rendered once and served from
:class:`ListingCache` while their directory is unchanged (one ``fstat``), for at most a second.
"""
import collections
import hashlib
import logging
import os
import secrets
import stat as stat_module
import time
import weakref

from . import files
from .app import Handler
from .messages import http_date

__all__ = ["StaticFiles", "FileCache", "ListingCache", "send_file"]

log = logging.getLogger("servers.http")

_HTML_FIELDS = (("Content-Type", "text/html; charset=utf-8"),)
# O_NONBLOCK: opening a FIFO must not block the loop (it has no effect on regular files).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_LIST_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
# Multipart/byteranges bodies: up to _PREREAD bytes of a large file are read whole and sent
# in one go; more are streamed in reads of _BLOCK, at most _BURST bytes per turn of the loop.
_PREREAD = 64 << 10
_BLOCK = 64 << 10
_BURST = 256 << 10
# Header names (lowercased) that send a request off the cached fast path.
_CONDITIONAL = frozenset({"if-modified-since", "if-none-match", "if-match", "if-unmodified-since",
                          "range", "if-range"})


class _Entry:
    """What we know about one regular file, valid while its stat identity is unchanged.

    ``root`` and ``names``: where :class:`StaticFiles` found it (a :class:`files.Root` and the
    path's components beneath it), and so where it is looked up again; both None for a file
    named by its ``path`` (:func:`send_file`).
    """

    __slots__ = ("path", "root", "names", "relpath", "ino", "dev", "size", "mtime_ns", "ctime_ns", "stat",
                 "etag", "last_modified", "content_type", "fields", "validators", "body", "fd")

    def __init__(self, path, st, content_type, body, root=None, names=None):
        self.path = path
        self.root = root
        self.names = names
        self.relpath = "/".join(names) if names else None
        self.ino = st.st_ino
        self.dev = st.st_dev
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.ctime_ns = st.st_ctime_ns
        self.stat = st
        self.etag = files.etag_for(st)
        self.last_modified = http_date(st.st_mtime)
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

    def restat(self):
        """The stat of the entry's file now, found as it was found (OSError if it is gone)."""
        if self.root is None:
            return os.stat(self.path)
        return self.root.stat_vetted(self.relpath)

    def reopen(self):
        """A new descriptor on the entry's file, found as it was found."""
        if self.root is None:
            return os.open(self.path, _OPEN_FLAGS)
        return self.root.open(self.names)


class FileCache:
    """Entries by key, bounded by count and by bytes of cached bodies and keys (oldest evicted
    first).

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
        """The entry for ``key`` if its file is unchanged (:meth:`_Entry.restat`), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            st = entry.restat()
        except (OSError, ValueError):
            self.discard(key)
            return None
        if entry.matches(st):
            return entry
        self.discard(key)
        return None

    def load(self, key, path, content_type=None, *, root=None, names=None, fd=None):
        """Open ``path`` and cache an entry for it under ``key``.

        With ``root`` (a :class:`files.Root`) and ``names``, the file is the one ``names`` lead
        to beneath ``root``, and the entry is revalidated and reopened there (race-free);
        ``path`` then only names it.  ``fd``, if given, is a descriptor already open on the
        file for reading, which the cache takes over.  Returns ``(entry, fd)``: for a small
        file ``fd`` is None (the body is in the entry); for a large one it is an open
        descriptor, to be given back with :meth:`release`.  Raises OSError if the file cannot
        be opened, IsADirectoryError if it is not a regular file.
        """
        if fd is None:
            fd = os.open(path, _OPEN_FLAGS) if root is None else root.open(names)
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
        entry = _Entry(path, st, content_type or files.content_type(path), body, root, names)
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
        fd = entry.reopen()
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
        size = _key_size(key) + (len(entry.body) if entry.body is not None else 0)
        while entries and (len(entries) >= self.max_entries
                           or self._bytes + size > self.max_bytes):
            self.discard(next(iter(entries)))
        if size <= self.max_bytes:
            entries[key] = entry
            self._bytes += size

    def discard(self, key):
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= _key_size(key) + (len(entry.body) if entry.body is not None else 0)
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
        request.respond(200, entry.fields, entry.body)
    else:
        request.send_file_span(200, entry.fields, fd, 0, entry.size)


def _serve_conditional(request, entry, fd):
    get = request.headers.get
    status = files.evaluate_conditional(get, entry.stat, entry.etag, request.method)
    if status is None and request.method == "GET":
        rng = get("Range")
        if rng is not None:
            r = files.parse_ranges(rng, entry.size, get("If-Range"), entry.etag,
                                   entry.stat.st_mtime)
            if r.kind == "partial":
                ((start, end),) = r.spans
                length = end - start + 1
                fields = (("Content-Type", entry.content_type),
                          ("Content-Length", str(length)),
                          ("Content-Range", files.content_range(start, end, entry.size)),
                          ("Last-Modified", entry.last_modified), ("ETag", entry.etag),
                          ("Accept-Ranges", "bytes"))
                if entry.body is not None:
                    request.respond(206, fields, entry.body[start:end + 1])
                else:
                    request.send_file_span(206, fields, fd, start, length)
                return
            if r.kind == "multipart":
                return _send_byteranges(request, entry, fd, r.spans)
            if r.kind == "unsatisfiable":
                status = 416
    if status is None:
        if entry.body is not None:
            request.respond(200, entry.fields, entry.body)
        else:
            request.send_file_span(200, entry.fields, fd, 0, entry.size)
    elif status == 304:
        request.respond(304, entry.validators)
    elif status == 416:
        request.send_error(416, headers=(
            ("Content-Range", files.content_range(None, None, entry.size)),) + entry.validators)
    else:
        request.send_error(status)


# --------------------------------------------------------------------- multipart/byteranges

def _send_byteranges(request, entry, fd, spans):
    """206 ``multipart/byteranges``, a part per span: sliced from a cached body or read whole
    when the parts are small (the boundary is then one that occurs in none of them), else
    streamed from ``fd`` in bounded memory (:class:`_PartsStream`)."""
    if entry.body is not None or sum(last - first + 1 for first, last in spans) <= _PREREAD:
        if entry.body is not None:
            parts = [entry.body[first:last + 1] for first, last in spans]
        else:
            parts = [os.pread(fd, last - first + 1, first) for first, last in spans]
            if any(len(part) != last - first + 1 for part, (first, last) in zip(parts, spans)):
                return _unavailable(request, "The file changed while it was read")
        boundary = _boundary(parts)
        heads, tail, length = files.byteranges_framing(spans, entry.size, entry.content_type,
                                                        boundary)
        body = b"".join([piece for pair in zip(heads, parts) for piece in pair] + [tail])
        request.respond(206, _multipart_fields(entry, boundary, length), body)
        return
    boundary = _boundary()
    heads, tail, length = files.byteranges_framing(spans, entry.size, entry.content_type,
                                                    boundary)
    try:
        stream = _PartsStream(request, fd, spans, heads, tail, boundary)
    except OSError as exc:              # no descriptor left for its duplicate
        return _refuse(request, exc)
    request.start_response(206, _multipart_fields(entry, boundary, length))
    stream.pump()


def _boundary(parts=()):
    """A multipart boundary occurring in none of ``parts``: 32 random hex digits, drawn after
    the file was written, so no file can be made to hold the boundary of its response."""
    boundary = secrets.token_hex(16)
    while any(boundary.encode("ascii") in part for part in parts):
        boundary = secrets.token_hex(16)    # each draw collides with odds below len / 2**128
    return boundary


def _multipart_fields(entry, boundary, length):
    return (("Content-Type", "multipart/byteranges; boundary=" + boundary),
            ("Content-Length", str(length)), ("Last-Modified", entry.last_modified),
            ("ETag", entry.etag), ("Accept-Ranges", "bytes"))


class _PartsStream:
    """Writes the parts of a multipart/byteranges body after its head has been sent: reads the
    file with ``os.pread`` from its own duplicate of the descriptor, at most ``_BURST`` bytes
    per turn of the loop, and goes on only when the connection's output has drained, so
    memory stays bounded by a burst however large the parts.  A part found to hold the
    boundary, a file that shrank and a read error end the connection (the response cannot
    be completed honestly).  The duplicate is closed at the end, or when the stream is
    dropped: the channel drops its ``when_drained`` callbacks as it closes."""

    def __init__(self, request, fd, spans, heads, tail, boundary):
        self.request = request
        self.fd = os.dup(fd)
        self._close = weakref.finalize(self, os.close, self.fd)
        self.items = collections.deque()        # head bytes, and [offset, count] to read
        for head, (first, last) in zip(heads, spans):
            self.items.append(head)
            self.items.append([first, last - first + 1])
        self.items.append(tail)
        self.mark = boundary.encode("ascii")
        self.carry = b""                        # the last len(mark) - 1 bytes of the part

    def pump(self):
        request = self.request
        items = self.items
        budget = _BURST
        try:
            while items and budget > 0 and not request.closed:
                item = items[0]
                if type(item) is bytes:
                    data = items.popleft()
                    self.carry = b""
                else:
                    data = os.pread(self.fd, min(item[1], _BLOCK), item[0])
                    if not data:
                        return self._abort("%s shrank while being sent" % request.path)
                    mark = self.mark
                    if mark in data or mark in self.carry + data[:len(mark) - 1]:
                        return self._abort("a part of %s holds its boundary" % request.path)
                    end = data if len(data) >= len(mark) else self.carry + data
                    self.carry = end[1 - len(mark):]
                    item[0] += len(data)
                    item[1] -= len(data)
                    if not item[1]:
                        items.popleft()
                request.write(data)
                budget -= len(data)
        except OSError as exc:
            return self._abort("cannot read %s: %s" % (request.path, exc.strerror or exc))
        if request.closed:
            self._close()
        elif items:
            request.when_drained(self.pump)
        else:
            self._close()
            request.finish()

    def _abort(self, why):
        self._close()
        self.request.abort(why)


# ------------------------------------------------------------------------------ serving

def _serve_and_release(request, cache, entry, fd):
    try:
        serve_entry(request, entry, fd)
    finally:
        cache.release(entry, fd)


def _serve_from(request, cache, key, path, content_type=None):
    """Serve ``path`` through ``cache`` under ``key``; 403/404/503 when it cannot be read."""
    try:
        entry = cache.get(key)
        fd = None
        if entry is not None and entry.body is None:
            fd = cache.open(key, entry)
            if fd is None:
                entry = None                # changed since it was cached
        if entry is None:
            entry, fd = cache.load(key, path, content_type)
    except (OSError, ValueError) as exc:
        return _refuse(request, exc)
    _serve_and_release(request, cache, entry, fd)


def _refuse(request, exc):
    """Answer a request whose file could not be found or opened: 403 (not readable), 503
    (the process is short of descriptors or memory) or 404."""
    if isinstance(exc, PermissionError):
        request.send_error(403, "Permission denied.")
    elif getattr(exc, "errno", None) in files.RESOURCE_SHORTAGE:
        _unavailable(request, "The server is short of resources (%s)" % (exc.strerror or exc))
    else:
        request.send_error(404, "File not found.")


def _unavailable(request, why):
    """503 with Retry-After: the file cannot be served now (e.g. the process is out of
    descriptors or memory); a 404 would tell clients and caches that it does not exist."""
    request.send_error(503, why + "; try again shortly.", headers=(("Retry-After", "1"),))


# Shared by the servers of every thread, so it holds no descriptors (see FileCache).
_default_cache = FileCache(max_entries=1024, max_bytes=16 << 20, max_open=0)


def send_file(request, path, content_type=None, cache=None):
    """Answer ``request`` with the file at ``path`` (see :meth:`HTTPRequest.send_file`)."""
    _serve_from(request, cache or _default_cache, path, path, content_type)


def _link_target(root, names):
    """For :func:`files.listing_html`: what a request for a symlink in the directory that
    ``names`` lead to beneath ``root`` would serve (a regular file or a directory), or None."""
    def target(entry):
        try:
            st = root.stat(names + (entry.name,))
        except (OSError, ValueError):
            return None
        if stat_module.S_ISREG(st.st_mode) or stat_module.S_ISDIR(st.st_mode):
            return st
        return None
    return target


class StaticFiles(Handler):
    """Serves the files under ``root``: GET and HEAD (405 for other known methods, 501 else).

    No request reaches outside ``root``: every path is looked up beneath a descriptor on it,
    race-free (:class:`servers.http.files.Root`; symlinks leading out are refused unless
    ``follow_symlinks``).  ``default_type`` is the Content-Type of files whose extension is
    unknown (or missing).  Subclass it to add ``do_POST`` and friends.
    """

    def __init__(self, root=".", follow_symlinks=False, cache=None, *,
                 default_type=files.DEFAULT_TYPE, listings=None):
        self.root = os.path.abspath(root)
        self.follow_symlinks = follow_symlinks
        self.default_type = default_type
        self.cache = cache if cache is not None else FileCache()
        self.listings = listings if listings is not None else ListingCache()
        self.tree = files.Root(self.root, follow_symlinks)

    def __repr__(self):
        return "<StaticFiles %r>" % (self.root,)

    def will_read_body(self, request):
        # A GET/HEAD body is never read here: answer without asking for it.
        return type(self)._do.get(request.method) not in (None, StaticFiles.do_GET)

    def do_GET(self, request):
        path = request.path
        cache = self.cache
        tree = self.tree
        entry = cache._entries.get(path)
        if entry is None:
            # Files are cached under one spelling of their path (files.canonical_path): "//a"
            # and "/%61" find the entry of "/a", and cost no entry of their own.
            key = files.canonical_path(path)
            if key is None:
                return request.send_error(404, "File not found.")
            if key != path:
                entry = cache._entries.get(key)
        else:
            key = path
        if entry is not None:
            # The cached path: the entry is served while the request path still leads, beneath
            # the root, to the very file a race-free lookup vetted when the entry was made
            # (one fstatat, compared with its identity): a symlink swapped in since leads to
            # another file, and then to a fresh lookup.
            try:
                st = entry.restat() if entry.root is tree else None
            except (OSError, ValueError):
                st = None
            if st is not None and entry.matches(st):
                if entry.body is not None:
                    return serve_entry(request, entry)
                try:
                    fd = cache.open(key, entry)         # the held one, or opened beneath the root
                except (OSError, ValueError) as exc:
                    return _refuse(request, exc)
                if fd is not None:
                    return _serve_and_release(request, cache, entry, fd)
            cache.discard(key)
        try:
            r = tree.lookup(path, request.query)
        except OSError as exc:
            return _refuse(request, exc)
        kind = r.kind
        if kind == "file":
            try:
                entry, fd = cache.load(key, r.fs_path,
                                       files.content_type(r.fs_path, self.default_type),
                                       root=tree, names=r.names, fd=r.fd)
            except (OSError, ValueError) as exc:
                return _refuse(request, exc)
            _serve_and_release(request, cache, entry, fd)
        elif kind == "dir":
            try:
                self.list_directory(request, r.fd)
            finally:
                os.close(r.fd)
        elif kind == "redirect":
            request.respond(301, (("Location", r.location),) + _HTML_FIELDS)
        else:
            request.send_error(404, "File not found.")

    do_HEAD = do_GET

    def list_directory(self, request, fs_dir):
        """Answer with the HTML listing of the directory ``request.path`` leads to: ``fs_dir``,
        its path or a descriptor open on it (which stays the caller's).  403 if it cannot be
        read.  A symlink in it is shown with its target's size and date only if a request for
        it would be served.  The page comes from :class:`ListingCache` (rendered again only
        when the directory changed or the page is older than its ``max_age``), with an ETag
        and Last-Modified, so a conditional request gets 304 and HEAD renders nothing new."""
        try:
            st = os.fstat(fs_dir) if isinstance(fs_dir, int) else os.stat(fs_dir)
            page = self.listings.page(request.path, fs_dir, st, self._render_listing)
        except PermissionError:
            return request.send_error(403, "No permission to list this directory.")
        except OSError as exc:
            return _refuse(request, exc)
        status = files.evaluate_conditional(request.headers.get, page, page.etag, request.method)
        if status is None:
            request.respond(200, page.fields, page.body)
        elif status == 304:
            request.respond(304, page.validators)
        else:
            request.send_error(status)

    def _render_listing(self, url_path, fs_dir):
        """The listing page of ``fs_dir`` (see :func:`files.listing_page`)."""
        names = files.request_names(url_path)
        link_target = None if names is None else _link_target(self.tree, names)
        fd = None
        try:
            if isinstance(fs_dir, int):
                fd = os.open(".", _LIST_FLAGS, dir_fd=fs_dir)
            return files.listing_page(url_path, fs_dir if fd is None else fd,
                                      link_target=link_target)
        finally:
            if fd is not None:
                os.close(fd)


class _Listing:
    """One rendered listing page, valid while its directory's stamp is unchanged and until
    ``expires``.  ``st_mtime`` (its Last-Modified time) lets it stand in for a stat in
    :func:`files.evaluate_conditional`."""

    __slots__ = ("stamp", "expires", "body", "etag", "st_mtime", "fields", "validators")

    def __init__(self, stamp, expires, body, newest):
        self.stamp = stamp
        self.expires = expires
        self.body = body
        self.etag = '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()
        self.st_mtime = newest
        last_modified = http_date(newest)
        self.validators = (("Last-Modified", last_modified), ("ETag", self.etag))
        self.fields = _HTML_FIELDS + self.validators


class ListingCache:
    """Rendered directory listings by request path (its decoded components), bounded by count
    and bytes (least recently used evicted first).

    A page is served again while one ``fstat`` of its directory finds the same identity and
    change stamp (device, inode, mtime and ctime) and it is younger than ``max_age`` seconds
    (or ten times what rendering it took, if more): the stamp catches entries added, removed
    or renamed, the age bounds what it cannot see (a listed file's new size or date, a change
    within the filesystem's timestamp tick).
    Its ETag is a hash of the page, its Last-Modified the newest of the directory's and the
    shown entries' modification times.
    """

    def __init__(self, max_entries=64, max_bytes=32 << 20, max_age=1.0, clock=time.monotonic):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self._pages = collections.OrderedDict()
        self._bytes = 0

    def page(self, url_path, fs_dir, st, render):
        """The page for the directory ``fs_dir`` (whose stat is ``st``) served at
        ``url_path``: the cached one if still valid, else ``render(url_path, fs_dir)``'s."""
        key = files.request_names(url_path)
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        pages = self._pages
        now = self.clock()
        page = pages.get(key) if key is not None else None
        if page is not None:
            if page.stamp == stamp and now < page.expires:
                pages.move_to_end(key)
                return page
            self._discard(key)
        body, newest = render(url_path, fs_dir)
        done = self.clock()
        # Kept for max_age from when it is ready, and at least ten times as long as it took:
        # however slow the render, requests for one directory spend at most a tenth of the
        # time rendering it.
        expires = done + max(self.max_age, 10 * (done - now))
        page = _Listing(stamp, expires, body, max(newest, st.st_mtime))
        size = len(body) + _key_size(key) if key is not None else 0
        if key is not None and size <= self.max_bytes:
            while pages and (len(pages) >= self.max_entries
                             or self._bytes + size > self.max_bytes):
                self._discard(next(iter(pages)))
            pages[key] = page
            self._bytes += size
        return page

    def _discard(self, key):
        page = self._pages.pop(key)
        self._bytes -= len(page.body) + _key_size(key)

    def __len__(self):
        return len(self._pages)


def _key_size(key):
    """What a cache key costs in the cache's byte budget: its characters, plus an allowance for
    the objects holding them."""
    if type(key) is str:
        return len(key) + 64
    return sum(len(part) for part in key) + 64 * (len(key) + 1)
