//! Rendering throughput: a flame graph and an honest differential graph of
//! profiles built from a real recording (`fixtures/folded/lab-proxy.folded.gz`
//! and `lab-host.folded.gz`), with many distinct stacks.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nflame_profile::diff::{Diff, DiffOptions};
use nflame_profile::Profile;
use nflame_render::{render_diff, render_profile, RenderOptions};

fn fixture(name: &str) -> Profile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/folded")
        .join(name);
    Profile::from_path(&p).expect("fixture")
}

/// Every stack of `p` with one of `variants` synthetic leaves.
fn widen(p: &Profile, variants: u64) -> Profile {
    let mut out = Profile::new();
    for (i, (s, c)) in p.iter().enumerate() {
        for v in 0..variants {
            out.add(&format!("{s};leaf_{}", (i as u64 * 31 + v) % 997), c + v);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let before = widen(&fixture("lab-proxy.folded.gz"), 20);
    let after = widen(&fixture("lab-host.folded.gz"), 20);
    let opts = RenderOptions::default();
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    g.throughput(Throughput::Elements(after.len() as u64));
    g.bench_function("flame_graph", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            render_profile(black_box(&after), &opts, &mut out).unwrap();
            assert!(out.len() > 10_000);
            out.len()
        })
    });
    let diff = Diff::new(before, after, &DiffOptions::default()).unwrap();
    g.throughput(Throughput::Elements(
        (diff.before.len() + diff.after.len()) as u64,
    ));
    g.bench_function("honest_diff", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            render_diff(black_box(&diff), &opts, &mut out).unwrap();
            assert!(out.len() > 10_000);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
