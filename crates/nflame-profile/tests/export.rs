//! Export round trips on the real fixtures, checked by independent decoders:
//! `protoc --decode` against pprof's own `profile.proto`, `go tool pprof`, and
//! serde_json.
//!
//! `protoc` comes from Debian's `protobuf-compiler`, `profile.proto` from
//! `golang-github-google-pprof-dev`, `go` from `golang-go` (all in
//! `scripts/install-deps.sh`); `NFLAME_PROFILE_PROTO` points at another copy of
//! the schema.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nflame_profile::export::{
    export_file, read_pprof, read_pprof_file, write_pprof, write_speedscope, ExportMeta, Format,
};
use nflame_profile::Profile;
use serde_json::Value;

const DEBIAN_PROFILE_PROTO: &str =
    "/usr/share/gocode/src/github.com/google/pprof/proto/profile.proto";

fn fixtures() -> Vec<(String, Profile)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/folded");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".folded.gz"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, Profile::from_path(&p).unwrap())
        })
        .collect()
}

fn meta(name: &str, period_ns: Option<u64>) -> ExportMeta {
    let mut m = ExportMeta::new(name);
    m.event = Some("cpu-clock".into());
    m.period_ns = period_ns;
    m.duration_ns = Some(10_000_000_000);
    m.time_ns = Some(1_750_000_000_000_000_000);
    m
}

fn pprof_bytes(p: &Profile, m: &ExportMeta) -> Vec<u8> {
    let mut out = Vec::new();
    write_pprof(p, m, &mut out).unwrap();
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

#[test]
fn pprof_roundtrips_fixture_counts_exactly() {
    for (name, p) in fixtures() {
        for period in [None, Some(10_101_010)] {
            let bytes = pprof_bytes(&p, &meta(&name, period));
            let back = read_pprof(&bytes[..]).unwrap();
            assert_eq!(back.total(), p.total(), "{name}");
            assert_eq!(back.sorted(), p.sorted(), "{name} period {period:?}");
            // The reader also takes the uncompressed protobuf.
            assert_eq!(read_pprof(&gunzip(&bytes)[..]).unwrap(), p, "{name}");
        }
    }
}

/// The schema file and the protoc binary; a missing one fails with how to get it.
fn protoc_and_schema() -> (PathBuf, PathBuf) {
    let schema = std::env::var_os("NFLAME_PROFILE_PROTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_PROFILE_PROTO));
    assert!(
        schema.is_file(),
        "{} is missing: run scripts/install-deps.sh (Debian package \
         golang-github-google-pprof-dev) or set NFLAME_PROFILE_PROTO",
        schema.display()
    );
    let protoc = PathBuf::from("protoc");
    let ok = Command::new(&protoc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "protoc is missing: run scripts/install-deps.sh (Debian package protobuf-compiler)"
    );
    (protoc, schema)
}

/// `protoc --decode perftools.profiles.Profile` of `message`, as text.
fn protoc_decode(message: &[u8]) -> String {
    let (protoc, schema) = protoc_and_schema();
    let mut child = Command::new(protoc)
        .arg(format!(
            "--proto_path={}",
            schema.parent().unwrap().display()
        ))
        .arg("--decode=perftools.profiles.Profile")
        .arg(schema.file_name().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run protoc");
    let mut stdin = child.stdin.take().unwrap();
    let input = message.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "protoc --decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `value:` fields of the decoded text (only `Sample` has a field of that name).
fn sample_values(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("value: "))
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Whether `s` appears as itself in protobuf text format (no escaping needed).
fn plain_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

#[test]
fn protoc_decodes_pprof_output_of_fixtures() {
    for (name, p) in fixtures() {
        let text = protoc_decode(&gunzip(&pprof_bytes(&p, &meta(&name, None))));
        // Every count is there, once per distinct stack, and nothing else.
        let mut values = sample_values(&text);
        values.sort_unstable();
        let mut counts: Vec<u64> = p.iter().map(|(_, c)| c).collect();
        counts.sort_unstable();
        assert_eq!(values, counts, "{name}");
        assert!(text.contains("string_table: \"\"\n"), "{name}");
        assert!(text.contains("string_table: \"samples\""), "{name}");
        assert!(
            text.contains("string_table: \"event: cpu-clock\""),
            "{name}"
        );
        assert!(text.contains("duration_nanos: 10000000000"), "{name}");
        assert!(text.contains("time_nanos: 1750000000000000000"), "{name}");
        // The leaf functions of the biggest stacks are named in the string table.
        let mut sorted = p.sorted();
        sorted.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        let mut checked = 0;
        for (stack, _) in sorted.iter().take(10) {
            let leaf = stack.rsplit(';').next().unwrap();
            let leaf = leaf.strip_suffix("_[k]").unwrap_or(leaf);
            if plain_text(leaf) {
                let line = format!("string_table: \"{leaf}\"\n");
                assert!(
                    text.contains(&line),
                    "{name}: {line:?} not in the decoded text"
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "{name}: no leaf name checked");
        // Kernel frames are marked by their mapping.
        let has_kernel = p.iter().any(|(s, _)| s.contains("_[k]"));
        assert_eq!(
            text.contains("string_table: \"[kernel.kallsyms]\""),
            has_kernel,
            "{name}"
        );
    }
}

#[test]
fn protoc_sees_cpu_time_when_the_period_is_known() {
    let (name, p) = fixtures().remove(0);
    let period = 10_101_010u64;
    let text = protoc_decode(&gunzip(&pprof_bytes(&p, &meta(&name, Some(period)))));
    let values = sample_values(&text);
    assert_eq!(values.len(), 2 * p.len());
    for pair in values.chunks(2) {
        assert_eq!(pair[1], pair[0] * period, "{pair:?}");
    }
    assert_eq!(values.iter().step_by(2).sum::<u64>(), p.total());
    assert!(text.contains("string_table: \"nanoseconds\""));
    assert!(text.contains(&format!("period: {period}\n")));
}

fn speedscope(p: &Profile, m: &ExportMeta) -> Value {
    let mut out = Vec::new();
    write_speedscope(p, m, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn speedscope_matches_the_schema_and_the_counts() {
    for (name, p) in fixtures() {
        for period in [None, Some(1_000_000u64)] {
            let v = speedscope(&p, &meta(&name, period));
            assert_eq!(
                v["$schema"],
                "https://www.speedscope.app/file-format-schema.json"
            );
            assert_eq!(v["name"], name.as_str());
            assert_eq!(v["activeProfileIndex"], 0);
            assert!(v["exporter"].as_str().unwrap().starts_with("nflame "));
            let frames: Vec<&str> = v["shared"]["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            let profiles = v["profiles"].as_array().unwrap();
            assert_eq!(profiles.len(), 1);
            let prof = &profiles[0];
            assert_eq!(prof["type"], "sampled");
            let unit = if period.is_some() {
                "nanoseconds"
            } else {
                "none"
            };
            assert_eq!(prof["unit"], unit);
            assert_eq!(prof["startValue"], 0);
            let weights: Vec<u64> = prof["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_u64().unwrap())
                .collect();
            let scale = period.unwrap_or(1);
            assert_eq!(weights.iter().sum::<u64>(), p.total() * scale, "{name}");
            assert_eq!(prof["endValue"].as_u64(), Some(p.total() * scale));
            // Each sample's frame indices, root first, spell a stack of the profile
            // and its weight is that stack's count.
            let samples = prof["samples"].as_array().unwrap();
            assert_eq!(samples.len(), p.len());
            let mut back = Profile::new();
            for (sample, &w) in samples.iter().zip(&weights) {
                let stack: Vec<&str> = sample
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| frames[i.as_u64().unwrap() as usize])
                    .collect();
                back.add(&stack.join(";"), w / scale);
            }
            assert_eq!(back, p, "{name}");
        }
    }
}

#[test]
fn export_file_writes_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (name, p) = fixtures().remove(0);
    let m = meta(&name, Some(10_101_010));
    let pb = dir.path().join("out.pb.gz");
    export_file(&p, &m, Format::Pprof, &pb).unwrap();
    assert_eq!(read_pprof_file(&pb).unwrap(), p);
    let json = dir.path().join("out.speedscope.json");
    export_file(&p, &m, Format::Speedscope, &json).unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["profiles"][0]["type"], "sampled");

    let missing = dir.path().join("no/such/dir/out.pb.gz");
    let e = export_file(&p, &m, Format::Pprof, &missing).unwrap_err();
    assert!(e.to_string().contains("no/such/dir/out.pb.gz"), "{e}");
    let e = read_pprof_file(&json).unwrap_err();
    assert!(e.to_string().contains("out.speedscope.json"), "{e}");
}

mod needs_go {
    use super::*;

    /// `go tool pprof` (Debian's `golang-go`) reads the export and writes it back in
    /// its own encoding, which `read_pprof` turns into the same stacks.
    #[test]
    fn go_tool_pprof_reads_and_rewrites_the_export() {
        let go_ok = Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            go_ok,
            "go is missing: run scripts/install-deps.sh (Debian package golang-go), or leave \
             this test out with NFLAME_SKIP=go (scripts/test.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let pprof = |args: &[&str]| {
            let out = Command::new("go")
                .args(["tool", "pprof"])
                .args(args)
                .env("HOME", dir.path())
                .env("PPROF_TMPDIR", dir.path())
                .output()
                .expect("run go tool pprof");
            assert!(
                out.status.success(),
                "go tool pprof {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        for (name, p) in fixtures() {
            let ours = dir.path().join(format!("{name}.pb.gz"));
            export_file(&p, &meta(&name, Some(10_101_010)), Format::Pprof, &ours).unwrap();
            let ours = ours.to_str().unwrap();
            let top = String::from_utf8(pprof(&["-top", "-sample_index=samples", ours])).unwrap();
            assert!(top.contains("Type: samples"), "{name}: {top}");
            assert!(top.contains(&format!("File: {name}")), "{name}: {top}");
            let rewritten = pprof(&["-proto", ours]);
            assert_eq!(read_pprof(&rewritten[..]).unwrap(), p, "{name}");
        }
    }
}
