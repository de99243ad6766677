//! `nflame diff`: two profiles compared, as a differential flame graph (and its
//! reverse view), the frame-share report and the category change report.
//!
//! The two profiles are read side by side; their tree of stacks
//! ([`Diff::tree`]) is built once, beside the SVG's metadata, and feeds the
//! graph, the frame-share report and the category report, which are computed
//! side by side too. The graphs are written atomically to outputs created
//! before anything is read.

use std::io::{self, Write};
use std::path::PathBuf;

use nflame_diagnose::ChangeReport;
use nflame_profile::diff::{Diff, DiffOptions, Scaling};
use nflame_profile::frame_shares::FrameShareReport;
use nflame_profile::io::{display_name, Output};
use nflame_profile::{Profile, ReadOptions, SkippedLines};
use nflame_render::RenderOptions;

use crate::diagnosis::{change_report_from_tree, load_rules};
use crate::{svg_context, Error};

/// What `nflame diff` does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CompareOptions {
    /// The profile before the change. Default is empty: set it.
    pub before: PathBuf,
    /// The profile after the change. Default is empty: set it.
    pub after: PathBuf,
    /// Write the differential flame graph here (widths from AFTER). Default is `None`.
    pub graph: Option<PathBuf>,
    /// Write the reverse view here (widths from BEFORE, where vanished stacks
    /// show). Default is `None`.
    pub removed_graph: Option<PathBuf>,
    /// How the profiles are scaled against each other; the per-unit scales
    /// also give the category report its units of work. Default is
    /// [`DiffOptions::default`].
    pub diff: DiffOptions,
    /// How the graphs are drawn. A subtitle naming the inputs, their samples
    /// and the scaling is added when it has none. Default is
    /// [`RenderOptions::default`] titled "Differential Flame Graph".
    pub render: RenderOptions,
    /// A classification rules file replacing the built-in rules. Default is `None`.
    pub rules: Option<PathBuf>,
    /// The command line stored in the graphs. Default is `None`.
    pub command_line: Option<String>,
    /// How the inputs are read (e.g. skipping unreadable lines). Default is
    /// [`ReadOptions::default`]: one unreadable line is an error.
    pub read: ReadOptions,
}

impl Default for CompareOptions {
    fn default() -> Self {
        let mut render = RenderOptions::default();
        render.title = "Differential Flame Graph".into();
        CompareOptions {
            before: PathBuf::new(),
            after: PathBuf::new(),
            graph: None,
            removed_graph: None,
            diff: DiffOptions::default(),
            render,
            rules: None,
            command_line: None,
            read: ReadOptions::default(),
        }
    }
}

impl CompareOptions {
    /// Compares `before` with `after`, the other options at their defaults.
    pub fn new(before: impl Into<PathBuf>, after: impl Into<PathBuf>) -> CompareOptions {
        CompareOptions {
            before: before.into(),
            after: after.into(),
            ..CompareOptions::default()
        }
    }
}

/// What [`compare`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct Comparison {
    /// The two profiles and their scaling. Large: a caller about to exit may
    /// leak it rather than free millions of stacks.
    pub diff: Diff,
    /// The frames whose shares changed most.
    pub frame_shares: FrameShareReport,
    /// The categories' change and the verdict.
    pub changes: ChangeReport,
    /// Lines skipped as unreadable ([`ReadOptions::skip_bad_lines`]), input by input.
    pub skipped: Vec<SkippedLines>,
}

impl Comparison {
    /// Writes the change report, a blank line and the frame-share report as text.
    pub fn write_text<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        self.changes.write_text(w)?;
        writeln!(w)?;
        self.frame_shares.write_text(w)
    }

    /// Writes pretty-printed JSON and a newline: the change report's object
    /// (`before`, `after`, `changes`, `verdict`) with the frame-share report
    /// under `frames`.
    pub fn write_json<W: Write>(&self, mut w: W) -> io::Result<()> {
        let mut v = serde_json::to_value(&self.changes)?;
        v["frames"] = serde_json::to_value(&self.frame_shares)?;
        serde_json::to_writer_pretty(&mut w, &v)?;
        writeln!(w)
    }
}

/// How the graph's counts were scaled, in words.
fn scaling_text(diff: &Diff) -> String {
    match diff.scaling() {
        Scaling::None => "raw counts".into(),
        Scaling::Normalized => "before normalised to after's total".into(),
        Scaling::PerUnit => format!("{} per unit of work", diff.measure().unit.symbol()),
    }
}

/// Two profiles read side by side, checked to be of one unit (an error naming
/// both files and units otherwise).
pub(crate) fn read_pair(
    before: &std::path::Path,
    after: &std::path::Path,
    read: &ReadOptions,
) -> Result<(Profile, Profile, Vec<SkippedLines>), Error> {
    let (b, a) = rayon::join(
        || Profile::from_path_with(before, read),
        || Profile::from_path_with(after, read),
    );
    let ((b, sb), (a, sa)) = (b?, a?);
    if b.unit() != a.unit() {
        return Err(nflame_profile::Error::UnitMismatch {
            what: "comparing profiles".into(),
            first: display_name(before),
            first_unit: b.unit(),
            second: display_name(after),
            second_unit: a.unit(),
        }
        .into());
    }
    Ok((b, a, sb.into_iter().chain(sa).collect()))
}

/// Runs `nflame diff`: writes the graphs asked for and returns the reports.
pub fn compare(opts: &CompareOptions) -> Result<Comparison, Error> {
    opts.render.validate()?;
    // Fail on unwritable destinations before reading anything.
    let out = opts.graph.as_ref().map(Output::create).transpose()?;
    let removed = opts
        .removed_graph
        .as_ref()
        .map(Output::create)
        .transpose()?;
    let (before, after, skipped) = read_pair(&opts.before, &opts.after, &opts.read)?;
    let diff = Diff::new(before, after, &opts.diff)?;
    let rules = load_rules(opts.rules.as_deref())?;
    let mut ctx = svg_context("diff", opts.command_line.as_deref());
    ctx.inputs = vec![
        opts.before.display().to_string(),
        opts.after.display().to_string(),
    ];
    let mut o = opts.render.clone();
    o.context = Some(ctx);
    if o.subtitle.is_none() {
        let m = diff.measure();
        o.subtitle = Some(format!(
            "{} ({}) → {} ({}), {}",
            opts.before.display(),
            m.with_symbol(diff.before.total()),
            opts.after.display(),
            m.with_symbol(diff.after.total()),
            scaling_text(&diff)
        ));
    }
    // Both profiles as one tree of frames feeds the graph, the frame report and
    // the category report; the SVG's metadata (both profiles compressed) needs
    // only the profiles: build them side by side.
    let want_svg = out.is_some() || removed.is_some();
    let (tree, metadata) = rayon::join(
        || diff.tree(),
        || want_svg.then(|| nflame_render::diff_metadata(&diff, &o)),
    );
    let metadata = metadata.unwrap_or_default();
    // The graphs, the frame report and the category report are independent:
    // compute them side by side.
    let draw = |wanted: bool, removed_view: bool| -> Result<Option<Vec<u8>>, Error> {
        if !wanted {
            return Ok(None);
        }
        let mut svg = Vec::with_capacity(metadata.len() + (1 << 20));
        if removed_view {
            nflame_render::render_removed_with(&diff, &metadata, &o, &mut svg)?;
        } else {
            nflame_render::render_diff_with(&diff, &tree, &metadata, &o, &mut svg)?;
        }
        Ok(Some(svg))
    };
    let (scale_before, scale_after) = (opts.diff.scale_before, opts.diff.scale_after);
    let ((graph, reverse), (frame_shares, changes)) = rayon::join(
        || {
            rayon::join(
                || draw(out.is_some(), false),
                || draw(removed.is_some(), true),
            )
        },
        || {
            rayon::join(
                || diff.frame_shares_from(&tree),
                || {
                    change_report_from_tree(
                        &tree,
                        diff.measure(),
                        &rules,
                        scale_before,
                        scale_after,
                    )
                },
            )
        },
    );
    let changes = changes?;
    for (output, svg) in [(out, graph?), (removed, reverse?)] {
        if let (Some(mut output), Some(svg)) = (output, svg) {
            output
                .writer()
                .write_all(&svg)
                .map_err(|e| output.write_error(e))?;
            output.commit()?;
        }
    }
    drop(tree);
    Ok(Comparison {
        diff,
        frame_shares,
        changes,
        skipped,
    })
}
