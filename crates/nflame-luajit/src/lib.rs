//! nflame-luajit: LuaJIT knowledge for nflame. Finds LuaJIT in a process,
//! reads the build's struct layout from its own machine code ([`layout`]),
//! walks Lua stacks at sample time with a BPF program, and names Lua
//! functions.

mod elf;
pub mod error;
pub mod layout;
#[doc(hidden)]
pub mod testing;

pub use error::{LuaError, NotReadable};
pub use layout::{Layout, Variant};
