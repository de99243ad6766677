//! inferno's layout, computed without inferno.
//!
//! inferno sorts its lines, merges them into frames, and then omits every
//! frame narrower than `min_width`: with a million distinct stacks, most of
//! its time and memory go to frames it never draws, and with deep stacks it
//! holds every frame it draws. This module computes the same layout in one
//! pass over the lines in inferno's order, without their text: every frame
//! wide enough to be drawn, its place, where its name is, and (for a
//! differential graph) its inclusive values. [`crate::frames`] writes them.
//!
//! - [`cmp_lines`] and [`SortedRows`]: stacks in the order of inferno's
//!   sorted lines (`stack COUNT`, or `stack BEFORE WIDTH` for a differential
//!   graph), walked with how many frames each shares with the one before;
//! - [`layout`]: the frames.

use std::cmp::Ordering;

/// A line as inferno will see it, with what the layout needs of it.
pub(crate) struct Line<'a> {
    /// The stack's stored counts, before and after (a flame graph's in `[1]`).
    pub(crate) raw: [u64; 2],
    /// Its width in graph units.
    pub(crate) width: u64,
    /// Its frames, `all` not counted.
    pub(crate) depth: usize,
    /// How many leading frames (`all` counted) it shares with the previous line.
    pub(crate) shared: usize,
    /// Which line, for [`Lines::text`].
    pub(crate) index: usize,
    /// Its row in the rows' source ([`RowSource::text`]).
    pub(crate) source: usize,
    /// Where each of its frames ends in its text (`all` not counted): frame
    /// `d` (from 1) is `text[ends[d - 2] + 1..ends[d - 1]]`.
    pub(crate) ends: &'a [usize],
}

/// The drawn stacks, in the order of inferno's sorted lines.
pub(crate) trait Lines {
    /// Calls `f` with every line, in order.
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>));
}

/// Compares line `a` (stack `a` followed by ` N` for each of `na`) with line
/// `b`, as inferno's sort compares the lines' bytes.
pub(crate) fn cmp_lines(a: &str, na: &[u64], b: &str, nb: &[u64]) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let m = x.len().min(y.len());
    let i = common_prefix(&x[..m], &y[..m]);
    if i < m {
        return x[i].cmp(&y[i]);
    }
    // One stack starts the other: the byte after the shorter one is a blank.
    let next = |s: &[u8]| s.get(m).copied().unwrap_or(b' ');
    match next(x).cmp(&next(y)) {
        Ordering::Equal => {}
        o => return o,
    }
    let tail = |s: &[u8], n: &[u64]| -> Vec<u8> {
        let mut t = s[m..].to_vec();
        for v in n {
            t.push(b' ');
            t.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
        }
        t
    };
    tail(x, na).cmp(&tail(y, nb))
}

pub(crate) use nflame_profile::tree::common_prefix;

/// A stack as inferno reads its line: inferno trims each line, so a stack
/// starting with a blank sorts and draws without it.
pub(crate) fn inferno_text(stack: &str) -> &str {
    stack.trim_start()
}

/// A stack reversed (leaf first) as inferno reverses its line: trimmed,
/// frames in reverse order, trimmed again.
pub(crate) fn reversed(stack: &str) -> String {
    let r = stack.trim().rsplit(';').collect::<Vec<_>>().join(";");
    r.trim_start().to_string()
}

/// Stacks to draw, by index, and what their lines say.
pub(crate) trait RowSource: Sync {
    /// How many rows.
    fn len(&self) -> usize;
    /// Row `i`'s stack, root first.
    fn text(&self, i: usize) -> &str;
    /// Its stored counts, before and after (a flame graph's in `[1]`).
    fn raw(&self, i: usize) -> [u64; 2];
    /// BEFORE in graph units (0 for a flame graph) and the width of its line.
    fn numbers(&self, i: usize) -> (u64, u64);
}

/// The line's first eight bytes, big-endian, zero-padded: most comparisons
/// of lines end there, without reading the text.
fn line_key(text: &str, numbers: &[u64]) -> u64 {
    let mut key = [0u8; 8];
    let t = text.as_bytes();
    let n = t.len().min(8);
    key[..n].copy_from_slice(&t[..n]);
    if n < 8 {
        let mut line = Vec::with_capacity(32);
        for v in numbers {
            line.push(b' ');
            line.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
        }
        let m = line.len().min(8 - n);
        key[n..n + m].copy_from_slice(&line[..m]);
    }
    u64::from_be_bytes(key)
}

/// How many rows ahead [`SortedRows`]'s walk asks for the text it will read.
const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to bring the start of `bytes` into the cache (a hint: it
/// changes no result).
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = bytes.as_ptr().cast::<i8>();
        // SAFETY: a prefetch is a hint that never faults, whatever the address;
        // SSE, which it needs, is part of every x86_64 CPU.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if bytes.len() > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// One row of [`SortedRows`]: its text and width read once, so that sorting
/// and walking the rows never go back to the source for them.
#[derive(Clone, Copy)]
struct Ranked<'s> {
    /// The line's first eight bytes ([`line_key`]).
    key: u64,
    text: &'s str,
    width: u64,
    /// The row's index in the source.
    index: u32,
}

/// Rows in the order of inferno's sorted lines, walked as [`Lines`]. Rows
/// without width are left out (inferno draws nothing for them).
pub(crate) struct SortedRows<'s> {
    source: &'s dyn RowSource,
    /// Rows, in order; `None` when the source's order is theirs (a line's
    /// index is then its row's index in the source).
    order: Option<Vec<Ranked<'s>>>,
    differential: bool,
    /// The sum of the widths.
    pub(crate) total: u64,
}

impl<'s> SortedRows<'s> {
    /// The numbers of a line of BEFORE `before` and width `width`.
    fn line_numbers(&self, before: u64, width: u64) -> ([u64; 2], usize) {
        if self.differential {
            ([before, width], 2)
        } else {
            ([width, 0], 1)
        }
    }

    /// Compares two rows' lines: their text, and only when one stack
    /// starts the other, their numbers (read from the source then).
    fn cmp(&self, a: &Ranked<'_>, b: &Ranked<'_>) -> Ordering {
        a.key.cmp(&b.key).then_with(|| {
            let (x, y) = (a.text.as_bytes(), b.text.as_bytes());
            let m = x.len().min(y.len());
            let i = common_prefix(&x[..m], &y[..m]);
            if i < m {
                return x[i].cmp(&y[i]);
            }
            let before = |r: &Ranked<'_>| {
                if self.differential {
                    self.source.numbers(r.index as usize).0
                } else {
                    0
                }
            };
            let (na, ka) = self.line_numbers(before(a), a.width);
            let (nb, kb) = self.line_numbers(before(b), b.width);
            cmp_lines(a.text, &na[..ka], b.text, &nb[..kb])
        })
    }

    /// Row `i` of `source`, unless it has no width.
    fn rank(source: &'s dyn RowSource, differential: bool, i: usize) -> Option<Ranked<'s>> {
        let (before, width) = source.numbers(i);
        if width == 0 {
            return None;
        }
        let text = source.text(i);
        let key = if differential {
            line_key(text, &[before, width])
        } else {
            line_key(text, &[width])
        };
        Some(Ranked {
            key,
            text,
            width,
            index: i as u32,
        })
    }

    /// The rows of `source` with width, in the source's order.
    fn ranked(source: &'s dyn RowSource, differential: bool) -> Vec<Ranked<'s>> {
        use rayon::prelude::*;
        (0..source.len())
            .into_par_iter()
            .filter_map(|i| SortedRows::rank(source, differential, i))
            .collect()
    }

    /// Sorts the rows of `source` (in parallel) as inferno sorts their lines.
    pub(crate) fn sort(source: &'s dyn RowSource, differential: bool) -> SortedRows<'s> {
        use rayon::prelude::*;
        let mut rows = SortedRows {
            source,
            order: None,
            differential,
            total: 0,
        };
        let mut order = SortedRows::ranked(source, differential);
        order.par_sort_unstable_by(|a, b| rows.cmp(a, b));
        rows.total = order.iter().map(|r| r.width).sum();
        rows.order = Some(order);
        rows
    }

    /// The rows of `source`, which are sorted by their stacks' text: that
    /// is their lines' order but where a stack continues another with a
    /// blank or a control character, which a stable sort puts right. When
    /// no row is out of place (the usual case), the rows are walked in the
    /// source's order and nothing is held for them.
    pub(crate) fn nearly_sorted(source: &'s dyn RowSource, differential: bool) -> SortedRows<'s> {
        let mut rows = SortedRows {
            source,
            order: None,
            differential,
            total: 0,
        };
        let mut sorted = true;
        let mut previous: Option<Ranked<'s>> = None;
        for i in 0..source.len() {
            if i + PREFETCH_AHEAD < source.len() {
                prefetch(source.text(i + PREFETCH_AHEAD).as_bytes());
            }
            let Some(row) = SortedRows::rank(source, differential, i) else {
                continue;
            };
            rows.total += row.width;
            if let Some(p) = &previous {
                if rows.cmp(p, &row) == Ordering::Greater {
                    sorted = false;
                    break;
                }
            }
            previous = Some(row);
        }
        if !sorted {
            let mut order = SortedRows::ranked(source, differential);
            order.sort_by(|a, b| rows.cmp(a, b));
            rows.total = order.iter().map(|r| r.width).sum();
            rows.order = Some(order);
        }
        rows
    }

    /// Line `index` of the walk ([`Line::index`]): the row's index in the
    /// source, its text and width.
    fn line(&self, index: usize) -> (usize, &'s str, u64) {
        match &self.order {
            Some(order) => {
                let r = &order[index];
                (r.index as usize, r.text, r.width)
            }
            None => (index, self.source.text(index), self.source.numbers(index).1),
        }
    }

    /// The rows' indexes in the source, in order.
    #[cfg(test)]
    pub(crate) fn order(&self) -> Vec<u32> {
        match &self.order {
            Some(order) => order.iter().map(|r| r.index).collect(),
            None => (0..self.source.len())
                .filter(|&i| self.source.numbers(i).1 > 0)
                .map(|i| i as u32)
                .collect(),
        }
    }
}

/// The frames of one row of [`SortedRows`] from byte `from` on: where they
/// end, appended to `ends`.
fn frame_ends(text: &[u8], from: usize, ends: &mut Vec<usize>) {
    let mut start = from;
    loop {
        // Frames are short: a plain loop finds their ends fastest.
        let end = text[start..]
            .iter()
            .position(|&b| b == b';')
            .map_or(text.len(), |i| start + i);
        ends.push(end);
        if end == text.len() {
            break;
        }
        start = end + 1;
    }
}

impl<'s> Lines for SortedRows<'s> {
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>)) {
        let mut prev: &'s [u8] = b"";
        // Where each frame of the previous stack ends.
        let mut ends: Vec<usize> = Vec::new();
        let mut first = true;
        let mut visit = |index: usize, row: &Ranked<'s>| {
            let stack: &'s str = row.text;
            let text = stack.as_bytes();
            // Frames shared with the previous stack: those ending before the
            // first byte that differs, and the one ending there if it ends
            // there in both.
            let shared = if first {
                0
            } else {
                let p = common_prefix(prev, text);
                let mut n = ends.partition_point(|&e| e < p);
                if n < ends.len() && ends[n] == p && text.get(p).is_none_or(|&c| c == b';') {
                    n += 1;
                }
                n
            };
            ends.truncate(shared);
            let start = ends.last().map_or(0, |&e| e + 1);
            frame_ends(text, start, &mut ends);
            f(&Line {
                raw: if self.differential {
                    self.source.raw(row.index as usize)
                } else {
                    [0, row.width]
                },
                width: row.width,
                depth: ends.len(),
                shared: if first { 0 } else { shared + 1 },
                index,
                source: row.index as usize,
                ends: &ends,
            });
            first = false;
            prev = text;
        };
        match &self.order {
            Some(order) => {
                for (index, row) in order.iter().enumerate() {
                    // Sorted rows point all over the profile's text: ask for a
                    // later row's text now, so it is in the cache when its
                    // turn comes.
                    if let Some(ahead) = order.get(index + PREFETCH_AHEAD) {
                        prefetch(ahead.text.as_bytes());
                    }
                    visit(index, row);
                }
            }
            None => {
                let n = self.source.len();
                for i in 0..n {
                    if i + PREFETCH_AHEAD < n {
                        prefetch(self.source.text(i + PREFETCH_AHEAD).as_bytes());
                    }
                    if let Some(row) = SortedRows::rank(self.source, self.differential, i) {
                        visit(i, &row);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
impl SortedRows<'_> {
    /// The stack of line `index`.
    pub(crate) fn text(&self, index: usize) -> &str {
        self.line(index).1
    }

    /// BEFORE and the width of line `index` (BEFORE is 0 for a flame graph).
    pub(crate) fn numbers(&self, index: usize) -> (u64, u64) {
        let (row, _, width) = self.line(index);
        if self.differential {
            self.source.numbers(row)
        } else {
            (0, width)
        }
    }
}

/// [`SortedRows`] whose walk also hands each row to `each`, when the walk
/// has just read its text ([`layout`] walks once).
pub(crate) struct Teed<'r, 't> {
    rows: &'r SortedRows<'t>,
    each: std::cell::RefCell<&'r mut Each<'r>>,
}

/// What [`Teed`] hands each row to: its index in the source, its text and
/// its width.
pub(crate) type Each<'a> = dyn FnMut(usize, &str, u64) + 'a;

impl<'r, 't> Teed<'r, 't> {
    /// `each` gets the row's index in the source, text and width.
    pub(crate) fn new(rows: &'r SortedRows<'t>, each: &'r mut Each<'r>) -> Self {
        Teed {
            rows,
            each: std::cell::RefCell::new(each),
        }
    }
}

impl Lines for Teed<'_, '_> {
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>)) {
        let mut each = self.each.borrow_mut();
        self.rows.walk(&mut |l| {
            let (source, text, width) = self.rows.line(l.index);
            each(source, text, width);
            f(l)
        })
    }
}

/// Inclusive values of one frame of the layout: sums of the stored counts of
/// its stacks, exact.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Node {
    pub(crate) after: u64,
    pub(crate) before: u64,
}

/// A frame the layout keeps (inferno would draw it): depth (0 for `all`),
/// start and end, and where its name is: bytes `name.0..name.1` of row
/// `line`'s text ([`RowSource::text`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept {
    pub(crate) depth: u32,
    pub(crate) line: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) name: (u32, u32),
}

impl Kept {
    /// The frame's name, from the rows laid out (empty for `all`).
    pub(crate) fn name<'r>(&self, rows: &'r (impl RowSource + ?Sized)) -> &'r str {
        if self.depth == 0 {
            ""
        } else {
            &rows.text(self.line as usize)[self.name.0 as usize..self.name.1 as usize]
        }
    }
}

/// One frame being laid out.
#[derive(Debug, Clone, Copy)]
struct Open {
    start: u64,
    node: Node,
    line: u32,
    name: (u32, u32),
}

/// The layout inferno computes from the sorted lines: every frame at least
/// `min_samples` wide (inferno draws no narrower one), in the order inferno
/// writes them (as they close), each with its inclusive BEFORE and AFTER
/// values (for a flame graph, AFTER is its width). They are handed to
/// `sink` as they close, a line's at a time, never held. The lines' text is
/// not read: their walk says what is shared and where frames end.
pub(crate) fn layout_each(
    lines: &dyn Lines,
    min_samples: u64,
    sink: &mut dyn FnMut(&[Kept], &[Node]),
) {
    let mut kept: Vec<Kept> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut time = 0u64;
    // inferno lists the frames a line closes from the shallowest to the
    // deepest: they are popped the other way round, then reversed.
    let mut close = |open: &mut Vec<Open>, keep: usize, time: u64| {
        kept.clear();
        nodes.clear();
        while open.len() > keep {
            let o = open.pop().expect("open frame");
            if let Some(p) = open.last_mut() {
                p.node.before += o.node.before;
                p.node.after += o.node.after;
            }
            if time - o.start >= min_samples {
                kept.push(Kept {
                    depth: open.len() as u32,
                    line: o.line,
                    start: o.start,
                    end: time,
                    name: o.name,
                });
                nodes.push(o.node);
            }
        }
        if !kept.is_empty() {
            kept.reverse();
            nodes.reverse();
            sink(&kept, &nodes);
        }
    };
    lines.walk(&mut |l| {
        close(&mut open, l.shared, time);
        for d in open.len()..=l.depth {
            // Frame `d` of the line (`all` at 0 has no name in it).
            let name = match d {
                0 => (0, 0),
                1 => (0, l.ends[0] as u32),
                _ => (l.ends[d - 2] as u32 + 1, l.ends[d - 1] as u32),
            };
            open.push(Open {
                start: time,
                node: Node::default(),
                line: l.source as u32,
                name,
            });
        }
        let leaf = open.last_mut().expect("a frame");
        leaf.node.before += l.raw[0];
        leaf.node.after += l.raw[1];
        time += l.width;
    });
    close(&mut open, 0, time);
}

/// Frames a [`Survey`] holds at most (48 bytes each): the frames of a
/// larger layout are laid out again as they are written
/// ([`Frames::Again`]), never all held.
static HOLD_AT_MOST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1 << 17);

/// See [`HOLD_AT_MOST`].
pub(crate) fn hold_at_most() -> usize {
    HOLD_AT_MOST.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets [`HOLD_AT_MOST`] (tests draw both ways: the graphs are the same).
#[cfg(test)]
pub(crate) fn set_hold_at_most(n: usize) {
    HOLD_AT_MOST.store(n, std::sync::atomic::Ordering::Relaxed)
}

/// A layout's frames, as its page is written: held, or laid out again.
pub(crate) enum Frames<'l> {
    /// All of them, in order, with their inclusive values.
    Held(Vec<Kept>, Vec<Node>),
    /// Too many to hold: these lines are laid out again.
    Again(&'l dyn Lines, u64),
}

impl Frames<'_> {
    /// Hands the frames to `sink`, in order, a batch at a time.
    pub(crate) fn each(&self, sink: &mut dyn FnMut(&[Kept], &[Node])) {
        match self {
            Frames::Held(kept, nodes) => {
                if !kept.is_empty() {
                    sink(kept, nodes)
                }
            }
            Frames::Again(lines, min) => layout_each(*lines, *min, sink),
        }
    }
}

/// What the first walk of a layout learns before its page can start: the
/// depth of its deepest frame (the page's height), and its frames when
/// there are at most [`HOLD_AT_MOST`].
pub(crate) struct Survey {
    /// The deepest frame's depth (`None`: no frame is drawn).
    pub(crate) depth: Option<u32>,
    /// The frames, unless there are more than [`HOLD_AT_MOST`].
    held: Option<(Vec<Kept>, Vec<Node>)>,
    min_samples: u64,
}

impl Survey {
    /// Walks `lines` laid out for frames of `min_samples` (see
    /// [`layout_each`]), showing each frame to `look`.
    pub(crate) fn walk(
        lines: &dyn Lines,
        min_samples: u64,
        look: &mut dyn FnMut(&Kept, &Node),
    ) -> Survey {
        let hold = hold_at_most();
        let mut depth = None;
        let mut held = Some((Vec::new(), Vec::new()));
        layout_each(lines, min_samples, &mut |kept, nodes| {
            for (k, n) in kept.iter().zip(nodes) {
                depth = depth.max(Some(k.depth));
                look(k, n);
            }
            if let Some((k, n)) = &mut held {
                if k.len() + kept.len() > hold {
                    held = None;
                } else {
                    k.extend_from_slice(kept);
                    n.extend_from_slice(nodes);
                }
            }
        });
        Survey {
            depth,
            held,
            min_samples,
        }
    }

    /// The frames: those held, or `lines` (the lines surveyed) to lay out
    /// again.
    pub(crate) fn frames<'l>(self, lines: &'l dyn Lines) -> Frames<'l> {
        match self.held {
            Some((kept, nodes)) => Frames::Held(kept, nodes),
            None => Frames::Again(lines, self.min_samples),
        }
    }
}

/// The fewest counts a frame needs to be kept by [`layout`] for a graph of
/// `total` counts: inferno omits every frame narrower than `min_width`
/// percent of the total, whatever the width of the image. This is its
/// `minwidth_time`, computed as inferno does: the frames kept are exactly the
/// frames it draws.
pub(crate) fn min_samples(min_width: f64, total: u64) -> u64 {
    let widthpertime_pct = 100.0 / total as f64;
    let minwidth_time = min_width / widthpertime_pct;
    // inferno keeps a frame of `w` counts when `w as f64 >= minwidth_time`.
    if minwidth_time.is_finite() && minwidth_time > 0.0 {
        minwidth_time.ceil() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_compare_as_text() {
        let cases: &[(&str, &[u64])] = &[
            ("a", &[5]),
            ("a", &[10]),
            ("a b", &[3]),
            ("a 1x", &[7]),
            ("a;b", &[1]),
            ("a\tb", &[2]),
            ("ab", &[1]),
            ("a", &[1, 2]),
            ("a b", &[1, 20]),
            ("", &[4]),
        ];
        let text = |(s, n): &(&str, &[u64])| {
            let mut t = s.to_string();
            for v in *n {
                t.push_str(&format!(" {v}"));
            }
            t
        };
        for a in cases {
            for b in cases {
                assert_eq!(
                    cmp_lines(a.0, a.1, b.0, b.1),
                    text(a).cmp(&text(b)),
                    "{a:?} {b:?}"
                );
            }
        }
        assert_eq!(common_prefix(b"abcdefghij", b"abcdefghiX"), 9);
        assert_eq!(common_prefix(b"abc", b"abcdef"), 3);
        assert_eq!(common_prefix(b"xbc", b"abc"), 0);
    }

    #[test]
    fn walk_shares_frames_with_the_previous_stack() {
        struct Ones(Vec<&'static str>);
        impl RowSource for Ones {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn text(&self, i: usize) -> &str {
                self.0[i]
            }
            fn raw(&self, _: usize) -> [u64; 2] {
                [0, 1]
            }
            fn numbers(&self, _: usize) -> (u64, u64) {
                (0, 1)
            }
        }
        let rows = Ones(vec![
            "a;b;c", "a;b", "a;bc;d", "a;;x", "a;", "b 1", "a;b;c;d",
        ]);
        let sorted = SortedRows::sort(&rows, false);
        let mut again = rows.0.clone();
        again.sort();
        let again = Ones(again);
        let nearly = SortedRows::nearly_sorted(&again, false);
        let texts = |s: &SortedRows<'_>| -> Vec<String> {
            let mut t = Vec::new();
            s.walk(&mut |l| t.push(s.text(l.index).to_string()));
            assert_eq!(t.len(), s.order().len());
            t
        };
        assert_eq!(texts(&sorted), texts(&nearly));
        let mut seen = Vec::new();
        sorted.walk(&mut |l| {
            let text = sorted.text(l.index);
            seen.push((text.to_string(), l.depth, l.shared, l.ends.to_vec()));
        });
        let expect = |t: &str, shared: usize| {
            let ends: Vec<usize> = t
                .char_indices()
                .filter(|&(_, c)| c == ';')
                .map(|(i, _)| i)
                .chain([t.len()])
                .collect();
            (t.to_string(), ends.len(), shared, ends)
        };
        assert_eq!(
            seen,
            vec![
                expect("a;", 0),
                expect("a;;x", 3),
                expect("a;b", 2),
                expect("a;b;c", 3),
                expect("a;b;c;d", 4),
                expect("a;bc;d", 2),
                expect("b 1", 1),
            ]
        );
    }
}
