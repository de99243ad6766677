//! The drawn stacks as inferno's lines, walked in its order: from the tree
//! (in [`LineOrder`]) or, for reversed stacks, sorted as text; with how many
//! frames each line shares with the previous one and where it may be cut.

use nflame_profile::diff::Diff;
use nflame_profile::tree::{StackTree, ROOT};

use super::order::{LineOrder, ALL, STACK};

/// A line as inferno will see it, with what the layout needs of it.
pub(super) struct Line<'a> {
    /// BEFORE in graph units (the line's text).
    pub(super) before: u64,
    /// The stack's stored counts, before and after.
    pub(super) raw: [u64; 2],
    /// Its width in graph units.
    pub(super) width: u64,
    /// Its frames, `all` not counted.
    pub(super) depth: usize,
    /// How many leading frames (`all` counted) it shares with the previous line.
    pub(super) shared: usize,
    /// `cuts[d]`, for `d` from 1 to `depth - 1`: the bytes of its stack up to
    /// its frame `d`, or `None` if inferno cannot take the stack cut there.
    pub(super) cuts: &'a [Option<usize>],
    /// Which line, for [`Lines::text`].
    pub(super) index: usize,
}

/// The drawn stacks, in the order of inferno's sorted lines.
pub(super) trait Lines {
    /// Calls `f` with every line, in order.
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>));
    /// The stack of line `index`.
    fn text(&self, index: usize) -> &str;
}

/// Whether inferno can take a stack cut after `frame`, its frame `depth`:
/// inferno trims lines and skips empty ones and `# ` comments.
pub(super) fn cuttable(frame: &str, depth: usize) -> bool {
    !frame.ends_with(char::is_whitespace) && !(depth == 1 && (frame.is_empty() || frame == "#"))
}

/// The lines of a tree's stacks, in [`LineOrder`].
pub(super) struct TreeLines<'t, 'a> {
    pub(super) tree: &'t StackTree<'a>,
    pub(super) diff: &'t Diff,
    pub(super) order: LineOrder,
    /// Per frame id: whether a cut after it is fine at depth 1, and deeper.
    pub(super) cuttable: Vec<[bool; 2]>,
}

impl<'t, 'a> TreeLines<'t, 'a> {
    pub(super) fn new(tree: &'t StackTree<'a>, diff: &'t Diff) -> TreeLines<'t, 'a> {
        TreeLines {
            tree,
            diff,
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
                    before: self.diff.scale_counts(item.raw[0], 0).0,
                    raw: item.raw,
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
pub(super) struct SortedLines {
    /// `stack BEFORE WIDTH`, the stack's length, before (graph units), the
    /// stored counts, width; sorted.
    pub(super) rows: Vec<(String, usize, u64, [u64; 2], u64)>,
    pub(super) total: u64,
}

impl SortedLines {
    pub(super) fn new(tree: &StackTree<'_>, diff: &Diff) -> SortedLines {
        let mut rows: Vec<(String, usize, u64, [u64; 2], u64)> = tree
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
                Some((line, len, before, s.counts, width))
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
        for (index, (line, len, before, raw, width)) in self.rows.iter().enumerate() {
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
                raw: *raw,
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
