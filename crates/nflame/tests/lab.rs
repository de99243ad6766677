//! End-to-end test of the lab (`scripts/lab.sh`): the three topologies of the
//! story recorded under load with `nflame record`, and the verdicts `nflame
//! report` and `nflame diff` give them. Needs root and the lab's Debian
//! packages (`scripts/install-deps.sh`); `NFLAME_SKIP=docker`, `nginx` or
//! `wrk` (scripts/test.sh) leaves it out.
//!
//! One test does it all, because the lab is one set of machine-wide objects
//! (a network namespace, a bridge, iptables chains, fixed ports 18080-18082):
//! `up`, then for each mode `host`, `nat`, `proxy` a 4 s recording under a
//! `lab.sh load MODE 10` (started once the servers are busy, and checked to
//! end before the load does), the verdicts, then
//! `nflame record --docker-port --call-graph fp` against the lab's
//! standalone docker-proxy, and `down` at the end, also when an assertion
//! fails (a guard's `Drop`).
//!
//! The lab's server processes are recorded by pid (from the lab's pid files),
//! not by name: other tests run nginx and docker-proxy of their own at the
//! same time. Every mode records the same processes (both nginx instances and
//! the docker-proxy), as an operator records the same service before and
//! after a change. Each step is bounded in time; the whole test takes about
//! 50 s on two idle CPUs.
//!
//! Verdicts checked: proxy → `userland-proxy`; nat → `bridge-nat` (the
//! thresholds are in `crates/nflame-diagnose/src/report.rs`, tuned on the
//! fixture `lab-nat`; this checks them on a recording made here); host →
//! `none`; `diff proxy host` → `userland-proxy`. The requests/s and CPU per request
//! of each mode are printed (run with `--nocapture` or nextest's
//! `--no-capture` to see them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{finish, run, text, wait_busy};

const FREQ: u64 = 999;
const RECORD_SECS: u64 = 4;
/// The load outlasts the recording, however long the load takes to reach
/// the servers (checked: the load still runs when the recording ends).
const LOAD_SECS: u64 = 10;
const STATE: &str = "/run/nflame-lab";
const PORT_PROXY: u16 = 18082;

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lab.sh")
}

fn lab(args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(lab_script())
        .args(args)
        .env("LAB_STATE", STATE)
        .stdin(Stdio::null());
    c
}

fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null());
    c
}

/// The lab, torn down when dropped (also on a failed assertion).
struct Lab;

impl Lab {
    fn up() -> Lab {
        // A lab left behind by an interrupted run would be reused as is.
        run(&mut lab(&["down"]), Duration::from_secs(60));
        let guard = Lab;
        let out = run(&mut lab(&["up"]), Duration::from_secs(90));
        assert!(
            out.status.success(),
            "lab.sh up failed (needs root and scripts/install-deps.sh):\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        guard
    }

    /// The lab's server processes: both nginx masters, their workers, docker-proxy.
    fn server_pids(&self) -> Vec<u32> {
        let mut pids = BTreeSet::new();
        for f in [
            "nginx-host/nginx.pid",
            "nginx-ns/nginx.pid",
            "docker-proxy.pid",
        ] {
            let p = std::fs::read_to_string(Path::new(STATE).join(f))
                .unwrap_or_else(|e| panic!("{STATE}/{f}: {e}"));
            pids.insert(p.trim().parse::<u32>().expect("pid file holds a pid"));
        }
        // Children (nginx workers), from /proc/*/stat's ppid.
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if ppid.is_some_and(|pp| pids.contains(&pp)) {
                pids.insert(pid);
            }
        }
        pids.into_iter().collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = lab(&["down"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("lab.sh down failed: {}", text(&o.stderr));
            }
        }
    }
}

/// `lab.sh load`'s result line: `mode=proxy requests_per_s=11744 … cpu_us_per_request=170.9 …`.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no {key} in `{line}`"))
}

/// Starts `lab.sh load MODE SECS` (its result comes on stdout).
fn start_load(mode: &str, secs: u64) -> Child {
    lab(&["load", mode, &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab.sh load starts")
}

/// Fails when the load ended before the recording did: then the recording
/// was not all under load.
fn assert_still_loading(load: &mut Child, mode: &str) {
    assert!(
        load.try_wait().unwrap().is_none(),
        "lab.sh load {mode} {LOAD_SECS} ended before the recording: the machine is too slow \
         for this test's timing"
    );
}

fn load_result(load: Child, mode: &str) -> String {
    let out = finish(load, Duration::from_secs(60), "lab.sh load");
    assert!(
        out.status.success(),
        "lab.sh load {mode} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("mode="))
        .unwrap_or_else(|| panic!("no result line from lab.sh load {mode}: {stdout}"))
        .to_string()
}

fn folded_total(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn kind(v: &serde_json::Value) -> String {
    v["verdict"]["kind"]
        .as_str()
        .expect("verdict.kind")
        .to_string()
}

/// A category's share of the serving path in `nflame report --json`.
fn serving_share(report: &serde_json::Value, category: &str) -> f64 {
    report["categories"][category]["serving_share"]
        .as_f64()
        .unwrap_or_else(|| panic!("no serving_share of {category}: {report}"))
}

/// One row of the measured table.
struct Row {
    mode: &'static str,
    rps: f64,
    cpu_us: f64,
    server_us: f64,
    lost: String,
    verdict: String,
    /// Serving-path shares (see crates/nflame-diagnose/src/report.rs).
    proxy_share: f64,
    bridge_share: f64,
    netfilter_share: f64,
}

mod needs_docker_nginx_wrk {
    use super::*;

    #[test]
    fn lab_modes_get_their_verdicts_and_docker_port_is_labelled() {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let lab_guard = Lab::up();
        let server_pids = lab_guard.server_pids();
        let pids: Vec<String> = server_pids.iter().map(u32::to_string).collect();
        let pid_list = pids.join(",");

        let mut rows = Vec::new();
        for mode in ["host", "nat", "proxy"] {
            let out_path = dir.path().join(format!("{mode}.folded"));
            let mut load = start_load(mode, LOAD_SECS);
            // Record under load: once the servers are busy, and while the
            // load still runs.
            wait_busy(&server_pids, 0.1, Duration::from_secs(60));
            let rec = run(
                nflame()
                    .args(["record", "--pid", &pid_list, "-d"])
                    .arg(RECORD_SECS.to_string())
                    .arg("-o")
                    .arg(&out_path),
                Duration::from_secs(60),
            );
            assert_still_loading(&mut load, mode);
            let line = load_result(load, mode);
            let err = text(&rec.stderr);
            assert!(rec.status.success(), "record {mode} failed: {err}");
            let lost = err
                .lines()
                .find_map(|l| l.trim().strip_prefix("lost"))
                .map(|l| l.trim().to_string())
                .unwrap_or_default();
            let report = json(nflame().arg("report").arg(&out_path).arg("--json"));
            let rps = field(&line, "requests_per_s");
            // The recorded server processes' CPU per request: samples are 1/FREQ s each.
            let samples = folded_total(&out_path) as f64;
            let server_us = samples / FREQ as f64 / (rps * RECORD_SECS as f64) * 1e6;
            rows.push(Row {
                mode,
                rps,
                cpu_us: field(&line, "cpu_us_per_request"),
                server_us,
                lost,
                verdict: kind(&report),
                proxy_share: serving_share(&report, "userland-proxy"),
                bridge_share: serving_share(&report, "bridge"),
                netfilter_share: serving_share(&report, "netfilter"),
            });
        }

        println!(
            "{:<6} {:>12} {:>16} {:>18} {:>8} {:>8} {:>8} {:>16}  lost",
            "mode",
            "requests/s",
            "CPU µs/request",
            "server µs/request",
            "proxy",
            "bridge",
            "netfilt.",
            "verdict"
        );
        for r in &rows {
            println!(
                "{:<6} {:>12.0} {:>16.1} {:>18.1} {:>7.1}% {:>7.1}% {:>7.1}% {:>16}  {}",
                r.mode,
                r.rps,
                r.cpu_us,
                r.server_us,
                r.proxy_share * 100.0,
                r.bridge_share * 100.0,
                r.netfilter_share * 100.0,
                r.verdict,
                r.lost
            );
        }
        let row = |m: &str| rows.iter().find(|r| r.mode == m).unwrap();
        assert_eq!(row("proxy").verdict, "userland-proxy");
        // The thresholds (crates/nflame-diagnose/src/report.rs): bridge +
        // netfilter at least 5% of the serving path, bridge alone 2%.
        let nat = row("nat");
        assert_eq!(
            nat.verdict,
            "bridge-nat",
            "nat: bridge {:.1}% + netfilter {:.1}% of the serving path",
            nat.bridge_share * 100.0,
            nat.netfilter_share * 100.0
        );
        assert_eq!(row("host").verdict, "none");

        let diff = json(
            nflame()
                .arg("diff")
                .arg(dir.path().join("proxy.folded"))
                .arg(dir.path().join("host.folded"))
                .arg("--json"),
        );
        assert_eq!(kind(&diff["before"]), "userland-proxy");
        assert_eq!(kind(&diff["after"]), "none");
        assert_eq!(kind(&diff), "userland-proxy", "{:#}", diff["verdict"]);

        // Docker-aware recording: the lab's standalone docker-proxy by its port.
        let docker_path = dir.path().join("docker.folded");
        let mut load = start_load("proxy", LOAD_SECS);
        wait_busy(&server_pids, 0.1, Duration::from_secs(60));
        let rec = run(
            nflame()
                .args([
                    "record",
                    "--docker-port",
                    &PORT_PROXY.to_string(),
                    "-d",
                    "3",
                ])
                // System-wide DWARF stack copies of every task overflow the ring
                // buffers of a busy machine (README, record); frame pointers do not.
                .args(["--call-graph", "fp"])
                .arg("-o")
                .arg(&docker_path),
            Duration::from_secs(60),
        );
        assert_still_loading(&mut load, "proxy");
        load_result(load, "proxy");
        let err = text(&rec.stderr);
        assert!(rec.status.success(), "record --docker-port failed: {err}");
        assert!(
            err.contains(&format!("docker-proxy :{PORT_PROXY}")),
            "{err}"
        );
        let folded = std::fs::read_to_string(&docker_path).unwrap();
        let root_total = |prefix: &str| -> u64 {
            folded
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
                .sum()
        };
        let proxy = root_total(&format!("[docker-proxy :{PORT_PROXY}];docker-proxy;"));
        let backend = root_total("[container 10.213.77.2];nginx;");
        println!(
            "--docker-port {PORT_PROXY}: [docker-proxy :{PORT_PROXY}] {proxy} samples, \
             [container 10.213.77.2] {backend}, [net softirq] {}, all {}",
            root_total("[net softirq];"),
            folded_total(&docker_path)
        );
        assert!(
            proxy > 0,
            "no [docker-proxy :{PORT_PROXY}] stacks:\n{folded}"
        );
        // nginx serves every request docker-proxy relays: a real part of the
        // work, not a stray sample.
        assert!(
            backend * 10 >= proxy + backend,
            "{backend} [container 10.213.77.2] nginx samples, {proxy} of docker-proxy"
        );
        let unlabelled: Vec<&str> = folded.lines().filter(|l| !l.starts_with('[')).collect();
        assert!(
            unlabelled.is_empty(),
            "stacks without a label: {unlabelled:?}"
        );
        let report = json(nflame().arg("report").arg(&docker_path).arg("--json"));
        assert_eq!(kind(&report), "userland-proxy");

        drop(lab_guard);
        println!("lab test took {:.1} s", started.elapsed().as_secs_f64());
    }
}
