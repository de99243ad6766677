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

use nflame_profile::Profile;
use nflame_recording::{Mapping, ProcessInfo, RawSample, Recording};
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
    /// Root frames by pid, and which stacks of other processes are kept.
    /// Default: no labels, every stack kept.
    pub roots: Roots,
    /// Fold a run of consecutive `[unknown]` frames (user `[unknown]`, or
    /// kernel `[unknown]_[k]`) into one, as `nflame collapse` does: a
    /// frame-pointer walk through code built without frame pointers
    /// otherwise draws towers of them. Default `true`.
    pub fold_unknown_runs: bool,
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
            roots: Roots::default(),
            fold_unknown_runs: true,
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
    /// Samples whose stacks [`Roots::others`] dropped (included in `samples`).
    pub dropped_samples: u64,
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
        let s = &mut self.stats;
        s.processes += stats.processes;
        s.unique_addresses += stats.unique_addresses;
        s.samples += stats.samples;
        s.frames += stats.frames;
        s.named_frames += stats.named_frames;
        s.user_frames += stats.user_frames;
        s.named_user_frames += stats.named_user_frames;
        s.kernel_frames += stats.kernel_frames;
        s.named_kernel_frames += stats.named_kernel_frames;
        s.truncated_stacks += stats.truncated_stacks;
        s.complete_user_stacks += stats.complete_user_stacks;
        s.user_stacks += stats.user_stacks;
        s.dropped_samples += stats.dropped_samples;
        if s.kernel_error.is_none() {
            s.kernel_error = stats.kernel_error;
        }
        for f in stats.failed_modules {
            if !s.failed_modules.iter().any(|g| g.path == f.path) {
                s.failed_modules.push(f);
            }
        }
        for line in stats.skipped {
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
    let mut profile = Profile::new();
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
        out.insert(a, named);
    }
    (out, skips)
}

fn in_mappings(mappings: &[Mapping], addr: u64) -> bool {
    let i = mappings.partition_point(|m| m.start <= addr);
    i.checked_sub(1).is_some_and(|i| addr < mappings[i].end)
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
    type Key = (u32, (usize, usize), bool, (usize, usize));
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
        let key = (
            tid,
            half_key(&s.user, with_user),
            with_user && s.user_truncated,
            half_key(&s.kernel, opts.kernel),
        );
        let weight = match opts.weight {
            Weight::Samples => s.count,
            Weight::Period => s.period,
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
    };
    let mut profile = Profile::new();
    let mut stats = FoldStats::default();
    let mut line = String::new();
    let kernel_unknown = format!("{}{}", crate::frame::UNKNOWN, nflame_profile::KERNEL_SUFFIX);
    for ((tid, _, truncated, _), (weight, count, s)) in stacks {
        line.clear();
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
        if with_user && !s.user.is_empty() {
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
            if truncated {
                push(crate::frame::TRUNCATED);
                stats.truncated_stacks += count;
            }
            for n in frames.iter().rev() {
                push(&n.text);
                stats.user_frames += count;
                stats.named_user_frames += if n.named { count } else { 0 };
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
}
