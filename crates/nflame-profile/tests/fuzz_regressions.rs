//! Inputs kept from fuzzing (`fuzz/regressions/<target>/`: crashers once
//! fixed, and a few minimized corpus files), run through the same entry points
//! as the fuzz targets in `fuzz/fuzz_targets/`: each must give a clean
//! `Result` (either way), never a panic.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use nflame_profile::export::read_pprof;
use nflame_profile::io::Input;
use nflame_profile::perf_script::{collapse, CollapseOptions};
use nflame_profile::{embed, folded, Profile};

/// The files kept for `target`, sorted by name.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn input(data: &[u8]) -> Input {
    Input::from_reader(PathBuf::from("regression"), Cursor::new(data.to_vec())).unwrap()
}

#[test]
fn folded_line() {
    for (path, bytes) in inputs("folded_line") {
        let Ok(line) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let r = folded::parse_line(line);
        eprintln!("{}: {r:?}", path.display());
    }
}

#[test]
fn folded_read() {
    for (path, bytes) in inputs("folded_read") {
        let mut p = Profile::new();
        let r = p.read_folded(&mut input(&bytes));
        eprintln!("{}: {:?}", path.display(), r.map(|()| p.total()));
        let r = Profile::from_input(&mut input(&bytes));
        eprintln!("{}: {:?}", path.display(), r.map(|p| p.total()));
        let _ = folded::read_ordered_lines(&mut input(&bytes), &Default::default());
    }
}

#[test]
fn perf_script() {
    for (path, bytes) in inputs("perf_script") {
        let Some((&flags, text)) = bytes.split_first() else {
            continue;
        };
        let mut opts = CollapseOptions::default();
        opts.period = flags & 1 != 0;
        opts.include_pid = flags & 2 != 0;
        opts.include_tid = flags & 4 != 0;
        opts.annotate_kernel = flags & 8 == 0;
        opts.annotate_jit = flags & 16 == 0;
        if flags & 32 != 0 {
            opts.event = Some("cpu-clock".into());
        }
        opts.include_addrs = flags & 64 != 0;
        opts.fold_unknown_runs = flags & 128 == 0;
        opts.threads = 1;
        let r = collapse(&mut input(text), &opts);
        eprintln!(
            "{}: {:?}",
            path.display(),
            r.as_ref().map(|(p, _)| p.total())
        );
        // Success means samples (crash-zero-period-empty-profile: it did not).
        if let Ok((p, stats)) = r {
            assert!(p.total() > 0 && stats.samples > 0, "{}", path.display());
        }
    }
}

#[test]
fn svg_metadata() {
    for (path, bytes) in inputs("svg_metadata") {
        let Ok(svg) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let r = embed::extract(svg, &path);
        eprintln!("{}: {:?}", path.display(), r.map(|e| e.profiles.len()));
    }
}

#[test]
fn pprof() {
    for (path, bytes) in inputs("pprof") {
        let r = read_pprof(&bytes[..]);
        eprintln!("{}: {:?}", path.display(), r.map(|p| p.total()));
    }
}
