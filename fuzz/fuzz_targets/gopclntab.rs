//! The `.gopclntab` parser of stripped Go binaries and lookups in it. The
//! input is the section bytes; a few header words make the `.text` address,
//! one PT_LOAD segment and the addresses to look up.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    text: Option<u64>,
    segment: (u64, u64, u64),
    addrs: Vec<u64>,
    offsets: Vec<u64>,
}

fuzz_target!(|data: &[u8]| {
    // Keep the section bytes unstructured so the seed tables mutate well:
    // the last 64 bytes (at most) are the parameters.
    let split = data.len().saturating_sub(64);
    let (section, params) = data.split_at(split);
    let Ok(p) = Input::arbitrary(&mut Unstructured::new(params)) else {
        return;
    };
    let mut addrs = p.addrs;
    // Also every entry boundary the text start suggests.
    if let Some(t) = p.text {
        addrs.extend([t, t.wrapping_add(0x10), t.wrapping_add(0x40)]);
    }
    let _ = nflame_symbolizer::fuzzing::gopclntab(section, p.text, vec![p.segment], &addrs, &p.offsets);
});
