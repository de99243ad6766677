//! `perf script` text to folded stacks: nflame's collapser.
//!
//! This module owns the translation of the textual output of `perf script`
//! (samples recorded with `perf record -g`) into a [`Profile`]. It does not run
//! `perf`, symbolize addresses or render anything.
//!
//! # Input
//!
//! Every sample is a header line followed by its frames, leaf first, and a
//! blank line:
//!
//! ```text
//! nginx  7394 [001]  516.916284:    2004008 cpu-clock:
//!         ffffffff8226ec67 _raw_spin_lock+0x17 ([kernel.kallsyms])
//!                    fde60 __GI___writev+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)
//!             555d7fdd70e8 [unknown] ([unknown])
//! ```
//!
//! (perf indents frames with a tab.) The header is
//! `COMM PID/TID [CPU] TIME: PERIOD EVENT:`; the command name may contain
//! blanks, `PID/` (only `TID` is printed by default), `[CPU]`, `TIME:` and
//! `PERIOD` are optional, and whatever follows the event (tracepoint
//! arguments) is ignored. Lines starting with `#` are comments.
//!
//! # Output
//!
//! One stack per sample, root first: the command name (blanks replaced by `_`,
//! optionally with `-PID` or `-PID/TID`, `?` where perf did not print the PID),
//! then the frames. Frame names follow `stackcollapse-perf.pl --all`:
//!
//! - `+0x…` offsets are stripped, C++ argument lists (`f(int)`) are removed
//!   (Go method names like `net/http.(*Client).Do` and `(anonymous namespace)`
//!   are kept), `;` inside a name becomes `:`;
//! - an `[unknown]` symbol is named after its module's file name in brackets
//!   (`[libc.so.6]`); a module that is already bracketed (`[kernel.kallsyms]`)
//!   is used as is, where `stackcollapse-perf.pl` would double the brackets;
//! - kernel frames (a bracketed module other than `[unknown]`, `[vdso]`,
//!   `[vsyscall]`, `[heap]`, `[stack]` and `[anon…]`, or a module ending in
//!   `vmlinux`) get [`KERNEL_SUFFIX`](crate::KERNEL_SUFFIX); frames of perf JIT
//!   maps (`perf-PID.map`) get [`JIT_SUFFIX`](crate::JIT_SUFFIX); Java inline
//!   chains `a->b` become frames `a;b_[i]`.
//!
//! By default only the first event seen is kept (mixing `cpu-clock` with
//! `page-faults` would be misleading), each sample counts 1, and samples of
//! other events are counted in [`CollapseStats::skipped_other_events`].
//!
//! # Errors and tolerance
//!
//! | input | handling |
//! |---|---|
//! | a frame line with no sample header before it | error |
//! | a header without `PID` / `PID/TID` | error |
//! | invalid UTF-8 | error |
//! | no sample at all | [`Error::Empty`] |
//! | a header directly after a sample's frames (no blank line) | starts a new sample |
//! | an indented line that is not a frame (e.g. `srcline` output) | skipped, counted |
//! | CRLF line endings, a missing final blank line | tolerated |
//!
//! Every error names the input and the 1-based line.
//!
//! # Speed and memory
//!
//! The input is streamed in chunks of a few megabytes cut at sample
//! boundaries; chunks are collapsed in parallel on a rayon pool with a bounded
//! number in flight, so memory stays proportional to the distinct stacks, not
//! to the input. Frame names are built in reused buffers: the only allocations
//! in the steady state are for stacks not seen before.
//!
//! # Stages
//!
//! - `chunks`: the streaming reader that cuts the input into chunks at
//!   sample boundaries, runs them sequentially or on a pool, and merges the
//!   chunks' results in input order (first error wins, line numbers add up);
//! - `grammar`: the sample header and frame line grammar;
//! - `collapser`: one chunk's samples to stacks, naming each frame.

mod chunks;
mod collapser;
mod grammar;
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
    /// Suffix frames of JIT maps (`perf-PID.map`) with `_[j]` ([`crate::JIT_SUFFIX`]).
    /// Default is `true`.
    pub annotate_jit: bool,
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
    /// Indented lines inside a sample that are not frames (e.g. `srcline`
    /// output), skipped.
    pub skipped_lines: u64,
}

/// Collapses the `perf script` text of `input` into folded stacks.
///
/// Streams the input in chunks cut at sample boundaries and collapses them on
/// `opts.threads` threads. An input without any sample of the kept event is an
/// [`Error::Empty`] (or [`Error::InvalidOption`] naming the events seen, when
/// [`CollapseOptions::event`] matched none of them).
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
