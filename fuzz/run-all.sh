#!/bin/sh
# Runs every fuzz target in turn for SECS seconds (default 180), one process
# at a time, from the seeds in fuzz/seeds/TARGET plus the corpus kept in
# fuzz/corpus/TARGET. Needs cargo-fuzz (cargo install cargo-fuzz) and, on a
# stable toolchain, RUSTC_BOOTSTRAP=1.
#
#   fuzz/run-all.sh [SECS] [TARGET...]
set -u
cd "$(dirname "$0")"
secs=${1:-180}
[ $# -gt 0 ] && shift
targets=${*:-"folded_line folded_read perf_script svg_metadata pprof proc_maps sampler_records gopclntab perf_map rules"}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
mkdir -p logs
# Build once (with debug assertions and overflow checks), then run the
# binaries, so that edits elsewhere in the tree do not rebuild between targets.
cargo fuzz build >logs/build.log 2>&1 || { tail -20 logs/build.log; exit 1; }
bin=target/x86_64-unknown-linux-gnu/release
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t ($secs s)"
    "$bin/$t" "corpus/$t" "seeds/$t" \
        -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout=10 -max_len=65536 -print_final_stats=1 >"logs/$t.log" 2>&1
    echo "exit $?"
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|panicked" "logs/$t.log" | head -5
done
