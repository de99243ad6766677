//! Exact counts in the tooltips of a graph whose counts have decimals.
//!
//! inferno rounds the count of every frame to a whole number before it
//! writes `NAME (COUNT UNIT, PCT%)` (and its percentage from the rounded
//! count), which would show `2 µs` for 1.5 µs. Each frame's rectangle keeps
//! its exact width in stored counts (`fg:w`), so the count and the
//! percentage are written again from it. Only graphs of fractional profiles
//! go through here.

use std::io::{self, Write};

use nflame_profile::Measure;

use crate::RenderOptions;

/// Copies inferno's SVG `svg` to `w` with every frame's count and percentage
/// recomputed from its width in stored counts of `measure`; `opts` are the
/// options it was drawn with (their `factor` applied to stored counts).
pub(crate) fn write_exact<W: Write>(
    svg: &[u8],
    measure: Measure,
    opts: &RenderOptions,
    mut w: W,
) -> io::Result<()> {
    let text = std::str::from_utf8(svg).map_err(io::Error::other)?;
    let frames = scan(text);
    // The widest frame is `all`: the total.
    let total = frames.iter().map(|f| f.width).max().unwrap_or(0);
    // The caller's own factor, beyond the profile's decimals.
    let extra = opts.factor * nflame_profile::unit::pow10(measure.decimals) as f64;
    let mut last = 0;
    let mut title = String::new();
    for f in &frames {
        let t = &text[f.title.0..f.title.1];
        let Some(open) = t.rfind(" (") else { continue };
        let rest = &t[open + 2..];
        let Some(space) = rest.find(' ') else {
            continue;
        };
        let Some(comma) = rest.rfind(", ") else {
            continue;
        };
        title.clear();
        title.push_str(&t[..open + 2]);
        if extra == 1.0 {
            push_grouped(&mut title, &measure.format(f.width));
        } else {
            let v = measure.value(f.width) * extra;
            title.push_str(&format!("{v:.4}"));
        }
        title.push_str(&rest[space..comma + 2]);
        if rest[comma + 2..].starts_with("100%") {
            title.push_str(&rest[comma + 2..]);
        } else {
            let pct = if total == 0 {
                0.0
            } else {
                100.0 * f.width as f64 / total as f64
            };
            title.push_str(&format!("{pct:.2}%)"));
        }
        w.write_all(&svg[last..f.title.0])?;
        w.write_all(title.as_bytes())?;
        last = f.title.1;
    }
    w.write_all(&svg[last..])
}

/// `number` (digits, a point and digits) with its whole part grouped by
/// thousands, as inferno writes counts: `12,345.5`.
fn push_grouped(out: &mut String, number: &str) {
    let (int, frac) = match number.find('.') {
        Some(i) => number.split_at(i),
        None => (number, ""),
    };
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
}

/// A frame of inferno's SVG: where its title text is, and its width.
struct Frame {
    title: (usize, usize),
    width: u64,
}

fn scan(svg: &str) -> Vec<Frame> {
    const OPEN: &str = "<g><title>";
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = svg[pos..].find(OPEN) {
        let start = pos + i + OPEN.len();
        let Some(te) = svg[start..].find("</title>") else {
            break;
        };
        let end = start + te;
        let Some(re) = svg[end..].find("/>") else {
            break;
        };
        let rect = &svg[end..end + re];
        pos = end + re;
        let Some(a) = rect.find(" fg:w=\"") else {
            continue;
        };
        let value = &rect[a + 7..];
        let Some(width) = value.find('"').and_then(|q| value[..q].parse::<u64>().ok()) else {
            continue;
        };
        out.push(Frame {
            title: (start, end),
            width,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        let g = |n: &str| {
            let mut s = String::new();
            push_grouped(&mut s, n);
            s
        };
        assert_eq!(g("1"), "1");
        assert_eq!(g("1234"), "1,234");
        assert_eq!(g("1234567.25"), "1,234,567.25");
        assert_eq!(g("123.5"), "123.5");
    }
}
