//! Facts about this machine and this process: online CPUs, the perf-event
//! sysctls, our capabilities, and small configuration files and directories
//! (bounded reads, see [`crate::read`]).

use std::fs;
use std::path::Path;

use crate::read::{read_text_bounded, SMALL_LIMIT};

/// Online CPUs, from `/sys/devices/system/cpu/online` ("0-3,5"), or
/// `0..available_parallelism` when that cannot be read.
pub fn online_cpus() -> Vec<u32> {
    let parsed = read_text_bounded(Path::new("/sys/devices/system/cpu/online"), 64 << 10)
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

/// A kernel CPU list (`0-3,5`), or `None` when it is not one.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
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

fn sysctl<T: std::str::FromStr>(name: &str) -> Option<T> {
    read_text_bounded(Path::new(&format!("/proc/sys/{name}")), 4096)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `kernel.perf_event_paranoid`, or `None` when the kernel has no perf events.
pub fn perf_event_paranoid() -> Option<i32> {
    sysctl("kernel/perf_event_paranoid")
}

/// `kernel.perf_event_max_sample_rate`.
pub fn max_sample_rate() -> Option<u64> {
    sysctl("kernel/perf_event_max_sample_rate")
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;

/// Whether this process has CAP_PERFMON or CAP_SYS_ADMIN in its effective set.
pub fn has_perfmon_capability() -> bool {
    crate::read::proc_text(std::process::id(), "status", SMALL_LIMIT)
        .ok()
        .and_then(|s| {
            let hex = crate::process::status_field(&s, "CapEff:")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_PERFMON | 1 << CAP_SYS_ADMIN) != 0)
}

/// A small configuration file of a system daemon (`/etc/docker/daemon.json`,
/// a container's `config.v2.json`): root's, at most 1 MiB, a regular file,
/// read without blocking ([`crate::files::Root::open`]).
pub fn read_config(path: &Path) -> Option<String> {
    let root = crate::files::Root::host().ok()?;
    let policy = crate::files::OpenPolicy::confined()
        .max_size(SMALL_LIMIT)
        .owned_by(Vec::new());
    let file = root.open(path, &policy).ok()?;
    let bytes = file.read_all(SMALL_LIMIT).ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The subdirectories of `dir`, by name, sorted (at most 100 000).
pub fn subdirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .take(100_000)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
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
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn this_machine() {
        assert!(!online_cpus().is_empty());
        assert!(perf_event_paranoid().is_some());
    }
}
