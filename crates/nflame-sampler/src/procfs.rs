//! Reading `/proc` and `/sys`: process snapshots (comm, exe, executable
//! mappings, threads), liveness, online CPUs and perf-related sysctls.
//!
//! Parsing is split from reading so it can be tested on text.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::types::Mapping;

/// Path perf uses for anonymous executable mappings (JIT code).
pub(crate) const ANON: &str = "//anon";

/// What `/proc/PID` says about a process at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) comm: String,
    pub(crate) exe: Option<PathBuf>,
    pub(crate) mappings: Vec<Mapping>,
    pub(crate) threads: BTreeMap<u32, String>,
}

/// Source of process facts; the real one reads `/proc`, tests use a table.
pub(crate) trait ProcSource {
    /// Comm, exe, executable mappings and threads of `pid`, if it still exists.
    fn snapshot(&self, pid: u32) -> Option<Snapshot>;
    /// Comm and executable path of `pid` (cheaper than a snapshot).
    fn comm_and_exe(&self, pid: u32) -> Option<(String, Option<PathBuf>)>;
    /// Whether `pid` is still running (a zombie is not).
    fn is_alive(&self, pid: u32) -> bool;
}

/// The real `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Procfs;

impl ProcSource for Procfs {
    fn snapshot(&self, pid: u32) -> Option<Snapshot> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let comm = read_comm(&dir.join("comm"))?;
        let exe = fs::read_link(dir.join("exe")).ok().map(strip_deleted);
        let mappings = fs::read_to_string(dir.join("maps"))
            .map(|t| parse_maps(&t))
            .unwrap_or_default();
        let mut threads = BTreeMap::new();
        if let Ok(rd) = fs::read_dir(dir.join("task")) {
            for e in rd.flatten() {
                let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let name = read_comm(&e.path().join("comm")).unwrap_or_default();
                threads.insert(tid, name);
            }
        }
        Some(Snapshot {
            comm,
            exe,
            mappings,
            threads,
        })
    }

    fn comm_and_exe(&self, pid: u32) -> Option<(String, Option<PathBuf>)> {
        let comm = read_comm(Path::new(&format!("/proc/{pid}/comm")))?;
        let exe = fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(strip_deleted);
        Some((comm, exe))
    }

    fn is_alive(&self, pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !matches!(parse_stat_state(&s), Some('Z' | 'X' | 'x')),
            Err(_) => false,
        }
    }
}

fn read_comm(p: &Path) -> Option<String> {
    let s = fs::read(p).ok()?;
    Some(
        String::from_utf8_lossy(&s)
            .trim_end_matches('\n')
            .to_string(),
    )
}

/// `/proc/PID/exe` of a replaced binary reads "/usr/sbin/nginx (deleted)".
fn strip_deleted(p: PathBuf) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => p,
    }
}

/// The state letter of `/proc/PID/stat` (after the parenthesised comm, which
/// may itself contain spaces and parentheses).
pub(crate) fn parse_stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Executable mappings of a `/proc/PID/maps` text, sorted by start.
/// Anonymous executable regions are named [`ANON`].
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(dev), Some(inode)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        if perms.as_bytes().get(2) != Some(&b'x') {
            continue;
        }
        let path = it.next().map(str::trim_start).unwrap_or("");
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        let inode: u64 = inode.parse().unwrap_or(0);
        let dev = dev.split_once(':').and_then(|(ma, mi)| {
            Some(makedev(
                u32::from_str_radix(ma, 16).ok()?,
                u32::from_str_radix(mi, 16).ok()?,
            ))
        });
        let (path, dev, inode) = if path.is_empty() {
            (PathBuf::from(ANON), None, None)
        } else if inode == 0 {
            (PathBuf::from(path), None, None)
        } else {
            (
                PathBuf::from(path.strip_suffix(" (deleted)").unwrap_or(path)),
                dev,
                Some(inode),
            )
        };
        out.push(Mapping {
            start,
            end,
            offset,
            path,
            dev,
            inode,
        });
    }
    out.sort();
    out
}

/// glibc's `makedev` encoding.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

/// The process (thread group) a pid or tid belongs to, if it exists.
pub(crate) fn tgid_of(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_field(&s, "Tgid:")?.parse().ok()
}

fn parse_status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// Thread ids of a process.
pub(crate) fn tasks_of(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Every pid in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Online CPUs, from `/sys/devices/system/cpu/online` ("0-3,5").
pub(crate) fn online_cpus() -> Vec<u32> {
    let parsed = fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s));
    match parsed {
        Some(v) if !v.is_empty() => v,
        _ => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n as u32).collect()
        }
    }
}

/// More CPUs than any kernel supports (`NR_CPUS` is at most 8192): a list
/// naming CPUs beyond this is not a CPU list.
const MAX_CPUS: u32 = 1 << 16;

pub(crate) fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b >= MAX_CPUS {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok().filter(|&c| c < MAX_CPUS)?),
        }
        if out.len() > MAX_CPUS as usize {
            return None;
        }
    }
    Some(out)
}

/// `kernel.perf_event_paranoid`, or `None` when the kernel has no perf events.
pub(crate) fn perf_event_paranoid() -> Option<i32> {
    fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `kernel.perf_event_max_sample_rate`.
pub(crate) fn max_sample_rate() -> Option<u64> {
    fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The raw bytes of `/proc/PID/cmdline` (arguments separated by NUL).
pub(crate) fn cmdline(pid: u32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// `/proc/PID/cgroup`.
pub(crate) fn cgroup(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
}

/// `/proc/PID/comm` without its newline.
pub(crate) fn comm(pid: u32) -> Option<String> {
    read_comm(Path::new(&format!("/proc/{pid}/comm")))
}

/// The inode of the network namespace of `pid` (`/proc/PID/ns/net` reads
/// `net:[4026531840]`).
pub(crate) fn netns(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    parse_ns_link(link.to_str()?)
}

pub(crate) fn parse_ns_link(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// `/proc/PID/net/fib_trie`: the IPv4 routing tables of the process's
/// network namespace, local addresses included.
pub(crate) fn fib_trie(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).ok()
}

/// A small text file (`/etc/docker/daemon.json`, a container's `config.v2.json`).
pub(crate) fn read_text(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// The subdirectories of `dir`, by name.
pub(crate) fn subdirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;

/// Whether this process has CAP_PERFMON or CAP_SYS_ADMIN in its effective set.
pub(crate) fn has_perfmon_capability() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = parse_status_field(&s, "CapEff:")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_PERFMON | 1 << CAP_SYS_ADMIN) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing found `0-4200000000` allocating 16 GiB.
    #[test]
    fn cpu_list_with_an_absurd_range_is_rejected_not_allocated() {
        assert_eq!(parse_cpu_list("0-4200000000"), None);
        assert_eq!(parse_cpu_list("0-65535,70000"), None);
        assert_eq!(parse_cpu_list("0-3,8-9"), Some(vec![0, 1, 2, 3, 8, 9]));
        assert_eq!(parse_cpu_list("5-3"), Some(vec![]));
    }

    #[test]
    fn maps_keeps_executable_mappings_only() {
        let text = "\
55d4c0a00000-55d4c0a02000 r--p 00000000 08:01 1311 /usr/bin/yes
55d4c0a02000-55d4c0a06000 r-xp 00002000 08:01 1311 /usr/bin/yes
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7f1000000000-7f1000100000 r-xp 00028000 fd:02 77 /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)
7ffd5a3f2000-7ffd5a3f4000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
        let m = parse_maps(text);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].start, 0x55d4c0a02000);
        assert_eq!(m[0].end, 0x55d4c0a06000);
        assert_eq!(m[0].offset, 0x2000);
        assert_eq!(m[0].path, PathBuf::from("/usr/bin/yes"));
        assert_eq!(m[0].inode, Some(1311));
        assert_eq!(m[0].dev, Some(makedev(8, 1)));
        assert_eq!(m[1].path, PathBuf::from(ANON));
        assert_eq!(
            m[2].path,
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(m[2].dev, Some(makedev(0xfd, 2)));
        assert_eq!(m[3].path, PathBuf::from("[vdso]"));
        assert_eq!(m[3].inode, None);
        assert_eq!(m[4].path, PathBuf::from("[vsyscall]"));
    }

    #[test]
    fn maps_tolerates_garbage() {
        assert!(parse_maps("nonsense\n\nzz-yy r-xp 0 0:0 0 /x\n").is_empty());
    }

    #[test]
    fn stat_state_after_tricky_comm() {
        assert_eq!(parse_stat_state("42 (a) b) (c) R 1 2 3"), Some('R'));
        assert_eq!(parse_stat_state("42 (sh) Z 1 2 3"), Some('Z'));
        assert_eq!(parse_stat_state("garbage"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn namespace_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_ns_link("net:[x]"), None);
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(259, 3), 0x10303);
    }
}
