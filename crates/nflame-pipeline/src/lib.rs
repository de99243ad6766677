//! nflame-pipeline: nflame's subcommands as library calls.
//!
//! The CLI parses its arguments into the plain option structs of this crate
//! and makes one call; the libraries below do the work, this crate only
//! orders it:
//!
//! - [`record()`] is `nflame record`: outputs created first, Docker targets
//!   found (`nflame-docker`), samples taken (`nflame-sampler`) while kernel
//!   symbols load, stacks folded with role labels by pid
//!   (`nflame-symbolizer`), folded and SVG outputs written atomically; the
//!   caller gets [`RecordEvents`] for its status line and the summary text;
//! - [`compare()`] is `nflame diff`: it reads the two profiles side by side,
//!   builds their tree of stacks once, and from it draws the differential
//!   graph (and its reverse view) while it builds the frame-share report and
//!   the category change report; outputs are created before anything is
//!   read, so an unwritable destination fails first;
//! - [`diagnose()`] is `nflame report`: the category report of one profile or
//!   the change report of two, and the one-file HTML page ([`page`]);
//!   [`diagnosis`] also holds the glue every subcommand that gives a verdict
//!   shares (rules, category and change reports);
//! - [`convert`] is `nflame render`, `collapse`, `filter` and `export`;
//! - [`demo`] is `nflame demo`, on the built-in [`workload`].
//!
//! Printing is the caller's: the results write themselves as text or JSON to
//! any writer. Nothing here parses command lines or reads the process's
//! arguments; the command line stored in SVGs and on the page is an option.

pub mod compare;
pub mod convert;
pub mod demo;
pub mod diagnosis;
mod error;
pub mod page;
pub mod record;
pub mod workload;

pub use compare::{compare, CompareOptions, Comparison};
pub use diagnosis::{diagnose, diagnose_inputs, Diagnosis, DiagnosisOptions};
pub use error::Error;
pub use record::{record, RecordEvents, RecordJob, RecordOutcome};

use nflame_profile::embed::Context as SvgContext;

/// The context every SVG carries: nflame's version, the kind of graph
/// (`profile`, `diff`) and, when given, the command line that made it.
pub fn svg_context(kind: &str, command_line: Option<&str>) -> SvgContext {
    let mut c = SvgContext::new(nflame_render::VERSION, kind);
    c.command = command_line.map(str::to_owned);
    c
}
