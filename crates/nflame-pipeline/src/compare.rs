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
use nflame_render::{Carried, DiffProfiles, RenderOptions};

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
    /// What became of profiles too large to embed in the graphs, in words.
    pub notes: Vec<String>,
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

/// Two profiles read one after the other, the second sharing the text of
/// the stacks it has in common with the first (stored once: compared
/// profiles usually share most of their stacks, and reading them side by
/// side would hold both copies), checked to be of one unit (an error naming
/// both files and units otherwise).
pub(crate) fn read_pair(
    before: &std::path::Path,
    after: &std::path::Path,
    read: &ReadOptions,
) -> Result<(Profile, Profile, Vec<SkippedLines>), Error> {
    // Both opened first: a missing AFTER is reported before BEFORE is read.
    let mut after_input = nflame_profile::io::Input::open(after)?;
    let (b, sb) = Profile::from_path_with(before, read)?;
    let (a, sa) = Profile::from_input_sharing(&mut after_input, read, &b)?;
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
    // the category report, which are independent: compute them side by side.
    // The profiles are compressed for the SVGs while the graph's layout reads
    // them, and the graph streams to its output.
    let tree = diff.tree();
    let (scale_before, scale_after) = (opts.diff.scale_before, opts.diff.scale_after);
    let mut profiles: Option<DiffProfiles> = None;
    let (graph, (frame_shares, changes)) = rayon::join(
        || -> Result<Vec<String>, Error> {
            match out {
                Some(output) => write_graph(output, |w, sidecar| {
                    let (carried, p) = nflame_render::render_diff_to(
                        &diff,
                        &tree,
                        &o,
                        sidecar,
                        removed.is_some(),
                        w,
                    )?;
                    profiles = p;
                    Ok(carried)
                }),
                None => Ok(Vec::new()),
            }
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
    let mut notes = graph?;
    if let Some(output) = removed {
        let profiles = profiles.unwrap_or_else(|| DiffProfiles::of(&diff, &tree));
        let svg = nflame_render::draw_removed(&diff, &o)?;
        notes.extend(write_graph(output, |w, sidecar| {
            profiles.write(w, &svg, &diff, &o, sidecar)
        })?);
    }
    drop(tree);
    Ok(Comparison {
        diff,
        frame_shares,
        changes,
        skipped,
        notes,
    })
}

/// Writes an SVG to `output` with `write(writer, sidecar)`, `sidecar` being
/// the output's file name (none for standard output); then the profiles it
/// set aside beside it, and commits all. Returns notes on what was set aside.
pub(crate) fn write_graph(
    mut output: Output,
    write: impl FnOnce(&mut dyn Write, Option<&str>) -> Result<Carried, nflame_render::Error>,
) -> Result<Vec<String>, Error> {
    let path = output.path().to_path_buf();
    let to_stdout = path == std::path::Path::new("-");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| !to_stdout)
        .map(str::to_string);
    let carried = write(output.writer(), name.as_deref())?;
    let dir = path
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .to_path_buf();
    let mut sidecars = Vec::new();
    for (_, file, data) in &carried.beside {
        let mut side = Output::create_plain(dir.join(file))?;
        data.write_gzip(side.writer())
            .map_err(|e| side.write_error(e))?;
        sidecars.push(side);
    }
    for side in sidecars {
        side.commit()?;
    }
    output.commit()?;
    let shown = display_name(&path);
    let mut notes = Vec::new();
    // "the profile", "the before profile", "the after profile".
    let what = |role: &str| {
        if role == "profile" {
            "the profile".to_string()
        } else {
            format!("the {role} profile")
        }
    };
    for (role, file, data) in &carried.beside {
        notes.push(format!(
            "{} ({} stacks, {:.1} MB compressed) is over the embedding limit: written beside {shown} as {}, where reading the SVG finds it",
            what(role),
            data.stacks(),
            data.len() as f64 / 1e6,
            dir.join(file).display()
        ));
    }
    for (role, bytes) in &carried.omitted {
        notes.push(format!(
            "{} ({:.1} MB compressed) is over the embedding limit and {shown} is standard output: it is not in the SVG",
            what(role),
            *bytes as f64 / 1e6
        ));
    }
    Ok(notes)
}
