#!/bin/bash
# Off-CPU and wall-clock recording, measured. Run as root from the repository,
# after `cargo build --release -p nflame` (NFLAME=path overrides the binary).
# It starts servers and loads, so it takes the machine-wide lock
# /tmp/nflame-heavy.lock (unless NFLAME_HEAVY_LOCKED is set: the caller holds it).
#
#   scripts/bench-offcpu.sh [ROUNDS]        (default 10)
#   PARTS="kept accounting cost stress"      (the default: all four parts below)
#
# 1. requests/s kept: the lab's nginx (scripts/lab.sh, host mode; brought up
#    and down here unless it is up already) under wrk, its workers recorded
#    with `nflame record --off-cpu` and `--wall`, by scripts/bench-overhead.py's
#    windows method (the median of per-round ratios recorded / unrecorded).
# 2. accounting: `nflame record --wall --per-thread -- offcpu mix 5`
#    (fixtures/workloads/offcpu.c: sleeps, pipe reads, polls, spinning, an
#    idle thread): per thread, the graph's time (on-CPU samples weighed by
#    their period + off-CPU time) against the thread's lifetime in the
#    recording, and the main thread's against the workload's own clock.
# 3. cost at a high switch rate: a pipe ping-pong of two processes (two
#    switches a round trip) alone, under `nflame record --off-cpu` by command
#    (DWARF and frame-pointer stacks), and under `perf record -e
#    context-switches -c 1 --switch-events --call-graph dwarf` (the same data
#    taken perf's way: every switch with a stack), in alternating rounds;
#    then the stress run: `nflame record -a --off-cpu` for STRESS_SECS
#    (default 30) while the ping-pong runs: switches a second seen, stacks
#    taken, records lost, the recorder's CPU and its peak memory.
set -euo pipefail
if [[ -z ${NFLAME_HEAVY_LOCKED:-} ]]; then
    export NFLAME_HEAVY_LOCKED=1
    exec flock /tmp/nflame-heavy.lock "$0" "$@"
fi
rounds=${1:-10}
stress=${STRESS_SECS:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
nflame=${NFLAME:-${CARGO_TARGET_DIR:-$root/target}/release/nflame}
export NFLAME=$nflame
work=$(mktemp -d)
lab_started=
cleanup() {
    [[ -n $lab_started ]] && bash "$root/scripts/lab.sh" down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -g -fno-optimize-sibling-calls -pthread -o "$work/offcpu" "$root/fixtures/workloads/offcpu.c"
parts=${PARTS:-kept accounting cost stress}
want() { [[ " $parts " == *" $1 "* ]]; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if want kept; then
echo "## 1. nginx requests/s kept while recording off-CPU time"
if ! bash "$root/scripts/lab.sh" status 2>/dev/null | grep -q "mode host: .* answers"; then
    bash "$root/scripts/lab.sh" up >"$work/lab-up" 2>&1 || { cat "$work/lab-up" >&2; exit 1; }
    lab_started=1
fi
python3 "$root/scripts/bench-overhead.py" "$rounds" none,off,wall
if [[ -n $lab_started ]]; then
    bash "$root/scripts/lab.sh" down >/dev/null 2>&1 || true
    lab_started=
fi
fi

if want accounting; then
echo
echo "## 2. on-CPU + off-CPU time against wall time, per thread (--wall)"
for i in 1 2 3; do
    "$nflame" record --wall --per-thread -o "$work/wall.folded" -- \
        "$work/offcpu" -r "$work/report" mix 5 >/dev/null 2>"$work/wall.err"
    # The graph's time per thread frame (µs), the summary's lifetimes (s).
    awk '!/^#/ { n = split($0, f, ";"); c = $NF; t[f[2]] += c }
         END { for (k in t) print k, t[k] }' "$work/wall.folded" | sort >"$work/graph.$i"
    awk '$1 == "thread" { name = $2; tid = $3; span = $(NF - 1); print name "-" tid, span }' \
        "$work/wall.err" | sort >"$work/span.$i"
    wall=$(awk '$1 == "wall" { print $2 / 1e9 }' "$work/report")
    join "$work/graph.$i" "$work/span.$i" | awk -v wall="$wall" -v r="$i" '
        { g = $2 / 1e6; printf "run %d %-16s graph %7.3f s  lifetime %7.3f s  graph/lifetime %.4f", r, $1, g, $3, g / $3
          if ($1 ~ /^offcpu-/ && !seen++) printf "  main thread: graph/workload clock %.4f (workload %.3f s)", g / wall, wall
          printf "\n" }'
done | tee "$work/acct"
awk '{ for (i = 1; i <= NF; i++) if ($i == "graph/lifetime") print $(i + 1) }' "$work/acct" |
    sort -n | awk '{ v[NR] = $1 } END { printf "graph/lifetime over %d threads: min %.4f, median %.4f, max %.4f (target: within 0.95-1.05)\n", NR, v[1], v[int((NR + 1) / 2)], v[NR] }'
fi

echo
if want cost; then
echo "## 3. cost at a high context-switch rate (pipe ping-pong, 5 s rounds)"
# run NAME CMD...: one round; appends "rt_s us_rt rec_pct switches stacks lost lost_stacks"
run() {
    local name=$1
    shift
    rm -f "$work/report"
    /usr/bin/time -f "%U %S" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        cat "$work/err" >&2
        exit 1
    }
    awk -v t="$(cat "$work/time")" '
        $1 == "round_trips" { rt = $2 }
        $1 == "cpu" { cpu = $2 }
        $1 == "wall" { wall = $2 }
        END {
            split(t, u, " ")
            rec = (u[1] + u[2]) - cpu / 1e9
            if (rec < 0) rec = 0
            printf "%.0f %.3f %.1f", rt / (wall / 1e9), cpu / rt / 1e3, 100 * rec / (wall / 1e9)
        }' "$work/report" >>"$work/$name"
    awk '
        /^  switches / { s = $2; gsub(/[(]/, "", $3); st = $3 }
        /^  lost / { l = $2 }
        /stacks at context switches lost/ { ls = $2 }
        END { printf " %s %s %s %s\n", s ? s : 0, st ? st : 0, l ? l : 0, ls ? ls : 0 }
    ' "$work/err" >>"$work/$name"
}
configs="alone nflame-off nflame-off-fp perf-c1"
secs=5
for i in $(seq 3); do
    for c in $configs; do
        w="$work/offcpu -r $work/report pingpong $secs"
        case $c in
        alone) run "$c" $w ;;
        nflame-off) run "$c" "$nflame" record --off-cpu -o "$work/x.folded" -- $w ;;
        nflame-off-fp) run "$c" "$nflame" record --off-cpu --call-graph fp -o "$work/x.folded" -- $w ;;
        perf-c1)
            run "$c" perf record -q -e context-switches -c 1 --switch-events \
                --call-graph dwarf,8192 -o "$work/perf.data" -- $w
            ;;
        esac
    done
done
base=$(cut -d' ' -f1 "$work/alone" | median)
printf "%-15s %9s %6s %7s %6s %11s %9s %9s %11s\n" config rt/s kept us/rt rec% switches/s stacks/s lost lost-stacks
for c in $configs; do
    f=$work/$c
    rt=$(cut -d' ' -f1 "$f" | median)
    printf "%-15s %9.0f %6.2f %7s %6s %11.0f %9.0f %9s %11s\n" "$c" "$rt" "$(echo "$rt / $base" | bc -l)" \
        "$(cut -d' ' -f2 "$f" | median)" "$(cut -d' ' -f3 "$f" | median)" \
        "$(echo "$(cut -d' ' -f4 "$f" | median) / $secs" | bc -l)" \
        "$(echo "$(cut -d' ' -f5 "$f" | median) / $secs" | bc -l)" \
        "$(cut -d' ' -f6 "$f" | median)" "$(cut -d' ' -f7 "$f" | median)"
done
fi

if want stress; then
echo
echo "## 3b. stress: nflame record -a --off-cpu under the ping-pong, for 10 s and ${stress} s"
for d in 10 "$stress"; do
    "$work/offcpu" -r "$work/stress-report" pingpong $((d + 10)) >/dev/null 2>&1 &
    pp=$!
    # The ping-pong runs (its child exists) before recording starts.
    while [[ -z $(pgrep -P $pp || true) ]]; do sleep 0.01; done
    /usr/bin/time -f "%e %U %S %M" -o "$work/stress-time" \
        "$nflame" record -a --off-cpu -d "$d" -o "$work/stress.folded.gz" 2>"$work/stress.err" >/dev/null
    kill $pp 2>/dev/null || true
    wait $pp 2>/dev/null || true
    read -r el us sy rss <"$work/stress-time"
    echo "-- $d s:"
    awk -v el="$el" -v us="$us" -v sy="$sy" -v rss="$rss" '
        /^  switches / { s = $2; gsub(/[(]/, "", $3); st = $3 }
        /^  lost / { l = $2; lp = substr($0, index($0, "(")) }
        /^  processes / { p = $2 }
        /stacks at context switches lost/ { ls = $2 }
        /^  off-CPU / { off = $0 }
        END {
            printf "wall %.1f s (recording and post-processing); switches %d (%.0f/s), with a stack %d (%.0f/s); lost records %d %s; lost stacks %d; processes with stacks %d\n", el, s, s / el, st, st / el, l, lp, ls, p
            printf "recorder CPU %.1f%% of one CPU (user %.1f s, system %.1f s, post-processing included); peak RSS %.0f MiB\n", 100 * (us + sy) / el, us, sy, rss / 1024
            print off
        }' "$work/stress.err"
    grep "note:" "$work/stress.err" || true
done
fi
