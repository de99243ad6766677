//! nflame-render: profiles to interactive SVG flame graphs.
//!
//! Drawing is inferno's (`default-features = false`: only the flame graph
//! writer): its SVG has search, zoom and tooltips. This crate turns nflame's
//! [`Profile`] and [`Diff`] into the sorted folded lines inferno wants, maps
//! nflame's options onto inferno's, and names what went wrong. It does no I/O
//! of its own: the caller hands it a writer (an atomic output, usually).

use std::io::Write;

use inferno::flamegraph::{self, color::Palette, Direction};
use nflame_profile::diff::Diff;
use nflame_profile::Profile;

/// Errors of rendering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An unknown palette name.
    #[error("unknown palette {name:?}; choose one of: {}", PALETTES.join(", "))]
    Palette {
        /// The name given.
        name: String,
    },
    /// Nothing to draw.
    #[error("nothing to draw: the profile holds no samples")]
    Empty,
    /// inferno failed, or writing the SVG failed.
    #[error("cannot write the flame graph: {0}")]
    Write(#[from] std::io::Error),
}

/// The palettes inferno offers, by name.
pub const PALETTES: &[&str] = &[
    "hot", "mem", "io", "wakeup", "java", "js", "perl", "python", "rust", "red", "green", "blue",
    "aqua", "yellow", "purple", "orange",
];

/// How to draw a flame graph.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RenderOptions {
    /// Title at the top. Default is "Flame Graph".
    pub title: String,
    /// A second line under the title. Default is none.
    pub subtitle: Option<String>,
    /// Palette name (see [`PALETTES`]). Default is "hot".
    pub palette: String,
    /// Width in pixels; `None` (the default) gives a fluid width.
    pub width: Option<usize>,
    /// Frames narrower than this many pixels are omitted. Default is 0.1.
    pub min_width: f64,
    /// An icicle graph: root at the top. Default is false.
    pub inverted: bool,
    /// Reverse every stack (leaf at the root): who calls the hot leaves. Default is false.
    pub reverse: bool,
    /// A flame chart: stacks in input order (time), not merged. Default is false.
    pub flamechart: bool,
    /// What a count is called in tooltips. Default is "samples".
    pub count_name: String,
    /// Colours from a hash of the frame name, so the same input gives a
    /// byte-identical SVG. Default is false (inferno's seeded random colours).
    pub deterministic: bool,
    /// Free text stored in the SVG. Default is empty.
    pub notes: String,
    /// Multiplier applied to counts in tooltips (for fixed-point counts). Default is 1.
    pub factor: f64,
    /// For differential input: colour by BEFORE − AFTER instead. Default is false.
    pub negate_differentials: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            title: "Flame Graph".into(),
            subtitle: None,
            palette: "hot".into(),
            width: None,
            min_width: 0.1,
            inverted: false,
            reverse: false,
            flamechart: false,
            count_name: "samples".into(),
            deterministic: false,
            notes: String::new(),
            factor: 1.0,
            negate_differentials: false,
        }
    }
}

impl RenderOptions {
    fn to_inferno(&self) -> Result<flamegraph::Options<'static>, Error> {
        let palette: Palette = self
            .palette
            .parse()
            .map_err(|_| Error::Palette {
                name: self.palette.clone(),
            })?;
        let mut o = flamegraph::Options::default();
        o.colors = palette;
        o.title = self.title.clone();
        o.subtitle = self.subtitle.clone();
        o.image_width = self.width;
        o.min_width = self.min_width;
        o.direction = if self.inverted {
            Direction::Inverted
        } else {
            Direction::Straight
        };
        o.reverse_stack_order = self.reverse;
        o.flame_chart = self.flamechart;
        o.count_name = self.count_name.clone();
        o.deterministic = self.deterministic;
        o.notes = self.notes.clone();
        o.factor = self.factor;
        o.negate_differentials = self.negate_differentials;
        Ok(o)
    }

    /// Checks the options without drawing (e.g. before a long recording).
    pub fn validate(&self) -> Result<(), Error> {
        self.to_inferno().map(|_| ())
    }
}

/// Draws folded lines (`stack COUNT` or `stack BEFORE AFTER`) that are already
/// sorted by stack, or in time order for a flame chart.
pub fn render_lines<'a, I, W>(lines: I, opts: &RenderOptions, writer: W) -> Result<(), Error>
where
    I: IntoIterator<Item = &'a str>,
    W: Write,
{
    let mut o = opts.to_inferno()?;
    o.no_sort = true;
    let mut lines = lines.into_iter().peekable();
    if lines.peek().is_none() {
        return Err(Error::Empty);
    }
    flamegraph::from_lines(&mut o, lines, writer)?;
    Ok(())
}

/// Draws a profile.
pub fn render_profile<W: Write>(
    profile: &Profile,
    opts: &RenderOptions,
    writer: W,
) -> Result<(), Error> {
    let mut buf = itoa_line_buffer(profile);
    buf.sort_unstable();
    render_lines(buf.iter().map(String::as_str), opts, writer)
}

fn itoa_line_buffer(profile: &Profile) -> Vec<String> {
    profile
        .iter()
        .map(|(s, c)| {
            let mut line = String::with_capacity(s.len() + 12);
            line.push_str(s);
            line.push(' ');
            line.push_str(&c.to_string());
            line
        })
        .collect()
}

/// Draws a differential flame graph: widths from AFTER, red where a stack grew,
/// blue where it shrank.
pub fn render_diff<W: Write>(diff: &Diff, opts: &RenderOptions, writer: W) -> Result<(), Error> {
    let lines = diff.lines();
    let mut o = opts.clone();
    o.factor *= diff.display_factor();
    render_lines(lines.iter().map(String::as_str), &o, writer)
}

/// Draws the reverse view of a diff: widths from BEFORE, so stacks that
/// vanished are visible; colours keep their meaning (red grew, blue shrank).
pub fn render_removed<W: Write>(diff: &Diff, opts: &RenderOptions, writer: W) -> Result<(), Error> {
    let lines = diff.removed_lines();
    let mut o = opts.clone();
    o.factor *= diff.display_factor();
    o.negate_differentials = !o.negate_differentials;
    render_lines(lines.iter().map(String::as_str), &o, writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nflame_profile::diff::DiffOptions;

    fn svg(p: &Profile, o: &RenderOptions) -> String {
        let mut out = Vec::new();
        render_profile(p, o, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_frames_and_title() {
        let p = Profile::from_stacks([("main;work;leaf", 30), ("main;idle", 10)]);
        let o = RenderOptions {
            title: "T<1>".into(),
            deterministic: true,
            ..Default::default()
        };
        let s = svg(&p, &o);
        assert!(s.contains("T&lt;1&gt;"));
        assert!(s.contains("leaf (30 samples, 75.00%)"), "{}", &s[..2000.min(s.len())]);
        assert_eq!(s, svg(&p, &o), "deterministic output differs");
    }

    #[test]
    fn unknown_palette_is_an_error() {
        let o = RenderOptions {
            palette: "neon".into(),
            ..Default::default()
        };
        let e = o.validate().unwrap_err();
        assert!(e.to_string().contains("neon") && e.to_string().contains("hot"));
    }

    #[test]
    fn removed_view_shows_vanished_stack() {
        let before = Profile::from_stacks([("main;gone", 50), ("main;stay", 50)]);
        let after = Profile::from_stacks([("main;stay", 100)]);
        let d = Diff::new(before, after, &DiffOptions::default()).unwrap();
        let o = RenderOptions::default();
        let mut a = Vec::new();
        render_diff(&d, &o, &mut a).unwrap();
        let a = String::from_utf8(a).unwrap();
        assert!(!a.contains(">gone ("), "the forward view has no width for it");
        let mut r = Vec::new();
        render_removed(&d, &o, &mut r).unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.contains("gone ("), "the reverse view shows it");
    }
}
