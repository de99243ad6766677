//! `perf script` collapse throughput on real recordings.
//!
//! The input is the committed `perf script` fixtures (an nginx worker with
//! LuaJIT, a shell pipeline, three system-wide recordings) repeated to about
//! 60 MB, so that chunking and the parallel merge are exercised as on a long
//! recording. One thread measures the per-line cost; the default thread count
//! measures what `nflame collapse` does.

use std::hint::black_box;
use std::io::{Cursor, Read};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nflame_profile::io::Input;
use nflame_profile::perf_script::{collapse, CollapseOptions};

const FIXTURES: [&str; 5] = ["nginx-lua", "sort-gzip", "lab-host", "lab-nat", "lab-proxy"];

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../fixtures/perf-script/{name}.perf.txt.gz"));
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).expect("fixture"))
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn large_input(min_bytes: usize) -> (Vec<u8>, u64) {
    let parts: Vec<String> = FIXTURES.iter().map(|n| fixture(n)).collect();
    let mut out = String::with_capacity(min_bytes + (1 << 20));
    let mut samples = 0u64;
    while out.len() < min_bytes {
        for p in &parts {
            out.push_str(p);
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
            // Headers: lines that start with neither a blank nor `#`.
            samples += p
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t', '#']))
                .count() as u64;
        }
    }
    (out.into_bytes(), samples)
}

fn run(text: &[u8], opts: &CollapseOptions) -> u64 {
    let mut input =
        Input::from_reader(PathBuf::from("bench.perf"), Cursor::new(text.to_vec())).unwrap();
    let (profile, stats) = collapse(&mut input, opts).unwrap();
    assert!(profile.len() > 1000);
    stats.samples + stats.skipped_other_events
}

fn bench(c: &mut Criterion) {
    let (text, samples) = large_input(60 << 20);
    let mut g = c.benchmark_group("collapse");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    for (name, threads) in [("perf_script_1_thread", 1), ("perf_script_parallel", 0)] {
        let mut opts = CollapseOptions::default();
        opts.threads = threads;
        g.bench_function(name, |b| {
            b.iter(|| {
                let seen = run(black_box(&text), &opts);
                assert_eq!(seen, samples);
                seen
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
