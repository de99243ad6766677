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
//! recomputed on the diff's tree of stacks, the colour scale, and the frames
//! written in inferno's form on a page inferno writes (its own frames would
//! only be recoloured, at the cost of holding them all); [`html`] writes the
//! one-file HTML page. Both lay out in two walks of the sorted lines (the
//! private `cut` module): the first finds what the page's start needs (its
//! height, the colours), the second writes the frames as they close; a
//! graph of few frames keeps them from the first walk instead.

mod cut;
mod differential;
mod frames;
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

use cut::{min_samples, RowSource, SortedRows, Survey, Teed};

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

/// The palettes inferno offers, by name, and nflame's `lua`: `hot` for C and
/// kernel frames, greens for frames read from a Lua stack (`_[l]`) and aquas
/// for the functions compiled traces ran (`_[lj]`).
pub const PALETTES: &[&str] = &[
    "hot", "mem", "io", "wakeup", "java", "js", "perl", "python", "rust", "red", "green", "blue",
    "aqua", "yellow", "purple", "orange", "lua",
];

/// The `lua` palette's colour for a Lua frame (`None` for other frames):
/// from a hash of its name, so one function keeps its colour.
fn lua_colour(frame: &str) -> Option<flamegraph::color::Color> {
    use nflame_profile::lua::{LUA_COMPILED_SUFFIX, LUA_SUFFIX};
    let compiled = frame.ends_with(LUA_COMPILED_SUFFIX);
    if !compiled && !frame.ends_with(LUA_SUFFIX) {
        return None;
    }
    // FNV-1a.
    let h = frame.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let v = |shift: u32, span: u64| (h >> shift) as u8 % span as u8;
    Some(if compiled {
        flamegraph::color::Color {
            r: 40 + v(0, 50),
            g: 170 + v(8, 60),
            b: 170 + v(16, 60),
        }
    } else {
        flamegraph::color::Color {
            r: 40 + v(0, 60),
            g: 170 + v(8, 70),
            b: 40 + v(16, 60),
        }
    })
}

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
    /// The most bytes of encoded profiles the SVG embeds (all of its profiles
    /// together); larger ones are written beside it or left out (see
    /// [`nflame_profile::embed`]). `None` embeds any size. Default is
    /// [`embed::DEFAULT_EMBED_LIMIT`] (128 MiB).
    pub embed_limit: Option<u64>,
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
            embed_limit: Some(embed::DEFAULT_EMBED_LIMIT),
        }
    }
}

impl RenderOptions {
    fn to_inferno<'a>(&self) -> Result<flamegraph::Options<'a>, Error> {
        let name = if self.palette == "lua" {
            "hot"
        } else {
            &self.palette
        };
        let palette: Palette = name.parse().map_err(|_| Error::Palette {
            name: self.palette.clone(),
        })?;
        let mut o = flamegraph::Options::default();
        o.colors = palette;
        o.title = self.title.clone();
        o.subtitle = self.subtitle.clone();
        o.image_width = self.width;
        o.min_width = self.min_width_percent();
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

    /// [`RenderOptions::min_width`] as inferno takes it: a percentage of
    /// the whole (`--minwidth`: "omit functions smaller than <FLOAT>
    /// percent"), where nflame's is in pixels of the frames' area: the image
    /// (1200 pixels when fluid) less inferno's two 10-pixel margins.
    fn min_width_percent(&self) -> f64 {
        let frames_px = self.width.unwrap_or(1200).saturating_sub(20).max(1) as f64;
        self.min_width * 100.0 / frames_px
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
    // inferno writes an SVG in small pieces: they are cleaned (and passed
    // on) a buffer at a time.
    let mut clean = std::io::BufWriter::with_capacity(1 << 16, Cleaning::new(&mut writer));
    if opts.palette == "lua" {
        // The `lua` palette: Lua frames' colours chosen first, the rest hot.
        let lines: Vec<&str> = lines.collect();
        let mut map = flamegraph::color::PaletteMap::default();
        for line in &lines {
            let stack = line.rsplit_once(' ').map_or(*line, |(s, _)| s);
            for frame in stack.split(';') {
                if map.get(frame).is_none() {
                    if let Some(c) = lua_colour(frame) {
                        map.insert(frame, c);
                    }
                }
            }
        }
        o.palette_map = Some(&mut map);
        flamegraph::from_lines(&mut o, lines, &mut clean)?;
    } else {
        flamegraph::from_lines(&mut o, lines, &mut clean)?;
    }
    clean
        .into_inner()
        .map_err(|e| Error::Write(e.into_error()))?
        .finish()?;
    Ok(())
}

/// A writer that passes an SVG on with [`clean_svg`] applied as it goes (a
/// C1 character cut between two writes is held back until the next).
struct Cleaning<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// The first byte of a two-byte character ended the last write.
    held: bool,
}

impl<W: Write> Cleaning<W> {
    fn new(inner: W) -> Cleaning<W> {
        Cleaning {
            inner,
            buf: Vec::new(),
            held: false,
        }
    }

    /// Writes the byte held back, if any.
    fn finish(mut self) -> std::io::Result<()> {
        if self.held {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

/// Whether a byte may need [`clean_svg`]: a control character other than
/// tab and line ends, DEL, or the first byte of a C1 character.
fn may_need_cleaning(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f || b == 0xc2
}

/// Whether `data` is already clean, 64 bytes at a time without branches (it
/// nearly always is: only names from targets can bring control characters).
fn is_clean(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(64);
    for chunk in &mut chunks {
        if chunk
            .iter()
            .fold(false, |any, &b| any | may_need_cleaning(b))
        {
            return false;
        }
    }
    !chunks.remainder().iter().any(|&b| may_need_cleaning(b))
}

impl<W: Write> Write for Cleaning<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if !self.held && is_clean(data) {
            self.inner.write_all(data)?;
            return Ok(data.len());
        }
        self.buf.clear();
        if std::mem::take(&mut self.held) {
            self.buf.push(0xc2);
        }
        self.buf.extend_from_slice(data);
        // 0xc2 only ever starts a character: the next write completes it.
        if self.buf.last() == Some(&0xc2) {
            self.buf.pop();
            self.held = true;
        }
        clean_svg(&mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
/// and the summary give counts in the profile's unit (`µs` for time). A
/// profile over [`RenderOptions::embed_limit`] is left out, with a note.
pub fn render_profile<W: Write>(
    profile: &Profile,
    opts: &RenderOptions,
    writer: W,
) -> Result<(), Error> {
    render_profile_with(profile, opts, None, writer).map(|_| ())
}

/// What an SVG carries of its profiles, and what the caller must write
/// beside it.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Carried {
    /// Profiles over [`RenderOptions::embed_limit`], by role, with the file
    /// name the SVG gives them (in its directory) and their gzip folded text,
    /// which the caller writes there ([`embed::Compressed::write_gzip`]).
    pub beside: Vec<(String, String, embed::Compressed)>,
    /// Profiles over the limit that were left out, by role, with their
    /// compressed size in bytes.
    pub omitted: Vec<(String, u64)>,
}

/// Where one profile of an SVG goes.
enum Placement {
    Embedded,
    Beside(String),
    Omitted,
}

/// The profiles `compressed` (role, data) of one SVG, placed as
/// [`RenderOptions::embed_limit`] allows: all embedded if they fit `limit`
/// together, otherwise each beside the SVG as `SIDECAR.ROLE.folded.gz` if
/// `sidecar` names the SVG's file, or left out.
struct Placed<'r> {
    profiles: Vec<(&'r str, Placement, &'r embed::Compressed)>,
}

impl<'r> Placed<'r> {
    fn new(
        compressed: Vec<(&'r str, &'r embed::Compressed)>,
        limit: Option<u64>,
        sidecar: Option<&str>,
    ) -> Placed<'r> {
        let size: u64 = compressed.iter().map(|(_, c)| c.base64_len()).sum();
        let fits = limit.is_none_or(|l| size <= l);
        let profiles = compressed
            .into_iter()
            .map(|(role, c)| {
                let p = match (fits, sidecar) {
                    (true, _) => Placement::Embedded,
                    (false, Some(name)) => Placement::Beside(format!("{name}.{role}.folded.gz")),
                    (false, None) => Placement::Omitted,
                };
                (role, p, c)
            })
            .collect();
        Placed { profiles }
    }

    /// Writes the `<metadata>` elements of `context` and the profiles.
    fn write_metadata(&self, w: &mut dyn Write, context: &Context) -> std::io::Result<()> {
        let list: Vec<(&str, embed::Carried<'_>)> = self
            .profiles
            .iter()
            .map(|(role, p, c)| {
                let how = match p {
                    Placement::Embedded => embed::Carried::Embedded(c),
                    Placement::Beside(name) => embed::Carried::Beside(name, c),
                    Placement::Omitted => embed::Carried::Omitted(c),
                };
                (*role, how)
            })
            .collect();
        embed::write_metadata(w, context, &list)
    }

    fn into_carried(self) -> Carried {
        let mut carried = Carried::default();
        for (role, p, c) in self.profiles {
            match p {
                Placement::Embedded => {}
                Placement::Beside(name) => carried.beside.push((role.to_string(), name, c.clone())),
                Placement::Omitted => carried.omitted.push((role.to_string(), c.len())),
            }
        }
        carried
    }
}

/// Writes the metadata of an SVG.
type MetadataWriter<'a> = &'a dyn Fn(&mut dyn Write) -> std::io::Result<()>;

/// A writer that passes an SVG through to `inner`, with metadata written
/// right after its opening `<svg …>` tag: the SVG is never held whole.
struct WithMetadata<'a, W: Write> {
    inner: W,
    /// The start of the SVG, until the tag's end is seen.
    head: Vec<u8>,
    metadata: Option<MetadataWriter<'a>>,
}

impl<'a, W: Write> WithMetadata<'a, W> {
    fn new(inner: W, metadata: MetadataWriter<'a>) -> WithMetadata<'a, W> {
        WithMetadata {
            inner,
            head: Vec::new(),
            metadata: Some(metadata),
        }
    }

    /// Writes what is pending: without an `<svg` tag, the metadata first.
    fn finish(mut self) -> std::io::Result<()> {
        if let Some(m) = self.metadata.take() {
            m(&mut self.inner)?;
            self.inner.write_all(&self.head)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Write for WithMetadata<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let Some(m) = self.metadata else {
            return self.inner.write(data);
        };
        self.head.extend_from_slice(data);
        if let Some(at) = embed::svg_open_end(&self.head) {
            self.inner.write_all(&self.head[..at])?;
            self.inner.write_all(b"\n")?;
            m(&mut self.inner)?;
            self.inner.write_all(&self.head[at..])?;
            self.head = Vec::new();
            self.metadata = None;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.metadata.is_none() {
            self.inner.flush()?;
        }
        Ok(())
    }
}

/// [`render_profile`], and when the profile is over
/// [`RenderOptions::embed_limit`] and `sidecar` names the SVG's file, the SVG
/// names the file `SIDECAR.profile.folded.gz` beside it, whose content is in
/// the result: the caller writes it.
pub fn render_profile_with<W: Write>(
    profile: &Profile,
    opts: &RenderOptions,
    sidecar: Option<&str>,
    writer: W,
) -> Result<Carried, Error> {
    let measure = profile.measure();
    let context = context_for(opts, "profile", profile.total(), measure);
    let o = for_measure(&with_context_subtitle(opts, &context), measure);
    o.validate()?;
    if opts.flamechart {
        // Sorted stacks drawn as a flame chart (a library caller's choice):
        // inferno takes every line as it comes.
        let mut sorted = profile.sorted();
        sorted.retain(|(_, c)| *c > 0);
        let lines: Vec<String> = sorted.iter().map(|(s, c)| format!("{s} {c}")).collect();
        let mut svg = Vec::with_capacity(1 << 20);
        render_lines(lines.iter().map(String::as_str), &o, &mut svg)?;
        return finish_profile(profile, &o, measure, svg, &context, sidecar, writer);
    }
    // The frames inferno would draw from the sorted lines, in two walks (see
    // `cut`): the first finds the page's height and the names drawn (their
    // colours), the second, unless the first could hold the frames, lays
    // them out again as they are written.
    let rows = ProfileRows::new(profile, opts.reverse);
    let sorted = SortedRows::sort(&rows, false);
    if sorted.total == 0 {
        return Err(Error::Empty);
    }
    let min = min_samples(o.min_width_percent(), sorted.total);
    let mut names: rustc_hash::FxHashSet<&str> = Default::default();
    let mut look = |k: &cut::Kept, _: &cut::Node| {
        names.insert(k.name(&rows));
    };
    // The survey and the profile's compression, side by side. Sorted text
    // compresses better: embed the stacks in the graph's order, copied as
    // the survey reads them.
    let (survey, compressed) = if opts.reverse {
        rayon::join(
            || Survey::walk(&sorted, min, &mut look),
            || embed::compress_profile(profile),
        )
    } else {
        embed::compress_while(measure, |push| {
            // A row's text and width are its stack and count, but for the
            // few stacks inferno reads trimmed.
            let mut each = |i: usize, text: &str, width: u64| {
                if rows.trimmed.binary_search(&(i as u32)).is_ok() {
                    let (stack, count) = profile.stack_at(i);
                    push(stack, count);
                } else {
                    push(text, width);
                }
            };
            let survey = Survey::walk(&Teed::new(&sorted, &mut each), min, &mut look);
            // The stacks without width are not walked: embed them too.
            for i in 0..rows.len() {
                if rows.numbers(i).1 == 0 {
                    let (stack, count) = profile.stack_at(i);
                    push(stack, count);
                }
            }
            survey
        })
    };
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    let colours = palette_colours(&o, names)?;
    let mut oc = o.clone();
    // The page of a flame chart: inferno takes its one line as it comes.
    oc.flamechart = true;
    oc.reverse = false;
    let graph = Graph {
        rows: &rows,
        depth: survey.depth,
        frames: survey.frames(&sorted),
        colours,
        total: sorted.total,
    };
    // The metadata, written first, is the last use of the compressed
    // profile unless it goes beside the SVG: it is freed then.
    let compressed = std::cell::RefCell::new(Some(compressed));
    let carried = std::cell::RefCell::new(Carried::default());
    let metadata = |w: &mut dyn Write| -> std::io::Result<()> {
        let Some(c) = compressed.borrow_mut().take() else {
            return Ok(());
        };
        let placed = Placed::new(vec![("profile", &c)], o.embed_limit, sidecar);
        placed.write_metadata(w, &context)?;
        *carried.borrow_mut() = placed.into_carried();
        Ok(())
    };
    let mut out = WithMetadata::new(writer, &metadata);
    if kinds::has_kind_frames(profile.iter().map(|(s, _)| s)) {
        // Off-CPU and wall-clock graphs: recoloured by kind as a whole (an
        // ancestor decides a frame's colour).
        let mut svg = Vec::with_capacity(1 << 20);
        graph.draw(&oc, &mut svg)?;
        if measure.decimals > 0 {
            let mut exact = Vec::with_capacity(svg.len() + svg.len() / 16);
            titles::write_exact(&svg, measure, &o, &mut exact)?;
            svg = exact;
        }
        if let Some(coloured) = kinds::colour_kinds(&svg) {
            svg = coloured;
        }
        out.write_all(&svg)?;
    } else if measure.decimals > 0 {
        // inferno shows whole counts: put the exact ones in.
        let mut svg = Vec::with_capacity(1 << 20);
        graph.draw(&oc, &mut svg)?;
        titles::write_exact(&svg, measure, &o, &mut out)?;
    } else {
        graph.draw(&oc, &mut out)?;
    }
    out.finish()?;
    Ok(carried.take())
}

/// A flame graph laid out: its rows, the frames inferno would draw (held or
/// to lay out again), their colours by name, and the graph's total.
struct Graph<'g, 'p> {
    rows: &'g ProfileRows<'p>,
    depth: Option<u32>,
    frames: cut::Frames<'g>,
    colours: rustc_hash::FxHashMap<&'p str, String>,
    total: u64,
}

impl Graph<'_, '_> {
    /// Writes the flame graph as inferno draws it with `opts`: on inferno's
    /// page, each frame with inferno's tooltip and its palette's colour (one
    /// per name), control characters cleaned.
    fn draw(&self, opts: &RenderOptions, writer: &mut dyn Write) -> Result<(), Error> {
        let rows = self.rows;
        let name = |k: &cut::Kept| -> &str { k.name(rows) };
        let inferno = opts.to_inferno()?;
        let (factor, count_name) = (inferno.factor, inferno.count_name.as_str());
        let (total, colours) = (self.total, &self.colours);
        let style = |k: &cut::Kept, _: &cut::Node, raw: &str, shown: &str| -> (String, String) {
            let fill = match raw {
                // inferno's greys for FlameGraph's separator frames.
                "--" => "rgb(160,160,160)".to_string(),
                "-" => "rgb(200,200,200)".to_string(),
                _ => colours.get(raw).cloned().unwrap_or_default(),
            };
            let samples = ((k.end - k.start) as f64 * factor).round() as usize;
            let samples_txt = thousands(samples);
            let title = if raw.is_empty() && k.depth == 0 {
                format!("all ({samples_txt} {count_name}, 100%)")
            } else {
                let pct = 100.0 * samples as f64 / (total as f64 * factor);
                format!("{shown} ({samples_txt} {count_name}, {pct:.2}%)")
            };
            (fill, title)
        };
        let canvas = frames::Canvas::new(opts, total, self.depth, false)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, Cleaning::new(writer));
        out.write_all(&canvas.head)?;
        canvas.write_frames(&mut out, &self.frames, &name, &style)?;
        out.into_inner()
            .map_err(|e| Error::Write(e.into_error()))?
            .finish()?;
        Ok(())
    }
}

/// Each of `names`' colour as inferno's palette of `opts` gives it
/// (`rgb(R,G,B)`): inferno draws each once, in a graph of its own, with a
/// palette map it fills (the `lua` palette's Lua frames given first).
fn palette_colours<'n>(
    opts: &RenderOptions,
    distinct: Vec<&'n str>,
) -> Result<rustc_hash::FxHashMap<&'n str, String>, Error> {
    if distinct.is_empty() {
        return Ok(Default::default());
    }
    let mut map = flamegraph::color::PaletteMap::default();
    if opts.palette == "lua" {
        for name in &distinct {
            if let Some(c) = lua_colour(name) {
                map.insert(*name, c);
            }
        }
    }
    // Each name between two others, so that no trimming or count reading
    // touches it.
    let lines: Vec<String> = distinct.iter().map(|n| format!("r;{n};x 1")).collect();
    let mut o = opts.to_inferno()?;
    o.min_width = 0.0;
    o.flame_chart = true;
    o.no_sort = true;
    o.palette_map = Some(&mut map);
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), std::io::sink())?;
    Ok(distinct
        .into_iter()
        .map(|n| {
            let c = map.get(n).unwrap_or_default();
            (n, format!("rgb({},{},{})", c.r, c.g, c.b))
        })
        .collect())
}

/// `n` with a comma between groups of three digits, as inferno writes counts.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A profile's stacks as rows of a flame graph (`stack COUNT`) as inferno
/// reads their lines ([`cut::inferno_text`]), reversed (leaf first) if
/// asked. The stacks are listed (not looked up in the profile) so that the
/// rows' text is one read away.
struct ProfileRows<'p> {
    /// Each stack's text as inferno reads it (or reversed), and its count
    /// (0 for a line inferno skips, empty once trimmed).
    rows: Vec<(&'p str, u64)>,
    reversed: Option<Vec<String>>,
    /// The rows (in order) whose text is not their stack's (trimmed).
    trimmed: Vec<u32>,
}

impl<'p> ProfileRows<'p> {
    fn new(profile: &'p Profile, reverse: bool) -> ProfileRows<'p> {
        let line = |s: &'p str, c: u64| {
            let t = cut::inferno_text(s);
            (t, if t.is_empty() { 0 } else { c })
        };
        match reverse {
            false => {
                let rows: Vec<(&str, u64)> = profile.iter().map(|(s, c)| line(s, c)).collect();
                let trimmed = profile
                    .iter()
                    .zip(&rows)
                    .enumerate()
                    .filter(|(_, ((s, _), (t, _)))| s.len() != t.len())
                    .map(|(i, _)| i as u32)
                    .collect();
                ProfileRows {
                    rows,
                    reversed: None,
                    trimmed,
                }
            }
            true => {
                let reversed: Vec<String> = profile.iter().map(|(s, _)| cut::reversed(s)).collect();
                let rows = profile
                    .iter()
                    .zip(&reversed)
                    .map(|((_, c), r)| ("", if r.is_empty() { 0 } else { c }))
                    .collect();
                ProfileRows {
                    rows,
                    reversed: Some(reversed),
                    trimmed: Vec::new(),
                }
            }
        }
    }
}

impl RowSource for ProfileRows<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn text(&self, i: usize) -> &str {
        match &self.reversed {
            Some(r) => &r[i],
            None => self.rows[i].0,
        }
    }

    fn raw(&self, i: usize) -> [u64; 2] {
        [0, self.rows[i].1]
    }

    fn numbers(&self, i: usize) -> (u64, u64) {
        (0, self.rows[i].1)
    }
}

/// Writes the SVG of a profile drawn from all its lines, with its metadata.
fn finish_profile<W: Write>(
    profile: &Profile,
    o: &RenderOptions,
    measure: Measure,
    mut svg: Vec<u8>,
    context: &Context,
    sidecar: Option<&str>,
    mut writer: W,
) -> Result<Carried, Error> {
    if measure.decimals > 0 {
        let mut exact = Vec::with_capacity(svg.len() + svg.len() / 16);
        titles::write_exact(&svg, measure, o, &mut exact)?;
        svg = exact;
    }
    let compressed = embed::compress_profile(profile);
    let placed = Placed::new(vec![("profile", &compressed)], o.embed_limit, sidecar);
    let at = embed::svg_open_end(&svg).unwrap_or(0);
    writer.write_all(&svg[..at])?;
    writer.write_all(b"\n")?;
    placed.write_metadata(&mut writer, context)?;
    writer.write_all(&svg[at..])?;
    Ok(placed.into_carried())
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

/// Draws a differential flame graph: widths from AFTER, every frame coloured by
/// the change of its inclusive share (red grew, blue shrank), and stacks that
/// exist only in BEFORE drawn hatched at their BEFORE width. The SVG carries
/// both profiles.
pub fn render_diff<W: Write>(diff: &Diff, opts: &RenderOptions, writer: W) -> Result<(), Error> {
    let tree = diff.tree();
    render_diff_to(diff, &tree, opts, None, false, writer)?;
    Ok(())
}

/// [`render_diff`] with the diff's tree ([`Diff::tree`]) given, which the
/// caller may need for other things; profiles over
/// [`RenderOptions::embed_limit`] go beside the SVG as
/// `SIDECAR.before.folded.gz` and `SIDECAR.after.folded.gz` when `sidecar`
/// names its file (the caller writes them). Returns what was set aside and,
/// with `keep_profiles`, both profiles compressed (for another graph of the
/// diff; otherwise they are freed once written). The SVG streams to
/// `writer`: it is never held whole.
pub fn render_diff_to<W: Write>(
    diff: &Diff,
    tree: &StackTree<'_>,
    opts: &RenderOptions,
    sidecar: Option<&str>,
    keep_profiles: bool,
    writer: W,
) -> Result<(Carried, Option<DiffProfiles>), Error> {
    let measure = diff.measure();
    let graph = differential::Graph::new(diff, tree, opts)?;
    let lines = graph.lines(opts)?;
    let context = diff_context(diff, opts);
    // Profiles that surely fit the embedding limit, whatever they compress
    // to, are compressed as they are written; otherwise (or when the caller
    // keeps them) compressed while the survey reads every stack, and placed
    // by their size.
    let most_text: u64 = 64
        + tree
            .stacks()
            .iter()
            .map(|s| {
                let sides = s.counts.iter().filter(|&&c| c > 0).count() as u64;
                sides * (s.text.len() as u64 + 23 + u64::from(measure.decimals))
            })
            .sum::<u64>();
    let as_written = !keep_profiles
        && opts
            .embed_limit
            .is_none_or(|l| embed::base64_bound(most_text) <= l);
    if as_written {
        let surveyed = graph.survey(diff, &lines, opts, None);
        let head = |svg: &[u8], w: &mut dyn Write| -> std::io::Result<()> {
            let at = embed::svg_open_end(svg).unwrap_or(0);
            w.write_all(&svg[..at])?;
            w.write_all(b"\n")?;
            let mut stacks = |side: usize, push: &mut dyn FnMut(&str, u64)| {
                for s in tree.stacks() {
                    if s.counts[side] > 0 {
                        push(s.text, s.counts[side]);
                    }
                }
            };
            embed::write_metadata_compressing(
                w,
                &context,
                &[("before", measure), ("after", measure)],
                &mut stacks,
            )?;
            w.write_all(&svg[at..])
        };
        graph.draw(diff, &lines, surveyed, opts, &head, writer)?;
        return Ok((Carried::default(), None));
    }
    let (surveyed, mut c) = embed::compress_each_while(&[measure, measure], |push| {
        let mut each = |i: usize| {
            let s = &tree.stacks()[i];
            for side in 0..2 {
                if s.counts[side] > 0 {
                    push(side, s.text, s.counts[side]);
                }
            }
        };
        graph.survey(diff, &lines, opts, Some(&mut each))
    });
    let after = c.pop().expect("two profiles");
    let before = c.pop().expect("two profiles");
    let profiles = std::cell::RefCell::new(Some(DiffProfiles { before, after }));
    let carried = std::cell::RefCell::new(Carried::default());
    // The metadata goes straight to the output after the opening tag; the
    // compressed profiles are freed then unless the caller keeps them.
    let head = |svg: &[u8], w: &mut dyn Write| -> std::io::Result<()> {
        let at = embed::svg_open_end(svg).unwrap_or(0);
        w.write_all(&svg[..at])?;
        w.write_all(b"\n")?;
        {
            let kept = profiles.borrow();
            if let Some(p) = kept.as_ref() {
                let placed = p.placed(opts, sidecar);
                placed.write_metadata(w, &context)?;
                *carried.borrow_mut() = placed.into_carried();
            }
        }
        if !keep_profiles {
            profiles.borrow_mut().take();
        }
        w.write_all(&svg[at..])
    };
    graph.draw(diff, &lines, surveyed, opts, &head, writer)?;
    Ok((carried.take(), profiles.take()))
}

/// Draws the reverse view of a diff: widths from BEFORE (its own counts, so
/// the view's counts and shares are the report's), so stacks that vanished
/// are visible; colours keep their meaning (red grew, blue shrank), by
/// FlameGraph's convention (change of each stack's own samples, with AFTER
/// scaled to BEFORE's total stack by stack).
pub fn render_removed<W: Write>(diff: &Diff, opts: &RenderOptions, writer: W) -> Result<(), Error> {
    let tree = diff.tree();
    let profiles = DiffProfiles::of(diff, &tree);
    let svg = draw_removed(diff, opts)?;
    profiles.write(writer, &svg, diff, opts, None)?;
    Ok(())
}

/// Both profiles of a diff, compressed for its SVGs (see
/// [`nflame_profile::embed`]).
#[derive(Debug, Clone)]
pub struct DiffProfiles {
    before: embed::Compressed,
    after: embed::Compressed,
}

impl DiffProfiles {
    /// Compresses both profiles of `diff`, whose tree is `tree`, in the
    /// tree's order.
    pub fn of(diff: &Diff, tree: &StackTree<'_>) -> DiffProfiles {
        let measure = diff.measure();
        let ((), mut c) = embed::compress_each_while(&[measure, measure], |push| {
            for s in tree.stacks() {
                for side in 0..2 {
                    if s.counts[side] > 0 {
                        push(side, s.text, s.counts[side]);
                    }
                }
            }
        });
        let after = c.pop().expect("two profiles");
        let before = c.pop().expect("two profiles");
        DiffProfiles { before, after }
    }

    fn placed(&self, opts: &RenderOptions, sidecar: Option<&str>) -> Placed<'_> {
        Placed::new(
            vec![("before", &self.before), ("after", &self.after)],
            opts.embed_limit,
            sidecar,
        )
    }

    /// Writes `svg`, a graph of `diff` drawn with `opts`, with the context
    /// and both profiles, carried as [`RenderOptions::embed_limit`] allows
    /// (beside the SVG as `SIDECAR.before.folded.gz` and
    /// `SIDECAR.after.folded.gz` if `sidecar` names it).
    pub fn write<W: Write>(
        &self,
        mut writer: W,
        svg: &[u8],
        diff: &Diff,
        opts: &RenderOptions,
        sidecar: Option<&str>,
    ) -> Result<Carried, Error> {
        let context = diff_context(diff, opts);
        let placed = self.placed(opts, sidecar);
        let at = embed::svg_open_end(svg).unwrap_or(0);
        writer.write_all(&svg[..at])?;
        writer.write_all(b"\n")?;
        placed.write_metadata(&mut writer, &context)?;
        writer.write_all(&svg[at..])?;
        writer.flush()?;
        Ok(placed.into_carried())
    }
}

/// Draws the reverse view of `diff` (see [`render_removed`]), without its
/// metadata.
pub fn draw_removed(diff: &Diff, opts: &RenderOptions) -> Result<Vec<u8>, Error> {
    let mut svg = Vec::with_capacity(1 << 20);
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
    render_lines(lines.iter().map(String::as_str), &o, &mut svg)?;
    Ok(svg)
}

/// The context of a diff SVG.
fn diff_context(diff: &Diff, opts: &RenderOptions) -> Context {
    let mut context = context_for(opts, "diff", diff.after.total(), diff.measure());
    context.samples = None;
    context.decimals = None;
    context
}

/// The metadata of a diff SVG: its context and both profiles (see
/// [`nflame_profile::embed`]), all embedded.
pub fn diff_metadata(diff: &Diff, opts: &RenderOptions) -> String {
    embed::metadata_xml(
        &diff_context(diff, opts),
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

    /// The SVG without its embedded profiles.
    fn frames_only(svg: &str) -> String {
        let mut out = String::new();
        let mut rest = svg;
        while let Some(i) = rest.find("<metadata id=\"nflame-profile-") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find("</metadata>\n").expect("closed") + i;
            rest = &rest[end + "</metadata>\n".len()..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn cut_lines_draw_the_graph_of_all_lines() {
        // inferno given every line, sorted (how nflame drew before cutting).
        let reference = |p: &Profile, o: &RenderOptions| -> String {
            let measure = p.measure();
            let context = context_for(o, "profile", p.total(), measure);
            let oo = for_measure(&with_context_subtitle(o, &context), measure);
            let mut lines: Vec<String> = p.iter().map(|(s, c)| format!("{s} {c}")).collect();
            lines.sort();
            let mut raw = Vec::new();
            let mut oo = oo.to_inferno().unwrap();
            oo.no_sort = !o.reverse;
            flamegraph::from_lines(&mut oo, lines.iter().map(String::as_str), &mut raw).unwrap();
            // nflame's SVGs are cleaned of control characters.
            clean_svg(&mut raw);
            let mut out = Vec::new();
            let meta = embed::metadata_xml(&context, &[("profile", p)]);
            embed::write_with_metadata(&mut out, &raw, &meta).unwrap();
            frames_only(&String::from_utf8(out).unwrap())
        };
        let (before, after) = crate::differential::tests::tricky();
        let (deep, _) = crate::differential::tests::deep();
        // Frames held from the survey, and laid out again as they are written.
        for (stacks, hold) in [
            (before.clone(), usize::MAX),
            (before, 0),
            (after, 0),
            (deep.clone(), usize::MAX),
            (deep, 0),
        ] {
            cut::set_hold_at_most(hold);
            // A folded file cannot hold a stack whose last frame ends in a
            // number after a blank (it reads as a differential line); inferno
            // reads a reversed stack ending so as one too.
            let readable = |s: &str| {
                let reversed = s.rsplit(';').collect::<Vec<_>>().join(";");
                [s, reversed.as_str()].iter().all(|s| {
                    matches!(
                        nflame_profile::folded::parse_line(&format!("{s} 1")),
                        Ok(nflame_profile::folded::Line::Sample(..))
                    )
                })
            };
            let p = Profile::from_stacks(
                stacks
                    .iter()
                    .filter(|(s, _)| readable(s))
                    .map(|(s, c)| (s.as_str(), *c)),
            );
            let base = RenderOptions {
                deterministic: true,
                ..RenderOptions::default()
            };
            for o in [
                base.clone(),
                RenderOptions {
                    min_width: 0.0,
                    ..base.clone()
                },
                RenderOptions {
                    min_width: 2.0,
                    ..base.clone()
                },
                RenderOptions {
                    min_width: 0.01,
                    width: Some(3000),
                    ..base.clone()
                },
                RenderOptions {
                    inverted: true,
                    ..base.clone()
                },
                RenderOptions {
                    reverse: true,
                    ..base.clone()
                },
                // Only `all` drawn; nothing drawn.
                RenderOptions {
                    min_width: 1150.0,
                    ..base.clone()
                },
                RenderOptions {
                    min_width: 1500.0,
                    ..base.clone()
                },
            ] {
                let new = frames_only(&svg(&p, &o));
                let old = reference(&p, &o);
                if new != old {
                    let at = new
                        .bytes()
                        .zip(old.bytes())
                        .position(|(a, b)| a != b)
                        .unwrap_or(new.len().min(old.len()));
                    panic!(
                        "graphs differ at byte {at} ({o:?}):\n new: {}\n old: {}",
                        &new[at.saturating_sub(200)..(at + 200).min(new.len())],
                        &old[at.saturating_sub(200)..(at + 200).min(old.len())]
                    );
                }
            }
        }
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

    /// The `lua` palette: Lua frames green (aqua when compiled), one
    /// colour per function; the rest as `hot`.
    #[test]
    fn lua_palette_colours_lua_frames() {
        let p = Profile::from_stacks([
            ("nginx;ngx_http_lua_run_thread;f@/a.lua:3_[l]", 50),
            ("nginx;ngx_http_lua_run_thread;g@/a.lua:9_[lj]", 50),
        ]);
        let o = RenderOptions {
            palette: "lua".into(),
            deterministic: true,
            ..Default::default()
        };
        let mut svg = Vec::new();
        render_profile(&p, &o, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        let fill_of = |frame: &str| {
            let at = svg.find(&format!("<title>{frame} ")).unwrap();
            let fill = &svg[at..][svg[at..].find("fill=\"rgb(").unwrap() + 10..];
            let nums: Vec<u8> = fill[..fill.find(')').unwrap()]
                .split(',')
                .map(|n| n.trim().parse().unwrap())
                .collect();
            (nums[0], nums[1], nums[2])
        };
        let c = lua_colour("f@/a.lua:3_[l]").unwrap();
        assert_eq!(fill_of("f@/a.lua:3_[l]"), (c.r, c.g, c.b));
        let (r, g, b) = fill_of("g@/a.lua:9_[lj]");
        assert!(g >= 170 && b >= 170 && r < 90, "{r},{g},{b}");
        // C frames keep the hot palette's reds and yellows.
        let (r, _, b) = fill_of("ngx_http_lua_run_thread");
        assert!(r > 200 && b < 60, "{r},{b}");
        assert!(lua_colour("ngx_http_lua_run_thread").is_none());
    }

    /// The SVG is cleaned as it streams: a C1 character split between two
    /// writes is cleaned too, and a lone lead byte at the end is kept.
    #[test]
    fn cleaning_across_writes() {
        let mut out = Vec::new();
        let mut w = Cleaning::new(&mut out);
        for chunk in [&b"a\x1b\xc2"[..], b"\x9bb\xc2", b"\xa9c\xc2"] {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(out, b"a   b\xc2\xa9c\xc2");
    }

    /// Long writes take the fast path when clean and are cleaned wherever
    /// the control character sits (in a whole 64-byte chunk or the rest).
    #[test]
    fn cleaning_long_writes() {
        for at in [0, 63, 64, 100, 199] {
            let mut data = vec![b'x'; 200];
            data[at] = 0x07;
            let mut out = Vec::new();
            let mut w = Cleaning::new(&mut out);
            w.write_all(&data).unwrap();
            w.write_all(b"\tok\n").unwrap();
            w.finish().unwrap();
            let mut want = vec![b'x'; 200];
            want[at] = b' ';
            want.extend_from_slice(b"\tok\n");
            assert_eq!(out, want, "control character at {at}");
        }
        assert!(is_clean("tab\tnew\nline\r é ü".repeat(20).as_bytes()));
        assert!(!is_clean("é\u{85}".repeat(40).as_bytes()));
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
