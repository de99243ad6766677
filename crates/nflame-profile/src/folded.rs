//! The folded-stack line format: `root;…;leaf COUNT`, its unit header, and
//! reading it line by line.
//!
//! What is an error and what is tolerated (documented in the README too):
//!
//! | input | handling |
//! |---|---|
//! | blank line, line starting with `#` | skipped |
//! | `# unit: microseconds` before the samples | the profile's unit (see below) |
//! | CRLF line ending, surrounding blanks | tolerated (stripped) |
//! | count `0` | tolerated, contributes nothing |
//! | count `31.0`, `6.`, `1.25` | exact (see [`crate::unit`]): up to 9 decimals |
//! | missing or non-numeric count, more than 9 decimals | error |
//! | negative count, count or total above 2^64-1 (in the profile's decimals) | error |
//! | a count with no stack | error |
//! | two counts (differential folded line) | error, pointing at `nflame diff` |
//! | invalid UTF-8 | error |
//! | a unit header nflame does not know, or after samples of another unit | error |
//! | an input with no samples at all | error |
//!
//! Every error names the input and the 1-based line. With
//! [`ReadOptions::skip_bad_lines`] the lines that are themselves unreadable
//! are skipped instead and counted ([`SkippedLines`]); an overflowing total
//! and contradictory units stay errors, since skipping a line would not make
//! the rest mean what it says.
//!
//! # The unit header
//!
//! A profile whose counts are not samples starts with one comment line naming
//! its unit, `# unit: microseconds`; a profile of samples has none, so every
//! existing folded file is a profile of samples. FlameGraph's `flamegraph.pl`
//! warns "Ignored 1 lines with invalid format" and draws the rest;
//! `difffolded.pl` warns "Use of uninitialized value" and writes a zero-count
//! line for an empty stack, which draws nothing; inferno's
//! `inferno-flamegraph` skips it with the same "Ignored 1 lines" warning and
//! `inferno-diff-folded` with "Unable to parse line". (Give them `--countname
//! us` for the tooltips.) nflame reads the header back; a header after samples
//! must name their unit.

use std::io::Write;

use crate::io::Input;
use crate::unit::{pow10, push_fixed, write_fixed, Count, Measure, Unit, MAX_DECIMALS};
use crate::{Error, ParseError, ParseErrorKind};

/// What one folded line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A blank or comment line.
    Empty,
    /// A `# unit: NAME` header.
    Unit(Unit),
    /// A stack (root first) and its count.
    Sample(&'a str, Count),
}

/// The start of a unit header line, as nflame writes it.
pub const UNIT_HEADER: &str = "# unit: ";

/// The unit a comment line (after its `#`) names, if it is a unit header.
fn unit_header(comment: &str) -> Option<Result<Unit, ParseErrorKind>> {
    let name = comment.trim_start().strip_prefix("unit:")?.trim();
    Some(Unit::from_name(name).ok_or_else(|| ParseErrorKind::UnknownUnit(name.to_string())))
}

/// Parses one folded line.
pub fn parse_line(line: &str) -> Result<Line<'_>, ParseErrorKind> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(comment) = line.strip_prefix('#') {
        return match unit_header(comment) {
            Some(unit) => unit.map(Line::Unit),
            None => Ok(Line::Empty),
        };
    }
    let Some(space) = line.rfind([' ', '\t']) else {
        return Err(if is_count_like(line) {
            ParseErrorKind::EmptyStack
        } else {
            ParseErrorKind::MissingCount
        });
    };
    let count_text = &line[space + 1..];
    let stack = line[..space].trim_end();
    let count = parse_count(count_text)?;
    if stack.is_empty() {
        return Err(ParseErrorKind::EmptyStack);
    }
    // `a;b 3 5`: the last frame ends in a number after a blank, the shape of a
    // differential folded line (`stack BEFORE AFTER`).
    let last_frame = match memchr::memrchr(b';', stack.as_bytes()) {
        Some(i) => &stack[i + 1..],
        None => stack,
    };
    if let Some(sp) = last_frame.rfind([' ', '\t']) {
        let word = &last_frame[sp + 1..];
        if is_number(word) {
            return Err(ParseErrorKind::Differential);
        }
    }
    Ok(Line::Sample(stack, count))
}

/// Digits with at most one point and a digit before it: `12`, `6.`, `1.25`.
fn is_number(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_count_like(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parses a count: a non-negative decimal number (`12`, `31.0`, `6.`, `1.25`)
/// whose digits fit 64 bits, with at most [`MAX_DECIMALS`] decimals once
/// trailing zeros are dropped.
pub fn parse_count(text: &str) -> Result<Count, ParseErrorKind> {
    let bytes = text.as_bytes();
    let mut value = 0u64;
    let mut fits = true;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
        {
            Some(v) => value = v,
            None => fits = false,
        }
        i += 1;
    }
    if i == bytes.len() && i > 0 {
        return if fits {
            Ok(Count::whole(value))
        } else {
            Err(ParseErrorKind::CountOverflow(text.to_string()))
        };
    }
    if i > 0 && bytes[i] == b'.' && bytes[i + 1..].iter().all(u8::is_ascii_digit) {
        let mut frac = &bytes[i + 1..];
        while let Some((b'0', rest)) = frac.split_last() {
            frac = rest;
        }
        if frac.len() > usize::from(MAX_DECIMALS) {
            return Err(ParseErrorKind::TooManyDecimals(text.to_string()));
        }
        for &b in frac {
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
            {
                Some(v) => value = v,
                None => fits = false,
            }
        }
        return if fits {
            Ok(Count {
                value,
                decimals: frac.len() as u8,
            })
        } else {
            Err(ParseErrorKind::CountOverflow(text.to_string()))
        };
    }
    if text.strip_prefix('-').is_some_and(is_count_like) {
        return Err(ParseErrorKind::NegativeCount(text.to_string()));
    }
    if text.bytes().any(|b| b.is_ascii_digit()) {
        Err(ParseErrorKind::InvalidCount(text.to_string()))
    } else {
        // The last word is plainly part of a frame name: the count is missing.
        Err(ParseErrorKind::MissingCount)
    }
}

/// The count as written (`1.5`), for messages.
pub(crate) fn count_text(count: Count) -> String {
    let mut s = String::new();
    push_fixed(&mut s, count.value, count.decimals);
    s
}

/// Writes the unit header, if `unit` needs one (every unit but samples).
pub fn write_header<W: Write + ?Sized>(w: &mut W, unit: Unit) -> std::io::Result<()> {
    if unit == Unit::Samples {
        return Ok(());
    }
    w.write_all(UNIT_HEADER.as_bytes())?;
    w.write_all(unit.name().as_bytes())?;
    w.write_all(b"\n")
}

/// Writes one folded line: `stack` and the stored count `count` of a profile
/// with `decimals` decimals, as the shortest exact decimal.
pub fn write_line<W: Write + ?Sized>(
    w: &mut W,
    stack: &str,
    count: u64,
    decimals: u8,
) -> std::io::Result<()> {
    w.write_all(stack.as_bytes())?;
    w.write_all(b" ")?;
    write_fixed(w, count, decimals)?;
    w.write_all(b"\n")
}

/// How folded text is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// Skip the lines that cannot be read (a missing or malformed count, no
    /// stack, invalid UTF-8, a differential line), counting them in
    /// [`SkippedLines`], instead of failing on the first. Default is false: one
    /// unreadable line rejects the whole input, so that nothing is lost silently.
    pub skip_bad_lines: bool,
}

impl ReadOptions {
    /// Options that skip unreadable lines when `skip` is set.
    pub fn skipping(skip: bool) -> ReadOptions {
        ReadOptions {
            skip_bad_lines: skip,
        }
    }
}

/// The lines of one input skipped with [`ReadOptions::skip_bad_lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLines {
    /// How many lines were skipped.
    pub count: u64,
    /// The first of them: its input, line and what is wrong with it.
    pub first: ParseError,
}

impl std::fmt::Display for SkippedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped {} unreadable line{} of {}; the first: {}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.first.source_name,
            self.first
        )
    }
}

/// The state of reading one folded input: its unit, the lines skipped.
pub(crate) struct LineReader {
    name: String,
    skip: bool,
    /// The unit a header named.
    header: Option<Unit>,
    /// The unit of the samples read (fixed by the first of them).
    unit: Option<Unit>,
    skipped: Option<SkippedLines>,
}

impl LineReader {
    pub(crate) fn new(name: String, opts: &ReadOptions) -> LineReader {
        LineReader {
            name,
            skip: opts.skip_bad_lines,
            header: None,
            unit: None,
            skipped: None,
        }
    }

    /// One line (or why it is not text): its sample, or `None` for a blank,
    /// comment or header line and for a line skipped as unreadable.
    pub(crate) fn line<'l>(
        &mut self,
        line_no: u64,
        line: Result<&'l str, ParseErrorKind>,
    ) -> Result<Option<(&'l str, Count)>, Error> {
        match line.and_then(parse_line) {
            Ok(Line::Empty) => Ok(None),
            Ok(Line::Unit(header)) => match self.unit.or(self.header) {
                Some(earlier) if earlier != header => {
                    Err(self.error(line_no, ParseErrorKind::MixedUnits { earlier, header }))
                }
                _ => {
                    self.header = Some(header);
                    Ok(None)
                }
            },
            Ok(Line::Sample(stack, count)) => {
                if self.unit.is_none() {
                    self.unit = Some(self.header.unwrap_or_default());
                }
                Ok(Some((stack, count)))
            }
            Err(kind) => self.bad(line_no, kind).map(|()| None),
        }
    }

    /// A line that cannot be used: skipped (and counted) if allowed, otherwise
    /// the error.
    pub(crate) fn bad(&mut self, line_no: u64, kind: ParseErrorKind) -> Result<(), Error> {
        if !(self.skip && kind.is_bad_line()) {
            return Err(self.error(line_no, kind));
        }
        match &mut self.skipped {
            Some(s) => s.count += 1,
            None => {
                self.skipped = Some(SkippedLines {
                    count: 1,
                    first: ParseError {
                        source_name: self.name.clone(),
                        line: line_no,
                        kind,
                    },
                })
            }
        }
        Ok(())
    }

    pub(crate) fn error(&self, line_no: u64, kind: ParseErrorKind) -> Error {
        Error::Parse(ParseError {
            source_name: self.name.clone(),
            line: line_no,
            kind,
        })
    }

    /// The unit of the input: its samples', or its header's, or samples.
    pub(crate) fn unit(&self) -> Unit {
        self.unit.or(self.header).unwrap_or_default()
    }

    /// What was skipped.
    pub(crate) fn finish(self) -> Option<SkippedLines> {
        self.skipped
    }
}

/// Sample lines in input order, not merged (for flame charts, where order is
/// time), with their measure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedLines {
    /// Each stack and its stored count, in units of 10^-decimals of [`OrderedLines::measure`].
    pub lines: Vec<(String, u64)>,
    /// The unit and decimals of the counts.
    pub measure: Measure,
    total: u64,
    first_input: Option<String>,
}

impl OrderedLines {
    /// No lines yet.
    pub fn new() -> OrderedLines {
        OrderedLines::default()
    }

    /// The lines as folded text (`stack COUNT`, counts in stored units).
    pub fn texts(&self) -> Vec<String> {
        let mut buf = itoa::Buffer::new();
        self.lines
            .iter()
            .map(|(s, c)| {
                let mut line = String::with_capacity(s.len() + 12);
                line.push_str(s);
                line.push(' ');
                line.push_str(buf.format(*c));
                line
            })
            .collect()
    }

    /// Appends every sample line of `input`, validated, after those read
    /// before. Errors as for [`crate::Profile::read_folded`]; an input in
    /// another unit than the ones before is an [`Error::UnitMismatch`].
    pub fn read(
        &mut self,
        input: &mut Input,
        opts: &ReadOptions,
    ) -> Result<Option<SkippedLines>, Error> {
        let name = input.name();
        let mut reader = LineReader::new(name.clone(), opts);
        let mut lines: Vec<(u64, String, Count)> = Vec::new();
        let mut decimals = self.measure.decimals;
        input.for_each_line_checked(|line_no, line| {
            if let Some((stack, count)) = reader.line(line_no, line)? {
                decimals = decimals.max(count.decimals);
                lines.push((line_no, stack.to_string(), count));
            }
            Ok(())
        })?;
        let unit = reader.unit();
        if lines.is_empty() {
            return Ok(reader.finish());
        }
        match &self.first_input {
            Some(first) if self.measure.unit != unit => {
                return Err(Error::UnitMismatch {
                    what: "merging profiles".into(),
                    first: first.clone(),
                    first_unit: self.measure.unit,
                    second: name,
                    second_unit: unit,
                })
            }
            Some(_) => {}
            None => {
                self.first_input = Some(name.clone());
                self.measure.unit = unit;
            }
        }
        let overflow = |line: u64, count: Count| {
            Error::Parse(ParseError {
                source_name: name.clone(),
                line,
                kind: ParseErrorKind::TotalOverflow(count_text(count)),
            })
        };
        if decimals > self.measure.decimals {
            let k = pow10(decimals - self.measure.decimals);
            // The first line with that many decimals is the one that overflows.
            let (line, _, count) = lines
                .iter()
                .find(|l| l.2.decimals == decimals)
                .expect("a line has the most decimals");
            self.total = self
                .total
                .checked_mul(k)
                .ok_or_else(|| overflow(*line, *count))?;
            for (_, c) in &mut self.lines {
                *c *= k;
            }
            self.measure.decimals = decimals;
        }
        self.lines.reserve(lines.len());
        for (line, stack, count) in lines {
            let raw = count.at(decimals).ok_or_else(|| overflow(line, count))?;
            self.total = self
                .total
                .checked_add(raw)
                .ok_or_else(|| overflow(line, count))?;
            self.lines.push((stack, raw));
        }
        Ok(reader.finish())
    }
}

/// Reads every sample line of `input` in order, validated (for flame charts,
/// where order is time and stacks are not merged). Errors as for
/// [`crate::Profile::read_folded`]; an input without samples is an [`Error::Empty`].
pub fn read_ordered_lines(
    input: &mut Input,
    opts: &ReadOptions,
) -> Result<(OrderedLines, Option<SkippedLines>), Error> {
    let mut lines = OrderedLines::new();
    let skipped = lines.read(input, opts)?;
    if lines.lines.is_empty() {
        return Err(Error::Empty {
            path: input.path().to_path_buf(),
        });
    }
    Ok((lines, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(stack: &str, value: u64, decimals: u8) -> Result<Line<'_>, ParseErrorKind> {
        Ok(Line::Sample(stack, Count { value, decimals }))
    }

    #[test]
    fn good_lines() {
        assert_eq!(parse_line("a;b;c 12"), sample("a;b;c", 12, 0));
        assert_eq!(parse_line("a;b c;d 3\r"), sample("a;b c;d", 3, 0));
        assert_eq!(parse_line("  main 0  "), sample("main", 0, 0));
        assert_eq!(parse_line(""), Ok(Line::Empty));
        assert_eq!(parse_line("# comment 12"), Ok(Line::Empty));
        assert_eq!(parse_line("f<T>;[u8; 8] 4"), sample("f<T>;[u8; 8]", 4, 0));
        assert_eq!(parse_line("a;b\t7"), sample("a;b", 7, 0));
    }

    #[test]
    fn decimal_counts_are_exact() {
        assert_eq!(parse_line("a;b 31.0"), sample("a;b", 31, 0));
        assert_eq!(parse_line("a;b 6."), sample("a;b", 6, 0));
        assert_eq!(parse_line("a;b 1.25"), sample("a;b", 125, 2));
        assert_eq!(parse_line("a;b 0.000000001"), sample("a;b", 1, 9));
        assert_eq!(parse_line("a;b 7.5000000000000"), sample("a;b", 75, 1));
        assert_eq!(
            parse_count("18446744073709551615.0"),
            Ok(Count::whole(u64::MAX))
        );
        assert_eq!(
            parse_count("1844674407370955161.6"),
            Err(ParseErrorKind::CountOverflow(
                "1844674407370955161.6".into()
            ))
        );
        assert_eq!(
            parse_count("14.2343983248722834234"),
            Err(ParseErrorKind::TooManyDecimals(
                "14.2343983248722834234".into()
            ))
        );
        for bad in [".5", "1.2.3", "1e3", "1,5", "0x10"] {
            assert_eq!(
                parse_count(bad),
                Err(ParseErrorKind::InvalidCount(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_line("a;b 3.5 5.25"),
            Err(ParseErrorKind::Differential)
        );
    }

    #[test]
    fn unit_headers() {
        assert_eq!(
            parse_line("# unit: microseconds"),
            Ok(Line::Unit(Unit::Microseconds))
        );
        assert_eq!(parse_line("#unit:samples"), Ok(Line::Unit(Unit::Samples)));
        assert_eq!(
            parse_line("# unit: furlongs"),
            Err(ParseErrorKind::UnknownUnit("furlongs".into()))
        );
        assert_eq!(parse_line("# units are fun"), Ok(Line::Empty));
        let mut out = Vec::new();
        write_header(&mut out, Unit::Samples).unwrap();
        assert!(out.is_empty(), "samples need no header");
        write_header(&mut out, Unit::Microseconds).unwrap();
        write_line(&mut out, "a;b", 125, 2).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# unit: microseconds\na;b 1.25\n"
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse_line("a;b;c"), Err(ParseErrorKind::MissingCount));
        assert_eq!(parse_line("a;b c"), Err(ParseErrorKind::MissingCount));
        assert_eq!(
            parse_line("a;b 1x"),
            Err(ParseErrorKind::InvalidCount("1x".into()))
        );
        assert_eq!(
            parse_line("a;b -3"),
            Err(ParseErrorKind::NegativeCount("-3".into()))
        );
        assert_eq!(
            parse_line("a;b -3.5"),
            Err(ParseErrorKind::NegativeCount("-3.5".into()))
        );
        assert_eq!(
            parse_line("a;b 99999999999999999999999"),
            Err(ParseErrorKind::CountOverflow(
                "99999999999999999999999".into()
            ))
        );
        assert_eq!(parse_line("42"), Err(ParseErrorKind::EmptyStack));
        assert_eq!(parse_line(" 42"), Err(ParseErrorKind::EmptyStack));
        assert_eq!(parse_line(" 4.2"), Err(ParseErrorKind::EmptyStack));
        assert_eq!(parse_line("a;b 3 5"), Err(ParseErrorKind::Differential));
    }
}
