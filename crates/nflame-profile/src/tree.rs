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
//! [`StackTree::of_two`] and [`StackTree::from_stacks`] sort the stacks by
//! their text first: the stacks under a prefix are then neighbours, so the
//! tree is built in one pass with no table of prefixes (a node costs 8
//! bytes), nodes are numbered depth first, and [`StackTree::walk`] visits
//! each node once, keeping only the path to the current stack: analyses
//! need memory for the depth of the stacks, not for every node.
//! [`StackTree::add`] builds a tree stack by stack, in any order.

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

/// What [`StackTree::walk`] tells its visitor.
pub trait TreeVisitor {
    /// Prefix node `node` joins the path (its parent is on it).
    fn enter(&mut self, node: u32);
    /// Prefix node `node`, the deepest on the path, leaves it.
    fn leave(&mut self, node: u32);
    /// Stack `index` of [`StackTree::stacks`], whose prefix is the path.
    fn stack(&mut self, index: usize);
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

/// The first eight bytes of `text`, big-endian, zero-padded: sorting by it,
/// then by the text, is sorting by the text, mostly without reading it.
fn sort_key(text: &str) -> u64 {
    let mut key = [0u8; 8];
    let n = text.len().min(8);
    key[..n].copy_from_slice(&text.as_bytes()[..n]);
    u64::from_be_bytes(key)
}

/// The length of the common prefix of `a` and `b`, eight bytes at a time
/// (sorted stacks share long prefixes; the renderer walks them too).
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl<'a> StackTree<'a> {
    /// An empty tree.
    pub fn new() -> StackTree<'a> {
        StackTree {
            nodes: vec![TreeNode {
                parent: ROOT,
                frame: u32::MAX,
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
    /// Stacks are kept in the order they were first added.
    pub fn add(&mut self, stack: &'a str, column: usize, count: u64) {
        let (node, leaf) = match stack.rfind(';') {
            Some(i) => (self.prefix(&stack[..i]), &stack[i + 1..]),
            None => (ROOT, stack),
        };
        let leaf = self.frame(leaf);
        let stacks = &mut self.stacks;
        let i = *self.stack_ids.entry((node, leaf)).or_insert_with(|| {
            stacks.push(TreeStack {
                text: stack,
                node,
                leaf,
                counts: [0; 2],
            });
            (stacks.len() - 1) as u32
        });
        self.stacks[i as usize].counts[column] += count;
        self.totals[column] += count;
    }

    /// The tree of distinct `stacks` (text, counts per column), sorted by
    /// their text: nodes numbered depth first, no look-up table kept. (A
    /// stack given twice is kept twice.)
    pub fn from_stacks(stacks: Vec<(&'a str, [u64; 2])>) -> StackTree<'a> {
        use rayon::prelude::*;
        StackTree::from_keyed(
            stacks
                .into_par_iter()
                .map(|(text, counts)| (sort_key(text), text, counts))
                .collect(),
        )
    }

    /// [`StackTree::from_stacks`] of stacks given with their [`sort_key`].
    fn from_keyed(mut sorted: Vec<(u64, &'a str, [u64; 2])>) -> StackTree<'a> {
        use rayon::prelude::*;
        sorted.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut tree = StackTree::new();
        let mut frame_ids: Map<&'a str, u32> = Map::default();
        let mut intern = |frames: &mut Vec<&'a str>, name: &'a str| -> u32 {
            *frame_ids.entry(name).or_insert_with(|| {
                frames.push(name);
                (frames.len() - 1) as u32
            })
        };
        // The previous stack, its prefix nodes and where their frames end.
        let mut prev: &[u8] = b"";
        let mut path: Vec<u32> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut totals = [0u64; 2];
        // Same size and alignment: the vector is reused in place.
        tree.stacks = sorted
            .into_iter()
            .map(|(_, text, counts)| {
                let bytes = text.as_bytes();
                // Prefix frames shared with the previous stack: those whose
                // `;` comes before the first byte that differs.
                let p = common_prefix(prev, bytes);
                let keep = ends.partition_point(|&e| e < p);
                path.truncate(keep);
                ends.truncate(keep);
                let mut start = ends.last().map_or(0, |&e| e + 1);
                while let Some(i) = memchr::memchr(b';', &bytes[start..]) {
                    let end = start + i;
                    let frame = intern(&mut tree.frames, &text[start..end]);
                    let parent = path.last().copied().unwrap_or(ROOT);
                    tree.nodes.push(TreeNode { parent, frame });
                    path.push(
                        u32::try_from(tree.nodes.len() - 1).expect("fewer than 2^32 prefixes"),
                    );
                    ends.push(end);
                    start = end + 1;
                }
                let leaf = intern(&mut tree.frames, &text[start..]);
                totals[0] += counts[0];
                totals[1] += counts[1];
                prev = bytes;
                TreeStack {
                    text,
                    node: path.last().copied().unwrap_or(ROOT),
                    leaf,
                    counts,
                }
            })
            .collect();
        tree.totals = totals;
        tree.nodes.shrink_to_fit();
        tree
    }

    /// The tree of two profiles' stacks, column 0 and 1, sorted by their
    /// text (see [`StackTree::from_stacks`]).
    pub fn of_two(first: &'a Profile, second: &'a Profile) -> StackTree<'a> {
        use rayon::prelude::*;
        // Each stack of the first with its place in the second.
        let found: Vec<Option<u32>> = (0..first.len())
            .into_par_iter()
            .map(|i| second.index_of(first.stack_at(i).0).map(|j| j as u32))
            .collect();
        let mut in_first = vec![false; second.len()];
        // Exactly as many as there are distinct stacks: this is the tree's
        // largest array, made once.
        let shared = found.iter().filter(|f| f.is_some()).count();
        let mut stacks: Vec<(u64, &'a str, [u64; 2])> =
            Vec::with_capacity(first.len() + second.len() - shared);
        for (i, f) in found.into_iter().enumerate() {
            let (text, count) = first.stack_at(i);
            let other = f.map_or(0, |j| {
                in_first[j as usize] = true;
                second.stack_at(j as usize).1
            });
            stacks.push((sort_key(text), text, [count, other]));
        }
        for (j, (text, count)) in second.iter().enumerate() {
            if !in_first[j] {
                stacks.push((sort_key(text), text, [0, count]));
            }
        }
        StackTree::from_keyed(stacks)
    }

    /// Drops the look-up tables only building stack by stack needs.
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
        for frame in prefix.split(';') {
            let fid = self.frame(frame);
            node = self.child(node, fid);
        }
        self.prefix_ids
            .raw_entry_mut()
            .from_key_hashed_nocheck(hash, prefix)
            .or_insert(prefix, node);
        node
    }

    /// The node of prefix `parent` followed by frame `frame`, created if new.
    fn child(&mut self, parent: u32, frame: u32) -> u32 {
        let nodes = &mut self.nodes;
        *self.child_ids.entry((parent, frame)).or_insert_with(|| {
            nodes.push(TreeNode { parent, frame });
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

    /// The distinct stacks: sorted by text for a tree built from sorted
    /// stacks, in the order first added for one built with [`StackTree::add`].
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

    /// Visits the stacks in order, each with the path of its prefix nodes
    /// open: a node enters the path when a stack below it comes, and leaves
    /// it when one that is not comes, or at the end. A tree built from
    /// sorted stacks enters each node once; otherwise a node may enter and
    /// leave several times (what a visitor adds up per visit stays right).
    /// The walk keeps only the path.
    pub fn walk<V: TreeVisitor + ?Sized>(&self, visitor: &mut V) {
        // Ids grow along the path (parents have smaller ids).
        let mut path: Vec<u32> = Vec::new();
        let mut chain: Vec<u32> = Vec::new();
        for (index, s) in self.stacks.iter().enumerate() {
            // The deepest node of the path above (or equal to) the stack's.
            let mut n = s.node;
            chain.clear();
            let keep = loop {
                if n == ROOT {
                    break 0;
                }
                if let Ok(at) = path.binary_search(&n) {
                    break at + 1;
                }
                chain.push(n);
                n = self.nodes[n as usize].parent;
            };
            while path.len() > keep {
                let node = path.pop().expect("a node");
                visitor.leave(node);
            }
            for &node in chain.iter().rev() {
                path.push(node);
                visitor.enter(node);
            }
            visitor.stack(index);
        }
        while let Some(node) = path.pop() {
            visitor.leave(node);
        }
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
        assert_eq!(t.stacks()[2].node, t.nodes()[ab as usize].parent);
        assert_eq!(t.stacks()[3].node, ROOT);
        let a = t.stacks()[2].leaf;
        let b = t.nodes()[ab as usize].frame;
        assert!(t.prefix_contains(ab, b));
        assert!(!t.prefix_contains(t.stacks()[2].node, a));
        assert_eq!(t.frame_name(t.stacks()[1].leaf), "d");
    }

    /// Every stack of `t` as its frames' names (from the tree) and counts, sorted.
    fn spelled(t: &StackTree<'_>) -> Vec<(String, String, [u64; 2])> {
        let mut v: Vec<(String, String, [u64; 2])> = t
            .stacks()
            .iter()
            .map(|s| {
                let mut frames = vec![t.frame_name(s.leaf)];
                let mut n = s.node;
                while n != ROOT {
                    frames.push(t.frame_name(t.nodes()[n as usize].frame));
                    n = t.nodes()[n as usize].parent;
                }
                frames.reverse();
                (s.text.to_string(), frames.join(";"), s.counts)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sorted_build_is_the_same_tree() {
        let before = Profile::from_stacks([
            ("a;b;c", 2),
            ("a;b;d", 3),
            ("x", 1),
            ("a;q;r", 4),
            ("a;b\tz;c", 1),
            ("a;;b", 2),
            ("a;b", 6),
        ]);
        let after = Profile::from_stacks([
            ("a;b", 4),
            ("a;b;c", 5),
            ("y;z;w", 7),
            ("a;q;s", 1),
            ("a;b c;d", 2),
        ]);
        let mut one = StackTree::new();
        for (s, c) in before.iter() {
            one.add(s, 0, c);
        }
        for (s, c) in after.iter() {
            one.add(s, 1, c);
        }
        one.finish();
        let two = StackTree::of_two(&before, &after);
        assert_eq!(spelled(&one), spelled(&two));
        assert_eq!(one.nodes().len(), two.nodes().len());
        assert_eq!((one.total(0), one.total(1)), (two.total(0), two.total(1)));
        // Sorted by text; nodes depth first.
        let texts: Vec<&str> = two.stacks().iter().map(|s| s.text).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        for (i, n) in two.nodes().iter().enumerate().skip(1) {
            assert!((n.parent as usize) < i);
        }
    }

    /// Records a walk.
    #[derive(Default)]
    struct Log(Vec<String>, Vec<u32>);

    impl TreeVisitor for Log {
        fn enter(&mut self, node: u32) {
            self.1.push(node);
            self.0.push(format!("+{node}"));
        }
        fn leave(&mut self, node: u32) {
            assert_eq!(self.1.pop(), Some(node), "leaves the deepest node");
            self.0.push(format!("-{node}"));
        }
        fn stack(&mut self, index: usize) {
            self.0.push(format!("s{index}"));
        }
    }

    #[test]
    fn walk_opens_each_stacks_path() {
        let p = Profile::from_stacks([("a;b;c", 1), ("a;b", 1), ("a;d;e", 1), ("f", 1)]);
        let empty = Profile::new();
        let sorted = StackTree::of_two(&p, &empty);
        let mut log = Log::default();
        sorted.walk(&mut log);
        // a;b (under a), a;b;c (under a;b), a;d;e (under a;d), f (root).
        assert_eq!(log.0.join(" "), "+1 s0 +2 s1 -2 +3 s2 -3 -1 s3");
        // Built in another order, the walk still opens every stack's path.
        let mut t = StackTree::new();
        for s in ["a;b;c", "f", "a;d;e", "a;b"] {
            t.add(s, 0, 1);
        }
        let mut log = Log::default();
        t.walk(&mut log);
        assert!(log.1.is_empty());
        assert_eq!(log.0.join(" "), "+1 +2 s0 -2 -1 s1 +1 +3 s2 -3 s3 -1");
    }

    #[test]
    fn empty_frames_are_frames() {
        let mut t = StackTree::new();
        t.add("a;;b", 0, 1);
        t.add("a;", 0, 1);
        let names: Vec<&str> = t.stacks().iter().map(|s| t.frame_name(s.leaf)).collect();
        assert_eq!(names, vec!["b", ""]);
        assert_eq!(t.nodes().len(), 3);
        let p = Profile::from_stacks([("a;;b", 1), ("a;", 1)]);
        let empty = Profile::new();
        let s = StackTree::of_two(&p, &empty);
        assert_eq!(s.nodes().len(), 3);
        assert_eq!(spelled(&s), spelled(&t));
    }
}
