//! The grammar of `perf script` text: what kind of line a line is (sample
//! header, stack frame, perf's other output, or unreadable), the header
//! (`COMM PID/TID [CPU] TIME: PERIOD EVENT:`) and frame line
//! (`ADDR SYMBOL+0xOFF (MODULE)`) fields, and what a module name says about its
//! frames (kernel, JIT). A line is classified by its content alone, never by its
//! indentation or by the lines around it, so that the chunk reader and the
//! collapser agree on where samples start. It borrows from the line and
//! allocates nothing; naming frames is [`super::collapser`]'s.

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

fn trim_blanks_start(line: &str) -> &str {
    let n = line
        .bytes()
        .position(|b| b != b' ' && b != b'\t')
        .unwrap_or(line.len());
    // Only ASCII bytes were skipped, so this is a character boundary.
    &line[n..]
}

fn trim_blanks_end(s: &str) -> &str {
    let n = s
        .bytes()
        .rposition(|b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    // Only ASCII bytes were removed, so this is a character boundary.
    &s[..n]
}

/// What a line of `perf script` output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// Empty or blanks only.
    Blank,
    /// Starts with `#` (perf's header block).
    Comment,
    /// A sample header; a single-line stack has its leaf frame in
    /// [`Header::frame`].
    Header(Header<'a>),
    /// A stack frame.
    Frame(FrameLine<'a>),
    /// A side-band record that perf prints with a sample-like prefix
    /// (`sh 1 2.0: PERF_RECORD_FORK(…)`), or `PERF_RECORD_FINISHED_ROUND`: not
    /// a sample, and it ends the current one.
    Sideband,
    /// Other output perf writes between frames that is not a frame: source
    /// lines of `-F +srcline` (`  file.c:12`, `  ??:0`, `  x.c:3 (inlined)`,
    /// `  [kernel.kallsyms][ffffffff816bd3ef]`) and of `-F +srccode`
    /// (`|12    code`). Skipped.
    Annotation,
    /// None of the above.
    Unreadable,
}

/// Classifies one line (its end already trimmed with [`trim_str_end`]).
///
/// A line that reads as both a frame and a header (a command name that is a
/// hexadecimal word, like `dd`, `cc1` or `fn`, followed by a PID) is a header
/// when the word after the address is a PID and the header grammar holds.
// Inlined into the collapser's loop: a line is classified, then matched on at
// once, and most lines are frames.
#[inline(always)]
pub(super) fn classify(line: &str) -> Line<'_> {
    let body = trim_blanks_start(line);
    let Some(&first) = body.as_bytes().first() else {
        return Line::Blank;
    };
    if first == b'#' && body.len() == line.len() {
        return Line::Comment;
    }
    if let Some(frame) = parse_frame(body) {
        if !starts_with_pid(frame.after_addr) {
            return Line::Frame(frame);
        }
        return match parse_header(body) {
            Some(HeaderLine::Sample(h)) => Line::Header(h),
            Some(HeaderLine::Sideband) => Line::Sideband,
            None => Line::Frame(frame),
        };
    }
    match parse_header(body) {
        Some(HeaderLine::Sample(h)) => return Line::Header(h),
        Some(HeaderLine::Sideband) => return Line::Sideband,
        None => {}
    }
    if body.starts_with("PERF_RECORD_") {
        return Line::Sideband;
    }
    if first == b'|' || (body.len() < line.len() && is_srcline(body)) {
        return Line::Annotation;
    }
    Line::Unreadable
}

/// Whether `s` starts with a PID token: digits, or digits/digits, then a blank
/// or the end.
fn starts_with_pid(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = digits(0);
    if i == 0 {
        return false;
    }
    if b.get(i) == Some(&b'/') {
        let end = digits(i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    matches!(b.get(i), None | Some(b' ' | b'\t'))
}

/// What `-F +srcline` prints under a frame: `FILE:LINE`, optionally followed
/// by ` (inlined)` (`??:0` and `:0` too), or `MODULE[ADDR]` when the module has
/// no line table (`[kernel.kallsyms][ffffffff816bd3ef]`, `gzip[4313]`).
fn is_srcline(s: &str) -> bool {
    let s = s.strip_suffix(" (inlined)").unwrap_or(s);
    if let Some((file, line)) = s.rsplit_once(':') {
        return is_digits(line) && !file.contains(['\t', '(']);
    }
    s.strip_suffix(']')
        .and_then(|s| s.rsplit_once('['))
        .is_some_and(|(module, addr)| {
            !module.is_empty()
                && !module.contains([' ', '\t'])
                && !addr.is_empty()
                && addr.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_pid(s: &str) -> bool {
    match s.split_once('/') {
        Some((p, t)) => is_digits(p) && is_digits(t),
        None => is_digits(s),
    }
}

/// A parsed sample header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header<'a> {
    pub(super) comm: &'a str,
    pub(super) pid: Option<&'a str>,
    pub(super) tid: &'a str,
    pub(super) period: Option<u64>,
    pub(super) event: Option<&'a str>,
    /// The leaf frame printed on the header line itself (samples without a
    /// call chain, or `perf script -G`).
    pub(super) frame: Option<FrameLine<'a>>,
}

/// A line with the header grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HeaderLine<'a> {
    Sample(Header<'a>),
    /// `COMM PID TIME: PERF_RECORD_…`: a side-band record, not a sample.
    Sideband,
}

/// Parses `COMM PID/TID [CPU] TIME: PERIOD EVENT: …` (see the module doc).
///
/// The command name may contain blanks and is everything before the PID. A
/// header needs the PID and at least one of `TIME:` and `EVENT:` after it, so
/// that neither a folded line (`main;f 12`) nor a frame reads as one. What
/// follows the event is a frame if it reads as one (a single-line stack), unless
/// the event is a tracepoint (`sched:sched_switch`), whose arguments follow it.
pub(super) fn parse_header(line: &str) -> Option<HeaderLine<'_>> {
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
    let mut has_time = false;
    if j < tokens.len() && is_time(tok(j)) {
        has_time = true;
        j += 1;
    }
    if j < tokens.len() && tok(j).starts_with("PERF_RECORD_") {
        return Some(HeaderLine::Sideband);
    }
    // A number is the period only if an event follows it: otherwise it is the
    // address of a single-line frame (`-F comm,tid,time,ip,sym`).
    let mut period = None;
    if j + 1 < tokens.len() && is_digits(tok(j)) && is_event(tok(j + 1)) {
        period = tok(j).parse::<u64>().ok();
        j += 1;
    }
    let mut event = None;
    if j < tokens.len() && is_event(tok(j)) {
        event = tok(j).strip_suffix(':');
        j += 1;
    }
    if !has_time && event.is_none() {
        return None;
    }
    let frame = if j < tokens.len() && !event.is_some_and(is_tracepoint) {
        header_frame(&line[tokens[j].0..])
    } else {
        None
    };
    Some(HeaderLine::Sample(Header {
        comm,
        pid,
        tid,
        period,
        event,
        frame,
    }))
}

/// The frame printed after a header's fields, if `rest` reads as one. A bare
/// number is not taken for a frame: it may be a period printed without an
/// event, and it would name nothing.
fn header_frame(rest: &str) -> Option<FrameLine<'_>> {
    let frame = parse_frame(rest)?;
    (!frame.symbol.is_empty() || frame.module.is_some()).then_some(frame)
}

/// `NAME:` with a non-empty name.
fn is_event(token: &str) -> bool {
    token.len() > 1 && token.ends_with(':')
}

/// Whether an event is a tracepoint (`subsystem:name`, arguments follow it),
/// not an event with modifiers (`cycles:uppp`).
fn is_tracepoint(event: &str) -> bool {
    event.split_once(':').is_some_and(|(_, rest)| {
        !rest.bytes().all(|b| {
            matches!(
                b,
                b'u' | b'k'
                    | b'h'
                    | b'H'
                    | b'G'
                    | b'p'
                    | b'P'
                    | b'S'
                    | b'D'
                    | b'I'
                    | b'W'
                    | b'e'
                    | b':'
            )
        })
    })
}

/// One parsed frame line: `ADDR SYMBOL+0xOFF (MODULE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameLine<'a> {
    /// The address as perf printed it, in hexadecimal without `0x`.
    pub(super) addr: &'a str,
    /// The symbol without its `+0x…` offset; empty when perf printed none.
    pub(super) symbol: &'a str,
    pub(super) module: Option<&'a str>,
    /// Everything after the address, blanks skipped.
    after_addr: &'a str,
}

/// Parses a frame line (leading blanks and the line end already removed).
/// `None` if it does not start with a hexadecimal address followed by a blank
/// or the end.
pub(super) fn parse_frame(line: &str) -> Option<FrameLine<'_>> {
    let bytes = line.as_bytes();
    let addr_end = bytes
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(bytes.len());
    if addr_end == 0 || !matches!(bytes.get(addr_end), None | Some(b' ' | b'\t')) {
        return None;
    }
    let rest = trim_blanks_start(&line[addr_end..]);
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
    Some(FrameLine {
        addr: &line[..addr_end],
        symbol,
        module,
        after_addr: rest,
    })
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
            return Some((trim_blanks_end(&rest[..open]), &rest[open + 1..inner_end]));
        }
    }
    let mut depth = 0usize;
    for i in (0..bytes.len()).rev() {
        match bytes[i] {
            b')' => depth += 1,
            b'(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if i > 0 && !matches!(bytes[i - 1], b' ' | b'\t') {
                        // `f(int)` with no module: the parentheses are the symbol's.
                        return None;
                    }
                    return Some((trim_blanks_end(&rest[..i]), &rest[i + 1..bytes.len() - 1]));
                }
            }
            _ => {}
        }
    }
    None
}

/// What a module's frames are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ModuleKind {
    /// A bracketed module other than the user-space ones perf brackets
    /// (`[kernel.kallsyms]`, `[nf_conntrack]`, `[guest.kernel.kallsyms]`), a
    /// kernel image (`…/vmlinux`, `vmlinux-5.4.14-…`), a kernel module file
    /// (`….ko`, compressed or not) or a BPF program (`bpf_prog_…`,
    /// `bpf_trampoline_…`).
    Kernel,
    /// A perf map (`/tmp/perf-PID.map`, possibly seen through a container's
    /// root), an ELF file written by `perf inject --jit` (`jitted-PID-N.so`),
    /// or perf's `[JIT] tid N`.
    Jit,
    /// Anything else, `[vdso]` included.
    User,
}

/// What the frames of `module` are.
pub(super) fn module_kind(module: &str) -> ModuleKind {
    if module == "[kernel.kallsyms]" {
        return ModuleKind::Kernel;
    }
    if module.starts_with('[') {
        let user = matches!(
            module,
            "[unknown]"
                | "[vdso]"
                | "[vdso32]"
                | "[vdsox32]"
                | "[vsyscall]"
                | "[vectors]"
                | "[sigpage]"
                | "[uprobes]"
                | "[heap]"
        ) || module.starts_with("[stack")
            || module.starts_with("[anon");
        return if module.starts_with("[JIT]") {
            ModuleKind::Jit
        } else if user {
            ModuleKind::User
        } else {
            ModuleKind::Kernel
        };
    }
    let base = basename(module);
    if (base.starts_with("perf-") && base.ends_with(".map"))
        || (base.starts_with("jitted-") && base.ends_with(".so"))
    {
        ModuleKind::Jit
    } else if base.starts_with("vmlinux")
        || base.ends_with(".ko")
        || base.ends_with(".ko.xz")
        || base.ends_with(".ko.zst")
        || base.ends_with(".ko.gz")
        || base.starts_with("bpf_prog_")
        || base.starts_with("bpf_trampoline_")
    {
        ModuleKind::Kernel
    } else {
        ModuleKind::User
    }
}

pub(super) fn basename(module: &str) -> &str {
    match memchr::memrchr(b'/', module.as_bytes()) {
        Some(i) => &module[i + 1..],
        None => module,
    }
}
