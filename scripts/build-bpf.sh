#!/usr/bin/env bash
# Compiles nflame's BPF programs (C) into the objects committed beside them.
#   scripts/build-bpf.sh          rebuild the committed objects
#   scripts/build-bpf.sh --check  rebuild into a temporary directory and fail
#                                 when a committed object differs from its source
# Needs Debian's clang (14) and llvm-strip (scripts/install-deps.sh installs them).
# `cargo build` never runs this: the objects are committed.
#
# Reproducible: the compile runs in the source's directory with a relative
# path, so no absolute path reaches the object; DWARF is stripped (the BTF the
# loader and verifier need stays); the same clang gives the same bytes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
check=0
[ "${1:-}" = "--check" ] && check=1
clang="${CLANG:-clang}"
strip="${LLVM_STRIP:-}"
if [ -z "$strip" ]; then
  for c in llvm-strip llvm-strip-14; do command -v "$c" >/dev/null 2>&1 && { strip="$c"; break; }; done
fi
command -v "$clang" >/dev/null 2>&1 || { echo "build-bpf: clang not found (apt-get install clang llvm)" >&2; exit 1; }
[ -n "$strip" ] || { echo "build-bpf: llvm-strip not found (apt-get install llvm)" >&2; exit 1; }

sources=(crates/nflame-luajit/bpf/luastack.bpf.c)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0
for src in "${sources[@]}"; do
  dir="$root/$(dirname "$src")"
  name="$(basename "$src" .c)"
  out="$tmp/$name.o"
  (cd "$dir" && "$clang" -target bpf -O2 -g -Wall -Werror \
      -fno-ident -fdebug-prefix-map="$dir"=. -fdebug-compilation-dir=. \
      -c "$name.c" -o "$out")
  "$strip" -g "$out"
  if [ $check -eq 1 ]; then
    if cmp -s "$out" "$dir/$name.o"; then
      echo "build-bpf: $src: committed object is up to date"
    else
      echo "build-bpf: $src: committed object $dir/$name.o differs from its source; run scripts/build-bpf.sh and commit it" >&2
      status=1
    fi
  else
    cp "$out" "$dir/$name.o"
    echo "build-bpf: wrote $(dirname "$src")/$name.o ($(stat -c %s "$dir/$name.o") bytes, $("$clang" --version | head -1))"
  fi
done
exit $status
