//! The attacker's kit of `tests/hostile.rs`: hostile programs and files,
//! fake containers, untrusted users, and a harness that runs `nflame` as
//! root under a memory limit and a deadline and measures it.
//!
//! - [`bins`]: a static target program (`hostile.c` beside this file) and
//!   ELF files made from it that lie about their sections;
//! - [`Container`]: a fake container (mount and pid namespaces, a chroot on
//!   a tmpfs) running one of them as its pid 1;
//! - [`Proc`]: the same on the host, as root or as user `nobody`;
//! - [`Running`] / [`Finished`]: `nflame` with an address-space limit, a
//!   deadline (killed and failed past it), its peak RSS from `wait4`;
//! - assertions on what nflame wrote: [`Outputs`], [`assert_skipped`].
#![allow(dead_code)]

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Address space nflame gets: far above what a recording needs (about
/// 300 MiB of mappings), far below the machine, so an unbounded read fails
/// there instead of taking the machine down.
pub const ADDRESS_SPACE: u64 = 1 << 30;
/// Peak resident memory allowed to nflame in these tests. A short recording
/// of one process peaks at about 30 MiB.
pub const MAX_RSS_KIB: i64 = 256 * 1024;
/// Time nflame gets for a recording of 2 seconds, symbolization included.
pub const DEADLINE: Duration = Duration::from_secs(40);
/// How long a target may take to say it is ready.
const READY: Duration = Duration::from_secs(15);
/// Where the target program's JIT code runs (see `hostile.c`).
pub const JIT_ADDR: u64 = 0x7f00_0000_0000;

/// A directory for this test binary's files, readable by everyone (targets
/// run as `nobody` too).
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o755);
        dir
    })
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A string no file on this machine holds but the one a test plants.
pub fn token(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{what}{:08x}{:x}", nanos, std::process::id())
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` as user `nobody` (group `nogroup`, no supplementary groups).
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(program)
        .env("HOME", "/")
        .current_dir("/");
    c
}

pub fn nobody_uid() -> u32 {
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at
    // once, before any other passwd call.
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    assert!(!pw.is_null(), "no user nobody");
    // SAFETY: `pw` is a valid passwd entry (checked above).
    unsafe { (*pw).pw_uid }
}

pub fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(nobody_uid()), None)
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// A directory only root can read, for the host's secrets.
pub fn root_only_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("nflame-hostile-secret.")
        .tempdir()
        .unwrap();
    chmod(dir.path(), 0o700);
    dir
}

/// Writes a root-only (0600) file.
pub fn root_only_file(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    chmod(path, 0o600);
}

/// A FIFO planted by a test. Anything blocked opening it is released on
/// drop (another nflame on this machine may be symbolizing our targets
/// too): the FIFO is opened for reading and writing, which lets every
/// blocked opener through, unlinked, then closed, which ends their reads.
#[derive(Debug)]
#[must_use = "the FIFO is released and removed when this is dropped"]
pub struct Fifo(pub PathBuf);

impl Fifo {
    /// Makes a FIFO at `path`.
    pub fn make(path: &Path) -> Fifo {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o666) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Fifo(path.to_path_buf())
    }

    /// Takes charge of a FIFO made by another process (another user).
    pub fn adopt(path: &Path) -> Fifo {
        Fifo(path.to_path_buf())
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let both = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0);
        let _ = std::fs::remove_file(&self.0);
        drop(both);
    }
}

/// Makes a character device node (as a container's root may).
pub fn mknod_char(path: &Path, major: u32, minor: u32) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod with a NUL-terminated path and a device number.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------
// Hostile binaries.

/// The target program and the hostile ELF files made from it, built once
/// per test binary.
#[derive(Debug)]
pub struct Bins {
    /// `hostile.c`, static, with symbols and frame pointers.
    pub plain: PathBuf,
    /// Stripped of its symbol table, its DWARF kept compressed, and its
    /// compressed `.debug_info` claiming 2^47 - 1 bytes (128 TiB).
    pub dwarf_claim: PathBuf,
    /// The same, but `.debug_info` is a zlib stream of 4 MiB that inflates
    /// to 4 GiB, claiming 1 MiB.
    pub dwarf_bomb: PathBuf,
    /// Stripped, its `.eh_frame` and an added `.gopclntab` each 256 MiB of
    /// holes past the end of the real file.
    pub sparse: PathBuf,
    /// With its symbols, but `.symtab` claims 512 MiB of holes past the end
    /// of the real file (a symbol table is read for every file).
    pub sparse_symtab: PathBuf,
    /// `lib.c` built with `guest_only_symbol`, and with `hostx_only_symbol`,
    /// and the file offset of that function (the same in both).
    pub lib_guest: PathBuf,
    pub lib_host: PathBuf,
    pub lib_offset: u64,
}

const SPARSE_SECTION: u64 = 256 << 20;
const SPARSE_SYMTAB: u64 = 512 << 20;

pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/hostile");
        let dir = work_dir().join("bins");
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o755);
        let gcc = |args: &[&str], out: &Path, file: &str| {
            run_ok(
                Command::new("gcc")
                    .args(args)
                    .arg("-o")
                    .arg(out)
                    .arg(src.join(file)),
            );
        };
        let plain = dir.join("hostile");
        gcc(
            &["-static", "-O2", "-g", "-fno-omit-frame-pointer"],
            &plain,
            "hostile.c",
        );

        // Compressed DWARF, no symbol table.
        let zdebug = dir.join("hostile-zdebug");
        gcc(
            &[
                "-static",
                "-O2",
                "-g",
                "-gz=zlib",
                "-fno-omit-frame-pointer",
            ],
            &zdebug,
            "hostile.c",
        );
        let zstripped = dir.join("hostile-zdebug-stripped");
        run_ok(
            Command::new("strip")
                .args(["--strip-all", "--keep-section=.debug_*", "-o"])
                .arg(&zstripped)
                .arg(&zdebug),
        );
        let mut elf = Elf::read(&zstripped);
        let info = elf.section(".debug_info");
        assert!(
            info.flags & SHF_COMPRESSED != 0,
            "gcc -gz compressed nothing"
        );
        // Elf64_Chdr: ch_type u32, ch_reserved u32, ch_size u64, ch_addralign u64.
        let at = info.offset as usize + 8;
        elf.bytes[at..at + 8].copy_from_slice(&0x7fff_ffff_ffffu64.to_le_bytes());
        let dwarf_claim = dir.join("hostile-dwarf-claim");
        elf.write(&dwarf_claim, None);

        let mut elf = Elf::read(&zstripped);
        let mut data = Vec::new();
        data.extend_from_slice(&1u32.to_le_bytes()); // ELFCOMPRESS_ZLIB
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&(1u64 << 20).to_le_bytes());
        data.extend_from_slice(&1u64.to_le_bytes());
        data.extend_from_slice(&zlib_bomb(4 << 30));
        let off = elf.append(&data, 8);
        elf.set_section(".debug_info", off, data.len() as u64);
        let dwarf_bomb = dir.join("hostile-dwarf-bomb");
        elf.write(&dwarf_bomb, None);

        // Sparse sections.
        let stripped = dir.join("hostile-stripped");
        run_ok(
            Command::new("strip")
                .args(["--strip-all", "-o"])
                .arg(&stripped)
                .arg(&plain),
        );
        let small = dir.join("gopclntab.bin");
        std::fs::write(&small, [0u8; 16]).unwrap();
        let with_go = dir.join("hostile-go");
        run_ok(
            Command::new("objcopy")
                .arg(format!("--add-section=.gopclntab={}", small.display()))
                .arg(&stripped)
                .arg(&with_go),
        );
        let mut elf = Elf::read(&with_go);
        let hole = (elf.bytes.len() as u64).next_multiple_of(4096);
        elf.set_section(".eh_frame", hole, SPARSE_SECTION);
        elf.set_section(".gopclntab", hole + SPARSE_SECTION, SPARSE_SECTION);
        let sparse = dir.join("hostile-sparse");
        elf.write(&sparse, Some(hole + 2 * SPARSE_SECTION));

        let mut elf = Elf::read(&plain);
        let hole = (elf.bytes.len() as u64).next_multiple_of(4096);
        elf.set_section(".symtab", hole, SPARSE_SYMTAB);
        let sparse_symtab = dir.join("hostile-sparse-symtab");
        elf.write(&sparse_symtab, Some(hole + SPARSE_SYMTAB));

        let lib_guest = dir.join("lib-guest.elf");
        let lib_host = dir.join("lib-host.elf");
        for (out, name) in [
            (&lib_guest, "guest_only_symbol"),
            (&lib_host, "hostx_only_symbol"),
        ] {
            gcc(
                &[
                    "-O2",
                    "-shared",
                    "-fPIC",
                    "-nostdlib",
                    &format!("-DFNAME={name}"),
                ],
                out,
                "lib.c",
            );
        }
        let lib_offset = symbol_file_offset(&lib_guest, "guest_only_symbol");
        assert_eq!(
            symbol_file_offset(&lib_host, "hostx_only_symbol"),
            lib_offset,
            "both builds of lib.c must have their function at one offset"
        );
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            chmod(&entry.path(), 0o755);
        }
        Bins {
            plain,
            dwarf_claim,
            dwarf_bomb,
            sparse,
            sparse_symtab,
            lib_guest,
            lib_host,
            lib_offset,
        }
    })
}

/// The stripped target program with a `.gnu_debuglink` naming `link`,
/// written to `out`.
pub fn with_debuglink(out: &Path, link: &str) {
    let stripped = work_dir().join(format!("debuglink-{}.stripped", std::process::id()));
    if !stripped.exists() {
        run_ok(
            Command::new("strip")
                .args(["--strip-all", "-o"])
                .arg(&stripped)
                .arg(&bins().plain),
        );
    }
    // The file name, NUL, padding to 4 bytes, a CRC-32 (which no file has).
    let mut data = link.as_bytes().to_vec();
    data.push(0);
    while data.len() % 4 != 0 {
        data.push(0);
    }
    data.extend_from_slice(&0x1234_5678u32.to_le_bytes());
    let section = out.with_extension("debuglink.bin");
    std::fs::write(&section, &data).unwrap();
    run_ok(
        Command::new("objcopy")
            .arg(format!(
                "--add-section=.gnu_debuglink={}",
                section.display()
            ))
            .arg(&stripped)
            .arg(out),
    );
    std::fs::remove_file(&section).unwrap();
    chmod(out, 0o755);
}

fn symbol_file_offset(path: &Path, name: &str) -> u64 {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} not in {}", path.display()));
    let seg = file
        .segments()
        .find(|s| s.address() <= sym.address() && sym.address() < s.address() + s.size())
        .expect("the symbol is in a segment");
    sym.address() - seg.address() + seg.file_range().0
}

/// A zlib stream that inflates to `size` zero bytes: raw deflate blocks of
/// 1 MiB of zeros each, ended by a sync flush (so that they concatenate),
/// a final empty block and the Adler-32 of the whole.
fn zlib_bomb(size: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let deflate = |input: &[u8], flush: FlushCompress| {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(CHUNK / 64);
        c.compress_vec(input, &mut out, flush).unwrap();
        out
    };
    let block = deflate(&zeros, FlushCompress::Sync);
    let last = deflate(&[], FlushCompress::Finish);
    let n = size / CHUNK as u64;
    let mut out = vec![0x78, 0xda];
    for _ in 0..n {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&last);
    // Adler-32 of n * CHUNK zeros: a = 1, b = n * CHUNK mod 65521.
    let b = (n * CHUNK as u64 % 65521) as u32;
    out.extend_from_slice(&((b << 16) | 1).to_be_bytes());
    out
}

pub const SHF_COMPRESSED: u64 = 0x800;

/// A section header of a 64-bit little-endian ELF file.
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub flags: u64,
    pub offset: u64,
    pub size: u64,
    /// Where the header is in the file.
    header: usize,
}

/// An ELF file (64-bit, little-endian) whose section headers are patched
/// in place.
#[derive(Debug)]
pub struct Elf {
    pub bytes: Vec<u8>,
}

impl Elf {
    pub fn read(path: &Path) -> Elf {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(bytes[4], 2, "64-bit ELF");
        assert_eq!(bytes[5], 1, "little-endian ELF");
        Elf { bytes }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.bytes[at..at + 2].try_into().unwrap())
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().unwrap())
    }

    fn put_u64(&mut self, at: usize, v: u64) {
        self.bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    pub fn sections(&self) -> Vec<Section> {
        let shoff = self.u64_at(0x28) as usize;
        let entsize = usize::from(self.u16_at(0x3a));
        let count = usize::from(self.u16_at(0x3c));
        let strndx = usize::from(self.u16_at(0x3e));
        let raw: Vec<(u32, u64, u64, u64, usize)> = (0..count)
            .map(|i| {
                let h = shoff + i * entsize;
                (
                    self.u32_at(h),
                    self.u64_at(h + 8),
                    self.u64_at(h + 24),
                    self.u64_at(h + 32),
                    h,
                )
            })
            .collect();
        let strtab = raw[strndx].2 as usize;
        raw.iter()
            .map(|&(name, flags, offset, size, header)| {
                let start = strtab + name as usize;
                let end = start + self.bytes[start..].iter().position(|&b| b == 0).unwrap();
                Section {
                    name: String::from_utf8_lossy(&self.bytes[start..end]).into_owned(),
                    flags,
                    offset,
                    size,
                    header,
                }
            })
            .collect()
    }

    pub fn section(&self, name: &str) -> Section {
        self.sections()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// Points section `name` at `size` bytes at file offset `offset`.
    pub fn set_section(&mut self, name: &str, offset: u64, size: u64) {
        let h = self.section(name).header;
        self.put_u64(h + 24, offset);
        self.put_u64(h + 32, size);
    }

    /// Appends `data` at the end (aligned), returning its offset.
    pub fn append(&mut self, data: &[u8], align: usize) -> u64 {
        let at = self.bytes.len().next_multiple_of(align);
        self.bytes.resize(at, 0);
        self.bytes.extend_from_slice(data);
        at as u64
    }

    /// Writes the file, extended with a hole to `len` bytes if given.
    pub fn write(&self, path: &Path, len: Option<u64>) {
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(&self.bytes).unwrap();
        if let Some(len) = len {
            f.set_len(len).unwrap();
        }
        chmod(path, 0o755);
    }
}

// ---------------------------------------------------------------------------
// Targets.

/// Lines a target prints on standard output, read on a thread.
fn line_reader(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn expect_line(lines: &Receiver<String>, want: &str, limit: Duration, what: &str) {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.trim() == want => return,
            Ok(_) => {}
            Err(_) => panic!("{what} did not print {want:?} within {limit:?}"),
        }
    }
}

/// A fake container: `unshare --mount --pid --fork`, a tmpfs mounted in the
/// new mount namespace, the stage directory's tree copied onto it, and a
/// program chrooted there as the namespace's pid 1. Killed on drop, which
/// ends the namespace.
#[derive(Debug)]
pub struct Container {
    unshare: Child,
    /// The host's pid of the container's pid 1.
    pub pid: u32,
    lines: Receiver<String>,
    _root: tempfile::TempDir,
}

/// The tree a container starts with, built on the host before it starts.
#[derive(Debug)]
pub struct Stage {
    dir: tempfile::TempDir,
}

impl Stage {
    /// A stage holding the target program as `/app/hostile`.
    pub fn new() -> Stage {
        let dir = tempfile::Builder::new()
            .prefix("nflame-hostile-stage.")
            .tempdir()
            .unwrap();
        chmod(dir.path(), 0o755);
        let stage = Stage { dir };
        stage.copy(&bins().plain, "app/hostile");
        stage.mkdir("tmp");
        chmod(&stage.path("tmp"), 0o1777);
        stage
    }

    /// The host path of `rel` in the stage.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.path(rel)).unwrap();
    }

    /// Copies the host file `from` to `rel`.
    pub fn copy(&self, from: &Path, rel: &str) {
        let to = self.path(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
        chmod(&to, 0o755);
    }
}

impl Container {
    /// Starts `argv` (a path inside the container first) in a fake
    /// container built from `stage`, and waits until it prints "ready".
    pub fn start(stage: &Stage, argv: &[&str]) -> Container {
        let root = tempfile::Builder::new()
            .prefix("nflame-hostile-root.")
            .tempdir()
            .unwrap();
        let script = r#"set -e
mount -t tmpfs -o mode=755 nflame-hostile "$1"
cp -a "$2"/. "$1"/
r=$1
shift 2
cd /
exec chroot "$r" "$@""#;
        let mut unshare = Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "--", "sh", "-c", script, "sh"])
            .arg(root.path())
            .arg(stage.dir.path())
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare runs");
        let lines = line_reader(unshare.stdout.take().unwrap());
        let upid = unshare.id();
        let mut c = Container {
            unshare,
            pid: 0,
            lines,
            _root: root,
        };
        expect_line(&c.lines, "ready", READY, "the container");
        let children =
            std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children")).unwrap();
        c.pid = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("unshare's child");
        c
    }

    /// The container's root as the host reaches it, to plant files after it
    /// started.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// Waits until the container prints `line`.
    pub fn expect(&self, line: &str, limit: Duration) {
        expect_line(&self.lines, line, limit, "the container");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.pid != 0 {
            signal(self.pid, libc::SIGKILL);
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A target program on the host, killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts `program args` (as `nobody` if asked) and waits until it
    /// prints "ready".
    pub fn start(program: &Path, args: &[&str], nobody: bool) -> Proc {
        let mut cmd = if nobody {
            as_nobody(program)
        } else {
            Command::new(program)
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let lines = line_reader(child.stdout.take().unwrap());
        let p = Proc { child, lines };
        expect_line(&p.lines, "ready", READY, &program.display().to_string());
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`, which this test started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Removes a file on drop (planted in a shared directory such as /tmp).
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reports whether anything opened or read a file (or only read it): an
/// inotify watch.
#[derive(Debug)]
pub struct OpenWatch {
    fd: OwnedFd,
}

impl OpenWatch {
    /// Watches for opens and reads.
    pub fn new(path: &Path) -> OpenWatch {
        OpenWatch::with_mask(path, libc::IN_OPEN | libc::IN_ACCESS)
    }

    /// Watches for reads only.
    pub fn reads(path: &Path) -> OpenWatch {
        OpenWatch::with_mask(path, libc::IN_ACCESS)
    }

    fn with_mask(path: &Path, mask: u32) -> OpenWatch {
        // SAFETY: inotify_init1 takes flags only.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        OpenWatch { fd }
    }

    /// Whether the file was opened or read (as watched) since the watch began.
    pub fn touched(&self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a buffer of its own length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    }
}

/// A pseudo-terminal, to be nflame's controlling terminal (as when an
/// operator runs it from a shell). The master stays open, with no input.
#[derive(Debug)]
pub struct Pty {
    _master: OwnedFd,
    slave: std::fs::File,
}

impl Pty {
    pub fn open() -> Pty {
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on the fd it
        // returns, with a buffer of the length given.
        let (master, name) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(fd >= 0, "posix_openpt");
            let master = OwnedFd::from_raw_fd(fd);
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            let mut buf = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()), 0);
            let name = std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned();
            (master, name)
        };
        use std::os::unix::fs::OpenOptionsExt;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .unwrap();
        Pty {
            _master: master,
            slave,
        }
    }

    fn slave_fd(&self) -> RawFd {
        self.slave.as_raw_fd()
    }
}

// ---------------------------------------------------------------------------
// Running nflame.

/// `nflame` with standard input closed.
pub fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null());
    c
}

/// A running nflame: address space limited to [`ADDRESS_SPACE`], optionally
/// with `pty` as its controlling terminal.
#[derive(Debug)]
pub struct Running {
    pid: u32,
    start: Instant,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    what: String,
}

/// What a finished nflame left.
#[derive(Debug)]
pub struct Finished {
    /// Exit status if it exited, `None` if a signal killed it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub max_rss_kib: i64,
    pub elapsed: Duration,
}

pub fn spawn(mut cmd: Command, pty: Option<&Pty>) -> Running {
    let ctty = pty.map(Pty::slave_fd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setrlimit, setsid, ioctl)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = ctty {
                if libc::setsid() < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    // The child is reaped with wait4 below, for its resource usage.
    let pid = child.id();
    drop(child);
    Running {
        pid,
        start: Instant::now(),
        stdout,
        stderr,
        what,
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for nflame to end; past `limit` it is killed and the test
    /// fails, showing what it printed.
    pub fn wait(self, limit: Duration) -> Finished {
        let mut status = 0;
        // SAFETY: rusage is plain data.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: wait4 on our own child with valid out pointers.
            let rc = unsafe {
                libc::wait4(
                    self.pid as libc::pid_t,
                    &mut status,
                    libc::WNOHANG,
                    &mut usage,
                )
            };
            if rc == self.pid as libc::pid_t {
                break;
            }
            assert!(rc >= 0, "wait4: {}", std::io::Error::last_os_error());
            if self.start.elapsed() > limit {
                signal(self.pid, libc::SIGKILL);
                // SAFETY: as above, blocking.
                unsafe { libc::wait4(self.pid as libc::pid_t, &mut status, 0, &mut usage) };
                let err = self.stderr.join().unwrap_or_default();
                panic!(
                    "nflame did not finish within {limit:?} (killed): {}\nstderr:\n{}",
                    self.what,
                    String::from_utf8_lossy(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let elapsed = self.start.elapsed();
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&self.stderr.join().unwrap_or_default()).into_owned();
        let exited = libc::WIFEXITED(status);
        Finished {
            code: exited.then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            stdout,
            stderr,
            max_rss_kib: usage.ru_maxrss,
            elapsed,
        }
    }
}

/// Runs `nflame ARGS` to the end (see [`Running::wait`]).
pub fn run(args: &[&str], outputs: &Outputs) -> Finished {
    let mut cmd = nflame();
    cmd.args(args).args(outputs.args());
    spawn(cmd, None).wait(DEADLINE)
}

impl Finished {
    /// It ended by itself (no signal: not aborted, not killed for memory),
    /// did not panic, and stayed under [`MAX_RSS_KIB`].
    pub fn assert_survived(&self) {
        assert!(
            self.signal.is_none(),
            "nflame was killed by signal {:?} (6: abort, e.g. a failed allocation; 9: killed)\nstderr:\n{}",
            self.signal,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(
            self.max_rss_kib <= MAX_RSS_KIB,
            "nflame's peak RSS was {} MiB (limit {} MiB)\nstderr:\n{}",
            self.max_rss_kib / 1024,
            MAX_RSS_KIB / 1024,
            self.stderr
        );
    }

    /// [`Self::assert_survived`], and it exited with status 0.
    pub fn assert_ok(&self) {
        self.assert_survived();
        assert_eq!(self.code, Some(0), "nflame failed:\n{}", self.stderr);
    }
}

/// The folded and SVG outputs of one run, in a directory of their own.
#[derive(Debug)]
pub struct Outputs {
    dir: tempfile::TempDir,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn folded_path(&self) -> PathBuf {
        self.dir.path().join("out.folded")
    }

    pub fn svg_path(&self) -> PathBuf {
        self.dir.path().join("out.svg")
    }

    /// `-o out.folded -o out.svg`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-o".into(),
            self.folded_path().display().to_string(),
            "-o".into(),
            self.svg_path().display().to_string(),
        ]
    }

    pub fn folded(&self) -> String {
        std::fs::read_to_string(self.folded_path()).expect("the folded output was written")
    }

    pub fn svg(&self) -> String {
        std::fs::read_to_string(self.svg_path()).expect("the SVG was written")
    }

    /// Neither output, nor what nflame printed, contains `secret`.
    pub fn assert_absent(&self, run: &Finished, secret: &str) {
        for (what, text) in [
            ("the folded output", self.folded()),
            ("the SVG", self.svg()),
            ("standard error", run.stderr.clone()),
            (
                "standard output",
                String::from_utf8_lossy(&run.stdout).into_owned(),
            ),
        ] {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("{what} holds {secret}: {}", &line[..line.len().min(300)]);
            }
        }
    }

    /// Both outputs were written, the folded one has samples, and the SVG
    /// is well-formed XML.
    pub fn assert_complete(&self) {
        let folded = self.folded();
        assert!(
            folded.lines().any(|l| l.rsplit_once(' ').is_some()),
            "no samples:\n{folded}"
        );
        parse_svg(&self.svg());
    }
}

/// Parses an SVG with a real XML parser, failing the test if it is not
/// well-formed.
pub fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(svg, opts)
        .unwrap_or_else(|e| panic!("the SVG is not well-formed XML: {e}"))
}

/// nflame's summary says what it skipped: a line starting with `skipped`
/// that names every one of `fragments`.
pub fn assert_skipped(stderr: &str, fragments: &[&str]) {
    let found = stderr
        .lines()
        .any(|l| l.trim_start().starts_with("skipped") && fragments.iter().all(|f| l.contains(f)));
    assert!(
        found,
        "no summary line `skipped …` naming {fragments:?}:\n{stderr}"
    );
}

/// Waits until `nflame record` (pid `pid`) samples: it holds perf event
/// descriptors and its main thread waits in `poll(2)`, which it does only
/// in its drain loop, after every counter is enabled.
pub fn wait_attached(pid: u32) {
    let start = Instant::now();
    loop {
        let has_counters = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|dir| {
            dir.flatten().any(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().contains("perf_event"))
            })
        });
        let polling =
            std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("poll"));
        if has_counters && polling {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nflame (pid {pid}) did not start sampling"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
