//! The subcommands that turn one profile into another form: `nflame render`
//! (folded profiles → SVG), `nflame collapse` (`perf script` text → folded),
//! `nflame filter` (folded → fewer stacks) and `nflame export` (pprof,
//! speedscope). Each creates its output before reading (an unwritable path
//! fails first) and writes it atomically.

use std::path::PathBuf;

use nflame_profile::export::{ExportMeta, Format as ExportFormat};
use nflame_profile::filter::{FilterStats, FrameFilter};
use nflame_profile::folded::OrderedLines;
use nflame_profile::io::{Input, Output};
use nflame_profile::perf_script::{CollapseOptions, CollapseStats};
use nflame_profile::{Profile, ReadOptions, SkippedLines};
use nflame_render::RenderOptions;

use crate::Error;

/// What `nflame render` did besides drawing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rendered {
    /// The lines skipped as unreadable (with [`ReadOptions::skip_bad_lines`]),
    /// input by input.
    pub skipped: Vec<SkippedLines>,
    /// What became of a profile too large to embed in the SVG, in words.
    pub notes: Vec<String>,
}

/// Draws `inputs` (merged; in input order for a flame chart) as one SVG at
/// `output`, in their unit (inputs of different units are an error).
/// `opts.context` should say what made it. A profile over
/// [`RenderOptions::embed_limit`] is written beside the SVG (see
/// [`nflame_profile::embed`]).
pub fn render(
    inputs: &[PathBuf],
    output: &PathBuf,
    opts: &RenderOptions,
    read: &ReadOptions,
) -> Result<Rendered, Error> {
    opts.validate()?;
    let mut out = Output::create(output)?;
    let skipped = if opts.flamechart {
        let mut lines = OrderedLines::new();
        let mut skipped = Vec::new();
        for path in inputs {
            let mut input = Input::open(path)?;
            let before = lines.lines.len();
            skipped.extend(lines.read(&mut input, read)?);
            if lines.lines.len() == before {
                return Err(nflame_profile::Error::Empty {
                    path: input.path().to_path_buf(),
                }
                .into());
            }
        }
        nflame_render::render_ordered(&lines, opts, out.writer())?;
        out.commit()?;
        skipped
    } else {
        let (profile, skipped) = Profile::from_paths_with(inputs, read)?;
        let notes = crate::compare::write_graph(out, |w, sidecar| {
            nflame_render::render_profile_with(&profile, opts, sidecar, w)
        })?;
        return Ok(Rendered { skipped, notes });
    };
    Ok(Rendered {
        skipped,
        notes: Vec::new(),
    })
}

/// What `nflame collapse` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Collapsed {
    /// The collapser's counts (default for an nflame SVG read back).
    pub stats: CollapseStats,
    /// Distinct stacks written.
    pub stacks: usize,
}

/// `perf script` text at `input` (or the profile an nflame SVG carries) to
/// folded stacks at `output`. Lines that are not `perf script` output are
/// skipped and reported in the stats ([`CollapseStats::warning`] words them).
pub fn collapse(
    input: &PathBuf,
    output: &PathBuf,
    opts: &CollapseOptions,
) -> Result<Collapsed, Error> {
    let mut out = Output::create(output)?;
    let mut input = Input::open(input)?;
    let (profile, stats) = if input.starts_like_svg()? {
        // An nflame SVG carries its folded profile: write it back out.
        (Profile::from_input(&mut input)?, CollapseStats::default())
    } else {
        nflame_profile::perf_script::collapse(&mut input, opts)?
    };
    profile
        .write_folded(out.writer())
        .map_err(|e| out.write_error(e))?;
    out.commit()?;
    Ok(Collapsed {
        stats,
        stacks: profile.len(),
    })
}

/// Keeps the stacks of `input` that `filter` keeps, streaming them to
/// `output` (with the input's unit header); the stats say what was skipped.
pub fn filter(
    input: &PathBuf,
    output: &PathBuf,
    filter: &FrameFilter,
    read: &ReadOptions,
) -> Result<FilterStats, Error> {
    let mut out = Output::create(output)?;
    let mut input = Input::open(input)?;
    let stats = filter.filter_folded_with(&mut input, &mut out, read)?;
    out.commit()?;
    Ok(stats)
}

/// The profile at `input` exported in `format` to `output`, in its unit;
/// `meta.name` defaults to the input's file name. Returns the lines skipped.
pub fn export(
    input: &PathBuf,
    output: &PathBuf,
    format: ExportFormat,
    meta: &ExportMeta,
    read: &ReadOptions,
) -> Result<Option<SkippedLines>, Error> {
    let (profile, skipped) = Profile::from_path_with(input, read)?;
    let mut meta = meta.clone();
    if meta.name.is_empty() {
        meta.name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "profile".into());
    }
    nflame_profile::export::export_file(&profile, &meta, format, output)?;
    Ok(skipped)
}
