//! Naming frames and assembling stacks: the collapser turns one chunk's
//! samples (headers and frame lines, parsed by [`super::grammar`]) into folded
//! stacks, root first, with frame names as `stackcollapse-perf.pl --all` writes
//! them (see the parent module). Its buffers are reused from sample to sample.

use super::grammar::{
    basename, is_jit_module, is_kernel_module, parse_frame, parse_header, trim_str_end, FrameLine,
    Header,
};
use super::{CollapseStats, Config, EventFilter, Outcome};
use crate::{ParseErrorKind, Profile, JIT_SUFFIX, KERNEL_SUFFIX};

/// Collapses chunks; its buffers are reused from sample to sample.
pub(super) struct Collapser<'c> {
    config: &'c Config,
    /// Frame names of the current sample, leaf first, back to back.
    frames: String,
    /// `frames` ranges of the current sample's frames.
    spans: Vec<(u32, u32)>,
    /// The current sample's root frame.
    root: String,
    /// The stack being assembled.
    stack: String,
    in_sample: bool,
    keep: bool,
    weight: u64,
    is_java: bool,
}

impl<'c> Collapser<'c> {
    pub(super) fn new(config: &'c Config) -> Collapser<'c> {
        Collapser {
            config,
            frames: String::with_capacity(4096),
            spans: Vec::with_capacity(128),
            root: String::with_capacity(64),
            stack: String::with_capacity(4096),
            in_sample: false,
            keep: false,
            weight: 1,
            is_java: false,
        }
    }

    /// Collapses one chunk (which starts at a sample boundary) into `profile`.
    pub(super) fn run(
        &mut self,
        chunk: &[u8],
        filter: &EventFilter,
        profile: &mut Profile,
    ) -> Outcome {
        let mut out = Outcome::default();
        let text = match std::str::from_utf8(chunk) {
            Ok(t) => t,
            Err(e) => {
                // Collapse the valid part first so that an earlier error wins.
                let valid = e.valid_up_to();
                let line_start = memchr::memrchr(b'\n', &chunk[..valid]).map_or(0, |i| i + 1);
                let mut head = self.run(&chunk[..line_start], filter, profile);
                if head.error.is_none() {
                    head.error = Some((head.stats.lines + 1, ParseErrorKind::InvalidUtf8));
                }
                return head;
            }
        };
        let mut filter = filter.clone();
        self.in_sample = false;
        let mut line_no = 0u64;
        let mut rest = text;
        while !rest.is_empty() {
            let (raw, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = next;
            line_no += 1;
            let line = trim_str_end(raw);
            if let Err(kind) = self.line(line, &mut filter, profile, &mut out.stats) {
                out.stats.lines = line_no;
                out.error = Some((line_no, kind));
                return out;
            }
        }
        if let Err(kind) = self.finish_sample(profile, &mut out.stats) {
            out.error = Some((line_no, kind));
        }
        out.stats.lines = line_no;
        out
    }

    fn line(
        &mut self,
        line: &str,
        filter: &mut EventFilter,
        profile: &mut Profile,
        stats: &mut CollapseStats,
    ) -> Result<(), ParseErrorKind> {
        let Some(&first) = line.as_bytes().first() else {
            return self.finish_sample(profile, stats);
        };
        if first == b'#' {
            return Ok(());
        }
        let indented = first == b' ' || first == b'\t';
        if self.in_sample && indented {
            if self.keep {
                match parse_frame(line.trim_start_matches([' ', '\t'])) {
                    Some(frame) => self.push_frame(frame),
                    None => stats.skipped_lines += 1,
                }
            }
            return Ok(());
        }
        // A header: after a blank line, or right after a sample's frames.
        self.finish_sample(profile, stats)?;
        let trimmed = line.trim_start_matches([' ', '\t']);
        if indented && parse_frame(trimmed).is_some() {
            return Err(ParseErrorKind::Other(
                "a stack frame line with no sample header before it \
                 (expected `COMM PID/TID [CPU] TIME: PERIOD EVENT:`)"
                    .into(),
            ));
        }
        let Some(header) = parse_header(trimmed) else {
            return Err(ParseErrorKind::Other(format!(
                "cannot parse the sample header {:?} \
                 (expected `COMM PID/TID [CPU] TIME: PERIOD EVENT:`)",
                truncate(trimmed, 120)
            )));
        };
        self.start_sample(&header, filter, stats);
        Ok(())
    }

    fn start_sample(
        &mut self,
        h: &Header<'_>,
        filter: &mut EventFilter,
        stats: &mut CollapseStats,
    ) {
        self.in_sample = true;
        self.spans.clear();
        self.frames.clear();
        self.keep = match filter {
            EventFilter::Only(e) => e.as_deref() == h.event,
            EventFilter::Undecided => {
                *filter = EventFilter::Only(h.event.map(str::to_owned));
                true
            }
        };
        if !self.keep {
            stats.skipped_other_events += 1;
            let name = h.event.unwrap_or("");
            if !stats.other_events.iter().any(|e| e == name) {
                stats.other_events.push(name.to_owned());
            }
            return;
        }
        self.weight = if self.config.period {
            h.period.unwrap_or(1)
        } else {
            1
        };
        self.is_java = h.comm == "java";
        self.root.clear();
        push_replaced(&mut self.root, h.comm, |c| match c {
            ' ' => Some('_'),
            ';' => Some(':'),
            _ => None,
        });
        if self.root.is_empty() {
            self.root.push_str("[unknown]");
        }
        if self.config.include_pid {
            self.root.push('-');
            self.root.push_str(h.pid.unwrap_or("?"));
            if self.config.include_tid {
                self.root.push('/');
                self.root.push_str(h.tid);
            }
        }
    }

    fn push_frame(&mut self, frame: FrameLine<'_>) {
        let module = frame.module.unwrap_or("[unknown]");
        let suffix = if self.config.annotate_kernel && is_kernel_module(module) {
            KERNEL_SUFFIX
        } else if self.config.annotate_jit && is_jit_module(module) {
            JIT_SUFFIX
        } else {
            ""
        };
        let symbol = frame.symbol;
        if symbol.is_empty() || symbol == "[unknown]" {
            let start = self.frames.len();
            if module == "[unknown]" {
                self.frames.push_str("[unknown]");
            } else {
                let base = basename(module);
                if base.starts_with('[') && base.ends_with(']') {
                    self.frames.push_str(base);
                } else {
                    self.frames.push('[');
                    push_tidy(&mut self.frames, base);
                    self.frames.push(']');
                }
            }
            self.frames.push_str(suffix);
            self.spans.push((start as u32, self.frames.len() as u32));
            return;
        }
        if has_arrow(symbol) {
            // Java inlining (perf-map-agent): outer->inner->…, leaf last. Frames
            // are stored leaf first, so push them in reverse.
            let parts: Vec<&str> = symbol.split("->").collect();
            for (i, part) in parts.iter().enumerate().rev() {
                let s = if i == 0 { suffix } else { "_[i]" };
                self.push_symbol(part, s);
            }
            return;
        }
        self.push_symbol(symbol, suffix);
    }

    fn push_symbol(&mut self, symbol: &str, suffix: &str) {
        let mut name = tidy_arguments(symbol);
        if self.is_java && name.starts_with('L') && name.contains('/') {
            name = &name[1..];
        }
        if name.is_empty() {
            // A name that is all argument list, like `(foo)`: perf's process
            // name lines; stackcollapse-perf.pl skips them too.
            return;
        }
        let start = self.frames.len();
        push_tidy(&mut self.frames, name);
        self.frames.push_str(suffix);
        self.spans.push((start as u32, self.frames.len() as u32));
    }

    fn finish_sample(
        &mut self,
        profile: &mut Profile,
        stats: &mut CollapseStats,
    ) -> Result<(), ParseErrorKind> {
        if !std::mem::take(&mut self.in_sample) || !self.keep {
            return Ok(());
        }
        self.stack.clear();
        self.stack.push_str(&self.root);
        for &(a, b) in self.spans.iter().rev() {
            self.stack.push(';');
            self.stack.push_str(&self.frames[a as usize..b as usize]);
        }
        stats.samples += 1;
        if !profile.add(&self.stack, self.weight) {
            return Err(ParseErrorKind::CountOverflow(format!(
                "{} (the total of all samples)",
                self.weight
            )));
        }
        Ok(())
    }
}

/// Whether `symbol` contains `->` (a Java inline chain).
fn has_arrow(symbol: &str) -> bool {
    let bytes = symbol.as_bytes();
    memchr::memchr_iter(b'>', bytes).any(|i| i > 0 && bytes[i - 1] == b'-')
}

/// Removes a C++ argument list: everything from the first `(` that does not
/// open a Go receiver (`pkg.(*T).M`) or `(anonymous namespace)`.
fn tidy_arguments(symbol: &str) -> &str {
    let bytes = symbol.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'(', &bytes[from..]).map(|i| i + from) {
        let go_receiver = i > 0 && bytes[i - 1] == b'.';
        let anonymous = symbol[i..].starts_with("(anonymous namespace)");
        if !go_receiver && !anonymous {
            return &symbol[..i];
        }
        from = i + 1;
    }
    symbol
}

/// Appends `name` with `;` replaced by `:` (a `;` would split the frame).
fn push_tidy(out: &mut String, name: &str) {
    if memchr::memchr(b';', name.as_bytes()).is_none() {
        out.push_str(name);
    } else {
        push_replaced(out, name, |c| (c == ';').then_some(':'));
    }
}

fn push_replaced(out: &mut String, s: &str, map: impl Fn(char) -> Option<char>) {
    for c in s.chars() {
        out.push(map(c).unwrap_or(c));
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
