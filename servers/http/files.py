"""File-serving logic for the static HTTP server: no sockets, no event loop.

The channel parses a request, then asks this module what to do: :class:`Root` (or
``resolve``) maps a request path to a file, a directory or a redirect beneath the served
directory, race-free; ``evaluate_conditional`` and ``parse_ranges`` turn validators and
``Range`` into a status; ``byteranges_framing`` frames a multipart/byteranges body;
``listing_html`` builds a directory's page.  The filesystem is only read: lookups relative to directory descriptors
(``os.open``, ``os.stat``, ``os.readlink`` with ``dir_fd``), ``os.scandir``.
"""
import errno
import html
import math
import os
import re
import stat as stat_module
import threading
import time
import weakref
from typing import NamedTuple, Optional
from urllib.parse import quote, unquote

from .messages import parse_http_date

__all__ = [
    "CONTENT_TYPES", "DEFAULT_TYPE", "INDEX_FILES", "RESOURCE_SHORTAGE", "MAX_RANGES",
    "Resolved", "Root", "RangeResult", "ByteRanges", "content_type", "request_names",
    "canonical_path", "resolve",
    "listing_html", "listing_page", "MAX_LISTED", "MAX_LISTING_BYTES", "etag_for", "evaluate_conditional",
    "parse_range", "parse_ranges", "coalesce_ranges", "content_range", "byteranges_framing",
]

# --------------------------------------------------------------------------
# Content types

CONTENT_TYPES: dict = {
    # documents and text
    "html": "text/html", "htm": "text/html", "xhtml": "application/xhtml+xml",
    "css": "text/css", "js": "text/javascript", "mjs": "text/javascript",
    "cjs": "text/javascript", "json": "application/json", "map": "application/json",
    "jsonld": "application/ld+json", "webmanifest": "application/manifest+json",
    "txt": "text/plain", "text": "text/plain", "log": "text/plain", "ini": "text/plain",
    "cfg": "text/plain", "conf": "text/plain", "csv": "text/csv",
    "tsv": "text/tab-separated-values", "xml": "application/xml",
    "xsl": "application/xml", "rss": "application/rss+xml",
    "atom": "application/atom+xml", "md": "text/markdown", "markdown": "text/markdown",
    "rst": "text/x-rst", "ics": "text/calendar", "vtt": "text/vtt",
    "yaml": "application/yaml", "yml": "application/yaml", "toml": "application/toml",
    "diff": "text/x-diff", "patch": "text/x-diff", "tex": "text/x-tex",
    # source code: text/* so browsers display it instead of downloading it
    "py": "text/x-python", "sh": "text/x-shellscript", "bash": "text/x-shellscript",
    "c": "text/x-c", "h": "text/x-c", "cc": "text/x-c++", "cpp": "text/x-c++",
    "hpp": "text/x-c++", "rs": "text/x-rust", "go": "text/x-go", "java": "text/x-java",
    # images
    "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg",
    "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
    "avif": "image/avif", "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
    "ico": "image/vnd.microsoft.icon",
    # fonts
    "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    # audio and video
    "mp3": "audio/mpeg", "ogg": "audio/ogg", "oga": "audio/ogg", "opus": "audio/ogg",
    "wav": "audio/wav", "flac": "audio/flac", "m4a": "audio/mp4", "aac": "audio/aac",
    "mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm", "ogv": "video/ogg",
    "mov": "video/quicktime", "mkv": "video/x-matroska", "avi": "video/x-msvideo",
    # archives and binaries
    "zip": "application/zip", "gz": "application/gzip", "tgz": "application/gzip",
    "tar": "application/x-tar", "bz2": "application/x-bzip2", "xz": "application/x-xz",
    "zst": "application/zstd", "7z": "application/x-7z-compressed",
    "jar": "application/java-archive", "epub": "application/epub+zip",
    "pdf": "application/pdf", "wasm": "application/wasm",
}

_TEXTUAL_APPLICATION_TYPES = frozenset({
    "text/javascript", "application/javascript", "application/json",
    "application/xml", "application/yaml", "application/toml",
})

#: The Content-Type of a file whose extension is unknown or missing.
DEFAULT_TYPE = "application/octet-stream"


def _is_textual(media_type: str) -> bool:
    return (media_type.startswith("text/")
            or media_type in _TEXTUAL_APPLICATION_TYPES
            or media_type.endswith("+json") or media_type.endswith("+xml"))


def content_type(filename: str, default: str = DEFAULT_TYPE) -> str:
    """Return the Content-Type for *filename* (a name or a path) from its extension.

    The lookup is case-insensitive and uses only ``CONTENT_TYPES``, so the answer is the
    same on every platform; textual types get ``; charset=utf-8``; names with an unknown
    extension or none (including dotfiles such as ``.bashrc``) get *default*, as it is
    (``application/octet-stream`` unless told otherwise: ``--content-type``).
    """
    base = filename.replace("\\", "/").rpartition("/")[2]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return default
    media_type = CONTENT_TYPES.get(ext.lower())
    if media_type is None:
        return default
    if _is_textual(media_type):
        return media_type + "; charset=utf-8"
    return media_type


# --------------------------------------------------------------------------
# Mapping a request path to the filesystem

INDEX_FILES = ("index.html", "index.htm")

#: Errors that say the process is short of a resource for now, not that a file is missing.
RESOURCE_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DRIVE = re.compile(r"[A-Za-z]:", re.ASCII)
# RFC 3986 pchar minus "%": characters a Location path may carry unencoded.
_LOCATION_SAFE = "/%:@!$&'()*+,;=-._~"
_PCHAR_SAFE = ":@!$&'()*+,;=-._~"       # what a path segment holds unencoded (RFC 3986)

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_PATH (Linux) opens a directory that may be searched but not read, all a lookup needs.
_DIR_FLAGS = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
# O_NONBLOCK: opening a FIFO (swapped in after the lstat) must not block the loop; O_NOCTTY:
# nor may a terminal become the server's.  Neither changes how a regular file is read.
_FILE_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | _CLOEXEC)
_MAX_SYMLINKS = 40          # per lookup, as Linux's MAXSYMLINKS: more is taken for a loop
_ROOT_RECHECK = 1.0         # seconds between checks that the root's path names the root held
# How many descriptors on the root are kept open, the last ones replaced with the current: a
# lookup on another thread may still be using one, and a closed descriptor's number could be
# given to another directory meanwhile.
_KEPT_ROOTS = 8
_monotonic = time.monotonic
_S_IFMT, _S_IFLNK, _S_IFDIR = stat_module.S_IFMT(0o177777), stat_module.S_IFLNK, stat_module.S_IFDIR


class Resolved(NamedTuple):
    """Where a request path leads.

    ``kind`` is ``"file"`` (serve ``fs_path``; ``stat`` is its ``os.stat`` result),
    ``"dir"`` (list ``fs_path``), ``"redirect"`` (send 301 to ``location``) or
    ``"notfound"`` (``fs_path`` and ``stat`` are None).  ``names`` are the decoded path
    components beneath the root (for an index file, its name last).  ``fd`` is None from
    :func:`resolve`; from :meth:`Root.lookup` it is a descriptor open on the file (for
    reading) or the directory (for lookups in it), which the caller closes.
    """
    kind: str
    fs_path: Optional[str]
    stat: Optional[os.stat_result]
    location: Optional[str] = None
    names: Optional[tuple] = None
    fd: Optional[int] = None


_NOT_FOUND = Resolved("notfound", None, None)


def _decode_segment(raw: str) -> Optional[str]:
    """Percent-decode one path segment as UTF-8, or None if it is malformed or unsafe."""
    if "%" in raw:
        if _BAD_PERCENT.search(raw):
            return None
        try:
            segment = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
    else:
        segment = raw
    if (segment in (".", "..") or "/" in segment or "\\" in segment
            or "\x00" in segment or _DRIVE.match(segment)):
        return None
    return segment


def request_names(url_path: str) -> Optional[tuple]:
    """The decoded components of the raw request path *url_path* (empty ones dropped), or
    None if it is not one that may be served: see :func:`resolve`."""
    if not url_path.startswith("/"):
        return None
    if ("%" not in url_path and ":" not in url_path and "\\" not in url_path
            and "\x00" not in url_path):
        # Nothing to decode and no drive letter: only "." and ".." can make it unsafe.
        names = tuple([raw for raw in url_path.split("/") if raw])
        return None if "." in names or ".." in names else names
    names = []
    for raw in url_path.split("/"):
        if raw:
            segment = _decode_segment(raw)
            if segment is None:
                return None
            names.append(segment)
    return tuple(names)


def canonical_path(url_path: str) -> Optional[str]:
    """One spelling of every raw request path that names the same thing: its decoded
    components (:func:`request_names`) percent-encoded again, joined by single slashes, with
    the trailing slash kept (it asks for the directory); None if the path may not be served."""
    names = request_names(url_path)
    if names is None:
        return None
    path = "/" + "/".join([quote(name, safe=_PCHAR_SAFE) for name in names])
    if names and url_path.endswith("/"):
        path += "/"
    return path


def _redirect_location(url_path: str, query: str) -> str:
    # Collapsing leading slashes keeps "//host/x/" from becoming a protocol-relative
    # URL that sends the browser to another host (CVE-2021-28861).
    location = quote("/" + url_path.lstrip("/") + "/", safe=_LOCATION_SAFE)
    if query:
        location += "?" + quote(query, safe=_LOCATION_SAFE + "?")
    return location


def _components(path: str) -> list:
    return [part for part in path.split("/") if part]


def _close_all(fds: list) -> None:
    while fds:
        os.close(fds.pop())


def _release(stack: list) -> None:
    """Close the directory descriptors of a walk, all but the root's (``stack[0]``)."""
    while len(stack) > 1:
        os.close(stack.pop())


class Root:
    """The directory a server serves, held open so that every lookup beneath it is race-free.

    Unless *follow_symlinks*, a lookup walks down from a descriptor on the root one component
    at a time, looking each up in the directory reached so far without following a symlink
    (``openat``/``fstatat`` with ``O_NOFOLLOW``).  A symlink on the way is read
    (``readlinkat``) and its target walked the same way: a relative one from the directory
    holding the link; an absolute one from the root if it names a path beneath the root's
    path or real path; ``..`` goes up to the root, and past it only to come back by name.
    Whatever else leads out of the root is not found.  There is no check apart from the
    open, so no symlink swapped in between can win: what is opened is what was checked, and
    a path is served only while it leads, beneath the root, to a regular file or directory.
    With *follow_symlinks* the kernel follows every symlink (lookups by path), and only the
    request path itself is confined (see :func:`resolve`).

    The root's descriptor is opened here (again at the next lookup if that failed), and
    :meth:`fileno` opens it anew when the root's path has come to name another directory (a
    replaced DIR, or a symlink switched to a new release), which it checks at most once a
    second.
    """

    def __init__(self, path: str, follow_symlinks: bool = False):
        self.path = os.path.abspath(path)
        self.follow_symlinks = follow_symlinks
        self._nofollow = 0 if follow_symlinks else _NOFOLLOW
        self._walk_fd = None        # the root's descriptor, while open and lookups walk from it
        self._fresh_until = 0.0     # when to check again that the root's path names it
        self._identity = None       # its (st_dev, st_ino)
        self._lock = threading.Lock()
        self._prefixes = ()         # the root's path and real path, as components
        self._above = []            # the real path of the root's parent, as components
        self._fds = []              # descriptors opened on the root, the current one last
        self._closer = weakref.finalize(self, _close_all, self._fds)
        if not follow_symlinks:
            try:
                self.fileno()
            except OSError:
                pass

    def __repr__(self):
        return "<Root %r%s>" % (self.path, " follow_symlinks" if self.follow_symlinks else "")

    def fileno(self) -> int:
        """The root's descriptor (opened now, or anew, as the class says); OSError if the root
        cannot be opened."""
        fd = self._walk_fd
        if fd is None or _monotonic() >= self._fresh_until:
            fd = self._refresh()
        return fd

    def _refresh(self) -> int:
        with self._lock:
            now = _monotonic()
            if self._fds and now < self._fresh_until:
                return self._fds[-1]
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) != self._identity:
                fd = os.open(self.path, _DIR_FLAGS)        # the root itself may be a symlink
                fds = self._fds
                fds.append(fd)
                if len(fds) > _KEPT_ROOTS:
                    os.close(fds.pop(0))
                opened = os.fstat(fd)
                self._identity = (opened.st_dev, opened.st_ino)
                real = _components(os.path.realpath(self.path))
                self._prefixes = (_components(self.path), real)
                self._above = real[:-1]
                if not self.follow_symlinks:
                    self._walk_fd = fd
            self._fresh_until = now + _ROOT_RECHECK
            return self._fds[-1]

    def close(self) -> None:
        """Close the root's descriptors (a later lookup opens the root again)."""
        with self._lock:
            self._walk_fd = self._identity = None
            self._fresh_until = 0.0
            self._closer()
            self._fds = []
            self._closer = weakref.finalize(self, _close_all, self._fds)

    def _locate(self, names) -> tuple:
        """Walk *names* down from the root: ``(stack, name, st)`` where the last component is
        *name* in the directory ``stack[-1]`` ("." when the walk ends on a directory itself)
        and *st* is its lstat, never a symlink's.  ``stack`` holds the walk's directory
        descriptors, the root's first; the caller closes the others with :func:`_release`.
        Raises OSError: FileNotFoundError for a path that leads out of the root.

        With *follow_symlinks*: ``([None], path, os.stat(path))`` for the joined path.
        """
        if self.follow_symlinks:
            path = os.path.join(self.path, *names)
            return [None], path, os.stat(path)
        stack = [self.fileno()]
        pending = list(reversed(names))
        above = None        # while the walk is above the root: where, as components (by name only)
        links = 0
        try:
            while pending:
                name = pending.pop()
                if above is not None:
                    if name == "..":
                        if above:
                            above.pop()
                    elif name and name != ".":
                        above.append(name)
                    if above in self._prefixes:
                        above = None                    # back at the root
                    continue
                if not name or name == ".":
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    else:
                        above = list(self._above)
                        if above in self._prefixes:     # the root is "/"
                            above = None
                    continue
                where = stack[-1]
                if pending:
                    try:
                        stack.append(os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=where))
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                            raise
                    target = os.readlink(name, dir_fd=where)    # EINVAL: not a directory
                else:
                    st = os.stat(name, dir_fd=where, follow_symlinks=False)
                    if not stat_module.S_ISLNK(st.st_mode):
                        return stack, name, st
                    target = os.readlink(name, dir_fd=where)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links", name)
                if target.startswith("/"):
                    _release(stack)
                    above = []
                    if above in self._prefixes:
                        above = None
                pending.extend(reversed(target.split("/")))
            if above is not None:
                raise FileNotFoundError(errno.ENOENT, "Leads out of the served directory")
            return stack, ".", os.stat(".", dir_fd=stack[-1], follow_symlinks=False)
        except BaseException:
            _release(stack)
            raise

    def stat(self, names) -> os.stat_result:
        """The ``os.stat`` of what *names* lead to beneath the root (following symlinks that
        stay inside); OSError if nothing is there or the path leads out."""
        fd = self._walk_fd
        if fd is not None and len(names) == 1 and _monotonic() < self._fresh_until:
            # A name directly in the root, as most requests are: one fstatat of it in the
            # root's directory, without following it.  A symlink is left to the walk, and so
            # is the check, once a second, that the root is still the root.
            st = os.lstat(names[0], dir_fd=fd)
            if st.st_mode & _S_IFMT != _S_IFLNK:
                return st
        stack, _, st = self._locate(names)
        _release(stack)
        return st

    def stat_vetted(self, relpath: str) -> os.stat_result:
        """The ``lstat`` of *relpath* beneath the root, one ``fstatat`` per component, for
        revalidating a file that a race-free lookup found.  Each directory on the way must
        still be a directory, not a symlink (one moved out of the root and replaced by a link
        to it is refused, FileNotFoundError); the caller compares the result with the file's
        identity (device, inode, size, times).  A symlink swapped in between two of these
        calls can only lead to that very file, the one the lookup vetted, or to no match:
        and no match sends the caller to a fresh lookup."""
        fd = self.fileno()
        if self.follow_symlinks:
            return os.stat(relpath, dir_fd=fd)
        end = relpath.find("/")
        while end != -1:
            st = os.stat(relpath[:end], dir_fd=fd, follow_symlinks=False)
            if st.st_mode & _S_IFMT != _S_IFDIR:
                raise FileNotFoundError(errno.ENOENT, "not a directory beneath the root",
                                        relpath[:end])
            end = relpath.find("/", end + 1)
        return os.stat(relpath, dir_fd=fd, follow_symlinks=False)

    def open(self, names) -> int:
        """A descriptor open for reading on the regular file *names* lead to beneath the root
        (the caller closes it); IsADirectoryError if it is something else, other OSError if
        nothing is there or the path leads out."""
        stack, name, st = self._locate(names)
        try:
            return self._open_found(stack, name, st)[0]
        finally:
            _release(stack)

    def _open_found(self, stack, name, st) -> tuple:
        """Open the regular file a walk ended on: ``(fd, fstat)``."""
        if not stat_module.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Not a regular file", name)
        fd = os.open(name, _FILE_FLAGS | self._nofollow, dir_fd=stack[-1])
        try:
            return fd, os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise

    def lookup(self, url_path: str, query: str = "", open_it: bool = True) -> Resolved:
        """What the raw request path *url_path* leads to beneath the root (see :func:`resolve`
        for the rules), opened: the result's ``fd`` is the caller's to close (none for a
        redirect, or if not *open_it*).  Raises OSError only for what exists but cannot be
        opened (PermissionError: the file may not be read) and when the process is short of
        descriptors or memory (``errno`` in :data:`RESOURCE_SHORTAGE`).
        """
        names = request_names(url_path)
        if names is None:
            return _NOT_FOUND
        fs_path = os.path.join(self.path, *names)
        found = self._find(names)
        if found is None:
            return _NOT_FOUND
        stack, name, st = found
        try:
            wants_dir = url_path.endswith("/")
            if stat_module.S_ISREG(st.st_mode):
                if wants_dir:
                    return _NOT_FOUND
                if not open_it:
                    return Resolved("file", fs_path, st, None, names)
                fd, st = self._open_found(stack, name, st)
                return Resolved("file", fs_path, st, None, names, fd)
            if not stat_module.S_ISDIR(st.st_mode):
                return _NOT_FOUND
            if not wants_dir:
                return Resolved("redirect", fs_path, st, _redirect_location(url_path, query),
                                names)
            for index in INDEX_FILES:
                index_names = names + (index,)
                found = self._find(index_names)
                if found is None:
                    continue
                index_stack, index_name, index_st = found
                try:
                    if stat_module.S_ISREG(index_st.st_mode):
                        index_path = os.path.join(fs_path, index)
                        if not open_it:
                            return Resolved("file", index_path, index_st, None, index_names)
                        fd, index_st = self._open_found(index_stack, index_name, index_st)
                        return Resolved("file", index_path, index_st, None, index_names, fd)
                finally:
                    _release(index_stack)
            if not open_it:
                return Resolved("dir", fs_path, st, None, names)
            fd = os.open(name, _DIR_FLAGS | self._nofollow, dir_fd=stack[-1])
            return Resolved("dir", fs_path, st, None, names, fd)
        finally:
            _release(stack)

    def _find(self, names) -> Optional[tuple]:
        """:meth:`_locate`, or None if nothing may be served there; raises only OSErrors of
        :data:`RESOURCE_SHORTAGE`."""
        try:
            return self._locate(names)
        except OSError as exc:
            if exc.errno in RESOURCE_SHORTAGE:
                raise
            return None
        except ValueError:
            return None


def resolve(root: str, url_path: str, follow_symlinks: bool = False,
            query: str = "") -> Resolved:
    """Map the raw, still percent-encoded request path *url_path* to a file under *root*.

    Never leads outside *root*: each ``/``-separated segment is percent-decoded on its
    own as strict UTF-8, and a segment that is malformed, ``.`` or ``..``, holds a
    (decoded) ``/``, ``\\`` or NUL, or starts with a drive letter makes the whole path
    ``notfound``, as does a path not starting with ``/``.  Unless *follow_symlinks*, a
    path that a symlink leads out of *root* is ``notfound`` (the walk of :class:`Root`).
    Only regular files and directories are served.  A directory asked for without its
    trailing slash yields ``redirect`` to the same path plus ``/`` (and ``?query`` if
    *query*, given without its ``?``); with the slash, its ``index.html`` or ``index.htm``
    if it is a regular file, else ``dir``.  Non-ASCII characters in *url_path* are taken
    as UTF-8.  Nothing is left open: the answer holds when it is given, and to serve it
    race-free use :meth:`Root.lookup`, which opens what it found.
    """
    tree = Root(root, follow_symlinks)
    try:
        return tree.lookup(url_path, query, open_it=False)
    finally:
        tree.close()


# --------------------------------------------------------------------------
# Directory listing

_LISTING_CSS = """\
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;\
max-width:60em;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.3em;font-weight:600;word-break:break-all}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .8em;border-bottom:1px solid #eee}
th{font-weight:600;border-bottom:2px solid #ddd}
td.size,th.size{text-align:right;white-space:nowrap}
td.date{white-space:nowrap;color:#555;font-variant-numeric:tabular-nums}
tr:hover td{background:#f6f8fa}
a{color:#0550ae;text-decoration:none}a:hover{text-decoration:underline}
tr.dir a{font-weight:600}
tr.link a::after{content:" \\21AA";color:#888}
@media (prefers-color-scheme:dark){body{color:#ddd;background:#111}\
a{color:#6cb6ff}th,td{border-color:#333}tr:hover td{background:#1c1c1c}}
"""

_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1024
        if value < 1023.95 or unit == _SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _listing_date(mtime: float) -> str:
    try:
        t = time.gmtime(mtime)
    except (OverflowError, OSError, ValueError):
        return "-"
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}")


def _name_bytes(name: str) -> bytes:
    # os.scandir hands undecodable name bytes back as lone surrogates (surrogateescape).
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def _followed(entry):
    """The default for symlinks in a listing: whatever the link leads to (None if nothing)."""
    try:
        return entry.stat()
    except OSError:
        return None


def _listing_row(entry, link_target) -> tuple:
    name = entry.name
    try:
        is_link = entry.is_symlink()
    except OSError:
        is_link = False
    if is_link:
        # Only what a request for the link would serve is described: a link refused (leading
        # out, dangling, looping) is a bare name, no size, date or trailing slash.
        st = link_target(entry)
        is_dir = st is not None and stat_module.S_ISDIR(st.st_mode)
    else:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            st = None
    raw = _name_bytes(name)
    shown = raw.decode("utf-8", "replace") + ("/" if is_dir else "")
    href = quote(raw, safe="") + ("/" if is_dir else "")
    classes = " ".join(c for c, on in (("dir", is_dir), ("link", is_link)) if on)
    if st is None:
        size_cell = '<td class="size">-</td>'
        date = "-"
    else:
        date = _listing_date(st.st_mtime)
        if is_dir:
            size_cell = '<td class="size">-</td>'
        else:
            size_cell = (f'<td class="size" title="{st.st_size} bytes">'
                         f'{_human_size(st.st_size)}</td>')
    row = (f'<tr class="{classes}"><td><a href="{html.escape(href, quote=True)}">'
           f'{html.escape(shown, quote=True)}</a></td>{size_cell}'
           f'<td class="date">{date}</td></tr>')
    return (not is_dir, name.casefold(), name), row, (st.st_mtime if st is not None else 0.0)


#: Most entries a listing shows (the first ones by name), and most bytes of rows it holds:
#: a page stays a few MB however large the directory.
MAX_LISTED = 10_000
MAX_LISTING_BYTES = 4 << 20


def _by_name(entry):
    name = entry.name
    return name.casefold(), name


def listing_html(url_path: str, fs_dir, entries=None, link_target=None) -> bytes:
    """Return a UTF-8 HTML index of the directory *fs_dir* (a path, or a descriptor open on
    it for reading), served at *url_path*.

    *url_path* is the request path as received (percent-encoded, ending in ``/``: hrefs
    are relative); it is decoded for display.  *entries* is an iterable of
    ``os.DirEntry``-like objects (``name``, ``is_dir()``, ``is_symlink()``, ``stat()``);
    by default ``os.scandir(fs_dir)``, whose ``PermissionError`` (or other ``OSError``)
    propagates.  Entries other than symlinks are described by their own lstat.  For a
    symlink, *link_target(entry)* gives the ``os.stat`` of what a request for it would
    serve, or None if it would be refused: then the link is listed by name only (default:
    whatever the link leads to).  Directories come first, then files, each sorted
    case-insensitively.  See :func:`listing_page` for the bound on its size.
    """
    return listing_page(url_path, fs_dir, entries, link_target)[0]


def listing_page(url_path: str, fs_dir, entries=None, link_target=None,
                 limit: int = MAX_LISTED, max_bytes: int = MAX_LISTING_BYTES) -> tuple:
    """:func:`listing_html` and the newest modification time among the entries it shows:
    ``(body, newest_mtime)`` (0.0 for none).

    At most *limit* entries are shown, the first by name (case-insensitive), and rows stop
    once they hold *max_bytes*; a line after the table says how many were left out, so a
    huge directory costs a sort of its names and a bounded page, not a row per entry.
    """
    if link_target is None:
        link_target = _followed
    if entries is None:
        with os.scandir(fs_dir) as it:
            entries = list(it)
    elif not isinstance(entries, list):
        entries = list(entries)
    total = len(entries)
    if total > limit:
        entries = sorted(entries, key=_by_name)[:limit]
    rows = sorted(_listing_row(entry, link_target) for entry in entries)
    shown_path = "/" + "/".join(
        part for part in unquote(url_path, errors="replace").split("/") if part)
    if shown_path != "/":
        shown_path += "/"
    title = html.escape("Index of " + shown_path, quote=True)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{title}</title>\n<style>\n{_LISTING_CSS}</style>\n</head>\n<body>\n'
        f'<h1>{title}</h1>\n<table>\n<thead><tr><th>Name</th>'
        '<th class="size">Size</th><th>Last modified</th></tr></thead>\n<tbody>\n'
    ]
    if shown_path != "/":
        parts.append('<tr class="dir parent"><td><a href="../">Parent directory</a>'
                     '</td><td class="size">-</td><td class="date">-</td></tr>\n')
    size = 0
    shown = 0
    newest = 0.0
    for _, row, mtime in rows:
        size += len(row) + 1
        if size > max_bytes:
            break
        parts.append(row)
        parts.append("\n")
        shown += 1
        if mtime > newest:
            newest = mtime
    parts.append("</tbody>\n</table>\n")
    if shown < total:
        parts.append(f'<p class="omitted">{total - shown:,} of {total:,} entries are not '
                     f'listed: a listing shows at most {limit:,}, the first by name.</p>\n')
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode("utf-8"), newest


# --------------------------------------------------------------------------
# Validators and HTTP dates

def etag_for(st) -> str:
    """Return a strong entity tag for a file from its ``st_mtime_ns`` and ``st_size``.

    The inode is left out so that copies and replicas of the same file agree.
    """
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


# --------------------------------------------------------------------------
# Conditional requests (RFC 9110 section 13)

_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


def _split_etag(etag: str) -> tuple:
    """Return (is_weak, opaque_tag) for one of our own entity tags."""
    m = _ENTITY_TAG.fullmatch(etag.strip(" \t"))
    if m is None:
        return False, etag
    return m.group(1) is not None, m.group(2)


def _etag_list_matches(field: str, etag: str, weak: bool) -> bool:
    """Whether the If-Match/If-None-Match *field* (``*`` or a list) matches *etag*."""
    if field.strip(" \t") == "*":
        return True
    our_weak, our_tag = _split_etag(etag)
    if not weak and our_weak:
        return False
    for m in _ENTITY_TAG.finditer(field):
        if m.group(2) == our_tag and (weak or m.group(1) is None):
            return True
    return False


def evaluate_conditional(headers_get, stat, etag: str,
                         method: str = "GET") -> Optional[int]:
    """Evaluate the request's preconditions against a file; return 304, 412 or None.

    *headers_get* maps a field name to its (combined) value or None.  Follows the
    order of RFC 9110 section 13.2.2: If-Match (strong comparison, else
    If-Unmodified-Since) failing gives 412; If-None-Match (weak comparison) matching
    gives 304 for GET/HEAD and 412 otherwise; without If-None-Match, a GET/HEAD whose
    If-Modified-Since is not before the modification second gives 304.  Invalid dates
    are ignored.  None means: go on and serve (If-Range is ``parse_range``'s job).
    """
    mtime = math.floor(stat.st_mtime)
    safe_method = method in ("GET", "HEAD")
    if_match = headers_get("If-Match")
    if if_match is not None:
        if not _etag_list_matches(if_match, etag, weak=False):
            return 412
    else:
        unmodified_since = parse_http_date(headers_get("If-Unmodified-Since"))
        if unmodified_since is not None and mtime > unmodified_since:
            return 412
    if_none_match = headers_get("If-None-Match")
    if if_none_match is not None:
        if _etag_list_matches(if_none_match, etag, weak=True):
            return 304 if safe_method else 412
    elif safe_method:
        modified_since = parse_http_date(headers_get("If-Modified-Since"))
        if modified_since is not None and mtime <= modified_since:
            return 304
    return None


# --------------------------------------------------------------------------
# Range requests (RFC 9110 section 14)

#: Most range-specs one Range header may hold; one with more is ignored (200, the whole file).
MAX_RANGES = 16


class RangeResult(NamedTuple):
    """What to send for a ``Range`` request, when at most one range is honoured.

    ``"full"``: 200 with the whole file (``start`` 0, ``end`` size-1);
    ``"partial"``: 206 with bytes ``start``..``end`` inclusive, 0 <= start <= end < size;
    ``"unsatisfiable"``: 416 with ``Content-Range: bytes */size`` (start, end None).
    """
    kind: str
    start: Optional[int]
    end: Optional[int]

    @property
    def length(self) -> int:
        """Number of body bytes to send (0 when unsatisfiable)."""
        return 0 if self.start is None else self.end - self.start + 1


class ByteRanges(NamedTuple):
    """What to send for a ``Range`` request.

    ``kind`` is ``"full"`` (200 with the whole file), ``"partial"`` (206 with the one span),
    ``"multipart"`` (206 ``multipart/byteranges``, a part per span, two or more) or
    ``"unsatisfiable"`` (416).  ``spans`` are ``(first, last)`` byte positions, inclusive,
    in the order to send them: ``((0, size - 1),)`` for ``"full"``, none for
    ``"unsatisfiable"``; they never overlap or touch.
    """
    kind: str
    spans: tuple


_INT_RANGE = re.compile(r"([0-9]+)-([0-9]*)", re.ASCII)
_SUFFIX_RANGE = re.compile(r"-([0-9]+)", re.ASCII)
# Positions longer than this are clamped: beyond any file, and int() of a huge digit
# string is slow (and refused past sys.get_int_max_str_digits()).
_MAX_POSITION_DIGITS = 30
_HUGE_POSITION = 10 ** _MAX_POSITION_DIGITS
_INVALID = "invalid"            # a range-spec that makes the whole header ignored
_NOTHING = "nothing"            # a satisfiable suffix-range of an empty file: no byte to send


def _position(digits: str) -> int:
    significant = digits.lstrip("0")
    if len(significant) > _MAX_POSITION_DIGITS:
        return _HUGE_POSITION
    return int(significant or "0")


def _if_range_holds(if_range: str, etag: str, mtime: float) -> bool:
    value = if_range.strip(" \t")
    if value.startswith('"') or value.startswith("W/"):
        theirs = _ENTITY_TAG.fullmatch(value)
        if theirs is None or theirs.group(1) is not None:
            return False
        our_weak, our_tag = _split_etag(etag)
        return not our_weak and theirs.group(2) == our_tag
    date = parse_http_date(value)
    return date is not None and date == math.floor(mtime)


def _range_spec(spec: str, size: int):
    """One range-spec against a file of *size* bytes: its ``(first, last)`` span clamped to
    the file, None if it is unsatisfiable, or ``_INVALID`` / ``_NOTHING``."""
    m = _INT_RANGE.fullmatch(spec)
    if m:
        first = _position(m.group(1))
        last = _position(m.group(2)) if m.group(2) else None
        if last is not None and last < first:
            return _INVALID
        if first >= size:
            return None
        return first, size - 1 if last is None else min(last, size - 1)
    m = _SUFFIX_RANGE.fullmatch(spec)
    if m:
        length = _position(m.group(1))
        if length == 0:
            return None
        if size == 0:
            return _NOTHING
        return max(0, size - length), size - 1
    return _INVALID


def coalesce_ranges(spans) -> list:
    """The union of the ``(first, last)`` spans (inclusive) as disjoint spans that do not
    touch, in ascending order: overlapping or adjacent ones are merged."""
    merged = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def parse_ranges(header: Optional[str], size: int, if_range: Optional[str], etag: str,
                 mtime: float, max_ranges: int = MAX_RANGES) -> ByteRanges:
    """Decide how to answer a GET with ``Range: header`` for a file of *size* bytes.

    The range-specs are ``bytes=a-b`` (end clamped to size-1), ``bytes=a-`` and
    ``bytes=-n`` (the last n bytes), comma-separated, empty list elements and spaces around
    them allowed.  Ignored (``"full"``), as RFC 9110 section 14.2 lets a server: other units,
    a malformed or invalid spec anywhere (e.g. ``5-4``), more than *max_ranges* specs, and an
    *if_range* that fails (an entity tag must equal *etag* strongly, a date must equal the
    Last-Modified second of *mtime*).  The cap is what bounds abusive sets: the parts sent
    never overlap (overlapping or adjacent spans are coalesced, so they add up to at most
    the file) and there are at most *max_ranges* of them, so no Range header costs more
    than the whole file plus *max_ranges* part heads; past the cap the answer is the plain
    200 a client could have asked for (as nginx's ``max_ranges`` and Apache's
    ``MaxRanges`` do).  Unsatisfiable specs (first position at or past the end,
    ``bytes=-0``) are dropped; if none is left, ``"unsatisfiable"``, except that a suffix
    range of an empty file is ``"full"`` (there is no byte to select).  One span left (or
    a set coalescing to one) is ``"partial"``; more are ``"multipart"``, in the order of the
    header unless some were coalesced (then ascending, as section 15.3.7.2 allows).
    """
    full = ByteRanges("full", ((0, size - 1),))
    if header is None:
        return full
    if if_range is not None and not _if_range_holds(if_range, etag, mtime):
        return full
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip(" \t").lower() != "bytes":
        return full
    spans = []
    count = 0
    nothing = False
    for part in range_set.split(","):
        spec = part.strip(" \t")
        if not spec:
            continue
        count += 1
        if count > max_ranges:
            return full
        span = _range_spec(spec, size)
        if span is _INVALID:
            return full
        if span is _NOTHING:
            nothing = True
        elif span is not None:
            spans.append(span)
    if not spans:
        return full if count == 0 or nothing else ByteRanges("unsatisfiable", ())
    merged = coalesce_ranges(spans)
    if len(merged) < len(spans):
        spans = merged
    return ByteRanges("partial" if len(spans) == 1 else "multipart", tuple(spans))


def parse_range(header: Optional[str], size: int, if_range: Optional[str],
                etag: str, mtime: float) -> RangeResult:
    """:func:`parse_ranges` for a server that sends at most one range: a set of several
    that does not coalesce to one gives ``"full"``."""
    result = parse_ranges(header, size, if_range, etag, mtime)
    if result.kind == "partial":
        return RangeResult("partial", *result.spans[0])
    if result.kind == "unsatisfiable":
        return RangeResult("unsatisfiable", None, None)
    return RangeResult("full", 0, size - 1)


def content_range(start: Optional[int], end: Optional[int], size: int) -> str:
    """Return a ``Content-Range`` value: ``bytes start-end/size``, or ``bytes */size``
    when *start* is None (for a 416)."""
    if start is None:
        return f"bytes */{size}"
    return f"bytes {start}-{end}/{size}"


_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def byteranges_framing(spans, size: int, content_type: str, boundary: str) -> tuple:
    """The framing of a ``multipart/byteranges`` body (RFC 9110 section 14.6) carrying the
    *spans* of a file of *size* bytes: ``(heads, tail, length)``.  The body is ``heads[0]``,
    the bytes of ``spans[0]``, ``heads[1]``, ... and then ``tail``; *length* is its exact
    size.  Each part head gives *content_type* and the part's ``Content-Range``.  The
    caller picks a *boundary* (1 to 70 characters of RFC 2046's ``bcharsnospace``) that
    does not occur in the parts.  ValueError if *content_type* holds a control character
    (it would split the part head).
    """
    if not _FIELD_VALUE.fullmatch(content_type):
        raise ValueError("invalid Content-Type for a part: %r" % (content_type,))
    heads = []
    length = 0
    for first, last in spans:
        delimiter = "\r\n--" if heads else "--"     # the CRLF ends the previous part
        head = (f"{delimiter}{boundary}\r\nContent-Type: {content_type}\r\n"
                f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n").encode("ascii")
        heads.append(head)
        length += len(head) + last - first + 1
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return heads, tail, length + len(tail)
