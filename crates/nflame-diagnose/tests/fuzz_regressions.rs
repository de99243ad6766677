//! Rules texts kept from fuzzing (`fuzz/regressions/rules/`: crashers once
//! fixed, a few minimized corpus files), run as the `rules` fuzz target runs
//! them: rules, then `\0`, then stacks. A clean `Result`, never a panic.

use std::path::Path;

use nflame_diagnose::{CategoryReport, CategoryReportOptions, Rules};
use nflame_profile::Profile;

#[test]
fn rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/rules");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let Ok(data) = std::str::from_utf8(&bytes) else {
            continue;
        };
        n += 1;
        let (rules_text, stacks) = data.split_once('\0').unwrap_or((data, "a;b;c"));
        let rules = match Rules::parse("regression.rules", rules_text) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", entry.path().display());
                continue;
            }
        };
        let mut profile = Profile::new();
        for line in stacks.lines().take(64).filter(|l| !l.is_empty()) {
            profile.add(line, 1);
        }
        let r = CategoryReport::new(&profile, &rules, &CategoryReportOptions::default());
        eprintln!("{}: report {}", entry.path().display(), r.is_ok());
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}
