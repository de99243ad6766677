//! Rewriting inferno's SVG text: each frame's fill and tooltip replaced, the
//! hatch pattern for frames gone after added, the legend's scale filled in.
//!
//! [`Recolouring`] does it as inferno writes, frame by frame, so the graph
//! is never held whole: inferno writes the frames it keeps in the order the
//! layout closed them ([`crate::cut::layout`] lists them so), so the n-th
//! `<g><title>` is the n-th frame of the list (its `fg:x` is checked).
//! The tests keep the first way, which holds the graph and finds each
//! frame's depth from its `y`.

use std::io::{self, Write};

use crate::cut::Kept;

/// inferno's frame height (its default; nflame does not change it).
#[cfg(test)]
pub(super) const FRAME_HEIGHT: f64 = 16.0;
pub(super) const GONE_FILL: &str = "url(#nflame-gone)";
pub(super) const GONE_PATTERN: &str = "<defs><pattern id=\"nflame-gone\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"rgb(205,214,238)\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"rgb(70,90,170)\" stroke-width=\"2.5\"/></pattern></defs>\n";

/// What a frame at (depth, x) with this name gets instead: (fill, tooltip),
/// a fill of `None` keeping inferno's; or `None` to keep both.
#[cfg(test)]
pub(super) type Recolour<'a> = dyn Fn(u32, u64, &str) -> Option<(Option<String>, String)> + 'a;

/// Copies inferno's SVG, replacing each frame's fill and tooltip with what
/// `recolour(depth, x, name)` says (depth 0 is the `all` frame), and adds the
/// hatch pattern.
#[cfg(test)]
pub(super) fn rewrite(raw: &str, inverted: bool, recolour: &Recolour<'_>, out: &mut Vec<u8>) {
    // The `all` frame (fg:x 0, widest) gives the y of depth 0.
    let frames: Vec<FrameRef<'_>> = FrameRef::scan(raw);
    let root_y = frames
        .iter()
        .filter(|f| f.title.starts_with("all ("))
        .map(|f| f.y)
        .next()
        .unwrap_or(0.0);
    let mut last = 0usize;
    let defs_at = raw.find("<svg id=\"frames\"").unwrap_or(0);
    for f in &frames {
        if f.start >= defs_at && last <= defs_at {
            out.extend_from_slice(&raw.as_bytes()[last..defs_at]);
            out.extend_from_slice(GONE_PATTERN.as_bytes());
            last = defs_at;
        }
        let depth_f = if inverted { f.y - root_y } else { root_y - f.y } / FRAME_HEIGHT;
        let depth = depth_f.round().max(0.0) as u32;
        let name = match f.title.rfind(" (") {
            Some(i) => &f.title[..i],
            None => f.title,
        };
        let Some((fill, title)) = recolour(depth, f.x, name) else {
            continue;
        };
        out.extend_from_slice(&raw.as_bytes()[last..f.title_start]);
        out.extend_from_slice(title.as_bytes());
        match fill {
            Some(fill) => {
                out.extend_from_slice(&raw.as_bytes()[f.title_end..f.fill_start]);
                out.extend_from_slice(fill.as_bytes());
                last = f.fill_end;
            }
            None => last = f.title_end,
        }
    }
    if last <= defs_at && defs_at > 0 {
        out.extend_from_slice(&raw.as_bytes()[last..defs_at]);
        out.extend_from_slice(GONE_PATTERN.as_bytes());
        last = defs_at;
    }
    out.extend_from_slice(&raw.as_bytes()[last..]);
}

/// Where one frame's parts are in inferno's SVG text.
#[cfg(test)]
pub(super) struct FrameRef<'a> {
    pub(super) start: usize,
    pub(super) title: &'a str,
    pub(super) title_start: usize,
    pub(super) title_end: usize,
    pub(super) fill_start: usize,
    pub(super) fill_end: usize,
    pub(super) y: f64,
    pub(super) x: u64,
}

#[cfg(test)]
impl<'a> FrameRef<'a> {
    pub(super) fn scan(raw: &'a str) -> Vec<FrameRef<'a>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(i) = raw[pos..].find("<g><title>") {
            let start = pos + i;
            let title_start = start + "<g><title>".len();
            let Some(te) = raw[title_start..].find("</title>") else {
                break;
            };
            let title_end = title_start + te;
            let Some(re) = raw[title_end..].find("/>") else {
                break;
            };
            let rect = &raw[title_end..title_end + re];
            pos = title_end + re;
            let attr = |name: &str| -> Option<(usize, &str)> {
                let key = format!(" {name}=\"");
                let a = rect.find(&key)? + key.len();
                let b = rect[a..].find('"')? + a;
                Some((title_end + a, &rect[a..b]))
            };
            let (Some((fill_start, fill)), Some((_, y)), Some((_, x))) =
                (attr("fill"), attr("y"), attr("fg:x"))
            else {
                continue;
            };
            let (Ok(y), Ok(x)) = (y.parse::<f64>(), x.parse::<u64>()) else {
                continue;
            };
            out.push(FrameRef {
                start,
                title: &raw[title_start..title_end],
                title_start,
                title_end,
                fill_start,
                fill_end: fill_start + fill.len(),
                y,
                x,
            });
        }
        out
    }
}

/// The text that opens a frame in inferno's SVG, and what closes it.
const FRAME_OPEN: &[u8] = b"<g><title>";
const FRAME_CLOSE: &[u8] = b"</g>";
/// How many bytes [`Recolouring`] gathers before it rewrites them.
const BATCH: usize = 1 << 16;
/// What opens the frames' container, before which the hatch pattern goes.
const FRAMES_OPEN: &[u8] = b"<svg id=\"frames\"";

/// Writes the start of inferno's SVG (up to the frames' container) to the
/// writer, edited: the metadata, which may be most of the file, is written
/// straight to the output, never gathered in memory.
pub(crate) type Head<'a> = dyn Fn(&[u8], &mut dyn Write) -> io::Result<()> + 'a;

/// The fill (`None`: inferno's) and tooltip of a kept frame with this name.
pub(super) type Style<'a> = dyn Fn(&Kept, &str) -> (Option<String>, String) + 'a;

/// A writer that takes inferno's differential SVG and passes it on to `out`
/// with the metadata after the opening `<svg>` tag, the legend's scale, the
/// hatch pattern, and every frame's fill and tooltip from `style(frame,
/// name)` (see the module's documentation).
pub(super) struct Recolouring<'a, W: Write> {
    out: W,
    /// Bytes not written yet: the start of the SVG until the frames, then
    /// at most the frame being received.
    buf: Vec<u8>,
    in_frames: bool,
    head: &'a Head<'a>,
    frames: std::slice::Iter<'a, Kept>,
    style: &'a Style<'a>,
    finders: Finders,
}

/// The searches [`Recolouring`] makes in every frame, prepared once.
struct Finders {
    open: memchr::memmem::Finder<'static>,
    close: memchr::memmem::Finder<'static>,
    title_close: memchr::memmem::Finder<'static>,
    x: memchr::memmem::Finder<'static>,
    fill: memchr::memmem::Finder<'static>,
}

impl<'a, W: Write> Recolouring<'a, W> {
    /// `head` writes the SVG's start (up to the frames' container), edited;
    /// `frames` are the frames drawn, in inferno's order.
    pub(super) fn new(
        out: W,
        head: &'a Head<'a>,
        frames: &'a [Kept],
        style: &'a Style<'a>,
    ) -> Self {
        Recolouring {
            out,
            buf: Vec::with_capacity(1 << 16),
            in_frames: false,
            head,
            frames: frames.iter(),
            style,
            finders: Finders {
                open: memchr::memmem::Finder::new(FRAME_OPEN),
                close: memchr::memmem::Finder::new(FRAME_CLOSE),
                title_close: memchr::memmem::Finder::new(b"</title>"),
                x: memchr::memmem::Finder::new(b" fg:x=\""),
                fill: memchr::memmem::Finder::new(b" fill=\""),
            },
        }
    }

    /// Writes what is left.
    pub(super) fn finish(mut self) -> io::Result<()> {
        self.pass()?;
        if self.in_frames {
            self.out.write_all(&self.buf)?;
        } else {
            (self.head)(&self.buf, &mut self.out)?;
        }
        self.out.flush()
    }

    /// Writes one frame's element with its new fill and tooltip.
    fn frame(&mut self, element: &[u8]) -> io::Result<()> {
        let text = std::str::from_utf8(element).map_err(io::Error::other)?;
        let title_start = FRAME_OPEN.len();
        let f = &self.finders;
        let (Some(te), Some(kept)) = (f.title_close.find(element), self.frames.next()) else {
            return self.out.write_all(element);
        };
        let attr = |key: &memchr::memmem::Finder<'_>| -> Option<(usize, usize)> {
            let a = key.find(&element[te..])? + te + key.needle().len();
            let b = memchr::memchr(b'"', &element[a..])? + a;
            Some((a, b))
        };
        let x = attr(&f.x).and_then(|(a, b)| text[a..b].parse::<u64>().ok());
        debug_assert_eq!(
            x,
            Some(kept.start),
            "inferno's frames and the layout's differ"
        );
        let (Some((fill_start, fill_end)), Some(x)) = (attr(&f.fill), x) else {
            return self.out.write_all(element);
        };
        if x != kept.start {
            return self.out.write_all(element);
        }
        let title = &text[title_start..te];
        let name = match title.rfind(" (") {
            Some(i) => &title[..i],
            None => title,
        };
        let (fill, title) = (self.style)(kept, name);
        self.out.write_all(&element[..title_start])?;
        self.out.write_all(title.as_bytes())?;
        match fill {
            Some(fill) => {
                self.out.write_all(&element[te..fill_start])?;
                self.out.write_all(fill.as_bytes())?;
                self.out.write_all(&element[fill_end..])
            }
            None => self.out.write_all(&element[te..]),
        }
    }
}

impl<W: Write> Write for Recolouring<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.in_frames && self.buf.len() < BATCH {
            // Frames are rewritten a batch at a time.
            return Ok(data.len());
        }
        self.pass()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Recolouring<'_, W> {
    /// Writes what is buffered: the start of the SVG once the frames begin,
    /// then every whole frame, rewritten, and what is between them.
    fn pass(&mut self) -> io::Result<()> {
        if !self.in_frames {
            let Some(at) = memchr::memmem::find(&self.buf, FRAMES_OPEN) else {
                return Ok(());
            };
            let head: Vec<u8> = self.buf.drain(..at).collect();
            (self.head)(&head, &mut self.out)?;
            self.out.write_all(GONE_PATTERN.as_bytes())?;
            self.in_frames = true;
        }
        // Whole frames go out rewritten, and what is between them as it is.
        let buf = std::mem::take(&mut self.buf);
        let mut done = 0;
        loop {
            let rest = &buf[done..];
            let Some(open) = self.finders.open.find(rest) else {
                // Keep what could be the start of a frame's opening.
                let keep = FRAME_OPEN.len().min(rest.len());
                let pass = rest.len() - keep;
                self.out.write_all(&rest[..pass])?;
                done += pass;
                break;
            };
            let Some(close) = self.finders.close.find(&rest[open..]) else {
                self.out.write_all(&rest[..open])?;
                done += open;
                break;
            };
            let end = open + close + FRAME_CLOSE.len();
            self.out.write_all(&rest[..open])?;
            self.frame(&rest[open..end])?;
            done += end;
        }
        self.buf = buf;
        self.buf.drain(..done);
        Ok(())
    }
}
