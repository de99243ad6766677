//! Comparing two profiles: normalisation and cost per unit of work. The
//! frame-share report built on it is [`crate::frame_shares`].
//!
//! The differential flame graph follows FlameGraph's convention: each line is
//! `stack BEFORE AFTER`, widths come from AFTER and colours from the change.
//! By default BEFORE is scaled to AFTER's total ("normalised"), so the graph
//! compares shapes, not durations. With per-unit scaling each side is divided
//! by the work it did (requests served, bytes moved…), so the graph compares
//! cost per unit of work. Stacks that exist only in BEFORE have no width in
//! such a graph; [`Diff::removed_lines`] gives the reverse view (widths from
//! BEFORE) and [`FrameShareReport::removed`](crate::frame_shares::FrameShareReport::removed)
//! lists them.
//!
//! Both profiles must be in one unit (samples, or time): comparing samples
//! with microseconds is an error naming both units, since a folded file does
//! not say how long a sample stood for (the frequency, the event's period,
//! the samples lost), so a conversion would be a guess. Counts with
//! different decimals are brought to the larger number of decimals first.
//!
//! Every number the graph and the reports show comes from the exact counts:
//! a frame's inclusive counts are sums of raw counts, shares are their ratio
//! to the raw totals, and only the value shown for a frame is scaled (and
//! rounded) once ([`Diff::shown`]). The per-stack rounding of
//! [`Diff::scale_counts`] feeds only widths, never a number.

use serde::Serialize;

use crate::tree::StackTree;
use crate::unit::{pow10, Measure};
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
    pub(crate) scaling: Scaling,
    pub(crate) factor_before: f64,
    pub(crate) factor_after: f64,
    /// Counts in the graph are multiplied by this; the renderer divides back.
    graph_multiplier: f64,
    pub(crate) top: usize,
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
        let (mut before, mut after) = (before, after);
        if before.unit() != after.unit() && !before.is_empty() && !after.is_empty() {
            return Err(Error::UnitMismatch {
                what: "comparing profiles".into(),
                first: "before".into(),
                first_unit: before.unit(),
                second: "after".into(),
                second_unit: after.unit(),
            });
        }
        let decimals = before.decimals().max(after.decimals());
        if !(before.set_decimals(decimals) && after.set_decimals(decimals)) {
            return Err(Error::InvalidOption(format!(
                "the profiles' totals overflow a 64-bit counter when stored with {decimals} decimals"
            )));
        }
        // Stacks in both are stored once.
        after.share_text(&before);
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
        1.0 / self.graph_multiplier / pow10(self.before.decimals()) as f64
    }

    /// The unit of both profiles and the decimals of their stored counts.
    pub fn measure(&self) -> Measure {
        let p = if self.before.is_empty() {
            &self.after
        } else {
            &self.before
        };
        p.measure()
    }

    /// The value a graph shows for `raw`, a sum of stored counts of BEFORE
    /// (`after` false) or AFTER: scaled like the graph (normalised, or per
    /// unit of work) in the profiles' unit. Scaled once, from exact counts.
    pub fn shown(&self, raw: u64, after: bool) -> f64 {
        let factor = if after {
            self.factor_after
        } else {
            self.factor_before
        };
        raw as f64 * factor / pow10(self.before.decimals()) as f64
    }

    /// [`Diff::shown`] as text: four decimals per unit of work, whole counts
    /// otherwise (or the profiles' decimals, if they have fractions).
    pub fn format_shown(&self, raw: u64, after: bool) -> String {
        let factor = if after {
            self.factor_after
        } else {
            self.factor_before
        };
        if factor == 1.0 && self.before.decimals() == 0 && self.scaling != Scaling::PerUnit {
            // A whole count shown as it is (what formatting it as a float
            // with no decimals gives, without the float).
            return itoa::Buffer::new().format(raw).to_string();
        }
        let v = self.shown(raw, after);
        if self.scaling == Scaling::PerUnit {
            format!("{v:.4}")
        } else {
            format!("{v:.prec$}", prec = usize::from(self.before.decimals()))
        }
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
    /// differentials so red still means "grew". Normalised, the widths are
    /// BEFORE's own counts and AFTER is scaled to BEFORE's total (as
    /// FlameGraph's `difffolded.pl -n after before` does), so the view's counts
    /// and shares are the report's.
    pub fn removed_lines(&self) -> Vec<String> {
        self.union_lines(true)
    }

    fn union_lines(&self, reverse: bool) -> Vec<String> {
        let stacks = if reverse && self.scaling == Scaling::Normalized {
            let to_before = self.before.total() as f64 / self.after.total().max(1) as f64;
            self.stacks_scaled(1.0, to_before)
        } else {
            self.scaled_stacks()
        };
        let mut lines: Vec<String> = stacks
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
        self.stacks_scaled(self.factor_before, self.factor_after)
    }

    fn stacks_scaled(&self, factor_before: f64, factor_after: f64) -> Vec<(&str, u64, u64)> {
        let mut out: Vec<(&str, u64, u64)> = self
            .before
            .iter()
            .map(|(s, b)| {
                (
                    s,
                    self.scaled(b, factor_before),
                    self.scaled(self.after.get(s), factor_after),
                )
            })
            .collect();
        out.extend(
            self.after
                .iter()
                .filter(|(s, _)| self.before.get(s) == 0)
                .map(|(s, a)| (s, 0, self.scaled(a, factor_after))),
        );
        out
    }

    /// Both profiles as one [`StackTree`]: column 0 holds BEFORE's raw counts,
    /// column 1 AFTER's. The frame-share report, the layout of the graph and the
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
        // The reverse view: BEFORE's own counts, AFTER scaled to BEFORE's total.
        assert_eq!(d.removed_lines(), vec!["a;b 15 10", "a;c 0 10", "a;d 5 0"]);
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
}
