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

/// No hostile markup of the inputs survives in `doc`.
fn assert_no_raw_markup(what: &str, doc: &str) {
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
}

/// No hostile markup survives, the names are there escaped, and every CDATA
/// section holds no raw `<`, `>` or `&`.
fn assert_escaped(what: &str, doc: &str) {
    assert_no_raw_markup(what, doc);
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

/// Parses an SVG as XML with Python's parser (python3 is in
/// scripts/install-deps.sh; without it the test fails).
fn assert_well_formed(what: &str, doc: &str) {
    assert!(
        doc.trim_start().starts_with("<?xml") || doc.trim_start().starts_with("<svg"),
        "{what} is not an SVG document"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.svg");
    std::fs::write(&path, doc).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs it)");
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
    // The command line in the embedded context carries the title, \u-escaped.
    assert!(
        doc.contains("\\u003cscript\\u003ealert(3)\\u003c/script\\u003e \\u0026"),
        "the context's command line"
    );
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
        diff.contains("<title>gone&lt;&amp;&gt;frame (gone: before"),
        "the vanished frame's rewritten title"
    );
    assert!(
        gone.contains("<title>gone&lt;&amp;&gt;frame ("),
        "the vanished frame in the removed view"
    );
}

/// Standard base64 (the HTML report's `data:` URLs).
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes().take_while(|&b| b != b'=') {
        let v = ALPHABET.iter().position(|&a| a == b).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn html_report_escapes_frame_names_and_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = write_inputs(dir.path());
    // A hostile file name too: it is shown as the graphs' captions.
    let hostile = dir.path().join("before<b>&'\"x.folded");
    std::fs::rename(&before, &hostile).unwrap();
    let html = dir.path().join("r.html");
    run(nflame()
        .arg("report")
        .arg(&hostile)
        .arg(&after)
        .arg("--html")
        .arg(&html));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_no_raw_markup("HTML report", &page);
    assert!(!page.contains("before<b>"), "raw file name");
    assert!(page.contains("before&lt;b&gt;&amp;"), "escaped file name");
    // Each graph is an SVG in a data: URL; each one is escaped inside.
    let mut graphs = 0;
    for part in page.split("src=\"data:image/svg+xml;base64,").skip(1) {
        let b64 = &part[..part.find('"').unwrap()];
        let svg = String::from_utf8(base64_decode(b64)).unwrap();
        graphs += 1;
        if svg.contains("alert(1)") {
            assert_escaped(&format!("HTML report graph {graphs}"), &svg);
        } else {
            assert_no_raw_markup(&format!("HTML report graph {graphs}"), &svg);
        }
    }
    assert_eq!(graphs, 3, "diff, before, after");
}
