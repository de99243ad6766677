//! The records the BPF program writes (one per sample of a LuaJIT process),
//! decoded into [`RawLuaStack`], and [`StackMatcher`], which pairs them with
//! the sampler's perf samples by thread and time.
//!
//! Pure: no syscalls, so the byte format is tested here.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Size of the record header (`struct lua_sample` in the BPF program).
pub(crate) const HEADER_SIZE: usize = 72;
/// Size of one frame (`struct lua_frame`).
pub(crate) const FRAME_SIZE: usize = 32;

/// What the VM was doing when the sample was taken (`G->vmstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VmState {
    /// Interpreting bytecode.
    Interpreted,
    /// In a C function called from Lua (or outside the VM: idle).
    C,
    /// In the garbage collector.
    Gc,
    /// Exiting a trace.
    Exit,
    /// Recording a trace.
    Record,
    /// Optimizing a trace.
    Optimize,
    /// Assembling a trace.
    Assemble,
    /// Running compiled trace number N.
    Compiled(u32),
    /// A value nflame does not know.
    Unknown(i32),
}

impl VmState {
    /// From `G->vmstate`: `~LJ_VMST_*` when negative, else a trace number.
    pub fn from_raw(v: i32) -> Self {
        match v {
            n if n >= 0 => VmState::Compiled(n as u32),
            -1 => VmState::Interpreted,
            -2 => VmState::C,
            -3 => VmState::Gc,
            -4 => VmState::Exit,
            -5 => VmState::Record,
            -6 => VmState::Optimize,
            -7 => VmState::Assemble,
            n => VmState::Unknown(n),
        }
    }

    /// A short name for summaries ("interpreted", "compiled", "C", "GC", …).
    pub fn label(self) -> &'static str {
        match self {
            VmState::Interpreted => "interpreted",
            VmState::C => "C",
            VmState::Gc => "GC",
            VmState::Exit => "trace exit",
            VmState::Record => "trace recording",
            VmState::Optimize => "trace optimizing",
            VmState::Assemble => "trace assembling",
            VmState::Compiled(_) => "compiled",
            VmState::Unknown(_) => "unknown",
        }
    }
}

/// Samples per VM state of one process: what `lj-vm-states` showed
/// (interpreted, compiled, C, GC, trace exits, recording/optimising/assembling).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmStateCounts {
    counts: [u64; 9],
}

impl VmStateCounts {
    const ORDER: [&'static str; 9] = [
        "interpreted",
        "compiled",
        "C",
        "GC",
        "trace exit",
        "trace recording",
        "trace optimizing",
        "trace assembling",
        "unknown",
    ];

    /// Counts one sample.
    pub fn add(&mut self, s: VmState) {
        let i = Self::ORDER
            .iter()
            .position(|&l| l == s.label())
            .unwrap_or(8);
        self.counts[i] += 1;
    }

    /// Samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (label, samples) for every state, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Self::ORDER.iter().copied().zip(self.counts.iter().copied())
    }
}

/// How the BPF walk ended (`lua_sample.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalkStatus {
    /// The walk ended normally (see [`RawLuaStack::reached_bottom`]).
    Ok,
    /// No valid global_State was found.
    NoVm,
    /// G or the running lua_State could not be read.
    VmUnreadable,
    /// A frame slot could not be read.
    FrameUnreadable,
    /// A frame slot did not hold a function (a torn or unknown frame).
    BadFrame,
    /// A frame link pointed outside the stack.
    BadLink,
    /// The VM's current thread was not running Lua on the sampled thread:
    /// the process was in its own C code (a coroutine that yielded, or after
    /// `lua_pcall` returned), or another thread runs that VM.
    NotRunning,
    /// A status this version does not know.
    Other(u8),
}

impl WalkStatus {
    fn from_raw(v: u8) -> Self {
        match v {
            0 => WalkStatus::Ok,
            1 => WalkStatus::NoVm,
            2 => WalkStatus::VmUnreadable,
            3 => WalkStatus::FrameUnreadable,
            4 => WalkStatus::BadFrame,
            5 => WalkStatus::BadLink,
            6 => WalkStatus::NotRunning,
            n => WalkStatus::Other(n),
        }
    }
}

/// `lua_sample.flags`.
pub(crate) mod flags {
    pub const KERNEL: u8 = 1;
    pub const G_FROM_REG: u8 = 2;
    pub const BASE_REG: u8 = 4;
    pub const BASE_JIT: u8 = 8;
    pub const BOTTOM: u8 = 16;
    pub const TRUNCATED: u8 = 32;
}

/// One raw Lua frame: the function slot and the frame link, as in the
/// stack, and what identifies the function, read at sample time (a
/// short-lived closure may be freed before user space could read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame {
    /// The GCfunc address.
    pub func: u64,
    /// The frame link: the caller's PC (low 2 bits clear: a Lua frame), or
    /// a size and frame type (C, continuation, vararg, pcall).
    pub link: u64,
    /// A Lua function's bytecode address (`GCfunc.pc`), a C function's
    /// address (`GCfunc.f`), else 0.
    pub code: u64,
    /// The GCfunc's object type (`gct`: 8 for a function; anything else
    /// means the slot did not hold a live function).
    pub gct: u8,
    /// Its fast-function id: 0 Lua, 1 C, else a builtin.
    pub ffid: u8,
}

impl RawFrame {
    /// Whether the link is a Lua return PC.
    pub fn link_is_lua(&self) -> bool {
        self.link & 3 == 0
    }
    /// Whether the link marks a vararg frame (the same function's real frame
    /// lies below).
    pub fn link_is_vararg(&self) -> bool {
        self.link & 7 == 3
    }
}

/// The Lua stack of one sample, as read by the BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawLuaStack {
    /// Process.
    pub tgid: u32,
    /// Thread.
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds, within microseconds of the perf sample's.
    pub time_ns: u64,
    /// The global_State of the VM walked (0 when none).
    pub g: u64,
    /// The lua_State walked.
    pub l: u64,
    /// The user instruction pointer.
    pub ip: u64,
    /// The interpreter's PC register for the leaf frame, when the leaf came
    /// from registers (exact current instruction), else 0.
    pub leaf_pc: u64,
    /// For a compiled trace: the GCproto and PC it started at.
    pub trace_start: Option<(u64, u64)>,
    /// The VM state.
    pub vmstate: VmState,
    /// How the walk ended.
    pub status: WalkStatus,
    pub(crate) flags: u8,
    /// Frames, leaf first.
    pub frames: Vec<RawFrame>,
}

impl RawLuaStack {
    /// Decodes one ring-buffer record; `None` when it is too short.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
        let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
        let nframes = u16::from_le_bytes(b.get(68..70)?.try_into().ok()?) as usize;
        let mut frames = Vec::with_capacity(nframes);
        for i in 0..nframes {
            let o = HEADER_SIZE + i * FRAME_SIZE;
            let hdr = u32_at(o + 24)?;
            frames.push(RawFrame {
                func: u64_at(o)?,
                link: u64_at(o + 8)?,
                code: u64_at(o + 16)?,
                gct: (hdr >> 8) as u8,
                ffid: (hdr >> 16) as u8,
            });
        }
        let (tp, tpc) = (u64_at(48)?, u64_at(56)?);
        Some(RawLuaStack {
            tgid: u32_at(0)?,
            tid: u32_at(4)?,
            time_ns: u64_at(8)?,
            g: u64_at(16)?,
            l: u64_at(24)?,
            ip: u64_at(32)?,
            leaf_pc: u64_at(40)?,
            trace_start: (tp != 0).then_some((tp, tpc)),
            vmstate: VmState::from_raw(u32_at(64)? as i32),
            flags: *b.get(70)?,
            status: WalkStatus::from_raw(*b.get(71)?),
            frames,
        })
    }

    /// Whether the walk reached the bottom of the Lua stack (the entry
    /// chunk or the coroutine's main function is the last frame).
    pub fn reached_bottom(&self) -> bool {
        self.flags & flags::BOTTOM != 0
    }

    /// Whether the walk stopped at the frame limit before the bottom.
    pub fn truncated(&self) -> bool {
        self.flags & flags::TRUNCATED != 0
    }

    /// Whether G came from the VM's dispatch register (`r14`), i.e. the
    /// sample was taken in the interpreter or compiled code.
    pub fn g_from_register(&self) -> bool {
        self.flags & flags::G_FROM_REG != 0
    }

    /// Whether the sample was taken in the kernel (user registers came from
    /// the task).
    pub fn in_kernel(&self) -> bool {
        self.flags & flags::KERNEL != 0
    }

    /// Whether the leaf frame came from the interpreter's registers.
    pub fn leaf_from_registers(&self) -> bool {
        self.flags & flags::BASE_REG != 0
    }

    /// Whether the leaf frame is the one a compiled trace was entered in.
    pub fn leaf_from_trace(&self) -> bool {
        self.flags & flags::BASE_JIT != 0
    }
}

/// Pairs Lua stacks with perf samples. The BPF program runs when the counter
/// overflows, before perf writes the sample into its ring, so for one thread
/// the Lua stacks and the perf samples come in the same order, each Lua
/// stack within microseconds of its sample (Linux 6.1 stamps the perf sample
/// a few microseconds *before* the program runs; the pairing accepts either
/// order). Read the perf rings, then drain the BPF ring (each perf sample
/// read then has its stack), [`push`](Self::push) every stack, then
/// [`take`](Self::take) one per perf sample.
#[derive(Debug, Default)]
pub struct StackMatcher {
    by_tid: FxHashMap<u32, VecDeque<RawLuaStack>>,
    window_ns: u64,
}

impl StackMatcher {
    /// A matcher pairing a sample with a Lua stack taken at most `window_ns`
    /// before or after it. Keep the window well under the sampling period
    /// (a thread's next sample must not fall in it).
    pub fn new(window_ns: u64) -> Self {
        Self {
            by_tid: FxHashMap::default(),
            window_ns,
        }
    }

    /// Adds a Lua stack.
    pub fn push(&mut self, s: RawLuaStack) {
        self.by_tid.entry(s.tid).or_default().push_back(s);
    }

    /// The Lua stack of the perf sample of thread `tid` at `time_ns`, if one
    /// was taken for it (within the window, either side); older unmatched
    /// stacks of that thread are dropped.
    pub fn take(&mut self, tid: u32, time_ns: u64) -> Option<RawLuaStack> {
        let q = self.by_tid.get_mut(&tid)?;
        while q
            .front()
            .is_some_and(|s| s.time_ns.saturating_add(self.window_ns) < time_ns)
        {
            q.pop_front(); // its sample was lost
        }
        if q.front()
            .is_some_and(|s| s.time_ns <= time_ns.saturating_add(self.window_ns))
        {
            return q.pop_front();
        }
        None // the next stack belongs to a later sample
    }

    /// Drops stacks older than `time_ns` (call after draining a round).
    pub fn expire_before(&mut self, time_ns: u64) {
        self.by_tid.retain(|_, q| {
            while q.front().is_some_and(|s| s.time_ns < time_ns) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tid: u32, time: u64, frames: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(&7u32.to_le_bytes());
        b[4..8].copy_from_slice(&tid.to_le_bytes());
        b[8..16].copy_from_slice(&time.to_le_bytes());
        b[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        b[64..68].copy_from_slice(&5i32.to_le_bytes());
        b[68..70].copy_from_slice(&(frames.len() as u16).to_le_bytes());
        b[70] = flags::BOTTOM | flags::BASE_JIT;
        for (f, l) in frames {
            b.extend_from_slice(&f.to_le_bytes());
            b.extend_from_slice(&l.to_le_bytes());
            b.extend_from_slice(&0x5000u64.to_le_bytes());
            b.extend_from_slice(&0x0000_0800u32.to_le_bytes()); // gct 8, ffid 0
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_a_record() {
        let s = RawLuaStack::parse(&record(9, 100, &[(0xa0, 0x4000), (0xb0, 0x19)])).unwrap();
        assert_eq!((s.tgid, s.tid, s.time_ns), (7, 9, 100));
        assert_eq!(s.vmstate, VmState::Compiled(5));
        assert_eq!(s.trace_start, Some((0x1000, 0)));
        assert!(s.reached_bottom() && s.leaf_from_trace() && !s.leaf_from_registers());
        assert_eq!(s.frames.len(), 2);
        assert!(s.frames[0].link_is_lua() && !s.frames[1].link_is_lua());
        assert_eq!(
            (s.frames[0].code, s.frames[0].gct, s.frames[0].ffid),
            (0x5000, 8, 0)
        );
        assert!(RawLuaStack::parse(&record(9, 100, &[(1, 2)])[..96]).is_none());
    }

    #[test]
    fn counts_vm_states() {
        let mut c = VmStateCounts::default();
        for v in [-1, 3, 4, -2, -3, -5] {
            c.add(VmState::from_raw(v));
        }
        let m: Vec<_> = c.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            m,
            [
                ("interpreted", 1),
                ("compiled", 2),
                ("C", 1),
                ("GC", 1),
                ("trace recording", 1)
            ]
        );
        assert_eq!(c.total(), 6);
    }

    #[test]
    fn matches_by_thread_and_time() {
        let mut m = StackMatcher::new(1000);
        for (tid, t) in [(1, 100), (1, 5000), (2, 4990)] {
            m.push(RawLuaStack::parse(&record(tid, t, &[])).unwrap());
        }
        // Thread 1's first stack is too old for a sample at 5010; the second fits.
        assert_eq!(m.take(1, 5010).map(|s| s.time_ns), Some(5000));
        assert_eq!(
            m.take(2, 3000),
            None,
            "a stack taken well after the sample is kept for a later one"
        );
        // A stack stamped a little after its sample (Linux 6.1) pairs too.
        assert_eq!(m.take(2, 4985).map(|s| s.time_ns), Some(4990));
        assert_eq!(m.take(3, 5000), None);
    }
}
