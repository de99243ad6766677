//! `nflame_symbolizer::PerfMap::parse` (JIT `/tmp/perf-PID.map` files) and
//! lookups in what it parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nflame_symbolizer::PerfMap;

fuzz_target!(|text: &str| {
    let map = PerfMap::parse(text);
    // Look up the addresses the text mentions, their neighbours and extremes.
    let mut addrs = vec![0, 1, u64::MAX, u64::MAX - 1];
    for word in text.split_whitespace().take(64) {
        let w = word.strip_prefix("0x").unwrap_or(word);
        if let Ok(a) = u64::from_str_radix(w, 16) {
            addrs.extend([a, a.wrapping_sub(1), a.wrapping_add(1)]);
        }
    }
    for a in addrs {
        if let Some(name) = map.find(a) {
            assert!(!name.is_empty());
        }
    }
    assert_eq!(map.is_empty(), map.len() == 0);
});
