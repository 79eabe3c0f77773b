"""Run a legacy asyncore/asynchat program unchanged, on this package's facades.

    python -m eventloop.run PROGRAM.py [ARGS...]
    python -m eventloop.run -m MODULE [ARGS...]

:func:`eventloop.install_asyncore` runs first, so the program's own ``import asyncore`` and
``import asynchat`` get :mod:`eventloop.asyncore` and :mod:`eventloop.asynchat`, on any
Python.  Then the program runs as ``python PROGRAM.py`` / ``python -m MODULE`` would run it:
as ``__main__``, with ``sys.argv`` holding the program's absolute path and ARGS,
``sys.path[0]`` its directory (for ``-m``, the current directory), its exit status, and on
an uncaught exception its traceback (without this runner's frames) and status 1.
"""
import argparse
import importlib.util
import os
import runpy
import sys

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m eventloop.run",
        description="Run an asyncore/asynchat program unchanged on eventloop's facades.")
    parser.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE ...",
                        help="run library module MODULE as the program, like python -m")
    parser.add_argument("program", nargs=argparse.REMAINDER, metavar="PROGRAM.py ...",
                        help="the program file (or directory or zip with __main__.py) and "
                             "its arguments")
    return parser


def _module_error(name):
    """Why ``python -m name`` would refuse to start, or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return str(exc) or "No module named %s" % name
    if spec is None:
        return "No module named %s" % name
    if spec.submodule_search_locations is not None:
        if importlib.util.find_spec(name + ".__main__") is None:
            return ("No module named %s.__main__; %r is a package and cannot be directly "
                    "executed" % (name, name))
    return None


def _program_frames(tb):
    """``tb`` from the first frame that is the program's own (not runpy's nor this module's)."""
    while tb is not None:
        frame_globals = tb.tb_frame.f_globals
        if frame_globals is not globals() and frame_globals.get("__name__") != "runpy":
            break
        tb = tb.tb_next
    return tb


def main(argv=None):
    """Install the facades and run the program named by ``argv`` (default: sys.argv[1:])."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.module is not None and not args.module:
        parser.error("argument -m: expected a module name")
    if args.module is None and not args.program:
        parser.error("name the program: PROGRAM.py [ARGS...] or -m MODULE [ARGS...]")
    safe_path = getattr(sys.flags, "safe_path", False)

    import eventloop
    eventloop.install_asyncore()

    if args.module is not None:
        name, rest = args.module[0], args.module[1:]
        problem = _module_error(name)
        if problem:
            print("%s: %s" % (parser.prog, problem), file=sys.stderr)
            return 1
        if not safe_path:
            sys.path[0:1] = [os.getcwd()]
        sys.argv[:] = [name] + rest       # runpy puts the module's file in sys.argv[0]
        run = lambda: runpy.run_module(name, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        path, rest = args.program[0], args.program[1:]
        if not os.path.exists(path):
            print("%s: can't open file %r: [Errno 2] No such file or directory"
                  % (parser.prog, os.path.abspath(path)), file=sys.stderr)
            return 2
        if not safe_path:
            # python puts a script's directory first; runpy itself puts a directory or zip
            # there while it runs one.
            sys.path[0:1] = [os.path.dirname(os.path.realpath(path))] if os.path.isfile(path) \
                else []
        # Absolute, as python makes a script's __file__ (and its tracebacks); runpy then puts
        # the same in sys.argv[0].
        path = os.path.abspath(path)
        sys.argv[:] = [path] + rest
        run = lambda: runpy.run_path(path, run_name="__main__")  # noqa: E731

    try:
        run()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        tb = _program_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
