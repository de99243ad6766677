//! Fault tests of `nflame record`: real processes, real perf events, real
//! signals, mounts and users (run as root).
//!
//! - a target that exits mid-recording;
//! - SIGINT and SIGTERM during the recording (outputs complete and readable)
//!   and a second signal while writing (outputs complete or absent, never
//!   half, the previous file untouched);
//! - an output directory that is read-only, or that fills up (a small tmpfs);
//! - sample loss forced with a tiny ring buffer under load, reported as lost;
//! - an unprivileged user with `perf_event_paranoid` at 2;
//! - memory staying flat during a system-wide recording at 999 Hz (a 25 s run
//!   here; `scripts/soak.sh` runs the 10-minute version).
//!
//! Every test that records holds one lock (two CPUs: concurrent recordings
//! would disturb each other), and every child is waited for with a deadline.
//! Mounts and sysctl changes are undone by guards, also when a test fails.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{serial, wait_attached, workload_bin};
use nflame_profile::Profile;

fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `sig` to our own child `pid`.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Waits for `child` with a deadline (killing it past the deadline), and
/// collects its stderr.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut err_pipe = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nflame did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: Vec::new(),
        stderr: reader.join().unwrap(),
    }
}

fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, limit)
}

/// A running workload, killed and reaped on drop.
struct Workload(Child);

impl Workload {
    /// `calltree MODE SECONDS`, working at once.
    fn start(mode: &str, seconds: f64) -> Workload {
        let child = Command::new(workload_bin())
            .arg(mode)
            .arg(seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("workload starts");
        Workload(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A folded file and an SVG that are complete: the folded text parses, the
/// SVG ends its document and `nflame render` reads its embedded profile back
/// (to the same samples).
fn assert_complete_outputs(folded: &Path, svg: &Path) -> Profile {
    let profile = Profile::from_path(folded).expect("the folded output parses");
    assert!(profile.total() > 0, "no samples");
    let doc = std::fs::read_to_string(svg).unwrap();
    assert!(doc.trim_end().ends_with("</svg>"), "SVG cut short");
    let again = Profile::from_path(svg).expect("the SVG's profile reads back");
    assert_eq!(again.total(), profile.total());
    let redrawn = svg.with_extension("again.svg");
    let out = run_bounded(
        nflame().arg("render").arg(svg).arg("-o").arg(&redrawn),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "render: {}", text(&out.stderr));
    std::fs::remove_file(&redrawn).unwrap();
    profile
}

/// A tmpfs mounted on a fresh directory, unmounted (lazily) on drop.
struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn new(options: &str) -> TmpfsMount {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "nflame-faults"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs -o {options}");
        TmpfsMount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount {options}");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Sets `kernel.perf_event_paranoid` and restores the previous value on drop.
struct Paranoid {
    previous: String,
}

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

impl Paranoid {
    fn set(value: i32) -> Paranoid {
        let previous = std::fs::read_to_string(PARANOID).unwrap();
        if previous.trim() != value.to_string() {
            std::fs::write(PARANOID, value.to_string()).unwrap();
        }
        Paranoid { previous }
    }
}

impl Drop for Paranoid {
    fn drop(&mut self) {
        if std::fs::read_to_string(PARANOID).unwrap_or_default() != self.previous {
            let _ = std::fs::write(PARANOID, self.previous.trim());
        }
    }
}

/// `nflame` as user `nobody` (no groups): a copy of the binary that user can run.
fn nflame_as_nobody() -> Command {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faults-nobody-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("nflame");
        std::fs::copy(env!("CARGO_BIN_EXE_nflame"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    });
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(bin)
        .env("HOME", "/")
        .current_dir("/")
        .stdin(Stdio::null());
    c
}

/// A directory `nobody` can write to.
fn world_writable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn assert_no_panic(out: &Output) {
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert!(out.status.code().is_some(), "killed by a signal: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
}

#[test]
fn target_exiting_mid_recording_keeps_its_named_samples() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("short.folded");
    let w = Workload::start("exit", 1.5);
    let rec = nflame()
        .args([
            "record",
            "--call-graph",
            "fp",
            "--pid",
            &w.pid().to_string(),
        ])
        .arg("-o")
        .arg(&folded)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // No duration: the exit of the target ends the recording.
    let out = wait_bounded(rec, Duration::from_secs(60));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let p = Profile::from_path(&folded).unwrap();
    assert!(p.total() > 100, "{} samples\n{err}", p.total());
    let named = p
        .iter()
        .filter(|(s, _)| s.starts_with("calltree;") && s.contains(";short_lived"))
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        named as f64 >= 0.8 * p.total() as f64,
        "{named} of {} samples under short_lived: {:?}",
        p.total(),
        p.sorted()
    );
}

#[test]
fn sigint_and_sigterm_during_recording_write_complete_outputs() {
    let _s = serial();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let folded = dir.path().join("s.folded");
        let svg = dir.path().join("s.svg");
        let w = Workload::start("tree", 30.0);
        let rec = nflame()
            .args(["record", "--pid", &w.pid().to_string(), "-d", "60", "-o"])
            .arg(&folded)
            .arg("-o")
            .arg(&svg)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = rec.id();
        wait_attached(pid);
        std::thread::sleep(Duration::from_millis(700));
        signal(pid, sig);
        let out = wait_bounded(rec, Duration::from_secs(60));
        let err = text(&out.stderr);
        assert!(out.status.success(), "signal {sig}: {err}");
        assert!(err.contains("stopped by signal"), "{err}");
        let p = assert_complete_outputs(&folded, &svg);
        assert!(p.total() > 100, "signal {sig}: {} samples", p.total());
        assert_eq!(files_in(dir.path()), ["s.folded", "s.svg"]);
    }
}

/// A second signal at any moment after the first: the outputs are either
/// complete (the writing was over) or absent with exit status 130, and the
/// previous files at those paths are untouched then; never a partial file or
/// a leftover temporary file.
#[test]
fn signal_during_writing_leaves_outputs_complete_or_absent() {
    let _s = serial();
    let mut abandoned = 0;
    let mut completed = 0;
    for delay_ms in [0u64, 5, 20, 60, 150, 400, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let folded = dir.path().join("w.folded");
        let svg = dir.path().join("w.svg");
        std::fs::write(&folded, "previous;run 1\n").unwrap();
        std::fs::write(&svg, "previous svg").unwrap();
        // System-wide at a high rate: many stacks, so symbolizing and
        // writing take a while.
        let rec = nflame()
            .args(["record", "-a", "-F", "4999", "-d", "60", "-o"])
            .arg(&folded)
            .arg("-o")
            .arg(&svg)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = rec.id();
        wait_attached(pid);
        std::thread::sleep(Duration::from_millis(1500));
        signal(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // It may have exited already; then there is nothing to interrupt.
        // SAFETY: kill(2) on our own child, not reaped until wait_bounded.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        let out = wait_bounded(rec, Duration::from_secs(120));
        let err = text(&out.stderr);
        assert_eq!(
            files_in(dir.path()),
            ["w.folded", "w.svg"],
            "delay {delay_ms} ms: {err}"
        );
        match out.status.code() {
            Some(130) => {
                abandoned += 1;
                assert!(err.contains("no output written"), "{err}");
                assert_eq!(
                    std::fs::read_to_string(&folded).unwrap(),
                    "previous;run 1\n"
                );
                assert_eq!(std::fs::read_to_string(&svg).unwrap(), "previous svg");
            }
            Some(0) => {
                completed += 1;
                assert_complete_outputs(&folded, &svg);
            }
            other => panic!("delay {delay_ms} ms: exit status {other:?}: {err}"),
        }
    }
    eprintln!("{abandoned} abandoned, {completed} completed");
    assert!(abandoned > 0, "no signal arrived before the end of writing");
}

#[test]
fn read_only_output_directory_is_a_clear_error() {
    let _s = serial();
    let mnt = TmpfsMount::new("size=1m,mode=0755");
    let target = mnt.path().join("x.svg");
    std::fs::write(&target, "previous").unwrap();
    mnt.remount("ro");
    let start = Instant::now();
    let out = run_bounded(
        nflame()
            .args(["record", "-a", "-d", "5", "-o"])
            .arg(&target),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_no_panic(&out);
    assert!(err.contains(&target.display().to_string()), "{err}");
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    // Refused before recording.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "it recorded first"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "previous");
    assert_eq!(files_in(mnt.path()), ["x.svg"]);
}

#[test]
fn unwritable_directory_as_unprivileged_user_is_a_clear_error() {
    let _s = serial();
    let _p = Paranoid::set(2);
    let dir = world_writable_dir();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let target = locked.join("x.folded");
    std::fs::write(&target, "previous;run 1\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = run_bounded(
        nflame_as_nobody()
            .args(["record", "-d", "1", "-o"])
            .arg(&target)
            .args(["--", "/bin/true"]),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_no_panic(&out);
    assert!(err.contains(&target.display().to_string()), "{err}");
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "previous;run 1\n"
    );
    assert_eq!(files_in(&locked), ["x.folded"]);
}

#[test]
fn full_output_directory_is_a_clear_error_and_keeps_the_previous_file() {
    let _s = serial();
    let mnt = TmpfsMount::new("size=64k,mode=0755");
    let target = mnt.path().join("full.svg");
    std::fs::write(&target, "previous").unwrap();
    // Leave a few KiB: the flame graph of a second of the whole system is
    // far bigger.
    let filler = mnt.path().join("filler");
    std::fs::write(&filler, vec![0u8; 48 * 1024]).unwrap();
    let w = Workload::start("tree", 10.0);
    let out = run_bounded(
        nflame()
            .args(["record", "-a", "-d", "1.5", "-o"])
            .arg(&target),
        Duration::from_secs(90),
    );
    drop(w);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_no_panic(&out);
    assert!(err.contains(&target.display().to_string()), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "previous");
    assert_eq!(files_in(mnt.path()), ["filler", "full.svg"]);
}

/// A tiny ring buffer (8 pages per CPU) under a fork-and-exit storm and a
/// high sampling rate loses records; the summary says how many.
#[test]
fn forced_sample_loss_is_reported() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("lossy.folded");
    let _busy = Workload::start("tree", 20.0);
    // Side-band records of short processes, on top of samples.
    let mut storm = Command::new("sh")
        .args([
            "-c",
            "end=$(($(date +%s) + 20)); while [ $(date +%s) -lt $end ]; do /bin/true; done",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let out = run_bounded(
        nflame()
            .args(["record", "-a", "-F", "20000", "--call-graph", "fp"])
            .args(["--ring-pages", "8", "-d", "3", "-o"])
            .arg(&folded),
        Duration::from_secs(120),
    );
    let _ = storm.kill();
    let _ = storm.wait();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lost_line = err
        .lines()
        .find(|l| l.trim_start().starts_with("lost "))
        .unwrap_or_else(|| panic!("no lost line in the summary: {err}"));
    let lost: u64 = lost_line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {lost_line}"));
    eprintln!("{err}");
    assert!(lost > 0, "nothing lost with an 8-page ring: {err}");
    assert!(Profile::from_path(&folded).unwrap().total() > 0);
}

/// `nobody`, with `perf_event_paranoid` at 2: recording its own command gives
/// a user-space recording (and says kernel sampling is off); a system-wide
/// recording or another user's process is refused with a clear message.
/// Never a panic.
#[test]
fn unprivileged_user_with_paranoid_2() {
    let _s = serial();
    let _p = Paranoid::set(2);
    let dir = world_writable_dir();
    let own = dir.path().join("own.folded");
    let out = run_bounded(
        nflame_as_nobody()
            .args(["record", "--call-graph", "fp", "-o"])
            .arg(&own)
            .arg("--")
            .arg(workload_bin())
            .args(["tree", "1"]),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_no_panic(&out);
    assert!(out.status.success(), "{err}");
    let p = Profile::from_path(&own).unwrap();
    assert!(p.total() > 100, "{} samples: {err}", p.total());
    assert!(
        p.iter().all(|(s, _)| !s.contains("_[k]")),
        "kernel frames at paranoid 2"
    );
    assert!(p.iter().any(|(s, _)| s.contains(";work_a;spin")), "{p:?}");
    assert!(err.to_lowercase().contains("kernel"), "{err}");

    let all = dir.path().join("all.folded");
    let out = run_bounded(
        nflame_as_nobody()
            .args(["record", "-a", "-d", "1", "-o"])
            .arg(&all),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("perf_event_paranoid"), "{err}");
    assert!(!all.exists());

    // Off-CPU time needs kernel sampling, even of its own command.
    let off = dir.path().join("off.folded");
    let out = run_bounded(
        nflame_as_nobody()
            .args(["record", "--off-cpu", "-o"])
            .arg(&off)
            .arg("--")
            .arg(workload_bin())
            .args(["tree", "1"]),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("off-CPU") && err.contains("perf_event_paranoid"),
        "{err}"
    );
    assert!(!off.exists());

    let root_owned = Workload::start("tree", 10.0);
    let other = dir.path().join("other.folded");
    let out = run_bounded(
        nflame_as_nobody()
            .args(["record", "-d", "1", "--pid", &root_owned.pid().to_string()])
            .arg("-o")
            .arg(&other),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&root_owned.pid().to_string()),
        "the message names the process: {err}"
    );
    assert!(!other.exists());
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A system-wide recording at 999 Hz keeps its memory flat: between the
/// 10 s and the 25 s marks, resident memory grows by little more than the
/// samples themselves (tens of bytes each, stacks interned); nothing else
/// accumulates. Frame-pointer call graphs: with DWARF unwinding the recorder
/// also caches the unwind sections of every binary that runs (once per
/// file), which depends on what else the machine runs (`scripts/soak.sh`
/// measures the default mode).
#[test]
fn memory_stays_flat_while_recording_all_cpus() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("soak.folded");
    let _busy = Workload::start("tree", 40.0);
    // The default call graph (auto: DWARF unwinding where frame pointers
    // fall short), as users run it.
    let rec = nflame()
        .args(["record", "-a", "-F", "999", "-d", "27", "-o"])
        .arg(&folded)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = rec.id();
    let start = Instant::now();
    let at = |secs: u64| {
        let when = Duration::from_secs(secs);
        std::thread::sleep(when.saturating_sub(start.elapsed()));
        rss_kib(pid).expect("the recorder runs")
    };
    let rss10 = at(10);
    let rss25 = at(25);
    let out = wait_bounded(rec, Duration::from_secs(120));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let samples: u64 = err
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("samples"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample count in the summary: {err}"));
    assert!(samples > 5_000, "too few samples to tell: {err}");
    // Identical samples are counted, not stored (the tracker's unit tests
    // check that exactly), so a steady workload needs no memory per sample:
    // what may grow is new stacks and processes that start meanwhile (other
    // tests run beside this one), and allocator slack: 8 MiB in all.
    let allowance = 8 * 1024;
    let growth = rss25.saturating_sub(rss10);
    eprintln!(
        "RSS at 10 s: {rss10} KiB, at 25 s: {rss25} KiB: grew {growth} KiB \
         ({samples} samples in 27 s; allowed {allowance} KiB)"
    );
    assert!(
        growth <= allowance,
        "RSS grew from {rss10} KiB to {rss25} KiB"
    );
}
