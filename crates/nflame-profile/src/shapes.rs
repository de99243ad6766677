//! Seeded synthetic folded profiles in the shapes nflame is benchmarked on.
//!
//! Large profiles come in shapes that stress different parts of a renderer:
//! many repeated stacks, many distinct stacks with nothing in common, many
//! distinct stacks sharing long prefixes, and very deep stacks. This module
//! writes each shape as a pair of folded files, BEFORE and a changed copy
//! AFTER (stacks gone, stacks new, counts changed), from a seed, so that
//! `scripts/bench-offline.sh` and the criterion benches measure the same
//! inputs everywhere without committing hundreds of megabytes. Nothing here
//! reads a process or the clock: the same seed gives the same bytes.
//!
//! [`Shape::describe`] says exactly how each shape is made; [`ShapeStats`]
//! what a pair came out as.

use std::hash::BuildHasher;
use std::io::{self, Write};

use rustc_hash::FxBuildHasher;

/// A kind of profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Real stacks repeated: line `i` is real stack `i mod M` with one of
    /// 5,000 synthetic leaves appended, so lines repeat stacks and distinct
    /// stacks share real prefixes.
    Real,
    /// Distinct stacks of 3–11 frames, each frame a name drawn uniformly
    /// from 100,000 random names: almost no prefix is shared.
    Random,
    /// Distinct stacks of 8–32 frames, each the previous stack with its last
    /// frames replaced: long shared prefixes, as in a large service.
    Prefix,
    /// Distinct stacks of exactly 5,000 frames sharing long prefixes.
    Deep,
}

impl Shape {
    /// Every shape, in the order benchmarks list them.
    pub const ALL: [Shape; 4] = [Shape::Real, Shape::Random, Shape::Prefix, Shape::Deep];

    /// The shape's name on command lines and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Real => "real",
            Shape::Random => "random",
            Shape::Prefix => "prefix",
            Shape::Deep => "deep",
        }
    }

    /// The shape called `name`.
    pub fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The number of BEFORE's lines benchmarks use by default.
    pub fn default_lines(self) -> usize {
        match self {
            Shape::Deep => 1_000,
            _ => 1_000_000,
        }
    }

    /// How a pair of this shape with `lines` lines of BEFORE is made, in words.
    pub fn describe(self, lines: usize) -> String {
        match self {
            Shape::Real => format!(
                "{lines} lines; line i is the (i mod M)-th of the M lines of real recordings \
                 given (the benchmarks give fixtures/folded/nginx-lua and sort-gzip in file \
                 order: M = 516) followed by \
                 `;leaf_K`, K = (i*2654435761 + 1) mod 5000, with the recorded count + i mod 7; \
                 AFTER the same with + 7 instead of + 1 (lines repeat stacks: see distinct)"
            ),
            Shape::Random => format!(
                "{lines} distinct stacks of 3-11 frames (uniform), each frame one of 100,000 \
                 random names of 3-14 characters [a-z0-9_] (uniform), counts log-uniform in \
                 1-1000; {CHANGES}"
            ),
            Shape::Prefix => format!(
                "{lines} distinct stacks of 8-32 frames (uniform): each is the previous one \
                 cut by 1 + an exponential number of frames (mean 3) and extended with names \
                 drawn uniformly from 5,000 random names of 3-14 characters, so neighbours \
                 share long prefixes; counts log-uniform in 1-1000; {CHANGES}"
            ),
            Shape::Deep => format!(
                "{lines} distinct stacks of exactly 5,000 frames: each is the previous one cut \
                 by 1-2,500 frames (uniform) and extended with names drawn uniformly from 500 \
                 random names of 3-14 characters; counts log-uniform in 1-1000; {CHANGES}"
            ),
        }
    }
}

/// How AFTER differs from BEFORE for the generated shapes.
const CHANGES: &str = "AFTER: each stack of BEFORE is dropped with probability 0.05, \
    has its count multiplied by a log-uniform factor in 1/4-4 with probability 0.25, \
    and is kept as is otherwise; then new distinct stacks made the same way, 5% of BEFORE's \
    number, are appended";

/// What one generated file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Lines written.
    pub lines: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Distinct stacks among the lines (counted by 64-bit hashes).
    pub distinct: u64,
    /// Frames per line: fewest, total, most.
    pub frames_min: u64,
    /// Frames of all lines together (their mean is this over `lines`).
    pub frames_total: u64,
    /// Frames per line: most.
    pub frames_max: u64,
    /// The sum of the counts.
    pub samples: u64,
}

impl FileStats {
    fn line(&mut self, stack: &str, count: u64, written: usize) {
        let frames = stack.bytes().filter(|&b| b == b';').count() as u64 + 1;
        if self.lines == 0 || frames < self.frames_min {
            self.frames_min = frames;
        }
        self.frames_max = self.frames_max.max(frames);
        self.frames_total += frames;
        self.lines += 1;
        self.bytes += written as u64;
        self.samples += count;
    }
}

impl std::fmt::Display for FileStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines, {:.1} MB, {} distinct stacks, frames per line {}-{} (mean {:.1}), {} samples",
            self.lines,
            self.bytes as f64 / 1e6,
            self.distinct,
            self.frames_min,
            self.frames_max,
            self.frames_total as f64 / self.lines.max(1) as f64,
            self.samples
        )
    }
}

/// What a generated pair holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShapeStats {
    /// BEFORE.
    pub before: FileStats,
    /// AFTER.
    pub after: FileStats,
}

/// A small seeded generator (SplitMix64): the same seed, the same numbers,
/// on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A count log-uniform in 1..=1000.
    fn count(&mut self) -> u64 {
        (1000f64.powf(self.unit()) as u64).clamp(1, 1000)
    }
}

/// `n` random names of 3–14 characters, starting with a letter.
fn names(rng: &mut Rng, n: usize) -> Vec<String> {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    (0..n)
        .map(|_| {
            let len = rng.range(3, 14) as usize;
            let mut s = String::with_capacity(len);
            s.push(FIRST[rng.below(FIRST.len() as u64) as usize] as char);
            for _ in 1..len {
                s.push(REST[rng.below(REST.len() as u64) as usize] as char);
            }
            s
        })
        .collect()
}

/// Writes `stack COUNT\n`, keeping `stats`.
fn write_line(w: &mut dyn Write, stats: &mut FileStats, stack: &str, count: u64) -> io::Result<()> {
    let mut buf = itoa::Buffer::new();
    let c = buf.format(count);
    w.write_all(stack.as_bytes())?;
    w.write_all(b" ")?;
    w.write_all(c.as_bytes())?;
    w.write_all(b"\n")?;
    stats.line(stack, count, stack.len() + c.len() + 2);
    Ok(())
}

/// The stack generator of a generated shape: the next stack, as frame indices.
struct Walk {
    shape: Shape,
    vocabulary: Vec<String>,
    frames: Vec<u32>,
    text: String,
}

impl Walk {
    fn new(shape: Shape, rng: &mut Rng) -> Walk {
        let n = match shape {
            Shape::Random => 100_000,
            Shape::Prefix => 5_000,
            _ => 500,
        };
        Walk {
            shape,
            vocabulary: names(rng, n),
            frames: Vec::new(),
            text: String::new(),
        }
    }

    /// The next stack's text (not checked to be new).
    fn next(&mut self, rng: &mut Rng) -> &str {
        let v = self.vocabulary.len() as u64;
        let (keep, depth) = match self.shape {
            Shape::Random => (0, rng.range(3, 11) as usize),
            Shape::Prefix => {
                let cut = 1 + (-(1.0 - rng.unit()).ln() * 3.0) as usize;
                (
                    self.frames.len().saturating_sub(cut),
                    rng.range(8, 32) as usize,
                )
            }
            _ => (
                self.frames
                    .len()
                    .saturating_sub(rng.range(1, 2500) as usize),
                5000,
            ),
        };
        self.frames.truncate(keep.min(depth.saturating_sub(1)));
        while self.frames.len() < depth {
            self.frames.push(rng.below(v) as u32);
        }
        self.text.clear();
        for (i, &f) in self.frames.iter().enumerate() {
            if i > 0 {
                self.text.push(';');
            }
            self.text.push_str(&self.vocabulary[f as usize]);
        }
        &self.text
    }
}

fn hash(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

/// Writes BEFORE (about `lines` lines of `shape`) and its changed copy AFTER,
/// from `seed`. [`Shape::Real`] repeats `real` (distinct stacks of real
/// recordings with their counts); the other shapes ignore it.
pub fn write_pair(
    shape: Shape,
    lines: usize,
    seed: u64,
    real: &[(String, u64)],
    before: &mut dyn Write,
    after: &mut dyn Write,
) -> io::Result<ShapeStats> {
    let mut stats = ShapeStats::default();
    if shape == Shape::Real {
        if real.is_empty() {
            return Err(io::Error::other("the real shape needs real stacks"));
        }
        let mut seen: [std::collections::HashSet<u64, FxBuildHasher>; 2] = Default::default();
        let mut text = String::new();
        for i in 0..lines as u64 {
            let (s, c) = &real[(i % real.len() as u64) as usize];
            for (side, salt) in [(0usize, 1u64), (1, 7)] {
                let leaf = i.wrapping_mul(2_654_435_761).wrapping_add(salt) % 5000;
                text.clear();
                text.push_str(s);
                text.push_str(";leaf_");
                text.push_str(itoa::Buffer::new().format(leaf));
                if side == 0 {
                    write_line(before, &mut stats.before, &text, c + i % 7)?;
                } else {
                    write_line(after, &mut stats.after, &text, c + i % 7)?;
                }
                seen[side].insert(hash(&text));
            }
        }
        stats.before.distinct = seen[0].len() as u64;
        stats.after.distinct = seen[1].len() as u64;
        return Ok(stats);
    }
    let mut rng = Rng::new(seed);
    let mut walk = Walk::new(shape, &mut rng);
    let mut seen =
        std::collections::HashSet::with_capacity_and_hasher(lines + lines / 16, FxBuildHasher);
    let mut written = 0;
    while written < lines {
        let stack = walk.next(&mut rng);
        if !seen.insert(hash(stack)) {
            continue;
        }
        written += 1;
        let count = rng.count();
        write_line(before, &mut stats.before, stack, count)?;
        let u = rng.unit();
        if u < 0.05 {
            continue;
        }
        let count = if u < 0.30 {
            let factor = 4f64.powf(2.0 * rng.unit() - 1.0);
            ((count as f64 * factor).round() as u64).max(1)
        } else {
            count
        };
        write_line(after, &mut stats.after, stack, count)?;
    }
    stats.before.distinct = stats.before.lines;
    let mut added = 0;
    while added < lines / 20 {
        let stack = walk.next(&mut rng);
        if !seen.insert(hash(stack)) {
            continue;
        }
        added += 1;
        let count = rng.count();
        write_line(after, &mut stats.after, stack, count)?;
    }
    stats.after.distinct = stats.after.lines;
    Ok(stats)
}

/// A pair of `shape` in memory (for benches and tests): BEFORE's and
/// AFTER's folded text.
pub fn pair_text(
    shape: Shape,
    lines: usize,
    seed: u64,
    real: &[(String, u64)],
) -> (String, String, ShapeStats) {
    let (mut b, mut a) = (Vec::new(), Vec::new());
    let stats = write_pair(shape, lines, seed, real, &mut b, &mut a).expect("writing to memory");
    let text = |v: Vec<u8>| String::from_utf8(v).expect("generated text is ASCII");
    (text(b), text(a), stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profile;

    #[test]
    fn shapes_are_seeded_and_as_described() {
        let real = vec![("main;a;b".to_string(), 3), ("main;c".to_string(), 1)];
        for shape in Shape::ALL {
            let n = if shape == Shape::Deep { 20 } else { 2000 };
            let (b, a, stats) = pair_text(shape, n, 42, &real);
            let (b2, a2, _) = pair_text(shape, n, 42, &real);
            assert!(b == b2 && a == a2, "{shape:?} is not reproducible");
            let pb = Profile::from_stacks(b.lines().map(|l| {
                let (s, c) = l.rsplit_once(' ').unwrap();
                (s, c.parse().unwrap())
            }));
            assert_eq!(stats.before.lines, n as u64);
            assert_eq!(stats.before.bytes, b.len() as u64);
            assert_eq!(stats.before.distinct, pb.len() as u64, "{shape:?}");
            assert_eq!(stats.before.samples, pb.total());
            let (lo, hi) = match shape {
                Shape::Real => (2, 4),
                Shape::Random => (3, 11),
                Shape::Prefix => (8, 32),
                Shape::Deep => (5000, 5000),
            };
            assert!(
                stats.before.frames_min >= lo && stats.before.frames_max <= hi,
                "{shape:?}: {}",
                stats.before
            );
            if shape != Shape::Real {
                // Distinct stacks, some gone and some new after.
                assert_eq!(pb.len(), n);
                let after: Vec<&str> = a.lines().map(|l| l.rsplit_once(' ').unwrap().0).collect();
                let gone = pb.iter().filter(|(s, _)| !after.contains(s)).count();
                let new = after.iter().filter(|s| pb.get(s) == 0).count();
                assert!(
                    gone > 0 && new == n / 20,
                    "{shape:?}: {gone} gone, {new} new"
                );
            }
        }
        assert_ne!(
            pair_text(Shape::Random, 100, 1, &[]).0,
            pair_text(Shape::Random, 100, 2, &[]).0
        );
        assert_eq!(Shape::from_name("prefix"), Some(Shape::Prefix));
    }
}
