//! Colours for off-CPU and wall-clock graphs: every frame under a kind frame
//! (`[on-cpu]`, `[blocked]`, `[preempted]`, which `nflame record --off-cpu`
//! and `--wall` put after the process frame) takes that kind's colours, so
//! time on the CPU (warm, inferno's palette as drawn), time blocked (blue)
//! and time preempted (violet) are told apart at a glance, and a legend line
//! says so.
//!
//! It works on inferno's SVG after drawing: each frame is a `<g>` with a
//! `<title>`, a `<rect>` with `y`, `fill`, `fg:x` and `fg:w` (its position
//! and width in counts). A frame belongs to a kind frame's subtree when its
//! `[fg:x, fg:x + fg:w)` lies inside the kind frame's and it is further from
//! the root than the kind frame. The shade of each frame stays as inferno
//! chose it (its green channel, which varies by name), mapped into the kind's
//! hue.

/// Frames that start a kind's subtree, and their colours.
const KINDS: [(&str, Kind); 2] = [
    ("[blocked]", Kind::Blocked),
    ("[preempted]", Kind::Preempted),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blocked,
    Preempted,
}

/// A frame as drawn.
#[derive(Debug, Clone, Copy)]
struct Frame {
    y: i64,
    x: u64,
    w: u64,
}

/// Whether stacks of `profile` text carry kind frames worth colouring.
pub(crate) fn has_kind_frames<'a>(mut stacks: impl Iterator<Item = &'a str>) -> bool {
    stacks.any(|s| {
        s.split(';')
            .take(4)
            .any(|f| KINDS.iter().any(|(k, _)| *k == f) || f == "[on-cpu]")
    })
}

/// `svg` with the frames of each kind's subtree recoloured and a legend
/// added, or `None` when it has no kind frames.
pub(crate) fn colour_kinds(svg: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(svg).ok()?;
    let frames: Vec<(&str, usize, Frame)> = frames(text).collect();
    let root_y = frames.iter().find(|(t, _, _)| *t == "all").map(|f| f.2.y)?;
    let kinds: Vec<(Kind, Frame)> = frames
        .iter()
        .filter_map(|(t, _, f)| {
            KINDS
                .iter()
                .find(|(k, _)| *k == *t)
                .map(|(_, kind)| (*kind, *f))
        })
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 256);
    let mut last = 0;
    for (_, fill_at, f) in &frames {
        let kind = kinds.iter().find(|(_, k)| {
            f.x >= k.x && f.x + f.w <= k.x + k.w && (f.y - root_y).abs() >= (k.y - root_y).abs()
        });
        let Some((kind, _)) = kind else { continue };
        // fill="rgb(R,G,B)" at fill_at.
        let rest = &text[*fill_at..];
        let Some(end) = rest.find(')') else { continue };
        let rgb = &rest[4..end];
        let g: u32 = rgb
            .split(',')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let v = g.min(255);
        let colour = match kind {
            Kind::Blocked => format!("rgb({},{},{})", 40 + v / 5, 90 + v / 3, 200 + v / 5),
            Kind::Preempted => format!("rgb({},{},{})", 150 + v / 5, 90 + v / 4, 200 + v / 6),
        };
        out.push_str(&text[last..*fill_at]);
        out.push_str(&colour);
        last = fill_at + end + 1;
    }
    out.push_str(&text[last..]);
    Some(add_legend(out).into_bytes())
}

/// The frames of inferno's SVG: title, byte offset of the `rgb(` of its
/// fill, position.
fn frames(text: &str) -> impl Iterator<Item = (&str, usize, Frame)> {
    let mut at = 0;
    std::iter::from_fn(move || loop {
        let start = at + text[at..].find("<g><title>")? + "<g><title>".len();
        let title_end = start + text[start..].find("</title>")?;
        let rect_end = title_end + text[title_end..].find("/>")?;
        at = rect_end;
        let title = &text[start..title_end];
        // `NAME (N unit, P%)`: the name is before the last ` (`.
        let name = title.rfind(" (").map_or(title, |i| &title[..i]);
        let rect = &text[title_end..rect_end];
        let attr = |key: &str| -> Option<(usize, &str)> {
            let i = rect.find(key)? + key.len();
            let j = i + rect[i..].find('"')?;
            Some((i, &rect[i..j]))
        };
        let (Some((_, y)), Some((fill, _)), Some((_, x)), Some((_, w))) = (
            attr(" y=\""),
            attr(" fill=\""),
            attr(" fg:x=\""),
            attr(" fg:w=\""),
        ) else {
            continue;
        };
        let (Ok(y), Ok(x), Ok(w)) = (y.parse::<f64>(), x.parse::<u64>(), w.parse::<u64>()) else {
            continue;
        };
        let name = name
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let name: &str = match name.as_str() {
            "[blocked]" => "[blocked]",
            "[preempted]" => "[preempted]",
            "[on-cpu]" => "[on-cpu]",
            "all" => "all",
            _ => "",
        };
        return Some((
            name,
            title_end + fill,
            Frame {
                y: y.round() as i64,
                x,
                w,
            },
        ));
    })
}

/// The legend, at the end of the subtitle (or as one): which colour is
/// which kind of time.
fn add_legend(mut svg: String) -> String {
    let legend = "<tspan fill=\"rgb(200,60,20)\">on-CPU warm</tspan>, \
<tspan fill=\"rgb(60,120,230)\">blocked blue</tspan>, \
<tspan fill=\"rgb(170,110,230)\">preempted violet</tspan>";
    if let Some(i) = svg.find("<text id=\"subtitle\"") {
        if let Some(j) = svg[i..].find("</text>") {
            svg.insert_str(i + j, &format!(" · {legend}"));
            return svg;
        }
    }
    if let Some(i) = svg.find("<text id=\"title\"") {
        let text = format!("<text id=\"subtitle\" x=\"50.0000%\" y=\"48.00\">{legend}</text>");
        svg.insert_str(i, &text);
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_frames_are_found_in_stacks() {
        assert!(has_kind_frames(["nginx;[blocked];main"].into_iter()));
        assert!(has_kind_frames(
            ["[container x];nginx;t-1;[on-cpu];main"].into_iter()
        ));
        assert!(!has_kind_frames(["nginx;main;[unknown]"].into_iter()));
    }

    #[test]
    fn each_kind_takes_its_colours_below_its_frame() {
        let mut p = nflame_profile::Profile::with_unit(nflame_profile::Unit::Microseconds);
        p.add("nginx;[on-cpu];main;work", 30);
        p.add("nginx;[blocked];main;epoll_wait;schedule_[k]", 50);
        p.add("nginx;[preempted];main", 5);
        let mut svg = Vec::new();
        crate::render_profile(&p, &crate::RenderOptions::default(), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        let fill = |title: &str, x: u64| -> (u32, u32, u32) {
            let g = svg
                .split("<g><title>")
                .find(|g| g.starts_with(title) && g.contains(&format!("fg:x=\"{x}\"")))
                .unwrap_or_else(|| panic!("{title} at {x}"));
            let rgb = &g[g.find("fill=\"rgb(").unwrap() + 10..];
            let v: Vec<u32> = rgb[..rgb.find(')').unwrap()]
                .split(',')
                .map(|c| c.parse().unwrap())
                .collect();
            (v[0], v[1], v[2])
        };
        // Blocked: blue (blue the largest channel), down to the leaf.
        for (t, x) in [
            ("[blocked] ", 0),
            ("main ", 0),
            ("epoll_wait ", 0),
            ("schedule ", 0),
        ] {
            let (r, g, b) = fill(t, x);
            assert!(b > r && b > g, "{t}: {r},{g},{b}");
        }
        // On the CPU: inferno's warm colours (red the largest), as the
        // process frame above the kinds.
        for (t, x) in [
            ("[on-cpu] ", 50),
            ("main ", 50),
            ("work ", 50),
            ("nginx ", 0),
        ] {
            let (r, _, b) = fill(t, x);
            assert!(r > b, "{t}: {r},_,{b}");
        }
        let (r, g, b) = fill("[preempted] ", 80);
        assert!(b > g && r > g, "preempted: {r},{g},{b}");
        assert!(svg.contains("blocked blue</tspan>"));
    }
}
