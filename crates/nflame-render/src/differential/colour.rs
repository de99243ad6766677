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
use rustc_hash::FxHashMap;

use super::layout::Node;
use super::svg::{rewrite, GONE_FILL};

/// Stands for the colour scale in the legend until the layout gives it.
pub(super) const SCALE_TOKEN: &str = "NFLAME_COLOUR_SCALE";

/// Writes inferno's graph `raw` into `svg` with every frame of `nodes`
/// coloured by the change of its inclusive share (or cost per unit) and
/// titled with both sides, and the legend's scale filled in.
pub(super) fn colour(
    diff: &Diff,
    raw: &str,
    nodes: &FxHashMap<(u32, u64), Node>,
    inverted: bool,
    svg: &mut Vec<u8>,
) {
    let per_unit = diff.scaling() == Scaling::PerUnit;
    let (total_before, total_after) = (diff.before.total(), diff.after.total());
    // Per unit of work, changes are relative to the larger side's total cost.
    let larger = diff
        .shown(total_after, true)
        .max(diff.shown(total_before, false));
    let change = |n: &Node| -> f64 {
        if per_unit {
            if larger > 0.0 {
                (diff.shown(n.after, true) - diff.shown(n.before, false)) / larger
            } else {
                0.0
            }
        } else {
            share(n.after, total_after) - share(n.before, total_before)
        }
    };
    let max_change = nodes
        .iter()
        .filter(|(k, _)| k.0 > 0)
        .map(|(_, n)| change(n).abs())
        .fold(0.0f64, f64::max);
    let scale = if per_unit {
        format!("{:.2}% of the larger total", max_change * 100.0)
    } else {
        format!("±{:.2} pp", max_change * 100.0)
    };
    let raw = raw.replacen(SCALE_TOKEN, &scale, 1);

    let unit = diff.measure().unit;
    let fmt_count = |c: u64, after: bool| -> String {
        let mut s = diff.format_shown(c, after);
        if unit != Unit::Samples {
            s.push(' ');
            s.push_str(unit.symbol());
        }
        s
    };
    let recolour = |depth: u32, x: u64, name: &str| -> Option<(Option<String>, String)> {
        if depth == 0 {
            // `all` is as wide as AFTER plus the stacks gone after: say what
            // the totals are, not the sum of widths inferno would.
            let title = if per_unit {
                format!(
                    "{name} (before {} per unit, after {} per unit)",
                    fmt_count(total_before, false),
                    fmt_count(total_after, true)
                )
            } else {
                format!(
                    "{name} (before 100.00% {}, after 100.00% {})",
                    fmt_count(total_before, false),
                    fmt_count(total_after, true)
                )
            };
            return Some((None, title));
        }
        let n = nodes.get(&(depth, x))?;
        let pb = share(n.before, total_before) * 100.0;
        let pa = share(n.after, total_after) * 100.0;
        if n.after == 0 {
            let title = format!(
                "{name} (gone: before {pb:.2}% {}, after 0)",
                fmt_count(n.before, false)
            );
            return Some((Some(GONE_FILL.to_string()), title));
        }
        let d = change(n);
        let t = if max_change > 0.0 {
            (d.abs() / max_change).min(1.0)
        } else {
            0.0
        };
        let other = (248.0 - 190.0 * t).round() as u8;
        let fill = if d > 0.0 {
            format!("rgb(255,{other},{other})")
        } else if d < 0.0 {
            format!("rgb({other},{other},255)")
        } else {
            "rgb(248,248,248)".to_string()
        };
        let title = if per_unit {
            format!(
                "{name} (before {} per unit, after {} per unit, change {:+.2}% of the larger total)",
                fmt_count(n.before, false),
                fmt_count(n.after, true),
                d * 100.0
            )
        } else {
            format!(
                "{name} (before {pb:.2}% {}, after {pa:.2}% {}, inclusive {:+.2} pp)",
                fmt_count(n.before, false),
                fmt_count(n.after, true),
                d * 100.0
            )
        };
        Some((Some(fill), title))
    };
    rewrite(&raw, inverted, &recolour, svg);
}

pub(super) fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}
