#!/bin/sh
# Soak test of `nflame record`: a system-wide recording at 999 Hz on all CPUs
# (10 minutes by default), sampling the recorder's resident memory (VmRSS)
# every 10 s. Prints the RSS curve and the peak; fails if the recording fails.
#
#   scripts/soak.sh [SECONDS]            (as root; SOAK_OUT=DIR keeps the outputs)
#
# The recorder keeps every sample (tens of bytes each, stacks interned), so
# its memory grows slowly and linearly with the sample count; anything
# steeper is a leak. A short version runs in the tests
# (crates/nflame/tests/faults.rs, memory_stays_flat_while_recording_all_cpus).
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

"$NFLAME" record -a -F 999 -d "$duration" -o "$out/soak.folded" -o "$out/soak.svg" \
    2>"$out/stderr.txt" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' INT TERM

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

start=$(date +%s)
peak=0
echo "seconds rss_kib" >"$out/rss.txt"
while kill -0 "$pid" 2>/dev/null; do
    kib=$(rss "$pid")
    if [ -n "$kib" ]; then
        t=$(($(date +%s) - start))
        echo "$t $kib" | tee -a "$out/rss.txt"
        [ "$kib" -gt "$peak" ] && peak=$kib
    fi
    sleep "$interval"
done
status=0
wait "$pid" || status=$?

echo "peak RSS: $peak KiB ($(($peak / 1024)) MiB) over ${duration} s; curve in $out/rss.txt"
if [ "$status" -ne 0 ]; then
    echo "nflame record failed (exit $status):" >&2
    cat "$out/stderr.txt" >&2
    exit "$status"
fi
ls -l "$out/soak.folded" "$out/soak.svg"
