#!/usr/bin/env bash
# Times nflame's offline commands against inferno's binaries on the same large inputs,
# in one run, and prints median times and ratios (inferno / nflame: above 1 = nflame faster).
#
#   scripts/bench-offline.sh [WORKDIR]        (default: a fresh mktemp dir, removed at the end)
#
#   collapse: nflame collapse        vs inferno-collapse-perf --all   (large `perf script` text)
#   render:   nflame render          vs inferno-flamegraph            (large folded file)
#   diff:     nflame diff -o SVG     vs inferno-diff-folded | inferno-flamegraph
#             (nflame also prints its text report; inferno only draws)
#   diff-text:nflame diff (report)   vs inferno-diff-folded > FILE
#             NOT the same output: nflame reads both profiles, compares them and prints
#             its report (verdict and the top 20 frames and stacks); inferno reads both
#             and writes the whole merged `stack BEFORE AFTER` file (no comparison, no
#             ranking). nflame has no command that writes that file. The row times
#             "both profiles in, the comparison out" for each tool as it is used.
#
# Inputs (nothing here is a single real recording):
#   perf script: the three recordings in fixtures/perf-script/ (nginx-lua, sort-gzip,
#     python-multi-event) concatenated and repeated to PERF_MB megabytes
#     (scripts/make-large-inputs.sh): its distinct stacks do not grow with its size.
#   folded: the real stacks of fixtures/folded/{nginx-lua,sort-gzip}.folded.gz, cycled
#     to FOLDED_LINES lines, each given one of 5,000 synthetic leaf frames (`leaf_N`)
#     and a count derived from the real one; the AFTER side uses other leaves.
#
# Needs: cargo, python3. inferno is installed with
# `cargo install inferno` into $INFERNO_ROOT (default /tmp/nflame-inferno) when missing.
# Knobs: PERF_MB (size of the perf script input, default 400), FOLDED_LINES (default 1000000),
# RUNS (default 5).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${RUNS:-5}
perf_mb=${PERF_MB:-400}
folded_lines=${FOLDED_LINES:-1000000}
inferno_root=${INFERNO_ROOT:-/tmp/nflame-inferno}

if [[ $# -ge 1 ]]; then work=$1; mkdir -p "$work"; keep=1; else work=$(mktemp -d /tmp/nflame-bench.XXXXXX); keep=0; fi
cleanup() { [[ $keep == 1 ]] || rm -rf "$work"; }
trap cleanup EXIT

if [[ ! -x $inferno_root/bin/inferno-flamegraph ]]; then
  echo "bench: installing inferno into $inferno_root"
  cargo install --quiet inferno --root "$inferno_root"
fi
inf=$inferno_root/bin
(cd "$root" && cargo build --quiet --release -p nflame)
nflame=${CARGO_TARGET_DIR:-$root/target}/release/nflame

# Inputs: repeated real recordings and real stacks with synthetic leaves (see above).
if [[ ! -s $work/large.perf.txt ]]; then
  "$here/make-large-inputs.sh" "$work" "$perf_mb" >/dev/null
fi
perf_in=$(ls "$work"/*.perf.txt | head -n1)
if [[ ! -s $work/before.folded ]]; then
  # Many distinct stacks: every real stack with one of 5000 synthetic leaves.
  zcat "$root/fixtures/folded/nginx-lua.folded.gz" "$root/fixtures/folded/sort-gzip.folded.gz" > "$work/real.folded"
  for salt in 1 7; do
    awk -v n="$folded_lines" -v salt="$salt" '
      { stack[NR] = $0 }
      END {
        m = NR
        for (i = 0; i < n; i++) {
          line = stack[i % m + 1]; sp = match(line, / [0-9]+$/)
          s = substr(line, 1, sp - 1); c = substr(line, sp + 1)
          printf "%s;leaf_%d %d\n", s, (i * 2654435761 + salt) % 5000, c + i % 7
        }
      }' "$work/real.folded" > "$work/tmp.folded"
    if [[ $salt == 1 ]]; then mv "$work/tmp.folded" "$work/before.folded"; else mv "$work/tmp.folded" "$work/after.folded"; fi
  done
fi
echo "inputs: $(du -h "$perf_in" | cut -f1) perf script ($(basename "$perf_in"): the fixtures' three recordings repeated), $(wc -l < "$work/before.folded") folded lines ($(du -h "$work/before.folded" | cut -f1)) per diff side (real stacks, synthetic leaves)"
echo "diff-text: nflame's report vs inferno-diff-folded's merged file: different outputs (see the header of this script)"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"

# Each pair of commands is run alternately (nflame, inferno, nflame, …) after one
# warm-up each, so that load from elsewhere on a shared machine hits both alike.
bench() { # name, nflame command, inferno command
  python3 - "$work/$1.json" "$runs" "$2" "$3" <<'PY'
import json, subprocess, sys, time
out, runs, cmds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
times = [[] for _ in cmds]
for rnd in range(runs + 1):
    for i, c in enumerate(cmds):
        t = time.perf_counter()
        subprocess.run(c, shell=True, check=True, stdout=subprocess.DEVNULL)
        if rnd > 0:
            times[i].append(time.perf_counter() - t)
json.dump({"results": [{"command": n, "times": t} for n, t in zip(["nflame", "inferno"], times)]}, open(out, "w"))
PY
}
bench collapse "$nflame collapse $perf_in -o $work/n.folded" \
  "$inf/inferno-collapse-perf --all $perf_in > $work/i.folded"
bench render "$nflame render $work/before.folded -o $work/n.svg" \
  "$inf/inferno-flamegraph $work/before.folded > $work/i.svg"
bench diff "$nflame diff $work/before.folded $work/after.folded -o $work/nd.svg > $work/nd.txt" \
  "$inf/inferno-diff-folded $work/before.folded $work/after.folded | $inf/inferno-flamegraph > $work/id.svg"
bench diff-text "$nflame diff $work/before.folded $work/after.folded > $work/nd.txt" \
  "$inf/inferno-diff-folded $work/before.folded $work/after.folded > $work/id.folded"

# Peak memory of each nflame command (KiB), one run each.
peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1; }
mem_collapse=$(peak "$nflame" collapse "$perf_in" -o "$work/n.folded")
mem_render=$(peak "$nflame" render "$work/before.folded" -o "$work/n.svg")
mem_diff=$(peak "$nflame" diff "$work/before.folded" "$work/after.folded" -o "$work/nd.svg")

python3 - "$work" "$perf_in" <<'PY'
import json, os, statistics, sys
work, perf_in = sys.argv[1], sys.argv[2]
print(f"{'command':<10} {'nflame (median s)':>18} {'inferno (median s)':>19} {'ratio inferno/nflame':>21}")
for name in ["collapse", "render", "diff", "diff-text"]:
    r = {x["command"]: statistics.median(x["times"]) for x in json.load(open(os.path.join(work, name + ".json")))["results"]}
    print(f"{name:<10} {r['nflame']:>18.3f} {r['inferno']:>19.3f} {r['inferno']/r['nflame']:>20.2f}x")
PY
echo "peak RSS (MiB): collapse $((mem_collapse/1024)) (input $(( $(stat -c %s "$perf_in") / 1048576 )) MiB), render $((mem_render/1024)), diff $((mem_diff/1024))"
