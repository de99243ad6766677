//! [`StackTree`]: the stacks of one or two profiles as a prefix tree of interned
//! frames.
//!
//! Analyses that look at every frame of every stack (inclusive totals,
//! classification, the layout of a flame graph) would split millions of long
//! stack strings into frames again and again. Stacks share most of their frames
//! with others, so the tree holds each distinct prefix once, as a node (a parent
//! and a frame id), and each stack as its prefix node, its leaf frame and its
//! counts. A per-frame or per-prefix result is then computed once per node, and a
//! per-stack result from its node's in O(1).
//!
//! Building costs about one hash of each stack's text (the prefix is usually
//! known already) and one of its leaf frame.

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use crate::Profile;

type Map<K, V> = hashbrown::HashMap<K, V, FxBuildHasher>;

/// The node of the empty prefix: the parent of every stack's first frame.
pub const ROOT: u32 = 0;

/// A distinct stack prefix (`root;…;frame`): its parent prefix and last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeNode {
    /// The prefix without its last frame ([`ROOT`] for a first frame). Parents
    /// always have smaller ids than their children.
    pub parent: u32,
    /// The last frame's id (meaningless for [`ROOT`]).
    pub frame: u32,
    /// Frames in the prefix (0 for [`ROOT`]).
    pub depth: u32,
    /// Bytes of the prefix's text (`root;…;frame`), so a stack's text cut to it is
    /// the prefix.
    pub text_len: usize,
}

/// A distinct stack of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStack<'a> {
    /// The whole stack, root first.
    pub text: &'a str,
    /// Its prefix without the leaf frame ([`ROOT`] for a one-frame stack).
    pub node: u32,
    /// The leaf frame's id.
    pub leaf: u32,
    /// Samples per column (0 where the stack is absent).
    pub counts: [u64; 2],
}

/// Stacks of up to two profiles (columns 0 and 1), merged, as a prefix tree.
#[derive(Debug, Clone, Default)]
pub struct StackTree<'a> {
    frames: Vec<&'a str>,
    nodes: Vec<TreeNode>,
    stacks: Vec<TreeStack<'a>>,
    totals: [u64; 2],
    frame_ids: Map<&'a str, u32>,
    prefix_ids: Map<&'a str, u32>,
    child_ids: Map<(u32, u32), u32>,
    stack_ids: Map<(u32, u32), u32>,
}

impl<'a> StackTree<'a> {
    /// An empty tree.
    pub fn new() -> StackTree<'a> {
        StackTree {
            nodes: vec![TreeNode {
                parent: ROOT,
                frame: u32::MAX,
                depth: 0,
                text_len: 0,
            }],
            ..StackTree::default()
        }
    }

    /// A tree expecting about `stacks` distinct stacks.
    pub fn with_capacity(stacks: usize) -> StackTree<'a> {
        let mut t = StackTree::new();
        t.stacks.reserve(stacks);
        t.stack_ids.reserve(stacks);
        t
    }

    /// Adds `count` samples of `stack` (`root;…;leaf`) to `column` (0 or 1).
    pub fn add(&mut self, stack: &'a str, column: usize, count: u64) {
        let (node, leaf) = self.split(stack);
        self.add_split(stack, node, leaf, column, count);
    }

    /// The prefix node and leaf frame of `stack`, created if new.
    fn split(&mut self, stack: &'a str) -> (u32, u32) {
        let (node, leaf) = match stack.rfind(';') {
            Some(i) => (self.prefix(&stack[..i]), &stack[i + 1..]),
            None => (ROOT, stack),
        };
        (node, self.frame(leaf))
    }

    fn add_split(&mut self, text: &'a str, node: u32, leaf: u32, column: usize, count: u64) {
        let stacks = &mut self.stacks;
        let i = *self.stack_ids.entry((node, leaf)).or_insert_with(|| {
            stacks.push(TreeStack {
                text,
                node,
                leaf,
                counts: [0; 2],
            });
            (stacks.len() - 1) as u32
        });
        self.stacks[i as usize].counts[column] += count;
        self.totals[column] += count;
    }

    /// The tree of two profiles' stacks, column 0 and 1: the same as adding
    /// every stack of `first` to column 0, then every stack of `second` to
    /// column 1, built from both sides at once.
    pub fn of_two(first: &'a Profile, second: &'a Profile) -> StackTree<'a> {
        let (mut tree, other) = rayon::join(
            || {
                let mut t = StackTree::with_capacity(first.len() + second.len());
                for (s, c) in first.iter() {
                    t.add(s, 0, c);
                }
                t
            },
            || {
                // The stacks of one profile are distinct: no need to look them up.
                let mut t = StackTree::new();
                t.stacks.reserve(second.len());
                for (s, c) in second.iter() {
                    let (node, leaf) = t.split(s);
                    t.stacks.push(TreeStack {
                        text: s,
                        node,
                        leaf,
                        counts: [0, c],
                    });
                }
                t
            },
        );
        tree.merge(other);
        tree.finish();
        tree
    }

    /// Adds the stacks and counts of `other` (whose look-up tables of stacks
    /// may be empty).
    fn merge(&mut self, other: StackTree<'a>) {
        let frames: Vec<u32> = other.frames.iter().map(|f| self.frame(f)).collect();
        let mut nodes = vec![ROOT; other.nodes.len()];
        for (i, n) in other.nodes.iter().enumerate().skip(1) {
            let parent = nodes[n.parent as usize];
            nodes[i] = self.child(parent, frames[n.frame as usize], n.text_len);
        }
        for s in &other.stacks {
            let (node, leaf) = (nodes[s.node as usize], frames[s.leaf as usize]);
            for column in 0..2 {
                if s.counts[column] > 0 {
                    self.add_split(s.text, node, leaf, column, s.counts[column]);
                }
            }
        }
    }

    /// Drops the look-up tables only building needs.
    pub fn finish(&mut self) {
        self.frame_ids = Map::default();
        self.prefix_ids = Map::default();
        self.child_ids = Map::default();
        self.stack_ids = Map::default();
    }

    fn frame(&mut self, name: &'a str) -> u32 {
        let frames = &mut self.frames;
        *self.frame_ids.entry(name).or_insert_with(|| {
            frames.push(name);
            (frames.len() - 1) as u32
        })
    }

    /// The node of a non-empty prefix, created (with its ancestors) if new.
    fn prefix(&mut self, prefix: &'a str) -> u32 {
        let hash = self.prefix_ids.hasher().hash_one(prefix);
        if let Some((_, &id)) = self
            .prefix_ids
            .raw_entry()
            .from_key_hashed_nocheck(hash, prefix)
        {
            return id;
        }
        // New prefix: walk it from the root, frame by frame.
        let mut node = ROOT;
        let mut start = 0;
        for frame in prefix.split(';') {
            let end = start + frame.len();
            let fid = self.frame(frame);
            node = self.child(node, fid, end);
            start = end + 1;
        }
        self.prefix_ids
            .raw_entry_mut()
            .from_key_hashed_nocheck(hash, prefix)
            .or_insert(prefix, node);
        node
    }

    /// The node of prefix `parent` followed by frame `frame`, `text_len` bytes
    /// long, created if new.
    fn child(&mut self, parent: u32, frame: u32, text_len: usize) -> u32 {
        let nodes = &mut self.nodes;
        *self.child_ids.entry((parent, frame)).or_insert_with(|| {
            let depth = nodes[parent as usize].depth + 1;
            nodes.push(TreeNode {
                parent,
                frame,
                depth,
                text_len,
            });
            (nodes.len() - 1) as u32
        })
    }

    /// Frame names by id.
    pub fn frames(&self) -> &[&'a str] {
        &self.frames
    }

    /// The name of frame `id`.
    pub fn frame_name(&self, id: u32) -> &'a str {
        self.frames[id as usize]
    }

    /// The prefix nodes by id, [`ROOT`] first; parents before children.
    pub fn nodes(&self) -> &[TreeNode] {
        &self.nodes
    }

    /// The distinct stacks, in the order they were first added.
    pub fn stacks(&self) -> &[TreeStack<'a>] {
        &self.stacks
    }

    /// The samples of `column`.
    pub fn total(&self, column: usize) -> u64 {
        self.totals[column]
    }

    /// Whether frame `frame` is one of the frames of prefix `node`.
    pub fn prefix_contains(&self, mut node: u32, frame: u32) -> bool {
        while node != ROOT {
            let n = &self.nodes[node as usize];
            if n.frame == frame {
                return true;
            }
            node = n.parent;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_prefixes_and_merges_columns() {
        let mut t = StackTree::new();
        t.add("a;b;c", 0, 2);
        t.add("a;b;d", 0, 3);
        t.add("a;b", 1, 4);
        t.add("a;b;c", 1, 5);
        t.add("x", 1, 1);
        assert_eq!(t.total(0), 5);
        assert_eq!(t.total(1), 10);
        // ROOT, a, a;b
        assert_eq!(t.nodes().len(), 3);
        let s: Vec<(&str, [u64; 2])> = t.stacks().iter().map(|s| (s.text, s.counts)).collect();
        assert_eq!(
            s,
            vec![
                ("a;b;c", [2, 5]),
                ("a;b;d", [3, 0]),
                ("a;b", [0, 4]),
                ("x", [0, 1])
            ]
        );
        let ab = t.stacks()[0].node;
        assert_eq!(t.nodes()[ab as usize].text_len, 3);
        assert_eq!(t.nodes()[ab as usize].depth, 2);
        assert_eq!(t.stacks()[2].node, t.nodes()[ab as usize].parent);
        assert_eq!(t.stacks()[3].node, ROOT);
        let a = t.stacks()[2].leaf;
        let b = t.nodes()[ab as usize].frame;
        assert!(t.prefix_contains(ab, b));
        assert!(!t.prefix_contains(t.stacks()[2].node, a));
        assert_eq!(t.frame_name(t.stacks()[1].leaf), "d");
    }

    #[test]
    fn built_from_both_sides_at_once_is_the_same() {
        let before = Profile::from_stacks([("a;b;c", 2), ("a;b;d", 3), ("x", 1), ("a;q;r", 4)]);
        let after = Profile::from_stacks([("a;b", 4), ("a;b;c", 5), ("y;z;w", 7), ("a;q;s", 1)]);
        let mut one = StackTree::new();
        for (s, c) in before.iter() {
            one.add(s, 0, c);
        }
        for (s, c) in after.iter() {
            one.add(s, 1, c);
        }
        one.finish();
        let two = StackTree::of_two(&before, &after);
        assert_eq!(one.frames(), two.frames());
        assert_eq!(one.nodes(), two.nodes());
        assert_eq!(one.stacks(), two.stacks());
        assert_eq!((one.total(0), one.total(1)), (two.total(0), two.total(1)));
    }

    #[test]
    fn empty_frames_are_frames() {
        let mut t = StackTree::new();
        t.add("a;;b", 0, 1);
        t.add("a;", 0, 1);
        let names: Vec<&str> = t.stacks().iter().map(|s| t.frame_name(s.leaf)).collect();
        assert_eq!(names, vec!["b", ""]);
        assert_eq!(t.nodes().len(), 3);
    }
}
