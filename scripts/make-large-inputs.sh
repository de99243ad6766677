#!/usr/bin/env bash
# Builds large `perf script` inputs for benchmarking the collapser, by
# replicating the real recordings in fixtures/perf-script/ (nothing large is
# committed).
#
#   scripts/make-large-inputs.sh DIR [SIZE_MB]
#
# Writes DIR/large.perf.txt (about SIZE_MB megabytes, default 500): round after
# round of nginx-lua, sort-gzip and python-multi-event, so it holds several
# commands, kernel, JIT and user frames, and two events (cpu-clock first, so
# the page-faults samples are skipped by default). Also writes
# DIR/large.perf.txt.gz (gzip -1) for the compressed-input case.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../fixtures/perf-script
dir=${1:?usage: $0 DIR [SIZE_MB]}
size_mb=${2:-500}
mkdir -p "$dir"
out=$dir/large.perf.txt

one_round=$(mktemp "$dir/.round.XXXXXX")
trap 'rm -f "$one_round"' EXIT
for name in nginx-lua sort-gzip python-multi-event; do
    gzip -dc "$fixtures/$name.perf.txt.gz"
done > "$one_round"

round_bytes=$(stat -c %s "$one_round")
rounds=$(( (size_mb * 1024 * 1024 + round_bytes - 1) / round_bytes ))
: > "$out"
for _ in $(seq "$rounds"); do
    cat "$one_round"
done >> "$out"
gzip -1 -c "$out" > "$out.gz"
ls -l "$out" "$out.gz"
echo "samples: $(grep -c -v -e '^[[:space:]]' -e '^$' -e '^#' "$out") headers in $rounds rounds" >&2
