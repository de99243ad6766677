//! A target's file as the symbolizer reads it, and what blazesym may be
//! given of it.
//!
//! Every file here was opened by `nflame-procfs` as its process sees it
//! ([`nflame_procfs::files`]: inside its root, never blocking, the mapped
//! inode). This module decides what happens next, because blazesym trusts
//! the files it reads:
//!
//! - **sizes**: blazesym reserves memory by the sizes a file claims (its
//!   symbol count, a compressed section's inflated size) and inflates
//!   without bound; so a file's symbol and string tables must be within
//!   their caps before blazesym sees it at all, and its DWARF is read only
//!   when every compressed section was checked to inflate to what it claims
//!   ([`nflame_procfs::elf`]). What fails is skipped, with a line;
//! - **links**: with DWARF enabled, blazesym follows `.gnu_debuglink`,
//!   `.gnu_debugaltlink`, `.debug_sup` and `<file>.dwp` by the names in the
//!   file, on the host, with plain `open` (a FIFO there hangs it). So its
//!   DWARF reader runs only on files without such sections, and on debug
//!   files nflame found itself ([`DebugFile::find`]: by build id under the
//!   host's `/usr/lib/debug`, or by `.gnu_debuglink` beside the binary
//!   inside the process's root, CRC checked);
//! - **paths**: blazesym is handed `/proc/self/fd/N` of the open file. Its
//!   cache is keyed by path and trusted (no re-`stat`), so each such file
//!   stays open as long as the blazesym instance that saw it
//!   ([`crate::SymbolCache`] holds it), and N is never reused meanwhile;
//! - **stability**: blazesym maps files into memory, and a mapped file
//!   truncated by whoever may write it kills the reader with SIGBUS. A file
//!   that is not root's in our own mount namespace ([`TargetFile::trusted`])
//!   is first copied into a sealed memfd (at most [`COPY_CAP`] bytes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nflame_procfs::elf::{self, ElfError, SectionRefusal, Segment, Summary};
use nflame_procfs::files::{self, FileError, OpenPolicy, Refusal, Root, TargetFile};
use rustc_hash::FxHashMap;

use crate::gopclntab::GoTable;

/// A file's identity: (device, inode).
pub(crate) type FileId = (u64, u64);

/// Most bytes of a file that is not [`TargetFile::trusted`] copied into
/// memory for blazesym; larger ones are skipped.
pub(crate) const COPY_CAP: u64 = 256 << 20;
/// Largest debug file found by `.gnu_debuglink` whose CRC is checked (and
/// that is used).
pub(crate) const DEBUG_LINK_CAP: u64 = 1 << 30;

/// Directories searched for detached debug files by build id (root's).
const BUILD_ID_DIRS: [&str; 2] = ["/usr/lib/debug/.build-id", "/lib/debug/.build-id"];
/// The host's directory of detached debug files (root's).
const DEBUG_DIR: &str = "/usr/lib/debug";

/// Section sizes checked before blazesym reads a file's symbols.
const SYMBOL_SECTIONS: [&str; 4] = [".symtab", ".dynsym", ".strtab", ".dynstr"];

/// Skip lines collected while symbolizing (`PATH (pid N): why`).
pub(crate) type Skips = Vec<String>;

/// A target's open file, shared by every process that maps it.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) file: TargetFile,
    /// The first process seen mapping it.
    pub(crate) pid: u32,
    /// That process was running when the file was opened.
    pub(crate) live: bool,
    /// The path it was mapped (or found) at, as that process sees it.
    pub(crate) module: PathBuf,
    /// Where blazesym reads it, and the sealed copy behind that path.
    mapped: OnceLock<Result<(Option<std::fs::File>, PathBuf), Refusal>>,
    facts: OnceLock<Facts>,
    debug: OnceLock<Option<DebugFile>>,
    go: OnceLock<Option<GoTable>>,
}

/// What is known of a file's ELF headers before any section is read.
#[derive(Debug)]
pub(crate) struct Facts {
    /// Its headers, or why they were not read.
    pub(crate) summary: Result<Summary, String>,
    /// Its symbol and string tables are within their caps.
    pub(crate) symbols: Result<(), SectionRefusal>,
    /// Every compressed section inflates to what it claims (checked on
    /// first need: it inflates them all once).
    compressed: OnceLock<Result<(), SectionRefusal>>,
}

impl Opened {
    pub(crate) fn new(file: TargetFile, pid: u32, live: bool, module: PathBuf) -> Opened {
        Opened {
            file,
            pid,
            live,
            module,
            mapped: OnceLock::new(),
            facts: OnceLock::new(),
            debug: OnceLock::new(),
            go: OnceLock::new(),
        }
    }

    /// Its detached debug file ([`DebugFile::find`]), looked for once.
    pub(crate) fn debug_file(&self, skips: &mut Skips) -> Option<&DebugFile> {
        self.debug
            .get_or_init(|| DebugFile::find(self, skips))
            .as_ref()
    }

    /// Its Go function table (`.gopclntab` within its cap), read once.
    pub(crate) fn go_table(&self, skips: &mut Skips) -> Option<&GoTable> {
        self.go
            .get_or_init(|| {
                let summary = self.facts().summary.as_ref().ok()?;
                match GoTable::from_target(&self.file, summary) {
                    Ok(t) => t,
                    Err(r) => {
                        self.skip(skips, r);
                        None
                    }
                }
            })
            .as_ref()
    }

    pub(crate) fn id(&self) -> FileId {
        (self.file.dev, self.file.ino)
    }

    /// `PATH (pid N)`, how skip lines name it.
    pub(crate) fn shown(&self) -> String {
        files::shown(self.pid, &self.module)
    }

    /// A skip line about this file.
    pub(crate) fn skip(&self, skips: &mut Skips, why: impl std::fmt::Display) {
        let line = format!("{}: {why}", self.shown());
        if !skips.contains(&line) {
            skips.push(line);
        }
    }

    /// The path to hand blazesym (see the module docs).
    pub(crate) fn blazesym_path(&self) -> Result<&Path, &Refusal> {
        self.mapped
            .get_or_init(|| {
                if self.file.trusted() {
                    return Ok((None, self.file.fd_path()));
                }
                match self.file.sealed_copy(COPY_CAP) {
                    Ok(copy) => {
                        use std::os::fd::AsRawFd;
                        let path = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
                        Ok((Some(copy), path))
                    }
                    Err(FileError::Refused(r)) => Err(r),
                    // Copying failed (no memfd?): read it in place.
                    Err(_) => Ok((None, self.file.fd_path())),
                }
            })
            .as_ref()
            .map(|(_, p)| p.as_path())
    }

    pub(crate) fn facts(&self) -> &Facts {
        self.facts.get_or_init(|| {
            let summary = match elf::summarize(&self.file) {
                Ok(s) => Ok(s),
                Err(ElfError::NotElf) => Err("not an ELF file".to_owned()),
                Err(e) => Err(format!("{e}")),
            };
            let symbols = match &summary {
                Ok(s) => s.check_sizes(self.file.size, &SYMBOL_SECTIONS),
                Err(_) => Ok(()),
            };
            Facts {
                summary,
                symbols,
                compressed: OnceLock::new(),
            }
        })
    }

    /// Whether blazesym may read this file at all (headers parsed, symbol
    /// tables within caps, a path for it). Why not: in `skips` for what was
    /// refused (`Err(None)`), or the reason of a plain failure (`Err(Some)`:
    /// not an ELF file).
    pub(crate) fn readable(&self, skips: &mut Skips) -> Result<&Path, Option<String>> {
        let facts = self.facts();
        match &facts.summary {
            Err(why) if why.starts_with("not an ELF") => return Err(Some(why.clone())),
            Err(why) => {
                self.skip(skips, why);
                return Err(None);
            }
            Ok(_) => {}
        }
        if let Err(r) = &facts.symbols {
            self.skip(skips, r);
            return Err(None);
        }
        match self.blazesym_path() {
            Ok(p) => Ok(p),
            Err(r) => {
                self.skip(skips, format_args!("not copied for reading: {r}"));
                Err(None)
            }
        }
    }

    /// Whether blazesym may read this file's own DWARF: it has no link
    /// sections (which blazesym would follow) and its compressed sections
    /// inflate to what they claim. Says why not in `skips` when `report`.
    pub(crate) fn dwarf_in_place(&self, skips: &mut Skips, report: bool) -> bool {
        let facts = self.facts();
        let Ok(summary) = &facts.summary else {
            return false;
        };
        let links = summary.links();
        if !links.is_empty() {
            // A debug link is resolved by nflame itself (DebugFile); the
            // others are refused.
            let others: Vec<&str> = links
                .into_iter()
                .filter(|l| *l != ".gnu_debuglink")
                .collect();
            if report && !others.is_empty() {
                self.skip(
                    skips,
                    format_args!(
                        "{}: DWARF not read, links from a target's file are not followed",
                        others.join(", ")
                    ),
                );
            }
            return false;
        }
        if !summary.has_dwarf() {
            return false;
        }
        let checked = facts.compressed.get_or_init(|| {
            summary
                .sections
                .iter()
                .filter(|s| s.name.starts_with(".debug_") || s.name.starts_with(".zdebug_"))
                .try_for_each(|s| {
                    summary.check_sizes(self.file.size, &[s.name.as_str()])?;
                    elf::check_compressed(&self.file, s)
                })
        });
        match checked {
            Ok(()) => true,
            Err(r) => {
                if report {
                    self.skip(skips, r);
                }
                false
            }
        }
    }
}

/// A stripped file's detached debug file, found by nflame (never by
/// blazesym): the file's PT_LOAD segments turn file offsets into the
/// virtual addresses the debug file's symbols use, and `aliases` name
/// addresses that several function symbols share.
#[derive(Debug)]
pub(crate) struct DebugFile {
    pub(crate) file: Arc<Opened>,
    segments: Vec<Segment>,
    /// Address → the function's own name, where aliases share the address.
    pub(crate) aliases: FxHashMap<u64, String>,
    /// Found under the host's debug directories (root's files): blazesym may
    /// follow the links in it (a dwz `.gnu_debugaltlink`).
    host: bool,
}

impl DebugFile {
    /// Finds the debug file of the stripped ELF file `target` (one without
    /// `.symtab`): by build id under the host's debug directories, else by
    /// its `.gnu_debuglink` (beside it, in `.debug/` beside it, under the
    /// host's `/usr/lib/debug`), CRC checked. What is refused on the way is
    /// said in `skips`.
    pub(crate) fn find(target: &Opened, skips: &mut Skips) -> Option<DebugFile> {
        let Ok(summary) = &target.facts().summary else {
            return None;
        };
        if summary.section(".symtab").is_some() {
            return None;
        }
        let (file, host) = match by_build_id(target, summary) {
            Some(f) => (f, true),
            None => by_debug_link(target, summary, skips)?,
        };
        let aliases = file
            .readable(skips)
            .ok()
            .and_then(|_| function_aliases(&file))
            .unwrap_or_default();
        Some(DebugFile {
            segments: summary.segments.clone(),
            aliases,
            file: Arc::new(file),
            host,
        })
    }

    /// The virtual address of file offset `offset` of the stripped file.
    pub(crate) fn virt(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.offset <= offset && offset - s.offset < s.size)
            .and_then(|s| s.addr.checked_add(offset - s.offset))
    }

    /// Whether blazesym may read its DWARF (see [`Opened::dwarf_in_place`];
    /// the host's debug files are root's and may link to others).
    pub(crate) fn dwarf_ok(&self, skips: &mut Skips) -> bool {
        if self.host {
            return self
                .file
                .facts()
                .summary
                .as_ref()
                .is_ok_and(Summary::has_dwarf);
        }
        self.file.dwarf_in_place(skips, true)
    }
}

fn by_build_id(target: &Opened, summary: &Summary) -> Option<Opened> {
    let id = summary.build_id.as_deref()?;
    let (first, rest) = id.split_first()?;
    let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    let root = Root::host().ok()?;
    BUILD_ID_DIRS.iter().find_map(|dir| {
        let path = PathBuf::from(format!("{dir}/{first:02x}/{hex}.debug"));
        let file = root.open(&path, &OpenPolicy::confined()).ok()?;
        Some(Opened::new(file, target.pid, target.live, path))
    })
}

/// Resolves a `.gnu_debuglink` the way debuggers do, without following its
/// name anywhere it should not lead: a plain file name only; beside the
/// binary and in `.debug/` beside it, inside the process's root (no links,
/// owned by root or the binary's owner); under the host's `/usr/lib/debug`.
/// The candidate must be a regular file whose CRC-32 is the one recorded.
fn by_debug_link(target: &Opened, summary: &Summary, skips: &mut Skips) -> Option<(Opened, bool)> {
    let (name, crc) = summary.debuglink.as_ref()?;
    let name = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
    if !files::is_plain_name(name) {
        target.skip(
            skips,
            format_args!(
                ".gnu_debuglink names {}, not a file name: not followed",
                name.display()
            ),
        );
        return None;
    }
    let dir = target.module.parent().unwrap_or(Path::new("/"));
    let beside = [dir.join(name), dir.join(".debug").join(name)];
    let root = if target.live {
        Root::of_process(target.pid).ok()
    } else {
        Root::host().ok()
    };
    let policy = OpenPolicy::no_links()
        .max_size(DEBUG_LINK_CAP)
        .owned_by(vec![target.file.uid]);
    let candidates = beside
        .into_iter()
        .map(|p| (p, false))
        .chain(std::iter::once((
            Path::new(DEBUG_DIR)
                .join(dir.strip_prefix("/").unwrap_or(dir))
                .join(name),
            true,
        )));
    for (path, host) in candidates {
        let opened = if host {
            Root::host()
                .map_err(FileError::Io)
                .and_then(|r| r.open(&path, &OpenPolicy::confined().max_size(DEBUG_LINK_CAP)))
        } else {
            match &root {
                Some(r) => r.open(&path, &policy),
                None => continue,
            }
        };
        let file = match opened {
            Ok(f) => f,
            Err(FileError::Refused(r)) => {
                skips.push(format!(
                    "{} (.gnu_debuglink of {}): {r}",
                    path.display(),
                    target.shown()
                ));
                continue;
            }
            Err(_) => continue,
        };
        if crc32(&file).ok() == Some(*crc) && (file.dev, file.ino) != target.id() {
            return Some((Opened::new(file, target.pid, target.live, path), host));
        }
    }
    None
}

/// The CRC-32 of a whole file, as `.gnu_debuglink` records it.
fn crc32(file: &TargetFile) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < file.size {
        let n = file.file().read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize())
}

/// For every address of `file` that several function symbols share, the
/// one to show: the function's definition rather than an export alias.
/// glibc, for one, defines `__libc_start_main_impl` and `__libc_write`
/// (local symbols, the names in its DWARF) and exports them as
/// `__libc_start_main@@GLIBC_2.34`, `write`, `__write`, with internal aliases
/// `__GI___libc_write` or `__libc_start_main_alias_1`. Preference: not
/// versioned (`@`), not an internal alias (`__GI_`, `_alias_N`), local over
/// global, then the first in the table. Mangled (C++, Rust) names are left to
/// blazesym, which demangles them. The symbol table was checked to be within
/// its cap.
fn function_aliases(file: &Opened) -> Option<FxHashMap<u64, String>> {
    use object::{Object, ObjectSymbol, SymbolKind};
    elf::with_object(&file.file, elf::SYMTAB_CAP, |elf| {
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
            let rank = u8::from(name.contains('@')) * 4
                + u8::from(internal) * 2
                + u8::from(!sym.is_local());
            by_addr
                .entry(sym.address())
                .or_default()
                .push((rank, name.to_owned()));
        }
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
            .collect()
    })
    .ok()
}
