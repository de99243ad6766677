//! Verdicts on real recordings: the lab's three topologies (`scripts/lab.sh`,
//! recorded system-wide with `perf record -e cpu-clock -F 999 -a -g`, see
//! `fixtures/README.md`) and unrelated workloads recorded by other fixtures.
//!
//! Besides the recordings as they are, each lab fixture is checked in the shapes
//! other collectors and machines produce (no `_[k]` suffixes, `comm-PID` roots,
//! role annotations, named Go frames, only the service's processes), so that the
//! verdict does not hang on the exact frames of this machine.

use std::path::{Path, PathBuf};

use nflame_diagnose::{CategoryReport, CategoryReportOptions, ChangeReport, Rules, VerdictKind};
use nflame_profile::Profile;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/folded")
        .join(format!("{name}.folded.gz"))
}

fn load(name: &str) -> Profile {
    Profile::from_path(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn report(p: &Profile) -> CategoryReport {
    CategoryReport::new(p, &Rules::default(), &CategoryReportOptions::default()).unwrap()
}

/// Rewrites every stack of `p` with `f` (`None` drops the stack).
fn rewrite(p: &Profile, f: impl Fn(&str) -> Option<String>) -> Profile {
    let mut out = Profile::new();
    for (stack, count) in p.iter() {
        if let Some(s) = f(stack) {
            out.add(&s, count);
        }
    }
    out
}

fn assert_kind(name: &str, p: &Profile, want: VerdictKind) -> CategoryReport {
    let r = report(p);
    assert_eq!(
        r.verdict.kind, want,
        "{name}: {}\n{:?}",
        r.verdict.summary, r.categories
    );
    r
}

#[test]
fn lab_proxy_is_userland_proxy() {
    let r = assert_kind("lab-proxy", &load("lab-proxy"), VerdictKind::UserlandProxy);
    let proxy = r.category("userland-proxy").unwrap();
    // Far above the 15% threshold, not a borderline call.
    assert!(proxy.serving_share.unwrap() > 0.35, "{proxy:?}");
    assert!(r.verdict.summary.contains("docker-proxy"));
    assert!(r.verdict.summary.contains("splice/read/write"));
}

#[test]
fn lab_nat_is_bridge_nat() {
    let r = assert_kind("lab-nat", &load("lab-nat"), VerdictKind::BridgeNat);
    assert_eq!(r.samples("userland-proxy"), 0);
    let bridge = r.category("bridge").unwrap();
    assert!(bridge
        .top_frames
        .iter()
        .any(|f| f.frame.starts_with("veth_") || f.frame.starts_with("br_")));
}

#[test]
fn lab_host_is_none() {
    let r = assert_kind("lab-host", &load("lab-host"), VerdictKind::None);
    assert_eq!(r.samples("userland-proxy"), 0);
    assert_eq!(r.samples("bridge"), 0);
    // Conntrack sees loopback traffic on this host: netfilter is not zero, yet no
    // bridge verdict (it is not container networking).
    assert!(r.samples("netfilter") > 0);
}

#[test]
fn unrelated_workloads_are_none() {
    for name in ["sort-gzip", "nginx-lua", "python-multi-event"] {
        let p = load(name);
        let r = assert_kind(name, &p, VerdictKind::None);
        assert_eq!(
            r.samples("userland-proxy") + r.samples("bridge"),
            0,
            "{name}"
        );
    }
}

#[test]
fn every_sample_gets_exactly_one_category() {
    for name in ["lab-host", "lab-nat", "lab-proxy", "sort-gzip"] {
        let p = load(name);
        let r = report(&p);
        let sum: u64 = r.categories.iter().map(|c| c.samples).sum();
        assert_eq!(sum, p.total(), "{name}");
        let share: f64 = r.categories.iter().map(|c| c.share).sum();
        assert!((share - 1.0).abs() < 1e-9, "{name}");
    }
}

/// Without kernel annotations (stackcollapse-perf.pl without `--all`).
#[test]
fn verdicts_hold_without_kernel_suffixes() {
    for (name, want) in [
        ("lab-host", VerdictKind::None),
        ("lab-nat", VerdictKind::BridgeNat),
        ("lab-proxy", VerdictKind::UserlandProxy),
    ] {
        let p = rewrite(&load(name), |s| Some(s.replace("_[k]", "")));
        assert_kind(name, &p, want);
    }
}

/// `comm-PID` roots (`--pid`), OpenResty's binary name, role annotations.
#[test]
fn verdicts_hold_with_other_roots() {
    let roots = |s: &str| {
        let (root, rest) = s.split_once(';').unwrap_or((s, ""));
        let root = match root {
            "nginx" => "[container web];openresty-4242".to_string(),
            "docker-proxy" => "[docker-proxy :8080];docker-proxy-777".to_string(),
            other => format!("{other}-1"),
        };
        Some(format!("{root};{rest}"))
    };
    for (name, want) in [
        ("lab-host", VerdictKind::None),
        ("lab-nat", VerdictKind::BridgeNat),
        ("lab-proxy", VerdictKind::UserlandProxy),
    ] {
        assert_kind(name, &rewrite(&load(name), roots), want);
    }
}

/// docker-proxy symbolized from .gopclntab (named Go frames) and recorded under
/// a thread name rather than the process name.
#[test]
fn proxy_with_named_go_frames_and_another_root() {
    let p = rewrite(&load("lab-proxy"), |s| {
        Some(match s.strip_prefix("docker-proxy;") {
            Some(rest) => format!(
                "proxy-worker;runtime.goexit;main.(*TCPProxy).clientLoop.func1;io.Copy;{}",
                rest.replace("[docker-proxy];", "")
            ),
            None => s.to_string(),
        })
    });
    assert_kind("lab-proxy (named)", &p, VerdictKind::UserlandProxy);
}

/// Only the service's processes and the kernel's network work, as a recording
/// by PID would have them (no load generator, no idle).
#[test]
fn verdicts_hold_for_the_service_processes_alone() {
    let service = |s: &str| {
        let root = s.split(';').next().unwrap_or("");
        matches!(root, "nginx" | "docker-proxy").then(|| s.to_string())
    };
    for (name, want) in [
        ("lab-host", VerdictKind::None),
        ("lab-nat", VerdictKind::BridgeNat),
        ("lab-proxy", VerdictKind::UserlandProxy),
    ] {
        assert_kind(name, &rewrite(&load(name), service), want);
    }
}

/// A busy machine: the lab recording plus ten times as many unrelated samples.
#[test]
fn unrelated_load_does_not_dilute_the_verdict() {
    let noise = load("sort-gzip");
    for (name, want) in [
        ("lab-host", VerdictKind::None),
        ("lab-nat", VerdictKind::BridgeNat),
        ("lab-proxy", VerdictKind::UserlandProxy),
    ] {
        let mut p = load(name);
        let factor = 10 * p.total() / noise.total() + 1;
        for (s, c) in noise.iter() {
            p.add(s, c * factor);
        }
        assert_kind(name, &p, want);
    }
}

#[test]
fn diff_of_lab_modes() {
    let proxy = report(&load("lab-proxy"));
    let host = report(&load("lab-host"));
    let nat = report(&load("lab-nat"));
    let d = ChangeReport::new(proxy.clone(), host.clone());
    assert_eq!(d.verdict.kind, VerdictKind::UserlandProxy);
    assert!(
        d.verdict.summary.starts_with("The change removed"),
        "{}",
        d.verdict.summary
    );
    assert!(d.change("userland-proxy").unwrap().share_delta < -0.2);
    let d = ChangeReport::new(proxy, nat.clone());
    assert_eq!(d.verdict.kind, VerdictKind::BridgeNat);
    let d = ChangeReport::new(nat, host.clone());
    assert_eq!(d.verdict.kind, VerdictKind::BridgeNat);
    assert!(d.verdict.summary.starts_with("The change removed"));
    let d = ChangeReport::new(host.clone(), host);
    assert_eq!(d.verdict.kind, VerdictKind::None);

    let v = serde_json::to_value(&d).unwrap();
    for side in ["before", "after"] {
        assert!(v[side]["total_samples"].as_u64().unwrap() > 0);
        assert!(v[side]["categories"]["tcp-ip"]["share"].as_f64().is_some());
        assert!(v[side]["verdict"]["kind"].is_string());
    }
    assert_eq!(v["verdict"]["kind"], "none");
}

#[test]
fn per_unit_costs_from_the_lab() {
    // Requests served during the lab recordings are in fixtures/README.md; any
    // positive count gives samples per request proportional to the samples.
    let p = load("lab-proxy");
    let mut opts = CategoryReportOptions::default();
    opts.per = Some(100_000.0);
    let r = CategoryReport::new(&p, &Rules::default(), &opts).unwrap();
    let c = r.category("userland-proxy").unwrap();
    assert!((c.per_unit.unwrap() - c.samples as f64 / 100_000.0).abs() < 1e-12);
    let mut text = Vec::new();
    r.write_text(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("per unit"), "{text}");
}
