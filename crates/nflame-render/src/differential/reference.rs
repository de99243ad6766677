//! The implementation before the tree, string by string, kept to check the
//! tree's layout and graph against.

use super::colour::colour;
use super::*;
use crate::cut::Node;
use crate::render_lines;
use rustc_hash::FxHashMap;

pub(super) fn draw(diff: &Diff, opts: &RenderOptions, svg: &mut Vec<u8>) -> Result<(), Error> {
    if opts.flamechart {
        return Err(Error::Unsupported(
            "a flame chart (time order) of a differential profile".into(),
        ));
    }
    // Every stack of either side with its stored counts.
    let mut stacks: Vec<(&str, u64, u64)> = diff
        .before
        .iter()
        .map(|(s, b)| (s, b, diff.after.get(s)))
        .collect();
    stacks.extend(
        diff.after
            .iter()
            .filter(|(s, _)| diff.before.get(s) == 0)
            .map(|(s, a)| (s, 0, a)),
    );
    let mut rows: Vec<(String, usize, u64, u64)> = Vec::new();
    for (stack, raw_before, raw_after) in stacks {
        let (before, after) = diff.scale_counts(raw_before, raw_after);
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
        // Nodes sum the stored counts.
        rows.push((line, len, raw_before, raw_after));
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
