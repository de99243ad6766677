//! DWARF unwinding of copied user stacks, during the recording.
//!
//! With [`crate::CallGraph::Dwarf`] or `Auto`, every sample carries the user
//! registers (ip, sp, bp) and a copy of the user stack from `sp` up. This
//! module turns them into return addresses with `framehop`, using each
//! mapped binary's call-frame information (`.eh_frame` with its
//! `.eh_frame_hdr` index, else `.debug_frame`), and frame pointers for code
//! without any (JIT code, stripped Go). It runs in the recorder's drain loop,
//! so the stack bytes are dropped as soon as a sample is unwound: a sample
//! costs the same few dozen bytes as a frame-pointer one, however much stack
//! was copied, and the binaries are read while the process (and its mount
//! namespace) still exists.
//!
//! It owns: reading unwind sections (once per file, keyed by device and
//! inode, shared by every process mapping that file; the vDSO from our own
//! image, which is the same on one kernel), one `framehop` unwinder per
//! process (rebuilt when its mappings change), and deciding whether an
//! unwound stack is complete or was cut short.
//!
//! The section cache is bounded: an entry counts the live processes whose
//! unwinder uses it; once none does (they exited) it is idle, and idle
//! entries beyond [`IDLE_BYTES`] or [`IDLE_FILES`] are dropped, oldest
//! first, so a system-wide recording keeps the tables of the binaries that
//! run plus a bounded set of recent ones. A device and inode name a file
//! only while something keeps that inode: once a file is deleted its inode
//! can be reused, so every process checks an entry before its first use
//! (the file opened as that process sees it; device, inode, size, mtime and
//! ctime as when the entry was read) and an entry that no longer matches is
//! read again. A process that cannot open the file any more (it exited)
//! uses an entry only while another live process maps it: that mapping
//! keeps the inode from being reused. It does not decide which
//! samples or processes are recorded ([`crate::tracker`] does).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{Error as UnwindError, ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use nflame_procfs::elf;
use nflame_procfs::files::{self, FileError, TargetFile};
use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::UserRegs;
use nflame_recording::Mapping;

/// Section bytes shared between the modules of every process mapping a file.
type Bytes = Arc<[u8]>;

/// Most frames we follow in one stack (a runaway loop guard).
const MAX_FRAMES: usize = 1024;

/// Section bytes kept for files no live process maps.
pub(crate) const IDLE_BYTES: usize = 16 << 20;
/// Files kept that no live process maps.
pub(crate) const IDLE_FILES: usize = 1024;

/// How an unwind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The unwinder found the outermost frame (`_start`, a thread start, a
    /// Go `goexit`: return address undefined or frame pointer 0).
    Complete,
    /// Cut short: the copied stack bytes ran out, or a return address lay
    /// outside every executable mapping (that address was dropped).
    Truncated,
    /// It stopped for another reason (no caller could be recovered); the
    /// stack may or may not be complete, as with a frame-pointer walk.
    Ended,
}

/// One sample's user stack to unwind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackSample<'a> {
    pub(crate) pid: u32,
    /// Changes whenever `mappings` do.
    pub(crate) generation: u64,
    /// The process's executable mappings, sorted.
    pub(crate) mappings: &'a [Mapping],
    pub(crate) regs: UserRegs,
    /// The bytes copied from `regs.sp` up.
    pub(crate) stack: &'a [u8],
    /// How many bytes were asked for.
    pub(crate) requested: usize,
    /// Code in mapped files to walk past like JIT code (see
    /// `Walk::past_jit`): a LuaJIT interpreter, whose helpers run with its
    /// frame's stack pointer moved, so its call-frame information does not
    /// hold everywhere in it.
    pub(crate) jit_like: &'a [Range<u64>],
}

/// Something that unwinds user stacks; the tracker holds one.
pub(crate) trait StackUnwinder {
    /// Unwinds `sample`: writes the instruction pointer, then return
    /// addresses, into `out` (cleared first).
    fn unwind(&mut self, sample: StackSample<'_>, out: &mut Vec<u64>) -> Outcome;

    /// Drops what is kept for `pid` (it exited).
    fn forget(&mut self, pid: u32);

    /// What was refused so far (a target's file or section not read), a
    /// line each; taken once, at the end of the recording.
    fn take_skipped(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The unwind sections of one binary, as read from its file.
#[derive(Debug, Default)]
struct FileSections {
    eh_frame: Option<(Range<u64>, Bytes)>,
    eh_frame_hdr: Option<(Range<u64>, Bytes)>,
    debug_frame: Option<Bytes>,
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    /// Executable PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl FileSections {
    /// Reads the unwind sections of a target's ELF file, each within its
    /// cap ([`nflame_procfs::elf::cap_of`]); a section over its cap (or
    /// otherwise refused) is left out and said in `skipped`.
    fn read(file: &TargetFile, shown: &str, skipped: &mut Vec<String>) -> Option<FileSections> {
        let summary = elf::summarize(file).ok()?;
        if !summary.x86_64 {
            return None;
        }
        let mut section = |name: &str| {
            let s = summary.section(name)?;
            match elf::read_section(file, s) {
                Ok(data) => Some((s.addr..s.addr.saturating_add(s.size), Bytes::from(data))),
                Err(r) => {
                    let line = format!("{shown}: {r}");
                    if !skipped.contains(&line) {
                        skipped.push(line);
                    }
                    None
                }
            }
        };
        let eh_frame = section(".eh_frame");
        // The index is of no use without the table.
        let eh_frame_hdr = eh_frame.as_ref().and_then(|_| section(".eh_frame_hdr"));
        let debug_frame = section(".debug_frame").map(|(_, d)| d);
        let range = |name: &str| {
            summary
                .section(name)
                .map(|s| s.addr..s.addr.saturating_add(s.size))
        };
        let segments = summary
            .segments
            .iter()
            .filter(|s| s.executable)
            .map(|s| (s.offset, s.size, s.addr))
            .collect();
        Some(FileSections {
            eh_frame,
            eh_frame_hdr,
            debug_frame,
            text: range(".text"),
            got: range(".got"),
            segments,
        })
    }

    fn from_bytes(data: &[u8]) -> Option<FileSections> {
        let elf = object::File::parse(data).ok()?;
        if elf.architecture() != object::Architecture::X86_64 {
            return None;
        }
        let section = |name: &str| {
            let s = elf.section_by_name(name)?;
            let data: Bytes = Arc::from(s.data().ok()?);
            Some((s.address()..s.address() + s.size(), data))
        };
        let range = |name: &str| {
            elf.section_by_name(name)
                .map(|s| s.address()..s.address() + s.size())
        };
        let segments = elf
            .segments()
            .filter(|s| match s.flags() {
                SegmentFlags::Elf { p_flags, .. } => p_flags.contains(object::elf::PF_X),
                _ => true,
            })
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        Some(FileSections {
            eh_frame: section(".eh_frame"),
            eh_frame_hdr: section(".eh_frame_hdr"),
            debug_frame: section(".debug_frame").map(|(_, d)| d),
            text: range(".text"),
            got: range(".got"),
            segments,
        })
    }

    /// Bytes of section data held.
    fn bytes(&self) -> usize {
        let len = |d: &Option<(Range<u64>, Bytes)>| d.as_ref().map_or(0, |(_, b)| b.len());
        len(&self.eh_frame)
            + len(&self.eh_frame_hdr)
            + self.debug_frame.as_ref().map_or(0, |d| d.len())
    }

    /// The load bias (actual minus stated address) of a mapping of this file
    /// at `start` with file offset `offset`.
    fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let &(p_offset, _, p_vaddr) = self.segments.iter().find(|&&(o, size, _)| {
            // Mappings start at page boundaries, segments need not.
            (o & !0xfff) <= offset && offset < o + size.max(1)
        })?;
        // start corresponds to stated address p_vaddr + (offset - p_offset).
        Some(
            start
                .wrapping_sub(p_vaddr)
                .wrapping_add(p_offset)
                .wrapping_sub(offset),
        )
    }

    fn module(&self, name: String, avma: Range<u64>, bias: u64) -> Module<Bytes> {
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, d)| Arc::clone(d)),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, d)| Arc::clone(d)),
            debug_frame: self.debug_frame.clone(),
            ..ExplicitModuleSectionInfo::default()
        };
        Module::new(name, avma, bias, info)
    }
}

/// Which file a mapping shows, for the section cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKey {
    Inode(u64, u64),
    Path(PathBuf),
    Vdso,
}

/// What `fstat` said of a file when its sections were read: a device and
/// inode reused by another file after a deletion give another identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(file: &TargetFile) -> Option<Identity> {
        use std::os::unix::fs::MetadataExt;
        let m = file.file().metadata().ok()?;
        Some(Identity {
            dev: file.dev,
            ino: file.ino,
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// A cache entry: a file's sections (`None`: not an x86-64 ELF file).
struct CachedFile {
    sections: Option<Arc<FileSections>>,
    /// `None` for the vDSO (our own image).
    identity: Option<Identity>,
    /// Live processes whose unwinder uses it.
    users: u32,
    /// When it last became idle (no users), in [`DwarfUnwinder::tick`]s.
    idle_since: u64,
    /// Section bytes held.
    bytes: usize,
}

/// One process's unwinder, valid for one generation of its mappings.
struct ProcUnwinder {
    generation: u64,
    unwinder: UnwinderX86_64<Bytes>,
    /// Cache entries its modules use (counted in their `users`).
    files: Vec<FileKey>,
    /// Entries this process has checked against its own files.
    checked: FxHashSet<FileKey>,
}

/// The real unwinder: framehop with sections read from the mapped files.
pub(crate) struct DwarfUnwinder {
    files: FxHashMap<FileKey, CachedFile>,
    procs: FxHashMap<u32, ProcUnwinder>,
    cache: CacheX86_64,
    skipped: Vec<String>,
    /// Bytes and entries of idle cache entries.
    idle_bytes: usize,
    idle_files: usize,
    /// The most idle bytes and entries kept ([`IDLE_BYTES`], [`IDLE_FILES`]).
    idle_limits: (usize, usize),
    tick: u64,
    /// Files whose sections were read.
    reads: u64,
}

impl std::fmt::Debug for DwarfUnwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DwarfUnwinder")
            .field("files", &self.files.len())
            .field("procs", &self.procs.len())
            .finish()
    }
}

impl Default for DwarfUnwinder {
    fn default() -> Self {
        DwarfUnwinder {
            files: FxHashMap::default(),
            procs: FxHashMap::default(),
            cache: CacheX86_64::new(),
            skipped: Vec::new(),
            idle_bytes: 0,
            idle_files: 0,
            idle_limits: (IDLE_BYTES, IDLE_FILES),
            tick: 0,
            reads: 0,
        }
    }
}

impl DwarfUnwinder {
    /// The sections of the file `m` maps in `pid`, from the cache when the
    /// entry is still that file (checked once per process in `checked`).
    fn sections(
        &mut self,
        pid: u32,
        m: &Mapping,
        checked: &mut FxHashSet<FileKey>,
    ) -> Option<(FileKey, Option<Arc<FileSections>>)> {
        let key = if m.path == Path::new("[vdso]") {
            FileKey::Vdso
        } else if nflame_procfs::maps::is_pseudo(&m.path) {
            return None;
        } else {
            match (m.dev, m.inode) {
                (Some(dev), Some(ino)) => FileKey::Inode(dev, ino),
                _ => FileKey::Path(m.path.clone()),
            }
        };
        if let Some(entry) = self.files.get(&key) {
            if key == FileKey::Vdso || checked.contains(&key) {
                return Some((key, entry.sections.clone()));
            }
        }
        if key == FileKey::Vdso {
            let sections = nflame_procfs::files::own_vdso()
                .and_then(|v| FileSections::from_bytes(&v.image))
                .map(Arc::new);
            self.insert(key.clone(), sections.clone(), None);
            return Some((key, sections));
        }
        // Opened as the process sees it (its map_files entry, its root),
        // never blocking. Nothing is cached when the file cannot be opened:
        // another process (another mount namespace) may reach it.
        let shown = files::shown(pid, nflame_procfs::maps::clean_path(&m.path));
        let file = match files::open_mapped(pid, true, m) {
            Ok(file) => file,
            Err(FileError::Refused(r)) => {
                let line = format!("{shown}: {r}");
                if !self.skipped.contains(&line) {
                    self.skipped.push(line);
                }
                return None;
            }
            // Gone already (a short program whose samples are read after it
            // exited): an entry another live process uses is that file
            // still, its mapping keeps the inode from being reused.
            Err(_) => {
                let entry = self.files.get(&key).filter(|e| e.users > 0)?;
                return Some((key, entry.sections.clone()));
            }
        };
        let identity = Identity::of(&file);
        checked.insert(key.clone());
        if let Some(entry) = self.files.get(&key) {
            if identity.is_some() && entry.identity == identity {
                return Some((key, entry.sections.clone()));
            }
        }
        // New, or another file under a reused inode: read it.
        let sections = FileSections::read(&file, &shown, &mut self.skipped).map(Arc::new);
        self.reads += 1;
        self.insert(key.clone(), sections.clone(), identity);
        Some((key, sections))
    }

    /// Caches (or replaces) the entry of `key`; the processes using it
    /// stay counted.
    fn insert(
        &mut self,
        key: FileKey,
        sections: Option<Arc<FileSections>>,
        identity: Option<Identity>,
    ) {
        let bytes = sections.as_deref().map_or(0, FileSections::bytes);
        let users = match self.files.remove(&key) {
            Some(old) => {
                if old.users == 0 {
                    self.idle_bytes -= old.bytes;
                    self.idle_files -= 1;
                }
                old.users
            }
            None => 0,
        };
        if users == 0 {
            self.idle_bytes += bytes;
            self.idle_files += 1;
        }
        self.tick += 1;
        self.files.insert(
            key,
            CachedFile {
                sections,
                identity,
                users,
                idle_since: self.tick,
                bytes,
            },
        );
        self.evict();
    }

    /// Counts one more process using each of `keys`.
    fn acquire(&mut self, keys: &[FileKey]) {
        for k in keys {
            if let Some(e) = self.files.get_mut(k) {
                if e.users == 0 {
                    self.idle_bytes -= e.bytes;
                    self.idle_files -= 1;
                }
                e.users += 1;
            }
        }
    }

    /// Counts one process fewer using each of `keys`; then drops idle
    /// entries beyond the budget.
    fn release(&mut self, keys: &[FileKey]) {
        for k in keys {
            if let Some(e) = self.files.get_mut(k) {
                if e.users == 0 {
                    continue;
                }
                e.users -= 1;
                if e.users == 0 {
                    self.tick += 1;
                    e.idle_since = self.tick;
                    self.idle_bytes += e.bytes;
                    self.idle_files += 1;
                }
            }
        }
        self.evict();
    }

    /// Drops the oldest idle entries while over [`IDLE_BYTES`] or
    /// [`IDLE_FILES`].
    fn evict(&mut self) {
        while self.idle_bytes > self.idle_limits.0 || self.idle_files > self.idle_limits.1 {
            let Some(oldest) = self
                .files
                .iter()
                .filter(|(_, e)| e.users == 0)
                .min_by_key(|(_, e)| e.idle_since)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.files.remove(&oldest) {
                self.idle_bytes -= e.bytes;
                self.idle_files -= 1;
            }
        }
    }

    fn build(
        &mut self,
        pid: u32,
        generation: u64,
        mappings: &[Mapping],
        mut checked: FxHashSet<FileKey>,
    ) -> ProcUnwinder {
        let mut unwinder = UnwinderX86_64::new();
        let mut used: Vec<FileKey> = Vec::new();
        for m in mappings {
            let Some((key, sections)) = self.sections(pid, m, &mut checked) else {
                continue;
            };
            if !used.contains(&key) {
                used.push(key);
            }
            let Some(sections) = sections else {
                continue;
            };
            let Some(bias) = sections.bias(m.start, m.offset) else {
                continue;
            };
            let name = m.path.to_string_lossy().into_owned();
            unwinder.add_module(sections.module(name, m.start..m.end, bias));
        }
        self.acquire(&used);
        ProcUnwinder {
            generation,
            unwinder,
            files: used,
            checked,
        }
    }

    /// Section bytes cached, and entries (for tests).
    #[cfg(test)]
    fn cached(&self) -> (usize, usize) {
        let bytes = self.files.values().map(|e| e.bytes).sum();
        (bytes, self.files.len())
    }
}

/// The mapping of the sorted, non-overlapping `mappings` holding `addr`.
fn mapping_at(mappings: &[Mapping], addr: u64) -> Option<&Mapping> {
    let i = mappings.partition_point(|m| m.start <= addr);
    let m = &mappings[i.checked_sub(1)?];
    (addr < m.end).then_some(m)
}

/// How far above a JIT frame's stack pointer the frame that entered the JIT
/// code is looked for. LuaJIT's traces run on the interpreter's C frame,
/// lowered by at most a spill area; the interpreter's frame and its saved
/// registers follow.
const JIT_SCAN_BYTES: u64 = 2048;
/// Candidate callers tried per JIT frame, and JIT frames recovered per stack.
const JIT_CANDIDATES: usize = 16;
const JIT_DEPTH: u32 = 4;

/// One stack walk: framehop stepped frame by frame, so that a frame in JIT
/// code (anonymous executable memory, no unwind information) can be
/// recovered from when framehop's frame-pointer guess leads nowhere.
struct Walk<'a, F> {
    unwinder: &'a UnwinderX86_64<Bytes>,
    cache: &'a mut CacheX86_64,
    read_stack: F,
    mappings: &'a [Mapping],
    /// One past the last copied stack byte, and whether the copy was full.
    copied_end: u64,
    copy_full: bool,
    /// Candidate walks left for this sample.
    budget: usize,
    /// See [`StackSample::jit_like`].
    jit_like: &'a [Range<u64>],
}

impl<F: FnMut(u64) -> Result<u64, ()>> Walk<'_, F> {
    fn check(&self) -> bool {
        !self.mappings.is_empty()
    }

    /// Whether `addr` is in a mapped file whose code has unwind information
    /// (a candidate return address out of JIT code).
    fn is_file_code(&self, addr: u64) -> bool {
        mapping_at(self.mappings, addr).is_some_and(|m| {
            let p = m.path.as_os_str().as_encoded_bytes();
            p.first() == Some(&b'/') && !p.starts_with(b"//anon")
        })
    }

    /// Walks from `addr` with `regs`, appending addresses to `out`.
    fn walk(
        &mut self,
        mut addr: FrameAddress,
        mut regs: UnwindRegsX86_64,
        out: &mut Vec<u64>,
        depth: u32,
    ) -> Outcome {
        loop {
            let a = match addr {
                FrameAddress::InstructionPointer(a) => a,
                FrameAddress::ReturnAddress(a) => a.get(),
            };
            // One lookup per frame: in known code at all, and in JIT code?
            let jit = if self.check() {
                let Some(m) = mapping_at(self.mappings, a) else {
                    // Garbage: the walk left known code. What follows would
                    // be more garbage.
                    return if out.is_empty() {
                        Outcome::Ended
                    } else {
                        Outcome::Truncated
                    };
                };
                nflame_procfs::maps::is_anonymous(&m.path)
                    || self.jit_like.iter().any(|r| r.contains(&a))
            } else {
                false
            };
            out.push(a);
            if out.len() >= MAX_FRAMES {
                return Outcome::Truncated;
            }
            if jit {
                return self.past_jit(addr, regs, out, depth);
            }
            match self.step(addr, &mut regs) {
                Ok(next) => addr = next,
                // The end of the stack right at the sampled instruction is
                // far more often a guessed rule (code without unwind
                // information, such as Go's) reading a zero than a sample
                // in a thread's first instruction: not a proof.
                Err(Outcome::Complete) if out.len() == 1 => return Outcome::Ended,
                Err(outcome) => return outcome,
            }
        }
    }

    /// Unwinds one frame: the caller's address, or how the walk ends.
    fn step(
        &mut self,
        addr: FrameAddress,
        regs: &mut UnwindRegsX86_64,
    ) -> Result<FrameAddress, Outcome> {
        match self
            .unwinder
            .unwind_frame(addr, regs, self.cache, &mut self.read_stack)
        {
            Ok(Some(ra)) => FrameAddress::from_return_address(ra).ok_or(Outcome::Ended),
            Ok(None) => Err(Outcome::Complete),
            Err(UnwindError::CouldNotReadStack(at)) if at >= self.copied_end && self.copy_full => {
                Err(Outcome::Truncated)
            }
            Err(_) => Err(Outcome::Ended),
        }
    }

    /// Continues a walk from a frame in JIT code (already in `out`).
    ///
    /// First as framehop would, with frame pointers (JIT compilers that keep
    /// them, such as V8 or the JVM, unwind completely that way). If that does
    /// not reach the outermost frame, the stack above the JIT frame is
    /// scanned for a return address into a mapped file from which the walk
    /// does complete: the frame that entered the JIT code. LuaJIT enters its
    /// compiled traces with a jump from the interpreter and they keep its C
    /// frame, so the caller of the interpreter (`lua_pcall`, `lua_resume`)
    /// is found there. The lowest candidate from which the walk completes is
    /// taken. A stale return address left in a slot the JIT code reserved
    /// but never wrote can pass that test and put a wrong frame under the
    /// JIT frame; on nginx with LuaJIT traces the frame found is the Lua
    /// entry (`ngx_http_lua_run_thread`) in practically every sample.
    fn past_jit(
        &mut self,
        addr: FrameAddress,
        regs: UnwindRegsX86_64,
        out: &mut Vec<u64>,
        depth: u32,
    ) -> Outcome {
        let mark = out.len();
        let mut fp_regs = regs;
        let by_fp = match self.step(addr, &mut fp_regs) {
            Ok(next) => self.walk(next, fp_regs, out, depth),
            // A frame pointer of 0 is not a proof of the outermost frame
            // here: JIT code uses rbp as it likes.
            Err(Outcome::Complete) => Outcome::Ended,
            Err(outcome) => outcome,
        };
        if by_fp == Outcome::Complete || depth >= JIT_DEPTH {
            return by_fp;
        }
        let guessed = out.split_off(mark);
        let sp = regs.sp();
        let end = sp.saturating_add(JIT_SCAN_BYTES).min(self.copied_end);
        let mut tried = 0;
        let mut at = sp;
        while at.saturating_add(8) <= end && tried < JIT_CANDIDATES && self.budget > 0 {
            let slot = at;
            let Some(next_at) = at.checked_add(8) else {
                break;
            };
            at = next_at;
            let Ok(word) = (self.read_stack)(slot) else {
                break;
            };
            if !self.is_file_code(word) {
                continue;
            }
            let Some(next) = FrameAddress::from_return_address(word) else {
                continue;
            };
            tried += 1;
            self.budget -= 1;
            let caller = UnwindRegsX86_64::new(word, next_at, regs.bp());
            if self.walk(next, caller, out, depth + 1) == Outcome::Complete {
                return Outcome::Complete;
            }
            out.truncate(mark);
        }
        out.extend(guessed);
        by_fp
    }
}

impl StackUnwinder for DwarfUnwinder {
    fn unwind(&mut self, sample: StackSample<'_>, out: &mut Vec<u64>) -> Outcome {
        let StackSample {
            pid,
            generation,
            mappings,
            regs,
            stack,
            requested,
            jit_like,
        } = sample;
        out.clear();
        if self
            .procs
            .get(&pid)
            .is_none_or(|p| p.generation != generation)
        {
            let old = self.procs.remove(&pid);
            let checked = old.as_ref().map(|o| o.checked.clone()).unwrap_or_default();
            let built = self.build(pid, generation, mappings, checked);
            self.procs.insert(pid, built);
            // After the new unwinder took the files it shares with the old.
            if let Some(old) = old {
                self.release(&old.files);
            }
        }
        let Some(proc) = self.procs.get(&pid) else {
            return Outcome::Ended;
        };
        let sp = regs.sp;
        let read_stack = |addr: u64| -> Result<u64, ()> {
            let off = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
            let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let mut walk = Walk {
            unwinder: &proc.unwinder,
            cache: &mut self.cache,
            read_stack,
            mappings,
            copied_end: sp.saturating_add(stack.len() as u64),
            copy_full: stack.len() >= requested,
            budget: JIT_CANDIDATES * 2,
            jit_like,
        };
        walk.walk(
            FrameAddress::InstructionPointer(regs.ip),
            UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
            out,
            0,
        )
    }

    fn forget(&mut self, pid: u32) {
        if let Some(old) = self.procs.remove(&pid) {
            self.release(&old.files);
        }
    }

    fn take_skipped(&mut self) -> Vec<String> {
        std::mem::take(&mut self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn bias_of_pie_and_fixed_binaries() {
        let pie = FileSections {
            segments: vec![(0x1000, 0x5000, 0x1000)],
            ..FileSections::default()
        };
        assert_eq!(pie.bias(0x5555_0000_1000, 0x1000), Some(0x5555_0000_0000));
        let fixed = FileSections {
            segments: vec![(0x2000, 0xc638d, 0x402000)],
            ..FileSections::default()
        };
        assert_eq!(fixed.bias(0x402000, 0x2000), Some(0));
        // A segment starting mid-page: the mapping starts at the page.
        let odd = FileSections {
            segments: vec![(0x1a30, 0x100, 0x2a30)],
            ..FileSections::default()
        };
        assert_eq!(odd.bias(0x7000_1000, 0x1000), Some(0x7000_1000 - 0x2000));
        assert_eq!(odd.bias(0x7000_1000, 0x9000), None);
    }

    /// Fuzzing found the scan above a JIT frame overflowing with a stack
    /// pointer at the top of the address space.
    #[test]
    fn jit_scan_at_the_top_of_the_address_space_does_not_overflow() {
        let jit = Mapping {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            path: PathBuf::from("//anon"),
            dev: None,
            inode: None,
        };
        let mut u = DwarfUnwinder::default();
        let mut out = Vec::new();
        u.unwind(
            StackSample {
                pid: 1,
                generation: 1,
                mappings: &[jit],
                regs: UserRegs {
                    ip: 0x1010,
                    sp: u64::MAX - 15,
                    bp: 0,
                },
                stack: &[0; 16],
                requested: 16,
                jit_like: &[],
            },
            &mut out,
        );
        assert_eq!(out.first(), Some(&0x1010));
    }

    /// A mapping of all of `path` at 0x10000, as a process would show it.
    fn mapping_of(path: &Path) -> Mapping {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path).unwrap();
        Mapping {
            start: 0x10000,
            end: 0x10000 + md.size().next_multiple_of(4096),
            offset: 0,
            path: path.to_path_buf(),
            dev: Some(md.dev()),
            inode: Some(md.ino()),
        }
    }

    /// Builds the unwinder of `pid` (a pid that does not exist: its files
    /// are opened by path, as for a process that exited) mapping `m`.
    fn touch(u: &mut DwarfUnwinder, pid: u32, m: &Mapping) {
        let sample = StackSample {
            pid,
            generation: 1,
            mappings: std::slice::from_ref(m),
            regs: UserRegs {
                ip: m.start + 0x10,
                sp: 0x1000,
                bp: 0,
            },
            stack: &[],
            requested: 0,
            jit_like: &[],
        };
        u.unwind(sample, &mut Vec::new());
    }

    /// Pids far above `pid_max`'s default: no process has them.
    const NO_PID: u32 = 4_000_000;

    /// Distinct copies (distinct inodes) of a small system binary.
    fn copies(dir: &Path, n: usize) -> Vec<Mapping> {
        let exe = ["/usr/bin/true", "/bin/true", "/usr/bin/ls"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("a system binary to copy");
        (0..n)
            .map(|i| {
                let p = dir.join(format!("prog{i}"));
                std::fs::copy(exe, &p).unwrap();
                mapping_of(&p)
            })
            .collect()
    }

    #[test]
    fn sections_of_files_no_live_process_maps_are_dropped_beyond_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let maps = copies(dir.path(), 12);
        let mut u = DwarfUnwinder::default();
        // One process stays alive through all this.
        touch(&mut u, NO_PID, &maps[0]);
        let (one, _) = u.cached();
        assert!(one > 0, "no unwind sections read from {:?}", maps[0].path);
        u.idle_limits = (3 * one, 100);
        for (i, m) in maps.iter().enumerate().skip(1) {
            let pid = NO_PID + i as u32;
            touch(&mut u, pid, m);
            u.forget(pid);
            let (bytes, files) = u.cached();
            assert!(bytes <= 4 * one, "{bytes} bytes cached after {i} programs");
            assert!(files <= 4, "{files} files cached after {i} programs");
        }
        // The live process's file is still there: no new read for it.
        let reads = u.reads;
        touch(&mut u, NO_PID + 100, &maps[0]);
        assert_eq!(u.reads, reads);
        // So are the most recent ones; the oldest idle ones are gone.
        touch(&mut u, NO_PID + 101, &maps[11]);
        assert_eq!(u.reads, reads);
        touch(&mut u, NO_PID + 102, &maps[1]);
        assert_eq!(u.reads, reads + 1);
        // A cap on entries too.
        u.idle_limits = (usize::MAX, 2);
        for p in [NO_PID + 100, NO_PID + 101, NO_PID + 102] {
            u.forget(p);
        }
        assert!(u.cached().1 <= 3);
    }

    /// A cached entry is used again only for the same file: same device
    /// and inode, size, mtime and ctime. Here the inode stays and the
    /// content changes (what a reused inode looks like to the cache).
    #[test]
    fn a_changed_file_under_a_cached_inode_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let maps = copies(dir.path(), 1);
        let m = &maps[0];
        let mut u = DwarfUnwinder::default();
        touch(&mut u, NO_PID, m);
        u.forget(NO_PID);
        touch(&mut u, NO_PID + 1, m);
        assert_eq!(u.reads, 1, "an unchanged file is read once");
        u.forget(NO_PID + 1);
        // Rewritten in place: same inode, another size and ctime.
        let mut data = std::fs::read(&m.path).unwrap();
        data.extend_from_slice(&[0; 4096]);
        std::fs::write(&m.path, &data).unwrap();
        let again = mapping_of(&m.path);
        assert_eq!((again.dev, again.inode), (m.dev, m.inode));
        touch(&mut u, NO_PID + 2, &again);
        assert_eq!(u.reads, 2, "a changed file is read again");
        assert_eq!(u.cached().1, 1);
    }

    #[test]
    fn unwinds_own_stack_through_libc() {
        // Our own stack, copied like the kernel would, unwound with our own
        // binaries' .eh_frame: it must reach the thread's start.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mappings = nflame_procfs::maps::parse_maps(&maps);
        let (regs, stack) = capture();
        let mut u = DwarfUnwinder::default();
        let mut out = Vec::new();
        let sample = StackSample {
            pid: std::process::id(),
            generation: 1,
            mappings: &mappings,
            regs,
            stack: &stack,
            requested: stack.len(),
            jit_like: &[],
        };
        let outcome = u.unwind(sample, &mut out);
        assert!(out.len() > 5, "{outcome:?} {out:x?}");
        assert!(out.iter().all(|&a| mapping_at(&mappings, a).is_some()));
        assert_eq!(outcome, Outcome::Complete, "{out:x?}");
    }

    /// Registers and up to 256 KiB of stack of the current thread, taken in
    /// a non-inlined function.
    #[inline(never)]
    fn capture() -> (UserRegs, Vec<u8>) {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads rip, rsp and rbp into registers; no memory is touched.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
            );
        }
        // Copy the stack from sp up to the end of its mapping.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let end = maps
            .lines()
            .filter_map(|l| {
                let (r, _) = l.split_once(' ')?;
                let (a, b) = r.split_once('-')?;
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            })
            .find(|&(a, b)| a <= sp && sp < b)
            .unwrap()
            .1;
        let len = (end - sp).min(256 << 10) as usize;
        let mut stack = vec![0u8; len];
        std::fs::File::open("/proc/self/mem")
            .unwrap()
            .read_exact_at(&mut stack, sp)
            .unwrap();
        (UserRegs { ip, sp, bp }, stack)
    }
}
