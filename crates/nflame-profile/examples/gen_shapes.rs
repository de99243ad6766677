//! Writes the benchmark shapes of `nflame_profile::shapes` as folded files.
//!
//! ```text
//! cargo run --release -p nflame-profile --example gen_shapes -- DIR [SHAPE…]
//! ```
//!
//! For each shape (default: all of them) writes `DIR/SHAPE.before.folded`,
//! `DIR/SHAPE.after.folded` and `DIR/SHAPE.txt`, which says how the pair was
//! made and what it holds. `LINES` (BEFORE's lines; default per shape) and
//! `SEED` (default 1) in the environment change the input.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use nflame_profile::shapes::{write_pair, Shape};

/// The lines of the real recordings the `real` shape repeats, in file order.
fn real_lines() -> Vec<(String, u64)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/folded");
    let mut out = Vec::new();
    for name in ["nginx-lua.folded.gz", "sort-gzip.folded.gz"] {
        let file = File::open(dir.join(name)).expect("a fixture");
        for line in BufReader::new(flate2::read::MultiGzDecoder::new(file)).lines() {
            let line = line.expect("a fixture line");
            let (stack, count) = line.rsplit_once(' ').expect("a folded line");
            out.push((stack.to_string(), count.parse().expect("a count")));
        }
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: gen_shapes DIR [SHAPE…]"));
    let mut shapes: Vec<Shape> = args
        .map(|a| Shape::from_name(&a).unwrap_or_else(|| panic!("unknown shape {a:?}")))
        .collect();
    if shapes.is_empty() {
        shapes = Shape::ALL.to_vec();
    }
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<u64>().expect(name))
    };
    let seed = env("SEED").unwrap_or(1);
    std::fs::create_dir_all(&dir).expect("creating DIR");
    let real = real_lines();
    for shape in shapes {
        let lines = env("LINES").map_or(shape.default_lines(), |n| n as usize);
        let path = |side: &str| dir.join(format!("{}.{side}.folded", shape.name()));
        let mut before = BufWriter::with_capacity(1 << 20, File::create(path("before")).unwrap());
        let mut after = BufWriter::with_capacity(1 << 20, File::create(path("after")).unwrap());
        let stats = write_pair(shape, lines, seed, &real, &mut before, &mut after).unwrap();
        before.flush().unwrap();
        after.flush().unwrap();
        let text = format!(
            "{}: {} (seed {seed})\n  before: {}\n  after:  {}\n",
            shape.name(),
            shape.describe(lines),
            stats.before,
            stats.after
        );
        std::fs::write(dir.join(format!("{}.txt", shape.name())), &text).unwrap();
        print!("{text}");
    }
}
