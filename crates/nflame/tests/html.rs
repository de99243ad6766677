//! The one-file HTML report, loaded in Debian's headless Chromium (driven by
//! playwright-core, see tests/browser/): the page loads without errors and the
//! search of each embedded flame graph finds frames.
//!
//! Needs `chromium`, Node.js and `npm ci` in tests/browser
//! (scripts/install-deps.sh does all three); `NFLAME_SKIP=chromium`
//! (scripts/test.sh) leaves these tests out.

use std::path::{Path, PathBuf};
use std::process::Command;

fn nflame() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nflame"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

/// Loads `page` in Chromium and searches every graph for `needle`.
fn browse(page: &Path, needle: &str) -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/install-deps.sh (npm install in {})",
        dir.display()
    );
    let out = Command::new("node")
        .arg(dir.join("check-page.mjs"))
        .arg(page)
        .arg(needle)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "browser check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the check prints JSON")
}

mod needs_chromium {
    use super::*;

    #[test]
    fn two_profile_report_loads_and_searches_in_chromium() {
        let dir = tempfile::tempdir().unwrap();
        let html = dir.path().join("incident.html");
        let out = nflame()
            .arg("report")
            .arg(fixture("folded/lab-proxy.folded.gz"))
            .arg(fixture("folded/lab-host.folded.gz"))
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(
            page.contains("verdict: userland-proxy"),
            "the verdict is on the page"
        );
        assert!(
            page.contains("--html"),
            "the command that made it is on the page"
        );
        assert!(
            !page.contains("src=\"http") && !page.contains("href=\"http"),
            "no network resources"
        );
        let v = browse(&html, "splice");
        assert_eq!(v["errors"], serde_json::json!([]), "{v}");
        assert_eq!(v["graphs"], 3, "diff, before, after: {v}");
        let matched = v["matched"].as_array().unwrap();
        // docker-proxy's splice calls: in the diff (hatched, gone) and in BEFORE.
        assert!(matched[0].as_str().unwrap().starts_with("Matched: "), "{v}");
        assert!(matched[1].as_str().unwrap().starts_with("Matched: "), "{v}");
        // The host-network recording has no splice: nothing matched.
        assert_eq!(matched[2], "", "{v}");
    }

    #[test]
    fn hostile_frame_names_stay_text() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("hostile.folded");
        std::fs::write(
            &input,
            "main;<script>alert(1)</script>;a&b 5\nmain;\"quoted\" 'single' 3\nmain;<img src=x onerror=alert(2)> 2\n",
        )
        .unwrap();
        let html = dir.path().join("r.html");
        let svg = dir.path().join("r.svg");
        let out = nflame()
            .arg("report")
            .arg(&input)
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = nflame()
            .arg("render")
            .arg(&input)
            .arg("-o")
            .arg(&svg)
            .output()
            .unwrap();
        assert!(out.status.success());
        for text in [
            std::fs::read_to_string(&html).unwrap(),
            std::fs::read_to_string(&svg).unwrap(),
        ] {
            assert!(!text.contains("<script>alert"), "unescaped script tag");
            assert!(!text.contains("<img src=x"), "unescaped img tag");
        }
        let v = browse(&html, "alert");
        assert_eq!(v["errors"], serde_json::json!([]), "{v}");
        assert_eq!(v["graphs"], 1);
        assert!(
            v["matched"][0].as_str().unwrap().starts_with("Matched: "),
            "{v}"
        );
    }
}
