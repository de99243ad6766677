//! Recording real processes with real perf events (needs root or CAP_PERFMON,
//! as the test machines have). Tests run one at a time: they measure CPU
//! shares, and parallel busy loops would skew each other.
//!
//! Nothing here waits by sleeping: the recorder calls its progress callback
//! from its loop, after every counter is enabled, so the first call is the
//! readiness signal (a workload is released, or CPU time is read, from it);
//! the helper workloads say when they are ready on their standard output.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nflame_sampler::{record, Error, RecordOptions, Recording, StopReason, Target};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills and reaps the child when dropped, so a failed assertion leaves no busy loop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn spawn(program: &str, args: &[&str]) -> Guard {
    Guard(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    )
}

fn busy_sh() -> Guard {
    spawn("sh", &["-c", "while :; do :; done"])
}

/// Runs this test binary as a workload (see `helper_main`) and waits for its
/// `ready` line; its standard input is the go signal where a mode waits.
fn spawn_helper(mode: &str) -> (Guard, ChildStdin) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", "helper_main", "--nocapture", "--test-threads=1"])
        .env("NFLAME_SAMPLER_HELPER", mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper");
    let stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let guard = Guard(child);
    // The test harness prints its own lines too: wait for ours.
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        let n = out.read_line(&mut line).expect("helper output");
        assert!(n > 0, "the helper ({mode}) exited before it was ready");
    }
    (guard, stdin)
}

/// In the helper: says it is ready (on a line of its own).
fn say_ready() {
    let mut out = std::io::stdout().lock();
    writeln!(out).and_then(|()| writeln!(out, "ready")).unwrap();
    out.flush().unwrap();
}

/// In the helper: waits for a line on standard input (the go signal).
fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// Sends the go signal to a helper.
fn go(stdin: &mut ChildStdin) {
    stdin
        .write_all(b"go\n")
        .and_then(|()| stdin.flush())
        .unwrap();
}

/// The event the recorder picks by default on this machine: `cycles` where
/// the kernel lists a hardware PMU with a cycles event, else `cpu-clock`.
fn default_event() -> &'static str {
    let pmu = std::fs::read_dir("/sys/bus/event_source/devices")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| {
            let events = d.path().join("events");
            events.join("cpu-cycles").exists() || events.join("cpu_cycles").exists()
        });
    if pmu {
        "cycles"
    } else {
        "cpu-clock"
    }
}

fn spin(d: Duration) {
    let t = Instant::now();
    let mut x = 0u64;
    while t.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

/// Spins until this thread has used `d` of CPU time (the scheduler's own
/// account, `/proc/thread-self/schedstat`), however busy the machine is.
fn spin_cpu(d: Duration) {
    let used = || {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_nanos)
    };
    let end = used() + d;
    while used() < end {
        spin(Duration::from_millis(2));
    }
}

/// Not a test: the workload run by `spawn_helper` (does nothing otherwise).
#[test]
fn helper_main() {
    match std::env::var("NFLAME_SAMPLER_HELPER").as_deref() {
        // One thread, started when told (after the recorder attached).
        Ok("late-thread") => {
            say_ready();
            wait_for_go();
            std::thread::Builder::new()
                .name("late-worker".into())
                .spawn(|| spin(Duration::from_millis(800)))
                .expect("thread")
                .join()
                .expect("join");
        }
        Ok("spin-exit") => {
            say_ready();
            // CPU time, not wall time: a busy machine gives it less CPU.
            spin_cpu(Duration::from_millis(700));
        }
        // Two busy threads, running when it says ready, until killed.
        Ok("early-threads") => {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    std::thread::Builder::new()
                        .name("early-worker".into())
                        .spawn(|| spin(Duration::from_secs(60)))
                        .expect("thread")
                })
                .collect();
            say_ready();
            for w in workers {
                w.join().expect("join");
            }
        }
        _ => {}
    }
}

/// CPU time of a single-threaded process so far, in seconds (the
/// scheduler's own account, in nanoseconds: `/proc/PID/schedstat`).
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no schedstat for {pid}")) as f64
        / 1e9
}

fn opts(target: Target, secs: f64) -> RecordOptions {
    let mut o = RecordOptions::new(target);
    o.duration = Some(Duration::from_secs_f64(secs));
    o
}

fn run(o: &RecordOptions) -> Result<Recording, Error> {
    let stop = AtomicBool::new(false);
    record(o, &stop, |_| {})
}

fn samples_of(r: &Recording, pid: u32) -> u64 {
    r.samples
        .iter()
        .filter(|s| s.pid == pid)
        .map(|s| s.count)
        .sum()
}

#[test]
fn pid_target_sample_count_matches_frequency() {
    let _s = serial();
    let child = busy_sh();
    let pid = child.pid();
    // (samples so far, the target's CPU seconds) at each progress call: the
    // window is the sampling itself, from the first call (counters enabled)
    // to the last one inside the loop, whatever setup and teardown cost.
    let mut marks: Vec<(u64, f64)> = Vec::new();
    let stop = AtomicBool::new(false);
    let r = record(&opts(Target::Pids(vec![pid]), 2.0), &stop, |p| {
        marks.push((p.samples, cpu_seconds(pid)));
    })
    .expect("record");
    // The last call comes after the counters are disabled: not a mark.
    marks.pop();
    assert!(marks.len() >= 3, "progress calls: {marks:?}");
    let (first, last) = (marks[0], marks[marks.len() - 1]);
    let n = last.0 - first.0;
    let cpu = last.1 - first.1;
    // A busy process gets one sample per 1/999 s of CPU it uses; the machine
    // may be shared, so compare with the CPU it actually got.
    let expected = r.frequency as f64 * cpu;
    eprintln!(
        "samples {n}, cpu {cpu:.3}s, expected {expected:.0}, wall {:.3}s, event {}",
        r.duration.as_secs_f64(),
        r.event
    );
    assert!(cpu > 0.2, "the busy loop got too little CPU ({cpu:.3}s)");
    assert!(
        (n as f64 - expected).abs() <= 0.2 * expected,
        "{n} samples, expected {expected:.0}"
    );
    assert_eq!(
        samples_of(&r, pid),
        r.sample_count(),
        "only the target was sampled"
    );
    assert_eq!(r.event, default_event());
    assert_eq!(r.stop_reason, StopReason::Duration);
    // The duration is wall time from the enabling of the counters; the loop
    // checks it at least every 100 ms, later on a loaded machine.
    assert!(r.duration >= Duration::from_secs(2), "{:?}", r.duration);
    assert_eq!(r.lost, 0);
    // Stacks are real: the leaf falls in an executable mapping of the process.
    let p = &r.processes[&pid];
    assert_eq!(p.comm, "sh");
    let leaf_hits = r
        .samples
        .iter()
        .filter(|s| s.user.first().is_some_and(|&a| p.mapping_for(a).is_some()))
        .map(|s| s.count)
        .sum::<u64>();
    assert!(
        leaf_hits * 10 >= n * 9,
        "{leaf_hits}/{n} user leaves in mappings"
    );
}

#[test]
fn user_only_and_kernel_only_are_honoured() {
    let _s = serial();
    let child = busy_sh();
    let mut o = opts(Target::Pids(vec![child.pid()]), 0.5);
    o.kernel = false;
    let r = run(&o).expect("user-only");
    assert!(!r.kernel && r.user);
    assert!(r.sample_count() > 50, "{} samples", r.sample_count());
    assert!(r
        .samples
        .iter()
        .all(|s| s.kernel.is_empty() && !s.user.is_empty()));
    drop(child);

    // dd between /dev/zero and /dev/null spends most of its time in the
    // kernel (spawn returns once dd is executing).
    let child = spawn("dd", &["if=/dev/zero", "of=/dev/null", "bs=1M"]);
    let mut o = opts(Target::Pids(vec![child.pid()]), 0.5);
    o.user = false;
    let r = run(&o).expect("kernel-only");
    assert!(r.kernel && !r.user);
    assert!(r.sample_count() > 50, "{} samples", r.sample_count());
    assert!(r
        .samples
        .iter()
        .all(|s| s.user.is_empty() && !s.kernel.is_empty()));
    assert!(r
        .samples
        .iter()
        .all(|s| s.kernel[0] >= 0xffff_0000_0000_0000));
}

#[test]
fn thread_started_after_attach_is_sampled() {
    let _s = serial();
    let (child, mut stdin) = spawn_helper("late-thread");
    let pid = child.pid();
    // The thread starts once sampling runs; the recording ends when the
    // helper exits after it (the duration is only a bound).
    let mut told = false;
    let stop = AtomicBool::new(false);
    let r = record(&opts(Target::Pids(vec![pid]), 60.0), &stop, |_| {
        if !told {
            told = true;
            go(&mut stdin);
        }
    })
    .expect("record");
    let p = &r.processes[&pid];
    let late: Vec<u32> = p
        .threads
        .iter()
        .filter(|(_, name)| name.as_str() == "late-worker")
        .map(|(&tid, _)| tid)
        .collect();
    assert_eq!(late.len(), 1, "threads: {:?}", p.threads);
    let n: u64 = r
        .samples
        .iter()
        .filter(|s| s.tid == late[0])
        .map(|s| s.count)
        .sum();
    eprintln!("late thread samples: {n}, stop {:?}", r.stop_reason);
    assert!(n > 100, "only {n} samples of the late thread");
    // The helper exits after its thread: the recording ends with it.
    assert_eq!(r.stop_reason, StopReason::TargetsExited);
    assert!(p.exited);
}

#[test]
fn every_existing_thread_is_sampled() {
    let _s = serial();
    let (child, _stdin) = spawn_helper("early-threads");
    let pid = child.pid();
    let r = run(&opts(Target::Pids(vec![pid]), 1.0)).expect("record");
    let p = &r.processes[&pid];
    let workers: Vec<u32> = p
        .threads
        .iter()
        .filter(|(_, name)| name.as_str() == "early-worker")
        .map(|(&tid, _)| tid)
        .collect();
    assert_eq!(workers.len(), 2, "threads: {:?}", p.threads);
    // Both spin alike: each gets a fair part of the process's samples,
    // however much CPU the machine leaves them.
    let all = samples_of(&r, pid);
    assert!(all > 100, "{all} samples of the process");
    for tid in workers {
        let n: u64 = r
            .samples
            .iter()
            .filter(|s| s.tid == tid)
            .map(|s| s.count)
            .sum();
        eprintln!("thread {tid}: {n} of {all} samples");
        assert!(n * 4 >= all, "thread {tid}: {n} of {all} samples");
    }
}

#[test]
fn cycles_is_used_where_the_cpu_has_it_and_refused_clearly_elsewhere() {
    let _s = serial();
    let child = busy_sh();
    let mut o = opts(Target::Pids(vec![child.pid()]), 0.2);
    o.event = nflame_sampler::EventChoice::Cycles;
    if default_event() == "cycles" {
        assert_eq!(run(&o).expect("cycles").event, "cycles");
    } else {
        let e = run(&o).expect_err("no PMU: no cycles");
        assert!(matches!(e, Error::EventUnavailable { .. }), "{e:?}");
        assert!(e.to_string().contains("cycles"), "{e}");
    }
    o.event = nflame_sampler::EventChoice::CpuClock;
    assert_eq!(run(&o).expect("cpu-clock").event, "cpu-clock");
}

#[test]
fn child_process_started_after_attach_is_sampled() {
    let _s = serial();
    // The shell forks its busy child when told, once sampling runs.
    let mut child = Guard(
        Command::new("sh")
            .args(["-c", "read go; (while :; do :; done) & wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let pid = child.pid();
    let mut stdin = child.0.stdin.take().unwrap();
    let mut told = false;
    let stop = AtomicBool::new(false);
    let r = record(&opts(Target::Pids(vec![pid]), 1.5), &stop, |_| {
        if !told {
            told = true;
            go(&mut stdin);
        }
    })
    .expect("record");
    let others: Vec<u32> = r
        .samples
        .iter()
        .map(|s| s.pid)
        .filter(|&p| p != pid)
        .collect();
    assert!(others.len() > 100, "{} samples of children", others.len());
    let sub = others[0];
    assert!(r.processes.contains_key(&sub), "{:?}", r.processes.keys());
    assert!(!r.processes[&sub].mappings.is_empty());
    // The subshell is still running: kill the whole group of this child.
    let _ = Command::new("pkill")
        .args(["-P", &pid.to_string()])
        .status();
}

/// A process that starts short children one after another and waits for
/// each (a shell running a command in a loop; an event loop calling
/// `os.execute`) is sampled for its own CPU time too, not only its
/// children: the kernel would otherwise swap its perf context with a
/// child's at the switch between them, and its counters would leave with
/// the child.
#[test]
fn process_starting_children_in_a_loop_is_sampled_itself() {
    let _s = serial();
    let child = spawn("sh", &["-c", "while :; do /bin/true; done"]);
    let pid = child.pid();
    let mut marks: Vec<(u64, f64)> = Vec::new();
    let stop = AtomicBool::new(false);
    let r = record(&opts(Target::Pids(vec![pid]), 2.0), &stop, |_| {
        marks.push((0, cpu_seconds(pid)));
    })
    .expect("record");
    marks.pop();
    assert!(marks.len() >= 3, "progress calls: {marks:?}");
    // The shell's own CPU time while sampling (its children's is theirs).
    let cpu = marks[marks.len() - 1].1 - marks[0].1;
    let own = samples_of(&r, pid);
    let children = r.sample_count() - own;
    let expected = r.frequency as f64 * cpu;
    eprintln!(
        "shell: {own} samples for {cpu:.3}s of CPU (expected {expected:.0}); children: {children}"
    );
    assert!(cpu > 0.02, "the shell got too little CPU ({cpu:.3}s)");
    // One sample per 1/999 s of its CPU, whatever the machine's load; the
    // window's ends are approximate (progress calls every 100 ms or so).
    assert!(
        own as f64 >= 0.5 * expected,
        "{own} samples of the shell itself, expected about {expected:.0}"
    );
}

#[test]
fn target_exiting_mid_recording_keeps_samples_and_mappings() {
    let _s = serial();
    let (mut child, _stdin) = spawn_helper("spin-exit");
    let pid = child.pid();
    let t = Instant::now();
    // The exit ends it, long before the duration.
    let r = run(&opts(Target::Pids(vec![pid]), 60.0)).expect("record");
    let _ = child.0.wait();
    eprintln!(
        "recording took {:.3}s, {} samples",
        t.elapsed().as_secs_f64(),
        r.sample_count()
    );
    assert_eq!(r.stop_reason, StopReason::TargetsExited);
    assert!(r.duration < Duration::from_secs(30), "{:?}", r.duration);
    assert!(r.sample_count() > 100);
    let p = &r.processes[&pid];
    assert!(p.exited);
    let exe = std::env::current_exe().unwrap();
    assert!(
        p.mappings.iter().any(|m| m.path == exe),
        "no mapping of {} in {:#?}",
        exe.display(),
        p.mappings
    );
    // Most user leaves resolve to a mapping even though the process is gone.
    let hits = r
        .samples
        .iter()
        .filter(|s| s.user.first().is_some_and(|&a| p.mapping_for(a).is_some()))
        .map(|s| s.count)
        .sum::<u64>();
    assert!(hits * 10 >= r.sample_count() * 9);
}

#[test]
fn command_target_records_until_exit() {
    let _s = serial();
    let argv: Vec<OsString> = [
        "sh",
        "-c",
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exit 3",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut o = RecordOptions::new(Target::Command(argv));
    o.duration = Some(Duration::from_secs(60));
    let t = Instant::now();
    let r = run(&o).expect("record");
    eprintln!(
        "command ran {:.3}s, {} samples",
        t.elapsed().as_secs_f64(),
        r.sample_count()
    );
    assert_eq!(r.stop_reason, StopReason::TargetsExited);
    assert_eq!(r.command_status, Some(3));
    assert!(r.sample_count() > 50, "{} samples", r.sample_count());
    let pid = r.samples[0].pid;
    let p = &r.processes[&pid];
    assert_eq!(p.comm, "sh");
    assert!(p.exited);
    assert!(p
        .mappings
        .iter()
        .any(|m| m.path.to_string_lossy().contains("dash")
            || m.path.to_string_lossy().ends_with("/sh")));
    // Nothing before the exec: no sample of the test binary's own code.
    let exe = std::env::current_exe().unwrap();
    assert!(!p.mappings.iter().any(|m| m.path == exe));
}

#[test]
fn command_that_cannot_start_is_an_error() {
    let _s = serial();
    let o = RecordOptions::new(Target::Command(vec!["/nonexistent/program".into()]));
    let err = run(&o).expect_err("must fail");
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
}

#[test]
fn name_target_catches_process_started_during_recording() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("nfl-nm-{}", std::process::id() % 100000);
    let link = dir.path().join(&name);
    std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let recorder = {
        let name = name.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Ended by the flag (the duration is only a bound).
            let o = opts(Target::Names(vec![name]), 60.0);
            record(&o, &stop, |_| {
                let _ = ready_tx.send(());
            })
        })
    };
    ready
        .recv_timeout(Duration::from_secs(60))
        .expect("the recorder samples");
    let child = spawn(link.to_str().unwrap(), &["-c", "while :; do :; done"]);
    let pid = child.pid();
    // The process runs 0.8 s: that is the workload, not a wait.
    std::thread::sleep(Duration::from_millis(800));
    drop(child);
    stop.store(true, Ordering::Relaxed);
    let r = recorder.join().unwrap().expect("record");
    let n = samples_of(&r, pid);
    eprintln!(
        "{n} samples of the late {name} (pid {pid}), {} total",
        r.sample_count()
    );
    assert!(n > 100, "{n} samples");
    assert_eq!(n, r.sample_count(), "only the named process is kept");
    let p = &r.processes[&pid];
    assert_eq!(p.comm, name);
    assert!(p.exited);
    assert!(!p.mappings.is_empty());
}

#[test]
fn name_that_never_matches_is_an_error() {
    let _s = serial();
    let err = run(&opts(Target::Names(vec!["no-such-proc-q".into()]), 0.3)).expect_err("no match");
    assert!(matches!(err, Error::NoProcessMatched { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-proc-q"));
}

#[test]
fn missing_pid_is_named_in_the_error() {
    let _s = serial();
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    let err = run(&opts(Target::Pids(vec![pid]), 0.5)).expect_err("no such process");
    assert!(
        matches!(err, Error::NoSuchProcess { pid: p } if p == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
}

#[test]
fn zombie_pid_is_reported_as_exited() {
    let _s = serial();
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    // Not reaped yet: a zombie once it exited.
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "true did not exit"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = run(&opts(Target::Pids(vec![pid]), 0.5)).expect_err("exited");
    c.wait().unwrap();
    assert!(
        matches!(err, Error::ProcessExited { pid: p } if p == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
}

#[test]
fn all_target_stops_on_flag_with_valid_output() {
    let _s = serial();
    let child = busy_sh();
    // The flag, once the busy loop has had 0.3 s of CPU while sampled (from
    // the first progress call: every counter is enabled), however long a
    // loaded machine takes to give it that.
    let stop = AtomicBool::new(false);
    let mut progress_calls = 0;
    let mut cpu0 = None;
    let mut o = RecordOptions::new(Target::All);
    o.duration = Some(Duration::from_secs(120));
    let r = record(&o, &stop, |_| {
        progress_calls += 1;
        let cpu = cpu_seconds(child.pid());
        if cpu - *cpu0.get_or_insert(cpu) >= 0.3 {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .expect("record");
    assert_eq!(r.stop_reason, StopReason::Stopped);
    assert!(progress_calls >= 1);
    assert!(samples_of(&r, child.pid()) > 100);
    // Every sampled pid has its process entry.
    assert!(r.samples.iter().all(|s| r.processes.contains_key(&s.pid)));
}
