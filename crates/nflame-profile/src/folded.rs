//! The folded-stack line format: `root;…;leaf COUNT`.
//!
//! What is an error and what is tolerated (documented in the README too):
//!
//! | input | handling |
//! |---|---|
//! | blank line, line starting with `#` | skipped |
//! | CRLF line ending, surrounding blanks | tolerated (stripped) |
//! | count `0` | tolerated, contributes nothing |
//! | missing, non-numeric or fractional count | error |
//! | negative count, count or total above 2^64-1 | error |
//! | a count with no stack | error |
//! | two counts (differential folded line) | error, pointing at `nflame diff` |
//! | invalid UTF-8 | error |
//! | an input with no samples at all | error |
//!
//! Every error names the input and the 1-based line.

use crate::ParseErrorKind;

/// Parses one folded line. `Ok(None)` for lines that carry no sample (blank, comment).
pub fn parse_line(line: &str) -> Result<Option<(&str, u64)>, ParseErrorKind> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
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
    let last_frame = stack.rsplit(';').next().unwrap_or(stack);
    if let Some(sp) = last_frame.rfind([' ', '\t']) {
        let word = &last_frame[sp + 1..];
        if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseErrorKind::Differential);
        }
    }
    Ok(Some((stack, count)))
}

fn is_count_like(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parses a sample count: a whole non-negative number that fits in 64 bits.
pub fn parse_count(text: &str) -> Result<u64, ParseErrorKind> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(text) {
        return text
            .parse::<u64>()
            .map_err(|_| ParseErrorKind::CountOverflow(text.to_string()));
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

/// Writes one folded line.
pub fn write_line<W: std::io::Write + ?Sized>(
    w: &mut W,
    stack: &str,
    count: u64,
) -> std::io::Result<()> {
    let mut buf = itoa::Buffer::new();
    w.write_all(stack.as_bytes())?;
    w.write_all(b" ")?;
    w.write_all(buf.format(count).as_bytes())?;
    w.write_all(b"\n")
}

/// Reads every sample line of `input` in order, validated and normalised to
/// `stack COUNT` (for flame charts, where order is time and stacks are not
/// merged). Errors as for [`crate::Profile::read_folded`].
pub fn read_ordered_lines(input: &mut crate::io::Input) -> Result<Vec<String>, crate::Error> {
    let name = input.name();
    let mut lines = Vec::new();
    input.for_each_line(|line_no, line| match parse_line(line) {
        Ok(Some((stack, count))) => {
            let mut buf = itoa::Buffer::new();
            lines.push(format!("{stack} {}", buf.format(count)));
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(kind) => Err(crate::Error::Parse(crate::ParseError {
            source_name: name.clone(),
            line: line_no,
            kind,
        })),
    })?;
    if lines.is_empty() {
        return Err(crate::Error::Empty {
            path: input.path().to_path_buf(),
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines() {
        assert_eq!(parse_line("a;b;c 12"), Ok(Some(("a;b;c", 12))));
        assert_eq!(parse_line("a;b c;d 3\r"), Ok(Some(("a;b c;d", 3))));
        assert_eq!(parse_line("  main 0  "), Ok(Some(("main", 0))));
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("# comment 12"), Ok(None));
        assert_eq!(parse_line("f<T>;[u8; 8] 4"), Ok(Some(("f<T>;[u8; 8]", 4))));
        assert_eq!(parse_line("a;b\t7"), Ok(Some(("a;b", 7))));
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
            parse_line("a;b 1.5"),
            Err(ParseErrorKind::InvalidCount("1.5".into()))
        );
        assert_eq!(
            parse_line("a;b -3"),
            Err(ParseErrorKind::NegativeCount("-3".into()))
        );
        assert_eq!(
            parse_line("a;b 99999999999999999999999"),
            Err(ParseErrorKind::CountOverflow(
                "99999999999999999999999".into()
            ))
        );
        assert_eq!(parse_line("42"), Err(ParseErrorKind::EmptyStack));
        assert_eq!(parse_line(" 42"), Err(ParseErrorKind::EmptyStack));
        assert_eq!(parse_line("a;b 3 5"), Err(ParseErrorKind::Differential));
    }
}
