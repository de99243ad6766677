//! Honest differential flame graphs.
//!
//! FlameGraph and inferno colour a frame of a differential graph by the change
//! of its *own leaf* samples, so a parent whose children grew looks unchanged,
//! and stacks that vanished are not drawn at all. nflame colours every frame
//! by the change of its *inclusive* share (the frame and everything it calls,
//! at that position in the tree), and draws stacks that exist only in BEFORE
//! at their BEFORE width with a hatched fill, so nothing disappears silently.
//!
//! inferno still lays the graph out and writes the SVG (search, zoom). This
//! module computes the same layout first, from the diff's tree of stacks
//! ([`StackTree`]) walked in the order of inferno's sorted lines, to know each
//! frame's inclusive BEFORE and AFTER values and which frames are wide enough
//! to be drawn; feeds inferno the stacks cut to those frames (the same graph
//! from a fraction of the lines); and then rewrites each frame's fill and
//! tooltip.
//!
//! The stages, one module each:
//!
//! - `lines`: the drawn stacks, from the tree (sorted by text, so nearly in
//!   the order of inferno's sorted lines) or reversed;
//! - [`crate::cut`]: inferno's layout recomputed from those lines: each
//!   frame's inclusive BEFORE and AFTER, and the lines cut to the frames drawn;
//! - `colour`: the colour scale and tooltips, from the change of each
//!   frame's inclusive share (or cost per unit);
//! - `svg`: rewriting inferno's SVG text with those fills and tooltips and
//!   the hatch pattern.

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

use crate::cut::{layout, min_samples, Kept, RowSource, SortedRows, Teed};
use crate::{render_lines, Error, RenderOptions};
use colour::{Scale, SCALE_TOKEN};
use lines::DiffRows;
use svg::{Head, Recolouring};

/// The honest differential graph of a diff, laid out: the frames inferno
/// will draw, in its order, and the lines to give it.
pub(crate) struct Laid {
    kept: Vec<Kept>,
    lines: Vec<String>,
}

/// Lays out the honest differential graph of `diff` (see [`crate::cut`]);
/// `tree` is `diff.tree()` when the caller has it already. `each` gets every
/// stack (its index in the tree), drawn or not, as the layout reads it.
pub(crate) fn lay_out(
    diff: &Diff,
    tree: &StackTree<'_>,
    opts: &RenderOptions,
    each: Option<&mut dyn FnMut(usize)>,
) -> Result<Laid, Error> {
    if opts.flamechart {
        return Err(Error::Unsupported(
            "a flame chart (time order) of a differential profile".into(),
        ));
    }
    let rows = DiffRows::new(tree, diff, opts.reverse);
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
    let (kept, lines) = match each {
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
    Ok(Laid { kept, lines })
}

/// Draws the graph laid out in `laid` to `out`, as inferno writes it: each
/// frame recoloured, the legend's scale filled in, and `head` applied to the
/// SVG's start (for its metadata).
pub(crate) fn draw<W: Write>(
    diff: &Diff,
    laid: &Laid,
    opts: &RenderOptions,
    head: &Head<'_>,
    out: W,
) -> Result<(), Error> {
    let scale = Scale::new(
        diff,
        laid.kept.iter().filter(|k| k.depth > 0).map(|k| &k.node),
    );
    let legend = scale.legend();
    let head = |svg: &[u8], w: &mut dyn Write| -> std::io::Result<()> {
        match memchr::memmem::find(svg, SCALE_TOKEN.as_bytes()) {
            Some(at) => {
                let mut svg = svg.to_vec();
                svg.splice(at..at + SCALE_TOKEN.len(), legend.bytes());
                head(&svg, w)
            }
            None => head(svg, w),
        }
    };
    let style = |k: &Kept, name: &str| scale.style(k.depth, &k.node, name);
    let mut o = diff_options(diff, opts);
    // The lines are in the order inferno must see them, but cut to the frames
    // it draws, so no longer sorted: a flame chart takes them as they come
    // (after reversing them), with no other difference to the graph.
    o.flamechart = true;
    let mut w = Recolouring::new(out, &head, &laid.kept, &style);
    render_lines(laid.lines.iter().rev().map(String::as_str), &o, &mut w)?;
    w.finish()?;
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
