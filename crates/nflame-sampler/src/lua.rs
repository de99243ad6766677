//! Lua frames for samples of LuaJIT processes: the sampler's side of
//! `nflame-luajit`.
//!
//! [`LuaSide`] loads the BPF program that walks Lua stacks, attaches it to
//! the recorder's own sampling counters (so it runs on exactly the samples
//! taken), registers the LuaJIT processes it finds (the targets at attach,
//! then any process at its first sample, a child forked by a LuaJIT process
//! at its FORK record, a process that maps `libluajit*.so`), forgets them at
//! EXIT and re-checks them after `exec`. In the drain loop it reads the
//! program's ring buffer after the perf rings and before their records are
//! handled (the program runs before the kernel writes the perf sample, so
//! every perf sample read then finds its Lua stack), pairs each perf sample
//! with its Lua stack by thread and time,
//! names the frames while the process lives (cached per function by the
//! `Namer`), and hands the tracker an interned [`LuaStack`].
//!
//! Without BPF (no privilege, an old kernel) the recording goes on with
//! C-level stacks: the reason becomes one note, given when a LuaJIT process
//! was seen. A process whose LuaJIT build cannot be read gets its reason in
//! [`LuaProcess::off`]. Perf counters, `/proc` bookkeeping and unwinding are
//! other modules'.

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

use nflame_luajit::{
    LuaFrameKind, LuaProbe, Namer, NotReadable, StackMatcher, VmState, WalkStatus,
};
use nflame_recording::{LuaFrame, LuaProcess, LuaStack, LuaVmState, ProcessInfo};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::Event;

/// A perf sample is paired with a Lua stack taken at most this long before
/// or after its timestamp (the program runs microseconds from it), and at
/// most a quarter of the sampling period (a thread's next sample must not
/// fall in the window).
const MATCH_WINDOW_NS: u64 = 200_000;
/// Lua stacks whose perf sample never came (lost) are dropped after this.
const EXPIRE_NS: u64 = 2_000_000_000;
/// Longest reason kept from a cause (a verifier log can be megabytes).
const MAX_REASON: usize = 240;

/// What is known about one process.
#[derive(Debug)]
enum Checked {
    /// No LuaJIT in it (as of its current image).
    NoLuaJit,
    /// LuaJIT found while BPF is off (only named in the note).
    SeenWithoutProbe,
    /// LuaJIT found: registered with the probe when readable.
    Lua {
        /// What the recording will say about it.
        info: LuaProcess,
        /// Registered with the probe and the namer.
        active: bool,
    },
}

/// The Lua side of a recording (see the module docs).
pub(crate) struct LuaSide {
    probe: Option<LuaProbe>,
    /// Why Lua frames are off for the whole recording.
    off: Option<String>,
    namer: Namer,
    matcher: StackMatcher,
    lines: bool,
    own_pid: u32,
    procs: FxHashMap<u32, Checked>,
    /// Processes that `exec`ed: checked again at their next sample.
    recheck: FxHashSet<u32>,
    /// Where processes' VM code now lies (empty: no VM), for the unwinder;
    /// taken by [`LuaSide::vm_code_changes`].
    changes: Vec<(u32, Vec<Range<u64>>)>,
    stacks: FxHashSet<Arc<LuaStack>>,
    texts: FxHashSet<Arc<str>>,
    newest: u64,
    /// LuaJIT processes seen while BPF is off that were handed out
    /// ([`LuaSide::hand_out`]), for the note: how many, and the
    /// [`NOTE_PIDS`] smallest pids with their names.
    without_gone: (usize, BTreeMap<u32, String>),
}

/// Processes a note names.
const NOTE_PIDS: usize = 5;

impl std::fmt::Debug for LuaSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaSide")
            .field("probe", &self.probe.is_some())
            .field("off", &self.off)
            .field("processes", &self.procs.len())
            .finish_non_exhaustive()
    }
}

/// A reason for the summary: the error's message and its first cause's
/// first line, bounded.
fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    if let Some(cause) = e.source() {
        let line = cause.to_string();
        let line = line.lines().next().unwrap_or("").trim();
        if !line.is_empty() && !s.contains(line) {
            s.push_str(": ");
            s.push_str(line);
        }
    }
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn state_of(v: VmState) -> LuaVmState {
    match v {
        VmState::Interpreted => LuaVmState::Interpreted,
        VmState::Compiled(_) => LuaVmState::Compiled,
        VmState::C => LuaVmState::C,
        VmState::Gc => LuaVmState::Gc,
        VmState::Exit => LuaVmState::TraceExit,
        VmState::Record => LuaVmState::TraceRecord,
        VmState::Optimize => LuaVmState::TraceOptimize,
        VmState::Assemble => LuaVmState::TraceAssemble,
        _ => LuaVmState::Unknown,
    }
}

/// Whether a mapped file is a LuaJIT library (mapping one is a reason to look again).
fn is_luajit_library(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libluajit") && n.contains(".so"))
}

impl LuaSide {
    /// Loads the program; without BPF, Lua frames are off (the reason is
    /// kept for the note) and the recording goes on.
    pub(crate) fn new(lines: bool, own_pid: u32, frequency: u64) -> LuaSide {
        let (probe, off) = match LuaProbe::load() {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(reason(&e))),
        };
        LuaSide::with_probe(probe, off, lines, own_pid, frequency)
    }

    fn with_probe(
        probe: Option<LuaProbe>,
        off: Option<String>,
        lines: bool,
        own_pid: u32,
        frequency: u64,
    ) -> LuaSide {
        LuaSide {
            probe,
            off,
            namer: Namer::new(),
            matcher: StackMatcher::new(MATCH_WINDOW_NS.min(1_000_000_000 / frequency.max(1) / 4)),
            lines,
            own_pid,
            procs: FxHashMap::default(),
            recheck: FxHashSet::default(),
            changes: Vec::new(),
            stacks: FxHashSet::default(),
            texts: FxHashSet::default(),
            newest: 0,
            without_gone: (0, BTreeMap::new()),
        }
    }

    /// Runs the program on every overflow of these sampling counters. A
    /// failure turns Lua frames off for the recording.
    pub(crate) fn attach<'a>(&mut self, counters: impl IntoIterator<Item = BorrowedFd<'a>>) {
        let Some(probe) = &self.probe else { return };
        for fd in counters {
            if let Err(e) = probe.attach(fd) {
                self.off = Some(reason(&e));
                self.probe = None;
                return;
            }
        }
    }

    /// Looks for LuaJIT in `pid` now (a target at attach, or a process just
    /// seen) and registers it when found and readable.
    pub(crate) fn check(&mut self, pid: u32) {
        if pid == 0 || pid == self.own_pid {
            self.procs.insert(pid, Checked::NoLuaJit);
            return;
        }
        let Some(probe) = self.probe.as_mut() else {
            let c = if nflame_luajit::has_luajit(pid) {
                Checked::SeenWithoutProbe
            } else {
                Checked::NoLuaJit
            };
            self.procs.insert(pid, c);
            return;
        };
        let previous = self.procs.remove(&pid);
        let mut info = match previous {
            Some(Checked::Lua { info, .. }) => info,
            _ => LuaProcess::default(),
        };
        let checked = match probe.add_process(pid) {
            Ok(found) => match self.namer.add_process(&found) {
                Ok(()) => {
                    info.build = found.to_string();
                    info.off = None;
                    info.vm_code = found.vm_code();
                    info.vm_code.sort_by_key(|r| r.start);
                    Checked::Lua { info, active: true }
                }
                Err(e) => {
                    probe.remove_process(pid);
                    info.build = found.to_string();
                    info.off = Some(reason(&e));
                    Checked::Lua {
                        info,
                        active: false,
                    }
                }
            },
            Err(NotReadable::NoLuaJit) => Checked::NoLuaJit,
            // Gone before its maps were read: nothing to say about it.
            Err(NotReadable::Proc { what: "maps", .. }) if info.lua_samples() == 0 => {
                Checked::NoLuaJit
            }
            Err(e) => {
                info.off = Some(reason(&e));
                Checked::Lua {
                    info,
                    active: false,
                }
            }
        };
        let code = match &checked {
            Checked::Lua { info, active: true } => info.vm_code.clone(),
            _ => Vec::new(),
        };
        self.changes.push((pid, code));
        self.procs.insert(pid, checked);
    }

    /// Processes whose VM code changed since the last call, with where it
    /// lies now (empty: no readable VM): native frames there are unwound
    /// like JIT code.
    pub(crate) fn vm_code_changes(&mut self) -> std::vec::Drain<'_, (u32, Vec<Range<u64>>)> {
        self.changes.drain(..)
    }

    /// Registers `pid`, forked by the registered `parent`, as a copy of it
    /// (no memory scan: forks come in bursts, nginx's workers at start and
    /// at each reload); checked from scratch when that fails.
    fn forked(&mut self, pid: u32, parent: u32) {
        let Some(found) = self.probe.as_mut().and_then(|p| p.add_forked(pid, parent)) else {
            self.check(pid);
            return;
        };
        if self.namer.add_process(&found).is_err() {
            if let Some(p) = self.probe.as_mut() {
                p.remove_process(pid);
            }
            self.check(pid);
            return;
        }
        let mut info = LuaProcess {
            build: found.to_string(),
            vm_code: found.vm_code(),
            ..LuaProcess::default()
        };
        info.vm_code.sort_by_key(|r| r.start);
        self.changes.push((pid, info.vm_code.clone()));
        self.procs.insert(pid, Checked::Lua { info, active: true });
    }

    /// Stops following `pid` (it exited, or is about to be re-checked);
    /// what was counted for it is kept.
    fn retire(&mut self, pid: u32) {
        if let Some(Checked::Lua { active, .. }) = self.procs.get_mut(&pid) {
            if *active {
                if let Some(p) = self.probe.as_mut() {
                    p.remove_process(pid);
                }
                self.namer.remove_process(pid);
                *active = false;
                self.changes.push((pid, Vec::new()));
            }
        }
    }

    /// Reads the program's ring buffer: call after draining the perf rings
    /// and before handling their records.
    pub(crate) fn drain(&mut self) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        self.namer.new_round();
        let matcher = &mut self.matcher;
        let newest = &mut self.newest;
        probe.drain(|raw| {
            *newest = (*newest).max(raw.time_ns);
            matcher.push(raw);
        });
        self.matcher
            .expire_before(self.newest.saturating_sub(EXPIRE_NS));
    }

    /// Follows one record before the tracker sees it: for a sample, the Lua
    /// stack taken with it (named, interned); for FORK, EXEC, MMAP and EXIT,
    /// which processes to (re)check or forget.
    pub(crate) fn on_event(&mut self, ev: &Event) -> Option<Arc<LuaStack>> {
        match ev {
            Event::Sample(s) => {
                let (pid, tid, time) = (s.pid, s.tid, s.time);
                if !self.procs.contains_key(&pid) || self.recheck.remove(&pid) {
                    self.check(pid);
                }
                self.sample(pid, tid, time)
            }
            Event::Fork { pid, ppid, .. } if pid != ppid => {
                // A worker forked by a LuaJIT master runs the same VM.
                match self.procs.get(ppid) {
                    Some(Checked::Lua { active: true, .. }) => self.forked(*pid, *ppid),
                    Some(Checked::SeenWithoutProbe) => self.check(*pid),
                    _ => {}
                }
                None
            }
            Event::Comm(c) if c.exec => {
                // A new image: look again at its next sample (keeping what
                // was counted for the old one).
                self.retire(c.pid);
                self.recheck.insert(c.pid);
                None
            }
            Event::Mmap(m) if is_luajit_library(&m.path) => {
                let pid = m.pid;
                self.recheck.remove(&pid);
                if !matches!(
                    self.procs.get(&pid),
                    Some(Checked::Lua { active: true, .. })
                ) {
                    self.check(pid);
                }
                None
            }
            Event::Exit { pid, tid, .. } if pid == tid => {
                self.retire(*pid);
                None
            }
            _ => None,
        }
    }

    /// The Lua stack of the perf sample of `tid` at `time`, if the program
    /// took one for it.
    fn sample(&mut self, pid: u32, tid: u32, time: u64) -> Option<Arc<LuaStack>> {
        let Some(Checked::Lua { info, active: true }) = self.procs.get_mut(&pid) else {
            return None;
        };
        let raw = self.matcher.take(tid, time)?;
        if raw.tgid != pid || raw.status == WalkStatus::NotRunning {
            // The thread ran the process's own C code: no Lua frames.
            return None;
        }
        let named = self.namer.resolve(&raw);
        let state = state_of(named.vmstate);
        *info.states.entry(state).or_default() += 1;
        if matches!(state, LuaVmState::Interpreted | LuaVmState::Compiled)
            || info.is_vm_code(raw.ip)
        {
            info.in_lua_code += 1;
            // The outermost Lua function is the entry chunk (below it there
            // may be the C function that ran it: `luajit`'s pmain).
            let outermost = named
                .frames
                .iter()
                .find(|f| matches!(f.kind, LuaFrameKind::Lua { .. }));
            if named.complete && outermost.is_some_and(|f| f.is_main_chunk()) {
                info.reached_entry += 1;
            }
        }
        if named.frames.is_empty() {
            return None;
        }
        let mut frames = Vec::with_capacity(named.frames.len());
        for f in &named.frames {
            frames.push(match f.kind {
                LuaFrameKind::CFunction { addr, name: None } => LuaFrame::C(addr),
                _ => {
                    let text = f.folded(self.lines).unwrap_or_default();
                    LuaFrame::Named(self.text(text))
                }
            });
        }
        let stack = LuaStack { state, frames };
        if let Some(s) = self.stacks.get(&stack) {
            return Some(Arc::clone(s));
        }
        let s = Arc::new(stack);
        self.stacks.insert(Arc::clone(&s));
        Some(s)
    }

    fn text(&mut self, s: String) -> Arc<str> {
        if let Some(t) = self.texts.get(s.as_str()) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(s);
        self.texts.insert(Arc::clone(&t));
        t
    }

    /// The processes `gone` left the recording before its end (they exited
    /// and are handed out with `processes`, those of them that had samples):
    /// what was found of LuaJIT in each goes into its [`ProcessInfo::lua`],
    /// as [`LuaSide::finish`] does for the others, and is forgotten here.
    /// Their Lua stacks were named as they were read, and every sample of
    /// theirs was, so nothing more of them is needed.
    pub(crate) fn hand_out(&mut self, gone: &[u32], processes: &mut BTreeMap<u32, ProcessInfo>) {
        for &pid in gone {
            self.recheck.remove(&pid);
            if let Some(Checked::Lua { info, active: true }) = self.procs.get(&pid) {
                // Registered again since its exit: a new process under the
                // pid. What was counted stays with that one; the one gone
                // still gets its VM, to put its Lua frames in place.
                if let Some(p) = processes.get_mut(&pid) {
                    p.lua = Some(LuaProcess {
                        build: info.build.clone(),
                        off: info.off.clone(),
                        vm_code: info.vm_code.clone(),
                        ..LuaProcess::default()
                    });
                }
                continue;
            }
            match (self.procs.remove(&pid), processes.get_mut(&pid)) {
                (Some(Checked::Lua { info, .. }), Some(p)) => p.lua = Some(info),
                (Some(Checked::SeenWithoutProbe), Some(p)) => {
                    let (count, names) = &mut self.without_gone;
                    *count += 1;
                    names.insert(pid, p.comm.clone());
                    while names.len() > NOTE_PIDS {
                        names.pop_last();
                    }
                }
                _ => {}
            }
        }
    }

    /// Puts what was found into the recording: each LuaJIT process's
    /// [`ProcessInfo::lua`], and the notes (Lua frames off, and why).
    pub(crate) fn finish(
        self,
        processes: &mut BTreeMap<u32, ProcessInfo>,
        notes: &mut Vec<String>,
    ) {
        // Those handed out, and those in the recording.
        let (mut count, mut without) = self.without_gone;
        for (pid, checked) in self.procs {
            match checked {
                Checked::Lua { info, .. } => {
                    if let Some(p) = processes.get_mut(&pid) {
                        p.lua = Some(info);
                    }
                }
                Checked::SeenWithoutProbe => {
                    if let Some(p) = processes.get(&pid) {
                        count += 1;
                        without.insert(pid, p.comm.clone());
                    }
                }
                _ => {}
            }
        }
        if let (Some(off), false) = (&self.off, without.is_empty()) {
            let mut who: Vec<String> = without
                .iter()
                .take(NOTE_PIDS)
                .map(|(pid, comm)| {
                    if comm.is_empty() {
                        pid.to_string()
                    } else {
                        format!("{pid} ({comm})")
                    }
                })
                .collect();
            if count > NOTE_PIDS {
                who.push(format!("and {} more", count - NOTE_PIDS));
            }
            notes.push(format!(
                "Lua frames off: {off}; LuaJIT processes {} have C-level stacks only",
                who.join(", ")
            ));
        }
        if let Some(probe) = &self.probe {
            let st = probe.stats();
            if st.ring_full > 0 {
                notes.push(format!(
                    "{} Lua stacks lost (the BPF ring buffer was full): those samples have C-level stacks",
                    st.ring_full
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_bounded_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("the kernel rejected the Lua stack program")]
        struct Rejected(#[source] std::io::Error);
        let log = format!("verifier says\n{}", "x".repeat(10_000));
        let r = reason(&Rejected(std::io::Error::other(log)));
        assert_eq!(
            r,
            "the kernel rejected the Lua stack program: verifier says"
        );
        let long = std::io::Error::other("y".repeat(1000));
        assert!(reason(&long).chars().count() <= MAX_REASON + 1);
    }

    /// A process handed out takes what was found of LuaJIT in it (and it
    /// is forgotten here); one whose pid a new LuaJIT process took again
    /// gets its VM only (the counts stay with the new one); the note on
    /// LuaJIT processes without Lua frames names those handed out too,
    /// the smallest pids first, and counts them all.
    #[test]
    fn handed_out_processes_take_their_lua_data() {
        let mut side = LuaSide::with_probe(None, Some("no BPF".into()), false, 1, 999);
        let found = |build: &str, samples: u64| LuaProcess {
            build: build.into(),
            vm_code: std::iter::once(0x1000..0x2000).collect(),
            states: BTreeMap::from([(LuaVmState::Interpreted, samples)]),
            in_lua_code: samples,
            ..LuaProcess::default()
        };
        side.procs.insert(
            10,
            Checked::Lua {
                info: found("exited", 7),
                active: false,
            },
        );
        side.procs.insert(
            11,
            Checked::Lua {
                info: found("again", 3),
                active: true,
            },
        );
        side.procs.insert(12, Checked::NoLuaJit);
        for pid in [20, 21, 22, 23, 24, 25, 26] {
            side.procs.insert(pid, Checked::SeenWithoutProbe);
        }
        let info = |pid: u32, comm: &str| ProcessInfo {
            pid,
            comm: comm.into(),
            ..ProcessInfo::default()
        };
        let mut part: BTreeMap<u32, ProcessInfo> = [10, 11, 12, 21, 22, 23, 24, 25, 26]
            .into_iter()
            .map(|pid| (pid, info(pid, "luajit")))
            .collect();
        // 20 had no samples: not in the part.
        side.hand_out(&[10, 11, 12, 20, 21, 22, 23, 24, 25, 26], &mut part);
        assert_eq!(part[&10].lua, Some(found("exited", 7)));
        let again = part[&11].lua.as_ref().expect("its VM");
        assert_eq!((again.build.as_str(), again.lua_samples()), ("again", 0));
        assert_eq!(again.vm_code, found("again", 3).vm_code);
        assert_eq!(part[&12].lua, None);
        assert_eq!(
            side.procs.keys().copied().collect::<Vec<_>>(),
            vec![11],
            "only the live process is left"
        );
        // Two more without Lua frames in the recording, one of them with
        // a smaller pid than every one handed out.
        side.procs.insert(5, Checked::SeenWithoutProbe);
        side.procs.insert(30, Checked::SeenWithoutProbe);
        let mut rest = BTreeMap::from([
            (5, info(5, "")),
            (30, info(30, "luajit")),
            (11, info(11, "x")),
        ]);
        let mut notes = Vec::new();
        side.finish(&mut rest, &mut notes);
        assert_eq!(rest[&11].lua, Some(found("again", 3)));
        assert_eq!(
            notes,
            vec![
                "Lua frames off: no BPF; LuaJIT processes 5, 21 (luajit), 22 (luajit), \
                 23 (luajit), 24 (luajit), and 3 more have C-level stacks only"
            ]
        );
    }

    #[test]
    fn luajit_libraries_are_recognised() {
        assert!(is_luajit_library(Path::new(
            "/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0"
        )));
        assert!(!is_luajit_library(Path::new("/usr/lib/libc.so.6")));
        assert!(!is_luajit_library(Path::new("/usr/bin/luajit")));
    }
}
