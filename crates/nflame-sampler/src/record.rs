//! The recording loop: checks privileges, opens counters for the target,
//! polls and drains their ring buffers, feeds the [`Tracker`] in timestamp
//! order, and decides when to stop.
//!
//! # Off-CPU time
//!
//! With [`Measure::OffCpu`] or [`Measure::Wall`], every scope (thread and
//! CPU, or CPU) also gets a counter of the `context-switches` software
//! event with context-switch records (`context_switch`): the kernel takes a
//! sample, with the kernel call chain and the user stack (frame-pointer
//! chain or a DWARF stack copy, as for on-CPU samples), in the task that is
//! leaving the CPU, then writes a switch-out record (flagged when the task
//! was still runnable: preempted), and a switch-in record when a task comes
//! back. [`crate::offcpu`] pairs them into intervals. Why this and not BPF on
//! `sched_switch`: it needs nothing but perf events (no BPF, BTF or
//! compiled program), and it reuses everything on-CPU sampling has: the
//! targets, the side-band, the DWARF stack copy that is the only way to get
//! complete stacks through nginx and LuaJIT (a BPF program could only ship
//! the same copy), and the unwinder. In-kernel aggregation would save
//! records, but stacks must be unwound in user space anyway.
//!
//! The switch records come from the counter that carries the side-band
//! (the on-CPU one, or a `dummy` one), never disabled; the stacks from
//! counters of their own. Their cost is bounded by sampling the stacks, not
//! the switches: [`RateControl`] keeps them to about
//! [`RecordOptions::switch_rate`] a second per CPU, with random periods on
//! counters it can reach and the kernel's frequency mode otherwise (at the
//! start, for threads started during the recording, or when records are
//! lost). The switch records, 40 to 48 bytes, are never sampled, so
//! per-thread totals ([`crate::ThreadTimes`]) stay exact; their cost is two
//! records per switch. Records are handled in timestamp order across
//! buffers, up to a watermark a little behind the time of each drain, so
//! that a switch-out on one CPU is seen before the switch-in on another
//! that follows it.

use std::io;
use std::path::PathBuf;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapt::StackCopy;
use crate::error::Error;
use crate::event::{Event, Source};
use crate::lua::LuaSide;
use crate::options::{EventChoice, Progress, RecordOptions, Target};
use crate::rate::{Mode, RateControl};
use crate::sys::{self, Child, CounterConfig, OpenError, PerfCounter, PerfEvent, Ready, Scope};
use crate::threadstate;
use crate::tracker::{name_matches, Filter, StackMode, StartState, Tracker};
use crate::unwind::DwarfUnwinder;
use nflame_procfs::process::{self as procfs, ProcSource, Procfs};
use nflame_procfs::system;
use nflame_recording::CallGraph;
use nflame_recording::{LuaStack, Measure, Recording, StopReason};

/// Total ring-buffer memory we allow before shrinking per-counter buffers.
const RING_BUDGET: usize = 64 << 20;
/// Ring buffer pages per counter at least, when samples carry stack copies.
const DWARF_RING_PAGES: usize = 4096;
/// Ring buffer pages per counter at least, when context switches are
/// recorded: 8 MiB holds 200 ms of switch records at 400k switches a second
/// on one CPU. On two busy CPUs (a ping-pong and builds), system-wide, 4 MiB
/// lost 19% of the switch records to a recorder waiting for a CPU, 8 MiB
/// 0.6%. The total stays within the ring budget.
const OFF_CPU_RING_PAGES: usize = 2048;
/// Longest time between two drains.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often `/proc` is checked for targets whose EXIT record we missed.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);
/// Records newer than this before a drain wait for the next one: a record
/// stamped just before the drain may still be being written on another CPU.
const REORDER_WINDOW_NS: u64 = 20_000_000;
/// Time spent reading where threads wait, between two drains, at the start
/// (the loop then polls at most this long).
const SNAPSHOT_BUDGET: Duration = Duration::from_millis(10);
/// How often the periods of the stack counters at context switches are set
/// (the first rounds are shorter: 10 ms, doubling up to this, so that a
/// fast-switching target is caught before it floods the buffers).
const RATE_ROUND: Duration = Duration::from_millis(200);
/// How often [`record_with_exited`] hands out the processes that exited.
const HAND_OUT_INTERVAL: Duration = Duration::from_secs(2);

/// Records on-CPU samples (and/or off-CPU time, see [`Measure`]) of
/// `opts.target` until the duration elapses, `stop` becomes true, or (for
/// pids and commands) every target has exited.
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
/// `frequency`, `kernel`, `user`, `call_graph`, `stack_bytes` and `measure`
/// as the recording's, the rest empty). Each process comes with all that
/// folding it needs and the summary says of it, as the end would have
/// given it: with off-CPU time, its threads' [`ProcessInfo::times`] (it
/// leaves once every thread of it has exited) and its off-CPU samples
/// scaled to their exact totals; with Lua frames, its
/// [`ProcessInfo::lua`]. They are not in the returned recording, whose
/// samples and processes are the rest; processes the caller named
/// ([`Target::Pids`], the command of [`Target::Command`], those
/// [`Target::Names`] matched at the start) always stay in it. A caller that folds each part and drops it keeps memory bounded
/// while programs come and go: the parts' samples and the returned
/// recording's add up to what [`record()`] would have returned.
///
/// [`ProcessInfo::times`]: nflame_recording::ProcessInfo::times
/// [`ProcessInfo::lua`]: nflame_recording::ProcessInfo::lua
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
    if opts.measure.off_cpu() && !privileged && paranoid >= 2 {
        return Err(Error::PermissionDenied {
            what: "context-switch sampling (off-CPU time)".into(),
            paranoid: paranoid.to_string(),
            hint: "; off-CPU time needs kernel sampling even for your own processes, as the \
                   context-switches event fires in the kernel",
            source: io::Error::from_raw_os_error(libc::EACCES),
        });
    }
    let mut switch_rate = opts.switch_rate;
    if let Some(max) = system::max_sample_rate() {
        if opts.measure.off_cpu() && switch_rate > max {
            notes.push(format!(
                "stacks at context switches capped at {max} a second \
                 (kernel.perf_event_max_sample_rate) instead of {switch_rate}"
            ));
            switch_rate = max;
        }
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
        event: match opts.measure {
            // Wall-clock time adds on-CPU periods to off-CPU nanoseconds.
            Measure::Wall if opts.event == EventChoice::Auto => Some(PerfEvent::CpuClock),
            _ => settled_event(opts.event),
        },
        counters: Vec::new(),
        buffer_of_cpu: Vec::new(),
        switch_counters: Vec::new(),
        freq_counters: Vec::new(),
        switch_rate,
        stack_bytes: opts.call_graph.stack_bytes(),
        cpu_ring_exp: None,
        pins: Vec::new(),
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
    let event = if opts.measure.on_cpu() {
        session.event.unwrap_or(PerfEvent::CpuClock)
    } else {
        PerfEvent::ContextSwitches
    };
    let mut counters = std::mem::take(&mut session.counters);
    let mut stacks = StackRate::new(
        std::mem::take(&mut session.switch_counters),
        std::mem::take(&mut session.freq_counters),
        switch_rate,
    );
    stacks.share(&counters, switch_rate);
    // Lua stacks are read by a program on these same counters.
    let mut lua =
        (opts.lua && opts.user).then(|| LuaSide::new(opts.lua_lines, own, opts.frequency));
    if let Some(l) = lua.as_mut() {
        l.attach(counters.iter().map(PerfCounter::fd));
    }

    let mut tracker = Tracker::new(filter, Procfs, own);
    if exited.is_some() {
        tracker.hand_out_settled();
    }
    let stack_bytes = if opts.user {
        opts.call_graph.stack_bytes()
    } else {
        0
    };
    // How the recording is made, as every part handed out says it too.
    let header = Recording {
        event: event.name().to_string(),
        frequency: if opts.measure.on_cpu() {
            opts.frequency
        } else {
            switch_rate
        },
        kernel,
        user: opts.user,
        call_graph: opts.call_graph,
        stack_bytes,
        measure: opts.measure,
        ..Recording::default()
    };
    // Every CPU, stacks copied because `Auto` chose it: fewer bytes, or
    // none, when samples are lost (see `adapt`).
    // Not with off-CPU time: its stacks are bounded by their own rate
    // control, whose counters are not to be replaced.
    let mut adapt = (system_wide
        && opts.call_graph == CallGraph::Auto
        && stack_bytes > 0
        && !opts.measure.off_cpu())
    .then(|| {
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
    let start_ns = sys::monotonic_ns();
    if opts.measure.off_cpu() {
        tracker.record_off_cpu(start_ns, opts.min_block.as_nanos() as u64);
    }
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
        for (i, c) in counters.iter().enumerate() {
            if stacks.counters.iter().any(|s| s.index == i) {
                // Stacks start in frequency mode (see `RateControl`).
                continue;
            }
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
    let mut matched = Vec::new();
    if let Target::Names(names) = &opts.target {
        for pid in procfs::all_pids() {
            if pid == own {
                continue;
            }
            if let Some((comm, exe)) = Procfs.comm_and_exe(pid) {
                if name_matches(names, &comm, exe.as_deref()) {
                    tracker.add_target(pid);
                    matched.push(pid);
                }
            }
        }
    }
    if let Some(l) = lua.as_mut() {
        for pid in tracker.live_targets() {
            l.check(pid);
        }
        for (pid, code) in l.vm_code_changes() {
            tracker.set_vm_code(pid, &code);
        }
    }
    // Threads already off the CPU give no switch-out: where they wait is
    // read from /proc, a few at a time between drains (system-wide, that is
    // hundreds of threads, and the buffers must not wait for them).
    let mut waiting: Vec<u32> = if opts.measure.off_cpu() {
        match &opts.target {
            Target::Pids(_) => pids.clone(),
            Target::Names(_) => matched,
            Target::All => procfs::all_pids(),
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    waiting.reverse();
    // Which threads were there at the start, at once (listing is quick;
    // reading where each waits is not): a thread not listed and not seen
    // created starts at its first record.
    for &pid in &waiting {
        for tid in procfs::tasks_of(pid) {
            tracker.initial_thread(pid, tid, start_ns, StartState::Exists);
        }
    }
    if let (Some(child), true) = (child.as_ref(), opts.measure.off_cpu()) {
        tracker.initial_thread(child.pid, child.pid, start_ns, StartState::Running);
    }
    // Returns whether threads remain to be read.
    let mut snapshot = |tracker: &mut Tracker<Procfs>, budget: Duration| {
        let t0 = Instant::now();
        while t0.elapsed() < budget {
            let Some(pid) = waiting.pop() else { break };
            for tid in procfs::tasks_of(pid) {
                let time = sys::monotonic_ns();
                if let Some(state) = threadstate::read(pid, tid, stack_bytes as usize) {
                    tracker.initial_thread(pid, tid, time, state);
                }
            }
        }
        !waiting.is_empty()
    };
    let mut snapshots_left = true;

    // The loop.
    let mut fds: Vec<i32> = buffer_fds(&counters);
    let mut hung = vec![false; fds.len()];
    let mut ready: Vec<Ready> = Vec::new();
    let mut batch: Pending = Vec::new();
    let mut fresh: Vec<Event> = Vec::new();
    let mut backlog = false;
    let mut last_progress = start;
    let mut last_liveness = start;
    let mut last_hand_out = start;
    stacks.round_start = Instant::now();
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
        if let Some(t) = stacks.next_round() {
            timeout = timeout.min(t.saturating_duration_since(Instant::now()));
        }
        if snapshots_left {
            timeout = timeout.min(SNAPSHOT_BUDGET);
        }
        if backlog {
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
        let oldest = read_all(
            &counters,
            &mut batch,
            &mut fresh,
            &mut tracker,
            &mut lua,
            &mut stacks,
        );
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
                        if let Some(l) = lua.as_mut() {
                            l.attach(new.iter().map(PerfCounter::fd));
                        }
                        for c in &new {
                            c.enable().map_err(|source| Error::Io {
                                op: "enabling a perf counter".into(),
                                source,
                            })?;
                        }
                        read_all(
                            &counters,
                            &mut batch,
                            &mut fresh,
                            &mut tracker,
                            &mut lua,
                            &mut stacks,
                        );
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
        let watermark = sys::monotonic_ns().saturating_sub(REORDER_WINDOW_NS);
        backlog = handle_some(&mut batch, &mut tracker, watermark, POLL_INTERVAL);
        stacks.control(&counters, Instant::now());
        if snapshots_left {
            snapshots_left = snapshot(&mut tracker, SNAPSHOT_BUDGET);
        }
        if let Some(exited) = exited.as_mut() {
            if last_hand_out.elapsed() >= HAND_OUT_INTERVAL {
                last_hand_out = Instant::now();
                if let Some(settled) = tracker.take_settled() {
                    let mut processes = settled.processes;
                    if let Some(l) = lua.as_mut() {
                        l.hand_out(&settled.gone, &mut processes);
                    }
                    exited(Recording {
                        samples: settled.samples,
                        processes,
                        ..header.clone()
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
    tracker.set_end(sys::monotonic_ns());

    for c in &counters {
        // A counter whose task is gone may refuse; its buffer is still readable.
        let _ = c.disable();
    }
    let mut command_status = None;
    if let Some(mut child) = child.take() {
        command_status = child.terminate(Duration::from_secs(1));
    }
    read_all(
        &counters,
        &mut batch,
        &mut fresh,
        &mut tracker,
        &mut lua,
        &mut stacks,
    );
    handle_some(&mut batch, &mut tracker, u64::MAX, Duration::MAX);
    let stat_lost: u64 = retired_lost
        + counters
            .iter()
            .filter(|c| c.source() != Source::Switch)
            .filter_map(PerfCounter::lost)
            .sum::<u64>();
    let stat_lost_stacks: u64 = counters
        .iter()
        .filter(|c| c.source() == Source::Switch)
        .filter_map(PerfCounter::lost)
        .sum();
    progress(&progress_of(&tracker, start, event));
    drop(counters);

    let mut out = tracker.finish();
    if let Some(l) = lua {
        l.finish(&mut out.processes, &mut notes);
    }
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
    let mut off_cpu = out.off_cpu;
    if opts.measure.off_cpu() {
        off_cpu.max_rate = switch_rate;
        off_cpu.min_block = opts.min_block;
        off_cpu.lost_stacks = off_cpu.lost_stacks.max(stat_lost_stacks);
        if off_cpu.lost_stacks > 0 {
            notes.push(format!(
                "{} stacks at context switches lost (ring buffer full); their switches \
                 count without a stack",
                off_cpu.lost_stacks
            ));
        }
        if off_cpu.broken > 0 {
            notes.push(format!(
                "{} off-CPU intervals lost an end to lost records; their time is in no total",
                off_cpu.broken
            ));
        }
    }
    Ok(Recording {
        samples: out.samples,
        processes: out.processes,
        duration,
        lost,
        lost_records: out.lost_records,
        stop_reason,
        throttled: out.throttled,
        command_status,
        notes,
        skipped: out.skipped,
        off_cpu,
        ..header
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
    if opts.measure == Measure::Wall && opts.event == EventChoice::Cycles {
        return bad(
            "wall-clock time adds on-CPU time to off-CPU time, so it samples cpu-clock \
             (nanoseconds), not cycles",
        );
    }
    if opts.measure.off_cpu() && opts.switch_rate == 0 {
        return bad("the rate of stacks at context switches must be at least 1 a second");
    }
    if !opts.measure.off_cpu() && !opts.min_block.is_zero() {
        return bad("a minimum block time only applies to off-CPU time");
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

/// Records read but not yet handled, each sample with the Lua stack taken
/// with it.
type Pending = Vec<(Event, Option<Arc<LuaStack>>)>;

/// Drains every buffer into `batch` (after what it holds). The Lua stacks'
/// ring is read after the perf rings: a Lua stack is written before its perf
/// sample, so every sample read then finds its stack, and it is paired with
/// it here, as it is read (a backlog handled later keeps its stacks).
/// Switch-outs and losses are counted for `stacks`.
/// Returns the time of the oldest sample in `batch`.
fn read_all<S: ProcSource>(
    counters: &[PerfCounter],
    batch: &mut Pending,
    fresh: &mut Vec<Event>,
    tracker: &mut Tracker<S>,
    lua: &mut Option<LuaSide>,
    stacks: &mut StackRate,
) -> Option<u64> {
    fresh.clear();
    for c in counters {
        let source = c.source();
        c.drain(|r| {
            if let Some(ev) = Event::from_record(r, source) {
                match ev {
                    Event::Switch {
                        tid,
                        cpu,
                        out: true,
                        ..
                    } => *stacks.counts.entry((tid, cpu)).or_insert(0) += 1,
                    Event::Lost { .. } => stacks.lost = true,
                    _ => {}
                }
                fresh.push(ev);
            }
        });
    }
    if let Some(l) = lua.as_mut() {
        l.drain();
    }
    fresh.sort_by_key(Event::time);
    for ev in fresh.drain(..) {
        let mut stack = None;
        if let Some(l) = lua.as_mut() {
            stack = l.on_event(&ev);
            for (pid, code) in l.vm_code_changes() {
                tracker.set_vm_code(pid, &code);
            }
        }
        batch.push((ev, stack));
    }
    batch
        .iter()
        .filter(|(e, _)| matches!(e, Event::Sample(_)))
        .map(|(e, _)| e.time())
        .min()
}

/// Handles the events of `batch` up to `watermark` in timestamp order, so
/// that a COMM or FORK seen on one CPU precedes the samples it explains on
/// another, and a switch-out precedes the switch-in that ends it; newer
/// events wait in `batch` for the next call. It stops after about `budget`:
/// a backlog (a busy machine, the first unwind tables read) is worked off
/// over several turns of the loop, which keeps reading the buffers and
/// seeing how far behind it is. Returns whether events up to the watermark
/// are left (a backlog).
fn handle_some<S: ProcSource>(
    batch: &mut Pending,
    tracker: &mut Tracker<S>,
    watermark: u64,
    budget: Duration,
) -> bool {
    batch.sort_by_key(|(e, _)| e.time());
    let ready = batch.partition_point(|(e, _)| e.time() <= watermark);
    let newer = batch.split_off(ready);
    let began = Instant::now();
    let mut rest = Vec::new();
    {
        let mut events = batch.drain(..);
        let mut n = 0u32;
        while let Some((ev, stack)) = events.next() {
            tracker.handle_with(ev, stack);
            n += 1;
            if n % 64 == 0 && began.elapsed() >= budget {
                rest.extend(events);
                break;
            }
        }
    }
    let backlog = !rest.is_empty();
    rest.extend(newer);
    *batch = rest;
    // A burst (a recorder that fell behind) must not keep its memory.
    batch.shrink_to(1 << 16);
    backlog
}

/// What a counter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// On-CPU samples; carries the side-band and switch records.
    OnCpu,
    /// Side-band and switch records only (`dummy`), without on-CPU samples.
    SideBand,
    /// Stacks at context switches, at a period the recorder sets.
    Stacks,
    /// Stacks at context switches, at a frequency (see [`RateControl`]).
    StacksFreq,
}

/// A stack counter at context switches with a period the recorder sets:
/// the thread it was opened on (`None`: every thread of the CPU), its CPU,
/// its index in the counters.
#[derive(Debug, Clone, Copy)]
struct SwitchCounter {
    tid: Option<u32>,
    cpu: u32,
    index: usize,
}

/// The rate of stacks at context switches, kept near the cap (see
/// [`RateControl`]): counts the switches of the threads of each counter
/// from the switch records, sets new periods every round, and turns to
/// the frequency-mode counters when threads out of reach switch too fast.
struct StackRate {
    counters: Vec<SwitchCounter>,
    /// Indices of the frequency-mode counters.
    freq: Vec<usize>,
    /// Threads with a counter of their own.
    reached: FxHashSet<u32>,
    periods: Vec<u64>,
    control: RateControl,
    mode: Mode,
    /// Switches (switch-outs) since the round began, by (tid, CPU).
    counts: FxHashMap<(u32, u32), u64>,
    /// CPUs recorded (the budget is the cap times this).
    cpus: u64,
    /// Records or stacks were lost since the round began.
    lost: bool,
    round_start: Instant,
    round: Duration,
}

impl StackRate {
    fn new(counters: Vec<SwitchCounter>, freq: Vec<usize>, cap: u64) -> StackRate {
        let mut cpus: Vec<u32> = counters.iter().map(|c| c.cpu).collect();
        cpus.sort_unstable();
        cpus.dedup();
        StackRate {
            cpus: cpus.len() as u64,
            reached: counters.iter().filter_map(|c| c.tid).collect(),
            periods: vec![1; counters.len()],
            control: RateControl::new(cap, sys::monotonic_ns()),
            mode: Mode::Freq,
            lost: false,
            counters,
            freq,
            counts: FxHashMap::default(),
            round_start: Instant::now(),
            round: Duration::from_millis(10),
        }
    }

    /// Shares the budget among the frequency-mode counters: with `n`
    /// threads recorded, each gets `cap / n` stacks a second per CPU (and
    /// so do the threads they start).
    fn share(&self, all: &[PerfCounter], cap: u64) {
        let threads = self.reached.len() as u64;
        if threads > 1 {
            let each = (cap / threads).max(1);
            for &i in &self.freq {
                // A counter whose thread is gone may refuse.
                let _ = all[i].set_period(each);
            }
        }
    }

    /// When the loop must wake next for this.
    fn next_round(&self) -> Option<Instant> {
        (!self.counters.is_empty()).then(|| self.round_start + self.round)
    }

    /// Ends a round when it is due: new periods, and the mode.
    fn control(&mut self, all: &[PerfCounter], now: Instant) {
        if self.counters.is_empty() || now < self.round_start + self.round {
            return;
        }
        let secs = now
            .saturating_duration_since(self.round_start)
            .as_secs_f64();
        let mut per_cpu: FxHashMap<u32, u64> = FxHashMap::default();
        let mut unreached = 0;
        for (&(tid, cpu), &n) in &self.counts {
            *per_cpu.entry(cpu).or_insert(0) += n;
            if !self.reached.contains(&tid) {
                unreached = unreached.max(n);
            }
        }
        // A thread's counters on every CPU share its period; system-wide,
        // each CPU's counter is its own group.
        let mut per_thread: FxHashMap<u32, u64> = FxHashMap::default();
        for (&(tid, _), &n) in &self.counts {
            *per_thread.entry(tid).or_insert(0) += n;
        }
        let groups: Vec<(u64, u64)> = self
            .counters
            .iter()
            .map(|c| match c.tid {
                Some(tid) => (u64::from(tid), per_thread.get(&tid).copied().unwrap_or(0)),
                None => (
                    1 << 32 | u64::from(c.cpu),
                    per_cpu.get(&c.cpu).copied().unwrap_or(0),
                ),
            })
            .collect();
        if self.counters.iter().all(|c| c.tid.is_none()) {
            // Per-CPU counters reach every thread.
            unreached = 0;
        }
        let plan = self
            .control
            .plan(secs, self.cpus, &groups, unreached, self.lost);
        self.lost = false;
        for ((c, old), new) in self
            .counters
            .iter()
            .zip(&mut self.periods)
            .zip(plan.periods)
        {
            if *old != new && all[c.index].set_period(new).is_ok() {
                *old = new;
            }
        }
        if plan.mode != self.mode {
            self.mode = plan.mode;
            let count = self.counters.iter().map(|c| c.index);
            let (on, off): (Vec<usize>, Vec<usize>) = match plan.mode {
                Mode::Count => (count.collect(), self.freq.clone()),
                Mode::Freq => (self.freq.clone(), count.collect()),
            };
            // A counter whose thread is gone may refuse.
            for i in off {
                let _ = all[i].disable();
            }
            for i in on {
                let _ = all[i].enable();
            }
        }
        self.counts.clear();
        self.round_start = now;
        self.round = (self.round * 2).min(RATE_ROUND);
    }
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
    /// For per-task counters: (event role, CPU) → index of the counter
    /// owning its buffer.
    buffer_of_cpu: Vec<(Role, u32, usize)>,
    /// The stack counters at context switches with a period.
    switch_counters: Vec<SwitchCounter>,
    /// The stack counters at context switches at a frequency.
    freq_counters: Vec<usize>,
    /// Stacks a second per counter at most.
    switch_rate: u64,
    /// User stack bytes copied into each sample (0: none).
    stack_bytes: u32,
    /// Ring buffer size of the per-CPU counters, once opened.
    cpu_ring_exp: Option<u8>,
    /// A counter per target thread that keeps its children's perf contexts
    /// apart from its own ([`sys::pin_context`]).
    pins: Vec<perf_event_open::count::Counter>,
}

impl Session<'_> {
    fn config(&self, role: Role, event: PerfEvent, ring_exp: u8) -> CounterConfig {
        // The on-CPU counter, or the dummy one, carries the side-band and
        // the switch records; the stack counter starts at every switch.
        let carrier = matches!(role, Role::OnCpu | Role::SideBand);
        CounterConfig {
            event,
            frequency: match role {
                Role::StacksFreq => self.switch_rate,
                _ => self.opts.frequency,
            },
            count: match role {
                Role::Stacks => Some(1),
                Role::SideBand => Some(0),
                Role::OnCpu | Role::StacksFreq => None,
            },
            user: self.opts.user,
            kernel: self.kernel,
            ring_exp,
            user_chain: self.opts.call_graph.wants_frame_pointers(),
            stack_bytes: self.stack_bytes,
            side_band: carrier,
            switches: carrier && self.opts.measure.off_cpu(),
        }
    }

    /// The counters a scope gets, by role.
    fn roles(&self) -> Vec<Role> {
        let mut v = Vec::new();
        if self.opts.measure.on_cpu() {
            v.push(Role::OnCpu);
        } else {
            v.push(Role::SideBand);
        }
        if self.opts.measure.off_cpu() {
            v.push(Role::Stacks);
            v.push(Role::StacksFreq);
        }
        v
    }

    /// Ring exponent for `n` scopes, each with a buffer per role.
    fn ring_exp(&self, n: usize) -> u8 {
        let n = n * self.roles().len();
        let mut pages = self.opts.ring_pages.max(8);
        if self.privileged && self.opts.user && self.stack_bytes > 0 {
            // Every sample carries its stack copy: 16 MiB hold two
            // seconds of 8 KiB samples at 999 Hz (the recorder, one more
            // task on a busy machine, reads the first unwind tables).
            pages = pages.max(DWARF_RING_PAGES);
        }
        if self.privileged && self.opts.measure.off_cpu() {
            pages = pages.max(OFF_CPU_RING_PAGES);
        }
        pages = 1 << (usize::BITS - 1 - pages.leading_zeros());
        while pages > 8 && n.saturating_mul(pages).saturating_mul(sys::page_size()) > RING_BUDGET {
            pages /= 2;
        }
        pages.trailing_zeros() as u8
    }

    /// Opens the counters of every role for one scope.
    fn open(&mut self, scope: Scope, ring_exp: u8, what: &dyn Fn() -> String) -> Result<(), Error> {
        for role in self.roles() {
            let scope = match (role, scope) {
                // Enabled when the rate control says, not at the exec.
                (Role::Stacks, Scope::Task { tid, cpu, .. }) => Scope::Task {
                    tid,
                    cpu,
                    enable_on_exec: false,
                },
                _ => scope,
            };
            self.open_role(role, scope, ring_exp, what)?;
        }
        Ok(())
    }

    /// Opens one counter; the first on-CPU one decides the event under
    /// `Auto`. Per-task counters of a role share one ring buffer per CPU.
    fn open_role(
        &mut self,
        role: Role,
        scope: Scope,
        ring_exp: u8,
        what: &dyn Fn() -> String,
    ) -> Result<(), Error> {
        let event = match role {
            Role::OnCpu => self.event.unwrap_or(PerfEvent::Cycles),
            Role::Stacks | Role::StacksFreq => PerfEvent::ContextSwitches,
            Role::SideBand => PerfEvent::Dummy,
        };
        let output = match scope {
            Scope::Task { cpu, .. } => self
                .buffer_of_cpu
                .iter()
                .find(|&&(r, c, _)| r == role && c == cpu)
                .map(|&(_, _, i)| &self.counters[i]),
            Scope::Cpu { .. } => None,
        };
        match PerfCounter::open(&self.config(role, event, ring_exp), scope, output) {
            Ok(c) => {
                if role == Role::OnCpu {
                    self.event = Some(event);
                }
                if let (Scope::Task { cpu, .. }, true) = (scope, c.has_buffer()) {
                    self.buffer_of_cpu.push((role, cpu, self.counters.len()));
                }
                if role == Role::Stacks {
                    let (tid, cpu) = match scope {
                        Scope::Task { tid, cpu, .. } => (Some(tid), cpu),
                        Scope::Cpu { cpu } => (None, cpu),
                    };
                    self.switch_counters.push(SwitchCounter {
                        tid,
                        cpu,
                        index: self.counters.len(),
                    });
                }
                if role == Role::StacksFreq {
                    self.freq_counters.push(self.counters.len());
                }
                self.counters.push(c);
                Ok(())
            }
            Err(e) => match fallback_event(self.event, &e).filter(|_| role == Role::OnCpu) {
                Some(next) => {
                    self.event = Some(next);
                    self.open_role(role, scope, ring_exp, what)
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
        match sys::pin_context(tid) {
            Ok(pin) => self.pins.push(pin),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(None),
            // Whatever stops it stops the sampling counters too, which
            // explain it.
            Err(_) => {}
        }
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
