//! nflame-luajit: LuaJIT knowledge for nflame. Finds LuaJIT in a process,
//! reads the build's struct layout from its own machine code ([`layout`]),
//! walks Lua stacks at sample time with a BPF program, and names Lua
//! functions.

mod bytecode;
mod elf;
pub mod error;
pub mod layout;
mod namer;
mod probe;
mod process;
mod record;
#[doc(hidden)]
pub mod testing;

pub use error::{LuaError, NotReadable};
pub use layout::{Layout, Variant};
pub use namer::{LuaFrame, LuaFrameKind, LuaStack, Namer};
pub use probe::{LuaProbe, ProbeOptions, ProbeStats, MAX_FRAMES};
pub use process::LuaProcessInfo;
pub use record::{RawFrame, RawLuaStack, StackMatcher, VmState, WalkStatus};
