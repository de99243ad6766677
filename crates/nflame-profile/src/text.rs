//! Names from targets made safe to show: in a folded file, an SVG, an HTML
//! page, a terminal.
//!
//! A process name, a symbol or a JIT map entry is whatever its target wrote,
//! control characters included: an escape sequence recolours or rewrites a
//! terminal, and C0 characters make an SVG malformed XML. And blanks around
//! a frame decide nothing but the order of lines: inferno trims each line
//! before checking that its input is sorted, so a stack starting with a
//! blank sorts one way here and another way there. [`clean_name`] is the
//! one normalisation: control characters (C0, DEL, C1) become a space, and
//! the result is trimmed. It owns no escaping for any format (XML and HTML
//! escaping belong to their writers).

use std::borrow::Cow;

/// Whether `c` is a control character (C0, DEL or C1).
pub fn is_control(c: char) -> bool {
    c.is_control()
}

/// `text` with every control character replaced by a space (line breaks
/// too: a name is one line).
pub fn clean_text(text: &str) -> Cow<'_, str> {
    if !text.contains(is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if is_control(c) { ' ' } else { c })
            .collect(),
    )
}

/// A frame or process name as nflame writes and sorts it: [`clean_text`],
/// then trimmed of surrounding blanks (as inferno trims lines).
pub fn clean_name(name: &str) -> Cow<'_, str> {
    match clean_text(name) {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => {
            let t = s.trim();
            if t.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(t.to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_blanks() {
        assert_eq!(clean_name("a\x1b[31m<b>x</b>"), "a [31m<b>x</b>");
        assert_eq!(clean_name(" zzz"), "zzz");
        assert_eq!(clean_name("\u{9b}2J\u{7f}x\t"), "2J x");
        assert_eq!(clean_name("plain"), "plain");
        assert!(matches!(clean_name("plain"), Cow::Borrowed(_)));
        assert_eq!(clean_text("a\nb"), "a b");
        assert_eq!(clean_name("\x00\x01"), "");
    }
}
