//! Inputs kept from fuzzing (`fuzz/regressions/<target>/`: crashers once
//! fixed, a few minimized corpus files) for the symbolizer's parsers of
//! outside data, run as the fuzz targets run them: never a panic.

use std::path::{Path, PathBuf};

use nflame_symbolizer::PerfMap;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no inputs in {}", dir.display());
    v
}

/// The `gopclntab` target's input: section bytes, then (at most) 64 bytes of
/// parameters; here the lookups are every 8-byte word of the parameters.
#[test]
fn gopclntab() {
    for (path, data) in inputs("gopclntab") {
        let split = data.len().saturating_sub(64);
        let (section, params) = data.split_at(split);
        let words: Vec<u64> = params
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let text = words.first().copied();
        let segment = (
            words.get(1).copied().unwrap_or(0),
            words.get(2).copied().unwrap_or(0),
            words.get(3).copied().unwrap_or(0),
        );
        let r = nflame_symbolizer::fuzzing::gopclntab(section, text, vec![segment], &words, &words);
        eprintln!("{}: {r:?}", path.display());
    }
}

#[test]
fn perf_map() {
    for (path, data) in inputs("perf_map") {
        let text = String::from_utf8_lossy(&data);
        let map = PerfMap::parse(&text);
        for word in text.split_whitespace().take(64) {
            let w = word.strip_prefix("0x").unwrap_or(word);
            if let Ok(a) = u64::from_str_radix(w, 16) {
                for addr in [a, a.wrapping_sub(1), a.wrapping_add(1)] {
                    let _ = map.find(addr);
                }
            }
        }
        eprintln!("{}: {} symbols", path.display(), map.len());
    }
}
