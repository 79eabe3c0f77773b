"""An opt-in shim that makes a plain ``import asyncore`` / ``import asynchat`` work on Python
3.12+ for a whole environment, with no edit to the program.

    python -m eventloop.shim enable  [--user | --site-dir DIR]
    python -m eventloop.shim disable [--user | --site-dir DIR]
    python -m eventloop.shim status  [--user | --site-dir DIR]

``enable`` writes ``eventloop-asyncore.pth`` into the running Python's site-packages (or the
user site, or DIR).  Its one path line appends :data:`SHIM_PATH` -- a directory inside this
package holding ``asyncore.py`` and ``asynchat.py``, which hand the import over to
:mod:`eventloop.asyncore` and :mod:`eventloop.asynchat` -- to ``sys.path``, after the
standard library and site-packages.  So where the standard library still has the modules
(Python 3.11 and earlier), or another installed package provides them, they come first and
the shim is never consulted; no code runs at interpreter start-up, and if eventloop is
removed the line points nowhere and Python skips it.  ``disable`` deletes the file;
``status`` says whether it is there and what ``import asyncore`` resolves to.

With the shim active, ``asyncore.__name__`` is ``"eventloop.asyncore"`` and
``asyncore.__file__`` is eventloop's ``asyncore.py``, as after :func:`eventloop.install_asyncore`.
"""
import argparse
import os
import site
import subprocess
import sys
import sysconfig

__all__ = ["PTH_NAME", "SHIM_PATH", "main"]

#: The file ``enable`` writes into the site directory.
PTH_NAME = "eventloop-asyncore.pth"
#: The directory whose ``asyncore.py`` / ``asynchat.py`` stand in for the removed modules.
SHIM_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim_path")

_HEADER = ("# eventloop's shim: `import asyncore` / `import asynchat` get eventloop's facades\n"
           "# where Python has no such modules (3.12+).  Written by `python -m eventloop.shim\n"
           "# enable`; `python -m eventloop.shim disable` removes it.\n")


def site_dir(args):
    """The site directory the command acts on."""
    if args.site_dir:
        return os.path.abspath(args.site_dir)
    if args.user:
        if not site.ENABLE_USER_SITE:
            raise SystemExit("eventloop.shim: this Python does not read the user site directory "
                             "(a virtual environment?); leave out --user")
        return site.getusersitepackages()
    return sysconfig.get_path("purelib")


def resolves_to():
    """What a fresh interpreter of this environment finds for ``asyncore``: its file, or None."""
    probe = ("import importlib.util as u; s = u.find_spec('asyncore'); "
             "print(s.origin if s else '')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    return out.stdout.strip() or None


def describe_resolution():
    try:
        origin = resolves_to()
    except (OSError, subprocess.SubprocessError) as exc:
        return "`import asyncore` here: could not ask a new interpreter (%s)" % exc
    if origin is None:
        return "`import asyncore` here: not found"
    if os.path.dirname(os.path.realpath(origin)) == os.path.realpath(SHIM_PATH):
        return "`import asyncore` here: eventloop's facade (through %s)" % origin
    return "`import asyncore` here: %s (the shim is not consulted)" % origin


def enable(directory):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, PTH_NAME)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(_HEADER + SHIM_PATH + "\n")
    os.replace(path + ".tmp", path)
    print("enabled: %s adds %s to sys.path" % (path, SHIM_PATH))
    return 0


def disable(directory):
    path = os.path.join(directory, PTH_NAME)
    try:
        os.remove(path)
    except FileNotFoundError:
        print("not enabled: no %s" % path)
        return 0
    print("disabled: removed %s" % path)
    return 0


def status(directory):
    path = os.path.join(directory, PTH_NAME)
    enabled = os.path.isfile(path)
    print("%s: %s" % ("enabled" if enabled else "not enabled", path))
    return 0 if enabled else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventloop.shim",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("enable", "disable", "status"))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="the user site directory instead of the environment's")
    where.add_argument("--site-dir", metavar="DIR",
                       help="this site directory instead of the environment's")
    args = parser.parse_args(argv)
    directory = site_dir(args)
    try:
        code = {"enable": enable, "disable": disable, "status": status}[args.command](directory)
    except OSError as exc:
        print("eventloop.shim: %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    print(describe_resolution())
    return code


if __name__ == "__main__":
    sys.exit(main())
