#!/bin/sh
# What recording off-CPU time costs at a high context-switch rate: a pipe
# ping-pong of two processes (fixtures/workloads/offcpu.c, pingpong mode)
# run alone and under each recorder, in alternating rounds, so that a busy
# machine slows both alike. Run as root from the repository, after
# `cargo build --release -p nflame`.
#
#   scripts/bench-offcpu.sh [ROUNDS] [SECONDS]
#
# For each configuration it prints, as medians over the rounds:
#   rt/s        round trips a second (two switches each, one per process)
#   us/rt       CPU microseconds of both processes per round trip
#   rec%        the recorder's CPU, in % of one CPU (nflame, or perf)
#   switches/s  switch-outs the recording saw; stacks/s: with a stack
#   lost        records lost; lost stacks (nflame's stack buffers)
# and the ratio of rt/s to the rounds without a recorder.
set -eu
rounds=${1:-3}
secs=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
nflame=${NFLAME:-${CARGO_TARGET_DIR:-$root/target}/release/nflame}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -g -fno-optimize-sibling-calls -pthread -o "$work/offcpu" "$root/fixtures/workloads/offcpu.c"

# run NAME CMD...: one round; appends "rt_s us_rt rec_pct switches stacks lost lost_stacks"
run() {
    name=$1
    shift
    rep=$work/report
    rm -f "$rep"
    /usr/bin/time -f "%U %S" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        cat "$work/err" >&2
        exit 1
    }
    awk -v t="$(cat "$work/time")" -v secs="$secs" '
        $1 == "round_trips" { rt = $2 }
        $1 == "cpu" { cpu = $2 }
        $1 == "wall" { wall = $2 }
        END {
            split(t, u, " ")
            rec = (u[1] + u[2]) - cpu / 1e9
            if (rec < 0) rec = 0
            printf "%.0f %.3f %.1f", rt / (wall / 1e9), cpu / rt / 1e3, 100 * rec / (wall / 1e9)
        }' "$rep" >>"$work/$name"
    awk '
        /^  switches / { s = $2; gsub(/[(]/, "", $3); st = $3 }
        /^  lost / { l = $2 }
        /stacks at context switches lost/ { ls = $2 }
        END { printf " %s %s %s %s\n", s ? s : 0, st ? st : 0, l ? l : 0, ls ? ls : 0 }
    ' "$work/err" >>"$work/$name"
}

configs="alone nflame-off nflame-off-fp nflame-wall nflame-off-pid perf-c1"
for i in $(seq "$rounds"); do
    for c in $configs; do
        w="$work/offcpu -r $work/report pingpong $secs"
        case $c in
        alone) run "$c" $w ;;
        nflame-off) run "$c" "$nflame" record --off-cpu -o "$work/x.folded" -- $w ;;
        nflame-off-fp) run "$c" "$nflame" record --off-cpu --call-graph fp -o "$work/x.folded" -- $w ;;
        nflame-wall) run "$c" "$nflame" record --wall -o "$work/x.folded" -- $w ;;
        nflame-off-pid)
            # Attached by pid to both processes once they run.
            $w >/dev/null 2>&1 &
            main=$!
            while [ -z "$(pgrep -P $main)" ]; do sleep 0.01; done
            child=$(pgrep -P $main)
            /usr/bin/time -f "%U %S" -o "$work/time" "$nflame" record --off-cpu \
                --pid "$main,$child" -o "$work/x.folded" >"$work/out" 2>"$work/err" || true
            wait $main || true
            # The recorder's CPU alone (the processes are not its children).
            awk -v t="$(cat "$work/time")" '
                $1 == "round_trips" { rt = $2 } $1 == "cpu" { cpu = $2 } $1 == "wall" { wall = $2 }
                END { split(t, u, " "); printf "%.0f %.3f %.1f", rt / (wall / 1e9), cpu / rt / 1e3, 100 * (u[1] + u[2]) / (wall / 1e9) }
            ' "$work/report" >>"$work/$c"
            awk '
                /^  switches / { s = $2; gsub(/[(]/, "", $3); st = $3 }
                /^  lost / { l = $2 }
                /stacks at context switches lost/ { ls = $2 }
                END { printf " %s %s %s %s\n", s ? s : 0, st ? st : 0, l ? l : 0, ls ? ls : 0 }
            ' "$work/err" >>"$work/$c"
            ;;
        perf-c1)
            run "$c" perf record -q -e context-switches -c 1 --switch-events \
                --call-graph dwarf,8192 -o "$work/perf.data" -- $w
            ;;
        esac
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
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
