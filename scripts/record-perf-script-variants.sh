#!/usr/bin/env bash
# Regenerates the `perf script` fixtures that cover the shapes of perf's text
# besides the default one (see fixtures/README.md, "perf script variants"):
# call graphs by DWARF with inlined frames and C++ names, no call graph
# (single-line stacks), names left mangled (`--no-demangle`) or half demangled,
# side-band records and source lines, and `perf inject --jit`.
#
#   scripts/record-perf-script-variants.sh [FIXTURES_DIR]   (default: fixtures/ beside this script)
#
# Needs root (or CAP_PERFMON), perf, g++, rustc, c++filt (binutils), node and
# gzip. Everything temporary lives in one mktemp directory, removed on exit.
# FREQ (default 499) sets the sampling frequency.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../fixtures}
src=$here/../fixtures/workloads
freq=${FREQ:-499}

mkdir -p "$out/perf-script"
work=$(mktemp -d /tmp/nflame-variants.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work"

record() { perf record -q -e cpu-clock -F "$freq" "$@" >/dev/null 2>&1; }
script() { perf script "$@" 2>/dev/null; }
save() { gzip -9 -n > "$out/perf-script/$1.perf.txt.gz"; }

# 1. C++: DWARF call graphs (inlined frames); then no call graph at all (single-line
#    stacks), with dd, whose command name reads as a hexadecimal address.
g++ -O1 -g -fno-omit-frame-pointer -o std-function "$src/std-function.cpp"
record --call-graph dwarf,16384 -o cpp.data ./std-function
script -i cpp.data | save cpp-dwarf
script -i cpp.data --no-demangle | save cpp-dwarf-mangled

record -o flat.data -- sh -c "./std-function >/dev/null; dd if=/dev/urandom of=/dev/null bs=64k count=3000 status=none"
script -i flat.data | save no-callgraph
script -i flat.data -F +srcline,+srccode | save no-callgraph-source

# 2. Rust (legacy mangling, rustc's default): demangled by perf, left mangled,
#    and half demangled by a C++-only demangler (what perf built with an old
#    libbfd printed).
rustc -O -g -C force-frame-pointers=yes -C llvm-args=-inline-threshold=0 -o gcbox "$src/gcbox.rs"
record -g -o rust.data ./gcbox
script -i rust.data | save rust-gcbox
script -i rust.data --no-demangle | save rust-gcbox-mangled
script -i rust.data --no-demangle | c++filt -s gnu-v3 | save rust-gcbox-half-demangled

# 3. Side-band records and source lines: a shell running two programs, printed
#    plainly and with task and mmap events and source lines.
record -g -o sh.data -- sh -c "ls -R /usr/include >/dev/null; dd if=/dev/zero bs=64k count=3000 status=none | gzip -1 >/dev/null"
script -i sh.data | save sh-plain
script -i sh.data --show-task-events --show-mmap-events -F +srcline | save sh-side-band

# 4. A JIT with jitdump: node writes jit-PID.dump, `perf inject --jit` turns it
#    into jitted-PID-N.so files that perf script names.
cp "$src/fib.js" .
perf record -q -k 1 -e cpu-clock -F "$freq" -g -o js.data \
    node --perf-prof --interpreted-frames-native-stack fib.js >/dev/null 2>&1
perf inject --jit -i js.data -o js.jit.data 2>/dev/null
script -i js.jit.data | save node-jitdump

ls -l "$out"/perf-script/{cpp-,no-callgraph,rust-gcbox,sh-,node-}*.perf.txt.gz
