//! nflame-recording: what a recording holds, as plain data.
//!
//! The sampler (`nflame-sampler`) produces a [`Recording`]: raw samples (pid,
//! tid, time, CPU, weight, kernel and user return addresses, leaf first) and,
//! per process, its comm, executable, threads and executable [`Mapping`]s, so
//! that frames of processes that exited during the recording can still be
//! named. The symbolizer (`nflame-symbolizer`) consumes it. This crate owns
//! these types and nothing else: no syscalls, no perf-event plumbing, so a
//! consumer needs neither `perf-event-open` nor an unwinder to read one.
//!
//! Stacks are stored compactly: the kernel and user halves of a stack are
//! interned `Arc<[u64]>` slices, so identical stacks (the common case in a
//! busy loop) share one allocation and a sample costs about 64 bytes.
//!
//! Samples of LuaJIT processes also carry their Lua stack ([`LuaStack`],
//! interned the same way): the Lua frames, already named while the process
//! lived, and what the VM was doing. [`ProcessInfo::lua`] says which build
//! was found and where its VM's native code lies, so that the symbolizer can
//! put the Lua frames in place of the native VM frames.
//!
//! The structs here are exhaustive so other crates' tests can build them;
//! build them with `..Default::default()` so that added fields do not break you.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Samples with identical pid, tid, kind and stacks, as the kernel reported
/// them (no symbols yet).
///
/// The recorder keeps one `RawSample` per distinct (pid, tid, kind, kernel
/// stack, user stack), counting repeats in [`RawSample::count`], so its memory grows
/// with the number of distinct stacks, not with the number of samples: a
/// steady workload recorded for ten minutes needs no more than one recorded
/// for ten seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSample {
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Timestamp of the first of these samples, nanoseconds of
    /// `CLOCK_MONOTONIC` (requested with `use_clockid`).
    pub time: u64,
    /// CPU the first of these samples was taken on.
    pub cpu: u32,
    /// Number of samples this entry stands for (at least 1).
    pub count: u64,
    /// Weight of these samples. On the CPU ([`SampleKind::OnCpu`]): the sum
    /// of their event counts since each one's previous sample (nanoseconds
    /// for `cpu-clock`, cycles for `cycles`). Off the CPU: nanoseconds spent
    /// off the CPU (with the time of switches that got no stack shared among
    /// those that did: see [`OffCpuInfo::sampled`]).
    pub period: u64,
    /// What these samples measure: time on the CPU, or off it.
    pub kind: SampleKind,
    /// Kernel return addresses, leaf first (empty when kernel frames were excluded).
    /// Interned: identical stacks share one allocation. Use `&sample.kernel[..]`
    /// or `sample.kernel.iter()`.
    pub kernel: Arc<[u64]>,
    /// User return addresses, leaf first (empty when user frames were excluded,
    /// or the sample hit a kernel thread).
    /// Interned like `kernel`.
    pub user: Arc<[u64]>,
    /// The user stack is known to be incomplete: DWARF unwinding stopped
    /// before the outermost frame (the copied stack bytes ran out, or a
    /// return address lay outside every executable mapping). The symbolizer
    /// marks such stacks `[truncated]` at their root.
    pub user_truncated: bool,
    /// The Lua stack taken with these samples (LuaJIT processes, Lua frames
    /// on, the VM found), interned like the stacks; `None` otherwise.
    pub lua: Option<Arc<LuaStack>>,
}

impl Default for RawSample {
    /// One sample at time 0 with no stacks.
    fn default() -> Self {
        RawSample {
            pid: 0,
            tid: 0,
            time: 0,
            cpu: 0,
            count: 1,
            period: 0,
            kind: SampleKind::OnCpu,
            kernel: Arc::from(Vec::new()),
            user: Arc::from(Vec::new()),
            user_truncated: false,
            lua: None,
        }
    }
}

/// What a [`RawSample`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum SampleKind {
    /// On a CPU: a sample of the sampling event (`cpu-clock`, `cycles`).
    #[default]
    OnCpu,
    /// Off the CPU, asleep: the thread waited (I/O, a lock, a timer, a
    /// child) and was not runnable. The stack is where it went to sleep.
    Blocked,
    /// Off the CPU though runnable: the scheduler took the CPU away
    /// (preemption, or a yield). The stack is where it was interrupted.
    Preempted,
}

impl SampleKind {
    /// `on-cpu`, `blocked` or `preempted`.
    pub fn name(&self) -> &'static str {
        match self {
            SampleKind::OnCpu => "on-cpu",
            SampleKind::Blocked => "blocked",
            SampleKind::Preempted => "preempted",
        }
    }

    /// Whether this is time spent off the CPU.
    pub fn is_off_cpu(&self) -> bool {
        !matches!(self, SampleKind::OnCpu)
    }
}

/// What a recording measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Measure {
    /// Samples of the threads on the CPU (`cpu-clock` or `cycles`). The default.
    #[default]
    OnCpu,
    /// Time off the CPU: a stack each time a thread leaves the CPU,
    /// weighted by how long it stays off.
    OffCpu,
    /// Both, in one unit (nanoseconds here, microseconds once folded):
    /// on-CPU samples of `cpu-clock` weighted by their period, and off-CPU
    /// time, so that each thread's whole time is accounted for.
    Wall,
}

impl Measure {
    /// Whether off-CPU time is recorded.
    pub fn off_cpu(&self) -> bool {
        !matches!(self, Measure::OnCpu)
    }

    /// Whether on-CPU samples are recorded.
    pub fn on_cpu(&self) -> bool {
        !matches!(self, Measure::OffCpu)
    }
}

/// How one thread spent the recording, from context-switch records
/// (recordings that measure off-CPU time only). Nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadTimes {
    /// The part of the recording the thread existed: from the start (or its
    /// creation) to the end (or its exit).
    pub span: u64,
    /// On a CPU.
    pub on_cpu: u64,
    /// Off the CPU, asleep.
    pub blocked: u64,
    /// Off the CPU, runnable (preempted, or not yet run after its creation).
    pub preempted: u64,
    /// Times the thread left the CPU.
    pub switches: u64,
}

impl ThreadTimes {
    /// Blocked and preempted time.
    pub fn off_cpu(&self) -> u64 {
        self.blocked.saturating_add(self.preempted)
    }

    /// Time of the span not known to be on or off the CPU (context-switch
    /// records were lost).
    pub fn unaccounted(&self) -> u64 {
        self.span
            .saturating_sub(self.on_cpu)
            .saturating_sub(self.off_cpu())
    }

    /// Adds another thread's times.
    pub fn add(&mut self, other: &ThreadTimes) {
        self.span = self.span.saturating_add(other.span);
        self.on_cpu = self.on_cpu.saturating_add(other.on_cpu);
        self.blocked = self.blocked.saturating_add(other.blocked);
        self.preempted = self.preempted.saturating_add(other.preempted);
        self.switches = self.switches.saturating_add(other.switches);
    }
}

/// How off-CPU time was recorded ([`Recording::off_cpu`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffCpuInfo {
    /// Context switches (a thread leaving the CPU) of recorded threads.
    pub switches: u64,
    /// Of those, the ones with a stack. While a CPU switches less than
    /// [`OffCpuInfo::max_rate`] times a second, every one; above it, about
    /// one in N of the fast threads' switches, N adapted to the rate. The
    /// time of the others is shared among the intervals with a stack of the
    /// same kind and duration class, so that the samples' time adds up to
    /// the threads' exact totals.
    pub sampled: u64,
    /// The budget of stacks taken a second per CPU.
    pub max_rate: u64,
    /// Off-CPU intervals shorter than this are left out of the samples
    /// (not out of [`ProcessInfo::times`]).
    pub min_block: Duration,
    /// Intervals whose start or end was lost (ring buffer overflow): their
    /// time is in no total.
    pub broken: u64,
    /// Stacks taken at switches but lost (ring buffer overflow); their
    /// switches still count, without a stack.
    pub lost_stacks: u64,
}

/// The Lua side of a sample of a LuaJIT process, read when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LuaStack {
    /// What the VM was doing.
    pub state: LuaVmState,
    /// Frames, outermost first (empty when the thread was not running Lua:
    /// e.g. nginx's event loop while a request's coroutine waits).
    pub frames: Vec<LuaFrame>,
}

/// One frame of a [`LuaStack`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LuaFrame {
    /// A Lua function, a builtin, or a frame that could not be read, as
    /// written in a folded stack, marker included:
    /// `compute_a@/srv/app/work.lua:6_[l]`, `_[lj]` when a compiled trace
    /// ran it, `string.format_[l]`, `[lua: unreadable]_[l]`.
    Named(Arc<str>),
    /// A C function called from Lua (`lua_CFunction`): its address, for the
    /// symbolizer to name.
    C(u64),
}

/// What a LuaJIT VM was doing when a sample was taken (`G->vmstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum LuaVmState {
    /// Interpreting bytecode.
    Interpreted,
    /// Running a compiled trace.
    Compiled,
    /// In a C function called from Lua.
    C,
    /// In the garbage collector.
    Gc,
    /// Leaving a compiled trace (exit to the interpreter).
    TraceExit,
    /// Recording a trace.
    TraceRecord,
    /// Optimizing a trace.
    TraceOptimize,
    /// Assembling a trace.
    TraceAssemble,
    /// Not known (no VM found, or a value nflame does not know).
    #[default]
    Unknown,
}

impl LuaVmState {
    /// Every state, in the order summaries list them.
    pub const ALL: [LuaVmState; 9] = [
        LuaVmState::Interpreted,
        LuaVmState::Compiled,
        LuaVmState::C,
        LuaVmState::Gc,
        LuaVmState::TraceExit,
        LuaVmState::TraceRecord,
        LuaVmState::TraceOptimize,
        LuaVmState::TraceAssemble,
        LuaVmState::Unknown,
    ];

    /// A short name for summaries and reports: `interpreted`, `compiled`,
    /// `C`, `GC`, `trace exit`, `trace recording`, `trace optimizing`,
    /// `trace assembling`, `unknown`.
    pub fn label(self) -> &'static str {
        match self {
            LuaVmState::Interpreted => "interpreted",
            LuaVmState::Compiled => "compiled",
            LuaVmState::C => "C",
            LuaVmState::Gc => "GC",
            LuaVmState::TraceExit => "trace exit",
            LuaVmState::TraceRecord => "trace recording",
            LuaVmState::TraceOptimize => "trace optimizing",
            LuaVmState::TraceAssemble => "trace assembling",
            LuaVmState::Unknown => "unknown",
        }
    }
}

/// LuaJIT in one process, as the recorder found it (Lua frames on).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LuaProcess {
    /// The build and where it was found:
    /// `OpenResty luajit2 in /usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0`.
    pub build: String,
    /// Why this process's Lua frames are off (a build nflame cannot read),
    /// said once; `None` when they are on.
    pub off: Option<String>,
    /// The VM's native code at run time (the interpreter, its FFI call
    /// helper), sorted. Native frames here, and in anonymous executable
    /// memory (compiled traces), are the VM's: the symbolizer puts the Lua
    /// frames in their place.
    pub vm_code: Vec<std::ops::Range<u64>>,
    /// Samples with a Lua stack per VM state (the VM's own view, as
    /// `G->vmstate` said at each sample).
    pub states: BTreeMap<LuaVmState, u64>,
    /// Samples taken in LuaJIT code (interpreted or compiled).
    pub in_lua_code: u64,
    /// Of those, the samples whose Lua stack was read completely down to a
    /// main chunk (the entry chunk: a script, OpenResty's
    /// `=content_by_lua(…)`).
    pub reached_entry: u64,
}

/// One executable file mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// Offset in the file of the byte mapped at `start`.
    pub offset: u64,
    /// Path of the mapped file as the kernel names it: may be a pseudo path
    /// such as `[vdso]`, `//anon` for anonymous executable memory (JIT code),
    /// or a path inside the process's mount namespace.
    pub path: PathBuf,
    /// Device number (`makedev(major, minor)`) of the file, when known.
    pub dev: Option<u64>,
    /// Inode of the file, when known.
    pub inode: Option<u64>,
}

/// What is known about one process seen during the recording.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Command name (`comm`, at most 15 bytes) — the latest one seen.
    pub comm: String,
    /// Executable path (`/proc/PID/exe` at attach, or the first executable
    /// mapping after an `exec`), when known.
    pub exe: Option<PathBuf>,
    /// Executable mappings, sorted by start address, not overlapping: read
    /// from `/proc/PID/maps` when the process is first seen, then updated by
    /// MMAP2 records. After an `exec`, the mappings of the old image are
    /// dropped (samples taken before the `exec` are then unlikely to resolve).
    pub mappings: Vec<Mapping>,
    /// Thread id → thread name, for every thread seen.
    pub threads: BTreeMap<u32, String>,
    /// The process exited before the recording ended.
    pub exited: bool,
    /// How its user stacks were unwound; [`UnwindStats::method`] is the
    /// choice [`CallGraph::Auto`] made for it.
    pub unwind: UnwindStats,
    /// Thread id → how the thread spent the recording, when off-CPU time
    /// was recorded (empty otherwise).
    pub times: BTreeMap<u32, ThreadTimes>,
    /// LuaJIT found in it (with Lua frames on); `None` otherwise.
    pub lua: Option<LuaProcess>,
}

/// How user stacks were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnwindMethod {
    /// The kernel's frame-pointer chain.
    FramePointer,
    /// DWARF call-frame information applied to the copied user stack.
    Dwarf,
}

impl UnwindMethod {
    /// `fp` or `dwarf`, as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            UnwindMethod::FramePointer => "fp",
            UnwindMethod::Dwarf => "dwarf",
        }
    }
}

/// Per-process counts of how user stacks were unwound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnwindStats {
    /// Samples whose user stack came from DWARF unwinding.
    pub dwarf: u64,
    /// Samples whose user stack is the kernel's frame-pointer chain.
    pub frame_pointer: u64,
    /// DWARF-unwound samples that reached the outermost frame (the unwinder
    /// found the end of the stack).
    pub complete: u64,
    /// Samples whose user stack was cut short (see [`RawSample::user_truncated`]).
    pub truncated: u64,
}

impl UnwindStats {
    /// The method used for most of the samples, `None` without user stacks.
    pub fn method(&self) -> Option<UnwindMethod> {
        match (self.dwarf, self.frame_pointer) {
            (0, 0) => None,
            (d, f) if d >= f => Some(UnwindMethod::Dwarf),
            _ => Some(UnwindMethod::FramePointer),
        }
    }

    /// Adds another process's (or thread's) counts.
    pub fn add(&mut self, other: &UnwindStats) {
        self.dwarf += other.dwarf;
        self.frame_pointer += other.frame_pointer;
        self.complete += other.complete;
        self.truncated += other.truncated;
    }
}

/// What `nflame_sampler::record()` returns: complete and valid however the recording ended.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Samples, one entry per distinct (pid, tid, kind, kernel stack, user stack),
    /// in the order of their first occurrence. [`Recording::sample_count`]
    /// is the number of samples.
    pub samples: Vec<RawSample>,
    /// Processes by pid: every target (explicit pids and their descendants,
    /// name matches, the command) even without samples, and every other
    /// process that has samples (system-wide recording).
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// The perf event that was sampled: `"cycles"` or `"cpu-clock"`
    /// (`"context-switches"` when only off-CPU time was recorded).
    pub event: String,
    /// Requested sampling frequency, in Hz.
    pub frequency: u64,
    /// Wall-clock duration of the recording.
    pub duration: Duration,
    /// Samples the kernel reported as lost (ring buffer full), from LOST records.
    pub lost: u64,
    /// Number of LOST records (overflow episodes).
    pub lost_records: u64,
    /// Kernel frames were recorded.
    pub kernel: bool,
    /// User frames were recorded.
    pub user: bool,
    /// Why the recording ended.
    pub stop_reason: StopReason,
    /// Times the kernel throttled sampling (`perf_cpu_time_max_percent`).
    pub throttled: u64,
    /// Exit status of a recorded command (exit code, or 128 + signal number),
    /// when the target was a command and it ended.
    pub command_status: Option<i32>,
    /// Things the user should know, e.g. "kernel frames excluded: …".
    pub notes: Vec<String>,
    /// What was refused while recording, one line each (`PATH (pid N): why`):
    /// a target's file or section nflame does not read (over a cap, not a
    /// regular file, outside the target's root). Recording went on without it.
    pub skipped: Vec<String>,
    /// How user stacks were requested (see [`ProcessInfo::unwind`] for what
    /// each process got).
    pub call_graph: CallGraph,
    /// Bytes of user stack the kernel copied per sample (0 for frame pointers).
    pub stack_bytes: u32,
    /// What was measured. With [`Measure::OffCpu`], [`Recording::event`] is
    /// `context-switches` and [`Recording::frequency`] the cap on stacks
    /// taken per second.
    pub measure: Measure,
    /// How off-CPU time was recorded (zero unless [`Measure::off_cpu`]).
    pub off_cpu: OffCpuInfo,
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StopReason {
    /// The requested duration elapsed.
    #[default]
    Duration,
    /// The stop flag was set (Ctrl-C, SIGTERM).
    Stopped,
    /// Every target process exited.
    TargetsExited,
}

impl LuaProcess {
    /// Whether `addr` lies in the VM's native code ([`LuaProcess::vm_code`]).
    pub fn is_vm_code(&self, addr: u64) -> bool {
        self.vm_code.iter().any(|r| r.contains(&addr))
    }

    /// Samples with a Lua stack (the sum of [`LuaProcess::states`]).
    pub fn lua_samples(&self) -> u64 {
        self.states.values().sum()
    }
}

impl ProcessInfo {
    /// The executable mapping containing `addr`, if any.
    pub fn mapping_for(&self, addr: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }
}

impl Recording {
    /// Number of samples recorded (the sum of [`RawSample::count`]).
    pub fn sample_count(&self) -> u64 {
        self.samples.iter().map(|s| s.count).sum()
    }

    /// Total weight (sum of periods) of all samples.
    pub fn total_period(&self) -> u64 {
        self.samples.iter().map(|s| s.period).sum()
    }
}

/// How user-space stacks are collected.
///
/// Kernel stacks always come from the kernel's own call chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CallGraph {
    /// The kernel walks the frame-pointer chain (`perf record -g`). Cheapest,
    /// but code built without frame pointers (most distribution binaries:
    /// nginx, libc, LuaJIT) yields short or garbage stacks.
    FramePointer,
    /// The kernel copies `stack_bytes` of the user stack (from the stack
    /// pointer up) and the registers with each sample, and nflame unwinds them
    /// with the binaries' DWARF call-frame information (`.eh_frame`,
    /// `.debug_frame`) during the recording (`perf record --call-graph
    /// dwarf`). Frames without call-frame information are walked by frame
    /// pointer. `stack_bytes` is rounded down to a multiple of 8 and capped
    /// at 65 528 (the kernel's limit).
    Dwarf {
        /// Bytes of user stack copied per sample.
        stack_bytes: u32,
    },
    /// Both: every sample is unwound with DWARF call-frame information
    /// ([`DEFAULT_STACK_BYTES`] copied), and the frame-pointer chain is kept
    /// instead when it reaches further. What was chosen for each process is in
    /// [`ProcessInfo::unwind`]. The default.
    #[default]
    Auto,
}

/// User-stack bytes copied per sample by [`CallGraph::Auto`] (and
/// `--call-graph dwarf`): 8 KiB, `perf record --call-graph dwarf`'s default.
/// Measured on nginx + Lua workers under wrk (`scripts/bench-dwarf.sh`): 4,
/// 8, 16 and 32 KiB all complete 99.9% of their stacks, since event-loop
/// stacks are shallow, and the recorder's CPU grows with the copy (16 KiB
/// costs about twice 4 KiB: the kernel copies it, the ring carries it, the
/// recorder moves it). Programs with deeper stacks can ask for more with
/// `--call-graph dwarf,BYTES`; stacks cut short by the copy are marked
/// `[truncated]`, and under `auto` a longer frame-pointer chain wins.
pub const DEFAULT_STACK_BYTES: u32 = 8 * 1024;

/// Largest user-stack copy the kernel accepts (the record size is 16 bits).
pub const MAX_STACK_BYTES: u32 = 65_528;

impl CallGraph {
    /// Bytes of user stack to copy per sample (0 for frame pointers).
    pub fn stack_bytes(&self) -> u32 {
        match *self {
            CallGraph::FramePointer => 0,
            CallGraph::Dwarf { stack_bytes } => (stack_bytes.min(MAX_STACK_BYTES)) & !7,
            CallGraph::Auto => DEFAULT_STACK_BYTES,
        }
    }

    /// The frame-pointer chain is requested from the kernel.
    pub fn wants_frame_pointers(&self) -> bool {
        !matches!(self, CallGraph::Dwarf { .. })
    }

    /// The name used on command lines: `fp`, `dwarf` or `auto`.
    pub fn name(&self) -> &'static str {
        match self {
            CallGraph::FramePointer => "fp",
            CallGraph::Dwarf { .. } => "dwarf",
            CallGraph::Auto => "auto",
        }
    }
}

/// A call-graph name that is none of `fp`, `dwarf`, `dwarf,BYTES` or `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown call graph `{0}`: expected fp, dwarf, dwarf,BYTES (8..=65528) or auto")]
pub struct ParseCallGraphError(pub String);

impl std::str::FromStr for CallGraph {
    type Err = ParseCallGraphError;

    /// `fp`, `dwarf`, `dwarf,BYTES` (as perf spells it) or `auto`.
    fn from_str(s: &str) -> Result<Self, ParseCallGraphError> {
        match s {
            "fp" => Ok(CallGraph::FramePointer),
            "auto" => Ok(CallGraph::Auto),
            "dwarf" => Ok(CallGraph::Dwarf {
                stack_bytes: DEFAULT_STACK_BYTES,
            }),
            _ => {
                let size = s
                    .strip_prefix("dwarf,")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| (8..=MAX_STACK_BYTES).contains(&n));
                match size {
                    Some(stack_bytes) => Ok(CallGraph::Dwarf { stack_bytes }),
                    None => Err(ParseCallGraphError(s.to_string())),
                }
            }
        }
    }
}
