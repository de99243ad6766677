//! `nflame demo`, the README's first command: it records its built-in server
//! direct and behind its userland relay, and must find the relay.

use std::process::Command;

#[test]
fn demo_writes_the_graphs_and_finds_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = Command::new(env!("CARGO_BIN_EXE_nflame"))
        .arg("demo")
        .arg("-o")
        .arg(&out)
        .args(["--duration", "2"])
        .output()
        .expect("nflame runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("verdict: userland-proxy"), "{stdout}");
    assert!(
        stdout.contains("direct:") && stdout.contains("relayed:"),
        "{stdout}"
    );
    for f in [
        "direct.svg",
        "relayed.svg",
        "diff.svg",
        "direct.folded.gz",
        "relayed.folded.gz",
    ] {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 1000, "{f} is too small");
    }
    let diff = std::fs::read_to_string(out.join("diff.svg")).unwrap();
    // The relay's stacks are gone in `direct`: drawn hatched in the diff.
    assert!(
        diff.contains("<title>nflame-relay (gone: before"),
        "relay not drawn as gone"
    );
    // The worker processes are gone.
    let ps = Command::new("pgrep")
        .args(["-x", "nflame-relay"])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "a demo worker was left running");
}
