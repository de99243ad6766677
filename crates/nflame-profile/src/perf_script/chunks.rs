//! The streaming stage: the input is read in chunks cut at sample boundaries,
//! each chunk is collapsed (on the caller's thread, or on a rayon pool with a
//! bounded number in flight), and the chunks' outcomes are merged in input
//! order so that line numbers add up and the input's first error wins. It
//! knows where samples start, not what their lines mean ([`super::grammar`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc;
use std::sync::Mutex;

use super::collapser::Collapser;
use super::grammar::{classify, trim_line_end, trim_str_end, Line};
use super::{CollapseOptions, CollapseStats, Config, EventFilter, Outcome, MAX_SKIPPED_EXAMPLES};
use crate::io::Input;
use crate::{Error, ParseError, ParseErrorKind, Profile};

pub(super) fn collapse_in_chunks(
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
    stats.source_name = name.clone();
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
        if let (0, Some(first)) = (stats.samples, stats.unreadable.first()) {
            return Err(Error::Parse(ParseError {
                source_name: name,
                line: first.line,
                kind: ParseErrorKind::Other(format!(
                    "not `perf script` output: none of its {} lines is a sample header \
                     (expected `COMM PID/TID [CPU] TIME: PERIOD EVENT:`), and {} are \
                     unreadable, the first: {:?}",
                    stats.lines, stats.unreadable_lines, first.text
                )),
            }));
        }
        return Err(Error::Empty {
            path: input.path().to_path_buf(),
        });
    }
    Ok((profile, stats))
}

/// The chunk size: large enough to amortise dispatch, small enough that a few
/// in flight cost little memory.
pub(super) const CHUNK: usize = 256 << 10;
/// A chunk may grow up to this size while looking for a sample boundary; past
/// it the text cannot be `perf script` output, and it is cut at a line end.
const MAX_CHUNK: usize = 64 << 20;

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
            // Not perf script text (no sample header in 64 MiB): cut at a line
            // end and let the parser report what it finds.
            return Ok(Some(
                memchr::memrchr(b'\n', buf).map_or(buf.len(), |i| i + 1),
            ));
        }
        target = buf.len() * 2;
    }
}

/// The last position in `buf` where a sample starts: the start of a line that
/// is a sample header or a side-band record (which ends the sample before it),
/// as [`classify`] tells them. Only complete lines are considered. `None` if
/// there is none (or only at 0).
pub(super) fn sample_boundary(buf: &[u8]) -> Option<usize> {
    // `end` is the start of the line after the last complete line.
    let mut end = memchr::memrchr(b'\n', buf)? + 1;
    loop {
        // The line [start, end) ends with '\n'.
        let start = memchr::memrchr(b'\n', &buf[..end - 1]).map_or(0, |i| i + 1);
        if start == 0 {
            return None;
        }
        if starts_sample(&buf[start..end - 1]) {
            return Some(start);
        }
        end = start;
    }
}

fn starts_sample(line: &[u8]) -> bool {
    // Blank lines, common, are told apart at once.
    let body = line.trim_ascii_start();
    if body.is_empty() {
        return false;
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    matches!(
        classify(trim_str_end(line)),
        Line::Header(_) | Line::Sideband
    )
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
        add_stats(&mut total.stats, chunk.stats, lines_before);
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
            add_stats(&mut self.total.stats, outcome.stats, lines_before);
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

/// Adds a chunk's counts to the total; the chunk's line numbers start after
/// `lines_before`.
fn add_stats(total: &mut CollapseStats, chunk: CollapseStats, lines_before: u64) {
    total.samples += chunk.samples;
    total.skipped_other_events += chunk.skipped_other_events;
    total.lines += chunk.lines;
    total.skipped_lines += chunk.skipped_lines;
    total.unreadable_lines += chunk.unreadable_lines;
    for mut l in chunk.unreadable {
        if total.unreadable.len() >= MAX_SKIPPED_EXAMPLES {
            break;
        }
        l.line += lines_before;
        total.unreadable.push(l);
    }
    for e in chunk.other_events {
        if !total.other_events.contains(&e) {
            total.other_events.push(e);
        }
    }
}

/// Fixes the event filter from the first sample header of the input, if not
/// yet done. Lines before it (unreadable or not) do not decide; invalid UTF-8
/// stops the search (the chunk's worker reports it).
fn decide_event(filter: &mut EventFilter, chunk: &[u8]) {
    if !matches!(filter, EventFilter::Undecided) {
        return;
    }
    for line in chunk.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(trim_line_end(line)) else {
            return;
        };
        if let Line::Header(header) = classify(line) {
            *filter = EventFilter::Only(header.event.map(str::to_owned));
            return;
        }
    }
}
