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

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc;
use std::sync::Mutex;

use crate::io::Input;
use crate::{Error, ParseError, ParseErrorKind, Profile, JIT_SUFFIX, KERNEL_SUFFIX};

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
    collapse_in_chunks(input, opts, CHUNK)
}

fn collapse_in_chunks(
    input: &mut Input,
    opts: &CollapseOptions,
    chunk_size: usize,
) -> Result<(Profile, CollapseStats), Error> {
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut event_filter = match &opts.event {
        Some(e) => EventFilter::Only(Some(e.clone())),
        None => EventFilter::Undecided,
    };
    let mut config = Config::new(opts);
    config.chunk_size = chunk_size.max(1);
    let name = input.name();

    let outcome = if threads <= 1 {
        collapse_sequential(input, &config, &mut event_filter)?
    } else {
        collapse_parallel(input, &config, &mut event_filter, threads)?
    };
    let Outcome {
        profile,
        mut stats,
        error,
    } = outcome;
    if let Some((line, kind)) = error {
        return Err(Error::Parse(ParseError {
            source_name: name,
            line,
            kind,
        }));
    }
    stats.event = match event_filter {
        EventFilter::Only(e) => e,
        EventFilter::Undecided => None,
    };
    // Samples whose periods are all 0 (with `period`) weigh nothing: the
    // profile is as empty as without samples.
    if profile.total() == 0 {
        if opts.event.is_some() && stats.samples == 0 && !stats.other_events.is_empty() {
            return Err(Error::InvalidOption(format!(
                "{name}: no samples of event {:?}; the input has {}",
                opts.event.as_deref().unwrap_or_default(),
                stats
                    .other_events
                    .iter()
                    .map(|e| format!("{e:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Err(Error::Empty {
            path: input.path().to_path_buf(),
        });
    }
    Ok((profile, stats))
}

/// The chunk size: large enough to amortise dispatch, small enough that a few
/// in flight cost little memory.
const CHUNK: usize = 4 << 20;
/// A chunk may grow up to this size while looking for a sample boundary; past
/// it the text cannot be `perf script` output, and it is cut at a line end.
const MAX_CHUNK: usize = 64 << 20;

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
            chunk_size: CHUNK,
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

/// Reads the next chunk into `buf` (after the `carry` bytes left over from the
/// previous one) and returns where the chunk ends: everything after that
/// position belongs to the next chunk. Returns `Ok(None)` at the end of input
/// with nothing left.
fn read_chunk(
    input: &mut Input,
    buf: &mut Vec<u8>,
    eof: &mut bool,
    chunk_size: usize,
) -> Result<Option<usize>, Error> {
    let mut target = chunk_size.max(buf.len() + chunk_size / 4);
    loop {
        if !*eof && buf.len() < target {
            let want = target - buf.len();
            buf.reserve(want);
            // `read_to_end` retries interrupted reads and does not zero the buffer.
            let got = match input.reader().take(want as u64).read_to_end(buf) {
                Ok(n) => n,
                Err(e) => return Err(input.read_error(e)),
            };
            if got < want {
                *eof = true;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        if *eof {
            return Ok(Some(buf.len()));
        }
        if let Some(cut) = sample_boundary(buf) {
            return Ok(Some(cut));
        }
        if buf.len() >= MAX_CHUNK {
            // Not perf script text (no blank line, no header in 64 MiB): cut at
            // a line end and let the parser report what it finds.
            return Ok(Some(
                memchr::memrchr(b'\n', buf).map_or(buf.len(), |i| i + 1),
            ));
        }
        target = buf.len() * 2;
    }
}

/// The last position in `buf` where a sample starts: just after a blank line,
/// or at a line that starts with neither a blank nor `#` (a header). Only
/// complete lines are considered. `None` if there is none (or only at 0).
fn sample_boundary(buf: &[u8]) -> Option<usize> {
    // `end` is the start of the line after the last complete line.
    let mut end = memchr::memrchr(b'\n', buf)? + 1;
    loop {
        // The line [start, end) ends with '\n'.
        let start = memchr::memrchr(b'\n', &buf[..end - 1]).map_or(0, |i| i + 1);
        let line = &buf[start..end - 1];
        if line.is_empty() || line == b"\r" {
            return (end > 0).then_some(end);
        }
        if !matches!(line[0], b' ' | b'\t' | b'#') && start > 0 {
            return Some(start);
        }
        if start == 0 {
            return None;
        }
        end = start;
    }
}

fn collapse_sequential(
    input: &mut Input,
    config: &Config,
    filter: &mut EventFilter,
) -> Result<Outcome, Error> {
    let mut total = Outcome::default();
    let mut collapser = Collapser::new(config);
    let mut buf = Vec::new();
    let mut eof = false;
    while let Some(cut) = read_chunk(input, &mut buf, &mut eof, config.chunk_size)? {
        decide_event(filter, &buf[..cut]);
        let mut profile = std::mem::take(&mut total.profile);
        let chunk = collapser.run(&buf[..cut], filter, &mut profile);
        total.profile = profile;
        let lines_before = total.stats.lines;
        add_stats(&mut total.stats, &chunk.stats);
        if let Some((line, kind)) = chunk.error {
            total.error = Some((lines_before + line, kind));
            return Ok(total);
        }
        buf.drain(..cut);
    }
    Ok(total)
}

/// A chunk's result as sent back by a worker.
struct ChunkDone {
    index: u64,
    outcome: Outcome,
    buf: Vec<u8>,
}

/// Merges chunk results in input order, so that line numbers add up and the
/// first error of the input wins.
#[derive(Default)]
struct Merger {
    total: Outcome,
    pending: BTreeMap<u64, Outcome>,
    spare: Vec<Vec<u8>>,
    next: u64,
    failed: bool,
}

impl Merger {
    fn absorb(&mut self, done: ChunkDone) {
        self.spare.push(done.buf);
        if done.outcome.error.is_some() {
            // Later chunks are useless now; earlier ones may still hold an
            // earlier error, so they are waited for.
            self.failed = true;
        }
        self.pending.insert(done.index, done.outcome);
        while let Some(outcome) = self.pending.remove(&self.next) {
            self.next += 1;
            if self.total.error.is_some() {
                continue;
            }
            let lines_before = self.total.stats.lines;
            add_stats(&mut self.total.stats, &outcome.stats);
            if let Some((line, kind)) = outcome.error {
                self.total.error = Some((lines_before + line, kind));
            }
        }
    }
}

fn collapse_parallel(
    input: &mut Input,
    config: &Config,
    filter: &mut EventFilter,
    threads: usize,
) -> Result<Outcome, Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("nflame-collapse-{i}"))
        .build()
        .map_err(|e| Error::InvalidOption(format!("cannot start {threads} threads: {e}")))?;
    let max_in_flight = threads as u64 * 2;
    // Profiles are reused across chunks (one per concurrently running task), so
    // a stack is allocated once per worker, not once per chunk.
    let profiles: Mutex<Vec<Profile>> = Mutex::new(Vec::new());
    let (done_tx, done_rx) = mpsc::channel::<ChunkDone>();
    let mut merger = Merger::default();
    let mut read_result: Result<(), Error> = Ok(());

    pool.in_place_scope(|scope| {
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + CHUNK / 2);
        let mut eof = false;
        let mut dispatched = 0u64;
        loop {
            while dispatched - merger.next >= max_in_flight {
                merger.absorb(done_rx.recv().expect("a dispatched chunk reports back"));
            }
            while let Ok(done) = done_rx.try_recv() {
                merger.absorb(done);
            }
            if merger.failed {
                break;
            }
            let cut = match read_chunk(input, &mut buf, &mut eof, config.chunk_size) {
                Ok(Some(cut)) => cut,
                Ok(None) => break,
                Err(e) => {
                    read_result = Err(e);
                    break;
                }
            };
            decide_event(filter, &buf[..cut]);
            // The chunk goes to a worker; the rest stays for the next one.
            let mut next = merger.spare.pop().unwrap_or_default();
            next.clear();
            next.extend_from_slice(&buf[cut..]);
            let mut chunk = std::mem::replace(&mut buf, next);
            chunk.truncate(cut);
            let index = dispatched;
            dispatched += 1;
            let tx = done_tx.clone();
            let filter = filter.clone();
            let profiles = &profiles;
            scope.spawn(move |_| {
                let mut profile = profiles
                    .lock()
                    .ok()
                    .and_then(|mut v| v.pop())
                    .unwrap_or_default();
                // A panic must not leave the reader waiting for this chunk forever.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let outcome = Collapser::new(config).run(&chunk, &filter, &mut profile);
                    (outcome, profile)
                }));
                let outcome = match run {
                    Ok((outcome, profile)) => {
                        if let Ok(mut v) = profiles.lock() {
                            v.push(profile);
                        }
                        outcome
                    }
                    Err(_) => Outcome {
                        error: Some((
                            1,
                            ParseErrorKind::Other(
                                "internal error: the collapser failed on the chunk starting here"
                                    .into(),
                            ),
                        )),
                        ..Outcome::default()
                    },
                };
                // The receiver outlives the scope, so this cannot fail.
                let _ = tx.send(ChunkDone {
                    index,
                    outcome,
                    buf: chunk,
                });
            });
        }
        while merger.next < dispatched {
            merger.absorb(done_rx.recv().expect("a dispatched chunk reports back"));
        }
    });
    read_result?;
    let mut total = merger.total;
    if total.error.is_some() {
        return Ok(total);
    }
    let mut merged = Profile::new();
    for p in profiles.into_inner().unwrap_or_default() {
        if !merged.merge(p) {
            return Err(Error::InvalidOption(
                "the input holds more than 2^64-1 samples (or period units)".into(),
            ));
        }
    }
    total.profile = merged;
    Ok(total)
}

fn add_stats(total: &mut CollapseStats, chunk: &CollapseStats) {
    total.samples += chunk.samples;
    total.skipped_other_events += chunk.skipped_other_events;
    total.lines += chunk.lines;
    total.skipped_lines += chunk.skipped_lines;
    for e in &chunk.other_events {
        if !total.other_events.contains(e) {
            total.other_events.push(e.clone());
        }
    }
}

/// Fixes the event filter from the first header of the input, if not yet done.
/// A chunk whose first sample line is malformed leaves it undecided: the
/// chunk's worker reports the error.
fn decide_event(filter: &mut EventFilter, chunk: &[u8]) {
    if !matches!(filter, EventFilter::Undecided) {
        return;
    }
    for line in chunk.split(|&b| b == b'\n') {
        let line = trim_line_end(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if let Some(header) = std::str::from_utf8(line).ok().and_then(parse_header) {
            *filter = EventFilter::Only(header.event.map(str::to_owned));
        }
        return;
    }
}

/// `line` without trailing `\r`, blanks and tabs.
fn trim_str_end(line: &str) -> &str {
    let trimmed = trim_line_end(line.as_bytes()).len();
    // Only ASCII bytes were removed, so this is a character boundary.
    &line[..trimmed]
}

fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b' ' | b'\t'] = line {
        line = rest;
    }
    line
}

/// A parsed sample header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header<'a> {
    comm: &'a str,
    pid: Option<&'a str>,
    tid: &'a str,
    period: Option<u64>,
    event: Option<&'a str>,
}

/// Parses `COMM PID/TID [CPU] TIME: PERIOD EVENT: …` (see the module doc).
fn parse_header(line: &str) -> Option<Header<'_>> {
    const MAX_TOKENS: usize = 48;
    let bytes = line.as_bytes();
    let mut tokens = [(0usize, 0usize); MAX_TOKENS];
    let mut n = 0;
    let mut i = 0;
    while i < bytes.len() && n < MAX_TOKENS {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i > start {
            tokens[n] = (start, i);
            n += 1;
        }
    }
    let tokens = &tokens[..n];
    let tok = |k: usize| &line[tokens[k].0..tokens[k].1];
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_pid = |s: &str| match s.split_once('/') {
        Some((p, t)) => is_digits(p) && is_digits(t),
        None => is_digits(s),
    };
    let is_cpu = |s: &str| {
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(is_digits)
    };
    let is_time = |s: &str| {
        s.strip_suffix(':').is_some_and(|t| {
            let (a, b) = t.split_once('.').unwrap_or((t, "0"));
            is_digits(a) && is_digits(b)
        })
    };
    // The PID token: the first all-digit (or digits/digits) word after the
    // command name that is followed by [CPU]? TIME:, else the first one.
    let mut pid_at = None;
    for k in 1..tokens.len() {
        if !is_pid(tok(k)) {
            continue;
        }
        let mut j = k + 1;
        if j < tokens.len() && is_cpu(tok(j)) {
            j += 1;
        }
        if j < tokens.len() && is_time(tok(j)) {
            pid_at = Some(k);
            break;
        }
        if pid_at.is_none() {
            pid_at = Some(k);
        }
    }
    let k = pid_at?;
    let comm = line[..tokens[k].0].trim_end_matches([' ', '\t']);
    let (pid, tid) = match tok(k).split_once('/') {
        Some((p, t)) => (Some(p), t),
        None => (None, tok(k)),
    };
    let mut j = k + 1;
    if j < tokens.len() && is_cpu(tok(j)) {
        j += 1;
    }
    if j < tokens.len() && is_time(tok(j)) {
        j += 1;
    }
    let mut period = None;
    if j < tokens.len() && is_digits(tok(j)) {
        period = tok(j).parse::<u64>().ok();
        j += 1;
    }
    let event = (j < tokens.len())
        .then(|| tok(j).strip_suffix(':'))
        .flatten()
        .filter(|e| !e.is_empty());
    Some(Header {
        comm,
        pid,
        tid,
        period,
        event,
    })
}

/// One parsed frame line: `ADDR SYMBOL+0xOFF (MODULE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameLine<'a> {
    symbol: &'a str,
    module: Option<&'a str>,
}

/// Parses a frame line (leading blanks and the line end already removed).
/// `None` if it does not start with a hexadecimal address.
fn parse_frame(line: &str) -> Option<FrameLine<'_>> {
    let bytes = line.as_bytes();
    let addr_end = bytes
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(bytes.len());
    if addr_end == 0 || !matches!(bytes.get(addr_end), None | Some(b' ' | b'\t')) {
        return None;
    }
    let rest = line[addr_end..].trim_start_matches([' ', '\t']);
    let (mut symbol, module) = match split_module(rest) {
        Some((s, m)) => (s, Some(m)),
        None => (rest, None),
    };
    // Strip `+0xOFFSET`. Only the last `+` can start one: an earlier `+0x`
    // would be followed by this `+`, which is not a hex digit.
    if let Some(plus) = memchr::memrchr(b'+', symbol.as_bytes()) {
        let off = &symbol.as_bytes()[plus + 1..];
        if off.len() > 2 && off.starts_with(b"0x") && off[2..].iter().all(u8::is_ascii_hexdigit) {
            symbol = &symbol[..plus];
        }
    }
    Some(FrameLine { symbol, module })
}

/// Splits `SYMBOL (MODULE)` at the parenthesis matching the final `)`, so
/// modules like `(/memfd:x (deleted))` and symbols like `f(int)` survive.
fn split_module(rest: &str) -> Option<(&str, &str)> {
    let bytes = rest.as_bytes();
    if bytes.last() != Some(&b')') {
        return None;
    }
    let inner_end = bytes.len() - 1;
    // Fast path: the last `(` opens the module (no parentheses inside it).
    if let Some(open) = memchr::memrchr(b'(', &bytes[..inner_end]) {
        if memchr::memchr(b')', &bytes[open..inner_end]).is_none() {
            if open > 0 && !matches!(bytes[open - 1], b' ' | b'\t') {
                return None;
            }
            return Some((
                rest[..open].trim_end_matches([' ', '\t']),
                &rest[open + 1..inner_end],
            ));
        }
    }
    let mut depth = 0usize;
    for i in (0..bytes.len()).rev() {
        match bytes[i] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    if i > 0 && !matches!(bytes[i - 1], b' ' | b'\t') {
                        // `f(int)` with no module: the parentheses are the symbol's.
                        return None;
                    }
                    return Some((
                        rest[..i].trim_end_matches([' ', '\t']),
                        &rest[i + 1..bytes.len() - 1],
                    ));
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether frames of `module` are kernel frames.
fn is_kernel_module(module: &str) -> bool {
    if module.ends_with("vmlinux") {
        return true;
    }
    module.starts_with('[')
        && !matches!(
            module,
            "[unknown]" | "[vdso]" | "[vsyscall]" | "[heap]" | "[stack]"
        )
        && !module.starts_with("[anon")
}

/// Whether `module` is a perf JIT map (`/tmp/perf-PID.map`, possibly seen
/// through a container's root).
fn is_jit_module(module: &str) -> bool {
    module.ends_with(".map") && basename(module).starts_with("perf-")
}

fn basename(module: &str) -> &str {
    match memchr::memrchr(b'/', module.as_bytes()) {
        Some(i) => &module[i + 1..],
        None => module,
    }
}

/// Collapses chunks; its buffers are reused from sample to sample.
struct Collapser<'c> {
    config: &'c Config,
    /// Frame names of the current sample, leaf first, back to back.
    frames: String,
    /// `frames` ranges of the current sample's frames.
    spans: Vec<(u32, u32)>,
    /// The current sample's root frame.
    root: String,
    /// The stack being assembled.
    stack: String,
    in_sample: bool,
    keep: bool,
    weight: u64,
    is_java: bool,
}

impl<'c> Collapser<'c> {
    fn new(config: &'c Config) -> Collapser<'c> {
        Collapser {
            config,
            frames: String::with_capacity(4096),
            spans: Vec::with_capacity(128),
            root: String::with_capacity(64),
            stack: String::with_capacity(4096),
            in_sample: false,
            keep: false,
            weight: 1,
            is_java: false,
        }
    }

    /// Collapses one chunk (which starts at a sample boundary) into `profile`.
    fn run(&mut self, chunk: &[u8], filter: &EventFilter, profile: &mut Profile) -> Outcome {
        let mut out = Outcome::default();
        let text = match std::str::from_utf8(chunk) {
            Ok(t) => t,
            Err(e) => {
                // Collapse the valid part first so that an earlier error wins.
                let valid = e.valid_up_to();
                let line_start = memchr::memrchr(b'\n', &chunk[..valid]).map_or(0, |i| i + 1);
                let mut head = self.run(&chunk[..line_start], filter, profile);
                if head.error.is_none() {
                    head.error = Some((head.stats.lines + 1, ParseErrorKind::InvalidUtf8));
                }
                return head;
            }
        };
        let mut filter = filter.clone();
        self.in_sample = false;
        let mut line_no = 0u64;
        let mut rest = text;
        while !rest.is_empty() {
            let (raw, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = next;
            line_no += 1;
            let line = trim_str_end(raw);
            if let Err(kind) = self.line(line, &mut filter, profile, &mut out.stats) {
                out.stats.lines = line_no;
                out.error = Some((line_no, kind));
                return out;
            }
        }
        if let Err(kind) = self.finish_sample(profile, &mut out.stats) {
            out.error = Some((line_no, kind));
        }
        out.stats.lines = line_no;
        out
    }

    fn line(
        &mut self,
        line: &str,
        filter: &mut EventFilter,
        profile: &mut Profile,
        stats: &mut CollapseStats,
    ) -> Result<(), ParseErrorKind> {
        let Some(&first) = line.as_bytes().first() else {
            return self.finish_sample(profile, stats);
        };
        if first == b'#' {
            return Ok(());
        }
        let indented = first == b' ' || first == b'\t';
        if self.in_sample && indented {
            if self.keep {
                match parse_frame(line.trim_start_matches([' ', '\t'])) {
                    Some(frame) => self.push_frame(frame),
                    None => stats.skipped_lines += 1,
                }
            }
            return Ok(());
        }
        // A header: after a blank line, or right after a sample's frames.
        self.finish_sample(profile, stats)?;
        let trimmed = line.trim_start_matches([' ', '\t']);
        if indented && parse_frame(trimmed).is_some() {
            return Err(ParseErrorKind::Other(
                "a stack frame line with no sample header before it \
                 (expected `COMM PID/TID [CPU] TIME: PERIOD EVENT:`)"
                    .into(),
            ));
        }
        let Some(header) = parse_header(trimmed) else {
            return Err(ParseErrorKind::Other(format!(
                "cannot parse the sample header {:?} \
                 (expected `COMM PID/TID [CPU] TIME: PERIOD EVENT:`)",
                truncate(trimmed, 120)
            )));
        };
        self.start_sample(&header, filter, stats);
        Ok(())
    }

    fn start_sample(
        &mut self,
        h: &Header<'_>,
        filter: &mut EventFilter,
        stats: &mut CollapseStats,
    ) {
        self.in_sample = true;
        self.spans.clear();
        self.frames.clear();
        self.keep = match filter {
            EventFilter::Only(e) => e.as_deref() == h.event,
            EventFilter::Undecided => {
                *filter = EventFilter::Only(h.event.map(str::to_owned));
                true
            }
        };
        if !self.keep {
            stats.skipped_other_events += 1;
            let name = h.event.unwrap_or("");
            if !stats.other_events.iter().any(|e| e == name) {
                stats.other_events.push(name.to_owned());
            }
            return;
        }
        self.weight = if self.config.period {
            h.period.unwrap_or(1)
        } else {
            1
        };
        self.is_java = h.comm == "java";
        self.root.clear();
        push_replaced(&mut self.root, h.comm, |c| match c {
            ' ' => Some('_'),
            ';' => Some(':'),
            _ => None,
        });
        if self.root.is_empty() {
            self.root.push_str("[unknown]");
        }
        if self.config.include_pid {
            self.root.push('-');
            self.root.push_str(h.pid.unwrap_or("?"));
            if self.config.include_tid {
                self.root.push('/');
                self.root.push_str(h.tid);
            }
        }
    }

    fn push_frame(&mut self, frame: FrameLine<'_>) {
        let module = frame.module.unwrap_or("[unknown]");
        let suffix = if self.config.annotate_kernel && is_kernel_module(module) {
            KERNEL_SUFFIX
        } else if self.config.annotate_jit && is_jit_module(module) {
            JIT_SUFFIX
        } else {
            ""
        };
        let symbol = frame.symbol;
        if symbol.is_empty() || symbol == "[unknown]" {
            let start = self.frames.len();
            if module == "[unknown]" {
                self.frames.push_str("[unknown]");
            } else {
                let base = basename(module);
                if base.starts_with('[') && base.ends_with(']') {
                    self.frames.push_str(base);
                } else {
                    self.frames.push('[');
                    push_tidy(&mut self.frames, base);
                    self.frames.push(']');
                }
            }
            self.frames.push_str(suffix);
            self.spans.push((start as u32, self.frames.len() as u32));
            return;
        }
        if has_arrow(symbol) {
            // Java inlining (perf-map-agent): outer->inner->…, leaf last. Frames
            // are stored leaf first, so push them in reverse.
            let parts: Vec<&str> = symbol.split("->").collect();
            for (i, part) in parts.iter().enumerate().rev() {
                let s = if i == 0 { suffix } else { "_[i]" };
                self.push_symbol(part, s);
            }
            return;
        }
        self.push_symbol(symbol, suffix);
    }

    fn push_symbol(&mut self, symbol: &str, suffix: &str) {
        let mut name = tidy_arguments(symbol);
        if self.is_java && name.starts_with('L') && name.contains('/') {
            name = &name[1..];
        }
        if name.is_empty() {
            // A name that is all argument list, like `(foo)`: perf's process
            // name lines; stackcollapse-perf.pl skips them too.
            return;
        }
        let start = self.frames.len();
        push_tidy(&mut self.frames, name);
        self.frames.push_str(suffix);
        self.spans.push((start as u32, self.frames.len() as u32));
    }

    fn finish_sample(
        &mut self,
        profile: &mut Profile,
        stats: &mut CollapseStats,
    ) -> Result<(), ParseErrorKind> {
        if !std::mem::take(&mut self.in_sample) || !self.keep {
            return Ok(());
        }
        self.stack.clear();
        self.stack.push_str(&self.root);
        for &(a, b) in self.spans.iter().rev() {
            self.stack.push(';');
            self.stack.push_str(&self.frames[a as usize..b as usize]);
        }
        stats.samples += 1;
        if !profile.add(&self.stack, self.weight) {
            return Err(ParseErrorKind::CountOverflow(format!(
                "{} (the total of all samples)",
                self.weight
            )));
        }
        Ok(())
    }
}

/// Whether `symbol` contains `->` (a Java inline chain).
fn has_arrow(symbol: &str) -> bool {
    let bytes = symbol.as_bytes();
    memchr::memchr_iter(b'>', bytes).any(|i| i > 0 && bytes[i - 1] == b'-')
}

/// Removes a C++ argument list: everything from the first `(` that does not
/// open a Go receiver (`pkg.(*T).M`) or `(anonymous namespace)`.
fn tidy_arguments(symbol: &str) -> &str {
    let bytes = symbol.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'(', &bytes[from..]).map(|i| i + from) {
        let go_receiver = i > 0 && bytes[i - 1] == b'.';
        let anonymous = symbol[i..].starts_with("(anonymous namespace)");
        if !go_receiver && !anonymous {
            return &symbol[..i];
        }
        from = i + 1;
    }
    symbol
}

/// Appends `name` with `;` replaced by `:` (a `;` would split the frame).
fn push_tidy(out: &mut String, name: &str) {
    if memchr::memchr(b';', name.as_bytes()).is_none() {
        out.push_str(name);
    } else {
        push_replaced(out, name, |c| (c == ';').then_some(':'));
    }
}

fn push_replaced(out: &mut String, s: &str, map: impl Fn(char) -> Option<char>) {
    for c in s.chars() {
        out.push(map(c).unwrap_or(c));
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::path::{Path, PathBuf};

    fn input(name: &str, text: impl Into<Vec<u8>>) -> Input {
        Input::from_reader(PathBuf::from(name), Cursor::new(text.into())).unwrap()
    }

    fn run_with(text: &str, opts: &CollapseOptions) -> Result<(Profile, CollapseStats), Error> {
        collapse(&mut input("t.perf", text), opts)
    }

    fn run(text: &str) -> Vec<(String, u64)> {
        let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
        to_vec(&p)
    }

    fn to_vec(p: &Profile) -> Vec<(String, u64)> {
        p.sorted()
            .into_iter()
            .map(|(s, c)| (s.to_string(), c))
            .collect()
    }

    fn stacks(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|&(s, c)| (s.to_string(), c)).collect()
    }

    const TWO_SAMPLES: &str = "\
nginx  7394 [001]  516.916284:    2004008 cpu-clock: \n\
\tffffffff8226ec67 _raw_spin_lock+0x17 ([kernel.kallsyms])\n\
\tffffffff8206e58b tcp_sendmsg+0x2b ([kernel.kallsyms])\n\
\t           fde60 __GI___writev+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
\t           1da16 [unknown] (/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0)\n\
\t    555d7fdd70e8 [unknown] ([unknown])\n\
\n\
nginx  7394 [000]  516.918289:    2004008 cpu-clock: \n\
\t           2b292 ngx_vslprintf+0x32 (/usr/sbin/nginx)\n\
\t    7f51cd73ff9f [unknown] (/tmp/perf-7394.map)\n\
\n";

    /// Fuzzing found `Ok` with an empty profile when every kept sample had
    /// period 0 and `period` weighting was on.
    #[test]
    fn zero_period_samples_are_empty_not_an_empty_success() {
        let opts = CollapseOptions {
            period: true,
            ..CollapseOptions::default()
        };
        let text =
            "python3 1700 1.0:          0 cpu-clock:\n\t     4005d6 main (/usr/bin/python3)\n\n";
        assert!(matches!(run_with(text, &opts), Err(Error::Empty { .. })));
        // Counting samples instead, the same input has one.
        let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
        assert_eq!(p.total(), 1);
    }

    #[test]
    fn basic_sample_and_frame_naming() {
        assert_eq!(
            run(TWO_SAMPLES),
            stacks(&[
                ("nginx;[perf-7394.map]_[j];ngx_vslprintf", 1),
                (
                    "nginx;[unknown];[libluajit-5.1.so.2.1.0];__GI___writev;tcp_sendmsg_[k];_raw_spin_lock_[k]",
                    1
                ),
            ])
        );
    }

    #[test]
    fn annotations_can_be_turned_off() {
        let opts = CollapseOptions {
            annotate_kernel: false,
            annotate_jit: false,
            ..CollapseOptions::default()
        };
        let (p, _) = run_with(TWO_SAMPLES, &opts).unwrap();
        assert_eq!(p.get("nginx;[perf-7394.map];ngx_vslprintf"), 1);
        assert!(p.iter().all(|(s, _)| !s.contains("_[k]")));
    }

    #[test]
    fn header_variants() {
        let frame = "\tffffffff8103ce3b native_safe_halt ([kernel.kallsyms])\n\n";
        for (header, root) in [
            // TID only, no CPU, period and event.
            ("java 25607 4794564.109216: cycles:", "java"),
            ("java 12688 [002] 6544038.708352: cpu-clock:", "java"),
            // Blanks in the command name.
            (
                "V8 WorkerThread 25607 4794564.109216: cycles:",
                "V8_WorkerThread",
            ),
            (
                "V8 WorkerThread 24636/25607 [000] 94564.109216: cycles:",
                "V8_WorkerThread",
            ),
            (
                "Web Content 2 24636/25607 [000] 94564.109216: cycles:",
                "Web_Content_2",
            ),
            // PID/TID, several blanks, period, event modifiers.
            (
                "vote   913/914    72.176760:     257597 cycles:uppp:",
                "vote",
            ),
            // Right-aligned command name of older perf.
            ("            perf  1234 [000]  10.0: 1 cycles:", "perf"),
            // No time; semicolon in the command name.
            ("a;b 77 [003] 1 cycles:", "a:b"),
        ] {
            let ev = if header.contains("cpu-clock") {
                "cpu-clock"
            } else if header.contains("cycles:uppp") {
                "cycles:uppp"
            } else {
                "cycles"
            };
            let opts = CollapseOptions {
                event: Some(ev.into()),
                ..CollapseOptions::default()
            };
            let (p, s) = run_with(&format!("{header}\n{frame}"), &opts)
                .unwrap_or_else(|e| panic!("{header}: {e}"));
            assert_eq!(
                to_vec(&p),
                stacks(&[(&format!("{root};native_safe_halt_[k]"), 1)]),
                "{header}"
            );
            assert_eq!(s.samples, 1);
        }
    }

    #[test]
    fn parse_header_fields() {
        let h = parse_header(
            "V8 WorkerThread 24636/25607 [000] 94564.109216:   250000 cpu-clock:ppp: extra",
        )
        .unwrap();
        assert_eq!(
            h,
            Header {
                comm: "V8 WorkerThread",
                pid: Some("24636"),
                tid: "25607",
                period: Some(250000),
                event: Some("cpu-clock:ppp"),
            }
        );
        let h =
            parse_header("perf 1 [000] 1.5: sched:sched_switch: prev_comm=x prev_pid=1").unwrap();
        assert_eq!(h.event, Some("sched:sched_switch"));
        assert_eq!(h.period, None);
        let h = parse_header("sleep 42 1.0:").unwrap();
        assert_eq!((h.pid, h.tid, h.event), (None, "42", None));
        assert_eq!(parse_header("no pid here: cpu-clock:"), None);
        assert_eq!(parse_header("1234 [000] 1.0: cpu-clock:"), None);
    }

    #[test]
    fn pid_and_tid_root_frames() {
        let text = "\
java 24636/25607 [000] 94564.109216: 10 cycles:\n\
\t7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)\n\
\n\
java 25608 [000] 94564.109217: 10 cycles:\n\
\t7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)\n\
\n";
        let pid = CollapseOptions {
            include_pid: true,
            ..CollapseOptions::default()
        };
        let (p, _) = run_with(text, &pid).unwrap();
        assert_eq!(
            to_vec(&p),
            stacks(&[
                ("java-24636;java/io/PrintStream:::print_[j]", 1),
                ("java-?;java/io/PrintStream:::print_[j]", 1),
            ])
        );
        let tid = CollapseOptions {
            include_tid: true,
            ..CollapseOptions::default()
        };
        let (p, _) = run_with(text, &tid).unwrap();
        assert_eq!(p.get("java-24636/25607;java/io/PrintStream:::print_[j]"), 1);
        assert_eq!(p.get("java-?/25608;java/io/PrintStream:::print_[j]"), 1);
    }

    #[test]
    fn period_weighting() {
        let text = "\
a 1 1.0: 250 cpu-clock:\n\tffff f (/bin/a)\n\n\
a 1 1.1: 750 cpu-clock:\n\tffff f (/bin/a)\n\n\
a 1 1.2: 1000 cpu-clock:\n\tffff g (/bin/a)\n\n";
        assert_eq!(run(text), stacks(&[("a;f", 2), ("a;g", 1)]));
        let opts = CollapseOptions {
            period: true,
            ..CollapseOptions::default()
        };
        let (p, s) = run_with(text, &opts).unwrap();
        assert_eq!(to_vec(&p), stacks(&[("a;f", 1000), ("a;g", 1000)]));
        assert_eq!(s.samples, 3);
    }

    #[test]
    fn event_filter() {
        let text = "\
p 1 1.0: 10 cpu-clock:\n\tffff f (/bin/p)\n\n\
p 1 1.1: 50 page-faults:\n\tffff g (/bin/p)\n\n\
p 1 1.2: 10 cpu-clock:\n\tffff h (/bin/p)\n\n\
p 1 1.3: 50 page-faults:\n\tffff g (/bin/p)\n\n";
        let (p, s) = run_with(text, &CollapseOptions::default()).unwrap();
        assert_eq!(to_vec(&p), stacks(&[("p;f", 1), ("p;h", 1)]));
        assert_eq!(s.skipped_other_events, 2);
        assert_eq!(s.event.as_deref(), Some("cpu-clock"));
        assert_eq!(s.other_events, vec!["page-faults".to_string()]);
        let opts = CollapseOptions {
            event: Some("page-faults".into()),
            ..CollapseOptions::default()
        };
        let (p, s) = run_with(text, &opts).unwrap();
        assert_eq!(to_vec(&p), stacks(&[("p;g", 2)]));
        assert_eq!(s.skipped_other_events, 2);
        let opts = CollapseOptions {
            event: Some("cycles".into()),
            ..CollapseOptions::default()
        };
        let e = run_with(text, &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.perf: no samples of event \"cycles\"; the input has \"cpu-clock\", \"page-faults\""
        );
    }

    #[test]
    fn frame_name_tidying() {
        let text = "\
prog 5 1.0: 1 cycles:\n\
\t1 std::vector<int>::push_back(int const&)+0x10 (/bin/prog)\n\
\t2 net/http.(*Client).Do+0x5 (/bin/prog)\n\
\t3 (anonymous namespace)::helper(int) (/bin/prog)\n\
\t4 weird;name+0xzz (/bin/prog)\n\
\t5 [unknown] (/memfd:doublemapper (deleted))\n\
\t6 [unknown] ([kernel.kallsyms])\n\
\t7 __vdso_clock_gettime ([vdso])\n\
\t8 ixgbe_poll ([ixgbe])\n\
\t9 tcp_sendmsg (/lib/modules/6.1/build/vmlinux)\n\
\ta  (/usr/lib/libc.so.6)\n\
\tb Lcom/a/B;.run->Lcom/a/C;.inner (/tmp/perf-9.map)\n\
\n";
        let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
        let (stack, _) = p.iter().next().unwrap();
        assert_eq!(
            stack.split(';').collect::<Vec<_>>(),
            vec![
                "prog",
                "Lcom/a/B:.run_[j]",
                "Lcom/a/C:.inner_[i]",
                "[libc.so.6]",
                "tcp_sendmsg_[k]",
                "ixgbe_poll_[k]",
                "__vdso_clock_gettime",
                "[kernel.kallsyms]_[k]",
                "[memfd:doublemapper (deleted)]",
                "weird:name+0xzz",
                "(anonymous namespace)::helper",
                "net/http.(*Client).Do",
                "std::vector<int>::push_back",
            ]
        );
    }

    #[test]
    fn crlf_comments_and_missing_final_blank_line() {
        let text = "# ========\r\n# cmdline : perf record -g\r\n\
a 1 1.0: 1 cpu-clock:\r\n\tffff f+0x1 (/bin/a)\r\n\r\n\
a 1 1.1: 1 cpu-clock:\r\n\tffff f+0x2 (/bin/a)";
        assert_eq!(run(text), stacks(&[("a;f", 2)]));
    }

    #[test]
    fn header_without_blank_line_starts_a_new_sample() {
        let text = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\na 1 1.1: 1 cpu-clock:\n\n";
        let (p, s) = run_with(text, &CollapseOptions::default()).unwrap();
        assert_eq!(to_vec(&p), stacks(&[("a", 1), ("a;f", 1)]));
        assert_eq!(s.samples, 2);
        assert_eq!(s.lines, 4);
    }

    #[test]
    fn non_frame_lines_in_a_sample_are_skipped_and_counted() {
        let text = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\n  a.c:12\n\n";
        let (p, s) = run_with(text, &CollapseOptions::default()).unwrap();
        assert_eq!(to_vec(&p), stacks(&[("a;f", 1)]));
        assert_eq!(s.skipped_lines, 1);
    }

    fn error_of(text: impl Into<Vec<u8>>, threads: usize, chunk: usize) -> String {
        let opts = CollapseOptions {
            threads,
            ..CollapseOptions::default()
        };
        collapse_in_chunks(&mut input("bad.perf", text), &opts, chunk)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_and_line() {
        let good = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\n\n";
        for threads in [1, 3] {
            for chunk in [1, 7, 1 << 20] {
                let e = error_of(format!("{good}\tffff f (/bin/a)\n"), threads, chunk);
                assert_eq!(
                    e,
                    "bad.perf:4: a stack frame line with no sample header before it \
                     (expected `COMM PID/TID [CPU] TIME: PERIOD EVENT:`)"
                );
                let e = error_of(
                    format!("{good}{good}garbage here\n\tffff f (/bin/a)\n"),
                    threads,
                    chunk,
                );
                assert!(
                    e.starts_with("bad.perf:7: cannot parse the sample header \"garbage here\""),
                    "{e}"
                );
                let mut bytes = format!("{good}{good}").into_bytes();
                bytes.extend_from_slice(b"a 1 1.0: 1 cpu-clock:\n\tffff f\xff\xfe (/bin/a)\n\n");
                let e = error_of(bytes, threads, chunk);
                assert_eq!(e, "bad.perf:8: the line is not valid UTF-8");
                // The first error of the input wins, whatever chunk finishes first.
                let text = format!(
                    "{}x\n{}\tffff f (/bin/a)\n",
                    good.repeat(50),
                    good.repeat(50)
                );
                let e = error_of(text, threads, chunk);
                assert!(e.starts_with("bad.perf:151: cannot parse"), "{e}");
            }
        }
    }

    #[test]
    fn empty_inputs() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let e = run_with(text, &CollapseOptions::default()).unwrap_err();
            assert!(matches!(e, Error::Empty { .. }), "{e:?}");
            assert!(e.to_string().starts_with("t.perf: no samples"), "{e}");
        }
    }

    #[test]
    fn sample_boundaries() {
        assert_eq!(sample_boundary(b"a 1 1.0: x:\n\tf\n"), None);
        assert_eq!(
            sample_boundary(b"a 1 1.0: x:\n\tf\n\nb 1 1.0: x:\n\tf"),
            Some(16)
        );
        assert_eq!(
            sample_boundary(b"a 1 1.0: x:\n\tf\nb 1 1.0: x:\n\tg\n"),
            Some(15)
        );
        assert_eq!(
            sample_boundary(b"a 1 1.0: x:\r\n\tf\r\n\r\n\tg\n"),
            Some(19)
        );
        assert_eq!(sample_boundary(b"no newline"), None);
    }

    /// Chunking and threads change nothing: every chunk size from tiny to whole.
    #[test]
    fn chunked_parallel_equals_sequential() {
        let text = fixture_text("nginx-lua");
        let text = &text[..text.len().min(400_000)];
        let text = &text[..text.rfind("\n\n").unwrap() + 2];
        let seq = CollapseOptions {
            threads: 1,
            ..CollapseOptions::default()
        };
        let (want, want_stats) = run_with(text, &seq).unwrap();
        for threads in [1, 2, 4] {
            for chunk in [1, 100, 4096, 65536] {
                let opts = CollapseOptions {
                    threads,
                    ..CollapseOptions::default()
                };
                let (p, s) = collapse_in_chunks(&mut input("t.perf", text), &opts, chunk).unwrap();
                assert_eq!(p, want, "threads {threads} chunk {chunk}");
                assert_eq!(s, want_stats, "threads {threads} chunk {chunk}");
            }
        }
    }

    // ------------------------------------------------------------- fixtures

    fn fixtures_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
    }

    fn fixture_text(name: &str) -> String {
        let path = fixtures_dir().join(format!("perf-script/{name}.perf.txt.gz"));
        let mut text = String::new();
        let mut input = Input::open(&path).unwrap();
        input.reader().read_to_string(&mut text).unwrap();
        text
    }

    /// Counts the headers perf printed per event, independently of the parser:
    /// a header is a line that starts with neither a blank nor `#`.
    fn headers_per_event(text: &str) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with([' ', '\t', '#']) {
                continue;
            }
            let event = line.trim_end().rsplit(' ').next().unwrap().to_string();
            match counts.iter_mut().find(|(e, _)| *e == event) {
                Some((_, c)) => *c += 1,
                None => counts.push((event, 1)),
            }
        }
        counts
    }

    /// Collapses a fixture and compares it with its golden folded file, which
    /// is written when missing or when `NFLAME_BLESS=1`.
    fn check_fixture(name: &str) -> Profile {
        let perf = fixtures_dir().join(format!("perf-script/{name}.perf.txt.gz"));
        let (profile, stats) = collapse(
            &mut Input::open(&perf).unwrap(),
            &CollapseOptions::default(),
        )
        .unwrap();
        let per_event = headers_per_event(&fixture_text(name));
        let (first_event, first_count) = &per_event[0];
        assert_eq!(
            stats.event.as_deref(),
            Some(first_event.trim_end_matches(':'))
        );
        assert_eq!(stats.samples, *first_count, "{name}: one stack per sample");
        assert_eq!(profile.total(), *first_count, "{name}");
        let others: u64 = per_event[1..].iter().map(|(_, c)| c).sum();
        assert_eq!(stats.skipped_other_events, others, "{name}");
        assert_eq!(stats.skipped_lines, 0, "{name}");

        let golden = fixtures_dir().join(format!("folded/{name}.folded.gz"));
        if std::env::var_os("NFLAME_BLESS").is_some() || !golden.exists() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            crate::io::write_atomically(&golden, |w| profile.write_folded(w)).unwrap();
        }
        let expected = Profile::from_path(&golden).unwrap();
        if expected != profile {
            let dump = std::env::temp_dir().join(format!("{name}.actual.folded"));
            crate::io::write_atomically(&dump, |w| profile.write_folded(w)).unwrap();
            panic!(
                "{name}: collapsed output differs from {}; actual output in {}",
                golden.display(),
                dump.display()
            );
        }
        profile
    }

    fn frames_of(p: &Profile) -> std::collections::HashSet<String> {
        p.iter()
            .flat_map(|(s, _)| s.split(';').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn fixture_nginx_lua() {
        let p = check_fixture("nginx-lua");
        let frames = frames_of(&p);
        assert!(p
            .iter()
            .all(|(s, _)| s.starts_with("nginx;") || s == "nginx"));
        for f in [
            "tcp_sendmsg_[k]",
            "entry_SYSCALL_64_after_hwframe_[k]",
            "[libluajit-5.1.so.2.1.0]",
            "[nginx]",
        ] {
            assert!(frames.contains(f), "nginx-lua lacks frame {f}");
        }
        assert!(frames.iter().any(|f| f.starts_with("ngx_")));
        assert!(frames
            .iter()
            .any(|f| f.starts_with("[perf-") && f.ends_with(".map]_[j]")));
        // Kernel frames, and only they, carry the suffix.
        assert!(!frames.contains("tcp_sendmsg"));
        assert!(frames
            .iter()
            .all(|f| !f.starts_with("ngx_") || !f.ends_with("_[k]")));
    }

    #[test]
    fn fixture_sort_gzip() {
        let p = check_fixture("sort-gzip");
        let roots: std::collections::HashSet<&str> = p
            .iter()
            .map(|(s, _)| s.split(';').next().unwrap())
            .collect();
        for comm in ["sort", "gzip", "seq", "sed"] {
            assert!(
                roots.contains(comm),
                "sort-gzip lacks process {comm}: {roots:?}"
            );
        }
        // This fixture was printed with PID/TID, so --tid names both.
        let perf = fixtures_dir().join("perf-script/sort-gzip.perf.txt.gz");
        let opts = CollapseOptions {
            include_tid: true,
            ..CollapseOptions::default()
        };
        let (p, _) = collapse(&mut Input::open(&perf).unwrap(), &opts).unwrap();
        assert!(p.iter().all(
            |(s, _)| s
                .split(';')
                .next()
                .unwrap()
                .split_once('-')
                .is_some_and(|(_, ids)| ids.split_once('/').is_some_and(|(a, b)| {
                    a.bytes().all(|b| b.is_ascii_digit()) && b.bytes().all(|b| b.is_ascii_digit())
                }))
        ));
    }

    #[test]
    fn fixture_python_multi_event() {
        // perf printed a page fault first (the exec), so that event is the default.
        let faults = check_fixture("python-multi-event");
        assert!(faults.iter().all(|(s, _)| s.starts_with("python3")));
        assert!(frames_of(&faults).contains("load_elf_binary_[k]"));
        assert!(frames_of(&faults).contains("PyUnicode_New"));
        let perf = fixtures_dir().join("perf-script/python-multi-event.perf.txt.gz");
        let opts = CollapseOptions {
            event: Some("cpu-clock".into()),
            ..CollapseOptions::default()
        };
        let (cpu, stats) = collapse(&mut Input::open(&perf).unwrap(), &opts).unwrap();
        assert_eq!(stats.skipped_other_events, faults.total());
        assert_eq!(stats.other_events, vec!["page-faults".to_string()]);
        let per_event = headers_per_event(&fixture_text("python-multi-event"));
        assert_eq!(per_event[1], ("cpu-clock:".to_string(), cpu.total()));
        assert!(frames_of(&cpu).contains("_PyEval_EvalFrameDefault"));
    }
}
