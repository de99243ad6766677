//! One process as `/proc/PID` shows it: comm, executable, threads, status
//! fields (thread group, pid inside its namespace, owner), command line,
//! cgroup, network namespace and its local addresses, liveness, and where a
//! thread waits (its state and system call).
//!
//! Parsing is split from reading so it is tested on text; every read is
//! bounded ([`crate::read`]). [`ProcSource`] lets the sampler's bookkeeping
//! run on a table in tests instead of the real `/proc`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nflame_recording::Mapping;

use crate::read::{proc_bytes, proc_text, read_text_bounded, FIB_LIMIT, SMALL_LIMIT};

/// What `/proc/PID` says about a process at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `comm`.
    pub comm: String,
    /// `/proc/PID/exe`, without ` (deleted)`.
    pub exe: Option<PathBuf>,
    /// Executable mappings, sorted ([`crate::maps`]).
    pub mappings: Vec<Mapping>,
    /// Thread id → thread name.
    pub threads: BTreeMap<u32, String>,
}

/// Source of process facts; the real one ([`Procfs`]) reads `/proc`, tests
/// use a table.
pub trait ProcSource {
    /// Comm, exe, executable mappings and threads of `pid`, if it still exists.
    fn snapshot(&self, pid: u32) -> Option<Snapshot>;
    /// Comm and executable path of `pid` (cheaper than a snapshot).
    fn comm_and_exe(&self, pid: u32) -> Option<(String, Option<PathBuf>)>;
    /// Whether `pid` is still running (a zombie is not).
    fn is_alive(&self, pid: u32) -> bool;
}

/// The real `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Procfs;

impl ProcSource for Procfs {
    fn snapshot(&self, pid: u32) -> Option<Snapshot> {
        let comm = comm(pid)?;
        let exe = exe(pid);
        let mappings = crate::maps::read_maps(pid).unwrap_or_default();
        let mut threads = BTreeMap::new();
        for tid in tasks_of(pid) {
            let name = proc_text(pid, &format!("task/{tid}/comm"), SMALL_LIMIT)
                .map(|s| s.trim_end_matches('\n').to_string())
                .unwrap_or_default();
            threads.insert(tid, name);
        }
        Some(Snapshot {
            comm,
            exe,
            mappings,
            threads,
        })
    }

    fn comm_and_exe(&self, pid: u32) -> Option<(String, Option<PathBuf>)> {
        Some((comm(pid)?, exe(pid)))
    }

    fn is_alive(&self, pid: u32) -> bool {
        match proc_text(pid, "stat", SMALL_LIMIT) {
            Ok(s) => !matches!(parse_stat_state(&s), Some('Z' | 'X' | 'x')),
            Err(_) => false,
        }
    }
}

/// `/proc/PID/comm` without its newline.
pub fn comm(pid: u32) -> Option<String> {
    let s = proc_text(pid, "comm", SMALL_LIMIT).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

/// `/proc/PID/exe`, without the ` (deleted)` of a replaced binary.
pub fn exe(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(strip_deleted)
}

/// `/proc/PID/exe` of a replaced binary reads "/usr/sbin/nginx (deleted)".
fn strip_deleted(p: PathBuf) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => p,
    }
}

/// What `/proc/PID/task/TID/syscall` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// The thread is on a CPU.
    Running,
    /// Blocked, in system call `nr` (`None`: not in a system call), with
    /// the user stack and instruction pointers.
    Blocked {
        /// The system call number, if it is in one.
        nr: Option<u64>,
        /// User stack pointer.
        sp: u64,
        /// User instruction pointer.
        pc: u64,
    },
}

/// Parses `/proc/PID/task/TID/syscall`: `running`, `-1 SP PC`, or the
/// number, six arguments, SP and PC, in hexadecimal but for the number.
pub fn parse_syscall(text: &str) -> Option<Syscall> {
    let text = text.trim();
    if text == "running" {
        return Some(Syscall::Running);
    }
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    match fields.as_slice() {
        ["-1", sp, pc] => Some(Syscall::Blocked {
            nr: None,
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        [nr, _, _, _, _, _, _, sp, pc] => Some(Syscall::Blocked {
            nr: Some(nr.parse().ok()?),
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        _ => None,
    }
}

/// `/proc/PID/task/TID/syscall` of a thread (needs ptrace access: root).
pub fn task_syscall(pid: u32, tid: u32) -> Option<Syscall> {
    parse_syscall(&proc_text(pid, &format!("task/{tid}/syscall"), SMALL_LIMIT).ok()?)
}

/// The state letter of `/proc/PID/task/TID/stat` (`R` runnable, `S`, `D`…).
pub fn task_state(pid: u32, tid: u32) -> Option<char> {
    parse_stat_state(&proc_text(pid, &format!("task/{tid}/stat"), SMALL_LIMIT).ok()?)
}

/// The state letter of `/proc/PID/stat` (after the parenthesised comm, which
/// may itself contain spaces and parentheses).
pub fn parse_stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// The value of one `Key:` line of a `/proc/PID/status` text.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// The process (thread group) a pid or tid belongs to, if it exists.
pub fn tgid_of(pid: u32) -> Option<u32> {
    let s = proc_text(pid, "status", SMALL_LIMIT).ok()?;
    status_field(&s, "Tgid:")?.parse().ok()
}

/// The pid of `pid` in its own pid namespace (the last `NSpid:` value of
/// `/proc/PID/status`), or `pid` itself when unknown.
pub fn namespace_pid(pid: u32) -> u32 {
    let Ok(status) = proc_text(pid, "status", SMALL_LIMIT) else {
        return pid;
    };
    status_field(&status, "NSpid:")
        .and_then(|rest| rest.split_ascii_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(pid)
}

/// The real and effective user ids of `pid` (`Uid:` of `/proc/PID/status`).
pub fn uids(pid: u32) -> Option<(u32, u32)> {
    let s = proc_text(pid, "status", SMALL_LIMIT).ok()?;
    let mut it = status_field(&s, "Uid:")?.split_ascii_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether process `pid` is what a system daemon (`dockerd`) must be before
/// nflame believes its command line and reads the files it names: running
/// as root (real and effective user), from an executable owned by root and
/// writable by nobody else, in our own mount and pid namespaces. A name is
/// no proof: any user, and any container's root, can run a program called
/// `dockerd`. `Err` says what failed.
pub fn daemon_trust(pid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    match uids(pid) {
        Some((0, 0)) => {}
        Some((r, _)) if r != 0 => return Err(format!("runs as uid {r}, not root")),
        Some((_, e)) => return Err(format!("runs with effective uid {e}, not root")),
        None => return Err("its owner cannot be read".into()),
    }
    // The executable the kernel ran (a link /proc provides), not its path.
    let exe = fs::metadata(format!("/proc/{pid}/exe"))
        .map_err(|e| format!("its executable cannot be read: {e}"))?;
    if exe.uid() != 0 {
        return Err(format!(
            "its executable is owned by uid {}, not root",
            exe.uid()
        ));
    }
    if exe.mode() & 0o022 != 0 {
        return Err(format!(
            "its executable is writable by others than root (mode {:o})",
            exe.mode() & 0o7777
        ));
    }
    if !crate::files::same_mount_namespace(pid) {
        return Err("it runs in another mount namespace (a container)".into());
    }
    let ns = |who: &str| {
        fs::metadata(format!("/proc/{who}/ns/pid"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    if ns("self").is_none() || ns("self") != ns(&pid.to_string()) {
        return Err("it runs in another pid namespace (a container)".into());
    }
    Ok(())
}

/// Thread ids of a process, sorted.
pub fn tasks_of(pid: u32) -> Vec<u32> {
    numeric_entries(Path::new(&format!("/proc/{pid}/task")))
}

/// Every pid in `/proc`, sorted.
pub fn all_pids() -> Vec<u32> {
    numeric_entries(Path::new("/proc"))
}

fn numeric_entries(dir: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Whether `/proc/PID` exists (the process, or a process reusing its pid, lives).
pub fn exists(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// The raw bytes of `/proc/PID/cmdline` (arguments separated by NUL).
pub fn cmdline(pid: u32) -> Option<Vec<u8>> {
    proc_bytes(pid, "cmdline", SMALL_LIMIT).ok()
}

/// Arguments of a `/proc/PID/cmdline` (NUL-separated; empty ones dropped).
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `/proc/PID/cgroup`.
pub fn cgroup(pid: u32) -> Option<String> {
    proc_text(pid, "cgroup", SMALL_LIMIT).ok()
}

/// The inode of the network namespace of `pid` (`/proc/PID/ns/net` reads
/// `net:[4026531840]`).
pub fn netns(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    parse_ns_link(link.to_str()?)
}

/// `net:[4026531840]` → 4026531840.
pub fn parse_ns_link(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// `/proc/PID/net/fib_trie`: the IPv4 routing tables of the process's
/// network namespace, local addresses included.
pub fn fib_trie(pid: u32) -> Option<String> {
    read_text_bounded(Path::new(&format!("/proc/{pid}/net/fib_trie")), FIB_LIMIT).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_after_tricky_comm() {
        assert_eq!(parse_stat_state("42 (a) b) (c) R 1 2 3"), Some('R'));
        assert_eq!(parse_stat_state("42 (sh) Z 1 2 3"), Some('Z'));
        assert_eq!(parse_stat_state("garbage"), None);
    }

    #[test]
    fn namespace_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_ns_link("net:[x]"), None);
    }

    #[test]
    fn cmdlines() {
        let a = parse_cmdline(b"/usr/sbin/docker-proxy\0-proto\0tcp\0\0");
        assert_eq!(a, vec!["/usr/sbin/docker-proxy", "-proto", "tcp"]);
    }

    #[test]
    fn this_process() {
        let me = std::process::id();
        assert_eq!(tgid_of(me), Some(me));
        assert!(tasks_of(me).contains(&me));
        assert!(all_pids().contains(&me));
        assert!(exists(me) && !exists(0));
        let snap = Procfs.snapshot(me).unwrap();
        assert!(!snap.comm.is_empty());
        assert!(!snap.mappings.is_empty());
        assert!(Procfs.is_alive(me));
        let (ruid, _) = uids(me).unwrap();
        // SAFETY: getuid has no preconditions.
        assert_eq!(ruid, unsafe { libc::getuid() });
        assert!(netns(me).is_some());
        // Our own test binary is built by whoever runs the tests; as root,
        // it is root's in our namespaces, and trusted as far as its owner
        // and mode go.
        let exe = fs::metadata("/proc/self/exe").unwrap();
        use std::os::unix::fs::MetadataExt;
        if ruid == 0 && exe.uid() == 0 && exe.mode() & 0o022 == 0 {
            assert_eq!(daemon_trust(me), Ok(()));
        } else {
            assert!(daemon_trust(me).is_err());
        }
    }
    #[test]
    fn syscall_file_forms() {
        assert_eq!(parse_syscall("running\n"), Some(Syscall::Running));
        assert_eq!(
            parse_syscall(
                "230 0x0 0x0 0x7ffedb8a69b0 0x7ffedb8a69f0 0x0 0x0 0x7ffedb8a6998 0x7fa78341d503\n"
            ),
            Some(Syscall::Blocked {
                nr: Some(230),
                sp: 0x7ffe_db8a_6998,
                pc: 0x7fa7_8341_d503
            })
        );
        assert_eq!(
            parse_syscall("-1 0x7ffc00 0x401000"),
            Some(Syscall::Blocked {
                nr: None,
                sp: 0x7f_fc00,
                pc: 0x40_1000
            })
        );
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("1 2 3"), None);
        assert_eq!(parse_syscall("x 0x0 0x0 0x0 0x0 0x0 0x0 0x1 0x2"), None);
    }
}
