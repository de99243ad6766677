#!/usr/bin/env python3
"""Recording overhead on nginx: requests/s of the lab's nginx (host mode, its workers
recorded by pid at 999 Hz) under wrk, with no recorder and with each recorder.

  scripts/bench-overhead.py [ROUNDS] [CONFIGS]     (as root; the lab must be up:
                                                   scripts/lab.sh up)

CONFIGS is a comma-separated list of: none, auto, fp, dwarf (nflame record
--call-graph ...), lua, luaoff (nflame record with Lua frames on, the default, or
--lua off; both --call-graph auto), perf (perf record -g), perfdwarf (perf record
--call-graph dwarf), perfip (perf record with no call graph: the cost of the sampling
interrupt alone), off (nflame record --off-cpu), offfp (--off-cpu --call-graph fp),
off500 (--off-cpu with stacks at 500 switches a second per CPU, --switch-rate 500), wall
(nflame record --wall). Default: 20 rounds of none,auto,fp,dwarf,perf. With both lua and
luaoff, the median of the per-round ratios lua / luaoff (requests/s and recorder CPU)
is printed too. scripts/bench-lua.sh runs it on an nginx of its own with a Lua
workload.

Two methods (METHOD):

windows (default): one long `wrk -t1 -c32` run; in every round each config in turn
  gets a window: its recorder starts, after ATTACH seconds (default 1) nginx's own
  request counter (stub_status, /nflame-status) is read, then again WINDOW seconds
  (default 2) later; the recorder is stopped with SIGINT and waited for, so its
  start-up and post-processing fall outside the window. The throughput of this
  2-vCPU VM drifts by +-10% over tens of seconds; windows a few seconds apart see
  the same drift, so each round's ratio (recorded / unrecorded) cancels it. The
  figure reported is the median of the per-round ratios, with its interquartile
  range. Each window also reads the CPU time (schedstat, ns) of the nginx workers and
  of the recorder: nginx's CPU per request (sampling interrupts included, as they run
  in nginx's context) and the recorder's own share of a CPU, both far less noisy
  than requests/s.
runs: each config gets its own wrk run of SECS seconds (default 6), the recorder
  started 1 s before; the median of the per-round ratios of wrk's requests/s.

Environment: NFLAME (default target/release/nflame), LAB_STATE (default
/run/nflame-lab), PORT_HOST (default 18080).
"""
import os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.request

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
nflame = os.environ.get("NFLAME", os.path.join(root, "target/release/nflame"))
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
configs = (sys.argv[2] if len(sys.argv) > 2 else "none,auto,fp,dwarf,perf").split(",")
method = os.environ.get("METHOD", "windows")
secs = int(os.environ.get("SECS", "6"))
attach = float(os.environ.get("ATTACH", "1"))
window = float(os.environ.get("WINDOW", "2"))
state = os.environ.get("LAB_STATE", "/run/nflame-lab")
master = open(f"{state}/nginx-host/nginx.pid").read().strip()
workers = ",".join(subprocess.check_output(["pgrep", "-P", master]).decode().split())
base = f"http://127.0.0.1:{os.environ.get('PORT_HOST', '18080')}"
url = f"{base}/"
tmp = tempfile.mkdtemp(prefix="nflame-overhead.")


def recorder(c):
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if c == "none":
        return None
    if c in ("perf", "perfdwarf", "perfip"):
        cg = {"perf": ["-g"], "perfdwarf": ["--call-graph", "dwarf"], "perfip": []}[c]
        return subprocess.Popen(["perf", "record", "-q", "-F", "999", *cg, "-o",
                                 f"{tmp}/perf.data", "-p", workers], **quiet)
    if c in ("off", "offfp", "off500", "wall"):
        mode = {"off": ["--off-cpu"], "offfp": ["--off-cpu", "--call-graph", "fp"],
                "off500": ["--off-cpu", "--switch-rate", "500"], "wall": ["--wall"]}[c]
        return subprocess.Popen([nflame, "record", "--pid", workers, *mode, "-o",
                                 f"{tmp}/n.folded"], **quiet)
    extra = {"lua": ["--call-graph", "auto"],
             "luaoff": ["--call-graph", "auto", "--lua", "off"]}.get(c, ["--call-graph", c])
    return subprocess.Popen([nflame, "record", "--pid", workers, *extra, "-F", "999", "-o",
                             f"{tmp}/n.folded"], **quiet)


def stop(p):
    if p:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)


def wrk(seconds):
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def served():
    """nginx's count of requests served so far, and when it was read."""
    with urllib.request.urlopen(f"{base}/nflame-status", timeout=5) as r:
        text = r.read().decode()
    t = time.monotonic()
    return int(text.splitlines()[2].split()[2]), t


def cpu_ns(pids):
    """CPU time of every thread of `pids` so far, in ns (0 for a pid that is gone)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def quartiles(xs):
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[2]


print(f"nginx workers {workers}; {os.cpu_count()} CPUs; wrk -t1 -c32; method {method}; "
      f"{rounds} rounds of {','.join(configs)}; load {os.getloadavg()[0]:.2f}", flush=True)
res = {c: [] for c in configs}
per_req = {c: [] for c in configs}  # nginx CPU ns per request
rec_cpu = {c: [] for c in configs}  # recorder CPU share of one CPU
worker_pids = workers.split(",")
load = None
try:
    if method == "windows":
        served()  # fails early without the lab's /nflame-status
        per_round = len(configs) * (attach + window + 1.5)
        load = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{int(rounds * per_round * 2) + 60}s",
                                 url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        for r in range(rounds):
            for c in configs:
                p = recorder(c)
                rec = [str(p.pid)] if p else []
                time.sleep(attach)
                c0, r0 = cpu_ns(worker_pids), cpu_ns(rec)
                n0, t0 = served()
                time.sleep(window)
                n1, t1 = served()
                c1, r1 = cpu_ns(worker_pids), cpu_ns(rec)
                stop(p)
                res[c].append((n1 - n0) / (t1 - t0))
                per_req[c].append((c1 - c0) / max(n1 - n0, 1))
                rec_cpu[c].append((r1 - r0) / 1e9 / (t1 - t0))
                time.sleep(0.3)
            print(f"round {r + 1}: " + " ".join(f"{c}={res[c][-1]:.0f}" for c in configs),
                  flush=True)
    else:
        wrk(2)
        for r in range(rounds):
            for c in configs:
                p = recorder(c)
                time.sleep(1.0)
                res[c].append(wrk(secs))
                stop(p)
            print(f"round {r + 1}: " + " ".join(f"{c}={res[c][-1]:.0f}" for c in configs),
                  flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    for c in configs:
        line = f"{c:10} median {statistics.median(res[c]):8.0f} req/s"
        if "none" in res and c != "none":
            ratios = [a / b for a, b in zip(res[c], res["none"])]
            lo, hi = quartiles(ratios)
            line += (f"   kept (median of per-round ratios) {statistics.median(ratios):.3f}"
                     f"  IQR {lo:.3f}-{hi:.3f}")
        print(line)
    if method == "windows":
        print("nginx CPU per request (sampling interrupts included) and recorder CPU:")
        for c in configs:
            line = (f"{c:10} nginx {statistics.median(per_req[c]) / 1000:6.2f} us/request")
            if "none" in res and c != "none":
                ratios = [a / b for a, b in zip(per_req[c], per_req["none"])]
                lo, hi = quartiles(ratios)
                line += (f"  x{statistics.median(ratios):.3f} of unrecorded"
                         f" (IQR {lo:.3f}-{hi:.3f})")
            if c != "none":
                line += f"; recorder {100 * statistics.median(rec_cpu[c]):.2f}% of a CPU"
            print(line)
    if "lua" in res and "luaoff" in res:
        ratios = [a / b for a, b in zip(res["lua"], res["luaoff"])]
        lo, hi = quartiles(ratios)
        print(f"lua / luaoff requests/s: median of per-round ratios {statistics.median(ratios):.3f}"
              f"  IQR {lo:.3f}-{hi:.3f}")
        if method == "windows":
            cpu = [a / b for a, b in zip(rec_cpu["lua"], rec_cpu["luaoff"]) if b > 0]
            lo, hi = quartiles(cpu)
            print(f"lua / luaoff recorder CPU: median of per-round ratios "
                  f"{statistics.median(cpu):.2f}  IQR {lo:.2f}-{hi:.2f}")
finally:
    if load:
        load.kill()
        load.wait()
    subprocess.run(["rm", "-rf", tmp])
