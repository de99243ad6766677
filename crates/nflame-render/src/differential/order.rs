//! The order in which inferno sees the drawn stacks, computed on the tree of
//! stacks: under every prefix, its stacks and longer prefixes sorted by short
//! keys (frame ranks, mostly), never by the long shared prefixes.

use nflame_profile::diff::Diff;
use nflame_profile::tree::StackTree;

/// Marks a stack (not a node) among the children of a node.
pub(super) const STACK: u32 = 1 << 31;
/// The frame id of the `all` frame in line frames.
pub(super) const ALL: u32 = u32::MAX;

/// A child of a prefix: a longer prefix (a node) or a stack, with what the
/// layout needs of it, so that walking the graph reads memory in order.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Item {
    /// The rank of its sort key (see [`FrameKeys`]).
    pub(super) rank: u32,
    /// Its frame: the node's last frame, the stack's leaf.
    pub(super) frame: u32,
    /// The node id, or the stack index with [`STACK`] set.
    pub(super) id: u32,
    /// A stack's stored counts, before and after (exact: the numbers shown
    /// come from them).
    pub(super) raw: [u64; 2],
    /// A stack's width in graph units.
    pub(super) width: u64,
}

/// The order of the sort keys of siblings, by frame: `name;` for a node (all
/// its lines start so), `name ` for a stack (its line is `name BEFORE WIDTH`).
pub(super) struct FrameKeys {
    /// Rank of `name ` and of `name;` among all these keys.
    pub(super) stack_rank: Vec<u32>,
    pub(super) node_rank: Vec<u32>,
    /// Whether another frame's name starts with `name `: then the digits of a
    /// stack's counts take part in the order.
    pub(super) counts_matter: Vec<bool>,
}

/// Compares `a` followed by the byte `sa` with `b` followed by `sb`.
pub(super) fn compare_with_separator(a: &str, sa: u8, b: &str, sb: u8) -> std::cmp::Ordering {
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
    pub(super) fn new(names: &[&str]) -> FrameKeys {
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
pub(super) struct LineOrder {
    /// Children of node `n`: `items[first[n]..first[n + 1]]`.
    pub(super) first: Vec<u32>,
    pub(super) items: Vec<Item>,
    /// The sum of the stacks' widths.
    pub(super) total: u64,
}

impl LineOrder {
    pub(super) fn new(tree: &StackTree<'_>, diff: &Diff) -> LineOrder {
        let nodes = tree.nodes();
        let stacks = tree.stacks();
        let names = tree.frames();
        assert!(nodes.len() < STACK as usize && stacks.len() < STACK as usize);
        let keys = FrameKeys::new(names);
        // Graph units of each stack: widths from AFTER or, for stacks gone
        // after, from BEFORE. Stacks without width are not drawn.
        let widths: Vec<u64> = stacks
            .iter()
            .map(|s| {
                let (b, a) = diff.scale_counts(s.counts[0], s.counts[1]);
                if a > 0 {
                    a
                } else {
                    b
                }
            })
            .collect();
        let mut first = vec![0u32; nodes.len() + 1];
        for n in &nodes[1..] {
            first[n.parent as usize + 1] += 1;
        }
        for (s, &w) in stacks.iter().zip(&widths) {
            if w > 0 {
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
        for (i, (s, &width)) in stacks.iter().zip(&widths).enumerate() {
            if width > 0 {
                total += width;
                let f = &mut fill[s.node as usize];
                items[*f as usize] = Item {
                    rank: keys.stack_rank[s.leaf as usize],
                    frame: s.leaf,
                    id: i as u32 | STACK,
                    raw: s.counts,
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
                        let tail = |it: &Item| {
                            is_stack(it).then(|| (diff.scale_counts(it.raw[0], 0).0, it.width))
                        };
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
pub(super) fn compare_keys(
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
