//! Helpers shared by the recording test binaries (`record`, `faults`).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// One lock for every test that records: two CPUs, and concurrent recordings
/// would steal CPU from each other's workloads.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until process `pid` holds a perf event fd, then a grace period (the
/// counters are enabled right after they are all opened).
pub fn wait_attached(pid: u32) {
    wait_until(Duration::from_secs(15), || {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|dir| {
            dir.flatten().any(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().contains("perf_event"))
            })
        })
    });
    std::thread::sleep(Duration::from_millis(300));
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

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
