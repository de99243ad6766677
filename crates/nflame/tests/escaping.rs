//! Hostile frame names (`<`, `&`, quotes, `<script>`) come out escaped in
//! every SVG and HTML nflame writes: `render`, `diff` (whose titles are
//! rewritten after inferno drew them), the removed view, the HTML report, and
//! the context embedded in SVGs (JSON inside CDATA, with `<`, `>` and `&` as
//! `\u` escapes so that no `]]>` or tag can appear).

use std::path::Path;
use std::process::Command;

fn nflame() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nflame"))
}

const BEFORE: &str = "\
main;<script>alert(1)</script>;a&b 50
main;\"quoted\" 'single';x<y>z 30
main;gone<&>frame;leaf 20
";

const AFTER: &str = "\
main;<script>alert(1)</script>;a&b 10
main;\"quoted\" 'single';x<y>z 60
main;<img src=x onerror=alert(2)> 30
";

/// A title with the same hostile characters.
const TITLE: &str = "<script>alert(3)</script> & \"t\" ]]>";

fn run(args: &mut Command) {
    let out = args.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No hostile markup survives, the names are there escaped, and every CDATA
/// section holds no raw `<`, `>` or `&`.
fn assert_escaped(what: &str, doc: &str) {
    for raw in [
        "<script>alert",
        "<img src=x",
        "<y>",
        "a&b",
        "<&>",
        "\"quoted\" 'single'",
    ] {
        assert!(!doc.contains(raw), "{what}: raw {raw:?}");
    }
    assert!(
        doc.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{what}: the script frame is missing or escaped differently"
    );
    assert!(doc.contains("a&amp;b"), "{what}: a&b");
    let mut rest = doc;
    while let Some(i) = rest.find("<metadata id=\"nflame-context\"><![CDATA[") {
        rest = &rest[i + "<metadata id=\"nflame-context\"><![CDATA[".len()..];
        let end = rest.find("]]>").expect("CDATA closed");
        let json = &rest[..end];
        assert!(
            !json.contains(['<', '>', '&']),
            "{what}: raw markup in the embedded context: {json}"
        );
        serde_json::from_str::<serde_json::Value>(json)
            .unwrap_or_else(|e| panic!("{what}: the embedded context is not JSON ({e}): {json}"));
        rest = &rest[end..];
    }
    assert_well_formed(what, doc);
}

/// Parses an SVG as XML with Python's parser, when there is one.
fn assert_well_formed(what: &str, doc: &str) {
    if !doc.trim_start().starts_with("<?xml") && !doc.trim_start().starts_with("<svg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.svg");
    std::fs::write(&path, doc).unwrap();
    let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(&path)
        .output()
    else {
        eprintln!("python3 missing: {what} not parsed as XML");
        return;
    };
    assert!(
        out.status.success(),
        "{what} is not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_inputs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let before = dir.join("before.folded");
    let after = dir.join("after.folded");
    std::fs::write(&before, BEFORE).unwrap();
    std::fs::write(&after, AFTER).unwrap();
    (before, after)
}

#[test]
fn render_escapes_frame_names_and_title() {
    let dir = tempfile::tempdir().unwrap();
    let (before, _) = write_inputs(dir.path());
    let svg = dir.path().join("r.svg");
    run(nflame()
        .arg("render")
        .arg(&before)
        .args(["--title", TITLE, "-o"])
        .arg(&svg));
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert_escaped("render", &doc);
    assert!(!doc.contains("alert(3)</script>"), "the title is raw");
    // And the embedded profile reads back to the very names.
    let p = nflame_profile::Profile::from_path(&svg).unwrap();
    assert_eq!(p.get("main;<script>alert(1)</script>;a&b"), 50);
}

#[test]
fn diff_and_removed_view_escape_rewritten_titles() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = write_inputs(dir.path());
    let svg = dir.path().join("d.svg");
    let removed = dir.path().join("removed.svg");
    run(nflame()
        .arg("diff")
        .arg(&before)
        .arg(&after)
        .args(["--title", TITLE, "-o"])
        .arg(&svg)
        .arg("--removed")
        .arg(&removed));
    let diff = std::fs::read_to_string(&svg).unwrap();
    assert_escaped("diff", &diff);
    // The rewritten titles carry the before/after figures and stay escaped.
    assert!(
        diff.contains("<title>&lt;img src=x onerror=alert(2)&gt; (before"),
        "the new frame's rewritten title"
    );
    let gone = std::fs::read_to_string(&removed).unwrap();
    assert_escaped("removed view", &gone);
    assert!(
        gone.contains("<title>gone&lt;&amp;&gt;frame (gone:"),
        "the vanished frame's title"
    );
}

#[test]
fn html_report_escapes_frame_names() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = write_inputs(dir.path());
    let html = dir.path().join("r.html");
    run(nflame()
        .arg("report")
        .arg(&before)
        .arg(&after)
        .arg("--html")
        .arg(&html));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_escaped("HTML report", &page);
    // Our own scripts are the only ones on the page: none carries a name.
    assert!(!page.contains("alert(1)</script>"));
}
