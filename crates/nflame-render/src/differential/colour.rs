//! The colour scale: each frame's fill from the change of its inclusive share
//! (or cost per unit) relative to the largest change, its tooltip with both
//! sides, and the legend's scale.
//!
//! Every number comes from the frame's exact inclusive counts (sums of
//! stored counts) and the profiles' exact totals, as the frame-share report's
//! do, so a tooltip and the report agree: the same shares, the same change in
//! percentage points, and the count scaled once ([`Diff::shown`]), not a sum
//! of counts rounded stack by stack.

use nflame_profile::diff::{Diff, Scaling};
use nflame_profile::Unit;

use super::svg::GONE_FILL;
use crate::cut::Node;

/// The fill of a frame that did not change.
const NEUTRAL: &str = "rgb(248,248,248)";

/// Stands for the colour scale in the legend until the layout gives it.
pub(super) const SCALE_TOKEN: &str = "NFLAME_COLOUR_SCALE";

/// The colour scale of a graph: the largest change of its frames.
pub(super) struct Scale<'d> {
    diff: &'d Diff,
    per_unit: bool,
    /// Per unit of work, changes are relative to the larger side's total cost.
    larger: f64,
    max_change: f64,
}

impl<'d> Scale<'d> {
    /// The scale of no frame: see [`Scale::include`].
    pub(super) fn new(diff: &'d Diff) -> Scale<'d> {
        let per_unit = diff.scaling() == Scaling::PerUnit;
        let larger = diff
            .shown(diff.after.total(), true)
            .max(diff.shown(diff.before.total(), false));
        Scale {
            diff,
            per_unit,
            larger,
            max_change: 0.0,
        }
    }

    /// Takes a frame (not `all`), whose inclusive values are `node`, into
    /// the scale.
    pub(super) fn include(&mut self, node: &Node) {
        self.max_change = self.max_change.max(self.change(node).abs());
    }

    fn change(&self, n: &Node) -> f64 {
        let diff = self.diff;
        if self.per_unit {
            if self.larger > 0.0 {
                (diff.shown(n.after, true) - diff.shown(n.before, false)) / self.larger
            } else {
                0.0
            }
        } else {
            share(n.after, diff.after.total()) - share(n.before, diff.before.total())
        }
    }

    /// The legend's scale, for [`SCALE_TOKEN`].
    pub(super) fn legend(&self) -> String {
        if self.per_unit {
            format!("{:.2}% of the larger total", self.max_change * 100.0)
        } else {
            format!("±{:.2} pp", self.max_change * 100.0)
        }
    }

    fn count(&self, c: u64, after: bool) -> String {
        let mut s = self.diff.format_shown(c, after);
        let unit = self.diff.measure().unit;
        if unit != Unit::Samples {
            s.push(' ');
            s.push_str(unit.symbol());
        }
        s
    }

    /// The fill and tooltip of frame `name` at `depth` (0: the `all` frame,
    /// drawn neutral: it is the whole of both sides) whose inclusive values
    /// are `node`.
    pub(super) fn style(&self, depth: u32, node: &Node, name: &str) -> (String, String) {
        let (total_before, total_after) = (self.diff.before.total(), self.diff.after.total());
        if depth == 0 {
            // `all` is as wide as AFTER plus the stacks gone after: say what
            // the totals are, not the sum of widths inferno would.
            let title = if self.per_unit {
                format!(
                    "{name} (before {} per unit, after {} per unit)",
                    self.count(total_before, false),
                    self.count(total_after, true)
                )
            } else {
                format!(
                    "{name} (before 100.00% {}, after 100.00% {})",
                    self.count(total_before, false),
                    self.count(total_after, true)
                )
            };
            return (NEUTRAL.to_string(), title);
        }
        let n = node;
        let pb = share(n.before, total_before) * 100.0;
        let pa = share(n.after, total_after) * 100.0;
        if n.after == 0 {
            let title = format!(
                "{name} (gone: before {pb:.2}% {}, after 0)",
                self.count(n.before, false)
            );
            return (GONE_FILL.to_string(), title);
        }
        let d = self.change(n);
        let t = if self.max_change > 0.0 {
            (d.abs() / self.max_change).min(1.0)
        } else {
            0.0
        };
        let other = (248.0 - 190.0 * t).round() as u8;
        let fill = if d > 0.0 {
            format!("rgb(255,{other},{other})")
        } else if d < 0.0 {
            format!("rgb({other},{other},255)")
        } else {
            NEUTRAL.to_string()
        };
        let title = if self.per_unit {
            format!(
                "{name} (before {} per unit, after {} per unit, change {:+.2}% of the larger total)",
                self.count(n.before, false),
                self.count(n.after, true),
                d * 100.0
            )
        } else {
            format!(
                "{name} (before {pb:.2}% {}, after {pa:.2}% {}, inclusive {:+.2} pp)",
                self.count(n.before, false),
                self.count(n.after, true),
                d * 100.0
            )
        };
        (fill, title)
    }
}

/// Writes inferno's graph `raw` into `svg` with every frame of `nodes`
/// (keyed by depth and start) coloured by the change of its inclusive share
/// (or cost per unit) and titled with both sides, and the legend's scale
/// filled in: the graph held whole, frames found by their position.
#[cfg(test)]
pub(super) fn colour(
    diff: &Diff,
    raw: &str,
    nodes: &rustc_hash::FxHashMap<(u32, u64), Node>,
    inverted: bool,
    svg: &mut Vec<u8>,
) {
    let mut scale = Scale::new(diff);
    for (_, n) in nodes.iter().filter(|(k, _)| k.0 > 0) {
        scale.include(n);
    }
    let raw = raw.replacen(SCALE_TOKEN, &scale.legend(), 1);
    let recolour = |depth: u32, x: u64, name: &str| -> Option<(Option<String>, String)> {
        let (fill, title) = if depth == 0 {
            scale.style(0, &Node::default(), name)
        } else {
            scale.style(depth, nodes.get(&(depth, x))?, name)
        };
        Some((Some(fill), title))
    };
    super::svg::rewrite(&raw, inverted, &recolour, svg);
}

pub(super) fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}
