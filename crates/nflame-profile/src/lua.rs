//! How Lua frames are marked in a folded stack, and what a stack says about
//! the LuaJIT VM it sampled.
//!
//! `nflame record` puts the Lua frames of LuaJIT processes into their stacks
//! (see `nflame-symbolizer`'s `LuaFold`). Like `_[k]` for kernel frames,
//! every frame read from a Lua stack ends with a marker:
//!
//! - [`LUA_SUFFIX`] (`_[l]`): a Lua function (`handler@/srv/app.lua:12_[l]`),
//!   a main chunk (`=content_by_lua(nginx.conf:20)_[l]`), a builtin
//!   (`string.format_[l]`), or one of the VM-state frames below;
//! - [`LUA_COMPILED_SUFFIX`] (`_[lj]`): the Lua function a compiled trace was
//!   running.
//!
//! So `_\[l` matches every Lua frame in `filter` patterns, palettes and
//! classification rules. C functions the Lua code called keep their plain
//! names (they are C).
//!
//! A frame nflame could not read is [`UNREADABLE_FRAME`]; the VM's native
//! frames of a sample whose Lua stack was not read become [`NO_STACK_FRAME`]
//! (never `[unknown]`).
//!
//! When the VM was not running Lua code or a C function it called, a frame
//! says what it did instead, after the Lua frames: [`GC_FRAME`],
//! [`TRACE_EXIT_FRAME`], [`TRACE_RECORD_FRAME`], [`TRACE_OPTIMIZE_FRAME`],
//! [`TRACE_ASSEMBLE_FRAME`].
//!
//! [`vm_state`] reads the VM's state back from a stack, so that a report of
//! a folded file (or of a profile merged or filtered since) shows the VM's
//! own view (what `lj-vm-states` showed): the state frame if any; else
//! `compiled` when the last Lua frame is marked `_[lj]`; else `C` when user
//! frames (a C function, an FFI call, a LuaJIT helper) follow the last Lua
//! frame; else `interpreted`. The recorder's summary counts the VM's own
//! `G->vmstate` instead; the two agree except where a C function's frames
//! were lost (a truncated C stack) or a trace exited between the two reads.

/// The marker of frames read from a Lua stack.
pub const LUA_SUFFIX: &str = "_[l]";
/// The marker of the Lua function a compiled trace was running.
pub const LUA_COMPILED_SUFFIX: &str = "_[lj]";

/// In place of the VM's native frames of a sample whose Lua stack was not
/// read (its process was not registered yet, or the program's ring buffer
/// was full): the time was spent in Lua code, which is not known.
pub const NO_STACK_FRAME: &str = "[lua: no stack]_[l]";
/// A Lua frame that could not be read (never named by a guess).
pub const UNREADABLE_FRAME: &str = "[lua: unreadable]_[l]";

/// The VM was collecting garbage.
pub const GC_FRAME: &str = "[LuaJIT GC]_[l]";
/// The VM was leaving a compiled trace.
pub const TRACE_EXIT_FRAME: &str = "[LuaJIT trace exit]_[l]";
/// The VM was recording a trace.
pub const TRACE_RECORD_FRAME: &str = "[LuaJIT trace recording]_[l]";
/// The VM was optimizing a trace.
pub const TRACE_OPTIMIZE_FRAME: &str = "[LuaJIT trace optimizing]_[l]";
/// The VM was assembling a trace.
pub const TRACE_ASSEMBLE_FRAME: &str = "[LuaJIT trace assembling]_[l]";

/// The VM states [`vm_state`] tells apart, in the order reports list them.
pub const VM_STATES: [&str; 8] = [
    "interpreted",
    "compiled",
    "C",
    "GC",
    "trace exit",
    "trace recording",
    "trace optimizing",
    "trace assembling",
];

/// Whether `frame` was read from a Lua stack (ends with `_[l]` or `_[lj]`).
pub fn is_lua_frame(frame: &str) -> bool {
    frame.ends_with(LUA_SUFFIX) || frame.ends_with(LUA_COMPILED_SUFFIX)
}

/// The VM state a stack (frames root first, `;`-separated) was sampled in,
/// one of [`VM_STATES`]; `None` when it has no Lua frame. See the module
/// docs for the rule.
pub fn vm_state(stack: &str) -> Option<&'static str> {
    let frames: Vec<&str> = stack.split(';').collect();
    let last = frames.iter().rposition(|f| is_lua_frame(f))?;
    let state = match frames[last] {
        GC_FRAME => "GC",
        TRACE_EXIT_FRAME => "trace exit",
        TRACE_RECORD_FRAME => "trace recording",
        TRACE_OPTIMIZE_FRAME => "trace optimizing",
        TRACE_ASSEMBLE_FRAME => "trace assembling",
        f if f.ends_with(LUA_COMPILED_SUFFIX) => "compiled",
        _ if frames[last + 1..]
            .iter()
            .any(|f| !f.ends_with(crate::KERNEL_SUFFIX)) =>
        {
            "C"
        }
        _ => "interpreted",
    };
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_vm_state_back() {
        let entry =
            "nginx;main;ngx_http_lua_run_thread;lua_resume;=content_by_lua(nginx.conf:20)_[l]";
        let at = |rest: &str| vm_state(&format!("{entry};{rest}"));
        assert_eq!(at("handler@/a.lua:3_[l]"), Some("interpreted"));
        assert_eq!(
            at("handler@/a.lua:3_[l];page_fault_[k];do_fault_[k]"),
            Some("interpreted")
        );
        assert_eq!(
            at("handler@/a.lua:3_[lj];getpid;syscall_[k]"),
            Some("compiled")
        );
        assert_eq!(
            at("handler@/a.lua:3_[l];ngx_http_lua_ngx_say;writev"),
            Some("C")
        );
        assert_eq!(
            at("handler@/a.lua:3_[l];string.format_[l]"),
            Some("interpreted")
        );
        assert_eq!(
            at("handler@/a.lua:3_[l];[LuaJIT GC]_[l];[libluajit-5.1.so.2.1.0]"),
            Some("GC")
        );
        assert_eq!(
            at("f@/a.lua:3_[l];[LuaJIT trace recording]_[l]"),
            Some("trace recording")
        );
        assert_eq!(
            vm_state("nginx;main;ngx_epoll_process_events;epoll_wait_[k]"),
            None
        );
        assert!(is_lua_frame("x_[lj]") && is_lua_frame(GC_FRAME) && !is_lua_frame("x_[k]"));
        assert!(VM_STATES.contains(&"trace assembling"));
    }
}
