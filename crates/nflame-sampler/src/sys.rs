//! The only module that talks to the kernel: perf counters and their ring
//! buffers (through the `perf-event-open` crate), `poll(2)`, and starting,
//! signalling and reaping a command to record.
//!
//! It knows nothing about targets or bookkeeping: it opens what it is told to,
//! hands decoded records to a callback, and reports `io::Error`s unchanged so
//! the caller can name the operation that failed.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use perf_event_open::config::{
    CallChain, Clock, Cpu, Inherit, Mmap, OnExecve, Opts, Proc, RecordIdFormat, RegsMask,
    SampleFormat, SampleOn, Size, StatFormat, UseBuildId, WakeUp, WakeUpOn,
};
use perf_event_open::count::Counter;
use perf_event_open::event::hw::Hardware;
use perf_event_open::event::sw::Software;
use perf_event_open::sample::record::Record;
use perf_event_open::sample::Sampler;

use crate::event::Source;

/// Which perf event a counter samples on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PerfEvent {
    Cycles,
    CpuClock,
    /// The `context-switches` software event: it fires in the task leaving
    /// the CPU, with kernel registers (so it needs kernel sampling).
    ContextSwitches,
    /// The `dummy` software event: counts nothing, carries side-band records.
    Dummy,
}

impl PerfEvent {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PerfEvent::Cycles => "cycles",
            PerfEvent::CpuClock => "cpu-clock",
            PerfEvent::ContextSwitches => "context-switches",
            PerfEvent::Dummy => "dummy",
        }
    }
}

/// What one counter observes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// One task (thread) on one CPU; new children inherit the counter.
    Task {
        tid: u32,
        cpu: u32,
        enable_on_exec: bool,
    },
    /// Every task on one CPU.
    Cpu { cpu: u32 },
}

/// Everything but the scope of a counter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CounterConfig {
    pub(crate) event: PerfEvent,
    /// Samples a second (the kernel adapts the period), or every Nth event
    /// (`count`: N, changed later with [`PerfCounter::set_period`]).
    pub(crate) frequency: u64,
    pub(crate) count: Option<u64>,
    pub(crate) user: bool,
    pub(crate) kernel: bool,
    /// Ring buffer data size is `2^ring_exp` pages.
    pub(crate) ring_exp: u8,
    /// Ask for the user part of the kernel's frame-pointer call chain.
    pub(crate) user_chain: bool,
    /// Copy this many bytes of user stack, with the registers DWARF
    /// unwinding needs, into every sample (0: none).
    pub(crate) stack_bytes: u32,
    /// Emit the side-band records (fork, exit, comm, mmap) on this counter;
    /// one counter per scope has them.
    pub(crate) side_band: bool,
    /// Emit context-switch records (`PERF_RECORD_SWITCH`, `_CPU_WIDE` for
    /// a CPU scope).
    pub(crate) switches: bool,
}

/// `PERF_REG_X86_BP`, `_SP`, `_IP`: the registers an x86-64 unwinder needs.
/// The kernel writes the selected registers in bit order: bp, sp, ip.
pub(crate) const UNWIND_REGS_MASK: u64 = (1 << 6) | (1 << 7) | (1 << 8);

/// `PERF_EVENT_IOC_SET_OUTPUT`: `_IO('$', 5)`.
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
/// `PERF_EVENT_IOC_PERIOD`: `_IOW('$', 4, __u64)`.
const PERF_EVENT_IOC_PERIOD: libc::c_ulong = 0x4008_2404;

/// One opened counter with its mapped ring buffer, or writing into another
/// counter's buffer on the same CPU (as `perf record` does for threads).
pub(crate) struct PerfCounter {
    counter: Counter,
    sampler: Option<Sampler>,
    source: Source,
}

impl std::fmt::Debug for PerfCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfCounter")
            .field("fd", &self.counter.file().as_raw_fd())
            .finish()
    }
}

/// Why a counter could not be set up.
#[derive(Debug)]
pub(crate) struct OpenError {
    /// `perf_event_open` succeeded but mapping the ring buffer failed.
    pub(crate) mmap: bool,
    pub(crate) source: io::Error,
}

impl PerfCounter {
    /// Opens a disabled counter (or one that enables itself at `exec`) and maps
    /// its ring buffer, or redirects its records into `output`'s buffer (which
    /// must be on the same CPU, with the same configuration).
    pub(crate) fn open(
        config: &CounterConfig,
        scope: Scope,
        output: Option<&PerfCounter>,
    ) -> Result<PerfCounter, OpenError> {
        let open_err = |source| OpenError {
            mmap: false,
            source,
        };
        let mut opts = Opts::default();
        let at_switch = config.event == PerfEvent::ContextSwitches;
        if !at_switch {
            opts.exclude.user = !config.user;
            opts.exclude.kernel = !config.kernel;
        }
        // The idle task only matters to software clocks; hardware PMUs do not
        // count while the CPU is halted, and some reject the flag.
        opts.exclude.idle = config.event == PerfEvent::CpuClock;
        opts.sample_on = match config.count {
            Some(n) => SampleOn::Count(n),
            None => SampleOn::Freq(config.frequency),
        };
        let user_chain = config.user && config.user_chain;
        let dwarf = config.user && config.stack_bytes > 0;
        opts.sample_format = SampleFormat {
            // Not for context switches: with a period field and a fixed
            // period, the kernel samples every software event and ignores
            // the period (`perf_swevent_event`). Their count is not needed.
            period: !at_switch,
            call_chain: (user_chain || config.kernel).then_some(CallChain {
                exclude_user: !user_chain,
                exclude_kernel: !config.kernel,
                defer_user: false,
                max_stack_frames: 0,
            }),
            user_stack: dwarf.then_some(Size(config.stack_bytes)),
            user_regs: dwarf.then_some(RegsMask(UNWIND_REGS_MASK)),
            ..SampleFormat::default()
        };
        opts.record_id_format = RecordIdFormat {
            task: true,
            time: true,
            cpu: true,
            ..RecordIdFormat::default()
        };
        opts.record_id_all = true;
        opts.timer = Some(Clock::Monotonic);
        opts.stat_format = StatFormat {
            lost_records: true,
            ..StatFormat::default()
        };
        opts.extra_record.task = config.side_band;
        opts.extra_record.comm = config.side_band;
        opts.extra_record.mmap = Mmap {
            code: config.side_band,
            data: false,
            ext: Some(UseBuildId(false)),
        };
        opts.extra_record.ctx_switch = config.switches;
        let data_bytes = (page_size() << config.ring_exp) as u32;
        opts.wake_up = WakeUp {
            on: WakeUpOn::Bytes(data_bytes / 4),
            on_aux_bytes: 0,
        };
        opts.enable = false;

        let counter = match scope {
            Scope::Task {
                tid,
                cpu,
                enable_on_exec,
            } => {
                opts.inherit = Some(Inherit::NewChild);
                if enable_on_exec {
                    opts.on_execve = Some(OnExecve::Enable);
                }
                open_event(config.event, (Proc(tid), Cpu(cpu)), &opts).map_err(open_err)?
            }
            Scope::Cpu { cpu } => {
                open_event(config.event, (Proc::ALL, Cpu(cpu)), &opts).map_err(open_err)?
            }
        };
        if let Some(out) = output {
            let fd = counter.file().as_raw_fd();
            // SAFETY: both fds are open perf event fds we own; SET_OUTPUT takes
            // the target fd as an integer argument and touches no user memory.
            let rc = unsafe { libc::ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, out.raw_fd()) };
            if rc != 0 {
                return Err(OpenError {
                    mmap: true,
                    source: io::Error::last_os_error(),
                });
            }
            return Ok(PerfCounter {
                counter,
                sampler: None,
                source: config.source(),
            });
        }
        let sampler = counter
            .sampler(config.ring_exp)
            .map_err(|source| OpenError { mmap: true, source })?;
        Ok(PerfCounter {
            counter,
            sampler: Some(sampler),
            source: config.source(),
        })
    }

    /// What the samples in this counter's buffer are.
    pub(crate) fn source(&self) -> Source {
        self.source
    }

    /// Whether this counter owns a ring buffer (to poll and drain).
    pub(crate) fn has_buffer(&self) -> bool {
        self.sampler.is_some()
    }

    pub(crate) fn enable(&self) -> io::Result<()> {
        self.counter.enable()
    }

    pub(crate) fn disable(&self) -> io::Result<()> {
        self.counter.disable()
    }

    /// Samples every `period` events from now on (a counter opened with a
    /// count). Inherited copies made before keep their period; later ones
    /// take this one.
    pub(crate) fn set_period(&self, period: u64) -> io::Result<()> {
        let fd = self.counter.file().as_raw_fd();
        // SAFETY: `fd` is an open perf event fd we own; the kernel reads one
        // u64 from the pointer, which points at a live local.
        let rc = unsafe { libc::ioctl(fd, PERF_EVENT_IOC_PERIOD, &raw const period) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Lost records as counted by the kernel (`PERF_FORMAT_LOST`), if readable.
    pub(crate) fn lost(&self) -> Option<u64> {
        self.counter.stat().ok().and_then(|s| s.lost_records)
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.counter.file().as_raw_fd()
    }

    /// The counter's fd (to attach a BPF program to).
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.counter.file().as_fd()
    }

    /// Decodes and consumes every record in the ring buffer. Returns how many.
    pub(crate) fn drain(&self, mut f: impl FnMut(Record)) -> usize {
        let Some(iter) = self.sampler.as_ref().and_then(Sampler::iter) else {
            return 0;
        };
        let mut n = 0;
        for (_, record) in iter {
            f(record);
            n += 1;
        }
        n
    }
}

impl CounterConfig {
    fn source(&self) -> Source {
        match self.event {
            PerfEvent::ContextSwitches => Source::Switch,
            PerfEvent::Dummy => Source::SideBand,
            _ => Source::OnCpu,
        }
    }
}

/// Opens, on thread `tid`, a disabled counter that its children do not
/// inherit, held for as long as the thread is recorded. The kernel treats
/// the perf context of a child whose every counter was inherited as a
/// clone of its parent's, and at a switch between the two (a process
/// waiting for the child it just started: a shell, `os.execute`) swaps the
/// contexts instead of switching them: the parent's own counters then
/// follow the child, go when it exits, and the parent is not sampled again
/// (measured: a shell starting `sleep 0.05` in a loop, 0 samples of its
/// ~20 ms of CPU in 3 s without this counter, 10-12 with it). One counter
/// that is not inherited keeps the contexts apart; it never counts.
pub(crate) fn pin_context(tid: u32) -> io::Result<Counter> {
    let opts = Opts {
        enable: false,
        ..Opts::default()
    };
    Counter::new(Software::Dummy, (Proc(tid), Cpu::ALL), &opts)
}

fn open_event(
    event: PerfEvent,
    target: impl Into<perf_event_open::config::Target>,
    opts: &Opts,
) -> io::Result<Counter> {
    match event {
        PerfEvent::Cycles => Counter::new(Hardware::CpuCycle, target, opts),
        PerfEvent::CpuClock => Counter::new(Software::CpuClock, target, opts),
        PerfEvent::ContextSwitches => Counter::new(Software::CtxSwitch, target, opts),
        PerfEvent::Dummy => Counter::new(Software::Dummy, target, opts),
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of the records' timestamps.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the kernel writes into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Copies up to `buf.len()` bytes of process `pid`'s memory at `addr`
/// into `buf` (`process_vm_readv`; needs ptrace access). Returns how many
/// bytes were read from `addr` on: fewer when the range runs into unmapped
/// memory (the remote range is split at page boundaries so that the kernel
/// copies every readable page before the first unreadable one).
pub(crate) fn read_process_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let page = page_size() as u64;
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut remote = Vec::new();
    let mut at = addr;
    let end = addr.saturating_add(buf.len() as u64);
    while at < end {
        let next = (at / page + 1).saturating_mul(page).min(end);
        remote.push(libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: (next - at) as usize,
        });
        at = next;
    }
    // SAFETY: `local` describes `buf`, exclusively borrowed and valid for
    // `buf.len()` bytes, and the remote pieces add up to that length; the
    // remote ranges are only read, in the other process, by the kernel,
    // which reports faults there as errors or short counts.
    let n = unsafe {
        libc::process_vm_readv(
            pid as libc::pid_t,
            &local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Readiness of one polled fd.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub(crate) hangup: bool,
}

/// `poll(2)` on `fds` for readability. Fills `out` (same length as `fds`).
/// EINTR is a timeout.
pub(crate) fn poll_fds(fds: &[i32], timeout: Duration, out: &mut Vec<Ready>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    out.clear();
    if pfds.is_empty() {
        std::thread::sleep(timeout);
        return Ok(());
    }
    // SAFETY: `pfds` is a valid, exclusively borrowed array of `pfds.len()`
    // pollfd structs for the duration of the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    out.extend(pfds.iter().map(|p| Ready {
        hangup: p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
    }));
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (per-thread counters need
/// one fd each). Best effort.
pub(crate) fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit struct the kernel writes into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid, initialised rlimit struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn own_pid() -> u32 {
    std::process::id()
}

/// A forked child, stopped before `exec` until [`Child::release`].
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) pid: u32,
    go: Option<OwnedFd>,
    exec_error: Option<OwnedFd>,
    reaped: Option<i32>,
}

/// Searches `PATH` like `execvp` would, so that the child only calls `execv`.
fn resolve_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Child {
    /// Forks a child that waits for [`Child::release`] and then `exec`s `argv`.
    pub(crate) fn spawn_suspended(argv: &[OsString]) -> io::Result<Child> {
        let program = argv
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let path = resolve_program(program).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in PATH", program.to_string_lossy()),
            )
        })?;
        let to_c = |s: &OsStr| {
            CString::new(s.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
        };
        let c_path = to_c(path.as_os_str())?;
        let c_args = argv
            .iter()
            .map(|a| to_c(a))
            .collect::<io::Result<Vec<_>>>()?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());

        let (go_r, go_w) = pipe_cloexec()?;
        let (err_r, err_w) = pipe_cloexec()?;

        // SAFETY: fork has no memory-safety preconditions. In the child we only
        // call async-signal-safe functions (close, read, write, sigprocmask,
        // signal, execv, _exit) on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; all pointers refer to memory prepared before
            // the fork, which the child's copy of the address space still holds.
            unsafe {
                libc::close(go_w.as_raw_fd());
                libc::close(err_r.as_raw_fd());
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                let mut byte = 0u8;
                loop {
                    let n = libc::read(go_r.as_raw_fd(), (&raw mut byte).cast(), 1);
                    if n == 1 {
                        break;
                    }
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    // The recorder went away without releasing us.
                    libc::_exit(127);
                }
                libc::execv(c_path.as_ptr(), c_argv.as_ptr());
                let errno = *libc::__errno_location();
                let bytes = errno.to_ne_bytes();
                libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127);
            }
        }
        drop(go_r);
        drop(err_w);
        Ok(Child {
            pid: pid as u32,
            go: Some(go_w),
            exec_error: Some(err_r),
            reaped: None,
        })
    }

    /// Lets the child `exec`, and reports whether the `exec` failed.
    pub(crate) fn release(&mut self) -> io::Result<()> {
        let Some(go) = self.go.take() else {
            return Ok(());
        };
        let byte = [1u8];
        // SAFETY: `go` is an open fd we own; `byte` is valid for one byte.
        let n = unsafe { libc::write(go.as_raw_fd(), byte.as_ptr().cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        drop(go);
        let Some(err) = self.exec_error.take() else {
            return Ok(());
        };
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: `err` is an open fd we own; the destination range lies
            // inside `buf`.
            let n = unsafe {
                libc::read(
                    err.as_raw_fd(),
                    buf[got..].as_mut_ptr().cast(),
                    buf.len() - got,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                break;
            }
            got += n as usize;
        }
        if got == 4 {
            // exec failed; the child exits with 127.
            let _ = self.wait_timeout(Duration::from_secs(1));
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf)));
        }
        Ok(())
    }

    /// Reaps the child if it has exited. Returns its status as a shell would
    /// report it (exit code, or 128 + signal).
    pub(crate) fn try_wait(&mut self) -> Option<i32> {
        if self.reaped.is_some() {
            return self.reaped;
        }
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; `pid` is our own child.
        let rc = unsafe { libc::waitpid(self.pid as i32, &mut status, libc::WNOHANG) };
        if rc == self.pid as i32 {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                return None;
            };
            self.reaped = Some(code);
        } else if rc < 0 {
            // ECHILD: somebody else reaped it; treat as gone.
            self.reaped = Some(-1);
        }
        self.reaped
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        if self.reaped.is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // unreaped child, so it cannot have been reused.
            unsafe { libc::kill(self.pid as i32, sig) };
        }
    }

    /// Ends the child: SIGTERM, then SIGKILL after `grace`. Returns its status.
    pub(crate) fn terminate(&mut self, grace: Duration) -> Option<i32> {
        if self.go.is_some() {
            // Never released: closing the pipe makes it exit.
            self.go = None;
        }
        if let Some(s) = self.try_wait() {
            return Some(s);
        }
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_timeout(grace) {
            return Some(s);
        }
        self.signal(libc::SIGKILL);
        self.wait_timeout(Duration::from_secs(5))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.terminate(Duration::from_millis(500));
        }
    }
}
