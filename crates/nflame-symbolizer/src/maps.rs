//! Where a mapped file can be opened, and live memory maps.
//!
//! A recorded [`Mapping`] names a file as the *target* process saw it, which is
//! not always a path we can open: the process may live in another mount
//! namespace (a container), or the file may have been deleted or replaced.
//! This module picks the best path to open, in order:
//!
//! 1. `/proc/PID/map_files/START-END` while the process lives (the very file it
//!    mapped, even if deleted or in a container; needs root);
//! 2. `/proc/PID/root/PATH` while the process lives (its mount namespace);
//! 3. `PATH` itself (the process exited, or lives in our namespace).
//!
//! When the mapping's inode is known, a candidate whose inode differs is only
//! used if no candidate matches. This module also reads `/proc/PID/maps` for
//! processes whose mappings were not recorded.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nflame_sampler::Mapping;

/// The recorded path with the kernel's ` (deleted)` marker removed.
pub(crate) fn clean_path(path: &Path) -> &Path {
    let Some(text) = path.to_str() else {
        return path;
    };
    Path::new(text.strip_suffix(" (deleted)").unwrap_or(text))
}

/// A pseudo mapping (`[vdso]`, `[anon:…]`, `//anon`, `[heap]`, empty): nothing
/// to open on disk.
pub(crate) fn is_pseudo(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.is_empty() || text.starts_with('[') || text.starts_with("//anon") || !text.starts_with('/')
}

/// The path to open for `mapping` of process `pid` (see the module docs), or
/// `None` if no candidate exists.
pub(crate) fn open_path(pid: u32, live: bool, mapping: &Mapping) -> Option<PathBuf> {
    let recorded = clean_path(&mapping.path);
    let mut candidates = Vec::with_capacity(3);
    if live {
        candidates.push(PathBuf::from(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            mapping.start, mapping.end
        )));
        if let Ok(rel) = recorded.strip_prefix("/") {
            candidates.push(Path::new(&format!("/proc/{pid}/root")).join(rel));
        }
    }
    candidates.push(recorded.to_path_buf());

    let mut first_existing = None;
    for candidate in candidates {
        let Ok(meta) = fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        match mapping.inode {
            Some(inode) if inode != 0 && meta.ino() != inode => {
                first_existing.get_or_insert(candidate);
            }
            _ => return Some(candidate),
        }
    }
    first_existing
}

/// Whether `/proc/PID` exists (the process, or a process reusing its pid, lives).
pub(crate) fn is_alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid of `pid` in its own pid namespace (last `NSpid:` value of
/// `/proc/PID/status`), or `pid` itself when unknown.
pub(crate) fn namespace_pid(pid: u32) -> u32 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return pid;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|rest| rest.split_ascii_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(pid)
}

/// Reads the executable mappings of a live process from `/proc/PID/maps`,
/// sorted by start address, in the shape the sampler records them.
///
/// Errors if the file cannot be read (the process is gone, or permission).
pub fn read_proc_maps(pid: u32) -> io::Result<Vec<Mapping>> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(parse_maps(&text))
}

/// Parses the text of a `/proc/PID/maps` file, keeping executable mappings.
/// Malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = text.lines().filter_map(parse_maps_line).collect();
    out.sort();
    out
}

fn parse_maps_line(line: &str) -> Option<Mapping> {
    // start-end perms offset major:minor inode [path]
    let mut rest = line;
    let mut field = || {
        let t = rest.trim_start_matches(' ');
        let end = t.find(' ').unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();
    let path = rest.trim_start_matches(' ');
    if !perms.contains('x') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let major = u64::from_str_radix(major, 16).ok()?;
    let minor = u64::from_str_radix(minor, 16).ok()?;
    let inode: u64 = inode.parse().ok()?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: PathBuf::from(path),
        dev: (inode != 0).then(|| makedev(major, minor)),
        inode: (inode != 0).then_some(inode),
    })
}

/// glibc's `makedev` encoding of a device number.
fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

/// Start address of this process's own vDSO. The vDSO image is the same for
/// every (64-bit) process on a kernel, so another process's vDSO addresses are
/// symbolized at the same offset in ours, which works after it exited.
pub(crate) fn own_vdso_start() -> Option<u64> {
    static VDSO: OnceLock<Option<u64>> = OnceLock::new();
    *VDSO.get_or_init(|| {
        let text = fs::read_to_string("/proc/self/maps").ok()?;
        text.lines().find(|l| l.ends_with("[vdso]")).and_then(|l| {
            let (start, _) = l.split_once('-')?;
            u64::from_str_radix(start, 16).ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /usr/bin/cat
55d0c0a01000-55d0c0a05000 r-xp 00001000 fd:01 1234 /usr/bin/cat
7f00aa000000-7f00aa001000 r-xp 00000000 00:00 0 
7f00bb000000-7f00bb100000 r-xp 00028000 fd:01 99 /opt/my app/lib foo.so (deleted)
7ffc12345000-7ffc12347000 r-xp 00000000 00:00 0                          [vdso]
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].start, 0x55d0c0a01000);
        assert_eq!(maps[0].offset, 0x1000);
        assert_eq!(maps[0].path, Path::new("/usr/bin/cat"));
        assert_eq!(maps[0].inode, Some(1234));
        assert_eq!(maps[0].dev, Some(makedev(0xfd, 1)));
        assert_eq!(maps[1].path, Path::new(""));
        assert_eq!(maps[1].inode, None);
        assert_eq!(maps[2].path, Path::new("/opt/my app/lib foo.so (deleted)"));
        assert_eq!(
            clean_path(&maps[2].path),
            Path::new("/opt/my app/lib foo.so")
        );
        assert_eq!(maps[3].path, Path::new("[vdso]"));
        assert!(is_pseudo(&maps[3].path) && is_pseudo(&maps[1].path) && !is_pseudo(&maps[0].path));
    }

    #[test]
    fn own_maps_and_vdso_are_readable() {
        let maps = read_proc_maps(std::process::id()).unwrap();
        assert!(maps.iter().any(|m| m.path == Path::new("[vdso]")));
        assert!(own_vdso_start().is_some());
    }
}
