//! Parse + merge + diff throughput on a profile built from a real recording.
//!
//! The input replicates the stacks of `fixtures/folded/nginx-lua.folded.gz`
//! with a varying leaf so that it holds many distinct stacks, as a long
//! recording of a large service does.

use std::hint::black_box;
use std::io::{Cursor, Read};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nflame_profile::diff::{Diff, DiffOptions};
use nflame_profile::io::Input;
use nflame_profile::Profile;

fn real_stacks() -> Vec<(String, u64)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/folded/nginx-lua.folded.gz");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).expect("fixture"))
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| {
            let (s, c) = l.rsplit_once(' ').unwrap();
            (s.to_string(), c.parse().unwrap())
        })
        .collect()
}

/// About `lines` folded lines: every real stack with one of many synthetic leaves.
fn large_text(stacks: &[(String, u64)], lines: usize, salt: u64) -> String {
    let mut out = String::with_capacity(lines * 200);
    for i in 0..lines as u64 {
        let (s, c) = &stacks[i as usize % stacks.len()];
        let variant = (i.wrapping_mul(2654435761).wrapping_add(salt)) % 5000;
        out.push_str(s);
        out.push_str(&format!(";leaf_{variant} {}\n", c + (i % 7)));
    }
    out
}

fn parse(text: &str) -> Profile {
    let mut input = Input::from_reader(
        PathBuf::from("bench"),
        Cursor::new(text.as_bytes().to_vec()),
    )
    .unwrap();
    let mut p = Profile::new();
    p.read_folded(&mut input).unwrap();
    p
}

fn bench(c: &mut Criterion) {
    let stacks = real_stacks();
    let before = large_text(&stacks, 200_000, 1);
    let after = large_text(&stacks, 200_000, 7);
    let mut g = c.benchmark_group("profile");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(before.len() as u64));
    g.bench_function("parse_merge_200k_lines", |b| {
        b.iter(|| {
            let p = parse(black_box(&before));
            assert!(p.total() > 0 && p.len() > 1000);
            p
        })
    });
    let pb = parse(&before);
    let pa = parse(&after);
    g.throughput(Throughput::Elements((pb.len() + pa.len()) as u64));
    g.bench_function("diff_lines_and_report", |b| {
        b.iter(|| {
            let d = Diff::new(pb.clone(), pa.clone(), &DiffOptions::default()).unwrap();
            let lines = d.lines();
            let report = d.frame_shares();
            assert!(!lines.is_empty() && !report.by_inclusive.is_empty());
            (lines.len(), report.by_self.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
