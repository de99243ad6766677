//! A live process: is LuaJIT in it, which binary, where is it loaded, where is
//! its VM's `global_State`, and does the process agree with the layout read
//! from the binary.
//!
//! Reads `/proc/PID/maps`, the LuaJIT binary as the process sees it
//! (`/proc/PID/map_files`, else `/proc/PID/root`), and the process's memory
//! through `/proc/PID/mem` with bounded reads. It owns no BPF (that is
//! `probe`) and no naming (that is `namer`).

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::elf::Elf;
use crate::error::NotReadable;
use crate::layout::Layout;

/// GC64 references are 47-bit pointers.
pub(crate) const GCPTR_MASK: u64 = (1 << 47) - 1;

/// The largest LuaJIT binary read (an executable with LuaJIT linked in).
const MAX_BINARY: u64 = 256 << 20;
/// At most this much writable memory is scanned for the global_State.
const MAX_SCAN: u64 = 256 << 20;

/// What nflame found out about one process's LuaJIT.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LuaProcessInfo {
    /// The process (tgid).
    pub pid: u32,
    /// The binary holding LuaJIT, as the process names it.
    pub binary: PathBuf,
    /// Its layout.
    pub layout: Arc<Layout>,
    /// Load bias: runtime address = file virtual address + bias.
    pub bias: u64,
    /// The interpreter's code at run time.
    pub vm: Range<u64>,
    /// The main VM's global_State, when one exists yet (else the probe
    /// learns it from the first sample taken inside the VM).
    pub g: Option<u64>,
}

impl LuaProcessInfo {
    /// The VM's native code at run time: the interpreter, and its FFI call
    /// helper when the build has one. A sampled native frame here is the
    /// VM's (as is one in anonymous executable memory: a compiled trace).
    pub fn vm_code(&self) -> Vec<Range<u64>> {
        let mut v = vec![self.vm.clone()];
        if let Some(f) = &self.layout.vm_ffi_call {
            v.push(f.start.wrapping_add(self.bias)..f.end.wrapping_add(self.bias));
        }
        v
    }
}

/// A summary line: `LuaJIT (OpenResty luajit2) in /usr/lib/…/libluajit-5.1.so.2.1.0`.
impl std::fmt::Display for LuaProcessInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variant = match self.layout.variant {
            crate::layout::Variant::OpenRestyLuajit2 => "OpenResty luajit2",
            crate::layout::Variant::Upstream => "LuaJIT 2.1",
        };
        write!(f, "{variant} in {}", self.binary.display())?;
        if self.g.is_none() {
            write!(f, " (VM not created yet)")?;
        }
        Ok(())
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub(crate) struct MapLine {
    pub start: u64,
    pub end: u64,
    pub perms: [u8; 4],
    pub offset: u64,
    pub inode: u64,
    pub path: String,
}

pub(crate) fn parse_maps(text: &str) -> Vec<MapLine> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(6, ' ');
            let range = it.next()?;
            let perms = it.next()?.as_bytes();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let _dev = it.next()?;
            let inode = it.next()?.parse().ok()?;
            let path = it.next().unwrap_or("").trim_start().to_string();
            let (s, e) = range.split_once('-')?;
            Some(MapLine {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                perms: perms.get(..4)?.try_into().ok()?,
                offset,
                inode,
                path,
            })
        })
        .collect()
}

fn proc_err(pid: u32, what: &'static str) -> impl FnOnce(std::io::Error) -> NotReadable {
    move |source| NotReadable::Proc { pid, what, source }
}

/// Bounded reads of another process's memory.
#[derive(Debug)]
pub(crate) struct ProcMem {
    file: File,
}

impl ProcMem {
    pub(crate) fn open(pid: u32) -> Result<Self, NotReadable> {
        let file = File::open(format!("/proc/{pid}/mem")).map_err(proc_err(pid, "mem"))?;
        Ok(Self { file })
    }

    /// Fills `buf` from `addr`; false when any byte is unreadable.
    pub(crate) fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.len() > 1 << 20 || addr == 0 {
            return false;
        }
        matches!(self.file.read_at(buf, addr), Ok(n) if n == buf.len())
    }

    pub(crate) fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }

    pub(crate) fn u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b).then(|| u32::from_le_bytes(b))
    }

    pub(crate) fn gcref(&self, addr: u64) -> Option<u64> {
        self.u64(addr).map(|v| v & GCPTR_MASK)
    }
}

/// The mapping of the binary that holds LuaJIT: a `libluajit*.so`, else the
/// executable when it exports LuaJIT's API.
fn luajit_mapping(pid: u32, maps: &[MapLine]) -> Vec<&MapLine> {
    let libs: Vec<&MapLine> = maps.iter().filter(|m| is_luajit_lib(m)).collect();
    if !libs.is_empty() {
        return libs;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe = exe.as_ref().and_then(|p| p.to_str()).unwrap_or("");
    maps.iter()
        .filter(|m| !exe.is_empty() && m.path == exe)
        .collect()
}

/// Opens the binary behind `m` as the process sees it: the target's file
/// is hostile input, so it is opened the hardened way (`nflame-procfs`: the
/// mapped file itself through `map_files`, else its path inside the
/// process's root without following links, a regular file, the inode that
/// was mapped).
fn open_binary(pid: u32, m: &MapLine) -> Result<File, NotReadable> {
    let mapping = nflame_recording::Mapping {
        start: m.start,
        end: m.end,
        offset: m.offset,
        path: PathBuf::from(&m.path),
        dev: None,
        inode: Some(m.inode).filter(|&i| i != 0),
    };
    let opened =
        nflame_procfs::files::open_mapped(pid, true, &mapping).map_err(|e| NotReadable::Proc {
            pid,
            what: "map_files",
            source: std::io::Error::other(e.to_string()),
        })?;
    opened
        .file()
        .try_clone()
        .map_err(proc_err(pid, "map_files"))
}

/// Whether the executable behind `m` exports LuaJIT's API (`lua_pcall` in
/// its dynamic symbols), read without loading the whole file: most
/// executables a system-wide recording sees have no LuaJIT.
fn exports_lua_api(pid: u32, m: &MapLine) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(file) = open_binary(pid, m) else {
        return false;
    };
    if file.metadata().map_or(true, |md| md.len() > MAX_BINARY) {
        return false;
    }
    let cache = object::read::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    let found = elf
        .dynamic_symbols()
        .any(|s| s.is_definition() && s.name() == Ok("lua_pcall"));
    found
}

/// Whether process `pid` has LuaJIT: a mapped `libluajit*.so`, or an
/// executable exporting LuaJIT's API. Cheap (its maps, and at most the
/// executable's dynamic symbols); says nothing of whether nflame can read
/// that build.
pub fn has_luajit(pid: u32) -> bool {
    let Ok(text) = read_maps(pid) else {
        return false;
    };
    let maps = parse_maps(&text);
    let lj = luajit_mapping(pid, &maps);
    match lj.first() {
        Some(m) if is_luajit_lib(m) => true,
        Some(m) => exports_lua_api(pid, m),
        None => false,
    }
}

fn read_maps(pid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
}

fn is_luajit_lib(m: &MapLine) -> bool {
    let name = m.path.rsplit('/').next().unwrap_or("");
    name.starts_with("libluajit") && name.contains(".so")
}

/// Reads the binary behind `m` as the process sees it.
fn read_binary(pid: u32, m: &MapLine) -> Result<Vec<u8>, NotReadable> {
    let file = open_binary(pid, m)?;
    let mut data = Vec::new();
    file.take(MAX_BINARY)
        .read_to_end(&mut data)
        .map_err(proc_err(pid, "map_files"))?;
    Ok(data)
}

/// Finds LuaJIT in process `pid` and reads its layout; `layouts` caches
/// layouts by (inode, path) so that workers of one binary decode it once,
/// and executables without LuaJIT are read once.
pub(crate) fn inspect(
    pid: u32,
    layouts: &mut rustc_hash::FxHashMap<(u64, String), Option<Arc<Layout>>>,
) -> Result<LuaProcessInfo, NotReadable> {
    let maps_text = read_maps(pid).map_err(proc_err(pid, "maps"))?;
    let maps = parse_maps(&maps_text);
    let lj = luajit_mapping(pid, &maps);
    let first = lj.first().ok_or(NotReadable::NoLuaJit)?;
    let key = (first.inode, first.path.clone());
    let layout = match layouts.get(&key) {
        Some(Some(l)) => l.clone(),
        // An executable already found not to contain LuaJIT.
        Some(None) => return Err(NotReadable::NoLuaJit),
        // An executable that does not export LuaJIT's API: said without
        // reading all of it.
        None if !is_luajit_lib(first) && !exports_lua_api(pid, first) => {
            layouts.insert(key, None);
            return Err(NotReadable::NoLuaJit);
        }
        None => {
            let data = read_binary(pid, first)?;
            let l = match Layout::from_elf(&data) {
                Err(NotReadable::MissingSymbol { .. }) if !first.path.contains("luajit") => {
                    layouts.insert(key, None);
                    return Err(NotReadable::NoLuaJit);
                }
                r => Arc::new(r?),
            };
            layouts.insert(key, Some(l.clone()));
            l
        }
    };
    let data = read_binary(pid, first)?;
    // Load bias from the executable mapping.
    let elf = Elf::parse(&data)?;
    let text = lj
        .iter()
        .find(|m| m.perms[2] == b'x')
        .ok_or_else(|| NotReadable::LiveCheck {
            why: "the LuaJIT binary has no executable mapping".into(),
        })?;
    let vaddr = elf
        .vaddr_of_offset(text.offset)
        .ok_or_else(|| NotReadable::LiveCheck {
            why: "mapping offset outside the binary's segments".into(),
        })?;
    let bias = text.start.wrapping_sub(vaddr);
    let vm = layout.vm.start.wrapping_add(bias)..layout.vm.end.wrapping_add(bias);
    if !lj
        .iter()
        .any(|m| m.perms[2] == b'x' && m.start <= vm.start && vm.end <= m.end)
    {
        return Err(NotReadable::LiveCheck {
            why: format!("interpreter {vm:#x?} is not in an executable mapping"),
        });
    }
    let mem = ProcMem::open(pid)?;
    // The first candidate the live checks accept: a heap can hold other
    // pairs of pointers that look like a lua_State and its G.
    let mut rejected = None;
    let g = find_g(&mem, &maps, &layout, |g| {
        match check_live(&mem, &layout, g, &vm) {
            Ok(()) => true,
            Err(e) => {
                rejected.get_or_insert(e);
                false
            }
        }
    });
    if g.is_none() {
        if let Some(e) = rejected {
            return Err(e);
        }
    }
    Ok(LuaProcessInfo {
        pid,
        binary: PathBuf::from(&first.path),
        layout,
        bias,
        vm,
        g,
    })
}

/// The main VM's global_State: the one X in writable private memory with
/// `*(X + glref) = G`, `0 < G - X <= 0x100` (GG_State: the main lua_State
/// then G) and `*(G + mainthref) = X`, that `accept` agrees with.
pub(crate) fn find_g(
    mem: &ProcMem,
    maps: &[MapLine],
    layout: &Layout,
    mut accept: impl FnMut(u64) -> bool,
) -> Option<u64> {
    let mut regions: Vec<&MapLine> = maps
        .iter()
        .filter(|m| m.perms[0] == b'r' && m.perms[1] == b'w' && m.perms[3] == b'p')
        .filter(|m| m.path.is_empty() || m.path == "[heap]")
        .collect();
    // LuaJIT's allocator maps anonymous memory: look there first.
    regions.sort_by_key(|m| (m.path == "[heap]", m.start));
    let glref = u64::from(layout.l_glref);
    let mut budget = MAX_SCAN;
    let mut buf = vec![0u8; 1 << 20];
    for m in regions {
        let mut addr = m.start;
        while addr < m.end && budget > 0 {
            let len = (m.end - addr).min(buf.len() as u64).min(budget) as usize;
            budget -= len as u64;
            if !mem.read(addr, &mut buf[..len]) {
                break;
            }
            for (i, w) in buf[..len].chunks_exact(8).enumerate() {
                let at = addr + i as u64 * 8;
                let Some(x) = at.checked_sub(glref) else {
                    continue;
                };
                let g = u64::from_le_bytes(w.try_into().unwrap_or_default()) & GCPTR_MASK;
                if g > x
                    && g - x <= 0x100
                    && mem.gcref(g + u64::from(layout.g_mainthref)) == Some(x)
                    && accept(g)
                {
                    return Some(g);
                }
            }
            addr += len as u64;
        }
    }
    None
}

/// Checks the layout against a live global_State.
pub(crate) fn check_live(
    mem: &ProcMem,
    l: &Layout,
    g: u64,
    vm: &Range<u64>,
) -> Result<(), NotReadable> {
    let bad = |why: String| Err(NotReadable::LiveCheck { why });
    // The dispatch table's first entries are interpreter handlers.
    for op in 0..8u64 {
        let h = mem.u64(g + u64::from(l.g2disp) + op * 8);
        if !h.is_some_and(|h| vm.contains(&h)) {
            return bad(format!(
                "dispatch entry {op} at G+{:#x} is {h:#x?}, not in the interpreter",
                l.g2disp
            ));
        }
    }
    let vmstate = mem.u32(g + u64::from(l.g_vmstate)).map(|v| v as i32);
    if !vmstate.is_some_and(|v| (-7..1 << 16).contains(&v)) {
        return bad(format!("G->vmstate is {vmstate:?}"));
    }
    let main = mem.gcref(g + u64::from(l.g_mainthref)).unwrap_or(0);
    for (what, th) in [
        ("main thread", main),
        (
            "current thread",
            mem.gcref(g + u64::from(l.g_cur_l)).unwrap_or(0),
        ),
    ] {
        if th == 0 {
            continue;
        }
        if mem.gcref(th + u64::from(l.l_glref)) != Some(g) {
            return bad(format!("the {what}'s glref is not G"));
        }
        let stack = mem.gcref(th + u64::from(l.l_stack)).unwrap_or(0);
        let maxstack = mem.gcref(th + u64::from(l.l_maxstack)).unwrap_or(0);
        let base = mem.gcref(th + u64::from(l.l_base)).unwrap_or(0);
        if !(stack < maxstack && maxstack - stack < 1 << 30 && base > stack && base <= maxstack) {
            return bad(format!(
                "the {what}'s stack {stack:#x}, base {base:#x}, maxstack {maxstack:#x} are not ordered"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse_maps(
            "7f00-8f00 r-xp 00009000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0\n\
             9000-a000 rw-p 00000000 00:00 0 \n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].start, m[0].end, m[0].offset, m[0].inode),
            (0x7f00, 0x8f00, 0x9000, 1234)
        );
        assert_eq!(&m[0].perms, b"r-xp");
        assert!(m[1].path.is_empty());
    }
}
