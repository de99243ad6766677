//! Bookkeeping of a recording, free of syscalls: which processes are targets,
//! their comm, threads and executable mappings as side-band records change
//! them, and the samples with interned stacks.
//!
//! It consumes [`Event`]s in timestamp order and asks a [`ProcSource`] (the
//! real `/proc`, or a table in tests) about processes it has not seen yet.
//! When off-CPU time is recorded, context-switch records and the samples
//! taken at switches go to [`OffCpu`], whose closed intervals come back as
//! samples of kind blocked or preempted.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::{CommEvent, Event, MmapEvent, SampleEvent, UserRegs};
use crate::offcpu::{Accounts, Initial, Interval, OffCpu, Stratum};
use crate::unwind::{Outcome as Unwound, StackSample, StackUnwinder};
use nflame_procfs::process::{ProcSource, Snapshot};
use nflame_recording::{
    LuaFrame, LuaStack, Mapping, OffCpuInfo, ProcessInfo, RawSample, SampleKind, UnwindMethod,
};

/// Which samples belong to the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Per-task counters: everything in the buffers comes from a target or a
    /// descendant of one.
    Attached,
    /// Every process.
    All,
    /// Processes whose comm or executable basename is one of these names.
    Names(Vec<String>),
}

#[derive(Debug)]
struct Proc {
    info: ProcessInfo,
    /// Samples of this process are kept (always true outside name matching).
    target: bool,
    /// Asked for by the caller (kept in the output even without samples).
    explicit: bool,
    samples: u64,
    /// Changes whenever `info.mappings` does (for the unwinder's modules).
    map_gen: u64,
    /// Indices in [`Tracker::samples`] of this process's entries, until it
    /// exits (see [`Tracker::compact`]).
    entries: Vec<usize>,
    /// It was compacted (once: a task's EXIT record comes once per counter
    /// of it, and its entries are gone after the first compaction).
    compacted: bool,
}

/// How user stacks of samples are chosen (see [`crate::CallGraph`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StackMode {
    /// The kernel's frame-pointer chain.
    FramePointer,
    /// DWARF unwinding of the copied stack, `requested` bytes asked for.
    Dwarf { requested: usize },
    /// DWARF unwinding, or the frame-pointer chain when it reaches further.
    Auto { requested: usize },
}

/// Final state handed to the recorder.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) samples: Vec<RawSample>,
    pub(crate) processes: BTreeMap<u32, ProcessInfo>,
    pub(crate) lost: u64,
    pub(crate) lost_records: u64,
    pub(crate) throttled: u64,
    pub(crate) ever_matched: bool,
    pub(crate) off_cpu: OffCpuInfo,
    /// What the unwinder refused to read (see [`StackUnwinder::take_skipped`]).
    pub(crate) skipped: Vec<String>,
}

/// How long after a process's exit (in sample time) its data is compacted:
/// every buffer is read at each turn of the recording loop, so no sample of
/// it can still come after a second.
const SETTLE_NS: u64 = 1_000_000_000;
/// Where the canonical addresses of exited processes' files start (far
/// above user space, below the kernel's), and the room each file gets.
const CANON_START: u64 = 1 << 56;
const CANON_STRIDE: u64 = 1 << 36;

/// Identity of a [`RawSample`] entry: pid, tid, kind, user stack, whether it
/// is truncated, kernel stack, Lua stack (0: none). Interned stacks are told
/// apart by address: the tracker's intern set (the Lua side's, for Lua
/// stacks) keeps every one alive until the end.
type SampleKey = (u32, u32, SampleKind, usize, bool, usize, usize);

/// A stack as the tracker keeps it: kernel, user, user stack truncated,
/// and the Lua stack taken with it (LuaJIT processes with Lua frames on).
type Stack = (Arc<[u64]>, Arc<[u64]>, bool, Option<Arc<LuaStack>>);

/// How a thread was found at the start of the recording, as read from
/// `/proc` (see [`Tracker::initial_thread`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartState {
    /// Listed in `/proc`; where it is not read yet.
    Exists,
    /// On a CPU.
    Running,
    /// Off the CPU: runnable (`preempted`) or asleep, with the user
    /// registers and stack bytes read from `/proc` and the process's memory.
    Off {
        preempted: bool,
        regs: Option<UserRegs>,
        stack: Vec<u8>,
    },
}

pub(crate) struct Tracker<S: ProcSource> {
    filter: Filter,
    source: S,
    own_pid: u32,
    procs: FxHashMap<u32, Proc>,
    /// Name matching verdicts, by pid (only with [`Filter::Names`]).
    verdicts: FxHashMap<u32, bool>,
    samples: Vec<RawSample>,
    /// Index in `samples` of each distinct (pid, tid, user stack, truncated,
    /// kernel stack); stacks by the address of their interned allocation.
    sample_index: FxHashMap<SampleKey, usize>,
    /// Samples counted so far (the sum of the entries' counts).
    sample_total: u64,
    stacks: FxHashSet<Arc<[u64]>>,
    lost: u64,
    lost_records: u64,
    /// Stacks at context switches lost (their switches have records).
    lost_stacks: u64,
    throttled: u64,
    ever_matched: bool,
    mode: StackMode,
    unwinder: Option<Box<dyn StackUnwinder>>,
    /// Source of [`Proc::map_gen`] values.
    next_gen: u64,
    /// Scratch space for unwound stacks.
    unwound: Vec<u64>,
    /// Off-CPU bookkeeping, when off-CPU time is recorded.
    off_cpu: Option<OffCpu<Stack>>,
    /// Start of the recording (for off-CPU time).
    start: u64,
    /// For each entry of `samples` made of sampled off-CPU intervals: the
    /// nanoseconds it has in each class of its thread's intervals, to be
    /// scaled to the classes' totals at the end (empty for other entries).
    entry_strata: Vec<Vec<(u8, u64)>>,
    /// Classes of off-CPU intervals of threads that exited, by (pid, tid).
    strata: FxHashMap<(u32, u32), Vec<Stratum>>,
    /// Switch records after this time are ignored (the end of the recording).
    end: u64,
    /// Processes that exited, with the time of their exit, to compact.
    exits: VecDeque<(u64, u32)>,
    /// The latest sample time seen.
    clock: u64,
    /// Canonical base address of each file (path, device, inode) whose
    /// mappings exited processes are moved to (see [`Tracker::compact`]).
    canon: FxHashMap<(PathBuf, Option<u64>, Option<u64>), u64>,
    next_canon: u64,
    /// Per process, the native code of its LuaJIT VM (see
    /// [`crate::unwind::StackSample::jit_like`]).
    vm_code: FxHashMap<u32, Vec<std::ops::Range<u64>>>,
    /// Processes that ran a LuaJIT VM: their addresses are named with what
    /// the Lua side records at the end (VM code, C functions), so they are
    /// never moved to canonical addresses.
    lua_pids: FxHashSet<u32>,
    /// Compacted processes to hand out (see [`Tracker::take_settled`]),
    /// when the caller takes them.
    settled: Option<Vec<u32>>,
    /// Processes handed out that [`Tracker::process_count`] counted.
    handed_out: usize,
}

/// What [`Tracker::take_settled`] hands out.
#[derive(Debug)]
pub(crate) struct Settled {
    /// Every sample of the processes that left.
    pub(crate) samples: Vec<RawSample>,
    /// Those of them [`Tracker::finish`] would have returned (they had
    /// samples, or are targets of a recording that keeps every target).
    pub(crate) processes: BTreeMap<u32, ProcessInfo>,
    /// Every process that left, sorted (those not in `processes` too).
    pub(crate) gone: Vec<u32>,
}

impl<S: ProcSource + std::fmt::Debug> std::fmt::Debug for Tracker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("filter", &self.filter)
            .field("source", &self.source)
            .field("procs", &self.procs.len())
            .field("samples", &self.samples.len())
            .field("mode", &self.mode)
            .finish()
    }
}

/// Whether a process called `comm` running `exe` matches one of `names`.
/// `comm` is at most 15 bytes, so a longer name matches its 15-byte prefix.
pub(crate) fn name_matches(names: &[String], comm: &str, exe: Option<&Path>) -> bool {
    let base = exe.and_then(|e| e.file_name()).and_then(|b| b.to_str());
    names.iter().any(|n| {
        n == comm
            || (n.len() > 15 && n.is_char_boundary(15) && &n[..15] == comm)
            || base == Some(n.as_str())
    })
}

/// Inserts `m` into sorted, non-overlapping `v`, trimming what it covers (a new
/// mapping replaces whatever was mapped there).
pub(crate) fn insert_mapping(v: &mut Vec<Mapping>, m: Mapping) {
    if m.end <= m.start {
        return;
    }
    let first = v.partition_point(|x| x.end <= m.start);
    if v.get(first) == Some(&m) {
        return;
    }
    let mut last = first;
    let mut keep = Vec::new();
    while let Some(old) = v.get(last) {
        if old.start >= m.end {
            break;
        }
        if old.start < m.start {
            keep.push(Mapping {
                end: m.start,
                ..old.clone()
            });
        }
        if old.end > m.end {
            keep.push(Mapping {
                start: m.end,
                // Offsets come from the kernel's records as they are; a
                // garbage one must not overflow (the unwinder's load bias
                // arithmetic wraps too).
                offset: old.offset.wrapping_add(m.end - old.start),
                ..old.clone()
            });
        }
        last += 1;
    }
    keep.push(m);
    keep.sort();
    v.splice(first..last, keep);
}

impl<S: ProcSource> Tracker<S> {
    pub(crate) fn new(filter: Filter, source: S, own_pid: u32) -> Self {
        Tracker {
            filter,
            source,
            own_pid,
            procs: FxHashMap::default(),
            verdicts: FxHashMap::default(),
            samples: Vec::new(),
            sample_index: FxHashMap::default(),
            sample_total: 0,
            stacks: FxHashSet::default(),
            lost: 0,
            lost_records: 0,
            lost_stacks: 0,
            throttled: 0,
            ever_matched: false,
            mode: StackMode::FramePointer,
            unwinder: None,
            next_gen: 1,
            unwound: Vec::new(),
            off_cpu: None,
            start: 0,
            entry_strata: Vec::new(),
            strata: FxHashMap::default(),
            end: u64::MAX,
            exits: VecDeque::new(),
            clock: 0,
            canon: FxHashMap::default(),
            next_canon: CANON_START,
            vm_code: FxHashMap::default(),
            lua_pids: FxHashSet::default(),
            settled: None,
            handed_out: 0,
        }
    }

    /// Records off-CPU time from context switches, for a recording that
    /// started at `start` (`CLOCK_MONOTONIC` ns); intervals shorter than
    /// `min_block` ns are not kept as samples.
    pub(crate) fn record_off_cpu(&mut self, start: u64, min_block: u64) {
        self.off_cpu = Some(OffCpu::new(start, min_block));
        self.start = start;
    }

    /// The recording ended at `end`: later switch records are ignored.
    pub(crate) fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    /// What `/proc` showed of thread `tid` of `pid` at `time`, just after
    /// the recording started (off-CPU recording only).
    pub(crate) fn initial_thread(&mut self, pid: u32, tid: u32, time: u64, state: StartState) {
        if self.off_cpu.is_none() || !self.wants(pid) {
            return;
        }
        self.ensure(pid);
        let initial = match state {
            StartState::Exists => Initial::Exists,
            StartState::Running => Initial::Running,
            StartState::Off {
                preempted,
                regs,
                stack,
            } => {
                let kind = if preempted {
                    SampleKind::Preempted
                } else {
                    SampleKind::Blocked
                };
                let stack = regs.map(|r| {
                    let (user, truncated) = self.user_stack(pid, Vec::new(), Some(r), &stack);
                    (self.intern(Vec::new()), user, truncated, None)
                });
                Initial::Off { kind, stack }
            }
        };
        if let Some(o) = self.off_cpu.as_mut() {
            o.initial(pid, tid, time, initial);
        }
    }

    /// Compacted processes are to be handed out by
    /// [`Tracker::take_settled`] instead of being kept until the end.
    pub(crate) fn hand_out_settled(&mut self) {
        self.settled.get_or_insert_with(Vec::new);
    }

    /// Chooses how user stacks are made; `unwinder` serves the DWARF modes.
    pub(crate) fn set_unwinding(&mut self, mode: StackMode, unwinder: Box<dyn StackUnwinder>) {
        self.mode = mode;
        self.unwinder = Some(unwinder);
    }

    /// Stack bytes samples now ask for (`Auto` copying less, or nothing:
    /// samples without a copy use the frame-pointer chain).
    pub(crate) fn set_stack_request(&mut self, bytes: usize) {
        if let StackMode::Auto { requested } = &mut self.mode {
            *requested = bytes;
        }
    }

    /// Says where the LuaJIT VM's native code of `pid` lies (empty: none).
    pub(crate) fn set_vm_code(&mut self, pid: u32, code: &[std::ops::Range<u64>]) {
        if code.is_empty() {
            self.vm_code.remove(&pid);
        } else {
            self.lua_pids.insert(pid);
            self.vm_code.insert(pid, code.to_vec());
        }
    }

    /// Marks the mappings of `pid` changed.
    fn touch(&mut self, pid: u32) {
        let gen = self.next_gen;
        self.next_gen += 1;
        if let Some(p) = self.procs.get_mut(&pid) {
            p.map_gen = gen;
        }
    }

    /// Registers a process the caller asked for, from a fresh snapshot.
    /// Returns false if it no longer exists.
    pub(crate) fn add_target(&mut self, pid: u32) -> bool {
        let Some(snap) = self.source.snapshot(pid) else {
            return false;
        };
        self.insert_snapshot(pid, snap, true);
        if let Filter::Names(_) = self.filter {
            self.verdicts.insert(pid, true);
        }
        true
    }

    /// Registers the recorded command (just `exec`ed): comm is the program's
    /// basename, as the kernel sets it, whatever the snapshot raced to read.
    pub(crate) fn add_command(&mut self, pid: u32, program: &Path) {
        let snap = self.source.snapshot(pid).unwrap_or_default();
        self.insert_snapshot(pid, snap, true);
        let comm = program
            .file_name()
            .map(|b| truncate_comm(&b.to_string_lossy()))
            .unwrap_or_default();
        if let Some(p) = self.procs.get_mut(&pid) {
            p.info.threads.insert(pid, comm.clone());
            p.info.comm = comm;
        }
    }

    fn insert_snapshot(&mut self, pid: u32, snap: Snapshot, explicit: bool) {
        self.ever_matched = true;
        let p = self.procs.entry(pid).or_insert_with(|| Proc {
            info: ProcessInfo {
                pid,
                ..ProcessInfo::default()
            },
            target: true,
            explicit,
            samples: 0,
            map_gen: 0,
            entries: Vec::new(),
            compacted: false,
        });
        p.target = true;
        p.explicit |= explicit;
        p.info.comm = snap.comm;
        if snap.exe.is_some() {
            p.info.exe = snap.exe;
        }
        for m in snap.mappings {
            insert_mapping(&mut p.info.mappings, m);
        }
        for (tid, name) in snap.threads {
            p.info.threads.insert(tid, name);
        }
        self.touch(pid);
    }

    /// Known process, or one created from `/proc` (or empty if it is gone).
    fn ensure(&mut self, pid: u32) -> &mut Proc {
        if !self.procs.contains_key(&pid) {
            let snap = self.source.snapshot(pid);
            let exited = snap.is_none();
            let mut snap = snap.unwrap_or_default();
            if pid == 0 {
                snap.comm = "swapper".into();
            }
            self.insert_snapshot(pid, snap, false);
            if let Some(p) = self.procs.get_mut(&pid) {
                p.info.exited = exited && pid != 0;
            }
        }
        self.procs.entry(pid).or_insert_with(|| Proc {
            info: ProcessInfo {
                pid,
                ..ProcessInfo::default()
            },
            target: true,
            explicit: false,
            samples: 0,
            map_gen: 0,
            entries: Vec::new(),
            compacted: false,
        })
    }

    /// Name-matching verdict for `pid`, computed once from `/proc`.
    fn verdict(&mut self, pid: u32) -> bool {
        let Filter::Names(names) = &self.filter else {
            return true;
        };
        if pid == self.own_pid || pid == 0 {
            return false;
        }
        if let Some(&v) = self.verdicts.get(&pid) {
            return v;
        }
        let v = self
            .source
            .comm_and_exe(pid)
            .is_some_and(|(comm, exe)| name_matches(names, &comm, exe.as_deref()));
        self.verdicts.insert(pid, v);
        if v && !self.procs.contains_key(&pid) {
            let snap = self.source.snapshot(pid).unwrap_or_default();
            self.insert_snapshot(pid, snap, false);
        }
        v
    }

    /// Whether records about `pid` update process metadata.
    fn wants(&mut self, pid: u32) -> bool {
        match self.filter {
            Filter::Attached | Filter::All => true,
            Filter::Names(_) => self.verdict(pid) && self.procs.get(&pid).is_some_and(|p| p.target),
        }
    }

    fn intern(&mut self, v: Vec<u64>) -> Arc<[u64]> {
        if let Some(a) = self.stacks.get(v.as_slice()) {
            return Arc::clone(a);
        }
        let a: Arc<[u64]> = Arc::from(v);
        self.stacks.insert(Arc::clone(&a));
        a
    }

    /// The user stack of a sample of `pid` (known to the tracker): the
    /// frame-pointer chain `fp` or the DWARF unwinding of `stack`, as the
    /// mode says, interned; and whether it was cut short.
    fn user_stack(
        &mut self,
        pid: u32,
        fp: Vec<u64>,
        regs: Option<UserRegs>,
        stack: &[u8],
    ) -> (Arc<[u64]>, bool) {
        let requested = match self.mode {
            StackMode::Dwarf { requested } | StackMode::Auto { requested } => requested,
            StackMode::FramePointer => 0,
        };
        let (Some(regs), Some(unwinder), Some(p)) =
            (regs, self.unwinder.as_mut(), self.procs.get_mut(&pid))
        else {
            if let Some(p) = self.procs.get_mut(&pid) {
                if !fp.is_empty() {
                    p.info.unwind.frame_pointer += 1;
                }
            }
            return (self.intern(fp), false);
        };
        let mut dwarf = std::mem::take(&mut self.unwound);
        let sample = StackSample {
            pid,
            generation: p.map_gen,
            mappings: &p.info.mappings,
            regs,
            stack,
            requested,
            jit_like: self.vm_code.get(&pid).map_or(&[][..], Vec::as_slice),
        };
        let outcome = unwinder.unwind(sample, &mut dwarf);
        let mappings = &p.info.mappings;
        // The frame-pointer chain counts up to its first address outside
        // known code: a chain that reached a thread's start often goes on
        // with one junk address (Go's `mstart` on a cloned thread keeps the
        // rbp it was given); the fold drops what follows that address.
        let fp_reaches_further = matches!(self.mode, StackMode::Auto { .. })
            && outcome != Unwound::Complete
            && fp.len() > dwarf.len()
            && fp
                .iter()
                .take_while(|&&a| p.info.mapping_for(a).is_some() || mappings.is_empty())
                .count()
                > dwarf.len();
        let stats = &mut p.info.unwind;
        let (method, truncated) = if fp_reaches_further {
            (UnwindMethod::FramePointer, false)
        } else {
            (UnwindMethod::Dwarf, outcome == Unwound::Truncated)
        };
        if method == UnwindMethod::Dwarf {
            stats.dwarf += 1;
            stats.complete += u64::from(outcome == Unwound::Complete);
        } else {
            stats.frame_pointer += 1;
        }
        stats.truncated += u64::from(truncated);
        let user = if method == UnwindMethod::Dwarf {
            self.intern_slice(&dwarf)
        } else {
            self.intern(fp)
        };
        self.unwound = dwarf;
        (user, truncated)
    }

    fn intern_slice(&mut self, v: &[u64]) -> Arc<[u64]> {
        if let Some(a) = self.stacks.get(v) {
            return Arc::clone(a);
        }
        let a: Arc<[u64]> = Arc::from(v);
        self.stacks.insert(Arc::clone(&a));
        a
    }

    /// Adds one sample (or `s.count` of them) to its entry; `stratum`: it
    /// is a sampled off-CPU interval of that class.
    fn add_sample(&mut self, s: RawSample, stratum: Option<u8>) {
        self.sample_total += s.count;
        if let Some(p) = self.procs.get_mut(&s.pid) {
            p.samples += s.count;
        }
        let key = (
            s.pid,
            s.tid,
            s.kind,
            s.user.as_ptr() as usize,
            s.user_truncated,
            s.kernel.as_ptr() as usize,
            s.lua.as_ref().map_or(0, |l| Arc::as_ptr(l) as usize),
        );
        let period = s.period;
        let i = match self.sample_index.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let i = *e.get();
                let e = &mut self.samples[i];
                e.count += s.count;
                e.period = e.period.saturating_add(s.period);
                e.time = e.time.min(s.time);
                i
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.samples.len());
                if let Some(p) = self.procs.get_mut(&s.pid) {
                    p.entries.push(self.samples.len());
                }
                self.samples.push(s);
                self.samples.len() - 1
            }
        };
        if let Some(key) = stratum {
            if self.entry_strata.len() <= i {
                self.entry_strata.resize_with(i + 1, Vec::new);
            }
            let v = &mut self.entry_strata[i];
            match v.iter_mut().find(|(k, _)| *k == key) {
                Some((_, d)) => *d = d.saturating_add(period),
                None => v.push((key, period)),
            }
        }
    }

    /// Turns closed off-CPU intervals into samples, and files the times of
    /// threads that exited.
    fn collect_off_cpu(&mut self) {
        let Some(mut o) = self.off_cpu.take() else {
            return;
        };
        for iv in o.take_intervals() {
            self.add_interval(iv);
        }
        for accounts in o.take_finished() {
            self.file_accounts(accounts);
        }
        self.off_cpu = Some(o);
    }

    fn file_accounts(&mut self, (pid, tid, times, strata): Accounts) {
        // Its process is known, unless records contradicted each other
        // (a thread id seen under two pids).
        self.ensure(pid);
        if let Some(p) = self.procs.get_mut(&pid) {
            // A thread id used twice (after an exit) has one entry.
            p.info.times.entry(tid).or_default().add(&times);
            let classes = self.strata.entry((pid, tid)).or_default();
            for c in strata {
                match classes.iter_mut().find(|x| x.key == c.key) {
                    Some(x) => {
                        x.total = x.total.saturating_add(c.total);
                        x.sampled = x.sampled.saturating_add(c.sampled);
                        x.intervals += c.intervals;
                    }
                    None => classes.push(c),
                }
            }
        }
    }

    /// Scales the sampled off-CPU entries of the processes `only` holds
    /// (every process: `None`) to their classes' exact totals, and adds
    /// each class of theirs that has no sampled interval as a sample
    /// without a stack. Their classes are used up: call it once a process's
    /// threads have all exited (their classes are then filed), or at the
    /// end.
    fn scale_off_cpu(&mut self, only: Option<&FxHashSet<u32>>) {
        let of = |pid: u32| only.is_none_or(|set| set.contains(&pid));
        let strata: FxHashMap<(u32, u32), Vec<Stratum>> = match only {
            None => std::mem::take(&mut self.strata),
            Some(_) => {
                let (mine, rest) = std::mem::take(&mut self.strata)
                    .into_iter()
                    .partition(|(k, _)| of(k.0));
                self.strata = rest;
                mine
            }
        };
        for i in 0..self.entry_strata.len() {
            if self.entry_strata[i].is_empty() || !of(self.samples[i].pid) {
                continue;
            }
            let parts = std::mem::take(&mut self.entry_strata[i]);
            let s = &mut self.samples[i];
            let classes = strata.get(&(s.pid, s.tid)).map_or(&[][..], Vec::as_slice);
            let mut period = s.period;
            for (key, d) in parts {
                let scaled = match classes.iter().find(|c| c.key == key) {
                    Some(c) => c.scale(d),
                    None => d,
                };
                period = period.saturating_sub(d).saturating_add(scaled);
            }
            s.period = period;
        }
        if only.is_none() {
            self.entry_strata = Vec::new();
        }
        let mut unsampled: Vec<(&(u32, u32), &Stratum)> = strata
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |c| (k, c)))
            .filter(|(_, c)| c.sampled == 0 && c.total > 0)
            .collect();
        unsampled.sort_unstable_by_key(|(k, c)| (**k, c.key));
        let empty = self.intern(Vec::new());
        for (&(pid, tid), c) in unsampled {
            self.add_sample(
                RawSample {
                    pid,
                    tid,
                    time: self.start,
                    cpu: 0,
                    count: c.intervals.max(1),
                    period: c.total,
                    kind: c.kind(),
                    kernel: Arc::clone(&empty),
                    user: Arc::clone(&empty),
                    user_truncated: false,
                    lua: None,
                },
                None,
            );
        }
    }

    fn add_interval(&mut self, iv: Interval<Stack>) {
        self.ensure(iv.pid);
        let (kernel, user, user_truncated, lua) = match iv.stack {
            Some(s) => s,
            None => (
                self.intern(Vec::new()),
                self.intern(Vec::new()),
                false,
                None,
            ),
        };
        self.add_sample(
            RawSample {
                pid: iv.pid,
                tid: iv.tid,
                time: iv.time,
                cpu: iv.cpu,
                count: 1,
                period: iv.duration,
                kind: iv.kind,
                kernel,
                user,
                user_truncated,
                lua,
            },
            iv.stratum,
        );
    }

    pub(crate) fn handle(&mut self, ev: Event) {
        self.handle_with(ev, None);
    }

    /// [`Tracker::handle`], with the Lua stack taken with a sample.
    pub(crate) fn handle_with(&mut self, ev: Event, lua: Option<Arc<LuaStack>>) {
        self.clock = self.clock.max(ev.time());
        while let Some(&(at, pid)) = self.exits.front() {
            if at.saturating_add(SETTLE_NS) > self.clock {
                break;
            }
            self.exits.pop_front();
            if self.procs.get(&pid).is_some_and(|p| p.info.exited) {
                self.compact(pid);
            }
        }
        match ev {
            Event::Sample(s) => {
                let SampleEvent {
                    pid,
                    tid,
                    time,
                    cpu,
                    period,
                    at_switch,
                    kernel,
                    user,
                    regs,
                    stack,
                } = *s;
                let gone = pid == u32::MAX || tid == u32::MAX;
                if pid == 0 || gone || !self.wants(pid) || (at_switch && self.off_cpu.is_none()) {
                    return;
                }
                let p = self.ensure(pid);
                if !p.info.threads.contains_key(&tid) {
                    let name = p.info.comm.clone();
                    p.info.threads.insert(tid, name);
                }
                let (user, user_truncated) = self.user_stack(pid, user, regs, &stack);
                let kernel = self.intern(kernel);
                if at_switch {
                    // Its period (how many switches it stands for) is not
                    // used: every switch's duration is known (see offcpu).
                    if let Some(o) = self.off_cpu.as_mut() {
                        o.sample(pid, tid, time, (kernel, user, user_truncated, lua));
                    }
                    return;
                }
                let s = RawSample {
                    pid,
                    tid,
                    time,
                    cpu,
                    count: 1,
                    period,
                    kind: SampleKind::OnCpu,
                    kernel,
                    user,
                    user_truncated,
                    lua,
                };
                self.add_sample(s, None);
            }
            Event::Switch {
                pid,
                tid,
                time,
                cpu,
                out,
                preempt,
            } => {
                // The idle task; and a task past its exit, whose ids the
                // kernel gives as -1 (its last switch-out).
                let gone = pid == u32::MAX || tid == u32::MAX;
                if pid == 0 || gone || time > self.end || self.off_cpu.is_none() || !self.wants(pid)
                {
                    return;
                }
                let p = self.ensure(pid);
                if !p.info.threads.contains_key(&tid) {
                    let name = p.info.comm.clone();
                    p.info.threads.insert(tid, name);
                }
                if let Some(o) = self.off_cpu.as_mut() {
                    if out {
                        o.switch_out(pid, tid, time, cpu, preempt);
                    } else {
                        o.switch_in(pid, tid, time);
                    }
                }
                self.collect_off_cpu();
            }
            Event::Comm(c) => {
                let CommEvent {
                    pid,
                    tid,
                    comm,
                    exec,
                    ..
                } = *c;
                self.on_comm(pid, tid, comm, exec)
            }
            Event::Fork {
                pid,
                ppid,
                tid,
                time,
            } => {
                self.on_fork(pid, ppid, tid);
                // System-wide, a process started by one not seen yet is not
                // in `procs`, but it was created now all the same.
                let wanted =
                    self.filter == Filter::All || self.procs.get(&pid).is_some_and(|p| p.target);
                if let (Some(o), true) = (self.off_cpu.as_mut(), wanted) {
                    o.created(pid, tid, time);
                }
            }
            Event::Exit { pid, tid, time } => {
                if let Some(o) = self.off_cpu.as_mut() {
                    o.exited(pid, tid, time);
                    self.collect_off_cpu();
                }
                if pid != tid {
                    return;
                }
                if let Some(u) = self.unwinder.as_mut() {
                    u.forget(pid);
                }
                let unsampled = match self.procs.get_mut(&pid) {
                    Some(p) => {
                        p.info.exited = true;
                        p.samples == 0 && !p.explicit
                    }
                    None => {
                        // Not a target: its verdict goes with it, so that
                        // they follow the live processes.
                        self.verdicts.remove(&pid);
                        return;
                    }
                };
                // System-wide, most processes are never sampled: forget them
                // when they exit so memory follows the live process count.
                if unsampled && self.filter == Filter::All {
                    self.procs.remove(&pid);
                    if let Some(o) = self.off_cpu.as_mut() {
                        o.forget_process(pid);
                    }
                    self.strata.retain(|k, _| k.0 != pid);
                } else {
                    self.exits.push_back((time, pid));
                }
            }
            Event::Mmap(m) => {
                let MmapEvent {
                    pid,
                    start,
                    len,
                    pgoff,
                    path,
                    dev,
                    inode,
                    executable,
                    ..
                } = *m;
                if !executable || !self.wants(pid) {
                    return;
                }
                let p = self.ensure(pid);
                if p.info.exe.is_none() && path.starts_with("/") {
                    p.info.exe = Some(path.clone());
                }
                insert_mapping(
                    &mut p.info.mappings,
                    Mapping {
                        start,
                        end: start.saturating_add(len),
                        offset: pgoff,
                        path,
                        dev,
                        inode,
                    },
                );
                self.touch(pid);
            }
            Event::Lost {
                count,
                stacks: true,
                ..
            } => self.lost_stacks = self.lost_stacks.saturating_add(count),
            Event::Lost { count, .. } => {
                self.lost = self.lost.saturating_add(count);
                self.lost_records += 1;
            }
            Event::Throttle { .. } => self.throttled += 1,
        }
    }

    fn on_comm(&mut self, pid: u32, tid: u32, comm: String, exec: bool) {
        if let Filter::Names(names) = &self.filter {
            if exec || pid == tid {
                let exe = if exec {
                    self.source.comm_and_exe(pid).and_then(|(_, e)| e)
                } else {
                    self.procs.get(&pid).and_then(|p| p.info.exe.clone())
                };
                let now = pid != self.own_pid && name_matches(names, &comm, exe.as_deref());
                let before = self.procs.get(&pid).is_some_and(|p| p.target);
                self.verdicts.insert(pid, now);
                match (before, now) {
                    (_, true) if !self.procs.contains_key(&pid) => {
                        // A new match: what /proc shows now is the new image.
                        let snap = self.source.snapshot(pid).unwrap_or_default();
                        self.insert_snapshot(pid, snap, false);
                        if let Some(p) = self.procs.get_mut(&pid) {
                            p.info.comm = comm.clone();
                            p.info.threads.insert(tid, comm);
                        }
                        return;
                    }
                    (true, false) => {
                        // It became something else: freeze what it was.
                        if let Some(p) = self.procs.get_mut(&pid) {
                            p.target = false;
                        }
                        return;
                    }
                    (false, false) => return,
                    _ => {}
                }
            } else if !self.wants(pid) {
                return;
            }
        }
        let p = self.ensure(pid);
        if exec {
            // The old image is gone; its mappings follow as MMAP records.
            p.info.mappings.clear();
            p.info.exe = None;
            p.info.threads.clear();
            p.info.exited = false;
            p.compacted = false;
            self.touch(pid);
        }
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if pid == tid {
            p.info.comm = comm.clone();
        }
        p.info.threads.insert(tid, comm);
    }

    fn on_fork(&mut self, pid: u32, ppid: u32, tid: u32) {
        if pid == ppid {
            // A new thread.
            if self.wants(pid) {
                let p = self.ensure(pid);
                let name = p.info.comm.clone();
                p.info.threads.entry(tid).or_insert(name);
            }
            return;
        }
        // A new process: a copy of its parent until it execs.
        let parent_is_target = match self.filter {
            Filter::Names(_) => self.procs.get(&ppid).is_some_and(|p| p.target),
            Filter::Attached => true,
            Filter::All => self.procs.contains_key(&ppid),
        };
        if !parent_is_target {
            // Decide about the child later, from /proc or its COMM record.
            self.verdicts.remove(&pid);
            return;
        }
        let parent = self.procs.get(&ppid).map(|p| p.info.clone());
        let info = match parent {
            Some(parent) => ProcessInfo {
                pid,
                comm: parent.comm.clone(),
                exe: parent.exe,
                mappings: parent.mappings,
                threads: BTreeMap::from([(pid, parent.comm)]),
                exited: false,
                unwind: Default::default(),
                times: Default::default(),
                lua: None,
            },
            None => {
                // Attached mode, parent not seen yet (its records were lost).
                self.ensure(pid);
                return;
            }
        };
        if let Filter::Names(_) = self.filter {
            self.verdicts.insert(pid, true);
        }
        let mut info = info;
        // A pid used again: the samples and thread times of the one before
        // stay counted (they are in the output), under the new process.
        let samples = match self.procs.remove(&pid) {
            Some(old) => {
                info.times = old.info.times;
                old.samples
            }
            None => 0,
        };
        self.procs.insert(
            pid,
            Proc {
                info,
                target: true,
                explicit: false,
                samples,
                map_gen: 0,
                entries: Vec::new(),
                compacted: false,
            },
        );
        self.touch(pid);
    }

    /// Shrinks what is kept of `pid`, which exited a second ago, to what
    /// naming its samples needs: the mappings its user addresses fall in
    /// (the address and, for return addresses, the one before it, which the
    /// symbolizer looks up) and the names of its sampled threads. Then its
    /// file mappings move to canonical addresses, one place per file
    /// (`CANON_START` on, by path, device and inode, at the mapping's file
    /// offset), and its user stacks with them: the stacks of every run of a
    /// program then are the same, and interned once, instead of differing
    /// through address-space randomization. A process that had samples
    /// costs a few hundred bytes of its own from then on instead of its
    /// whole map (6-15 KiB for a small program) and a copy of every stack.
    fn compact(&mut self, pid: u32) {
        match self.procs.get_mut(&pid) {
            Some(p) if !p.compacted => p.compacted = true,
            _ => return,
        }
        self.vm_code.remove(&pid);
        self.prune(pid);
        self.canonicalize(pid);
        let explicit = self.procs.get(&pid).is_some_and(|p| p.explicit);
        if let (Some(settled), false) = (self.settled.as_mut(), explicit) {
            settled.push(pid);
        }
    }

    /// Hands out the processes compacted since the last call (not those the
    /// caller asked for: they stay, for the summary) with all their
    /// samples, which leave the tracker: no sample of them can still come.
    /// What is kept then grows with the live processes, not with every
    /// process that came and went. Only the processes [`Tracker::finish`]
    /// would have returned are in the map. `None` when there is nothing.
    ///
    /// With off-CPU time, a process leaves only once each of its threads
    /// has exited, so that its samples carry all their time: its threads'
    /// [`ProcessInfo::times`] are final, its sampled off-CPU entries are
    /// scaled to their classes' totals and its classes without a sampled
    /// interval added as samples without a stack, as [`Tracker::finish`]
    /// does for the others. One with a thread still followed (its exit
    /// record not seen yet) waits for a later call.
    pub(crate) fn take_settled(&mut self) -> Option<Settled> {
        let settled = self.settled.as_mut()?;
        if settled.is_empty() {
            return None;
        }
        let pids = std::mem::take(settled);
        let busy = self
            .off_cpu
            .as_ref()
            .map(OffCpu::followed_pids)
            .unwrap_or_default();
        let mut gone: FxHashSet<u32> = FxHashSet::default();
        for pid in pids {
            if !self
                .procs
                .get(&pid)
                .is_some_and(|p| p.info.exited && !p.explicit)
            {
                // A new process reused the pid meanwhile, or it is gone.
                continue;
            }
            if busy.contains(&pid) {
                if let Some(settled) = self.settled.as_mut() {
                    settled.push(pid);
                }
                continue;
            }
            gone.insert(pid);
        }
        if gone.is_empty() {
            return None;
        }
        if self.off_cpu.is_some() {
            self.scale_off_cpu(Some(&gone));
        }
        // Stacks only the intern set holds (those of earlier parts, by now
        // folded and dropped) go.
        self.stacks.retain(|a| Arc::strong_count(a) > 1);
        let keep_all_targets = self.filter != Filter::All;
        let mut processes = BTreeMap::new();
        for &pid in &gone {
            self.verdicts.remove(&pid);
            let Some(p) = self.procs.remove(&pid) else {
                continue;
            };
            if p.samples > 0 || (keep_all_targets && p.target) {
                processes.insert(pid, p.info);
                self.handed_out += 1;
            }
        }
        // Index in `samples` before → after; `usize::MAX` for those handed out.
        let mut moved = Vec::with_capacity(self.samples.len());
        let mut kept = Vec::with_capacity(self.samples.len());
        let mut out = Vec::new();
        for s in std::mem::take(&mut self.samples) {
            if gone.contains(&s.pid) {
                moved.push(usize::MAX);
                out.push(s);
            } else {
                moved.push(kept.len());
                kept.push(s);
            }
        }
        self.samples = kept;
        self.sample_index.retain(|_, i| {
            *i = moved[*i];
            *i != usize::MAX
        });
        for p in self.procs.values_mut() {
            p.entries.retain_mut(|i| {
                *i = moved[*i];
                *i != usize::MAX
            });
        }
        // The strata of the entries kept, in their new order (the handed
        // out ones were used up above).
        let strata = std::mem::take(&mut self.entry_strata);
        self.entry_strata = strata
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| moved[i] != usize::MAX)
            .map(|(_, v)| v)
            .collect();
        let mut gone: Vec<u32> = gone.into_iter().collect();
        gone.sort_unstable();
        Some(Settled {
            samples: out,
            processes,
            gone,
        })
    }

    fn prune(&mut self, pid: u32) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        let entries = std::mem::take(&mut p.entries);
        let mut used = vec![false; p.info.mappings.len()];
        let mut tids = FxHashSet::default();
        let mut mark = |a: u64| {
            let i = p.info.mappings.partition_point(|m| m.start <= a);
            if let Some(i) = i.checked_sub(1) {
                if a < p.info.mappings[i].end {
                    used[i] = true;
                }
            }
        };
        for &e in &entries {
            let Some(s) = self.samples.get(e) else {
                continue;
            };
            tids.insert(s.tid);
            for (k, &a) in s.user.iter().enumerate() {
                mark(a);
                if k > 0 {
                    mark(a.wrapping_sub(1));
                }
            }
            for f in s.lua.iter().flat_map(|l| &l.frames) {
                if let LuaFrame::C(a) = *f {
                    mark(a);
                }
            }
        }
        let mut used = used.into_iter();
        p.info.mappings.retain(|_| used.next().unwrap_or(false));
        p.info.mappings.shrink_to_fit();
        p.info.threads.retain(|tid, _| tids.contains(tid));
        p.entries = entries;
    }

    /// Moves the file mappings of `pid` (exited, pruned) and its samples'
    /// user addresses to canonical addresses (see [`Tracker::compact`]).
    /// Anonymous and pseudo mappings (JIT code, the vDSO) stay where they
    /// were. Its entries leave the sample index: no sample of it comes any
    /// more.
    fn canonicalize(&mut self, pid: u32) {
        let Tracker {
            procs,
            samples,
            sample_index,
            stacks,
            canon,
            next_canon,
            lua_pids,
            ..
        } = self;
        let Some(p) = procs.get_mut(&pid) else {
            return;
        };
        let entries = std::mem::take(&mut p.entries);
        for &e in &entries {
            if let Some(s) = samples.get(e) {
                sample_index.remove(&(
                    s.pid,
                    s.tid,
                    s.kind,
                    s.user.as_ptr() as usize,
                    s.user_truncated,
                    s.kernel.as_ptr() as usize,
                    s.lua.as_ref().map_or(0, |l| Arc::as_ptr(l) as usize),
                ));
            }
        }
        if lua_pids.remove(&pid) {
            // Its VM code and Lua C functions are named at their own
            // addresses: left where they are.
            return;
        }
        // (old start, old end, new start) of each moved mapping.
        let mut moves: Vec<(u64, u64, u64)> = Vec::new();
        let mut moved = p.info.mappings.clone();
        for m in &mut moved {
            let file = !nflame_procfs::maps::is_pseudo(&m.path)
                && !nflame_procfs::maps::is_anonymous(&m.path)
                && m.inode.is_some_and(|i| i != 0);
            let len = m.end - m.start;
            if !file || m.offset.saturating_add(len) > CANON_STRIDE {
                continue;
            }
            let key = (m.path.clone(), m.dev, m.inode);
            let base = match canon.get(&key) {
                Some(&b) => b,
                None => {
                    let Some(next) = next_canon.checked_add(CANON_STRIDE) else {
                        continue;
                    };
                    let b = *next_canon;
                    *next_canon = next;
                    canon.insert(key, b);
                    b
                }
            };
            moves.push((m.start, m.end, base + m.offset));
            m.start = base + m.offset;
            m.end = m.start + len;
        }
        moved.sort();
        moved.dedup();
        if moves.is_empty() || moved.windows(2).any(|w| w[0].end > w[1].start) {
            // Nothing to move, or one file mapped twice over: left as it is.
            return;
        }
        p.info.mappings = moved;
        let translate = |a: u64| {
            moves
                .iter()
                .find(|&&(start, end, _)| start <= a && a < end)
                .map_or(a, |&(start, _, to)| to + (a - start))
        };
        for &e in &entries {
            let Some(s) = samples.get_mut(e) else {
                continue;
            };
            let user: Vec<u64> = s.user.iter().map(|&a| translate(a)).collect();
            if *user == *s.user {
                continue;
            }
            let new = match stacks.get(user.as_slice()) {
                Some(a) => Arc::clone(a),
                None => {
                    let a: Arc<[u64]> = Arc::from(user);
                    stacks.insert(Arc::clone(&a));
                    a
                }
            };
            let old = std::mem::replace(&mut s.user, new);
            // Only the intern set holds it now.
            if Arc::strong_count(&old) == 2 {
                stacks.remove(&old[..]);
            }
        }
    }

    /// Target processes not known to have exited.
    pub(crate) fn live_targets(&self) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(_, p)| p.target && !p.info.exited)
            .map(|(&pid, _)| pid)
            .collect()
    }

    /// Marks processes that `/proc` says are gone (in case EXIT was lost).
    pub(crate) fn refresh_liveness(&mut self) {
        for pid in self.live_targets() {
            if !self.source.is_alive(pid) {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.info.exited = true;
                }
            }
        }
    }

    pub(crate) fn sample_count(&self) -> u64 {
        self.sample_total
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }

    pub(crate) fn process_count(&self) -> usize {
        self.handed_out
            + self
                .procs
                .values()
                .filter(|p| p.samples > 0 || (p.target && self.filter != Filter::All))
                .count()
    }

    pub(crate) fn finish(mut self) -> Outcome {
        self.refresh_liveness();
        let mut off_cpu = OffCpuInfo::default();
        if let Some(o) = self.off_cpu.take() {
            let end = self.end;
            let done = o.finish(end);
            off_cpu = done.info;
            off_cpu.lost_stacks = self.lost_stacks;
            for iv in done.intervals {
                self.add_interval(iv);
            }
            for accounts in done.accounts {
                self.file_accounts(accounts);
            }
            self.scale_off_cpu(None);
        }
        let keep_all_targets = self.filter != Filter::All;
        let mut processes = BTreeMap::new();
        for (pid, p) in self.procs {
            if p.explicit || p.samples > 0 || (keep_all_targets && p.target) {
                processes.insert(pid, p.info);
            }
        }
        self.samples.sort_by_key(|s| s.time);
        let skipped = self
            .unwinder
            .as_mut()
            .map(|u| u.take_skipped())
            .unwrap_or_default();
        Outcome {
            samples: self.samples,
            processes,
            lost: self.lost,
            lost_records: self.lost_records,
            throttled: self.throttled,
            ever_matched: self.ever_matched,
            off_cpu,
            skipped,
        }
    }
}

/// The kernel keeps 15 bytes of a task name.
fn truncate_comm(s: &str) -> String {
    let mut end = s.len().min(15);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::path::PathBuf;

    #[derive(Debug, Default)]
    struct FakeProc {
        snaps: RefCell<HashMap<u32, Snapshot>>,
    }

    impl FakeProc {
        fn with(self, pid: u32, comm: &str, exe: &str, maps: &[(u64, u64, &str)]) -> Self {
            self.snaps.borrow_mut().insert(
                pid,
                Snapshot {
                    comm: comm.into(),
                    exe: Some(PathBuf::from(exe)),
                    mappings: maps
                        .iter()
                        .map(|&(s, e, p)| Mapping {
                            start: s,
                            end: e,
                            offset: 0,
                            path: PathBuf::from(p),
                            dev: None,
                            inode: None,
                        })
                        .collect(),
                    threads: BTreeMap::from([(pid, comm.to_string())]),
                },
            );
            self
        }
    }

    impl ProcSource for FakeProc {
        fn snapshot(&self, pid: u32) -> Option<Snapshot> {
            self.snaps.borrow().get(&pid).cloned()
        }
        fn comm_and_exe(&self, pid: u32) -> Option<(String, Option<PathBuf>)> {
            self.snaps
                .borrow()
                .get(&pid)
                .map(|s| (s.comm.clone(), s.exe.clone()))
        }
        fn is_alive(&self, pid: u32) -> bool {
            self.snaps.borrow().contains_key(&pid)
        }
    }

    fn m(start: u64, end: u64, offset: u64, p: &str) -> Mapping {
        Mapping {
            start,
            end,
            offset,
            path: PathBuf::from(p),
            dev: None,
            inode: None,
        }
    }

    fn sample(pid: u32, tid: u32, time: u64, k: &[u64], u: &[u64]) -> Event {
        Event::Sample(Box::new(SampleEvent {
            pid,
            tid,
            time,
            cpu: 0,
            period: 1_000_000,
            at_switch: false,
            kernel: k.to_vec(),
            user: u.to_vec(),
            regs: None,
            stack: Vec::new(),
        }))
    }

    fn mmap(pid: u32, start: u64, len: u64, p: &str) -> Event {
        Event::Mmap(Box::new(MmapEvent {
            pid,
            time: 0,
            start,
            len,
            pgoff: 0x1000,
            path: PathBuf::from(p),
            dev: Some(0x801),
            inode: Some(7),
            executable: true,
        }))
    }

    #[test]
    fn insert_mapping_replaces_and_trims() {
        let mut v = vec![m(0x1000, 0x5000, 0, "/a"), m(0x8000, 0x9000, 0, "/b")];
        insert_mapping(&mut v, m(0x2000, 0x3000, 0x10, "/c"));
        assert_eq!(
            v,
            vec![
                m(0x1000, 0x2000, 0, "/a"),
                m(0x2000, 0x3000, 0x10, "/c"),
                m(0x3000, 0x5000, 0x2000, "/a"),
                m(0x8000, 0x9000, 0, "/b"),
            ]
        );
        // Covering several.
        insert_mapping(&mut v, m(0x0, 0x8800, 0, "/d"));
        assert_eq!(
            v,
            vec![m(0x0, 0x8800, 0, "/d"), m(0x8800, 0x9000, 0x800, "/b")]
        );
        // Same again is a no-op; empty is ignored.
        insert_mapping(&mut v, m(0x0, 0x8800, 0, "/d"));
        insert_mapping(&mut v, m(0x10, 0x10, 0, "/e"));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn name_matching_rules() {
        let names = vec!["nginx".to_string(), "a-very-long-process-name".to_string()];
        assert!(name_matches(&names, "nginx", None));
        assert!(name_matches(&names, "a-very-long-pro", None));
        assert!(name_matches(
            &names,
            "worker",
            Some(Path::new("/usr/sbin/nginx"))
        ));
        assert!(!name_matches(&names, "nginx2", Some(Path::new("/bin/x"))));
    }

    #[test]
    fn attached_keeps_samples_and_interns_stacks() {
        let src =
            FakeProc::default().with(100, "busy", "/bin/busy", &[(0x1000, 0x2000, "/bin/busy")]);
        let mut t = Tracker::new(Filter::Attached, src, 1);
        assert!(t.add_target(100));
        for i in 0..10 {
            t.handle(sample(100, 100, 10 - i, &[0xffff_0001], &[0x1010, 0x1020]));
        }
        t.handle(sample(100, 101, 20, &[], &[0x1030]));
        // Same stacks, another thread: its own entry, sharing the stacks.
        t.handle(sample(100, 101, 21, &[0xffff_0001], &[0x1010, 0x1020]));
        assert_eq!(t.sample_count(), 12);
        let out = t.finish();
        // Identical samples are one entry that counts them.
        let entries: Vec<(u32, u64, u64, u64)> = out
            .samples
            .iter()
            .map(|s| (s.tid, s.time, s.count, s.period))
            .collect();
        assert_eq!(
            entries,
            vec![
                (100, 1, 10, 10_000_000),
                (101, 20, 1, 1_000_000),
                (101, 21, 1, 1_000_000)
            ]
        );
        // Identical stacks share one allocation.
        assert!(Arc::ptr_eq(&out.samples[0].user, &out.samples[2].user));
        assert!(Arc::ptr_eq(&out.samples[0].kernel, &out.samples[2].kernel));
        assert!(!Arc::ptr_eq(&out.samples[0].user, &out.samples[1].user));
        let p = &out.processes[&100];
        assert_eq!(p.comm, "busy");
        assert_eq!(p.threads.len(), 2);
        assert_eq!(
            p.mapping_for(0x1010).unwrap().path,
            PathBuf::from("/bin/busy")
        );
        assert!(!p.exited);
    }

    /// Samples with the same C stacks but other Lua stacks are other entries;
    /// the same Lua stack (interned) counts in one.
    #[test]
    fn lua_stacks_split_sample_entries() {
        let src = FakeProc::default().with(100, "nginx", "/usr/sbin/nginx", &[]);
        let mut t = Tracker::new(Filter::Attached, src, 1);
        t.add_target(100);
        let lua = |f: &str| {
            Some(Arc::new(LuaStack {
                frames: vec![nflame_recording::LuaFrame::Named(f.into())],
                ..LuaStack::default()
            }))
        };
        let (a, b) = (lua("a@x.lua:1_[l]"), lua("b@x.lua:5_[l]"));
        t.handle_with(sample(100, 100, 1, &[], &[0x10]), a.clone());
        t.handle_with(sample(100, 100, 2, &[], &[0x10]), a.clone());
        t.handle_with(sample(100, 100, 3, &[], &[0x10]), b);
        t.handle(sample(100, 100, 4, &[], &[0x10]));
        let out = t.finish();
        let counts: Vec<(u64, bool)> = out
            .samples
            .iter()
            .map(|s| (s.count, s.lua.is_some()))
            .collect();
        assert_eq!(counts, vec![(2, true), (1, true), (1, false)]);
        assert!(Arc::ptr_eq(
            out.samples[0].lua.as_ref().unwrap(),
            a.as_ref().unwrap()
        ));
    }

    #[test]
    fn fork_copies_parent_and_exit_keeps_mappings() {
        let src = FakeProc::default().with(100, "sh", "/bin/sh", &[(0x1000, 0x2000, "/bin/sh")]);
        let mut t = Tracker::new(Filter::Attached, src, 1);
        t.add_target(100);
        t.handle(Event::Fork {
            pid: 200,
            ppid: 100,
            tid: 200,
            time: 1,
        });
        t.handle(Event::Comm(Box::new(CommEvent {
            pid: 200,
            tid: 200,
            time: 2,
            comm: "yes".into(),
            exec: true,
        })));
        t.handle(mmap(200, 0x5000, 0x1000, "/usr/bin/yes"));
        t.handle(sample(200, 200, 3, &[], &[0x5010]));
        t.handle(Event::Fork {
            pid: 200,
            ppid: 200,
            tid: 201,
            time: 4,
        });
        t.handle(Event::Exit {
            pid: 200,
            tid: 201,
            time: 5,
        });
        assert_eq!(t.live_targets().len(), 2);
        t.handle(Event::Exit {
            pid: 200,
            tid: 200,
            time: 6,
        });
        let mut live = t.live_targets();
        live.sort();
        assert_eq!(live, vec![100]);
        let out = t.finish();
        let child = &out.processes[&200];
        assert!(child.exited);
        assert_eq!(child.comm, "yes");
        assert_eq!(child.exe.as_deref(), Some(Path::new("/usr/bin/yes")));
        assert_eq!(
            child.mappings,
            vec![Mapping {
                start: 0x5000,
                end: 0x6000,
                offset: 0x1000,
                path: PathBuf::from("/usr/bin/yes"),
                dev: Some(0x801),
                inode: Some(7)
            }]
        );
        assert_eq!(child.threads.len(), 2);
        assert_eq!(out.processes[&100].mappings.len(), 1);
    }

    #[test]
    fn names_filter_catches_exec_and_children_and_drops_others() {
        let src = FakeProc::default()
            .with(300, "bash", "/bin/bash", &[])
            .with(400, "other", "/bin/other", &[]);
        let mut t = Tracker::new(Filter::Names(vec!["nginx".into()]), src, 1);
        t.handle(sample(400, 400, 1, &[], &[1]));
        t.handle(sample(300, 300, 2, &[], &[1]));
        // 300 execs nginx: a COMM record with the exec flag.
        t.handle(Event::Comm(Box::new(CommEvent {
            pid: 300,
            tid: 300,
            time: 3,
            comm: "nginx".into(),
            exec: true,
        })));
        t.handle(mmap(300, 0x7000, 0x1000, "/usr/sbin/nginx"));
        t.handle(sample(300, 300, 4, &[], &[0x7010]));
        // Its child (a worker) is a target too; a stranger's child is not.
        t.handle(Event::Fork {
            pid: 301,
            ppid: 300,
            tid: 301,
            time: 5,
        });
        t.handle(sample(301, 301, 6, &[], &[0x7020]));
        t.handle(Event::Fork {
            pid: 401,
            ppid: 400,
            tid: 401,
            time: 7,
        });
        t.handle(sample(401, 401, 8, &[], &[0x9]));
        assert_eq!(t.sample_count(), 2);
        // A stranger's verdict goes when it exits.
        assert!(t.verdicts.contains_key(&401));
        t.handle(Event::Exit {
            pid: 401,
            tid: 401,
            time: 9,
        });
        assert!(!t.verdicts.contains_key(&401));
        let out = t.finish();
        assert!(out.ever_matched);
        assert_eq!(
            out.processes.keys().copied().collect::<Vec<_>>(),
            vec![300, 301]
        );
        assert_eq!(out.processes[&301].mappings.len(), 1);
        assert_eq!(out.processes[&300].comm, "nginx");
    }

    #[test]
    fn names_filter_matches_running_process_lazily() {
        let src = FakeProc::default().with(
            500,
            "nginx",
            "/usr/sbin/nginx",
            &[(0x1000, 0x2000, "/usr/sbin/nginx")],
        );
        let mut t = Tracker::new(Filter::Names(vec!["nginx".into()]), src, 1);
        t.handle(sample(500, 500, 1, &[], &[0x1100]));
        let out = t.finish();
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.processes[&500].mappings.len(), 1);
    }

    #[test]
    fn names_filter_ignores_self_and_reports_no_match() {
        let src = FakeProc::default().with(1, "nginx", "/usr/sbin/nginx", &[]);
        let mut t = Tracker::new(Filter::Names(vec!["nginx".into()]), src, 1);
        t.handle(sample(1, 1, 1, &[], &[1]));
        let out = t.finish();
        assert!(!out.ever_matched);
        assert!(out.samples.is_empty());
    }

    /// Fuzzing found the offset of a split mapping overflowing when its file
    /// offset was near 2^64.
    #[test]
    fn insert_mapping_splitting_a_huge_offset_does_not_overflow() {
        let mut v = vec![m(0x1000, 0x5000, u64::MAX - 0x10, "/a")];
        insert_mapping(&mut v, m(0x2000, 0x3000, 0, "/b"));
        assert_eq!(
            v,
            vec![
                m(0x1000, 0x2000, u64::MAX - 0x10, "/a"),
                m(0x2000, 0x3000, 0, "/b"),
                m(0x3000, 0x5000, 0x1ff0 - 1, "/a"),
            ]
        );
    }

    /// Fuzzing found a pid forked again (reused) dropping the samples and
    /// thread times of the process that had it before from the output.
    #[test]
    fn a_reused_pid_keeps_what_it_had() {
        let src = FakeProc::default().with(1, "sh", "/bin/sh", &[]);
        let mut t = Tracker::new(Filter::All, src, u32::MAX);
        t.record_off_cpu(0, 0);
        t.initial_thread(5, 5, 0, StartState::Exists);
        t.handle(sample(5, 5, 1, &[], &[0x10]));
        t.handle(Event::Switch {
            pid: 5,
            tid: 5,
            time: 2,
            cpu: 0,
            out: false,
            preempt: false,
        });
        t.handle(sample(1, 1, 3, &[], &[0x20]));
        t.handle(Event::Fork {
            pid: 5,
            ppid: 1,
            tid: 5,
            time: 4,
        });
        t.set_end(10);
        let out = t.finish();
        let p = &out.processes[&5];
        assert!(p.times.contains_key(&5));
        assert_eq!(out.samples.iter().filter(|s| s.pid == 5).count(), 2);
    }

    /// Fuzzing found an interval (and thread times) of a process the
    /// tracker did not hold, left out of the output while its sample was in.
    #[test]
    fn an_interval_brings_its_process_into_the_output() {
        let mut t = Tracker::new(Filter::All, FakeProc::default(), u32::MAX);
        t.record_off_cpu(0, 0);
        t.add_interval(Interval {
            pid: 9,
            tid: 9,
            time: 1,
            cpu: 0,
            kind: SampleKind::Blocked,
            duration: 5,
            stack: None,
            stratum: None,
        });
        t.file_accounts((
            9,
            9,
            nflame_recording::ThreadTimes {
                span: 5,
                blocked: 5,
                ..Default::default()
            },
            Vec::new(),
        ));
        t.set_end(10);
        let out = t.finish();
        assert_eq!(out.processes[&9].times[&9].blocked, 5);
        assert_eq!(out.samples.len(), 1);
    }

    /// Fuzzing found the lost count overflowing on huge `PERF_RECORD_LOST` counts.
    #[test]
    fn lost_count_saturates_instead_of_overflowing() {
        let mut t = Tracker::new(Filter::All, FakeProc::default(), 1);
        t.handle(Event::Lost {
            time: 1,
            count: u64::MAX - 1,
            stacks: false,
        });
        t.handle(Event::Lost {
            time: 2,
            count: 5,
            stacks: false,
        });
        assert_eq!(t.lost(), u64::MAX);
        assert_eq!(t.finish().lost_records, 2);
    }

    #[test]
    fn exec_replaces_mappings_and_lost_is_counted() {
        let src = FakeProc::default().with(600, "sh", "/bin/sh", &[(0x1000, 0x2000, "/bin/sh")]);
        let mut t = Tracker::new(Filter::All, src, 1);
        t.handle(sample(600, 600, 1, &[], &[0x1100]));
        t.handle(Event::Comm(Box::new(CommEvent {
            pid: 600,
            tid: 600,
            time: 2,
            comm: "python3".into(),
            exec: true,
        })));
        t.handle(mmap(600, 0x9000, 0x1000, "/usr/bin/python3"));
        t.handle(Event::Lost {
            time: 3,
            count: 5,
            stacks: false,
        });
        t.handle(Event::Lost {
            time: 4,
            count: 2,
            stacks: false,
        });
        // Lost stacks at switches are counted apart.
        t.handle(Event::Lost {
            time: 5,
            count: 9,
            stacks: true,
        });
        // Thread rename (not exec) keeps the process name.
        t.handle(Event::Comm(Box::new(CommEvent {
            pid: 600,
            tid: 601,
            time: 5,
            comm: "worker".into(),
            exec: false,
        })));
        let out = t.finish();
        assert_eq!(out.lost, 7);
        assert_eq!(out.lost_records, 2);
        assert_eq!(out.off_cpu.lost_stacks, 0, "not recording off-CPU time");
        let p = &out.processes[&600];
        assert_eq!(p.comm, "python3");
        assert_eq!(p.threads[&601], "worker");
        assert_eq!(p.mappings.len(), 1);
        assert_eq!(p.mappings[0].path, PathBuf::from("/usr/bin/python3"));
    }

    /// A sampled process that exits keeps only the mappings its user
    /// addresses need (a return address at a mapping's start is looked up
    /// in the one before) and its sampled threads' names.
    #[test]
    fn exit_keeps_only_what_naming_the_samples_needs() {
        let src = FakeProc::default().with(
            900,
            "cc1",
            "/usr/lib/cc1",
            &[
                (0x1000, 0x2000, "/usr/lib/cc1"),
                (0x2000, 0x3000, "/lib/libm.so.6"),
                (0x3000, 0x4000, "/lib/libc.so.6"),
                (0x5000, 0x6000, "/lib/ld.so"),
                (0x7000, 0x8000, "/lib/libz.so"),
            ],
        );
        let mut t = Tracker::new(Filter::All, src, 1);
        // Leaf in cc1; a return address at libc's first byte: the call is
        // the last instruction of libm.
        t.handle(sample(900, 900, 1, &[], &[0x1010, 0x3000]));
        t.handle(sample(900, 900, 2, &[], &[0x1010, 0x3000]));
        t.handle(Event::Fork {
            pid: 900,
            ppid: 900,
            tid: 901,
            time: 3,
        });
        t.handle(sample(900, 902, 4, &[0xffff], &[0x5500]));
        assert_eq!(t.procs[&900].info.mappings.len(), 5);
        assert_eq!(t.procs[&900].info.threads.len(), 3);
        t.handle(Event::Exit {
            pid: 900,
            tid: 900,
            time: 5,
        });
        // Kept as it is for a second (of sample time), then compacted.
        assert_eq!(t.procs[&900].info.mappings.len(), 5);
        t.handle(Event::Lost {
            time: 5 + SETTLE_NS,
            count: 0,
            stacks: false,
        });
        let p = &t.procs[&900];
        let kept: Vec<&str> = p
            .info
            .mappings
            .iter()
            .map(|m| m.path.to_str().unwrap())
            .collect();
        assert_eq!(
            kept,
            vec![
                "/usr/lib/cc1",
                "/lib/libm.so.6",
                "/lib/libc.so.6",
                "/lib/ld.so"
            ]
        );
        assert_eq!(
            p.info.threads.keys().copied().collect::<Vec<_>>(),
            vec![900, 902]
        );
        assert!(p.entries.is_empty());
        let out = t.finish();
        assert_eq!(out.samples.iter().map(|s| s.count).sum::<u64>(), 3);
        assert!(out.processes[&900].exited);
    }

    /// Attached to a command, each counter of a task (one per CPU and
    /// role) writes its own EXIT record: a process that exited is still
    /// compacted once, keeping the mappings and thread names its samples
    /// need (a second compaction found none of its entries and dropped
    /// them all).
    #[test]
    fn a_repeated_exit_record_compacts_once() {
        let src = FakeProc::default().with(
            900,
            "cc1",
            "/usr/lib/cc1",
            &[
                (0x1000, 0x2000, "/usr/lib/cc1"),
                (0x3000, 0x4000, "/lib/libc.so.6"),
            ],
        );
        let mut t = Tracker::new(Filter::Attached, src, 1);
        t.handle(sample(900, 900, 1, &[], &[0x1010, 0x3000]));
        for time in [5, 5, 6] {
            t.handle(Event::Exit {
                pid: 900,
                tid: 900,
                time,
            });
        }
        t.handle(Event::Lost {
            time: 6 + SETTLE_NS,
            count: 0,
            stacks: false,
        });
        let out = t.finish();
        let p = &out.processes[&900];
        assert_eq!(p.mappings.len(), 2, "{:?}", p.mappings);
        assert_eq!(p.threads.keys().copied().collect::<Vec<_>>(), vec![900]);
        // Its stack moved with its mappings: every address is in one.
        assert!(out.samples[0]
            .user
            .iter()
            .all(|&a| p.mapping_for(a).is_some()));
    }

    /// Two runs of one program, loaded at different addresses: once they
    /// exited, their mappings and stacks are moved to one canonical place,
    /// so identical stacks are stored once, and every address still names
    /// the same file offset.
    #[test]
    fn exited_runs_of_one_program_share_their_stacks() {
        let mut t = Tracker::new(Filter::All, FakeProc::default(), 1);
        for (pid, base) in [(100u32, 0x5555_0000_0000u64), (200, 0x5633_0000_0000)] {
            t.handle(mmap(pid, base, 0x2000, "/usr/bin/prog"));
            t.handle(mmap(pid, 0x7f00_0000_0000, 0x1000, "//anon"));
            t.handle(sample(
                pid,
                pid,
                1,
                &[0xffff],
                &[base + 0x10, base + 0x1020, 0x7f00_0000_0040],
            ));
        }
        let before: Vec<Arc<[u64]>> = t.samples.iter().map(|s| Arc::clone(&s.user)).collect();
        assert!(!Arc::ptr_eq(&before[0], &before[1]));
        drop(before);
        for pid in [100, 200] {
            t.handle(Event::Exit {
                pid,
                tid: pid,
                time: 2,
            });
        }
        t.handle(Event::Lost {
            time: 2 + SETTLE_NS,
            count: 0,
            stacks: false,
        });
        let out = t.finish();
        let (a, b) = (&out.samples[0], &out.samples[1]);
        assert!(Arc::ptr_eq(&a.user, &b.user), "{:x?} {:x?}", a.user, b.user);
        let (pa, pb) = (&out.processes[&a.pid], &out.processes[&b.pid]);
        assert_eq!(pa.mappings[0], pb.mappings[0]);
        let m = pa.mapping_for(a.user[1]).unwrap();
        assert_eq!(m.path, PathBuf::from("/usr/bin/prog"));
        assert_eq!(a.user[1] - m.start + m.offset, 0x1020 + 0x1000);
        // JIT code stays where it was.
        assert_eq!(a.user[2], 0x7f00_0000_0040);
        assert_eq!(
            pa.mapping_for(a.user[2]).unwrap().path,
            PathBuf::from("//anon")
        );
    }

    /// Handing out settled processes: each one that exited and was
    /// compacted leaves with all its samples (and only then), counted in
    /// the progress; a live process's samples stay and go on counting into
    /// their entries; a process the caller named stays; stacks nobody holds
    /// any more leave the intern set.
    #[test]
    fn settled_processes_are_handed_out_with_all_their_samples() {
        let src = FakeProc::default().with(50, "named", "/usr/bin/named", &[]);
        let mut t = Tracker::new(Filter::All, src, 1);
        t.hand_out_settled();
        assert!(t.add_target(50));
        for pid in [50, 100, 200, 300] {
            t.handle(mmap(pid, 0x1000, 0x2000, "/usr/bin/prog"));
            t.handle(sample(pid, pid, 1, &[0xffff], &[0x1010, pid as u64]));
            t.handle(sample(pid, pid, 2, &[0xffff], &[0x1010]));
        }
        t.handle(sample(300, 301, 2, &[0xeeee], &[0x1010]));
        assert_eq!(t.process_count(), 4);
        for pid in [50, 100, 200] {
            t.handle(Event::Exit {
                pid,
                tid: pid,
                time: 3,
            });
        }
        // Not settled yet: nothing to hand out.
        assert!(t.take_settled().is_none());
        t.handle(Event::Lost {
            time: 3 + SETTLE_NS,
            count: 0,
            stacks: false,
        });
        let Settled {
            samples,
            processes,
            gone,
        } = t.take_settled().expect("two settled processes");
        assert_eq!(
            processes.keys().copied().collect::<Vec<_>>(),
            vec![100, 200]
        );
        assert_eq!(gone, vec![100, 200]);
        assert!(processes.values().all(|p| p.exited));
        let mut of: Vec<(u32, u64)> = samples.iter().map(|s| (s.pid, s.count)).collect();
        of.sort();
        assert_eq!(of, vec![(100, 1), (100, 1), (200, 1), (200, 1)]);
        assert!(t.take_settled().is_none());
        // Still counted as seen; the live process's entries still count.
        assert_eq!(t.process_count(), 4);
        t.handle(sample(300, 301, 4 + SETTLE_NS, &[0xeeee], &[0x1010]));
        t.handle(sample(300, 300, 4 + SETTLE_NS, &[0xffff], &[0x1010]));
        drop(samples);
        let stacks = t.stacks.len();
        t.handle(Event::Exit {
            pid: 300,
            tid: 300,
            time: 5 + SETTLE_NS,
        });
        t.handle(Event::Lost {
            time: 5 + 2 * SETTLE_NS,
            count: 0,
            stacks: false,
        });
        // The handed-out stacks (`[0x1010, 100]`, …) left the intern set.
        let Settled {
            samples, processes, ..
        } = t.take_settled().expect("the last one");
        assert!(t.stacks.len() < stacks, "{} of {stacks}", t.stacks.len());
        assert_eq!(processes.keys().copied().collect::<Vec<_>>(), vec![300]);
        let mut of: Vec<(u32, u64)> = samples.iter().map(|s| (s.tid, s.count)).collect();
        of.sort();
        assert_eq!(of, vec![(300, 1), (300, 2), (301, 2)]);
        let out = t.finish();
        // The named process stays, with its samples.
        assert_eq!(out.processes.keys().copied().collect::<Vec<_>>(), vec![50]);
        assert_eq!(out.samples.iter().map(|s| s.count).sum::<u64>(), 2);
    }

    /// A small system-wide off-CPU recording: pid 1 lives throughout;
    /// pid 10 (threads 10 and 11), forked by it, runs and waits (a wait
    /// with a stack and one without in the same class, so its time is
    /// scaled; a preemption in a class without any stack), and its leader
    /// exits at 1 µs, its second thread 2.5 s later; pid 20 comes and goes.
    /// The clock then goes on with samples of pid 1.
    fn off_cpu_events() -> Vec<Event> {
        const S: u64 = SETTLE_NS;
        let fork = |pid, ppid, tid, time| Event::Fork {
            pid,
            ppid,
            tid,
            time,
        };
        let switch = |pid, tid, time, out, preempt| Event::Switch {
            pid,
            tid,
            time,
            cpu: 0,
            out,
            preempt,
        };
        let at_switch = |pid, tid, time, user: u64| {
            let Event::Sample(mut s) = sample(pid, tid, time, &[0xffff], &[user]) else {
                unreachable!("a sample")
            };
            s.at_switch = true;
            Event::Sample(s)
        };
        let exit = |pid, tid, time| Event::Exit { pid, tid, time };
        vec![
            sample(1, 1, 1, &[], &[0x1]),
            fork(10, 1, 10, 10),
            fork(10, 10, 11, 11),
            sample(10, 11, 15, &[], &[0x10]),
            sample(10, 10, 20, &[], &[0x10]),
            at_switch(10, 10, 30, 0x11),
            switch(10, 10, 30, true, false),
            switch(10, 10, 40, false, false),
            switch(10, 10, 50, true, false),
            switch(10, 10, 63, false, false),
            switch(10, 10, 70, true, true),
            at_switch(10, 11, 80, 0x12),
            switch(10, 11, 80, true, false),
            switch(10, 10, 300, false, false),
            exit(10, 10, 1_000),
            switch(10, 11, 2_000, false, false),
            fork(20, 1, 20, 2_000_000),
            sample(20, 20, 2_000_001, &[], &[0x20]),
            at_switch(20, 20, 2_000_002, 0x21),
            switch(20, 20, 2_000_002, true, false),
            switch(20, 20, 2_000_050, false, false),
            exit(20, 20, 3_000_000),
            sample(1, 1, S + S / 2, &[], &[0x1]),
            exit(10, 11, 2 * S + S / 2),
            sample(1, 1, 3 * S, &[], &[0x1]),
            sample(1, 1, 4 * S, &[], &[0x1]),
        ]
    }

    /// Count and time of the samples by pid, tid and kind.
    fn totals<'a>(
        samples: impl IntoIterator<Item = &'a RawSample>,
    ) -> BTreeMap<(u32, u32, SampleKind), (u64, u64)> {
        let mut m = BTreeMap::new();
        for s in samples {
            let e: &mut (u64, u64) = m.entry((s.pid, s.tid, s.kind)).or_default();
            e.0 += s.count;
            e.1 += s.period;
        }
        m
    }

    /// With off-CPU time, a process is handed out only once every thread
    /// of it has exited, with its threads' times and its samples' scaled
    /// time: the parts and what is left give the samples, times and
    /// processes of a recording that kept everything to the end.
    #[test]
    fn handed_out_processes_carry_their_off_cpu_time() {
        let src = || FakeProc::default().with(1, "init", "/sbin/init", &[]);
        let mut whole = Tracker::new(Filter::All, src(), u32::MAX);
        whole.record_off_cpu(0, 0);
        for ev in off_cpu_events() {
            whole.handle(ev);
        }
        whole.set_end(5 * SETTLE_NS);
        let whole = whole.finish();

        let mut t = Tracker::new(Filter::All, src(), u32::MAX);
        t.record_off_cpu(0, 0);
        t.hand_out_settled();
        let mut parts: Vec<(usize, Settled)> = Vec::new();
        for (i, ev) in off_cpu_events().into_iter().enumerate() {
            t.handle(ev);
            parts.extend(t.take_settled().map(|s| (i, s)));
        }
        t.set_end(5 * SETTLE_NS);
        let rest = t.finish();

        // Pid 20 left first; pid 10 only once its second thread had exited
        // (event 23), though its leader had settled at event 22.
        let gone: Vec<(usize, Vec<u32>)> =
            parts.iter().map(|(i, s)| (*i, s.gone.clone())).collect();
        assert_eq!(gone, vec![(22, vec![20]), (23, vec![10])]);
        let handed: Vec<&RawSample> = parts.iter().flat_map(|(_, s)| &s.samples).collect();
        assert_eq!(
            totals(handed.iter().copied().chain(&rest.samples)),
            totals(&whole.samples)
        );
        // The waits of thread 10: 10 ns with a stack and 13 without, in
        // one class (23 ns on the stack); 230 ns preempted, without any.
        let of10 = totals(handed.iter().copied().filter(|s| s.tid == 10));
        assert_eq!(of10[&(10, 10, SampleKind::Blocked)], (1, 23));
        assert_eq!(of10[&(10, 10, SampleKind::Preempted)], (1, 230));
        let mut processes = rest.processes.clone();
        for (_, part) in &parts {
            processes.extend(part.processes.clone());
        }
        assert_eq!(processes, whole.processes);
        assert_eq!(rest.processes.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(processes[&10].times.len(), 2);
        assert_eq!(processes[&10].times[&11].blocked, 1_920);
    }

    #[test]
    fn all_mode_forgets_unsampled_processes_at_exit() {
        let src = FakeProc::default().with(900, "cc1", "/usr/lib/cc1", &[]);
        let mut t = Tracker::new(Filter::All, src, 1);
        t.handle(mmap(900, 0x1000, 0x1000, "/usr/lib/cc1"));
        assert_eq!(t.procs.len(), 1);
        t.handle(Event::Exit {
            pid: 900,
            tid: 900,
            time: 2,
        });
        assert!(t.procs.is_empty());
    }

    #[test]
    fn all_mode_only_outputs_sampled_processes_and_marks_gone_ones() {
        let src = FakeProc::default().with(700, "a", "/bin/a", &[]);
        let mut t = Tracker::new(Filter::All, src, 1);
        t.handle(mmap(700, 0x1000, 0x1000, "/bin/a"));
        t.handle(sample(800, 800, 1, &[0xffff], &[]));
        let out = t.finish();
        assert_eq!(out.processes.keys().copied().collect::<Vec<_>>(), vec![800]);
        assert!(out.processes[&800].exited);
    }
}
