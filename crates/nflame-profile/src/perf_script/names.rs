//! Symbol names as perf prints them, made into frame names: mangled names
//! (legacy Rust `_ZN…17h…E`, Rust v0 `_R…`, C++ `_Z…`, as `perf script
//! --no-demangle` prints them) and legacy Rust names that a C++ demangler left
//! half done (`GcBox$LT$T$GT$::new::_$u7b$$u7b$closure$u7d$$u7d$::h…`) are
//! demangled, Rust hashes dropped; a C++ argument list at the end of a name is
//! removed with its qualifiers (` const`, ` &`), and the rest of the name is
//! kept whole (`std::function<int (int, int)>::operator()`). Kernel and JIT
//! suffixes are not decided here ([`super::grammar`]).

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

/// Demangles names, remembering the answers: a profile names the same few
/// thousand functions over and over.
#[derive(Debug, Default)]
pub(super) struct Demangler {
    cache: FxHashMap<Box<str>, Option<Box<str>>>,
    /// Bytes held by `cache`, keys and values.
    cached_bytes: usize,
}

/// Past this many bytes of names, the cache starts over.
const CACHE_LIMIT: usize = 32 << 20;
/// Longer names are left as they are: no real symbol is this long, and the
/// input is not trusted.
const MAX_MANGLED: usize = 4096;

impl Demangler {
    /// The demangled form of `symbol`, or `None` if it is not mangled (or not
    /// in a form the demanglers read).
    pub(super) fn demangle(&mut self, symbol: &str) -> Option<&str> {
        if symbol.len() > MAX_MANGLED || !looks_mangled(symbol) {
            return None;
        }
        if !self.cache.contains_key(symbol) {
            let demangled = demangle_uncached(symbol).map(String::into_boxed_str);
            let bytes = symbol.len() + demangled.as_ref().map_or(0, |d| d.len());
            if self.cached_bytes + bytes > CACHE_LIMIT {
                self.cache.clear();
                self.cached_bytes = 0;
            }
            self.cached_bytes += bytes;
            self.cache.insert(symbol.into(), demangled);
        }
        self.cache.get(symbol).and_then(|d| d.as_deref())
    }
}

/// Whether `symbol` is a frame name as it is: nothing to demangle, no
/// argument list to remove, no `;` to replace. One pass for most names.
pub(super) fn is_plain(symbol: &str) -> bool {
    let b = symbol.as_bytes();
    memchr::memchr3(b'(', b'$', b';', b).is_none()
        && !b.starts_with(b"_Z")
        && !b.starts_with(b"_R")
        && !ends_with_rust_hash(b)
}

/// A cheap test that rules out almost every name perf already demangled.
fn looks_mangled(symbol: &str) -> bool {
    let b = symbol.as_bytes();
    if b.len() > 2 && (b.starts_with(b"_Z") || b.starts_with(b"_R")) {
        return true;
    }
    has_rust_escape(b) || ends_with_rust_hash(b)
}

/// Whether `b` holds one of legacy Rust mangling's `$…$` escapes.
fn has_rust_escape(b: &[u8]) -> bool {
    memchr::memchr_iter(b'$', b).any(|i| {
        let rest = &b[i + 1..];
        ["LT$", "GT$", "C$", "RF$", "BP$", "SP$", "LP$", "RP$"]
            .iter()
            .any(|e| rest.starts_with(e.as_bytes()))
            || rest.first() == Some(&b'u') && {
                let hex = rest[1..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
                hex > 0 && rest.get(1 + hex) == Some(&b'$')
            }
    })
}

/// Whether `b` ends with a legacy Rust hash segment, `::h` and 16 hex digits.
fn ends_with_rust_hash(b: &[u8]) -> bool {
    b.len() > 19
        && b[b.len() - 19..].starts_with(b"::h")
        && b[b.len() - 16..].iter().all(u8::is_ascii_hexdigit)
}

fn demangle_uncached(symbol: &str) -> Option<String> {
    let mut out = String::new();
    if symbol.starts_with("_Z") || symbol.starts_with("_R") {
        if let Ok(d) = rustc_demangle::try_demangle(symbol) {
            write!(out, "{d:#}").ok()?;
            return Some(out);
        }
        if symbol.starts_with("_Z") {
            let options = cpp_demangle::DemangleOptions::new()
                .no_params()
                .no_return_type();
            return cpp_demangle::Symbol::new(symbol)
                .ok()?
                .demangle_with_options(&options)
                .ok();
        }
        return None;
    }
    // A legacy Rust name demangled as if it were C++: its path separators
    // are back, its escapes and hash are not. Mangle it again and demangle it
    // as Rust.
    let mut mangled = String::with_capacity(symbol.len() + 16);
    mangled.push_str("_ZN");
    for segment in symbol.split("::") {
        let ok = segment.bytes().next().is_some_and(|b| !b.is_ascii_digit())
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'));
        if !ok {
            return None;
        }
        write!(mangled, "{}{segment}", segment.len()).ok()?;
    }
    mangled.push('E');
    let d = rustc_demangle::try_demangle(&mangled).ok()?;
    write!(out, "{d:#}").ok()?;
    Some(out)
}

/// Splits a name into what to keep: the name without a C++ argument list at
/// its end (and the ` const`, ` volatile`, ` &`, ` &&`, ` noexcept` after it),
/// then a GCC clone suffix (` [clone .cold]`) if there was one. Parentheses
/// that are part of the name stay: `operator()`, `(anonymous namespace)`, Go's
/// `pkg.(*T).M`, a lambda's `{lambda(int)#1}` and a local entity's
/// `f(int)::Local`.
pub(super) fn split_arguments(name: &str) -> (&str, &str) {
    let whole = (name, "");
    // Most names hold no parenthesis at all.
    if memchr::memchr(b'(', name.as_bytes()).is_none() {
        return whole;
    }
    // GCC clone suffixes, possibly several: `f(int) [clone .isra.0] [clone .cold]`.
    let mut body = name;
    while body.ends_with(']') {
        match body.rfind(" [clone ") {
            Some(i) => body = &body[..i],
            None => break,
        }
    }
    let clone_suffix = &name[body.len()..];
    // Qualifiers after the argument list.
    const QUALIFIERS: [&str; 6] = [
        " const",
        " volatile",
        " &&",
        " &",
        " noexcept",
        " transaction_safe",
    ];
    let mut head = body;
    while let Some(q) = QUALIFIERS.iter().find(|q| head.ends_with(*q)) {
        let before = &head[..head.len() - q.len()];
        if !before.ends_with([')', 't', 'e', '&']) {
            break;
        }
        head = before;
    }
    let hb = head.as_bytes();
    if hb.last() != Some(&b')') {
        return whole;
    }
    // The `(` that matches the final `)`.
    let mut depth = 0usize;
    let mut open = None;
    for (i, &b) in hb.iter().enumerate().rev() {
        match b {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    open = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(open) = open else {
        return whole;
    };
    let before = &head[..open];
    let inside = &head[open + 1..head.len() - 1];
    let operator_call = before == "operator" || before.ends_with("::operator");
    if before.is_empty()
        || before.ends_with([' ', '\t'])
        || operator_call && inside.is_empty() && head.len() == body.len()
        || inside == "anonymous namespace"
        || inside == "anonymous"
    {
        return whole;
    }
    (before, clone_suffix)
}

/// The byte positions of the `->` that separate a Java inline chain
/// (`outer->inner`, written into perf maps by perf-map-agent's `unfoldall`),
/// not counting C++'s `operator->`.
pub(super) fn inline_separators(symbol: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = symbol.as_bytes();
    memchr::memchr_iter(b'>', bytes)
        .filter(move |&i| i > 0 && bytes[i - 1] == b'-' && !symbol[..i - 1].ends_with("operator"))
        .map(|i| i - 1)
}
