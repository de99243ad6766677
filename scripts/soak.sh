#!/bin/sh
# Soak test of `nflame record`: a system-wide recording at 999 Hz on all CPUs
# (10 minutes by default), sampling the recorder's resident memory (VmRSS)
# every 10 s. Prints the RSS curve and the peak; fails if the recording fails.
#
#   scripts/soak.sh [SECONDS]            (as root; SOAK_OUT=DIR keeps the outputs)
#
# Load: with SOAK_LOAD=lab (the default when nginx, wrk and docker-proxy are
# installed) the lab's proxy mode serves wrk for the whole recording (nginx
# behind docker-proxy, scripts/lab.sh; brought up and down here if it was not
# up); SOAK_LOAD=none records whatever runs.
#
# The recorder counts identical samples instead of storing each one, so under
# a steady load its memory levels off once the distinct stacks have been seen;
# the script prints the RSS after the first minute, at the end and the peak,
# and the growth from the first minute to the end. A short version runs in
# the tests (crates/nflame/tests/faults.rs,
# memory_stays_flat_while_recording_all_cpus).
set -eu

duration=${1:-600}
interval=10
root=$(cd "$(dirname "$0")/.." && pwd)
out=${SOAK_OUT:-$(mktemp -d)}
mkdir -p "$out"

if [ -z "${NFLAME:-}" ]; then
    cargo build --release -q -p nflame --manifest-path "$root/Cargo.toml"
    NFLAME=$root/target/release/nflame
fi

load=${SOAK_LOAD:-}
if [ -z "$load" ]; then
    if command -v nginx >/dev/null && command -v wrk >/dev/null &&
        command -v docker-proxy >/dev/null; then load=lab; else load=none; fi
fi
lab_was_up=1
loader=
if [ "$load" = lab ]; then
    if ! "$root/scripts/lab.sh" status 2>/dev/null | grep -q "proxy: .* answers"; then
        lab_was_up=0
        "$root/scripts/lab.sh" up >"$out/lab-up.txt" 2>&1
    fi
    "$root/scripts/lab.sh" load proxy "$((duration + 5))" >"$out/load.txt" 2>&1 &
    loader=$!
    sleep 1
fi
finish() {
    [ -n "$loader" ] && kill "$loader" 2>/dev/null
    pkill -f "wrk .*127.0.0.1:18082" 2>/dev/null || true
    [ "$lab_was_up" = 0 ] && "$root/scripts/lab.sh" down >/dev/null 2>&1
    true
}

"$NFLAME" record -a -F 999 -d "$duration" -o "$out/soak.folded" -o "$out/soak.svg" \
    2>"$out/stderr.txt" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' INT TERM
trap finish EXIT

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

start=$(date +%s)
peak=0
first=
echo "seconds rss_kib" >"$out/rss.txt"
while kill -0 "$pid" 2>/dev/null; do
    kib=$(rss "$pid")
    if [ -n "$kib" ]; then
        t=$(($(date +%s) - start))
        echo "$t $kib" | tee -a "$out/rss.txt"
        [ "$kib" -gt "$peak" ] && peak=$kib
        [ -z "$first" ] && [ "$t" -ge 60 ] && first=$kib
        [ "$t" -lt "$duration" ] && last=$kib
    fi
    sleep "$interval"
done
status=0
wait "$pid" || status=$?

echo "load: $load; peak RSS: $peak KiB ($((peak / 1024)) MiB) over ${duration} s; curve in $out/rss.txt"
if [ -n "$first" ]; then
    echo "RSS after 60 s: $first KiB; last sample while recording: $last KiB; growth: $((last - first)) KiB (the peak includes symbolizing and writing)"
fi
[ "$load" = lab ] && tail -n 1 "$out/load.txt"
if [ "$status" -ne 0 ]; then
    echo "nflame record failed (exit $status):" >&2
    cat "$out/stderr.txt" >&2
    exit "$status"
fi
ls -l "$out/soak.folded" "$out/soak.svg"
