//! The grammar of `perf script` text: sample headers
//! (`COMM PID/TID [CPU] TIME: PERIOD EVENT:`) and frame lines
//! (`ADDR SYMBOL+0xOFF (MODULE)`), and what a module name says about its frames
//! (kernel, JIT map). It borrows from the line and allocates nothing; naming
//! frames is [`super::collapser`]'s.

/// `line` without trailing `\r`, blanks and tabs.
pub(super) fn trim_str_end(line: &str) -> &str {
    let trimmed = trim_line_end(line.as_bytes()).len();
    // Only ASCII bytes were removed, so this is a character boundary.
    &line[..trimmed]
}

pub(super) fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b' ' | b'\t'] = line {
        line = rest;
    }
    line
}

/// A parsed sample header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header<'a> {
    pub(super) comm: &'a str,
    pub(super) pid: Option<&'a str>,
    pub(super) tid: &'a str,
    pub(super) period: Option<u64>,
    pub(super) event: Option<&'a str>,
}

/// Parses `COMM PID/TID [CPU] TIME: PERIOD EVENT: …` (see the module doc).
pub(super) fn parse_header(line: &str) -> Option<Header<'_>> {
    const MAX_TOKENS: usize = 48;
    let bytes = line.as_bytes();
    let mut tokens = [(0usize, 0usize); MAX_TOKENS];
    let mut n = 0;
    let mut i = 0;
    while i < bytes.len() && n < MAX_TOKENS {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i > start {
            tokens[n] = (start, i);
            n += 1;
        }
    }
    let tokens = &tokens[..n];
    let tok = |k: usize| &line[tokens[k].0..tokens[k].1];
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_pid = |s: &str| match s.split_once('/') {
        Some((p, t)) => is_digits(p) && is_digits(t),
        None => is_digits(s),
    };
    let is_cpu = |s: &str| {
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(is_digits)
    };
    let is_time = |s: &str| {
        s.strip_suffix(':').is_some_and(|t| {
            let (a, b) = t.split_once('.').unwrap_or((t, "0"));
            is_digits(a) && is_digits(b)
        })
    };
    // The PID token: the first all-digit (or digits/digits) word after the
    // command name that is followed by [CPU]? TIME:, else the first one.
    let mut pid_at = None;
    for k in 1..tokens.len() {
        if !is_pid(tok(k)) {
            continue;
        }
        let mut j = k + 1;
        if j < tokens.len() && is_cpu(tok(j)) {
            j += 1;
        }
        if j < tokens.len() && is_time(tok(j)) {
            pid_at = Some(k);
            break;
        }
        if pid_at.is_none() {
            pid_at = Some(k);
        }
    }
    let k = pid_at?;
    let comm = line[..tokens[k].0].trim_end_matches([' ', '\t']);
    let (pid, tid) = match tok(k).split_once('/') {
        Some((p, t)) => (Some(p), t),
        None => (None, tok(k)),
    };
    let mut j = k + 1;
    if j < tokens.len() && is_cpu(tok(j)) {
        j += 1;
    }
    if j < tokens.len() && is_time(tok(j)) {
        j += 1;
    }
    let mut period = None;
    if j < tokens.len() && is_digits(tok(j)) {
        period = tok(j).parse::<u64>().ok();
        j += 1;
    }
    let event = (j < tokens.len())
        .then(|| tok(j).strip_suffix(':'))
        .flatten()
        .filter(|e| !e.is_empty());
    Some(Header {
        comm,
        pid,
        tid,
        period,
        event,
    })
}

/// One parsed frame line: `ADDR SYMBOL+0xOFF (MODULE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameLine<'a> {
    pub(super) symbol: &'a str,
    pub(super) module: Option<&'a str>,
}

/// Parses a frame line (leading blanks and the line end already removed).
/// `None` if it does not start with a hexadecimal address.
pub(super) fn parse_frame(line: &str) -> Option<FrameLine<'_>> {
    let bytes = line.as_bytes();
    let addr_end = bytes
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(bytes.len());
    if addr_end == 0 || !matches!(bytes.get(addr_end), None | Some(b' ' | b'\t')) {
        return None;
    }
    let rest = line[addr_end..].trim_start_matches([' ', '\t']);
    let (mut symbol, module) = match split_module(rest) {
        Some((s, m)) => (s, Some(m)),
        None => (rest, None),
    };
    // Strip `+0xOFFSET`. Only the last `+` can start one: an earlier `+0x`
    // would be followed by this `+`, which is not a hex digit.
    if let Some(plus) = memchr::memrchr(b'+', symbol.as_bytes()) {
        let off = &symbol.as_bytes()[plus + 1..];
        if off.len() > 2 && off.starts_with(b"0x") && off[2..].iter().all(u8::is_ascii_hexdigit) {
            symbol = &symbol[..plus];
        }
    }
    Some(FrameLine { symbol, module })
}

/// Splits `SYMBOL (MODULE)` at the parenthesis matching the final `)`, so
/// modules like `(/memfd:x (deleted))` and symbols like `f(int)` survive.
fn split_module(rest: &str) -> Option<(&str, &str)> {
    let bytes = rest.as_bytes();
    if bytes.last() != Some(&b')') {
        return None;
    }
    let inner_end = bytes.len() - 1;
    // Fast path: the last `(` opens the module (no parentheses inside it).
    if let Some(open) = memchr::memrchr(b'(', &bytes[..inner_end]) {
        if memchr::memchr(b')', &bytes[open..inner_end]).is_none() {
            if open > 0 && !matches!(bytes[open - 1], b' ' | b'\t') {
                return None;
            }
            return Some((
                rest[..open].trim_end_matches([' ', '\t']),
                &rest[open + 1..inner_end],
            ));
        }
    }
    let mut depth = 0usize;
    for i in (0..bytes.len()).rev() {
        match bytes[i] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    if i > 0 && !matches!(bytes[i - 1], b' ' | b'\t') {
                        // `f(int)` with no module: the parentheses are the symbol's.
                        return None;
                    }
                    return Some((
                        rest[..i].trim_end_matches([' ', '\t']),
                        &rest[i + 1..bytes.len() - 1],
                    ));
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether frames of `module` are kernel frames.
pub(super) fn is_kernel_module(module: &str) -> bool {
    if module.ends_with("vmlinux") {
        return true;
    }
    module.starts_with('[')
        && !matches!(
            module,
            "[unknown]" | "[vdso]" | "[vsyscall]" | "[heap]" | "[stack]"
        )
        && !module.starts_with("[anon")
}

/// Whether `module` is a perf JIT map (`/tmp/perf-PID.map`, possibly seen
/// through a container's root).
pub(super) fn is_jit_module(module: &str) -> bool {
    module.ends_with(".map") && basename(module).starts_with("perf-")
}

pub(super) fn basename(module: &str) -> &str {
    match memchr::memrchr(b'/', module.as_bytes()) {
        Some(i) => &module[i + 1..],
        None => module,
    }
}
