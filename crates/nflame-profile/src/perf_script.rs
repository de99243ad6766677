//! `perf script` text to folded stacks (being written).
