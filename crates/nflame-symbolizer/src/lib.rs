//! nflame-symbolizer: raw sample addresses → named frames → folded stacks.
//!
//! The sampler (`nflame-sampler`) records addresses and, for every process,
//! its executable mappings. This crate names those addresses with
//! [blazesym](https://docs.rs/blazesym) and folds the samples into an
//! [`nflame_profile::Profile`]. The stages:
//!
//! - **user addresses** ([`ProcessSymbolizer`]): address → recorded mapping →
//!   file offset → the ELF file, opened once as the process sees it
//!   (`nflame_procfs::files`: its `/proc/PID/map_files` entry or its path
//!   inside its root while it lives, its path here after it exited, always
//!   the mapped inode, never blocking).
//!   Because the *recorded* mappings are used, processes that exited before
//!   symbolization are still named. Without recorded mappings the live
//!   `/proc/PID/maps` is read. vDSO frames are named from our own vDSO, JIT
//!   code from perf maps (`/tmp/perf-PID.map`, or the container's
//!   `/proc/PID/root/tmp/perf-NSPID.map`).
//!   Stripped Go binaries (`docker-proxy`) are named from `.gopclntab`.
//!   A file is named from its symbol tables first (a stripped one from its
//!   detached debug file's `.symtab`); DWARF is read only when no symbol
//!   table exists or inlined functions are requested.
//! - **kernel addresses** ([`Kallsyms`], else [`KernelSymbolizer`]):
//!   `/proc/kallsyms`, once per recording; [`warm_up`] loads it on a
//!   background thread while sampling runs, for [`fold_with`].
//! - **folding** ([`fold`], [`fold_with`]): each process's addresses are
//!   deduplicated and mapped to (file, offset); each distinct file is
//!   symbolized once for all processes, files in parallel with rayon and one
//!   [`SymbolCache`] (a blazesym `Symbolizer`, which is not `Send`) per task;
//!   each distinct stack is written once. [`Roots`] puts a label at the root
//!   of chosen processes' stacks (Docker roles) and decides, by pid, which
//!   stacks of the others are kept; no folded text is parsed again.
//!
//! It reads the recording (`nflame-recording`) and process facts
//! (`nflame-procfs`), not the sampler: it needs no perf-event plumbing.
//!
//! Targets are hostile input (nflame runs as root): every file is opened
//! inside its process's root and checked before anything parses it, and
//! blazesym is only given what it can take (symbol tables within caps,
//! DWARF only from files whose compressed sections were checked and which
//! link to no other file, a path that stays valid, a copy of files others
//! may truncate): the `target` module says why. Perf maps are read within
//! caps from files of the right owner ([`PerfMap::for_process`]). What is
//! refused is skipped, one line each in [`FoldStats::skipped`], and the
//! fold goes on.
//!
//! A user stack that ends in an address outside every executable mapping
//! (a frame-pointer walk through code without frame pointers ends in
//! garbage), or that the sampler's DWARF unwinder could not finish
//! ([`nflame_recording::RawSample::user_truncated`]), is cut there and rooted
//! at one [`TRUNCATED`] frame.
//!
//! Names are demangled (Rust, C++). A frame without a symbol is still a frame:
//! `[libfoo.so]` (the module's basename, like perf) or `[unknown]`. Kernel
//! frames carry `_[k]`, JIT frames `_[j]`. Return addresses (every frame but
//! the leaf) are looked up at `addr - 1`, inside the call instruction.
//! Names lose control characters and surrounding blanks ([`sanitize`]).
//!
//! A folded stack reads, root first:
//! `comm[-PID][;thread-TID];user root…user leaf;kernel root_[k]…kernel leaf_[k]`
//! ([`FoldOptions`] says which parts appear).
//!
//! ```no_run
//! # fn demo(recording: &nflame_recording::Recording) -> Result<(), nflame_symbolizer::Error> {
//! use nflame_symbolizer::{fold, FoldOptions};
//! let mut opts = FoldOptions::default();
//! opts.per_pid = true;
//! let (profile, stats) = fold(recording, &opts)?;
//! eprintln!("{:.1}% of frames named", stats.named_share() * 100.0);
//! profile.write_folded(&mut std::io::stdout().lock()).expect("stdout");
//! # Ok(()) }
//! ```
//!
//! Symbolizing other processes needs root (or `CAP_SYS_ADMIN` for
//! `map_files`, `CAP_SYSLOG` for kernel addresses); without it, frames are
//! still produced, just less often named.

mod error;
mod fold;
mod frame;
mod gopclntab;
mod kernel;
mod perf_map;
mod prepare;
mod process;
mod target;

/// Entry point for the `gopclntab` fuzz target in `fuzz/` (not part of the API).
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a `.gopclntab` section (`text`: the `.text` address; `segments`:
    /// PT_LOAD (file offset, size, address)) and looks up `addrs` and the
    /// addresses of `offsets`; `None` when the data is no table.
    pub fn gopclntab(
        data: &[u8],
        text: Option<u64>,
        segments: Vec<(u64, u64, u64)>,
        addrs: &[u64],
        offsets: &[u64],
    ) -> Option<Vec<Option<String>>> {
        let table = crate::gopclntab::GoTable::parse(data.to_vec(), text, segments)?;
        let at = addrs
            .iter()
            .copied()
            .chain(offsets.iter().filter_map(|&o| table.virt_addr(o)));
        Some(at.map(|a| table.find(a).map(str::to_owned)).collect())
    }
}

pub use error::Error;
pub use fold::{
    fold, fold_with, is_outermost_frame, kind_frame, FoldOptions, FoldStats, IncrementalFold,
    LuaFold, OtherStacks, Roots, Weight,
};
pub use frame::{
    module_placeholder, sanitize, Frame, FrameKind, KERNEL_MODULE, TRUNCATED, UNKNOWN,
};
pub use kernel::{Kallsyms, KernelSymbolizer};
pub use perf_map::PerfMap;
pub use prepare::{warm_up, Prepared};
pub use process::{ModuleFailure, ProcessSymbolizer, SymbolCache, SymbolizeOptions};
