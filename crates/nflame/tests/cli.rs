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
                ":2: sample count",
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
            (&corrupt_path, "corrupt.folded.gz:186: no sample count"),
        ] {
            let out = dir.path().join("o.svg");
            let o = run(nflame().arg("render").arg(input).arg("-o").arg(&out));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains(message), "{err}");
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
