//! Bounded reads of small text files: `/proc` and `/sys` entries, and
//! configuration files of other programs (dockerd's `daemon.json`, a
//! container's `config.v2.json`).
//!
//! Every read here is bounded and cannot block: the file is first opened
//! with `O_PATH` (neither a FIFO nor a device is really opened), must be a
//! regular file, and only then is opened for reading with `O_NONBLOCK |
//! O_NOCTTY` ([`crate::files`]); reading stops with an error past a size
//! limit. `/proc` files report size 0 and are read to their end. The paths
//! are nflame's own choice (`/proc/PID/…`, configuration files); a target's
//! files go through [`crate::files::Root::open`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Limit for `/proc/PID/maps` (a process with 100k mappings writes ~10 MB).
pub(crate) const MAPS_LIMIT: u64 = 64 << 20;
/// Limit for small `/proc` files (status, comm, cgroup, cmdline, stat).
pub(crate) const SMALL_LIMIT: u64 = 1 << 20;
/// Limit for a network namespace's `fib_trie`.
pub(crate) const FIB_LIMIT: u64 = 16 << 20;

/// Opens `path` for reading without blocking and without becoming its
/// controlling terminal, refusing anything but a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    crate::files::open_regular(path)
}

/// The bytes of a regular file, at most `limit` of them (an error past it).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_file_bounded(open_regular(path)?, limit)
}

/// The rest of an open file, at most `limit` bytes (an error past it).
pub fn read_file_bounded(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// A regular text file of at most `limit` bytes (invalid UTF-8 replaced).
pub fn read_text_bounded(path: &Path, limit: u64) -> io::Result<String> {
    let bytes = read_bounded(path, limit)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// `/proc/PID/NAME` as text, at most `limit` bytes.
pub(crate) fn proc_text(pid: u32, name: &str, limit: u64) -> io::Result<String> {
    read_text_bounded(Path::new(&format!("/proc/{pid}/{name}")), limit)
}

/// `/proc/PID/NAME` as bytes, at most `limit` bytes.
pub(crate) fn proc_bytes(pid: u32, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    read_bounded(Path::new(&format!("/proc/{pid}/{name}")), limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_files_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_bounded(&f, 5).unwrap(), b"hello");
        assert!(read_bounded(&f, 4).is_err());
        // A directory, a device and a FIFO are refused without blocking.
        assert!(read_bounded(dir.path(), 10).is_err());
        assert!(read_bounded(Path::new("/dev/zero"), 10).is_err());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_bounded(&fifo, 10).is_err());
        // /proc files report size 0 and are read whole.
        assert!(proc_text(std::process::id(), "status", SMALL_LIMIT)
            .unwrap()
            .contains("Tgid:"));
    }
}
