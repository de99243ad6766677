//! The recording loop: checks privileges, opens counters for the target,
//! polls and drains their ring buffers, feeds the [`Tracker`] in timestamp
//! order, and decides when to stop.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::adapt::StackCopy;
use crate::error::Error;
use crate::event::Event;
use crate::options::{EventChoice, Progress, RecordOptions, Target};
use crate::sys::{self, Child, CounterConfig, OpenError, PerfCounter, PerfEvent, Ready, Scope};
use crate::tracker::{name_matches, Filter, StackMode, Tracker};
use crate::unwind::DwarfUnwinder;
use nflame_procfs::process::{self as procfs, ProcSource, Procfs};
use nflame_procfs::system;
use nflame_recording::CallGraph;
use nflame_recording::{Recording, StopReason};

/// Total ring-buffer memory we allow before shrinking per-counter buffers.
const RING_BUDGET: usize = 64 << 20;
/// Ring buffer pages per counter at least, when samples carry stack copies.
const DWARF_RING_PAGES: usize = 4096;
/// Longest time between two drains.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often `/proc` is checked for targets whose EXIT record we missed.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);
/// How often [`record_with_exited`] hands out the processes that exited.
const HAND_OUT_INTERVAL: Duration = Duration::from_secs(2);

/// Records on-CPU samples of `opts.target` until the duration elapses, `stop`
/// becomes true, or (for pids and commands) every target has exited.
///
/// `progress` is called from this thread about every
/// [`RecordOptions::progress_interval`], and once at the end.
pub fn record(
    opts: &RecordOptions,
    stop: &AtomicBool,
    progress: impl FnMut(&Progress),
) -> Result<Recording, Error> {
    record_inner(opts, stop, progress, None)
}

/// [`record()`], handing the processes that exit during the recording to
/// `exited` as it goes, instead of keeping them: every couple of seconds,
/// the processes that exited at least a second (of sample time) earlier, so
/// that no sample of them can still come, each with *all* its samples, in a
/// [`Recording`] of their own (its `samples` and `processes`; `event`,
/// `frequency`, `kernel`, `user`, `call_graph` and `stack_bytes` as the
/// recording's). They are not in the returned recording, whose samples and
/// processes are the rest; processes the caller named ([`Target::Pids`],
/// the command of [`Target::Command`]) always stay in it. A caller that folds each part and drops it keeps
/// memory bounded while programs come and go.
pub fn record_with_exited(
    opts: &RecordOptions,
    stop: &AtomicBool,
    progress: impl FnMut(&Progress),
    mut exited: impl FnMut(Recording),
) -> Result<Recording, Error> {
    record_inner(opts, stop, progress, Some(&mut exited))
}

fn record_inner(
    opts: &RecordOptions,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
    mut exited: Option<&mut dyn FnMut(Recording)>,
) -> Result<Recording, Error> {
    validate(opts)?;
    let paranoid = system::perf_event_paranoid().ok_or_else(|| Error::Unsupported {
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "/proc/sys/kernel/perf_event_paranoid does not exist",
        ),
    })?;
    if let Some(max) = system::max_sample_rate() {
        if opts.frequency > max {
            return Err(Error::FrequencyTooHigh {
                requested: opts.frequency,
                max,
            });
        }
    }
    let privileged = sys::euid() == 0 || system::has_perfmon_capability();
    let mut notes = Vec::new();
    let mut kernel = opts.kernel;
    if kernel && !privileged && paranoid >= 2 {
        if !opts.user {
            return Err(Error::PermissionDenied {
                what: "kernel-only sampling".into(),
                paranoid: paranoid.to_string(),
                hint: "",
                source: io::Error::from_raw_os_error(libc::EACCES),
            });
        }
        kernel = false;
        notes.push(format!(
            "kernel frames excluded: kernel.perf_event_paranoid is {paranoid} and this user \
             has neither root nor CAP_PERFMON"
        ));
    }
    let system_wide = matches!(opts.target, Target::All | Target::Names(_));
    if system_wide && !privileged && paranoid > 0 {
        return Err(Error::PermissionDenied {
            what: "system-wide sampling (all processes, or processes by name)".into(),
            paranoid: paranoid.to_string(),
            hint: "; without privileges, record your own processes by pid or command instead",
            source: io::Error::from_raw_os_error(libc::EACCES),
        });
    }
    sys::raise_fd_limit();
    let cpus = system::online_cpus();

    let mut session = Session {
        opts,
        paranoid,
        privileged,
        kernel,
        cpus,
        event: settled_event(opts.event),
        counters: Vec::new(),
        buffer_of_cpu: Vec::new(),
        stack_bytes: opts.call_graph.stack_bytes(),
        cpu_ring_exp: None,
    };

    let own = sys::own_pid();
    let (filter, mut child, pids) = match &opts.target {
        Target::Pids(pids) => {
            let tgids = session.open_pids(pids)?;
            (Filter::Attached, None, tgids)
        }
        Target::Command(argv) => {
            let child = session.open_command(argv)?;
            (Filter::Attached, Some(child), Vec::new())
        }
        Target::All => {
            session.open_cpus()?;
            (Filter::All, None, Vec::new())
        }
        Target::Names(names) => {
            session.open_cpus()?;
            (Filter::Names(names.clone()), None, Vec::new())
        }
    };
    let event = session.event.unwrap_or(PerfEvent::CpuClock);
    let mut counters = std::mem::take(&mut session.counters);

    let mut tracker = Tracker::new(filter, Procfs, own);
    if exited.is_some() {
        tracker.hand_out_settled();
    }
    let stack_bytes = if opts.user {
        opts.call_graph.stack_bytes()
    } else {
        0
    };
    // Every CPU, stacks copied because `Auto` chose it: fewer bytes, or
    // none, when samples are lost (see `adapt`).
    let mut adapt =
        (system_wide && opts.call_graph == CallGraph::Auto && stack_bytes > 0).then(|| {
            let ring = sys::page_size() << session.cpu_ring_exp.unwrap_or(0);
            StackCopy::new(stack_bytes, ring as u64, opts.frequency)
        });
    // Lost counts of counters replaced by `adapt`.
    let mut retired_lost = 0u64;
    if stack_bytes > 0 {
        let requested = stack_bytes as usize;
        let mode = match opts.call_graph {
            CallGraph::Dwarf { .. } => StackMode::Dwarf { requested },
            _ => StackMode::Auto { requested },
        };
        tracker.set_unwinding(mode, Box::new(DwarfUnwinder::default()));
    }
    let start = Instant::now();
    if let Some(child) = child.as_mut() {
        // Counters enable themselves at the exec.
        if let Err(source) = child.release() {
            return Err(Error::Spawn {
                program: program_name(&opts.target),
                source,
            });
        }
        let program = command_path(&opts.target);
        tracker.add_command(child.pid, &program);
    } else {
        for c in &counters {
            c.enable().map_err(|source| Error::Io {
                op: "enabling a perf counter".into(),
                source,
            })?;
        }
    }
    // Snapshot targets after enabling, so no mapping falls in between.
    for &pid in &pids {
        if !tracker.add_target(pid) {
            return Err(Error::ProcessExited { pid });
        }
    }
    if let Target::Names(names) = &opts.target {
        for pid in procfs::all_pids() {
            if pid == own {
                continue;
            }
            if let Some((comm, exe)) = Procfs.comm_and_exe(pid) {
                if name_matches(names, &comm, exe.as_deref()) {
                    tracker.add_target(pid);
                }
            }
        }
    }

    // The loop.
    let mut fds: Vec<i32> = buffer_fds(&counters);
    let mut hung = vec![false; fds.len()];
    let mut ready: Vec<Ready> = Vec::new();
    let mut batch: Vec<Event> = Vec::new();
    let mut last_progress = start;
    let mut last_liveness = start;
    let mut last_hand_out = start;
    let attached = matches!(opts.target, Target::Pids(_) | Target::Command(_));
    let stop_reason = loop {
        let elapsed = start.elapsed();
        if stop.load(Ordering::Relaxed) {
            break StopReason::Stopped;
        }
        if opts.duration.is_some_and(|d| elapsed >= d) {
            break StopReason::Duration;
        }
        let mut timeout = POLL_INTERVAL;
        if let Some(d) = opts.duration {
            timeout = timeout.min(d.saturating_sub(elapsed));
        }
        if !batch.is_empty() {
            // A backlog is waiting: read what came meanwhile, no waiting.
            timeout = Duration::ZERO;
        }
        let live_idx: Vec<usize> = (0..fds.len()).filter(|&i| !hung[i]).collect();
        let live_fds: Vec<i32> = live_idx.iter().map(|&i| fds[i]).collect();
        sys::poll_fds(&live_fds, timeout, &mut ready).map_err(|source| Error::Io {
            op: "polling perf ring buffers".into(),
            source,
        })?;
        for (r, &i) in ready.iter().zip(&live_idx) {
            if r.hangup {
                hung[i] = true;
            }
        }
        let oldest = read_all(&counters, &mut batch);
        if let Some(a) = adapt.as_mut() {
            // How far behind the recorder is as it reads, before it handles
            // what it read: the counters are replaced before the backlog is
            // worked off.
            let behind =
                Duration::from_nanos(oldest.map_or(0, |t| sys::monotonic_ns().saturating_sub(t)));
            let (kept, lost) = (tracker.sample_count(), tracker.lost());
            if let Some(bytes) = a.observe(start.elapsed(), kept, lost, behind) {
                match session.reopen_cpus(bytes) {
                    Ok(new) => {
                        // The old counters stop, the new start; the old
                        // ones' last records join the backlog.
                        for c in &counters {
                            let _ = c.disable();
                        }
                        for c in &new {
                            c.enable().map_err(|source| Error::Io {
                                op: "enabling a perf counter".into(),
                                source,
                            })?;
                        }
                        read_all(&counters, &mut batch);
                        retired_lost += counters.iter().filter_map(PerfCounter::lost).sum::<u64>();
                        counters = new;
                        tracker.set_stack_request(bytes as usize);
                        fds = buffer_fds(&counters);
                        hung = vec![false; fds.len()];
                    }
                    Err(e) => {
                        notes.push(format!(
                            "call graph auto: could not reopen the counters with smaller stack \
                             copies: {e}"
                        ));
                        adapt = None;
                    }
                }
            }
        }
        handle_some(&mut batch, &mut tracker, POLL_INTERVAL);
        if let Some(exited) = exited.as_mut() {
            if last_hand_out.elapsed() >= HAND_OUT_INTERVAL {
                last_hand_out = Instant::now();
                if let Some((samples, processes)) = tracker.take_settled() {
                    exited(Recording {
                        samples,
                        processes,
                        event: event.name().to_string(),
                        frequency: opts.frequency,
                        kernel,
                        user: opts.user,
                        call_graph: opts.call_graph,
                        stack_bytes,
                        ..Recording::default()
                    });
                }
            }
        }

        if attached {
            if let Some(child) = child.as_mut() {
                // Like `perf record -- cmd`: the command's exit ends it, even
                // if it left children behind.
                if child.try_wait().is_some() {
                    break StopReason::TargetsExited;
                }
            }
            if last_liveness.elapsed() >= LIVENESS_INTERVAL || hung.iter().all(|&h| h) {
                tracker.refresh_liveness();
                last_liveness = Instant::now();
            }
            if tracker.live_targets().is_empty() {
                break StopReason::TargetsExited;
            }
        }
        if last_progress.elapsed() >= opts.progress_interval {
            last_progress = Instant::now();
            progress(&progress_of(&tracker, start, event));
        }
    };
    let duration = start.elapsed();

    for c in &counters {
        // A counter whose task is gone may refuse; its buffer is still readable.
        let _ = c.disable();
    }
    let mut command_status = None;
    if let Some(mut child) = child.take() {
        command_status = child.terminate(Duration::from_secs(1));
    }
    drain_all(&counters, &mut batch, &mut tracker);
    let stat_lost: u64 = retired_lost + counters.iter().filter_map(PerfCounter::lost).sum::<u64>();
    progress(&progress_of(&tracker, start, event));
    drop(counters);

    let out = tracker.finish();
    if let Target::Names(names) = &opts.target {
        if !out.ever_matched {
            return Err(Error::NoProcessMatched {
                names: names.clone(),
            });
        }
    }
    if out.throttled > 0 {
        notes.push(format!(
            "the kernel throttled sampling {} times (kernel.perf_cpu_time_max_percent); \
             consider a lower frequency",
            out.throttled
        ));
    }
    if let Some(a) = &adapt {
        notes.push(a.note());
    }
    let lost = out.lost.max(stat_lost);
    if lost > 0 {
        notes.push(format!(
            "{lost} records lost (ring buffer full); consider more ring pages or a lower frequency"
        ));
    }
    Ok(Recording {
        samples: out.samples,
        processes: out.processes,
        event: event.name().to_string(),
        frequency: opts.frequency,
        duration,
        lost,
        lost_records: out.lost_records,
        kernel,
        user: opts.user,
        stop_reason,
        throttled: out.throttled,
        command_status,
        notes,
        skipped: out.skipped,
        call_graph: opts.call_graph,
        stack_bytes,
    })
}

/// The fds of the counters that own a ring buffer.
fn buffer_fds(counters: &[PerfCounter]) -> Vec<i32> {
    counters
        .iter()
        .filter(|c| c.has_buffer())
        .map(PerfCounter::raw_fd)
        .collect()
}

fn validate(opts: &RecordOptions) -> Result<(), Error> {
    let bad = |s: &str| Err(Error::InvalidOptions(s.to_string()));
    if opts.frequency == 0 {
        return bad("frequency must be at least 1 Hz");
    }
    if !opts.user && !opts.kernel {
        return bad("user and kernel are both excluded; nothing to sample");
    }
    match &opts.target {
        Target::Pids(p) if p.is_empty() => bad("no pid given"),
        Target::Names(n) if n.is_empty() || n.iter().any(|s| s.is_empty()) => {
            bad("no process name given")
        }
        Target::Command(c) if c.is_empty() || c[0].is_empty() => bad("no command given"),
        _ => Ok(()),
    }
}

fn program_name(target: &Target) -> String {
    match target {
        Target::Command(argv) => argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn command_path(target: &Target) -> PathBuf {
    match target {
        Target::Command(argv) => argv.first().map(PathBuf::from).unwrap_or_default(),
        _ => PathBuf::new(),
    }
}

fn progress_of<S: ProcSource>(t: &Tracker<S>, start: Instant, event: PerfEvent) -> Progress {
    Progress {
        elapsed: start.elapsed(),
        samples: t.sample_count(),
        lost: t.lost(),
        processes: t.process_count(),
        event: event.name(),
    }
}

/// Drains every buffer, then handles the records in timestamp order so that a
/// COMM or FORK seen on one CPU precedes the samples it explains on another.
fn drain_all<S: ProcSource>(
    counters: &[PerfCounter],
    batch: &mut Vec<Event>,
    tracker: &mut Tracker<S>,
) {
    read_all(counters, batch);
    handle_all(batch, tracker);
}

/// Drains every buffer into `batch` (after what it holds). Returns the time
/// of the oldest sample in it.
fn read_all(counters: &[PerfCounter], batch: &mut Vec<Event>) -> Option<u64> {
    for c in counters {
        c.drain(|r| {
            if let Some(ev) = Event::from_record(r) {
                batch.push(ev);
            }
        });
    }
    batch
        .iter()
        .filter(|e| matches!(e, Event::Sample { .. }))
        .map(Event::time)
        .min()
}

/// Handles `batch` (emptied) in timestamp order.
fn handle_all<S: ProcSource>(batch: &mut Vec<Event>, tracker: &mut Tracker<S>) {
    batch.sort_by_key(Event::time);
    for ev in batch.drain(..) {
        tracker.handle(ev);
    }
}

/// Handles `batch` in timestamp order for about `budget`, leaving the rest
/// in it: a backlog (a busy machine, the first unwind tables read) is worked
/// off over several turns of the loop, which keeps reading the buffers and
/// seeing how far behind it is.
fn handle_some<S: ProcSource>(batch: &mut Vec<Event>, tracker: &mut Tracker<S>, budget: Duration) {
    batch.sort_by_key(Event::time);
    let began = Instant::now();
    let mut rest = Vec::new();
    {
        let mut events = batch.drain(..);
        let mut n = 0u32;
        while let Some(ev) = events.next() {
            tracker.handle(ev);
            n += 1;
            if n % 64 == 0 && began.elapsed() >= budget {
                rest.extend(events);
                break;
            }
        }
    }
    *batch = rest;
}

/// Opening counters, with the event fallback and error explanations.
struct Session<'a> {
    opts: &'a RecordOptions,
    paranoid: i32,
    privileged: bool,
    kernel: bool,
    cpus: Vec<u32>,
    /// Decided by the first counter when `Auto`.
    event: Option<PerfEvent>,
    counters: Vec<PerfCounter>,
    /// For per-task counters: CPU → index of the counter owning its buffer.
    buffer_of_cpu: Vec<(u32, usize)>,
    /// User stack bytes copied into each sample (0: none).
    stack_bytes: u32,
    /// Ring buffer size of the per-CPU counters, once opened.
    cpu_ring_exp: Option<u8>,
}

impl Session<'_> {
    fn config(&self, event: PerfEvent, ring_exp: u8) -> CounterConfig {
        CounterConfig {
            event,
            frequency: self.opts.frequency,
            user: self.opts.user,
            kernel: self.kernel,
            ring_exp,
            user_chain: self.opts.call_graph.wants_frame_pointers(),
            stack_bytes: self.stack_bytes,
        }
    }

    /// Ring exponent for `n` counters.
    fn ring_exp(&self, n: usize) -> u8 {
        let mut pages = self.opts.ring_pages.max(8);
        if self.privileged && self.opts.user && self.stack_bytes > 0 {
            // Every sample carries its stack copy: 16 MiB hold two
            // seconds of 8 KiB samples at 999 Hz (the recorder, one more
            // task on a busy machine, reads the first unwind tables).
            pages = pages.max(DWARF_RING_PAGES);
        }
        pages = 1 << (usize::BITS - 1 - pages.leading_zeros());
        while pages > 8 && n.saturating_mul(pages).saturating_mul(sys::page_size()) > RING_BUDGET {
            pages /= 2;
        }
        pages.trailing_zeros() as u8
    }

    /// Opens one counter; the first one decides the event under `Auto`
    /// (the kernel's answer is the probe, [`fallback_event`] the decision).
    /// Per-task counters share one ring buffer per CPU.
    fn open(&mut self, scope: Scope, ring_exp: u8, what: &dyn Fn() -> String) -> Result<(), Error> {
        let event = self.event.unwrap_or(PerfEvent::Cycles);
        let output = match scope {
            Scope::Task { cpu, .. } => self
                .buffer_of_cpu
                .iter()
                .find(|&&(c, _)| c == cpu)
                .map(|&(_, i)| &self.counters[i]),
            Scope::Cpu { .. } => None,
        };
        match PerfCounter::open(&self.config(event, ring_exp), scope, output) {
            Ok(c) => {
                self.event = Some(event);
                if let (Scope::Task { cpu, .. }, true) = (scope, c.has_buffer()) {
                    self.buffer_of_cpu.push((cpu, self.counters.len()));
                }
                self.counters.push(c);
                Ok(())
            }
            Err(e) => match fallback_event(self.event, &e) {
                Some(next) => {
                    self.event = Some(next);
                    self.open(scope, ring_exp, what)
                }
                None => Err(self.explain(e, event, &what())),
            },
        }
    }

    fn explain(&self, e: OpenError, event: PerfEvent, what: &str) -> Error {
        let paranoid = self.paranoid.to_string();
        if e.mmap {
            let hint = if self.privileged {
                ""
            } else {
                "; the ring buffers exceed kernel.perf_event_mlock_kb or RLIMIT_MEMLOCK: \
                 use fewer ring pages"
            };
            return match e.source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => Error::PermissionDenied {
                    what: format!("mapping the ring buffer of {what}"),
                    paranoid,
                    hint,
                    source: e.source,
                },
                _ => Error::Io {
                    op: format!("mapping the ring buffer of {what}"),
                    source: e.source,
                },
            };
        }
        match e.source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
                what: what.to_string(),
                paranoid,
                hint: if self.privileged {
                    ""
                } else {
                    "; without privileges you can only record your own processes, user space only"
                },
                source: e.source,
            },
            Some(libc::ENOSYS) => Error::Unsupported { source: e.source },
            Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) if event == PerfEvent::Cycles => {
                Error::EventUnavailable {
                    event: event.name(),
                    source: e.source,
                }
            }
            Some(libc::EMFILE | libc::ENFILE) => Error::Io {
                op: format!("opening {what} (too many open files: raise `ulimit -n`)"),
                source: e.source,
            },
            _ => Error::Io {
                op: format!("opening {what} ({} event)", event.name()),
                source: e.source,
            },
        }
    }

    /// One counter per online CPU, every task.
    fn open_cpus(&mut self) -> Result<(), Error> {
        let exp = match self.cpu_ring_exp {
            Some(exp) => exp,
            None => self.ring_exp(self.cpus.len()),
        };
        self.cpu_ring_exp = Some(exp);
        for cpu in self.cpus.clone() {
            self.open(Scope::Cpu { cpu }, exp, &|| {
                format!("a system-wide perf counter on CPU {cpu}")
            })?;
        }
        Ok(())
    }

    /// New per-CPU counters, disabled, like the first ones (same ring size)
    /// but copying `stack_bytes` of user stack.
    fn reopen_cpus(&mut self, stack_bytes: u32) -> Result<Vec<PerfCounter>, Error> {
        self.stack_bytes = stack_bytes;
        let opened = self.open_cpus();
        let new = std::mem::take(&mut self.counters);
        opened.map(|()| new)
    }

    /// One inherited counter per (thread, CPU) of each process. Returns the
    /// processes (thread group ids), deduplicated.
    fn open_pids(&mut self, pids: &[u32]) -> Result<Vec<u32>, Error> {
        let mut tgids = Vec::new();
        for &pid in pids {
            let tgid = procfs::tgid_of(pid).ok_or(Error::NoSuchProcess { pid })?;
            if !Procfs.is_alive(tgid) {
                return Err(Error::ProcessExited { pid });
            }
            if !tgids.contains(&tgid) {
                tgids.push(tgid);
            }
        }
        let exp = self.ring_exp(self.cpus.len());
        for &tgid in &tgids {
            let mut attached: Vec<u32> = Vec::new();
            // Threads started while we attach are caught by the next pass;
            // threads started afterwards inherit the counters.
            for _pass in 0..5 {
                let new: Vec<u32> = procfs::tasks_of(tgid)
                    .into_iter()
                    .filter(|t| !attached.contains(t))
                    .collect();
                if new.is_empty() {
                    break;
                }
                for tid in new {
                    match self.open_task(tid, exp, false) {
                        Ok(()) => attached.push(tid),
                        // The thread exited meanwhile.
                        Err(None) => {}
                        Err(Some(e)) => return Err(e),
                    }
                }
            }
            if attached.is_empty() {
                return Err(if procfs::tgid_of(tgid).is_some() {
                    Error::ProcessExited { pid: tgid }
                } else {
                    Error::NoSuchProcess { pid: tgid }
                });
            }
        }
        Ok(tgids)
    }

    /// Counters for one thread on every CPU; `Err(None)` if it no longer exists.
    fn open_task(&mut self, tid: u32, exp: u8, enable_on_exec: bool) -> Result<(), Option<Error>> {
        for cpu in self.cpus.clone() {
            let scope = Scope::Task {
                tid,
                cpu,
                enable_on_exec,
            };
            let what = || format!("a perf counter for thread {tid} on CPU {cpu}");
            if let Err(e) = self.open(scope, exp, &what) {
                if let Error::Io { source, .. } = &e {
                    if source.raw_os_error() == Some(libc::ESRCH) {
                        return Err(None);
                    }
                }
                return Err(Some(e));
            }
        }
        Ok(())
    }

    /// Forks the command, suspended before exec, with counters that enable at exec.
    fn open_command(&mut self, argv: &[std::ffi::OsString]) -> Result<Child, Error> {
        let mut child = Child::spawn_suspended(argv).map_err(|source| Error::Spawn {
            program: argv
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source,
        })?;
        let exp = self.ring_exp(self.cpus.len());
        if let Err(e) = self.open_task(child.pid, exp, true) {
            child.terminate(Duration::from_millis(100));
            return Err(e.unwrap_or(Error::Io {
                op: "attaching to the command before exec".into(),
                source: io::Error::from_raw_os_error(libc::ESRCH),
            }));
        }
        Ok(child)
    }
}

/// The event `choice` settles before any counter is opened: `None` under
/// `Auto`, where the first counter tries `cycles` and [`fallback_event`]
/// decides what a refusal means.
fn settled_event(choice: EventChoice) -> Option<PerfEvent> {
    match choice {
        EventChoice::CpuClock => Some(PerfEvent::CpuClock),
        EventChoice::Cycles => Some(PerfEvent::Cycles),
        _ => None,
    }
}

/// The event to try after a counter failed to open, if any. Only while no
/// event is settled (`Auto`, first counter), only when the counter itself
/// was refused (not its ring buffer), and not for a refusal that any event
/// would meet (no permission, no such process, no file descriptor left):
/// then the CPU has no usable hardware `cycles` counter (no PMU, as in most
/// VMs, or a PMU that cannot sample), and the software `cpu-clock` is used.
fn fallback_event(settled: Option<PerfEvent>, failure: &OpenError) -> Option<PerfEvent> {
    let refused_for_any_event = matches!(
        failure.source.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::ESRCH | libc::EMFILE)
    );
    (settled.is_none() && !failure.mmap && !refused_for_any_event).then_some(PerfEvent::CpuClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(errno: i32, mmap: bool) -> OpenError {
        OpenError {
            mmap,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn auto_tries_cycles_first_and_explicit_choices_are_settled() {
        assert_eq!(settled_event(EventChoice::Auto), None);
        assert_eq!(settled_event(EventChoice::Cycles), Some(PerfEvent::Cycles));
        assert_eq!(
            settled_event(EventChoice::CpuClock),
            Some(PerfEvent::CpuClock)
        );
    }

    #[test]
    fn auto_falls_back_to_cpu_clock_when_the_cpu_cannot_count_cycles() {
        // No PMU (ENOENT), a PMU that cannot sample (EOPNOTSUPP), a busy or
        // unsupported configuration (EINVAL, EBUSY, ENODEV).
        for errno in [
            libc::ENOENT,
            libc::EOPNOTSUPP,
            libc::EINVAL,
            libc::EBUSY,
            libc::ENODEV,
        ] {
            assert_eq!(
                fallback_event(None, &failure(errno, false)),
                Some(PerfEvent::CpuClock),
                "errno {errno}"
            );
        }
    }

    #[test]
    fn no_fallback_for_refusals_any_event_would_meet() {
        for errno in [libc::EACCES, libc::EPERM, libc::ESRCH, libc::EMFILE] {
            assert_eq!(
                fallback_event(None, &failure(errno, false)),
                None,
                "errno {errno}"
            );
        }
        // The counter opened; its ring buffer did not map.
        assert_eq!(fallback_event(None, &failure(libc::ENOMEM, true)), None);
        assert_eq!(fallback_event(None, &failure(libc::EPERM, true)), None);
    }

    #[test]
    fn no_fallback_once_the_event_is_settled() {
        // `--event cycles` on a machine without cycles is an error, and so is
        // a later counter failing once the first one settled the event.
        for settled in [PerfEvent::Cycles, PerfEvent::CpuClock] {
            assert_eq!(
                fallback_event(Some(settled), &failure(libc::ENOENT, false)),
                None
            );
        }
    }
}
