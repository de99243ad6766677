//! `nflame_profile::export::read_pprof` on arbitrary bytes (gzip or plain
//! `profile.proto`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nflame_profile::export::read_pprof;

fuzz_target!(|data: &[u8]| {
    if let Ok(profile) = read_pprof(data) {
        let sum: u64 = profile.iter().map(|(_, c)| c).sum();
        assert_eq!(sum, profile.total());
    }
});
