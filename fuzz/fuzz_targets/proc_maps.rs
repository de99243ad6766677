//! The `/proc` text parsers: `/proc/PID/maps` (the one parser, used by the
//! sampler, the symbolizer and the Docker discovery), `/proc/PID/stat` state
//! and CPU lists.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let maps = nflame_procfs::maps::parse_maps(text);
    assert!(maps.windows(2).all(|w| w[0] <= w[1]));
    assert!(maps.iter().all(|m| m.start < m.end));
    // Split the input for the stat and CPU-list parsers too.
    let mut parts = text.splitn(3, '\n');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let _ = nflame_procfs::maps::parse_maps(c.unwrap_or(""));
    let _ = nflame_procfs::process::parse_stat_state(a.unwrap_or(""));
    let _ = nflame_procfs::system::parse_cpu_list(b.unwrap_or(""));
});
