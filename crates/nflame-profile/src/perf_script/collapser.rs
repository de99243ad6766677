//! Naming frames and assembling stacks: the collapser turns one chunk's
//! lines (classified by [`super::grammar`]) into folded stacks, root first,
//! with frame names as `stackcollapse-perf.pl --all` writes them, demangled and
//! with argument lists removed by [`super::names`] (see the parent module for
//! the differences). Its buffers are reused from sample to sample.

use super::grammar::{
    basename, classify, module_kind, trim_str_end, FrameLine, Header, Line, ModuleKind,
};
use super::names::{self, inline_separators, split_arguments, Demangler};
use super::{CollapseStats, Config, EventFilter, Outcome, SkippedLine, MAX_SKIPPED_EXAMPLES};
use crate::{ParseErrorKind, Profile, JIT_SUFFIX, KERNEL_SUFFIX};

/// The frame name of an unnamed frame in an unknown module.
const UNKNOWN: &str = "[unknown]";

/// The current sample's frames, leaf first.
#[derive(Debug, Default)]
struct Frames {
    /// Frame names back to back.
    text: String,
    /// `text` ranges of the frames.
    spans: Vec<(u32, u32)>,
    /// Whether the frame pushed last is `[unknown]`.
    last_unknown: bool,
}

impl Frames {
    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.last_unknown = false;
    }

    /// Ends the frame that started at `start` in `text`.
    fn end(&mut self, start: usize, unknown: bool) {
        self.spans.push((start as u32, self.text.len() as u32));
        self.last_unknown = unknown;
    }

    /// Pushes `name` as it is (it holds no `;`), then `suffix`.
    fn push_plain(&mut self, name: &str, suffix: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        self.text.push_str(suffix);
        self.end(start, false);
    }

    /// Pushes a named frame: `name` (argument list removed, `;` made `:`),
    /// then `suffix`.
    fn push_named(&mut self, name: &str, suffix: &str, strip_java_l: bool) {
        let (mut head, tail) = split_arguments(name);
        if strip_java_l && head.starts_with('L') && head.contains('/') {
            head = &head[1..];
        }
        let start = self.text.len();
        push_tidy(&mut self.text, head);
        if !tail.is_empty() {
            push_tidy(&mut self.text, tail);
        }
        self.text.push_str(suffix);
        self.end(start, false);
    }
}

/// Collapses chunks; its buffers are reused from sample to sample.
pub(super) struct Collapser<'c> {
    config: &'c Config,
    frames: Frames,
    /// The current sample's root frame.
    root: String,
    /// The stack being assembled.
    stack: String,
    demangler: Demangler,
    in_sample: bool,
    keep: bool,
    weight: u64,
    is_java: bool,
}

impl<'c> Collapser<'c> {
    pub(super) fn new(config: &'c Config) -> Collapser<'c> {
        Collapser {
            config,
            frames: Frames {
                text: String::with_capacity(4096),
                spans: Vec::with_capacity(128),
                last_unknown: false,
            },
            root: String::with_capacity(64),
            stack: String::with_capacity(4096),
            demangler: Demangler::default(),
            in_sample: false,
            keep: false,
            weight: 1,
            is_java: false,
        }
    }

    /// Collapses one chunk (which starts at a sample header, or at the start
    /// of the input) into `profile`.
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
            if let Err(kind) = self.line(line, line_no, &mut filter, profile, &mut out.stats) {
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
        line_no: u64,
        filter: &mut EventFilter,
        profile: &mut Profile,
        stats: &mut CollapseStats,
    ) -> Result<(), ParseErrorKind> {
        match classify(line) {
            // A blank line inside a sample (even right after its header) does
            // not end it: only the next header or side-band record does.
            Line::Blank | Line::Comment => {}
            Line::Frame(frame) => {
                if !self.in_sample {
                    // Before any header: the input starts inside a sample.
                    unreadable(stats, line_no, line);
                } else if self.keep {
                    self.push_frame(frame);
                }
            }
            Line::Header(header) => {
                self.finish_sample(profile, stats)?;
                self.start_sample(&header, filter, stats);
                if let (true, Some(frame)) = (self.keep, header.frame) {
                    self.push_frame(frame);
                }
            }
            Line::Sideband => {
                self.finish_sample(profile, stats)?;
                stats.skipped_lines += 1;
            }
            Line::Annotation => stats.skipped_lines += 1,
            Line::Unreadable => unreadable(stats, line_no, line),
        }
        Ok(())
    }

    fn start_sample(
        &mut self,
        h: &Header<'_>,
        filter: &mut EventFilter,
        stats: &mut CollapseStats,
    ) {
        self.in_sample = true;
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
            self.root.push_str(UNKNOWN);
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
        let module = frame.module.unwrap_or(UNKNOWN);
        let kind = module_kind(module);
        let jit = kind == ModuleKind::Jit;
        let suffix = match kind {
            ModuleKind::Kernel if self.config.annotate_kernel => KERNEL_SUFFIX,
            ModuleKind::Jit if self.config.annotate_jit => JIT_SUFFIX,
            _ => "",
        };
        let symbol = frame.symbol;
        if symbol.is_empty() || symbol == UNKNOWN {
            self.push_unnamed(frame.addr, module, suffix);
            return;
        }
        if !jit && !self.is_java && names::is_plain(symbol) {
            // Most names: nothing to demangle, strip or replace.
            self.frames.push_plain(symbol, suffix);
            return;
        }
        let name = self.demangler.demangle(symbol).unwrap_or(symbol);
        if jit {
            if let Some(first) = inline_separators(name).next() {
                // Java inlining (perf-map-agent): outer->inner->…, leaf last.
                // Frames are stored leaf first, so push them in reverse.
                let mut parts = vec![&name[..first]];
                let mut from = first + 2;
                for sep in inline_separators(name).skip(1) {
                    parts.push(&name[from..sep]);
                    from = sep + 2;
                }
                parts.push(&name[from..]);
                for (i, part) in parts.iter().enumerate().rev() {
                    let s = if i == 0 { suffix } else { "_[i]" };
                    self.frames.push_named(part, s, self.is_java);
                }
                return;
            }
        }
        self.frames.push_named(name, suffix, self.is_java);
    }

    /// A frame without a symbol: named after its module (`[libc.so.6]`), or
    /// `[unknown]` (a run of them folded into one unless asked otherwise);
    /// with addresses kept, `[libc.so.6+0x1234]` or `0x7f…`.
    fn push_unnamed(&mut self, addr: &str, module: &str, suffix: &str) {
        let frames = &mut self.frames;
        let start = frames.text.len();
        if module == UNKNOWN {
            if self.config.include_addrs {
                frames.text.push_str("0x");
                frames.text.push_str(addr);
            } else {
                if self.config.fold_unknown_runs && frames.last_unknown {
                    return;
                }
                frames.text.push_str(UNKNOWN);
                frames.text.push_str(suffix);
                frames.end(start, true);
                return;
            }
        } else {
            let base = basename(module);
            let bare = base
                .strip_prefix('[')
                .and_then(|b| b.strip_suffix(']'))
                .unwrap_or(base);
            frames.text.push('[');
            push_tidy(&mut frames.text, bare);
            if self.config.include_addrs {
                frames.text.push_str("+0x");
                frames.text.push_str(addr);
            }
            frames.text.push(']');
        }
        frames.text.push_str(suffix);
        frames.end(start, false);
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
        for &(a, b) in self.frames.spans.iter().rev() {
            self.stack.push(';');
            self.stack
                .push_str(&self.frames.text[a as usize..b as usize]);
        }
        stats.samples += 1;
        if !profile.add(&self.stack, self.weight) {
            return Err(ParseErrorKind::TotalOverflow(self.weight.to_string()));
        }
        Ok(())
    }
}

/// Counts an unreadable line, keeping the first few.
fn unreadable(stats: &mut CollapseStats, line_no: u64, line: &str) {
    stats.unreadable_lines += 1;
    if stats.unreadable.len() < MAX_SKIPPED_EXAMPLES {
        stats.unreadable.push(SkippedLine {
            line: line_no,
            text: truncate(line, 200).to_owned(),
        });
    }
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
