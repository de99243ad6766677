//! Errors of the pipeline: those of the libraries it calls, passed through
//! as they are, and the few of its own. Each names what failed and carries
//! its cause as its source, never in its message as well.

use std::path::PathBuf;

/// Errors of the subcommands' pipelines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, parsing or writing a profile, an SVG or a page.
    #[error(transparent)]
    Profile(#[from] nflame_profile::Error),
    /// Drawing a flame graph.
    #[error(transparent)]
    Render(#[from] nflame_render::Error),
    /// Classification rules or report options that cannot be used.
    #[error(transparent)]
    Diagnose(#[from] nflame_diagnose::Error),
    /// A classification rules file that cannot be read.
    #[error("cannot read the rules file {}", path.display())]
    RulesFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a report to the caller's writer failed.
    #[error("cannot write the report")]
    WriteReport(#[source] std::io::Error),
}
