//! What a profile's counts measure: the weight [`Unit`] (samples, or time),
//! and the fixed-point [`Measure`] that says how a stored count reads.
//!
//! Counts are integers everywhere in nflame, so that totals are exact. A
//! profile read from folded text with fractional counts (`31.5`, as tools that
//! weight stacks by time write them) keeps them as integers in units of
//! 10^-decimals, with one number of decimals per profile: the most any of its
//! lines needs (at most [`MAX_DECIMALS`]). A stored count `c` of a profile with
//! `d` decimals stands for `c / 10^d` of its unit. Nothing is summed in
//! floating point; `f64` appears only where a value is shown.
//!
//! Time is stored in whole microseconds: a context switch alone costs a
//! microsecond or more, so finer resolution would only add digits; a 64-bit
//! total in microseconds holds more than 500,000 years; and the integer counts
//! read as they are in FlameGraph and inferno (which show whole counts, and
//! inferno drops fractions), and in the folded files of bcc's `offcputime`,
//! which writes microseconds too.

use std::fmt;

/// What the counts of a profile measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// Samples taken (on-CPU profiles): what every folded file without a unit
    /// header holds.
    #[default]
    Samples,
    /// Microseconds of time (off-CPU and wall-clock profiles).
    Microseconds,
}

impl Unit {
    /// The name folded headers, SVG metadata and JSON use: `samples`, `microseconds`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Samples => "samples",
            Unit::Microseconds => "microseconds",
        }
    }

    /// What follows a number in text, tooltips and legends: `samples`, `µs`.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Samples => "samples",
            Unit::Microseconds => "µs",
        }
    }

    /// The unit a header names: `samples` (or `count`), `microseconds` (or `us`, `µs`).
    pub fn from_name(name: &str) -> Option<Unit> {
        match name {
            "samples" | "count" => Some(Unit::Samples),
            "microseconds" | "us" | "µs" => Some(Unit::Microseconds),
            _ => None,
        }
    }

    /// Whether the unit is a time (a profile weighted by how long, not how often).
    pub fn is_time(self) -> bool {
        matches!(self, Unit::Microseconds)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most decimals a count may have: counts are kept exact, as integers in
/// units of 10^-decimals, so each decimal divides the largest total by ten.
pub const MAX_DECIMALS: u8 = 9;

/// 10^`decimals` (for `decimals` ≤ 19).
pub fn pow10(decimals: u8) -> u64 {
    10u64.pow(u32::from(decimals))
}

/// A count as written in folded text, exactly: `value / 10^decimals`, with
/// trailing zeros of the fraction dropped (`31.0` is 31, `1.50` is 15 with 1
/// decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The digits, without the point.
    pub value: u64,
    /// Digits after the point.
    pub decimals: u8,
}

impl Count {
    /// A whole count.
    pub fn whole(value: u64) -> Count {
        Count { value, decimals: 0 }
    }

    /// The same count with the trailing zeros of its fraction dropped.
    pub fn normalized(mut self) -> Count {
        while self.decimals > 0 && self.value % 10 == 0 {
            self.value /= 10;
            self.decimals -= 1;
        }
        self
    }

    /// The count in units of 10^-`decimals` (at least its own decimals), or
    /// `None` if that does not fit 64 bits.
    pub fn at(self, decimals: u8) -> Option<u64> {
        debug_assert!(decimals >= self.decimals);
        self.value.checked_mul(pow10(decimals - self.decimals))
    }
}

/// A stored count with its decimals, serialized as the number it stands for:
/// an integer for whole counts (as JSON has always had them), a decimal number
/// otherwise (an `f64`: exact text is [`Measure::format`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// The stored count.
    pub raw: u64,
    /// Its decimals.
    pub decimals: u8,
}

impl Amount {
    /// `raw` stored with `measure`'s decimals.
    pub fn of(raw: u64, measure: Measure) -> Amount {
        Amount {
            raw,
            decimals: measure.decimals,
        }
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.decimals == 0 {
            s.serialize_u64(self.raw)
        } else {
            s.serialize_f64(self.raw as f64 / pow10(self.decimals) as f64)
        }
    }
}

/// A running sum of counts with their decimals, exact: stored with the most
/// decimals any of them had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sum {
    pub(crate) raw: u64,
    pub(crate) decimals: u8,
}

impl Sum {
    /// Adds `count`; `None` (and no change) if the sum would overflow 64 bits.
    pub(crate) fn add(&mut self, count: Count) -> Option<()> {
        let decimals = self.decimals.max(count.decimals);
        let raw = self
            .raw
            .checked_mul(pow10(decimals - self.decimals))?
            .checked_add(count.at(decimals)?)?;
        *self = Sum { raw, decimals };
        Some(())
    }

    /// The sum stored with `decimals` (at least its own).
    pub(crate) fn at(self, decimals: u8) -> Option<u64> {
        Count {
            value: self.raw,
            decimals: self.decimals,
        }
        .at(decimals)
    }
}

/// How the stored counts of a profile read: their unit and their decimals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Measure {
    /// What a count measures.
    pub unit: Unit,
    /// Stored counts are in units of 10^-`decimals` of [`Measure::unit`].
    pub decimals: u8,
}

impl Measure {
    /// Whole samples: what every profile without fractions or a unit header is.
    pub const SAMPLES: Measure = Measure {
        unit: Unit::Samples,
        decimals: 0,
    };

    /// A measure of `unit` with whole counts.
    pub fn of(unit: Unit) -> Measure {
        Measure { unit, decimals: 0 }
    }

    /// The value of stored count `raw`, for display.
    pub fn value(self, raw: u64) -> f64 {
        if self.decimals == 0 {
            raw as f64
        } else {
            raw as f64 / pow10(self.decimals) as f64
        }
    }

    /// Stored count `raw` as an exact decimal number (`12`, `1.5`, `0.001`).
    pub fn format(self, raw: u64) -> String {
        let mut s = String::new();
        push_fixed(&mut s, raw, self.decimals);
        s
    }

    /// `raw` with its unit's symbol: `12 samples`, `1.5 µs`.
    pub fn with_symbol(self, raw: u64) -> String {
        format!("{} {}", self.format(raw), self.unit.symbol())
    }

    /// A `value` of this unit (not a stored count: e.g. a count per unit of
    /// work) with four significant decimals, or as a whole number when the
    /// profile's counts are whole and `whole` is set.
    pub fn format_value(self, value: f64, whole: bool) -> String {
        if whole && self.decimals == 0 {
            format!("{value:.0}")
        } else if whole {
            format!("{value:.prec$}", prec = usize::from(self.decimals))
        } else {
            format!("{value:.4}")
        }
    }
}

/// Appends `raw / 10^decimals` to `out` as the shortest exact decimal.
pub fn push_fixed(out: &mut String, raw: u64, decimals: u8) {
    push_fixed128(out, u128::from(raw), decimals)
}

/// [`push_fixed`] of a 128-bit count (e.g. counts times a period).
pub fn push_fixed128(out: &mut String, raw: u128, decimals: u8) {
    let mut buf = itoa::Buffer::new();
    if decimals == 0 {
        out.push_str(buf.format(raw));
        return;
    }
    let scale = u128::from(pow10(decimals));
    let (int, mut frac) = (raw / scale, raw % scale);
    out.push_str(buf.format(int));
    if frac == 0 {
        return;
    }
    let mut width = usize::from(decimals);
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    out.push('.');
    let digits = buf.format(frac);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Writes `raw / 10^decimals` to `w` as the shortest exact decimal.
pub fn write_fixed<W: std::io::Write + ?Sized>(
    w: &mut W,
    raw: u64,
    decimals: u8,
) -> std::io::Result<()> {
    if decimals == 0 {
        return w.write_all(itoa::Buffer::new().format(raw).as_bytes());
    }
    let mut s = String::with_capacity(24);
    push_fixed(&mut s, raw, decimals);
    w.write_all(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_is_exact_and_short() {
        let f = |raw, d| {
            let mut s = String::new();
            push_fixed(&mut s, raw, d);
            s
        };
        assert_eq!(f(12, 0), "12");
        assert_eq!(f(15, 1), "1.5");
        assert_eq!(f(150, 2), "1.5");
        assert_eq!(f(300, 2), "3");
        assert_eq!(f(1, 3), "0.001");
        assert_eq!(f(1_000_000_001, 9), "1.000000001");
        assert_eq!(f(u64::MAX, 9), "18446744073.709551615");
        let mut w = Vec::new();
        write_fixed(&mut w, 1205, 3).unwrap();
        assert_eq!(w, b"1.205");
    }

    #[test]
    fn units_by_name() {
        for u in [Unit::Samples, Unit::Microseconds] {
            assert_eq!(Unit::from_name(u.name()), Some(u));
            assert_eq!(Unit::from_name(u.symbol()), Some(u));
        }
        assert_eq!(Unit::from_name("us"), Some(Unit::Microseconds));
        assert_eq!(Unit::from_name("furlongs"), None);
        assert!(Unit::Microseconds.is_time() && !Unit::Samples.is_time());
        let m = Measure {
            unit: Unit::Microseconds,
            decimals: 1,
        };
        assert_eq!(m.with_symbol(125), "12.5 µs");
        assert_eq!(m.value(125), 12.5);
        assert_eq!(
            Count {
                value: 15,
                decimals: 1
            }
            .at(3),
            Some(1500)
        );
        assert_eq!(Count::whole(u64::MAX).at(1), None);
    }
}
