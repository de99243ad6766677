//! The hatch pattern for frames gone after, and (for the tests) rewriting
//! inferno's own differential SVG with nflame's fills and tooltips: the
//! graph held whole, each frame's depth found from its `y`, to check the
//! graph nflame writes against.

use std::io::{self, Write};

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

/// Writes the start of inferno's SVG (up to the frames' container) to the
/// writer, edited: the metadata, which may be most of the file, is written
/// straight to the output, never gathered in memory.
pub(crate) type Head<'a> = dyn Fn(&[u8], &mut dyn Write) -> io::Result<()> + 'a;
