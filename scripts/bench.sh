#!/usr/bin/env bash
# The one benchmark: every speed and memory claim of nflame, measured in one run on
# this machine, printed with ratios and written to BENCHMARKS.md. Every figure in that
# file comes from this script: each section names the commit, the date and the exact
# command that produced it, and holds that command's output unedited.
#
#   scripts/bench.sh [OUT.md]          (default: BENCHMARKS.md at the top of the repository)
#
# APPEND=1 adds the sections of PARTS to the end of OUT.md instead of rewriting it (a
# part run again later, at another commit: each section says its own commit and date).
#
# Parts (PARTS, default all of them, in this order; each script can also be run alone:
# read their headers for what they measure and their knobs):
#   offline   scripts/bench-offline.sh: nflame collapse / render / diff vs
#             inferno-collapse-perf, inferno-flamegraph, inferno-diff-folded on generated,
#             seeded inputs of several shapes; medians, ratios, peak RSS.
#   record    scripts/bench-record.sh: nflame record vs perf record (+ perf script +
#             inferno-collapse-perf + inferno-flamegraph): recorder CPU, end of sampling to
#             folded + SVG, nginx + wrk requests/s with and without recording, peak RSS of
#             a system-wide recording.
#   dwarf     scripts/bench-dwarf.sh: DWARF unwinding with `nflame record`: complete-stack
#             shares vs perf (one definition, scripts/complete-stacks.py), requests/s kept,
#             the CPU of a recording all in vs perf record + perf script + collapse.
#   overhead  scripts/bench-overhead.py: nginx requests/s kept while nflame or perf records
#             its workers, medians of per-round ratios (OVERHEAD_ROUNDS, default 20).
#   lua       scripts/bench-lua.sh (when present): Lua frames on nginx + LuaJIT: entry-chunk coverage (LUA_ROUNDS),
#             requests/s and recorder CPU with Lua frames on and off.
#   offcpu    scripts/bench-offcpu.sh (when present): off-CPU recording: requests/s kept,
#             on + off-CPU time against wall time, a context-switch stress run.
#   soak      scripts/soak.sh SOAK_SECS (default 300): memory of a long system-wide
#             recording while the lab serves wrk through docker-proxy.
#   criterion the criterion benches of nflame-profile, nflame-render and
#             nflame-symbolizer in quick mode.
#
# Needs root, perf, gcc, nginx + libnginx-mod-http-lua, wrk (scripts/install-deps.sh),
# python3, and inferno's binaries (installed with `cargo install inferno` into
# $INFERNO_ROOT, default /tmp/nflame-inferno, when missing). Takes about 45 minutes.
# OFFLINE_WORK=DIR keeps the large offline inputs in DIR and reuses them next time.
# The figures are ratios measured side by side; load from elsewhere still adds noise,
# and each section prints the load average at its start.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/BENCHMARKS.md}
parts=${PARTS:-offline record dwarf overhead lua offcpu soak criterion}
# The parts' own scripts read PARTS for their sub-parts: not this one.
unset PARTS
export INFERNO_ROOT=${INFERNO_ROOT:-/tmp/nflame-inferno}
if [[ ! -x $INFERNO_ROOT/bin/inferno-flamegraph ]]; then
  cargo install --quiet inferno --root "$INFERNO_ROOT"
fi
export INFERNO_BIN=$INFERNO_ROOT/bin
work=$(mktemp -d /tmp/nflame-bench-all.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$root" && cargo build --quiet --release -p nflame --examples)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  commit="$commit (with uncommitted changes)"
fi

# section TITLE NOTE COMMAND...: runs COMMAND and writes its output under a heading that
# says what ran, where and when.
section() {
  local title=$1 note=$2
  shift 2
  echo
  echo "## $title"
  echo
  echo "Command: \`$*\` (from the top of the repository)."
  echo "Commit $commit; started $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)."
  [[ -n $note ]] && { echo; echo "$note"; }
  echo
  echo '```'
  local start=$SECONDS
  (cd "$root" && "$@") 2>&1 || echo "(failed with status $?)"
  echo '```'
  echo
  echo "Took $((SECONDS - start)) s."
}

want() { [[ " $parts " == *" $1 "* ]]; }

{
  if [[ ${APPEND:-0} == 1 && -f $out ]]; then
    cat "$out"
  else
  echo "# nflame benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\`; nothing in this file is edited by hand. Each section says the"
  echo "commit, date and command that produced it."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r);"
  echo "perf events: $(perf stat -x, -e cycles true 2>&1 | grep -qE 'not supported|<not counted>' && echo 'no hardware PMU (cpu-clock)' || echo 'hardware cycles available')."
  echo "Read the ratios, measured side by side in one run, rather than absolute times: these"
  echo "are shared virtual machines."
  fi
  if want offline; then
    section "Offline: collapse, render, diff vs inferno" \
      "Inputs are generated and seeded (the script's header says how); ratio = inferno / nflame, above 1 means nflame is faster." \
      scripts/bench-offline.sh "${OFFLINE_WORK:-$work/offline}"
  fi
  if want record; then
    section "Recording: nflame vs perf record + perf script + inferno" "" \
      scripts/bench-record.sh "$work/record"
  fi
  if want dwarf; then
    section "DWARF unwinding" "" scripts/bench-dwarf.sh
  fi
  if want overhead; then
    section "Recording overhead on nginx (per-round ratios)" "" \
      bash -c "scripts/lab.sh up >/dev/null && python3 scripts/bench-overhead.py ${OVERHEAD_ROUNDS:-20} none,auto,dwarf,perf,perfip; status=\$?; scripts/lab.sh down >/dev/null; exit \$status"
  fi
  if want lua && [[ -x $here/bench-lua.sh ]]; then
    section "Lua frames" "" scripts/bench-lua.sh "${LUA_ROUNDS:-20}" "${LUA_SECS:-10}"
  fi
  if want offcpu && [[ -x $here/bench-offcpu.sh ]]; then
    section "Off-CPU and wall-clock recording" "" scripts/bench-offcpu.sh "${OFFCPU_ROUNDS:-10}"
  fi
  if want soak; then
    section "Soak: memory of a long system-wide recording" "" \
      scripts/soak.sh "${SOAK_SECS:-300}"
  fi
  if want criterion; then
    section "Criterion (quick)" "" \
      bash -c "cargo bench --quiet -p nflame-profile -p nflame-render -p nflame-symbolizer --bench '*' -- --quick 2>&1 | grep -E -B1 -A1 'time:' | grep -v '^--$'"
  fi
} | tee "$work/bench.md"
mv "$work/bench.md" "$out"
echo "wrote $out"
