//! Honest differential flame graphs.
//!
//! FlameGraph and inferno colour a frame of a differential graph by the change
//! of its *own leaf* samples, so a parent whose children grew looks unchanged,
//! and stacks that vanished are not drawn at all. nflame colours every frame
//! by the change of its *inclusive* share (the frame and everything it calls,
//! at that position in the tree), and draws stacks that exist only in BEFORE
//! at their BEFORE width with a hatched fill, so nothing disappears silently.
//!
//! inferno still lays the graph out and writes the SVG (search, zoom); this
//! module feeds it the lines, computes the same layout to know each frame's
//! inclusive BEFORE and AFTER values, and then rewrites each frame's fill and
//! tooltip.

use nflame_profile::diff::{Diff, Scaling};
use rustc_hash::FxHashMap;

use crate::{render_lines, Error, RenderOptions};

/// inferno's frame height (its default; nflame does not change it).
const FRAME_HEIGHT: f64 = 16.0;
const GONE_FILL: &str = "url(#nflame-gone)";
const SCALE_TOKEN: &str = "NFLAME_COLOUR_SCALE";
const GONE_PATTERN: &str = "<defs><pattern id=\"nflame-gone\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"rgb(205,214,238)\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"rgb(70,90,170)\" stroke-width=\"2.5\"/></pattern></defs>\n";

/// Inclusive values of one frame of the layout.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    after: u64,
    before: u64,
}

/// Draws the honest differential graph of `diff` into `svg` (no metadata);
/// the subtitle carries the legend.
pub(crate) fn draw(diff: &Diff, opts: &RenderOptions, svg: &mut Vec<u8>) -> Result<(), Error> {
    if opts.flamechart {
        return Err(Error::Unsupported(
            "a flame chart (time order) of a differential profile".into(),
        ));
    }
    let mut rows: Vec<(String, usize, u64, u64)> = Vec::new();
    for (stack, before, after) in diff.scaled_stacks() {
        let width = if after > 0 { after } else { before };
        if width == 0 {
            continue;
        }
        let stack = if opts.reverse {
            stack.rsplit(';').collect::<Vec<_>>().join(";")
        } else {
            stack.to_string()
        };
        let len = stack.len();
        let mut line = stack;
        line.push(' ');
        line.push_str(itoa::Buffer::new().format(before));
        line.push(' ');
        line.push_str(itoa::Buffer::new().format(width));
        rows.push((line, len, before, after));
    }
    if rows.is_empty() {
        return Err(Error::Empty);
    }
    {
        use rayon::slice::ParallelSliceMut;
        rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    // inferno omits frames narrower than `min_width` pixels: they need no
    // colour. Keep every frame at least half that wide on the widest canvas.
    let total: u64 = rows
        .iter()
        .map(|r| {
            r.0.rsplit(' ')
                .next()
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    let canvas = opts.width.unwrap_or(1200).max(1200) as f64;
    let min_samples = ((opts.min_width * 0.5 / canvas) * total as f64).floor() as u64;

    let per_unit = diff.scaling() == Scaling::PerUnit;
    let factor = diff.display_factor();
    let mut o = opts.clone();
    o.reverse = false;
    o.factor *= factor;
    // The colour scale is known only after the layout, which runs beside
    // inferno: the legend carries a placeholder, replaced afterwards.
    let legend = format!(
        "colour = change of inclusive {}: red grew, blue shrank (full colour {SCALE_TOKEN}); hatched = gone after (drawn at its before width); widths = after",
        if per_unit { "cost per unit" } else { "share" },
    );
    o.subtitle = Some(match &opts.subtitle {
        Some(s) => format!("{s} · {legend}"),
        None => legend,
    });
    let (nodes, raw) = rayon::join(
        || layout(&rows, min_samples),
        || -> Result<String, Error> {
            let mut raw = Vec::with_capacity(1 << 20);
            render_lines(rows.iter().map(|r| r.0.as_str()), &o, &mut raw)?;
            String::from_utf8(raw).map_err(|e| Error::Write(std::io::Error::other(e)))
        },
    );
    let raw = raw?;
    let root = nodes.get(&(0, 0)).copied().unwrap_or_default();
    let change = |n: &Node| -> f64 {
        if per_unit {
            let scale = root.after.max(root.before).max(1) as f64;
            (n.after as f64 - n.before as f64) / scale
        } else {
            share(n.after, root.after) - share(n.before, root.before)
        }
    };
    let max_change = nodes
        .iter()
        .filter(|(k, _)| k.0 > 0)
        .map(|(_, n)| change(n).abs())
        .fold(0.0f64, f64::max);
    let scale = if per_unit {
        format!("{:.2}% of the larger total", max_change * 100.0)
    } else {
        format!("±{:.2} pp", max_change * 100.0)
    };
    let raw = raw.replacen(SCALE_TOKEN, &scale, 1);

    let fmt_count = |c: u64| -> String {
        if factor == 1.0 {
            c.to_string()
        } else {
            format!("{:.4}", c as f64 * factor)
        }
    };
    let recolour = |depth: u32, x: u64, name: &str| -> Option<(String, String)> {
        let n = nodes.get(&(depth, x))?;
        let pb = share(n.before, root.before) * 100.0;
        let pa = share(n.after, root.after) * 100.0;
        if n.after == 0 {
            let title = format!(
                "{name} (gone: before {pb:.2}% {}, after 0)",
                fmt_count(n.before)
            );
            return Some((GONE_FILL.to_string(), title));
        }
        let d = change(n);
        let t = if max_change > 0.0 {
            (d.abs() / max_change).min(1.0)
        } else {
            0.0
        };
        let other = (248.0 - 190.0 * t).round() as u8;
        let fill = if d > 0.0 {
            format!("rgb(255,{other},{other})")
        } else if d < 0.0 {
            format!("rgb({other},{other},255)")
        } else {
            "rgb(248,248,248)".to_string()
        };
        let title = if per_unit {
            format!(
                "{name} (before {} per unit, after {} per unit, change {:+.2}% of the larger total)",
                fmt_count(n.before),
                fmt_count(n.after),
                d * 100.0
            )
        } else {
            format!(
                "{name} (before {pb:.2}% {}, after {pa:.2}% {}, inclusive {:+.2} pp)",
                fmt_count(n.before),
                fmt_count(n.after),
                d * 100.0
            )
        };
        Some((fill, title))
    };
    rewrite(&raw, opts.inverted, &recolour, svg);
    Ok(())
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// The layout inferno computes from sorted lines: every frame keyed by
/// (depth, start offset), depth 0 being the `all` frame, with its inclusive
/// BEFORE and AFTER values.
fn layout(rows: &[(String, usize, u64, u64)], min_samples: u64) -> FxHashMap<(u32, u64), Node> {
    let mut nodes: FxHashMap<(u32, u64), Node> = FxHashMap::default();
    // Open frames by depth: (name, start, node).
    let mut open: Vec<(&str, u64, Node)> = Vec::new();
    let mut time = 0u64;
    for (line, stack_len, before, after) in rows {
        let stack = &line[..*stack_len];
        let width: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let frames = std::iter::once("").chain(stack.split(';'));
        let mut depth = 0usize;
        let mut diverged = false;
        for f in frames {
            if !diverged && depth < open.len() && open[depth].0 == f {
                depth += 1;
                continue;
            }
            if !diverged {
                for (d, (_, start, node)) in open.drain(depth..).enumerate().rev() {
                    if time - start >= min_samples {
                        nodes.insert(((depth + d) as u32, start), node);
                    }
                }
                diverged = true;
            }
            open.push((f, time, Node::default()));
            depth += 1;
        }
        if !diverged {
            // The same stack as the previous line (cannot happen with unique stacks),
            // or a prefix of it: close the deeper frames.
            for (d, (_, start, node)) in open.drain(depth..).enumerate().rev() {
                if time - start >= min_samples {
                    nodes.insert(((depth + d) as u32, start), node);
                }
            }
        }
        for (_, _, node) in open.iter_mut() {
            node.after += after;
            node.before += before;
        }
        time += width;
    }
    for (d, (_, start, node)) in open.drain(..).enumerate() {
        if d == 0 || time - start >= min_samples {
            nodes.insert((d as u32, start), node);
        }
    }
    nodes
}

/// Copies inferno's SVG, replacing each frame's fill and tooltip with what
/// `recolour(depth, x, name)` says, and adds the hatch pattern.
fn rewrite(
    raw: &str,
    inverted: bool,
    recolour: &dyn Fn(u32, u64, &str) -> Option<(String, String)>,
    out: &mut Vec<u8>,
) {
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
            out.extend_from_slice(raw[last..defs_at].as_bytes());
            out.extend_from_slice(GONE_PATTERN.as_bytes());
            last = defs_at;
        }
        let depth_f = if inverted { f.y - root_y } else { root_y - f.y } / FRAME_HEIGHT;
        let depth = depth_f.round().max(0.0) as u32;
        let name = match f.title.rfind(" (") {
            Some(i) => &f.title[..i],
            None => f.title,
        };
        let Some((fill, title)) = (if depth == 0 {
            None
        } else {
            recolour(depth, f.x, name)
        }) else {
            continue;
        };
        out.extend_from_slice(raw[last..f.title_start].as_bytes());
        out.extend_from_slice(title.as_bytes());
        out.extend_from_slice(raw[f.title_end..f.fill_start].as_bytes());
        out.extend_from_slice(fill.as_bytes());
        last = f.fill_end;
    }
    if last <= defs_at && defs_at > 0 {
        out.extend_from_slice(raw[last..defs_at].as_bytes());
        out.extend_from_slice(GONE_PATTERN.as_bytes());
        last = defs_at;
    }
    out.extend_from_slice(raw[last..].as_bytes());
}

/// Where one frame's parts are in inferno's SVG text.
struct FrameRef<'a> {
    start: usize,
    title: &'a str,
    title_start: usize,
    title_end: usize,
    fill_start: usize,
    fill_end: usize,
    y: f64,
    x: u64,
}

impl<'a> FrameRef<'a> {
    fn scan(raw: &'a str) -> Vec<FrameRef<'a>> {
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
