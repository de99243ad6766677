//! Off-CPU and wall-clock recording of a real program with known waits
//! (`fixtures/workloads/offcpu.c`, built here with gcc), with real perf
//! events (needs root or CAP_PERFMON, as the test machines have).
//!
//! The program measures the time it spends in each of its waits; the tests
//! compare what the recording attributes to each function with that, as
//! times or as shares, so they hold on a busy machine: a wait that lasts
//! longer because the CPU is busy lasts longer in both. Frames are told
//! apart by address: the program is linked at fixed addresses (`-no-pie`)
//! and each function's range is read from its symbol table.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nflame_sampler::{
    record, record_with_exited, Measure, ProcessInfo, RawSample, RecordOptions, Recording,
    SampleKind, Target, ThreadTimes,
};
use object::{Object, ObjectSegment, ObjectSymbol};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The workload and its functions' address ranges.
struct Program {
    path: PathBuf,
    symbols: HashMap<String, (u64, u64)>,
    /// File offset of each function's first byte (the address of a
    /// function of an exited process is moved, its file offset is not).
    offsets: HashMap<String, u64>,
    _dir: tempfile::TempDir,
}

fn program() -> &'static Program {
    static P: OnceLock<Program> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("offcpu");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/workloads/offcpu.c");
        let out = Command::new("gcc")
            .args([
                "-O2",
                "-g",
                "-no-pie",
                "-fno-optimize-sibling-calls",
                "-pthread",
            ])
            .arg("-o")
            .arg(&path)
            .arg(&src)
            .output()
            .expect("gcc runs");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let data = std::fs::read(&path).expect("read the program");
        let elf = object::File::parse(&*data).expect("parse the program");
        let symbols: HashMap<String, (u64, u64)> = elf
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
            .filter_map(|s| Some((s.name().ok()?.to_string(), (s.address(), s.size()))))
            .collect();
        let offsets = symbols
            .iter()
            .filter_map(|(name, &(addr, _))| {
                let seg = elf
                    .segments()
                    .find(|g| (g.address()..g.address() + g.size()).contains(&addr))?;
                Some((name.clone(), addr - seg.address() + seg.file_range().0))
            })
            .collect();
        Program {
            path,
            symbols,
            offsets,
            _dir: dir,
        }
    })
}

impl Program {
    /// Whether the user stack of `s` passes through function `name`.
    fn in_function(&self, s: &RawSample, name: &str) -> bool {
        let &(start, size) = self
            .symbols
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"));
        // Return addresses point after the call: look at addr - 1, except
        // for the leaf.
        s.user.iter().enumerate().any(|(i, &a)| {
            let a = if i == 0 { a } else { a.wrapping_sub(1) };
            (start..start + size).contains(&a)
        })
    }
}

impl Program {
    /// [`Program::in_function`] for a sample of `info`, a process that may
    /// have exited (its file mappings and addresses are then moved): by
    /// file offset, in its mappings of the program.
    fn in_function_of(&self, info: &ProcessInfo, s: &RawSample, name: &str) -> bool {
        let (&start, &(_, size)) = (
            self.offsets
                .get(name)
                .unwrap_or_else(|| panic!("no {name}")),
            self.symbols.get(name).expect("its symbol"),
        );
        let file = self.path.file_name();
        s.user.iter().enumerate().any(|(i, &a)| {
            let a = if i == 0 { a } else { a.wrapping_sub(1) };
            info.mapping_for(a)
                .filter(|m| m.path.file_name() == file)
                .is_some_and(|m| (start..start + size).contains(&(a - m.start + m.offset)))
        })
    }
}

/// Kills and reaps the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `offcpu -w [-r REPORT] MODE SECS` and waits until it is ready.
fn start_waiting(mode: &str, secs: &str, report: &Path) -> Guard {
    let mut child = Command::new(&program().path)
        .args(["-w", "-r"])
        .arg(report)
        .args([mode, secs])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn offcpu");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line.trim(), "ready");
    Guard(child)
}

fn read_report(path: &Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(path)
        .expect("report written")
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn record_with(o: &RecordOptions, mut on_start: impl FnMut()) -> Recording {
    let stop = AtomicBool::new(false);
    let mut started = false;
    record(o, &stop, |_| {
        if !started {
            started = true;
            on_start();
        }
    })
    .expect("record")
}

fn options(target: Target, measure: Measure) -> RecordOptions {
    let mut o = RecordOptions::new(target);
    o.measure = measure;
    o.progress_interval = Duration::from_millis(50);
    if let Ok(r) = std::env::var("NFLAME_TEST_SWITCH_RATE") {
        o.switch_rate = r.parse().unwrap();
    }
    o
}

/// Nanoseconds of samples of thread `tid` passing through `function`,
/// of the kinds `keep` accepts.
fn weight_in(rec: &Recording, tid: u32, function: &str, keep: impl Fn(SampleKind) -> bool) -> f64 {
    rec.samples
        .iter()
        .filter(|s| s.tid == tid && keep(s.kind) && program().in_function(s, function))
        .map(|s| s.period as f64)
        .sum()
}

fn times_of(rec: &Recording, pid: u32, tid: u32) -> ThreadTimes {
    *rec.processes[&pid]
        .times
        .get(&tid)
        .unwrap_or_else(|| panic!("no times for thread {tid}"))
}

fn thread_named(rec: &Recording, pid: u32, name: &str) -> u32 {
    *rec.processes[&pid]
        .threads
        .iter()
        .find(|(_, n)| n.as_str() == name)
        .unwrap_or_else(|| panic!("no thread {name}"))
        .0
}

#[test]
fn each_wait_gets_its_off_cpu_time() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let argv = vec![
        program().path.clone().into_os_string(),
        "-r".into(),
        report.clone().into_os_string(),
        "mix".into(),
        "3".into(),
    ];
    let rec = record_with(&options(Target::Command(argv), Measure::OffCpu), || {});
    let r = read_report(&report);
    let pid = *rec.processes.keys().next().expect("a process");
    assert_eq!(rec.measure, Measure::OffCpu);
    assert_eq!(rec.event, "context-switches");
    assert!(rec.samples.iter().all(|s| s.kind.is_off_cpu()));
    for (function, known) in [
        ("do_sleep", r["sleep"]),
        ("do_pipe", r["pipe"]),
        ("do_poll", r["poll"]),
    ] {
        let got = weight_in(&rec, pid, function, |_| true);
        eprintln!("{function}: recorded {got:.0} ns, measured {known:.0} ns");
        assert!(
            (got - known).abs() <= 0.1 * known,
            "{function}: {got:.0} ns off the CPU recorded, {known:.0} ns measured"
        );
    }
    // The feeder sleeps 16 ms for each pipe read of the main thread.
    let feeder = thread_named(&rec, pid, "feeder");
    let slept = weight_in(&rec, feeder, "feeder_answer", |k| k == SampleKind::Blocked);
    assert!(slept > 0.5 * r["pipe"], "feeder: {slept:.0} ns blocked");
    eprintln!("{:?}", rec.off_cpu);
    assert_eq!(rec.off_cpu.broken, 0);
    assert!(rec.off_cpu.switches >= rec.off_cpu.sampled && rec.off_cpu.sampled > 0);
}

#[test]
fn wall_clock_shares_and_thread_totals() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let child = start_waiting("mix", "3", &report);
    let pid = child.0.id();
    let mut o = options(Target::Pids(vec![pid]), Measure::Wall);
    o.duration = Some(Duration::from_secs(5));
    // The program works once the recording runs, and it waits in
    // wait_for_go until then.
    let rec = record_with(&o, || unsafe_kill(pid, libc::SIGUSR1));
    let r = read_report(&report);
    assert_eq!(rec.event, "cpu-clock");
    let main_total: f64 = rec
        .samples
        .iter()
        .filter(|s| s.tid == pid)
        .map(|s| s.period as f64)
        .sum();
    for (function, known) in [
        ("do_sleep", r["sleep"]),
        ("do_pipe", r["pipe"]),
        ("do_poll", r["poll"]),
        ("do_spin", r["spin"]),
    ] {
        let got = weight_in(&rec, pid, function, |_| true) / main_total;
        let want = known / main_total;
        eprintln!(
            "{function}: {:.1}% recorded, {:.1}% measured",
            got * 100.0,
            want * 100.0
        );
        assert!(
            (got - want).abs() <= 0.05,
            "{function}: {:.1}% of the main thread's time recorded, {:.1}% measured",
            got * 100.0,
            want * 100.0
        );
    }
    // Spinning is on the CPU, or preempted on a busy machine; not blocked.
    let spin_on = weight_in(&rec, pid, "do_spin", |k| k == SampleKind::OnCpu);
    let spin_blocked = weight_in(&rec, pid, "do_spin", |k| k == SampleKind::Blocked);
    assert!(spin_on > 0.0, "do_spin never on the CPU");
    assert!(
        spin_blocked < 0.05 * r["spin"],
        "do_spin blocked {spin_blocked:.0} ns"
    );
    // Before the signal, the main thread waited in wait_for_go.
    assert!(weight_in(&rec, pid, "wait_for_go", |k| k == SampleKind::Blocked) > 0.0);
    // Every thread's time is accounted for: on-CPU samples and off-CPU
    // intervals add up to its span, and so do its switch totals.
    for (&tid, name) in &rec.processes[&pid].threads {
        let t = times_of(&rec, pid, tid);
        let sampled: f64 = rec
            .samples
            .iter()
            .filter(|s| s.tid == tid)
            .map(|s| s.period as f64)
            .sum();
        let span = t.span as f64;
        eprintln!("{name}-{tid}: {t:?}, samples {sampled:.0} ns");
        assert!(
            (sampled - span).abs() <= 0.05 * span,
            "{name}: samples add up to {sampled:.0} ns of a {span:.0} ns span"
        );
        let total = (t.on_cpu + t.off_cpu()) as f64;
        assert!(
            (total - span).abs() <= 0.05 * span,
            "{name}: {t:?} does not add up"
        );
    }
}

#[test]
fn preempted_time_is_kept_apart_from_blocked_time() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let argv = vec![
        program().path.clone().into_os_string(),
        "-r".into(),
        report.into_os_string(),
        "contend".into(),
        "2".into(),
    ];
    let rec = record_with(&options(Target::Command(argv), Measure::OffCpu), || {});
    let pid = *rec.processes.keys().next().expect("a process");
    let contenders: Vec<u32> = rec.processes[&pid]
        .threads
        .iter()
        .filter(|(_, n)| n.as_str() == "contender")
        .map(|(&t, _)| t)
        .collect();
    assert_eq!(contenders.len(), 2, "{:?}", rec.processes[&pid].threads);
    for tid in contenders {
        let t = times_of(&rec, pid, tid);
        let span = t.span as f64;
        eprintln!("contender-{tid}: {t:?}");
        // Two spinning threads on one CPU: each waits for it about half of
        // the time, more when other work shares that CPU.
        assert!(t.preempted as f64 >= 0.25 * span, "{t:?}");
        assert!((t.blocked as f64) < 0.05 * span, "{t:?}");
        let preempted = weight_in(&rec, tid, "contend_spin", |k| k == SampleKind::Preempted);
        assert!(
            (preempted - t.preempted as f64).abs() <= 0.1 * t.preempted as f64,
            "preempted samples {preempted:.0} ns, total {}",
            t.preempted
        );
    }
}

#[test]
fn threads_asleep_for_the_whole_recording_are_accounted() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let child = start_waiting("mix", "1", &dir.path().join("report"));
    let pid = child.0.id();
    let mut o = options(Target::Pids(vec![pid]), Measure::OffCpu);
    o.duration = Some(Duration::from_millis(1500));
    let rec = record_with(&o, || {});
    // Nobody moves: the main thread waits for the signal, the feeder for
    // a request, the idler for events. No switch happens; the stacks come
    // from where /proc shows them waiting.
    for (name, function) in [
        ("offcpu", "wait_for_go"),
        ("feeder", "feeder_answer"),
        ("idler", "idle_wait"),
    ] {
        let tid = thread_named(&rec, pid, name);
        let t = times_of(&rec, pid, tid);
        assert!(t.blocked as f64 >= 0.95 * t.span as f64, "{name}: {t:?}");
        let w = weight_in(&rec, tid, function, |k| k == SampleKind::Blocked);
        assert!(
            w >= 0.95 * t.span as f64,
            "{name}: {w:.0} ns in {function} of {}",
            t.span
        );
    }
}

#[test]
fn min_block_drops_short_waits() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let argv = vec![
        program().path.clone().into_os_string(),
        "-r".into(),
        dir.path().join("report").into_os_string(),
        "mix".into(),
        "1.5".into(),
    ];
    let mut o = options(Target::Command(argv), Measure::OffCpu);
    // The 16 ms pipe reads stay, the 8 ms sleeps and 4 ms polls go (but
    // for those the busy machine kept off the CPU 6 ms longer).
    o.min_block = Duration::from_millis(14);
    let rec = record_with(&o, || {});
    let r = read_report(&dir.path().join("report"));
    let pid = *rec.processes.keys().next().expect("a process");
    // Every interval kept lasted 14 ms at least (a sleep or a poll that
    // lasted that long on a busy machine included).
    for s in rec.samples.iter().filter(|s| s.pid == pid) {
        assert!(s.period >= s.count * 14_000_000, "{s:?}");
    }
    let w = |f| weight_in(&rec, pid, f, |_| true);
    assert!(
        w("do_pipe") > 0.5 * r["pipe"],
        "{} of {}",
        w("do_pipe"),
        r["pipe"]
    );
    assert!(
        w("do_sleep") < 0.5 * r["sleep"],
        "{} of {}",
        w("do_sleep"),
        r["sleep"]
    );
    assert!(
        w("do_poll") < 0.5 * r["poll"],
        "{} of {}",
        w("do_poll"),
        r["poll"]
    );
    // The totals keep every wait.
    let t = times_of(&rec, pid, pid);
    let sampled: u64 = rec
        .samples
        .iter()
        .filter(|s| s.tid == pid)
        .map(|s| s.period)
        .sum();
    assert!(t.blocked > sampled, "{t:?}, {sampled} ns sampled");
}

#[test]
fn a_high_switch_rate_is_sampled_not_lost() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let argv = vec![
        program().path.clone().into_os_string(),
        "-r".into(),
        report.clone().into_os_string(),
        "pingpong".into(),
        "2".into(),
    ];
    let o = options(Target::Command(argv), Measure::OffCpu);
    let rec = record_with(&o, || {});
    let r = read_report(&report);
    let secs = rec.duration.as_secs_f64();
    let info = rec.off_cpu;
    eprintln!(
        "{:.0} round trips/s, {:.0} switches/s, {:.0} stacks/s, lost {}, broken {}",
        r["round_trips"] / (r["wall"] / 1e9),
        info.switches as f64 / secs,
        info.sampled as f64 / secs,
        rec.lost,
        info.broken
    );
    // Two processes, each with a counter per CPU: at most the cap each
    // (and some slack for the first rounds, at every switch).
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let cap = 2.0 * cpus * info.max_rate as f64 * secs * 1.5;
    assert!((info.sampled as f64) <= cap, "{} stacks", info.sampled);
    // Each round trip is four switch records (out and in, both sides):
    // seen, or counted as lost when the recorder falls behind (a debug
    // build on a busy machine does), and then said.
    let records = 2.0 * info.switches as f64 + rec.lost as f64;
    assert!(
        records >= 3.0 * r["round_trips"],
        "{info:?}, lost {}",
        rec.lost
    );
    if rec.lost > 0 {
        assert!(
            rec.notes.iter().any(|n| n.contains("lost")),
            "{:?}",
            rec.notes
        );
    }
    // Memory follows the stacks, not the switches.
    assert!(rec.samples.len() < 1000, "{} entries", rec.samples.len());
    // The intervals with a stack stand for the others: their weights add up
    // to the exact off-CPU totals of the switches seen.
    let weights: f64 = rec.samples.iter().map(|s| s.period as f64).sum();
    let exact: f64 = rec
        .processes
        .values()
        .flat_map(|p| p.times.values())
        .map(|t| t.off_cpu() as f64)
        .sum();
    assert!(
        (weights - exact).abs() <= 0.05 * exact,
        "sampled weights {weights:.0} ns, exact {exact:.0} ns"
    );
}

fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // unreaped child, so it cannot have been reused.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Attached by pid to both processes of the ping-pong, every counter is
/// one the recorder reaches: the stacks keep to the budget of the CPUs.
#[test]
fn a_high_switch_rate_attached_by_pid_keeps_to_the_budget() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let main = Guard(
        Command::new(&program().path)
            .arg("-r")
            .arg(dir.path().join("report"))
            .args(["pingpong", "4"])
            .spawn()
            .expect("spawn offcpu"),
    );
    let pid = main.0.id();
    let children = format!("/proc/{pid}/task/{pid}/children");
    let mut child = None;
    for _ in 0..500 {
        child = std::fs::read_to_string(&children)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok());
        if child.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let child = child.expect("the ping-pong's second process");
    let mut o = options(Target::Pids(vec![pid, child]), Measure::OffCpu);
    o.duration = Some(Duration::from_secs(2));
    let rec = record_with(&o, || {});
    drop(main);
    let secs = rec.duration.as_secs_f64();
    let info = rec.off_cpu;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    eprintln!(
        "{:.0} switches/s, {:.0} stacks/s, lost {}, lost stacks {}",
        info.switches as f64 / secs,
        info.sampled as f64 / secs,
        rec.lost,
        info.lost_stacks
    );
    assert!(
        info.switches as f64 > 20.0 * info.sampled as f64,
        "{info:?}"
    );
    // The first rounds (10 ms, 20 ms...) may take every switch.
    let budget = info.max_rate as f64 * cpus * secs * 1.5 + 4000.0;
    assert!((info.sampled as f64) <= budget, "{info:?}");
}

/// Processes that exit while recording are handed out as they go
/// (`record_with_exited`) with all their off-CPU time: three short runs of
/// the program, started one after the other by a shell that then becomes a
/// long run (which keeps the recording going, and stays in it as the
/// command), each leave in a part of their own with their threads' times
/// and every sample of theirs: their main thread's waits in `do_sleep`
/// weigh what it measured of them, and each thread's blocked samples add
/// up to its blocked total.
#[test]
fn exited_processes_are_handed_out_with_their_off_cpu_time() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script =
        "for i in 1 2 3; do \"$0\" -r \"$1/report.$i\" mix 0.4 & echo $! > \"$1/pid.$i\"; \
                  wait; done; exec \"$0\" mix 6";
    let argv = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        program().path.clone().into_os_string(),
        d.as_os_str().to_owned(),
    ];
    let o = options(Target::Command(argv), Measure::OffCpu);
    let stop = AtomicBool::new(false);
    let mut parts: Vec<Recording> = Vec::new();
    let rec = record_with_exited(&o, &stop, |_| {}, |part| parts.push(part)).expect("record");
    assert!(!parts.is_empty(), "nothing handed out");
    for part in &parts {
        assert_eq!(part.measure, Measure::OffCpu);
        assert_eq!(part.event, "context-switches");
    }
    for i in 1..=3 {
        let pid: u32 = std::fs::read_to_string(d.join(format!("pid.{i}")))
            .expect("the shell wrote the run's pid")
            .trim()
            .parse()
            .expect("a pid");
        let r = read_report(&d.join(format!("report.{i}")));
        let holding: Vec<&Recording> = parts
            .iter()
            .filter(|p| p.samples.iter().any(|s| s.pid == pid))
            .collect();
        assert_eq!(
            holding.len(),
            1,
            "run {i} (pid {pid}) in {} parts",
            holding.len()
        );
        let part = holding[0];
        assert!(!rec.processes.contains_key(&pid));
        assert!(rec.samples.iter().all(|s| s.pid != pid));
        let p = &part.processes[&pid];
        assert!(p.exited && p.comm == "offcpu", "{p:?}");
        let got: f64 = part
            .samples
            .iter()
            .filter(|s| s.tid == pid && s.kind == SampleKind::Blocked)
            .filter(|s| program().in_function_of(p, s, "do_sleep"))
            .map(|s| s.period as f64)
            .sum();
        eprintln!(
            "run {i}: do_sleep {got:.0} ns recorded, {:.0} ns measured",
            r["sleep"]
        );
        assert!(
            (got - r["sleep"]).abs() <= 0.1 * r["sleep"],
            "run {i}: {got:.0} ns in do_sleep recorded, {:.0} ns measured",
            r["sleep"]
        );
        // Main, feeder and idler.
        assert!(p.times.len() >= 3, "{:?}", p.times);
        for (&tid, t) in &p.times {
            let blocked: u64 = part
                .samples
                .iter()
                .filter(|s| s.tid == tid && s.kind == SampleKind::Blocked)
                .map(|s| s.period)
                .sum();
            assert!(
                blocked.abs_diff(t.blocked) <= t.blocked / 100 + 1_000,
                "run {i}, thread {tid}: {blocked} ns of blocked samples, {} ns blocked",
                t.blocked
            );
        }
    }
}
