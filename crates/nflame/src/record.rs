//! `nflame record`: the command line, turned into a
//! [`nflame_pipeline::RecordJob`], run by [`nflame_pipeline::record()`]; this
//! module owns only what a terminal needs: catching signals, the live status
//! line, and printing the summary on standard error.
//!
//! Signals: the first Ctrl-C (SIGINT), SIGTERM or SIGHUP ends the recording,
//! which is then written completely. A signal that arrives once the recording
//! has ended (for instance a second Ctrl-C while symbolizing) abandons the
//! outputs: nothing is written, and the exit status is 130.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Args, ValueEnum};
use nflame_docker::DockerQuery;
use nflame_pipeline::{RecordEvents, RecordJob};
use nflame_sampler::{
    CallGraph, EventChoice, Measure, Progress, RecordOptions, Target, DEFAULT_SWITCH_RATE,
};
use nflame_symbolizer::{FoldOptions, LuaFold, Weight};

use crate::args::RenderArgs;

/// Exit status when the outputs were abandoned by a signal (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// Sample processes on the CPU and write folded stacks and/or a flame graph.
///
/// Give exactly one kind of target: `--pid`, `--name`, `-a`, a command
/// after `--`, or Docker targets (`--docker-port`, `--container`, which can
/// be combined). Stacks read, root first: process name (with `--per-pid`,
/// `--per-thread`), user frames, kernel frames suffixed `_[k]`. In LuaJIT
/// processes (OpenResty's nginx, luajit) the Lua frames, suffixed `_[l]`
/// (`_[lj]` when compiled), stand in place of the VM's own frames (`--lua`).
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
/// stays off, in microseconds, under a `[blocked]` or `[preempted]` frame.
/// With `--wall`, both: on-CPU samples weighted by their period (under
/// `[on-cpu]`) and off-CPU time, so each thread's whole time is there.
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
    /// in microseconds. Needs kernel sampling (root, CAP_PERFMON, or
    /// kernel.perf_event_paranoid at 1 or lower).
    #[arg(long)]
    pub off_cpu: bool,
    /// Record wall-clock time: on-CPU samples of cpu-clock weighted by their
    /// period and off-CPU time, in microseconds, so that each thread's time
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
    /// longer stack, and on every CPU (`-a`, `--name`, Docker targets) copies less, or
    /// nothing, when the recorder cannot keep up (the summary says so).
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
    /// Keep runs of consecutive `[unknown]` frames (by default each run becomes one frame).
    #[arg(long)]
    pub keep_unknown_runs: bool,
    /// Lua frames of LuaJIT processes (OpenResty's nginx, luajit, anything
    /// embedding LuaJIT 2.1 GC64 on x86-64): `on` reads each sample's Lua stack
    /// (a BPF program: root, or CAP_BPF with CAP_PERFMON, Linux >= 5.17) and puts
    /// the Lua frames, marked `_[l]` (`_[lj]` when compiled), in place of the
    /// VM's native frames; `off` records C-level stacks only. Without BPF, or
    /// for a build it cannot read, the summary says why and the recording goes
    /// on with C-level stacks.
    #[arg(long, value_enum, default_value_t = LuaArg::On, value_name = "on|off")]
    pub lua: LuaArg,
    /// Write Lua-land stacks only: the process, then the Lua frames (and the C
    /// functions in the Lua stack), without the C and kernel frames around them;
    /// samples without Lua frames are left out.
    #[arg(long, conflicts_with = "kernel_only")]
    pub lua_only: bool,
    /// Split Lua functions by the line being run (`name@chunk:first line N_[l]`).
    #[arg(long)]
    pub lua_lines: bool,
    /// Ring buffer size per CPU, in pages (rounded down to a power of two, at
    /// least 8; DWARF unwinding raises it to 4096). Advanced: small rings lose
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
        .map_err(|e: nflame_sampler::ParseCallGraphError| e.to_string())
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

/// `--lua` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LuaArg {
    /// Lua frames in the stacks of LuaJIT processes.
    On,
    /// C-level stacks only.
    Off,
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
                 in microseconds, so it samples cpu-clock; cycles are not time"
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
        o.lua = self.lua == LuaArg::On;
        o.lua_lines = self.lua_lines;
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
        o.per_pid = self.per_pid;
        o.per_thread = self.per_thread;
        o.user = !self.kernel_only;
        o.kernel = !self.user_only;
        o.inline = self.inline;
        if self.measure() != Measure::OnCpu {
            // Off-CPU time, and cpu-clock periods with --wall, in µs.
            o.weight = Weight::Time;
            o.kind_frames = true;
        }
        o.fold_unknown_runs = !self.keep_unknown_runs;
        o.lua = match (self.lua, self.lua_only) {
            (LuaArg::Off, _) => LuaFold::Off,
            (LuaArg::On, true) => LuaFold::Only,
            (LuaArg::On, false) => LuaFold::Mixed,
        };
        o
    }
}

impl RecordArgs {
    fn into_job(self) -> RecordJob {
        let mut job = RecordJob::new(self.record_options());
        job.fold = self.fold_options();
        let title = match self.measure() {
            Measure::OffCpu => "Off-CPU Time Flame Graph",
            Measure::Wall => "Wall-Clock Time Flame Graph",
            _ => "On-CPU Flame Graph",
        };
        job.render = self.render.to_options(title);
        job.docker = self.docker_query();
        job.outputs = self.outputs;
        let argv: Vec<OsString> = std::env::args_os().collect();
        job.command_line = Some(nflame_pipeline::record::nflame_command_line(&argv));
        job
    }
}

/// Signals seen (SIGINT, SIGTERM, SIGHUP), counted by the handler thread.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Runs `nflame record`.
pub fn run(args: RecordArgs, verbosity: crate::Verbosity) -> Result<ExitCode> {
    let quiet = verbosity == crate::Verbosity::Quiet;
    if args.lua == LuaArg::Off && (args.lua_only || args.lua_lines) {
        anyhow::bail!("--lua-only and --lua-lines need Lua frames: drop --lua off");
    }
    let job = args.into_job();
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
    let mut terminal = Terminal {
        status: StatusLine::new(),
        quiet,
        signals_at_end: None,
    };
    terminal.status.enabled &= !quiet;
    let outcome = nflame_pipeline::record(&job, &stop, &mut terminal)?;
    if outcome.interrupted {
        eprintln!("nflame: interrupted while writing: no output written");
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if !quiet {
        let _ = io::stderr().write_all(outcome.summary().as_bytes());
    }
    for f in &outcome.failures {
        eprintln!("nflame: error: {f}");
    }
    Ok(if outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The terminal side of a recording: the announcement, the status line,
/// and whether a signal after the recording abandons the outputs.
struct Terminal {
    status: StatusLine,
    quiet: bool,
    /// Signals seen when sampling ended.
    signals_at_end: Option<usize>,
}

impl RecordEvents for Terminal {
    fn started(&mut self, what: &str, until: &str, docker_found: &[String]) {
        if self.status.enabled {
            eprintln!("nflame: recording {what} {until} (Ctrl-C ends it early)");
        }
        if !self.quiet {
            for line in docker_found {
                eprintln!("  {line}");
            }
        }
    }

    fn progress(&mut self, p: &Progress) {
        self.status.update(p);
    }

    fn symbolizing(&mut self, samples: u64) {
        self.status.clear();
        self.signals_at_end = Some(SIGNALS.load(Ordering::SeqCst));
        if self.status.enabled && samples > 100_000 {
            eprintln!("nflame: symbolizing {samples} samples (Ctrl-C abandons)");
        }
    }

    fn abandoned(&self) -> bool {
        let n = SIGNALS.load(Ordering::SeqCst);
        n >= 2 || self.signals_at_end.is_some_and(|at_end| n > at_end)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RecordArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            record: RecordArgs,
        }
        Cli::parse_from(std::iter::once("record").chain(args.iter().copied())).record
    }

    #[test]
    fn unknown_runs_are_folded_unless_kept() {
        assert!(parse(&["-a"]).fold_options().fold_unknown_runs);
        assert!(
            !parse(&["-a", "--keep-unknown-runs"])
                .fold_options()
                .fold_unknown_runs
        );
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pids("1,2 3").unwrap(), PidList(vec![1, 2, 3]));
        assert!(parse_pids("1,x").is_err());
        assert!(parse_pids("0").is_err());
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
}
