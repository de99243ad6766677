//! `nflame_profile::embed::extract`: the context and profiles embedded in an
//! SVG, from arbitrary text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nflame_profile::embed;

fuzz_target!(|svg: &str| {
    if let Ok(e) = embed::extract(svg, Path::new("fuzz.svg")) {
        assert!(!e.profiles.is_empty());
        // What was read writes back and reads the same.
        let profiles: Vec<(&str, &nflame_profile::Profile)> =
            e.profiles.iter().map(|(r, p)| (r.as_str(), p)).collect();
        let ctx = e
            .context
            .clone()
            .unwrap_or_else(|| embed::Context::new("fuzz", "profile"));
        let xml = embed::metadata_xml(&ctx, &profiles);
        let doc = embed::insert_metadata(b"<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>", &xml);
        let again = embed::extract(std::str::from_utf8(&doc).unwrap(), Path::new("again.svg"))
            .expect("our own metadata reads back");
        assert_eq!(again.profiles.len(), e.profiles.len());
    }
});
