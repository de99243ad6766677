//! Export of folded profiles to the formats of continuous-profiling backends and
//! viewers, and import of pprof profiles back into folded stacks.
//!
//! - [`pprof`]: gzip-compressed `profile.proto` (`perftools.profiles.Profile`), as
//!   Grafana Pyroscope, Parca and `go tool pprof` read it; [`read_pprof`] decodes
//!   such a profile (gzip or plain) back into a [`Profile`].
//! - [`speedscope`]: speedscope's JSON file format, one "sampled" profile.
//!
//! A folded profile knows only stacks of frame names and counts, so the exports
//! carry exactly that: one sample per distinct stack, one function and one
//! location per distinct frame name, no addresses, files or line numbers.
//! Context that a folded file does not hold (event, sampling period, duration,
//! start time) comes from [`ExportMeta`].
//!
//! This module owns the encodings only; choosing an output and the command line
//! live in the `nflame` binary.

use std::path::{Path, PathBuf};

use crate::io::Output;
use crate::{Error, Profile};

pub mod pprof;
pub mod speedscope;

pub use pprof::{read_pprof, read_pprof_file, write_pprof};
pub use speedscope::write_speedscope;

/// What an export says about a profile beyond its stacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportMeta {
    /// The profile's name (speedscope shows it; pprof stores it as a comment and
    /// as the name of the main mapping). Default is empty, written as `nflame`.
    pub name: String,
    /// The event that was sampled (`cpu-clock`, `cycles`, …), stored as a comment.
    /// Default is `None`: not written.
    pub event: Option<String>,
    /// Nanoseconds of CPU time one sample stands for (the sampling period of a
    /// time-based event, e.g. 10 000 000 at 99 Hz is ~10 101 010). When set, pprof
    /// gets a second value `cpu/nanoseconds` = count × period and speedscope
    /// weights are in nanoseconds. Default is `None`: counts only.
    pub period_ns: Option<u64>,
    /// How long the recording lasted, in nanoseconds. Default is `None`.
    pub duration_ns: Option<u64>,
    /// When the recording started, in nanoseconds since the Unix epoch.
    /// Default is `None`.
    pub time_ns: Option<u64>,
}

impl ExportMeta {
    /// Metadata with only a name; set the other fields as needed.
    pub fn new(name: impl Into<String>) -> ExportMeta {
        ExportMeta {
            name: name.into(),
            ..ExportMeta::default()
        }
    }

    /// The name to show: [`ExportMeta::name`], or `nflame` when it is empty.
    pub(crate) fn display_name(&self) -> &str {
        if self.name.is_empty() {
            "nflame"
        } else {
            &self.name
        }
    }
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Gzip-compressed `profile.proto`; see [`write_pprof`].
    Pprof,
    /// speedscope's JSON file format; see [`write_speedscope`].
    Speedscope,
}

impl Format {
    /// The format's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pprof => "pprof",
            Format::Speedscope => "speedscope",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Format, Error> {
        match s {
            "pprof" => Ok(Format::Pprof),
            "speedscope" => Ok(Format::Speedscope),
            _ => Err(Error::InvalidOption(format!(
                "unknown export format {s:?} (expected pprof or speedscope)"
            ))),
        }
    }
}

/// Writes `profile` in `format` to `path` atomically (`-` for standard output);
/// errors name `path`.
///
/// A pprof file is always gzip-compressed, whatever its name: when `path` ends in
/// `.gz` the output's own compression does it, otherwise [`write_pprof`] does.
/// A speedscope file ending in `.gz` is gzip-compressed JSON.
pub fn export_file(
    profile: &Profile,
    meta: &ExportMeta,
    format: Format,
    path: impl AsRef<Path>,
) -> Result<(), Error> {
    let path = path.as_ref();
    let mut out = Output::create(path)?;
    let result = match format {
        Format::Pprof if crate::io::is_gzip_path(path) => {
            let bytes = pprof::encode(profile, meta, path)?;
            out.writer()
                .write_all(&bytes)
                .map_err(|e| out.write_error(e))
        }
        Format::Pprof => pprof::write_named(profile, meta, out.writer(), path),
        Format::Speedscope => speedscope::write_named(profile, meta, out.writer(), path),
    };
    result?;
    out.commit()
}

/// The name errors of the writer-generic functions give their output.
pub(crate) fn writer_name(format: Format, meta: &ExportMeta) -> PathBuf {
    PathBuf::from(format!(
        "<{} output of {}>",
        format.name(),
        meta.display_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parses() {
        assert_eq!("pprof".parse::<Format>().unwrap(), Format::Pprof);
        assert_eq!("speedscope".parse::<Format>().unwrap(), Format::Speedscope);
        let e = "svg".parse::<Format>().unwrap_err();
        assert!(e.to_string().contains("\"svg\""), "{e}");
    }

    #[test]
    fn export_file_pprof_is_gzip_with_either_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = Profile::from_stacks([("main;a", 2), ("main;b_[k]", 3)]);
        let meta = ExportMeta::new("t");
        for name in ["out.pb.gz", "out.pb"] {
            let path = dir.path().join(name);
            export_file(&p, &meta, Format::Pprof, &path).unwrap();
            let raw = std::fs::read(&path).unwrap();
            assert_eq!(&raw[..2], &[0x1f, 0x8b], "{name}");
            // Exactly one layer of gzip: the reader gets the profile back.
            let back = read_pprof_file(&path).unwrap();
            assert_eq!(back, p, "{name}");
        }
    }

    #[test]
    fn export_file_errors_name_the_path() {
        let p = Profile::from_stacks([("a", 1)]);
        let e = export_file(
            &p,
            &ExportMeta::default(),
            Format::Speedscope,
            "/nonexistent-nflame-dir/x.json",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-nflame-dir/x.json"),
            "{e}"
        );
    }
}
