//! nflame-profile: the folded-profile model at the centre of nflame.
//!
//! A profile is a multiset of call stacks, each written root first as
//! `frame;frame;…;leaf COUNT` (Brendan Gregg's folded format, as FlameGraph and
//! inferno read it). This crate owns everything nflame does with such profiles
//! and nothing that needs a syscall beyond reading and writing files:
//!
//! - [`io`]: opening inputs (plain, gzip, or `-` for stdin) and writing outputs
//!   atomically (temporary file + rename, gzip by extension);
//! - [`folded`]: the line parser and the streaming reader with precise errors;
//! - [`Profile`]: merged stacks, totals, sorted output, in one [`Unit`]
//!   (samples, or time: see [`mod@unit`], which also says how fractional
//!   counts are kept exactly);
//! - [`filter`]: keep or drop stacks by frame regex;
//! - [`diff`]: two profiles compared: normalisation and per-unit scaling;
//! - [`frame_shares`]: the frames whose share changed most between two profiles;
//! - [`embed`]: the context and profiles stored inside nflame's SVGs;
//! - [`perf_script`]: `perf script` text to folded stacks (nflame's collapser);
//! - [`tree`]: the stacks of one or two profiles as a prefix tree of interned
//!   frames, for analyses of every frame of every stack;
//! - [`text`]: names from targets made safe to show (control characters,
//!   surrounding blanks);
//! - [`lua`]: the markers of Lua frames and the LuaJIT VM's state read back
//!   from a stack.
//! - [`shapes`]: seeded synthetic profiles in the shapes benchmarks measure.
//!
//! Rendering lives in `nflame-render`; the recorder in `nflame-sampler`.

pub mod diff;
pub mod embed;
mod error;
pub mod export;
pub mod filter;
pub mod folded;
pub mod frame_shares;
pub mod io;
pub mod lua;
pub mod perf_script;
mod profile;
pub mod shapes;
pub mod text;
pub mod tree;
pub mod unit;

pub use error::{Error, ParseError, ParseErrorKind};
pub use folded::{ReadOptions, SkippedLines};
pub use profile::{MergeError, Profile};
pub use unit::{Measure, Unit};

/// The suffix that marks kernel frames, as `stackcollapse-perf.pl --all` writes it.
pub const KERNEL_SUFFIX: &str = "_[k]";
/// The suffix that marks JIT-compiled frames, as `stackcollapse-perf.pl --all` writes it.
pub const JIT_SUFFIX: &str = "_[j]";
