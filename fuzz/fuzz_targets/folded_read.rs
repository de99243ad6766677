//! `Profile::read_folded` and `Profile::from_input` (which also reads SVGs and
//! gzip) on an input made from arbitrary bytes, via `Input::from_reader`.
#![no_main]

use std::io::Cursor;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use nflame_profile::io::Input;
use nflame_profile::{folded, Profile};

fn input(data: &[u8]) -> Input {
    Input::from_reader(PathBuf::from("fuzz.folded"), Cursor::new(data.to_vec()))
        .expect("a cursor reads")
}

fuzz_target!(|data: &[u8]| {
    let mut profile = Profile::new();
    if profile.read_folded(&mut input(data)).is_ok() {
        let sum: u64 = profile.iter().map(|(_, c)| c).sum();
        assert_eq!(sum, profile.total());
        let mut out = Vec::new();
        profile.write_folded(&mut out).unwrap();
        let mut again = Profile::new();
        again.read_folded(&mut input(&out)).unwrap();
        assert_eq!(again, profile);
        assert_eq!(again.len(), profile.len());
    }
    let _ = Profile::from_input(&mut input(data));
    let _ = folded::read_ordered_lines(&mut input(data), &Default::default());
});
