//! The drawn stacks as rows for [`crate::cut`]: the diff's tree's stacks
//! (sorted by text, so nearly in the order of inferno's sorted lines), or
//! reversed (leaf first), which are sorted again.

use nflame_profile::diff::Diff;
use nflame_profile::tree::StackTree;

use crate::cut::{inferno_text, reversed, RowSource};

/// The stacks of a diff's tree with their lines' numbers: `stack BEFORE
/// WIDTH`, widths from AFTER or, for stacks gone after, from BEFORE.
pub(crate) struct DiffRows<'t, 'a> {
    tree: &'t StackTree<'a>,
    diff: &'t Diff,
    /// The stacks reversed, when drawn leaf first.
    reversed: Option<Vec<String>>,
}

impl<'t, 'a> DiffRows<'t, 'a> {
    pub(crate) fn new(tree: &'t StackTree<'a>, diff: &'t Diff, reverse: bool) -> Self {
        let reversed = reverse.then(|| tree.stacks().iter().map(|s| reversed(s.text)).collect());
        DiffRows {
            tree,
            diff,
            reversed,
        }
    }
}

impl RowSource for DiffRows<'_, '_> {
    fn len(&self) -> usize {
        self.tree.stacks().len()
    }

    fn text(&self, i: usize) -> &str {
        match &self.reversed {
            Some(r) => &r[i],
            None => inferno_text(self.tree.stacks()[i].text),
        }
    }

    fn raw(&self, i: usize) -> [u64; 2] {
        self.tree.stacks()[i].counts
    }

    fn numbers(&self, i: usize) -> (u64, u64) {
        if self.text(i).is_empty() {
            // inferno skips an empty line.
            return (0, 0);
        }
        let c = self.tree.stacks()[i].counts;
        let (before, after) = self.diff.scale_counts(c[0], c[1]);
        (before, if after > 0 { after } else { before })
    }
}
