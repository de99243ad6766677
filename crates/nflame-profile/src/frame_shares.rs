//! The frame-share report of a [`Diff`]: the frames whose inclusive or self
//! share changed most, and the stacks found on one side only.
//!
//! Shares are fractions of a side's total (0.25 is 25%), changes of share are
//! differences of fractions (-0.5 is 50 percentage points less). The JSON
//! keeps the field names and percent values it has always had
//! (`inclusive_pct`, `self_delta_pct`, `pct`…): percent is how the report is
//! shown, in JSON as in text. The graph's scaling is [`crate::diff`]'s.
//!
//! Counts are the profiles' stored counts ([`crate::Profile::decimals`]); the
//! report carries their [`Measure`], and text and JSON show them in their unit:
//! JSON adds `"unit"` when it is not samples, and gives fractional counts as
//! decimal numbers.

use std::cmp::Ordering;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::diff::{Diff, Scaling};
use crate::tree::{StackTree, TreeVisitor};
use crate::unit::{Amount, Measure, Unit};

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
        let side = |inc: u64, slf: u64, total: u64, after: bool| SideValues {
            inclusive: inc,
            inclusive_share: share(inc, total),
            self_samples: slf,
            self_share: share(slf, total),
            inclusive_per_unit: per_unit.then(|| self.shown(inc, after)),
            self_per_unit: per_unit.then(|| self.shown(slf, after)),
        };
        let names = tree.frames();
        let row = |i: usize| {
            let before = side(totals.inclusive[i][0], totals.self_[i][0], tb, false);
            let after = side(totals.inclusive[i][1], totals.self_[i][1], ta, true);
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
            let order = |x: &(&str, u64), y: &(&str, u64)| y.1.cmp(&x.1).then_with(|| x.0.cmp(y.0));
            // Only the largest `top` are listed: candidates are kept to at
            // most twice that (the largest selected whenever they fill up),
            // not every stack of the side.
            let most = self.top.saturating_mul(2);
            let mut v: Vec<(&str, u64)> = Vec::with_capacity(most.min(1 << 10) + 1);
            let (mut all_samples, mut all_count) = (0u64, 0usize);
            for s in tree.stacks() {
                if s.counts[1 - col] == 0 && s.counts[col] > 0 {
                    all_samples += s.counts[col];
                    all_count += 1;
                    v.push((s.text, s.counts[col]));
                    if v.len() > most {
                        if self.top > 0 {
                            v.select_nth_unstable_by(self.top - 1, order);
                        }
                        v.truncate(self.top);
                    }
                }
            }
            if self.top < v.len() {
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
            measure: self.measure(),
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

/// Inclusive and self samples of every frame of a tree, by frame id, per column.
struct FrameTotals {
    inclusive: Vec<[u64; 2]>,
    self_: Vec<[u64; 2]>,
}

impl FrameTotals {
    /// Walks the tree ([`StackTree::walk`]) with the samples under each
    /// prefix of the path added up, and how often each frame is on the path:
    /// a recursive frame counts once per stack.
    fn of(tree: &StackTree<'_>) -> FrameTotals {
        struct Walk<'t, 'a> {
            tree: &'t StackTree<'a>,
            inclusive: Vec<[u64; 2]>,
            self_: Vec<[u64; 2]>,
            /// Times each frame is on the path.
            on_path: Vec<u32>,
            /// Samples under each node of the path, so far.
            under: Vec<[u64; 2]>,
        }
        fn add(a: &mut [u64; 2], b: [u64; 2]) {
            a[0] += b[0];
            a[1] += b[1];
        }
        impl TreeVisitor for Walk<'_, '_> {
            fn enter(&mut self, node: u32) {
                let frame = self.tree.nodes()[node as usize].frame as usize;
                self.on_path[frame] += 1;
                self.under.push([0; 2]);
            }
            fn leave(&mut self, node: u32) {
                let frame = self.tree.nodes()[node as usize].frame as usize;
                let under = self.under.pop().expect("a node on the path");
                if let Some(parent) = self.under.last_mut() {
                    add(parent, under);
                }
                self.on_path[frame] -= 1;
                if self.on_path[frame] == 0 {
                    add(&mut self.inclusive[frame], under);
                }
            }
            fn stack(&mut self, index: usize) {
                let s = &self.tree.stacks()[index];
                if let Some(under) = self.under.last_mut() {
                    add(under, s.counts);
                }
                let leaf = s.leaf as usize;
                add(&mut self.self_[leaf], s.counts);
                if self.on_path[leaf] == 0 {
                    add(&mut self.inclusive[leaf], s.counts);
                }
            }
        }
        let n = tree.frames().len();
        let mut walk = Walk {
            tree,
            inclusive: vec![[0; 2]; n],
            self_: vec![[0; 2]; n],
            on_path: vec![0; n],
            under: Vec::new(),
        };
        tree.walk(&mut walk);
        FrameTotals {
            inclusive: walk.inclusive,
            self_: walk.self_,
        }
    }
}

/// One side's values for a frame, in stored counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SideValues {
    /// Counts of the stacks containing the frame.
    pub inclusive: u64,
    /// `inclusive` as a fraction of the side's total (JSON: `inclusive_pct`, in percent).
    pub inclusive_share: f64,
    /// Counts of the stacks of which the frame is the leaf (JSON: `self`).
    pub self_samples: u64,
    /// `self` as a fraction of the side's total (JSON: `self_pct`, in percent).
    pub self_share: f64,
    /// Inclusive value per unit of work, in the profiles' unit (per-unit
    /// comparisons only).
    pub inclusive_per_unit: Option<f64>,
    /// Self value per unit of work (per-unit comparisons only).
    pub self_per_unit: Option<f64>,
}

/// A frame and how its share changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRow {
    /// The frame's name.
    pub frame: String,
    /// Values in BEFORE.
    pub before: SideValues,
    /// Values in AFTER.
    pub after: SideValues,
    /// Change of the inclusive share, as a difference of fractions (JSON:
    /// `inclusive_delta_pct`, in percentage points).
    pub inclusive_share_change: f64,
    /// Change of the self share, as a difference of fractions (JSON:
    /// `self_delta_pct`, in percentage points).
    pub self_share_change: f64,
}

/// A stack and its count.
#[derive(Debug, Clone, PartialEq)]
pub struct StackRow {
    /// The stack, root first.
    pub stack: String,
    /// Its stored count (JSON: `samples`, in the report's unit).
    pub samples: u64,
    /// Its share of its side's total, a fraction (JSON: `pct`, in percent).
    pub share: f64,
}

/// The stacks found on one side only.
#[derive(Debug, Clone, PartialEq)]
pub struct StackList {
    /// How many distinct stacks.
    pub stacks: usize,
    /// Their stored counts (JSON: `samples`).
    pub samples: u64,
    /// Their share of their side's total, a fraction (JSON: `pct`, in percent).
    pub share: f64,
    /// The largest of them.
    pub top: Vec<StackRow>,
}

/// What changed between two profiles, frame by frame. Serializes as
/// `{"scaling", "unit"? (when not samples), "before_total", "after_total",
/// "before_units"?, "after_units"?, "by_inclusive", "by_self", "removed",
/// "added"}`, shares in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameShareReport {
    /// How the graph was scaled.
    pub scaling: Scaling,
    /// The profiles' unit and the decimals of the counts below.
    pub measure: Measure,
    /// The total of BEFORE, in stored counts.
    pub before_total: u64,
    /// The total of AFTER.
    pub after_total: u64,
    /// Units of work of BEFORE (per-unit comparisons).
    pub before_units: Option<f64>,
    /// Units of work of AFTER (per-unit comparisons).
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

impl Serialize for FrameShareReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.measure;
        let amount = |raw| Amount::of(raw, m);
        fn side(v: &SideValues, m: Measure) -> SideJson {
            SideJson {
                inclusive: Amount::of(v.inclusive, m),
                inclusive_pct: v.inclusive_share * 100.0,
                self_: Amount::of(v.self_samples, m),
                self_pct: v.self_share * 100.0,
                inclusive_per_unit: v.inclusive_per_unit,
                self_per_unit: v.self_per_unit,
            }
        }
        fn rows(rows: &[FrameRow], m: Measure) -> Vec<FrameJson<'_>> {
            rows.iter()
                .map(|r| FrameJson {
                    frame: &r.frame,
                    before: side(&r.before, m),
                    after: side(&r.after, m),
                    inclusive_delta_pct: r.inclusive_share_change * 100.0,
                    self_delta_pct: r.self_share_change * 100.0,
                })
                .collect()
        }
        fn list(l: &StackList, m: Measure) -> StackListJson<'_> {
            StackListJson {
                stacks: l.stacks,
                samples: Amount::of(l.samples, m),
                pct: l.share * 100.0,
                top: l
                    .top
                    .iter()
                    .map(|r| StackJson {
                        stack: &r.stack,
                        samples: Amount::of(r.samples, m),
                        pct: r.share * 100.0,
                    })
                    .collect(),
            }
        }
        let unit = m.unit != Unit::Samples;
        let n = 7
            + usize::from(unit)
            + usize::from(self.before_units.is_some())
            + usize::from(self.after_units.is_some());
        let mut st = s.serialize_struct("FrameShareReport", n)?;
        st.serialize_field("scaling", &self.scaling)?;
        if unit {
            st.serialize_field("unit", m.unit.name())?;
        }
        st.serialize_field("before_total", &amount(self.before_total))?;
        st.serialize_field("after_total", &amount(self.after_total))?;
        if let Some(u) = self.before_units {
            st.serialize_field("before_units", &u)?;
        }
        if let Some(u) = self.after_units {
            st.serialize_field("after_units", &u)?;
        }
        st.serialize_field("by_inclusive", &rows(&self.by_inclusive, m))?;
        st.serialize_field("by_self", &rows(&self.by_self, m))?;
        st.serialize_field("removed", &list(&self.removed, m))?;
        st.serialize_field("added", &list(&self.added, m))?;
        st.end()
    }
}

/// The JSON of [`SideValues`].
#[derive(Serialize)]
struct SideJson {
    inclusive: Amount,
    inclusive_pct: f64,
    #[serde(rename = "self")]
    self_: Amount,
    self_pct: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusive_per_unit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    self_per_unit: Option<f64>,
}

/// The JSON of [`FrameRow`].
#[derive(Serialize)]
struct FrameJson<'a> {
    frame: &'a str,
    before: SideJson,
    after: SideJson,
    inclusive_delta_pct: f64,
    self_delta_pct: f64,
}

/// The JSON of [`StackRow`].
#[derive(Serialize)]
struct StackJson<'a> {
    stack: &'a str,
    samples: Amount,
    pct: f64,
}

/// The JSON of [`StackList`].
#[derive(Serialize)]
struct StackListJson<'a> {
    stacks: usize,
    samples: Amount,
    pct: f64,
    top: Vec<StackJson<'a>>,
}

impl FrameShareReport {
    /// Writes the report as aligned text.
    pub fn write_text<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        let m = self.measure;
        writeln!(
            w,
            "before: {}{}   after: {}{}   scaling: {}",
            m.with_symbol(self.before_total),
            units(self.before_units),
            m.with_symbol(self.after_total),
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
                let b = format!("{b:.2}% ({})", m.format(bs));
                let a = format!("{a:.2}% ({})", m.format(as_));
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
                "\n{title}: {} stacks, {} ({:.2}%)",
                list.stacks,
                m.with_symbol(list.samples),
                list.share * 100.0
            )?;
            for s in &list.top {
                let pct = s.share * 100.0;
                writeln!(
                    w,
                    "  {:>8} {pct:>6.2}%  {}",
                    m.format(s.samples),
                    elide(&s.stack)
                )?;
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
