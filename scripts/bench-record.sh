#!/usr/bin/env bash
# Measures `nflame record` against `perf record` on the same workload and
# frequency, in one run, and prints medians and ratios:
#
#   1. recorder CPU time: nflame's own CPU (user+sys) vs perf record's, on the
#      calltree workload (fixtures/workloads/calltree.c, one busy thread) for
#      SECS seconds at FREQ Hz. Two figures each: CPU used until the end of
#      sampling (from /proc/PID/stat when the workload exits), and the whole
#      process (wait4 rusage via /usr/bin/time: for nflame this includes
#      symbolizing and writing folded + SVG; for perf, writing perf.data).
#      Target: nflame <= perf.
#   2. end of sampling -> outputs: nflame from the workload's exit to its own
#      exit (folded + SVG written), vs `perf script | inferno-collapse-perf |
#      inferno-flamegraph` on perf's recording of the same run (perf record's
#      own finishing time is not counted against it). Target: ratio <= 1/5.
#   3. nginx + Lua (content_by_lua_block, one worker, 127.0.0.1 only) under
#      wrk for NGINX_SECS: requests/s unrecorded vs recorded by nflame at FREQ
#      Hz (--pid of master and worker), alternating, RUNS times each.
#      Target: recorded >= 97% of unrecorded.
#   4. nflame's peak RSS recording -a for RSS_SECS at FREQ Hz while two
#      calltree workloads keep both CPUs busy. Target: < 100 MB.
#
#   scripts/bench-record.sh [WORKDIR]   (default: a mktemp dir, removed at the end)
#
# Needs root, perf, gcc, nginx + libnginx-mod-http-lua, wrk, curl or wget,
# /usr/bin/time, inferno-collapse-perf and inferno-flamegraph (INFERNO_BIN,
# default /work/scratch-inferno/bin, else PATH).
# Knobs: FREQ (999), SECS (10), RUNS (3), NGINX_SECS (10), WRK_CONNS (32),
# RSS_SECS (60), PORT (18481), SKIP (comma list of parts to skip: cpu,nginx,rss),
# CALL_GRAPHS (nflame --call-graph modes to measure in parts 1-3, default
# "fp auto": fp is what `perf record -g` does, auto is nflame's default).
#
# The figures are only as good as the machine is quiet: the script prints the
# load average before each part. On a shared machine, read the ratios, and
# rerun when in doubt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
freq=${FREQ:-999}
secs=${SECS:-10}
runs=${RUNS:-3}
nginx_secs=${NGINX_SECS:-10}
conns=${WRK_CONNS:-32}
rss_secs=${RSS_SECS:-60}
port=${PORT:-18481}
skip=${SKIP:-}
call_graphs=${CALL_GRAPHS:-fp auto}
inferno_bin=${INFERNO_BIN:-/work/scratch-inferno/bin}

if [[ $# -ge 1 ]]; then work=$1; mkdir -p "$work"; keep=1; else work=$(mktemp -d /tmp/nflame-bench-record.XXXXXX); keep=0; fi
nginx_pid_file=$work/nginx/nginx.pid
children=()
cleanup() {
    local p
    for p in "${children[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -s $nginx_pid_file ]]; then
        kill -QUIT "$(cat "$nginx_pid_file")" 2>/dev/null || true
        sleep 0.5
    fi
    [[ $keep == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

skipped() { [[ ",$skip," == *",$1,"* ]]; }
need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing" >&2; exit 1; }; }
for c in perf gcc /usr/bin/time; do need "$c"; done
if [[ -x $inferno_bin/inferno-flamegraph ]]; then inf=$inferno_bin/; else need inferno-flamegraph; inf=; fi
[[ $(id -u) == 0 ]] || { echo "bench: run as root" >&2; exit 1; }

(cd "$root" && cargo build --quiet --release -p nflame)
nflame=$root/target/release/nflame
ct=$work/calltree
gcc -O2 -g -fno-omit-frame-pointer -fno-optimize-sibling-calls -pthread \
    -o "$ct" "$root/fixtures/workloads/calltree.c"

now() { date +%s.%N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU seconds (user + system) used so far by PID, from /proc/PID/stat.
cpu_of() {
    local stat rest
    stat=$(cat "/proc/$1/stat")
    rest=${stat##*) }
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($12 + $13) / t }' <<<"$rest"
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
# Waits until PID holds a perf event fd, then lets it enable its counters.
wait_attached() {
    local i
    for i in $(seq 500); do
        if ls -l "/proc/$1/fd" 2>/dev/null | grep -q perf_event; then sleep 0.3; return 0; fi
        sleep 0.02
    done
    echo "bench: process $1 never opened perf events" >&2
    return 1
}
# Starts calltree -w MODE SECS; sets W to its pid once it waits for SIGUSR1.
start_workload() {
    local ready=$work/ready.$RANDOM
    "$ct" -w -r "$work/report" "$1" "$2" > "$ready" &
    W=$!
    children+=("$W")
    local i
    for i in $(seq 500); do
        grep -q ready "$ready" 2>/dev/null && { rm -f "$ready"; return 0; }
        sleep 0.01
    done
    echo "bench: workload did not start" >&2
    return 1
}
# The first child of PID (the program /usr/bin/time runs).
child_of() {
    local i c
    for i in $(seq 200); do
        c=$(pgrep -P "$1" | head -1 || true)
        [[ -n $c ]] && { echo "$c"; return 0; }
        sleep 0.01
    done
    return 1
}

echo "nflame record benchmark: $(nproc) CPUs, $(uname -r), FREQ=$freq SECS=$secs RUNS=$runs"
echo "load average at start: $(load) (a shared machine makes every figure noisier)"

# ------------------------------------------------------------- 1 + 2: CPU, post-processing
# One recording of the workload by `nflame --call-graph MODE` or by perf;
# appends "rec_cpu all_cpu post_s samples" to $work/cpu.RECORDER.tsv.
record_nflame() {
    local mode=$1 tpid npid t0 t1 n_rec n_all n_post n_smp
    start_workload tree "$secs"
    /usr/bin/time -f '%U %S %M' -o "$work/n.time" \
        "$nflame" record --call-graph "$mode" --pid "$W" -F "$freq" \
        -o "$work/n.folded" -o "$work/n.svg" 2> "$work/n.err" &
    tpid=$!
    npid=$(child_of "$tpid")
    wait_attached "$npid"
    kill -USR1 "$W"
    wait "$W"
    t0=$(now)
    n_rec=$(cpu_of "$npid")
    wait "$tpid"
    t1=$(now)
    n_all=$(awk '{ printf "%.3f", $1 + $2 }' "$work/n.time")
    n_post=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    n_smp=$(awk '{ s += $NF } END { print s + 0 }' "$work/n.folded")
    grep -q '</svg>' "$work/n.svg" || { echo "bench: nflame wrote no SVG" >&2; exit 1; }
    if (( n_smp < secs * freq / 4 )); then
        echo "bench: nflame recorded too few samples ($n_smp)" >&2; exit 1
    fi
    printf '%s\t%s\t%s\t%s\n' "$n_rec" "$n_all" "$n_post" "$n_smp" >> "$work/cpu.nflame-$mode.tsv"
}
record_perf() {
    local tpid ppid_ t0 t1 p_rec p_all p_post p_smp
    start_workload tree "$secs"
    /usr/bin/time -f '%U %S %M' -o "$work/p.time" \
        perf record -q -e cpu-clock -F "$freq" -g -p "$W" -o "$work/perf.data" 2> "$work/p.err" &
    tpid=$!
    ppid_=$(child_of "$tpid")
    wait_attached "$ppid_"
    kill -USR1 "$W"
    wait "$W"
    p_rec=$(cpu_of "$ppid_")
    wait "$tpid"
    p_all=$(awk '{ printf "%.3f", $1 + $2 }' "$work/p.time")
    t0=$(now)
    perf script -i "$work/perf.data" 2>/dev/null | "${inf}inferno-collapse-perf" --all \
        | tee "$work/p.folded" | "${inf}inferno-flamegraph" > "$work/p.svg"
    t1=$(now)
    p_post=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    p_smp=$(perf script -i "$work/perf.data" -F period 2>/dev/null | grep -c . || true)
    printf '%s\t%s\t%s\t%s\n' "$p_rec" "$p_all" "$p_post" "$p_smp" >> "$work/cpu.perf.tsv"
}
if ! skipped cpu; then
    echo
    echo "== recorder CPU and end-of-sampling -> flame graph (calltree tree ${secs}s, ${freq} Hz), load $(load)"
    recorders="perf"
    for m in $call_graphs; do recorders="$recorders nflame-$m"; done
    for r in $recorders; do : > "$work/cpu.$r.tsv"; done
    for run in $(seq "$runs"); do
        for r in $recorders; do
            case $r in
                perf) record_perf ;;
                nflame-*) record_nflame "${r#nflame-}" ;;
            esac
        done
    done
    printf '%-12s %22s %22s %22s %9s\n' recorder "CPU until end (s)" "CPU whole process (s)" "end -> folded+SVG (s)" samples
    for r in $recorders; do
        f=$work/cpu.$r.tsv
        printf '%-12s %22s %22s %22s %9s   runs: %s\n' "$r" \
            "$(cut -f1 "$f" | median)" "$(cut -f2 "$f" | median)" "$(cut -f3 "$f" | median)" "$(cut -f4 "$f" | median)" \
            "$(cut -f3 "$f" | tr '\n' ' ')"
    done
    p_rec=$(cut -f1 "$work/cpu.perf.tsv" | median)
    p_all=$(cut -f2 "$work/cpu.perf.tsv" | median)
    p_post=$(cut -f3 "$work/cpu.perf.tsv" | median)
    for m in $call_graphs; do
        f=$work/cpu.nflame-$m.tsv
        echo "nflame --call-graph $m vs perf record -g (medians):" \
            "CPU until end of sampling $(ratio "$(cut -f1 "$f" | median)" "$p_rec") (target <= 1)," \
            "whole-process CPU $(ratio "$(cut -f2 "$f" | median)" "$p_all")," \
            "end of sampling -> folded+SVG $(ratio "$(cut -f3 "$f" | median)" "$p_post") (target <= 0.2)"
    done
fi

# ------------------------------------------------------------- 3: nginx under wrk
if ! skipped nginx; then
    need nginx; need wrk
    echo
    echo "== nginx + Lua under wrk (${nginx_secs}s, -t1 -c$conns), unrecorded vs nflame and perf record at ${freq} Hz, load $(load)"
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        echo "bench: port 127.0.0.1:$port is in use; set PORT" >&2; exit 1
    fi
    nw=$work/nginx
    mkdir -p "$nw/logs" "$nw/tmp"
    cat > "$nw/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid $nginx_pid_file;
error_log $nw/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $nw/tmp/body;
    proxy_temp_path $nw/tmp/proxy;
    fastcgi_temp_path $nw/tmp/fastcgi;
    uwsgi_temp_path $nw/tmp/uwsgi;
    scgi_temp_path $nw/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location /lua {
            default_type text/plain;
            content_by_lua_block {
                local t = {}
                for i = 1, 200 do t[i] = string.format("%d:%x", i, i * 7919) end
                ngx.say(#table.concat(t, ","), " ", ngx.var.uri)
            }
        }
    }
}
NGINX
    nginx -p "$nw" -c "$nw/nginx.conf"
    for _ in $(seq 50); do [[ -s $nginx_pid_file ]] && break; sleep 0.1; done
    url=http://127.0.0.1:$port/lua
    master=$(cat "$nginx_pid_file")
    pids="$master,$(pgrep -d, -P "$master")"
    wrk -t1 -c"$conns" -d2s "$url" > /dev/null  # warm-up
    rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
    modes=($call_graphs perf)
    : > "$work/rps.tsv"
    printf '%-4s %12s' run unrecorded
    for m in "${modes[@]}"; do printf ' %12s %7s' "$m" ratio; done
    echo
    for run in $(seq "$runs"); do
        wrk -t1 -c"$conns" -d"${nginx_secs}s" "$url" > "$work/wrk.plain"
        a=$(rps "$work/wrk.plain")
        line=$a
        printf '%-4s %12s' "$run" "$a"
        for m in "${modes[@]}"; do
            if [[ $m == perf ]]; then
                # perf record -g on the same processes, for comparison.
                perf record -q -e cpu-clock -F "$freq" -g -p "$pids" \
                    -o "$work/nginx-perf.data" 2> "$work/nginx-$m.err" &
                npid=$!
                sleep 1
            else
                "$nflame" record --call-graph "$m" --pid "$pids" -F "$freq" \
                    -o "$work/nginx-$m.folded" 2> "$work/nginx-$m.err" &
                npid=$!
                wait_attached "$npid"
            fi
            wrk -t1 -c"$conns" -d"${nginx_secs}s" "$url" > "$work/wrk.rec"
            kill -INT "$npid"
            # perf record exits with 130 when interrupted; nflame with 0.
            wait "$npid" || [[ $m == perf ]]
            b=$(rps "$work/wrk.rec")
            printf ' %12s %7s' "$b" "$(ratio "$b" "$a")"
            line="$line\t$b"
        done
        echo
        printf '%b\n' "$line" >> "$work/rps.tsv"
    done
    a=$(cut -f1 "$work/rps.tsv" | median)
    i=2
    for m in "${modes[@]}"; do
        b=$(cut -f$i "$work/rps.tsv" | median)
        if [[ $m == perf ]]; then
            echo "median requests/s: unrecorded $a, perf record -g $b (ratio $(ratio "$b" "$a"))"
        else
            echo "median requests/s: unrecorded $a, nflame --call-graph $m $b (ratio $(ratio "$b" "$a"); target >= 0.97)"
            echo "  last recording: $(grep -E '^  (samples|lost|named|unwound)' "$work/nginx-$m.err" | tr -s ' ' | tr '\n' ';')"
        fi
        i=$((i + 1))
    done
    kill -QUIT "$master" 2>/dev/null || true
    for _ in $(seq 50); do [[ -e $nginx_pid_file ]] || break; sleep 0.1; done
fi

# ------------------------------------------------------------- 4: peak RSS, -a for RSS_SECS
if ! skipped rss; then
    echo
    echo "== peak RSS: nflame record -a -d $rss_secs at ${freq} Hz, two busy workloads, load $(load)"
    "$ct" tree "$((rss_secs + 3))" & b1=$!; children+=("$b1")
    "$ct" tree "$((rss_secs + 3))" & b2=$!; children+=("$b2")
    /usr/bin/time -f '%M %U %S %e' -o "$work/rss.time" \
        "$nflame" record -a -d "$rss_secs" -F "$freq" -o "$work/all.folded.gz" -o "$work/all.svg" 2> "$work/rss.err" &
    tpid=$!
    npid=$(child_of "$tpid")
    # Peak anonymous memory (heap, ring buffers), polled: max RSS also counts
    # the pages of mapped binaries that symbolization touched (page cache).
    anon_max=0
    while kill -0 "$npid" 2>/dev/null; do
        a=$(awk '/^RssAnon:/ { print $2 }' "/proc/$npid/status" 2>/dev/null || true)
        [[ -n $a ]] && (( a > anon_max )) && anon_max=$a
        sleep 0.05
    done
    wait "$tpid"
    kill "$b1" "$b2" 2>/dev/null || true
    read -r kb u s e < "$work/rss.time"
    echo "peak RSS $(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }') MB (target < 100 MB)," \
        "of which anonymous at most $(awk -v k="$anon_max" 'BEGIN { printf "%.1f", k / 1024 }') MB" \
        "(polled every 50 ms; the rest is mapped binaries' pages); CPU ${u}s user + ${s}s sys over ${e}s"
    echo "recording: $(grep -E '^  (samples|lost|processes|named)' "$work/rss.err" | tr -s ' ' | tr '\n' ';')"
fi
