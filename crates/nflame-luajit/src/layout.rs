//! A LuaJIT build's struct layout, read from its own machine code.
//!
//! LuaJIT's structures (`lua_State`, `global_State`, `GCfunc`, the dispatch
//! table's place) change between releases, forks (upstream LuaJIT, OpenResty's
//! luajit2) and build options, so nflame never keys a table by build: it
//! decodes a few exported functions with `iced-x86` and reads the offsets
//! from the instructions that use them.
//!
//! - `lua_pcall` calls the VM's `lj_vm_pcall`, whose prologue (x86-64 VM,
//!   fixed register roles: `r14` = DISPATCH, `rdx` = BASE, `rbx` = PC) loads
//!   `L->glref`, saves `L->cframe`, turns G into the dispatch pointer
//!   (`add r14, G2DISP`), stores `G->cur_L`, sets `G->vmstate` to
//!   "interpreting" (`-1`), loads `L->base` and the called function's
//!   TValue: the `shl 17`/`sar 47` decoding proves a GC64 build and the
//!   following load gives `GCfunc->pc`. `lua_pcall` itself subtracts
//!   `L->stack`.
//! - `lua_close` loads `G->mainthref` and clears `G->cur_L` (cross-check).
//! - `lua_checkstack` reads `L->top`, `L->base` and `L->maxstack`.
//! - `lua_tocfunction` reads `GCfunc->pc` and `GCfunc->f` and compares the
//!   first opcode of the function's code with `BC_FUNCC`: the opcode
//!   numbering of this build (upstream added bytecodes in 2026; see
//!   `bytecode`).
//! - The interpreter is the `.eh_frame` FDE holding `lj_vm_pcall`; in it,
//!   `BC_JLOOP`'s handler loads `J->trace`, the trace's `mcode`, and stores
//!   BASE into `G->jit_base`.
//!
//! - `lua_getinfo` (`lj_debug_getinfo`) turns `GCfunc->pc` into the
//!   prototype (`sub P, sizeof(GCproto)`) and reads `chunkname` and
//!   `firstline` relative to the bytecode: a build whose GCproto differs from
//!   the GC64 2.1 layout is refused.
//!
//! The remaining GCproto, GCstr, GCtab and GCtrace fields come from the GC64
//! object layout shared by LuaJIT 2.1 and luajit2 and are checked against
//! the live process before use (object type bytes, bytecode headers, NUL
//! after strings, trace start prototypes: `process`, `namer`).

use std::ops::Range;

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};

use crate::elf::Elf;
use crate::error::NotReadable;

/// Which LuaJIT source tree the build comes from (from its exported API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Variant {
    /// OpenResty's luajit2 (exports `lua_setexdata`).
    OpenRestyLuajit2,
    /// Upstream LuaJIT 2.1.
    Upstream,
}

/// Offsets of one LuaJIT build (GC64, x86-64). All in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layout {
    /// Which source tree.
    pub variant: Variant,
    /// `lua_State.glref`.
    pub l_glref: u32,
    /// `lua_State.base`.
    pub l_base: u32,
    /// `lua_State.top`.
    pub l_top: u32,
    /// `lua_State.stack`.
    pub l_stack: u32,
    /// `lua_State.maxstack`.
    pub l_maxstack: u32,
    /// `lua_State.cframe`.
    pub l_cframe: u32,
    /// `global_State.vmstate`.
    pub g_vmstate: u32,
    /// `global_State.mainthref`.
    pub g_mainthref: u32,
    /// `global_State.cur_L`.
    pub g_cur_l: u32,
    /// `global_State.jit_base`, when the build has a JIT.
    pub g_jit_base: Option<u32>,
    /// Offset from G to the dispatch table (`r14` in the VM).
    pub g2disp: u32,
    /// Offset from G to `jit_State.trace` (the trace array), when JIT.
    pub g_trace_arr: Option<u32>,
    /// `GCtrace.mcode`, when JIT.
    pub trace_mcode: Option<u32>,
    /// `GCfunc.pc`.
    pub func_pc: u32,
    /// `GCfunc.f` (a C function's address).
    pub func_cfunc: u32,
    /// `GCfunc.ffid` (GC64 object header: checked live).
    pub func_ffid: u32,
    /// The bytecode number of `BC_FUNCC` (selects the opcode table).
    pub bc_funcc: u8,
    /// GCproto fields (GC64 2.1 object layout: size, chunkname and
    /// firstline confirmed in `lua_getinfo`'s code when it has the usual
    /// shape, the rest checked live).
    pub proto: ProtoLayout,
    /// Whether `sizeof(GCproto)`, `chunkname` and `firstline` were read in
    /// the machine code (else they are only checked live).
    pub proto_from_code: bool,
    /// GCtrace `startpt` / `startpc` (GC64 2.1 object layout: checked live).
    pub trace_startpt: u32,
    /// See `trace_startpt`.
    pub trace_startpc: u32,
    /// The interpreter's machine code, as file virtual addresses.
    pub vm: Range<u64>,
    /// The VM's FFI call helper (`lj_vm_ffi_call`, the `.eh_frame` entry
    /// that follows the interpreter's), when the build has one.
    pub vm_ffi_call: Option<Range<u64>>,
}

/// `GCproto` fields used for naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtoLayout {
    /// sizeof(GCproto): the bytecode follows it.
    pub size: u32,
    /// Number of bytecode instructions (u32).
    pub sizebc: u32,
    /// Constants: GC constants are below this pointer (negative index).
    pub k: u32,
    /// Chunk name (GCstr reference).
    pub chunkname: u32,
    /// First line (u32).
    pub firstline: u32,
    /// Number of lines (u32).
    pub numline: u32,
    /// Line info: one u8/u16/u32 per instruction, relative to firstline.
    pub lineinfo: u32,
    /// Upvalue names.
    pub uvinfo: u32,
    /// Variable names.
    pub varinfo: u32,
    /// sizekgc (u32).
    pub sizekgc: u32,
    /// sizeuv (u8).
    pub sizeuv: u32,
    /// `GCstr` header size: characters follow.
    pub str_data: u32,
    /// `GCstr.len` (u32).
    pub str_len: u32,
}

impl ProtoLayout {
    /// The LuaJIT 2.1 GC64 object layout (both upstream and luajit2).
    const GC64_21: Self = Self {
        size: 0x68,
        sizebc: 0x0c,
        sizekgc: 0x30,
        k: 0x20,
        sizeuv: 0x3c,
        chunkname: 0x40,
        firstline: 0x48,
        numline: 0x4c,
        lineinfo: 0x50,
        uvinfo: 0x58,
        varinfo: 0x60,
        str_data: 0x18,
        str_len: 0x14,
    };
}

/// What `lj_debug_getinfo` says of GCproto: `mov P, [F + func_pc]`, loads
/// `[P - d]`, then `sub P, S` (or `lea Q, [P - S]`): S is sizeof(GCproto)
/// and the loads are fields at `S - d` (with their widths).
fn read_proto_fields(code: &[Instruction], func_pc: u32) -> Option<(u32, Vec<(u32, u8)>)> {
    let mut sizes = Vec::new();
    let mut fields = Vec::new();
    for (i, ins) in code.iter().enumerate() {
        if ins.mnemonic() != Mnemonic::Mov || ins.memory_size() != MemorySize::UInt64 {
            continue;
        }
        let (Some(p), Some((_, d))) = (reg(ins, 0), mem(ins, 1)) else {
            continue;
        };
        if d != i64::from(func_pc) {
            continue;
        }
        let mut loads = Vec::new();
        for n in code[i + 1..].iter().take(6) {
            let size = match (n.mnemonic(), reg(n, 0), mem(n, 1), imm(n, 1)) {
                (Mnemonic::Sub, Some(r), _, Some(x)) if r == p => Some(x as i64),
                (Mnemonic::Lea, Some(_), Some((b, d)), _) if b == p && d < 0 => Some(-d),
                _ => None,
            };
            if let Some(size) = size {
                sizes.push(size);
                for (d, w) in loads.drain(..) {
                    fields.push((size + d, w));
                }
                break;
            }
            if n.mnemonic() == Mnemonic::Mov {
                if let (Some(_), Some((b, d))) = (reg(n, 0), mem(n, 1)) {
                    let w = match n.memory_size() {
                        MemorySize::UInt64 | MemorySize::Int64 => 8,
                        MemorySize::UInt32 | MemorySize::Int32 => 4,
                        _ => 0,
                    };
                    if b == p && d < 0 && w > 0 {
                        loads.push((d, w));
                    }
                }
            }
        }
    }
    let size = *sizes.first()?;
    if sizes.iter().any(|&s| s != size) || !(0x20..0x400).contains(&size) {
        return None;
    }
    let fields = fields
        .into_iter()
        .filter_map(|(o, w)| Some((u32::try_from(o).ok()?, w)))
        .collect();
    Some((size as u32, fields))
}

/// Instructions decoded from `addr`, following unconditional jumps, at most `max`.
fn decode(elf: &Elf<'_>, mut addr: u64, max: usize) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut jumps = 0;
    'outer: while out.len() < max {
        let bytes = elf.bytes_at(addr, 4096);
        if bytes.is_empty() {
            break;
        }
        let mut dec = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while dec.can_decode() && out.len() < max {
            dec.decode_out(&mut ins);
            if ins.is_invalid() {
                break 'outer;
            }
            out.push(ins);
            match ins.mnemonic() {
                Mnemonic::Jmp if ins.op0_kind() == OpKind::NearBranch64 && jumps < 4 => {
                    jumps += 1;
                    addr = ins.near_branch_target();
                    continue 'outer;
                }
                Mnemonic::Ret | Mnemonic::Jmp => break 'outer,
                _ => {}
            }
        }
        break;
    }
    out
}

/// `[base + disp]` of a memory operand without index, if that is what it is.
fn mem(ins: &Instruction, op: u32) -> Option<(Register, i64)> {
    (ins.op_kind(op) == OpKind::Memory && ins.memory_index() == Register::None)
        .then(|| (ins.memory_base(), ins.memory_displacement64() as i64))
}

fn reg(ins: &Instruction, op: u32) -> Option<Register> {
    (ins.op_kind(op) == OpKind::Register).then(|| ins.op_register(op))
}

fn imm(ins: &Instruction, op: u32) -> Option<u64> {
    match ins.op_kind(op) {
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(ins.immediate(op)),
        _ => None,
    }
}

fn off(d: i64, what: &'static str, function: &'static str) -> Result<u32, NotReadable> {
    u32::try_from(d).map_err(|_| NotReadable::Code { what, function })
}

/// What `lj_vm_pcall`'s prologue gives.
#[derive(Debug, Default)]
struct VmEntry {
    glref: Option<i64>,
    cframe: Option<i64>,
    g2disp: Option<i64>,
    cur_l: Option<i64>,
    vmstate: Option<i64>,
    base: Option<i64>,
    gc64: bool,
    tfunc_tag: bool,
    func_pc: Option<i64>,
}

impl VmEntry {
    fn complete(&self) -> bool {
        self.glref.is_some()
            && self.cframe.is_some()
            && self.g2disp.is_some()
            && self.cur_l.is_some()
            && self.vmstate.is_some()
            && self.base.is_some()
            && self.func_pc.is_some()
    }
}

/// Reads the VM entry: `L` arrives in rdi; DISPATCH is r14.
fn read_vm_entry(code: &[Instruction]) -> VmEntry {
    let mut l_regs = vec![Register::RDI];
    let mut v = VmEntry::default();
    let mut func_reg = None;
    for ins in code {
        if ins.mnemonic() == Mnemonic::Mov {
            let (d, s) = (reg(ins, 0), reg(ins, 1));
            if let (Some(d), Some(s)) = (d, s) {
                if l_regs.contains(&s) {
                    l_regs.push(d);
                } else if func_reg == Some(s) {
                    // keep following the function value through copies
                } else if l_regs.contains(&d) {
                    l_regs.retain(|r| *r != d);
                }
                continue;
            }
            if let (Some(d), Some((b, disp))) = (d, mem(ins, 1)) {
                if l_regs.contains(&b) {
                    if d == Register::R14 && v.glref.is_none() {
                        v.glref = Some(disp);
                    } else if d == Register::RDX && v.vmstate.is_some() && v.base.is_none() {
                        v.base = Some(disp);
                    }
                } else if v.base.is_some() && disp == -16 && func_reg.is_none() {
                    // The called function's TValue, just below BASE (GC64: two slots).
                    func_reg = Some(d);
                } else if v.gc64 && Some(b) == func_reg && d == Register::RBX {
                    v.func_pc = Some(disp);
                }
                // A load overwrites its destination: it no longer holds L.
                l_regs.retain(|r| *r != d);
                continue;
            }
            if let Some((b, disp)) = mem(ins, 0) {
                if l_regs.contains(&b) && reg(ins, 1) == Some(Register::RSP) {
                    v.cframe = Some(disp);
                } else if b == Register::R14 {
                    if let (Some(g2d), Some(r)) = (v.g2disp, reg(ins, 1)) {
                        if l_regs.contains(&r) {
                            v.cur_l = Some(g2d + disp);
                        }
                    }
                    if let (Some(g2d), Some(x)) = (v.g2disp, imm(ins, 1)) {
                        if x as u32 == u32::MAX {
                            v.vmstate = Some(g2d + disp);
                        }
                    }
                }
            }
        } else if ins.mnemonic() == Mnemonic::Add && reg(ins, 0) == Some(Register::R14) {
            v.g2disp = imm(ins, 1).map(|x| x as i64);
        } else if ins.mnemonic() == Mnemonic::Shl && imm(ins, 1) == Some(17) {
            v.gc64 = reg(ins, 0) == func_reg || v.gc64;
        } else if ins.mnemonic() == Mnemonic::Cmp && imm(ins, 1).map(|x| x as u32) == Some(!8u32) {
            v.tfunc_tag = true;
        }
        if v.complete() {
            break;
        }
    }
    v
}

/// In the interpreter, `BC_JLOOP`: `mov A,[r14+T]; mov B,[A+C*8]; mov B,[B+M]; … mov [r14+J],rdx`.
fn read_jloop(code: &[Instruction], g2disp: i64) -> Option<(i64, i64, i64)> {
    for (i, w) in code.windows(6).enumerate() {
        let _ = i;
        let (a, b, c) = (&w[0], &w[1], &w[2]);
        if a.mnemonic() != Mnemonic::Mov
            || b.mnemonic() != Mnemonic::Mov
            || c.mnemonic() != Mnemonic::Mov
        {
            continue;
        }
        let Some((Register::R14, t)) = mem(a, 1) else {
            continue;
        };
        let Some(ra) = reg(a, 0) else { continue };
        if b.op_kind(1) != OpKind::Memory || b.memory_base() != ra || b.memory_index_scale() != 8 {
            continue;
        }
        let Some(rb) = reg(b, 0) else { continue };
        let Some((cb, m)) = mem(c, 1) else { continue };
        if cb != rb {
            continue;
        }
        for st in &w[3..] {
            if st.mnemonic() == Mnemonic::Mov && reg(st, 1) == Some(Register::RDX) {
                if let Some((Register::R14, j)) = mem(st, 0) {
                    return Some((g2disp + t, m, g2disp + j));
                }
            }
        }
    }
    None
}

impl Layout {
    /// Reads the layout of the LuaJIT in this ELF image (a `libluajit*.so`,
    /// or an executable with LuaJIT linked in).
    pub fn from_elf(data: &[u8]) -> Result<Layout, NotReadable> {
        let elf = Elf::parse(data)?;
        let sym = |s: &'static str| {
            elf.symbol(s)
                .ok_or(NotReadable::MissingSymbol { symbol: s })
        };
        let pcall = sym("lua_pcall")?;
        let close = sym("lua_close")?;
        let checkstack = sym("lua_checkstack")?;
        let tocfunction = sym("lua_tocfunction")?;
        let getinfo = elf.symbol("lua_getinfo");
        let variant = if elf.symbol("lua_setexdata").is_some() {
            Variant::OpenRestyLuajit2
        } else {
            Variant::Upstream
        };

        // lua_pcall -> lj_vm_pcall.
        let pcall_code = decode(&elf, pcall, 200);
        let mut entry = None;
        for ins in &pcall_code {
            if ins.mnemonic() == Mnemonic::Call && ins.op0_kind() == OpKind::NearBranch64 {
                let target = ins.near_branch_target();
                let v = read_vm_entry(&decode(&elf, target, 80));
                if v.complete() {
                    entry = Some((target, v));
                }
            }
        }
        let Some((vm_pcall, v)) = entry else {
            return Err(NotReadable::Code {
                what: "the VM entry (lj_vm_pcall)",
                function: "lua_pcall",
            });
        };
        if !v.gc64 {
            return Err(NotReadable::NotGc64);
        }
        if !v.tfunc_tag {
            return Err(NotReadable::Code {
                what: "the function type tag",
                function: "lj_vm_pcall",
            });
        }
        const VMF: &str = "lj_vm_pcall";
        let l_glref = off(v.glref.unwrap_or(-1), "L->glref", VMF)?;
        let l_cframe = off(v.cframe.unwrap_or(-1), "L->cframe", VMF)?;
        let g2disp = off(v.g2disp.unwrap_or(-1), "the dispatch table", VMF)?;
        let g_cur_l = off(v.cur_l.unwrap_or(-1), "G->cur_L", VMF)?;
        let g_vmstate = off(v.vmstate.unwrap_or(-1), "G->vmstate", VMF)?;
        let l_base = off(v.base.unwrap_or(-1), "L->base", VMF)?;
        let func_pc = off(v.func_pc.unwrap_or(-1), "GCfunc->pc", VMF)?;

        // lua_pcall: `sub reg, [L + stack]` (savestack).
        let l_stack = pcall_code
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Sub)
            .find_map(|i| mem(i, 1).map(|(_, d)| d))
            .ok_or(NotReadable::Code {
                what: "L->stack",
                function: "lua_pcall",
            })
            .and_then(|d| off(d, "L->stack", "lua_pcall"))?;

        // lua_close: `mov G, [rdi + glref]`, then `mov X, [G + mainthref]`,
        // and `mov qword [G + cur_L], 0`.
        let close_code = decode(&elf, close, 60);
        let mut g_reg = None;
        let mut mainthref = None;
        let mut cleared_cur_l = None;
        for ins in &close_code {
            if ins.mnemonic() != Mnemonic::Mov {
                continue;
            }
            match (reg(ins, 0), mem(ins, 1), mem(ins, 0)) {
                (Some(d), Some((Register::RDI, disp)), _)
                    if disp == i64::from(l_glref) && g_reg.is_none() =>
                {
                    g_reg = Some(d)
                }
                (Some(_), Some((b, disp)), _) if Some(b) == g_reg && mainthref.is_none() => {
                    mainthref = Some(disp)
                }
                (_, _, Some((b, disp))) if Some(b) == g_reg && imm(ins, 1) == Some(0) => {
                    cleared_cur_l.get_or_insert(disp);
                }
                _ => {}
            }
        }
        let g_mainthref = off(
            mainthref.ok_or(NotReadable::Code {
                what: "G->mainthref",
                function: "lua_close",
            })?,
            "G->mainthref",
            "lua_close",
        )?;
        if cleared_cur_l != Some(i64::from(g_cur_l)) {
            return Err(NotReadable::Inconsistent {
                why: format!(
                    "lj_vm_pcall stores G->cur_L at {g_cur_l:#x}, lua_close clears {:?}",
                    cleared_cur_l.map(|d| format!("{d:#x}"))
                ),
            });
        }

        // lua_checkstack: `mov T, [rdi+top]; … sub X, [rdi+base]; … mov Y, [rdi+maxstack]; sub Y, T`.
        let cs = decode(&elf, checkstack, 40);
        let mut top = None;
        let mut maxstack = None;
        let mut base_seen = false;
        for (i, ins) in cs.iter().enumerate() {
            if ins.mnemonic() == Mnemonic::Sub {
                if let Some((Register::RDI, d)) = mem(ins, 1) {
                    base_seen = d == i64::from(l_base);
                }
            }
            if ins.mnemonic() != Mnemonic::Mov {
                continue;
            }
            if let (Some(r), Some((Register::RDI, d))) = (reg(ins, 0), mem(ins, 1)) {
                if top.is_none() {
                    top = Some((r, d));
                } else if let Some((t, _)) = top {
                    // maxstack is the load later reduced by top.
                    let sub_top = cs[i + 1..].iter().take(3).any(|n| {
                        n.mnemonic() == Mnemonic::Sub
                            && reg(n, 0) == Some(r)
                            && reg(n, 1) == Some(t)
                    });
                    if sub_top && maxstack.is_none() {
                        maxstack = Some(d);
                    }
                }
            }
        }
        let (Some((_, l_top)), Some(l_maxstack), true) = (top, maxstack, base_seen) else {
            return Err(NotReadable::Code {
                what: "L->top/L->maxstack",
                function: "lua_checkstack",
            });
        };
        let l_top = off(l_top, "L->top", "lua_checkstack")?;
        let l_maxstack = off(l_maxstack, "L->maxstack", "lua_checkstack")?;

        // lua_tocfunction: `mov P, [F + pc]; movzx X, byte [P]; sub X, BC_FUNCC;
        // cmp X, 1; jbe …; mov R, [F + f]`.
        let tc = decode(&elf, tocfunction, 40);
        let mut bc_funcc = None;
        let mut func_cfunc = None;
        let mut saw_pc_load = false;
        for (i, ins) in tc.iter().enumerate() {
            if ins.mnemonic() == Mnemonic::Mov {
                if let Some((_, d)) = mem(ins, 1) {
                    if d == i64::from(func_pc) {
                        saw_pc_load = true;
                    }
                }
            }
            if saw_pc_load && ins.mnemonic() == Mnemonic::Sub && bc_funcc.is_none() {
                if let Some(x) = imm(ins, 1) {
                    let cmp1 = tc
                        .get(i + 1)
                        .is_some_and(|n| n.mnemonic() == Mnemonic::Cmp && imm(n, 1) == Some(1));
                    if cmp1 && x < 256 {
                        bc_funcc = Some(x as u8);
                    }
                }
            }
            if ins.mnemonic() == Mnemonic::Jbe && ins.op0_kind() == OpKind::NearBranch64 {
                // The taken branch loads the C function pointer.
                let target = decode(&elf, ins.near_branch_target(), 3);
                func_cfunc = target
                    .first()
                    .filter(|n| n.mnemonic() == Mnemonic::Mov)
                    .and_then(|n| mem(n, 1))
                    .map(|(_, d)| d);
            }
        }
        let bc_funcc = bc_funcc.ok_or(NotReadable::Code {
            what: "BC_FUNCC",
            function: "lua_tocfunction",
        })?;
        let func_cfunc = off(
            func_cfunc.ok_or(NotReadable::Code {
                what: "GCfunc->f",
                function: "lua_tocfunction",
            })?,
            "GCfunc->f",
            "lua_tocfunction",
        )?;

        // The interpreter's code and, inside it, BC_JLOOP.
        let (vs, ve) = elf.fde_range(vm_pcall).ok_or(NotReadable::Code {
            what: "the interpreter's extent (.eh_frame)",
            function: "lj_vm_pcall",
        })?;
        if ve - vs > 1 << 20 {
            return Err(NotReadable::Inconsistent {
                why: format!("interpreter spans {} bytes", ve - vs),
            });
        }
        let vm_code = decode_linear(&elf, vs, ve);
        // buildvm emits lj_vm_ffi_call right after the interpreter, with an
        // FDE of its own.
        let vm_ffi_call = elf
            .fde_range(ve)
            .filter(|&(s, e)| s == ve && e > s && e - s < 4096)
            .map(|(s, e)| s..e);
        let jloop = read_jloop(&vm_code, i64::from(g2disp));
        let (g_trace_arr, trace_mcode, g_jit_base) = match jloop {
            Some((t, m, j)) => (
                Some(off(t, "J->trace", "BC_JLOOP")?),
                Some(off(m, "GCtrace->mcode", "BC_JLOOP")?),
                Some(off(j, "G->jit_base", "BC_JLOOP")?),
            ),
            None => (None, None, None),
        };

        // lua_getinfo -> lj_debug_getinfo: sizeof(GCproto), chunkname, firstline.
        let proto = ProtoLayout::GC64_21;
        let mut proto_from_code = false;
        // The body lua_getinfo jumps to, decoded whole (its FDE's extent).
        let body = getinfo
            .map(|a| {
                // A tail jump into the shared body (lua_getinfo -> lj_debug_getinfo).
                decode(&elf, a, 4)
                    .iter()
                    .find(|i| i.mnemonic() == Mnemonic::Jmp && i.op0_kind() == OpKind::NearBranch64)
                    .map_or(a, |i| i.near_branch_target())
            })
            .and_then(|a| elf.fde_range(a))
            .filter(|(s, e)| e - s < 1 << 16)
            .map(|(s, e)| decode_linear(&elf, s, e));
        if let Some((size, fields)) = body.and_then(|code| read_proto_fields(&code, func_pc)) {
            if size != proto.size {
                return Err(NotReadable::Inconsistent {
                    why: format!(
                        "GCproto is {size:#x} bytes, not the {:#x} of LuaJIT 2.1's GC64 layout",
                        proto.size
                    ),
                });
            }
            proto_from_code =
                fields.contains(&(proto.chunkname, 8)) && fields.contains(&(proto.firstline, 4));
        }

        let layout = Layout {
            variant,
            l_glref,
            l_base,
            l_top,
            l_stack,
            l_maxstack,
            l_cframe,
            g_vmstate,
            g_mainthref,
            g_cur_l,
            g_jit_base,
            g2disp,
            g_trace_arr,
            trace_mcode,
            func_pc,
            func_cfunc,
            func_ffid: 0x0a,
            bc_funcc,
            proto,
            proto_from_code,
            trace_startpt: 0x40,
            trace_startpc: 0x48,
            vm: vs..ve,
            vm_ffi_call,
        };
        layout.check()?;
        Ok(layout)
    }

    /// Relations every GC64 2.1 build keeps; a failure means a misread.
    fn check(&self) -> Result<(), NotReadable> {
        let bad = |why: String| Err(NotReadable::Inconsistent { why });
        if self.l_top != self.l_base + 8 {
            return bad(format!(
                "L->top {:#x} does not follow L->base {:#x}",
                self.l_top, self.l_base
            ));
        }
        if self.g_vmstate + 8 != self.g_mainthref {
            return bad(format!(
                "G->vmstate {:#x} is not just before G->mainthref {:#x}",
                self.g_vmstate, self.g_mainthref
            ));
        }
        if let Some(j) = self.g_jit_base {
            if j != self.g_cur_l + 8 {
                return bad(format!(
                    "G->jit_base {j:#x} does not follow G->cur_L {:#x}",
                    self.g_cur_l
                ));
            }
        }
        if self.func_cfunc != self.func_pc + 8 {
            return bad(format!(
                "GCfunc->f {:#x} does not follow GCfunc->pc {:#x}",
                self.func_cfunc, self.func_pc
            ));
        }
        if self.g2disp < self.g_cur_l {
            return bad(format!("dispatch table {:#x} below G->cur_L", self.g2disp));
        }
        Ok(())
    }
}

/// Linear sweep of `[start, end)`: the interpreter is hand-written assembly
/// without data in its code, so decoding straight through is exact.
fn decode_linear(elf: &Elf<'_>, start: u64, end: u64) -> Vec<Instruction> {
    let bytes = elf.bytes_at(start, (end - start) as usize);
    let mut dec = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut ins = Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        out.push(ins);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's luajit2 comes with libnginx-mod-http-lua (NFLAME_SKIP=nginx
    /// leaves it uninstalled).
    mod needs_nginx {
        use super::*;

        /// Debian's libluajit2-5.1-2 (OpenResty luajit2), what nginx's Lua module uses.
        const DEBIAN_LUAJIT2: &str = "/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0";

        #[test]
        fn reads_debian_luajit2() {
            let data = std::fs::read(DEBIAN_LUAJIT2)
                .expect(
                "libluajit2-5.1-2 is installed (with libnginx-mod-http-lua: scripts/install-deps.sh)",
            );
            let l = Layout::from_elf(&data).unwrap();
            // Confirmed in a live nginx worker (see the crate docs).
            assert_eq!(l.variant, Variant::OpenRestyLuajit2);
            assert_eq!(
                (l.l_glref, l.l_base, l.l_stack, l.l_cframe),
                (0x10, 0x20, 0x38, 0x50)
            );
            assert_eq!(
                (l.g_vmstate, l.g_mainthref, l.g_cur_l, l.g_jit_base),
                (0xb8, 0xc0, 0x170, Some(0x178))
            );
            assert_eq!(
                (l.g2disp, l.g_trace_arr, l.trace_mcode),
                (0xfa8, Some(0x460), Some(0x58))
            );
            assert_eq!((l.func_pc, l.func_cfunc, l.bc_funcc), (0x20, 0x28, 95));
            assert!(l.proto_from_code);
            assert!(l.vm.end - l.vm.start > 0x1000);
            // lj_vm_ffi_call follows the interpreter (readelf: 0xde92..0xdf32).
            let ffi = l.vm_ffi_call.clone().expect("lj_vm_ffi_call");
            assert_eq!(ffi.start, l.vm.end);
            assert!(ffi.end - ffi.start < 0x400, "{ffi:x?}");
        }
    }

    #[test]
    fn reads_debian_upstream_luajit() {
        let data = std::fs::read(crate::testing::upstream_lib())
            .expect("upstream luajit is unpacked (scripts/install-deps.sh)");
        let l = Layout::from_elf(&data).unwrap();
        assert_eq!(l.variant, Variant::Upstream);
        assert_eq!(
            (l.l_glref, l.l_base, l.l_stack, l.l_cframe),
            (0x10, 0x20, 0x38, 0x50)
        );
        assert_eq!(
            (l.g_vmstate, l.g_mainthref, l.g_cur_l, l.g_jit_base),
            (0xb8, 0xc0, 0x170, Some(0x178))
        );
        // Its jit_State differs from luajit2's: another dispatch table offset.
        assert_eq!(
            (l.g2disp, l.g_trace_arr, l.trace_mcode),
            (0xf80, Some(0x458), Some(0x58))
        );
        assert_eq!((l.func_pc, l.func_cfunc, l.bc_funcc), (0x20, 0x28, 95));
        assert!(l.proto_from_code);
    }

    #[test]
    fn rejects_a_non_luajit_binary() {
        let data = std::fs::read("/proc/self/exe").unwrap();
        assert!(matches!(
            Layout::from_elf(&data),
            Err(NotReadable::MissingSymbol { .. })
        ));
    }
}
