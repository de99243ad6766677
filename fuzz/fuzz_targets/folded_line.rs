//! `nflame_profile::folded::parse_line` and `parse_count` on one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nflame_profile::folded::{parse_count, parse_line, write_line, Line};

fuzz_target!(|line: &str| {
    if let Ok(Line::Sample(stack, count)) = parse_line(line) {
        // A parsed line writes back to a line that parses to the same sample.
        assert!(!stack.is_empty());
        let mut out = Vec::new();
        write_line(&mut out, stack, count.value, count.decimals).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            parse_line(&text),
            Ok(Line::Sample(stack, count.normalized()))
        );
    }
    if let Some(last) = line.split_whitespace().last() {
        let _ = parse_count(last);
    }
});
