//! [`fold`]: a whole recording to a folded profile.
//!
//! Stages: group samples by process and collect each process's distinct
//! lookup addresses (and the distinct kernel addresses of the whole
//! recording); decide per process where each address is looked up (file and
//! offset, vDSO, JIT map); symbolize each distinct *file* once with the
//! offsets of every process that maps it (nginx workers share one libc),
//! files in parallel with rayon, one [`SymbolCache`] per rayon task, while
//! the kernel addresses are named from kallsyms (loaded ahead of time by
//! [`crate::warm_up`] when the caller could); then merge samples with
//! identical stacks (the sampler interns stacks, so this is a pointer
//! comparison) and write each distinct stack once into a [`Profile`].
//! [`IncrementalFold`] does this part by part (the processes that exited
//! while recording, then the rest) and merges the parts' profiles and
//! statistics; [`fold_with`] is its one-part case.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use nflame_profile::{Profile, Unit};
use nflame_recording::{
    LuaFrame, LuaProcess, LuaVmState, Mapping, ProcessInfo, RawSample, Recording, SampleKind,
};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::frame::{sanitize, Frame, FrameKind};
use crate::kernel::{symbolize_kernel_addrs, KernelSymbolizer};
use crate::perf_map::PerfMap;
use crate::prepare::Prepared;
use crate::process::{
    lookup_addr, symbolize_file, symbolize_vdso, FileId, ModuleFailure, OpenFiles, Planned,
    ProcessSymbolizer, SymbolCache, SymbolizeOptions,
};
use crate::target::Opened;
use crate::Error;

/// What a stack's count measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Weight {
    /// Number of samples (FlameGraph's classic count). The default.
    #[default]
    Samples,
    /// Sum of sample periods: nanoseconds for `cpu-clock`, cycles for
    /// `cycles` (what `perf report` and `inferno-collapse-perf` weigh by).
    Period,
    /// Time in microseconds (a profile of [`Unit::Microseconds`]): each
    /// stack's nanoseconds (off-CPU time, `cpu-clock` periods on the CPU)
    /// summed, then rounded to the nearest microsecond.
    Time,
}

/// The frame [`FoldOptions::kind_frames`] puts in stacks of `kind`:
/// `[on-cpu]`, `[blocked]` or `[preempted]`.
pub fn kind_frame(kind: SampleKind) -> &'static str {
    match kind {
        SampleKind::Blocked => "[blocked]",
        SampleKind::Preempted => "[preempted]",
        _ => "[on-cpu]",
    }
}

/// How [`fold`] builds stacks.
///
/// The root frame is the process name (`comm`), then user frames root → leaf,
/// then kernel frames root → leaf with `_[k]` (a system call shows under the
/// user function that made it, as `perf script | stackcollapse-perf.pl --all`
/// shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoldOptions {
    /// Write the process frame as `comm-PID` instead of `comm`, so each
    /// process gets its own tower. Default `false`.
    pub per_pid: bool,
    /// Add a thread frame `NAME-TID` after the process frame (`NAME` is the
    /// thread's name, or the process's when unknown). Default `false`.
    pub per_thread: bool,
    /// Start every stack with the process frame. Default `true`; without it,
    /// stacks start at the outermost user (or kernel) frame.
    pub process_name: bool,
    /// Include kernel frames. Default `true`.
    pub kernel: bool,
    /// Include user frames. Default `true`.
    pub user: bool,
    /// Expand inlined functions into frames of their own. Default `false`.
    pub inline: bool,
    /// Name JIT code from perf maps (`/tmp/perf-PID.map`), with `_[j]`.
    /// Default `true`.
    pub jit: bool,
    /// What the counts measure. Default [`Weight::Samples`].
    pub weight: Weight,
    /// Put a frame naming how the time was spent, `[on-cpu]`, `[blocked]`
    /// or `[preempted]` ([`kind_frame`]), after the process (and thread)
    /// frame, so off-CPU and wall-clock graphs split each thread's time by
    /// kind at a glance. Default `false`.
    pub kind_frames: bool,
    /// Root frames by pid, and which stacks of other processes are kept.
    /// Default: no labels, every stack kept.
    pub roots: Roots,
    /// Fold a run of consecutive `[unknown]` frames (user `[unknown]`, or
    /// kernel `[unknown]_[k]`) into one, as `nflame collapse` does: a
    /// frame-pointer walk through code built without frame pointers
    /// otherwise draws towers of them. Default `true`.
    pub fold_unknown_runs: bool,
    /// What becomes of the Lua stacks of LuaJIT processes
    /// ([`RawSample::lua`]). Default [`LuaFold::Mixed`].
    pub lua: LuaFold,
}

/// How [`fold`] writes the Lua stacks recorded with samples of LuaJIT
/// processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LuaFold {
    /// Mixed stacks: the C frames from the root to where the VM was entered
    /// (`ngx_http_lua_run_thread;lua_resume`, `lua_pcall`), the Lua frames
    /// outermost first in place of the VM's native frames (the interpreter,
    /// `lj_vm_*`, compiled traces), then what the Lua code called (C
    /// functions, FFI calls, LuaJIT's helpers), then kernel frames. The
    /// default.
    #[default]
    Mixed,
    /// Lua-land stacks only: the process frame, then the Lua frames (and the
    /// C functions in the Lua stack); samples without Lua frames are left out
    /// (counted in [`FoldStats::dropped_samples`]).
    Only,
    /// C-level stacks, as if no Lua stack had been recorded.
    Off,
}

/// Frames put at the root of chosen processes' stacks, and what becomes of
/// the stacks of every other process (Docker targets use both: role labels
/// such as `[docker-proxy :8080]` for the chosen pids, and only the network
/// softirq part of other tasks' stacks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Roots {
    /// A frame put above the process frame of every stack of these
    /// processes, by pid. Default: none.
    pub labels: BTreeMap<u32, String>,
    /// What becomes of the stacks of processes without a label. Default
    /// [`OtherStacks::Keep`].
    pub others: OtherStacks,
}

/// What [`Roots`] does with the stacks of processes without a label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtherStacks {
    /// Kept as they are. The default.
    #[default]
    Keep,
    /// Only the kernel part from the outermost frame whose function is one
    /// of `functions` on is kept, as `label;process;function_[k];…`; stacks
    /// without such a frame are dropped (and counted in
    /// [`FoldStats::dropped_samples`]). Their user frames are not symbolized.
    KernelFrom {
        /// Kernel function names (without `_[k]`).
        functions: Vec<String>,
        /// The root frame of the kept parts.
        label: String,
    },
}

impl Roots {
    /// Whether user frames of `pid` are wanted at all.
    fn wants_user(&self, pid: u32) -> bool {
        matches!(self.others, OtherStacks::Keep) || self.labels.contains_key(&pid)
    }
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            per_pid: false,
            per_thread: false,
            process_name: true,
            kernel: true,
            user: true,
            inline: false,
            jit: true,
            weight: Weight::Samples,
            kind_frames: false,
            roots: Roots::default(),
            fold_unknown_runs: true,
            lua: LuaFold::Mixed,
        }
    }
}

impl FoldOptions {
    fn symbolize_options(&self) -> SymbolizeOptions {
        SymbolizeOptions {
            inline: self.inline,
            jit: self.jit,
            ..SymbolizeOptions::default()
        }
    }
}

/// What [`fold`] did. Frame counts are per sample (a frame in 100 samples
/// counts 100 times), before inlined frames are expanded.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FoldStats {
    /// Samples folded.
    pub samples: u64,
    /// Processes that had samples.
    pub processes: u64,
    /// Frames (user + kernel addresses) in the folded samples.
    pub frames: u64,
    /// Frames that got a symbol name (not `[module]` / `[unknown]`).
    pub named_frames: u64,
    /// User frames.
    pub user_frames: u64,
    /// User frames that got a name.
    pub named_user_frames: u64,
    /// Kernel frames.
    pub kernel_frames: u64,
    /// Kernel frames that got a name.
    pub named_kernel_frames: u64,
    /// Distinct addresses looked up (per process for user addresses).
    pub unique_addresses: u64,
    /// Modules that could not be read (each path once).
    pub failed_modules: Vec<ModuleFailure>,
    /// What was refused, one line each (`PATH (pid N): why`): target files
    /// and sections nflame does not read (outside the target's root, not a
    /// regular file, over a cap, a lying compressed section, a perf map of
    /// the wrong owner, …; see `nflame_symbolizer`'s crate docs). The
    /// recording goes on without them.
    pub skipped: Vec<String>,
    /// Why kernel frames are unnamed, if kernel symbols were unavailable.
    pub kernel_error: Option<String>,
    /// Samples whose user stack was cut short and rooted at `[truncated]`
    /// (the frames dropped are not counted in `frames`).
    pub truncated_stacks: u64,
    /// Samples with user frames whose user stack reached the outermost
    /// frame of a thread: a process or thread start function (`_start`,
    /// `__libc_start_main`, `__libc_start_call_main`, `start_thread`,
    /// `clone`/`clone3`, `main`, Go's `runtime.goexit`, `runtime.mstart`,
    /// `runtime.rt0_go`).
    pub complete_user_stacks: u64,
    /// Samples with at least one user frame.
    pub user_stacks: u64,
    /// Samples whose stacks [`Roots::others`] or [`LuaFold::Only`] dropped
    /// (included in `samples`).
    pub dropped_samples: u64,
    /// Samples whose stack carries Lua frames.
    pub lua_stacks: u64,
    /// Samples of LuaJIT processes in the VM's native code without a Lua
    /// stack (its frames are written as `[lua: no stack]_[l]`).
    pub lua_missing: u64,
    /// Samples of LuaJIT processes whose Lua frames were left out: the C
    /// stack was complete yet showed no VM frame to put them in place of
    /// (never guessed).
    pub lua_unplaced: u64,
}

impl FoldStats {
    /// Share of frames that got a name, 0.0 ..= 1.0 (1.0 with no frames).
    pub fn named_share(&self) -> f64 {
        share(self.named_frames, self.frames)
    }

    /// Share of user frames that got a name.
    pub fn named_user_share(&self) -> f64 {
        share(self.named_user_frames, self.user_frames)
    }

    /// Share of kernel frames that got a name.
    pub fn named_kernel_share(&self) -> f64 {
        share(self.named_kernel_frames, self.kernel_frames)
    }

    /// Share of user stacks that reach a thread's outermost frame.
    pub fn complete_user_share(&self) -> f64 {
        share(self.complete_user_stacks, self.user_stacks)
    }
}

/// Whether `name` is a function a thread's stack starts in (its outermost
/// frame, or one just above it).
pub fn is_outermost_frame(name: &str) -> bool {
    matches!(
        name,
        "_start"
            | "__libc_start_main"
            | "__libc_start_call_main"
            | "start_thread"
            | "clone"
            | "clone3"
            | "__clone"
            | "__clone3"
            | "main"
            | "runtime.goexit"
            | "runtime.goexit.abi0"
            | "runtime.mstart"
            | "runtime.mstart.abi0"
            | "runtime.rt0_go"
            | "runtime.rt0_go.abi0"
    )
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// A symbolized address.
#[derive(Debug, Clone)]
struct Named {
    /// Folded text (`f;g` when inlined functions are expanded).
    text: String,
    /// It got a name.
    named: bool,
    /// It lies in code: an executable mapping, or JIT code a perf map names
    /// (else a user stack is cut there).
    in_code: bool,
    /// Its outermost function starts a thread ([`is_outermost_frame`]).
    outermost: bool,
    /// It is the native code of a LuaJIT VM (the interpreter, or a compiled
    /// trace in anonymous executable memory) of a process with Lua frames.
    vm: bool,
}

/// Symbolizes and folds every sample of `recording` into a profile.
///
/// Unreadable modules and missing kernel symbols do not fail the fold: those
/// frames become `[module]` / `[unknown]` / `[kernel.kallsyms]` and are
/// reported in [`FoldStats`]. Errors only if the total overflows 64 bits.
///
/// Loads kernel symbols itself; [`fold_with`] reuses a [`crate::warm_up`].
pub fn fold(recording: &Recording, opts: &FoldOptions) -> Result<(Profile, FoldStats), Error> {
    fold_with(recording, opts, &Prepared::default())
}

/// [`fold`] with symbol data loaded ahead of time by [`crate::warm_up`]
/// (typically while the recording ran). Same result as [`fold`].
pub fn fold_with(
    recording: &Recording,
    opts: &FoldOptions,
    prepared: &Prepared,
) -> Result<(Profile, FoldStats), Error> {
    let mut fold = IncrementalFold::new();
    fold.add(recording, opts, prepared)?;
    Ok(fold.finish())
}

/// A recording folded in parts, as its processes exit: each part holds
/// every sample of its processes (none of them appears in another part),
/// is symbolized and folded when it is [added](IncrementalFold::add), and
/// can then be dropped, so what is kept grows with the distinct folded
/// stacks, not with the processes that came and went.
///
/// The parts give the profile and [`FoldStats`] that [`fold_with`] gives for
/// a recording holding them all (it is one part), with two exceptions:
/// [`FoldStats::skipped`] and [`FoldStats::failed_modules`] hold the same
/// lines in another order, and a pid that two parts both hold (a pid the
/// kernel reused during the recording) counts as two processes there, where
/// one recording merges them into one.
#[derive(Debug, Default)]
pub struct IncrementalFold {
    profile: Profile,
    stats: FoldStats,
    /// Distinct kernel lookup addresses of every part.
    kernel_addrs: FxHashSet<u64>,
}

impl IncrementalFold {
    /// Nothing folded yet.
    pub fn new() -> IncrementalFold {
        IncrementalFold::default()
    }

    /// Symbolizes and folds the samples of `part` and adds them. Errors if
    /// a total overflows 64 bits; then nothing more should be added.
    pub fn add(
        &mut self,
        part: &Recording,
        opts: &FoldOptions,
        prepared: &Prepared,
    ) -> Result<(), Error> {
        let (profile, stats, kernel_addrs) = fold_part(part, opts, prepared)?;
        if !self.profile.merge(profile) {
            return Err(Error::Overflow);
        }
        self.kernel_addrs.extend(kernel_addrs);
        // Every field named, so that a new one cannot be left out here.
        let FoldStats {
            samples,
            processes,
            frames,
            named_frames,
            user_frames,
            named_user_frames,
            kernel_frames,
            named_kernel_frames,
            unique_addresses,
            failed_modules,
            skipped,
            kernel_error,
            truncated_stacks,
            complete_user_stacks,
            user_stacks,
            dropped_samples,
            lua_stacks,
            lua_missing,
            lua_unplaced,
        } = stats;
        let s = &mut self.stats;
        s.samples += samples;
        s.processes += processes;
        s.frames += frames;
        s.named_frames += named_frames;
        s.user_frames += user_frames;
        s.named_user_frames += named_user_frames;
        s.kernel_frames += kernel_frames;
        s.named_kernel_frames += named_kernel_frames;
        s.unique_addresses += unique_addresses;
        s.truncated_stacks += truncated_stacks;
        s.complete_user_stacks += complete_user_stacks;
        s.user_stacks += user_stacks;
        s.dropped_samples += dropped_samples;
        s.lua_stacks += lua_stacks;
        s.lua_missing += lua_missing;
        s.lua_unplaced += lua_unplaced;
        if s.kernel_error.is_none() {
            s.kernel_error = kernel_error;
        }
        for f in failed_modules {
            if !s.failed_modules.iter().any(|g| g.path == f.path) {
                s.failed_modules.push(f);
            }
        }
        for line in skipped {
            if !s.skipped.contains(&line) {
                s.skipped.push(line);
            }
        }
        Ok(())
    }

    /// The profile of every part, and what folding them did.
    pub fn finish(self) -> (Profile, FoldStats) {
        let mut stats = self.stats;
        // User addresses count per process (each part has its own
        // processes), kernel addresses once in all.
        stats.unique_addresses += self.kernel_addrs.len() as u64;
        (self.profile, stats)
    }
}

/// Folds one part: its profile, its stats (`unique_addresses` without the
/// kernel's) and its distinct kernel lookup addresses.
fn fold_part(
    recording: &Recording,
    opts: &FoldOptions,
    prepared: &Prepared,
) -> Result<(Profile, FoldStats, Vec<u64>), Error> {
    let mut grouped: BTreeMap<u32, Vec<&RawSample>> = BTreeMap::new();
    for s in &recording.samples {
        grouped.entry(s.pid).or_default().push(s);
    }
    let by_pid: Vec<(u32, Vec<&RawSample>)> = grouped.into_iter().collect();
    let sym_opts = opts.symbolize_options();

    let opened = OpenFiles::default();
    let ((kernel, kernel_error), (plans, files)) = rayon::join(
        || symbolize_kernel(&recording.samples, opts, prepared),
        || {
            let plans: Vec<UserPlan> = by_pid
                .par_iter()
                .map_init(
                    || Rc::new(SymbolCache::new(&sym_opts)),
                    |cache, (pid, samples)| {
                        let info = recording.processes.get(pid);
                        plan_user(cache, &opened, info, *pid, samples, opts)
                    },
                )
                .collect();
            let files = symbolize_files(&plans, &sym_opts);
            (plans, files)
        },
    );

    let mut stats = FoldStats {
        processes: by_pid.len() as u64,
        kernel_error,
        ..FoldStats::default()
    };
    let failures = plans
        .iter()
        .flat_map(|p| &p.failures)
        .chain(files.values().filter_map(|f| f.failure.as_ref()));
    for f in failures {
        if !stats.failed_modules.iter().any(|g| g.path == f.path) {
            stats.failed_modules.push(f.clone());
        }
    }
    let mut skipped: Vec<String> = Vec::new();

    let parts: Vec<Result<(Profile, FoldStats, u64), Error>> = by_pid
        .par_iter()
        .zip(plans.par_iter())
        .map(|((pid, samples), plan)| {
            let info = recording.processes.get(pid);
            let (user, skips) = resolve_user(info, plan, &files, opts);
            let unique = user.len() as u64;
            fold_process(info, *pid, samples, &user, &kernel, opts).map(|(p, mut s)| {
                s.skipped = skips;
                (p, s, unique)
            })
        })
        .collect();
    let skips = plans
        .iter()
        .flat_map(|p| &p.skipped)
        .chain(files.values().flat_map(|f| &f.skipped));
    for line in skips {
        if !skipped.contains(line) {
            skipped.push(line.clone());
        }
    }
    let mut profile = Profile::with_unit(unit_of(opts.weight));
    for part in parts {
        let (p, s, unique) = part?;
        for line in s.skipped {
            if !skipped.contains(&line) {
                skipped.push(line);
            }
        }
        if !profile.merge(p) {
            return Err(Error::Overflow);
        }
        stats.unique_addresses += unique;
        stats.samples += s.samples;
        stats.frames += s.frames;
        stats.named_frames += s.named_frames;
        stats.user_frames += s.user_frames;
        stats.named_user_frames += s.named_user_frames;
        stats.kernel_frames += s.kernel_frames;
        stats.named_kernel_frames += s.named_kernel_frames;
        stats.truncated_stacks += s.truncated_stacks;
        stats.complete_user_stacks += s.complete_user_stacks;
        stats.user_stacks += s.user_stacks;
        stats.dropped_samples += s.dropped_samples;
        stats.lua_stacks += s.lua_stacks;
        stats.lua_unplaced += s.lua_unplaced;
        stats.lua_missing += s.lua_missing;
    }
    stats.skipped = skipped;
    Ok((profile, stats, kernel.into_keys().collect()))
}

/// Identity of an interned stack half: its address and length (0, 0 when
/// the half is excluded).
fn half_key(half: &Arc<[u64]>, include: bool) -> (usize, usize) {
    if include {
        (Arc::as_ptr(half) as *const u64 as usize, half.len())
    } else {
        (0, 0)
    }
}

/// Calls `f` with every stack half once per distinct interned slice.
fn for_each_distinct<'a>(
    halves: impl Iterator<Item = &'a Arc<[u64]>>,
    mut f: impl FnMut(&'a [u64]),
) {
    let mut seen: FxHashSet<(usize, usize)> = FxHashSet::default();
    for half in halves {
        if !half.is_empty() && seen.insert(half_key(half, true)) {
            f(half);
        }
    }
}

fn folded_frames(frames: &[Frame]) -> Named {
    let named = frames.iter().any(|f| f.named);
    let text = frames
        .iter()
        .map(Frame::folded_name)
        .collect::<Vec<_>>()
        .join(";");
    let outermost = frames
        .first()
        .is_some_and(|f| f.named && is_outermost_frame(&f.name));
    Named {
        text,
        named,
        in_code: true,
        outermost,
        vm: false,
    }
}

fn symbolize_kernel(
    samples: &[RawSample],
    opts: &FoldOptions,
    prepared: &Prepared,
) -> (FxHashMap<u64, Named>, Option<String>) {
    let mut lookups: FxHashSet<u64> = FxHashSet::default();
    if opts.kernel {
        for_each_distinct(samples.iter().map(|s| &s.kernel), |stack| {
            lookups.extend(stack.iter().enumerate().map(|(i, &a)| lookup_addr(i, a)));
        });
    }
    if lookups.is_empty() {
        return (FxHashMap::default(), None);
    }
    let mut addrs: Vec<u64> = lookups.into_iter().collect();
    addrs.sort_unstable();
    let (frames, error) = match symbolize_kernel_addrs(prepared.kallsyms(), &addrs) {
        Ok(frames) => (frames, None),
        Err(e) => {
            let frame = KernelSymbolizer::unavailable_frame();
            (vec![frame; addrs.len()], Some(error_chain(&e)))
        }
    };
    let map = addrs
        .into_iter()
        .zip(frames)
        .map(|(a, f)| (a, folded_frames(std::slice::from_ref(&f))))
        .collect();
    (map, error)
}

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

/// One process's distinct user lookup addresses and where each is looked up.
struct UserPlan {
    pid: u32,
    live: bool,
    /// Sorted, distinct.
    addrs: Vec<u64>,
    /// Per address.
    planned: Vec<Planned>,
    failures: Vec<ModuleFailure>,
    skipped: Vec<String>,
}

fn plan_user(
    cache: &Rc<SymbolCache>,
    opened: &OpenFiles,
    info: Option<&ProcessInfo>,
    pid: u32,
    samples: &[&RawSample],
    opts: &FoldOptions,
) -> UserPlan {
    let mut lookups: FxHashSet<u64> = FxHashSet::default();
    if opts.user && opts.roots.wants_user(pid) {
        for_each_distinct(samples.iter().map(|s| &s.user), |stack| {
            lookups.extend(stack.iter().enumerate().map(|(i, &a)| lookup_addr(i, a)));
        });
        if opts.lua != LuaFold::Off {
            // C functions called from Lua: function addresses, looked up as they are.
            let mut seen: FxHashSet<usize> = FxHashSet::default();
            for l in samples.iter().filter_map(|s| s.lua.as_ref()) {
                if seen.insert(Arc::as_ptr(l) as usize) {
                    lookups.extend(l.frames.iter().filter_map(|f| match f {
                        LuaFrame::C(a) => Some(*a),
                        LuaFrame::Named(_) => None,
                    }));
                }
            }
        }
    }
    if lookups.is_empty() {
        return UserPlan {
            pid,
            live: false,
            addrs: Vec::new(),
            planned: Vec::new(),
            failures: Vec::new(),
            skipped: Vec::new(),
        };
    }
    let mut addrs: Vec<u64> = lookups.into_iter().collect();
    addrs.sort_unstable();
    let mut sym = match info {
        Some(info) => ProcessSymbolizer::for_process(Rc::clone(cache), info),
        None => {
            let info = ProcessInfo {
                pid,
                ..ProcessInfo::default()
            };
            ProcessSymbolizer::for_process(Rc::clone(cache), &info)
        }
    };
    sym.share_files(opened);
    let planned = sym.plan(&addrs);
    UserPlan {
        pid,
        live: sym.live(),
        addrs,
        planned,
        failures: sym.failures().to_vec(),
        skipped: sym.skipped().to_vec(),
    }
}

/// What a file (or the vDSO) is symbolized as, for every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileKey {
    File(FileId),
    Vdso,
}

/// One file's lookups, gathered from every process that maps it.
struct FileJob {
    file: Option<Arc<Opened>>,
    offsets: Vec<u64>,
}

/// Names of one file's offsets.
struct FileNames {
    /// Sorted, distinct.
    offsets: Vec<u64>,
    /// Per offset; `None`: unnamed (the module placeholder).
    frames: Vec<Option<Vec<Frame>>>,
    failure: Option<ModuleFailure>,
    skipped: Vec<String>,
}

impl FileNames {
    fn get(&self, offset: u64) -> Option<&[Frame]> {
        let i = self.offsets.binary_search(&offset).ok()?;
        self.frames[i].as_deref()
    }
}

/// Symbolizes every file the plans need, each once, files in parallel.
fn symbolize_files(plans: &[UserPlan], opts: &SymbolizeOptions) -> FxHashMap<FileKey, FileNames> {
    let mut jobs: FxHashMap<FileKey, FileJob> = FxHashMap::default();
    let job = |file: Option<Arc<Opened>>| FileJob {
        file,
        offsets: Vec::new(),
    };
    for plan in plans {
        for p in &plan.planned {
            match p {
                Planned::File { file, offset, .. } => {
                    jobs.entry(FileKey::File(file.id()))
                        .or_insert_with(|| job(Some(Arc::clone(file))))
                        .offsets
                        .push(*offset);
                }
                Planned::Vdso(offset) => {
                    jobs.entry(FileKey::Vdso)
                        .or_insert_with(|| job(None))
                        .offsets
                        .push(*offset);
                }
                Planned::Jit | Planned::Done(_) => {}
            }
        }
    }
    let mut jobs: Vec<(FileKey, FileJob)> = jobs.into_iter().collect();
    for (_, job) in &mut jobs {
        job.offsets.sort_unstable();
        job.offsets.dedup();
    }
    // Largest first, so the big libraries do not end up last on one thread.
    jobs.sort_by_key(|(_, job)| std::cmp::Reverse(job.offsets.len()));
    jobs.into_par_iter()
        .map_init(
            || SymbolCache::new(opts),
            |cache, (key, job)| {
                let names = match job.file {
                    None => FileNames {
                        frames: symbolize_vdso(cache, &job.offsets)
                            .into_iter()
                            .map(Some)
                            .collect(),
                        offsets: job.offsets,
                        failure: None,
                        skipped: Vec::new(),
                    },
                    Some(file) => symbolize_job(cache, &file, job.offsets),
                };
                (key, names)
            },
        )
        .collect()
}

/// Symbolizes one file.
fn symbolize_job(cache: &SymbolCache, file: &Arc<Opened>, offsets: Vec<u64>) -> FileNames {
    let mut skipped = Vec::new();
    match symbolize_file(cache, file, &offsets, &mut skipped) {
        Ok(frames) => FileNames {
            offsets,
            frames,
            failure: None,
            skipped,
        },
        Err(reason) => FileNames {
            frames: vec![None; offsets.len()],
            offsets,
            failure: reason.map(|reason| ModuleFailure {
                path: file.module.clone(),
                reason,
            }),
            skipped,
        },
    }
}

/// One process's user addresses with their names.
fn resolve_user(
    info: Option<&ProcessInfo>,
    plan: &UserPlan,
    files: &FxHashMap<FileKey, FileNames>,
    opts: &FoldOptions,
) -> (FxHashMap<u64, Named>, Vec<String>) {
    let mut skips = Vec::new();
    // Without recorded mappings nothing is known to lie outside code.
    let mappings = info.map(|i| i.mappings.as_slice()).unwrap_or_default();
    let lua = lua_of(info, opts);
    let mut perf_map: Option<Option<PerfMap>> = None;
    let mut out = FxHashMap::with_capacity_and_hasher(plan.addrs.len(), Default::default());
    for (&a, p) in plan.addrs.iter().zip(&plan.planned) {
        let looked_up;
        let frames: &[Frame] = match p {
            Planned::Done(frame) => std::slice::from_ref(frame),
            Planned::File {
                file,
                module,
                offset,
            } => match files
                .get(&FileKey::File(file.id()))
                .and_then(|f| f.get(*offset))
            {
                Some(frames) => frames,
                None => {
                    looked_up = Frame::in_module(module, FrameKind::User);
                    std::slice::from_ref(&looked_up)
                }
            },
            Planned::Vdso(offset) => match files.get(&FileKey::Vdso).and_then(|f| f.get(*offset)) {
                Some(frames) => frames,
                None => {
                    looked_up = Frame::unnamed("[vdso]", FrameKind::User);
                    std::slice::from_ref(&looked_up)
                }
            },
            Planned::Jit => {
                let name = if opts.jit {
                    perf_map
                        .get_or_insert_with(|| {
                            PerfMap::for_process(plan.pid, plan.live, &mut skips)
                        })
                        .as_ref()
                        .and_then(|m| m.find(a))
                } else {
                    None
                };
                looked_up = match name {
                    Some(name) => Frame::named(name, FrameKind::Jit),
                    None => Frame::unknown(FrameKind::User),
                };
                std::slice::from_ref(&looked_up)
            }
        };
        let mut named = folded_frames(frames);
        let jit = frames.iter().any(|f| f.kind == FrameKind::Jit);
        named.in_code = mappings.is_empty() || jit || in_mappings(mappings, a);
        named.vm = lua.is_some_and(|l| l.is_vm_code(a) || matches!(p, Planned::Jit));
        out.insert(a, named);
    }
    (out, skips)
}

fn in_mappings(mappings: &[Mapping], addr: u64) -> bool {
    let i = mappings.partition_point(|m| m.start <= addr);
    i.checked_sub(1).is_some_and(|i| addr < mappings[i].end)
}

/// The unit of a profile folded with `weight`.
fn unit_of(weight: Weight) -> Unit {
    match weight {
        Weight::Time => Unit::Microseconds,
        _ => Unit::Samples,
    }
}

/// The LuaJIT of a process whose Lua frames are to be written.
fn lua_of<'a>(info: Option<&'a ProcessInfo>, opts: &FoldOptions) -> Option<&'a LuaProcess> {
    if opts.lua == LuaFold::Off {
        return None;
    }
    info.and_then(|i| i.lua.as_ref())
}

/// Where a sample's Lua frames go in its C stack (root first): the C frames
/// before the first native VM frame (where the VM was entered) and those
/// after the last (what the Lua code called). Without a VM frame, a
/// truncated stack, or one that stops short of its thread's start, gives
/// the Lua frames at its cut (all its frames were called from Lua); a
/// complete one gives `None`: its Lua frames are left out rather than put in
/// a guessed place.
fn splice<'n, 'a>(
    root_first: &'n [&'a Named],
    truncated: bool,
) -> Option<(&'n [&'a Named], &'n [&'a Named])> {
    match (
        root_first.iter().position(|n| n.vm),
        root_first.iter().rposition(|n| n.vm),
    ) {
        (Some(first), Some(last)) => Some((&root_first[..first], &root_first[last + 1..])),
        _ if truncated => Some((&root_first[..0], root_first)),
        _ => None,
    }
}

/// A Lua frame's folded text: as recorded, or a C function's name.
fn lua_frame_text(f: &LuaFrame, user: &FxHashMap<u64, Named>, unknown: &Named) -> String {
    match f {
        // Names read from the target's memory: made safe like every name.
        LuaFrame::Named(t) => sanitize(t).into_owned(),
        LuaFrame::C(a) => user.get(a).unwrap_or(unknown).text.clone(),
    }
}

/// The frame saying what the VM did instead of running Lua code.
fn state_frame(state: LuaVmState) -> Option<&'static str> {
    use nflame_profile::lua;
    match state {
        LuaVmState::Gc => Some(lua::GC_FRAME),
        LuaVmState::TraceExit => Some(lua::TRACE_EXIT_FRAME),
        LuaVmState::TraceRecord => Some(lua::TRACE_RECORD_FRAME),
        LuaVmState::TraceOptimize => Some(lua::TRACE_OPTIMIZE_FRAME),
        LuaVmState::TraceAssemble => Some(lua::TRACE_ASSEMBLE_FRAME),
        _ => None,
    }
}

/// The process frame's text: its name cleaned ([`sanitize`]), else its
/// executable's, else `pid N`.
fn process_label(info: Option<&ProcessInfo>, pid: u32) -> String {
    let clean = |name: &str| {
        let s = sanitize(name);
        (s != crate::frame::UNKNOWN).then(|| s.into_owned())
    };
    let comm = info.and_then(|i| clean(&i.comm));
    let exe_name = info
        .and_then(|i| i.exe.as_deref())
        .and_then(|e| e.file_name())
        .and_then(|n| clean(&n.to_string_lossy()));
    match (comm, exe_name) {
        (Some(c), _) => c,
        (None, Some(e)) => e,
        (None, None) if pid == 0 => "swapper".to_owned(),
        (None, None) => format!("pid {pid}"),
    }
}

/// Folds the samples of one process, once per distinct stack.
fn fold_process(
    info: Option<&ProcessInfo>,
    pid: u32,
    samples: &[&RawSample],
    user: &FxHashMap<u64, Named>,
    kernel: &FxHashMap<u64, Named>,
    opts: &FoldOptions,
) -> Result<(Profile, FoldStats), Error> {
    type Key = (u32, SampleKind, (usize, usize), bool, (usize, usize), usize);
    let label = opts.roots.labels.get(&pid).map(|l| sanitize(l));
    let kernel_from = match (&opts.roots.others, &label) {
        (OtherStacks::KernelFrom { functions, label }, None) => Some((functions, sanitize(label))),
        _ => None,
    };
    let with_user = opts.user && kernel_from.is_none();
    let mut stacks: FxHashMap<Key, (u64, u64, &RawSample)> = FxHashMap::default();
    for &s in samples {
        let tid = if opts.per_thread && kernel_from.is_none() {
            s.tid
        } else {
            0
        };
        let kind = if opts.kind_frames {
            s.kind
        } else {
            SampleKind::OnCpu
        };
        let key = (
            tid,
            kind,
            half_key(&s.user, with_user),
            with_user && s.user_truncated,
            half_key(&s.kernel, opts.kernel),
            match (&s.lua, with_user && opts.lua != LuaFold::Off) {
                (Some(l), true) => Arc::as_ptr(l) as usize,
                _ => 0,
            },
        );
        let weight = match opts.weight {
            Weight::Samples => s.count,
            Weight::Period | Weight::Time => s.period,
        };
        let e = stacks.entry(key).or_insert((0, 0, s));
        e.0 = e.0.checked_add(weight).ok_or(Error::Overflow)?;
        e.1 += s.count;
    }

    let comm = process_label(info, pid);
    let process_frame = if opts.per_pid {
        format!("{comm}-{pid}")
    } else {
        comm.clone()
    };
    let unknown = Named {
        text: crate::frame::UNKNOWN.to_owned(),
        named: false,
        in_code: true,
        outermost: false,
        vm: false,
    };
    let mut profile = Profile::with_unit(unit_of(opts.weight));
    let mut stats = FoldStats::default();
    let mut line = String::new();
    let kernel_unknown = format!("{}{}", crate::frame::UNKNOWN, nflame_profile::KERNEL_SUFFIX);
    let lua_info = lua_of(info, opts);
    for ((tid, kind, _, truncated, _, lua_key), (weight, count, s)) in stacks {
        let lua = s
            .lua
            .as_deref()
            .filter(|l| lua_key != 0 && lua_info.is_some() && !l.frames.is_empty());
        if opts.lua == LuaFold::Only && lua.is_none() {
            // Lua-land stacks only: nothing to show for this sample.
            stats.samples += count;
            stats.dropped_samples += count;
            continue;
        }
        line.clear();
        let weight = match opts.weight {
            // Nanoseconds to the nearest microsecond.
            Weight::Time => weight / 1000 + u64::from(weight % 1000 >= 500),
            _ => weight,
        };
        // The `[unknown]` frame just written, if the last one was.
        let mut last_unknown: Option<bool> = None;
        let mut push = |text: &str| {
            let kernel = if text == crate::frame::UNKNOWN {
                Some(false)
            } else if text == kernel_unknown {
                Some(true)
            } else {
                None
            };
            if opts.fold_unknown_runs && kernel.is_some() && kernel == last_unknown {
                return;
            }
            last_unknown = kernel;
            if !line.is_empty() {
                line.push(';');
            }
            line.push_str(text);
        };
        if let Some((functions, label)) = &kernel_from {
            // Another task: only its kernel part from the first listed function on.
            stats.samples += count;
            let names: Vec<&Named> = s
                .kernel
                .iter()
                .enumerate()
                .rev()
                .map(|(i, &a)| kernel.get(&lookup_addr(i, a)).unwrap_or(&unknown))
                .collect();
            let from = opts.kernel.then(|| {
                names.iter().position(|n| {
                    n.text
                        .strip_suffix(nflame_profile::KERNEL_SUFFIX)
                        .is_some_and(|f| functions.iter().any(|g| g == f))
                })
            });
            let Some(Some(from)) = from else {
                stats.dropped_samples += count;
                continue;
            };
            push(label);
            push(&process_frame);
            if opts.kind_frames {
                push(kind_frame(kind));
            }
            for n in &names[from..] {
                push(&n.text);
                stats.kernel_frames += count;
                stats.named_kernel_frames += if n.named { count } else { 0 };
            }
            if !profile.add(&line, weight) {
                return Err(Error::Overflow);
            }
            continue;
        }
        if let Some(label) = &label {
            push(label);
        }
        if opts.process_name {
            push(&process_frame);
        }
        if opts.per_thread {
            let name = info
                .and_then(|i| i.threads.get(&tid))
                .filter(|n| !n.is_empty())
                .map(|n| sanitize(n).into_owned())
                .unwrap_or_else(|| comm.clone());
            push(&format!("{name}-{tid}"));
        }
        if opts.kind_frames {
            push(kind_frame(kind));
        }
        if let (Some(l), LuaFold::Only) = (lua, opts.lua) {
            for f in &l.frames {
                push(&lua_frame_text(f, user, &unknown));
            }
            if let Some(st) = state_frame(l.state) {
                push(st);
            }
            stats.lua_stacks += count;
            if !profile.add(&line, weight) {
                return Err(Error::Overflow);
            }
            stats.samples += count;
            continue;
        }
        if with_user && (!s.user.is_empty() || lua.is_some()) {
            let frames: Vec<&Named> = s
                .user
                .iter()
                .enumerate()
                .map(|(i, &a)| user.get(&lookup_addr(i, a)).unwrap_or(&unknown))
                .collect();
            // Leaf first: keep frames up to the first one outside code. That
            // cut loses nothing when the frame before it starts a thread
            // (junk beyond a thread's start, as frame-pointer chains have).
            let kept = frames.iter().position(|n| !n.in_code);
            let frames = &frames[..kept.unwrap_or(frames.len())];
            let truncated =
                truncated || (kept.is_some() && !frames.last().is_some_and(|n| n.outermost));
            // Root first from here.
            let root_first: Vec<&Named> = frames.iter().rev().copied().collect();
            let mut no_stack = false;
            // The C stack stops short of its thread's start (a frame-pointer
            // chain broken by code without frame pointers, a helper a trace
            // called): cut where it stops, like a truncated one.
            let cut = !truncated && !root_first.iter().take(3).any(|n| n.outermost);
            let mut at_cut = false;
            let (entry, called, lua) = match lua {
                Some(l) => match splice(&root_first, truncated || cut) {
                    Some((entry, called)) => {
                        at_cut = cut && !root_first.iter().any(|n| n.vm);
                        (entry, called, Some(l))
                    }
                    None => {
                        stats.lua_unplaced += count;
                        (&root_first[..], &root_first[..0], None)
                    }
                },
                // VM frames without a Lua stack: said so, not `[unknown]`.
                None if lua_info.is_some() && root_first.iter().any(|n| n.vm) => {
                    no_stack = true;
                    stats.lua_missing += count;
                    match splice(&root_first, false) {
                        Some((entry, called)) => (entry, called, None),
                        None => (&root_first[..], &root_first[..0], None),
                    }
                }
                None => (&root_first[..], &root_first[..0], None),
            };
            if truncated || at_cut {
                push(crate::frame::TRUNCATED);
                stats.truncated_stacks += count;
            }
            for n in entry.iter().chain(called) {
                stats.user_frames += count;
                stats.named_user_frames += if n.named { count } else { 0 };
            }
            for n in entry {
                push(&n.text);
            }
            if no_stack {
                push(nflame_profile::lua::NO_STACK_FRAME);
            }
            if let Some(l) = lua {
                stats.lua_stacks += count;
                let mut lua_frames: &[LuaFrame] = &l.frames;
                // A C function called from Lua that the C stack shows too
                // (with what it called): once, from the C stack.
                if let (Some(LuaFrame::C(a)), Some(first)) = (lua_frames.last(), called.first()) {
                    if user.get(a).is_some_and(|n| n.text == first.text) {
                        lua_frames = &lua_frames[..lua_frames.len() - 1];
                    }
                }
                for f in lua_frames {
                    push(&lua_frame_text(f, user, &unknown));
                }
                if let Some(st) = state_frame(l.state) {
                    push(st);
                }
            }
            for n in called {
                push(&n.text);
            }
            stats.user_stacks += count;
            if !truncated && frames.iter().rev().take(3).any(|n| n.outermost) {
                stats.complete_user_stacks += count;
            }
        }
        if opts.kernel {
            for (i, &a) in s.kernel.iter().enumerate().rev() {
                let n = kernel.get(&lookup_addr(i, a)).unwrap_or(&unknown);
                push(&n.text);
                stats.kernel_frames += count;
                stats.named_kernel_frames += if n.named { count } else { 0 };
            }
        }
        if line.is_empty() {
            line.push_str(crate::frame::UNKNOWN);
        }
        if !profile.add(&line, weight) {
            return Err(Error::Overflow);
        }
        stats.samples += count;
    }
    stats.frames = stats.user_frames + stats.kernel_frames;
    stats.named_frames = stats.named_user_frames + stats.named_kernel_frames;
    Ok((profile, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Kallsyms;

    const KALLSYMS: &str = "\
ffffffff81000000 T entry_SYSCALL_64
ffffffff81000100 T __do_softirq
ffffffff81000200 T net_rx_action
ffffffff81000300 T tcp_v4_rcv
ffffffff81000400 T tcp_sendmsg
ffffffff81000500 T splice
ffffffff81000600 T net_tx_action
";

    /// A kernel stack, leaf first, of the functions named (root first).
    fn kstack(root_first: &[u64]) -> Arc<[u64]> {
        root_first.iter().rev().map(|a| a + 0x10).collect()
    }

    fn sample(pid: u32, kernel: Arc<[u64]>, user: &[u64]) -> RawSample {
        RawSample {
            pid,
            tid: pid,
            kernel,
            user: user.iter().copied().collect(),
            ..RawSample::default()
        }
    }

    fn process(pid: u32, comm: &str) -> (u32, ProcessInfo) {
        let info = ProcessInfo {
            pid,
            comm: comm.into(),
            exited: true,
            ..ProcessInfo::default()
        };
        (pid, info)
    }

    fn docker_roots() -> Roots {
        Roots {
            labels: [
                (20, "[docker-proxy :8080]".to_string()),
                (40, "[container web]".to_string()),
            ]
            .into(),
            others: OtherStacks::KernelFrom {
                functions: vec!["net_rx_action".into(), "net_tx_action".into()],
                label: "[net softirq]".into(),
            },
        }
    }

    fn folded(rec: &Recording, opts: &FoldOptions) -> (Vec<String>, FoldStats) {
        let prepared = Prepared::with_kallsyms(Kallsyms::parse(KALLSYMS));
        let (profile, stats) = fold_with(rec, opts, &prepared).unwrap();
        let mut lines: Vec<String> = profile
            .iter()
            .map(|(stack, n)| format!("{stack} {n}"))
            .collect();
        lines.sort();
        (lines, stats)
    }

    /// A frame-pointer walk through code without frame pointers gives runs
    /// of frames nothing names: each run becomes one `[unknown]` frame (user)
    /// or `[unknown]_[k]` (kernel) unless `fold_unknown_runs` is off; named
    /// frames between runs, and the frame counts, stay as they are.
    #[test]
    fn unknown_runs_fold_into_one_frame_unless_kept() {
        let (entry, send) = (0xffffffff81000000u64, 0xffffffff81000400);
        let nowhere = 0xffffffff80000000u64;
        let kernel = kstack(&[nowhere, nowhere + 8, entry, nowhere + 16, send]);
        let rec = Recording {
            samples: vec![sample(70, kernel, &[0x40, 0x30, 0x20, 0x10])],
            processes: [process(70, "my-tool")].into(),
            kernel: true,
            user: true,
            ..Recording::default()
        };
        let (lines, stats) = folded(&rec, &FoldOptions::default());
        assert_eq!(
            lines,
            vec![
                "my-tool;[unknown];[unknown]_[k];entry_SYSCALL_64_[k];[unknown]_[k];\
                 tcp_sendmsg_[k] 1"
            ]
        );
        assert_eq!((stats.user_frames, stats.kernel_frames), (4, 5));
        let opts = FoldOptions {
            fold_unknown_runs: false,
            ..FoldOptions::default()
        };
        let (lines, _) = folded(&rec, &opts);
        assert_eq!(
            lines,
            vec![
                "my-tool;[unknown];[unknown];[unknown];[unknown];[unknown]_[k];[unknown]_[k];\
                 entry_SYSCALL_64_[k];[unknown]_[k];tcp_sendmsg_[k] 1"
            ]
        );
    }

    /// The labels and the softirq rule that `record --docker-port` uses:
    /// chosen processes get their role on top, others keep only their
    /// network softirq part, and the rest is dropped (and counted).
    #[test]
    fn roots_label_chosen_pids_and_keep_softirq_work_of_others() {
        let (entry, softirq, rx, tcp, send, splice, tx) = (
            0xffffffff81000000u64,
            0xffffffff81000100,
            0xffffffff81000200,
            0xffffffff81000300,
            0xffffffff81000400,
            0xffffffff81000500,
            0xffffffff81000600,
        );
        let rec = Recording {
            samples: vec![
                sample(20, kstack(&[entry, splice]), &[]),
                sample(40, kstack(&[entry, send]), &[]),
                sample(60, kstack(&[entry, softirq, rx, tcp]), &[0x1234]),
                sample(60, kstack(&[entry, send]), &[0x1234]),
                sample(0, kstack(&[softirq, tx]), &[]),
                sample(70, kstack(&[]), &[0x1234]),
            ],
            processes: [
                process(20, "docker-proxy"),
                process(40, "nginx"),
                process(60, "wrk"),
                process(70, "my-tool"),
            ]
            .into(),
            kernel: true,
            user: true,
            ..Recording::default()
        };
        let mut opts = FoldOptions {
            roots: docker_roots(),
            ..FoldOptions::default()
        };
        let (lines, stats) = folded(&rec, &opts);
        assert_eq!(
            lines,
            vec![
                "[container web];nginx;entry_SYSCALL_64_[k];tcp_sendmsg_[k] 1",
                "[docker-proxy :8080];docker-proxy;entry_SYSCALL_64_[k];splice_[k] 1",
                "[net softirq];swapper;net_tx_action_[k] 1",
                "[net softirq];wrk;net_rx_action_[k];tcp_v4_rcv_[k] 1",
            ]
        );
        assert_eq!((stats.samples, stats.dropped_samples), (6, 2));
        // Per pid: the process frame keeps its pid, under the label.
        opts.per_pid = true;
        let (lines, _) = folded(&rec, &opts);
        assert!(lines.contains(
            &"[container web];nginx-40;entry_SYSCALL_64_[k];tcp_sendmsg_[k] 1".to_string()
        ));
        assert!(
            lines.contains(&"[net softirq];wrk-60;net_rx_action_[k];tcp_v4_rcv_[k] 1".to_string())
        );
        // Without roots, every stack is kept as it is.
        let (lines, stats) = folded(&rec, &FoldOptions::default());
        assert_eq!(stats.dropped_samples, 0);
        assert_eq!(lines.len(), 6);
        assert!(lines.iter().all(|l| !l.starts_with('[')));
    }

    /// An exited nginx worker with LuaJIT: nginx at 0x1000, the LuaJIT
    /// library at 0x10000 (its VM at 0x18000..0x19000), the Lua module at
    /// 0x30000, compiled traces in anonymous memory at 0x50000.
    fn lua_worker() -> ProcessInfo {
        let m = |start: u64, end: u64, path: &str| Mapping {
            start,
            end,
            path: path.into(),
            ..Mapping::default()
        };
        ProcessInfo {
            pid: 7,
            comm: "nginx".into(),
            exited: true,
            mappings: vec![
                m(0x1000, 0x9000, "/nonexistent/nginx"),
                m(0x10000, 0x20000, "/nonexistent/libluajit-5.1.so.2"),
                m(0x30000, 0x38000, "/nonexistent/ngx_http_lua_module.so"),
                m(0x50000, 0x58000, "//anon"),
            ],
            lua: Some(LuaProcess {
                build: "test".into(),
                vm_code: std::iter::once(0x18000..0x19000).collect(),
                ..LuaProcess::default()
            }),
            ..ProcessInfo::default()
        }
    }

    fn lua_stack(
        state: LuaVmState,
        frames: &[LuaFrame],
    ) -> Option<Arc<nflame_recording::LuaStack>> {
        Some(Arc::new(nflame_recording::LuaStack {
            state,
            frames: frames.to_vec(),
        }))
    }

    fn named(t: &str) -> LuaFrame {
        LuaFrame::Named(t.into())
    }

    /// Mixed stacks: the C entry, the Lua frames in place of the VM's
    /// frames (interpreter and traces), what Lua called, kernel frames.
    #[test]
    fn lua_frames_replace_the_vm_frames() {
        const ENTRY: &str = "=content_by_lua(nginx.conf:20)_[l]";
        let lua = |state, leaf: LuaFrame| lua_stack(state, &[named(ENTRY), leaf]);
        let user = |leaf_first: &[u64], lua| RawSample {
            lua,
            ..sample(7, kstack(&[]), leaf_first)
        };
        let rec = Recording {
            samples: vec![
                // Interpreted: VM frames under the Lua entry (lua_resume in the library).
                user(
                    &[0x18010, 0x18100, 0x11000, 0x2000],
                    lua(LuaVmState::Interpreted, named("f@/a.lua:3_[l]")),
                ),
                // A trace calling a C function of the Lua module (also in
                // the Lua stack): that function once.
                user(
                    &[0x30010, 0x50010, 0x11000, 0x2000],
                    lua(LuaVmState::C, LuaFrame::C(0x30000)),
                ),
                // A compiled trace: no [unknown].
                user(
                    &[0x50020, 0x11000, 0x2000],
                    lua(LuaVmState::Compiled, named("g@/a.lua:9_[lj]")),
                ),
                // The garbage collector, called from the interpreter.
                RawSample {
                    kernel: kstack(&[0xffffffff81000000]),
                    ..user(
                        &[0x12000, 0x18010, 0x11000, 0x2000],
                        lua(LuaVmState::Gc, named("f@/a.lua:3_[l]")),
                    )
                },
                // In the VM without a Lua stack.
                user(&[0x18010, 0x11000, 0x2000], None),
                // nginx's own code: as it is.
                user(&[0x3000, 0x2000], None),
            ],
            processes: [(7, lua_worker())].into(),
            kernel: true,
            user: true,
            ..Recording::default()
        };
        let (lines, stats) = folded(&rec, &FoldOptions::default());
        let c = "nginx;[nginx];[libluajit-5.1.so.2]";
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            lines,
            sorted(vec![
                "nginx;[nginx];[nginx] 1".to_string(),
                format!("{c};[lua: no stack]_[l] 1"),
                format!("{c};{ENTRY};[ngx_http_lua_module.so] 1"),
                format!("{c};{ENTRY};f@/a.lua:3_[l] 1"),
                format!(
                    "{c};{ENTRY};f@/a.lua:3_[l];[LuaJIT GC]_[l];[libluajit-5.1.so.2];entry_SYSCALL_64_[k] 1"
                ),
                format!("{c};{ENTRY};g@/a.lua:9_[lj] 1"),
            ])
        );
        assert_eq!(
            (stats.lua_stacks, stats.lua_missing, stats.lua_unplaced),
            (4, 1, 0)
        );

        // Lua-land stacks only: what lj-lua-stacks printed.
        let only = FoldOptions {
            lua: LuaFold::Only,
            ..FoldOptions::default()
        };
        let (lines, stats) = folded(&rec, &only);
        assert_eq!(
            lines,
            vec![
                format!("nginx;{ENTRY};[ngx_http_lua_module.so] 1"),
                format!("nginx;{ENTRY};f@/a.lua:3_[l] 1"),
                format!("nginx;{ENTRY};f@/a.lua:3_[l];[LuaJIT GC]_[l] 1"),
                format!("nginx;{ENTRY};g@/a.lua:9_[lj] 1"),
            ]
        );
        assert_eq!(stats.dropped_samples, 2);

        // Off: C-level stacks as without Lua frames.
        let off = FoldOptions {
            lua: LuaFold::Off,
            ..FoldOptions::default()
        };
        let (lines, stats) = folded(&rec, &off);
        assert!(lines.iter().all(|l| !l.contains("_[l")), "{lines:?}");
        assert!(lines.contains(&format!("{c};[unknown] 1")), "{lines:?}");
        assert_eq!(stats.lua_stacks, 0);
    }

    /// This test process's executable mapping holding `main` (a thread's
    /// outermost frame), and `main`'s address in it.
    fn own_main() -> (Mapping, u64) {
        use object::{Object, ObjectSegment, ObjectSymbol};
        let path = std::fs::read_link("/proc/self/exe").unwrap();
        let data = std::fs::read(&path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let main = file
            .symbols()
            .find(|s| s.name() == Ok("main"))
            .expect("the test executable has a main")
            .address();
        let seg = file
            .segments()
            .find(|s| (s.address()..s.address() + s.size()).contains(&main))
            .expect("main in a segment");
        let file_offset = main - seg.address() + seg.file_range().0;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (range, perms, offset) = (f[0], f[1], u64::from_str_radix(f[2], 16).ok()?);
                let (start, end) = range.split_once('-')?;
                let (start, end) = (
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(end, 16).ok()?,
                );
                let here = f.get(5).is_some_and(|p| std::path::Path::new(p) == path)
                    && perms.contains('x')
                    && (offset..offset + (end - start)).contains(&file_offset);
                here.then(|| {
                    let m = Mapping {
                        start,
                        end,
                        offset,
                        path: path.clone(),
                        ..Mapping::default()
                    };
                    (m, start + file_offset - offset)
                })
            })
            .expect("main's mapping in /proc/self/maps")
    }

    /// A Lua stack is never put in a guessed place: a complete C stack
    /// without VM frames leaves it out; a truncated one, or one that stops
    /// short of its thread's start, gets it at its cut.
    #[test]
    fn lua_frames_without_vm_frames() {
        let lua = lua_stack(LuaVmState::C, &[named("f@/a.lua:3_[l]")]);
        // This process, with nginx's and LuaJIT's (unreadable) mappings and
        // its own executable, so that a frame is named `main`.
        let (exe, main) = own_main();
        let mut worker = lua_worker();
        worker.pid = std::process::id();
        worker.exited = false;
        worker.mappings.push(exe);
        worker.mappings.sort_by_key(|m| m.start);
        let pid = worker.pid;
        let rec = Recording {
            samples: vec![
                // Complete: from main to nginx code, no VM frame.
                RawSample {
                    lua: lua.clone(),
                    ..sample(pid, kstack(&[]), &[0x3000, main + 4])
                },
                RawSample {
                    lua,
                    user_truncated: true,
                    ..sample(pid, kstack(&[]), &[0x3100, 0x2100])
                },
                // Stopped short of the thread's start (a helper a trace
                // called, frame pointers lost): no VM frame, not complete.
                RawSample {
                    lua: lua_stack(LuaVmState::C, &[named("g@/a.lua:9_[lj]")]),
                    ..sample(pid, kstack(&[]), &[0x3200])
                },
            ],
            processes: [(pid, worker)].into(),
            user: true,
            ..Recording::default()
        };
        let (lines, stats) = folded(&rec, &FoldOptions::default());
        assert_eq!(
            lines,
            vec![
                "nginx;[truncated];f@/a.lua:3_[l];[nginx];[nginx] 1",
                "nginx;[truncated];g@/a.lua:9_[lj];[nginx] 1",
                "nginx;main;[nginx] 1",
            ]
        );
        assert_eq!((stats.lua_stacks, stats.lua_unplaced), (2, 1));
        assert_eq!(stats.truncated_stacks, 2);
    }
}
