#!/usr/bin/env python3
"""The share of complete user stacks in folded profiles: the one definition the
benchmarks use for every tool (scripts/bench-dwarf.sh applies it to nflame's
folded output and to `perf script | nflame collapse` alike).

    scripts/complete-stacks.py FILE.folded...     (- or nothing: standard input)

Prints `SHARE SAMPLES`: SAMPLES is the samples with at least one user frame,
SHARE the part of them whose user stack is complete.

A folded line is `ROOT;frame;...;frame COUNT`, root first: the process name
(nflame may put a `[role]` frame before it), then user frames, then kernel
frames (suffixed `_[k]`). A user stack is complete when it holds no
`[truncated]` marker and one of its three outermost user frames is a function
a thread starts in (the list below). Three, not one: a frame-pointer walk can
read a junk address or two beyond a thread's first frame (glibc's `_start`
keeps no frame pointer; Go's `runtime.mstart` leaves one), and nflame drops
such junk where perf shows it as `[unknown]`; with three, both tools are
judged alike. It is the rule of nflame's own summary ("unwound … complete",
`crates/nflame-symbolizer/src/fold.rs`, `is_outermost_frame`), with glibc's
`__libc_start_main_impl` (perf's name for it) added.
"""

import gzip
import sys

START = {
    "_start",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "main",
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.mstart",
    "runtime.mstart.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
}


def lines(paths):
    for path in paths or ["-"]:
        if path == "-":
            yield from sys.stdin
            continue
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            yield from f


def main():
    total = complete = 0
    for line in lines(sys.argv[1:]):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith("["):  # nflame's [role] root frame
            frames = frames[1:]
        user = [f for f in frames[1:] if not f.endswith("_[k]")]
        if not user:
            continue
        total += n
        if "[truncated]" not in user and any(f in START for f in user[:3]):
            complete += n
    share = complete / total if total else 0.0
    print(f"{share:.4f} {total}")


if __name__ == "__main__":
    main()
