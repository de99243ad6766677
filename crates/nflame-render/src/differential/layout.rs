//! inferno's layout, recomputed: every frame wide enough to be drawn with its
//! inclusive BEFORE and AFTER values, keyed by depth and start, and the lines
//! to give inferno, cut to those frames.

use rustc_hash::FxHashMap;

use super::lines::Lines;

/// Inclusive values of one frame of the layout: sums of the stored counts of
/// its stacks, exact.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Node {
    pub(super) after: u64,
    pub(super) before: u64,
}

/// One frame being laid out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Open {
    pub(super) start: u64,
    pub(super) node: Node,
    pub(super) seq: u32,
}

/// The layout inferno computes from the sorted lines: every frame at least
/// `min_samples` wide keyed by (depth, start offset), depth 0 being the `all`
/// frame, with its inclusive BEFORE and AFTER values; and the lines to give
/// inferno, in order: each stack cut to the frames it will draw, consecutive
/// equal ones merged. Frames narrower than `min_samples` are too narrow for
/// inferno to draw, so the graph is the same, from a fraction of the lines.
pub(super) fn layout(
    lines: &dyn Lines,
    min_samples: u64,
) -> (FxHashMap<(u32, u64), Node>, Vec<String>) {
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
        leaf.node.before += l.raw[0];
        leaf.node.after += l.raw[1];
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
