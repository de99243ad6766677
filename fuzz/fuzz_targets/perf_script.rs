//! `nflame_profile::perf_script::collapse` on arbitrary `perf script` text;
//! the first byte picks the options.
#![no_main]

use std::io::Cursor;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use nflame_profile::io::Input;
use nflame_profile::perf_script::{collapse, CollapseOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
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
    let mut input = Input::from_reader(PathBuf::from("fuzz.perf.txt"), Cursor::new(text.to_vec()))
        .expect("a cursor reads");
    if let Ok((profile, stats)) = collapse(&mut input, &opts) {
        assert!(!profile.is_empty());
        assert!(stats.samples > 0);
        for (stack, _) in profile.iter() {
            assert!(!stack.contains('\n'), "a stack with a newline: {stack:?}");
        }
    }
});
