//! nflame-luajit: Lua-land stacks of LuaJIT processes (OpenResty's nginx,
//! the `luajit` interpreter, anything embedding LuaJIT 2.1 on x86-64).
//!
//! A Lua stack lives in the heap and changes all the time, so it has to be
//! read at the instant a sample is taken. This crate does that with a small
//! BPF program run by the sampler's own perf counters, then names the raw
//! frames from the process's memory. It does not open perf counters and
//! knows nothing of the sampler's internals: the sampler drives it.
//!
//! # Stages
//!
//! - [`layout`]: a LuaJIT build's struct offsets, read from the build's own
//!   machine code (exported functions decoded with `iced-x86`), never from a
//!   table keyed by build. Works for Debian's `libluajit2-5.1-2` (OpenResty
//!   luajit2, what `libnginx-mod-http-lua` uses) and Debian's upstream
//!   `luajit` 2.1.0-beta3, whose structures differ (the dispatch table is at
//!   G+0xfa8 in one and G+0xf80 in the other). A build it cannot read gives a
//!   [`NotReadable`] saying why (not GC64, an unknown code shape, …).
//! - `process`: finds LuaJIT in a process (a mapped `libluajit*.so`, or an
//!   executable exporting LuaJIT's API), its load address, its VM's
//!   `global_State` (G), and checks the layout against the live VM (dispatch
//!   entries inside the interpreter, thread ↔ G links, stack bounds).
//! - `probe` ([`LuaProbe`]): the BPF program (`bpf/luastack.bpf.c`, compiled
//!   by `scripts/build-bpf.sh`, committed, embedded) loaded with aya. On each
//!   sample of a registered process it takes G from `r14` (the VM's dispatch
//!   register, always set in the interpreter and in compiled code, validated
//!   through G's main thread) or the last known G, reads the VM state and
//!   `G->cur_L`, and walks that thread's frames (GC64 layout) from the
//!   interpreter's BASE register, `G->jit_base` in a trace, or `L->base`,
//!   leaf first, at most 128 frames with `bpf_loop`, reading each frame's
//!   function (its bytecode or C address, its builtin id) there and then:
//!   short-lived closures are often freed before user space could. It emits
//!   raw records ([`RawLuaStack`]) to a ring buffer. When the thread's
//!   `L->cframe` (the VM's C frame) is not on the sampled thread's stack,
//!   the process is running its own C code (nginx's event loop while a
//!   request's coroutine waits, after `lua_pcall` returned, or another
//!   thread's VM): the record says [`WalkStatus::NotRunning`] and carries no
//!   frames.
//! - `record`: the record format, the VM state ([`VmState`]), and
//!   [`StackMatcher`], which pairs Lua stacks with perf samples.
//! - `namer` ([`Namer`]): turns raw frames into [`LuaFrame`]s, reading
//!   prototypes, bytecode and strings from `/proc/PID/mem` once per function
//!   (cached by address, re-checked once per round, dropped when the
//!   process makes a new VM).
//! - `bytecode`: the opcode numbering (selected by the build's `BC_FUNCC`,
//!   read from `lua_tocfunction`) and call-site names.
//!
//! # Driving it from a sampler
//!
//! ```no_run
//! # use std::os::fd::AsFd;
//! # fn counters() -> Vec<std::os::fd::OwnedFd> { Vec::new() }
//! use nflame_luajit::{LuaProbe, Namer, StackMatcher};
//! // Without BPF, the error says why (privilege, kernel): Lua frames off.
//! let mut probe = LuaProbe::load()?;
//! let mut namer = Namer::new();
//! let pid = 1234;
//! match probe.add_process(pid) {
//!     Ok(info) => namer.add_process(&info)?,
//!     Err(why) => eprintln!("pid {pid}: Lua frames off: {why}"),
//! }
//! for fd in counters() {
//!     probe.attach(fd.as_fd())?; // the sampler's own sampling counters
//! }
//! let mut matcher = StackMatcher::new(200_000);
//! // In the drain loop: read the perf rings, then the probe's ring (a
//! // stack is written before its perf sample: every sample read has its own).
//! namer.new_round();
//! probe.drain(|raw| matcher.push(raw));
//! // for each perf sample (tid, time): the Lua stack taken at that sample
//! if let Some(raw) = matcher.take(pid, 42) {
//!     let stack = namer.resolve(&raw);
//!     let frames: Vec<String> = stack.frames.iter().filter_map(|f| f.folded(false)).collect();
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The BPF program runs when the counter overflows, before the kernel writes
//! the perf sample, so per thread the Lua stacks arrive in the order of the
//! perf samples, each within microseconds of its sample's timestamp (both
//! `CLOCK_MONOTONIC`: open the perf counters with `use_clockid`; Linux 6.1
//! stamps the sample just before the program runs). The program returns 1:
//! the perf sample is written as before.
//!
//! # Frames and their marker
//!
//! A Lua function is `name@chunk:firstline`: `name` is what its caller's
//! bytecode used at the call site (local, global, field, upvalue), as
//! LuaJIT's own `lj_debug_funcname` reports it, else `?`; the chunk is as
//! the program named it, without the `@` that marks a file
//! (`compute_a@/srv/app/work.lua:6`). A main chunk is its chunk name exactly
//! as given (`=content_by_lua(nginx.conf:20)`, `@/srv/app/main.lua`). A fast
//! function (builtin) is its library name (`string.format`), read from the
//! VM's own `package.loaded` and global tables (OpenResty's `ngx`). A C
//! function called from Lua is named the same way when such a table holds
//! it (`ngx.say`), else left as an
//! address ([`LuaFrameKind::CFunction`]) for the symbolizer. With
//! `--lua-lines` a frame gets ` line N` (the line being run).
//!
//! Frames that come from the Lua stack end with **`_[l]`**, and the function
//! a compiled trace is running with **`_[lj]`**, like `_[k]` for kernel
//! frames: palettes, `filter` and the classifier can tell Lua frames apart by
//! the `_[l` prefix of the marker, and `_[lj]` (Lua + JIT, after `_[j]`)
//! keeps compiled time visible without splitting a function's name.
//!
//! # What it does not see
//!
//! - Functions a trace inlined: compiled code runs them without frames, so
//!   their time goes to the function the trace started in (the trace's
//!   start prototype is the leaf, marked `_[lj]`).
//! - A coroutine's resumer: the walk covers the running coroutine's stack
//!   (in OpenResty, the request's coroutine, whose bottom is the entry chunk).
//! - Non-GC64 builds (LuaJIT 2.0, 2.1 built without GC64) and other
//!   architectures: [`NotReadable`] says so.
//! - The leaf's line in compiled code (a trace gives the function, not the
//!   line), and after a C helper the interpreter called left `L->base`
//!   stale (rare: the leaf frame can then be missing).
//!
//! It needs Linux >= 5.17 (`bpf_loop`, ring buffers, `bpf_task_pt_regs`)
//! and root, or `CAP_BPF` with `CAP_PERFMON`; [`LuaError`] says which is
//! missing.

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
pub use process::{has_luajit, LuaProcessInfo};
pub use record::{RawFrame, RawLuaStack, StackMatcher, VmState, VmStateCounts, WalkStatus};
