//! The `/proc` text parsers: `/proc/PID/maps` (the sampler's and the
//! symbolizer's), `/proc/PID/stat` state and CPU lists.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (maps, _, _) = nflame_sampler::fuzzing::parse_proc(text, text, text);
    assert!(maps.windows(2).all(|w| w[0] <= w[1]));
    // Split the input for the stat and CPU-list parsers too.
    let mut parts = text.splitn(3, '\n');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let _ = nflame_sampler::fuzzing::parse_proc(c.unwrap_or(""), a.unwrap_or(""), b.unwrap_or(""));
    let sym = nflame_symbolizer::parse_maps(text);
    assert!(sym.windows(2).all(|w| w[0].start <= w[1].start));
});
