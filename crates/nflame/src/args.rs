//! Command-line definitions; each turns into library options with one call.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nflame_pipeline::{CompareOptions, DiagnosisOptions};
use nflame_profile::perf_script::CollapseOptions;
use nflame_render::RenderOptions;

/// Flame graphs, differential flame graphs and verdicts for Linux performance work.
#[derive(Debug, Parser)]
#[command(name = "nflame", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only errors (no summaries, no progress).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more about what was done.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample processes on the CPU with perf events and write folded stacks and/or an SVG.
    Record(crate::record::RecordArgs),
    /// Draw one or more folded profiles (merged) as an interactive SVG flame graph.
    Render(Render),
    /// Compare two folded profiles: a differential flame graph and a report of what changed.
    Diff(DiffArgs),
    /// Where the CPU goes, by category (userland proxy, bridge, netfilter, TCP/IP, app…), and a verdict.
    Report(ReportArgs),
    /// The whole job on a built-in workload: a loopback server, a userland relay and a load client
    /// recorded direct and relayed, graphs and a verdict (needs perf events: root or CAP_PERFMON).
    Demo(crate::demo::DemoArgs),
    /// A role of the demo workload (internal).
    #[command(name = "__worker", hide = true)]
    Worker(crate::demo::WorkerArgs),
    /// Convert a profile for continuous-profiling backends: pprof (Pyroscope, Parca,
    /// `go tool pprof`) or speedscope.
    Export(Export),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(Completions),
    /// Write nflame's man pages (one per subcommand) into a directory.
    Man(Man),
    /// Turn `perf script` output into folded stacks.
    Collapse(Collapse),
    /// Keep or drop the stacks that contain a frame matching a regular expression.
    Filter(Filter),
}

/// How the commands that read folded profiles treat unreadable lines.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Skip lines that cannot be read (a malformed count, no stack, invalid UTF-8) with a
    /// warning naming how many and the first (file:line), instead of rejecting the input.
    #[arg(long)]
    pub skip_bad_lines: bool,
}

impl ReadArgs {
    pub fn options(&self) -> nflame_profile::ReadOptions {
        nflame_profile::ReadOptions::skipping(self.skip_bad_lines)
    }
}

/// Options shared by the commands that draw SVGs.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Title of the graph.
    #[arg(long)]
    pub title: Option<String>,
    /// Second line under the title.
    #[arg(long)]
    pub subtitle: Option<String>,
    /// Colour palette: hot, mem, io, wakeup, java, js, perl, python, rust, red, green, blue,
    /// aqua, yellow, purple, orange, or lua (hot, with Lua frames green and the functions
    /// compiled traces ran aqua).
    #[arg(long, default_value = "hot")]
    pub palette: String,
    /// Width in pixels (default: fluid, fills the browser window).
    #[arg(long)]
    pub width: Option<usize>,
    /// Omit frames narrower than this many pixels.
    #[arg(long, default_value_t = 0.1)]
    pub min_width: f64,
    /// Draw an icicle graph (root at the top).
    #[arg(long)]
    pub inverted: bool,
    /// Reverse the stacks (leaf at the root): who calls the hot functions.
    #[arg(long)]
    pub reverse: bool,
    /// Draw a flame chart: stacks in input order (time), not merged.
    #[arg(long)]
    pub flamechart: bool,
    /// What a count is called in tooltips (default: the profile's unit, `samples` or `µs`).
    #[arg(long)]
    pub count_name: Option<String>,
    /// Colour by a hash of the frame name: the same input gives a byte-identical SVG.
    #[arg(long)]
    pub deterministic: bool,
    /// Embed the profiles in the SVG up to this many MiB (encoded); larger ones are written
    /// beside it as OUTPUT.ROLE.folded.gz, which reading the SVG back finds (0: always beside).
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub embed_limit: u64,
}

impl RenderArgs {
    /// The renderer's options, titled `default_title` unless `--title` is given.
    pub fn to_options(&self, default_title: &str) -> RenderOptions {
        let mut o = RenderOptions::default();
        o.title = self
            .title
            .clone()
            .unwrap_or_else(|| default_title.to_string());
        o.subtitle = self.subtitle.clone();
        o.palette = self.palette.clone();
        o.width = self.width;
        o.min_width = self.min_width;
        o.inverted = self.inverted;
        o.reverse = self.reverse;
        o.flamechart = self.flamechart;
        o.count_name = self.count_name.clone();
        o.deterministic = self.deterministic;
        o.embed_limit = Some(self.embed_limit.saturating_mul(1 << 20));
        o
    }
}

#[derive(Debug, Args)]
pub struct Render {
    /// Folded profiles (plain, .gz, or - for standard input).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the SVG (- for standard output).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The profile before the change (folded, plain or .gz).
    pub before: PathBuf,
    /// The profile after the change.
    pub after: PathBuf,
    /// Write the differential flame graph here (widths from AFTER; red grew, blue shrank).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also write the reverse view here (widths from BEFORE), where stacks that vanished show.
    #[arg(long)]
    pub removed: Option<PathBuf>,
    /// Compare raw counts instead of scaling BEFORE to AFTER's total.
    #[arg(long)]
    pub no_normalize: bool,
    /// Divide BEFORE's counts by the work it did (e.g. requests served): cost per unit.
    #[arg(long, value_name = "N")]
    pub scale_before: Option<f64>,
    /// Divide AFTER's counts by the work it did.
    #[arg(long, value_name = "N")]
    pub scale_after: Option<f64>,
    /// How many frames and stacks each table of the report lists.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
    /// Print the report as JSON: {"before": <report>, "after": <report>, "verdict": {...},
    /// "changes": [...], "frames": <frame changes>}.
    #[arg(long)]
    pub json: bool,
    /// Classification rules replacing the built-in ones (see `nflame report --help`).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A folded profile (plain, .gz, - for standard input) or an SVG nflame wrote.
    pub profile: PathBuf,
    /// A second profile (after a change): the report compares the two.
    pub after: Option<PathBuf>,
    /// Also write one self-contained HTML page (verdict, tables, interactive flame
    /// graphs and the differential graph, the commands) here.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// Print JSON: {"total_samples": n, "categories": {...}, "verdict": {"kind", "summary", "fix"}, ...}.
    #[arg(long)]
    pub json: bool,
    /// Units of work done during the recording (e.g. requests served): adds cost per unit.
    #[arg(long, value_name = "N")]
    pub per: Option<f64>,
    /// Units of work of the second profile (with AFTER).
    #[arg(long, value_name = "N", requires = "after")]
    pub per_after: Option<f64>,
    /// Classification rules replacing the built-in ones. One rule a line:
    /// `CATEGORY KIND PATTERN` (see the README, "Classification rules").
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
}

impl DiffArgs {
    /// The pipeline's options; `command_line` is stored in the graphs.
    pub fn into_options(self, command_line: String) -> CompareOptions {
        let mut o = CompareOptions::new(self.before, self.after);
        o.graph = self.output;
        o.removed_graph = self.removed;
        o.diff.normalize = !self.no_normalize;
        o.diff.scale_before = self.scale_before;
        o.diff.scale_after = self.scale_after;
        o.diff.top = self.top;
        o.render = self.render.to_options("Differential Flame Graph");
        o.rules = self.rules;
        o.command_line = Some(command_line);
        o.read = self.read.options();
        o
    }
}

impl ReportArgs {
    /// The pipeline's options; `command_line` is shown on the HTML page.
    pub fn into_options(self, command_line: String) -> DiagnosisOptions {
        let mut o = DiagnosisOptions::new(self.profile);
        o.after = self.after;
        o.html = self.html;
        o.per = self.per;
        o.per_after = self.per_after;
        o.rules = self.rules;
        o.command_line = Some(command_line);
        o.read = self.read.options();
        o
    }
}

#[derive(Debug, Args)]
pub struct Collapse {
    /// `perf script` output (plain, .gz, or - for standard input).
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Where to write the folded stacks (.gz compresses; - for standard output).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Weight each sample by its period (e.g. nanoseconds for cpu-clock) instead of counting it once.
    #[arg(long)]
    pub period: bool,
    /// Put the process id in the root frame (`comm-PID`).
    #[arg(long)]
    pub pid: bool,
    /// Put the process and thread ids in the root frame (`comm-PID/TID`).
    #[arg(long)]
    pub tid: bool,
    /// Only samples of this event (default: the first event in the input).
    #[arg(long)]
    pub event: Option<String>,
    /// Do not suffix kernel frames with `_[k]` and JIT frames with `_[j]`.
    #[arg(long)]
    pub no_annotate: bool,
    /// Name frames without a symbol after their address: `[libc.so.6+0x1d6a4]`
    /// (an address in that file), or `0x7f3a5c0e1d2b` when the module is unknown too.
    #[arg(long)]
    pub addrs: bool,
    /// Keep runs of consecutive `[unknown]` frames (by default each run becomes one frame).
    #[arg(long)]
    pub keep_unknown_runs: bool,
}

impl Collapse {
    pub fn options(&self) -> CollapseOptions {
        let mut o = CollapseOptions::default();
        o.period = self.period;
        o.include_pid = self.pid || self.tid;
        o.include_tid = self.tid;
        o.event = self.event.clone();
        o.annotate_kernel = !self.no_annotate;
        o.annotate_jit = !self.no_annotate;
        o.include_addrs = self.addrs;
        o.fold_unknown_runs = !self.keep_unknown_runs;
        o
    }
}

#[derive(Debug, Args)]
pub struct Filter {
    /// A folded profile (plain, .gz, or - for standard input).
    pub input: PathBuf,
    /// Where to write the kept stacks (.gz compresses; - for standard output).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Keep only stacks with a frame matching this regex (repeatable: any of them).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Drop stacks with a frame matching this regex (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct Export {
    /// A folded profile (plain, .gz, - for standard input) or an SVG nflame wrote.
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_parser = ["pprof", "speedscope"], default_value = "pprof")]
    pub format: String,
    /// Where to write (pprof is gzip-compressed profile.proto, e.g. OUT.pb.gz; - for stdout).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Sampling period in nanoseconds (e.g. 1001001 for 999 Hz cpu-clock): adds CPU time values
    /// (profiles of samples only: a profile of time is exported in its microseconds).
    #[arg(long, value_name = "NS")]
    pub period_ns: Option<u64>,
    /// The event the samples come from (stored as a comment).
    #[arg(long)]
    pub event: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct Completions {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct Man {
    /// Directory to write nflame.1, nflame-record.1, … into.
    #[arg(short, long, default_value = ".")]
    pub output: PathBuf,
}
