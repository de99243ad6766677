//! `nflame record`: glue between the sampler, the symbolizer and the outputs.
//!
//! It turns the command line into [`RecordOptions`] and [`FoldOptions`],
//! creates every output before sampling starts (so an unwritable path fails
//! at once), records with [`nflame_sampler::record`] while a status line runs
//! on a terminal, folds with [`nflame_symbolizer::fold`], writes the folded
//! and SVG outputs atomically, and prints a summary on standard error.
//! Sampling, symbolization and rendering themselves live in their crates.
//!
//! Signals: the first Ctrl-C (SIGINT), SIGTERM or SIGHUP ends the recording,
//! which is then written completely. A signal that arrives once the recording
//! has ended (for instance a second Ctrl-C while symbolizing) abandons the
//! outputs: nothing is written, and the exit status is 130.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::{ArgGroup, Args, ValueEnum};
use nflame_profile::embed::Context;
use nflame_profile::io::Output;
use nflame_profile::Profile;
use nflame_sampler::docker::{DockerQuery, DockerTargets};
use nflame_sampler::{
    CallGraph, EventChoice, Measure, Progress, RecordOptions, Recording, StopReason, Target,
    ThreadTimes, UnwindStats, DEFAULT_SWITCH_RATE,
};
use nflame_symbolizer::{FoldOptions, FoldStats, Weight};

use crate::args::RenderArgs;

/// Exit status when the outputs were abandoned by a signal (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// Sample processes on the CPU and write folded stacks and/or a flame graph.
///
/// Give exactly one kind of target: `--pid`, `--name`, `-a`, a command
/// after `--`, or Docker targets (`--docker-port`, `--container`, which can
/// be combined). Stacks read, root first: process name (with `--per-pid`,
/// `--per-thread`), user frames, kernel frames suffixed `_[k]`.
///
/// Without `-o`, the folded stacks go to standard output (so
/// `nflame record ... | nflame render - -o x.svg` works); with `-- CMD`, the
/// command's own output shares that standard output, so give `-o` there.
///
/// Ctrl-C or SIGTERM ends the recording and writes the outputs; a second
/// Ctrl-C while writing abandons them (nothing is written, exit status 130).
/// A summary is printed on standard error at the end.
///
/// With `--off-cpu`, the graph is time off the CPU instead: a stack each time
/// a thread leaves the CPU (to sleep, or preempted), weighted by how long it
/// stays off, in nanoseconds. With `--wall`, both: on-CPU samples weighted by
/// their period and off-CPU time, so each thread's whole time is there.
///
/// Needs root or CAP_PERFMON to record other users' processes, kernel frames,
/// or the whole system (`-a`, `--name`); otherwise kernel.perf_event_paranoid
/// decides (at 2, the usual default: your own processes, user frames only;
/// off-CPU time needs kernel sampling: 1 or lower).
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("target").required(true).multiple(true)),
    after_help = "Examples:\n  \
        nflame record --pid $(pidof nginx) -d 30 -o nginx.svg -o nginx.folded.gz\n  \
        nflame record --name docker-proxy --name nginx -d 30 --per-pid -o bridge.folded\n  \
        nflame record -a -d 10 -o all.svg\n  \
        nflame record --off-cpu --pid $(pgrep -d, nginx) -d 30 -o blocked.svg\n  \
        nflame record --docker-port 8080 -d 30 -o bridge.folded\n  \
        nflame record -o make.svg -- make -j2"
)]
pub struct RecordArgs {
    /// Record these processes (every thread, and threads and children started later).
    /// Comma- or space-separated; repeatable: `--pid 1,2 --pid 3` or `--pid $(pidof nginx)`.
    #[arg(
        short,
        long = "pid",
        value_name = "PID",
        num_args = 1..,
        value_parser = parse_pids,
        group = "target",
        conflicts_with_all = ["names", "all", "command", "docker_ports", "containers"]
    )]
    pub pids: Vec<PidList>,
    /// Record processes whose command name or executable name is NAME, including
    /// ones that start during the recording, and their children. Repeatable.
    #[arg(
        long = "name",
        value_name = "NAME",
        num_args = 1..,
        group = "target",
        conflicts_with_all = ["all", "command", "docker_ports", "containers"]
    )]
    pub names: Vec<String>,
    /// Record every process on every CPU.
    #[arg(
        short,
        long,
        group = "target",
        conflicts_with_all = ["command", "docker_ports", "containers"]
    )]
    pub all: bool,
    /// Run this command and record it until it exits (after `--`).
    #[arg(
        last = true,
        value_name = "CMD",
        group = "target",
        conflicts_with_all = ["docker_ports", "containers"]
    )]
    pub command: Vec<OsString>,
    /// Record what serves this published Docker port: its docker-proxy (root frame
    /// `[docker-proxy :PORT]`), the processes in the network namespace owning the
    /// proxy's container address (`[container NAME]`), dockerd and containerd, and
    /// the network softirq work of the kernel in any other task (`[net softirq]`).
    /// Samples every CPU. Repeatable; combines with --container.
    #[arg(long = "docker-port", value_name = "PORT", group = "target")]
    pub docker_ports: Vec<u16>,
    /// Record this container's processes (by cgroup; root frame `[container NAME]`),
    /// its containerd-shim, dockerd and containerd, with the kernel's network softirq
    /// work as for --docker-port. NAME or ID (or id prefix). Repeatable.
    #[arg(long = "container", value_name = "NAME|ID", group = "target")]
    pub containers: Vec<String>,
    /// Samples per second a busy thread gets (on the CPU) [default: 999].
    #[arg(
        short = 'F',
        long,
        value_name = "HZ",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub freq: Option<u64>,
    /// Stop after this many seconds (fractions allowed). Default: until Ctrl-C,
    /// SIGTERM, or the exit of every target (pids, command).
    #[arg(short, long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The perf event to sample on: hardware cycles where the CPU has them,
    /// otherwise the software cpu-clock (auto) [default: auto].
    #[arg(long, value_enum)]
    pub event: Option<EventArg>,
    /// Record time off the CPU instead of samples on it: where threads block
    /// (sleep, I/O, locks, a child) or wait preempted, weighted by how long,
    /// in nanoseconds. Needs kernel sampling (root, CAP_PERFMON, or
    /// kernel.perf_event_paranoid at 1 or lower).
    #[arg(long)]
    pub off_cpu: bool,
    /// Record wall-clock time: on-CPU samples of cpu-clock weighted by their
    /// period and off-CPU time, in nanoseconds, so that each thread's time
    /// adds up to the recording's. Needs what --off-cpu needs.
    #[arg(long)]
    pub wall: bool,
    /// With --off-cpu or --wall, leave out waits shorter than this (seconds,
    /// fractions allowed, or with a unit: 500us, 2ms, 1s). They still count in
    /// the per-thread totals.
    #[arg(long, value_name = "DURATION", value_parser = parse_min_block)]
    pub min_block: Option<Duration>,
    /// With --off-cpu or --wall, stacks taken a second at context switches
    /// per CPU; above it, fast threads get a stack at one switch in N.
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub switch_rate: Option<u64>,
    /// How user stacks are collected: `fp` walks frame pointers (like `perf record -g`,
    /// cheapest); `dwarf[,BYTES]` copies BYTES (default 8192) of user stack per sample
    /// and unwinds it with the binaries' DWARF call-frame information (like `perf record
    /// --call-graph dwarf`), which code built without frame pointers needs (most
    /// distribution binaries: nginx, libc, LuaJIT); `auto` does both and keeps the
    /// longer stack.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_call_graph)]
    pub call_graph: CallGraph,
    /// Only user-space frames (and samples).
    #[arg(long, conflicts_with = "kernel_only")]
    pub user_only: bool,
    /// Only kernel frames (and samples taken in the kernel).
    #[arg(long)]
    pub kernel_only: bool,
    /// Put the process id in the root frame (`comm-PID`).
    #[arg(long)]
    pub per_pid: bool,
    /// Add a thread frame (`NAME-TID`) under the process frame.
    #[arg(long)]
    pub per_thread: bool,
    /// Expand inlined functions into frames of their own (needs debug info).
    #[arg(long)]
    pub inline: bool,
    /// Ring buffer size per CPU, in pages (rounded down to a power of two, at
    /// least 8; DWARF unwinding raises it to 1024). Advanced: small rings lose
    /// samples under load.
    #[arg(long, value_name = "N", hide = true)]
    pub ring_pages: Option<usize>,
    /// Write here; repeatable. The format follows the name: `.folded` (folded stacks),
    /// any other `.gz` (gzip-compressed folded stacks), `.svg` (flame graph carrying the
    /// profile and the recording's context; `.svg.gz` compressed), `-` (folded,
    /// standard output).
    /// Default: folded stacks on standard output.
    #[arg(short, long = "output", value_name = "FILE")]
    pub outputs: Vec<PathBuf>,
    #[command(flatten)]
    pub render: RenderArgs,
}

/// The pids given to one `--pid` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidList(Vec<u32>);

fn parse_pids(s: &str) -> Result<PidList, String> {
    let pids = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| match t.parse::<u32>() {
            Ok(0) | Err(_) => Err(format!("`{t}` is not a process id")),
            Ok(p) => Ok(p),
        })
        .collect::<Result<Vec<u32>, String>>()?;
    if pids.is_empty() {
        return Err("no process id given".into());
    }
    Ok(PidList(pids))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("`{s}`: give a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_call_graph(s: &str) -> Result<CallGraph, String> {
    s.parse()
}

/// `2ms`, `500us`, `1.5s`, `100ns` or a number of seconds.
fn parse_min_block(s: &str) -> Result<Duration, String> {
    let (num, scale) = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ]
    .iter()
    .find_map(|&(unit, scale)| s.strip_suffix(unit).map(|n| (n, scale)))
    .unwrap_or((s, 1.0));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: give seconds, or ns, us, ms, s"))?;
    if !v.is_finite() || v < 0.0 || v * scale > 1e9 {
        return Err(format!("`{s}`: give a duration of zero or more"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// `--event` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventArg {
    /// Hardware cycles if available, else cpu-clock.
    Auto,
    /// Hardware cycles only.
    Cycles,
    /// Software cpu-clock timer.
    CpuClock,
}

/// What an `-o` path receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Folded,
    Svg,
}

impl Format {
    fn of(path: &Path) -> Result<Format> {
        let name = path.to_string_lossy();
        if name.ends_with(".svg") || name.ends_with(".svg.gz") {
            Ok(Format::Svg)
        } else if name == "-" || name.ends_with(".folded") || name.ends_with(".gz") {
            Ok(Format::Folded)
        } else {
            bail!(
                "cannot tell the format of output {}: name it *.folded, *.folded.gz or *.svg",
                path.display()
            )
        }
    }
}

impl RecordArgs {
    /// What is measured.
    fn measure(&self) -> Measure {
        match (self.off_cpu, self.wall) {
            (_, true) => Measure::Wall,
            (true, false) => Measure::OffCpu,
            (false, false) => Measure::OnCpu,
        }
    }

    /// Options that make no sense together, and why.
    pub fn conflicts(&self) -> Option<String> {
        if self.off_cpu && self.wall {
            return Some(
                "--off-cpu and --wall: --wall records off-CPU time already, with on-CPU \
                 time; give one of them"
                    .into(),
            );
        }
        if self.off_cpu && self.event.is_some() {
            return Some(
                "--event with --off-cpu: off-CPU time is taken at context switches, not on \
                 an on-CPU event (--wall adds on-CPU samples of cpu-clock)"
                    .into(),
            );
        }
        if self.off_cpu && self.freq.is_some() {
            return Some(
                "-F/--freq with --off-cpu: off-CPU time has a stack at every context switch, \
                 not at a frequency (--wall adds on-CPU samples at -F)"
                    .into(),
            );
        }
        if self.wall && self.event == Some(EventArg::Cycles) {
            return Some(
                "--event cycles with --wall: wall-clock time adds on-CPU time to off-CPU time \
                 in nanoseconds, so it samples cpu-clock; cycles are not time"
                    .into(),
            );
        }
        let off = self.off_cpu || self.wall;
        if !off && self.min_block.is_some() {
            return Some(
                "--min-block without --off-cpu or --wall: it leaves out short waits off the \
                 CPU, which only --off-cpu and --wall record"
                    .into(),
            );
        }
        if !off && self.switch_rate.is_some() {
            return Some(
                "--switch-rate without --off-cpu or --wall: it limits the stacks taken at \
                 context switches"
                    .into(),
            );
        }
        None
    }

    fn target(&self) -> Target {
        if !self.pids.is_empty() {
            let mut pids: Vec<u32> = self.pids.iter().flat_map(|l| l.0.iter().copied()).collect();
            pids.sort_unstable();
            pids.dedup();
            Target::Pids(pids)
        } else if !self.names.is_empty() {
            Target::Names(self.names.clone())
        } else if !self.command.is_empty() {
            Target::Command(self.command.clone())
        } else {
            // -a, and Docker targets (filtered after the recording).
            Target::All
        }
    }

    fn record_options(&self) -> RecordOptions {
        let mut o = RecordOptions::new(self.target());
        o.frequency = self.freq.unwrap_or(999);
        o.duration = self.duration;
        o.event = match self.event.unwrap_or(EventArg::Auto) {
            EventArg::Auto => EventChoice::Auto,
            EventArg::Cycles => EventChoice::Cycles,
            EventArg::CpuClock => EventChoice::CpuClock,
        };
        o.measure = self.measure();
        o.min_block = self.min_block.unwrap_or_default();
        o.switch_rate = self.switch_rate.unwrap_or(DEFAULT_SWITCH_RATE);
        o.user = !self.kernel_only;
        o.kernel = !self.user_only;
        o.call_graph = self.call_graph;
        if let Some(pages) = self.ring_pages {
            o.ring_pages = pages;
        }
        o
    }

    fn docker_query(&self) -> Option<DockerQuery> {
        if self.docker_ports.is_empty() && self.containers.is_empty() {
            return None;
        }
        let mut q = DockerQuery::default();
        q.ports = self.docker_ports.clone();
        q.containers = self.containers.clone();
        Some(q)
    }

    fn fold_options(&self) -> FoldOptions {
        let mut o = FoldOptions::default();
        // Docker targets are told apart by pid, then relabelled.
        o.per_pid = self.per_pid || self.docker_query().is_some();
        o.per_thread = self.per_thread;
        o.user = !self.kernel_only;
        o.kernel = !self.user_only;
        o.inline = self.inline;
        if self.measure() != Measure::OnCpu {
            // Nanoseconds: off-CPU time, and cpu-clock periods with --wall.
            o.weight = Weight::Period;
        }
        o
    }
}

/// Signals seen (SIGINT, SIGTERM, SIGHUP), counted by the handler thread.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Runs `nflame record`.
pub fn run(args: RecordArgs, verbosity: crate::Verbosity) -> Result<ExitCode> {
    let quiet = verbosity == crate::Verbosity::Quiet;
    let rec_opts = args.record_options();
    let fold_opts = args.fold_options();
    let title = match args.measure() {
        Measure::OffCpu => "Off-CPU Time Flame Graph",
        Measure::Wall => "Wall-Clock Time Flame Graph",
        _ => "On-CPU Flame Graph",
    };
    let render_opts = args.render.into_options(title);
    render_opts.validate()?;
    let mut docker = match args.docker_query() {
        Some(q) => Some(DockerTargets::discover(&q).context("finding the Docker targets")?),
        None => None,
    };

    // Every destination is created (as a temporary file beside it) before
    // sampling, so a bad path costs nothing; none appears until commit.
    let paths = if args.outputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.outputs.clone()
    };
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("standard output (-o -) can be given only once");
    }
    let mut outputs = Vec::with_capacity(paths.len());
    for p in &paths {
        let format = Format::of(p)?;
        let out = Output::create(p).map_err(|e| output_error(p, e))?;
        outputs.push((format, out));
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        if let Err(e) = ctrlc::set_handler(move || {
            SIGNALS.fetch_add(1, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        }) {
            eprintln!("nflame: warning: cannot catch Ctrl-C ({e}); it will lose the recording");
        }
    }

    let mut status = StatusLine::new();
    status.enabled &= !quiet;
    if status.enabled {
        let end = match (rec_opts.duration, &rec_opts.target) {
            (Some(d), _) => format!("for {}", secs(d)),
            (None, Target::Pids(_)) => "until the processes exit".into(),
            (None, Target::Command(_)) => "until the command exits".into(),
            (None, _) => "until Ctrl-C".into(),
        };
        let what = match &docker {
            Some(_) => "the Docker targets and network softirq work on all CPUs".into(),
            None => describe_target(&rec_opts.target),
        };
        eprintln!("nflame: recording {what} {end} (Ctrl-C ends it early)");
    }
    if let (Some(d), false) = (&docker, quiet) {
        for line in &d.found {
            eprintln!("  {line}");
        }
    }
    // Kernel symbols load on a background thread while sampling runs.
    let prepared = nflame_symbolizer::warm_up(&fold_opts);
    let recording = nflame_sampler::record(&rec_opts, &stop, |p| status.update(p));
    status.clear();
    let mut recording = recording.context("recording")?;
    if let Some(d) = &mut docker {
        d.refresh();
        d.restrict(&mut recording);
        if recording.measure.off_cpu() {
            // Waits are the targets' own: other tasks' are not network work.
            recording
                .samples
                .retain(|s| !s.kind.is_off_cpu() || d.roles.contains_key(&s.pid));
            for (pid, p) in &mut recording.processes {
                if !d.roles.contains_key(pid) {
                    p.times.clear();
                }
            }
        }
        recording.notes.extend(d.notes.iter().cloned());
    }
    let signals_at_end = SIGNALS.load(Ordering::SeqCst);
    let abandoned = move || {
        let n = SIGNALS.load(Ordering::SeqCst);
        n > signals_at_end || n >= 2
    };

    if status.enabled && recording.samples.len() > 100_000 {
        eprintln!(
            "nflame: symbolizing {} samples (Ctrl-C abandons)",
            recording.sample_count()
        );
    }
    let (profile, stats) = nflame_symbolizer::fold_with(&recording, &fold_opts, &prepared)
        .context("symbolizing the samples")?;
    let profile = match &docker {
        Some(d) => {
            let kept = relabel(&profile, d, args.per_pid);
            recording.notes.push(format!(
                "Docker targets: {} of {} samples are the targets' or network softirq work",
                kept.total(),
                profile.total()
            ));
            kept
        }
        None => profile,
    };
    if abandoned() {
        return Ok(interrupted());
    }
    let mut render_opts = render_opts;
    let mut ctx = context(&recording, &rec_opts.target);
    if let Some(d) = &docker {
        ctx.targets = d.found.clone();
    }
    render_opts.context = Some(ctx);
    let mut written = Vec::new();
    let mut failures = Vec::new();
    let mut committed = Vec::new();
    for (format, mut out) in outputs {
        let path = out.path().to_path_buf();
        let result = match format {
            Format::Folded => {
                let mut w = Abortable::new(out.writer(), &abandoned);
                profile.write_folded(&mut w).and_then(|()| w.flush())
            }
            Format::Svg if profile.is_empty() => {
                failures.push(format!(
                    "{}: no samples were recorded, so there is no flame graph to draw",
                    path.display()
                ));
                continue;
            }
            Format::Svg => {
                let w = Abortable::new(out.writer(), &abandoned);
                nflame_render::render_profile(&profile, &render_opts, w)
                    .map_err(|e| io::Error::other(format!("{:#}", anyhow::Error::from(e))))
            }
        };
        if abandoned() {
            return Ok(interrupted());
        }
        match result {
            Ok(()) => committed.push((path, out)),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => failures.push(format!("writing {}: {e}", path.display())),
        }
    }
    if abandoned() {
        return Ok(interrupted());
    }
    for (path, out) in committed {
        match out.commit() {
            Ok(()) if path.as_os_str() != "-" => written.push(path),
            Ok(()) => {}
            Err(e) => failures.push(format!("{:#}", anyhow::Error::from(e))),
        }
    }

    if !quiet {
        print_summary(&recording, &stats, &profile, &written);
    }
    for f in &failures {
        eprintln!("nflame: error: {f}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The Docker targets' stacks under their role labels, plus the network
/// softirq work of other tasks (see [`DockerTargets::relabel`]).
fn relabel(profile: &Profile, docker: &DockerTargets, per_pid: bool) -> Profile {
    let mut out = Profile::new();
    for (stack, count) in profile.iter() {
        if let Some(s) = docker.relabel(stack, per_pid) {
            out.add(&s, count);
        }
    }
    out
}

/// An output that cannot be created, said plainly (the temporary file's name
/// would only confuse).
fn output_error(path: &Path, e: nflame_profile::Error) -> anyhow::Error {
    if let nflame_profile::Error::Write { source, .. } = &e {
        if let Some(code) = source.raw_os_error() {
            return anyhow::anyhow!(
                "cannot write {}: {} (checked before recording; nothing was recorded)",
                path.display(),
                io::Error::from_raw_os_error(code)
            );
        }
    }
    anyhow::Error::from(e).context("checking the outputs before recording")
}

fn interrupted() -> ExitCode {
    eprintln!("nflame: interrupted while writing: no output written");
    ExitCode::from(EXIT_INTERRUPTED)
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

/// The live status line on a terminal (standard error).
struct StatusLine {
    enabled: bool,
    shown: bool,
}

impl StatusLine {
    fn new() -> StatusLine {
        StatusLine {
            enabled: io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn update(&mut self, p: &Progress) {
        if !self.enabled {
            return;
        }
        let mut line = format!(
            "\r\x1b[K  {:>7.1} s  {} samples  {} lost  {} process{}  [{}]",
            p.elapsed.as_secs_f64(),
            p.samples,
            p.lost,
            p.processes,
            if p.processes == 1 { "" } else { "es" },
            p.event
        );
        if SIGNALS.load(Ordering::Relaxed) > 0 {
            line.push_str("  stopping…");
        }
        let mut e = io::stderr().lock();
        let _ = e.write_all(line.as_bytes());
        let _ = e.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let _ = io::stderr().write_all(b"\r\x1b[K");
            self.shown = false;
        }
    }
}

fn describe_target(t: &Target) -> String {
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
                Some(info) if !info.comm.is_empty() => format!("pid {pid} ({})", info.comm),
                _ => format!("pid {pid}"),
            })
            .collect(),
        Target::Names(n) => n.iter().map(|n| format!("name {n}")).collect(),
        Target::Command(c) => vec![format!("command: {}", shell_words(c))],
        _ => vec!["all processes".into()],
    }
}

/// Joins arguments for display, quoting the ones a shell would split.
fn shell_words<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
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

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The recording's context, stored in and shown on the SVG.
fn context(rec: &Recording, target: &Target) -> Context {
    let mut c = Context::new(env!("CARGO_PKG_VERSION"), "profile");
    c.host = read_trimmed("/proc/sys/kernel/hostname");
    c.kernel = read_trimmed("/proc/sys/kernel/osrelease");
    c.event = Some(rec.event.clone());
    c.frequency = Some(rec.frequency);
    c.duration_secs = Some((rec.duration.as_secs_f64() * 1000.0).round() / 1000.0);
    c.samples = Some(rec.sample_count());
    c.lost = Some(rec.lost);
    c.targets = target_list(target, rec);
    let argv: Vec<OsString> = std::env::args_os().collect();
    c.command = Some(format!(
        "nflame {}",
        shell_words(argv.get(1..).unwrap_or_default())
    ));
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

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn print_summary(rec: &Recording, stats: &FoldStats, profile: &Profile, written: &[PathBuf]) {
    let samples = rec.sample_count();
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
        stats.processes,
        rec.processes.len()
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
    let _ = writeln!(s, "  stacks     {} distinct", profile.len());
    if rec.user && stats.user_stacks > 0 {
        let mut unwind = UnwindStats::default();
        for p in rec.processes.values() {
            unwind.add(&p.unwind);
        }
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
    if rec.measure.off_cpu() {
        let mut t = ThreadTimes::default();
        let mut threads = 0;
        for times in rec.processes.values().flat_map(|p| p.times.values()) {
            t.add(times);
            threads += 1;
        }
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
    if let Some(status) = rec.command_status {
        let _ = writeln!(s, "  command    exit status {status}");
    }
    if !written.is_empty() {
        let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(s, "  written    {}", list.join(", "));
    }
    for note in &rec.notes {
        let _ = writeln!(s, "  note: {note}");
    }
    if let Some(e) = &stats.kernel_error {
        let _ = writeln!(s, "  note: kernel frames unnamed: {e}");
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
    let _ = io::stderr().write_all(s.as_bytes());
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
    fn pids_and_formats() {
        assert_eq!(parse_pids("1,2 3").unwrap(), PidList(vec![1, 2, 3]));
        assert!(parse_pids("1,x").is_err());
        assert!(parse_pids("0").is_err());
        assert_eq!(Format::of(Path::new("a.svg")).unwrap(), Format::Svg);
        assert_eq!(Format::of(Path::new("a.svg.gz")).unwrap(), Format::Svg);
        assert_eq!(
            Format::of(Path::new("a.folded.gz")).unwrap(),
            Format::Folded
        );
        assert_eq!(Format::of(Path::new("-")).unwrap(), Format::Folded);
        assert!(Format::of(Path::new("a.txt")).is_err());
    }

    #[test]
    fn min_block_durations() {
        assert_eq!(parse_min_block("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_min_block("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_min_block("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_min_block("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_min_block("100ns"), Ok(Duration::from_nanos(100)));
        assert!(parse_min_block("-1ms").is_err());
        assert!(parse_min_block("soon").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_words(&["a", "b c", "it's"]), r"a 'b c' 'it'\''s'");
    }
}
