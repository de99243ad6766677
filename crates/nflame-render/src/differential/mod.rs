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
//! - `order`: the order of inferno's sorted lines, computed on the tree
//!   (sibling keys ranked once, never whole lines compared);
//! - `lines`: the drawn stacks walked in that order (or, reversed, sorted
//!   as text), with where each may be cut;
//! - `layout`: inferno's layout recomputed from those lines: each frame's
//!   inclusive BEFORE and AFTER, and the lines cut to the frames drawn;
//! - `colour`: the colour scale and tooltips, from the change of each
//!   frame's inclusive share (or cost per unit);
//! - `svg`: rewriting inferno's SVG text with those fills and tooltips and
//!   the hatch pattern.

mod colour;
mod layout;
mod lines;
mod order;
#[cfg(test)]
mod reference;
mod svg;
#[cfg(test)]
mod tests;

use nflame_profile::diff::{Diff, Scaling};
use nflame_profile::tree::StackTree;

use crate::{render_lines, Error, RenderOptions};
use colour::{colour, SCALE_TOKEN};
use layout::layout;
use lines::{SortedLines, TreeLines};

/// Draws the honest differential graph of `diff` into `svg` (no metadata);
/// the subtitle carries the legend. `tree` is `diff.tree()` when the caller
/// has it already.
pub(crate) fn draw(
    diff: &Diff,
    tree: Option<&StackTree<'_>>,
    opts: &RenderOptions,
    svg: &mut Vec<u8>,
) -> Result<(), Error> {
    if opts.flamechart {
        return Err(Error::Unsupported(
            "a flame chart (time order) of a differential profile".into(),
        ));
    }
    let own;
    let tree = match tree {
        Some(t) => t,
        None => {
            own = diff.tree();
            &own
        }
    };
    // inferno omits frames narrower than `min_width` pixels: they need no
    // colour. Keep every frame at least half that wide on the widest canvas.
    let min_samples = |total: u64| {
        let canvas = opts.width.unwrap_or(1200).max(1200) as f64;
        ((opts.min_width * 0.5 / canvas) * total as f64).floor() as u64
    };
    let (nodes, lines) = if opts.reverse {
        // Reversed stacks (leaf first) share little: sort them as text.
        let lines = SortedLines::new(tree, diff);
        if lines.total == 0 {
            return Err(Error::Empty);
        }
        layout(&lines, min_samples(lines.total))
    } else {
        let lines = TreeLines::new(tree, diff);
        if lines.order.total == 0 {
            return Err(Error::Empty);
        }
        layout(&lines, min_samples(lines.order.total))
    };

    let mut o = diff_options(diff, opts);
    // The lines are in the order inferno must see them, but cut to the frames
    // it draws, so no longer sorted: a flame chart takes them as they come
    // (after reversing them), with no other difference to the graph.
    o.flamechart = true;
    let mut raw = Vec::with_capacity(1 << 20);
    render_lines(lines.iter().rev().map(String::as_str), &o, &mut raw)?;
    let raw = String::from_utf8(raw).map_err(|e| Error::Write(std::io::Error::other(e)))?;
    colour(diff, &raw, &nodes, opts.inverted, svg);
    Ok(())
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
