//! Opening a target's files as the target sees them, and our own vDSO.
//!
//! Every file a target maps or names is hostile input: nflame runs as root,
//! and the target (a container, another user's program) controls the paths,
//! the symbolic links along them and what sits at their end. This module is
//! the one place such a file is opened, and it promises:
//!
//! - **never outside the target's root**: a path is resolved inside the
//!   process's root directory (`/proc/PID/root`), symbolic links included,
//!   with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`; where the kernel
//!   has no `openat2`, component by component with `openat(O_PATH |
//!   O_NOFOLLOW)` and `readlinkat`, at most 40 links, `..` clamped at the root
//!   ([`Root::open`]). A mapped file's path never needs a link (the kernel
//!   names files by their real path), so there a link is refused outright;
//! - **never blocking, never a side effect**: the object is first opened with
//!   `O_PATH` (which neither blocks on a FIFO nor opens a device), checked
//!   with `fstat` (a regular file, its size, its owner), and only then
//!   reopened for reading through `/proc/self/fd/N` with `O_NONBLOCK |
//!   O_NOCTTY` ([`TargetFile`]);
//! - **the file that was mapped**: a mapped file is opened through
//!   `/proc/PID/map_files/START-END` (the very file, needs root), else by its
//!   path inside the process's root, else (the process exited) by its path
//!   here; a file reached by path must be the mapped one (its inode, see
//!   [`same_file`]), or it is not used ([`open_mapped`]).
//!
//! What is refused is a [`Refusal`], which callers report (a summary line
//! `skipped …`) before going on without the file; a file that is simply not
//! there is [`FileError::Missing`].

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use nflame_recording::Mapping;

use crate::maps::{clean_path, is_pseudo};

/// Why nflame will not read a file a target points it to. Shown after the
/// file's name in a `skipped` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A FIFO, a device, a socket or a directory.
    #[error("not a regular file (a {0})")]
    NotRegular(&'static str),
    /// A symbolic link whose target does not exist inside the process's
    /// root (absolute or `..` links out of a container lead here).
    #[error("a symbolic link leading nowhere inside the process's root")]
    DanglingLink,
    /// A symbolic link where none may be (a mapped file's path is the real
    /// path; the link was put there after the file was mapped), a link loop,
    /// or a `/proc` magic link.
    #[error("a symbolic link where the process mapped a file, a link loop or a /proc magic link")]
    Symlink,
    /// Larger than the cap for this kind of file.
    #[error("{size} bytes, more than the cap of {cap}")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Owned by someone other than the users allowed (as perf requires of
    /// `/tmp/perf-PID.map`: the process's user or root).
    #[error("owned by uid {owner}, not by the process's user or root")]
    Owner {
        /// The file's owner.
        owner: u32,
    },
}

/// Why a target's file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing there (or not the file that was mapped): nothing to report.
    #[error("not found")]
    Missing,
    /// Something nflame will not read (see [`Refusal`]).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The system refused (permission, no /proc, …).
    #[error("cannot open")]
    Io(#[source] io::Error),
}

/// How symbolic links on the way are treated by [`Root::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Links {
    /// Followed, but never out of the root: an absolute link starts again
    /// at the root, `..` stops there. The default.
    #[default]
    Confined,
    /// Followed on the way, confined as above, but the file itself may not
    /// be a link (`O_NOFOLLOW`: [`Refusal::NotRegular`]). For files in
    /// directories others may write, such as `/tmp`.
    ConfinedNotLast,
    /// Refused ([`Refusal::Symlink`]), wherever on the path.
    Refused,
}

/// What [`Root::open`] accepts. Default: links confined to the root, any
/// size, any owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenPolicy {
    /// Symbolic links on the way. Default [`Links::Confined`].
    pub links: Links,
    /// Largest size accepted ([`Refusal::TooLarge`] above). Default: none.
    pub max_size: Option<u64>,
    /// Owners accepted besides root ([`Refusal::Owner`] for others).
    /// Default: `None`, any owner.
    pub owners: Option<Vec<u32>>,
}

impl OpenPolicy {
    /// Links confined, any size, any owner.
    pub fn confined() -> OpenPolicy {
        OpenPolicy::default()
    }

    /// Links on the way confined, none at the end.
    pub fn no_final_link() -> OpenPolicy {
        OpenPolicy {
            links: Links::ConfinedNotLast,
            ..OpenPolicy::default()
        }
    }

    /// No symbolic link anywhere on the path.
    pub fn no_links() -> OpenPolicy {
        OpenPolicy {
            links: Links::Refused,
            ..OpenPolicy::default()
        }
    }

    /// The same, at most `cap` bytes.
    pub fn max_size(mut self, cap: u64) -> OpenPolicy {
        self.max_size = Some(cap);
        self
    }

    /// The same, owned by root or one of `uids`.
    pub fn owned_by(mut self, uids: Vec<u32>) -> OpenPolicy {
        self.owners = Some(uids);
        self
    }
}

/// A target's file, open for reading (non-blocking), with what `fstat` said
/// when it was opened.
#[derive(Debug)]
pub struct TargetFile {
    file: File,
    /// Device (`st_dev`).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes when opened.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// It was reached through a mount namespace other than ours (a
    /// container's): whoever controls it may change it under us.
    pub foreign: bool,
}

impl TargetFile {
    /// The open file (reads with [`FileExt::read_at`] keep it shareable).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `/proc/self/fd/N`: a path that opens this very file, for libraries
    /// that take paths. Valid while `self` lives.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// Whether the file cannot change under us by another hand than root's
    /// in our own mount namespace: owned by root, writable by nobody else,
    /// and not reached through a container's mount namespace. Files that
    /// are not are copied before they are mapped into memory (a mapped file
    /// truncated by its owner would kill nflame with SIGBUS).
    pub fn trusted(&self) -> bool {
        self.uid == 0 && self.mode & 0o022 == 0 && !self.foreign
    }

    /// A private copy of the file in memory that nobody can change: a
    /// `memfd` sealed against writing, growing and shrinking, filled with
    /// `pread` (holes stay holes). For files that are not [`Self::trusted`]
    /// and are to be mapped into memory. At most `cap` bytes
    /// ([`Refusal::TooLarge`] past it).
    pub fn sealed_copy(&self, cap: u64) -> Result<File, FileError> {
        if self.size > cap {
            return Err(Refusal::TooLarge {
                size: self.size,
                cap,
            }
            .into());
        }
        let name = c"nflame-copy";
        // SAFETY: a NUL-terminated name and valid flags; the result is a new
        // descriptor we own.
        let fd = cvt(unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })
        .map_err(FileError::Io)?;
        // SAFETY: as above.
        let copy = unsafe { File::from_raw_fd(fd) };
        copy.set_len(self.size).map_err(FileError::Io)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        'extents: while at < self.size {
            // Skip holes: a sparse file stays sparse in memory.
            let data = match seek(&self.file, at, libc::SEEK_DATA) {
                Ok(d) if d < self.size => d,
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
                Err(_) => at,
            };
            let end = seek(&self.file, data, libc::SEEK_HOLE)
                .unwrap_or(self.size)
                .clamp(data + 1, self.size);
            let mut pos = data;
            while pos < end {
                let want = (end - pos).min(buf.len() as u64) as usize;
                let n =
                    retry(|| self.file.read_at(&mut buf[..want], pos)).map_err(FileError::Io)?;
                if n == 0 {
                    // Truncated under us: the rest stays zeros.
                    break 'extents;
                }
                copy.write_all_at(&buf[..n], pos).map_err(FileError::Io)?;
                pos += n as u64;
            }
            at = end;
        }
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own memfd.
        cvt(unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) })
            .map_err(FileError::Io)?;
        Ok(copy)
    }

    /// `len` bytes at `offset`, at most `cap` of them (an error past it, and
    /// if the file ends first).
    pub fn read_range(&self, offset: u64, len: u64, cap: u64) -> io::Result<Vec<u8>> {
        if len > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{len} bytes, more than the cap of {cap}"),
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, offset)?;
        Ok(buf)
    }

    /// The whole file, at most `cap` bytes (an error past it).
    pub fn read_all(&self, cap: u64) -> io::Result<Vec<u8>> {
        if self.size > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes, more than the cap of {cap}", self.size),
            ));
        }
        let mut buf = Vec::with_capacity(self.size as usize);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = retry(|| self.file.read_at(&mut chunk, buf.len() as u64))?;
            if n == 0 {
                return Ok(buf);
            }
            if (buf.len() + n) as u64 > cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("grew past the cap of {cap} bytes while read"),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `read_exact_at` that retries `EAGAIN`/`EINTR` (the file is non-blocking).
pub(crate) fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| file.read_at(buf, offset))?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Runs `f` again on `EINTR` and, a few times, on `EAGAIN`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut again = 0;
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && again < 8 => again += 1,
            r => return r,
        }
    }
}

/// A process's root directory (or ours), where its paths are resolved.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    foreign: bool,
}

impl Root {
    /// Our own root, `/`.
    pub fn host() -> io::Result<Root> {
        Ok(Root {
            dir: open_path(None, Path::new("/"), libc::O_DIRECTORY)?,
            foreign: false,
        })
    }

    /// The root directory of process `pid` (`/proc/PID/root`, a link the
    /// kernel provides, opened as the directory it is).
    pub fn of_process(pid: u32) -> io::Result<Root> {
        let dir = open_path(
            None,
            Path::new(&format!("/proc/{pid}/root")),
            libc::O_DIRECTORY,
        )?;
        Ok(Root {
            dir,
            foreign: !same_mount_namespace(pid),
        })
    }

    /// Opens `path` (absolute or not, taken from the root either way) as
    /// the process would see it, under `policy`.
    pub fn open(&self, path: &Path, policy: &OpenPolicy) -> Result<TargetFile, FileError> {
        let nofollow = policy.links == Links::ConfinedNotLast;
        let fd = match resolve(self.dir.as_fd(), path, policy.links, nofollow) {
            Ok(fd) => fd,
            Err(e) => return Err(self.classify(path, policy, e)),
        };
        checked(fd, policy, self.foreign)
    }

    /// Why resolving `path` failed: a dangling link is told from a missing
    /// file by looking at the last component without following it.
    fn classify(&self, path: &Path, policy: &OpenPolicy, e: io::Error) -> FileError {
        match e.raw_os_error() {
            Some(libc::ENOENT) => {
                let link = resolve(self.dir.as_fd(), path, policy.links, true)
                    .ok()
                    .and_then(|fd| stat(fd.as_fd()).ok())
                    .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                if link {
                    FileError::Refused(Refusal::DanglingLink)
                } else {
                    FileError::Missing
                }
            }
            Some(libc::ENOTDIR) => FileError::Missing,
            Some(libc::ELOOP) => FileError::Refused(Refusal::Symlink),
            _ => FileError::Io(e),
        }
    }
}

/// Checks an `O_PATH` descriptor against `policy` and reopens it for reading.
fn checked(fd: OwnedFd, policy: &OpenPolicy, foreign: bool) -> Result<TargetFile, FileError> {
    let st = stat(fd.as_fd()).map_err(FileError::Io)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("FIFO"),
        libc::S_IFCHR => Some("character device"),
        libc::S_IFBLK => Some("block device"),
        libc::S_IFSOCK => Some("socket"),
        libc::S_IFDIR => Some("directory"),
        libc::S_IFLNK => Some("symbolic link"),
        _ => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(Refusal::NotRegular(kind).into());
    }
    let size = st.st_size as u64;
    if let Some(cap) = policy.max_size.filter(|&cap| size > cap) {
        return Err(Refusal::TooLarge { size, cap }.into());
    }
    if let Some(owners) = &policy.owners {
        if st.st_uid != 0 && !owners.contains(&st.st_uid) {
            return Err(Refusal::Owner { owner: st.st_uid }.into());
        }
    }
    let file = reopen(fd.as_fd()).map_err(FileError::Io)?;
    Ok(TargetFile {
        file,
        dev: st.st_dev,
        ino: st.st_ino,
        size,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        foreign,
    })
}

/// Whether a file with `dev` and `ino` is the one a mapping recorded with
/// `mapped_dev` and `mapped_ino`: the same inode, on the same device, or
/// both devices anonymous (major 0: btrfs subvolumes and overlayfs report
/// another anonymous device through `stat` than in `/proc/PID/maps`).
pub fn same_file(mapped_dev: Option<u64>, mapped_ino: Option<u64>, dev: u64, ino: u64) -> bool {
    let Some(mapped_ino) = mapped_ino.filter(|&i| i != 0) else {
        return true;
    };
    if mapped_ino != ino {
        return false;
    }
    match mapped_dev {
        Some(d) if d != dev => major(d) == 0 && major(dev) == 0,
        _ => true,
    }
}

fn major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

/// Opens the file `mapping` of process `pid` shows (see the module docs):
/// `/proc/PID/map_files/START-END` and then its path inside the process's
/// root while it lives (`live`), its path here after it exited. A file
/// reached by path must be the mapped one ([`same_file`]) and no link may
/// lie on its path. Pseudo mappings (`[vdso]`, anonymous memory) are
/// [`FileError::Missing`].
pub fn open_mapped(pid: u32, live: bool, mapping: &Mapping) -> Result<TargetFile, FileError> {
    let path = clean_path(&mapping.path);
    if is_pseudo(path) {
        return Err(FileError::Missing);
    }
    let identity = |f: TargetFile| {
        if same_file(mapping.dev, mapping.inode, f.dev, f.ino) {
            Ok(f)
        } else {
            Err(FileError::Missing)
        }
    };
    if live {
        let link = format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            mapping.start, mapping.end
        );
        // A link the kernel provides to the mapped file itself: followed.
        if let Ok(fd) = open_path(None, Path::new(&link), 0) {
            let foreign = !same_mount_namespace(pid);
            if let Ok(f) = checked(fd, &OpenPolicy::default(), foreign).and_then(identity) {
                return Ok(f);
            }
        }
        if let Ok(root) = Root::of_process(pid) {
            return root.open(path, &OpenPolicy::no_links()).and_then(identity);
        }
    }
    // The process exited (or its root cannot be opened): its path here,
    // only for a file that proves to be the one mapped.
    if mapping.inode.is_none_or(|i| i == 0) {
        return Err(FileError::Missing);
    }
    let root = Root::host().map_err(FileError::Io)?;
    root.open(path, &OpenPolicy::no_links()).and_then(identity)
}

/// Opens `path` (nflame's own choice of path: links followed as usual) for
/// reading the way a target's file is opened: `O_PATH`, a regular file
/// (`fstat`), then the reopen with `O_NONBLOCK | O_NOCTTY`.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let fd = open_path(None, path, 0)?;
    match checked(fd, &OpenPolicy::default(), false) {
        Ok(f) => Ok(f.file),
        Err(FileError::Io(e)) => Err(e),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
    }
}

/// Whether process `pid` shares our mount namespace (`false` when unknown).
pub fn same_mount_namespace(pid: u32) -> bool {
    static OURS: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    let ours = *OURS.get_or_init(|| ns_id("self"));
    ours.is_some() && ours == ns_id(&pid.to_string())
}

fn ns_id(who: &str) -> Option<(u64, u64)> {
    let st = std::fs::metadata(format!("/proc/{who}/ns/mnt")).ok()?;
    use std::os::unix::fs::MetadataExt;
    Some((st.dev(), st.ino()))
}

// ---------------------------------------------------------------------------
// Resolution.

/// `O_PATH` descriptor of `path` resolved from `dir` (or the current
/// directory), following links as the kernel does: for paths nflame itself
/// chose (`/proc/PID/…`, `/`).
fn open_path(dir: Option<BorrowedFd<'_>>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a NUL-terminated path; the result is a new descriptor we own.
    let fd = retry(|| {
        cvt(unsafe { libc::openat(at, c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | flags) })
    })?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolves `path` inside `root` to an `O_PATH` descriptor (see the module
/// docs); `nofollow_last`: a link in the last component is returned itself.
pub(crate) fn resolve(
    root: BorrowedFd<'_>,
    path: &Path,
    links: Links,
    nofollow_last: bool,
) -> io::Result<OwnedFd> {
    static OPENAT2: OnceLock<bool> = OnceLock::new();
    if *OPENAT2.get_or_init(|| openat2_works(root)) {
        resolve_openat2(root, path, links, nofollow_last)
    } else {
        resolve_walk(root, path, links, nofollow_last)
    }
}

fn openat2_works(root: BorrowedFd<'_>) -> bool {
    match resolve_openat2(root, Path::new("/"), Links::Confined, false) {
        Ok(_) => true,
        Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)),
    }
}

fn resolve_openat2(
    root: BorrowedFd<'_>,
    path: &Path,
    links: Links,
    nofollow_last: bool,
) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let mut flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    if nofollow_last {
        flags |= libc::O_NOFOLLOW as u64;
    }
    let mut resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    if links == Links::Refused {
        resolve |= libc::RESOLVE_NO_SYMLINKS;
    }
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags;
    how.resolve = resolve;
    let fd = retry(|| {
        // SAFETY: openat2 with a valid directory descriptor, a NUL-terminated
        // path and a pointer to an open_how of the size passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        cvt(rc as i32)
    })?;
    // SAFETY: a new descriptor returned by openat2, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Most links followed in one resolution (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// [`resolve`] without `openat2`: one component at a time with
/// `openat(O_PATH | O_NOFOLLOW)`, links read with `readlinkat` and resolved
/// again from the root (absolute) or the current directory (relative), `..`
/// taken on our own stack of directories and never above the root. Magic
/// links are never followed: their text is resolved inside the root like
/// any other link's.
pub(crate) fn resolve_walk(
    root: BorrowedFd<'_>,
    path: &Path,
    links: Links,
    nofollow_last: bool,
) -> io::Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut rest: Vec<Vec<u8>> = components(path.as_os_str().as_bytes());
    rest.reverse(); // popped from the end
    let mut followed = 0;
    while let Some(name) = rest.pop() {
        match name.as_slice() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let cur = stack.last().map_or(root, |f| f.as_fd());
        let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let fd = retry(|| {
            cvt(unsafe {
                libc::openat(
                    cur.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })
        })?;
        // SAFETY: a new descriptor, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mode = stat(fd.as_fd())?.st_mode & libc::S_IFMT;
        let last = rest.iter().all(|c| c.is_empty() || c == b".");
        if mode == libc::S_IFLNK {
            if last && nofollow_last {
                return Ok(fd);
            }
            if links == Links::Refused {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            followed += 1;
            if followed > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = readlink(fd.as_fd())?;
            if target.first() == Some(&b'/') {
                stack.clear();
            }
            rest.extend(components(&target).into_iter().rev());
            continue;
        }
        if mode == libc::S_IFDIR {
            stack.push(fd);
            continue;
        }
        if !last {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        return Ok(fd);
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => root.try_clone_to_owned(),
    }
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect()
}

fn readlink(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat on an O_PATH descriptor of a link with an empty
    // path reads that link; the buffer is as long as passed.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn stat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data, filled in by fstat on a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Opens the object an `O_PATH` descriptor holds for reading, without
/// blocking and without becoming our controlling terminal.
fn reopen(fd: BorrowedFd<'_>) -> io::Result<File> {
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the result is a new descriptor we own.
    let raw: RawFd = retry(|| cvt(unsafe { libc::open(path.as_ptr(), flags) }))?;
    // SAFETY: as above.
    Ok(unsafe { File::from_raw_fd(raw) })
}

/// `lseek(fd, at, whence)`, for `SEEK_DATA` and `SEEK_HOLE`.
fn seek(file: &File, at: u64, whence: i32) -> io::Result<u64> {
    // SAFETY: lseek on a valid descriptor; only its offset changes, which
    // nflame never uses (reads are positioned).
    let r = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(rc: i32) -> io::Result<i32> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The name to show for `path` of process `pid` in a `skipped` line.
pub fn shown(pid: u32, path: &Path) -> String {
    format!("{} (pid {pid})", path.display())
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

/// Whether `name` is a plain file name: one component, no `/`, not `..`
/// (what a `.gnu_debuglink` may name).
pub fn is_plain_name(name: &Path) -> bool {
    let mut comps = name.components();
    matches!(comps.next(), Some(Component::Normal(_))) && comps.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    #[test]
    fn own_vdso_is_an_elf_image() {
        let v = own_vdso().expect("a vDSO");
        assert!(v.start > 0);
        assert_eq!(&v.image[..4], b"\x7fELF");
    }

    #[test]
    fn own_executable_mapping_opens_as_this_binary() {
        let maps = crate::maps::read_maps(std::process::id()).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let m = maps.iter().find(|m| m.path == exe).expect("our text");
        let f = open_mapped(std::process::id(), true, m).unwrap();
        assert_eq!(f.ino, std::fs::metadata(&exe).unwrap().ino());
        assert!(f.size > 0);
        let vdso = maps.iter().find(|m| m.path == Path::new("[vdso]")).unwrap();
        assert!(matches!(
            open_mapped(std::process::id(), true, vdso),
            Err(FileError::Missing)
        ));
        // After "exit": by path, and only the same inode.
        let mut other = m.clone();
        other.inode = Some(f.ino + 1);
        assert!(matches!(
            open_mapped(std::process::id(), false, &other),
            Err(FileError::Missing)
        ));
        assert!(open_mapped(std::process::id(), false, m).is_ok());
    }

    /// A directory standing for a process's root, with a file, a link out
    /// of it (absolute and `../..`), a link inside it, a FIFO and a loop.
    fn fake_root() -> (tempfile::TempDir, tempfile::TempDir) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("tmp/sub")).unwrap();
        std::fs::write(r.join("tmp/inside"), "inside").unwrap();
        symlink(outside.path().join("secret"), r.join("tmp/abs")).unwrap();
        let up = "../".repeat(20);
        let rel = format!(
            "{up}{}",
            outside
                .path()
                .join("secret")
                .to_str()
                .unwrap()
                .trim_start_matches('/')
        );
        symlink(&rel, r.join("tmp/sub/rel")).unwrap();
        symlink("/tmp/inside", r.join("tmp/link")).unwrap();
        symlink("../inside", r.join("tmp/sub/up")).unwrap();
        symlink("loop", r.join("tmp/loop")).unwrap();
        let c = CString::new(r.join("tmp/fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        (root, outside)
    }

    fn root_at(dir: &Path) -> Root {
        Root {
            dir: open_path(None, dir, libc::O_DIRECTORY).unwrap(),
            foreign: false,
        }
    }

    fn read(root: &Root, path: &str, policy: &OpenPolicy) -> Result<String, FileError> {
        let f = root.open(Path::new(path), policy)?;
        Ok(String::from_utf8(f.read_all(1 << 20).unwrap()).unwrap())
    }

    fn confinement(resolver: fn(BorrowedFd<'_>, &Path, Links, bool) -> io::Result<OwnedFd>) {
        let (root_dir, _outside) = fake_root();
        let root = root_at(root_dir.path());
        let open = |p: &str, links| {
            resolver(root.dir.as_fd(), Path::new(p), links, false)
                .and_then(|fd| reopen(fd.as_fd()))
                .map(|f| {
                    let mut s = String::new();
                    io::Read::read_to_string(&mut &f, &mut s).unwrap();
                    s
                })
        };
        assert_eq!(open("/tmp/inside", Links::Confined).unwrap(), "inside");
        assert_eq!(open("tmp/link", Links::Confined).unwrap(), "inside");
        assert_eq!(open("/tmp/sub/up", Links::Confined).unwrap(), "inside");
        assert_eq!(
            open("/../../tmp/inside", Links::Confined).unwrap(),
            "inside"
        );
        for escape in ["/tmp/abs", "/tmp/sub/rel"] {
            let e = open(escape, Links::Confined).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{escape}");
        }
        let e = open("/tmp/loop", Links::Confined).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = open("/tmp/link", Links::Refused).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let fd = resolver(
            root.dir.as_fd(),
            Path::new("/tmp/abs"),
            Links::Confined,
            true,
        );
        assert_eq!(
            stat(fd.unwrap().as_fd()).unwrap().st_mode & libc::S_IFMT,
            libc::S_IFLNK
        );
    }

    #[test]
    fn links_stay_inside_the_root_with_openat2() {
        confinement(resolve_openat2);
    }

    #[test]
    fn links_stay_inside_the_root_without_openat2() {
        confinement(resolve_walk);
    }

    #[test]
    fn refusals_are_told_apart() {
        let (root_dir, _outside) = fake_root();
        let root = root_at(root_dir.path());
        let any = OpenPolicy::confined();
        assert_eq!(read(&root, "/tmp/link", &any).unwrap(), "inside");
        assert!(matches!(
            read(&root, "/tmp/abs", &any),
            Err(FileError::Refused(Refusal::DanglingLink))
        ));
        assert!(matches!(
            read(&root, "/tmp/nothing", &any),
            Err(FileError::Missing)
        ));
        assert!(matches!(
            read(&root, "/tmp/fifo", &any),
            Err(FileError::Refused(Refusal::NotRegular("FIFO")))
        ));
        assert!(matches!(
            read(&root, "/tmp/inside", &OpenPolicy::confined().max_size(3)),
            Err(FileError::Refused(Refusal::TooLarge { size: 6, cap: 3 }))
        ));
        assert!(matches!(
            read(&root, "/tmp/link", &OpenPolicy::no_links()),
            Err(FileError::Refused(Refusal::Symlink))
        ));
        assert!(matches!(
            read(&root, "/tmp/link", &OpenPolicy::no_final_link()),
            Err(FileError::Refused(Refusal::NotRegular("symbolic link")))
        ));
        assert_eq!(
            read(&root, "/tmp/sub/../inside", &OpenPolicy::no_final_link()).unwrap(),
            "inside"
        );
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        if me == 0 {
            let f = root_dir.path().join("tmp/inside");
            std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
            assert!(matches!(
                read(
                    &root,
                    "/tmp/inside",
                    &OpenPolicy::confined().owned_by(vec![1000])
                ),
                Err(FileError::Refused(Refusal::Owner { owner: 65534 }))
            ));
            assert!(read(
                &root,
                "/tmp/inside",
                &OpenPolicy::confined().owned_by(vec![65534])
            )
            .is_ok());
        }
        // Devices are refused without being opened.
        let host = Root::host().unwrap();
        assert!(matches!(
            host.open(Path::new("/dev/tty"), &any),
            Err(FileError::Refused(Refusal::NotRegular("character device")))
        ));
    }

    #[test]
    fn sealed_copies_keep_content_and_holes_and_cannot_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 64 << 20).unwrap();
        drop(f);
        let t = Root::host()
            .unwrap()
            .open(&p, &OpenPolicy::confined())
            .unwrap();
        assert!(matches!(
            t.sealed_copy(1 << 20),
            Err(FileError::Refused(Refusal::TooLarge { .. }))
        ));
        let copy = t.sealed_copy(1 << 30).unwrap();
        let mut b = [0u8; 4];
        copy.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"head");
        copy.read_exact_at(&mut b, 64 << 20).unwrap();
        assert_eq!(&b, b"tail");
        assert_eq!(copy.metadata().unwrap().len(), (64 << 20) + 4);
        // Sealed: neither shrinks nor is written.
        assert!(copy.set_len(0).is_err());
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        assert!(w.write_all_at(b"x", 0).is_err());
    }

    #[test]
    fn identity_of_mapped_files() {
        use crate::maps::makedev;
        assert!(same_file(Some(makedev(8, 1)), Some(5), makedev(8, 1), 5));
        assert!(!same_file(Some(makedev(8, 1)), Some(5), makedev(8, 2), 5));
        assert!(!same_file(Some(makedev(8, 1)), Some(5), makedev(8, 1), 6));
        // Anonymous devices (btrfs, overlayfs) may differ between maps and stat.
        assert!(same_file(Some(makedev(0, 31)), Some(5), makedev(0, 45), 5));
        assert!(same_file(None, None, 1, 2));
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name(Path::new("prog.debug")));
        assert!(!is_plain_name(Path::new("../prog.debug")));
        assert!(!is_plain_name(Path::new("/tmp/x")));
        assert!(!is_plain_name(Path::new("a/b")));
        assert!(!is_plain_name(Path::new("..")));
    }
}
