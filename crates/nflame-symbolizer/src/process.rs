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

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{Input, Sym, Symbolized};
use blazesym::Pid;
use nflame_sampler::{Mapping, ProcessInfo};
use rustc_hash::FxHashMap;

use crate::frame::{Frame, FrameKind};
use crate::gopclntab::GoTable;
use crate::maps;
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
type FileId = (u64, u64);

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
        }
    }

    /// The Go function table of the file at `path`, read once per file.
    fn go_table(&self, path: &Path) -> Option<Rc<GoTable>> {
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
/// # use nflame_symbolizer::{ProcessSymbolizer, read_proc_maps};
/// let pid = 1234;
/// let mappings = read_proc_maps(pid)?;
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
        ProcessSymbolizer::with_cache(cache, pid, mappings, maps::is_alive(pid))
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
        let live = !info.exited && maps::is_alive(info.pid);
        if info.mappings.is_empty() && live {
            if let Ok(m) = maps::read_proc_maps(info.pid) {
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
            return if path.as_os_str().is_empty()
                || path.to_string_lossy().starts_with("//anon")
                || path.to_string_lossy().starts_with("[anon")
            {
                Ok((Target::Jit, addr))
            } else {
                Err(Frame::in_module(path, FrameKind::User))
            };
        }
        let open = match &self.open_paths[i] {
            Some(p) => p.clone(),
            None => {
                let p = maps::open_path(self.pid, self.live, m);
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
        let src = Source::Elf(Elf {
            debug_syms: self.cache.opts.debug_syms,
            ..Elf::new(open)
        });
        let result = self
            .cache
            .blazesym()
            .symbolize(&src, Input::FileOffset(offsets));
        match result {
            Ok(syms) => {
                let mut go: Option<Option<Rc<GoTable>>> = None;
                items
                    .iter()
                    .zip(offsets)
                    .zip(syms)
                    .map(|((&(addr, _), &offset), s)| match s {
                        Symbolized::Sym(sym) => sym_frames(&sym, FrameKind::User),
                        Symbolized::Unknown(_) => {
                            // A stripped Go binary still names its functions.
                            let table = go.get_or_insert_with(|| self.cache.go_table(open));
                            let name = table.as_ref().and_then(|t| t.find(t.virt_addr(offset)?));
                            match name {
                                Some(name) => vec![Frame::named(name, FrameKind::User)],
                                None => {
                                    vec![Frame::in_module(&self.module_of(addr), FrameKind::User)]
                                }
                            }
                        }
                    })
                    .collect()
            }
            Err(_) if self.live && open.starts_with("/proc/") => {
                // The process exited since its paths were resolved: retry
                // with the path it mapped, as for any exited process.
                self.live = false;
                self.open_paths.iter_mut().for_each(|p| *p = None);
                let addr = items[0].0;
                let i = self.mappings.partition_point(|m| m.start <= addr) - 1;
                match maps::open_path(self.pid, false, &self.mappings[i]) {
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

    fn lookup_vdso(&mut self, items: &[(u64, u64)], offsets: &[u64]) -> Vec<Vec<Frame>> {
        let unnamed = || vec![vec![Frame::unnamed("[vdso]", FrameKind::User)]; items.len()];
        let Some(base) = maps::own_vdso_start() else {
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
        match self
            .cache
            .blazesym()
            .symbolize(&src, Input::AbsAddr(&addrs))
        {
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
