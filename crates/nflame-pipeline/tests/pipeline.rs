//! The pipelines end to end on small profiles in a temporary directory.

use std::error::Error as _;
use std::path::Path;

use nflame_pipeline::{compare, diagnose, CompareOptions, Diagnosis, DiagnosisOptions, Error};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The message and every cause, as the CLI prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

const BEFORE: &str = "docker-proxy;[docker-proxy];splice_[k] 400\nnginx;main;parse 600\n";
const AFTER: &str = "nginx;main;parse 900\nnginx;main;write 100\n";

#[test]
fn compare_writes_both_graphs_and_returns_both_reports() {
    let dir = tempfile::tempdir().unwrap();
    let before = write(dir.path(), "before.folded", BEFORE);
    let after = write(dir.path(), "after.folded", AFTER);
    let mut o = CompareOptions::new(&before, &after);
    o.graph = Some(dir.path().join("diff.svg"));
    o.removed_graph = Some(dir.path().join("removed.svg"));
    o.command_line = Some("nflame diff before after".into());
    let c = compare(&o).unwrap();
    for svg in ["diff.svg", "removed.svg"] {
        let text = std::fs::read_to_string(dir.path().join(svg)).unwrap();
        assert!(text.contains("<title>splice ("), "{svg}");
        assert!(text.contains("nflame diff before after"), "{svg}");
    }
    assert_eq!(c.frame_shares.before_total, 1000);
    assert_eq!(c.changes.before.verdict.kind.as_str(), "userland-proxy");
    let parse = c
        .frame_shares
        .by_inclusive
        .iter()
        .find(|r| r.frame == "parse")
        .unwrap();
    // Shares are fractions; the JSON shows them in percent, as it always has.
    assert!((parse.inclusive_share_change - 0.3).abs() < 1e-9);
    let mut json = Vec::new();
    c.write_json(&mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let row = v["frames"]["by_inclusive"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["frame"] == "parse")
        .unwrap();
    assert!((row["inclusive_delta_pct"].as_f64().unwrap() - 30.0).abs() < 1e-9);
    assert_eq!(v["verdict"]["kind"], "userland-proxy");
}

#[test]
fn compare_fails_on_an_unwritable_graph_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = CompareOptions::new(dir.path().join("missing-before"), "missing-after");
    o.graph = Some(dir.path().join("no-such-dir/diff.svg"));
    let e = compare(&o).unwrap_err();
    let msg = chain(&e);
    assert!(msg.contains("no-such-dir/diff.svg"), "{msg}");
    assert!(!msg.contains("missing-before"), "{msg}");
}

#[test]
fn diagnose_one_and_two_profiles_and_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let before = write(dir.path(), "before.folded", BEFORE);
    let after = write(dir.path(), "after.folded", AFTER);
    let one = diagnose(&DiagnosisOptions::new(&before)).unwrap();
    assert!(matches!(one, Diagnosis::Profile(_)));
    let mut o = DiagnosisOptions::new(&before);
    o.after = Some(after);
    o.html = Some(dir.path().join("page.html"));
    o.command_line = Some("nflame report before after --html page.html".into());
    let two = diagnose(&o).unwrap();
    let Diagnosis::Change(change) = &two else {
        panic!("two profiles give a change report")
    };
    assert_eq!(change.verdict.kind.as_str(), "userland-proxy");
    let page = std::fs::read_to_string(dir.path().join("page.html")).unwrap();
    assert!(page.contains("verdict: userland-proxy"));
    assert!(page.contains("nflame report before after --html page.html"));
}

#[test]
fn a_missing_rules_file_names_the_file_and_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let before = write(dir.path(), "before.folded", BEFORE);
    let mut o = DiagnosisOptions::new(&before);
    o.rules = Some(dir.path().join("no.rules"));
    let e = diagnose(&o).unwrap_err();
    assert!(matches!(e, Error::RulesFile { .. }), "{e:?}");
    let msg = chain(&e);
    assert!(msg.starts_with("cannot read the rules file "), "{msg}");
    assert!(msg.contains("no.rules"), "{msg}");
    assert_eq!(msg.matches("os error 2").count(), 1, "{msg}");
    assert!(e.source().is_some());
}
