//! The colour scale: each frame's fill from the change of its inclusive share
//! (or cost per unit) relative to the largest change, its tooltip with both
//! sides, and the legend's scale.

use nflame_profile::diff::{Diff, Scaling};
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
    let factor = diff.display_factor();
    let root = nodes.get(&(0, 0)).copied().unwrap_or_default();
    let change = |n: &Node| -> f64 {
        if per_unit {
            let scale = root.after.max(root.before).max(1) as f64;
            (n.after as f64 - n.before as f64) / scale
        } else {
            share(n.after, root.after) - share(n.before, root.before)
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

    let fmt_count = |c: u64| -> String {
        if factor == 1.0 {
            c.to_string()
        } else {
            format!("{:.4}", c as f64 * factor)
        }
    };
    let recolour = |depth: u32, x: u64, name: &str| -> Option<(String, String)> {
        let n = nodes.get(&(depth, x))?;
        let pb = share(n.before, root.before) * 100.0;
        let pa = share(n.after, root.after) * 100.0;
        if n.after == 0 {
            let title = format!(
                "{name} (gone: before {pb:.2}% {}, after 0)",
                fmt_count(n.before)
            );
            return Some((GONE_FILL.to_string(), title));
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
                fmt_count(n.before),
                fmt_count(n.after),
                d * 100.0
            )
        } else {
            format!(
                "{name} (before {pb:.2}% {}, after {pa:.2}% {}, inclusive {:+.2} pp)",
                fmt_count(n.before),
                fmt_count(n.after),
                d * 100.0
            )
        };
        Some((fill, title))
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
