#!/usr/bin/env bash
# The one benchmark: every speed and memory claim of nflame, measured in one run on
# this machine, printed with ratios and written to BENCHMARKS.md.
#
#   scripts/bench.sh [OUT.md]          (default: BENCHMARKS.md at the top of the repository)
#
# Parts (each script can also be run alone; read their headers for knobs):
#   1. scripts/bench-offline.sh  nflame collapse / render / diff vs inferno-collapse-perf,
#      inferno-flamegraph, inferno-diff-folded on large inputs made from real recordings,
#      alternating runs, medians, ratios, peak RSS.
#   2. scripts/bench-record.sh   nflame record vs perf record (+ perf script +
#      inferno-collapse-perf + inferno-flamegraph): recorder CPU, end of sampling to
#      folded + SVG, nginx + wrk requests/s with and without recording, peak RSS of a
#      60 s system-wide recording.
#   3. scripts/bench-dwarf.sh    DWARF unwinding: complete-stack shares vs perf, nginx
#      requests/s while recording with DWARF, post-processing vs perf script.
#   4. scripts/bench-overhead.py nginx requests/s kept while nflame (auto, dwarf), perf -g or
#      perf with no call graph (the floor) records its workers, as medians of per-round
#      ratios over 2 s windows, plus nginx's CPU per request (OVERHEAD_ROUNDS, default 20).
#   5. scripts/bench-lua.sh      Lua frames on nginx + LuaJIT: share of samples in Lua code
#      reaching the entry chunk (JIT on and off), known shares, requests/s and recorder CPU
#      with Lua frames against --lua off (LUA_ROUNDS, default 20).
#   6. criterion benches: profile parse/merge/diff, symbolization, rendering (quick mode).
#
# Needs root, perf, gcc, nginx + libnginx-mod-http-lua, wrk (scripts/install-deps.sh),
# python3, and inferno's binaries (installed with `cargo install inferno` into
# $INFERNO_ROOT, default /tmp/nflame-inferno, when missing). Takes about 15 minutes.
# OFFLINE_WORK=DIR keeps the large offline inputs in DIR and reuses them next time.
# The machine should be quiet: the figures are ratios measured side by side, but load
# from elsewhere still adds noise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/BENCHMARKS.md}
export INFERNO_ROOT=${INFERNO_ROOT:-/tmp/nflame-inferno}
if [[ ! -x $INFERNO_ROOT/bin/inferno-flamegraph ]]; then
  cargo install --quiet inferno --root "$INFERNO_ROOT"
fi
export INFERNO_BIN=$INFERNO_ROOT/bin
work=$(mktemp -d /tmp/nflame-bench-all.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$root" && cargo build --quiet --release -p nflame --examples)

section() { # title, command...
  local title=$1; shift
  echo
  echo "## $title"
  echo
  echo '```'
  "$@" 2>&1 || echo "(failed with status $?)"
  echo '```'
}

{
  echo "# nflame benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r);"
  echo "perf events: $(perf stat -x, -e cycles true 2>&1 | grep -q 'not supported' && echo 'no hardware PMU (cpu-clock)' || echo 'hardware cycles available')."
  echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
  section "Offline: collapse, render, diff vs inferno" "$here/bench-offline.sh" "${OFFLINE_WORK:-$work/offline}"
  section "Recording: nflame vs perf record + perf script + inferno" "$here/bench-record.sh" "$work/record"
  section "DWARF unwinding" "$here/bench-dwarf.sh"
  section "Recording overhead on nginx (per-round ratios)" bash -c "'$root/scripts/lab.sh' up >/dev/null && python3 '$here/bench-overhead.py' ${OVERHEAD_ROUNDS:-20} none,auto,dwarf,perf,perfip"
  section "Lua frames on nginx + LuaJIT" "$here/bench-lua.sh" "${LUA_ROUNDS:-20}"
  section "Criterion (quick)" bash -c "cd '$root' && cargo bench --quiet -p nflame-profile -p nflame-render -p nflame-symbolizer --bench '*' -- --quick 2>&1 | grep -E -B1 -A1 'time:' | grep -v '^--$' "
} | tee "$work/bench.md"
mv "$work/bench.md" "$out"
echo "wrote $out"
