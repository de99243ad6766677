//! [`LuaProbe`]: the BPF program that walks Lua stacks when a sample is
//! taken, loaded with aya, its per-process configuration map, and its ring
//! buffer of [`RawLuaStack`]s.
//!
//! The program (`bpf/luastack.bpf.c`, compiled by `scripts/build-bpf.sh`, the
//! object committed and embedded here) is attached to the sampler's own
//! perf counters with `PERF_EVENT_IOC_SET_BPF`, so it runs on exactly the
//! samples the sampler takes. This module owns every BPF syscall of the
//! crate; it does not open perf counters.

use std::collections::HashMap as StdHashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::PerfEvent;
use aya::{Ebpf, EbpfLoader};
use rustc_hash::FxHashMap;

use crate::error::{LuaError, NotReadable};
use crate::layout::Layout;
use crate::process::{self, LuaProcessInfo};
use crate::record::RawLuaStack;

/// The compiled program (see `scripts/build-bpf.sh`), 8-byte aligned as the
/// ELF parser requires.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!("../bpf/luastack.bpf.o"));

/// The most frames the program can walk.
pub const MAX_FRAMES: u32 = 128;

/// Options of [`LuaProbe::load_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProbeOptions {
    /// Frames walked per sample, at most [`MAX_FRAMES`]. Default is 128.
    pub max_frames: u32,
    /// Ring buffer size in bytes (a power of two, at least a page).
    /// Default is 4 MiB: about 2,000 samples of 128 frames, 20,000 of 8.
    pub ring_bytes: u32,
    /// Have the kernel measure the program's run time (BPF_ENABLE_STATS,
    /// while the probe lives), reported in [`ProbeStats`]. Default is false.
    pub measure_cost: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            max_frames: MAX_FRAMES,
            ring_bytes: 4 << 20,
            measure_cost: false,
        }
    }
}

/// `struct lua_proc_cfg` of the program.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ProcConfig {
    g: u64,
    vm_start: u64,
    vm_end: u64,
    g2disp: u32,
    glref: u32,
    l_base: u32,
    l_stack: u32,
    l_maxstack: u32,
    mainthref: u32,
    cur_l: u32,
    vmstate: u32,
    jit_base: u32,
    trace_arr: u32,
    trace_startpt: u32,
    trace_startpc: u32,
    max_frames: u32,
    func_pc: u32,
    func_cfunc: u32,
    l_cframe: u32,
}

// SAFETY: ProcConfig is repr(C), made of integers only, with no padding
// (3 u64 then 16 u32), so every bit pattern is valid and it can be copied
// to and from the kernel as bytes.
unsafe impl aya::Pod for ProcConfig {}

impl ProcConfig {
    fn new(info: &LuaProcessInfo, max_frames: u32) -> Self {
        let l = &info.layout;
        ProcConfig {
            g: info.g.unwrap_or(0),
            vm_start: info.vm.start,
            vm_end: info.vm.end,
            g2disp: l.g2disp,
            glref: l.l_glref,
            l_base: l.l_base,
            l_stack: l.l_stack,
            l_maxstack: l.l_maxstack,
            mainthref: l.g_mainthref,
            cur_l: l.g_cur_l,
            vmstate: l.g_vmstate,
            // 0 = no JIT: vmstate never holds a trace number then.
            jit_base: l.g_jit_base.unwrap_or(0),
            trace_arr: l.g_trace_arr.unwrap_or(0),
            trace_startpt: l.trace_startpt,
            trace_startpc: l.trace_startpc,
            max_frames,
            func_pc: l.func_pc,
            func_cfunc: l.func_cfunc,
            l_cframe: l.l_cframe,
        }
    }
}

/// Counters kept by the program, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeStats {
    /// Samples of registered processes.
    pub seen: u64,
    /// Records written to the ring buffer.
    pub sent: u64,
    /// Records lost because the ring buffer was full.
    pub ring_full: u64,
    /// Samples where no VM was found.
    pub no_vm: u64,
    /// Runs of the program (every sample of every attached counter), when
    /// [`ProbeOptions::measure_cost`] is set.
    pub runs: u64,
    /// Their total run time in nanoseconds (same condition).
    pub run_time_ns: u64,
}

/// The loaded Lua stack program. One per recording.
pub struct LuaProbe {
    ebpf: Ebpf,
    procs: HashMap<MapData, u32, ProcConfig>,
    events: RingBuf<MapData>,
    stats: PerCpuArray<MapData, u64>,
    layouts: FxHashMap<(u64, String), Option<Arc<Layout>>>,
    registered: StdHashMap<u32, LuaProcessInfo>,
    max_frames: u32,
    /// Keeps the kernel's BPF run-time statistics on while open.
    stats_fd: Option<std::os::fd::OwnedFd>,
}

impl std::fmt::Debug for LuaProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaProbe")
            .field("processes", &self.registered.keys().collect::<Vec<_>>())
            .field("max_frames", &self.max_frames)
            .finish_non_exhaustive()
    }
}

/// The OS error code somewhere in an error's chain.
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        cur = err.source();
    }
    None
}

fn classify(e: impl std::error::Error + Send + Sync + 'static) -> LuaError {
    match os_error(&e) {
        Some(libc::EPERM) | Some(libc::EACCES) => LuaError::NotPermitted {
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        },
        Some(libc::EINVAL) | Some(libc::E2BIG) => {
            // Distinguish a verifier rejection from a missing feature by
            // what the kernel lacks: bpf_loop and ring buffers came in 5.17/5.8.
            if kernel_older_than(5, 17) {
                LuaError::Unsupported {
                    source: Box::new(e),
                }
            } else {
                LuaError::Rejected {
                    source: Box::new(e),
                }
            }
        }
        _ => LuaError::Unsupported {
            source: Box::new(e),
        },
    }
}

fn kernel_older_than(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) < (major, minor)
}

impl LuaProbe {
    /// Loads the program with default options.
    pub fn load() -> Result<Self, LuaError> {
        Self::load_with(&ProbeOptions::default())
    }

    /// Loads the program into the kernel (it runs only once attached).
    pub fn load_with(opts: &ProbeOptions) -> Result<Self, LuaError> {
        let ring = opts.ring_bytes.max(4096).next_power_of_two();
        let mut ebpf = EbpfLoader::new()
            .set_max_entries("lua_events", ring)
            .load(&OBJECT.0)
            .map_err(classify)?;
        let prog: &mut PerfEvent = ebpf
            .program_mut("lua_stack")
            .ok_or_else(|| LuaError::Unsupported {
                source: "program lua_stack missing from the object".into(),
            })?
            .try_into()
            .map_err(classify)?;
        prog.load().map_err(classify)?;
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name).ok_or_else(|| LuaError::Unsupported {
                source: format!("map {name} missing from the object").into(),
            })
        };
        let procs = HashMap::try_from(take(&mut ebpf, "lua_procs")?).map_err(classify)?;
        let events = RingBuf::try_from(take(&mut ebpf, "lua_events")?).map_err(classify)?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, "lua_stats")?).map_err(classify)?;
        Ok(LuaProbe {
            ebpf,
            procs,
            events,
            stats,
            layouts: FxHashMap::default(),
            registered: StdHashMap::new(),
            max_frames: opts.max_frames.clamp(1, MAX_FRAMES),
            stats_fd: if opts.measure_cost {
                enable_stats()
            } else {
                None
            },
        })
    }

    /// Finds LuaJIT in process `pid`, reads and checks its layout, and
    /// registers it: from now on samples of it carry Lua stacks.
    pub fn add_process(&mut self, pid: u32) -> Result<LuaProcessInfo, NotReadable> {
        let info = process::inspect(pid, &mut self.layouts)?;
        let cfg = ProcConfig::new(&info, self.max_frames);
        self.procs
            .insert(pid, cfg, 0)
            .map_err(|e| NotReadable::Proc {
                pid,
                what: "registration",
                source: std::io::Error::other(e),
            })?;
        self.registered.insert(pid, info.clone());
        Ok(info)
    }

    /// Registers `pid`, just forked by the registered process `parent`, as
    /// a copy of it (same binary, same addresses, same VM: an nginx worker
    /// of its master) without reading the process again; `None` when
    /// `parent` is not registered. A child that makes a VM of its own is
    /// followed by the program (it takes G from the VM's dispatch register).
    pub fn add_forked(&mut self, pid: u32, parent: u32) -> Option<LuaProcessInfo> {
        let mut info = self.registered.get(&parent)?.clone();
        info.pid = pid;
        info.g = self.current_g(parent).or(info.g);
        let cfg = ProcConfig::new(&info, self.max_frames);
        self.procs.insert(pid, cfg, 0).ok()?;
        self.registered.insert(pid, info.clone());
        Some(info)
    }

    /// Stops walking Lua stacks of `pid` (e.g. it exited).
    pub fn remove_process(&mut self, pid: u32) {
        let _ = self.procs.remove(&pid);
        self.registered.remove(&pid);
    }

    /// What [`add_process`](Self::add_process) found for `pid`.
    pub fn process(&self, pid: u32) -> Option<&LuaProcessInfo> {
        self.registered.get(&pid)
    }

    /// The global_State the program last used for `pid` (learnt from the
    /// dispatch register when it was not known at registration).
    pub fn current_g(&self, pid: u32) -> Option<u64> {
        self.procs
            .get(&pid, 0)
            .ok()
            .map(|c| c.g)
            .filter(|&g| g != 0)
    }

    /// Runs the program on every overflow of the perf counter `perf_fd`
    /// (`PERF_EVENT_IOC_SET_BPF`). The counter must be a sampling counter;
    /// its samples are still written to its ring buffer as before.
    pub fn attach(&self, perf_fd: BorrowedFd<'_>) -> Result<(), LuaError> {
        let prog: &PerfEvent = self
            .ebpf
            .program("lua_stack")
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| LuaError::Unsupported {
                source: "program lua_stack missing".into(),
            })?;
        let prog_fd = prog.fd().map_err(classify)?.as_fd().as_raw_fd();
        const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
        // SAFETY: ioctl on a valid, borrowed fd with an int argument (the
        // program's fd), as PERF_EVENT_IOC_SET_BPF expects; no memory is shared.
        let rc = unsafe { libc::ioctl(perf_fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog_fd) };
        if rc != 0 {
            return Err(LuaError::Attach {
                fd: perf_fd.as_raw_fd(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Calls `f` with every Lua stack written since the last call. A stack
    /// is written before its perf sample: drained after the perf rings were
    /// read, every perf sample read finds its stack (see
    /// [`StackMatcher`](crate::StackMatcher)).
    pub fn drain(&mut self, mut f: impl FnMut(RawLuaStack)) -> usize {
        let mut n = 0;
        while let Some(item) = self.events.next() {
            if let Some(s) = RawLuaStack::parse(&item) {
                f(s);
                n += 1;
            }
        }
        n
    }

    /// The program's counters.
    pub fn stats(&self) -> ProbeStats {
        let sum = |i: u32| self.stats.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        let (runs, run_time_ns) = self.run_stats().unwrap_or((0, 0));
        ProbeStats {
            seen: sum(0),
            sent: sum(1),
            ring_full: sum(2),
            no_vm: sum(3),
            runs,
            run_time_ns,
        }
    }

    /// run_cnt and run_time_ns of the program, from its fd's fdinfo.
    fn run_stats(&self) -> Option<(u64, u64)> {
        self.stats_fd.as_ref()?;
        let prog: &PerfEvent = self.ebpf.program("lua_stack")?.try_into().ok()?;
        let fd = prog.fd().ok()?.as_fd().as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        Some((field("run_cnt:")?, field("run_time_ns:")?))
    }
}

/// Turns on the kernel's BPF run-time statistics for as long as the
/// returned fd is open (BPF_ENABLE_STATS, Linux >= 5.8).
fn enable_stats() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    const BPF_ENABLE_STATS: libc::c_long = 32;
    // union bpf_attr for BPF_ENABLE_STATS: { u32 type }, BPF_STATS_RUN_TIME = 0.
    let attr = [0u64; 16];
    // SAFETY: the bpf syscall reads `size` bytes of a zeroed attribute union
    // and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), 8u32) };
    // SAFETY: a fresh fd owned by nobody else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The ring buffer's fd: readable when Lua stacks are waiting (poll it with
/// the perf rings).
impl AsRawFd for LuaProbe {
    fn as_raw_fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_say_why() {
        let perm = classify(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(perm, LuaError::NotPermitted { .. }), "{perm:?}");
        assert!(perm.to_string().contains("CAP_BPF"));
        let nosys = classify(std::io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(matches!(nosys, LuaError::Unsupported { .. }), "{nosys:?}");
        // Wrapped errors are looked through.
        let wrapped = classify(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_create",
            io_error: std::io::Error::from_raw_os_error(libc::EACCES),
        }));
        assert!(
            matches!(wrapped, LuaError::NotPermitted { .. }),
            "{wrapped:?}"
        );
    }
}
