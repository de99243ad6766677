//! Inputs kept from fuzzing the `/proc` parsers (`fuzz/regressions/proc_maps/`:
//! crashers once fixed, a few minimized corpus files), run through the same
//! parsers as the `proc_maps` fuzz target: never a panic.

use std::path::Path;

#[test]
fn proc_maps() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/proc_maps");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let maps = nflame_procfs::maps::parse_maps(text);
        let state = nflame_procfs::process::parse_stat_state(text);
        let cpus = nflame_procfs::system::parse_cpu_list(text);
        assert!(maps.windows(2).all(|w| w[0] <= w[1]));
        assert!(maps.iter().all(|m| m.start < m.end));
        eprintln!(
            "{}: {} mappings, state {state:?}, {:?} cpus",
            entry.path().display(),
            maps.len(),
            cpus.map(|c| c.len())
        );
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}
