//! `nflame record`: sample, label, symbolize, write.
//!
//! [`record()`] creates every output before sampling starts (so an unwritable
//! path fails at once and costs nothing), finds the Docker targets when asked
//! (`nflame-docker`), records with `nflame-sampler` while kernel symbols load
//! on a background thread, labels the Docker targets' stacks by pid and keeps
//! only the network softirq part of other tasks' stacks while folding
//! (`nflame-symbolizer`'s [`Roots`]), and writes the folded and SVG outputs
//! atomically. Processes that exit while recording are folded then, on a
//! thread of their own, as the sampler hands them out
//! (`nflame_sampler::record_with_exited`), and dropped: memory follows the
//! distinct folded stacks, not the number of processes that came and went;
//! the rest is folded at the end and both merged ([`IncrementalFold`]), the
//! same profile and statistics as one fold of everything. What the terminal shows (a status line, the summary) is the
//! caller's: [`RecordEvents`] reports the stages, [`RecordOutcome::summary`]
//! is the summary's text. Signals are the caller's too: it sets `stop` to end
//! the recording, and [`RecordEvents::abandoned`] says when a later signal
//! asks to abandon the outputs (nothing is then written).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nflame_docker::{DockerQuery, DockerTargets};
use nflame_profile::embed::Context;
use nflame_profile::io::Output;
use nflame_profile::text::clean_text;
use nflame_profile::Profile;
use nflame_render::RenderOptions;
use nflame_sampler::{Progress, RecordOptions, Recording, StopReason, Target, UnwindStats};
use nflame_symbolizer::{FoldOptions, FoldStats, IncrementalFold, OtherStacks, Prepared, Roots};

/// What `nflame record` does. Build it with [`RecordJob::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordJob {
    /// What to sample and how. For Docker targets the target is replaced by
    /// [`Target::All`].
    pub record: RecordOptions,
    /// How stacks are folded. For Docker targets, [`FoldOptions::roots`] is
    /// set from the discovery.
    pub fold: FoldOptions,
    /// How SVG outputs are drawn (its context is filled in from the
    /// recording).
    pub render: RenderOptions,
    /// Where to write: `.folded`, other `.gz` (gzip folded), `.svg`
    /// (`.svg.gz`), `-` (folded, standard output; once at most). Default: `-`.
    pub outputs: Vec<PathBuf>,
    /// Docker targets to find and record instead of `record.target`.
    /// Default: none.
    pub docker: Option<DockerQuery>,
    /// The command line stored in SVGs (`nflame record …`). Default: none.
    pub command_line: Option<String>,
}

impl RecordJob {
    /// A job with default folding and rendering, writing folded stacks to
    /// standard output.
    pub fn new(record: RecordOptions) -> RecordJob {
        RecordJob {
            record,
            fold: FoldOptions::default(),
            render: RenderOptions::default(),
            outputs: Vec::new(),
            docker: None,
            command_line: None,
        }
    }
}

/// What an output path receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputFormat {
    /// Folded stacks (gzip-compressed when the name ends in `.gz`).
    Folded,
    /// An SVG flame graph carrying the profile and the recording's context.
    Svg,
}

impl OutputFormat {
    /// The format a path's name asks for.
    pub fn of(path: &Path) -> Result<OutputFormat, Error> {
        let name = path.to_string_lossy();
        if name.ends_with(".svg") || name.ends_with(".svg.gz") {
            Ok(OutputFormat::Svg)
        } else if name == "-" || name.ends_with(".folded") || name.ends_with(".gz") {
            Ok(OutputFormat::Folded)
        } else {
            Err(Error::UnknownFormat(path.to_path_buf()))
        }
    }
}

/// Why `nflame record` could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An output whose name says no format.
    #[error("cannot tell the format of output {}: name it *.folded, *.folded.gz or *.svg", .0.display())]
    UnknownFormat(PathBuf),
    /// `-` given twice.
    #[error("standard output (-o -) can be given only once")]
    StdoutTwice,
    /// An output that cannot be created; nothing was recorded.
    #[error("cannot write {} (checked before recording; nothing was recorded)", path.display())]
    Output {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Render options that cannot be honoured.
    #[error(transparent)]
    Render(#[from] nflame_render::Error),
    /// The Docker targets were not found.
    #[error("finding the Docker targets")]
    Docker(#[source] nflame_docker::DockerError),
    /// Recording failed.
    #[error("recording")]
    Record(#[source] nflame_sampler::Error),
    /// Folding failed.
    #[error("symbolizing the samples")]
    Fold(#[source] nflame_symbolizer::Error),
}

/// What [`record()`] tells its caller as it goes. Every method has a default
/// that does nothing.
pub trait RecordEvents {
    /// Sampling is about to start: what is recorded (`processes named nginx`,
    /// …), until when, and the Docker targets found (one line each).
    fn started(&mut self, _what: &str, _until: &str, _docker_found: &[String]) {}
    /// Live statistics, every [`RecordOptions::progress_interval`] at most.
    fn progress(&mut self, _progress: &Progress) {}
    /// Sampling ended; `samples` are now symbolized.
    fn symbolizing(&mut self, _samples: u64) {}
    /// Whether the outputs are to be abandoned (e.g. a second Ctrl-C): then
    /// nothing is written and [`RecordOutcome::interrupted`] is set.
    fn abandoned(&self) -> bool {
        false
    }
}

/// Events nobody listens to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl RecordEvents for NoEvents {}

/// How `nflame record` ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecordOutcome {
    /// The recording, without its samples (they are folded into
    /// `profile`) and without the processes that exited while recording
    /// (folded then; [`RecordOutcome::processes`] and
    /// [`RecordOutcome::unwind`] count them).
    pub recording: Recording,
    /// Samples recorded.
    pub samples: u64,
    /// The folded profile.
    pub profile: Profile,
    /// What folding did.
    pub stats: FoldStats,
    /// Processes seen: those in `recording` and those that exited while
    /// recording and were folded then (they left it).
    pub processes: usize,
    /// How user stacks were unwound, over every process seen.
    pub unwind: UnwindStats,
    /// The outputs written (not `-`).
    pub written: Vec<PathBuf>,
    /// Outputs that could not be written, each said in a line.
    pub failures: Vec<String>,
    /// The outputs were abandoned ([`RecordEvents::abandoned`]): none written.
    pub interrupted: bool,
}

/// Runs `nflame record` (see the module docs). `stop` ends the recording when
/// set (Ctrl-C, SIGTERM).
pub fn record(
    job: &RecordJob,
    stop: &AtomicBool,
    events: &mut dyn RecordEvents,
) -> Result<RecordOutcome, Error> {
    job.render.validate()?;
    let mut rec_opts = job.record.clone();
    let mut fold_opts = job.fold.clone();
    let mut docker = match &job.docker {
        Some(q) => {
            rec_opts.target = Target::All;
            Some(DockerTargets::discover(q).map_err(Error::Docker)?)
        }
        None => None,
    };

    // Every destination is created (as a temporary file beside it) before
    // sampling, so a bad path costs nothing; none appears until commit.
    let paths = if job.outputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        job.outputs.clone()
    };
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(Error::StdoutTwice);
    }
    let mut outputs = Vec::with_capacity(paths.len());
    for p in &paths {
        let format = OutputFormat::of(p)?;
        let out = Output::create(p).map_err(|e| output_error(p, e))?;
        outputs.push((format, out));
    }

    let until = match (rec_opts.duration, &rec_opts.target) {
        (Some(d), _) => format!("for {}", secs(d)),
        (None, Target::Pids(_)) => "until the processes exit".into(),
        (None, Target::Command(_)) => "until the command exits".into(),
        (None, _) => "until Ctrl-C".into(),
    };
    let what = match &docker {
        Some(_) => "the Docker targets and network softirq work on all CPUs".into(),
        None => describe_target(&rec_opts.target),
    };
    let found = docker.as_ref().map(|d| d.found.clone()).unwrap_or_default();
    events.started(&what, &until, &found);

    // Kernel symbols load on a background thread while sampling runs.
    let prepared = nflame_symbolizer::warm_up(&fold_opts);
    if let Some(d) = &docker {
        fold_opts.roots = docker_roots(d);
    }
    let (recording, early) = record_folding_exited(&rec_opts, &fold_opts, &prepared, stop, events);
    let mut recording = recording.map_err(Error::Record)?;
    let Early {
        fold: mut folded,
        error,
        samples: early_samples,
        processes: early_processes,
        unwind: early_unwind,
    } = early;
    if let Some(e) = error {
        return Err(Error::Fold(e));
    }
    if let Some(d) = &mut docker {
        // Processes that started while recording get their roles too; the
        // chosen ones are labelled by pid while folding, and only the network
        // softirq part of every other task's stacks is kept. (Roles are only
        // ever added: the processes folded as they exited had theirs.)
        d.refresh();
        recording.notes.extend(d.notes.iter().cloned());
        recording.skipped.extend(d.skipped.iter().cloned());
        fold_opts.roots = docker_roots(d);
    }
    events.symbolizing(early_samples + recording.sample_count());
    folded
        .add(&recording, &fold_opts, &prepared)
        .map_err(Error::Fold)?;
    let (profile, stats) = folded.finish();
    if docker.is_some() {
        recording.notes.push(format!(
            "Docker targets: {} of {} samples are the targets' or network softirq work",
            stats.samples - stats.dropped_samples,
            stats.samples
        ));
    }
    // The samples are in the profile now; the summary needs the rest.
    let samples = early_samples + recording.sample_count();
    recording.samples = Vec::new();
    let mut unwind = early_unwind;
    for p in recording.processes.values() {
        unwind.add(&p.unwind);
    }
    let abandoned = || events.abandoned();
    let mut outcome = RecordOutcome {
        processes: early_processes + recording.processes.len(),
        unwind,
        recording,
        samples,
        profile,
        stats,
        written: Vec::new(),
        failures: Vec::new(),
        interrupted: false,
    };
    if abandoned() {
        outcome.interrupted = true;
        return Ok(outcome);
    }
    let mut render_opts = job.render.clone();
    let mut ctx = context(
        &outcome.recording,
        samples,
        &rec_opts.target,
        job.command_line.as_deref(),
    );
    if let Some(d) = &docker {
        ctx.targets = d.found.clone();
    }
    render_opts.context = Some(ctx);
    let profile = &outcome.profile;
    let mut committed = Vec::new();
    for (format, mut out) in outputs {
        let path = out.path().to_path_buf();
        let result = match format {
            OutputFormat::Folded => {
                let mut w = Abortable::new(out.writer(), &abandoned);
                profile.write_folded(&mut w).and_then(|()| w.flush())
            }
            OutputFormat::Svg if profile.is_empty() => {
                outcome.failures.push(format!(
                    "{}: no samples were recorded, so there is no flame graph to draw",
                    path.display()
                ));
                continue;
            }
            OutputFormat::Svg => {
                let w = Abortable::new(out.writer(), &abandoned);
                nflame_render::render_profile(profile, &render_opts, w)
                    .map_err(|e| io::Error::other(error_chain(&e)))
            }
        };
        if abandoned() {
            outcome.interrupted = true;
            return Ok(outcome);
        }
        match result {
            Ok(()) => committed.push((path, out)),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => outcome
                .failures
                .push(format!("writing {}: {e}", path.display())),
        }
    }
    if abandoned() {
        outcome.interrupted = true;
        return Ok(outcome);
    }
    for (path, out) in committed {
        match out.commit() {
            Ok(()) if path.as_os_str() != "-" => outcome.written.push(path),
            Ok(()) => {}
            Err(e) => outcome.failures.push(error_chain(&e)),
        }
    }
    Ok(outcome)
}

/// What was folded while recording: the processes that exited.
struct Early {
    fold: IncrementalFold,
    /// Why folding them failed (a total overflowed).
    error: Option<nflame_symbolizer::Error>,
    /// Their samples.
    samples: u64,
    /// Processes handed out (they left the recording).
    processes: usize,
    /// How their user stacks were unwound.
    unwind: UnwindStats,
}

/// Records, folding the processes that exit as the recorder hands them
/// out, on a thread of their own (so the recorder goes on reading its
/// buffers), each part then dropped: memory follows the distinct folded
/// stacks, not every process that came and went. Returns the recording
/// (the live processes, and those that exited last) and what was folded.
fn record_folding_exited(
    rec_opts: &RecordOptions,
    fold_opts: &FoldOptions,
    prepared: &Prepared,
    stop: &AtomicBool,
    events: &mut dyn RecordEvents,
) -> (Result<Recording, nflame_sampler::Error>, Early) {
    std::thread::scope(|scope| {
        let (parts, received) = mpsc::channel::<Recording>();
        let folder = std::thread::Builder::new()
            .name("nflame-fold".into())
            .spawn_scoped(scope, move || {
                let mut early = Early::empty();
                for part in received {
                    early.samples += part.sample_count();
                    early.processes += part.processes.len();
                    for p in part.processes.values() {
                        early.unwind.add(&p.unwind);
                    }
                    if early.error.is_none() {
                        if let Err(e) = early.fold.add(&part, fold_opts, prepared) {
                            early.error = Some(e);
                        }
                    }
                    drop(part);
                    release_freed_memory();
                }
                early
            });
        let Ok(folder) = folder else {
            // No thread: everything is kept and folded at the end.
            let recording = nflame_sampler::record(rec_opts, stop, |p| events.progress(p));
            return (recording, Early::empty());
        };
        let recording = nflame_sampler::record_with_exited(
            rec_opts,
            stop,
            |p| events.progress(p),
            |part| {
                // The folder is gone only if it panicked; join says so.
                let _ = parts.send(part);
            },
        );
        drop(parts);
        let early = match folder.join() {
            Ok(early) => early,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (recording, early)
    })
}

/// Gives the memory a part's fold freed back to the system: symbolizing
/// reads whole symbol tables (a compiler's run to hundreds of MiB), which
/// the allocator would otherwise keep, in each thread's arena, for the rest
/// of the recording.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's
    // arenas to the system; it takes no pointer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Early {
    fn empty() -> Early {
        Early {
            fold: IncrementalFold::new(),
            error: None,
            samples: 0,
            processes: 0,
            unwind: UnwindStats::default(),
        }
    }
}

/// The Docker targets' stacks under their role labels, plus the network
/// softirq work of other tasks.
fn docker_roots(docker: &DockerTargets) -> Roots {
    let mut roots = Roots::default();
    roots.labels = docker.root_labels();
    roots.others = OtherStacks::KernelFrom {
        functions: nflame_docker::NET_SOFTIRQ_FUNCTIONS
            .iter()
            .map(|f| f.to_string())
            .collect(),
        label: nflame_docker::NET_SOFTIRQ_LABEL.to_string(),
    };
    roots
}

/// An output that cannot be created, said plainly: the OS's reason for the
/// path given (the temporary file's name would only confuse).
fn output_error(path: &Path, e: nflame_profile::Error) -> Error {
    let source = match e {
        nflame_profile::Error::Write { source, .. } => match source.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => source,
        },
        other => io::Error::other(error_chain(&other)),
    };
    Error::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// A writer that fails once the outputs have been abandoned, so that a long
/// write stops early; the unfinished temporary file is then removed.
struct Abortable<'a, W: Write + ?Sized, F: Fn() -> bool> {
    inner: &'a mut W,
    abandoned: &'a F,
}

impl<'a, W: Write + ?Sized, F: Fn() -> bool> Abortable<'a, W, F> {
    fn new(inner: &'a mut W, abandoned: &'a F) -> Self {
        Abortable { inner, abandoned }
    }

    fn check(&self) -> io::Result<()> {
        if (self.abandoned)() {
            Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
        } else {
            Ok(())
        }
    }
}

impl<W: Write + ?Sized, F: Fn() -> bool> Write for Abortable<'_, W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.inner.flush()
    }
}

/// What is recorded, for the status line: `pids 1,2`, `processes named x`, …
pub fn describe_target(t: &Target) -> String {
    match t {
        Target::Pids(p) => {
            let list: Vec<String> = p.iter().map(u32::to_string).collect();
            format!(
                "pid{} {}",
                if p.len() == 1 { "" } else { "s" },
                list.join(",")
            )
        }
        Target::Names(n) => format!("processes named {}", n.join(", ")),
        Target::Command(c) => format!("`{}`", shell_words(c)),
        _ => "all processes on all CPUs".into(),
    }
}

/// What was recorded, for the SVG's context: one entry per target.
fn target_list(t: &Target, rec: &Recording) -> Vec<String> {
    match t {
        Target::Pids(p) => p
            .iter()
            .map(|pid| match rec.processes.get(pid) {
                Some(info) if !info.comm.is_empty() => {
                    format!(
                        "pid {pid} ({})",
                        nflame_profile::text::clean_name(&info.comm)
                    )
                }
                _ => format!("pid {pid}"),
            })
            .collect(),
        Target::Names(n) => n.iter().map(|n| format!("name {n}")).collect(),
        Target::Command(c) => vec![format!("command: {}", shell_words(c))],
        _ => vec!["all processes".into()],
    }
}

/// Joins arguments for display, quoting the ones a shell would split.
pub fn shell_words<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let a = a.as_ref().to_string_lossy();
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            s.push_str(&a);
        } else {
            let _ = write!(s, "'{}'", a.replace('\'', r"'\''"));
        }
    }
    s
}

/// `nflame ARGS…` for this process's arguments (the program name replaced).
pub fn nflame_command_line(args: &[OsString]) -> String {
    format!("nflame {}", shell_words(args.get(1..).unwrap_or_default()))
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = nflame_procfs::read::read_text_bounded(Path::new(path), 4096).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The recording's context, stored in and shown on the SVG.
fn context(rec: &Recording, samples: u64, target: &Target, command_line: Option<&str>) -> Context {
    let mut c = Context::new(nflame_render::VERSION, "profile");
    c.host = read_trimmed("/proc/sys/kernel/hostname");
    c.kernel = read_trimmed("/proc/sys/kernel/osrelease");
    c.event = Some(rec.event.clone());
    c.frequency = Some(rec.frequency);
    c.duration_secs = Some((rec.duration.as_secs_f64() * 1000.0).round() / 1000.0);
    c.samples = Some(samples);
    c.lost = Some(rec.lost);
    c.targets = target_list(target, rec);
    c.command = command_line.map(str::to_owned);
    c.created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| rfc3339_utc(d.as_secs()));
    c
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01, computed in
/// 400-year eras (146 097 days each) that start on March 1st, so that the
/// leap day is the last day of an era-year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month, March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `1.50 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Most `skipped` lines a summary shows.
const MAX_SKIPPED_LINES: usize = 20;

impl RecordOutcome {
    /// The summary printed on standard error after a recording: what was
    /// recorded, then notes, then one `skipped PATH (pid N): why` line per
    /// file or section of a target that nflame refused to read.
    pub fn summary(&self) -> String {
        let rec = &self.recording;
        let stats = &self.stats;
        let samples = self.samples;
        let ended = match rec.stop_reason {
            StopReason::Duration => "duration elapsed",
            StopReason::Stopped => "stopped by signal",
            StopReason::TargetsExited => "targets exited",
            _ => "ended",
        };
        let mut s = String::new();
        let _ = writeln!(s, "nflame: recording ended ({ended})");
        let _ = writeln!(s, "  samples    {samples}");
        let _ = writeln!(
            s,
            "  lost       {} ({:.2}%)",
            rec.lost,
            percent(rec.lost, samples + rec.lost)
        );
        let _ = writeln!(
            s,
            "  processes  {} with samples, {} seen",
            stats.processes, self.processes
        );
        let _ = writeln!(s, "  event      {} at {} Hz", rec.event, rec.frequency);
        let _ = writeln!(s, "  duration   {}", secs(rec.duration));
        let user = if rec.user {
            format!("user {:.1}%", stats.named_user_share() * 100.0)
        } else {
            "user excluded".into()
        };
        let kernel = if rec.kernel {
            format!("kernel {:.1}%", stats.named_kernel_share() * 100.0)
        } else {
            "kernel excluded".into()
        };
        let _ = writeln!(
            s,
            "  named      {:.1}% of frames ({user}, {kernel})",
            stats.named_share() * 100.0
        );
        let _ = writeln!(s, "  stacks     {} distinct", self.profile.len());
        if rec.user && stats.user_stacks > 0 {
            let unwind = self.unwind;
            let _ = writeln!(
                s,
                "  unwound    {:.1}% of user stacks complete, {} truncated (call graph {}: {} by DWARF, {} by frame pointers)",
                stats.complete_user_share() * 100.0,
                stats.truncated_stacks,
                rec.call_graph.name(),
                unwind.dwarf,
                unwind.frame_pointer
            );
        }
        if let Some(status) = rec.command_status {
            let _ = writeln!(s, "  command    exit status {status}");
        }
        if !self.written.is_empty() {
            let list: Vec<String> = self
                .written
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let _ = writeln!(s, "  written    {}", list.join(", "));
        }
        for note in &rec.notes {
            let _ = writeln!(s, "  note: {note}");
        }
        if let Some(e) = &stats.kernel_error {
            let _ = writeln!(s, "  note: kernel frames unnamed: {e}");
        }
        // What a target pointed nflame to and it refused (its names are the
        // target's: cleaned of control characters).
        let mut skipped: Vec<&String> = Vec::new();
        for line in rec.skipped.iter().chain(&stats.skipped) {
            if !skipped.contains(&line) {
                skipped.push(line);
            }
        }
        for line in skipped.iter().take(MAX_SKIPPED_LINES) {
            let _ = writeln!(s, "  skipped {}", clean_text(line));
        }
        if skipped.len() > MAX_SKIPPED_LINES {
            let _ = writeln!(
                s,
                "  skipped … and {} more",
                skipped.len() - MAX_SKIPPED_LINES
            );
        }
        if !stats.failed_modules.is_empty() {
            let _ = writeln!(
                s,
                "  note: {} module(s) could not be read, their frames show as [module]",
                stats.failed_modules.len()
            );
        }
        if samples == 0 {
            let _ = writeln!(
                s,
                "  note: no samples: the targets did not run on a CPU while recording"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339_utc(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn formats() {
        assert_eq!(
            OutputFormat::of(Path::new("a.svg")).unwrap(),
            OutputFormat::Svg
        );
        assert_eq!(
            OutputFormat::of(Path::new("a.svg.gz")).unwrap(),
            OutputFormat::Svg
        );
        assert_eq!(
            OutputFormat::of(Path::new("a.folded.gz")).unwrap(),
            OutputFormat::Folded
        );
        assert_eq!(
            OutputFormat::of(Path::new("-")).unwrap(),
            OutputFormat::Folded
        );
        assert!(OutputFormat::of(Path::new("a.txt")).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_words(&["a", "b c", "it's"]), r"a 'b c' 'it'\''s'");
    }
}
