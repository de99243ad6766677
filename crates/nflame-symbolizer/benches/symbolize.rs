//! Symbolization speed on this very process (root: reads kallsyms addresses).
//!
//! - `libc_cold`: 5,000 distinct libc addresses with a fresh cache (parses libc).
//! - `libc_warm`: the same with a reused cache (the per-thread case in `fold`).
//! - `fold`: 20,000 samples over 2,000 distinct stacks (user + kernel frames).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nflame_recording::{ProcessInfo, RawSample, Recording};
use nflame_symbolizer::{fold, FoldOptions, ProcessSymbolizer, SymbolCache, SymbolizeOptions};

/// One interned half of a stack, as the sampler stores it.
type Stack = Arc<[u64]>;

fn libc_addrs(n: usize) -> (Vec<nflame_recording::Mapping>, Vec<u64>) {
    let maps = nflame_procfs::maps::read_maps(std::process::id()).unwrap();
    let libc = maps
        .iter()
        .find(|m| m.path.to_string_lossy().contains("libc.so"))
        .unwrap();
    let step = ((libc.end - libc.start) / n as u64).max(1);
    let addrs = (0..n as u64).map(|i| libc.start + i * step).collect();
    (maps, addrs)
}

fn kernel_addrs(n: usize) -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
    text.lines()
        .filter(|l| l.contains(" T ") || l.contains(" t "))
        .filter_map(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
        .filter(|&a| a != 0)
        .step_by(37)
        .take(n)
        .map(|a| a + 5)
        .collect()
}

fn bench(c: &mut Criterion) {
    let pid = std::process::id();
    let (maps, addrs) = libc_addrs(5000);
    let mut g = c.benchmark_group("symbolize");
    g.sample_size(10);
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("libc_cold", |b| {
        b.iter(|| {
            let frames = ProcessSymbolizer::new(pid, &maps).symbolize(&addrs);
            assert!(frames.iter().filter(|f| f[0].named).count() > addrs.len() / 2);
        })
    });
    let cache = Rc::new(SymbolCache::new(&SymbolizeOptions::default()));
    g.bench_function("libc_warm", |b| {
        b.iter(|| {
            let mut sym = ProcessSymbolizer::with_cache(Rc::clone(&cache), pid, &maps, true);
            let frames = sym.symbolize(&addrs);
            assert!(frames.iter().filter(|f| f[0].named).count() > addrs.len() / 2);
        })
    });

    // 2,000 distinct stacks of 8 user + 6 kernel frames, 10 samples each.
    let kernel = kernel_addrs(3000);
    let stacks: Vec<(Stack, Stack)> = (0..2000)
        .map(|i| {
            let u: Vec<u64> = (0..8)
                .map(|j| addrs[(i * 7 + j * 613) % addrs.len()])
                .collect();
            let k: Vec<u64> = (0..6)
                .map(|j| kernel[(i * 5 + j * 101) % kernel.len()])
                .collect();
            (Arc::from(u), Arc::from(k))
        })
        .collect();
    let samples: Vec<RawSample> = (0..20_000)
        .map(|i| {
            let (u, k) = &stacks[i % stacks.len()];
            RawSample {
                pid,
                tid: pid,
                period: 1,
                user: Arc::clone(u),
                kernel: Arc::clone(k),
                ..RawSample::default()
            }
        })
        .collect();
    let info = ProcessInfo {
        pid,
        comm: "bench".into(),
        mappings: maps.clone(),
        ..ProcessInfo::default()
    };
    let rec = Recording {
        samples,
        processes: BTreeMap::from([(pid, info)]),
        ..Recording::default()
    };
    g.throughput(Throughput::Elements(rec.sample_count()));
    g.bench_function("fold_20k_samples", |b| {
        b.iter(|| {
            let (profile, stats) = fold(&rec, &FoldOptions::default()).unwrap();
            assert_eq!(profile.total(), 20_000);
            assert!(stats.named_share() > 0.5);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
