//! Kernel symbolization: kernel addresses to `_[k]` frames.
//!
//! Kernel addresses are global (one kernel for all processes), so a recording's
//! kernel addresses are deduplicated across processes and looked up once.
//! blazesym reads `/proc/kallsyms` (real addresses when `kptr_restrict` allows
//! it, which includes modules and BPF programs) and prefers a matching
//! `vmlinux` if one is installed.

use blazesym::symbolize::source::{Kernel, Source};
use blazesym::symbolize::{Input, Symbolized};

use crate::frame::{Frame, FrameKind, KERNEL_MODULE};
use crate::process::sym_frames;
use crate::Error;

/// Lowest kernel address on x86-64 and arm64 (the upper half of the address
/// space). Anything below cannot be kernel code.
const KERNEL_SPACE_START: u64 = 0xffff_0000_0000_0000;

/// Symbolizes kernel addresses.
#[derive(Debug)]
pub struct KernelSymbolizer {
    inner: blazesym::symbolize::Symbolizer,
    hidden: bool,
}

impl Default for KernelSymbolizer {
    fn default() -> Self {
        KernelSymbolizer::new()
    }
}

impl KernelSymbolizer {
    /// A kernel symbolizer for the running kernel.
    pub fn new() -> KernelSymbolizer {
        let inner = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(false)
            .enable_inlined_fns(false)
            .build();
        KernelSymbolizer {
            inner,
            hidden: kallsyms_hidden(),
        }
    }

    /// Symbolizes exact kernel addresses (subtract 1 from return addresses
    /// first). Returns one frame per address; unknown addresses become
    /// `[unknown]`. Fails only if no kernel symbols can be read at all
    /// (`/proc/kallsyms` unreadable, or all zero under `kptr_restrict`).
    pub fn symbolize(&self, addrs: &[u64]) -> Result<Vec<Frame>, Error> {
        if self.hidden {
            return Err(Error::KernelSymbolsHidden);
        }
        let valid: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|&a| a >= KERNEL_SPACE_START)
            .collect();
        let src = Source::Kernel(Kernel {
            debug_syms: false,
            ..Kernel::default()
        });
        let syms = if valid.is_empty() {
            Vec::new()
        } else {
            self.inner
                .symbolize(&src, Input::AbsAddr(&valid))
                .map_err(|source| Error::KernelSymbols { source })?
        };
        let mut syms = syms.into_iter();
        Ok(addrs
            .iter()
            .map(|&a| {
                if a < KERNEL_SPACE_START {
                    return Frame::unknown(FrameKind::Kernel);
                }
                match syms.next() {
                    Some(Symbolized::Sym(sym)) => {
                        sym_frames(&sym, FrameKind::Kernel).swap_remove(0)
                    }
                    _ => Frame::unknown(FrameKind::Kernel),
                }
            })
            .collect())
    }

    /// The frame used for every kernel address when kernel symbols are
    /// unavailable: `[kernel.kallsyms]`, as perf shows it.
    pub fn unavailable_frame() -> Frame {
        Frame::unnamed(KERNEL_MODULE, FrameKind::Kernel)
    }
}

/// Whether `/proc/kallsyms` hides addresses: every address in its first
/// lines is zero (per-CPU symbols legitimately sit at 0 on some kernels, so a
/// single line proves nothing).
fn kallsyms_hidden() -> bool {
    use std::io::{BufRead, BufReader};
    let Ok(file) = std::fs::File::open("/proc/kallsyms") else {
        return false; // blazesym reports the real error (or uses vmlinux)
    };
    let mut seen = 0;
    for line in BufReader::new(file).lines().take(1000) {
        let Ok(line) = line else {
            return false;
        };
        seen += 1;
        if !line
            .split(' ')
            .next()
            .is_some_and(|a| a.bytes().all(|b| b == b'0'))
        {
            return false;
        }
    }
    seen > 0
}
