//! Writing a graph's frames directly, as inferno writes a frame, from the
//! layout ([`crate::cut::layout_each`]): each frame's fill and tooltip given by
//! the caller (the differential graph's colour scale, or a palette's colour
//! and inferno's tooltip).
//!
//! inferno would need every line (or the lines cut to the frames drawn) in
//! memory, hold every frame again, and format them one at a time: for deep
//! graphs (hundreds of thousands of frames) that is most of the time and
//! memory of a graph. inferno still writes the page around the frames (the
//! script behind search and zoom, title, legend), from a one-line graph as
//! deep as this one and of the same total: the frames' container, their
//! vertical positions and the page are the ones inferno would write. Each
//! frame element has inferno's shape (`<g><title>…</title><rect x y width
//! height fill fg:x fg:w/><text x y>…</text></g>`), positions and labels
//! computed and formatted as inferno does, so its script works on it; the
//! tests compare the result with inferno's own graphs.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::cut::{Frames, Kept, Node};
use crate::{render_lines, Error, RenderOptions};

/// The fill and tooltip of frame `k`, of inclusive values `node`, by its
/// name and its name as the tooltip shows it.
pub(crate) type Style<'a> = dyn Fn(&Kept, &Node, &str, &str) -> (String, String) + Sync + 'a;

/// The page around the frames and where frames go on it.
pub(crate) struct Canvas {
    /// inferno's SVG up to the frames' container, which it opens.
    pub(crate) head: Vec<u8>,
    container: Vec<u8>,
    /// What follows the last frame.
    tail: Vec<u8>,
    /// The `y` and height of the `all` frame's rectangle.
    y_all: i64,
    rect_height: i64,
    frame_height: i64,
    inverted: bool,
    total: u64,
    /// A frame's width in percent per character of its label.
    pct_per_char: f64,
    /// Where a label starts after its frame's left edge, in percent.
    text_inset: f64,
}

impl Canvas {
    /// The page inferno draws with `opts` (a flame chart, of differential
    /// lines if `differential`) for a graph of `total` whose deepest frame
    /// drawn is `depth` frames below `all` (`None`: no frame is drawn).
    pub(crate) fn new(
        opts: &RenderOptions,
        total: u64,
        depth: Option<u32>,
        differential: bool,
    ) -> Result<Canvas, Error> {
        let inferno = opts.to_inferno()?;
        let line = |stack: &str, n: u64| {
            if differential {
                format!("{stack} 0 {n}")
            } else {
                format!("{stack} {n}")
            }
        };
        // The page's height follows the deepest frame drawn: one line as
        // deep, all of it drawn; or, when only `all` is, two frames below
        // it, both narrower than the smallest width kept (just under the
        // whole); or, when nothing is, nothing kept.
        let mut o = opts.clone();
        let frames_px = opts.width.unwrap_or(1200).saturating_sub(20).max(1) as f64;
        let lines = match depth {
            Some(d) if d > 0 => {
                o.min_width = 0.0;
                let mut stack = "f;".repeat(d as usize);
                stack.pop();
                vec![line(&stack, total)]
            }
            Some(_) if total >= 2 => {
                o.min_width = frames_px * (total as f64 - 0.5) / total as f64;
                vec![line("a", 1), line("b", total - 1)]
            }
            _ => {
                o.min_width = 2.0 * frames_px;
                vec![line("a", total)]
            }
        };
        let mut svg = Vec::with_capacity(1 << 16);
        render_lines(lines.iter().map(String::as_str), &o, &mut svg)?;
        let broken = || Error::Write(io::Error::other("inferno's SVG has no frames' container"));
        let open = memchr::memmem::find(&svg, b"<svg id=\"frames\"").ok_or_else(broken)?;
        let open_end = open + memchr::memchr(b'>', &svg[open..]).ok_or_else(broken)? + 1;
        let close = memchr::memmem::rfind(&svg, b"</svg></svg>").ok_or_else(broken)?;
        if close < open_end {
            return Err(broken());
        }
        // Where `all` is drawn (when it is).
        let all = memchr::memmem::find(&svg[open_end..close], b"<g><title>all (").and_then(|at| {
            let rect = &svg[open_end + at..close];
            let number = |key: &[u8]| -> Option<i64> {
                let at = memchr::memmem::find(rect, key)? + key.len();
                let end = memchr::memchr(b'"', &rect[at..])? + at;
                std::str::from_utf8(&rect[at..end]).ok()?.parse().ok()
            };
            Some((number(b" y=\"")?, number(b" height=\"")?))
        });
        if depth.is_some() && all.is_none() {
            return Err(broken());
        }
        let (y_all, rect_height) = all.unwrap_or((0, 0));
        let image_width = inferno.image_width.unwrap_or(1200) as f64;
        Ok(Canvas {
            head: svg[..open].to_vec(),
            container: svg[open..open_end].to_vec(),
            tail: svg[close..].to_vec(),
            y_all,
            rect_height,
            frame_height: inferno.frame_height as i64,
            inverted: opts.inverted,
            total,
            pct_per_char: 100.0 * inferno.font_size as f64 * inferno.font_width / image_width,
            text_inset: 100.0 * 3.0 / image_width,
        })
    }

    /// Writes the frames' container with `frames` in it, then the rest of
    /// the page. `name(k)` is frame `k`'s name (empty for `all`, which is
    /// titled `all` and has no label), `style(k, node, name, shown)` the fill
    /// and tooltip of frame `k` (`shown`: the name as the tooltip shows it,
    /// annotation hidden).
    /// Frames are formatted in parallel, a batch at a time, and written in
    /// order: at most a batch of them is held.
    pub(crate) fn write_frames<'n, W: Write>(
        &self,
        out: &mut W,
        frames: &Frames<'_>,
        name: &(dyn Fn(&Kept) -> &'n str + Sync),
        style: &Style<'_>,
    ) -> io::Result<()> {
        out.write_all(&self.container)?;
        let mut batches = Batches {
            canvas: self,
            out,
            name,
            style,
            kept: Vec::new(),
            nodes: Vec::new(),
            error: None,
        };
        frames.each(&mut |kept, nodes| batches.push(kept, nodes));
        batches.flush();
        if let Some(e) = batches.error {
            return Err(e);
        }
        out.write_all(&self.tail)
    }

    /// Appends frame `k`'s element to `buf`.
    fn write_frame<'n>(
        &self,
        buf: &mut String,
        k: &Kept,
        node: &Node,
        per_count: f64,
        name: &dyn Fn(&Kept) -> &'n str,
        style: &Style<'_>,
    ) {
        let raw = name(k);
        let name = deannotate(raw);
        let (fill, title) = style(k, node, raw, if k.depth == 0 { "all" } else { name });
        let x1 = k.start as f64 * per_count;
        let x2 = k.end as f64 * per_count;
        let width = x2 - x1;
        let d = i64::from(k.depth) * self.frame_height;
        let y = if self.inverted {
            self.y_all + d
        } else {
            self.y_all - d
        };
        buf.push_str("<g><title>");
        escape_into(buf, &title);
        let _ = write!(
            buf,
            "</title><rect x=\"{x1:.4}%\" y=\"{y}\" width=\"{width:.4}%\" height=\"{}\" fill=\"",
            self.rect_height
        );
        escape_into(buf, &fill);
        let _ = write!(
            buf,
            "\" fg:x=\"{}\" fg:w=\"{}\"/><text x=\"{:.4}%\" y=\"{:.2}\">",
            k.start,
            k.end - k.start,
            x1 + self.text_inset,
            3.0 + (2 * y + self.rect_height) as f64 / 2.0
        );
        // As many characters as fit, or none when fewer than three do.
        let fit = (width / self.pct_per_char).trunc() as usize;
        if fit >= 3 {
            if name.len() < fit {
                escape_into(buf, name);
            } else {
                let mut cut = String::with_capacity(fit + 2);
                cut.extend(name.chars().take(fit - 2));
                cut.push_str("..");
                escape_into(buf, &cut);
            }
        }
        buf.push_str("</text></g>");
    }
}

/// Frames to write, gathered into batches formatted in parallel.
struct Batches<'c, 'n, 's, W: Write> {
    canvas: &'c Canvas,
    out: &'c mut W,
    name: &'c (dyn Fn(&Kept) -> &'n str + Sync),
    style: &'c Style<'s>,
    /// Frames waiting for their batch to fill.
    kept: Vec<Kept>,
    nodes: Vec<Node>,
    /// The first write that failed: the frames after it are not written.
    error: Option<io::Error>,
}

/// Frames formatted by one thread at a time.
const CHUNK: usize = 4096;

impl<W: Write> Batches<'_, '_, '_, W> {
    /// Frames per batch: two chunks for each thread.
    fn batch() -> usize {
        CHUNK * 2 * rayon::current_num_threads().max(1)
    }

    /// Takes the next frames: whole batches are written straight from them,
    /// the rest waits for more.
    fn push(&mut self, mut kept: &[Kept], mut nodes: &[Node]) {
        let batch = Self::batch();
        while !kept.is_empty() && self.error.is_none() {
            if self.kept.is_empty() && kept.len() >= batch {
                self.write(&kept[..batch], &nodes[..batch]);
                (kept, nodes) = (&kept[batch..], &nodes[batch..]);
                continue;
            }
            let take = (batch - self.kept.len()).min(kept.len());
            self.kept.extend_from_slice(&kept[..take]);
            self.nodes.extend_from_slice(&nodes[..take]);
            (kept, nodes) = (&kept[take..], &nodes[take..]);
            if self.kept.len() == batch {
                self.flush();
            }
        }
    }

    /// Writes the frames waiting.
    fn flush(&mut self) {
        let (kept, nodes) = (
            std::mem::take(&mut self.kept),
            std::mem::take(&mut self.nodes),
        );
        if !kept.is_empty() && self.error.is_none() {
            self.write(&kept, &nodes);
        }
        (self.kept, self.nodes) = (kept, nodes);
        self.kept.clear();
        self.nodes.clear();
    }

    /// Formats `kept` in parallel and writes them in order.
    fn write(&mut self, kept: &[Kept], nodes: &[Node]) {
        use rayon::prelude::*;
        let canvas = self.canvas;
        let per_count = 100.0 / canvas.total as f64;
        let (name, style) = (self.name, self.style);
        let texts: Vec<String> = kept
            .par_chunks(CHUNK)
            .zip(nodes.par_chunks(CHUNK))
            .map(|(kept, nodes)| {
                let mut buf = String::with_capacity(kept.len() * 256);
                for (k, n) in kept.iter().zip(nodes) {
                    canvas.write_frame(&mut buf, k, n, per_count, name, style);
                }
                buf
            })
            .collect();
        for t in texts {
            if let Err(e) = self.out.write_all(t.as_bytes()) {
                self.error = Some(e);
                return;
            }
        }
    }
}

/// A frame's name without the annotation inferno hides (`_[k]`, `_[w]`,
/// `_[i]`, `_[j]`).
fn deannotate(f: &str) -> &str {
    match f.as_bytes() {
        [.., b'_', b'[', b'k' | b'w' | b'i' | b'j', b']'] => &f[..f.len() - 4],
        _ => f,
    }
}

/// Appends `text` escaped for XML text and attributes (`<`, `>`, `&`, `'`,
/// `"`), as inferno's writer escapes them.
fn escape_into(buf: &mut String, text: &str) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let with = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\'' => "&apos;",
            b'"' => "&quot;",
            _ => continue,
        };
        buf.push_str(&text[last..i]);
        buf.push_str(with);
        last = i + 1;
    }
    buf.push_str(&text[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_hidden_as_inferno_hides_them() {
        assert_eq!(deannotate("read_[k]"), "read");
        assert_eq!(deannotate("f_[j]"), "f");
        assert_eq!(deannotate("f_[l]"), "f_[l]");
        assert_eq!(deannotate("f_[lj]"), "f_[lj]");
        assert_eq!(deannotate("[k]"), "[k]");
        assert_eq!(deannotate("_[k]"), "");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&'\"c");
        assert_eq!(s, "a&lt;b&gt;&amp;&apos;&quot;c");
    }
}
