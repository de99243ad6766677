//! The frame-share report of a [`Diff`]: the frames whose inclusive or self
//! share changed most, and the stacks found on one side only.
//!
//! Shares are fractions of a side's total (0.25 is 25%), changes of share are
//! differences of fractions (-0.5 is 50 percentage points less). The JSON
//! keeps the field names and percent values it has always had
//! (`inclusive_pct`, `self_delta_pct`, `pct`…): percent is how the report is
//! shown, in JSON as in text. The graph's scaling is [`crate::diff`]'s.

use std::cmp::Ordering;

use serde::{Serialize, Serializer};

use crate::diff::{Diff, Scaling};
use crate::tree::StackTree;

impl Diff {
    /// The frame-share report.
    pub fn frame_shares(&self) -> FrameShareReport {
        self.frame_shares_from(&self.tree())
    }

    /// The frame-share report, from this diff's [`Diff::tree`].
    pub fn frame_shares_from(&self, tree: &StackTree<'_>) -> FrameShareReport {
        let tb = self.before.total();
        let ta = self.after.total();
        let per_unit = self.scaling == Scaling::PerUnit;
        let totals = FrameTotals::of(tree);
        let side = |inc: u64, slf: u64, total: u64, factor: f64| SideValues {
            inclusive: inc,
            inclusive_share: share(inc, total),
            self_samples: slf,
            self_share: share(slf, total),
            inclusive_per_unit: per_unit.then_some(inc as f64 * factor),
            self_per_unit: per_unit.then_some(slf as f64 * factor),
        };
        let names = tree.frames();
        let row = |i: usize| {
            let before = side(
                totals.inclusive[i][0],
                totals.self_[i][0],
                tb,
                self.factor_before,
            );
            let after = side(
                totals.inclusive[i][1],
                totals.self_[i][1],
                ta,
                self.factor_after,
            );
            FrameRow {
                frame: names[i].to_string(),
                inclusive_share_change: after.inclusive_share - before.inclusive_share,
                self_share_change: after.self_share - before.self_share,
                before,
                after,
            }
        };
        // The largest changes first, ties by name: select the top, then sort those.
        let top_by = |values: &[[u64; 2]]| -> Vec<FrameRow> {
            let mut v: Vec<(usize, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, x)| (i, share(x[1], ta) - share(x[0], tb)))
                .filter(|(_, d)| *d != 0.0)
                .collect();
            let order = |a: &(usize, f64), b: &(usize, f64)| {
                b.1.abs()
                    .partial_cmp(&a.1.abs())
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| names[a.0].cmp(names[b.0]))
            };
            if self.top < v.len() {
                if self.top > 0 {
                    v.select_nth_unstable_by(self.top - 1, order);
                }
                v.truncate(self.top);
            }
            v.sort_by(order);
            v.into_iter().map(|(i, _)| row(i)).collect()
        };
        let by_inclusive = top_by(&totals.inclusive);
        let by_self = top_by(&totals.self_);
        let only_in = |col: usize, total: u64| {
            let mut v: Vec<(&str, u64)> = tree
                .stacks()
                .iter()
                .filter(|s| s.counts[1 - col] == 0 && s.counts[col] > 0)
                .map(|s| (s.text, s.counts[col]))
                .collect();
            let all_samples: u64 = v.iter().map(|r| r.1).sum();
            let all_count = v.len();
            let order = |x: &(&str, u64), y: &(&str, u64)| y.1.cmp(&x.1).then_with(|| x.0.cmp(y.0));
            if self.top < v.len() {
                // Only the largest `top` are listed: select them, then sort those.
                if self.top > 0 {
                    v.select_nth_unstable_by(self.top - 1, order);
                }
                v.truncate(self.top);
            }
            v.sort_by(order);
            let v: Vec<StackRow> = v
                .into_iter()
                .map(|(s, c)| StackRow {
                    stack: s.to_string(),
                    samples: c,
                    share: share(c, total),
                })
                .collect();
            StackList {
                stacks: all_count,
                samples: all_samples,
                share: share(all_samples, total),
                top: v,
            }
        };
        FrameShareReport {
            scaling: self.scaling,
            before_total: tb,
            after_total: ta,
            before_units: per_unit.then(|| 1.0 / self.factor_before),
            after_units: per_unit.then(|| 1.0 / self.factor_after),
            by_inclusive,
            by_self,
            removed: only_in(0, tb),
            added: only_in(1, ta),
        }
    }
}
/// `part` as a fraction of `total` (0 when `total` is 0).
fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// Serializes a fraction as a percentage (the JSON's unit).
fn as_percent<S: Serializer>(fraction: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(fraction * 100.0)
}

/// Inclusive and self samples of every frame of a tree, by frame id, per column.
struct FrameTotals {
    inclusive: Vec<[u64; 2]>,
    self_: Vec<[u64; 2]>,
}

impl FrameTotals {
    fn of(tree: &StackTree<'_>) -> FrameTotals {
        let add = |a: &mut [u64; 2], b: [u64; 2]| {
            a[0] += b[0];
            a[1] += b[1];
        };
        let nodes = tree.nodes();
        let mut inclusive = vec![[0u64; 2]; tree.frames().len()];
        let mut self_ = vec![[0u64; 2]; tree.frames().len()];
        // Samples of the stacks under each prefix, which contain all its frames.
        let mut under = vec![[0u64; 2]; nodes.len()];
        for s in tree.stacks() {
            add(&mut under[s.node as usize], s.counts);
            add(&mut self_[s.leaf as usize], s.counts);
            // A recursive frame counts once per stack.
            if !tree.prefix_contains(s.node, s.leaf) {
                add(&mut inclusive[s.leaf as usize], s.counts);
            }
        }
        // Parents have smaller ids than their children.
        for n in (1..nodes.len()).rev() {
            let c = under[n];
            add(&mut under[nodes[n].parent as usize], c);
        }
        for (n, node) in nodes.iter().enumerate().skip(1) {
            if !tree.prefix_contains(node.parent, node.frame) {
                add(&mut inclusive[node.frame as usize], under[n]);
            }
        }
        FrameTotals { inclusive, self_ }
    }
}

/// One side's values for a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideValues {
    /// Samples of stacks containing the frame.
    pub inclusive: u64,
    /// `inclusive` as a fraction of the side's total (JSON: `inclusive_pct`, in percent).
    #[serde(rename = "inclusive_pct", serialize_with = "as_percent")]
    pub inclusive_share: f64,
    /// Samples in which the frame is the leaf.
    #[serde(rename = "self")]
    pub self_samples: u64,
    /// `self` as a fraction of the side's total (JSON: `self_pct`, in percent).
    #[serde(rename = "self_pct", serialize_with = "as_percent")]
    pub self_share: f64,
    /// Inclusive samples per unit of work (per-unit comparisons only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inclusive_per_unit: Option<f64>,
    /// Self samples per unit of work (per-unit comparisons only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_per_unit: Option<f64>,
}

/// A frame and how its share changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameRow {
    /// The frame's name.
    pub frame: String,
    /// Values in BEFORE.
    pub before: SideValues,
    /// Values in AFTER.
    pub after: SideValues,
    /// Change of the inclusive share, as a difference of fractions (JSON:
    /// `inclusive_delta_pct`, in percentage points).
    #[serde(rename = "inclusive_delta_pct", serialize_with = "as_percent")]
    pub inclusive_share_change: f64,
    /// Change of the self share, as a difference of fractions (JSON:
    /// `self_delta_pct`, in percentage points).
    #[serde(rename = "self_delta_pct", serialize_with = "as_percent")]
    pub self_share_change: f64,
}

/// A stack and its samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackRow {
    /// The stack, root first.
    pub stack: String,
    /// Its samples.
    pub samples: u64,
    /// Its share of its side's total, a fraction (JSON: `pct`, in percent).
    #[serde(rename = "pct", serialize_with = "as_percent")]
    pub share: f64,
}

/// The stacks found on one side only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackList {
    /// How many distinct stacks.
    pub stacks: usize,
    /// Their samples.
    pub samples: u64,
    /// Their share of their side's total, a fraction (JSON: `pct`, in percent).
    #[serde(rename = "pct", serialize_with = "as_percent")]
    pub share: f64,
    /// The largest of them.
    pub top: Vec<StackRow>,
}

/// What changed between two profiles, frame by frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameShareReport {
    /// How the graph was scaled.
    pub scaling: Scaling,
    /// Samples in BEFORE.
    pub before_total: u64,
    /// Samples in AFTER.
    pub after_total: u64,
    /// Units of work of BEFORE (per-unit comparisons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_units: Option<f64>,
    /// Units of work of AFTER (per-unit comparisons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_units: Option<f64>,
    /// Frames with the largest change of inclusive share.
    pub by_inclusive: Vec<FrameRow>,
    /// Frames with the largest change of self share.
    pub by_self: Vec<FrameRow>,
    /// Stacks only in BEFORE (they vanished).
    pub removed: StackList,
    /// Stacks only in AFTER (they appeared).
    pub added: StackList,
}

impl FrameShareReport {
    /// Writes the report as aligned text.
    pub fn write_text<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        writeln!(
            w,
            "before: {} samples{}   after: {} samples{}   scaling: {}",
            self.before_total,
            units(self.before_units),
            self.after_total,
            units(self.after_units),
            match self.scaling {
                Scaling::None => "raw counts",
                Scaling::Normalized => "before normalised to after's total",
                Scaling::PerUnit => "per unit of work",
            }
        )?;
        let per_unit = self.scaling == Scaling::PerUnit;
        for (title, rows, inclusive) in [
            (
                "Largest changes of inclusive share",
                &self.by_inclusive,
                true,
            ),
            ("Largest changes of self share", &self.by_self, false),
        ] {
            writeln!(w, "\n{title}:")?;
            if rows.is_empty() {
                writeln!(w, "  (none)")?;
                continue;
            }
            if per_unit {
                writeln!(
                    w,
                    "  {:>8}  {:>18}  {:>18}  {:>22}  frame",
                    "change", "before", "after", "per unit before→after"
                )?;
            } else {
                writeln!(
                    w,
                    "  {:>8}  {:>18}  {:>18}  frame",
                    "change", "before", "after"
                )?;
            }
            for r in rows {
                let (d, b, a, bs, as_, bu, au) = if inclusive {
                    (
                        r.inclusive_share_change,
                        r.before.inclusive_share,
                        r.after.inclusive_share,
                        r.before.inclusive,
                        r.after.inclusive,
                        r.before.inclusive_per_unit,
                        r.after.inclusive_per_unit,
                    )
                } else {
                    (
                        r.self_share_change,
                        r.before.self_share,
                        r.after.self_share,
                        r.before.self_samples,
                        r.after.self_samples,
                        r.before.self_per_unit,
                        r.after.self_per_unit,
                    )
                };
                let (d, b, a) = (d * 100.0, b * 100.0, a * 100.0);
                let b = format!("{b:.2}% ({bs})");
                let a = format!("{a:.2}% ({as_})");
                if per_unit {
                    let pu = format!("{:.4}→{:.4}", bu.unwrap_or(0.0), au.unwrap_or(0.0));
                    writeln!(w, "  {d:>+7.2}pp  {b:>18}  {a:>18}  {pu:>22}  {}", r.frame)?;
                } else {
                    writeln!(w, "  {d:>+7.2}pp  {b:>18}  {a:>18}  {}", r.frame)?;
                }
            }
        }
        for (title, list) in [
            ("Stacks only in before (gone after)", &self.removed),
            ("Stacks only in after (new)", &self.added),
        ] {
            writeln!(
                w,
                "\n{title}: {} stacks, {} samples ({:.2}%)",
                list.stacks,
                list.samples,
                list.share * 100.0
            )?;
            for s in &list.top {
                let pct = s.share * 100.0;
                writeln!(w, "  {:>8} {pct:>6.2}%  {}", s.samples, elide(&s.stack))?;
            }
        }
        Ok(())
    }
}

/// A long stack for a text table: the 3 outermost and 6 innermost frames.
fn elide(stack: &str) -> std::borrow::Cow<'_, str> {
    const HEAD: usize = 3;
    const TAIL: usize = 6;
    let frames: Vec<&str> = stack.split(';').collect();
    if frames.len() <= HEAD + TAIL + 1 {
        return stack.into();
    }
    let hidden = frames.len() - HEAD - TAIL;
    format!(
        "{};…{hidden} frames…;{}",
        frames[..HEAD].join(";"),
        frames[frames.len() - TAIL..].join(";")
    )
    .into()
}

fn units(u: Option<f64>) -> String {
    u.map(|u| format!(" / {u} units")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::DiffOptions;
    use crate::Profile;

    fn p(stacks: &[(&str, u64)]) -> Profile {
        Profile::from_stacks(stacks.iter().copied())
    }

    /// Inclusive and self samples by frame name, stack by stack.
    fn naive_totals(p: &Profile) -> std::collections::HashMap<String, (u64, u64)> {
        let mut t = std::collections::HashMap::<String, (u64, u64)>::new();
        for (stack, count) in p.iter() {
            let frames: Vec<&str> = stack.split(';').collect();
            let mut seen = std::collections::HashSet::new();
            for f in &frames {
                if seen.insert(*f) {
                    t.entry(f.to_string()).or_default().0 += count;
                }
            }
            t.entry(frames[frames.len() - 1].to_string()).or_default().1 += count;
        }
        t
    }

    #[test]
    fn report_matches_stack_by_stack_totals() {
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/folded");
        let before = Profile::from_path(fixtures.join("lab-proxy.folded.gz")).unwrap();
        let after = Profile::from_path(fixtures.join("nginx-lua.folded.gz")).unwrap();
        let (tb, ta) = (naive_totals(&before), naive_totals(&after));
        let opts = DiffOptions {
            top: usize::MAX,
            ..DiffOptions::default()
        };
        let r = Diff::new(before.clone(), after.clone(), &opts)
            .unwrap()
            .frame_shares();
        let names: std::collections::HashSet<&String> = tb.keys().chain(ta.keys()).collect();
        let changed = |inclusive: bool| {
            names
                .iter()
                .filter(|n| {
                    let v = |t: &std::collections::HashMap<String, (u64, u64)>, total: u64| {
                        let x = t.get(**n).copied().unwrap_or_default();
                        share(if inclusive { x.0 } else { x.1 }, total)
                    };
                    v(&ta, after.total()) - v(&tb, before.total()) != 0.0
                })
                .count()
        };
        assert_eq!(r.by_inclusive.len(), changed(true));
        assert_eq!(r.by_self.len(), changed(false));
        for row in r.by_inclusive.iter().chain(&r.by_self) {
            let b = tb.get(&row.frame).copied().unwrap_or_default();
            let a = ta.get(&row.frame).copied().unwrap_or_default();
            assert_eq!(
                (row.before.inclusive, row.before.self_samples),
                b,
                "{}",
                row.frame
            );
            assert_eq!(
                (row.after.inclusive, row.after.self_samples),
                a,
                "{}",
                row.frame
            );
        }
        let only = |x: &Profile, y: &Profile| x.iter().filter(|(s, _)| y.get(s) == 0).count();
        assert_eq!(r.removed.stacks, only(&before, &after));
        assert_eq!(r.added.stacks, only(&after, &before));
    }

    #[test]
    fn report_inclusive_self_and_removed() {
        let before = p(&[("main;proxy;read", 50), ("main;app", 50)]);
        let after = p(&[("main;app", 90), ("main;app;app", 10)]);
        let r = Diff::new(before, after, &DiffOptions::default())
            .unwrap()
            .frame_shares();
        let proxy = r.by_inclusive.iter().find(|r| r.frame == "proxy").unwrap();
        assert_eq!(proxy.before.inclusive, 50);
        assert_eq!(proxy.after.inclusive, 0);
        assert!((proxy.inclusive_share_change + 0.5).abs() < 1e-9);
        let app = r.by_inclusive.iter().find(|r| r.frame == "app").unwrap();
        // Recursion counts once: 100% after, not 110%.
        assert!((app.after.inclusive_share - 1.0).abs() < 1e-9);
        assert!(r
            .by_self
            .iter()
            .any(|r| r.frame == "read" && r.self_share_change < -0.49));
        assert_eq!(r.removed.stacks, 1);
        assert_eq!(r.removed.top[0].stack, "main;proxy;read");
        assert_eq!(r.added.stacks, 1);
        // main is unchanged (100% on both sides) and so is not listed.
        assert!(r.by_inclusive.iter().all(|r| r.frame != "main"));
        let mut text = Vec::new();
        r.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("main;proxy;read"), "{text}");
    }
}
