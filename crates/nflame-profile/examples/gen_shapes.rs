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
//!
//! ```text
//! cargo run --release -p nflame-profile --example gen_shapes -- DIR --perf-script N
//! ```
//!
//! writes `DIR/growing-N.perf.txt`: `perf script` text of N samples, one per
//! stack of the first N lines of `DIR/random.before.folded` (written first
//! if missing), so that its distinct stacks grow with its size (every sample
//! a new stack), for measuring the collapser's memory.

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

/// Writes `DIR/growing-N.perf.txt` (see the module's documentation).
fn perf_script(dir: &Path, samples: usize) {
    let random = dir.join("random.before.folded");
    if !random.exists() {
        let lines = Shape::Random.default_lines().max(samples);
        let mut before = BufWriter::new(File::create(&random).unwrap());
        write_pair(
            Shape::Random,
            lines,
            1,
            &[],
            &mut before,
            &mut std::io::sink(),
        )
        .unwrap();
        before.flush().unwrap();
    }
    let path = dir.join(format!("growing-{samples}.perf.txt"));
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).unwrap());
    let input = BufReader::new(File::open(&random).unwrap());
    let mut n = 0;
    for line in input.lines().take(samples) {
        let line = line.unwrap();
        let (stack, _) = line.rsplit_once(' ').expect("a folded line");
        let (pid, sec, usec) = (1000 + n % 7, 100 + n / 1000, (n % 1000) * 1000);
        writeln!(
            out,
            "app {pid} [{:03}] {sec}.{usec:06}: 1001001 cpu-clock:",
            n % 2
        )
        .unwrap();
        for (depth, frame) in stack.rsplit(';').enumerate() {
            let addr = 0x55d0_0000_0000u64 + (n as u64) * 64 + depth as u64;
            writeln!(
                out,
                "\t    {addr:x} {frame}+0x{:x} (/usr/bin/app)",
                depth * 16
            )
            .unwrap();
        }
        writeln!(out).unwrap();
        n += 1;
    }
    out.flush().unwrap();
    println!("{}: {n} samples, each a distinct stack", path.display());
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: gen_shapes DIR [SHAPE…]"));
    let rest: Vec<String> = args.collect();
    if rest.first().map(String::as_str) == Some("--perf-script") {
        let n = rest
            .get(1)
            .and_then(|n| n.parse().ok())
            .expect("--perf-script N");
        std::fs::create_dir_all(&dir).expect("creating DIR");
        perf_script(&dir, n);
        return;
    }
    let args = rest.into_iter();
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
