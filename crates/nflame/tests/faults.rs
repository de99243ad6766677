//! Fault tests of `nflame record`: real processes, real perf events, real
//! signals, mounts and users (run as root).
//!
//! - a target that exits mid-recording;
//! - SIGINT and SIGTERM during the recording (outputs complete and readable)
//!   and a second signal while writing (outputs complete or absent, never
//!   half, the previous file untouched);
//! - an output directory that is read-only, or that fills up (a small tmpfs);
//! - sample loss forced by stopping the recorder while a small ring buffer
//!   fills, reported as lost; the default call graph dropping its stack
//!   copies on every CPU when the recorder falls behind;
//! - an unprivileged user with `perf_event_paranoid` at 2;
//! - memory staying bounded during a system-wide recording at 999 Hz while
//!   programs come and go (1,800 of them here; `scripts/soak.sh` runs the
//!   10-minute version).
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

use common::{serial, workload_bin, Recorder};
use nflame_profile::Profile;

fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `hz`, or the kernel's current maximum sample rate when that is lower:
/// the kernel lowers `kernel.perf_event_max_sample_rate` on a loaded machine
/// (when sampling interrupts take too long), and nflame refuses a frequency
/// above it.
fn freq_at_most(hz: u64) -> String {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(hz);
    hz.min(max).to_string()
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
    // The workload waits (-w) until the recorder samples, then spins and exits.
    let mut w = Command::new(workload_bin())
        .args(["-w", "exit", "1.5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("workload starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(w.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n", "workload did not start");
    let w = Workload(w);
    let mut rec = Recorder::spawn(
        nflame()
            .args([
                "record",
                "--call-graph",
                "fp",
                "--pid",
                &w.pid().to_string(),
            ])
            .arg("-o")
            .arg(&folded),
    );
    rec.wait_ready(Duration::from_secs(60));
    signal(w.pid(), libc::SIGUSR1);
    // No duration: the exit of the target ends the recording.
    let out = rec.finish(Duration::from_secs(60));
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
        let mut rec = Recorder::spawn(
            nflame()
                .args(["record", "--pid", &w.pid().to_string(), "-d", "60", "-o"])
                .arg(&folded)
                .arg("-o")
                .arg(&svg),
        );
        rec.wait_ready(Duration::from_secs(60));
        rec.wait_samples(200, Duration::from_secs(60));
        rec.signal(sig);
        let out = rec.finish(Duration::from_secs(60));
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
        let mut rec = Recorder::spawn(
            nflame()
                .args(["record", "-a", "-F", &freq_at_most(4999), "-d", "60", "-o"])
                .arg(&folded)
                .arg("-o")
                .arg(&svg),
        );
        rec.wait_ready(Duration::from_secs(60));
        // Samples to write (the recording runs meanwhile).
        std::thread::sleep(Duration::from_millis(1500));
        rec.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // It may have exited already (not reaped yet: the signal is lost);
        // then there is nothing to interrupt.
        rec.signal(libc::SIGINT);
        let out = rec.finish(Duration::from_secs(120));
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
    // Refused before recording: a recording of 10 minutes would outlast
    // the bound, however slow the machine.
    let start = Instant::now();
    let out = run_bounded(
        nflame()
            .args(["record", "-a", "-d", "600", "-o"])
            .arg(&target),
        Duration::from_secs(120),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_no_panic(&out);
    assert!(err.contains(&target.display().to_string()), "{err}");
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    assert!(err.contains("before recording"), "{err}");
    eprintln!("refused after {:?}", start.elapsed());
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

/// A reader that falls behind loses records, and the summary says how many:
/// nflame is stopped (SIGSTOP) for 1.5 s while it samples every CPU with a
/// small ring buffer (8 pages, 32 KiB per CPU) and a busy workload runs, then
/// continued. A second and a half of one busy CPU's samples (about 1,500 of
/// 100 bytes or more) do not fit in 32 KiB, however loaded the machine:
/// the stall, not the rate, forces the loss.
#[test]
fn forced_sample_loss_is_reported() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("lossy.folded");
    let _busy = Workload::start("tree", 60.0);
    let mut rec = Recorder::spawn(
        nflame()
            .args(["record", "-a", "--call-graph", "fp", "--ring-pages", "8"])
            .args(["-d", "4", "-o"])
            .arg(&folded),
    );
    rec.wait_ready(Duration::from_secs(60));
    signal(rec.pid(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1500));
    signal(rec.pid(), libc::SIGCONT);
    let out = rec.finish(Duration::from_secs(120));
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

/// The default call graph (`auto`) on every CPU copies 8 KiB of user stack
/// into each sample; when the recorder falls behind (here: stopped for 3 s
/// while a CPU is busy, which overflows its 16 MiB ring: 3,000 samples of
/// 8.7 KiB), it must stop copying by itself and say so, after which the same
/// stall loses at most 1% (3,000 frame-pointer samples of a few hundred
/// bytes fit). Losses are read from the status line, which counts the kernel's
/// loss records as they are read; the second stall's are the difference.
#[test]
fn auto_call_graph_stops_copying_stacks_when_the_recorder_falls_behind() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("auto.folded");
    let _busy = Workload::start("tree", 120.0);
    let mut rec = Recorder::spawn(
        nflame()
            .args(["record", "-a", "-d", "120", "-o"])
            .arg(&folded),
    );
    rec.wait_ready(Duration::from_secs(60));
    let limit = Duration::from_secs(120);
    let stall = |rec: &mut Recorder| {
        // Losses of a full ring are counted when the recorder gets to them
        // (or replaces its counters): start once the count holds still.
        let mut before = rec.wait_status(limit, |_| true);
        for _ in 0..20 {
            let next = rec.wait_status(limit, |s| s.samples > before.samples);
            let settled = next.lost == before.lost;
            before = next;
            if settled {
                break;
            }
        }
        signal(rec.pid(), libc::SIGSTOP);
        std::thread::sleep(Duration::from_secs(3));
        signal(rec.pid(), libc::SIGCONT);
        // Read on until a second of one busy CPU's samples came after it.
        let after = rec.wait_status(limit, |s| s.samples >= before.samples + 4_000);
        (before, after)
    };
    let _first = stall(&mut rec);
    let (before, after) = stall(&mut rec);
    rec.signal(libc::SIGINT);
    let out = rec.finish(limit);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    eprintln!("{err}");
    let note = err
        .lines()
        .find(|l| l.contains("note: call graph auto:"))
        .unwrap_or_else(|| panic!("the summary does not say what auto chose: {err}"));
    assert!(
        note.contains("so frame-pointer chains only") && note.contains("8192-byte stack copies"),
        "auto did not stop copying stacks: {note}"
    );
    let (lost, samples) = (after.lost - before.lost, after.samples - before.samples);
    assert!(
        lost * 100 <= samples,
        "the second stall lost {lost} samples (of {samples} kept): more than 1%"
    );
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
    // The summary says the kernel was left out, and why.
    assert!(
        err.contains(
            "note: kernel frames excluded: kernel.perf_event_paranoid is 2 and this user has \
             neither root nor CAP_PERFMON"
        ),
        "{err}"
    );
    assert!(err.contains(", kernel excluded)"), "{err}");

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

/// Resident anonymous memory of `pid` in KiB: the heap, without the perf
/// ring buffers (mapped kernel pages, resident as the kernel first writes
/// them: a ring of a mostly idle CPU keeps growing into its size for a
/// minute) and the binary's own pages.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A system-wide recording keeps its memory bounded while programs come and
/// go: 15 s in, once the first 300 new processes have had samples, the next
/// 1,500 (runs of one program in three ways, a few kinds of stacks) add no
/// more to resident memory than a fixed slack and the distinct stacks do,
/// whatever else the machine runs: memory follows the distinct folded
/// stacks, not the number of processes. The recording samples every CPU and
/// sees every process's records, and keeps the programs named `calltree`
/// (`--name`): with `-a`, what the machine's other programs add is their
/// distinct stacks, as many as a compiler running meanwhile makes, which no
/// bound here can foresee.
///
/// Why: a process that exited is compacted a second (of sample time) after
/// its exit, handed out by the sampler with all its samples, folded into
/// the profile on a thread of its own and dropped; only the live processes'
/// samples wait for the fold at the end. What may grow: the distinct
/// stacks (256 bytes each is allowed) and 1.5 MiB of allocator slack.
/// Measured here on a busy machine (two runs), the next 1,500 added 0 and
/// 660 KiB (0.0 and 0.4 KiB each: new distinct stacks and the allocator);
/// before processes were folded as they exited, 2,760 KiB (1.8 KiB each:
/// their samples, kept to the end), over the allowance. Identical samples
/// are counted, not stored, so nothing grows per sample either. The
/// processes come from nflame's own status line, read when the memory is,
/// the distinct stacks from its summary.
///
/// The workload: one busy process, and short programs started one after the
/// other for the whole recording (each spins 10 ms, so each has samples).
/// Frame-pointer call graphs: with DWARF unwinding the recorder also keeps
/// the unwind sections of every distinct binary it unwinds (about 400 KiB
/// for python3; once per file), which depends on what else the machine runs.
#[test]
fn memory_stays_bounded_while_programs_come_and_go() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("soak.folded");
    let _busy = Workload::start("tree", 600.0);
    let churn = Workload(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do {w} exit 0.01; {w} syscall 0.02; {w} late 0.03; done",
                w = workload_bin().display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh runs"),
    );
    // Ended by SIGINT once enough programs came and went (the duration only
    // bounds it).
    let mut rec = Recorder::spawn(
        nflame()
            .args([
                "record",
                "--name",
                "calltree",
                "-F",
                "999",
                "--call-graph",
                "fp",
            ])
            .args(["-d", "300", "-o"])
            .arg(&folded),
    );
    rec.wait_ready(Duration::from_secs(60));
    let pid = rec.pid();
    let limit = Duration::from_secs(240);
    let first = rec.wait_status(limit, |s| s.elapsed >= 5.0);
    // Warm: the first parts folded (the fold's threads, symbol tables and
    // the allocator's arenas set up, most distinct stacks seen).
    let warm = rec.wait_status(limit, |s| {
        s.elapsed >= 15.0 && s.processes >= first.processes + 300
    });
    let rss_warm = rss_kib(pid).expect("the recorder runs");
    let last = rec.wait_status(limit, |s| {
        s.processes >= warm.processes + 1_500 && s.samples >= warm.samples + 5_000
    });
    let rss_last = rss_kib(pid).expect("the recorder runs");
    rec.signal(libc::SIGINT);
    let out = rec.finish(Duration::from_secs(120));
    drop(churn);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stacks: u64 = err
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("stacks"))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no stack count in the summary: {err}"));
    let new_processes = last.processes - warm.processes;
    let samples = last.samples - warm.samples;
    let allowance = 1536 + stacks / 4;
    let growth = rss_last.saturating_sub(rss_warm);
    eprintln!(
        "RssAnon at {:.1} s: {rss_warm} KiB, at {:.1} s: {rss_last} KiB: grew {growth} KiB while \
         {samples} samples and {new_processes} new processes came ({stacks} distinct stacks in \
         all; {:.2} KiB per new process); allowed {allowance} KiB",
        warm.elapsed,
        last.elapsed,
        growth as f64 / new_processes as f64
    );
    assert!(
        growth <= allowance,
        "RSS grew from {rss_warm} KiB to {rss_last} KiB while {new_processes} processes came, \
         more than the {allowance} KiB allowed"
    );
}
