//! nflame-render: profiles to interactive SVG flame graphs.
//!
//! Drawing is inferno's (`default-features = false`: only the flame graph
//! writer): its SVG has search, zoom and tooltips. This crate turns nflame's
//! [`Profile`] and [`Diff`] into the sorted folded lines inferno wants, maps
//! nflame's options onto inferno's, and names what went wrong. It does no I/O
//! of its own: the caller hands it a writer (an atomic output, usually).
//!
//! One profile is drawn here ([`render_profile`], [`render_lines`]); a
//! differential graph ([`render_diff`]) goes through the private
//! `differential` module, stage by stage: inferno's line order and layout
//! recomputed on the diff's tree of stacks, the colour scale, and the
//! rewriting of inferno's SVG; [`html`] writes the one-file HTML page.

mod differential;
pub mod html;
mod kinds;
mod titles;

use std::io::Write;

use inferno::flamegraph::{self, color::Palette, Direction};
use nflame_profile::diff::Diff;
use nflame_profile::embed::{self, Context};
use nflame_profile::folded::OrderedLines;
use nflame_profile::tree::StackTree;
use nflame_profile::unit::pow10;
use nflame_profile::{Measure, Profile};

/// nflame's version, as stored in every SVG.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// A combination of options this graph cannot honour.
    #[error("not available: {0}")]
    Unsupported(String),
    /// inferno failed, or writing the SVG failed (the cause is the source).
    #[error("cannot write the flame graph")]
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
    /// What a count is called in tooltips. Default is `None`: the profile's
    /// unit (`samples`, `µs`).
    pub count_name: Option<String>,
    /// Colours from a hash of the frame name, so the same input gives a
    /// byte-identical SVG. Default is false (inferno's seeded random colours).
    pub deterministic: bool,
    /// Free text stored in the SVG. Default is empty.
    pub notes: String,
    /// Multiplier applied to counts in tooltips (for fixed-point counts; a
    /// profile's own decimals are taken care of). Default is 1.
    pub factor: f64,
    /// For differential input: colour by BEFORE − AFTER instead. Default is false.
    pub negate_differentials: bool,
    /// What the profile is a recording of. It is stored in the SVG's
    /// `<metadata>` (with the profile itself) and, when `subtitle` is `None`,
    /// shown as the subtitle. Default is a context naming only nflame's version.
    pub context: Option<Context>,
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
            count_name: None,
            deterministic: false,
            notes: String::new(),
            factor: 1.0,
            negate_differentials: false,
            context: None,
        }
    }
}

impl RenderOptions {
    fn to_inferno(&self) -> Result<flamegraph::Options<'static>, Error> {
        let palette: Palette = self.palette.parse().map_err(|_| Error::Palette {
            name: self.palette.clone(),
        })?;
        let mut o = flamegraph::Options::default();
        o.colors = palette;
        o.title = self.title.clone();
        o.subtitle = self.subtitle.clone();
        o.image_width = self.width;
        // inferno takes a percentage of the whole (`--minwidth`: "omit
        // functions smaller than <FLOAT> percent"); nflame's is in pixels of
        // the frames' area: the image (1200 pixels when fluid) less inferno's
        // two 10-pixel margins.
        let frames_px = self.width.unwrap_or(1200).saturating_sub(20).max(1) as f64;
        o.min_width = self.min_width * 100.0 / frames_px;
        o.direction = if self.inverted {
            Direction::Inverted
        } else {
            Direction::Straight
        };
        o.reverse_stack_order = self.reverse;
        o.flame_chart = self.flamechart;
        o.count_name = self
            .count_name
            .clone()
            .unwrap_or_else(|| nflame_profile::Unit::Samples.symbol().into());
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
///
/// Frame names, titles and notes may come from profiled processes: control
/// characters in the SVG are replaced by spaces ([`clean_svg`]), so that it
/// is well-formed XML whatever a process called itself.
pub fn render_lines<'a, I, W>(lines: I, opts: &RenderOptions, mut writer: W) -> Result<(), Error>
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
    let mut svg = Vec::with_capacity(1 << 20);
    flamegraph::from_lines(&mut o, lines, &mut svg)?;
    clean_svg(&mut svg);
    writer.write_all(&svg)?;
    Ok(())
}

/// `opts` for counts of `measure`: the unit's name in tooltips (unless the
/// caller named it), and the profile's decimals divided back out.
fn for_measure(opts: &RenderOptions, measure: Measure) -> RenderOptions {
    let mut o = opts.clone();
    if o.count_name.is_none() {
        o.count_name = Some(measure.unit.symbol().into());
    }
    o.factor /= pow10(measure.decimals) as f64;
    o
}

/// Draws stacks in input order, not merged (a flame chart; see
/// [`RenderOptions::flamechart`], which this sets), in their unit.
pub fn render_ordered<W: Write>(
    lines: &OrderedLines,
    opts: &RenderOptions,
    writer: W,
) -> Result<(), Error> {
    let mut o = for_measure(opts, lines.measure);
    o.flamechart = true;
    let texts = lines.texts();
    if lines.measure.decimals == 0 {
        return render_lines(texts.iter().map(String::as_str), &o, writer);
    }
    let mut svg = Vec::with_capacity(1 << 20);
    render_lines(texts.iter().map(String::as_str), &o, &mut svg)?;
    titles::write_exact(&svg, lines.measure, &o, writer)?;
    Ok(())
}

/// Replaces control characters (C0 but tab and line breaks, DEL, C1) in an
/// SVG (UTF-8) by spaces, byte for byte: XML 1.0 forbids most of them, and
/// a terminal showing the file would obey them.
pub fn clean_svg(svg: &mut [u8]) {
    let mut i = 0;
    while i < svg.len() {
        match svg[i] {
            b'\t' | b'\n' | b'\r' => {}
            0..=0x1f | 0x7f => svg[i] = b' ',
            0xc2 if matches!(svg.get(i + 1), Some(0x80..=0x9f)) => {
                svg[i] = b' ';
                svg[i + 1] = b' ';
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
}

/// Draws a profile. The SVG carries the profile and its context (see
/// [`nflame_profile::embed`]), so it can be read back as a profile. Tooltips
/// and the summary give counts in the profile's unit (`µs` for time).
pub fn render_profile<W: Write>(
    profile: &Profile,
    opts: &RenderOptions,
    mut writer: W,
) -> Result<(), Error> {
    let mut buf = itoa_line_buffer(profile);
    {
        use rayon::slice::ParallelSliceMut;
        buf.par_sort_unstable();
    }
    let measure = profile.measure();
    let context = context_for(opts, "profile", profile.total(), measure);
    let o = for_measure(&with_context_subtitle(opts, &context), measure);
    let (svg, meta) = rayon::join(
        || -> Result<Vec<u8>, Error> {
            let mut svg = Vec::with_capacity(1 << 20);
            render_lines(buf.iter().map(String::as_str), &o, &mut svg)?;
            if measure.decimals > 0 {
                // inferno shows whole counts: put the exact ones in.
                let mut exact = Vec::with_capacity(svg.len() + svg.len() / 16);
                titles::write_exact(&svg, measure, &o, &mut exact)?;
                svg = exact;
            }
            if kinds::has_kind_frames(profile.iter().map(|(s, _)| s)) {
                if let Some(coloured) = kinds::colour_kinds(&svg) {
                    svg = coloured;
                }
            }
            Ok(svg)
        },
        || embed::metadata_xml(&context, &[("profile", profile)]),
    );
    embed::write_with_metadata(&mut writer, &svg?, &meta)?;
    Ok(())
}

/// The context to store: the caller's, or one naming nflame's version only;
/// with the total (`samples`) and the measure of the counts, unless the
/// caller gave them.
fn context_for(opts: &RenderOptions, kind: &str, samples: u64, measure: Measure) -> Context {
    let mut c = opts
        .context
        .clone()
        .unwrap_or_else(|| Context::new(VERSION, kind));
    c.kind = kind.to_string();
    if opts.deterministic {
        // The same input must give the same bytes: leave out what names this run.
        c.command = None;
        c.created = None;
    }
    if c.samples.is_none() {
        c.samples = Some(samples);
    }
    if c.unit.is_none() && c.decimals.is_none() {
        c.set_measure(measure);
    }
    c
}

fn with_context_subtitle(opts: &RenderOptions, context: &Context) -> RenderOptions {
    let mut o = opts.clone();
    if o.subtitle.is_none() && opts.context.is_some() {
        o.subtitle = Some(context.summary());
    }
    o
}

/// The profile as inferno's lines, to be sorted. inferno trims each line
/// before checking the order, so a stack is trimmed here too (one whose
/// first frame starts with a blank would sort otherwise on each side).
fn itoa_line_buffer(profile: &Profile) -> Vec<String> {
    profile
        .iter()
        .filter_map(|(s, c)| {
            let s = s.trim_start();
            if s.is_empty() {
                return None;
            }
            let mut line = String::with_capacity(s.len() + 12);
            line.push_str(s);
            line.push(' ');
            line.push_str(&c.to_string());
            Some(line)
        })
        .collect()
}

/// Draws a differential flame graph: widths from AFTER, every frame coloured by
/// the change of its inclusive share (red grew, blue shrank), and stacks that
/// exist only in BEFORE drawn hatched at their BEFORE width. The SVG carries
/// both profiles.
pub fn render_diff<W: Write>(
    diff: &Diff,
    opts: &RenderOptions,
    mut writer: W,
) -> Result<(), Error> {
    let (svg, meta) = rayon::join(
        || -> Result<Vec<u8>, Error> {
            let mut svg = Vec::with_capacity(1 << 20);
            differential::draw(diff, None, opts, &mut svg)?;
            Ok(svg)
        },
        || diff_metadata(diff, opts),
    );
    embed::write_with_metadata(&mut writer, &svg?, &meta)?;
    Ok(())
}

/// [`render_diff`] with the diff's tree ([`Diff::tree`]) and the SVG's
/// metadata ([`diff_metadata`]) computed by the caller, who may need them for
/// other things or compute them alongside other work.
pub fn render_diff_with<W: Write>(
    diff: &Diff,
    tree: &StackTree<'_>,
    metadata: &str,
    opts: &RenderOptions,
    mut writer: W,
) -> Result<(), Error> {
    let mut svg = Vec::with_capacity(1 << 20);
    differential::draw(diff, Some(tree), opts, &mut svg)?;
    embed::write_with_metadata(&mut writer, &svg, metadata)?;
    Ok(())
}

/// Draws the reverse view of a diff: widths from BEFORE (its own counts, so
/// the view's counts and shares are the report's), so stacks that vanished
/// are visible; colours keep their meaning (red grew, blue shrank), by
/// FlameGraph's convention (change of each stack's own samples, with AFTER
/// scaled to BEFORE's total stack by stack).
pub fn render_removed<W: Write>(diff: &Diff, opts: &RenderOptions, writer: W) -> Result<(), Error> {
    let (svg, meta) = rayon::join(
        || -> Result<Vec<u8>, Error> {
            let mut svg = Vec::with_capacity(1 << 20);
            draw_removed(diff, opts, &mut svg)?;
            Ok(svg)
        },
        || diff_metadata(diff, opts),
    );
    write_removed(writer, &svg?, &meta)
}

/// [`render_removed`] with the SVG's metadata ([`diff_metadata`]) computed by
/// the caller.
pub fn render_removed_with<W: Write>(
    diff: &Diff,
    metadata: &str,
    opts: &RenderOptions,
    writer: W,
) -> Result<(), Error> {
    let mut svg = Vec::with_capacity(1 << 20);
    draw_removed(diff, opts, &mut svg)?;
    write_removed(writer, &svg, metadata)
}

fn write_removed<W: Write>(mut writer: W, svg: &[u8], metadata: &str) -> Result<(), Error> {
    embed::write_with_metadata(&mut writer, svg, metadata)?;
    Ok(())
}

fn draw_removed(diff: &Diff, opts: &RenderOptions, svg: &mut Vec<u8>) -> Result<(), Error> {
    let lines = diff.removed_lines();
    let mut o = opts.clone();
    if o.count_name.is_none() {
        o.count_name = Some(diff.measure().unit.symbol().into());
    }
    o.factor *= diff.display_factor();
    o.negate_differentials = !o.negate_differentials;
    if o.subtitle.is_none() {
        o.subtitle = Some(
            "widths = before (what vanished shows); colour = change of each frame's own samples: red grew, blue shrank"
                .into(),
        );
    }
    render_lines(lines.iter().map(String::as_str), &o, svg)
}

/// The metadata of a diff SVG: its context and both profiles (see
/// [`nflame_profile::embed`]).
pub fn diff_metadata(diff: &Diff, opts: &RenderOptions) -> String {
    let mut context = context_for(opts, "diff", diff.after.total(), diff.measure());
    context.samples = None;
    context.decimals = None;
    embed::metadata_xml(
        &context,
        &[("before", &diff.before), ("after", &diff.after)],
    )
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
        assert!(
            s.contains("leaf (30 samples, 75.00%)"),
            "{}",
            &s[..2000.min(s.len())]
        );
        assert_eq!(s, svg(&p, &o), "deterministic output differs");
    }

    /// Names from targets: control characters never reach the SVG, and a
    /// stack starting with a blank sorts as inferno sorts it (issue 17).
    #[test]
    fn control_characters_and_leading_blanks() {
        let p = Profile::from_stacks([
            ("a\x1b[31m<b>x</b>;f\u{9b}g", 3),
            (" zzz;main", 2),
            ("aaa;main", 1),
        ]);
        let o = RenderOptions {
            subtitle: Some("pid 1 (a\x1bb\x7f)".into()),
            deterministic: true,
            ..Default::default()
        };
        let s = svg(&p, &o);
        assert!(!s.contains(|c: char| c.is_control() && !"\n\r\t".contains(c)));
        assert!(s.contains("a [31m&lt;b&gt;x&lt;/b&gt;"), "{s}");
        assert!(s.contains("zzz"));
        let d = Diff::new(p.clone(), p, &DiffOptions::default()).unwrap();
        let mut out = Vec::new();
        render_diff(&d, &o, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains(|c: char| c.is_control() && !"\n\r\t".contains(c)));
    }

    #[test]
    fn units_and_exact_fractions_in_tooltips() {
        use nflame_profile::unit::Count;
        let mut p = Profile::with_unit(nflame_profile::Unit::Microseconds);
        p.add("main;read", 1500);
        p.add("main;poll", 500);
        let o = RenderOptions {
            deterministic: true,
            ..Default::default()
        };
        let s = svg(&p, &o);
        assert!(s.contains("<title>read (1,500 µs, 75.00%)</title>"), "{s}");
        assert!(s.contains("<title>all (2,000 µs, 100%)</title>"));
        let e = nflame_profile::embed::extract(&s, std::path::Path::new("t.svg")).unwrap();
        assert_eq!(e.get("profile").unwrap(), &p);
        assert_eq!(e.context.unwrap().measure(), p.measure());
        // Fractions: inferno would round 1.5 to 2 (and 40% to 53.33%).
        let mut f = Profile::new();
        f.add_count(
            "main;a",
            Count {
                value: 15,
                decimals: 1,
            },
        )
        .unwrap();
        f.add_count("main;b", Count::whole(1234)).unwrap();
        f.add_count("main;c", Count::whole(1)).unwrap();
        let s = svg(&f, &o);
        assert!(s.contains("<title>a (1.5 samples, 0.12%)</title>"), "{s}");
        assert!(s.contains("<title>b (1,234 samples, 99.80%)</title>"));
        assert!(s.contains("<title>all (1,236.5 samples, 100%)</title>"));
        // A flame chart of such lines too.
        let mut input = nflame_profile::io::Input::from_reader(
            "t.folded".into(),
            std::io::Cursor::new(b"x;y 0.25\nx;z 0.75\nx;y 1\n".to_vec()),
        )
        .unwrap();
        let (lines, _) =
            nflame_profile::folded::read_ordered_lines(&mut input, &Default::default()).unwrap();
        let mut out = Vec::new();
        render_ordered(&lines, &o, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("<title>z (0.75 samples, 37.50%)</title>"), "{s}");
        assert!(s.contains("<title>y (1 samples, 50.00%)</title>"), "{s}");
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
        assert!(
            a.contains("<title>gone (gone: before 50.00% 50, after 0)</title>"),
            "the honest view draws it hatched"
        );
        assert!(a.contains("fill=\"url(#nflame-gone)\""));
        let mut r = Vec::new();
        render_removed(&d, &o, &mut r).unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.contains("gone ("), "the reverse view shows it");
    }

    fn frame<'a>(svg: &'a str, name: &str) -> (&'a str, &'a str) {
        let key = format!("<g><title>{name} (");
        let i = svg.find(&key).unwrap_or_else(|| panic!("no frame {name}"));
        let rest = &svg[i + "<g><title>".len()..];
        let title = &rest[..rest.find("</title>").unwrap()];
        let f = rest.find("fill=\"").unwrap() + 6;
        let fill = &rest[f..f + rest[f..].find('"').unwrap()];
        (title, fill)
    }

    #[test]
    fn parent_of_grown_children_is_red_by_inclusive_share() {
        // `a` has no samples of its own on either side, but what it calls grew
        // from 50% to 75%: inferno would paint it neutral; nflame paints it red.
        let before = Profile::from_stacks([("main;a;x", 50), ("main;b", 50)]);
        let after = Profile::from_stacks([("main;a;x", 25), ("main;a;y", 50), ("main;b", 25)]);
        let d = Diff::new(before, after, &DiffOptions::default()).unwrap();
        let mut out = Vec::new();
        render_diff(&d, &RenderOptions::default(), &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        let (title, fill) = frame(&svg, "a");
        assert_eq!(
            title,
            "a (before 50.00% 50, after 75.00% 75, inclusive +25.00 pp)"
        );
        assert!(fill.starts_with("rgb(255,"), "{fill}");
        let (title, fill) = frame(&svg, "b");
        assert!(title.ends_with("inclusive -25.00 pp)"), "{title}");
        assert!(fill.ends_with(",255)"), "{fill}");
        // x shrank from 50% to 25%; y is new (+50 pp, the largest change: full red).
        let (_, fill) = frame(&svg, "y");
        assert_eq!(fill, "rgb(255,58,58)");
        let (_, fill) = frame(&svg, "main");
        assert_eq!(fill, "rgb(248,248,248)");
        assert!(
            svg.contains("full colour ±50.00 pp"),
            "the legend gives the scale"
        );
        // The graph carries both profiles.
        let e = nflame_profile::embed::extract(&svg, std::path::Path::new("d.svg")).unwrap();
        assert_eq!(e.get("before").unwrap().total(), 100);
        assert_eq!(e.get("after").unwrap().total(), 100);
        // inferno's interactivity is intact.
        assert!(svg.contains("function search("));
    }

    #[test]
    fn honest_colours_survive_inversion_and_reversal() {
        let before = Profile::from_stacks([("main;a;x", 50), ("main;b", 50)]);
        let after = Profile::from_stacks([("main;a;x", 90), ("main;b", 10)]);
        let d = Diff::new(before, after, &DiffOptions::default()).unwrap();
        for o in [
            RenderOptions {
                inverted: true,
                ..Default::default()
            },
            RenderOptions {
                reverse: true,
                ..Default::default()
            },
        ] {
            let mut out = Vec::new();
            render_diff(&d, &o, &mut out).unwrap();
            let svg = String::from_utf8(out).unwrap();
            let (title, fill) = frame(&svg, "x");
            assert!(title.ends_with("inclusive +40.00 pp)"), "{title}");
            assert!(fill.starts_with("rgb(255,"));
        }
    }
}
