//! Honest differential flame graphs.
//!
//! FlameGraph and inferno colour a frame of a differential graph by the change
//! of its *own leaf* samples, so a parent whose children grew looks unchanged,
//! and stacks that vanished are not drawn at all. nflame colours every frame
//! by the change of its *inclusive* share (the frame and everything it calls,
//! at that position in the tree), and draws stacks that exist only in BEFORE
//! at their BEFORE width with a hatched fill, so nothing disappears silently.
//!
//! inferno still lays the graph out and writes the SVG (search, zoom). This
//! module computes the same layout first, from the diff's tree of stacks
//! ([`StackTree`]) walked in the order of inferno's sorted lines, to know each
//! frame's inclusive BEFORE and AFTER values and which frames are wide enough
//! to be drawn; feeds inferno the stacks cut to those frames (the same graph
//! from a fraction of the lines); and then rewrites each frame's fill and
//! tooltip.

use nflame_profile::diff::{Diff, Scaling};
use nflame_profile::tree::{StackTree, ROOT};
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
/// the subtitle carries the legend. `tree` is `diff.tree()` when the caller
/// has it already.
pub(crate) fn draw(
    diff: &Diff,
    tree: Option<&StackTree<'_>>,
    opts: &RenderOptions,
    svg: &mut Vec<u8>,
) -> Result<(), Error> {
    if opts.flamechart {
        return Err(Error::Unsupported(
            "a flame chart (time order) of a differential profile".into(),
        ));
    }
    let own;
    let tree = match tree {
        Some(t) => t,
        None => {
            own = diff.tree();
            &own
        }
    };
    // inferno omits frames narrower than `min_width` pixels: they need no
    // colour. Keep every frame at least half that wide on the widest canvas.
    let min_samples = |total: u64| {
        let canvas = opts.width.unwrap_or(1200).max(1200) as f64;
        ((opts.min_width * 0.5 / canvas) * total as f64).floor() as u64
    };
    let (nodes, lines) = if opts.reverse {
        // Reversed stacks (leaf first) share little: sort them as text.
        let lines = SortedLines::new(tree, diff);
        if lines.total == 0 {
            return Err(Error::Empty);
        }
        layout(&lines, min_samples(lines.total))
    } else {
        let lines = TreeLines::new(tree, diff);
        if lines.order.total == 0 {
            return Err(Error::Empty);
        }
        layout(&lines, min_samples(lines.order.total))
    };

    let mut o = diff_options(diff, opts);
    // The lines are in the order inferno must see them, but cut to the frames
    // it draws, so no longer sorted: a flame chart takes them as they come
    // (after reversing them), with no other difference to the graph.
    o.flamechart = true;
    let mut raw = Vec::with_capacity(1 << 20);
    render_lines(lines.iter().rev().map(String::as_str), &o, &mut raw)?;
    let raw = String::from_utf8(raw).map_err(|e| Error::Write(std::io::Error::other(e)))?;
    colour(diff, &raw, &nodes, opts.inverted, svg);
    Ok(())
}

/// inferno's options for a differential graph: no reversal (the lines come
/// reversed already), counts scaled for display, and the colour legend in
/// the subtitle with a placeholder for its scale, known only after the
/// layout.
fn diff_options(diff: &Diff, opts: &RenderOptions) -> RenderOptions {
    let per_unit = diff.scaling() == Scaling::PerUnit;
    let mut o = opts.clone();
    o.reverse = false;
    o.factor *= diff.display_factor();
    let legend = format!(
        "colour = change of inclusive {}: red grew, blue shrank (full colour {SCALE_TOKEN}); hatched = gone after (drawn at its before width); widths = after",
        if per_unit { "cost per unit" } else { "share" },
    );
    o.subtitle = Some(match &opts.subtitle {
        Some(s) => format!("{s} · {legend}"),
        None => legend,
    });
    o
}

/// Writes inferno's graph `raw` into `svg` with every frame of `nodes`
/// coloured by the change of its inclusive share (or cost per unit) and
/// titled with both sides, and the legend's scale filled in.
fn colour(
    diff: &Diff,
    raw: &str,
    nodes: &FxHashMap<(u32, u64), Node>,
    inverted: bool,
    svg: &mut Vec<u8>,
) {
    let per_unit = diff.scaling() == Scaling::PerUnit;
    let factor = diff.display_factor();
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
    rewrite(&raw, inverted, &recolour, svg);
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// Marks a stack (not a node) among the children of a node.
const STACK: u32 = 1 << 31;
/// The frame id of the `all` frame in line frames.
const ALL: u32 = u32::MAX;

/// A child of a prefix: a longer prefix (a node) or a stack, with what the
/// layout needs of it, so that walking the graph reads memory in order.
#[derive(Debug, Clone, Copy, Default)]
struct Item {
    /// The rank of its sort key (see [`FrameKeys`]).
    rank: u32,
    /// Its frame: the node's last frame, the stack's leaf.
    frame: u32,
    /// The node id, or the stack index with [`STACK`] set.
    id: u32,
    /// Graph units of a stack: before, after, width.
    before: u64,
    after: u64,
    width: u64,
}

/// The order of the sort keys of siblings, by frame: `name;` for a node (all
/// its lines start so), `name ` for a stack (its line is `name BEFORE WIDTH`).
struct FrameKeys {
    /// Rank of `name ` and of `name;` among all these keys.
    stack_rank: Vec<u32>,
    node_rank: Vec<u32>,
    /// Whether another frame's name starts with `name `: then the digits of a
    /// stack's counts take part in the order.
    counts_matter: Vec<bool>,
}

/// Compares `a` followed by the byte `sa` with `b` followed by `sb`.
fn compare_with_separator(a: &str, sa: u8, b: &str, sb: u8) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let m = a.len().min(b.len());
    match a[..m].cmp(&b[..m]) {
        Ordering::Equal => {}
        o => return o,
    }
    match a.len().cmp(&b.len()) {
        Ordering::Equal => sa.cmp(&sb),
        Ordering::Less => sa.cmp(&b[m]).then(Ordering::Less),
        Ordering::Greater => a[m].cmp(&sb).then(Ordering::Greater),
    }
}

impl FrameKeys {
    fn new(names: &[&str]) -> FrameKeys {
        let n = names.len();
        let mut keys: Vec<(u32, u8)> = (0..n as u32).flat_map(|f| [(f, b' '), (f, b';')]).collect();
        keys.sort_unstable_by(|x, y| {
            compare_with_separator(names[x.0 as usize], x.1, names[y.0 as usize], y.1)
        });
        let mut stack_rank = vec![0; n];
        let mut node_rank = vec![0; n];
        let mut counts_matter = vec![false; n];
        for (rank, &(f, sep)) in keys.iter().enumerate() {
            let f = f as usize;
            if sep == b' ' {
                stack_rank[f] = rank as u32;
                // Keys starting with `name ` follow it directly.
                if let Some(&(g, _)) = keys.get(rank + 1) {
                    let (name, other) = (names[f].as_bytes(), names[g as usize].as_bytes());
                    counts_matter[f] = other.len() > name.len()
                        && other.starts_with(name)
                        && other[name.len()] == b' ';
                }
            } else {
                node_rank[f] = rank as u32;
            }
        }
        FrameKeys {
            stack_rank,
            node_rank,
            counts_matter,
        }
    }
}

/// The order in which inferno would see the drawn stacks: that of the sorted
/// `stack BEFORE WIDTH` lines. Sorting whole lines is sorting, under every
/// prefix, its stacks (keyed `leaf BEFORE WIDTH`) and longer prefixes (keyed
/// `frame;`) by those keys; the tree holds each prefix once, so only these
/// short keys are compared (by their frames' ranks, mostly), never the long
/// shared prefixes.
struct LineOrder {
    /// Children of node `n`: `items[first[n]..first[n + 1]]`.
    first: Vec<u32>,
    items: Vec<Item>,
    /// The sum of the stacks' widths.
    total: u64,
}

impl LineOrder {
    fn new(tree: &StackTree<'_>, diff: &Diff) -> LineOrder {
        let nodes = tree.nodes();
        let stacks = tree.stacks();
        let names = tree.frames();
        assert!(nodes.len() < STACK as usize && stacks.len() < STACK as usize);
        let keys = FrameKeys::new(names);
        // Graph units of each stack: widths from AFTER or, for stacks gone
        // after, from BEFORE. Stacks without width are not drawn.
        let scaled: Vec<(u64, u64, u64)> = stacks
            .iter()
            .map(|s| {
                let (b, a) = diff.scale_counts(s.counts[0], s.counts[1]);
                (b, a, if a > 0 { a } else { b })
            })
            .collect();
        let mut first = vec![0u32; nodes.len() + 1];
        for n in &nodes[1..] {
            first[n.parent as usize + 1] += 1;
        }
        for (s, r) in stacks.iter().zip(&scaled) {
            if r.2 > 0 {
                first[s.node as usize + 1] += 1;
            }
        }
        for i in 1..first.len() {
            first[i] += first[i - 1];
        }
        let mut fill = first.clone();
        let mut items = vec![Item::default(); first[nodes.len()] as usize];
        let mut total = 0u64;
        for (i, n) in nodes.iter().enumerate().skip(1) {
            let f = &mut fill[n.parent as usize];
            items[*f as usize] = Item {
                rank: keys.node_rank[n.frame as usize],
                frame: n.frame,
                id: i as u32,
                ..Item::default()
            };
            *f += 1;
        }
        for (i, (s, &(before, after, width))) in stacks.iter().zip(&scaled).enumerate() {
            if width > 0 {
                total += width;
                let f = &mut fill[s.node as usize];
                items[*f as usize] = Item {
                    rank: keys.stack_rank[s.leaf as usize],
                    frame: s.leaf,
                    id: i as u32 | STACK,
                    before,
                    after,
                    width,
                };
                *f += 1;
            }
        }
        // Sort the children of every node, nodes side by side.
        let mut groups: Vec<&mut [Item]> = Vec::with_capacity(nodes.len());
        let mut rest = &mut items[..];
        for w in first.windows(2) {
            let (g, r) = rest.split_at_mut((w[1] - w[0]) as usize);
            if g.len() > 1 {
                groups.push(g);
            }
            rest = r;
        }
        {
            use rayon::prelude::*;
            groups.par_iter_mut().with_min_len(64).for_each(|g| {
                let is_stack = |it: &Item| it.id & STACK != 0;
                if g.iter()
                    .any(|it| is_stack(it) && keys.counts_matter[it.frame as usize])
                {
                    g.sort_unstable_by(|a, b| {
                        let tail = |it: &Item| is_stack(it).then_some((it.before, it.width));
                        compare_keys(
                            names[a.frame as usize],
                            tail(a),
                            names[b.frame as usize],
                            tail(b),
                        )
                    });
                } else {
                    g.sort_unstable_by_key(|it| it.rank);
                }
            });
        }
        LineOrder {
            first,
            items,
            total,
        }
    }
}

/// Compares two sibling keys: `name;` for a prefix (`tail` `None`), `name
/// BEFORE WIDTH` for a stack, as the bytes of the whole lines compare.
fn compare_keys(
    na: &str,
    ta: Option<(u64, u64)>,
    nb: &str,
    tb: Option<(u64, u64)>,
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (na.as_bytes(), nb.as_bytes());
    let m = a.len().min(b.len());
    match a[..m].cmp(&b[..m]) {
        Ordering::Equal => {}
        o => return o,
    }
    let sep = |t: Option<(u64, u64)>| if t.is_some() { b' ' } else { b';' };
    if a.len() == b.len() {
        // One stack and one prefix of the same name (two of a kind are never
        // siblings): ' ' sorts before ';'.
        return sep(ta).cmp(&sep(tb));
    }
    // The byte after the shorter name usually decides.
    let (x, y) = if a.len() < b.len() {
        (sep(ta), b[m])
    } else {
        (a[m], sep(tb))
    };
    if x != y {
        return x.cmp(&y);
    }
    let key = |n: &str, t: Option<(u64, u64)>| -> String {
        match t {
            Some((before, width)) => format!("{n} {before} {width}"),
            None => format!("{n};"),
        }
    };
    key(na, ta).cmp(&key(nb, tb))
}

/// A line as inferno will see it, with what the layout needs of it.
struct Line<'a> {
    /// Graph units.
    before: u64,
    after: u64,
    width: u64,
    /// Its frames, `all` not counted.
    depth: usize,
    /// How many leading frames (`all` counted) it shares with the previous line.
    shared: usize,
    /// `cuts[d]`, for `d` from 1 to `depth - 1`: the bytes of its stack up to
    /// its frame `d`, or `None` if inferno cannot take the stack cut there.
    cuts: &'a [Option<usize>],
    /// Which line, for [`Lines::text`].
    index: usize,
}

/// The drawn stacks, in the order of inferno's sorted lines.
trait Lines {
    /// Calls `f` with every line, in order.
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>));
    /// The stack of line `index`.
    fn text(&self, index: usize) -> &str;
}

/// Whether inferno can take a stack cut after `frame`, its frame `depth`:
/// inferno trims lines and skips empty ones and `# ` comments.
fn cuttable(frame: &str, depth: usize) -> bool {
    !frame.ends_with(char::is_whitespace) && !(depth == 1 && (frame.is_empty() || frame == "#"))
}

/// The lines of a tree's stacks, in [`LineOrder`].
struct TreeLines<'t, 'a> {
    tree: &'t StackTree<'a>,
    order: LineOrder,
    /// Per frame id: whether a cut after it is fine at depth 1, and deeper.
    cuttable: Vec<[bool; 2]>,
}

impl<'t, 'a> TreeLines<'t, 'a> {
    fn new(tree: &'t StackTree<'a>, diff: &Diff) -> TreeLines<'t, 'a> {
        TreeLines {
            tree,
            order: LineOrder::new(tree, diff),
            cuttable: tree
                .frames()
                .iter()
                .map(|f| [cuttable(f, 1), cuttable(f, 2)])
                .collect(),
        }
    }
}

impl Lines for TreeLines<'_, '_> {
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>)) {
        let order = &self.order;
        let nodes = self.tree.nodes();
        // The prefixes being walked, with their frames and cuts by depth.
        let mut dfs: Vec<(u32, u32)> = vec![(ROOT, order.first[ROOT as usize])];
        let mut frames = vec![ALL];
        let mut cuts = vec![Some(0)];
        let mut prev: Vec<u32> = Vec::new();
        while let Some(top) = dfs.last_mut() {
            let (node, pos) = *top;
            if pos == order.first[node as usize + 1] {
                dfs.pop();
                frames.pop();
                cuts.pop();
                continue;
            }
            top.1 += 1;
            let item = &order.items[pos as usize];
            frames.push(item.frame);
            if item.id & STACK != 0 {
                let shared = prev.iter().zip(&frames).take_while(|(a, b)| a == b).count();
                f(&Line {
                    before: item.before,
                    after: item.after,
                    width: item.width,
                    depth: frames.len() - 1,
                    shared,
                    cuts: &cuts,
                    index: (item.id & !STACK) as usize,
                });
                prev.clear();
                prev.extend_from_slice(&frames);
                frames.pop();
            } else {
                let depth = cuts.len();
                let ok = self.cuttable[item.frame as usize][usize::from(depth > 1)];
                cuts.push(ok.then_some(nodes[item.id as usize].text_len));
                dfs.push((item.id, order.first[item.id as usize]));
            }
        }
    }

    fn text(&self, index: usize) -> &str {
        self.tree.stacks()[index].text
    }
}

/// The lines of a tree's stacks reversed (leaf first), sorted as text: they
/// share few prefixes, so a tree of them would be as large as their frames.
struct SortedLines {
    /// `stack BEFORE WIDTH`, the stack's length, before, after, width; sorted.
    rows: Vec<(String, usize, u64, u64, u64)>,
    total: u64,
}

impl SortedLines {
    fn new(tree: &StackTree<'_>, diff: &Diff) -> SortedLines {
        let mut rows: Vec<(String, usize, u64, u64, u64)> = tree
            .stacks()
            .iter()
            .filter_map(|s| {
                let (before, after) = diff.scale_counts(s.counts[0], s.counts[1]);
                let width = if after > 0 { after } else { before };
                if width == 0 {
                    return None;
                }
                let mut line = s.text.rsplit(';').collect::<Vec<_>>().join(";");
                let len = line.len();
                line.push(' ');
                line.push_str(itoa::Buffer::new().format(before));
                line.push(' ');
                line.push_str(itoa::Buffer::new().format(width));
                Some((line, len, before, after, width))
            })
            .collect();
        {
            use rayon::slice::ParallelSliceMut;
            rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        let total = rows.iter().map(|r| r.4).sum();
        SortedLines { rows, total }
    }
}

impl Lines for SortedLines {
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>)) {
        let mut prev: Vec<&str> = Vec::new();
        let mut frames: Vec<&str> = Vec::new();
        let mut cuts = vec![Some(0)];
        for (index, (line, len, before, after, width)) in self.rows.iter().enumerate() {
            frames.clear();
            cuts.truncate(1);
            let mut end = 0;
            for frame in line[..*len].split(';') {
                end += frame.len();
                frames.push(frame);
                cuts.push(cuttable(frame, frames.len()).then_some(end));
                end += 1;
            }
            let shared = if index == 0 {
                0
            } else {
                1 + prev.iter().zip(&frames).take_while(|(a, b)| a == b).count()
            };
            f(&Line {
                before: *before,
                after: *after,
                width: *width,
                depth: frames.len(),
                shared,
                cuts: &cuts,
                index,
            });
            std::mem::swap(&mut prev, &mut frames);
        }
    }

    fn text(&self, index: usize) -> &str {
        let (line, len, ..) = &self.rows[index];
        &line[..*len]
    }
}

/// One frame being laid out.
#[derive(Debug, Clone, Copy)]
struct Open {
    start: u64,
    node: Node,
    seq: u32,
}

/// The layout inferno computes from the sorted lines: every frame at least
/// `min_samples` wide keyed by (depth, start offset), depth 0 being the `all`
/// frame, with its inclusive BEFORE and AFTER values; and the lines to give
/// inferno, in order: each stack cut to the frames it will draw, consecutive
/// equal ones merged. Frames narrower than `min_samples` are too narrow for
/// inferno to draw, so the graph is the same, from a fraction of the lines.
fn layout(lines: &dyn Lines, min_samples: u64) -> (FxHashMap<(u32, u64), Node>, Vec<String>) {
    let mut nodes: FxHashMap<(u32, u64), Node> = FxHashMap::default();
    // Whether each frame, numbered as opened, is kept.
    let mut kept: Vec<bool> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut time = 0u64;
    let mut close = |open: &mut Vec<Open>, keep: usize, time: u64, kept: &mut Vec<bool>| {
        while open.len() > keep {
            let o = open.pop().expect("open frame");
            if let Some(p) = open.last_mut() {
                p.node.before += o.node.before;
                p.node.after += o.node.after;
            }
            let depth = open.len();
            if depth == 0 || time - o.start >= min_samples {
                nodes.insert((depth as u32, o.start), o.node);
                kept[o.seq as usize] = true;
            }
        }
    };
    lines.walk(&mut |l| {
        close(&mut open, l.shared, time, &mut kept);
        for _ in open.len()..=l.depth {
            open.push(Open {
                start: time,
                node: Node::default(),
                seq: kept.len() as u32,
            });
            kept.push(false);
        }
        let leaf = open.last_mut().expect("a frame");
        leaf.node.before += l.before;
        leaf.node.after += l.after;
        time += l.width;
    });
    close(&mut open, 0, time, &mut kept);

    // Second walk: the same frames in the same order; cut each stack after its
    // last kept frame (kept frames have kept parents), unless inferno cannot
    // take it cut there: then it gets the whole stack, whose extra frames are
    // as narrow as the first one cut.
    let mut out: Vec<String> = Vec::new();
    // Kept frames of the open frames' prefix, by depth.
    let mut prefix_kept: Vec<usize> = Vec::new();
    let mut seq = 0usize;
    // The line being merged: line index, bytes of its stack (None: all),
    // depth, before, width.
    type Pending = (usize, Option<usize>, usize, u64, u64);
    let mut pending: Option<Pending> = None;
    let flush = |out: &mut Vec<String>, p: Pending| {
        let text = lines.text(p.0);
        let text = p.1.map_or(text, |n| &text[..n]);
        let mut buf = itoa::Buffer::new();
        let mut line = String::with_capacity(text.len() + 24);
        line.push_str(text);
        line.push(' ');
        line.push_str(buf.format(p.3));
        line.push(' ');
        line.push_str(buf.format(p.4));
        out.push(line);
    };
    lines.walk(&mut |l| {
        prefix_kept.truncate(l.shared);
        for d in prefix_kept.len()..=l.depth {
            let k = if d == 0 {
                0
            } else if kept[seq] && prefix_kept[d - 1] == d - 1 {
                d
            } else {
                prefix_kept[d - 1]
            };
            prefix_kept.push(k);
            seq += 1;
        }
        let mut depth = prefix_kept[l.depth].max(1);
        if depth < l.depth && l.cuts[depth].is_none() {
            depth = l.depth;
        }
        let cut = if depth < l.depth { l.cuts[depth] } else { None };
        match &mut pending {
            Some(p) if p.2 == depth && l.shared > depth => {
                p.3 += l.before;
                p.4 += l.width;
            }
            _ => {
                if let Some(p) = pending.take() {
                    flush(&mut out, p);
                }
                pending = Some((l.index, cut, depth, l.before, l.width));
            }
        }
    });
    if let Some(p) = pending.take() {
        flush(&mut out, p);
    }
    (nodes, out)
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

/// The implementation before the tree, string by string, kept to check the
/// tree's layout and graph against.
#[cfg(test)]
mod reference {
    use super::*;

    pub(super) fn draw(diff: &Diff, opts: &RenderOptions, svg: &mut Vec<u8>) -> Result<(), Error> {
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

        let o = diff_options(diff, opts);
        let (nodes, raw) = rayon::join(
            || layout(&rows, min_samples),
            || -> Result<String, Error> {
                let mut raw = Vec::with_capacity(1 << 20);
                render_lines(rows.iter().map(|r| r.0.as_str()), &o, &mut raw)?;
                String::from_utf8(raw).map_err(|e| Error::Write(std::io::Error::other(e)))
            },
        );
        colour(diff, &raw?, &nodes, opts.inverted, svg);
        Ok(())
    }

    /// The layout inferno computes from sorted lines: every frame keyed by
    /// (depth, start offset), depth 0 being the `all` frame, with its inclusive
    /// BEFORE and AFTER values.
    pub(super) fn layout(
        rows: &[(String, usize, u64, u64)],
        min_samples: u64,
    ) -> FxHashMap<(u32, u64), Node> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use nflame_profile::diff::DiffOptions;
    use nflame_profile::Profile;

    fn both(
        before: &[(&str, u64)],
        after: &[(&str, u64)],
        opts: &RenderOptions,
        dopts: &DiffOptions,
    ) {
        let d = Diff::new(
            Profile::from_stacks(before.iter().copied()),
            Profile::from_stacks(after.iter().copied()),
            dopts,
        )
        .unwrap();
        let mut new = Vec::new();
        let mut old = Vec::new();
        let rn = draw(&d, None, opts, &mut new);
        let ro = reference::draw(&d, opts, &mut old);
        assert_eq!(rn.is_ok(), ro.is_ok(), "{rn:?} {ro:?}");
        let (new, old) = (
            String::from_utf8(new).unwrap(),
            String::from_utf8(old).unwrap(),
        );
        if new != old {
            let at = new
                .bytes()
                .zip(old.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(new.len().min(old.len()));
            panic!(
                "graphs differ at byte {at} ({opts:?}, {dopts:?}):\n new: {}\n old: {}",
                &new[at.saturating_sub(200)..(at + 200).min(new.len())],
                &old[at.saturating_sub(200)..(at + 200).min(old.len())]
            );
        }
    }

    type Stacks = Vec<(String, u64)>;

    /// Stacks whose sorted lines are not sorted stacks, frames that extend
    /// sibling names, blanks, recursion, single frames, gone and new stacks.
    fn tricky() -> (Stacks, Stacks) {
        let names = [
            "a",
            "a ",
            "a b",
            "a 1",
            "a 12",
            "a+",
            "a.b",
            "a:x",
            "b",
            "[unknown]",
            "leaf_1",
            "leaf_10",
            "leaf_100",
            "x_[k]",
            "",
            "é",
            "a\tb",
            "#",
        ];
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut seed = 12345u64;
        let mut rnd = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for i in 0..6000 {
            let depth = 1 + rnd(7) as usize;
            let mut frames: Vec<&str> = Vec::new();
            for _ in 0..depth {
                frames.push(names[rnd(names.len() as u64) as usize]);
            }
            // Folded input holds trimmed stacks, which cannot start with `#` (a
            // comment); so do reversed ones.
            let ends = [frames[0], frames[frames.len() - 1]];
            if frames[0].starts_with('#') || ends.iter().any(|f| f.trim() != *f) {
                continue;
            }
            let stack = frames.join(";");
            if stack.is_empty() {
                continue;
            }
            // Skewed counts: a few wide frames, many narrow ones.
            let count = if rnd(10) == 0 {
                1 + rnd(5000)
            } else {
                1 + rnd(20)
            };
            match i % 3 {
                0 => before.push((stack, count)),
                1 => after.push((stack, count)),
                _ => {
                    before.push((stack.clone(), count));
                    after.push((stack, 1 + rnd(40)));
                }
            }
        }
        (before, after)
    }

    #[test]
    fn line_order_is_sorted_lines() {
        let (b, a) = tricky();
        let d = Diff::new(
            Profile::from_stacks(b.iter().map(|(s, c)| (s.as_str(), *c))),
            Profile::from_stacks(a.iter().map(|(s, c)| (s.as_str(), *c))),
            &DiffOptions::default(),
        )
        .unwrap();
        let tree = d.tree();
        let lines = TreeLines::new(&tree, &d);
        let mut walked = Vec::new();
        lines.walk(&mut |l| {
            walked.push(format!("{} {} {}", lines.text(l.index), l.before, l.width))
        });
        let mut sorted = walked.clone();
        sorted.sort();
        for (i, (w, s)) in walked.iter().zip(&sorted).enumerate() {
            assert_eq!(w, s, "line {i}");
        }
    }

    #[test]
    fn tree_graph_is_the_string_graph() {
        let (b, a) = tricky();
        let b: Vec<(&str, u64)> = b.iter().map(|(s, c)| (s.as_str(), *c)).collect();
        let a: Vec<(&str, u64)> = a.iter().map(|(s, c)| (s.as_str(), *c)).collect();
        let base = RenderOptions {
            deterministic: true,
            ..RenderOptions::default()
        };
        let variants = [
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
                inverted: true,
                ..base.clone()
            },
            RenderOptions {
                reverse: true,
                ..base.clone()
            },
            RenderOptions {
                width: Some(3000),
                min_width: 1.0,
                ..base.clone()
            },
        ];
        let dopt = |normalize: bool, sb: Option<f64>, sa: Option<f64>| {
            let mut d = DiffOptions::default();
            d.normalize = normalize;
            d.scale_before = sb;
            d.scale_after = sa;
            d
        };
        let dopts = [
            DiffOptions::default(),
            dopt(false, None, None),
            dopt(true, Some(3.0), Some(70.0)),
            // Tiny per-unit counts round to 0: stacks without width.
            dopt(true, Some(1e9), Some(2e5)),
        ];
        for o in &variants {
            for d in &dopts {
                both(&b, &a, o, d);
            }
        }
        both(&[("x", 1)], &[("y", 1)], &base, &DiffOptions::default());
        both(
            &[("x;y", 3)],
            &[("x;y", 3), ("x", 2)],
            &base,
            &DiffOptions::default(),
        );
    }
}
