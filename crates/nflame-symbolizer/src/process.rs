//! User-space symbolization of one process from its recorded mappings.
//!
//! An address is looked up as: recorded executable [`Mapping`] → file offset
//! (`addr - start + offset`) → blazesym's ELF source for that file
//! (`Input::FileOffset`). The file is opened once, as the process sees it
//! ([`nflame_procfs::files::open_mapped`]: its `map_files` entry, its path
//! inside its root, its path here after it exited, always the mapped
//! inode), so processes that exited before symbolization are named as well
//! as live ones, and no path a target controls leads outside its root.
//! Addresses are deduplicated and batched per module, so one unreadable
//! module costs only its own frames.
//!
//! Special cases: `[vdso]` addresses are looked up in our own vDSO (the same
//! image on one kernel); anonymous executable memory and addresses outside
//! every mapping are looked up in the process's JIT perf map; everything else
//! becomes `[module]` or `[unknown]`. The kernel half of stacks is
//! [`crate::KernelSymbolizer`]'s job.
//!
//! A file is named from the cheapest source that knows its addresses
//! ([`symbolize_file`]): its own ELF symbol tables (`.symtab`, `.dynsym`);
//! for a stripped file, the `.symtab` of its detached debug file (found by
//! nflame: [`crate::target::DebugFile`]), which is read without touching
//! its compressed DWARF; DWARF only for files with no symbol table anywhere,
//! or when inlined functions are requested, and only where it is safe to
//! hand to blazesym ([`crate::target`]); a Go function table last.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{Input, Reason, Sym, Symbolized};
use blazesym::Pid;
use nflame_procfs::files::{self, FileError};
use nflame_procfs::{maps, process as procfs};
use nflame_recording::{Mapping, ProcessInfo};
use rustc_hash::FxHashMap;

use crate::frame::{Frame, FrameKind};
use crate::perf_map::PerfMap;
pub(crate) use crate::target::FileId;
use crate::target::{Opened, Skips};

/// How addresses are turned into names. Default: everything on except
/// inlined functions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SymbolizeOptions {
    /// Expand inlined functions into frames of their own (reads DWARF line
    /// tables; slower). Default `false`.
    pub inline: bool,
    /// Demangle Rust and C++ names. Default `true`.
    pub demangle: bool,
    /// Consult DWARF debug information (embedded, or in a detached debug
    /// file nflame finds: by build id under `/usr/lib/debug`, or by
    /// `.gnu_debuglink`) besides ELF symbol tables. Default `true`.
    pub debug_syms: bool,
    /// Name JIT code from perf maps (`/tmp/perf-PID.map`). Default `true`.
    pub jit: bool,
}

impl Default for SymbolizeOptions {
    fn default() -> Self {
        SymbolizeOptions {
            inline: false,
            demangle: true,
            debug_syms: true,
            jit: true,
        }
    }
}

/// Parsed symbol files, shared by the [`ProcessSymbolizer`]s of one thread.
///
/// Wraps one blazesym `Symbolizer`, whose caches are keyed by path: each
/// file is handed to it as `/proc/self/fd/N`, and the cache keeps every such
/// file open for as long as it lives, so that N is never reused for another
/// file under a path blazesym remembers. `libc.so.6` is parsed once however
/// many processes map it. Not `Send`: build one per thread (per rayon task)
/// and reuse it.
#[derive(Debug)]
pub struct SymbolCache {
    inner: blazesym::symbolize::Symbolizer,
    opts: SymbolizeOptions,
    /// Files blazesym was given (see above).
    held: RefCell<FxHashMap<FileId, Arc<Opened>>>,
}

impl SymbolCache {
    /// An empty cache that symbolizes as `opts` says.
    pub fn new(opts: &SymbolizeOptions) -> SymbolCache {
        let inner = blazesym::symbolize::Symbolizer::builder()
            // The files of a recording do not change while we read them
            // (they are held open, or copied); skipping the re-`stat` on
            // every batch is measurably faster.
            .enable_auto_reload(false)
            .enable_code_info(opts.inline)
            .enable_inlined_fns(opts.inline)
            .enable_demangling(opts.demangle)
            .build();
        SymbolCache {
            inner,
            opts: opts.clone(),
            held: RefCell::default(),
        }
    }

    /// The options this cache was built with.
    pub fn options(&self) -> &SymbolizeOptions {
        &self.opts
    }

    pub(crate) fn blazesym(&self) -> &blazesym::symbolize::Symbolizer {
        &self.inner
    }

    /// The file this cache knows by `file`'s identity, from now on: the
    /// first one given. Everything read of a file (its headers, its debug
    /// file, its Go table, blazesym's parse) is then reused when another
    /// process's symbolizer opens the same inode again, and the file stays
    /// open as long as this cache lives, so that no `/proc/self/fd/N` path
    /// blazesym remembers ever names another file.
    fn hold(&self, file: &Arc<Opened>) -> Arc<Opened> {
        Arc::clone(
            self.held
                .borrow_mut()
                .entry(file.id())
                .or_insert_with(|| Arc::clone(file)),
        )
    }

    /// The path blazesym reads `file` at (see [`Self::hold`]); an error when
    /// blazesym may not read it (see [`Opened::readable`]).
    fn path_for(&self, file: &Arc<Opened>, skips: &mut Skips) -> Result<PathBuf, Option<String>> {
        let held = self.hold(file);
        let path = held.readable(skips)?.to_path_buf();
        Ok(path)
    }
}

/// A module that could not be read; its addresses became `[module]` frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFailure {
    /// The module's path as the process mapped it.
    pub path: PathBuf,
    /// Why it failed.
    pub reason: String,
}

/// Files opened for symbolization, by the identity their mapping recorded,
/// shared by the processes of one fold so that a library is opened once.
pub(crate) type OpenFiles = Arc<Mutex<FxHashMap<FileId, Arc<Opened>>>>;

/// Symbolizes user-space addresses of one process.
///
/// ```no_run
/// # use nflame_symbolizer::ProcessSymbolizer;
/// let pid = 1234;
/// let mappings = nflame_procfs::maps::read_maps(pid)?;
/// let mut sym = ProcessSymbolizer::new(pid, &mappings);
/// for frames in sym.symbolize(&[0x55d0_c0a0_1234]) {
///     println!("{}", frames.last().unwrap().name);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ProcessSymbolizer {
    cache: Rc<SymbolCache>,
    pid: u32,
    live: bool,
    mappings: Vec<Mapping>,
    /// The opened file per mapping, on first use (`None` inside: it could
    /// not be opened).
    opened: Vec<Option<Option<Arc<Opened>>>>,
    shared: OpenFiles,
    perf_map: Option<Option<PerfMap>>,
    failures: Vec<ModuleFailure>,
    skipped: Skips,
}

/// What one mapping-relative address is looked up in.
#[derive(Debug, Clone)]
enum Target {
    /// A file.
    File(Arc<Opened>),
    /// The vDSO.
    Vdso,
    /// The JIT perf map, else `[unknown]`.
    Jit,
}

impl ProcessSymbolizer {
    /// A symbolizer for process `pid` with the given executable mappings
    /// (sorted or not), its own [`SymbolCache`] and default options. Live
    /// paths (`/proc/PID/…`) are used if `/proc/PID` exists.
    pub fn new(pid: u32, mappings: &[Mapping]) -> ProcessSymbolizer {
        let cache = Rc::new(SymbolCache::new(&SymbolizeOptions::default()));
        ProcessSymbolizer::with_cache(cache, pid, mappings, procfs::exists(pid))
    }

    /// A symbolizer for process `pid` sharing `cache`. `live` says whether
    /// `/proc/PID` still describes this process (false after it exited: its
    /// pid may have been reused).
    pub fn with_cache(
        cache: Rc<SymbolCache>,
        pid: u32,
        mappings: &[Mapping],
        live: bool,
    ) -> ProcessSymbolizer {
        let mut mappings: Vec<Mapping> = mappings
            .iter()
            .filter(|m| m.start < m.end)
            .cloned()
            .collect();
        mappings.sort();
        ProcessSymbolizer {
            cache,
            pid,
            live,
            opened: vec![None; mappings.len()],
            mappings,
            shared: OpenFiles::default(),
            perf_map: None,
            failures: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// A symbolizer for a recorded process. Without recorded mappings, the
    /// live `/proc/PID/maps` is read if the process still runs.
    pub fn for_process(cache: Rc<SymbolCache>, info: &ProcessInfo) -> ProcessSymbolizer {
        let live = !info.exited && procfs::exists(info.pid);
        if info.mappings.is_empty() && live {
            if let Ok(m) = maps::read_maps(info.pid) {
                return ProcessSymbolizer::with_cache(cache, info.pid, &m, live);
            }
        }
        ProcessSymbolizer::with_cache(cache, info.pid, &info.mappings, live)
    }

    /// Shares opened files with other symbolizers of one fold.
    pub(crate) fn share_files(&mut self, shared: &OpenFiles) {
        self.shared = Arc::clone(shared);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Modules that failed so far (each once).
    pub fn failures(&self) -> &[ModuleFailure] {
        &self.failures
    }

    /// What was refused so far, one line each (`PATH (pid N): why`): files
    /// and sections nflame does not read (see the crate docs).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Symbolizes `addrs` (exact addresses: subtract 1 from return addresses
    /// first, or use [`Self::symbolize_stack`]). Returns, per address, its
    /// frames from outermost to innermost: one frame, or more when inlined
    /// functions are expanded. Never empty.
    pub fn symbolize(&mut self, addrs: &[u64]) -> Vec<Vec<Frame>> {
        // Deduplicate, then group by what each address is looked up in.
        let mut unique: Vec<u64> = addrs.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Per file: the file, and (address, file offset) pairs.
        type Batch = (Arc<Opened>, Vec<(u64, u64)>);
        let mut files: FxHashMap<FileId, Batch> = FxHashMap::default();
        let mut vdso: Vec<(u64, u64)> = Vec::new();
        let mut resolved: FxHashMap<u64, Vec<Frame>> = FxHashMap::default();
        for &addr in &unique {
            match self.target(addr) {
                Ok((Target::File(f), key)) => files
                    .entry(f.id())
                    .or_insert_with(|| (f, Vec::new()))
                    .1
                    .push((addr, key)),
                Ok((Target::Vdso, key)) => vdso.push((addr, key)),
                Ok((Target::Jit, _)) => {
                    let frame = self.lookup_jit(addr);
                    resolved.insert(addr, vec![frame]);
                }
                Err(frame) => {
                    resolved.insert(addr, vec![frame]);
                }
            }
        }
        let mut files: Vec<_> = files.into_values().collect();
        files.sort_by_key(|(f, _)| f.module.clone());
        for (file, items) in files {
            let offsets: Vec<u64> = items.iter().map(|&(_, k)| k).collect();
            let frames = self.lookup_file(&file, &items, &offsets);
            for ((addr, _), f) in items.into_iter().zip(frames) {
                resolved.insert(addr, f);
            }
        }
        if !vdso.is_empty() {
            let offsets: Vec<u64> = vdso.iter().map(|&(_, k)| k).collect();
            for ((addr, _), f) in vdso.into_iter().zip(symbolize_vdso(&self.cache, &offsets)) {
                resolved.insert(addr, f);
            }
        }
        addrs
            .iter()
            .map(|a| {
                resolved
                    .get(a)
                    .cloned()
                    .unwrap_or_else(|| vec![Frame::unknown(FrameKind::User)])
            })
            .collect()
    }

    /// Symbolizes one user stack given leaf first, as samples carry it, and
    /// returns its frames root first. Every address but the leaf is a return
    /// address and is looked up at `addr - 1` (the call instruction).
    pub fn symbolize_stack(&mut self, leaf_first: &[u64]) -> Vec<Frame> {
        let lookups: Vec<u64> = leaf_first
            .iter()
            .enumerate()
            .map(|(i, &a)| lookup_addr(i, a))
            .collect();
        self.symbolize(&lookups)
            .into_iter()
            .rev()
            .flatten()
            .collect()
    }

    /// Whether `/proc/PID` still describes this process.
    pub(crate) fn live(&self) -> bool {
        self.live
    }

    /// Decides where each of `addrs` is looked up, without reading any
    /// symbols (files are opened; failures and refusals are recorded).
    pub(crate) fn plan(&mut self, addrs: &[u64]) -> Vec<Planned> {
        addrs
            .iter()
            .map(|&addr| match self.target(addr) {
                Err(frame) => Planned::Done(frame),
                Ok((Target::Vdso, off)) => Planned::Vdso(off),
                Ok((Target::Jit, _)) => Planned::Jit,
                Ok((Target::File(file), offset)) => Planned::File {
                    module: self.module_of(addr),
                    file,
                    offset,
                },
            })
            .collect()
    }

    /// Decides where `addr` is looked up: `Ok((target, key))` with the key to
    /// pass (file offset, vDSO offset, or the address for JIT), or `Err(frame)`
    /// when the answer is already known.
    fn target(&mut self, addr: u64) -> Result<(Target, u64), Frame> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let Some(i) = i.checked_sub(1).filter(|&i| addr < self.mappings[i].end) else {
            return Ok((Target::Jit, addr));
        };
        let m = &self.mappings[i];
        let rel = addr - m.start;
        let path = maps::clean_path(&m.path).to_path_buf();
        if path == Path::new("[vdso]") {
            return Ok((Target::Vdso, rel));
        }
        if maps::is_pseudo(&path) {
            return if maps::is_anonymous(&path) {
                Ok((Target::Jit, addr))
            } else {
                Err(Frame::in_module(&path, FrameKind::User))
            };
        }
        let key = rel + m.offset;
        let opened = match &self.opened[i] {
            Some(o) => o.clone(),
            None => {
                let o = self.open(i);
                self.opened[i] = Some(o.clone());
                o
            }
        };
        match opened {
            Some(file) => Ok((Target::File(file), key)),
            None => Err(Frame::in_module(&path, FrameKind::User)),
        }
    }

    /// Opens the file of mapping `i` (once per recorded identity across the
    /// processes sharing `self.shared`); says why not.
    fn open(&mut self, i: usize) -> Option<Arc<Opened>> {
        let m = &self.mappings[i];
        let recorded = m.dev.zip(m.inode).filter(|&(_, ino)| ino != 0);
        if let Some(id) = recorded {
            let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = shared.get(&id) {
                return Some(Arc::clone(f));
            }
        }
        let path = maps::clean_path(&m.path).to_path_buf();
        match files::open_mapped(self.pid, self.live, m) {
            Ok(file) => {
                let opened = Arc::new(Opened::new(file, self.pid, self.live, path));
                if let Some(id) = recorded {
                    let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                    return Some(Arc::clone(
                        shared.entry(id).or_insert_with(|| Arc::clone(&opened)),
                    ));
                }
                Some(opened)
            }
            Err(FileError::Refused(r)) => {
                let line = format!("{}: {r}", files::shown(self.pid, &path));
                if !self.skipped.contains(&line) {
                    self.skipped.push(line);
                }
                None
            }
            Err(FileError::Missing) => {
                let why = if self.live {
                    "the file it mapped is gone (unmapped, and its path names another file)"
                } else {
                    "the process exited and the file it mapped is not found here"
                };
                self.fail(&path, why);
                None
            }
            Err(FileError::Io(e)) => {
                self.fail(&path, format!("cannot open: {e}"));
                None
            }
        }
    }

    fn fail(&mut self, path: &Path, reason: impl Into<String>) {
        if !self.failures.iter().any(|f| f.path == path) {
            self.failures.push(ModuleFailure {
                path: path.to_path_buf(),
                reason: reason.into(),
            });
        }
    }

    /// The recorded mapping path of `addr`, for `[module]` frames.
    fn module_of(&self, addr: u64) -> PathBuf {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        i.checked_sub(1)
            .map(|i| maps::clean_path(&self.mappings[i].path).to_path_buf())
            .unwrap_or_default()
    }

    fn lookup_file(
        &mut self,
        file: &Arc<Opened>,
        items: &[(u64, u64)],
        offsets: &[u64],
    ) -> Vec<Vec<Frame>> {
        let names = symbolize_file(&self.cache, file, offsets, &mut self.skipped);
        match names {
            Ok(frames) => items
                .iter()
                .zip(frames)
                .map(|(&(addr, _), f)| {
                    f.unwrap_or_else(|| {
                        vec![Frame::in_module(&self.module_of(addr), FrameKind::User)]
                    })
                })
                .collect(),
            Err(reason) => {
                let module = self.module_of(items[0].0);
                if let Some(reason) = reason {
                    self.fail(&module, reason);
                }
                let frame = Frame::in_module(&module, FrameKind::User);
                vec![vec![frame]; items.len()]
            }
        }
    }

    fn lookup_jit(&mut self, addr: u64) -> Frame {
        if self.cache.opts.jit {
            let (pid, live) = (self.pid, self.live);
            let skipped = &mut self.skipped;
            let map = self
                .perf_map
                .get_or_insert_with(|| PerfMap::for_process(pid, live, skipped));
            if let Some(name) = map.as_ref().and_then(|m| m.find(addr)) {
                return Frame::named(name, FrameKind::Jit);
            }
        }
        Frame::unknown(FrameKind::User)
    }
}

/// Names vDSO offsets in our own vDSO (the same image for every process on
/// one kernel): one entry per offset, `[vdso]` when unnamed.
pub(crate) fn symbolize_vdso(cache: &SymbolCache, offsets: &[u64]) -> Vec<Vec<Frame>> {
    let unnamed = || vec![vec![Frame::unnamed("[vdso]", FrameKind::User)]; offsets.len()];
    let Some(base) = files::own_vdso().map(|v| v.start) else {
        return unnamed();
    };
    let addrs: Vec<u64> = offsets.iter().map(|o| base + o).collect();
    let src = Source::Process(Process {
        perf_map: false,
        map_files: false,
        debug_syms: false,
        vdso: true,
        ..Process::new(Pid::Slf)
    });
    match cache.blazesym().symbolize(&src, Input::AbsAddr(&addrs)) {
        Ok(syms) => syms
            .into_iter()
            .map(|s| match s {
                Symbolized::Sym(sym) => sym_frames(&sym, FrameKind::User),
                Symbolized::Unknown(_) => vec![Frame::unnamed("[vdso]", FrameKind::User)],
            })
            .collect(),
        Err(_) => unnamed(),
    }
}

/// Where [`fold`](crate::fold) looks one address of a process up.
#[derive(Debug)]
pub(crate) enum Planned {
    /// At `offset` in `file`; `module` is the path the process mapped
    /// (placeholder).
    File {
        file: Arc<Opened>,
        module: PathBuf,
        offset: u64,
    },
    /// At this offset in the vDSO.
    Vdso(u64),
    /// In the process's JIT perf map.
    Jit,
    /// Already known.
    Done(Frame),
}

/// The address to look up for position `i` (0 = leaf) of a stack: return
/// addresses point after the call, so `addr - 1` is inside it.
pub(crate) fn lookup_addr(i: usize, addr: u64) -> u64 {
    if i == 0 {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

/// A blazesym symbol as frames, outermost first (the function, then the
/// functions inlined into it, in nesting order).
pub(crate) fn sym_frames(sym: &Sym<'_>, kind: FrameKind) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + sym.inlined.len());
    frames.push(Frame::named(sym.name.as_ref(), kind));
    for inlined in sym.inlined.iter() {
        let mut f = Frame::named(inlined.name.as_ref(), kind);
        f.inlined = true;
        frames.push(f);
    }
    frames
}

/// Per offset, its frames (outermost first), or `None` when no source
/// named it (the caller writes the module placeholder).
pub(crate) type FileFrames = Vec<Option<Vec<Frame>>>;

/// Symbolizes file offsets of a target's file: per offset, its frames, or
/// `None` when no source names it.
///
/// Sources, cheapest first, each asked only about what the previous ones
/// left unnamed: for a stripped file, its detached debug file's `.symtab`;
/// the file's own symbol tables; DWARF only when no symbol table was found
/// (or, with [`SymbolizeOptions::inline`], for every address: inlined
/// functions exist only there), from the file itself when it is safe to
/// hand to blazesym, else from a debug file nflame found; a Go function
/// table last. Refusals go to `skips`.
///
/// Errors only if the file itself cannot be read: `Some(reason)` to report,
/// `None` when the reason is already a skip line (or it is no ELF file).
pub(crate) fn symbolize_file(
    cache: &SymbolCache,
    file: &Arc<Opened>,
    offsets: &[u64],
    skips: &mut Skips,
) -> Result<FileFrames, Option<String>> {
    let opts = &cache.opts;
    let bz = cache.blazesym();
    let elf = |path: &Path, debug_syms: bool| {
        Source::Elf(Elf {
            debug_syms,
            ..Elf::new(path)
        })
    };
    let unnamed = |out: &[Option<Vec<Frame>>]| -> Vec<usize> {
        (0..out.len()).filter(|&i| out[i].is_none()).collect()
    };
    let mut out: FileFrames = vec![None; offsets.len()];
    let file = &cache.hold(file);
    let path = match cache.path_for(file, skips) {
        Ok(p) => p,
        Err(why) => {
            // blazesym may not read it; a Go table may still name it.
            if let Some(table) = file.go_table(skips) {
                name_from_go(table, offsets, &mut out);
                return Ok(out);
            }
            return Err(why);
        }
    };
    let cheap = opts.debug_syms && !opts.inline;
    let debug = opts.debug_syms.then(|| file.debug_file(skips)).flatten();
    let debug_path = debug.and_then(|d| cache.path_for(&d.file, skips).ok());
    let in_place = opts.debug_syms && file.dwarf_in_place(skips, false);

    // Inlined functions: DWARF first, for every address.
    if opts.inline && opts.debug_syms && !in_place {
        if let (Some(d), Some(dp)) = (debug, &debug_path) {
            if d.dwarf_ok(skips) {
                by_virt(bz, &elf(dp, true), d, offsets, &mut out, None);
            }
        }
    }

    // A stripped file with a detached debug file: that file's `.symtab`
    // (complete, uncompressed), read without its DWARF.
    let mut debug_symtab = false;
    if let (Some(d), Some(dp), true) = (debug, &debug_path, cheap) {
        debug_symtab = by_virt(bz, &elf(dp, false), d, offsets, &mut out, Some(&d.aliases));
    }

    // The file's own symbol tables (and its DWARF when inlined functions are
    // wanted and it is safe).
    let mut stripped = false;
    let missing = unnamed(&out);
    if !missing.is_empty() {
        let offs: Vec<u64> = missing.iter().map(|&i| offsets[i]).collect();
        let src = elf(&path, opts.inline && in_place);
        let syms = bz
            .symbolize(&src, Input::FileOffset(&offs))
            .map_err(|e| Some(format!("{e:#}")))?;
        // Symbol tables are parsed lazily, so an unreadable file shows up
        // as folded per-address errors: ask for one of them unfolded.
        let folded_error = syms
            .iter()
            .position(|s| matches!(s, Symbolized::Unknown(Reason::IgnoredError)));
        if let Some(j) = folded_error {
            bz.symbolize_single(&src, Input::FileOffset(offs[j]))
                .map_err(|e| Some(format!("{e:#}")))?;
        }
        for (&i, s) in missing.iter().zip(syms) {
            match s {
                Symbolized::Sym(sym) => out[i] = Some(sym_frames(&sym, FrameKind::User)),
                Symbolized::Unknown(reason) => stripped |= reason == Reason::MissingSyms,
            }
        }
    }

    // No symbol table anywhere: DWARF, the file's own where it is safe, else
    // its debug file's.
    let missing = unnamed(&out);
    if !missing.is_empty() && cheap && stripped && !debug_symtab {
        if file.dwarf_in_place(skips, true) {
            let offs: Vec<u64> = missing.iter().map(|&i| offsets[i]).collect();
            if let Ok(syms) = bz.symbolize(&elf(&path, true), Input::FileOffset(&offs)) {
                for (&i, s) in missing.iter().zip(syms) {
                    if let Symbolized::Sym(sym) = s {
                        out[i] = Some(sym_frames(&sym, FrameKind::User));
                    }
                }
            }
        } else if let (Some(d), Some(dp)) = (debug, &debug_path) {
            if d.dwarf_ok(skips) {
                by_virt(bz, &elf(dp, true), d, offsets, &mut out, None);
            }
        }
    }

    if !unnamed(&out).is_empty() {
        // A stripped Go binary still names its functions.
        if let Some(table) = file.go_table(skips) {
            name_from_go(table, offsets, &mut out);
        }
    }
    Ok(out)
}

/// Names the still unnamed `offsets` from a debug file (by virtual
/// address); `aliases` replace the names of shared addresses. Returns
/// whether the debug file had symbols.
fn by_virt(
    bz: &blazesym::symbolize::Symbolizer,
    src: &Source<'_>,
    debug: &crate::target::DebugFile,
    offsets: &[u64],
    out: &mut FileFrames,
    aliases: Option<&FxHashMap<u64, String>>,
) -> bool {
    let (idx, virt): (Vec<usize>, Vec<u64>) = offsets
        .iter()
        .enumerate()
        .filter(|&(i, _)| out[i].is_none())
        .filter_map(|(i, &o)| Some((i, debug.virt(o)?)))
        .unzip();
    if idx.is_empty() {
        return false;
    }
    let mut has_symbols = false;
    if let Ok(syms) = bz.symbolize(src, Input::VirtOffset(&virt)) {
        for (i, s) in idx.into_iter().zip(syms) {
            match s {
                Symbolized::Sym(sym) => {
                    has_symbols = true;
                    let mut frames = sym_frames(&sym, FrameKind::User);
                    if let Some(name) = aliases.and_then(|a| a.get(&sym.addr)) {
                        frames[0].name.clone_from(name);
                    }
                    out[i] = Some(frames);
                }
                Symbolized::Unknown(reason) => has_symbols |= reason != Reason::MissingSyms,
            }
        }
    }
    has_symbols
}

fn name_from_go(table: &crate::gopclntab::GoTable, offsets: &[u64], out: &mut FileFrames) {
    for (i, &o) in offsets.iter().enumerate() {
        if out[i].is_none() {
            if let Some(name) = table.virt_addr(o).and_then(|v| table.find(v)) {
                out[i] = Some(vec![Frame::named(name, FrameKind::User)]);
            }
        }
    }
}
