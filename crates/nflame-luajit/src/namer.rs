//! Naming Lua frames: [`Namer`] turns a [`RawLuaStack`] into a [`LuaStack`]
//! of named frames, reading prototypes, strings and bytecode from
//! `/proc/PID/mem` (bounded reads) while the process runs.
//!
//! - A Lua function is `name@chunk:firstline`: the name its caller used, read
//!   from the caller's bytecode at the call site (as LuaJIT's
//!   `lj_debug_funcname`: local, global, field, upvalue), else the last name
//!   seen for that prototype, else `?`; the chunk as the program gave it,
//!   without the `@` that marks a file (`work_a@/srv/app/two.lua:1`). A main
//!   chunk is its chunk name exactly as given (`=content_by_lua(nginx.conf:20)`).
//! - A fast function (a builtin) is its library name (`string.format`), from
//!   the live `package.loaded` tables of that VM and its global tables
//!   (`ngx`); so is a C function called from Lua when they hold it
//!   (`ngx.say`), else it is left as an address for the symbolizer.
//! - Frames from the Lua stack end with the marker `_[l]`, and the function a
//!   compiled trace is running with `_[lj]` (see [`LuaFrame::folded`]).
//!
//! Prototypes are read once and cached by address; a cached prototype is
//! re-checked (one read of its header) once per [`Namer::new_round`], so a
//! freed and reused address is noticed, and a new global_State (the process
//! made a new VM, e.g. after a reload) drops the process's caches.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::bytecode::{call_name, Opcodes, ProtoView};
use crate::error::NotReadable;
use crate::layout::Layout;
use crate::process::{LuaProcessInfo, ProcMem, GCPTR_MASK};
use crate::record::{RawFrame, RawLuaStack, VmState, WalkStatus};

/// GC object type bytes (`gct` = `~LJ_T*`, e.g. `~LJ_TSTR` = 4).
const GCT_STR: u8 = 4;
const GCT_PROTO: u8 = 7;
const GCT_FUNC: u8 = 8;
const GCT_TAB: u8 = 11;
/// GC64 TValue tags (`itype`, as the sign-extended top 17 bits).
const ITYPE_STR: i64 = -5;
const ITYPE_FUNC: i64 = -9;
const ITYPE_TAB: i64 = -12;

/// Longest string read (chunk names, constants).
const MAX_STR: u32 = 4096;
/// Largest bytecode read for one prototype (instructions).
const MAX_BC: u32 = 1 << 18;

/// One Lua frame, named.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LuaFrame {
    /// What it is.
    pub kind: LuaFrameKind,
    /// Whether a compiled trace was running it.
    pub compiled: bool,
    /// The line being run, when known (the leaf in the interpreter, and
    /// every caller).
    pub line: Option<u32>,
}

/// The kinds of Lua frames.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LuaFrameKind {
    /// A Lua function.
    Lua {
        /// The name its caller used, if known.
        name: Option<Arc<str>>,
        /// The chunk name as given to `load` (`@file`, `=name`, or source).
        chunk: Arc<str>,
        /// The line it is defined at; 0 for a main chunk.
        firstline: u32,
        /// The GCproto's address.
        proto: u64,
    },
    /// A fast function (a builtin), by its library name, or `builtin#ID`.
    Builtin {
        /// e.g. `string.format`.
        name: Arc<str>,
    },
    /// A C function called from Lua: its address (for the symbolizer), and
    /// its Lua name when a library table of the VM holds it (`ngx.say`).
    CFunction {
        /// The function's address.
        addr: u64,
        /// Its Lua name (`module.key`, or a global's name).
        name: Option<Arc<str>>,
    },
    /// A frame nflame could not read (never named by a guess).
    Unreadable,
}

/// Longest chunk name shown.
const MAX_CHUNK_SHOWN: usize = 200;

/// A chunk name as shown, like LuaJIT's `lj_debug_shortsrc`: a file
/// (`@path`) or a name the program chose (`=content_by_lua(nginx.conf:20)`)
/// as given (the start of a long one cut, with `...`), source code loaded
/// from a string as `[string "its first line..."]`.
fn short_chunk(chunk: &str) -> String {
    let cut = |s: &str, max: usize| -> (String, bool) {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        (s[..end].to_string(), end < s.len())
    };
    match chunk.as_bytes().first() {
        Some(b'@') | Some(b'=') => {
            if chunk.len() <= MAX_CHUNK_SHOWN {
                return chunk.to_string();
            }
            // Keep the end of a path (the file), the start of a name.
            if chunk.starts_with('@') {
                let mut start = chunk.len() - (MAX_CHUNK_SHOWN - 4);
                while !chunk.is_char_boundary(start) {
                    start += 1;
                }
                format!("@...{}", &chunk[start..])
            } else {
                format!("{}...", cut(chunk, MAX_CHUNK_SHOWN).0)
            }
        }
        _ => {
            let first = chunk.lines().next().unwrap_or("");
            let (line, more) = cut(first, 40);
            let dots = if more || first.len() < chunk.trim_end().len() {
                "..."
            } else {
                ""
            };
            format!("[string \"{line}{dots}\"]")
        }
    }
}

impl LuaFrame {
    /// The frame as a folded-stack frame: `name@chunk:firstline_[l]`
    /// (`_[lj]` when compiled), with `lines` ` line N` before the marker;
    /// a C function gives its Lua name (`ngx.say_[l]`), or `None` without
    /// one (the symbolizer names its address).
    pub fn folded(&self, lines: bool) -> Option<String> {
        let marker = if self.compiled { "_[lj]" } else { "_[l]" };
        let mut s = match &self.kind {
            LuaFrameKind::Lua {
                name,
                chunk,
                firstline,
                ..
            } => {
                let shown = short_chunk(chunk);
                if *firstline == 0 {
                    shown
                } else {
                    let file = shown.strip_prefix('@').unwrap_or(&shown);
                    format!("{}@{file}:{firstline}", name.as_deref().unwrap_or("?"))
                }
            }
            LuaFrameKind::Builtin { name } => name.to_string(),
            LuaFrameKind::CFunction {
                name: Some(name), ..
            } => name.to_string(),
            LuaFrameKind::CFunction { name: None, .. } => return None,
            LuaFrameKind::Unreadable => "[lua: unreadable]".to_string(),
        };
        if let (true, Some(line)) = (lines, self.line) {
            s.push_str(&format!(" line {line}"));
        }
        s.push_str(marker);
        Some(s)
    }

    /// Whether this is a main chunk (an entry chunk: a file, or e.g.
    /// OpenResty's `content_by_lua` block).
    pub fn is_main_chunk(&self) -> bool {
        matches!(self.kind, LuaFrameKind::Lua { firstline: 0, .. })
    }
}

/// A sample's Lua stack, named.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LuaStack {
    /// Process.
    pub tgid: u32,
    /// Thread.
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub time_ns: u64,
    /// What the VM was doing.
    pub vmstate: VmState,
    /// How the walk ended ([`WalkStatus::NotRunning`]: the thread was in
    /// the process's own C code, so there are no Lua frames).
    pub status: WalkStatus,
    /// The user instruction pointer of the sample.
    pub ip: u64,
    /// Frames, outermost first.
    pub frames: Vec<LuaFrame>,
    /// Whether the walk reached the bottom of the Lua stack and every frame
    /// was read.
    pub complete: bool,
}

/// A prototype read from the process.
#[derive(Debug)]
struct Proto {
    header: Vec<u8>,
    chunk: Arc<str>,
    firstline: u32,
    bc_start: u64,
    bc: Vec<u32>,
    /// Absolute line of each instruction.
    lines: Vec<u32>,
    k: u64,
    uvnames: Vec<String>,
    varinfo: Vec<u8>,
    checked_round: u64,
}

/// Per-process naming state.
#[derive(Debug)]
struct ProcNames {
    mem: ProcMem,
    layout: Arc<Layout>,
    ops: Option<Opcodes>,
    g: u64,
    protos: FxHashMap<u64, Option<Arc<Proto>>>,
    call_names: FxHashMap<(u64, u64), Option<Arc<str>>>,
    learned: FxHashMap<u64, Arc<str>>,
    builtins: Option<LibraryNames>,
    strings: FxHashMap<u64, Option<Arc<str>>>,
}

/// Library functions by their Lua names, read from the VM's tables: fast
/// functions by id, C functions (`ngx.say`'s) by address.
#[derive(Debug, Default)]
struct LibraryNames {
    fast: FxHashMap<u8, Arc<str>>,
    c: FxHashMap<u64, Arc<str>>,
}

/// Names Lua stacks of registered processes.
#[derive(Debug, Default)]
pub struct Namer {
    procs: FxHashMap<u32, ProcNames>,
    round: u64,
}

/// Function kinds read from a GCfunc.
enum Func {
    Lua(u64),
    C(u64),
    Fast(u8),
}

struct View<'a> {
    p: &'a Proto,
    names: &'a ProcNames,
}

impl ProtoView for View<'_> {
    fn bc(&self) -> &[u32] {
        &self.p.bc
    }
    fn kstr(&self, d: u32) -> Option<String> {
        let r = self
            .names
            .mem
            .gcref(self.p.k.checked_sub((u64::from(d) + 1) * 8)?)?;
        self.names.read_str(r)
    }
    fn upvalue_name(&self, n: u32) -> Option<String> {
        self.p.uvnames.get(n as usize).cloned()
    }
    fn local_name(&self, pc: u32, slot: u32) -> Option<String> {
        local_name(&self.p.varinfo, pc, slot)
    }
}

/// Names of the special (internal) variables, by code 1..6.
const SPECIAL_VARS: [&str; 6] = [
    "(for index)",
    "(for limit)",
    "(for step)",
    "(for generator)",
    "(for state)",
    "(for control)",
];

/// The local variable in `slot` at `pc`, from a prototype's varinfo:
/// entries of (name or special code, start pc delta, length), as ULEB128.
fn local_name(v: &[u8], pc: u32, slot: u32) -> Option<String> {
    let mut p = 0usize;
    let mut last = 0u32;
    let mut slot = slot;
    let uleb = |p: &mut usize| -> Option<u32> {
        let mut r = 0u32;
        for shift in (0..35).step_by(7) {
            let b = *v.get(*p)?;
            *p += 1;
            r |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(r);
            }
        }
        None
    };
    for _ in 0..v.len() {
        let code = *v.get(p)?;
        let name = if code < 7 {
            if code == 0 {
                return None;
            }
            p += 1;
            SPECIAL_VARS[(code - 1) as usize].to_string()
        } else {
            let end = p + v[p..].iter().position(|&b| b == 0)?;
            let n = String::from_utf8_lossy(&v[p..end]).into_owned();
            p = end + 1;
            n
        };
        last = last.checked_add(uleb(&mut p)?)?;
        let start = last;
        if start > pc {
            return None;
        }
        let end = start.checked_add(uleb(&mut p)?)?;
        if pc < end {
            if slot == 0 {
                return Some(name);
            }
            slot -= 1;
        }
    }
    None
}

impl ProcNames {
    fn read_str(&self, addr: u64) -> Option<String> {
        let l = &self.layout.proto;
        let mut head = [0u8; 0x18];
        if !self.mem.read(addr, &mut head) || head[9] != GCT_STR {
            return None;
        }
        let len = u32::from_le_bytes(
            head[l.str_len as usize..l.str_len as usize + 4]
                .try_into()
                .ok()?,
        );
        if len > MAX_STR {
            return None;
        }
        let mut buf = vec![0u8; len as usize + 1];
        if !self.mem.read(addr + u64::from(l.str_data), &mut buf) || buf[len as usize] != 0 {
            return None; // LuaJIT strings are NUL-terminated: a misread otherwise
        }
        buf.pop();
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    fn string(&mut self, addr: u64) -> Option<Arc<str>> {
        if let Some(s) = self.strings.get(&addr) {
            return s.clone();
        }
        let s: Option<Arc<str>> = self.read_str(addr).map(Into::into);
        self.strings.insert(addr, s.clone());
        s
    }

    /// A function as the probe read it at sample time.
    fn frame_func(&self, f: &RawFrame) -> Option<Func> {
        if f.gct != GCT_FUNC {
            return None;
        }
        match f.ffid {
            0 => Some(Func::Lua(
                f.code.checked_sub(u64::from(self.layout.proto.size))?,
            )),
            1 => Some(Func::C(f.code)),
            ff => Some(Func::Fast(ff)),
        }
    }

    /// A function read now (for the VM's library tables).
    fn func(&self, addr: u64) -> Option<Func> {
        let l = &self.layout;
        let mut b = [0u8; 0x30];
        if !self.mem.read(addr, &mut b) || b[9] != GCT_FUNC {
            return None;
        }
        let word = |o: u32| {
            u64::from_le_bytes(b[o as usize..o as usize + 8].try_into().unwrap_or_default())
        };
        match b[l.func_ffid as usize] {
            0 => Some(Func::Lua(
                word(l.func_pc).checked_sub(u64::from(l.proto.size))?,
            )),
            1 => Some(Func::C(word(l.func_cfunc))),
            ff => Some(Func::Fast(ff)),
        }
    }

    fn read_proto(&mut self, addr: u64) -> Option<Proto> {
        let l = self.layout.proto;
        let mut header = vec![0u8; l.size as usize];
        if !self.mem.read(addr, &mut header) || header[9] != GCT_PROTO {
            return None;
        }
        let u32_at = |o: u32| {
            u32::from_le_bytes(
                header[o as usize..o as usize + 4]
                    .try_into()
                    .unwrap_or_default(),
            )
        };
        let u64_at = |o: u32| {
            u64::from_le_bytes(
                header[o as usize..o as usize + 8]
                    .try_into()
                    .unwrap_or_default(),
            )
        };
        let sizebc = u32_at(l.sizebc);
        if sizebc == 0 || sizebc > MAX_BC {
            return None;
        }
        let chunk = self.string(u64_at(l.chunkname) & GCPTR_MASK)?;
        let firstline = u32_at(l.firstline);
        let numline = u32_at(l.numline);
        let bc_start = addr + u64::from(l.size);
        let mut raw = vec![0u8; sizebc as usize * 4];
        if !self.mem.read(bc_start, &mut raw) {
            return None;
        }
        let bc: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if let Some(ops) = &self.ops {
            if !ops.is_func_header(bc[0] as u8) {
                return None;
            }
        }
        // Line info: one entry per instruction after the header, relative to firstline.
        let lineinfo = u64_at(l.lineinfo) & GCPTR_MASK;
        let width = if numline < 256 {
            1
        } else if numline < 65536 {
            2
        } else {
            4
        };
        let mut lines = vec![firstline];
        if lineinfo != 0 && sizebc > 1 {
            let mut li = vec![0u8; (sizebc as usize - 1) * width];
            if self.mem.read(lineinfo, &mut li) {
                lines.extend(li.chunks_exact(width).map(|c| {
                    let rel = match width {
                        1 => u32::from(c[0]),
                        2 => u32::from(u16::from_le_bytes([c[0], c[1]])),
                        _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    };
                    firstline.saturating_add(rel)
                }));
            }
        }
        // Upvalue names: NUL-terminated, sizeuv of them.
        let sizeuv = header[l.sizeuv as usize] as usize;
        let mut uvnames = Vec::new();
        let uvinfo = u64_at(l.uvinfo) & GCPTR_MASK;
        if uvinfo != 0 && sizeuv > 0 {
            let want = 1024.min(sizeuv * 64);
            let mut b = vec![0u8; want];
            let n = [want, 256, 64, 16]
                .into_iter()
                .filter(|&n| n <= want)
                .find(|&n| self.mem.read(uvinfo, &mut b[..n]))
                .unwrap_or(0);
            uvnames = b[..n]
                .split(|&c| c == 0)
                .take(sizeuv)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
        }
        let varinfo_ptr = u64_at(l.varinfo) & GCPTR_MASK;
        let k = u64_at(l.k) & GCPTR_MASK;
        let mut varinfo = Vec::new();
        if varinfo_ptr != 0 {
            // Bounded: names plus two ULEB128s per variable.
            let mut b = vec![0u8; 4096];
            for len in [4096usize, 1024, 256, 64] {
                if self.mem.read(varinfo_ptr, &mut b[..len]) {
                    varinfo = b[..len].to_vec();
                    break;
                }
            }
        }
        Some(Proto {
            header,
            chunk,
            firstline,
            bc_start,
            bc,
            lines,
            k,
            uvnames,
            varinfo,
            checked_round: 0,
        })
    }

    fn proto(&mut self, addr: u64, round: u64) -> Option<Arc<Proto>> {
        if let Some(cached) = self.protos.get(&addr) {
            match cached {
                Some(p) if p.checked_round == round => return Some(p.clone()),
                Some(p) => {
                    // Re-check once per round: a freed prototype's address may be reused.
                    let mut h = vec![0u8; p.header.len()];
                    if self.mem.read(addr, &mut h) && h == p.header {
                        let mut q = Proto { ..clone_proto(p) };
                        q.checked_round = round;
                        let q = Arc::new(q);
                        self.protos.insert(addr, Some(q.clone()));
                        return Some(q);
                    }
                    self.call_names.retain(|(pt, _), _| *pt != addr);
                    self.learned.remove(&addr);
                }
                None => return None,
            }
        }
        let p = self.read_proto(addr).map(|mut p| {
            p.checked_round = round;
            Arc::new(p)
        });
        self.protos.insert(addr, p.clone());
        p
    }

    /// The name `caller` used at the call instruction before `ret_pc`.
    fn call_site_name(
        &mut self,
        caller: &Arc<Proto>,
        caller_addr: u64,
        ret_pc: u64,
    ) -> Option<Arc<str>> {
        if let Some(n) = self.call_names.get(&(caller_addr, ret_pc)) {
            return n.clone();
        }
        let pos = ret_pc.checked_sub(caller.bc_start)? / 4;
        let pos = usize::try_from(pos).ok()?.checked_sub(1)?;
        let ops = self.ops.as_ref()?;
        let name = {
            let ins = *caller.bc.get(pos)?;
            if !ops.is_call(ins as u8) {
                None
            } else {
                call_name(
                    ops,
                    &View {
                        p: caller,
                        names: self,
                    },
                    pos,
                )
                .map(|n| Arc::from(n.text()))
            }
        };
        self.call_names.insert((caller_addr, ret_pc), name.clone());
        name
    }

    fn library(&mut self) -> &LibraryNames {
        if self.builtins.is_none() {
            self.builtins = Some(self.read_builtins());
        }
        self.builtins.get_or_insert_with(LibraryNames::default)
    }

    fn builtin(&mut self, ffid: u8) -> Arc<str> {
        self.library()
            .fast
            .get(&ffid)
            .cloned()
            .unwrap_or_else(|| format!("builtin#{ffid}").into())
    }

    /// The Lua name of the C function at `addr` (`ngx.say`), when a library
    /// table of the VM holds it.
    fn c_function(&mut self, addr: u64) -> Option<Arc<str>> {
        self.library().c.get(&addr).cloned()
    }

    /// The hash part of table `t`: (key, value) TValues.
    fn table_nodes(&self, t: u64) -> Vec<(u64, u64)> {
        let mut h = [0u8; 0x40];
        if !self.mem.read(t, &mut h) || h[9] != GCT_TAB {
            return Vec::new();
        }
        let node = u64::from_le_bytes(h[0x28..0x30].try_into().unwrap_or_default()) & GCPTR_MASK;
        let hmask = u32::from_le_bytes(h[0x34..0x38].try_into().unwrap_or_default());
        if hmask >= 1 << 14 {
            return Vec::new();
        }
        let n = hmask as usize + 1;
        let mut b = vec![0u8; n * 24];
        if !self.mem.read(node, &mut b) {
            return Vec::new();
        }
        b.chunks_exact(24)
            .map(|c| {
                let val = u64::from_le_bytes(c[0..8].try_into().unwrap_or_default());
                let key = u64::from_le_bytes(c[8..16].try_into().unwrap_or_default());
                (key, val)
            })
            .collect()
    }

    fn tag(v: u64) -> i64 {
        (v as i64) >> 47
    }

    /// Fast function ids to names, from this VM's `package.loaded`: the
    /// registry is the table TValue in global_State between mainthref and
    /// cur_L whose hash part holds `_LOADED`.
    fn read_builtins(&mut self) -> LibraryNames {
        let mut out = LibraryNames::default();
        let l = self.layout.clone();
        let mut loaded = None;
        for off in ((l.g_mainthref + 8)..l.g_cur_l).step_by(8) {
            let Some(v) = self.mem.u64(self.g + u64::from(off)) else {
                continue;
            };
            if Self::tag(v) != ITYPE_TAB {
                continue;
            }
            for (k, val) in self.table_nodes(v & GCPTR_MASK) {
                if Self::tag(k) == ITYPE_STR
                    && Self::tag(val) == ITYPE_TAB
                    && self.string(k & GCPTR_MASK).as_deref() == Some("_LOADED")
                {
                    loaded = Some(val & GCPTR_MASK);
                }
            }
            if loaded.is_some() {
                break;
            }
        }
        let Some(loaded) = loaded else { return out };
        let mut modules: Vec<(Arc<str>, u64)> = Vec::new();
        for (k, v) in self.table_nodes(loaded) {
            if Self::tag(k) == ITYPE_STR && Self::tag(v) == ITYPE_TAB {
                if let Some(name) = self.string(k & GCPTR_MASK) {
                    modules.push((name, v & GCPTR_MASK));
                }
            }
        }
        // Global tables that are no module (OpenResty's `ngx`), by their
        // global name.
        if let Some(&(_, g)) = modules.iter().find(|(n, _)| &**n == "_G") {
            for (k, v) in self.table_nodes(g) {
                if Self::tag(k) != ITYPE_STR || Self::tag(v) != ITYPE_TAB {
                    continue;
                }
                let t = v & GCPTR_MASK;
                if modules.iter().any(|(_, m)| *m == t) {
                    continue;
                }
                if let Some(name) = self.string(k & GCPTR_MASK) {
                    modules.push((name, t));
                }
            }
        }
        // Library tables first, so `string.format` wins over a global alias.
        modules.sort_by_key(|(n, _)| (&**n == "_G", n.clone()));
        for (module, t) in modules.into_iter().take(256) {
            for (k, v) in self.table_nodes(t) {
                if Self::tag(k) != ITYPE_STR || Self::tag(v) != ITYPE_FUNC {
                    continue;
                }
                let func = match self.func(v & GCPTR_MASK) {
                    Some(f @ (Func::Fast(_) | Func::C(_))) => f,
                    _ => continue,
                };
                let Some(key) = self.string(k & GCPTR_MASK) else {
                    continue;
                };
                let name = if &*module == "_G" {
                    key.to_string()
                } else {
                    format!("{module}.{key}")
                };
                match func {
                    Func::Fast(ff) => {
                        out.fast.entry(ff).or_insert_with(|| name.into());
                    }
                    Func::C(addr) => {
                        out.c.entry(addr).or_insert_with(|| name.into());
                    }
                    Func::Lua(_) => {}
                }
            }
        }
        out
    }
}

fn clone_proto(p: &Proto) -> Proto {
    Proto {
        header: p.header.clone(),
        chunk: p.chunk.clone(),
        firstline: p.firstline,
        bc_start: p.bc_start,
        bc: p.bc.clone(),
        lines: p.lines.clone(),
        k: p.k,
        uvnames: p.uvnames.clone(),
        varinfo: p.varinfo.clone(),
        checked_round: p.checked_round,
    }
}

impl Proto {
    /// The line of the instruction before `pc` (the one being run: a return
    /// PC or the interpreter's PC both point just past it).
    fn line_before(&self, pc: u64) -> Option<u32> {
        let pos = (pc.checked_sub(self.bc_start)? / 4).checked_sub(1)?;
        self.lines.get(usize::try_from(pos).ok()?).copied()
    }
}

impl Namer {
    /// An empty namer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts naming process `info.pid` (after [`LuaProbe::add_process`](crate::LuaProbe::add_process)).
    pub fn add_process(&mut self, info: &LuaProcessInfo) -> Result<(), NotReadable> {
        let mem = ProcMem::open(info.pid)?;
        self.procs.insert(
            info.pid,
            ProcNames {
                mem,
                layout: info.layout.clone(),
                ops: Opcodes::for_funcc(info.layout.bc_funcc),
                g: info.g.unwrap_or(0),
                protos: FxHashMap::default(),
                call_names: FxHashMap::default(),
                learned: FxHashMap::default(),
                builtins: None,
                strings: FxHashMap::default(),
            },
        );
        Ok(())
    }

    /// Forgets a process.
    pub fn remove_process(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// Starts a new round: cached prototypes are re-checked once before
    /// their next use (call once per drain of the probe).
    pub fn new_round(&mut self) {
        self.round += 1;
    }

    /// Names one sample's Lua stack. Frames that cannot be read become
    /// [`LuaFrameKind::Unreadable`]; a process not added gives no frames.
    pub fn resolve(&mut self, raw: &RawLuaStack) -> LuaStack {
        let mut out = LuaStack {
            tgid: raw.tgid,
            tid: raw.tid,
            time_ns: raw.time_ns,
            vmstate: raw.vmstate,
            status: raw.status,
            ip: raw.ip,
            frames: Vec::new(),
            complete: false,
        };
        let round = self.round;
        let Some(p) = self.procs.get_mut(&raw.tgid) else {
            return out;
        };
        if raw.g != 0 && raw.g != p.g {
            // A new VM: nothing cached for the old one holds.
            p.g = raw.g;
            p.protos.clear();
            p.call_names.clear();
            p.learned.clear();
            p.builtins = None;
            p.strings.clear();
        }
        // Logical frames: a vararg function's frame and its original frame
        // below are one call; the original's link is the call's.
        let mut logical: Vec<(RawFrame, u64)> = Vec::with_capacity(raw.frames.len());
        let mut merge = false;
        for f in &raw.frames {
            if merge {
                if let Some(last) = logical.last_mut() {
                    last.1 = f.link;
                }
                merge = f.link & 7 == 3;
                continue;
            }
            logical.push((*f, f.link));
            merge = f.link & 7 == 3;
        }
        let funcs: Vec<Option<Func>> = logical.iter().map(|(f, _)| p.frame_func(f)).collect();
        let protos: Vec<Option<(u64, Arc<Proto>)>> = funcs
            .iter()
            .map(|f| match f {
                Some(Func::Lua(pt)) => p.proto(*pt, round).map(|x| (*pt, x)),
                _ => None,
            })
            .collect();
        let mut all_read = true;
        let mut frames = Vec::with_capacity(logical.len() + 1);
        for (j, (_, link)) in logical.iter().enumerate() {
            let frame = match &funcs[j] {
                None => {
                    all_read = false;
                    LuaFrame {
                        kind: LuaFrameKind::Unreadable,
                        compiled: false,
                        line: None,
                    }
                }
                Some(Func::C(addr)) => LuaFrame {
                    kind: LuaFrameKind::CFunction {
                        addr: *addr,
                        name: p.c_function(*addr),
                    },
                    compiled: false,
                    line: None,
                },
                Some(Func::Fast(ff)) => LuaFrame {
                    kind: LuaFrameKind::Builtin {
                        name: p.builtin(*ff),
                    },
                    compiled: false,
                    line: None,
                },
                Some(Func::Lua(_)) => match &protos[j] {
                    None => {
                        all_read = false;
                        LuaFrame {
                            kind: LuaFrameKind::Unreadable,
                            compiled: false,
                            line: None,
                        }
                    }
                    Some((addr, pt)) => {
                        // The PC inside this function: the leaf's from the
                        // interpreter's registers, a caller's from the link
                        // of the frame it called.
                        let pc = if j == 0 {
                            raw.leaf_from_registers().then_some(raw.leaf_pc)
                        } else {
                            let (_, above) = logical[j - 1];
                            (above & 3 == 0).then_some(above)
                        };
                        let line = pc.and_then(|pc| pt.line_before(pc));
                        // The name: from the caller's call site when the
                        // caller is a Lua function.
                        let mut name = None;
                        if link & 3 == 0 {
                            if let Some(Some((caddr, caller))) = protos.get(j + 1) {
                                name = p.call_site_name(caller, *caddr, *link);
                            }
                        }
                        match &name {
                            Some(n) => {
                                p.learned.insert(*addr, n.clone());
                            }
                            None => name = p.learned.get(addr).cloned(),
                        }
                        LuaFrame {
                            kind: LuaFrameKind::Lua {
                                name,
                                chunk: pt.chunk.clone(),
                                firstline: pt.firstline,
                                proto: *addr,
                            },
                            compiled: false,
                            line,
                        }
                    }
                },
            };
            frames.push(frame);
        }
        // A compiled trace: the function it started in is the leaf.
        if let (VmState::Compiled(_), true, Some((tp, tpc))) =
            (raw.vmstate, raw.leaf_from_trace(), raw.trace_start)
        {
            let same = matches!(frames.first(), Some(LuaFrame { kind: LuaFrameKind::Lua { proto, .. }, .. }) if *proto == tp);
            if same {
                frames[0].compiled = true;
            } else if let Some(pt) = p.proto(tp, round) {
                let name = p.learned.get(&tp).cloned();
                frames.insert(
                    0,
                    LuaFrame {
                        kind: LuaFrameKind::Lua {
                            name,
                            chunk: pt.chunk.clone(),
                            firstline: pt.firstline,
                            proto: tp,
                        },
                        compiled: true,
                        line: pt.line_before(tpc + 4),
                    },
                );
            } else {
                all_read = false;
            }
        }
        frames.reverse();
        out.frames = frames;
        out.complete = all_read && raw.reached_bottom() && raw.status == WalkStatus::Ok;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_frames_with_their_marker() {
        let f = |name: Option<&str>, chunk: &str, firstline, compiled, line| LuaFrame {
            kind: LuaFrameKind::Lua {
                name: name.map(Into::into),
                chunk: chunk.into(),
                firstline,
                proto: 1,
            },
            compiled,
            line,
        };
        assert_eq!(
            f(Some("work_a"), "@/srv/two.lua", 1, false, None)
                .folded(false)
                .unwrap(),
            "work_a@/srv/two.lua:1_[l]"
        );
        assert_eq!(
            f(None, "@x.lua", 7, true, Some(9)).folded(true).unwrap(),
            "?@x.lua:7 line 9_[lj]"
        );
        assert_eq!(
            f(None, "=content_by_lua(nginx.conf:20)", 0, false, None)
                .folded(false)
                .unwrap(),
            "=content_by_lua(nginx.conf:20)_[l]"
        );
        let c = LuaFrame {
            kind: LuaFrameKind::CFunction {
                addr: 5,
                name: None,
            },
            compiled: false,
            line: None,
        };
        assert_eq!(c.folded(false), None);
        let say = LuaFrame {
            kind: LuaFrameKind::CFunction {
                addr: 5,
                name: Some("ngx.say".into()),
            },
            compiled: false,
            line: None,
        };
        assert_eq!(say.folded(false).as_deref(), Some("ngx.say_[l]"));
    }

    #[test]
    fn chunk_names_are_shown_short() {
        assert_eq!(short_chunk("@/srv/app.lua"), "@/srv/app.lua");
        assert_eq!(
            short_chunk("=content_by_lua(nginx.conf:20)"),
            "=content_by_lua(nginx.conf:20)"
        );
        assert_eq!(
            short_chunk("local x = 1; return x\nmore"),
            "[string \"local x = 1; return x...\"]"
        );
        assert_eq!(short_chunk("return 1"), "[string \"return 1\"]");
        let long = format!("@/{}/app.lua", "d".repeat(500));
        let s = short_chunk(&long);
        assert!(
            s.starts_with("@...") && s.ends_with("/app.lua") && s.len() <= 200,
            "{s}"
        );
    }

    #[test]
    fn reads_local_names_from_varinfo() {
        // "a" live over [0, 10), then "(for index)" (code 1) over [2, 5).
        let v = [b'a', 0, 0, 10, 1, 2, 3, 0];
        assert_eq!(local_name(&v, 3, 0).as_deref(), Some("a"));
        assert_eq!(local_name(&v, 3, 1).as_deref(), Some("(for index)"));
        assert_eq!(local_name(&v, 6, 1), None);
        assert_eq!(local_name(&v, 12, 0), None);
    }
}
