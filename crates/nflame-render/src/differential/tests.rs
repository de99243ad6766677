//! The tree's graph checked against the reference, and the line order against sorted lines.

use super::lines::DiffRows;
use super::*;
use crate::cut::{Lines, SortedRows};
use nflame_profile::diff::DiffOptions;
use nflame_profile::Profile;

fn both(before: &[(&str, u64)], after: &[(&str, u64)], opts: &RenderOptions, dopts: &DiffOptions) {
    let d = Diff::new(
        Profile::from_stacks(before.iter().copied()),
        Profile::from_stacks(after.iter().copied()),
        dopts,
    )
    .unwrap();
    let mut new = Vec::new();
    let mut old = Vec::new();
    let rn = draw_to_vec(&d, opts, &mut new);
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

pub(crate) type Stacks = Vec<(String, u64)>;

/// A seeded generator for test stacks: `below(n)` draws in `0..n`.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Puts stack `i` in BEFORE, AFTER or both (one in `period`, one in
/// `period`, the rest), with `count`; in both, AFTER's count is `again()`.
fn place(
    (before, after): (&mut Stacks, &mut Stacks),
    i: usize,
    period: usize,
    stack: String,
    count: u64,
    again: impl FnOnce() -> u64,
) {
    match i % period {
        0 => before.push((stack, count)),
        1 => after.push((stack, count)),
        _ => {
            before.push((stack.clone(), count));
            after.push((stack, again()));
        }
    }
}

/// Stacks whose sorted lines are not sorted stacks, frames that extend
/// sibling names, blanks, recursion, single frames, gone and new stacks.
pub(crate) fn tricky() -> (Stacks, Stacks) {
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
        "a<b>&'\"c",
        "ünïcödé_名前_a_long_function_name_cut_to_fit_narrow_frames",
        "esc\u{1b}[31m\u{9b}",
        "k_[j]",
        "--",
        "-",
    ];
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut seed = Seeded(12345);
    let mut rnd = |n: u64| seed.below(n);
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
        place((&mut before, &mut after), i, 3, stack, count, || {
            1 + rnd(40)
        });
    }
    (before, after)
}

/// Deep stacks (hundreds of frames) sharing long prefixes: more frames than
/// a batch of frames written at once and than a survey holds when tests
/// lower it ([`crate::cut::set_hold_at_most`]).
pub(crate) fn deep() -> (Stacks, Stacks) {
    let mut seed = Seeded(99);
    let mut rnd = |n: u64| seed.below(n);
    let trunk: Vec<String> = (0..700).map(|i| format!("fn_{}", i % 41)).collect();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for i in 0..120 {
        let shared = rnd(600) as usize;
        let mut frames: Vec<String> = trunk[..shared].to_vec();
        for _ in 0..100 + rnd(300) {
            frames.push(format!("leaf_{}", rnd(23)));
        }
        let stack = frames.join(";");
        let count = 1 + rnd(50);
        place((&mut before, &mut after), i, 4, stack, count, || {
            1 + rnd(50)
        });
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
    let rows = DiffRows::new(&tree, &d, false);
    let lines = SortedRows::nearly_sorted(&rows, true);
    let mut walked = Vec::new();
    lines.walk(&mut |l| {
        let (before, width) = lines.numbers(l.index);
        walked.push(format!("{} {before} {width}", lines.text(l.index)))
    });
    let mut sorted = walked.clone();
    sorted.sort();
    assert!(walked.len() > 1000);
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
        // Only `all` drawn; nothing drawn.
        RenderOptions {
            min_width: 1150.0,
            ..base.clone()
        },
        RenderOptions {
            min_width: 1500.0,
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
    // Frames held from the survey, and laid out again as they are written.
    for hold in [usize::MAX, 0] {
        crate::cut::set_hold_at_most(hold);
        for o in &variants {
            for d in &dopts {
                both(&b, &a, o, d);
            }
        }
        let (db, da) = deep();
        let db: Vec<(&str, u64)> = db.iter().map(|(s, c)| (s.as_str(), *c)).collect();
        let da: Vec<(&str, u64)> = da.iter().map(|(s, c)| (s.as_str(), *c)).collect();
        for o in [&variants[0], &variants[1], &variants[3], &variants[4]] {
            both(&db, &da, o, &dopts[0]);
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
