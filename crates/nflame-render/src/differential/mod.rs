//! Honest differential flame graphs.
//!
//! FlameGraph and inferno colour a frame of a differential graph by the change
//! of its *own leaf* samples, so a parent whose children grew looks unchanged,
//! and stacks that vanished are not drawn at all. nflame colours every frame
//! by the change of its *inclusive* share (the frame and everything it calls,
//! at that position in the tree), and draws stacks that exist only in BEFORE
//! at their BEFORE width with a hatched fill, so nothing disappears silently.
//!
//! The layout is nflame's: the diff's tree of stacks ([`StackTree`]) walked
//! in the order of inferno's sorted lines gives every frame inferno would
//! draw, with its inclusive BEFORE and AFTER values; the frames are then
//! written in inferno's form, on a page inferno writes (search, zoom).
//!
//! The stages, one module each:
//!
//! - `lines`: the drawn stacks, from the tree (sorted by text, so nearly in
//!   the order of inferno's sorted lines) or reversed;
//! - [`crate::cut`]: inferno's layout recomputed from those lines: each
//!   frame's place and inclusive BEFORE and AFTER;
//! - `colour`: the colour scale and tooltips, from the change of each
//!   frame's inclusive share (or cost per unit);
//! - [`crate::frames`]: the page and the frames written on it.

mod colour;
pub(crate) mod lines;
#[cfg(test)]
mod reference;
mod svg;
#[cfg(test)]
pub(crate) mod tests;

use nflame_profile::diff::{Diff, Scaling};
use nflame_profile::tree::StackTree;

use std::io::Write;

use crate::cut::{layout, min_samples, Kept, Node, RowSource, SortedRows, Teed};
use crate::{Error, RenderOptions};
use colour::{Scale, SCALE_TOKEN};
use lines::DiffRows;

/// The honest differential graph of a diff, laid out: the frames to draw, in
/// inferno's order, and the rows their names are read from.
pub(crate) struct Laid<'t, 'a> {
    kept: Vec<Kept>,
    /// Each frame's inclusive values.
    nodes: Vec<Node>,
    rows: DiffRows<'t, 'a>,
    total: u64,
}

/// Lays out the honest differential graph of `diff` (see [`crate::cut`]);
/// `tree` is `diff.tree()` when the caller has it already. `each` gets every
/// stack (its index in the tree), drawn or not, as the layout reads it.
pub(crate) fn lay_out<'t, 'a>(
    diff: &'t Diff,
    tree: &'t StackTree<'a>,
    opts: &RenderOptions,
    each: Option<&mut dyn FnMut(usize)>,
) -> Result<Laid<'t, 'a>, Error> {
    if opts.flamechart {
        return Err(Error::Unsupported(
            "a flame chart (time order) of a differential profile".into(),
        ));
    }
    let rows = DiffRows::new(tree, diff, opts.reverse);
    let ((kept, nodes), total) = {
        let lines = if opts.reverse {
            // Reversed stacks (leaf first) are sorted again.
            SortedRows::sort(&rows, true)
        } else {
            SortedRows::nearly_sorted(&rows, true)
        };
        if lines.total == 0 {
            return Err(Error::Empty);
        }
        let min = min_samples(opts.min_width_percent(), lines.total);
        let kept = match each {
            Some(each) => {
                // The stacks without width are not walked: hand them over too.
                let mut by_index = |i: usize, _: &str, _: u64| each(i);
                let laid = layout(&Teed::new(&lines, &mut by_index), min);
                for i in 0..rows.len() {
                    if rows.numbers(i).1 == 0 {
                        each(i);
                    }
                }
                laid
            }
            None => layout(&lines, min),
        };
        (kept, lines.total)
    };
    Ok(Laid {
        kept,
        nodes,
        rows,
        total,
    })
}

/// Draws the graph laid out in `laid` to `out`: inferno's page (the
/// legend's scale filled in, `head` writing its start with the metadata)
/// with every frame coloured by its change.
pub(crate) fn draw<W: Write>(
    diff: &Diff,
    laid: &Laid<'_, '_>,
    opts: &RenderOptions,
    head: &svg::Head<'_>,
    out: W,
) -> Result<(), Error> {
    let scale = Scale::new(
        diff,
        laid.kept
            .iter()
            .zip(&laid.nodes)
            .filter(|(k, _)| k.depth > 0)
            .map(|(_, n)| n),
    );
    let mut o = diff_options(diff, opts);
    // The page of a graph as deep and as wide (inferno's lines come as
    // they are: a flame chart).
    o.flamechart = true;
    let depth = laid.kept.iter().map(|k| k.depth).max();
    let canvas = crate::frames::Canvas::new(&o, laid.total, depth, true)?;
    let mut page = canvas.head.clone();
    if let Some(at) = memchr::memmem::find(&page, SCALE_TOKEN.as_bytes()) {
        page.splice(at..at + SCALE_TOKEN.len(), scale.legend().bytes());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, crate::Cleaning::new(out));
    head(&page, &mut out)?;
    out.write_all(svg::GONE_PATTERN.as_bytes())?;
    let style =
        |i: usize, k: &Kept, _: &str, name: &str| scale.style(k.depth, &laid.nodes[i], name);
    canvas.write_frames(&mut out, &laid.kept, &|k| k.name(&laid.rows), &style)?;
    out.into_inner()
        .map_err(|e| Error::Write(e.into_error()))?
        .finish()?;
    Ok(())
}

/// Draws the honest differential graph of `diff` into `svg`, without
/// metadata (for tests).
#[cfg(test)]
pub(crate) fn draw_to_vec(
    diff: &Diff,
    opts: &RenderOptions,
    svg: &mut Vec<u8>,
) -> Result<(), Error> {
    let tree = diff.tree();
    let laid = lay_out(diff, &tree, opts, None)?;
    draw(diff, &laid, opts, &|head, w| w.write_all(head), svg)
}

/// inferno's options for a differential graph: no reversal (the lines come
/// reversed already), counts scaled for display, and the colour legend in
/// the subtitle with a placeholder for its scale, known only after the
/// layout.
fn diff_options(diff: &Diff, opts: &RenderOptions) -> RenderOptions {
    let per_unit = diff.scaling() == Scaling::PerUnit;
    let mut o = opts.clone();
    o.reverse = false;
    o.factor *= diff.display_factor();
    if o.count_name.is_none() {
        o.count_name = Some(diff.measure().unit.symbol().into());
    }
    let legend = format!(
        "colour = change of inclusive {}: red grew, blue shrank (full colour {SCALE_TOKEN}); hatched = gone after (drawn at its before width); widths = after",
        if per_unit { "cost per unit" } else { "share" },
    );
    o.subtitle = Some(match &opts.subtitle {
        Some(s) => format!("{s} · {legend}"),
        None => legend,
    });
    o
}
