//! Kernel symbolization: kernel addresses to `_[k]` frames.
//!
//! Kernel addresses are global (one kernel for all processes), so a recording's
//! kernel addresses are deduplicated across processes and looked up once.
//! blazesym reads `/proc/kallsyms` (real addresses when `kptr_restrict` allows
//! it, which includes modules and BPF programs) and prefers a matching
//! `vmlinux` if one is installed.
//!
//! [`fold`](crate::fold) reads `/proc/kallsyms` itself into a [`Kallsyms`]
//! table (shareable across threads, so it can be loaded on a background
//! thread while sampling runs: [`crate::warm_up`]) and only falls back to
//! blazesym's kernel source when that table is unavailable.

use std::sync::Arc;

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

/// The kernel's symbol table from `/proc/kallsyms`, sorted by address.
///
/// A frame is named after the last symbol at or below its address (the
/// first listed when several share that address), as blazesym and perf do
/// for kallsyms. `Send + Sync`: load once, share with every thread.
#[derive(Debug, Default)]
pub struct Kallsyms {
    /// (address, offset of the name in `names`, name length), by address.
    syms: Vec<(u64, u32, u32)>,
    names: String,
}

impl Kallsyms {
    /// Reads and parses `/proc/kallsyms`.
    ///
    /// Errors if it cannot be read ([`Error::KernelSymbolsRead`]) or shows
    /// only zero addresses ([`Error::KernelSymbolsHidden`]).
    pub fn load() -> Result<Kallsyms, Error> {
        let text = std::fs::read_to_string("/proc/kallsyms")
            .map_err(|source| Error::KernelSymbolsRead { source })?;
        let table = Kallsyms::parse(&text);
        if table.is_empty() {
            return Err(Error::KernelSymbolsHidden);
        }
        Ok(table)
    }

    /// Parses the text of a kallsyms file (`ADDR TYPE NAME [MODULE]` lines).
    /// Lines with a zero or malformed address are skipped.
    pub fn parse(text: &str) -> Kallsyms {
        let mut syms = Vec::with_capacity(text.len() / 40);
        let mut names = String::with_capacity(text.len() / 2);
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(addr), Some(_kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            let (Ok(start), Ok(len)) = (u32::try_from(names.len()), u32::try_from(name.len()))
            else {
                break; // over 4 GiB of names: not a real kallsyms
            };
            names.push_str(name);
            syms.push((addr, start, len));
        }
        // Stable: among equal addresses the first listed stays first.
        syms.sort_by_key(|&(addr, _, _)| addr);
        Kallsyms { syms, names }
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// Whether the table has no symbols.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The name of the symbol `addr` falls in, if any symbol starts at or
    /// below it.
    pub fn find(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|&(a, _, _)| a <= addr);
        let last = i.checked_sub(1)?;
        let at = self.syms[last].0;
        let first = self.syms[..last].partition_point(|&(a, _, _)| a < at);
        let (_, start, len) = self.syms[first];
        self.names.get(start as usize..(start + len) as usize)
    }

    /// Symbolizes exact kernel addresses (subtract 1 from return addresses
    /// first): one frame per address, `[unknown]` for addresses outside the
    /// kernel's half of the address space or below every symbol.
    pub fn symbolize(&self, addrs: &[u64]) -> Vec<Frame> {
        addrs
            .iter()
            .map(
                |&a| match self.find(a).filter(|_| a >= KERNEL_SPACE_START) {
                    Some(name) => Frame::named(name, FrameKind::Kernel),
                    None => Frame::unknown(FrameKind::Kernel),
                },
            )
            .collect()
    }
}

/// Kernel symbols for [`crate::fold`]: our own kallsyms table, or blazesym's
/// kernel source (a `vmlinux`) when kallsyms cannot be read.
pub(crate) fn symbolize_kernel_addrs(
    kallsyms: Option<&Result<Arc<Kallsyms>, Error>>,
    addrs: &[u64],
) -> Result<Vec<Frame>, Error> {
    match kallsyms {
        Some(Ok(table)) => Ok(table.symbolize(addrs)),
        Some(Err(Error::KernelSymbolsHidden)) => Err(Error::KernelSymbolsHidden),
        Some(Err(_)) => KernelSymbolizer::new().symbolize(addrs),
        None => match Kallsyms::load() {
            Ok(table) => Ok(table.symbolize(addrs)),
            Err(Error::KernelSymbolsHidden) => Err(Error::KernelSymbolsHidden),
            Err(_) => KernelSymbolizer::new().symbolize(addrs),
        },
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
