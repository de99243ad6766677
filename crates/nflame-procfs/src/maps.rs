//! The one `/proc/PID/maps` parser: executable mappings in the shape a
//! recording keeps them ([`Mapping`]).
//!
//! Conventions, shared by the sampler (mappings at attach time), the
//! symbolizer (processes whose mappings were not recorded) and the Docker
//! discovery: only executable mappings are kept; anonymous executable memory
//! (JIT code) is named [`ANON`], as perf names it; a file's path loses the
//! kernel's ` (deleted)` marker (the file is opened through
//! `/proc/PID/map_files` anyway); pseudo mappings (`[vdso]`, `[vsyscall]`)
//! and files with inode 0 keep their name but get no device or inode.
//! Malformed lines are skipped, never guessed at.

use std::io;
use std::path::{Path, PathBuf};

use nflame_recording::Mapping;

/// Path perf (and nflame) give anonymous executable mappings (JIT code).
pub const ANON: &str = "//anon";

/// The kernel's marker after the path of a deleted (or replaced) file.
const DELETED: &str = " (deleted)";

/// Executable mappings of a `/proc/PID/maps` text, sorted by start address.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
    out.sort();
    out
}

/// Reads the executable mappings of a live process, sorted by start address,
/// with paths as the process sees them ([`target_view`]).
///
/// Errors if `/proc/PID/maps` cannot be read (the process is gone, or
/// permission).
pub fn read_maps(pid: u32) -> io::Result<Vec<Mapping>> {
    let text = crate::read::proc_text(pid, "maps", crate::read::MAPS_LIMIT)?;
    let mut maps = parse_maps(&text);
    if let Ok(root) = std::fs::read_link(format!("/proc/{pid}/root")) {
        target_view(&root, &mut maps);
    }
    Ok(maps)
}

/// Rewrites paths read from `/proc/PID/maps` to the process's own view.
///
/// The kernel writes a mapped file's path as seen from the *reader's* root:
/// for a process chrooted into `/srv/box`, nflame reads
/// `/srv/box/usr/lib/libc.so.6` where the process (and the perf events it
/// causes) say `/usr/lib/libc.so.6`. `root` is the process's root as we see
/// it (`/proc/PID/root` read as a link); paths under it lose that prefix.
/// Paths outside it are left alone: the process cannot name them, and
/// nflame opens its files through `map_files` or checks their inode anyway.
pub fn target_view(root: &Path, mappings: &mut [Mapping]) {
    if root == Path::new("/") || !root.is_absolute() {
        return;
    }
    for m in mappings {
        if let Ok(rest) = m.path.strip_prefix(root) {
            m.path = Path::new("/").join(rest);
        }
    }
}

/// One line: `start-end perms offset major:minor inode [path]`; fields are
/// separated by one or more spaces, the path may itself contain spaces.
fn parse_line(line: &str) -> Option<Mapping> {
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
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let path = rest.trim_start_matches(' ');
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = makedev(
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode: u64 = inode.parse().ok()?;
    if start >= end {
        return None;
    }
    let (path, dev, inode) = if path.is_empty() {
        (PathBuf::from(ANON), None, None)
    } else if inode == 0 {
        (PathBuf::from(path), None, None)
    } else {
        (
            PathBuf::from(path.strip_suffix(DELETED).unwrap_or(path)),
            Some(dev),
            Some(inode),
        )
    };
    Some(Mapping {
        start,
        end,
        offset,
        path,
        dev,
        inode,
    })
}

/// glibc's `makedev` encoding of a device number (what `st_dev` holds).
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

/// The path with the kernel's ` (deleted)` marker removed (mappings recorded
/// from MMAP2 records carry it).
pub fn clean_path(path: &Path) -> &Path {
    let Some(text) = path.to_str() else {
        return path;
    };
    Path::new(text.strip_suffix(DELETED).unwrap_or(text))
}

/// A pseudo mapping (`[vdso]`, `[anon:…]`, [`ANON`], `[heap]`, empty, or any
/// path that is not absolute): nothing to open on disk.
pub fn is_pseudo(path: &Path) -> bool {
    let text = path.as_os_str().as_encoded_bytes();
    text.first() != Some(&b'/') || text.starts_with(ANON.as_bytes())
}

/// Anonymous executable memory: [`ANON`], `[anon:NAME]`, or no path.
pub fn is_anonymous(path: &Path) -> bool {
    let text = path.as_os_str().as_encoded_bytes();
    text.is_empty() || text.starts_with(ANON.as_bytes()) || text.starts_with(b"[anon")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_executable_mappings_only() {
        let text = "\
55d4c0a00000-55d4c0a02000 r--p 00000000 08:01 1311 /usr/bin/yes
55d4c0a02000-55d4c0a06000 r-xp 00002000 08:01 1311 /usr/bin/yes
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7f1000000000-7f1000100000 r-xp 00028000 fd:02 77 /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)
7f2000000000-7f2000100000 r-xp 00028000 fd:01 99     /opt/my app/lib foo.so
7ffd5a3f2000-7ffd5a3f4000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
        let m = parse_maps(text);
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].start, 0x55d4c0a02000);
        assert_eq!(m[0].end, 0x55d4c0a06000);
        assert_eq!(m[0].offset, 0x2000);
        assert_eq!(m[0].path, PathBuf::from("/usr/bin/yes"));
        assert_eq!(m[0].inode, Some(1311));
        assert_eq!(m[0].dev, Some(makedev(8, 1)));
        assert_eq!(m[1].path, PathBuf::from(ANON));
        assert_eq!((m[1].dev, m[1].inode), (None, None));
        assert_eq!(
            m[2].path,
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(m[2].dev, Some(makedev(0xfd, 2)));
        assert_eq!(m[3].path, PathBuf::from("/opt/my app/lib foo.so"));
        assert_eq!(m[4].path, PathBuf::from("[vdso]"));
        assert_eq!(m[4].inode, None);
        assert_eq!(m[5].path, PathBuf::from("[vsyscall]"));
        assert!(is_pseudo(&m[4].path) && is_pseudo(&m[1].path) && !is_pseudo(&m[0].path));
        assert!(is_anonymous(&m[1].path) && !is_anonymous(&m[4].path));
    }

    #[test]
    fn tolerates_garbage() {
        assert!(parse_maps("nonsense\n\nzz-yy r-xp 0 0:0 0 /x\n").is_empty());
        // An empty or inverted range is not a mapping.
        assert!(parse_maps("2000-1000 r-xp 0 00:00 0 \n").is_empty());
        assert!(parse_maps("1000-2000 r-xp 0 zz:00 5 /x\n").is_empty());
    }

    #[test]
    fn deleted_marker_is_cleaned() {
        assert_eq!(
            clean_path(Path::new("/opt/a.so (deleted)")),
            Path::new("/opt/a.so")
        );
        assert_eq!(clean_path(Path::new("/opt/a.so")), Path::new("/opt/a.so"));
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(259, 3), 0x10303);
    }

    #[test]
    fn paths_are_shown_as_the_process_sees_them() {
        let mut m = parse_maps(
            "1000-2000 r-xp 0 00:1c 3 /srv/box/app/hostile\n\
             3000-4000 r-xp 0 00:1c 4 /srv/boxer/lib.so\n\
             5000-6000 r-xp 0 08:01 5 /usr/lib/libc.so.6\n\
             7000-8000 r-xp 0 00:00 0 [vdso]\n",
        );
        target_view(Path::new("/srv/box"), &mut m);
        let paths: Vec<&Path> = m.iter().map(|m| m.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/app/hostile"),
                Path::new("/srv/boxer/lib.so"),
                Path::new("/usr/lib/libc.so.6"),
                Path::new("[vdso]")
            ]
        );
        let before = m.clone();
        target_view(Path::new("/"), &mut m);
        assert_eq!(m, before);
    }

    #[test]
    fn own_maps_are_readable() {
        let maps = read_maps(std::process::id()).unwrap();
        assert!(maps.iter().any(|m| m.path == Path::new("[vdso]")));
    }
}
