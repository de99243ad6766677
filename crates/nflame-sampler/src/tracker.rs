//! Bookkeeping of a recording, free of syscalls: which processes are targets,
//! their comm, threads and executable mappings as side-band records change
//! them, and the samples with interned stacks.
//!
//! It consumes [`Event`]s in timestamp order and asks a [`ProcSource`] (the
//! real `/proc`, or a table in tests) about processes it has not seen yet.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::{Event, UserRegs};
use crate::unwind::{Outcome as Unwound, StackSample, StackUnwinder};
use nflame_procfs::process::{ProcSource, Snapshot};
use nflame_recording::{Mapping, ProcessInfo, RawSample, UnwindMethod};

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

/// Identity of a [`RawSample`] entry: pid, tid, user stack, whether it is
/// truncated, kernel stack. Interned stacks are told apart by address: the
/// tracker's intern set keeps every one alive until the end.
type SampleKey = (u32, u32, usize, bool, usize);

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
    throttled: u64,
    ever_matched: bool,
    mode: StackMode,
    unwinder: Option<Box<dyn StackUnwinder>>,
    /// Source of [`Proc::map_gen`] values.
    next_gen: u64,
    /// Scratch space for unwound stacks.
    unwound: Vec<u64>,
    /// Processes that exited, with the time of their exit, to compact.
    exits: VecDeque<(u64, u32)>,
    /// The latest sample time seen.
    clock: u64,
    /// Canonical base address of each file (path, device, inode) whose
    /// mappings exited processes are moved to (see [`Tracker::compact`]).
    canon: FxHashMap<(PathBuf, Option<u64>, Option<u64>), u64>,
    next_canon: u64,
    /// Compacted processes to hand out (see [`Tracker::take_settled`]),
    /// when the caller takes them.
    settled: Option<Vec<u32>>,
    /// Processes handed out that [`Tracker::process_count`] counted.
    handed_out: usize,
}

/// What [`Tracker::take_settled`] hands out: the samples of processes that
/// exited and were compacted, and those processes.
pub(crate) type Settled = (Vec<RawSample>, BTreeMap<u32, ProcessInfo>);

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
            throttled: 0,
            ever_matched: false,
            mode: StackMode::FramePointer,
            unwinder: None,
            next_gen: 1,
            unwound: Vec::new(),
            exits: VecDeque::new(),
            clock: 0,
            canon: FxHashMap::default(),
            next_canon: CANON_START,
            settled: None,
            handed_out: 0,
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

    pub(crate) fn handle(&mut self, ev: Event) {
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
            Event::Sample {
                pid,
                tid,
                time,
                cpu,
                period,
                kernel,
                user,
                regs,
                stack,
            } => {
                if !self.wants(pid) {
                    return;
                }
                let p = self.ensure(pid);
                p.samples += 1;
                if !p.info.threads.contains_key(&tid) {
                    let name = p.info.comm.clone();
                    p.info.threads.insert(tid, name);
                }
                let (user, user_truncated) = self.user_stack(pid, user, regs, &stack);
                let kernel = self.intern(kernel);
                self.sample_total += 1;
                let key = (
                    pid,
                    tid,
                    user.as_ptr() as usize,
                    user_truncated,
                    kernel.as_ptr() as usize,
                );
                match self.sample_index.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let s = &mut self.samples[*e.get()];
                        s.count += 1;
                        s.period = s.period.saturating_add(period);
                        s.time = s.time.min(time);
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.samples.len());
                        if let Some(p) = self.procs.get_mut(&pid) {
                            p.entries.push(self.samples.len());
                        }
                        self.samples.push(RawSample {
                            pid,
                            tid,
                            time,
                            cpu,
                            count: 1,
                            period,
                            kernel,
                            user,
                            user_truncated,
                        });
                    }
                }
            }
            Event::Comm {
                pid,
                tid,
                comm,
                exec,
                ..
            } => self.on_comm(pid, tid, comm, exec),
            Event::Fork { pid, ppid, tid, .. } => self.on_fork(pid, ppid, tid),
            Event::Exit { pid, tid, time } => {
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
                } else {
                    self.exits.push_back((time, pid));
                }
            }
            Event::Mmap {
                pid,
                start,
                len,
                pgoff,
                path,
                dev,
                inode,
                executable,
                ..
            } => {
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
        self.procs.insert(
            pid,
            Proc {
                info,
                target: true,
                explicit: false,
                samples: 0,
                map_gen: 0,
                entries: Vec::new(),
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
    pub(crate) fn take_settled(&mut self) -> Option<Settled> {
        let pids = std::mem::take(self.settled.as_mut()?);
        // Stacks only the intern set holds (those of earlier parts, by now
        // folded and dropped) go.
        self.stacks.retain(|a| Arc::strong_count(a) > 1);
        let keep_all_targets = self.filter != Filter::All;
        let mut gone: FxHashSet<u32> = FxHashSet::default();
        let mut processes = BTreeMap::new();
        for pid in pids {
            if !self
                .procs
                .get(&pid)
                .is_some_and(|p| p.info.exited && !p.explicit)
            {
                // A new process reused the pid meanwhile, or it is gone.
                continue;
            }
            let Some(p) = self.procs.remove(&pid) else {
                continue;
            };
            gone.insert(pid);
            self.verdicts.remove(&pid);
            if p.samples > 0 || (keep_all_targets && p.target) {
                processes.insert(pid, p.info);
                self.handed_out += 1;
            }
        }
        if gone.is_empty() {
            return None;
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
        Some((out, processes))
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
                    s.user.as_ptr() as usize,
                    s.user_truncated,
                    s.kernel.as_ptr() as usize,
                ));
            }
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
        Event::Sample {
            pid,
            tid,
            time,
            cpu: 0,
            period: 1_000_000,
            kernel: k.to_vec(),
            user: u.to_vec(),
            regs: None,
            stack: Vec::new(),
        }
    }

    fn mmap(pid: u32, start: u64, len: u64, p: &str) -> Event {
        Event::Mmap {
            pid,
            time: 0,
            start,
            len,
            pgoff: 0x1000,
            path: PathBuf::from(p),
            dev: Some(0x801),
            inode: Some(7),
            executable: true,
        }
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
        t.handle(Event::Comm {
            pid: 200,
            tid: 200,
            time: 2,
            comm: "yes".into(),
            exec: true,
        });
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
        t.handle(Event::Comm {
            pid: 300,
            tid: 300,
            time: 3,
            comm: "nginx".into(),
            exec: true,
        });
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

    /// Fuzzing found the lost count overflowing on huge `PERF_RECORD_LOST` counts.
    #[test]
    fn lost_count_saturates_instead_of_overflowing() {
        let mut t = Tracker::new(Filter::All, FakeProc::default(), 1);
        t.handle(Event::Lost {
            time: 1,
            count: u64::MAX - 1,
        });
        t.handle(Event::Lost { time: 2, count: 5 });
        assert_eq!(t.lost(), u64::MAX);
        assert_eq!(t.finish().lost_records, 2);
    }

    #[test]
    fn exec_replaces_mappings_and_lost_is_counted() {
        let src = FakeProc::default().with(600, "sh", "/bin/sh", &[(0x1000, 0x2000, "/bin/sh")]);
        let mut t = Tracker::new(Filter::All, src, 1);
        t.handle(sample(600, 600, 1, &[], &[0x1100]));
        t.handle(Event::Comm {
            pid: 600,
            tid: 600,
            time: 2,
            comm: "python3".into(),
            exec: true,
        });
        t.handle(mmap(600, 0x9000, 0x1000, "/usr/bin/python3"));
        t.handle(Event::Lost { time: 3, count: 5 });
        t.handle(Event::Lost { time: 4, count: 2 });
        // Thread rename (not exec) keeps the process name.
        t.handle(Event::Comm {
            pid: 600,
            tid: 601,
            time: 5,
            comm: "worker".into(),
            exec: false,
        });
        let out = t.finish();
        assert_eq!(out.lost, 7);
        assert_eq!(out.lost_records, 2);
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
        });
        let (samples, processes) = t.take_settled().expect("two settled processes");
        assert_eq!(
            processes.keys().copied().collect::<Vec<_>>(),
            vec![100, 200]
        );
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
        });
        // The handed-out stacks (`[0x1010, 100]`, …) left the intern set.
        let (samples, processes) = t.take_settled().expect("the last one");
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
