//! User-space symbolization of one process from its recorded mappings.
//!
//! An address is looked up as: recorded executable [`Mapping`] → file offset
//! (`addr - start + offset`) → blazesym's ELF source for that file
//! (`Input::FileOffset`). This needs nothing from the process itself once its
//! mappings are known, so processes that exited before symbolization are
//! named as well as live ones. Addresses are deduplicated and batched per
//! module, so one unreadable module costs only its own frames.
//!
//! Special cases: `[vdso]` addresses are looked up in our own vDSO (the same
//! image on one kernel); anonymous executable memory and addresses outside
//! every mapping are looked up in the process's JIT perf map; everything else
//! becomes `[module]` or `[unknown]`. The kernel half of stacks is
//! [`crate::KernelSymbolizer`]'s job.
//!
//! A file is named from the cheapest source that knows its addresses
//! ([`symbolize_file`]): its own ELF symbol tables (`.symtab`, `.dynsym`);
//! for a stripped file, the `.symtab` of its detached debug file
//! (`/usr/lib/debug/.build-id/…`), which is read without touching its
//! compressed DWARF; DWARF only for files with no symbol table anywhere, or
//! when inlined functions are requested.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{Input, Reason, Sym, Symbolized};
use blazesym::Pid;
use nflame_procfs::{files, maps, process as procfs};
use nflame_recording::{Mapping, ProcessInfo};
use rustc_hash::FxHashMap;

use crate::frame::{Frame, FrameKind};
use crate::gopclntab::GoTable;
use crate::perf_map::PerfMap;

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
    /// Consult DWARF debug information (embedded, `.dwp`, or debug-link /
    /// build-id files under `/usr/lib/debug`) besides ELF symbol tables.
    /// Default `true`.
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

/// A file's identity: (device, inode).
pub(crate) type FileId = (u64, u64);

/// Directories searched for detached debug files by build id.
const BUILD_ID_DIRS: [&str; 2] = ["/usr/lib/debug/.build-id", "/lib/debug/.build-id"];

/// A stripped file's detached debug file (found by build id), the file's
/// PT_LOAD segments (to turn file offsets into the virtual addresses the
/// debug file's symbols use), and the name to show for each address that
/// several function symbols share.
#[derive(Debug)]
struct DebugFile {
    path: PathBuf,
    /// (file offset, file size, virtual address) per PT_LOAD segment.
    segments: Vec<(u64, u64, u64)>,
    /// Address → the function's own name, where aliases share the address.
    aliases: FxHashMap<u64, String>,
}

impl DebugFile {
    /// Finds the debug file of the stripped ELF file at `path`, if one is
    /// installed. `None` as well for files with their own `.symtab`.
    fn find(path: &Path) -> Option<DebugFile> {
        use object::{Object, ObjectSegment};
        let file = std::fs::File::open(path).ok()?;
        let cache = object::read::ReadCache::new(file);
        let elf = object::File::parse(&cache).ok()?;
        if elf.section_by_name(".symtab").is_some() {
            return None;
        }
        let id = elf.build_id().ok()??;
        let (first, rest) = id.split_first()?;
        let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
        let debug = BUILD_ID_DIRS
            .iter()
            .map(|dir| PathBuf::from(format!("{dir}/{first:02x}/{hex}.debug")))
            .find(|p| p.is_file())?;
        let segments = elf
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        let aliases = function_aliases(&debug).unwrap_or_default();
        Some(DebugFile {
            path: debug,
            segments,
            aliases,
        })
    }

    /// The virtual address of file offset `offset`.
    fn virt(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|&&(o, size, _)| o <= offset && offset - o < size)
            .map(|&(o, _, vaddr)| offset - o + vaddr)
    }
}

/// Parsed symbol files, shared by the [`ProcessSymbolizer`]s of one thread.
///
/// Wraps one blazesym `Symbolizer`, whose caches are keyed by file identity
/// (device, inode): `libc.so.6` is parsed once however many processes map it.
/// Not `Send`: build one per thread (per rayon task) and reuse it.
#[derive(Debug)]
pub struct SymbolCache {
    inner: blazesym::symbolize::Symbolizer,
    opts: SymbolizeOptions,
    /// Go function tables by file identity (device, inode); `None` for files
    /// without one.
    go_tables: RefCell<FxHashMap<FileId, Option<Rc<GoTable>>>>,
    /// Detached debug files by file identity; `None` for files without one.
    debug_files: RefCell<FxHashMap<FileId, Option<Rc<DebugFile>>>>,
}

/// For every address of the ELF file at `path` that several function symbols
/// share, the one to show: the function's definition rather than an export
/// alias. glibc, for one, defines `__libc_start_main_impl` and `__libc_write`
/// (local symbols, the names in its DWARF) and exports them as
/// `__libc_start_main@@GLIBC_2.34`, `write`, `__write`, with internal aliases
/// `__GI___libc_write` or `__libc_start_main_alias_1`. Preference: not
/// versioned (`@`), not an internal alias (`__GI_`, `_alias_N`), local over
/// global, then the first in the table. Mangled (C++, Rust) names are left to
/// blazesym, which demangles them.
fn function_aliases(path: &Path) -> Option<FxHashMap<u64, String>> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let file = std::fs::File::open(path).ok()?;
    let cache = object::read::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let mut by_addr: FxHashMap<u64, Vec<(u8, String)>> = FxHashMap::default();
    for sym in elf.symbols() {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 || sym.is_undefined() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() {
            continue;
        }
        let internal = name.starts_with("__GI_")
            || name
                .rsplit_once("_alias_")
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let rank =
            u8::from(name.contains('@')) * 4 + u8::from(internal) * 2 + u8::from(!sym.is_local());
        by_addr
            .entry(sym.address())
            .or_default()
            .push((rank, name.to_owned()));
    }
    Some(
        by_addr
            .into_iter()
            .filter(|(_, names)| {
                names.len() > 1
                    && !names
                        .iter()
                        .any(|(_, n)| n.starts_with("_Z") || n.starts_with("_R"))
            })
            .filter_map(|(addr, names)| {
                let best = names.into_iter().min_by_key(|(rank, _)| *rank)?;
                Some((addr, best.1))
            })
            .collect(),
    )
}

impl SymbolCache {
    /// An empty cache that symbolizes as `opts` says.
    pub fn new(opts: &SymbolizeOptions) -> SymbolCache {
        let inner = blazesym::symbolize::Symbolizer::builder()
            // The files of a recording do not change while we read them;
            // skipping the re-`stat` on every batch is measurably faster.
            .enable_auto_reload(false)
            .enable_code_info(opts.inline)
            .enable_inlined_fns(opts.inline)
            .enable_demangling(opts.demangle)
            .build();
        SymbolCache {
            inner,
            opts: opts.clone(),
            go_tables: RefCell::default(),
            debug_files: RefCell::default(),
        }
    }

    /// The detached debug file of the file at `path`, looked up once per file.
    fn debug_file(&self, path: &Path) -> Option<Rc<DebugFile>> {
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.dev(), meta.ino());
        if let Some(d) = self.debug_files.borrow().get(&key) {
            return d.clone();
        }
        let debug = DebugFile::find(path).map(Rc::new);
        self.debug_files.borrow_mut().insert(key, debug.clone());
        debug
    }

    /// The Go function table of the file at `path`, read once per file.
    pub(crate) fn go_table(&self, path: &Path) -> Option<Rc<GoTable>> {
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.dev(), meta.ino());
        if let Some(t) = self.go_tables.borrow().get(&key) {
            return t.clone();
        }
        let table = GoTable::from_file(path).map(Rc::new);
        self.go_tables.borrow_mut().insert(key, table.clone());
        table
    }

    /// The options this cache was built with.
    pub fn options(&self) -> &SymbolizeOptions {
        &self.opts
    }

    pub(crate) fn blazesym(&self) -> &blazesym::symbolize::Symbolizer {
        &self.inner
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
    /// Path to open per mapping, resolved on first use.
    open_paths: Vec<Option<Option<PathBuf>>>,
    perf_map: Option<Option<PerfMap>>,
    failures: Vec<ModuleFailure>,
}

/// What one mapping-relative address is looked up in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    /// A file, by the path we open.
    File(PathBuf),
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
            open_paths: vec![None; mappings.len()],
            mappings,
            perf_map: None,
            failures: Vec::new(),
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Modules that failed so far (each once).
    pub fn failures(&self) -> &[ModuleFailure] {
        &self.failures
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
        let mut groups: FxHashMap<Target, Vec<(u64, u64)>> = FxHashMap::default();
        let mut resolved: FxHashMap<u64, Vec<Frame>> = FxHashMap::default();
        for &addr in &unique {
            match self.target(addr) {
                Ok((target, key)) => groups.entry(target).or_default().push((addr, key)),
                Err(frame) => {
                    resolved.insert(addr, vec![frame]);
                }
            }
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        for (target, items) in groups {
            let keys: Vec<u64> = items.iter().map(|&(_, k)| k).collect();
            let frames = match &target {
                Target::File(path) => self.lookup_file(path, &items, &keys),
                Target::Vdso => self.lookup_vdso(&items, &keys),
                Target::Jit => items
                    .iter()
                    .map(|&(addr, _)| vec![self.lookup_jit(addr)])
                    .collect(),
            };
            for ((addr, _), f) in items.into_iter().zip(frames) {
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
    /// symbols (failures to find a file are recorded as usual).
    pub(crate) fn plan(&mut self, addrs: &[u64]) -> Vec<Planned> {
        let mut ids: FxHashMap<PathBuf, Option<FileId>> = FxHashMap::default();
        addrs
            .iter()
            .map(|&addr| match self.target(addr) {
                Err(frame) => Planned::Done(frame),
                Ok((Target::Vdso, off)) => Planned::Vdso(off),
                Ok((Target::Jit, _)) => Planned::Jit,
                Ok((Target::File(open), offset)) => {
                    let id = *ids.entry(open.clone()).or_insert_with(|| {
                        std::fs::metadata(&open).ok().map(|m| (m.dev(), m.ino()))
                    });
                    let module = self.module_of(addr);
                    match id {
                        Some(id) => Planned::File {
                            id,
                            open,
                            module,
                            offset,
                        },
                        None => {
                            self.fail(&module, "file not found (process exited)");
                            Planned::Done(Frame::in_module(&module, FrameKind::User))
                        }
                    }
                }
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
        let path = path.as_path();
        if path == Path::new("[vdso]") {
            return Ok((Target::Vdso, rel));
        }
        if maps::is_pseudo(path) {
            return if maps::is_anonymous(path) {
                Ok((Target::Jit, addr))
            } else {
                Err(Frame::in_module(path, FrameKind::User))
            };
        }
        let open = match &self.open_paths[i] {
            Some(p) => p.clone(),
            None => {
                let p = files::mapped_file(self.pid, self.live, m);
                self.open_paths[i] = Some(p.clone());
                p
            }
        };
        match open {
            Some(open) => Ok((Target::File(open), rel + m.offset)),
            None => {
                self.fail(
                    path,
                    "file not found (process exited or in another mount namespace)",
                );
                Err(Frame::in_module(path, FrameKind::User))
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
        open: &Path,
        items: &[(u64, u64)],
        offsets: &[u64],
    ) -> Vec<Vec<Frame>> {
        match symbolize_file(&self.cache, open, offsets) {
            Ok(frames) => items
                .iter()
                .zip(frames)
                .map(|(&(addr, _), f)| {
                    f.unwrap_or_else(|| {
                        vec![Frame::in_module(&self.module_of(addr), FrameKind::User)]
                    })
                })
                .collect(),
            Err(_) if self.live && open.starts_with("/proc/") => {
                // The process exited since its paths were resolved: retry
                // with the path it mapped, as for any exited process.
                self.live = false;
                self.open_paths.iter_mut().for_each(|p| *p = None);
                let addr = items[0].0;
                let i = self.mappings.partition_point(|m| m.start <= addr) - 1;
                match files::mapped_file(self.pid, false, &self.mappings[i]) {
                    Some(path) => self.lookup_file(&path, items, offsets),
                    None => {
                        let module = self.module_of(addr);
                        self.fail(&module, "process exited and its file is not found");
                        vec![vec![Frame::in_module(&module, FrameKind::User)]; items.len()]
                    }
                }
            }
            Err(err) => {
                let module = self.module_of(items[0].0);
                self.fail(&module, format!("{err:#}"));
                let frame = Frame::in_module(&module, FrameKind::User);
                vec![vec![frame]; items.len()]
            }
        }
    }

    fn lookup_vdso(&mut self, _items: &[(u64, u64)], offsets: &[u64]) -> Vec<Vec<Frame>> {
        symbolize_vdso(&self.cache, offsets)
    }

    fn lookup_jit(&mut self, addr: u64) -> Frame {
        if self.cache.opts.jit {
            let (pid, live) = (self.pid, self.live);
            let map = self
                .perf_map
                .get_or_insert_with(|| PerfMap::for_process(pid, live));
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
    /// At `offset` in the file with identity `id`, opened at `open`;
    /// `module` is the path the process mapped (placeholder, fallback).
    File {
        id: FileId,
        open: PathBuf,
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

/// Symbolizes file offsets of the ELF file at `path`: per offset, its frames
/// (outermost first), or `None` when no source names it (the caller writes
/// the module placeholder).
///
/// Sources, cheapest first, each asked only about what the previous ones
/// left unnamed: the file's symbol tables; for a stripped file, its detached
/// debug file's `.symtab`; DWARF (embedded or by debug link) only when no
/// symbol table was found; a Go function table last. With
/// [`SymbolizeOptions::inline`], DWARF is read for every address (inlined
/// functions exist only there).
///
/// Errors only if the file itself cannot be read.
pub(crate) fn symbolize_file(
    cache: &SymbolCache,
    path: &Path,
    offsets: &[u64],
) -> Result<Vec<Option<Vec<Frame>>>, blazesym::Error> {
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
    let mut out: Vec<Option<Vec<Frame>>> = vec![None; offsets.len()];
    let cheap = opts.debug_syms && !opts.inline;

    // A stripped file with a detached debug file: that file's `.symtab`
    // (complete, uncompressed), read without its DWARF.
    let mut debug_symtab = false;
    if let Some(debug) = cache.debug_file(path).filter(|_| cheap) {
        let (idx, virt): (Vec<usize>, Vec<u64>) = offsets
            .iter()
            .enumerate()
            .filter_map(|(i, &o)| Some((i, debug.virt(o)?)))
            .unzip();
        if let Ok(syms) = bz.symbolize(&elf(&debug.path, false), Input::VirtOffset(&virt)) {
            for (i, s) in idx.into_iter().zip(syms) {
                match s {
                    Symbolized::Sym(sym) => {
                        debug_symtab = true;
                        let mut frames = sym_frames(&sym, FrameKind::User);
                        if let Some(name) = debug.aliases.get(&sym.addr) {
                            frames[0].name.clone_from(name);
                        }
                        out[i] = Some(frames);
                    }
                    Symbolized::Unknown(reason) => {
                        debug_symtab |= reason != Reason::MissingSyms;
                    }
                }
            }
        }
    }

    // The file's own symbol tables (and DWARF when inlined functions are
    // wanted).
    let mut stripped = false;
    let missing = unnamed(&out);
    if !missing.is_empty() {
        let offs: Vec<u64> = missing.iter().map(|&i| offsets[i]).collect();
        let src = elf(path, opts.inline && opts.debug_syms);
        let syms = bz.symbolize(&src, Input::FileOffset(&offs))?;
        // Symbol tables are parsed lazily, so an unreadable file shows up
        // as folded per-address errors: ask for one of them unfolded.
        let folded_error = syms
            .iter()
            .position(|s| matches!(s, Symbolized::Unknown(Reason::IgnoredError)));
        if let Some(j) = folded_error {
            bz.symbolize_single(&src, Input::FileOffset(offs[j]))?;
        }
        for (&i, s) in missing.iter().zip(syms) {
            match s {
                Symbolized::Sym(sym) => out[i] = Some(sym_frames(&sym, FrameKind::User)),
                Symbolized::Unknown(reason) => stripped |= reason == Reason::MissingSyms,
            }
        }
    }

    // No symbol table anywhere: DWARF (embedded or by debug link).
    let missing = unnamed(&out);
    if !missing.is_empty() && cheap && stripped && !debug_symtab {
        let offs: Vec<u64> = missing.iter().map(|&i| offsets[i]).collect();
        if let Ok(syms) = bz.symbolize(&elf(path, true), Input::FileOffset(&offs)) {
            for (&i, s) in missing.iter().zip(syms) {
                if let Symbolized::Sym(sym) = s {
                    out[i] = Some(sym_frames(&sym, FrameKind::User));
                }
            }
        }
    }

    let missing = unnamed(&out);
    if !missing.is_empty() {
        // A stripped Go binary still names its functions.
        if let Some(table) = cache.go_table(path) {
            for i in missing {
                if let Some(name) = table.virt_addr(offsets[i]).and_then(|v| table.find(v)) {
                    out[i] = Some(vec![Frame::named(name, FrameKind::User)]);
                }
            }
        }
    }
    Ok(out)
}
