//! What to record and how: [`RecordOptions`], [`Target`], [`EventChoice`],
//! and the [`Progress`] handed to the live-status callback.

use std::ffi::OsString;
use std::time::Duration;

use nflame_recording::{CallGraph, Measure};

/// What to record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// These processes (a thread id stands for its process), every thread of
    /// each, and every thread and child process they start while recording.
    /// The recording ends when all of them have exited.
    Pids(Vec<u32>),
    /// Every process whose `comm` or executable basename equals one of the
    /// names, including processes that start (or `exec`) during the recording,
    /// and their children. Matching nothing at the start is not an error: the
    /// recording waits for a match until the duration elapses or it is
    /// stopped, and fails with [`crate::Error::NoProcessMatched`] only if no
    /// process matched at any time. Ends on duration or stop only.
    Names(Vec<String>),
    /// Every process on every CPU (needs CAP_PERFMON, root, or
    /// `perf_event_paranoid` ≤ 0). Ends on duration or stop only.
    All,
    /// Run this command (program, then arguments; `PATH` is searched), with
    /// the counters enabled at its `exec`, and record it and its descendants
    /// until it exits (as `perf record -- cmd` does; children it leaves behind
    /// are not waited for). If the recording ends first (duration, stop flag),
    /// the command gets SIGTERM, then SIGKILL after a second.
    Command(Vec<OsString>),
}

/// Which perf event drives sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EventChoice {
    /// Hardware `cycles` if the CPU has a usable PMU, else software `cpu-clock`.
    #[default]
    Auto,
    /// Hardware `cycles` only (fails without a PMU, e.g. in most VMs).
    Cycles,
    /// Software `cpu-clock` (a timer; works everywhere).
    CpuClock,
}

/// Options of [`crate::record()`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordOptions {
    /// What to record. Default is [`Target::All`].
    pub target: Target,
    /// Samples per second per CPU a busy thread gets. Default is 999 Hz (not
    /// 1000, to avoid lockstep with periodic activity).
    pub frequency: u64,
    /// Stop after this long. Default is `None`: until the targets exit or the
    /// stop flag is set.
    pub duration: Option<Duration>,
    /// Which event to sample on. Default is [`EventChoice::Auto`].
    pub event: EventChoice,
    /// Sample user space (and record user stacks). Default is `true`.
    pub user: bool,
    /// Sample the kernel (and record kernel stacks). Default is `true`; an
    /// unprivileged user under `perf_event_paranoid` ≥ 2 gets user-only
    /// recording automatically (noted in [`crate::Recording::notes`]), or an
    /// error if they asked for kernel-only.
    pub kernel: bool,
    /// Ring buffer size per counter, in pages (rounded down to a power of
    /// two, at least 8). Default is 128 (512 KiB with 4 KiB pages). When there
    /// are many per-thread counters, it is reduced to keep all buffers within
    /// 64 MiB.
    pub ring_pages: usize,
    /// How often the progress callback is called, at most. Default 250 ms.
    pub progress_interval: Duration,
    /// How user stacks are collected. Default is [`CallGraph::Auto`]. With
    /// DWARF unwinding (`Dwarf`, `Auto`) and privileges, the ring buffers
    /// get at least 4096 pages (16 MiB) each, within 64 MiB in all, as
    /// every sample carries the copied stack; recording every CPU, `Auto`
    /// copies less, or nothing, when the recorder falls behind.
    pub call_graph: CallGraph,
    /// What to measure: on-CPU samples, off-CPU time, or both (wall-clock
    /// time, which needs the `cpu-clock` event: [`EventChoice::Auto`] then
    /// means `cpu-clock`). Default is [`Measure::OnCpu`]. Off-CPU time needs
    /// kernel sampling (root, `CAP_PERFMON`, or `perf_event_paranoid` ≤ 1).
    pub measure: Measure,
    /// Off-CPU intervals shorter than this give no sample (their time still
    /// counts in the per-thread totals). Default is zero: every interval.
    pub min_block: Duration,
    /// Stacks taken a second at context switches, per CPU: while a CPU's
    /// recorded threads switch less often, every switch gets a stack; above
    /// it, the threads switching less than their share keep every switch
    /// and the faster ones share the rest, one switch in N, N adapted every
    /// 200 ms (see [`crate::OffCpuInfo::sampled`] for how the time of the
    /// others is counted). Threads started during the recording that switch
    /// faster than this, or a recorder falling behind, turn the stacks to
    /// the kernel's frequency mode, where each of the N threads recorded at
    /// the start gets up to this / N a second on each CPU, and so does each
    /// thread it starts. Default is [`DEFAULT_SWITCH_RATE`].
    pub switch_rate: u64,
    /// Read the Lua stack of LuaJIT processes at each sample (a BPF program
    /// on the sampling counters; see `nflame-luajit`) into
    /// [`RawSample::lua`](nflame_recording::RawSample::lua). Default is
    /// `true`; without BPF the recording goes on without them and says why
    /// in [`crate::Recording::notes`]. Needs user frames.
    pub lua: bool,
    /// Name Lua frames with the line being run (` line N`), splitting a
    /// function by line. Default is `false`.
    pub lua_lines: bool,
}

/// Default of [`RecordOptions::switch_rate`]: 2000 stacks a second per CPU,
/// about 16 MB/s of copied stack per CPU with DWARF unwinding (what it
/// costs is measured in [`crate::record()`]'s documentation).
pub const DEFAULT_SWITCH_RATE: u64 = 2000;

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            target: Target::All,
            frequency: 999,
            duration: None,
            event: EventChoice::Auto,
            user: true,
            kernel: true,
            ring_pages: 128,
            progress_interval: Duration::from_millis(250),
            call_graph: CallGraph::Auto,
            measure: Measure::OnCpu,
            min_block: Duration::ZERO,
            switch_rate: DEFAULT_SWITCH_RATE,
            lua: true,
            lua_lines: false,
        }
    }
}

impl RecordOptions {
    /// Default options for `target`.
    pub fn new(target: Target) -> Self {
        RecordOptions {
            target,
            ..RecordOptions::default()
        }
    }
}

/// Live statistics for a status line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Time since the counters were enabled.
    pub elapsed: Duration,
    /// Samples kept so far.
    pub samples: u64,
    /// Samples lost so far (ring buffer overflow).
    pub lost: u64,
    /// Target processes seen so far.
    pub processes: usize,
    /// The event in use (`"cycles"` or `"cpu-clock"`).
    pub event: &'static str,
}
