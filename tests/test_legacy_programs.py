"""Legacy asyncore programs run unchanged: ``python -m eventloop.run`` and ``eventloop.shim``.

The legacy program is ``tests/compat/legacy_line_server.py`` (``import asyncore, asynchat``,
a listener and an ``async_chat`` line handler), served over a real socket.  The runner is
tried on the running Python and on every Python 3.12 or newer found on this machine; the
shim is installed with its documented command into a throwaway virtual environment (made
offline, without pip) of a Python 3.12+, where it must make ``import asyncore`` work, and of
a Python that still has ``asyncore``, where it must leave the stdlib's modules alone.
"""
import functools
import glob
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = os.path.join(ROOT, "tests", "compat", "legacy_line_server.py")
FACADE_FILE = os.path.join(ROOT, "eventloop", "asyncore.py")


@functools.lru_cache(maxsize=None)
def interpreters():
    """``{(major, minor): executable}`` for the Pythons on this machine, this one included."""
    found = {tuple(sys.version_info[:2]): sys.executable}
    candidates = [shutil.which("python3.%d" % minor) for minor in range(8, 20)]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "3.*", "bin", "python3")))
    candidates += sorted(glob.glob("/usr/bin/python3.*"))
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and re.fullmatch(r"\d+ \d+\n", out.stdout):
            found.setdefault(tuple(map(int, out.stdout.split())), exe)
    return found


def _params(versions, none_reason):
    if not versions:
        return [pytest.param(None, marks=pytest.mark.skip(reason=none_reason))]
    return [pytest.param(interpreters()[v], id="python%d.%d" % v) for v in versions]


NEWER = _params([v for v in sorted(interpreters()) if v >= (3, 12)],
                "no Python 3.12 or newer on this machine (looked on PATH and in pyenv)")
WITH_ASYNCORE = _params([v for v in sorted(interpreters()) if (3, 8) <= v < (3, 12)][-1:],
                        "no Python that still has asyncore (3.11 or older) on this machine")
RUNNERS = _params(sorted({tuple(sys.version_info[:2])} |
                         {v for v in interpreters() if v >= (3, 12)}), "")


def env_with_eventloop(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1", **extra)
    env.pop("PYTHONWARNINGS", None)
    return env


def serve_one_session(cmd, env, cwd=None):
    """Start the legacy server with ``cmd`` + its port argument, talk to it over a socket,
    shut it down; returns the module name and file its READY line reported."""
    proc = subprocess.Popen(cmd + ["0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode() if ready else ""
        m = re.match(r"READY (\d+) (\S+) (.+)\n", line)
        assert m, "no READY line: %r; stderr: %s" % (line, proc.stderr.read().decode()[-2000:])
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30) as s:
            f = s.makefile("rwb")
            for sent, want in ((b"hello\n", b"HELLO\n"), (b"legacy world\n", b"LEGACY WORLD\n"),
                               (b"shutdown\n", b"SHUTDOWN\n")):
                f.write(sent)
                f.flush()
                assert f.readline() == want
            assert f.readline() == b"", "the server closed the connection"
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:]
        return m.group(2), m.group(3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


# ------------------------------------------------------------ eventloop.run
@pytest.mark.parametrize("python", RUNNERS)
def test_eventloop_run_serves_a_legacy_program_unchanged(python):
    name, path = serve_one_session([python, "-m", "eventloop.run", LEGACY], env_with_eventloop())
    assert (name, path) == ("eventloop.asyncore", FACADE_FILE)


@pytest.mark.parametrize("python", RUNNERS)
def test_eventloop_run_dash_m_serves_a_legacy_module_unchanged(python):
    name, path = serve_one_session([python, "-m", "eventloop.run", "-m", "legacy_line_server"],
                                   env_with_eventloop(), cwd=os.path.dirname(LEGACY))
    assert (name, path) == ("eventloop.asyncore", FACADE_FILE)


PROBE = textwrap.dedent("""\
    import sys, asyncore, asynchat
    print(repr((__name__, sys.argv[1:], sys.path[0], asyncore.__name__, asynchat.__name__)))
    if sys.argv[1:2] == ["exit"]:
        sys.exit(int(sys.argv[2]))
    if sys.argv[1:2] == ["fail"]:
        def deep():
            raise LookupError("from the program")
        deep()
""")


def run_probe(python, tmp_path, *args, module=False):
    (tmp_path / "probe.py").write_text(PROBE)
    target = ["-m", "probe"] if module else [str(tmp_path / "probe.py")]
    return subprocess.run([python, "-m", "eventloop.run"] + target + list(args),
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                          env=env_with_eventloop())


@pytest.mark.parametrize("python", RUNNERS)
@pytest.mark.parametrize("module", [False, True], ids=["PROGRAM.py", "-m MODULE"])
def test_the_program_runs_as_main_with_its_arguments_and_exit_status(python, tmp_path, module):
    proc = run_probe(python, tmp_path, "-v", "--x=1", "-m", "exit", module=module)
    assert proc.returncode == 0, proc.stderr
    main, argv, path0, asyncore_name, asynchat_name = eval(proc.stdout.strip())
    assert (main, argv) == ("__main__", ["-v", "--x=1", "-m", "exit"])
    assert os.path.realpath(path0) == os.path.realpath(str(tmp_path))
    assert (asyncore_name, asynchat_name) == ("eventloop.asyncore", "eventloop.asynchat")
    assert run_probe(python, tmp_path, "exit", "7", module=module).returncode == 7


@pytest.mark.parametrize("python", RUNNERS)
def test_an_uncaught_exception_shows_the_programs_traceback_and_exits_1(python, tmp_path):
    proc = run_probe(python, tmp_path, "fail")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith('  File "%s", line' % (tmp_path / "probe.py"))
    assert "in deep" in proc.stderr and lines[-1] == "LookupError: from the program"
    assert "runpy" not in proc.stderr and "eventloop" not in proc.stderr


def test_a_missing_program_or_module_is_refused_as_python_refuses_it(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "eventloop.run"] + list(args),
                              capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                              env=env_with_eventloop())
    missing = run("no_such_program.py")
    assert missing.returncode == 2 and "can't open file" in missing.stderr
    assert run("-m", "no_such_module").returncode == 1
    assert "No module named no_such_module" in run("-m", "no_such_module").stderr
    assert "cannot be directly executed" in run("-m", "json").stderr
    assert run().returncode == 2 and "usage:" in run().stderr


# ------------------------------------------------------------ eventloop.shim
def make_venv(python, where):
    """A virtual environment of ``python`` (offline: no pip) in which eventloop is installed
    as an editable install is: a .pth line naming the checkout.  Returns (python, site dir)."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True,
                   capture_output=True, timeout=120)
    vpython = str(where / "bin" / "python")
    site_dir = subprocess.run([vpython, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    with open(os.path.join(site_dir, "eventloop-checkout.pth"), "w") as f:
        f.write(ROOT + "\n")
    return vpython, site_dir


def plain_env():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


def shim(vpython, command):
    return subprocess.run([vpython, "-m", "eventloop.shim", command], capture_output=True,
                          text=True, timeout=60, env=plain_env())


def import_asyncore(vpython):
    return subprocess.run([vpython, "-W", "ignore", "-c",
                           "import asyncore, asynchat; print(asyncore.__file__)"],
                          capture_output=True, text=True, timeout=60, env=plain_env())


@pytest.mark.parametrize("python", NEWER)
def test_the_shim_makes_plain_import_asyncore_serve_on_python_3_12_and_newer(python, tmp_path):
    vpython, site_dir = make_venv(python, tmp_path / "venv")
    assert "No module named 'asyncore'" in import_asyncore(vpython).stderr
    assert shim(vpython, "status").returncode == 1
    enabled = shim(vpython, "enable")
    assert enabled.returncode == 0, enabled.stderr
    assert "eventloop's facade" in enabled.stdout
    assert os.path.isfile(os.path.join(site_dir, "eventloop-asyncore.pth"))
    assert import_asyncore(vpython).stdout.strip() == FACADE_FILE
    name, path = serve_one_session([vpython, LEGACY], plain_env())
    assert (name, path) == ("eventloop.asyncore", FACADE_FILE)
    assert shim(vpython, "status").returncode == 0
    assert shim(vpython, "disable").returncode == 0
    assert not os.path.exists(os.path.join(site_dir, "eventloop-asyncore.pth"))
    assert "No module named 'asyncore'" in import_asyncore(vpython).stderr


@pytest.mark.parametrize("python", WITH_ASYNCORE)
def test_the_shim_leaves_the_stdlib_modules_alone_where_python_has_them(python, tmp_path):
    vpython, _ = make_venv(python, tmp_path / "venv")
    stdlib_file = import_asyncore(vpython).stdout.strip()
    assert stdlib_file and not stdlib_file.startswith(ROOT)
    enabled = shim(vpython, "enable")
    assert enabled.returncode == 0, enabled.stderr
    assert "the shim is not consulted" in enabled.stdout
    assert import_asyncore(vpython).stdout.strip() == stdlib_file
    name, path = serve_one_session([vpython, LEGACY], plain_env())
    assert (name, path) == ("asyncore", stdlib_file)
    # Asked for, the facades serve there too.
    name, path = serve_one_session([vpython, "-m", "eventloop.run", LEGACY], plain_env())
    assert (name, path) == ("eventloop.asyncore", FACADE_FILE)
    assert shim(vpython, "disable").returncode == 0
