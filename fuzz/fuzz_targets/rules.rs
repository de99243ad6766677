//! `nflame_diagnose::Rules::parse` on arbitrary rules text, then a report
//! with those rules over stacks taken from the rest of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nflame_diagnose::{CategoryReport, CategoryReportOptions, Rules};
use nflame_profile::Profile;

fuzz_target!(|data: &str| {
    // Rules, then `\0`, then stacks, one a line.
    let (rules_text, stacks) = data.split_once('\0').unwrap_or((data, "a;b;c"));
    let Ok(rules) = Rules::parse("fuzz.rules", rules_text) else {
        return;
    };
    assert!(rules.categories().len() >= nflame_diagnose::rules::STANDARD_CATEGORIES.len());
    let mut profile = Profile::new();
    for line in stacks.lines().take(64) {
        if !line.is_empty() {
            profile.add(line, 1);
        }
    }
    let _ = CategoryReport::new(&profile, &rules, &CategoryReportOptions::default());
});
