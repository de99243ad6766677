//! LuaJIT bytecode, as far as naming needs it: the opcode numbering of a
//! build, and the name a caller used for the function it called, read from
//! the caller's bytecode at the call site (what `lj_debug_funcname` does).
//!
//! Opcode numbering differs between LuaJIT trees: upstream LuaJIT 2.1 added
//! bit-operation bytecodes (BNOT … BSAR, before FUNCF) in 2026, which
//! luajit2 and Debian's 2022 upstream do not have. A build's `BC_FUNCC`
//! (read from `lua_tocfunction`'s machine code) selects the table: 95
//! without the bit ops, 102 with them. An unknown value disables call-site
//! names (frames are still named by chunk and line). Pure: works on bytecode
//! already read.

/// Opcodes of LuaJIT 2.1 (upstream up to 2025, OpenResty luajit2).
const OPS_21: &[&str] = &[
    "ISLT", "ISGE", "ISLE", "ISGT", "ISEQV", "ISNEV", "ISEQS", "ISNES", "ISEQN", "ISNEN", "ISEQP",
    "ISNEP", "ISTC", "ISFC", "IST", "ISF", "ISTYPE", "ISNUM", "MOV", "NOT", "UNM", "LEN", "ADDVN",
    "SUBVN", "MULVN", "DIVVN", "MODVN", "ADDNV", "SUBNV", "MULNV", "DIVNV", "MODNV", "ADDVV",
    "SUBVV", "MULVV", "DIVVV", "MODVV", "POW", "CAT", "KSTR", "KCDATA", "KSHORT", "KNUM", "KPRI",
    "KNIL", "UGET", "USETV", "USETS", "USETN", "USETP", "UCLO", "FNEW", "TNEW", "TDUP", "GGET",
    "GSET", "TGETV", "TGETS", "TGETB", "TGETR", "TSETV", "TSETS", "TSETB", "TSETM", "TSETR",
    "CALLM", "CALL", "CALLMT", "CALLT", "ITERC", "ITERN", "VARG", "ISNEXT", "RETM", "RET", "RET0",
    "RET1", "FORI", "JFORI", "FORL", "IFORL", "JFORL", "ITERL", "IITERL", "JITERL", "LOOP",
    "ILOOP", "JLOOP", "JMP", "FUNCF", "IFUNCF", "JFUNCF", "FUNCV", "IFUNCV", "JFUNCV", "FUNCC",
    "FUNCCW",
];

/// The bit-operation bytecodes upstream inserted before FUNCF.
const BIT_OPS: &[&str] = &["BNOT", "BAND", "BOR", "BXOR", "BSHL", "BSHR", "BSAR"];

/// How an opcode uses operand A (only what naming needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AMode {
    /// A is written.
    Dst,
    /// A is a base: A and the slots above it are written.
    Base,
    /// KNIL: slots A..=D are written.
    Knil,
    /// A is read or not a slot.
    Other,
}

/// The opcodes of one build.
#[derive(Debug, Clone)]
pub(crate) struct Opcodes {
    names: Vec<&'static str>,
}

impl Opcodes {
    /// The table whose `FUNCC` is `bc_funcc`, if nflame knows one.
    pub(crate) fn for_funcc(bc_funcc: u8) -> Option<Self> {
        let plain: Vec<&'static str> = OPS_21.to_vec();
        let mut with_bits = plain.clone();
        let at = with_bits.iter().position(|&n| n == "FUNCF").unwrap_or(0);
        for (i, op) in BIT_OPS.iter().enumerate() {
            with_bits.insert(at + i, op);
        }
        [plain, with_bits]
            .into_iter()
            .map(|names| Opcodes { names })
            .find(|t| t.op("FUNCC") == Some(bc_funcc))
    }

    fn op(&self, name: &str) -> Option<u8> {
        self.names.iter().position(|&n| n == name).map(|i| i as u8)
    }

    fn name(&self, op: u8) -> Option<&'static str> {
        self.names.get(op as usize).copied()
    }

    fn a_mode(&self, op: u8) -> AMode {
        match self.name(op).unwrap_or("") {
            "KNIL" => AMode::Knil,
            "TSETM" | "CALLM" | "CALL" | "CALLMT" | "CALLT" | "ITERC" | "ITERN" | "VARG"
            | "ISNEXT" | "RETM" | "FORI" | "JFORI" | "FORL" | "IFORL" | "JFORL" | "ITERL"
            | "IITERL" | "JITERL" => AMode::Base,
            "ISTC" | "ISFC" | "MOV" | "NOT" | "UNM" | "LEN" | "POW" | "CAT" | "KSTR" | "KCDATA"
            | "KSHORT" | "KNUM" | "KPRI" | "UGET" | "FNEW" | "TNEW" | "TDUP" | "GGET" | "TGETV"
            | "TGETS" | "TGETB" | "TGETR" => AMode::Dst,
            n if n.starts_with("ADD")
                || n.starts_with("SUB")
                || n.starts_with("MUL")
                || n.starts_with("DIV")
                || n.starts_with("MOD")
                || BIT_OPS.contains(&n) =>
            {
                AMode::Dst
            }
            _ => AMode::Other,
        }
    }

    /// Whether `op` is a function header (the first instruction of every
    /// Lua function): a cheap check that a prototype was read right.
    pub(crate) fn is_func_header(&self, op: u8) -> bool {
        matches!(
            self.name(op),
            Some("FUNCF" | "IFUNCF" | "JFUNCF" | "FUNCV" | "IFUNCV" | "JFUNCV")
        )
    }

    /// Whether `op` calls a function (so a frame's return PC follows it).
    pub(crate) fn is_call(&self, op: u8) -> bool {
        matches!(
            self.name(op),
            Some("CALLM" | "CALL" | "CALLMT" | "CALLT" | "ITERC" | "ITERN" | "VARG")
        )
    }
}

/// What the caller's bytecode says about a called function's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallName {
    /// A local variable (from the prototype's variable info).
    Local(String),
    /// A global.
    Global(String),
    /// A table field (`t.name`, or `obj:name`).
    Field(String),
    /// An upvalue.
    Upvalue(String),
    /// The iterator of a generic `for`.
    ForIterator,
}

impl CallName {
    pub(crate) fn text(&self) -> &str {
        match self {
            CallName::Local(s)
            | CallName::Global(s)
            | CallName::Field(s)
            | CallName::Upvalue(s) => s,
            CallName::ForIterator => "(for iterator)",
        }
    }
}

/// What naming needs of a caller's prototype.
pub(crate) trait ProtoView {
    /// Its bytecode (index 0 is the function header).
    fn bc(&self) -> &[u32];
    /// A string constant: `proto_kgc(pt, ~d)`.
    fn kstr(&self, d: u32) -> Option<String>;
    /// The name of upvalue `n`.
    fn upvalue_name(&self, n: u32) -> Option<String>;
    /// The name of the local variable in `slot` live at `pc`.
    fn local_name(&self, pc: u32, slot: u32) -> Option<String>;
}

fn op(ins: u32) -> u8 {
    ins as u8
}
fn a(ins: u32) -> u32 {
    (ins >> 8) & 0xff
}
fn c(ins: u32) -> u32 {
    (ins >> 16) & 0xff
}
fn d(ins: u32) -> u32 {
    ins >> 16
}

/// The name under which the instruction at `call_pos` in `pt` called its
/// callee; `None` when the bytecode does not say (as LuaJIT's own
/// `lj_debug_funcname` would print `?`).
pub(crate) fn call_name(ops: &Opcodes, pt: &dyn ProtoView, call_pos: usize) -> Option<CallName> {
    let bc = pt.bc();
    let ins = *bc.get(call_pos)?;
    match ops.name(op(ins))? {
        "CALLM" | "CALL" | "CALLMT" | "CALLT" => slot_name(ops, pt, call_pos, a(ins)),
        "ITERC" | "ITERN" => Some(CallName::ForIterator),
        _ => None,
    }
}

fn slot_name(ops: &Opcodes, pt: &dyn ProtoView, pos: usize, slot: u32) -> Option<CallName> {
    let bc = pt.bc();
    let mut slot = slot;
    let mut ip = pos;
    let mut moves = 0;
    'restart: loop {
        if let Some(n) = pt.local_name(ip as u32, slot) {
            return Some(CallName::Local(n));
        }
        // Back from the call to the instruction that last wrote the slot
        // (index 0 is the function header).
        while ip > 1 {
            ip -= 1;
            let ins = bc[ip];
            match ops.a_mode(op(ins)) {
                AMode::Base if slot >= a(ins) => return None,
                AMode::Knil if a(ins) <= slot && slot <= d(ins) => return None,
                AMode::Dst if a(ins) == slot => {
                    return match ops.name(op(ins))? {
                        "MOV" => {
                            moves += 1;
                            if moves > 64 {
                                return None;
                            }
                            slot = d(ins);
                            continue 'restart;
                        }
                        "GGET" => pt.kstr(d(ins)).map(CallName::Global),
                        "TGETS" => pt.kstr(c(ins)).map(CallName::Field),
                        "UGET" => pt.upvalue_name(d(ins)).map(CallName::Upvalue),
                        _ => None,
                    };
                }
                _ => {}
            }
        }
        return None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        bc: Vec<u32>,
    }
    impl ProtoView for Fake {
        fn bc(&self) -> &[u32] {
            &self.bc
        }
        fn kstr(&self, d: u32) -> Option<String> {
            Some(format!("k{d}"))
        }
        fn upvalue_name(&self, n: u32) -> Option<String> {
            Some(format!("uv{n}"))
        }
        fn local_name(&self, _pc: u32, _slot: u32) -> Option<String> {
            None
        }
    }

    fn ins(ops: &Opcodes, name: &str, a: u32, d: u32) -> u32 {
        u32::from(ops.op(name).unwrap()) | (a << 8) | (d << 16)
    }

    #[test]
    fn tables_selected_by_funcc() {
        assert_eq!(Opcodes::for_funcc(95).unwrap().op("CALL"), Some(66));
        assert_eq!(Opcodes::for_funcc(102).unwrap().op("FUNCF"), Some(96));
        assert!(Opcodes::for_funcc(90).is_none());
    }

    #[test]
    fn names_globals_fields_upvalues_and_moves() {
        let ops = Opcodes::for_funcc(95).unwrap();
        let f = |bc: Vec<u32>| Fake { bc };
        let head = ins(&ops, "FUNCF", 3, 0);
        let p = f(vec![head, ins(&ops, "GGET", 2, 7), ins(&ops, "CALL", 2, 1)]);
        assert_eq!(call_name(&ops, &p, 2), Some(CallName::Global("k7".into())));
        // TGETS A=2 B=1 C=5: t.k5
        let tgets = u32::from(ops.op("TGETS").unwrap()) | (2 << 8) | (1 << 24) | (5 << 16);
        let p = f(vec![head, tgets, ins(&ops, "CALL", 2, 1)]);
        assert_eq!(call_name(&ops, &p, 2), Some(CallName::Field("k5".into())));
        let p = f(vec![
            head,
            ins(&ops, "UGET", 4, 1),
            ins(&ops, "MOV", 2, 4),
            ins(&ops, "CALL", 2, 1),
        ]);
        assert_eq!(
            call_name(&ops, &p, 3),
            Some(CallName::Upvalue("uv1".into()))
        );
        // A call whose slot was last written by a call result: unknown.
        let p = f(vec![head, ins(&ops, "CALL", 2, 2), ins(&ops, "CALL", 2, 1)]);
        assert_eq!(call_name(&ops, &p, 2), None);
        let p = f(vec![head, ins(&ops, "ITERC", 3, 2)]);
        assert_eq!(call_name(&ops, &p, 1), Some(CallName::ForIterator));
    }
}
