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

use crate::cut::{min_samples, Kept, Node, RowSource, SortedRows, Survey, Teed};
use crate::{Error, RenderOptions};
use colour::{Scale, SCALE_TOKEN};
use lines::DiffRows;

/// The honest differential graph of a diff: its drawn stacks. It is laid
/// out in two walks of its lines ([`Graph::lines`]): [`Graph::survey`]
/// finds the page's height and the colour scale, [`Graph::draw`] writes the
/// page and the frames (held from the survey when few, laid out again as
/// they are written otherwise).
pub(crate) struct Graph<'t, 'a> {
    rows: DiffRows<'t, 'a>,
}

/// What the survey of a graph found.
pub(crate) struct Surveyed<'d> {
    survey: Survey,
    scale: Scale<'d>,
    total: u64,
}

impl<'t, 'a> Graph<'t, 'a> {
    /// The graph of `diff`, whose tree is `tree`.
    pub(crate) fn new(
        diff: &'t Diff,
        tree: &'t StackTree<'a>,
        opts: &RenderOptions,
    ) -> Result<Graph<'t, 'a>, Error> {
        if opts.flamechart {
            return Err(Error::Unsupported(
                "a flame chart (time order) of a differential profile".into(),
            ));
        }
        Ok(Graph {
            rows: DiffRows::new(tree, diff, opts.reverse),
        })
    }

    /// The drawn stacks in the order of inferno's sorted lines.
    pub(crate) fn lines(&self, opts: &RenderOptions) -> Result<SortedRows<'_>, Error> {
        let lines = if opts.reverse {
            // Reversed stacks (leaf first) are sorted again.
            SortedRows::sort(&self.rows, true)
        } else {
            SortedRows::nearly_sorted(&self.rows, true)
        };
        if lines.total == 0 {
            return Err(Error::Empty);
        }
        Ok(lines)
    }

    /// The first walk of `lines` (see [`crate::cut`]): `each` gets every
    /// stack (its index in the tree), drawn or not, as the walk reads it.
    pub(crate) fn survey<'d>(
        &self,
        diff: &'d Diff,
        lines: &SortedRows<'_>,
        opts: &RenderOptions,
        each: Option<&mut dyn FnMut(usize)>,
    ) -> Surveyed<'d> {
        let min = min_samples(opts.min_width_percent(), lines.total);
        let mut scale = Scale::new(diff);
        let mut look = |k: &Kept, n: &Node| {
            if k.depth > 0 {
                scale.include(n);
            }
        };
        let survey = match each {
            Some(each) => {
                // The stacks without width are not walked: hand them over too.
                let mut by_index = |i: usize, _: &str, _: u64| each(i);
                let survey = Survey::walk(&Teed::new(lines, &mut by_index), min, &mut look);
                for i in 0..self.rows.len() {
                    if self.rows.numbers(i).1 == 0 {
                        each(i);
                    }
                }
                survey
            }
            None => Survey::walk(lines, min, &mut look),
        };
        Surveyed {
            survey,
            scale,
            total: lines.total,
        }
    }

    /// Draws the graph of `lines`, surveyed, to `out`: inferno's page (the
    /// legend's scale filled in, `head` writing its start with the
    /// metadata) with every frame coloured by its change.
    pub(crate) fn draw<W: Write>(
        &self,
        diff: &Diff,
        lines: &SortedRows<'_>,
        surveyed: Surveyed<'_>,
        opts: &RenderOptions,
        head: &svg::Head<'_>,
        out: W,
    ) -> Result<(), Error> {
        let Surveyed {
            survey,
            scale,
            total,
        } = surveyed;
        let mut o = diff_options(diff, opts);
        // The page of a graph as deep and as wide (inferno's lines come as
        // they are: a flame chart).
        o.flamechart = true;
        let canvas = crate::frames::Canvas::new(&o, total, survey.depth, true)?;
        let mut page = canvas.head.clone();
        if let Some(at) = memchr::memmem::find(&page, SCALE_TOKEN.as_bytes()) {
            page.splice(at..at + SCALE_TOKEN.len(), scale.legend().bytes());
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 16, crate::Cleaning::new(out));
        head(&page, &mut out)?;
        out.write_all(svg::GONE_PATTERN.as_bytes())?;
        let style = |k: &Kept, n: &Node, _: &str, name: &str| scale.style(k.depth, n, name);
        let frames = survey.frames(lines);
        canvas.write_frames(&mut out, &frames, &|k| k.name(&self.rows), &style)?;
        out.into_inner()
            .map_err(|e| Error::Write(e.into_error()))?
            .finish()?;
        Ok(())
    }
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
    let graph = Graph::new(diff, &tree, opts)?;
    let lines = graph.lines(opts)?;
    let surveyed = graph.survey(diff, &lines, opts, None);
    graph.draw(
        diff,
        &lines,
        surveyed,
        opts,
        &|head, w| w.write_all(head),
        svg,
    )
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
