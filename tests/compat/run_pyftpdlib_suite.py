"""pyftpdlib 1.5.9's own test suite on the asyncore it normally gets and on eventloop's,
compared test by test.

    python tests/compat/run_pyftpdlib_suite.py --python VENV/bin/python [--json FILE]

VENV is a virtual environment outside this repository holding pyftpdlib 1.5.9 and what its
suite needs, e.g.::

    python3.11 -m venv /tmp/ftp311
    /tmp/ftp311/bin/pip install pyftpdlib==1.5.9 pytest psutil pyopenssl

The suite runs twice in that Python, from the same command line (some of its tests read
``sys.argv``), with this checkout on ``PYTHONPATH``:

* **reference**: pyftpdlib as installed.  On Python 3.11 and older it imports the stdlib's
  ``asyncore``/``asynchat``; on 3.12+ its own copies of them (``pyftpdlib._asyncore``,
  ``pyftpdlib._asynchat``), since 1.5.9 never imports ``asyncore`` there;
* **eventloop**: the same with eventloop's facades in their place: on 3.11 and older through
  :func:`eventloop.install_asyncore` (what ``python -m eventloop.run`` does); on 3.12+ its
  copies are replaced by the facades as well, because ``eventloop.shim`` only answers
  ``import asyncore``, which pyftpdlib 1.5.9 does not do there.

Per-test outcomes (passed, failed, error, skipped) come from pytest's JUnit XML.  The report
gives the count of each outcome on each side and every test whose outcome differs; the exit
status is 1 when any does.  Both runs get ``OPENSSL_CONF`` pointing at a file that lowers
OpenSSL's security level to 1: pyftpdlib's test certificate has a 1024-bit key, which an
OpenSSL at its usual default level refuses, failing every FTPS test on both sides.
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUN_PYTEST = "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))"
ON_FACADES = (
    "import sys, eventloop; eventloop.install_asyncore()\n"
    "if sys.version_info >= (3, 12):\n"
    "    from eventloop import asyncore, asynchat\n"
    "    sys.modules['pyftpdlib._asyncore'] = asyncore\n"
    "    sys.modules['pyftpdlib._asynchat'] = asynchat\n"
    "import pyftpdlib.ioloop, pyftpdlib.handlers\n"
    "assert pyftpdlib.ioloop.asyncore.__name__ == 'eventloop.asyncore'\n"
    "assert pyftpdlib.handlers.asynchat.__name__ == 'eventloop.asynchat'\n"
    + RUN_PYTEST)
SIDES = {"reference": RUN_PYTEST, "eventloop": ON_FACADES}

OPENSSL_LEVEL_1 = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT@SECLEVEL=1
"""


def outcomes(junit_xml):
    """``{test id: (outcome, message)}`` from a JUnit XML report; a test id is
    ``module::Class::test`` within ``pyftpdlib.test``."""
    result = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        classname = case.get("classname")
        classname = classname[classname.find("test_"):] if "test_" in classname else classname
        module, _, cls = classname.rpartition(".")
        test_id = "%s.py::%s::%s" % (module, cls, case.get("name"))
        outcome, message = "passed", ""
        for child in case:
            kind = {"error": "error", "failure": "failed", "skipped": "skipped"}.get(child.tag)
            if kind:
                outcome, message = kind, (child.get("message") or "").splitlines()[:1]
                message = message[0][:200] if message else ""
                break
        # A teardown error is reported as a second entry for the same test: keep the worse.
        if result.get(test_id, ("passed",))[0] == "passed":
            result[test_id] = (outcome, message)
    return result


def suite_dir(python):
    return subprocess.run([python, "-c", "import os, pyftpdlib.test as t; "
                           "print(os.path.dirname(t.__file__))"], check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


def run_side(python, side, workdir, timeout, tests=None, tag=""):
    """Run the suite (or only ``tests``, ids as :func:`outcomes` gives them) on one side;
    returns (outcomes, seconds, exit status, output tail)."""
    test_dir = suite_dir(python)
    report = os.path.join(workdir, side + tag + ".xml")
    conf = os.path.join(workdir, "openssl.cnf")
    with open(conf, "w") as f:
        f.write(OPENSSL_LEVEL_1)
    env = dict(os.environ, PYTHONPATH=ROOT, OPENSSL_CONF=conf, PYTHONDONTWRITEBYTECODE="1",
               PYTEST_ADDOPTS="-q -p no:cacheprovider --junitxml=%s" % report)
    run_dir = os.path.join(workdir, side + tag)
    os.makedirs(run_dir)
    targets = [os.path.join(test_dir, t) for t in tests] if tests else [test_dir]
    started = time.monotonic()
    # A session of its own, so a timeout also ends the servers the tests started.
    proc = subprocess.Popen([python, "-c", SIDES[side]] + targets, cwd=run_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if tests:
            return {t: ("timeout", "") for t in tests}, timeout, None, []
        raise SystemExit("%s run took more than %.0f s" % (side, timeout)) from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)     # whatever the tests left running
        except ProcessLookupError:
            pass
    seconds = time.monotonic() - started
    tail = output.strip().splitlines()[-3:]
    if not os.path.exists(report):
        if tests:
            return {t: ("no report", "") for t in tests}, seconds, proc.returncode, tail
        raise SystemExit("%s run wrote no report (status %d):\n%s"
                         % (side, proc.returncode, "\n".join(tail)))
    return outcomes(report), seconds, proc.returncode, tail


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True,
                        help="the interpreter of a virtual environment with pyftpdlib 1.5.9")
    parser.add_argument("--timeout", type=float, default=1500,
                        help="seconds allowed for each run of the suite (default 1500)")
    parser.add_argument("--json", metavar="FILE", help="also write every outcome as JSON")
    parser.add_argument("--recheck", type=int, default=3, metavar="N",
                        help="run each test whose outcome differs N more times alone on each "
                             "side, to tell a flaky test from a real difference (default 3)")
    args = parser.parse_args()
    version = subprocess.run([args.python, "-c", "import sys, pyftpdlib; print('%d.%d.%d' % "
                              "sys.version_info[:3], pyftpdlib.__ver__)"],
                             capture_output=True, text=True, timeout=120)
    if version.returncode != 0:
        print("cannot import pyftpdlib with %s:\n%s" % (args.python, version.stderr),
              file=sys.stderr)
        return 2
    py_version, ftp_version = version.stdout.split()
    results, rechecks = {}, collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="pyftpdlib-suite-") as workdir:
        for side in SIDES:
            results[side] = run_side(args.python, side, workdir, args.timeout)
        ref, ours = results["reference"][0], results["eventloop"][0]
        differ = sorted(t for t in set(ref) | set(ours)
                        if ref.get(t, ("absent",))[0] != ours.get(t, ("absent",))[0])
        for n in range(args.recheck if differ else 0):
            for side in SIDES:
                again = run_side(args.python, side, workdir, 120, differ, "-recheck%d" % n)[0]
                for test_id in differ:
                    rechecks[test_id, side].append(again.get(test_id, ("absent",))[0])
    print("pyftpdlib %s test suite, Python %s (%s)" % (ftp_version, py_version, args.python))
    for side, (result, seconds, status, _) in results.items():
        counts = collections.Counter(outcome for outcome, _ in result.values())
        print("  %-9s %s; %d tests in %.0f s (pytest status %d)"
              % (side, ", ".join("%s %d" % (k, counts[k])
                                 for k in ("passed", "failed", "error", "skipped")),
                 len(result), seconds, status))
    for test_id in differ:
        print("  DIFFERS %s" % test_id)
        for side, result in (("reference", ref), ("eventloop", ours)):
            outcome, message = result.get(test_id, ("absent", ""))
            print("    %-9s %s%s; alone %d more times: %s"
                  % (side, outcome, " (%s)" % message if message else "", args.recheck,
                     ", ".join(rechecks[test_id, side]) or "-"))
    print("same outcome for every test" if not differ else "%d tests differ" % len(differ))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": py_version, "pyftpdlib": ftp_version,
                       "outcomes": {side: {t: list(v) for t, v in results[side][0].items()}
                                    for side in results},
                       "rechecks": {"%s %s" % key: v for key, v in rechecks.items()}},
                      f, indent=1)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
