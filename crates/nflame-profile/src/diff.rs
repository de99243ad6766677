//! Comparing two profiles: normalisation, cost per unit of work, and the
//! frame-share report.
//!
//! The differential flame graph follows FlameGraph's convention: each line is
//! `stack BEFORE AFTER`, widths come from AFTER and colours from the change.
//! By default BEFORE is scaled to AFTER's total ("normalised"), so the graph
//! compares shapes, not durations. With per-unit scaling each side is divided
//! by the work it did (requests served, bytes moved…), so the graph compares
//! cost per unit of work. Stacks that exist only in BEFORE have no width in
//! such a graph; [`Diff::removed_lines`] gives the reverse view (widths from
//! BEFORE) and [`Report::removed`] lists them.

use std::cmp::Ordering;

use serde::Serialize;

use crate::tree::StackTree;
use crate::{Error, Profile};

/// How two profiles are compared.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DiffOptions {
    /// Scale BEFORE to AFTER's total. Default is `true`. Ignored with per-unit scaling.
    pub normalize: bool,
    /// Units of work BEFORE did; its counts are divided by it. Default is `None`.
    pub scale_before: Option<f64>,
    /// Units of work AFTER did; its counts are divided by it. Default is `None`.
    pub scale_after: Option<f64>,
    /// How many frames and stacks each report table lists. Default is 20.
    pub top: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            normalize: true,
            scale_before: None,
            scale_after: None,
            top: 20,
        }
    }
}

/// How counts were scaled for the graph.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// Raw sample counts.
    None,
    /// BEFORE scaled to AFTER's total.
    Normalized,
    /// Each side divided by its units of work.
    PerUnit,
}

/// Two profiles and how to scale them against each other.
#[derive(Debug, Clone)]
pub struct Diff {
    /// The profile before the change.
    pub before: Profile,
    /// The profile after the change.
    pub after: Profile,
    scaling: Scaling,
    factor_before: f64,
    factor_after: f64,
    /// Counts in the graph are multiplied by this; the renderer divides back.
    graph_multiplier: f64,
    top: usize,
}

/// Fixed-point precision of per-unit counts in the graph (shown with 6 decimals).
const PER_UNIT_PRECISION: f64 = 1e6;

impl Diff {
    /// Prepares the comparison. Per-unit scales must be finite and positive.
    pub fn new(before: Profile, after: Profile, opts: &DiffOptions) -> Result<Diff, Error> {
        let check = |name: &str, v: Option<f64>| -> Result<(), Error> {
            match v {
                Some(x) if !(x.is_finite() && x > 0.0) => Err(Error::InvalidOption(format!(
                    "{name} must be a positive number of units of work, got {x}"
                ))),
                _ => Ok(()),
            }
        };
        check("--scale-before", opts.scale_before)?;
        check("--scale-after", opts.scale_after)?;
        let (scaling, fb, fa, mult) = if opts.scale_before.is_some() || opts.scale_after.is_some() {
            let sb = opts.scale_before.unwrap_or(1.0);
            let sa = opts.scale_after.unwrap_or(1.0);
            (Scaling::PerUnit, 1.0 / sb, 1.0 / sa, PER_UNIT_PRECISION)
        } else if opts.normalize && before.total() > 0 && before.total() != after.total() {
            (
                Scaling::Normalized,
                after.total() as f64 / before.total() as f64,
                1.0,
                1.0,
            )
        } else if opts.normalize {
            (Scaling::Normalized, 1.0, 1.0, 1.0)
        } else {
            (Scaling::None, 1.0, 1.0, 1.0)
        };
        Ok(Diff {
            before,
            after,
            scaling,
            factor_before: fb,
            factor_after: fa,
            graph_multiplier: mult,
            top: opts.top,
        })
    }

    /// How the graph's counts were scaled.
    pub fn scaling(&self) -> Scaling {
        self.scaling
    }

    /// The factor a renderer multiplies graph counts by to show real values
    /// (e.g. 1e-6 for per-unit graphs, whose counts are fixed-point).
    pub fn display_factor(&self) -> f64 {
        1.0 / self.graph_multiplier
    }

    fn scaled(&self, count: u64, factor: f64) -> u64 {
        (count as f64 * factor * self.graph_multiplier).round() as u64
    }

    /// `stack BEFORE AFTER` lines, sorted by stack: the differential graph
    /// (widths from AFTER, colour from AFTER − BEFORE).
    pub fn lines(&self) -> Vec<String> {
        self.union_lines(false)
    }

    /// `stack AFTER BEFORE` lines: the reverse view, with widths from BEFORE, in
    /// which stacks that disappeared are visible. Render it with negated
    /// differentials so red still means "grew".
    pub fn removed_lines(&self) -> Vec<String> {
        self.union_lines(true)
    }

    fn union_lines(&self, reverse: bool) -> Vec<String> {
        let mut lines: Vec<String> = self
            .scaled_stacks()
            .into_iter()
            .map(|(s, b, a)| {
                let (x, y) = if reverse { (a, b) } else { (b, a) };
                let mut buf = itoa::Buffer::new();
                let mut line = String::with_capacity(s.len() + 24);
                line.push_str(s);
                line.push(' ');
                line.push_str(buf.format(x));
                line.push(' ');
                line.push_str(buf.format(y));
                line
            })
            .collect();
        // Renderers check the order of whole lines, so sort those (not the stacks).
        {
            use rayon::slice::ParallelSliceMut;
            lines.par_sort_unstable();
        }
        lines
    }

    /// Every stack of either side with its scaled BEFORE and AFTER counts (in
    /// graph units: see [`Diff::display_factor`]), in no particular order.
    pub fn scaled_stacks(&self) -> Vec<(&str, u64, u64)> {
        let mut out: Vec<(&str, u64, u64)> = self
            .before
            .iter()
            .map(|(s, b)| {
                (
                    s,
                    self.scaled(b, self.factor_before),
                    self.scaled(self.after.get(s), self.factor_after),
                )
            })
            .collect();
        out.extend(
            self.after
                .iter()
                .filter(|(s, _)| self.before.get(s) == 0)
                .map(|(s, a)| (s, 0, self.scaled(a, self.factor_after))),
        );
        out
    }

    /// Both profiles as one [`StackTree`]: column 0 holds BEFORE's raw counts,
    /// column 1 AFTER's. The frame report, the layout of the graph and the
    /// category reports all read it, so it is built once.
    pub fn tree(&self) -> StackTree<'_> {
        StackTree::of_two(&self.before, &self.after)
    }

    /// Raw BEFORE and AFTER counts in graph units (as [`Diff::scaled_stacks`] gives them).
    pub fn scale_counts(&self, before: u64, after: u64) -> (u64, u64) {
        (
            self.scaled(before, self.factor_before),
            self.scaled(after, self.factor_after),
        )
    }

    /// The frame-share report.
    pub fn report(&self) -> Report {
        self.report_from(&self.tree())
    }

    /// The frame-share report, from this diff's [`Diff::tree`].
    pub fn report_from(&self, tree: &StackTree<'_>) -> Report {
        let tb = self.before.total();
        let ta = self.after.total();
        let per_unit = self.scaling == Scaling::PerUnit;
        let totals = FrameTotals::of(tree);
        let side = |inc: u64, slf: u64, total: u64, factor: f64| SideValues {
            inclusive: inc,
            inclusive_pct: pct(inc, total),
            self_samples: slf,
            self_pct: pct(slf, total),
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
                inclusive_delta_pct: after.inclusive_pct - before.inclusive_pct,
                self_delta_pct: after.self_pct - before.self_pct,
                before,
                after,
            }
        };
        // The largest changes first, ties by name: select the top, then sort those.
        let top_by = |values: &[[u64; 2]]| -> Vec<FrameRow> {
            let mut v: Vec<(usize, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, x)| (i, pct(x[1], ta) - pct(x[0], tb)))
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
                    pct: pct(c, total),
                })
                .collect();
            StackList {
                stacks: all_count,
                samples: all_samples,
                pct: pct(all_samples, total),
                top: v,
            }
        };
        Report {
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

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
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
    /// `inclusive` as a percentage of the side's total.
    pub inclusive_pct: f64,
    /// Samples in which the frame is the leaf.
    #[serde(rename = "self")]
    pub self_samples: u64,
    /// `self` as a percentage of the side's total.
    pub self_pct: f64,
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
    /// Change of the inclusive share, in percentage points.
    pub inclusive_delta_pct: f64,
    /// Change of the self share, in percentage points.
    pub self_delta_pct: f64,
}

/// A stack and its samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackRow {
    /// The stack, root first.
    pub stack: String,
    /// Its samples.
    pub samples: u64,
    /// Its share of its side's total, in %.
    pub pct: f64,
}

/// The stacks found on one side only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackList {
    /// How many distinct stacks.
    pub stacks: usize,
    /// Their samples.
    pub samples: u64,
    /// Their share of their side's total, in %.
    pub pct: f64,
    /// The largest of them.
    pub top: Vec<StackRow>,
}

/// What changed between two profiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
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

impl Report {
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
                        r.inclusive_delta_pct,
                        r.before.inclusive_pct,
                        r.after.inclusive_pct,
                        r.before.inclusive,
                        r.after.inclusive,
                        r.before.inclusive_per_unit,
                        r.after.inclusive_per_unit,
                    )
                } else {
                    (
                        r.self_delta_pct,
                        r.before.self_pct,
                        r.after.self_pct,
                        r.before.self_samples,
                        r.after.self_samples,
                        r.before.self_per_unit,
                        r.after.self_per_unit,
                    )
                };
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
                list.stacks, list.samples, list.pct
            )?;
            for s in &list.top {
                writeln!(w, "  {:>8} {:>6.2}%  {}", s.samples, s.pct, elide(&s.stack))?;
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

    fn p(stacks: &[(&str, u64)]) -> Profile {
        Profile::from_stacks(stacks.iter().copied())
    }

    #[test]
    fn normalises_before_to_after_total() {
        let before = p(&[("a;b", 10), ("a;c", 10)]);
        let after = p(&[("a;b", 30), ("a;d", 10)]);
        let d = Diff::new(before, after, &DiffOptions::default()).unwrap();
        assert_eq!(d.scaling(), Scaling::Normalized);
        assert_eq!(d.lines(), vec!["a;b 20 30", "a;c 20 0", "a;d 0 10"]);
        assert_eq!(d.removed_lines(), vec!["a;b 30 20", "a;c 0 20", "a;d 10 0"]);
    }

    #[test]
    fn raw_and_per_unit() {
        let before = p(&[("a;b", 10)]);
        let after = p(&[("a;b", 30)]);
        let opts = DiffOptions {
            normalize: false,
            ..DiffOptions::default()
        };
        let d = Diff::new(before.clone(), after.clone(), &opts).unwrap();
        assert_eq!(d.lines(), vec!["a;b 10 30"]);
        let opts = DiffOptions {
            scale_before: Some(100.0),
            scale_after: Some(600.0),
            ..DiffOptions::default()
        };
        let d = Diff::new(before, after, &opts).unwrap();
        // 0.1 and 0.05 samples per unit, in fixed point.
        assert_eq!(d.lines(), vec!["a;b 100000 50000"]);
        assert_eq!(d.display_factor(), 1e-6);
        let bad = DiffOptions {
            scale_after: Some(0.0),
            ..DiffOptions::default()
        };
        assert!(Diff::new(p(&[("a", 1)]), p(&[("a", 1)]), &bad).is_err());
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
            .report();
        let names: std::collections::HashSet<&String> = tb.keys().chain(ta.keys()).collect();
        let changed = |inclusive: bool| {
            names
                .iter()
                .filter(|n| {
                    let v = |t: &std::collections::HashMap<String, (u64, u64)>, total: u64| {
                        let x = t.get(**n).copied().unwrap_or_default();
                        pct(if inclusive { x.0 } else { x.1 }, total)
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
            .report();
        let proxy = r.by_inclusive.iter().find(|r| r.frame == "proxy").unwrap();
        assert_eq!(proxy.before.inclusive, 50);
        assert_eq!(proxy.after.inclusive, 0);
        assert!((proxy.inclusive_delta_pct + 50.0).abs() < 1e-9);
        let app = r.by_inclusive.iter().find(|r| r.frame == "app").unwrap();
        // Recursion counts once: 100% after, not 110%.
        assert!((app.after.inclusive_pct - 100.0).abs() < 1e-9);
        assert!(r
            .by_self
            .iter()
            .any(|r| r.frame == "read" && r.self_delta_pct < -49.0));
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
