//! The crate's error type.

/// Errors of symbolization and folding. Expected misses (an address without a
/// symbol, a module that cannot be read) are not errors: they become
/// `[module]` / `[unknown]` frames and are counted in [`crate::FoldStats`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/proc/kallsyms` shows only zero addresses.
    #[error(
        "reading kernel symbols: /proc/kallsyms hides addresses \
         (kernel.kptr_restrict is set, or this user lacks CAP_SYSLOG)"
    )]
    KernelSymbolsHidden,
    /// `/proc/kallsyms` could not be read.
    #[error("reading kernel symbols from /proc/kallsyms")]
    KernelSymbolsRead {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No kernel symbols could be read.
    #[error("reading kernel symbols")]
    KernelSymbols {
        /// blazesym's error.
        #[source]
        source: blazesym::Error,
    },
    /// The folded profile's total would overflow 64 bits.
    #[error("folding samples: the profile total overflows 64 bits")]
    Overflow,
}
