#!/usr/bin/env bash
# DWARF unwinding, measured on the lab's nginx (+ libnginx-mod-http-lua) under wrk.
#
#   scripts/bench-dwarf.sh            all measurements below, one summary at the end
#
# 1. Throughput kept: wrk alone vs wrk while `nflame record` records the nginx workers
#    at 999 Hz with DWARF unwinding (alternating, ROUNDS times, SECS seconds each). The
#    recorder is attached before wrk starts and stops after wrk ends, so the whole
#    measured window is recorded.
# 2. Complete user stacks of the workers, by one definition for both tools
#    (scripts/complete-stacks.py on folded stacks: `nflame record`'s folded output, and
#    `perf script | nflame collapse`): nflame (auto, dwarf) vs `perf record -g`
#    (frame pointers) on the same load; then
#    the same with the lab's /lua-loop handler, whose Lua LuaJIT compiles into traces
#    (nflame auto vs perf -g vs perf --call-graph dwarf).
# 3. Cost of a LONG-second DWARF recording, all in: the CPU time of the `nflame record`
#    process (sampling, unwinding while recording, symbolizing, folding, writing the
#    folded file) against `perf record --call-graph dwarf` plus `perf script` plus
#    `nflame collapse` of its output (the same folded result), both as user + system
#    CPU seconds from /usr/bin/time.
# 4. User-stack size: completeness, recorder CPU and throughput for 4, 8, 16, 32 KiB.
#
# Needs root, perf, wrk, nginx, libnginx-mod-http-lua (scripts/lab.sh brings the lab up
# on 127.0.0.1 and addresses it creates; it is left up if it was up, else taken down).
# Environment (defaults): ROUNDS=3 SECS=10 LONG=30 FREQ=999 WRK_CONNS=32 NGINX_WORKERS=2

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
LONG=${LONG:-30}
FREQ=${FREQ:-999}
CONNS=${WRK_CONNS:-32}
export NGINX_WORKERS=${NGINX_WORKERS:-2}
URL=http://127.0.0.1:${PORT_HOST:-18080}/
OUT=$(mktemp -d /tmp/nflame-bench-dwarf.XXXXXX)
LAB_WAS_UP=0

cleanup() {
    if [[ $LAB_WAS_UP == 0 ]]; then scripts/lab.sh down >/dev/null 2>&1 || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

for t in perf wrk nginx cargo; do
    command -v $t >/dev/null || { echo "bench-dwarf.sh: $t is missing" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "bench-dwarf.sh: needs root" >&2; exit 1; }

if scripts/lab.sh status 2>/dev/null | grep -q "mode host: .* answers"; then
    LAB_WAS_UP=1
else
    scripts/lab.sh up >/dev/null
fi
cargo build -q --release -p nflame
TARGET=${CARGO_TARGET_DIR:-target}
NFLAME_CLI=$TARGET/release/nflame

master=$(cat "${LAB_STATE:-/run/nflame-lab}/nginx-host/nginx.pid")
WORKERS=$(pgrep -P "$master" | paste -sd' ')
WORKERS_CSV=${WORKERS// /,}
echo "nginx workers: $WORKERS (master $master); $(nproc) CPUs; wrk -t1 -c$CONNS"

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
field() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2; exit}'; }

# Load for $1 seconds in the background, output to $2 (URL: $LOAD_URL, else $URL).
load() { wrk -t1 -c"$CONNS" -d"$1"s "${LOAD_URL:-$URL}" >"$2" & }

# CPU seconds (user + system) of a command, from /usr/bin/time's output file $1.
cpu_s() { awk '{print $1 + $2}' "$1"; }

# Records the workers with `nflame record` under $2 s of load; $1 = call graph. The
# recorder starts first and ends after the load, so the load's whole window is recorded.
# Writes $3 as `complete=SHARE samples=N cpu_s=S lost=L` (SHARE by
# scripts/complete-stacks.py on the folded output $3.folded; S the recorder process's
# whole CPU time, folding and writing included) and wrk's output to $3.wrk.
nflame_run() {
    /usr/bin/time -f '%U %S' -o "$3.time" "$NFLAME_CLI" record --call-graph "$1" \
        --freq "$FREQ" -d $(($2 + 2)) -o "$3.folded" --pid "$WORKERS_CSV" 2>"$3.summary" &
    local rec=$!
    sleep 1
    wrk -t1 -c"$CONNS" -d"$2"s "${LOAD_URL:-$URL}" >"$3.wrk"
    wait "$rec"
    local share n
    read -r share n < <(scripts/complete-stacks.py "$3.folded")
    echo "complete=$share samples=$n cpu_s=$(cpu_s "$3.time") lost=$(awk '$1 == "lost" {print $2}' "$3.summary")" >"$3"
}

# perf records the workers for $2 s under load ($3...: its call-graph options) into
# $OUT/$1.data.
perf_run() {
    local name=$1 secs=$2
    shift 2
    load $((secs + 2)) "$OUT/$name.wrk"
    sleep 1
    perf record -q -F "$FREQ" "$@" -o "$OUT/$name.data" -p "$WORKERS_CSV" -- sleep "$secs" 2>/dev/null
    wait
}

# `SHARE SAMPLES` of complete user stacks in a perf recording (the same definition
# as nflame's: scripts/complete-stacks.py).
perf_complete() {
    perf script -i "$1" 2>/dev/null | "$NFLAME_CLI" -q collapse | scripts/complete-stacks.py
}

wrk -t1 -c"$CONNS" -d3s "$URL" >/dev/null # warm up

echo "== 1. throughput kept (${ROUNDS} x ${SECS} s each, alternating)"
base=() rec=()
for r in $(seq "$ROUNDS"); do
    wrk -t1 -c"$CONNS" -d"$SECS"s "$URL" >"$OUT/base$r"
    base+=("$(rps "$OUT/base$r")")
    nflame_run dwarf "$SECS" "$OUT/rec$r"
    rec+=("$(rps "$OUT/rec$r.wrk")")
    echo "round $r: alone ${base[-1]} req/s, recorded ${rec[-1]} req/s; $(cat "$OUT/rec$r")"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
B=$(median "${base[@]}")
R=$(median "${rec[@]}")
KEPT=$(awk -v b="$B" -v r="$R" 'BEGIN {printf "%.1f", 100 * r / b}')

echo "== 2. complete user stacks"
nflame_run auto "$SECS" "$OUT/auto"
NF_AUTO=$(field "$OUT/auto" complete)
perf_run fp "$SECS" -g
read -r PERF_FP PERF_FP_N < <(perf_complete "$OUT/fp.data")
echo "nflame auto: $NF_AUTO; perf -g: $PERF_FP ($PERF_FP_N samples)"

echo "== 2b. complete user stacks with compiled Lua (${URL}lua-loop)"
export LOAD_URL=${URL}lua-loop
wrk -t1 -c"$CONNS" -d3s "$LOAD_URL" >/dev/null # let LuaJIT compile the loop
nflame_run auto "$SECS" "$OUT/lauto"
LUA_NF=$(field "$OUT/lauto" complete)
perf_run lfp "$SECS" -g
read -r LUA_FP LUA_FP_N < <(perf_complete "$OUT/lfp.data")
perf_run ldw "$SECS" --call-graph dwarf
read -r LUA_DW LUA_DW_N < <(perf_complete "$OUT/ldw.data")
rm -f "$OUT"/l*.data
unset LOAD_URL
echo "nflame auto: $LUA_NF; perf -g: $LUA_FP ($LUA_FP_N samples); perf --call-graph dwarf: $LUA_DW ($LUA_DW_N samples)"

echo "== 3. cost of a ${LONG} s DWARF recording, all in"
load $((LONG + 2)) "$OUT/dw.wrk"
sleep 1
/usr/bin/time -f '%U %S' -o "$OUT/dw.rtime" perf record -q -F "$FREQ" --call-graph dwarf \
    -o "$OUT/dw.data" -p "$WORKERS_CSV" -- sleep "$LONG" 2>/dev/null
wait
PERF_DATA_MB=$(du -m "$OUT/dw.data" | cut -f1)
/usr/bin/time -f '%U %S' -o "$OUT/dw.stime" perf script -i "$OUT/dw.data" >"$OUT/dw.txt" 2>/dev/null
/usr/bin/time -f '%U %S' -o "$OUT/dw.ctime" "$NFLAME_CLI" -q collapse "$OUT/dw.txt" -o "$OUT/dw.folded"
read -r PERF_DW PERF_DW_N < <(scripts/complete-stacks.py "$OUT/dw.folded")
PERF_REC=$(cpu_s "$OUT/dw.rtime")
PERF_SCRIPT=$(cpu_s "$OUT/dw.stime")
PERF_COLLAPSE=$(cpu_s "$OUT/dw.ctime")
PERF_ALL=$(awk -v a="$PERF_REC" -v b="$PERF_SCRIPT" -v c="$PERF_COLLAPSE" 'BEGIN {printf "%.2f", a + b + c}')
rm -f "$OUT/dw.data" "$OUT/dw.txt"
nflame_run dwarf "$LONG" "$OUT/long"
NF_ALL=$(field "$OUT/long" cpu_s)
echo "perf: record $PERF_REC s + script $PERF_SCRIPT s + collapse $PERF_COLLAPSE s = $PERF_ALL s CPU for $PERF_DW_N samples (${PERF_DATA_MB} MB; complete $PERF_DW)"
echo "nflame record: $NF_ALL s CPU, all in; $(cat "$OUT/long")"

echo "== 4. user-stack size"
for size in 4096 8192 16384 32768; do
    nflame_run "dwarf,$size" "$SECS" "$OUT/s$size"
    echo "$size bytes: complete $(field "$OUT/s$size" complete), recorder CPU $(field "$OUT/s$size" cpu_s) s, $(rps "$OUT/s$size.wrk") req/s"
done

echo
echo "== summary"
echo "throughput: alone $B req/s, recorded (dwarf, $FREQ Hz) $R req/s: ${KEPT}% kept"
echo "complete worker stacks: nflame auto $NF_AUTO, nflame dwarf $(field "$OUT/long" complete), perf -g $PERF_FP, perf --call-graph dwarf $PERF_DW"
echo "complete worker stacks, compiled Lua (/lua-loop): nflame auto $LUA_NF, perf -g $LUA_FP, perf --call-graph dwarf $LUA_DW"
echo "CPU of a $LONG s DWARF recording to folded stacks: perf record + perf script + collapse $PERF_ALL s; nflame record $NF_ALL s (nflame / perf = $(awk -v p="$PERF_ALL" -v n="$NF_ALL" 'BEGIN {printf "%.2f", n / p}'))"
