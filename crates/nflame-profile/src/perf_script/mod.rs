//! `perf script` text to folded stacks: nflame's collapser.
//!
//! This module owns the translation of the textual output of `perf script`
//! (samples recorded with `perf record -g`, `--call-graph dwarf`, or without a
//! call graph) into a [`Profile`]. It does not run `perf`, symbolize addresses
//! or render anything.
//!
//! # Input
//!
//! A sample is a header line followed by its frames, leaf first; perf ends it
//! with a blank line:
//!
//! ```text
//! nginx  7394 [001]  516.916284:    2004008 cpu-clock:
//!         ffffffff8226ec67 _raw_spin_lock+0x17 ([kernel.kallsyms])
//!                    fde60 __GI___writev+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)
//!             555d7fdd70e8 [unknown] ([unknown])
//! ```
//!
//! The header is `COMM PID/TID [CPU] TIME: PERIOD EVENT:`. The command name
//! may contain blanks and be right-aligned; `PID/` (only `TID` is printed by
//! default), `[CPU]` and `PERIOD` are optional, and so is one of `TIME:` and
//! `EVENT:` (`java 19983 cycles:`). What follows the event is the sample's only
//! frame when it reads as one (a recording without call graphs, or `perf script
//! -G`: a single-line stack) and tracepoint arguments otherwise.
//!
//! A line is told apart by what it holds, never by its indentation or its
//! place:
//!
//! - a frame is `ADDR SYMBOL+0xOFF (MODULE)`, indented or not (`perf script |
//!   sed 's/^\s*//'`); the symbol, the offset and the module may each be
//!   missing (`perf script -F ip,sym`);
//! - a header whose command name is a hexadecimal word (`dd`, `cc1`, `fn`) is
//!   still a header: the word after that name is a PID;
//! - a blank line ends nothing: frames after one still belong to the header
//!   before them (perf prints such blank lines with some field lists); the next
//!   header, or a side-band record, ends a sample;
//! - what perf prints besides samples is skipped and counted in
//!   [`CollapseStats::skipped_lines`]: side-band records
//!   (`--show-task-events`: `sh 10465 2996.896079: PERF_RECORD_FORK(…)`,
//!   `PERF_RECORD_FINISHED_ROUND`) and source lines (`-F +srcline`:
//!   `  file.c:12`; `-F +srccode`: `|12    code`); `#` lines are comments.
//!
//! Any other line is unreadable, and so is a frame before the first header (an
//! input cut inside a sample): it is skipped and counted in
//! [`CollapseStats::unreadable_lines`], the first few are kept with their line
//! numbers, and [`CollapseStats::warning`] words a warning. The sample around an
//! unreadable line keeps the frames that could be read.
//!
//! # Output
//!
//! One stack per sample, root first: the command name (blanks replaced by `_`,
//! optionally with `-PID` or `-PID/TID`, `?` where perf did not print the PID),
//! then the frames. Frame names follow `stackcollapse-perf.pl --all`
//! (FlameGraph), with these choices:
//!
//! - `+0x…` offsets are stripped; `;` inside a name becomes `:`;
//! - names perf left mangled are demangled: `perf script --no-demangle` output
//!   (Rust `_ZN…E` and `_R…`, C++ `_Z…`) and legacy Rust names that a C++
//!   demangler left half done (`GcBox$LT$T$GT$::new::h0123…` → `GcBox<T>::new`);
//!   Rust hashes are dropped;
//! - a C++ argument list is removed only at the end of a name, with the
//!   qualifiers after it (`push_back(int const&)` → `push_back`,
//!   `arrayOopDesc::base(BasicType) const` → `arrayOopDesc::base`); parentheses
//!   inside a name stay: `std::function<int (int, int)>::operator()`,
//!   `main::{lambda(int)#1}`, `(anonymous namespace)::f`, Go's
//!   `net/http.(*Client).Do` (`stackcollapse-perf.pl` cuts at the first `(`);
//! - quotes are kept, where `stackcollapse-perf.pl` deletes `"` and `'`: they
//!   are legal in folded stacks and names hold them (Rust lifetimes
//!   `Split<'a, P>`, JavaScript `RegExp:[\"']`);
//! - a frame without a symbol is named after its module's file name in
//!   brackets (`[libc.so.6]`; a bracketed module like `[kernel.kallsyms]` is not
//!   bracketed twice, as `stackcollapse-perf.pl` does), or `[unknown]` when the
//!   module is unknown too. A run of consecutive `[unknown]` frames becomes one
//!   (perf `-g` following frame pointers through code built without them
//!   prints dozens) unless [`CollapseOptions::fold_unknown_runs`] is off;
//! - with [`CollapseOptions::include_addrs`] (`stackcollapse-perf.pl
//!   --addrs`), a frame without a symbol keeps the address perf printed:
//!   `[libc.so.6+0x1d6a4]` (for a file-backed module, an address in that file,
//!   as `addr2line -e` takes it), `[kernel.kallsyms+0xffffffff8103d0ca]`, or
//!   `0x7f3a5c0e1d2b` when the module is unknown too (never folded);
//! - kernel frames get [`KERNEL_SUFFIX`](crate::KERNEL_SUFFIX) (`_[k]`):
//!   bracketed modules (`[kernel.kallsyms]`, `[nf_conntrack]`), kernel images
//!   (`…/vmlinux`, `vmlinux-5.4.14-…`), kernel module files (`….ko`,
//!   `.ko.xz`, `.ko.zst`, `.ko.gz`) and BPF programs (`bpf_prog_…`). The
//!   bracketed regions of user space are not kernel: `[vdso]` (its code runs in
//!   user mode; `stackcollapse-perf.pl` marks it kernel), `[vsyscall]`,
//!   `[heap]`, `[stack…]`, `[anon…]`, `[uprobes]` and `[unknown]`;
//! - JIT frames get [`JIT_SUFFIX`](crate::JIT_SUFFIX) (`_[j]`): perf maps
//!   (`/tmp/perf-PID.map`), the ELF files `perf inject --jit` writes
//!   (`jitted-PID-N.so`) and `[JIT] tid N`; a Java inline chain in a perf map,
//!   `a->b`, becomes the frames `a;b_[i]`.
//!
//! By default only the first event seen is kept (mixing `cpu-clock` with
//! `page-faults` would be misleading), each sample counts 1, and samples of
//! other events are counted in [`CollapseStats::skipped_other_events`].
//!
//! # Errors and tolerance
//!
//! | input | handling |
//! |---|---|
//! | invalid UTF-8 | error |
//! | no sample at all | [`Error::Empty`]; an error naming the first unreadable line if there were some |
//! | a header directly after a sample's frames (no blank line) | starts a new sample |
//! | a blank line inside a sample, e.g. right after the header | tolerated |
//! | frames without indentation, right-aligned command names | tolerated |
//! | a frame on the header line (no call graph) | the sample's frame |
//! | side-band records, `srcline`/`srccode` lines | skipped, counted in `skipped_lines` |
//! | a line that is none of the above, a frame before any header | skipped, counted and kept as examples in `unreadable_lines` |
//! | CRLF line endings, a missing final blank line | tolerated |
//!
//! Every error names the input and the 1-based line.
//!
//! # Speed and memory
//!
//! The input is streamed in chunks of a few megabytes cut at sample headers;
//! chunks are collapsed in parallel on a rayon pool with a bounded number in
//! flight, so memory stays proportional to the distinct stacks, not to the
//! input. Frame names are built in reused buffers and demangled names are
//! cached: the only allocations in the steady state are for stacks not seen
//! before.
//!
//! # Stages
//!
//! - `chunks`: the streaming reader that cuts the input into chunks at sample
//!   headers, runs them sequentially or on a pool, and merges the chunks'
//!   results in input order (first error wins, line numbers add up);
//! - `grammar`: what kind of line a line is, the header and frame grammar, and
//!   what a module says about its frames (kernel, JIT);
//! - `names`: demangling and argument lists;
//! - `collapser`: one chunk's samples to stacks, naming each frame.

mod chunks;
mod collapser;
mod grammar;
mod names;
#[cfg(test)]
mod tests;

use crate::io::Input;
use crate::{Error, ParseErrorKind, Profile};

/// How `perf script` samples become folded stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollapseOptions {
    /// Weight each sample by its period (the number before the event name:
    /// nanoseconds for `cpu-clock`) instead of counting 1. A sample whose header
    /// shows no period counts 1. Default is `false`.
    pub period: bool,
    /// Name the root frame `comm-PID`, like `stackcollapse-perf.pl --pid`
    /// (`comm-?` when perf printed no PID). Default is `false`.
    pub include_pid: bool,
    /// Name the root frame `comm-PID/TID`, like `stackcollapse-perf.pl --tid`;
    /// implies [`include_pid`](Self::include_pid). Default is `false`.
    pub include_tid: bool,
    /// Suffix kernel frames with `_[k]` ([`crate::KERNEL_SUFFIX`]). Default is `true`.
    pub annotate_kernel: bool,
    /// Suffix JIT frames (`perf-PID.map`, `jitted-PID-N.so`) with `_[j]`
    /// ([`crate::JIT_SUFFIX`]). Default is `true`.
    pub annotate_jit: bool,
    /// Name a frame without a symbol after its address, like
    /// `stackcollapse-perf.pl --addrs`: `[libc.so.6+0x1d6a4]`, or `0x7f3a5c0e1d2b`
    /// when the module is unknown too (see the module doc). Default is `false`.
    pub include_addrs: bool,
    /// Fold a run of consecutive `[unknown]` frames (no symbol, no module) into
    /// one. Default is `true`.
    pub fold_unknown_runs: bool,
    /// Keep only samples of this event (as perf prints it, without the final
    /// `:`, e.g. `cpu-clock`). `None` keeps the first event seen, as
    /// `stackcollapse-perf.pl` does. Samples of other events are counted in
    /// [`CollapseStats::skipped_other_events`]. Default is `None`.
    pub event: Option<String>,
    /// Worker threads; `0` uses the available parallelism. Default is `0`.
    pub threads: usize,
}

impl Default for CollapseOptions {
    fn default() -> Self {
        CollapseOptions {
            period: false,
            include_pid: false,
            include_tid: false,
            annotate_kernel: true,
            annotate_jit: true,
            include_addrs: false,
            fold_unknown_runs: true,
            event: None,
            threads: 0,
        }
    }
}

/// What [`collapse`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollapseStats {
    /// Samples of the kept event, each contributing one stack.
    pub samples: u64,
    /// Samples of other events, left out.
    pub skipped_other_events: u64,
    /// Lines read.
    pub lines: u64,
    /// The event whose samples were kept (`None` if the headers name no event).
    pub event: Option<String>,
    /// The other events seen, in order of first appearance.
    pub other_events: Vec<String>,
    /// Lines perf prints besides samples and frames, skipped: side-band
    /// records (`PERF_RECORD_…`) and source lines (`-F +srcline`, `+srccode`).
    pub skipped_lines: u64,
    /// Lines that are neither a sample header, a frame, nor anything else perf
    /// prints, and frames before the first header: skipped.
    pub unreadable_lines: u64,
    /// The first of the unreadable lines (at most 10), in input order.
    pub unreadable: Vec<SkippedLine>,
    /// The input's name, as errors show it.
    pub source_name: String,
}

/// A line that was skipped, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedLine {
    /// 1-based line number in the input.
    pub line: u64,
    /// The line, cut to 200 bytes.
    pub text: String,
}

/// How many unreadable lines [`CollapseStats::unreadable`] keeps.
const MAX_SKIPPED_EXAMPLES: usize = 10;

impl CollapseStats {
    /// A warning about the unreadable lines (none if there were none): their
    /// count and the first of them as `FILE:LINE: "text"`; with `all`, every
    /// one kept, one per line.
    pub fn warning(&self, all: bool) -> Option<String> {
        use std::fmt::Write as _;
        let first = self.unreadable.first()?;
        let (n, src) = (self.unreadable_lines, &self.source_name);
        let mut w = if n == 1 {
            format!(
                "1 line of {src} is not a `perf script` sample header or frame and was \
                 skipped: {src}:{}: {:?}",
                first.line, first.text
            )
        } else {
            format!(
                "{n} lines of {src} are not `perf script` sample headers or frames and \
                 were skipped; the first: {src}:{}: {:?}",
                first.line, first.text
            )
        };
        if all {
            for l in &self.unreadable[1..] {
                let _ = write!(w, "\n  {}:{}: {:?}", self.source_name, l.line, l.text);
            }
            if n > self.unreadable.len() as u64 {
                let _ = write!(w, "\n  and {} more", n - self.unreadable.len() as u64);
            }
        }
        Some(w)
    }
}

/// Collapses the `perf script` text of `input` into folded stacks.
///
/// Streams the input in chunks cut at sample headers and collapses them on
/// `opts.threads` threads. Unreadable lines are skipped and reported in the
/// stats (see [`CollapseStats::warning`]). An input without any sample of the
/// kept event is an error: [`Error::InvalidOption`] naming the events seen when
/// [`CollapseOptions::event`] matched none of them, [`Error::Parse`] at the
/// first unreadable line if there were some (not `perf script` text), else
/// [`Error::Empty`].
pub fn collapse(
    input: &mut Input,
    opts: &CollapseOptions,
) -> Result<(Profile, CollapseStats), Error> {
    chunks::collapse_in_chunks(input, opts, chunks::CHUNK)
}

/// Which event's samples are kept.
#[derive(Debug, Clone)]
enum EventFilter {
    /// Not known yet: the first header decides.
    Undecided,
    /// Only this event (`None`: headers without an event).
    Only(Option<String>),
}

/// The options, digested for the hot loop.
#[derive(Debug, Clone)]
struct Config {
    period: bool,
    include_pid: bool,
    include_tid: bool,
    annotate_kernel: bool,
    annotate_jit: bool,
    include_addrs: bool,
    fold_unknown_runs: bool,
    chunk_size: usize,
}

impl Config {
    fn new(opts: &CollapseOptions) -> Config {
        Config {
            period: opts.period,
            include_pid: opts.include_pid || opts.include_tid,
            include_tid: opts.include_tid,
            annotate_kernel: opts.annotate_kernel,
            annotate_jit: opts.annotate_jit,
            include_addrs: opts.include_addrs,
            fold_unknown_runs: opts.fold_unknown_runs,
            chunk_size: chunks::CHUNK,
        }
    }
}

/// The result of collapsing a whole input or one chunk.
#[derive(Debug, Default)]
struct Outcome {
    profile: Profile,
    stats: CollapseStats,
    /// The first error: line (1-based, relative to the chunk for chunks) and kind.
    error: Option<(u64, ParseErrorKind)>,
}
