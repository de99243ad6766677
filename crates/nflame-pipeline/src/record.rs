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
//! same profile and statistics as one fold of everything. Each process
//! comes with what its fold and the summary need (its threads' off-CPU
//! times, its Lua VM), and what the summary says of the processes is
//! gathered as they come, in counts and the few lines it shows ([`Seen`]).
//! What the terminal shows (a status line, the summary) is the caller's:
//! [`RecordEvents`] reports the stages, [`RecordOutcome::summary`] is the
//! summary's text. Signals are the caller's too: it sets `stop` to end
//! the recording, and [`RecordEvents::abandoned`] says when a later signal
//! asks to abandon the outputs (nothing is then written).

use std::collections::{BTreeMap, BTreeSet};
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
use nflame_sampler::{
    LuaProcess, LuaVmState, Measure, ProcessInfo, Progress, RecordOptions, Recording, StopReason,
    Target, ThreadTimes, UnwindStats,
};
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
    /// What the summary says of every process seen.
    seen: Seen,
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
    // With Docker targets, off-CPU time is the chosen processes' own:
    // other tasks' waits are not network work. The processes folded as
    // they exit are judged by the roles found at the start: the refresh at
    // the end only adds roles, of live processes, so it would not have
    // chosen them either.
    let chosen = docker
        .as_ref()
        .filter(|_| rec_opts.measure.off_cpu())
        .map(|d| d.roles.keys().copied().collect::<BTreeSet<u32>>());
    let (recording, early) = record_folding_exited(
        &rec_opts,
        &fold_opts,
        &prepared,
        chosen.as_ref(),
        stop,
        events,
    );
    let mut recording = recording.map_err(Error::Record)?;
    let Early {
        fold: mut folded,
        error,
        samples: early_samples,
        mut seen,
    } = early;
    if let Some(e) = error {
        return Err(Error::Fold(e));
    }
    if let Some(d) = &mut docker {
        // Processes that started while recording get their roles too; the
        // chosen ones are labelled by pid while folding, and only the network
        // softirq part of every other task's stacks is kept.
        d.refresh();
        if recording.measure.off_cpu() {
            let chosen: BTreeSet<u32> = d.roles.keys().copied().collect();
            keep_off_cpu_of(&mut recording, &chosen);
        }
        recording.notes.extend(d.notes.iter().cloned());
        recording.skipped.extend(d.skipped.iter().cloned());
        fold_opts.roots = docker_roots(d);
    }
    events.symbolizing(early_samples + recording.sample_count());
    folded
        .add(&recording, &fold_opts, &prepared)
        .map_err(Error::Fold)?;
    let (profile, stats) = folded.finish();
    if fold_opts.lua == nflame_symbolizer::LuaFold::Only {
        recording.notes.push(format!(
            "Lua-land stacks only: {} of {} samples carry Lua frames; the others are left out",
            stats.lua_stacks, stats.samples
        ));
    }
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
    seen.add(&recording.processes);
    let abandoned = || events.abandoned();
    let mut outcome = RecordOutcome {
        processes: seen.processes,
        unwind: seen.unwind,
        seen,
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
    /// What the summary says of them.
    seen: Seen,
}

/// Records, folding the processes that exit as the recorder hands them
/// out, on a thread of their own (so the recorder goes on reading its
/// buffers), each part then dropped: memory follows the distinct folded
/// stacks, not every process that came and went. With `chosen`, off-CPU
/// time is kept for those processes only (see [`keep_off_cpu_of`]).
/// Returns the recording (the live processes, and those that exited last)
/// and what was folded.
fn record_folding_exited(
    rec_opts: &RecordOptions,
    fold_opts: &FoldOptions,
    prepared: &Prepared,
    chosen: Option<&BTreeSet<u32>>,
    stop: &AtomicBool,
    events: &mut dyn RecordEvents,
) -> (Result<Recording, nflame_sampler::Error>, Early) {
    std::thread::scope(|scope| {
        let (parts, received) = mpsc::channel::<Recording>();
        let folder = std::thread::Builder::new()
            .name("nflame-fold".into())
            .spawn_scoped(scope, move || {
                let mut early = Early::empty();
                for mut part in received {
                    if let Some(chosen) = chosen {
                        keep_off_cpu_of(&mut part, chosen);
                    }
                    early.samples += part.sample_count();
                    early.seen.add(&part.processes);
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

/// Keeps off-CPU time (samples, thread times) of the `chosen` processes
/// only.
fn keep_off_cpu_of(recording: &mut Recording, chosen: &BTreeSet<u32>) {
    recording
        .samples
        .retain(|s| !s.kind.is_off_cpu() || chosen.contains(&s.pid));
    for (pid, p) in &mut recording.processes {
        if !chosen.contains(pid) {
            p.times.clear();
        }
    }
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
            seen: Seen::default(),
        }
    }
}

/// Most thread lines a summary shows.
const MAX_THREAD_LINES: usize = 20;
/// Most LuaJIT processes a summary shows in each of its lists.
const MAX_LUA_LINES: usize = 6;

/// What the summary says of the processes seen, gathered as they come (the
/// parts handed out while recording, then the recording's processes):
/// counts and sums, and only the lines it shows, so that what is kept does
/// not grow with the processes that came and went. The lines are those
/// the whole recording would have given: the first of each list, in the
/// summary's order, are the first of the first of every part.
#[derive(Debug, Default)]
struct Seen {
    /// Processes seen.
    processes: usize,
    /// How their user stacks were unwound.
    unwind: UnwindStats,
    /// Their threads' times summed (off-CPU recordings), and how many
    /// threads.
    times: ThreadTimes,
    threads: usize,
    /// The longest-lived threads, longest first (ties: by tid, then pid).
    longest: Vec<ThreadLine>,
    /// Readable LuaJIT processes with samples with Lua stacks: how many,
    /// and those with the most (ties: by pid).
    lua_busy: (usize, Vec<LuaLine>),
    /// Readable LuaJIT processes without: how many, and the first by pid.
    lua_idle: (usize, Vec<LuaLine>),
    /// LuaJIT processes whose Lua frames are off, by why: how many, and
    /// the first by pid (pid, comm).
    lua_off: BTreeMap<String, (usize, Vec<(u32, String)>)>,
}

/// One thread of [`Seen::longest`].
#[derive(Debug)]
struct ThreadLine {
    pid: u32,
    tid: u32,
    name: String,
    times: ThreadTimes,
}

/// One LuaJIT process of [`Seen`]'s Lua lists (without its VM code).
#[derive(Debug)]
struct LuaLine {
    pid: u32,
    comm: String,
    lua: LuaProcess,
}

impl Seen {
    /// Counts `processes` in.
    fn add(&mut self, processes: &BTreeMap<u32, ProcessInfo>) {
        self.processes += processes.len();
        for (&pid, p) in processes {
            self.unwind.add(&p.unwind);
            for (&tid, t) in &p.times {
                self.times.add(t);
                self.threads += 1;
                let name = p.threads.get(&tid).unwrap_or(&p.comm);
                self.longest.push(ThreadLine {
                    pid,
                    tid,
                    name: name.clone(),
                    times: *t,
                });
            }
            let Some(l) = &p.lua else { continue };
            if let Some(why) = &l.off {
                let (count, first) = self.lua_off.entry(why.clone()).or_default();
                *count += 1;
                first.push((pid, p.comm.clone()));
                first.sort_by_key(|(pid, _)| *pid);
                first.truncate(MAX_LUA_LINES);
                continue;
            }
            let line = LuaLine {
                pid,
                comm: p.comm.clone(),
                lua: LuaProcess {
                    vm_code: Vec::new(),
                    ..l.clone()
                },
            };
            let (count, lines) = if l.lua_samples() > 0 {
                &mut self.lua_busy
            } else {
                &mut self.lua_idle
            };
            *count += 1;
            lines.push(line);
        }
        self.longest.sort_by(|a, b| {
            (b.times.span.cmp(&a.times.span))
                .then(a.tid.cmp(&b.tid))
                .then(a.pid.cmp(&b.pid))
        });
        self.longest.truncate(MAX_THREAD_LINES);
        for lines in [&mut self.lua_busy.1, &mut self.lua_idle.1] {
            lines.sort_by_key(|l| (std::cmp::Reverse(l.lua.lua_samples()), l.pid));
            lines.truncate(MAX_LUA_LINES);
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
            // Not of kind `Interrupted`: `write_all` tries those again.
            Err(io::Error::other("the outputs were abandoned"))
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

/// The off-CPU lines of the summary: the time of the recorded threads by
/// how it was spent, and how many context switches got a stack.
fn off_cpu_summary(s: &mut String, rec: &Recording, seen: &Seen) {
    let t = seen.times;
    let threads = seen.threads;
    let s_of = |ns: u64| ns as f64 / 1e9;
    let _ = writeln!(
        s,
        "  off-CPU    {:.2} s blocked, {:.2} s preempted; {:.2} s on-CPU; {} threads, {:.2} s in all",
        s_of(t.blocked),
        s_of(t.preempted),
        s_of(t.on_cpu),
        threads,
        s_of(t.span)
    );
    let o = &rec.off_cpu;
    let _ = writeln!(
        s,
        "  switches   {} ({} with a stack, at most {} a second per CPU)",
        o.switches, o.sampled, o.max_rate
    );
}

/// One line per recorded thread (the longest-lived first): its time on and
/// off the CPU, for `--wall`.
fn thread_summary(s: &mut String, seen: &Seen) {
    let s_of = |ns: u64| ns as f64 / 1e9;
    for line in seen.longest.iter().take(MAX_THREAD_LINES) {
        let ThreadLine {
            pid,
            tid,
            name,
            times: t,
        } = line;
        let _ = writeln!(
            s,
            "  thread     {} {tid} (pid {pid}): on-CPU {:.3} s, off-CPU {:.3} s (blocked {:.3} s, \
             preempted {:.3} s) of {:.3} s",
            clean_text(name),
            s_of(t.on_cpu),
            s_of(t.off_cpu()),
            s_of(t.blocked),
            s_of(t.preempted),
            s_of(t.span)
        );
    }
    if seen.threads > MAX_THREAD_LINES {
        let _ = writeln!(
            s,
            "  thread     … and {} more",
            seen.threads - MAX_THREAD_LINES
        );
    }
}

/// One line per event-loop server (nginx/OpenResty workers): its time
/// blocked outside its event wait, apart from idle time in it.
fn event_loop_summary(s: &mut String, profile: &Profile) {
    let unit = profile.unit();
    let measure = profile.measure();
    for e in nflame_diagnose::blocking::event_loops(unit, profile.iter()) {
        let of = |x: u64| {
            if e.total == 0 {
                0.0
            } else {
                100.0 * x as f64 / e.total as f64
            }
        };
        let _ = writeln!(
            s,
            "  event loop {}: blocked outside its event wait {} ({:.1}%), idle in it {} \
             ({:.1}%), preempted {} ({:.1}%){}",
            clean_text(&e.process),
            measure.with_symbol(e.blocking),
            of(e.blocking),
            measure.with_symbol(e.idle),
            of(e.idle),
            measure.with_symbol(e.preempted),
            of(e.preempted),
            if e.on_cpu > 0 {
                format!(
                    ", on-CPU {} ({:.1}%)",
                    measure.with_symbol(e.on_cpu),
                    of(e.on_cpu)
                )
            } else {
                String::new()
            }
        );
        if let Some(p) = e.paths.first() {
            let _ = writeln!(
                s,
                "             blocks most in {} ({:.1}%)",
                clean_text(&p.describe()),
                100.0 * p.share
            );
        }
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
        if rec.measure.off_cpu() {
            // Most records are switch records (two a switch), not samples.
            let records = rec
                .off_cpu
                .switches
                .saturating_mul(2)
                .saturating_add(samples);
            let _ = writeln!(
                s,
                "  lost       {} records ({:.2}% of about {} switch records and samples)",
                rec.lost,
                percent(rec.lost, records + rec.lost),
                records + rec.lost
            );
        } else {
            let _ = writeln!(
                s,
                "  lost       {} ({:.2}%)",
                rec.lost,
                percent(rec.lost, samples + rec.lost)
            );
        }
        let _ = writeln!(
            s,
            "  processes  {} with samples, {} seen",
            stats.processes, self.processes
        );
        let _ = match rec.measure {
            Measure::OffCpu => writeln!(s, "  event      context switches"),
            Measure::Wall => writeln!(
                s,
                "  event      {} at {} Hz, and context switches",
                rec.event, rec.frequency
            ),
            _ => writeln!(s, "  event      {} at {} Hz", rec.event, rec.frequency),
        };
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
        s.push_str(&lua_summary(&self.seen, stats));
        if rec.measure.off_cpu() {
            off_cpu_summary(&mut s, rec, &self.seen);
            if rec.measure == Measure::Wall {
                thread_summary(&mut s, &self.seen);
            }
            event_loop_summary(&mut s, &self.profile);
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

/// The `lua` lines of the summary: per LuaJIT process, the build, how many
/// samples carry Lua stacks and reach the entry chunk, and the VM's own view
/// (the share of samples per VM state); a build that cannot be read says why
/// in one line. Empty when no LuaJIT process was seen.
fn lua_summary(seen: &Seen, stats: &FoldStats) -> String {
    let mut s = String::new();
    // Processes without Lua samples (an idle nginx master) only when no
    // other shows any.
    let (count, readable) = if seen.lua_busy.0 > 0 {
        &seen.lua_busy
    } else {
        &seen.lua_idle
    };
    let who = |pid: u32, comm: &str| {
        if comm.is_empty() {
            format!("pid {pid}")
        } else {
            format!("pid {pid} ({comm})")
        }
    };
    for LuaLine { pid, comm, lua: l } in readable.iter().take(MAX_LUA_LINES) {
        let _ = writeln!(s, "  lua        {}: {}", who(*pid, comm), l.build);
        let n = l.lua_samples();
        let _ = write!(s, "               {n} samples with Lua stacks");
        if l.in_lua_code > 0 {
            let _ = write!(
                s,
                "; {:.1}% of the {} in Lua code reach the entry chunk",
                percent(l.reached_entry, l.in_lua_code),
                l.in_lua_code
            );
        }
        let _ = writeln!(s);
        if n > 0 {
            let parts: Vec<String> = LuaVmState::ALL
                .iter()
                .filter_map(|st| {
                    let k = l.states.get(st).copied().unwrap_or(0);
                    (k > 0).then(|| format!("{} {:.1}%", st.label(), percent(k, n)))
                })
                .collect();
            let _ = writeln!(s, "               VM: {}", parts.join(", "));
        }
    }
    if *count > MAX_LUA_LINES {
        let _ = writeln!(
            s,
            "  lua        and {} more LuaJIT processes",
            count - MAX_LUA_LINES
        );
    }
    for (why, (count, pids)) in &seen.lua_off {
        let list: Vec<String> = pids
            .iter()
            .take(MAX_LUA_LINES)
            .map(|(p, c)| who(*p, c))
            .collect();
        let more = if *count > MAX_LUA_LINES {
            format!(" and {} more", count - MAX_LUA_LINES)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  lua        {}{more}: Lua frames off: {why}; C-level stacks only",
            list.join(", ")
        );
    }
    if stats.lua_missing > 0 {
        let _ = writeln!(
            s,
            "  note: {} samples in LuaJIT code without a Lua stack (shown as [lua: no stack])",
            stats.lua_missing
        );
    }
    if stats.lua_unplaced > 0 {
        let _ = writeln!(
            s,
            "  note: Lua frames of {} samples left out: their C stack reached its thread's start without a VM frame to put them in place of",
            stats.lua_unplaced
        );
    }
    s
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

    /// The summary's process lines are the same whether the processes
    /// came in parts (those handed out while recording, then the rest) or
    /// all at once, though only the lines shown are kept.
    #[test]
    fn seen_in_parts_says_what_seen_at_once_says() {
        let mut all: BTreeMap<u32, ProcessInfo> = BTreeMap::new();
        // A small generator, so that the lists have ties and more entries
        // than they show.
        let mut x = 7u64;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        for pid in 100..160u32 {
            let mut p = ProcessInfo {
                pid,
                comm: format!("p{}", next(5)),
                ..ProcessInfo::default()
            };
            p.unwind.dwarf = next(10);
            p.unwind.frame_pointer = next(10);
            for tid in pid * 10..pid * 10 + 1 + next(3) as u32 {
                p.threads.insert(tid, format!("t{tid}"));
                // Ties too.
                let span = 1_000 * next(8) + 1_000_000 * next(2) * next(1000);
                p.times.insert(
                    tid,
                    ThreadTimes {
                        span,
                        on_cpu: span / 2,
                        blocked: span / 4,
                        preempted: next(100),
                        switches: next(50),
                    },
                );
            }
            p.lua = match next(4) {
                0 => None,
                1 => Some(LuaProcess {
                    build: "b".into(),
                    off: Some(format!("why {}", next(2))),
                    ..LuaProcess::default()
                }),
                _ => Some(LuaProcess {
                    build: format!("build {pid}"),
                    vm_code: std::iter::once(0x1000..0x2000).collect(),
                    states: BTreeMap::from([(LuaVmState::Interpreted, next(4) * next(1000))]),
                    in_lua_code: 5,
                    reached_entry: next(6),
                    ..LuaProcess::default()
                }),
            };
            all.insert(pid, p);
        }
        let text = |seen: &Seen| {
            let mut s = String::new();
            thread_summary(&mut s, seen);
            s.push_str(&lua_summary(seen, &FoldStats::default()));
            let _ = write!(
                s,
                "{} {} {:?} {:?}",
                seen.processes, seen.threads, seen.times, seen.unwind
            );
            s
        };
        let mut at_once = Seen::default();
        at_once.add(&all);
        // The lines kept are the first of every process's.
        let mut threads: Vec<(u64, u32, u32)> = all
            .iter()
            .flat_map(|(&pid, p)| p.times.iter().map(move |(&tid, t)| (t.span, tid, pid)))
            .collect();
        threads.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let first: Vec<u32> = threads.iter().take(MAX_THREAD_LINES).map(|t| t.1).collect();
        let kept: Vec<u32> = at_once.longest.iter().map(|l| l.tid).collect();
        assert_eq!(kept, first);
        assert_eq!(at_once.threads, threads.len());
        let mut busy: Vec<(std::cmp::Reverse<u64>, u32)> = all
            .values()
            .filter_map(|p| p.lua.as_ref().map(|l| (p.pid, l)))
            .filter(|(_, l)| l.off.is_none() && l.lua_samples() > 0)
            .map(|(pid, l)| (std::cmp::Reverse(l.lua_samples()), pid))
            .collect();
        busy.sort();
        let first: Vec<u32> = busy.iter().take(MAX_LUA_LINES).map(|b| b.1).collect();
        let kept: Vec<u32> = at_once.lua_busy.1.iter().map(|l| l.pid).collect();
        assert_eq!((at_once.lua_busy.0, kept), (busy.len(), first));
        let mut in_parts = Seen::default();
        let pids: Vec<u32> = all.keys().copied().collect();
        for chunk in pids.chunks(7) {
            let part = chunk.iter().map(|pid| (*pid, all[pid].clone())).collect();
            in_parts.add(&part);
        }
        let want = text(&at_once);
        assert!(
            want.contains("… and") && want.contains("more LuaJIT processes"),
            "{want}"
        );
        assert_eq!(text(&in_parts), want);
        // Without Lua samples anywhere, the idle ones are listed.
        let idle: BTreeMap<u32, ProcessInfo> = all
            .into_iter()
            .map(|(pid, mut p)| {
                if let Some(l) = p.lua.as_mut() {
                    l.states.clear();
                }
                (pid, p)
            })
            .collect();
        let (mut at_once, mut in_parts) = (Seen::default(), Seen::default());
        at_once.add(&idle);
        for chunk in pids.chunks(5) {
            in_parts.add(&chunk.iter().map(|pid| (*pid, idle[pid].clone())).collect());
        }
        assert_eq!(text(&in_parts), text(&at_once));
    }

    /// Once the outputs are abandoned, every write fails and is not tried
    /// again: drawing an SVG stops at once. (With an error of kind
    /// `Interrupted`, which `write_all` retries, the SVG's metadata writer
    /// took the same bytes again at each retry, and a Ctrl-C while writing
    /// grew the recorder to every byte of memory.)
    #[test]
    fn abandoned_outputs_fail_their_writes_for_good() {
        let stacks: Vec<String> = (0..2_000)
            .map(|i| format!("main;f{i};g{}", i % 7))
            .collect();
        let profile = Profile::from_stacks(stacks.iter().map(|s| (s.as_str(), 3)));
        let checks = std::cell::Cell::new(0u32);
        // Abandoned after the first few writes.
        let abandoned = || {
            checks.set(checks.get() + 1);
            assert!(
                checks.get() < 100_000,
                "abandoned writes are tried again and again"
            );
            checks.get() > 3
        };
        let mut sink: Vec<u8> = Vec::new();
        let w = Abortable::new(&mut sink, &abandoned);
        let r = nflame_render::render_profile(&profile, &RenderOptions::default(), w);
        assert!(r.is_err(), "rendering went on: {} bytes", sink.len());
        assert!(checks.get() < 100, "{} checks", checks.get());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_words(&["a", "b c", "it's"]), r"a 'b c' 'it'\''s'");
    }
}
