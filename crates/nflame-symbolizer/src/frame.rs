//! [`Frame`]: one named (or honestly unnamed) stack frame, and how it is
//! spelled in a folded stack.
//!
//! This module owns naming conventions only: the `_[k]` / `_[j]` suffixes, the
//! perf-style `[module]` and `[unknown]` placeholders, and the escaping that
//! keeps a name from breaking the folded format. It does no lookups.

use std::borrow::Cow;
use std::path::Path;

use nflame_profile::{JIT_SUFFIX, KERNEL_SUFFIX};

/// The placeholder for a frame whose address lies in no known code.
pub const UNKNOWN: &str = "[unknown]";

/// The marker at the root of a user stack that was cut short: the unwinder
/// ran out of copied stack, or the walk reached an address outside every
/// executable mapping (garbage: what follows would be a chain of
/// `[unknown]` frames). Written once, instead of those frames.
pub const TRUNCATED: &str = "[truncated]";

/// The placeholder perf uses for an unnamed kernel frame when kernel symbols
/// could not be read at all.
pub const KERNEL_MODULE: &str = "[kernel.kallsyms]";

/// Where a frame's code lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Code of a file mapped into a process (executable, shared library, vDSO).
    User,
    /// Kernel code (core kernel, modules, BPF programs).
    Kernel,
    /// Just-in-time compiled code named by a perf map (`/tmp/perf-PID.map`).
    Jit,
}

/// One frame of a symbolized stack.
///
/// A frame that could not be named is still a frame: its `name` is then the
/// perf-style placeholder `[libfoo.so]` (the basename of the module the
/// address lies in) or `[unknown]`, and `named` is `false`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function name, demangled; or a placeholder (see above).
    pub name: String,
    /// Where the code lives; decides the folded-stack suffix.
    pub kind: FrameKind,
    /// A symbol was found for the address.
    pub named: bool,
    /// The function was inlined into the frame before it (root side); only
    /// produced when inlined functions are requested.
    pub inlined: bool,
}

impl Frame {
    /// A frame named by a symbol.
    pub fn named(name: impl Into<String>, kind: FrameKind) -> Frame {
        Frame {
            name: name.into(),
            kind,
            named: true,
            inlined: false,
        }
    }

    /// A frame with no symbol, shown as `placeholder` (`[unknown]`, `[libc.so.6]`).
    pub fn unnamed(placeholder: impl Into<String>, kind: FrameKind) -> Frame {
        Frame {
            name: placeholder.into(),
            kind,
            named: false,
            inlined: false,
        }
    }

    /// `[unknown]` of the given kind.
    pub fn unknown(kind: FrameKind) -> Frame {
        Frame::unnamed(UNKNOWN, kind)
    }

    /// The unnamed frame for an address inside the module at `path`:
    /// `[basename]`, like perf prints it.
    pub fn in_module(path: &Path, kind: FrameKind) -> Frame {
        Frame::unnamed(module_placeholder(path), kind)
    }

    /// The frame as written in a folded stack: the name made safe for the
    /// format (no `;`, no line breaks) plus `_[k]` for kernel and `_[j]` for
    /// JIT frames.
    pub fn folded_name(&self) -> String {
        let mut out = sanitize(&self.name).into_owned();
        match self.kind {
            FrameKind::User => {}
            FrameKind::Kernel => out.push_str(KERNEL_SUFFIX),
            FrameKind::Jit => out.push_str(JIT_SUFFIX),
        }
        out
    }
}

/// `[basename]` of a module path (`/usr/lib/libc.so.6` → `[libc.so.6]`).
/// Pseudo paths that already carry brackets (`[vdso]`) are kept as they are;
/// an empty path gives `[unknown]`.
pub fn module_placeholder(path: &Path) -> String {
    let text = path.to_string_lossy();
    let text = text.strip_suffix(" (deleted)").unwrap_or(&text);
    if text.is_empty() {
        return UNKNOWN.to_owned();
    }
    if text.starts_with('[') && text.ends_with(']') {
        return text.to_owned();
    }
    let base = text.rsplit('/').find(|s| !s.is_empty()).unwrap_or(UNKNOWN);
    format!("[{base}]")
}

/// Makes `name` safe as one frame of a folded stack: `;` separates frames and
/// a line break ends the record, so both are replaced (`;` by `:`); control
/// characters (C0, DEL, C1: escape sequences, which would reach a terminal
/// or make an SVG malformed) become a space; surrounding blanks go, as
/// inferno trims lines before checking their order
/// ([`nflame_profile::text::clean_name`]). A name left empty becomes
/// `[unknown]`.
pub fn sanitize(name: &str) -> Cow<'_, str> {
    let name = nflame_profile::text::clean_name(name);
    let name = if name.contains(';') {
        Cow::Owned(name.replace(';', ":"))
    } else {
        name
    };
    if name.is_empty() {
        Cow::Borrowed(UNKNOWN)
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_perf() {
        assert_eq!(
            module_placeholder(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")),
            "[libc.so.6]"
        );
        assert_eq!(
            module_placeholder(Path::new("/usr/bin/nginx (deleted)")),
            "[nginx]"
        );
        assert_eq!(module_placeholder(Path::new("[vdso]")), "[vdso]");
        assert_eq!(module_placeholder(Path::new("")), "[unknown]");
    }

    #[test]
    fn folded_names_carry_suffixes_and_no_separators() {
        assert_eq!(
            Frame::named("tcp_sendmsg", FrameKind::Kernel).folded_name(),
            "tcp_sendmsg_[k]"
        );
        assert_eq!(
            Frame::named("trace#1", FrameKind::Jit).folded_name(),
            "trace#1_[j]"
        );
        assert_eq!(
            Frame::named("a;b\nc", FrameKind::User).folded_name(),
            "a:b c"
        );
        assert_eq!(
            Frame::unknown(FrameKind::Kernel).folded_name(),
            "[unknown]_[k]"
        );
    }

    /// Names from targets: escape sequences and blanks (issue 17).
    #[test]
    fn names_lose_control_characters_and_surrounding_blanks() {
        assert_eq!(sanitize("a\x1b[31m<b>x</b>"), "a [31m<b>x</b>");
        assert_eq!(sanitize(" zzz "), "zzz");
        assert_eq!(sanitize("\u{9b}1;2H"), "1:2H");
        assert_eq!(sanitize(" \x07 "), UNKNOWN);
        assert!(matches!(sanitize("main"), Cow::Borrowed("main")));
    }
}
