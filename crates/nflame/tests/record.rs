//! End-to-end tests of `nflame record` with real perf events (run as root).
//!
//! The workload is `fixtures/workloads/calltree.c`, built here with gcc and
//! frame pointers. Its call tree and proportions are known: in `tree` mode,
//! `main;tree;work_a;spin` takes 60% of its CPU, `work_b` 30%, `work_c` 10%.
//!
//! Sample counts are compared with the CPU time the workload reports for its
//! working phase (`-r REPORT`: CLOCK_PROCESS_CPUTIME_ID), not with wall time:
//! the machine may be shared (other builds), and a busy thread that waits for
//! a CPU is not on the CPU, so it gets no `cpu-clock` sample. Expected samples
//! = CPU seconds × frequency; one busy thread on an idle CPU makes that
//! frequency × duration.
//!
//! To attach before the work starts, the workload waits for SIGUSR1 (`-w`); a
//! test sends it once the recorder holds perf event file descriptors (seen in
//! `/proc/PID/fd`) and a short grace period has passed (the counters are
//! enabled right after they are all opened).
//!
//! Every test that records holds one lock: the machine has two CPUs, and
//! concurrent recordings would steal CPU from each other's workloads.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{default_event, offcpu_bin, serial, workload_bin, Recorder};

const FREQ: u64 = 999;

fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null());
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running workload.
struct Workload {
    child: Child,
    report: PathBuf,
    _dir: tempfile::TempDir,
}

impl Workload {
    /// Starts `calltree -w MODE SECONDS`, waiting for SIGUSR1 to work.
    fn waiting(mode: &str, seconds: f64) -> Workload {
        Workload::spawn(workload_bin(), &[], mode, seconds)
    }

    /// Starts `calltree -w -c MODE SECONDS`: SECONDS of CPU time, however
    /// long a busy machine takes to give them.
    fn waiting_cpu(mode: &str, seconds: f64) -> Workload {
        Workload::spawn(workload_bin(), &["-c"], mode, seconds)
    }

    fn spawn(bin: &Path, flags: &[&str], mode: &str, seconds: f64) -> Workload {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report");
        let child = Command::new(bin)
            .arg("-w")
            .args(flags)
            .arg("-r")
            .arg(&report)
            .arg(mode)
            .arg(seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("workload starts");
        let mut w = Workload {
            child,
            report,
            _dir: dir,
        };
        // It prints "ready" once SIGUSR1 is blocked and awaited.
        let mut line = String::new();
        let stdout = w.child.stdout.as_mut().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert_eq!(line, "ready\n", "workload did not start");
        w
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start(&self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGUSR1) };
        assert_eq!(rc, 0, "signalling the workload");
    }

    /// Waits for the exit and returns the CPU seconds of the working phase.
    fn finish(mut self) -> f64 {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "workload failed: {status}");
        let text = std::fs::read_to_string(&self.report).expect("workload report");
        let cpu_ns: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
        cpu_ns / 1e9
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nflame record …` (on a pseudo-terminal) and waits until it samples.
fn start_recording(cmd: &mut Command) -> Recorder {
    let mut rec = Recorder::spawn(cmd);
    rec.wait_ready(Duration::from_secs(60));
    rec
}

/// Waits for a successful end of the recording.
fn finish_recorder(mut rec: Recorder) -> Output {
    let out = rec.finish(Duration::from_secs(120));
    assert!(
        out.status.success(),
        "nflame record failed: {}",
        stderr(&out)
    );
    out
}

/// Reads a folded file into stack → count.
fn folded(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut m = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (stack, n) = line.rsplit_once(' ').expect("stack COUNT");
        *m.entry(stack.to_string()).or_insert(0) += n.parse::<u64>().unwrap();
    }
    m
}

fn total(p: &BTreeMap<String, u64>) -> u64 {
    p.values().sum()
}

/// Share (0..=1) of samples whose stack has the frame `frame`.
fn share_with(p: &BTreeMap<String, u64>, frame: &str) -> f64 {
    let n: u64 = p
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f == frame))
        .map(|(_, n)| n)
        .sum();
    n as f64 / total(p).max(1) as f64
}

/// `frame`'s share is `expected` within what sampling allows: 1 point plus
/// 4.5 standard deviations of a share over this many samples (work_c:
/// 10 ± 5 points at 1,000 samples, ± 3.6 at 3,000; never down to 0). The
/// shares are set by the workload's loop counts, not by time, so a busy
/// machine does not move them.
fn assert_share(p: &BTreeMap<String, u64>, frame: &str, expected: f64) {
    let got = share_with(p, frame);
    let n = total(p).max(1) as f64;
    let tolerance = 0.01 + 4.5 * (expected * (1.0 - expected) / n).sqrt();
    assert!(
        (got - expected).abs() <= tolerance,
        "{frame}: {:.1}% of samples, expected {:.0}% ± {:.1} points\n{p:#?}",
        got * 100.0,
        expected * 100.0,
        tolerance * 100.0
    );
}

/// The known proportions of `tree` mode, and the sample count against the
/// workload's CPU time (within 20%).
fn assert_tree_profile(p: &BTreeMap<String, u64>, cpu_secs: f64) {
    assert_share(p, "work_a", 0.60);
    assert_share(p, "work_b", 0.30);
    assert_share(p, "work_c", 0.10);
    assert!(
        share_with(p, "spin") > 0.9,
        "spin is the leaf of the work: {p:#?}"
    );
    let main_rooted = p
        .iter()
        .filter(|(s, _)| s.starts_with("calltree;") && s.contains(";main;tree;work_"))
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        main_rooted as f64 >= 0.9 * total(p) as f64,
        "stacks run calltree;…;main;tree;work_*: {p:#?}"
    );
    let expected = cpu_secs * FREQ as f64;
    let n = total(p) as f64;
    eprintln!("samples {n}, workload CPU {cpu_secs:.3} s, expected {expected:.0}");
    assert!(
        cpu_secs > 0.3,
        "the workload got too little CPU ({cpu_secs:.3} s)"
    );
    assert!(
        (n - expected).abs() <= 0.2 * expected,
        "{n} samples, expected {expected:.0} (CPU {cpu_secs:.3} s × {FREQ} Hz) ± 20%"
    );
}

#[test]
fn by_pid_known_shares_and_sample_count() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::waiting_cpu("tree", 1.5);
    let pid = w.pid();
    let folded_path = dir.path().join("p.folded");
    let svg = dir.path().join("p.svg");
    let gz = dir.path().join("p.folded.gz");
    let rec = start_recording(
        nflame()
            .args([
                "record",
                "--pid",
                &w.pid().to_string(),
                "-F",
                &FREQ.to_string(),
            ])
            .arg("-o")
            .arg(&folded_path)
            .arg("-o")
            .arg(&svg)
            .arg("-o")
            .arg(&gz)
            .args(["--title", "calltree by pid"]),
    );
    w.start();
    let cpu = w.finish();
    let out = finish_recorder(rec);
    let err = stderr(&out);
    eprintln!("{err}");
    let p = folded(&folded_path);
    assert_tree_profile(&p, cpu);

    // The summary: how it ended, nothing lost, the machine's default event,
    // and names for (nearly) every user frame (the workload has symbols),
    // kernel frames named from kallsyms.
    let event = default_event();
    for want in [
        "nflame: recording ended (targets exited)".to_string(),
        format!("  samples    {}\n", total(&p)),
        "  lost       0 (0.00%)".to_string(),
        format!("  event      {event} at 999 Hz"),
    ] {
        assert!(err.contains(&want), "summary lacks {want:?}:\n{err}");
    }
    let named = err
        .lines()
        .find_map(|l| l.strip_prefix("  named      "))
        .unwrap_or_else(|| panic!("no named line:\n{err}"));
    let pct_after = |label: &str| -> f64 {
        let rest = &named[named.find(label).unwrap_or_else(|| panic!("{named}")) + label.len()..];
        rest[..rest.find('%').unwrap()].parse().unwrap()
    };
    assert!(pct_after("(user ") >= 99.0, "{named}");
    assert!(pct_after(", kernel ") >= 90.0, "{named}");
    // The gzip output is the same profile.
    let mut text = String::new();
    use std::io::Read;
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, std::fs::read_to_string(&folded_path).unwrap());
    // The SVG is complete and carries the recording's context.
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("calltree by pid"));
    assert!(svg.contains("work_a"));
    let ctx_start = svg
        .find(r#"<metadata id="nflame-context"><![CDATA["#)
        .unwrap();
    let ctx = &svg[ctx_start..];
    let ctx = &ctx[ctx.find('{').unwrap()..ctx.find("]]>").unwrap()];
    let ctx: serde_json::Value = serde_json::from_str(ctx).unwrap();
    assert_eq!(ctx["event"], event);
    assert_eq!(ctx["frequency"], 999);
    assert_eq!(ctx["samples"], total(&p));
    assert_eq!(ctx["lost"], 0);
    assert_eq!(ctx["targets"][0], format!("pid {pid} (calltree)"));
    assert!(ctx["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(ctx["kernel"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(ctx["command"]
        .as_str()
        .unwrap()
        .starts_with("nflame record --pid"));
    assert!(ctx["created"].as_str().unwrap().ends_with('Z'));
    assert!(ctx["duration_secs"].as_f64().unwrap() > 1.0);
}

#[test]
fn by_name_known_shares_and_sample_count() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    // A name nothing else on the machine has (comm keeps 15 bytes).
    let name = format!("nfct{}", std::process::id() % 1_000_000);
    let bin = dir.path().join(&name);
    std::fs::copy(workload_bin(), &bin).unwrap();
    let w = Workload::spawn(&bin, &["-c"], "tree", 1.5);
    let folded_path = dir.path().join("n.folded");
    // A recording by name ends on its duration or a signal: the signal,
    // once the workload is done (the duration only bounds it).
    let rec = start_recording(
        nflame()
            .args(["record", "--name", &name, "-d", "600", "-o"])
            .arg(&folded_path),
    );
    w.start();
    let cpu = w.finish();
    rec.signal(libc::SIGINT);
    let out = finish_recorder(rec);
    eprintln!("{}", stderr(&out));
    let mut p = folded(&folded_path);
    assert!(
        p.keys().all(|s| s.starts_with(&format!("{name};"))),
        "only the named process: {p:#?}"
    );
    // Same checks as by pid, with the root renamed.
    p = p
        .into_iter()
        .map(|(s, n)| (s.replacen(&name, "calltree", 1), n))
        .collect();
    assert_tree_profile(&p, cpu);
}

#[test]
fn by_command_known_shares_and_sample_count() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let folded_path = dir.path().join("c.folded");
    let out = nflame()
        .arg("record")
        .arg("-o")
        .arg(&folded_path)
        .arg("--")
        .arg(workload_bin())
        .args(["-c", "-r"])
        .arg(&report)
        .args(["tree", "1.5"])
        .output()
        .unwrap();
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("targets exited") && err.contains("exit status 0"),
        "{err}"
    );
    let cpu_ns: f64 = std::fs::read_to_string(&report)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let p = folded(&folded_path);
    assert_tree_profile(&p, cpu_ns / 1e9);
}

#[test]
fn syscalls_show_kernel_frames_under_their_user_frame() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::waiting("syscall", 1.0);
    let folded_path = dir.path().join("s.folded");
    let rec = start_recording(
        nflame()
            .args(["record", "--pid", &w.pid().to_string(), "-o"])
            .arg(&folded_path),
    );
    w.start();
    w.finish();
    finish_recorder(rec);
    let p = folded(&folded_path);
    let all = total(&p);
    let mut in_kernel = 0;
    let mut under_pull_zeros = 0;
    let mut in_read = 0;
    for (stack, &n) in &p {
        let frames: Vec<&str> = stack.split(';').collect();
        let Some(first_k) = frames.iter().position(|f| f.ends_with("_[k]")) else {
            continue;
        };
        in_kernel += n;
        // Kernel frames come last, right under the user frame that entered.
        assert!(
            frames[first_k..].iter().all(|f| f.ends_with("_[k]")),
            "{stack}"
        );
        if first_k > 0 && frames[first_k - 1] == "pull_zeros" {
            under_pull_zeros += n;
            if frames[first_k..].iter().any(|f| f.contains("read")) {
                in_read += n;
            }
        }
    }
    eprintln!("{all} samples, {in_kernel} in the kernel, {under_pull_zeros} under pull_zeros, {in_read} in a read function");
    assert!(in_kernel * 2 >= all, "mostly kernel time: {p:#?}");
    assert!(under_pull_zeros * 100 >= in_kernel * 95, "{p:#?}");
    assert!(in_read * 100 >= in_kernel * 80, "{p:#?}");
    assert!(
        p.keys()
            .any(|s| s.contains(";main;pull_zeros;") && s.contains("read_[k]")),
        "{p:#?}"
    );
}

/// Runs `nflame record ARGS -o OUT -- calltree MODE SECONDS` (the workload
/// as the command: sampled from its exec, no readiness needed; MODE may
/// start with calltree's flags, `-c tree`) and returns the profile and the
/// summary.
fn record_command(args: &[&str], mode: &str, secs: &str) -> (BTreeMap<String, u64>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("c.folded");
    let out = common::run(
        nflame()
            .arg("record")
            .args(args)
            .arg("-o")
            .arg(&out_path)
            .arg("--")
            .arg(workload_bin())
            .args(mode.split(' '))
            .arg(secs),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "record {args:?}: {err}");
    (folded(&out_path), err)
}

/// `--user-only` on a workload in user space, `--kernel-only` on one that
/// spends most of its time in read(2) from a function of its own (samples
/// are taken only in the part recorded: user mode, resp. kernel mode). Both
/// run for a second of CPU time.
#[test]
fn user_only_and_kernel_only() {
    let _s = serial();
    let (p, err) = record_command(&["--user-only"], "-c tree", "1");
    assert!(total(&p) >= 500, "{p:#?}");
    assert!(p.keys().all(|s| !s.contains("_[k]")), "{p:#?}");
    assert!(share_with(&p, "spin") > 0.9, "{p:#?}");
    assert!(err.contains(", kernel excluded)"), "{err}");

    let (p, err) = record_command(&["--kernel-only"], "-c syscall", "1");
    assert!(total(&p) >= 500, "{p:#?}");
    // The process name, then kernel frames only: no main, no pull_zeros.
    let user_frames: Vec<&String> = p
        .keys()
        .filter(|s| s.split(';').skip(1).any(|f| !f.ends_with("_[k]")))
        .collect();
    assert!(user_frames.is_empty(), "user frames: {user_frames:#?}");
    assert!(p.keys().all(|s| s.starts_with("calltree;")), "{p:#?}");
    let in_read: u64 = p
        .iter()
        .filter(|(s, _)| s.contains("read_[k]"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        in_read * 2 >= total(&p),
        "{in_read} of {} in read: {p:#?}",
        total(&p)
    );
    assert!(err.contains("(user excluded, kernel "), "{err}");

    let out = nflame()
        .args(["record", "--user-only", "--kernel-only", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `--inline`: the function inlined into the hot loop gets a frame of its
/// own (from the workload's debug info), and only with the option.
#[test]
fn inline_expands_inlined_functions() {
    let _s = serial();
    let (plain, _) = record_command(&[], "-c inline", "1");
    assert!(share_with(&plain, "blend") > 0.9, "{plain:#?}");
    assert_eq!(share_with(&plain, "mix"), 0.0, "{plain:#?}");
    let (expanded, _) = record_command(&["--inline"], "-c inline", "1");
    assert!(share_with(&expanded, "blend") > 0.9, "{expanded:#?}");
    // mix is the loop's arithmetic: a good part of the samples.
    assert!(share_with(&expanded, "mix") > 0.1, "{expanded:#?}");
    assert!(
        expanded
            .keys()
            .filter(|s| s.split(';').any(|f| f == "mix"))
            .all(|s| s.contains(";main;blend;mix")),
        "mix is always right under blend: {expanded:#?}"
    );
}

/// `--event`: cpu-clock anywhere; cycles where the CPU has it, else a clear
/// error and no output.
#[test]
fn event_choice() {
    let _s = serial();
    let (p, err) = record_command(&["--event", "cpu-clock"], "-c tree", "1");
    assert!(err.contains("  event      cpu-clock at 999 Hz"), "{err}");
    assert!(share_with(&p, "spin") > 0.9, "{p:#?}");

    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("c.folded");
    let out = common::run(
        nflame()
            .args(["record", "--event", "cycles", "-o"])
            .arg(&out_path)
            .arg("--")
            .arg(workload_bin())
            .args(["tree", "0.5"]),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    if default_event() == "cycles" {
        assert!(out.status.success(), "{err}");
        assert!(err.contains("  event      cycles at 999 Hz"), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cycles"), "{err}");
        assert!(!out_path.exists());
    }
}

/// The exit status is 0 when the reader of standard output goes away
/// before the recording is written (README, "Exit codes").
#[test]
fn reader_of_standard_output_gone() {
    let _s = serial();
    let mut child = nflame()
        .args(["record", "-o", "-", "--"])
        .arg(workload_bin())
        .args(["tree", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let out = common::finish(child, Duration::from_secs(120), "nflame record -o -");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("recording ended (targets exited)"), "{err}");
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn thread_started_after_attaching_is_sampled() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::waiting("late", 1.5);
    let folded_path = dir.path().join("t.folded");
    let rec = start_recording(
        nflame()
            .args([
                "record",
                "--per-thread",
                "--pid",
                &w.pid().to_string(),
                "-o",
            ])
            .arg(&folded_path),
    );
    // The thread starts 0.5 s after this.
    w.start();
    let cpu = w.finish();
    finish_recorder(rec);
    let p = folded(&folded_path);
    let late: u64 = p
        .iter()
        .filter(|(s, _)| s.contains(";late_thread_main;late_worker"))
        .map(|(_, n)| n)
        .sum();
    let late_thread_frames = p
        .iter()
        .filter(|(s, _)| s.contains("late_worker"))
        .all(|(s, _)| s.split(';').nth(1).is_some_and(|t| t.starts_with("late-")));
    eprintln!(
        "{late} of {} samples in the late thread, CPU {cpu:.3} s",
        total(&p)
    );
    assert!(
        late_thread_frames,
        "the late thread has its own frame: {p:#?}"
    );
    // 1.0 s of the late thread's 2.5 s of work in all (less if the machine is busy).
    assert!(late as f64 >= 0.2 * total(&p) as f64, "{p:#?}");
    assert!(share_with(&p, "early_worker") > 0.3, "{p:#?}");
}

#[test]
fn target_exiting_mid_recording_keeps_named_samples() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let short = Workload::waiting("exit", 0.6);
    let long = Workload::waiting("tree", 1.6);
    let folded_path = dir.path().join("x.folded");
    let rec = start_recording(
        nflame()
            .args(["record", "--per-pid", "--pid"])
            .arg(format!("{},{}", short.pid(), long.pid()))
            .arg("-o")
            .arg(&folded_path),
    );
    let short_pid = short.pid();
    short.start();
    long.start();
    let short_cpu = short.finish();
    long.finish();
    let out = finish_recorder(rec);
    eprintln!("{}", stderr(&out));
    let p = folded(&folded_path);
    let root = format!("calltree-{short_pid};");
    let short_stacks: BTreeMap<String, u64> = p
        .iter()
        .filter(|(s, _)| s.starts_with(&root))
        .map(|(s, &n)| (s.clone(), n))
        .collect();
    let n = total(&short_stacks) as f64;
    let expected = short_cpu * FREQ as f64;
    eprintln!("exited target: {n} samples, expected {expected:.0}");
    assert!(
        (n - expected).abs() <= 0.2 * expected,
        "{n} samples of the exited process, expected {expected:.0}: {p:#?}"
    );
    // Named: its own functions, nothing unknown.
    assert!(
        share_with(&short_stacks, "short_lived") > 0.9,
        "{short_stacks:#?}"
    );
    assert!(!short_stacks
        .keys()
        .any(|s| s.contains("[unknown]") || s.contains("[calltree]")));
    assert!(p.keys().any(|s| s.contains(";work_a;spin")), "{p:#?}");
}

mod needs_perf {
    use super::*;

    /// `perf record --control fifo:CTL,ACK`: the FIFOs, and enabling the events.
    struct PerfControl {
        ctl: PathBuf,
        ack: PathBuf,
    }

    impl PerfControl {
        fn new(dir: &Path) -> PerfControl {
            let (ctl, ack) = (dir.join("perf-ctl"), dir.join("perf-ack"));
            for p in [&ctl, &ack] {
                let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
                assert!(st.success(), "mkfifo {}", p.display());
            }
            PerfControl { ctl, ack }
        }

        fn arg(&self) -> String {
            format!("fifo:{},{}", self.ctl.display(), self.ack.display())
        }

        /// Tells perf to enable its events and waits for its `ack` (opening a
        /// FIFO blocks until perf has opened the other end).
        fn enable(&self) {
            use std::io::{Read, Write};
            let (tx, rx) = std::sync::mpsc::channel();
            let (ctl, ack) = (self.ctl.clone(), self.ack.clone());
            std::thread::spawn(move || {
                let result = (|| -> std::io::Result<String> {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&ctl)?
                        .write_all(b"enable\n")?;
                    let mut answer = [0u8; 4];
                    std::fs::File::open(&ack)?.read_exact(&mut answer)?;
                    Ok(String::from_utf8_lossy(&answer).into_owned())
                })();
                let _ = tx.send(result);
            });
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Ok(answer)) => assert_eq!(answer, "ack\n", "perf's answer"),
                Ok(Err(e)) => panic!("perf --control: {e}"),
                Err(_) => panic!("perf did not enable its events within 60 s"),
            }
        }
    }

    /// Compares nflame with `perf record -g` recording the same workload at the
    /// same time.
    ///
    /// Method: both recorders attach to the same waiting process (`perf record -e
    /// cpu-clock -F 999 -g -p PID` and `nflame record --pid PID`); the workload
    /// then runs `tree` mode for 2 s and both end with it. perf's recording goes
    /// through `perf script` and `nflame collapse` (one count per sample). Each
    /// stack is then projected onto the workload's own frames (main, tree, work_a,
    /// work_b, work_c, spin; the process name, libc and kernel frames are
    /// dropped, so stacks differ only in what both tools unwind from the
    /// workload's frame pointers), and each profile is normalised to shares of
    /// its own total. The agreement is the overlap of the two distributions,
    /// Σ over projected stacks of min(share_nflame, share_perf): 1 when they are
    /// identical, and ≥ 0.9 means at least 90% of samples fall on identical stacks.
    #[test]
    fn agrees_with_perf_record_on_the_same_workload() {
        let _s = serial();
        assert!(
            Command::new("perf").arg("--version").output().is_ok(),
            "perf is missing: install linux-perf (scripts/install-deps.sh), or leave this test \
             out with NFLAME_SKIP=perf (scripts/test.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let w = Workload::waiting_cpu("tree", 2.0);
        let perf_data = dir.path().join("perf.data");
        // perf starts with its events disabled (-D -1) and enables them when
        // told on its control FIFO, answering `ack`: its readiness signal.
        let perf_control = PerfControl::new(dir.path());
        let perf = Command::new("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                &FREQ.to_string(),
                "-g",
                "-D",
                "-1",
                "--control",
            ])
            .arg(perf_control.arg())
            .args(["-p", &w.pid().to_string(), "-o"])
            .arg(&perf_data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("perf runs");
        let nflame_folded = dir.path().join("n.folded");
        let rec = start_recording(
            nflame()
                .args([
                    "record",
                    "--pid",
                    &w.pid().to_string(),
                    "-F",
                    &FREQ.to_string(),
                    "-o",
                ])
                .arg(&nflame_folded),
        );
        perf_control.enable();
        w.start();
        w.finish();
        finish_recorder(rec);
        let perf_out = perf.wait_with_output().unwrap();
        assert!(perf_out.status.success(), "perf: {}", stderr(&perf_out));

        let script = Command::new("perf")
            .args(["script", "-i"])
            .arg(&perf_data)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(script.status.success());
        let script_path = dir.path().join("perf.txt");
        std::fs::write(&script_path, &script.stdout).unwrap();
        let perf_folded = dir.path().join("p.folded");
        let out = nflame()
            .arg("collapse")
            .arg(&script_path)
            .arg("-o")
            .arg(&perf_folded)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));

        let own = ["main", "tree", "work_a", "work_b", "work_c", "spin"];
        let project = |p: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            let mut m = BTreeMap::new();
            let t = total(p) as f64;
            for (s, &n) in p {
                let key: Vec<&str> = s.split(';').filter(|f| own.contains(f)).collect();
                *m.entry(key.join(";")).or_insert(0.0) += n as f64 / t;
            }
            m
        };
        let ours = folded(&nflame_folded);
        let theirs = folded(&perf_folded);
        let (a, b) = (project(&ours), project(&theirs));
        let overlap: f64 = a
            .iter()
            .map(|(k, &x)| x.min(b.get(k).copied().unwrap_or(0.0)))
            .sum();
        eprintln!(
            "nflame {} samples, perf {} samples, overlap {:.3}\nnflame {a:#?}\nperf {b:#?}",
            total(&ours),
            total(&theirs),
            overlap
        );
        assert!(overlap >= 0.9, "overlap {overlap:.3}");
        let (n_ours, n_theirs) = (total(&ours) as f64, total(&theirs) as f64);
        assert!(
            (n_ours - n_theirs).abs() <= 0.2 * n_theirs,
            "sample counts: nflame {n_ours}, perf {n_theirs}"
        );
    }
}

#[test]
fn ctrl_c_ends_the_recording_with_complete_outputs() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::waiting("tree", 60.0);
    w.start();
    let folded_path = dir.path().join("i.folded");
    let svg = dir.path().join("i.svg");
    let mut rec = start_recording(
        nflame()
            .args(["record", "--pid", &w.pid().to_string(), "-o"])
            .arg(&folded_path)
            .arg("-o")
            .arg(&svg),
    );
    rec.wait_samples(200, Duration::from_secs(60));
    rec.signal(libc::SIGINT);
    let out = finish_recorder(rec);
    let err = stderr(&out);
    assert!(err.contains("stopped by signal"), "{err}");
    assert!(total(&folded(&folded_path)) > 100);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn second_signal_abandons_the_outputs() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::waiting("tree", 60.0);
    w.start();
    let mut rec = start_recording(
        nflame()
            .args(["record", "--pid", &w.pid().to_string(), "-o"])
            .arg(dir.path().join("a.folded"))
            .arg("-o")
            .arg(dir.path().join("a.svg")),
    );
    // Two signals back to back: the second one arrives while nflame is still
    // stopping or already writing, never after it wrote (writing waits for
    // the first signal to be handled, and both are pending by then).
    rec.signal(libc::SIGTERM);
    rec.signal(libc::SIGINT);
    let out = rec.finish(Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("no output written"));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
}

#[test]
fn missing_pid_is_an_error_naming_it() {
    let _s = serial();
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = (1..pid_max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = nflame()
        .args(["record", "--pid", &pid.to_string(), "-o"])
        .arg(dir.path().join("m.svg"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&pid.to_string()) && err.contains("does not exist"),
        "{err}"
    );
    // One line, each cause once.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert_eq!(err.matches(&pid.to_string()).count(), 1, "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file left"
    );
}

#[test]
fn name_matching_nothing_is_an_error() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = nflame()
        .args(["record", "--name", "no-such-proc-x", "-d", "0.5", "-o"])
        .arg(dir.path().join("n.folded"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-proc-x"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file left"
    );
}

#[test]
fn unwritable_output_fails_before_recording() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.folded");
    // Refused before recording: a 10-minute recording would outlast the
    // bound, however slow the machine.
    let out = common::run(
        nflame()
            .args(["record", "-a", "-d", "600", "-o"])
            .arg(&good)
            .args(["-o", "/nonexistent/x.svg"]),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("before recording"), "{err}");
    assert!(err.contains("/nonexistent/x.svg"), "{err}");
    // The OS's reason, once.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("recording ended"), "{err}");
    assert!(!Path::new("/nonexistent/x.svg").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file left"
    );

    // An unknown format is refused just as early.
    let out = common::run(
        nflame()
            .args(["record", "-a", "-d", "600", "-o"])
            .arg(dir.path().join("x.txt")),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("x.txt"));
}

#[test]
fn exactly_one_kind_of_target() {
    for args in [
        &["record", "--pid", "1", "-a"][..],
        &["record", "--name", "nginx", "--pid", "1"],
        &["record", "-a", "--", "true"],
        &["record", "-d", "1"],
    ] {
        let out = nflame().args(args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
    let out = nflame().args(["record", "--pid", "12x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("12x"));
}

/// Off-CPU options that make no sense together are usage errors that say why.
#[test]
fn off_cpu_nonsense_is_a_usage_error_saying_why() {
    for (args, why) in [
        (
            &["--off-cpu", "--event", "cpu-clock"][..],
            "context switches",
        ),
        (&["--off-cpu", "-F", "99"], "frequency"),
        (&["--off-cpu", "--wall"], "give one of them"),
        (&["--wall", "--event", "cycles"], "cycles are not time"),
        (&["--min-block", "2ms"], "only --off-cpu and --wall record"),
    ] {
        let out = nflame()
            .arg("record")
            .args(args)
            .args(["-d", "1", "--", "true"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(why) && err.contains("Usage:"),
            "{args:?}: {err}"
        );
    }
}

/// `--off-cpu`: the folded stacks weigh microseconds off the CPU (the
/// profile says so in its header), each wait of the workload about the time
/// it measured itself, under a `[blocked]` frame.
#[test]
fn off_cpu_stacks_weigh_the_time_spent_waiting() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("off.folded");
    let report = dir.path().join("report");
    let o = nflame()
        .args(["record", "--off-cpu", "-o"])
        .arg(&out)
        .arg("--")
        .arg(offcpu_bin())
        .arg("-r")
        .arg(&report)
        .args(["mix", "2"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("off-CPU") && err.contains("switches"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("# unit: microseconds\n"), "{text}");
    let p = folded(&out);
    for s in p.keys() {
        assert!(
            s.starts_with("offcpu;[blocked];") || s.starts_with("offcpu;[preempted];"),
            "{s}"
        );
    }
    let measured: BTreeMap<String, f64> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    for (frame, key) in [
        ("do_sleep", "sleep"),
        ("do_pipe", "pipe"),
        ("do_poll", "poll"),
    ] {
        let got: u64 = p
            .iter()
            .filter(|(s, _)| s.contains(&format!(";main;{frame};")))
            .filter(|(s, _)| s.starts_with("offcpu;[blocked];"))
            .map(|(_, n)| n)
            .sum();
        let want = measured[key] / 1000.0;
        assert!(
            (got as f64 - want).abs() <= 0.1 * want,
            "{frame}: {got} µs off the CPU in the graph, {want} µs measured"
        );
    }
}

/// `--off-cpu -a` while short programs come and go: each run exits during
/// the recording, long enough before its end to be folded then and dropped
/// (a second to settle, two between hand-outs), and keeps its blocked time.
/// Each run's threads are blocked for about what it measured: the main
/// thread in its sleeps, pipe reads and polls, the feeder and the idler for
/// the whole run. Their total is the graph's whatever share of the switches
/// got a stack (on a busy machine, few: the time of the others is shared
/// among them, and a class of waits without any stack is kept without one),
/// so it is compared, not the time under `do_sleep`.
#[test]
fn off_cpu_all_keeps_the_blocked_time_of_programs_that_exited() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    // A name of its own: every process is recorded.
    let bin = dir.path().join("nfl-offexit");
    std::fs::copy(offcpu_bin(), &bin).unwrap();
    let out = dir.path().join("all.folded");
    let rec = start_recording(nflame().args(["record", "--off-cpu", "-a", "-o"]).arg(&out));
    let mut expected = 0.0;
    for i in 0..3 {
        let report = dir.path().join(format!("report.{i}"));
        let o = Command::new(&bin)
            .arg("-r")
            .arg(&report)
            .args(["mix", "0.4"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&report).unwrap();
        let ns = |key: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in the run's report: {text}"))
        };
        expected += ns("sleep") + ns("pipe") + ns("poll") + 2.0 * ns("wall");
    }
    let mut rec = rec;
    let limit = Duration::from_secs(120);
    let now = rec.wait_status(limit, |_| true).elapsed;
    rec.wait_status(limit, |s| s.elapsed >= now + 4.0);
    rec.signal(libc::SIGINT);
    let o = finish_recorder(rec);
    let err = stderr(&o);
    let p = folded(&out);
    let blocked = |s: &str| s == "nfl-offexit;[blocked]" || s.starts_with("nfl-offexit;[blocked];");
    let got: u64 = p.iter().filter(|(s, _)| blocked(s)).map(|(_, n)| n).sum();
    let want = expected / 1000.0;
    eprintln!("nfl-offexit blocked {got} µs in the graph, about {want:.0} µs expected");
    assert!(
        (got as f64 - want).abs() <= 0.1 * want,
        "{got} µs blocked in the graph, about {want:.0} µs measured by the runs: {err}"
    );
    assert!(err.contains("off-CPU") && err.contains("threads"), "{err}");
}

/// `--docker-port` for a port no docker-proxy publishes: a clear error naming
/// what was looked for, exit status 1, nothing recorded or written.
#[test]
fn docker_port_without_proxy_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.folded");
    let out = nflame()
        .args(["record", "--docker-port", "1", "-d", "1", "-o"])
        .arg(&out_path)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no docker-proxy publishes port 1"), "{err}");
    assert!(err.contains("-host-port 1"), "{err}");
    assert!(err.contains("/proc/*/cmdline"), "{err}");
    assert!(!out_path.exists());
}

/// `--container` naming no container: says where it looked and what to do.
#[test]
fn missing_container_is_explained() {
    let out = nflame()
        .args([
            "record",
            "--container",
            "nflame-no-such-container",
            "-d",
            "1",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no container `nflame-no-such-container`"),
        "{err}"
    );
    assert!(err.contains("config.v2.json"), "{err}");
    // What to do depends on whether a dockerd runs here.
    let dockerd = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "dockerd")
    });
    if dockerd {
        assert!(err.contains("docker ps -a"), "{err}");
    } else {
        assert!(err.contains("dockerd is not running"), "{err}");
        assert!(!err.contains("docker ps"), "{err}");
    }
}

/// Docker targets combine with each other but not with other kinds of target.
#[test]
fn docker_targets_exclude_other_targets() {
    for args in [
        &["record", "--docker-port", "1", "--pid", "1"][..],
        &["record", "--container", "x", "-a"],
        &["record", "--docker-port", "1", "--name", "nginx"],
        &["record", "--container", "x", "--", "true"],
        &["record", "--docker-port", "70000"],
    ] {
        let out = nflame().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = nflame()
        .args([
            "record",
            "--docker-port",
            "1",
            "--container",
            "nflame-none",
            "-d",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
