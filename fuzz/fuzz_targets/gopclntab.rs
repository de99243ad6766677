//! The `.gopclntab` parser of stripped Go binaries and lookups in it. The
//! input is the section bytes followed by (at most) 64 bytes of parameters,
//! read as little-endian words: the `.text` address, one PT_LOAD segment
//! (file offset, size, address), and the rest as addresses and file offsets
//! to look up (every word is used as both).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The section bytes stay unstructured so the seed tables mutate well.
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
    let _ = nflame_symbolizer::fuzzing::gopclntab(section, text, vec![segment], &words, &words);
});
