"""Throughput, CPU cost and idle-connection scaling of eventloop's asyncore against the stdlib's.

    python tests/benchmarks/bench_eventloop.py [--duration 5] [--idle 10000] [--rounds 2]
                                               [--json FILE]
    python tests/benchmarks/bench_eventloop.py --per-call [--rounds 5]

For each round and each implementation (stdlib asyncore of Python 3.11, then this
project's facade; the order alternates between rounds), ``asyncore_http.py`` -- the same
channel code on both -- is started pinned to CPU 0, and:

1. ``wrk -t1 -c10`` (pinned to CPU 1, after a 1 s warm-up) gives requests/s, and the
   server's CPU time (``/proc/PID/schedstat``; ``/proc/PID/stat`` is kept in the JSON)
   gives requests per server CPU-second, the figure least disturbed by other load;
2. a helper process on CPU 1 opens ``--idle`` connections and holds them; once the
   server's descriptor count shows them, the growth of its ``VmRSS`` divided by their
   number is the memory an idle connection costs;
3. the same wrk run again measures requests/s with those connections idle, reported
   as a share of the implementation's own 10-connection figure ("kept").

Before each sample it waits (at most 15 s) for other processes to go quiet, and it
reports how much CPU they used during the wrk runs; samples above ``--max-other`` are
left out of the medians.  The table shows medians over rounds and the ratios ours/stdlib.  The stdlib's ``loop(use_poll=True)`` rebuilds its poll set
every pass, so with 10,000 idle connections it serves about 1 % of its usual rate; every
wait here is bounded
(wrk ``--timeout``, per-step limits, and ``--max-seconds`` for the whole run) so such a
run still ends.  Nothing is installed: wrk must be on PATH (``apt-get install wrk``).

Every run ends with the cost of one ``asyncore.loop(count=1)`` and one ``asyncore.poll()``
call on a private dict map of 10 and of 1,000 idle UDP channels, as an SNMP stack calls
them once per pass of its own loop, measured in this process on both implementations
(``--per-call`` measures only that, without wrk).  Two kinds of idle channel:

* ``writable() -> False``: the usual idle channel (``def writable(self): return False``),
  whose answers cannot change, so our reactor keeps it registered; targets: ours/stdlib
  <= 1.0x at 10 channels, and ours at 1,000 <= 1.1x ours at 10 (flat);
* ``writable() -> queue``: a ``writable()`` that returns whether output is queued, as the
  SNMP stack's does; asyncore asks such a channel every pass, and so must we (no target:
  both cost in proportion to the channels).

Each figure is the best of seven timed batches of about 10 ms in each of ``--rounds``
rounds (every implementation's and size's batches taking turns in a shuffled order), in
microseconds per call, with the ratio ours/stdlib; the best, not the median, because on a
shared machine the noise only ever adds.
"""
import argparse
import datetime
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "asyncore_http.py")
IMPLS = ("stdlib", "eventloop")
SERVER_CPU, CLIENT_CPU = "0", "1"
WRK_TIMEOUT = 5          # seconds wrk waits for one response before counting a timeout
HELPER_LIFETIME = 300    # the idle-connection helper exits by itself after this long
TARGETS = {"rps10_ratio": 1.0, "kept_pct": 90.0, "rss_kib": 1.6}


class OutOfTime(Exception):
    """The run's --max-seconds budget is spent; remaining steps are skipped."""


class Budget:
    """A deadline for the whole run; each step waits at most its own limit and what is left."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def limit(self, seconds):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime("--max-seconds reached")
        return min(seconds, left)


# ------------------------------------------------------------------ /proc readers
def stat_cpu_seconds(pid):
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/PID/stat), in clock ticks' precision."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """CPU time of ``pid`` in seconds, to the nanosecond where /proc/PID/schedstat exists.

    The kernel here samples utime/stime at each tick (250 Hz), charging softirq work to
    whichever task the tick lands on; schedstat's run time is exact.
    """
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return stat_cpu_seconds(pid)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def busy_seconds():
    """CPU-seconds the whole machine has spent busy (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(budget, seconds=15, threshold=0.25):
    """Wait (bounded) until other processes use less than ``threshold`` of a core."""
    limit = time.monotonic() + budget.limit(seconds)
    while True:
        b0 = busy_seconds()
        time.sleep(0.5)
        load = (busy_seconds() - b0) / 0.5
        if load < threshold or time.monotonic() >= limit:
            return load


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def raise_nofile():
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the resulting soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the server
def start_server(impl, port, log):
    cmd = ["taskset", "-c", SERVER_CPU, sys.executable, WORKLOAD, "--impl", impl, str(port)]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)


def wait_answering(port, proc, seconds):
    """Wait until one GET gets a complete response (False if the server died or time ran out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            if data.startswith(b"HTTP/1.1 200") and data.endswith(b"Hello, world!\n"):
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def stop(proc, grace=5):
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    return proc.returncode


# ------------------------------------------------------------------ wrk
_WRK_FIELDS = {
    "requests": re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b", re.M),
    "rps": re.compile(r"^Requests/sec:\s*([\d.]+)", re.M),
    "socket_errors": re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                                r"timeout (\d+)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses: (\d+)"),
}


def run_wrk(port, duration, budget, server_pid=None):
    """One pinned ``wrk -t1 -c10`` run; requests/s, errors and the server's CPU seconds."""
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c10", "-d%ds" % duration,
           "--timeout", "%ds" % WRK_TIMEOUT, "http://127.0.0.1:%d/" % port]
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    tick0 = stat_cpu_seconds(server_pid) if server_pid else 0.0
    ru0, busy0, wall0 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=budget.limit(duration + WRK_TIMEOUT + 15)).stdout
    ru1, busy1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), \
        time.monotonic() - wall0
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid else 0.0
    tick_cpu = stat_cpu_seconds(server_pid) - tick0 if server_pid else 0.0
    wrk_cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
    m = _WRK_FIELDS["rps"].search(out)
    n = _WRK_FIELDS["requests"].search(out)
    if not (m and n):
        raise RuntimeError("unexpected wrk output: %r" % out[-400:])
    errs = _WRK_FIELDS["socket_errors"].search(out)
    bad = _WRK_FIELDS["non2xx"].search(out)
    requests = int(n.group(1))
    return {"rps": float(m.group(1)), "requests": requests,
            "errors": (sum(int(x) for x in errs.groups()) if errs else 0)
            + (int(bad.group(1)) if bad else 0),
            "server_cpu_s": round(cpu, 4),
            "server_stat_cpu_s": round(tick_cpu, 3),
            "server_cpu_pct": 100.0 * cpu / wall,
            "req_per_cpu_s": requests / cpu if cpu > 0 else None,
            "wrk_cpu_pct": 100.0 * wrk_cpu / wall,
            # Everything else on this (shared) machine, in % of one core: a noise indicator.
            "other_pct": max(0.0, 100.0 * (busy1 - busy0 - wrk_cpu - cpu) / wall)}


# ------------------------------------------------------------------ idle connections
def hold_idle(port, n, lifetime):
    """Helper process: open ``n`` connections, report, hold them until stdin closes."""
    signal.alarm(lifetime)
    raise_nofile()
    socks = []
    deadline = time.monotonic() + min(120, lifetime)
    failures = 0
    while len(socks) < n and time.monotonic() < deadline and failures < 50:
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        except OSError:
            failures += 1
            time.sleep(0.05)
    print("READY %d" % len(socks), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def open_idle(port, n, budget):
    """Start the helper on the client CPU; return (process, connections it opened)."""
    proc = subprocess.Popen(["taskset", "-c", CLIENT_CPU, sys.executable, os.path.abspath(__file__),
                             "--hold", str(port), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], budget.limit(130))
    line = proc.stdout.readline() if ready else ""
    m = re.match(r"READY (\d+)", line)
    return proc, int(m.group(1)) if m else 0


def release_idle(proc):
    try:
        proc.stdin.close()
        proc.wait(timeout=20)
    except (subprocess.TimeoutExpired, OSError):
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ one sample
def measure(impl, args, budget, logdir, round_no):
    """Steps 1-4 of the module doc for one implementation; returns the sample as a dict."""
    sample = {"impl": impl, "round": round_no}
    port = free_port()
    logpath = os.path.join(logdir, "%s-r%d.log" % (impl, round_no))
    helper = None
    with open(logpath, "wb") as log:
        try:
            sample["quiet_before_pct"] = round(100 * wait_quiet(budget), 1)
        except OutOfTime as exc:
            sample["error"] = "OutOfTime: %s" % exc
            return sample
        server = start_server(impl, port, log)
        try:
            if not wait_answering(port, server, budget.limit(20)):
                raise RuntimeError("server did not answer")
            run_wrk(port, 1, budget)
            sample.update(("%s_10" % k, v) for k, v in run_wrk(port, args.duration, budget,
                                                              server.pid).items())
            time.sleep(0.3)
            rss0, fds0 = rss_kib(server.pid), fd_count(server.pid)
            helper, opened = open_idle(port, args.idle, budget)
            sample["idle_opened"] = opened
            limit = time.monotonic() + budget.limit(90)
            while fd_count(server.pid) < fds0 + opened and time.monotonic() < limit:
                if server.poll() is not None:
                    raise RuntimeError("server exited while accepting idle connections")
                time.sleep(0.1)
            time.sleep(0.3)
            accepted = fd_count(server.pid) - fds0
            sample["idle_accepted"] = accepted
            if accepted > 0:
                sample["rss_kib_per_idle"] = (rss_kib(server.pid) - rss0) / accepted
            run_wrk(port, 1, budget)
            sample.update(("%s_idle" % k, v) for k, v in run_wrk(port, args.duration, budget,
                                                                server.pid).items())
            sample["kept_pct"] = 100.0 * sample["rps_idle"] / sample["rps_10"]
        except (RuntimeError, OSError, OutOfTime, subprocess.TimeoutExpired) as exc:
            sample["error"] = "%s: %s" % (type(exc).__name__, exc)
        finally:
            sample["server_rc"] = stop(server)
            if helper is not None:
                release_idle(helper)
    return sample


# ------------------------------------------------------------------ cost per call
PER_CALL_SIZES = (10, 1000)
PER_CALL_KINDS = ("writable() -> False", "writable() -> queue")
PER_CALL_TARGETS = {"ratio10": 1.0, "flat": 1.1}
BATCH_SECONDS = 0.01     # each timed batch runs about this long
shuffler = random.Random(13)


def per_call_modules():
    """``{"stdlib": module, "eventloop": module}``; stdlib only where Python still has it."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from eventloop import asyncore as ours
    mods = {"eventloop": ours}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asyncore as stdlib
        if stdlib is not ours:
            mods["stdlib"] = stdlib
    except ImportError:
        pass
    return mods


def idle_channel_class(mod, kind):
    """An idle UDP channel of ``mod`` of the given kind (the same code on both modules)."""
    if kind == PER_CALL_KINDS[0]:
        class Idle(mod.dispatcher):
            def writable(self):
                return False

            def handle_read(self):
                self.recv(2048)
    else:
        class Idle(mod.dispatcher):
            queue = ()

            def writable(self):
                return bool(self.queue)

            def handle_read(self):
                self.recv(2048)
    return Idle


def open_idle_map(mod, n, kind):
    """A private dict map of ``n`` idle UDP channels of ``mod``, and their sockets."""
    cls = idle_channel_class(mod, kind)
    cmap, socks = {}, []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks.append(sock)
        sock.bind(("127.0.0.1", 0))
        cls(sock, map=cmap)
    return cmap, socks


def per_call_round(mods, kind, batches=7):
    """Per-call cost (us) of loop(count=1) and poll() on private maps of each size in
    :data:`PER_CALL_SIZES`, for every module in ``mods``: the best of ``batches`` timed
    batches of about 10 ms each.  The batches of every implementation and size take turns in
    a shuffled order, so each sees the same machine and no one always follows another."""
    maps = {}
    try:
        for impl in mods:           # the stdlib first: select() needs descriptors < 1024
            for n in PER_CALL_SIZES:
                maps[impl, n] = open_idle_map(mods[impl], n, kind)
        best = {}
        for call in ("loop", "poll"):
            calls, reps = {}, {}
            for (impl, n), (cmap, _) in maps.items():
                mod = mods[impl]
                fn = calls[impl, n] = (
                    (lambda mod=mod, cmap=cmap: mod.loop(0.0, True, cmap, 1)) if call == "loop"
                    else (lambda mod=mod, cmap=cmap: mod.poll(0.0, cmap)))
                t0 = time.perf_counter()
                for _ in range(20):
                    fn()                                    # warm up, and size the batches
                reps[impl, n] = max(20, int(BATCH_SECONDS * 20 / (time.perf_counter() - t0)))
            order = list(calls.items())
            for _ in range(batches):
                shuffler.shuffle(order)     # no implementation always follows the same one
                for (impl, n), fn in order:
                    t0 = time.perf_counter()
                    for _ in range(reps[impl, n]):
                        fn()
                    cost = (time.perf_counter() - t0) / reps[impl, n] * 1e6
                    key = (impl, n, call)
                    best[key] = min(best.get(key, cost), cost)
        return best
    finally:
        for (impl, _), (cmap, socks) in maps.items():
            mods[impl].close_all(cmap)
            for sock in socks:
                sock.close()


def measure_per_call(rounds):
    """Samples keyed by (impl, kind, n, call), each a list with one figure per round."""
    mods = per_call_modules()
    impls = {impl: mods[impl] for impl in IMPLS if impl in mods}
    samples = {}
    for _ in range(rounds):
        for kind in PER_CALL_KINDS:
            for (impl, n, call), cost in per_call_round(impls, kind).items():
                samples.setdefault((impl, kind, n, call), []).append(cost)
    return samples


def render_per_call(samples, rounds):
    med = {key: min(values) for key, values in samples.items()}
    heads = ["idle channels", "call", "kind", "stdlib us", "ours us", "ours/stdlib",
             "ours vs ours@10"]
    rows = []
    checks = []
    for kind in PER_CALL_KINDS:
        for call in ("loop", "poll"):
            for n in PER_CALL_SIZES:
                ours = med[("eventloop", kind, n, call)]
                theirs = med.get(("stdlib", kind, n, call))
                ratio = ours / theirs if theirs else None
                flat = ours / med[("eventloop", kind, PER_CALL_SIZES[0], call)]
                rows.append(["{:,}".format(n),
                             "loop(count=1)" if call == "loop" else "poll()", kind,
                             "%.2f" % theirs if theirs else "n/a", "%.2f" % ours,
                             "%.2fx" % ratio if ratio else "n/a", "%.2fx" % flat])
                if kind == PER_CALL_KINDS[0] and n == PER_CALL_SIZES[0] and ratio:
                    checks.append(("%s ours/stdlib <= %.1fx at %d channels"
                                   % (rows[-1][1], PER_CALL_TARGETS["ratio10"], n),
                                   ratio <= PER_CALL_TARGETS["ratio10"], "%.2fx" % ratio))
                if kind == PER_CALL_KINDS[0] and n != PER_CALL_SIZES[0]:
                    checks.append(("%s ours at %d <= %.1fx ours at %d"
                                   % (rows[-1][1], n, PER_CALL_TARGETS["flat"],
                                      PER_CALL_SIZES[0]),
                                   flat <= PER_CALL_TARGETS["flat"], "%.2fx" % flat))
    widths = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    text = ["cost per call on a private dict map of idle UDP channels: the best of 7 "
            "interleaved batches in each of %d rounds" % rounds, line(heads),
            "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(r) for r in rows]
    text.append("")
    for label, ok, measured in checks:
        text.append("%-4s %s (measured %s)" % ("PASS" if ok else "FAIL", label, measured))
    if not any(impl == "stdlib" for impl, _, _, _ in samples):
        text.append("n/a  ours/stdlib: this Python has no asyncore of its own (3.11 or older "
                    "needed)")
    return "\n".join(text), all(ok for _, ok, _ in checks)


# ------------------------------------------------------------------ report
COLUMNS = (("rps_10", "req/s @10", "{:,.0f}"),
           ("req_per_cpu_s_10", "req/CPU-s", "{:,.0f}"),
           ("rps_idle", "req/s @10 + {idle} idle", "{:,.0f}"),
           ("kept_pct", "kept %", "{:.1f}"),
           ("rss_kib_per_idle", "RSS KiB/idle conn", "{:.2f}"))


def disturbance(sample):
    """The most CPU other processes used during the sample's wrk runs (% of one core)."""
    return max((sample[k] for k in ("other_pct_10", "other_pct_idle") if k in sample),
               default=0.0)


def summarize(samples, max_other):
    """Median of every column per implementation, over the samples that have it.

    Samples during which other processes used more than ``max_other`` % of a core are left
    out, unless that would leave an implementation with none.
    """
    out = {"dropped": 0}
    for impl in IMPLS:
        mine = [s for s in samples if s["impl"] == impl]
        quiet = [s for s in mine if disturbance(s) <= max_other]
        if quiet:
            out["dropped"] += len(mine) - len(quiet)
            mine = quiet
        row = {}
        for key, _, _ in COLUMNS:
            values = [s[key] for s in mine if s.get(key) is not None]
            row[key] = statistics.median(values) if values else None
            row[key + "_n"] = len(values)
        out[impl] = row
    ours, theirs = out["eventloop"], out["stdlib"]
    out["ratio"] = {key: (ours[key] / theirs[key] if ours[key] and theirs[key] else None)
                    for key, _, _ in COLUMNS}
    return out


def render(summary, samples, args):
    heads = ["impl"] + [title.format(idle=args.idle) for _, title, _ in COLUMNS]
    rows = []
    for impl in IMPLS:
        rows.append([impl] + [fmt.format(summary[impl][key]) if summary[impl][key] is not None
                              else "n/a" for key, _, fmt in COLUMNS])
    rows.append(["ours/stdlib"] + ["%.2fx" % r if r is not None else "n/a"
                                   for r in (summary["ratio"][key] for key, _, _ in COLUMNS)])
    widths = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"
    text = [line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(r) for r in rows]
    other = [disturbance(s) for s in samples]
    if other:
        above = sum(1 for v in other if v > args.max_other)
        text.append("other processes during the wrk runs: median %.0f%%, max %.0f%% of a core; "
                    "%d of %d samples above %.0f%%, %d of them left out of the medians%s"
                    % (statistics.median(other), max(other), above, len(samples), args.max_other,
                       summary["dropped"], " (DISTURBED: read req/CPU-s, not req/s)"
                       if above > summary["dropped"] else ""))
    ours, ratio = summary["eventloop"], summary["ratio"]
    checks = [("req/s @10 ours/stdlib >= %.1fx" % TARGETS["rps10_ratio"], ratio["rps_10"],
               lambda v: v >= TARGETS["rps10_ratio"], "%.2fx"),
              ("ours keeps >= %.0f%% with %d idle" % (TARGETS["kept_pct"], args.idle),
               ours["kept_pct"], lambda v: v >= TARGETS["kept_pct"], "%.1f%%"),
              ("ours RSS per idle connection <= %.1f KiB" % TARGETS["rss_kib"],
               ours["rss_kib_per_idle"], lambda v: v <= TARGETS["rss_kib"], "%.2f KiB")]
    text.append("")
    for label, value, ok, fmt in checks:
        verdict = "n/a" if value is None else ("PASS" if ok(value) else "FAIL")
        text.append("%-4s %s (measured %s)" % (verdict, label, "n/a" if value is None else fmt % value))
    return "\n".join(text)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hold":
        hold_idle(int(sys.argv[2]), int(sys.argv[3]), HELPER_LIFETIME)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections to hold")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write samples and summary as JSON")
    parser.add_argument("--max-seconds", type=float, default=900,
                        help="bound on the whole run (default 900)")
    parser.add_argument("--per-call", action="store_true",
                        help="measure only the cost per loop(count=1)/poll() call on private "
                             "maps (in this process; no wrk needed)")
    parser.add_argument("--max-other", type=float, default=25,
                        help="leave out samples during which other processes used more than "
                             "this %% of a core (default 25), unless none would remain")
    args = parser.parse_args()
    if args.per_call:
        raise_nofile()
        text, ok = render_per_call(measure_per_call(args.rounds), args.rounds)
        print(text)
        return 0 if ok else 1

    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        print("missing: %s; install with: apt-get install %s"
              % (", ".join(missing), " ".join("wrk" if t == "wrk" else "util-linux"
                                               for t in missing)), file=sys.stderr)
        return 2
    nofile = raise_nofile()
    if nofile < args.idle + 100:
        print("RLIMIT_NOFILE is %d: too low for %d idle connections" % (nofile, args.idle),
              file=sys.stderr)
        return 2

    budget = Budget(args.max_seconds)
    logdir = tempfile.mkdtemp(prefix="bench_eventloop-")
    started = time.time()
    samples = []
    for round_no in range(args.rounds):
        order = IMPLS if round_no % 2 == 0 else IMPLS[::-1]
        for impl in order:
            sample = measure(impl, args, budget, logdir, round_no)
            samples.append(sample)
            print("[round %d %-9s] %s" % (round_no, impl, ", ".join(
                "%s=%s" % (k, round(v, 2) if isinstance(v, float) else v)
                for k, v in sample.items() if k not in ("impl", "round"))),
                file=sys.stderr, flush=True)

    summary = summarize(samples, args.max_other)
    print("bench_eventloop: %d round(s), wrk -t1 -c10 -d%ds (after 1 s warm-up), %d idle "
          "connections; server on CPU %s, clients on CPU %s; medians over rounds"
          % (args.rounds, args.duration, args.idle, SERVER_CPU, CLIENT_CPU))
    print(render(summary, samples, args))
    per_call = measure_per_call(args.rounds)
    print()
    print(render_per_call(per_call, args.rounds)[0])
    print("elapsed %.0f s; server logs in %s" % (time.time() - started, logdir))
    if args.json:
        meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "python": sys.version.split()[0], "duration": args.duration, "idle": args.idle,
                "rounds": args.rounds, "nofile": nofile,
                "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
                .splitlines()[0] if shutil.which("wrk") else None}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "samples": samples, "summary": summary,
                       "per_call_us": [{"impl": impl, "kind": kind, "channels": n, "call": call,
                                        "rounds": values}
                                       for (impl, kind, n, call), values in per_call.items()]},
                      f, indent=1)
    return 1 if any("error" in s for s in samples) else 0


if __name__ == "__main__":
    sys.exit(main())
