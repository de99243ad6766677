#!/usr/bin/env python3
"""Recording overhead on nginx: requests/s of the lab's nginx (host mode, its workers
recorded by pid at 999 Hz) under `wrk -t1 -c32`, with no recorder and with each
recorder, alternating within every round; prints medians and the median of the
per-round ratios (recorded / unrecorded in the same round), which cancels slow drifts
of a shared machine.

  scripts/bench-overhead.py [ROUNDS] [CONFIGS]     (as root; the lab must be up:
                                                   scripts/lab.sh up)

CONFIGS is a comma-separated list of: none, auto, fp, dwarf (nflame record
--call-graph ...), perf (perf record -g), perfdwarf (perf record --call-graph dwarf).
Default: 8 rounds of none,auto,fp,dwarf,perf. Environment: SECS (wrk seconds per run,
default 6), NFLAME (default target/release/nflame), LAB_STATE (default /run/nflame-lab).
Each recorder starts 1 s before wrk and is stopped with SIGINT after it, so its
post-processing does not overlap the load.
"""
import os, re, signal, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
nflame = os.environ.get("NFLAME", os.path.join(root, "target/release/nflame"))
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
configs = (sys.argv[2] if len(sys.argv) > 2 else "none,auto,fp,dwarf,perf").split(",")
secs = int(os.environ.get("SECS", "6"))
state = os.environ.get("LAB_STATE", "/run/nflame-lab")
master = open(f"{state}/nginx-host/nginx.pid").read().strip()
workers = ",".join(subprocess.check_output(["pgrep", "-P", master]).decode().split())
url = f"http://127.0.0.1:{os.environ.get('PORT_HOST', '18080')}/"
tmp = tempfile.mkdtemp(prefix="nflame-overhead.")


def recorder(c):
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if c == "none":
        return None
    if c in ("perf", "perfdwarf"):
        cg = ["-g"] if c == "perf" else ["--call-graph", "dwarf"]
        return subprocess.Popen(["perf", "record", "-q", "-F", "999", *cg, "-o",
                                 f"{tmp}/perf.data", "-p", workers], **quiet)
    return subprocess.Popen([nflame, "record", "--pid", workers, "--call-graph", c, "-F",
                             "999", "-o", f"{tmp}/n.folded"], **quiet)


def wrk(seconds):
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", url], capture_output=True,
                         text=True, timeout=seconds + 30).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


print(f"nginx workers {workers}; {os.cpu_count()} CPUs; wrk -t1 -c32 {secs} s; "
      f"{rounds} rounds of {','.join(configs)}; load {os.getloadavg()[0]:.2f}", flush=True)
wrk(2)
res = {c: [] for c in configs}
for r in range(rounds):
    for c in configs:
        p = recorder(c)
        time.sleep(1.0)
        res[c].append(wrk(secs))
        if p:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
    print(f"round {r + 1}: " + " ".join(f"{c}={res[c][-1]:.0f}" for c in configs), flush=True)
print(f"load at the end {os.getloadavg()[0]:.2f}")
for c in configs:
    line = f"{c:10} median {statistics.median(res[c]):8.0f} req/s"
    if "none" in res and c != "none":
        ratios = [a / b for a, b in zip(res[c], res["none"])]
        line += f"   kept (median of per-round ratios) {statistics.median(ratios):.3f}"
    print(line)
subprocess.run(["rm", "-rf", tmp])
