//! Errors of the profile crate: every one names the input it came from.
//!
//! A cause (an I/O error, a regex error) is the error's [`source`](std::error::Error::source),
//! not part of its message: printed as a chain (`{:#}` of `anyhow`), each
//! cause appears once.

use std::fmt;
use std::path::PathBuf;

use crate::unit::{Unit, MAX_DECIMALS};

/// What went wrong on one line of a textual input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The line has no count after its stack.
    MissingCount,
    /// The last field is not a non-negative number (`12`, `31.0`, `6.`, `1.25`).
    InvalidCount(String),
    /// The count has more decimals than nflame keeps exactly ([`crate::unit::MAX_DECIMALS`]).
    TooManyDecimals(String),
    /// The count is negative.
    NegativeCount(String),
    /// The count does not fit in 64 bits (in the profile's fixed point).
    CountOverflow(String),
    /// Adding the line's count (as written) makes the total overflow 64 bits.
    TotalOverflow(String),
    /// A count with no stack in front of it.
    EmptyStack,
    /// A stack with an empty frame (`a;;b`).
    EmptyFrame,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// Two counts on one line: a differential folded line.
    Differential,
    /// A `# unit:` header naming a unit nflame does not know.
    UnknownUnit(String),
    /// A `# unit:` header that contradicts the unit of the samples before it.
    MixedUnits {
        /// The unit of the samples already read.
        earlier: Unit,
        /// The unit the header names.
        header: Unit,
    },
    /// Anything else, described.
    Other(String),
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::MissingCount => {
                f.write_str("no sample count at the end of the line (expected `frame;frame COUNT`)")
            }
            ParseErrorKind::InvalidCount(s) => {
                write!(f, "sample count {s:?} is not a non-negative number")
            }
            ParseErrorKind::TooManyDecimals(s) => write!(
                f,
                "sample count {s:?} has more than {MAX_DECIMALS} decimals: nflame keeps counts \
                 exactly, to {MAX_DECIMALS} decimals at most; round the counts"
            ),
            ParseErrorKind::NegativeCount(s) => write!(f, "sample count {s:?} is negative"),
            ParseErrorKind::CountOverflow(s) => {
                write!(f, "sample count {s:?} overflows a 64-bit counter")
            }
            ParseErrorKind::TotalOverflow(s) => write!(
                f,
                "the total overflows a 64-bit counter when this line's count ({s}) is added"
            ),
            ParseErrorKind::EmptyStack => f.write_str("a sample count with an empty stack"),
            ParseErrorKind::EmptyFrame => f.write_str("the stack has an empty frame (`;;`)"),
            ParseErrorKind::InvalidUtf8 => f.write_str("the line is not valid UTF-8"),
            ParseErrorKind::Differential => f.write_str(
                "the line has two counts (a differential folded line); \
                 give the two profiles to `nflame diff` instead",
            ),
            ParseErrorKind::UnknownUnit(s) => write!(
                f,
                "unknown unit {s:?} in a `# unit:` header (nflame knows samples and microseconds)"
            ),
            ParseErrorKind::MixedUnits { earlier, header } => write!(
                f,
                "a `# unit: {header}` header after samples in {earlier}: the input mixes units"
            ),
            ParseErrorKind::Other(s) => f.write_str(s),
        }
    }
}

impl ParseErrorKind {
    /// Whether the line itself is unreadable, so that skipping it (with
    /// [`crate::folded::ReadOptions::skip_bad_lines`]) loses only that line.
    /// A total that overflows or a header that contradicts the input's unit is
    /// not: skipping would change what the rest of the input means.
    pub fn is_bad_line(&self) -> bool {
        !matches!(
            self,
            ParseErrorKind::TotalOverflow(_)
                | ParseErrorKind::UnknownUnit(_)
                | ParseErrorKind::MixedUnits { .. }
        )
    }
}

/// A parse error at a known line of a known input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The input's name as the user gave it (`-` is shown as `<stdin>`).
    pub source_name: String,
    /// 1-based line number.
    pub line: u64,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source_name, self.line, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening or reading an input failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The input.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream of an input is corrupt or truncated.
    #[error("{}: corrupt or truncated gzip data", path.display())]
    Gzip {
        /// The input.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of an input is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An input holds no samples at all.
    #[error("{}: no samples (the input is empty or holds only comments)", path.display())]
    Empty {
        /// The input.
        path: PathBuf,
    },
    /// Writing an output failed; the output was not created.
    #[error("cannot write {}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An invalid regular expression.
    #[error("invalid regular expression {pattern:?}")]
    Regex {
        /// The pattern as given.
        pattern: String,
        /// The cause.
        #[source]
        source: regex::Error,
    },
    /// An SVG that nflame did not write (it carries no profile).
    #[error("{}: an SVG not written by nflame (it carries no embedded profile); give the folded profile instead", path.display())]
    NotNflameSvg {
        /// The input.
        path: PathBuf,
    },
    /// An nflame SVG whose embedded data is damaged.
    #[error("{}: the profile embedded in this SVG is damaged: {what}", path.display())]
    CorruptSvgMetadata {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A profile embedded in an nflame SVG that cannot be decoded.
    #[error("{}: the profile embedded in this SVG is damaged: profile {role:?}", path.display())]
    CorruptEmbeddedProfile {
        /// The input.
        path: PathBuf,
        /// The profile's role (`profile`, `before`, `after`).
        role: String,
        /// What is wrong.
        #[source]
        source: crate::embed::DecodeError,
    },
    /// An nflame SVG whose profile was too large to embed and was written
    /// beside it, where it is missing now.
    #[error("{}: the profile {role:?} of this SVG was too large to embed and was written beside it as {}; that file cannot be read", path.display(), sidecar.display())]
    MissingSidecar {
        /// The SVG.
        path: PathBuf,
        /// The profile's role.
        role: String,
        /// The file the SVG names.
        sidecar: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: Box<Error>,
    },
    /// An nflame SVG whose profile was too large to embed and was left out.
    #[error("{}: the profile {role:?} was too large to embed in this SVG and was not kept ({note}); use the folded profile it was drawn from", path.display())]
    OmittedProfile {
        /// The SVG.
        path: PathBuf,
        /// The profile's role.
        role: String,
        /// What the SVG says about it.
        note: String,
    },
    /// A differential SVG given where one profile is expected.
    #[error("{}: a differential flame graph holds two profiles (before and after); give a flame graph of one profile", path.display())]
    DiffSvg {
        /// The input.
        path: PathBuf,
    },
    /// Two profiles of different units given where one unit is needed
    /// (merged, compared).
    #[error("{first} is in {first_unit} and {second} in {second_unit}: {what} needs profiles of one unit (record them the same way: both on-CPU, or both off-CPU or wall-clock time)")]
    UnitMismatch {
        /// What was attempted: "merging profiles", "comparing profiles".
        what: String,
        /// The first profile's name (a path, or `before`).
        first: String,
        /// Its unit.
        first_unit: Unit,
        /// The second profile's name.
        second: String,
        /// Its unit.
        second_unit: Unit,
    },
    /// An option value that cannot be used.
    #[error("{0}")]
    InvalidOption(String),
}

/// The message and every cause, `: `-separated, as a chain-printing caller
/// (`{:#}` of `anyhow`) shows them.
#[cfg(test)]
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
