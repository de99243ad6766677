//! Errors: why Lua frames are unavailable ([`LuaError`], for the whole
//! recording) and why one process's LuaJIT cannot be read ([`NotReadable`]).
//! Each says what failed in words a user can act on; the summary prints them.

use std::io;

/// Why the Lua stack probe cannot run at all (Lua frames are off for the
/// recording; C stacks go on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LuaError {
    /// Loading BPF programs needs privilege.
    #[error("BPF is not permitted: loading the Lua stack program needs root, or CAP_BPF with CAP_PERFMON (Linux >= 5.8), or CAP_SYS_ADMIN")]
    NotPermitted {
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The kernel has no BPF, or lacks what the program uses (ring buffers,
    /// `bpf_loop`: Linux >= 5.17).
    #[error("this kernel cannot run the Lua stack program (BPF disabled, or older than Linux 5.17 which added bpf_loop)")]
    Unsupported {
        /// The loader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The kernel's verifier rejected the program.
    #[error("the kernel rejected the Lua stack program")]
    Rejected {
        /// The loader's error, with the verifier log.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Attaching the program to a perf counter failed.
    #[error("attaching the Lua stack program to perf counter fd {fd} failed")]
    Attach {
        /// The counter's fd.
        fd: i32,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// Writing a process's configuration into the program's map failed.
    #[error("registering process {pid} with the Lua stack program failed")]
    Register {
        /// The process.
        pid: u32,
        /// The map update error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a process's LuaJIT cannot be read. Lua frames stay off for that
/// process (its C stacks are recorded as usual); nflame never guesses names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReadable {
    /// No LuaJIT library mapped, and the executable does not export LuaJIT's API.
    #[error("no LuaJIT in this process")]
    NoLuaJit,
    /// The process could not be inspected.
    #[error("reading /proc/{pid}/{what} failed")]
    Proc {
        /// The process.
        pid: u32,
        /// Which file.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The LuaJIT binary is not a readable ELF file.
    #[error("the LuaJIT binary is not a readable ELF file: {why}")]
    BadElf {
        /// The parser's message.
        why: String,
    },
    /// Only x86-64 is supported.
    #[error("LuaJIT on {arch} is not supported (x86-64 only)")]
    Architecture {
        /// The binary's architecture.
        arch: String,
    },
    /// An exported function the layout is read from is missing.
    #[error("the LuaJIT binary does not export {symbol}")]
    MissingSymbol {
        /// The symbol.
        symbol: &'static str,
    },
    /// A function's machine code did not have the expected shape, so an
    /// offset could not be read (an unknown build or compiler).
    #[error("cannot read {what} from the machine code of {function} (unknown LuaJIT build)")]
    Code {
        /// Which offset.
        what: &'static str,
        /// The function decoded.
        function: &'static str,
    },
    /// A build without 64-bit GC references (LJ_GC64), e.g. LuaJIT 2.0 or a
    /// 2.1 built with LUAJIT_DISABLE_GC64: its frame layout is not supported.
    #[error(
        "this LuaJIT is not a GC64 build (LuaJIT 2.0, or 2.1 built without GC64): not supported"
    )]
    NotGc64,
    /// Offsets read from the binary disagreed with each other.
    #[error("inconsistent LuaJIT layout: {why}")]
    Inconsistent {
        /// What disagreed.
        why: String,
    },
    /// The live process contradicted the layout read from the binary.
    #[error("the live process does not match the layout read from its LuaJIT binary: {why}")]
    LiveCheck {
        /// What did not hold.
        why: String,
    },
}
