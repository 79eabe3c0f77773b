"""``servers.wsgi`` against waitress and gunicorn (gthread) on the same WSGI apps, with ratios.

    python tests/benchmarks/bench_wsgi.py [--duration 5] [--rounds 3] [--json FILE]
                                          [--peer-python PATH] [--only PEER]

Rows (every one ``wrk -t1`` after a 1 s warm-up; the apps are ``wsgi_bench_apps.py``, one module
for every server):

* ``hello``: the plain WSGI hello world over keep-alive, ``-c50``: ``servers.wsgi`` (4 threads)
  against waitress (``--threads 4``) and gunicorn (``-k gthread -w 1 --threads 4``); and
  ``servers.wsgi --threads 0`` (the app on the reactor thread) against waitress;
* ``flask``: Flask's hello, keep-alive ``-c50``: ``servers.wsgi`` against waitress;
* ``large``: a 64 MiB file through ``wsgi.file_wrapper``, ``-c4`` (MB/s), against
  ``python -m servers.http`` serving the same file.

Each server runs as one process pinned to CPU 0 with ``taskset`` (its threads too), wrk on CPU 1;
rounds interleave the servers (reversed every other round) and the table gives medians, the
server's CPU-normalised figure (requests or MB per server CPU-second) and the ratios of the
medians.  Before measuring, every server must answer the hello (or the file, sha256 checked).
The peers run from ``--peer-python``'s environment (a virtualenv with waitress, gunicorn and
Flask, e.g. ``python -m venv --system-site-packages V && V/bin/pip install waitress gunicorn``);
ours from this interpreter.  Machinery (pinning, CPU accounting, wrk's report) is
``bench_http.py``'s.
"""
import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_http as bh  # noqa: E402

DEFAULT_PEER_PYTHON = "/tmp/wsgi-peers/bin/python"
LARGE = 64 << 20

#: workload -> (connections, wrk --timeout seconds); the path is the peer's.
WORKLOADS = {"hello": (50, 10), "flask": (50, 10), "large": (4, 30)}

#: key, label, unit, workload, ours, peer, minimum ratio (ours / peer).
ROWS = (
    ("hello_waitress", "WSGI hello, keep-alive -c50", "req/s", "hello", "wsgi", "waitress", 2.0),
    ("hello_gunicorn", "WSGI hello, keep-alive -c50", "req/s", "hello", "wsgi", "gunicorn", 1.5),
    ("hello_threads0", "WSGI hello, --threads 0, keep-alive -c50", "req/s", "hello", "wsgi0",
     "waitress", 3.0),
    ("flask", "Flask hello, keep-alive -c50", "req/s", "flask", "wsgi_flask", "waitress_flask",
     1.3),
    ("large", "64 MiB via wsgi.file_wrapper, -c4", "MB/s", "large", "wsgi_large", "static", 0.9),
)


class Peer:
    def __init__(self, id, label, workload, path, command):
        self.id, self.label, self.workload, self.path, self.command = \
            id, label, workload, path, command


def make_peers(ctx):
    py, peer = sys.executable, ctx["peer_python"]
    bindir = os.path.dirname(peer)

    def ours(app, *extra):
        return lambda port: [py, "-m", "servers.wsgi", app, str(port), "-b", "127.0.0.1", "-q",
                             *extra]

    def waitress(app):
        return lambda port: [peer, "-m", "waitress", "--threads=4",
                             "--listen=127.0.0.1:%d" % port, app]

    def gunicorn(app):
        return lambda port: [os.path.join(bindir, "gunicorn"), "-k", "gthread", "-w", "1",
                             "--threads", "4", "-b", "127.0.0.1:%d" % port, app]

    return [
        Peer("wsgi", "servers.wsgi --threads 4", "hello", "/", ours("wsgi_bench_apps:hello")),
        Peer("wsgi0", "servers.wsgi --threads 0", "hello", "/",
             ours("wsgi_bench_apps:hello", "--threads", "0")),
        Peer("waitress", "waitress --threads 4", "hello", "/", waitress("wsgi_bench_apps:hello")),
        Peer("gunicorn", "gunicorn gthread 1x4", "hello", "/", gunicorn("wsgi_bench_apps:hello")),
        Peer("wsgi_flask", "servers.wsgi --threads 4 (Flask)", "flask", "/",
             ours("wsgi_bench_apps:flask_hello")),
        Peer("waitress_flask", "waitress --threads 4 (Flask)", "flask", "/",
             waitress("wsgi_bench_apps:flask_hello")),
        Peer("wsgi_large", "servers.wsgi (file_wrapper)", "large", "/",
             ours("wsgi_bench_apps:large")),
        Peer("static", "python -m servers.http (static file)", "large", "/large.bin",
             lambda port: [py, "-m", "servers.http", str(port), "-b", "127.0.0.1", "-d",
                           ctx["docroot"], "-q"]),
    ]


def check(peer, port, ctx):
    status, headers, digest, length, conn = bh.fetch(port, peer.path)
    kept = conn.sock is not None
    conn.close()
    want = ctx["large_sha256"] if peer.workload == "large" else \
        hashlib.sha256(b"Hello, world!\n").hexdigest()
    if status != 200 or digest != want:
        raise bh.CheckFailed("%s: GET %s -> %d, %d bytes" % (peer.id, peer.path, status, length))
    if not kept:
        raise bh.CheckFailed("%s: the connection was not kept alive" % peer.id)


def measure(peer, round_no, args, ctx, budget, samples):
    bh.wait_quiet(budget, args.quiet_wait)
    port = bh.free_port()
    server = bh.Running(peer.command(port), os.path.join(ctx["logs"], "%s-r%d.log"
                                                         % (peer.id, round_no)), ctx["env"])
    try:
        if not bh.wait_answering(server, port, peer.path, budget.limit(20)):
            raise bh.CheckFailed("%s did not answer (log: %s)" % (peer.id, server.log.name))
        server.pids = bh.group_pids(server.pgid) or [server.proc.pid]
        if round_no == 0:
            check(peer, port, ctx)
        conns, timeout = WORKLOADS[peer.workload]
        spec = (peer.path, conns, False, timeout)
        name = "large" if peer.workload == "large" else peer.workload
        bh.run_wrk(port, name, 1, ctx, budget, spec=spec)
        sample = bh.run_wrk(port, name, args.duration, ctx, budget, server, spec=spec)
        sample.update(peer=peer.id, workload=peer.workload, round=round_no)
        samples.append(sample)
        print("[round %d] %-15s %-6s %12s  cpu %5.2fs  other %3.0f%%%s"
              % (round_no, peer.id, peer.workload, "{:,.0f}".format(sample["rate"]),
                 sample["server_cpu_s"], sample["other_pct"],
                 "  errors %d" % sample["errors"] if sample["errors"] else ""),
              file=sys.stderr, flush=True)
    finally:
        server.stop()


def summarize(samples):
    cells = {}
    for peer in {s["peer"] for s in samples}:
        mine = [s for s in samples if s["peer"] == peer]
        rates = [s["rate"] for s in mine]
        per_cpu = [s["per_cpu_s"] for s in mine if s["per_cpu_s"]]
        cells[peer] = {"rate": statistics.median(rates), "n": len(rates),
                       "spread": (max(rates) - min(rates)) / 2 / statistics.median(rates),
                       "per_cpu_s": statistics.median(per_cpu) if per_cpu else None,
                       "other_pct": statistics.median(s["other_pct"] for s in mine),
                       "errors": sum(s["errors"] for s in mine)}
    rows = []
    for key, label, unit, workload, ours, peer, minimum in ROWS:
        a, b = cells.get(ours), cells.get(peer)
        ratio = a["rate"] / b["rate"] if a and b else None
        ratio_cpu = (a["per_cpu_s"] / b["per_cpu_s"]
                     if a and b and a["per_cpu_s"] and b["per_cpu_s"] else None)
        rows.append({"key": key, "label": label, "unit": unit, "ours": ours, "peer": peer,
                     "ratio": ratio, "ratio_per_cpu": ratio_cpu, "min": minimum,
                     "met": None if ratio is None else ratio >= minimum})
    return {"cells": cells, "rows": rows}


def render(summary, labels):
    cells = summary["cells"]

    def fmt(cell, key="rate"):
        if not cell or cell.get(key) is None:
            return "n/a"
        text = "{:,.0f}".format(cell[key])
        if key == "rate" and cell["spread"] >= 0.005:
            text += " ±%.0f%%" % (100 * cell["spread"])
        return text

    heads = ["row", "ours", "peer", "ours", "peer", "ratio", "per CPU-s", "target"]
    table = []
    for row in summary["rows"]:
        a, b = cells.get(row["ours"]), cells.get(row["peer"])
        table.append(["%s (%s)" % (row["label"], row["unit"]), labels[row["ours"]],
                      labels[row["peer"]], fmt(a), fmt(b),
                      "%.2fx" % row["ratio"] if row["ratio"] else "n/a",
                      "%.2fx" % row["ratio_per_cpu"] if row["ratio_per_cpu"] else "n/a",
                      ">= %.1fx: %s" % (row["min"], {True: "met", False: "MISSED",
                                                      None: "n/a"}[row["met"]])])
    return bh._table(heads, table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--json", metavar="PATH", help="also write samples and summary here")
    parser.add_argument("--peer-python", metavar="PATH", default=DEFAULT_PEER_PYTHON,
                        help="interpreter of a venv with waitress, gunicorn and Flask "
                             "(default %s)" % DEFAULT_PEER_PYTHON)
    parser.add_argument("--only", metavar="PEER", action="append",
                        help="run only these peers (see ROWS); repeatable")
    parser.add_argument("--quiet-wait", type=float, default=5.0, metavar="SECONDS",
                        help="before each run, wait at most this long for the machine to go "
                             "quiet (default 5)")
    parser.add_argument("--max-seconds", type=float, default=1800,
                        help="bound on the whole run (default 1800)")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print("missing: %s (apt-get install wrk util-linux)" % tool, file=sys.stderr)
            return 2
    if not os.path.exists(args.peer_python):
        print("no peer interpreter at %s (see --peer-python)" % args.peer_python, file=sys.stderr)
        return 2
    budget = bh.Budget(args.max_seconds)
    tmp = tempfile.mkdtemp(prefix="bench_wsgi-")
    docroot = os.path.join(tmp, "www")
    os.makedirs(docroot)
    large = os.path.join(docroot, "large.bin")
    with open(large, "wb") as f:
        f.write(os.urandom(LARGE))
    with open(large, "rb") as f:
        large_sha256 = hashlib.sha256(f.read()).hexdigest()
    ctx = {"tmp": tmp, "docroot": docroot, "logs": os.path.join(tmp, "logs"),
           "lua": os.path.join(tmp, "report.lua"), "peer_python": args.peer_python,
           "large_sha256": large_sha256,
           "env": dict(os.environ, PYTHONPATH=os.pathsep.join([bh.ROOT, HERE]),
                       PYTHONDONTWRITEBYTECODE="1", WSGI_BENCH_FILE=large)}
    os.makedirs(ctx["logs"])
    with open(ctx["lua"], "w") as f:
        f.write(bh.WRK_LUA)
    peers = make_peers(ctx)
    if args.only:
        peers = [p for p in peers if p.id in args.only]
    labels = {p.id: p.label for p in make_peers(ctx)}
    samples, notes, failed = [], [], set()
    started = time.time()
    try:
        for round_no in range(args.rounds):
            for peer in (peers if round_no % 2 == 0 else peers[::-1]):
                if peer.id in failed:
                    continue
                try:
                    measure(peer, round_no, args, ctx, budget, samples)
                except bh.CheckFailed as exc:
                    failed.add(peer.id)
                    notes.append("FAILED CHECK (not measured): %s" % exc)
                    print(notes[-1], file=sys.stderr)
    except bh.OutOfTime as exc:
        notes.append("stopped early: %s" % exc)
    except KeyboardInterrupt:
        notes.append("interrupted: partial results")
    finally:
        bh.Running.stop_all()
        shutil.rmtree(docroot, ignore_errors=True)
    summary = summarize(samples)
    print("bench_wsgi: %d round(s) x %d s, wrk -t1 (-c50; -c4 for 64 MiB) after a 1 s warm-up; "
          "servers on CPU %s, wrk on CPU %s; %s UTC; load before: %s"
          % (args.rounds, args.duration, bh.SERVER_CPU, bh.CLIENT_CPU,
             datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
             " ".join("%.2f" % x for x in os.getloadavg())))
    print()
    print(render(summary, labels))
    for note in notes:
        print("note: " + note)
    print("\nelapsed %.0f s; logs in %s" % (time.time() - started, ctx["logs"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(["python"] + sys.argv), "samples": samples,
                       "summary": summary, "notes": notes}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
