//! Helpers shared by the recording test binaries (`record`, `faults`, `lab`,
//! `container`).
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// One lock for every test that records: two CPUs, and concurrent recordings
/// would steal CPU from each other's workloads.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU time (user + system, all threads) that the processes `pids` have used
/// so far, in seconds (exited ones count 0).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime: fields 14 and 15, the 12th and 13th after the comm.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>() as f64
        / hz
}

/// Waits until the processes `pids` are busy: they used `secs` more CPU
/// time than when this was called (a load has reached them).
pub fn wait_busy(pids: &[u32], secs: f64, limit: Duration) {
    let start = cpu_seconds(pids);
    let t = Instant::now();
    while cpu_seconds(pids) - start < secs {
        assert!(
            t.elapsed() < limit,
            "processes {pids:?} did not use {secs} s of CPU within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The marker that starts `nflame record`'s status line on a terminal.
const STATUS: &[u8] = b"\r\x1b[K";

/// A running `nflame record` whose standard error is a pseudo-terminal.
///
/// On a terminal, nflame prints a status line from inside its recording loop
/// (every 250 ms, the first time 250 ms after the loop started), and the loop
/// starts after every counter is enabled. The first status line is therefore
/// a readiness signal: from then on, the targets are sampled. Everything
/// nflame writes to standard error is collected; [`Recorder::finish`] returns
/// it without the status lines.
pub struct Recorder {
    child: Child,
    /// Receives once when the first status line arrives.
    ready: mpsc::Receiver<()>,
    /// The latest status line.
    latest: std::sync::Arc<Mutex<Option<Status>>>,
    reader: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// A pseudo-terminal pair in raw mode (no `\n` → `\r\n`), both ends
/// close-on-exec: (master, slave).
fn raw_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the pointed-to ints; the
    // name, termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr/tcsetattr on our own terminal descriptor, with a
    // termios that tcgetattr filled.
    unsafe {
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    (master, slave)
}

impl Recorder {
    /// Starts `cmd` (an `nflame record …`) with its standard error on a
    /// pseudo-terminal; standard output is left as `cmd` has it.
    pub fn spawn(cmd: &mut Command) -> Recorder {
        let (master, slave) = raw_pty();
        let child = cmd
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        // Drop the parent's copy of the slave, so that reading the master
        // ends once nflame has exited.
        cmd.stderr(Stdio::null());
        let (tx, ready) = mpsc::channel();
        let latest = std::sync::Arc::new(Mutex::new(None));
        let shared = std::sync::Arc::clone(&latest);
        let reader = std::thread::spawn(move || {
            let mut file = std::fs::File::from(master);
            let (mut all, mut buf, mut told) = (Vec::new(), [0u8; 4096], false);
            // EIO once the last slave descriptor is closed.
            while let Ok(n @ 1..) = file.read(&mut buf) {
                all.extend_from_slice(&buf[..n]);
                if !told && all.windows(STATUS.len()).any(|w| w == STATUS) {
                    told = true;
                    let _ = tx.send(());
                }
                if let Some(s) = status_lines(&all).last() {
                    *shared.lock().unwrap() = Some(*s);
                }
            }
            all
        });
        Recorder {
            child,
            ready,
            latest,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the first status line: every counter is enabled. Fails
    /// when nflame exits first or `limit` passes.
    pub fn wait_ready(&mut self, limit: Duration) {
        match self.ready.recv_timeout(limit) {
            Ok(()) => {}
            Err(_) => {
                let _ = self.child.kill();
                let out = self.finish(Duration::from_secs(10));
                panic!(
                    "nflame record did not start sampling within {limit:?} ({}): {}",
                    out.status,
                    text(&out.stderr)
                );
            }
        }
    }

    /// Waits until nflame's status line counts at least `n` samples (how
    /// long that takes depends on the CPU the targets get). Fails when
    /// `limit` passes first.
    pub fn wait_samples(&mut self, n: u64, limit: Duration) {
        self.wait_status(limit, |s| s.samples >= n);
    }

    /// Waits for a status line for which `cond` holds, and returns it. Fails
    /// when `limit` passes first.
    pub fn wait_status(&mut self, limit: Duration, cond: impl Fn(&Status) -> bool) -> Status {
        let start = Instant::now();
        loop {
            if let Some(s) = self.latest.lock().unwrap().filter(&cond) {
                return s;
            }
            if start.elapsed() > limit {
                let last = *self.latest.lock().unwrap();
                let _ = self.child.kill();
                let out = self.finish(Duration::from_secs(10));
                panic!(
                    "nflame record's status did not get there within {limit:?} (last: {last:?}): {}",
                    text(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to nflame.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not reaped before `finish`.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// Waits for nflame to exit (killing it after `limit`) and returns its
    /// status, its standard output if piped, and its standard error without
    /// the status lines.
    pub fn finish(&mut self, limit: Duration) -> Output {
        self.finish_with_status(limit).0
    }

    /// [`Recorder::finish`], and the status lines nflame printed.
    pub fn finish_with_status(&mut self, limit: Duration) -> (Output, Vec<Status>) {
        let start = Instant::now();
        let status: ExitStatus = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("nflame record did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        let raw = self
            .reader
            .take()
            .map(|r| r.join().unwrap())
            .unwrap_or_default();
        let out = Output {
            status,
            stdout,
            stderr: without_status_lines(&raw),
        };
        (out, status_lines(&raw))
    }
}

/// One status line of `nflame record`: `  12.3 s  4567 samples  0 lost  12
/// processes  [cpu-clock]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    /// Seconds since the counters were enabled.
    pub elapsed: f64,
    pub samples: u64,
    pub lost: u64,
    /// Processes seen so far.
    pub processes: u64,
}

fn status_lines(raw: &[u8]) -> Vec<Status> {
    let text = String::from_utf8_lossy(raw);
    text.split("\r\x1b[K")
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            // 12.3 s 4567 samples 0 lost 12 processes [cpu-clock]
            if w.len() < 8 || w[1] != "s" || w[3] != "samples" || w[5] != "lost" {
                return None;
            }
            Some(Status {
                elapsed: w[0].parse().ok()?,
                samples: w[2].parse().ok()?,
                lost: w[4].parse().ok()?,
                processes: w[6].parse().ok()?,
            })
        })
        .collect()
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `nflame record`'s terminal output without its status lines: each is the
/// marker, then `  <seconds> s  <n> samples …` up to the next marker or
/// newline; the marker alone clears the line before the summary.
fn without_status_lines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.windows(STATUS.len()).position(|w| w == STATUS) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at + STATUS.len()..];
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..end]);
        if line.starts_with("  ") && line.contains(" samples  ") {
            rest = &rest[end..];
        }
    }
    out.extend_from_slice(rest);
    out
}

/// `fixtures/workloads/calltree.c`, built once per test binary with frame
/// pointers, readable and runnable by `nobody` too.
pub fn workload_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/workloads/calltree.c");
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("calltree-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("calltree");
        let out = Command::new("gcc")
            .args(["-O2", "-g", "-fno-omit-frame-pointer"])
            .args(["-fno-optimize-sibling-calls", "-pthread", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("gcc runs");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for p in [dir.as_path(), bin.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    })
}

/// `fixtures/workloads/offcpu.c` (waits in known ways), built once per test
/// binary, without frame pointers (stacks come from DWARF unwinding).
pub fn offcpu_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/workloads/offcpu.c");
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("offcpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("offcpu");
        let out = Command::new("gcc")
            .args(["-O2", "-g", "-fno-optimize-sibling-calls", "-pthread", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("gcc runs");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for p in [dir.as_path(), bin.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    })
}

/// Runs `cmd` to completion, killing it after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    finish(child, limit, &format!("{cmd:?}"))
}

/// Waits for a child (its output piped), killing it after `limit`.
pub fn finish(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let _ = rx.recv_timeout(Duration::from_secs(5));
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// The event `nflame record` samples by default on this machine: `cycles`
/// where the kernel lists a hardware PMU with a cycles event, else the
/// software `cpu-clock` (VMs without a virtual PMU).
pub fn default_event() -> &'static str {
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

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Holds the machine-wide lock (`/tmp/nflame-heavy.lock`; not taken when
/// `NFLAME_HEAVY_LOCKED` says the caller holds it) for tests that start servers and load CPUs.
pub struct HeavyLock(Option<std::fs::File>);

pub fn heavy_lock() -> HeavyLock {
    if std::env::var_os("NFLAME_HEAVY_LOCKED").is_some() {
        return HeavyLock(None);
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/nflame-heavy.lock")
        .unwrap();
    // SAFETY: flock on a valid fd we own; blocks until the lock is free.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock /tmp/nflame-heavy.lock");
    HeavyLock(Some(f))
}

impl Drop for HeavyLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: unlocking our own fd.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}
