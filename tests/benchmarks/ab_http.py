"""A/B of two checkouts with one benchmark script: bench_http.py in alternating rounds.

    python tests/benchmarks/ab_http.py DIR_A DIR_B [--rounds 5] [-- BENCH_HTTP_ARGS...]

Each round runs this checkout's ``bench_http.py --rounds 1 --code DIR`` once for each
directory (``git worktree add`` of the commits to compare), in the order A B, then B A, and so
on, so that a drift of the machine during the run falls on both alike.  It prints, per
workload, the medians of our server's requests per second and per server CPU-second for each
checkout, their change from A to B, and ours/nginx in the same rounds.  The samples of every
run are kept in ``--out`` (one JSON file per run, ``bench_http.py --merge`` reads them).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = ("ours", "ours_hello", "ours_echo", "ours_bare")


def run_rounds(dirs, rounds, out, extra):
    for r in range(rounds):
        order = dirs if r % 2 == 0 else dirs[::-1]
        for label, path in order:
            dest = os.path.join(out, "%s-%d.json" % (label, r + 1))
            print("round %d: %s (%s)" % (r + 1, label, path), file=sys.stderr, flush=True)
            subprocess.run([sys.executable, os.path.join(HERE, "bench_http.py"), "--rounds", "1",
                            "--code", path, "--json", dest] + extra,
                           stdout=subprocess.DEVNULL, check=True, timeout=1800)


def collect(out, label):
    """{(workload, our peer): {"rate": [...], "cpu": [...], "ratio": [...]}} for one checkout."""
    rows = {}
    for path in sorted(glob.glob(os.path.join(out, "%s-*.json" % label))):
        by_workload = {}
        for s in json.load(open(path))["samples"]:
            by_workload.setdefault(s["workload"], {})[s["peer"]] = s
        for workload, peers in by_workload.items():
            for peer in OURS:
                if peer in peers:
                    ours = peers[peer]
                    row = rows.setdefault((workload, peer), {"rate": [], "cpu": [], "ratio": []})
                    row["rate"].append(ours["rate"])
                    row["cpu"].append(ours["per_cpu_s"])
                    if "nginx" in peers:
                        row["ratio"].append(ours["rate"] / peers["nginx"]["rate"])
    return rows


def median(values):
    return statistics.median(values) if values else float("nan")


def times(value):
    return "n/a" if value != value else "%.2fx" % value


def table(labels, out):
    a, b = (collect(out, label) for label in labels)
    lines = ["| workload | rounds | %s req/s | %s req/s | change | %s per CPU-s | %s per CPU-s "
             "| change | /nginx %s | /nginx %s |" % (labels * 3),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in a:
        if key not in b:
            continue
        ra, rb = a[key], b[key]
        rate = (median(rb["rate"]) / median(ra["rate"]) - 1) * 100
        cpu = (median(rb["cpu"]) / median(ra["cpu"]) - 1) * 100
        lines.append("| %s (%s) | %d | %s | %s | %+.1f %% | %s | %s | %+.1f %% | %s | %s |" % (
            key[0], key[1], min(len(ra["rate"]), len(rb["rate"])),
            "{:,.0f}".format(median(ra["rate"])), "{:,.0f}".format(median(rb["rate"])), rate,
            "{:,.0f}".format(median(ra["cpu"])), "{:,.0f}".format(median(rb["cpu"])), cpu,
            times(median(ra["ratio"])), times(median(rb["ratio"]))))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", metavar="DIR_A", help="checkout measured first (the 'before')")
    parser.add_argument("b", metavar="DIR_B", help="checkout measured second (the 'after')")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="/tmp/ab_http", help="where the runs' JSON files go")
    parser.add_argument("--report", action="store_true",
                        help="only print the table of the runs already in --out")
    parser.epilog = "Arguments after -- go to bench_http.py (e.g. -- --workload close)."
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1:]
    labels = ("A", "B")
    if not args.report:
        os.makedirs(args.out, exist_ok=True)
        for stale in glob.glob(os.path.join(args.out, "[AB]-*.json")):
            os.remove(stale)
        run_rounds(list(zip(labels, (args.a, args.b))), args.rounds, args.out, extra)
    print("A = %s, B = %s" % (args.a, args.b))
    print(table(labels, args.out))


if __name__ == "__main__":
    main()
