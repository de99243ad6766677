//! The drawn stacks as inferno's lines, walked in its order: from the tree
//! (in [`LineOrder`]) or, for reversed stacks, sorted as text; with how many
//! frames each line shares with the previous one and where it may be cut
//! ([`crate::cut`]).

use nflame_profile::diff::Diff;
use nflame_profile::tree::{StackTree, ROOT};

use super::order::{LineOrder, ALL, STACK};
use crate::cut::{cuttable, Line, Lines, Row};

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
                .map(|f| [cuttable(f, 1, false), cuttable(f, 2, false)])
                .collect(),
        }
    }
}

impl Lines for TreeLines<'_, '_> {
    fn walk(&self, f: &mut dyn FnMut(&Line<'_>)) {
        let order = &self.order;
        // The prefixes being walked, with their frames and cuts by depth.
        let mut dfs: Vec<(u32, u32)> = vec![(ROOT, order.first[ROOT as usize])];
        let mut frames = vec![ALL];
        let mut cuts = vec![false];
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
                    raw: item.raw,
                    width: item.width,
                    depth: frames.len() - 1,
                    shared,
                    cuttable: &cuts,
                    index: (item.id & !STACK) as usize,
                });
                prev.clear();
                prev.extend_from_slice(&frames);
                frames.pop();
            } else {
                let depth = cuts.len();
                let ok = self.cuttable[item.frame as usize][usize::from(depth > 1)];
                cuts.push(ok);
                dfs.push((item.id, order.first[item.id as usize]));
            }
        }
    }

    fn text(&self, index: usize) -> &str {
        self.tree.stacks()[index].text
    }

    fn numbers(&self, index: usize) -> (u64, u64) {
        let s = &self.tree.stacks()[index];
        let (before, after) = self.diff.scale_counts(s.counts[0], s.counts[1]);
        (before, if after > 0 { after } else { before })
    }

    fn differential(&self) -> bool {
        true
    }
}

/// The stacks of a tree reversed (leaf first), as rows for
/// [`crate::cut::SortedRows`] (they share few prefixes: sorting them as text
/// costs less than a tree of them), and their texts, which the rows borrow.
pub(super) fn reversed_texts(tree: &StackTree<'_>) -> Vec<String> {
    tree.stacks()
        .iter()
        .map(|s| s.text.rsplit(';').collect::<Vec<_>>().join(";"))
        .collect()
}

/// The rows of [`reversed_texts`].
pub(super) fn reversed_rows<'t>(
    tree: &StackTree<'_>,
    diff: &Diff,
    texts: &'t [String],
) -> Vec<Row<'t>> {
    tree.stacks()
        .iter()
        .zip(texts)
        .map(|(s, text)| {
            let (before, after) = diff.scale_counts(s.counts[0], s.counts[1]);
            let width = if after > 0 { after } else { before };
            Row::differential(text, before, width, s.counts)
        })
        .collect()
}
