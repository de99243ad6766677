//! End-to-end tests of the `nflame` binary: real fixtures in, files and exit codes out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nflame() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nflame"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn fixture(rel: &str) -> PathBuf {
    let p = fixtures().join(rel);
    assert!(p.exists(), "missing fixture {}", p.display());
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("nflame runs")
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "failed: {:?}\nstderr: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn read_gz(p: &Path) -> String {
    use std::io::Read;
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// Compares `actual` with `tests/golden/NAME`; `NFLAME_BLESS=1` writes it
/// instead (also a new one). A missing golden file fails the test.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("NFLAME_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        let dump = std::env::temp_dir().join(format!("nflame-actual-{name}"));
        std::fs::write(&dump, actual).unwrap();
        panic!(
            "golden file {}: {e}; actual output in {} (NFLAME_BLESS=1 writes it)",
            path.display(),
            dump.display()
        )
    });
    if expected != actual {
        let dump = std::env::temp_dir().join(format!("nflame-actual-{name}"));
        std::fs::write(&dump, actual).unwrap();
        panic!(
            "{name} differs from its golden file; actual output in {} (NFLAME_BLESS=1 to accept)",
            dump.display()
        );
    }
}

fn sum_counts(folded: &str) -> u64 {
    folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

mod render {
    use super::*;

    #[test]
    fn real_profile_renders_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        // A path relative to the fixtures: the SVG names its input, and the
        // golden file must not depend on where the repository is checked out.
        fixture("folded/nginx-lua.folded.gz");
        let input = "folded/nginx-lua.folded.gz";
        let a = dir.path().join("a.svg");
        let b = dir.path().join("b.svg");
        for out in [&a, &b] {
            ok(nflame()
                .current_dir(fixtures())
                .args([
                    "render",
                    "--deterministic",
                    "--title",
                    "nginx + lua under wrk",
                ])
                .arg(input)
                .arg("-o")
                .arg(out));
        }
        let svg = std::fs::read_to_string(&a).unwrap();
        assert_eq!(svg, std::fs::read_to_string(&b).unwrap());
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("nginx + lua under wrk"));
        assert!(svg.contains("libluajit"), "nginx's Lua frames are drawn");
        // inferno shows kernel frames without their `_[k]` suffix, in its kernel colour.
        assert!(svg.contains("tcp_sendmsg"), "kernel frames are drawn");
        golden("nginx-lua.svg", &svg);
    }

    #[test]
    fn merges_inputs_plain_gz_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p.folded");
        std::fs::write(&plain, "main;alpha 3\n").unwrap();
        let out = dir.path().join("m.svg");
        let mut cmd = nflame();
        cmd.args(["render", "--deterministic"])
            .arg(&plain)
            .arg("-")
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"main;beta 1\nmain;alpha 1\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("alpha (4 samples, 80.00%)"), "merged counts");
        assert!(svg.contains("beta (1 samples, 20.00%)"));
    }

    #[test]
    fn options_reach_the_svg() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.folded");
        std::fs::write(&input, "main;work;leaf 5\nmain;idle 5\n").unwrap();
        let svg_with = |args: &[&str]| {
            let out = dir.path().join("o.svg");
            ok(nflame()
                .arg("render")
                .arg(&input)
                .arg("-o")
                .arg(&out)
                .args(args));
            std::fs::read_to_string(&out).unwrap()
        };
        let inverted = svg_with(&["--inverted"]);
        assert!(inverted.contains("var inverted = true;"));
        // Reversed, the leaves are the roots: `main` is drawn twice (above
        // `work` and above `idle`), once when not reversed.
        let reversed = svg_with(&["--reverse", "--deterministic"]);
        assert_eq!(reversed.matches("<title>main (5 samples").count(), 2);
        assert_eq!(reversed.matches("<title>main (").count(), 2);
        let straight = svg_with(&["--deterministic"]);
        assert_eq!(straight.matches("<title>main (10 samples").count(), 1);
        assert_eq!(straight.matches("<title>main (").count(), 1);
        let sized = svg_with(&[
            "--width",
            "640",
            "--count-name",
            "ns",
            "--subtitle",
            "sub-t",
        ]);
        assert!(sized.contains("width=\"640\""));
        assert!(sized.contains("5 ns"));
        assert!(sized.contains("sub-t"));
        // A flame chart keeps time order: b, a, b stay three frames, not a merged b.
        std::fs::write(&input, "main;b 1\nmain;a 1\nmain;b 1\n").unwrap();
        let chart = svg_with(&["--flamechart"]);
        assert_eq!(chart.matches("<title>b (1 samples").count(), 2, "{chart}");
        let merged = svg_with(&[]);
        assert_eq!(merged.matches("<title>b (2 samples").count(), 1);
        std::fs::write(&input, "main;work;leaf 5\nmain;idle 5\n").unwrap();
        let purple = svg_with(&["--palette", "purple", "--deterministic"]);
        assert_ne!(purple, svg_with(&["--palette", "hot", "--deterministic"]));
    }

    /// `--min-width` is in pixels of the drawing: at 1200 pixels (1180 of
    /// frames), a 1% frame is 11.8 pixels wide.
    #[test]
    fn min_width_omits_frames_narrower_than_that_many_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.folded");
        std::fs::write(&input, "main;big 990\nmain;small 10\n").unwrap();
        let titles = |min_width: &str| {
            let out = dir.path().join("o.svg");
            ok(nflame()
                .arg("render")
                .arg(&input)
                .args(["--width", "1200", "--min-width", min_width, "-o"])
                .arg(&out));
            let svg = std::fs::read_to_string(&out).unwrap();
            ["main (", "big (", "small ("]
                .into_iter()
                .filter(|t| svg.contains(&format!("<title>{t}")))
                .collect::<Vec<_>>()
        };
        assert_eq!(titles("0.1"), ["main (", "big (", "small ("]);
        assert_eq!(titles("10"), ["main (", "big (", "small ("]);
        assert_eq!(titles("15"), ["main (", "big ("]);
        assert_eq!(titles("1000"), ["main (", "big ("]);
        assert_eq!(titles("1190"), Vec::<&str>::new());
    }

    #[test]
    fn unknown_palette_fails_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.folded");
        std::fs::write(&input, "main 1\n").unwrap();
        let out_path = dir.path().join("o.svg");
        let o = run(nflame()
            .arg("render")
            .arg(&input)
            .args(["--palette", "neon", "-o"])
            .arg(&out_path));
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("neon"));
        assert!(!out_path.exists());
    }
}

mod diff {
    use super::*;

    fn two_profiles(dir: &Path) -> (PathBuf, PathBuf) {
        let before = dir.join("before.folded");
        let after = dir.join("after.folded.gz");
        std::fs::write(
            &before,
            "srv;main;proxy;splice_[k] 40\nsrv;main;app;parse 40\nsrv;main;app;write_[k] 20\n",
        )
        .unwrap();
        // AFTER is written gzipped through nflame itself (filter keeps everything).
        let plain_after = dir.join("after.folded");
        std::fs::write(
            &plain_after,
            "srv;main;app;parse 150\nsrv;main;app;write_[k] 50\n",
        )
        .unwrap();
        ok(nflame()
            .arg("filter")
            .arg(&plain_after)
            .args(["--exclude", "^nothing$", "-o"])
            .arg(&after));
        (before, after)
    }

    #[test]
    fn graph_removed_view_and_text_report() {
        let dir = tempfile::tempdir().unwrap();
        two_profiles(dir.path());
        let svg = dir.path().join("diff.svg");
        let removed = dir.path().join("removed.svg");
        // Relative names, so the subtitle (which names the inputs) is reproducible.
        let o = ok(nflame()
            .current_dir(dir.path())
            .args([
                "diff",
                "before.folded",
                "after.folded.gz",
                "--deterministic",
            ])
            .arg("-o")
            .arg(&svg)
            .arg("--removed")
            .arg(&removed));
        let report = stdout(&o);
        // proxy vanished: -40 points inclusive, listed in the stacks only in before.
        assert!(report.contains("-40.00pp"), "{report}");
        assert!(report.contains("srv;main;proxy;splice_[k]"), "{report}");
        assert!(
            report.contains("Stacks only in before (gone after): 1 stacks, 40 samples"),
            "{report}"
        );
        let graph = std::fs::read_to_string(&svg).unwrap();
        assert!(
            graph.contains("<title>proxy (gone: before 40.00% 80, after 0)</title>"),
            "the vanished stack is drawn, hatched, at its (normalised) before width"
        );
        let rev = std::fs::read_to_string(&removed).unwrap();
        assert!(rev.contains("proxy ("), "the reverse view shows it");
        golden("diff-small.svg", &graph);
        golden("diff-small-removed.svg", &rev);
    }

    #[test]
    fn json_report_normalised_raw_and_per_unit() {
        let dir = tempfile::tempdir().unwrap();
        let (before, after) = two_profiles(dir.path());
        let json = |extra: &[&str]| -> serde_json::Value {
            let o = ok(nflame()
                .arg("diff")
                .arg(&before)
                .arg(&after)
                .arg("--json")
                .args(extra));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            // The category comparison is at the top (before, after, verdict), the
            // frame-level changes under "frames".
            assert!(v["before"]["total_samples"].is_u64(), "{v}");
            assert!(v["verdict"]["kind"].is_string(), "{v}");
            v["frames"].clone()
        };
        let v = json(&[]);
        assert_eq!(v["scaling"], "normalized");
        assert_eq!(v["before_total"], 100);
        assert_eq!(v["after_total"], 200);
        let parse = v["by_self"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["frame"] == "parse")
            .unwrap();
        assert_eq!(parse["before"]["self"], 40);
        assert_eq!(parse["after"]["self"], 150);
        assert!((parse["self_delta_pct"].as_f64().unwrap() - 35.0).abs() < 1e-9);
        assert_eq!(json(&["--no-normalize"])["scaling"], "none");
        let pu = json(&[
            "--scale-before",
            "100",
            "--scale-after",
            "400",
            "--top",
            "1",
        ]);
        assert_eq!(pu["scaling"], "per-unit");
        assert_eq!(pu["by_inclusive"].as_array().unwrap().len(), 1);
        let row = &pu["by_inclusive"][0];
        assert!(row["before"]["inclusive_per_unit"].as_f64().is_some());
    }

    /// One box of the differential graph, from its tooltip:
    /// `NAME (before P% N, after Q% M, inclusive ±D pp)` or
    /// `NAME (gone: before P% N, after 0)`.
    #[derive(Debug)]
    struct DiffBox {
        name: String,
        before_pct: String,
        before: String,
        after_pct: String,
        after: String,
        delta_pp: String,
    }

    fn diff_boxes(svg: &str) -> Vec<DiffBox> {
        let mut boxes = Vec::new();
        for part in svg.split("<title>").skip(1) {
            let title = &part[..part.find("</title>").unwrap()];
            let open = title.rfind(" (").unwrap();
            let (name, rest) = (&title[..open], &title[open + 2..title.len() - 1]);
            if name == "all" {
                continue;
            }
            let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let b = match words.as_slice() {
                ["before", bp, b, "after", ap, a, "inclusive", d, "pp"] => DiffBox {
                    name: name.into(),
                    before_pct: bp.to_string(),
                    before: b.to_string(),
                    after_pct: ap.to_string(),
                    after: a.to_string(),
                    delta_pp: d.to_string(),
                },
                ["gone:", "before", bp, b, "after", "0"] => DiffBox {
                    name: name.into(),
                    before_pct: bp.to_string(),
                    before: b.to_string(),
                    after_pct: "0.00%".into(),
                    after: "0".into(),
                    delta_pp: format!("-{}", bp.trim_end_matches('%')),
                },
                _ => panic!("unexpected tooltip {title:?}"),
            };
            boxes.push(b);
        }
        boxes
    }

    /// Issue 15, section 4: BEFORE scaled to AFTER's total stack by stack
    /// drifted from the report (on inferno's before/after fixture: a scaled
    /// BEFORE total of 81 instead of 80, "before 46.91% 38" where the report
    /// said 47.69%). `fixtures/folded/rounding/` has the same trap (rounded
    /// stack by stack its BEFORE would total 79, not 80).
    /// Every tooltip of the graph and of its reverse view must give the
    /// numbers of `diff --json`.
    #[test]
    fn issue_15_graph_tooltips_agree_with_the_json_report() {
        let dir = tempfile::tempdir().unwrap();
        let (svg, rev) = (dir.path().join("d.svg"), dir.path().join("r.svg"));
        let o = ok(nflame()
            .arg("diff")
            .arg(fixture("folded/rounding/before.folded"))
            .arg(fixture("folded/rounding/after.folded"))
            .args(["--json", "--top", "1000", "--min-width", "0", "-o"])
            .arg(&svg)
            .arg("--removed")
            .arg(&rev));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let frames = &v["frames"];
        let (tb, ta) = (
            frames["before_total"].as_u64().unwrap(),
            frames["after_total"].as_u64().unwrap(),
        );
        assert_eq!((tb, ta), (65, 80));
        // Frames whose share did not change are not listed: all of these did.
        let rows: std::collections::HashMap<String, &serde_json::Value> = frames["by_inclusive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let name = r["frame"].as_str().unwrap();
                (name.trim_end_matches("_[k]").to_string(), r)
            })
            .collect();
        let graph = std::fs::read_to_string(&svg).unwrap();
        assert!(
            graph.contains("<title>all (before 100.00% 80, after 100.00% 80)</title>"),
            "BEFORE normalised to AFTER's total is AFTER's total"
        );
        assert!(graph.contains(
            "<title>read (before 26.15% 21, after 25.00% 20, inclusive -1.15 pp)</title>"
        ));
        assert!(graph.contains(
            "<title>[tar] (before 23.08% 18, after 8.75% 7, inclusive -14.33 pp)</title>"
        ));
        let boxes = diff_boxes(&graph);
        let mut by_name: std::collections::HashMap<&str, Vec<&DiffBox>> = Default::default();
        for b in &boxes {
            by_name.entry(&b.name).or_default().push(b);
        }
        let pct = |x: &serde_json::Value| format!("{:.2}%", x.as_f64().unwrap());
        let count = |x: &serde_json::Value| x.as_u64().unwrap();
        let mut checked = 0;
        for (name, boxes) in &by_name {
            let Some(row) = rows.get(*name) else {
                // Not listed: its share did not change.
                assert!(boxes.iter().all(|b| b.delta_pp == "+0.00"), "{name}");
                continue;
            };
            let (bi, ai) = (
                count(&row["before"]["inclusive"]),
                count(&row["after"]["inclusive"]),
            );
            if let [b] = boxes.as_slice() {
                // One box: its numbers are the report's.
                assert_eq!(b.before_pct, pct(&row["before"]["inclusive_pct"]), "{name}");
                assert_eq!(b.after_pct, pct(&row["after"]["inclusive_pct"]), "{name}");
                let d = row["inclusive_delta_pct"].as_f64().unwrap();
                assert_eq!(b.delta_pp, format!("{d:+.2}"), "{name}");
                // BEFORE normalised to AFTER's total, rounded once.
                let normalised = (bi as f64 * ta as f64 / tb as f64).round();
                assert_eq!(b.before, format!("{normalised:.0}"), "{name}");
                assert_eq!(b.after, ai.to_string(), "{name}");
                checked += 1;
            } else {
                // Several boxes (no frame here calls itself): they split the
                // frame's counts.
                let after: u64 = boxes.iter().map(|b| b.after.parse::<u64>().unwrap()).sum();
                assert_eq!(after, ai, "{name}");
                let share: f64 = boxes
                    .iter()
                    .map(|b| b.before_pct.trim_end_matches('%').parse::<f64>().unwrap())
                    .sum();
                let want = row["before"]["inclusive_pct"].as_f64().unwrap();
                assert!(
                    (share - want).abs() <= 0.005 * boxes.len() as f64,
                    "{name}: {share} {want}"
                );
            }
        }
        assert!(checked >= 8, "{checked} frames with one box");
        // The reverse view has BEFORE's widths: BEFORE's own counts and shares.
        let rev = std::fs::read_to_string(&rev).unwrap();
        assert!(
            rev.contains("<title>all (65 samples, 100%)</title>"),
            "{rev}"
        );
        assert!(rev.contains("<title>read (17 samples, 26.15%;"));
        for part in rev.split("<title>").skip(1) {
            let title = &part[..part.find("</title>").unwrap()];
            let open = title.rfind(" (").unwrap();
            let name = &title[..open];
            if name == "all" || by_name.get(name).is_none_or(|b| b.len() != 1) {
                continue;
            }
            let Some(row) = rows.get(name) else { continue };
            if count(&row["before"]["inclusive"]) == 0 {
                continue;
            }
            let want = format!(
                "{name} ({} samples, {}",
                count(&row["before"]["inclusive"]),
                pct(&row["before"]["inclusive_pct"])
            );
            assert!(title.starts_with(&want), "{title} / {want}");
        }
    }

    #[test]
    fn real_profiles_diff() {
        let dir = tempfile::tempdir().unwrap();
        let a = fixture("folded/nginx-lua.folded.gz");
        let svg = dir.path().join("d.svg");
        // The same profile against a filtered copy of itself: the kernel part vanished.
        let user_only = dir.path().join("user.folded");
        ok(nflame()
            .arg("filter")
            .arg(&a)
            .args(["--exclude", r"_\[k\]$", "-o"])
            .arg(&user_only));
        let o = ok(nflame()
            .arg("diff")
            .arg(&a)
            .arg(&user_only)
            .arg("-o")
            .arg(&svg));
        let report = stdout(&o);
        assert!(
            report.contains("Stacks only in before (gone after)"),
            "{report}"
        );
        assert!(report.contains("_[k]"), "{report}");
        assert!(std::fs::read_to_string(&svg)
            .unwrap()
            .contains("Differential"));
    }
}

mod report {
    use super::*;

    /// `--per N`: cost per unit of work, in the table and the JSON.
    #[test]
    fn per_unit_of_work() {
        let input = fixture("folded/lab-proxy.folded.gz");
        let o = ok(nflame().arg("report").arg(&input).args(["--per", "100000"]));
        let text = stdout(&o);
        assert!(
            text.contains("100000 units of work: 0.09243 samples per unit"),
            "{text}"
        );
        assert!(text.contains("per unit"), "{text}");
        let o = ok(nflame()
            .arg("report")
            .arg(&input)
            .args(["--per", "100000", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for (name, c) in v["categories"].as_object().unwrap() {
            let samples = c["samples"].as_f64().unwrap();
            let per_unit = c["per_unit"].as_f64().unwrap();
            assert!(
                (per_unit - samples / 100_000.0).abs() < 1e-12,
                "{name}: {c}"
            );
        }
        // Without --per there is no cost per unit.
        let o = ok(nflame().arg("report").arg(&input).arg("--json"));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["categories"]["app"].get("per_unit").is_none(), "{v}");
        let o = run(nflame().arg("report").arg(&input).args(["--per", "0"]));
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    }

    /// `--rules FILE` replaces the built-in rules; a bad rule names its line.
    #[test]
    fn rules_replace_the_built_in_ones() {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture("folded/lab-proxy.folded.gz");
        let json = |args: &[&str]| -> serde_json::Value {
            let o = ok(nflame().arg("report").arg(&input).arg("--json").args(args));
            serde_json::from_slice(&o.stdout).unwrap()
        };
        let built_in = json(&[]);
        assert_eq!(built_in["verdict"]["kind"], "userland-proxy");
        let proxy = built_in["categories"]["userland-proxy"]["samples"].clone();
        // One rule: docker-proxy is the application.
        let rules = dir.path().join("app.rules");
        std::fs::write(
            &rules,
            "# docker-proxy serves\napp owns-process ^docker-proxy$\n",
        )
        .unwrap();
        let custom = json(&["--rules", rules.to_str().unwrap()]);
        assert_eq!(custom["categories"]["userland-proxy"]["samples"], 0);
        assert_eq!(custom["categories"]["app"]["samples"], proxy, "{custom}");
        assert_eq!(custom["total_samples"], built_in["total_samples"]);
        assert_eq!(custom["verdict"]["kind"], "none");

        let bad = dir.path().join("bad.rules");
        std::fs::write(&bad, "app owns-process ^x$\nbridge sometimes foo\n").unwrap();
        let o = run(nflame().arg("report").arg(&input).arg("--rules").arg(&bad));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("bad.rules:2: unknown kind \"sometimes\""),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty());
    }
}

/// Exit status 0 when the reader of standard output goes away (README,
/// "Exit codes"), with nothing on standard error.
mod reader_gone {
    use super::*;
    use std::io::Read;

    #[test]
    fn offline_command_exits_0() {
        // About 840 KB of folded stacks: far more than a pipe holds.
        let mut child = nflame()
            .arg("collapse")
            .arg(fixture("perf-script/lab-proxy.perf.txt.gz"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 100];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        // The reader is gone (dropped above).
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stderr(&o), "");
        assert!(String::from_utf8_lossy(&head).contains(';'));
    }
}

mod collapse {
    use super::*;

    #[test]
    fn real_perf_script_to_folded() {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture("perf-script/nginx-lua.perf.txt.gz");
        let out = dir.path().join("out.folded.gz");
        ok(nflame().arg("collapse").arg(&input).arg("-o").arg(&out));
        let folded = read_gz(&out);
        let expected = read_gz(&fixture("folded/nginx-lua.folded.gz"));
        assert_eq!(sum_counts(&folded), sum_counts(&expected));
        assert!(
            folded.lines().any(|l| l.starts_with("nginx;")),
            "root frame is the process name"
        );
        assert!(folded.contains("_[k]"));
        // --pid puts the pid in the root frame; this recording's headers
        // (`nginx 16911 …`) give the thread id only, so the pid is unknown.
        let o = ok(nflame().arg("collapse").arg(&input).arg("--pid"));
        let with_pid = stdout(&o);
        assert!(
            with_pid
                .lines()
                .all(|l| l.starts_with("nginx-?;") || l.starts_with("nginx-? ")),
            "{with_pid}"
        );
        assert_eq!(sum_counts(&with_pid), sum_counts(&folded));
        // Headers with PID/TID (`sh 16984/16984 …`) give `comm-PID` roots,
        // the same pid for a command's whole stack.
        let o = ok(nflame()
            .arg("collapse")
            .arg(fixture("perf-script/sort-gzip.perf.txt.gz"))
            .arg("--pid"));
        let with_pid = stdout(&o);
        let roots: std::collections::BTreeSet<&str> = with_pid
            .lines()
            .map(|l| l.split(';').next().unwrap())
            .collect();
        assert!(
            roots.contains("gzip-16987") && roots.contains("seq-16984"),
            "{roots:?}"
        );
        for root in &roots {
            let (_, pid) = root.rsplit_once('-').unwrap();
            assert!(
                pid == "?" || pid.bytes().all(|b| b.is_ascii_digit()),
                "{root}"
            );
        }
        // --period weighs by the period: many times the sample count for cpu-clock.
        let o = ok(nflame().arg("collapse").arg(&input).arg("--period"));
        assert!(sum_counts(&stdout(&o)) > 1000 * sum_counts(&folded));
    }

    /// Issue 15: lines that are neither headers nor frames were dropped
    /// silently. They are skipped with a warning naming their count and the
    /// first one as FILE:LINE; `-v` lists more, `-q` says nothing.
    #[test]
    fn unreadable_lines_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("odd.perf.txt");
        std::fs::write(
            &input,
            "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\nnot a perf line\n\
             a 1 1.1: 1 cpu-clock:\n\tTHIS_IS_A_WEIRD_LINE\n\tffff g (/bin/a)\n",
        )
        .unwrap();
        let o = ok(nflame().arg("collapse").arg(&input));
        assert_eq!(stdout(&o), "a;f 1\na;g 1\n");
        let name = input.display().to_string();
        assert_eq!(
            stderr(&o),
            format!(
                "nflame: warning: 2 lines of {name} are not `perf script` sample headers or \
                 frames and were skipped; the first: {name}:3: \"not a perf line\"\n"
            )
        );
        let o = ok(nflame().arg("-v").arg("collapse").arg(&input));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("\n  {name}:5: \"\\tTHIS_IS_A_WEIRD_LINE\"\n")),
            "{err}"
        );
        assert!(
            err.contains("nflame: 2 samples, 2 distinct stacks"),
            "{err}"
        );
        let o = ok(nflame().arg("-q").arg("collapse").arg(&input));
        assert_eq!(stderr(&o), "");
        // Text without a single sample header is an error, not an empty profile.
        let folded = fixture("folded/sort-gzip.folded.gz");
        let o = run(nflame().arg("collapse").arg(&folded));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("sort-gzip.folded.gz:1: not `perf script` output"),
            "{}",
            stderr(&o)
        );
    }

    /// Shapes of `perf script` text other tools accept: real output without a
    /// call graph (frames on the header line, `dd` as a command name), frames
    /// without indentation, a blank line after a header.
    #[test]
    fn perf_script_shapes_from_the_field() {
        let o = ok(nflame()
            .arg("collapse")
            .arg(fixture("perf-script/no-callgraph.perf.txt.gz")));
        let folded = stdout(&o);
        assert_eq!(sum_counts(&folded), 475);
        assert!(folded.lines().any(|l| l.starts_with("dd;")));
        assert_eq!(stderr(&o), "");
        for (file, want) in [
            ("shapes/unindented.txt", 2),
            ("shapes/blank-after-header.txt", 2),
        ] {
            let o = ok(nflame()
                .arg("collapse")
                .arg(fixture(&format!("perf-script/{file}"))));
            assert_eq!(sum_counts(&stdout(&o)), want, "{file}");
            assert_eq!(stderr(&o), "", "{file}");
        }
    }

    /// `--addrs` keeps the addresses of unnamed frames; `--keep-unknown-runs`
    /// keeps the towers of `[unknown]` frames that are folded by default.
    #[test]
    fn addrs_and_unknown_runs() {
        let input = fixture("perf-script/nginx-lua.perf.txt.gz");
        let folded = stdout(&ok(nflame().arg("collapse").arg(&input)));
        assert!(!folded.contains("[unknown];[unknown]"));
        let kept = stdout(&ok(nflame()
            .arg("collapse")
            .arg(&input)
            .arg("--keep-unknown-runs")));
        assert!(kept.contains("[unknown];[unknown];[unknown]"));
        assert_eq!(sum_counts(&kept), sum_counts(&folded));
        let addrs = stdout(&ok(nflame().arg("collapse").arg(&input).arg("--addrs")));
        assert_eq!(sum_counts(&addrs), sum_counts(&folded));
        assert!(
            addrs.contains(";[libluajit-5.1.so.2.1.0+0x"),
            "file offsets"
        );
        assert!(addrs.contains(";0x"), "addresses of unknown modules");
        assert!(!addrs.contains("[unknown]"));
    }
}

mod filter {
    use super::*;

    #[test]
    fn include_exclude_on_real_profile() {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture("folded/nginx-lua.folded.gz");
        let all = read_gz(&input);
        let kernel = dir.path().join("k.folded");
        ok(nflame()
            .arg("filter")
            .arg(&input)
            .args(["--include", r"_\[k\]$", "-o"])
            .arg(&kernel));
        let user = dir.path().join("u.folded");
        ok(nflame()
            .arg("filter")
            .arg(&input)
            .args(["--exclude", r"_\[k\]$", "-o"])
            .arg(&user));
        let k = std::fs::read_to_string(&kernel).unwrap();
        let u = std::fs::read_to_string(&user).unwrap();
        assert!(k.lines().all(|l| l.contains("_[k]")));
        assert!(u.lines().all(|l| !l.contains("_[k]")));
        assert!(!k.is_empty() && !u.is_empty());
        assert_eq!(sum_counts(&k) + sum_counts(&u), sum_counts(&all));
    }

    #[test]
    fn needs_a_pattern() {
        let o = run(nflame().args(["filter", "x.folded"]));
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("--include"));
    }
}

mod bad_input {
    use super::*;

    /// Each malformed input makes every reading command fail with exit code 1,
    /// a message naming the file (and line), and no output file.
    #[test]
    fn malformed_folded_files() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "missing-count.folded",
                b"main;a 1\nmain;b\n",
                ":2: no sample count",
            ),
            (
                "non-numeric.folded",
                b"main;a 1\nmain;b x1\n",
                ":2: sample count \"x1\"",
            ),
            (
                "negative.folded",
                b"main;a -4\n",
                ":1: sample count \"-4\" is negative",
            ),
            (
                "overflow.folded",
                b"main;a 99999999999999999999\n",
                ":1: sample count \"99999999999999999999\" overflows",
            ),
            (
                "total-overflow.folded",
                b"a 18446744073709551615\nb 1\n",
                ":2: the total overflows a 64-bit counter when this line's count (1) is added",
            ),
            (
                "empty-stack.folded",
                b"main;a 1\n 7\n",
                ":2: a sample count with an empty stack",
            ),
            (
                "invalid-utf8.folded",
                b"main;a 1\nmain;\xff\xfe 2\n",
                ":2: the line is not valid UTF-8",
            ),
            (
                "differential.folded",
                b"main;a 1 2\n",
                ":1: the line has two counts",
            ),
            ("empty.folded", b"", "no samples"),
            ("comments-only.folded", b"# nothing\n\n", "no samples"),
        ];
        for (name, content, message) in cases {
            let input = dir.path().join(name);
            std::fs::write(&input, content).unwrap();
            let good = dir.path().join("good.folded");
            std::fs::write(&good, "main;a 1\n").unwrap();
            let out = dir.path().join("out.svg");
            for cmd in [
                vec!["render".into(), input.clone(), "-o".into(), out.clone()],
                vec![
                    "diff".into(),
                    good.clone(),
                    input.clone(),
                    "-o".into(),
                    out.clone(),
                ],
                vec![
                    "filter".into(),
                    input.clone(),
                    "--include".into(),
                    "a".into(),
                    "-o".into(),
                    out.clone(),
                ],
            ] {
                let o = run(nflame().args(&cmd));
                let err = stderr(&o);
                assert_eq!(o.status.code(), Some(1), "{name}: {cmd:?}: {err}");
                assert!(
                    err.contains(name) && err.contains(message),
                    "{name}: {cmd:?}: {err}"
                );
                assert!(!err.contains("panicked"), "{err}");
                assert!(!out.exists(), "{name}: {cmd:?} left an output");
            }
        }
        // Nothing but the inputs remains: no temporary files either.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn crlf_and_blank_lines_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("crlf.folded");
        std::fs::write(&input, "main;a 2\r\n\r\nmain;b 1\r\n").unwrap();
        let o = ok(nflame()
            .arg("filter")
            .arg(&input)
            .args(["--include", ".", "-o", "-"]));
        assert_eq!(stdout(&o), "main;a 2\nmain;b 1\n");
    }

    #[test]
    fn truncated_and_corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::fs::read(fixture("folded/nginx-lua.folded.gz")).unwrap();
        let truncated = dir.path().join("truncated.folded.gz");
        std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
        let mut corrupt = full.clone();
        let mid = corrupt.len() / 2;
        for b in &mut corrupt[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let corrupt_path = dir.path().join("corrupt.folded.gz");
        std::fs::write(&corrupt_path, &corrupt).unwrap();
        // The cut stream is caught by gzip itself; the flipped bytes still
        // inflate (deflate has no check before the CRC at the end) and garble
        // a line, which the line parser names.
        for (input, message) in [
            (
                &truncated,
                "truncated.folded.gz: corrupt or truncated gzip data",
            ),
            (&corrupt_path, "corrupt.folded.gz:"),
        ] {
            let out = dir.path().join("o.svg");
            let o = run(nflame().arg("render").arg(input).arg("-o").arg(&out));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains(message), "{err}");
            if input == &corrupt_path {
                // The garbled line is named by its number.
                let rest = err.split(message).nth(1).unwrap_or("");
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                assert!(digits > 0 && rest[digits..].starts_with(": "), "{err}");
            }
            assert!(!out.exists());
        }
    }

    #[test]
    fn missing_input_and_unwritable_output() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(nflame()
            .args(["render", "/nonexistent/p.folded", "-o"])
            .arg(dir.path().join("x.svg")));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("/nonexistent/p.folded"),
            "{}",
            stderr(&o)
        );
        let input = dir.path().join("in.folded");
        std::fs::write(&input, "main 1\n").unwrap();
        let o = run(nflame()
            .arg("render")
            .arg(&input)
            .args(["-o", "/nonexistent-dir/x.svg"]));
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("/nonexistent-dir/x.svg"));
    }

    /// Issue 12: an error names what failed and prints each cause once (it
    /// printed the OS error twice: once in the message, once as its source).
    #[test]
    fn issue_12_each_cause_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.folded");
        std::fs::write(&input, "main;work 1\n").unwrap();
        let missing = dir.path().join("missing.folded");
        let unwritable = dir.path().join("no-such-dir/out.svg");
        // The whole message: the operation, the path, the OS cause once.
        let check = |o: &Output, path: &Path, verb: &str| {
            assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
            assert_eq!(
                stderr(o),
                format!(
                    "nflame: error: cannot {verb} {}: No such file or directory (os error 2)\n",
                    path.display()
                )
            );
        };
        let o = run(nflame()
            .arg("render")
            .arg(&missing)
            .arg("-o")
            .arg(dir.path().join("x.svg")));
        check(&o, &missing, "read");
        let o = run(nflame()
            .arg("render")
            .arg(&input)
            .arg("-o")
            .arg(&unwritable));
        check(&o, &unwritable, "write");
        let o = run(nflame().arg("diff").arg(&input).arg(&missing));
        check(&o, &missing, "read");
        let o = run(nflame()
            .arg("diff")
            .arg(&input)
            .arg(&input)
            .arg("-o")
            .arg(&unwritable));
        check(&o, &unwritable, "write");
        let o = run(nflame().arg("report").arg(&missing));
        check(&o, &missing, "read");
        let o = run(nflame()
            .arg("report")
            .arg(&input)
            .arg("--html")
            .arg(&unwritable));
        check(&o, &unwritable, "write");
        let rules = dir.path().join("missing.rules");
        let o = run(nflame()
            .arg("report")
            .arg(&input)
            .arg("--rules")
            .arg(&rules));
        check(&o, &rules, "read the rules file");
        let o = run(nflame()
            .arg("export")
            .arg(&input)
            .arg("-o")
            .arg(&unwritable));
        check(&o, &unwritable, "write");
        let o = run(nflame().arg("collapse").arg(&missing));
        check(&o, &missing, "read");
    }

    #[test]
    fn failed_run_keeps_the_previous_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keep.svg");
        std::fs::write(&out, "previous").unwrap();
        let bad = dir.path().join("bad.folded");
        std::fs::write(&bad, "main x\n").unwrap();
        let o = run(nflame().arg("render").arg(&bad).arg("-o").arg(&out));
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous");
    }

    #[test]
    fn usage_errors_exit_2() {
        let o = run(nflame().args(["render"]));
        assert_eq!(o.status.code(), Some(2));
        let o = run(nflame().args(["frobnicate"]));
        assert_eq!(o.status.code(), Some(2));
    }
}

mod svg_input {
    use super::*;

    #[test]
    fn nflame_svgs_are_profiles_again() {
        let dir = tempfile::tempdir().unwrap();
        let folded = fixture("folded/nginx-lua.folded.gz");
        let a = dir.path().join("a.svg");
        ok(nflame().arg("render").arg(&folded).arg("-o").arg(&a));
        let svg = std::fs::read_to_string(&a).unwrap();
        assert!(svg.contains("<metadata id=\"nflame-context\">"));
        assert!(svg.contains("\"kind\":\"profile\""));
        // The SVG, rendered again, is the same profile: compare the folded text
        // written back out through `filter`.
        let via_svg = ok(nflame()
            .arg("filter")
            .arg(&a)
            .args(["--include", ".", "-o", "-"]));
        let direct = ok(nflame()
            .arg("filter")
            .arg(&folded)
            .args(["--include", ".", "-o", "-"]));
        let mut x: Vec<String> = stdout(&via_svg).lines().map(String::from).collect();
        let mut y: Vec<String> = stdout(&direct).lines().map(String::from).collect();
        x.sort();
        y.sort();
        assert_eq!(x, y);
        // diff takes SVGs; a diff SVG carries both sides but is not one profile.
        let d = dir.path().join("d.svg");
        let o = ok(nflame().arg("diff").arg(&a).arg(&a).arg("-o").arg(&d));
        assert!(stdout(&o).contains("Stacks only in before (gone after): 0 stacks"));
        let o = run(nflame()
            .arg("render")
            .arg(&d)
            .arg("-o")
            .arg(dir.path().join("e.svg")));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("differential flame graph holds two profiles"),
            "{}",
            stderr(&o)
        );
    }

    /// Issue 15: a profile over the embedding limit goes beside the SVG (which
    /// names it and is read back through it), or, written to standard output,
    /// is left out with a note; the SVG itself stays small.
    #[test]
    fn issue_15_huge_profiles_go_beside_the_svg() {
        let dir = tempfile::tempdir().unwrap();
        let folded = fixture("folded/nginx-lua.folded.gz");
        let embedded = dir.path().join("in.svg");
        ok(nflame()
            .args(["render", "--deterministic"])
            .arg(&folded)
            .arg("-o")
            .arg(&embedded));
        // --embed-limit 0: every profile is over the limit.
        let svg = dir.path().join("big.svg");
        let o = ok(nflame()
            .args(["render", "--deterministic", "--embed-limit", "0"])
            .arg(&folded)
            .arg("-o")
            .arg(&svg));
        let sidecar = dir.path().join("big.svg.profile.folded.gz");
        assert!(sidecar.is_file(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("over the embedding limit: written beside")
                && stderr(&o).contains("big.svg.profile.folded.gz"),
            "{}",
            stderr(&o)
        );
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.contains(
                "<metadata id=\"nflame-profile-profile\" encoding=\"file\">big.svg.profile.folded.gz</metadata>"
            ),
            "{}",
            &text[..2000.min(text.len())]
        );
        let small = std::fs::metadata(&svg).unwrap().len();
        let whole = std::fs::metadata(&embedded).unwrap().len();
        assert!(small < whole, "{small} >= {whole}");
        // The drawing is the same: only the metadata differs.
        let graph = |t: &str| t[t.find("<script").unwrap()..].to_string();
        assert_eq!(
            graph(&text),
            graph(&std::fs::read_to_string(&embedded).unwrap())
        );
        // Read back, the SVG is its profile (through the file beside it).
        let folded_of = |input: &Path| -> Vec<String> {
            let o = ok(nflame()
                .arg("filter")
                .arg(input)
                .args(["--include", ".", "-o", "-"]));
            let mut v: Vec<String> = stdout(&o).lines().map(String::from).collect();
            v.sort();
            v
        };
        assert_eq!(folded_of(&svg), folded_of(&folded));
        // Moved without the file beside it, reading it says what is missing.
        std::fs::remove_file(&sidecar).unwrap();
        let o = run(nflame()
            .arg("filter")
            .arg(&svg)
            .args(["--include", ".", "-o", "-"]));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("big.svg.profile.folded.gz"),
            "{}",
            stderr(&o)
        );
        // To standard output there is no file to write beside: left out.
        let o = ok(nflame()
            .args(["render", "--embed-limit", "0", "-o", "-"])
            .arg(&folded));
        assert!(
            stderr(&o).contains("is standard output: it is not in the SVG"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).contains("encoding=\"omitted\""));
        // A diff puts both sides beside its graph.
        let d = dir.path().join("d.svg");
        ok(nflame()
            .args(["diff", "--embed-limit", "0"])
            .arg(&folded)
            .arg(&folded)
            .arg("-o")
            .arg(&d));
        for role in ["before", "after"] {
            let side = dir.path().join(format!("d.svg.{role}.folded.gz"));
            assert_eq!(folded_of(&side), folded_of(&folded));
        }
    }

    #[test]
    fn foreign_svg_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("other.svg");
        std::fs::write(
            &foreign,
            "<?xml version=\"1.0\"?><svg><g><title>main (1 samples, 100%)</title></g></svg>",
        )
        .unwrap();
        let o = run(nflame()
            .arg("render")
            .arg(&foreign)
            .arg("-o")
            .arg(dir.path().join("x.svg")));
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(
            err.contains("other.svg") && err.contains("not written by nflame"),
            "{err}"
        );
    }
}

mod polish {
    use super::*;

    #[test]
    fn completions_for_each_shell() {
        for shell in ["bash", "zsh", "fish"] {
            let o = ok(nflame().args(["completions", shell]));
            let text = stdout(&o);
            assert!(text.contains("nflame"), "{shell}");
            assert!(
                text.contains("record") && text.contains("--docker-port"),
                "{shell}"
            );
        }
        let o = run(nflame().args(["completions", "tcsh"]));
        assert_eq!(o.status.code(), Some(2));
    }

    #[test]
    fn man_pages_for_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        ok(nflame().arg("man").arg("-o").arg(dir.path()));
        for page in [
            "nflame.1",
            "nflame-record.1",
            "nflame-diff.1",
            "nflame-report.1",
            "nflame-export.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(
                text.starts_with(".ie") || text.contains(".TH"),
                "{page}: {}",
                &text[..80.min(text.len())]
            );
        }
        assert!(
            !dir.path().join("nflame-__worker.1").exists(),
            "hidden commands have no page"
        );
    }

    #[test]
    fn quiet_silences_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.folded");
        std::fs::write(&input, "main;a 1\n").unwrap();
        let loud = ok(nflame()
            .arg("filter")
            .arg(&input)
            .args(["--include", "nomatch", "-o", "-"]));
        assert!(stderr(&loud).contains("no stack matched"));
        let quiet = ok(nflame().arg("-q").arg("filter").arg(&input).args([
            "--include",
            "nomatch",
            "-o",
            "-",
        ]));
        assert_eq!(stderr(&quiet), "");
    }

    #[test]
    fn export_pprof_and_speedscope() {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture("folded/nginx-lua.folded.gz");
        let pb = dir.path().join("p.pb.gz");
        ok(nflame().arg("export").arg(&input).arg("-o").arg(&pb));
        let bytes = std::fs::read(&pb).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "pprof output is gzipped");
        let ss = dir.path().join("p.json");
        ok(nflame()
            .arg("export")
            .arg(&input)
            .args(["--format", "speedscope", "-o"])
            .arg(&ss));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&ss).unwrap()).unwrap();
        let weights: f64 = v["profiles"][0]["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .sum();
        assert_eq!(weights as u64, sum_counts(&read_gz(&input)));
        let o = run(nflame()
            .arg("export")
            .arg(&input)
            .args(["--format", "csv", "-o"])
            .arg(&ss));
        assert_eq!(o.status.code(), Some(2));
    }
}

/// Issue 14, item 3: the unit travels with the profile.
mod units {
    use super::*;

    const OFF_CPU: &str = "# unit: microseconds\n\
        nginx;ngx_process_events_and_timers;epoll_wait_[k] 2500000\n\
        nginx;ngx_http_lua_content_handler;os_execute;wait4_[k] 400000\n\
        docker-proxy;[docker-proxy];__x64_sys_splice_[k] 600000\n";

    fn off_cpu(dir: &Path) -> PathBuf {
        let p = dir.join("off.folded");
        std::fs::write(&p, OFF_CPU).unwrap();
        p
    }

    #[test]
    fn time_in_every_output() {
        let dir = tempfile::tempdir().unwrap();
        let input = off_cpu(dir.path());
        // render: tooltips and the stored context in µs, the profile with its unit.
        let svg = dir.path().join("off.svg");
        ok(nflame().arg("render").arg(&input).arg("-o").arg(&svg));
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.contains("<title>all (3,500,000 µs, 100%)</title>"),
            "tooltips say µs"
        );
        assert!(!text.contains(" samples"), "nothing says samples");
        assert!(
            text.contains("\"unit\":\"microseconds\""),
            "the context names the unit"
        );
        // The SVG is the profile again, unit included, and filter keeps the header.
        let back = ok(nflame().arg("collapse").arg(&svg));
        assert!(
            stdout(&back).starts_with("# unit: microseconds\n"),
            "{}",
            stdout(&back)
        );
        let kept = ok(nflame()
            .arg("filter")
            .arg(&svg)
            .args(["--include", "^nginx$", "-o", "-"]));
        assert_eq!(
            stdout(&kept),
            "# unit: microseconds\n\
             nginx;ngx_http_lua_content_handler;os_execute;wait4_[k] 400000\n\
             nginx;ngx_process_events_and_timers;epoll_wait_[k] 2500000\n"
        );
        let streamed =
            ok(nflame()
                .arg("filter")
                .arg(&input)
                .args(["--exclude", "^nginx$", "-o", "-"]));
        assert_eq!(
            stdout(&streamed),
            "# unit: microseconds\ndocker-proxy;[docker-proxy];__x64_sys_splice_[k] 600000\n"
        );
        // report: text and JSON.
        let o = ok(nflame().arg("report").arg(&input));
        assert!(
            stdout(&o).starts_with("3500000 µs, serving path"),
            "{}",
            stdout(&o)
        );
        let o = ok(nflame().arg("report").arg(&svg).arg("--json"));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["unit"], "microseconds");
        assert_eq!(v["total_samples"], 3_500_000);
        // diff of two time profiles: the graph and the report in µs.
        let d = dir.path().join("d.svg");
        let o = ok(nflame().arg("diff").arg(&input).arg(&svg).arg("-o").arg(&d));
        assert!(stdout(&o).contains("before: 3500000 µs"), "{}", stdout(&o));
        let graph = std::fs::read_to_string(&d).unwrap();
        assert!(
            graph.contains(
                "<title>all (before 100.00% 3500000 µs, after 100.00% 3500000 µs)</title>"
            ),
            "the differential graph says µs"
        );
        assert!(graph.contains("(3500000 µs) → "), "the subtitle says µs");
        let o = ok(nflame().arg("diff").arg(&input).arg(&svg).arg("--json"));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["frames"]["unit"], "microseconds");
        assert_eq!(v["before"]["unit"], "microseconds");
        // Exports: pprof's sample type and speedscope's unit.
        let ss = dir.path().join("off.speedscope.json");
        ok(nflame()
            .arg("export")
            .arg(&input)
            .args(["--format", "speedscope", "-o"])
            .arg(&ss));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ss).unwrap()).unwrap();
        assert_eq!(v["profiles"][0]["unit"], "microseconds");
        assert_eq!(v["profiles"][0]["endValue"], 3_500_000);
        let pb = dir.path().join("off.pb.gz");
        ok(nflame().arg("export").arg(&input).arg("-o").arg(&pb));
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&pb).unwrap()),
            &mut raw,
        )
        .unwrap();
        assert!(
            raw.windows(12).any(|w| w == b"microseconds"),
            "pprof names the unit"
        );
        let o = run(nflame()
            .arg("export")
            .arg(&input)
            .args(["--period-ns", "1001001", "-o"])
            .arg(dir.path().join("p.pb.gz")));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("in microseconds already"),
            "{}",
            stderr(&o)
        );
    }

    #[test]
    fn different_units_are_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let time = off_cpu(dir.path());
        let samples = fixture("folded/nginx-lua.folded.gz");
        let out = dir.path().join("x.svg");
        for cmd in [
            vec![
                "diff".into(),
                samples.clone(),
                time.clone(),
                "-o".into(),
                out.clone(),
            ],
            vec!["report".into(), samples.clone(), time.clone()],
            vec![
                "render".into(),
                samples.clone(),
                time.clone(),
                "-o".into(),
                out.clone(),
            ],
        ] {
            let o = run(nflame().args(&cmd));
            assert_eq!(o.status.code(), Some(1), "{cmd:?}");
            let err = stderr(&o);
            assert!(
                err.contains("nginx-lua.folded.gz is in samples and")
                    && err.contains("off.folded in microseconds"),
                "{cmd:?}: {err}"
            );
            assert!(!out.exists());
        }
        // A header after samples of another unit: the input mixes units.
        let mixed = dir.path().join("mixed.folded");
        std::fs::write(&mixed, "a 1\n# unit: microseconds\nb 2\n").unwrap();
        let o = run(nflame().arg("report").arg(&mixed));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains(
                "mixed.folded:2: a `# unit: microseconds` header after samples in samples"
            ),
            "{}",
            stderr(&o)
        );
    }

    /// Issue 15, section 3: decimal counts, exact totals, and skipping bad lines.
    #[test]
    fn issue_15_decimal_counts_and_skipping_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let frac = fixture("folded/rounding/before-fractional.folded");
        let out = dir.path().join("f.svg");
        // A count with 19 decimals: an error saying how to fix it.
        let o = run(nflame().arg("render").arg(&frac).arg("-o").arg(&out));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("before-fractional.folded:2: sample count \"4.0312500000000000001\" has more than 9 decimals"),
            "{}",
            stderr(&o)
        );
        assert!(!out.exists());
        // Skipped with a warning naming how many and the first.
        let o = ok(nflame()
            .arg("render")
            .arg(&frac)
            .arg("--skip-bad-lines")
            .arg("-o")
            .arg(&out));
        let warning = stderr(&o);
        assert!(
            warning.starts_with("nflame: warning: skipped 1 unreadable line of ")
                && warning.contains("before-fractional.folded; the first: ")
                && warning.contains("before-fractional.folded:2: sample count"),
            "{warning}"
        );
        // The rest is exact: 10 + 5.5 + 12. + 5.25 + 9.0 + 5.1 + 15.75.
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(
            svg.contains("<title>all (62.6 samples, 100%)</title>"),
            "exact total"
        );
        assert!(
            svg.contains("copy_user_generic (5.25 samples, 8.39%)"),
            "exact counts"
        );
        let o = ok(nflame()
            .arg("report")
            .arg(&frac)
            .args(["--skip-bad-lines", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["total_samples"], 62.6);
        // -q silences the warning, not the skipping.
        let o = ok(nflame().args(["-q", "filter"]).arg(&frac).args([
            "--skip-bad-lines",
            "--include",
            "write",
            "-o",
            "-",
        ]));
        assert_eq!(stderr(&o), "");
        assert!(stdout(&o).contains("ksys_write_[k];vfs_write_[k] 5.5\n"));
        // Decimals without fractions are whole counts: `31.0` and `6.`.
        let whole = dir.path().join("whole.folded");
        std::fs::write(&whole, "a;b 31.0\na;c 6.\n").unwrap();
        let o = ok(nflame()
            .arg("filter")
            .arg(&whole)
            .args(["--include", "a", "-o", "-"]));
        assert_eq!(stdout(&o), "a;b 31\na;c 6\n");
        // Every reading command takes the option.
        let bad = dir.path().join("bad.folded");
        std::fs::write(&bad, "main;a 1\nmain;b 1x\nmain;c\nmain;d 4\n").unwrap();
        for cmd in [
            vec![
                "render".into(),
                bad.clone(),
                "-o".into(),
                dir.path().join("b.svg"),
            ],
            vec!["diff".into(), bad.clone(), bad.clone()],
            vec!["report".into(), bad.clone()],
            vec!["filter".into(), bad.clone(), "--include".into(), "a".into()],
            vec![
                "export".into(),
                bad.clone(),
                "-o".into(),
                dir.path().join("b.pb.gz"),
            ],
        ] {
            let o = run(nflame().args(&cmd));
            assert_eq!(o.status.code(), Some(1), "{cmd:?}");
            assert!(
                stderr(&o).contains("bad.folded:2: sample count \"1x\""),
                "{cmd:?}"
            );
            let o = ok(nflame().args(&cmd).arg("--skip-bad-lines"));
            assert!(
                stderr(&o).contains("skipped 2 unreadable lines of")
                    && stderr(&o).contains("bad.folded:2:"),
                "{cmd:?}: {}",
                stderr(&o)
            );
        }
    }
}
