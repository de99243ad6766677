//! Where a target's mapped file can be opened, and our own vDSO.
//!
//! A recorded [`Mapping`] names a file as the *target* process saw it, which is
//! not always a path we can open: the process may live in another mount
//! namespace (a container), or the file may have been deleted or replaced.
//! [`mapped_file`] picks the path to open, in order:
//!
//! 1. `/proc/PID/map_files/START-END` while the process lives (the very file it
//!    mapped, even if deleted or in a container; needs root);
//! 2. `/proc/PID/root/PATH` while the process lives (its mount namespace);
//! 3. `PATH` itself (the process exited, or lives in our namespace).
//!
//! When the mapping's inode is known, a candidate whose inode differs is only
//! used if no candidate matches. Used by the sampler's unwinder and the
//! symbolizer alike.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nflame_recording::Mapping;

use crate::maps::{clean_path, is_pseudo};

/// The path to open for `mapping` of process `pid` (see the module docs), or
/// `None` if no candidate exists. `live`: the process is still running, so
/// its `/proc/PID` views are tried first.
pub fn mapped_file(pid: u32, live: bool, mapping: &Mapping) -> Option<PathBuf> {
    let recorded = clean_path(&mapping.path);
    if is_pseudo(recorded) {
        return None;
    }
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

/// This process's own vDSO: where it is mapped and its bytes. The vDSO image
/// is the same for every 64-bit process on one kernel, so another process's
/// vDSO addresses are named (and unwound) at the same offset in ours, which
/// also works after it exited.
#[derive(Debug)]
pub struct Vdso {
    /// Start address in this process.
    pub start: u64,
    /// The mapped image.
    pub image: Vec<u8>,
}

/// Our own vDSO (read once), or `None` when it cannot be found or read.
pub fn own_vdso() -> Option<&'static Vdso> {
    static VDSO: OnceLock<Option<Vdso>> = OnceLock::new();
    VDSO.get_or_init(|| {
        let maps =
            crate::read::proc_text(std::process::id(), "maps", crate::read::MAPS_LIMIT).ok()?;
        let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
        let (range, _) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        if len > 1 << 20 {
            return None;
        }
        let mut image = vec![0u8; len];
        File::open("/proc/self/mem")
            .ok()?
            .read_exact_at(&mut image, start)
            .ok()?;
        Some(Vdso { start, image })
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_vdso_is_an_elf_image() {
        let v = own_vdso().expect("a vDSO");
        assert!(v.start > 0);
        assert_eq!(&v.image[..4], b"\x7fELF");
    }

    #[test]
    fn own_executable_mapping_resolves_to_this_binary() {
        let maps = crate::maps::read_maps(std::process::id()).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let m = maps.iter().find(|m| m.path == exe).expect("our text");
        let p = mapped_file(std::process::id(), true, m).unwrap();
        assert_eq!(
            std::fs::metadata(p).unwrap().ino(),
            std::fs::metadata(&exe).unwrap().ino()
        );
        let vdso = maps.iter().find(|m| m.path == Path::new("[vdso]")).unwrap();
        assert_eq!(mapped_file(std::process::id(), true, vdso), None);
    }
}
