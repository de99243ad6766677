//! Real containers: Debian's `dockerd` (docker.io) runs an image built here,
//! and `nflame record` names what runs inside it.
//!
//! The test starts a dockerd of its own, isolated from any other: its own
//! socket, exec root and data root, and `--iptables=false --ip-forward=false
//! --ip-masq=false --bridge=none`, so it changes no host-wide setting and
//! leaves no firewall rules. Its one network is a bridge the test creates
//! (`nflbr1`, 10.213.78.0/24); the published port is 127.0.0.1:18093. The
//! image is imported from a directory: a static build of
//! `fixtures/workloads/calltree.c` at `-O2 -fomit-frame-pointer` (a binary
//! that exists only inside the container's mount namespace) and Debian's
//! static busybox (for `httpd`). Everything is removed at the end, also when
//! an assertion fails (a guard's `Drop`), and the test checks that.
//!
//! Checked:
//! - `--container NAME`: the container's process is found through its
//!   cgroup, its stacks are rooted `[container NAME]`, the calltree
//!   functions are named from the binary inside the container, at least 95%
//!   of its user stacks reach `main` although it has no frame pointers, and
//!   work_a/work_b/work_c keep their 60/30/10 shares (within what sampling
//!   allows for the number of samples).
//! - `--pid` of the same process names the same functions.
//! - `--container NAME` without the `docker` command on the PATH: the name is
//!   found in the container's `config.v2.json` under dockerd's `--data-root`.
//! - `--docker-port 18093` while wrk loads the published port: dockerd's
//!   own docker-proxy is found, its stacks are rooted
//!   `[docker-proxy :18093]`, and at least 99% of its user frames (a
//!   stripped Go binary) are named; the web container's stacks are rooted
//!   `[container nflame-test-web]`.
//! - A second dockerd with the userland proxy off (`--userland-proxy=false`):
//!   `--docker-port` for a published port fails and says why (no proxy:
//!   DNAT in the kernel) and to use `--container`, and `--container` records
//!   the container end to end.
//!
//! - Lua frames in a container: Debian's upstream luajit, copied into an
//!   image of its own with the libraries it loads, runs a script of two
//!   functions of known relative cost (2:1); `--container NAME` puts the Lua
//!   frames, named with the chunk as the container sees it (`/two.lua`),
//!   under `[container NAME]`, with the known shares.
//!
//! Needs root, docker.io, busybox-static, gcc and wrk (the Lua test: the
//! unpacked upstream luajit instead of wrk) (`scripts/install-deps.sh`);
//! `NFLAME_SKIP=docker` or `wrk` (scripts/test.sh) leaves them out. Takes
//! about a minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{finish, run, text, wait_busy, Recorder};

const RUN_DIR: &str = "/run/nflame-test-docker";
const DATA_DIR: &str = "/var/lib/nflame-test-docker";
const BRIDGE: &str = "nflbr1";
const SUBNET: &str = "10.213.78.0/24";
const NETWORK: &str = "nflame-test";
const IMAGE: &str = "nflame-test:calltree";
const WORKLOAD: &str = "nflame-test-calltree";
const WEB: &str = "nflame-test-web";
const PORT: u16 = 18093;
const LUA_IMAGE: &str = "nflame-test:luajit";
const LUA: &str = "nflame-test-lua";

fn socket() -> String {
    format!("unix://{RUN_DIR}/docker.sock")
}

fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null()).env("DOCKER_HOST", socket());
    c
}

/// The docker client that comes with Debian's dockerd (another client on
/// the PATH may be newer than this daemon's API).
fn docker_cli() -> &'static str {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

fn docker(args: &[&str]) -> Command {
    let mut c = Command::new(docker_cli());
    c.args(args)
        .env("DOCKER_HOST", socket())
        .stdin(Stdio::null());
    c
}

fn ok(cmd: &mut Command, limit: Duration) -> String {
    let out = run(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn dockerd_pid() -> Option<u32> {
    let pid = std::fs::read_to_string(format!("{RUN_DIR}/dockerd.pid")).ok()?;
    pid.trim().parse().ok().filter(|&p| pid_alive(p))
}

/// The isolated dockerd, and everything the test made with it.
struct Dockerd {
    child: Child,
}

impl Dockerd {
    /// Starts the isolated dockerd, with `extra` flags.
    fn start(extra: &[&str]) -> Dockerd {
        // Leftovers of an interrupted run go first.
        Dockerd::teardown();
        std::fs::create_dir_all(RUN_DIR).unwrap();
        let log = std::fs::File::create(format!("{RUN_DIR}/dockerd.log")).unwrap();
        let data_root = format!("--data-root={DATA_DIR}");
        let exec_root = format!("--exec-root={RUN_DIR}/exec");
        let pidfile = format!("--pidfile={RUN_DIR}/dockerd.pid");
        let host = format!("--host={}", socket());
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip-forward=false", "--ip-masq=false"])
            .args(["--bridge=none", &host, &exec_root, &data_root, &pidfile])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd runs (Debian's docker.io; scripts/install-deps.sh installs it)");
        let guard = Dockerd { child };
        let start = Instant::now();
        loop {
            let out = run(&mut docker(&["version"]), Duration::from_secs(10));
            if out.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "dockerd did not answer on {} within 30 s: {}\nlog: {}",
                socket(),
                text(&out.stderr),
                std::fs::read_to_string(format!("{RUN_DIR}/dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        guard
    }

    /// Stops what the test made: containers, network, dockerd (with its
    /// containerd), mounts under the data root, the directories, the bridge.
    fn teardown() {
        if dockerd_pid().is_some() {
            let _ = run(
                &mut docker(&["rm", "-f", WORKLOAD, WEB, LUA]),
                Duration::from_secs(30),
            );
            let _ = run(
                &mut docker(&["network", "rm", NETWORK]),
                Duration::from_secs(30),
            );
        }
        if let Some(pid) = dockerd_pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let start = Instant::now();
            while pid_alive(pid) && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(100));
            }
            if pid_alive(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        // Mounts dockerd did not undo (after a KILL), deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(DATA_DIR) || m.starts_with(RUN_DIR))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::fs::remove_dir_all(DATA_DIR);
        let _ = std::fs::remove_dir_all(RUN_DIR);
        if Path::new(&format!("/sys/class/net/{BRIDGE}")).exists() {
            let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        Dockerd::teardown();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The docker-proxy process publishing `port` (`-host-port PORT` in its
/// command line).
fn proxy_for_port(port: u16) -> Option<u32> {
    let want = ["-host-port".to_string(), port.to_string()];
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.windows(2).any(|w| w == want).then_some(pid)
    })
}

/// Imports the image from the directory `rootfs`, without a registry.
fn import_image(rootfs: &Path) {
    import_image_as(rootfs, IMAGE);
}

/// Imports the directory `rootfs` as the image `tag`.
fn import_image_as(rootfs: &Path, tag: &str) {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar runs");
    let import = docker(&["import", "-", tag])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .expect("docker import runs");
    assert!(tar.wait().unwrap().success(), "tar failed");
    assert!(
        import.status.success(),
        "docker import: {}",
        text(&import.stderr)
    );
}

/// The image's root: /bin/calltree (static, no frame pointers) and
/// /bin/busybox with /www/index.html.
fn build_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/workloads/calltree.c");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-g", "-fomit-frame-pointer"])
        .args(["-fno-optimize-sibling-calls", "-pthread", "-o"])
        .arg(root.join("bin/calltree"))
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc -static failed: {}",
        text(&out.stderr)
    );
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (Debian's busybox-static; scripts/install-deps.sh installs it)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("www/index.html"), "hello from a container\n").unwrap();
    root
}

/// Folded lines as (frames, count).
fn folded(path: &Path) -> Vec<(Vec<String>, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').expect("folded line");
            (
                stack.split(';').map(str::to_owned).collect(),
                n.parse().expect("count"),
            )
        })
        .collect()
}

fn is_user(frame: &str) -> bool {
    !frame.ends_with("_[k]") && frame != "[truncated]"
}

/// Samples of the calltree process (rooted at `root`; `None`: any root).
fn calltree_samples(stacks: &[(Vec<String>, u64)], root: Option<&str>) -> u64 {
    stacks
        .iter()
        .filter(|(f, _)| root.is_none_or(|r| f[0] == r))
        .filter(|(f, _)| f.iter().any(|x| x == "calltree"))
        .map(|(_, n)| n)
        .sum()
}

/// Runs `nflame record ARGS -d SECS -o OUT` for 4 s, or 8 s or 16 s when the
/// calltree got fewer than 600 samples (a loaded machine gives it less CPU,
/// and with DWARF stacks from every CPU a debug build's recorder loses
/// samples); returns the stacks and the summary of the last run.
fn record_calltree(
    cmd: impl Fn() -> Command,
    root: Option<&str>,
    out: &Path,
    what: &str,
) -> (Vec<(Vec<String>, u64)>, String) {
    let mut last = None;
    for secs in ["4", "8", "16"] {
        let o = run(
            cmd().args(["-d", secs, "-o"]).arg(out),
            Duration::from_secs(120),
        );
        let err = text(&o.stderr);
        eprintln!("{what}, {secs} s:\n{err}");
        assert!(o.status.success(), "{what}: {err}");
        let stacks = folded(out);
        let enough = calltree_samples(&stacks, root) >= 600;
        last = Some((stacks, err));
        if enough {
            break;
        }
    }
    last.unwrap()
}

/// Checks the calltree recording rooted at `root` (`None`: any root):
/// names, complete stacks, shares. Returns its sample count.
fn check_calltree(stacks: &[(Vec<String>, u64)], root: Option<&str>, what: &str) -> u64 {
    let mine: Vec<&(Vec<String>, u64)> = stacks
        .iter()
        .filter(|(f, _)| root.is_none_or(|r| f[0] == r))
        .filter(|(f, _)| f.iter().any(|x| x == "calltree"))
        .collect();
    let total = calltree_samples(stacks, root);
    // Enough to tell shares apart (the tolerance below scales with it; at
    // 400, work_c's is 10 ± 7.7 points).
    assert!(total >= 400, "{what}: only {total} calltree samples");
    let with_user: u64 = mine
        .iter()
        .filter(|(f, _)| f.iter().skip(2).any(|x| is_user(x)))
        .map(|(_, n)| n)
        .sum();
    let complete: u64 = mine
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x == "main") && !f.iter().any(|x| x == "[truncated]"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        complete * 100 >= with_user * 95,
        "{what}: {complete} of {with_user} user stacks reach main"
    );
    let mut by_fn = BTreeMap::new();
    for (f, n) in &mine {
        for w in ["work_a", "work_b", "work_c"] {
            if f.iter().any(|x| x == w) {
                *by_fn.entry(w).or_insert(0u64) += n;
            }
        }
    }
    let work: u64 = by_fn.values().sum();
    // The shares come from loop counts, so load does not move them; the
    // tolerance is what sampling allows: 1 point plus 4.5 standard
    // deviations of a share over this many samples (work_c: 10 ± 5 points at
    // 1,000 samples, ± 3.6 at 3,000; never down to 0).
    for (w, expected) in [("work_a", 0.60), ("work_b", 0.30), ("work_c", 0.10)] {
        let share = *by_fn.get(w).unwrap_or(&0) as f64 / work.max(1) as f64;
        let tolerance = 0.01 + 4.5 * (expected * (1.0 - expected) / work.max(1) as f64).sqrt();
        assert!(
            (share - expected).abs() <= tolerance,
            "{what}: {w} has {:.1}% of the work, expected {:.0}% ± {:.1}: {by_fn:?}",
            share * 100.0,
            expected * 100.0,
            tolerance * 100.0
        );
    }
    eprintln!(
        "{what}: {total} samples, {complete}/{with_user} user stacks reach main, work {by_fn:?}"
    );
    total
}

mod needs_docker_wrk {
    use super::*;

    #[test]
    fn real_containers_are_found_named_and_unwound() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = build_rootfs(dir.path());
        let dockerd = Dockerd::start(&[]);
        import_image(&rootfs);

        // 1. A container running a binary the host does not have.
        assert!(!Path::new("/bin/calltree").exists());
        let limit = Duration::from_secs(60);
        ok(
            docker(&["run", "-d", "--name", WORKLOAD, "--network", "none", IMAGE]).args([
                "/bin/calltree",
                "tree",
                "60",
            ]),
            limit,
        );
        let host_pid: u32 = ok(
            &mut docker(&["inspect", "-f", "{{.State.Pid}}", WORKLOAD]),
            limit,
        )
        .trim()
        .parse()
        .expect("container pid");
        assert!(pid_alive(host_pid));
        let root = format!("[container {WORKLOAD}]");
        let (stacks, err) = record_calltree(
            || {
                let mut c = nflame();
                // DWARF named: the default (auto) may fall back to frame
                // pointers when a busy machine leaves the recorder behind.
                c.args(["record", "--call-graph", "dwarf", "--container", WORKLOAD]);
                c
            },
            Some(&root),
            &dir.path().join("container.folded"),
            "--container",
        );
        assert!(
            err.contains(&format!("container {WORKLOAD}")) && err.contains(&host_pid.to_string()),
            "the container's process is not listed: {err}"
        );
        check_calltree(&stacks, Some(&root), "--container");

        // The name without the docker command: from the container's
        // config.v2.json under dockerd's --data-root.
        let (stacks, err) = record_calltree(
            || {
                let mut c = nflame();
                c.env("PATH", "/nonexistent").args([
                    "record",
                    "--call-graph",
                    "dwarf",
                    "--container",
                    WORKLOAD,
                ]);
                c
            },
            Some(&root),
            &dir.path().join("no-docker.folded"),
            "--container without the docker command",
        );
        assert!(
            err.contains(&format!("container {WORKLOAD}")) && err.contains(&host_pid.to_string()),
            "the container's process is not listed: {err}"
        );
        check_calltree(
            &stacks,
            Some(&root),
            "--container without the docker command",
        );

        let (stacks, _) = record_calltree(
            || {
                let mut c = nflame();
                c.args(["record", "--pid", &host_pid.to_string()]);
                c
            },
            None,
            &dir.path().join("pid.folded"),
            "--pid",
        );
        check_calltree(&stacks, None, "--pid");

        // 2. A published port: dockerd starts its docker-proxy.
        ok(
            docker(&[
                "network", "create", "--driver", "bridge", "--subnet", SUBNET,
            ])
            .args([
                "-o",
                &format!("com.docker.network.bridge.name={BRIDGE}"),
                NETWORK,
            ]),
            limit,
        );
        let publish = format!("127.0.0.1:{PORT}:8080");
        ok(
            docker(&[
                "run",
                "-d",
                "--name",
                WEB,
                "--network",
                NETWORK,
                "-p",
                &publish,
            ])
            .args([
                IMAGE,
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
                "/www",
            ]),
            limit,
        );
        let url = format!("http://127.0.0.1:{PORT}/");
        let start = Instant::now();
        while !Command::new("wrk")
            .args(["-t1", "-c1", "-d1s", &url])
            .output()
            .is_ok_and(|o| {
                text(&o.stdout).contains("Requests/sec") && !text(&o.stdout).contains("Non-2xx")
            })
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{url} does not answer"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The load outlasts the recording (it is stopped with SIGINT, on
        // which wrk prints its results, once the recording is written); the
        // recording starts once docker-proxy is busy relaying.
        // (`timeout` bounds it if the test fails first, and passes SIGINT on.)
        let mut load = Command::new("timeout")
            .args(["-s", "INT", "150", "wrk", "-t1", "-c8", "-d120s", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wrk runs");
        let proxy_pid = proxy_for_port(PORT).expect("dockerd's docker-proxy for the port");
        wait_busy(&[proxy_pid], 0.1, Duration::from_secs(60));
        let web = dir.path().join("web.folded");
        let out = run(
            nflame()
                .args(["record", "--docker-port", &PORT.to_string(), "-d", "6"])
                // docker-proxy is Go: frame pointers walk it completely. With
                // DWARF stacks from every CPU a debug build's recorder lost
                // 93% of the samples on a loaded machine (README, record).
                .args(["--call-graph", "fp", "-o"])
                .arg(&web),
            limit,
        );
        assert!(
            load.try_wait().unwrap().is_none(),
            "wrk ended before the recording did (120 s)"
        );
        // SAFETY: kill(2) on the pid of a child not yet waited for.
        unsafe { libc::kill(load.id() as libc::pid_t, libc::SIGINT) };
        let wrk = finish(load, Duration::from_secs(60), "wrk");
        let err = text(&out.stderr);
        eprintln!("{err}");
        assert!(out.status.success(), "record --docker-port: {err}");
        let wrk_out = text(&wrk.stdout);
        assert!(wrk_out.contains("Requests/sec"), "wrk: {wrk_out}");
        let stacks = folded(&web);
        let proxy_root = format!("[docker-proxy :{PORT}]");
        let mut proxy_samples = 0;
        let (mut user_frames, mut named) = (0u64, 0u64);
        for (f, n) in stacks.iter().filter(|(f, _)| f[0] == proxy_root) {
            proxy_samples += n;
            assert_eq!(f[1], "docker-proxy", "{f:?}");
            for x in f.iter().skip(2).filter(|x| is_user(x)) {
                user_frames += n;
                if !x.starts_with('[') {
                    named += n;
                }
            }
        }
        assert!(
            proxy_samples > 100,
            "{proxy_samples} docker-proxy samples: {err}"
        );
        assert!(
            named * 100 >= user_frames * 99,
            "{named} of {user_frames} docker-proxy user frames named"
        );
        let relay = stacks
            .iter()
            .filter(|(f, _)| f[0] == proxy_root && f.iter().any(|x| x.contains("TCPProxy")))
            .map(|(_, n)| n)
            .sum::<u64>();
        // Relaying is what docker-proxy does here: most of its samples are in
        // its copy loop (the rest is the Go runtime: scheduler, netpoller, GC).
        assert!(
            relay * 2 >= proxy_samples,
            "{relay} of {proxy_samples} docker-proxy samples relay (main.(*TCPProxy)…)"
        );
        let web_root = format!("[container {WEB}]");
        let web_samples: u64 = stacks
            .iter()
            .filter(|(f, _)| f[0] == web_root)
            .map(|(_, n)| n)
            .sum();
        // The server answers every request the proxy relays: a real part of the
        // served work, not a stray sample.
        assert!(
            web_samples * 10 >= proxy_samples + web_samples,
            "{web_samples} samples of the web container, {proxy_samples} of docker-proxy: {err}"
        );
        eprintln!(
            "--docker-port: docker-proxy {proxy_samples} samples ({relay} relaying), \
             {named}/{user_frames} user frames named; web container {web_samples} samples; {}",
            wrk_out
                .lines()
                .find(|l| l.contains("Requests/sec"))
                .unwrap_or("")
        );

        drop(dockerd);

        // 3. A dockerd with the userland proxy off (`"userland-proxy": false`
        // in daemon.json; the same flag on its command line here, so that
        // the host's /etc/docker stays untouched): a published port has no
        // docker-proxy, and the error says so and what to do instead.
        let dockerd = Dockerd::start(&["--userland-proxy=false"]);
        import_image(&rootfs);
        ok(
            docker(&["run", "-d", "--name", WORKLOAD, "--network", "none", IMAGE]).args([
                "/bin/calltree",
                "tree",
                "60",
            ]),
            limit,
        );
        ok(
            docker(&[
                "network", "create", "--driver", "bridge", "--subnet", SUBNET,
            ])
            .args([
                "-o",
                &format!("com.docker.network.bridge.name={BRIDGE}"),
                NETWORK,
            ]),
            limit,
        );
        ok(
            docker(&[
                "run",
                "-d",
                "--name",
                WEB,
                "--network",
                NETWORK,
                "-p",
                &publish,
            ])
            .args([
                IMAGE,
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
                "/www",
            ]),
            limit,
        );
        assert_eq!(
            proxy_for_port(PORT),
            None,
            "a docker-proxy with the proxy off"
        );
        let none = dir.path().join("none.folded");
        let out = run(
            nflame()
                .args([
                    "record",
                    "--docker-port",
                    &PORT.to_string(),
                    "-d",
                    "1",
                    "-o",
                ])
                .arg(&none),
            limit,
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for want in [
            format!("no docker-proxy publishes port {PORT}"),
            "dockerd runs with the userland proxy off".to_string(),
            "record the container with --container NAME".to_string(),
        ] {
            assert!(err.contains(&want), "lacks {want:?}: {err}");
        }
        assert!(!err.contains("docker ps"), "{err}");
        assert!(!none.exists());
        // What the error recommends, end to end.
        let (stacks, _) = record_calltree(
            || {
                let mut c = nflame();
                // DWARF named: the default (auto) may fall back to frame
                // pointers when a busy machine leaves the recorder behind.
                c.args(["record", "--call-graph", "dwarf", "--container", WORKLOAD]);
                c
            },
            Some(&root),
            &dir.path().join("proxy-off.folded"),
            "--container, userland proxy off",
        );
        check_calltree(&stacks, Some(&root), "--container, userland proxy off");

        // 4. Nothing is left behind.
        drop(dockerd);
        assert!(dockerd_pid().is_none());
        assert!(!Path::new(DATA_DIR).exists() && !Path::new(RUN_DIR).exists());
        assert!(!Path::new(&format!("/sys/class/net/{BRIDGE}")).exists());
        assert!(
            !text(
                &Command::new("ps")
                    .args(["-eo", "args"])
                    .output()
                    .unwrap()
                    .stdout
            )
            .contains(&format!("-host-port {PORT}")),
            "a docker-proxy for port {PORT} is still running"
        );
    }
}

/// The Lua script of the LuaJIT container: work_a does twice the work of
/// work_b; it runs for the CPU seconds given.
const TWO_LUA: &str = "\
local function work_a(n)
  local s = 0
  for i = 1, n do s = s + (i % 7) * 3 end
  return s
end

local function work_b(n)
  local s = 0
  for i = 1, n do s = s + (i % 5) * 2 end
  return s
end

local function driver(secs)
  local t0 = os.clock()
  local acc = 0
  while os.clock() - t0 < secs do
    acc = acc + work_a(200000)
    acc = acc + work_b(100000)
  end
  return acc
end

driver(tonumber(arg[1]) or 5)
";

/// The LuaJIT image's root: Debian's upstream luajit (unpacked by
/// scripts/install-deps.sh) at /usr/bin/luajit, the libraries it loads at
/// their paths, and /two.lua.
fn build_lua_rootfs(dir: &Path) -> PathBuf {
    let upstream = Path::new("/opt/nflame-test/luajit-upstream");
    let luajit = upstream.join("usr/bin/luajit");
    assert!(
        luajit.is_file(),
        "{} is missing: run scripts/install-deps.sh as root",
        luajit.display()
    );
    let lib_dir = upstream.join("usr/lib/x86_64-linux-gnu");
    let root = dir.join("lua-rootfs");
    let copy = |from: &Path, to: &str| {
        let dest = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), dest.display()));
    };
    copy(&luajit, "/usr/bin/luajit");
    // What the loader maps for it: `lib => /path (addr)` and the loader itself.
    let ldd = Command::new("ldd")
        .arg(&luajit)
        .env("LD_LIBRARY_PATH", &lib_dir)
        .output()
        .expect("ldd runs");
    assert!(ldd.status.success(), "ldd: {}", text(&ldd.stderr));
    for line in text(&ldd.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        // Libraries from the unpacked tree go where the container looks.
        let inside = match Path::new(path).strip_prefix(upstream) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => path.to_string(),
        };
        copy(Path::new(path), &inside);
    }
    std::fs::write(root.join("two.lua"), TWO_LUA).unwrap();
    root
}

mod needs_docker {
    use super::*;

    /// `--container` of a container running upstream luajit: the Lua frames
    /// under `[container NAME]`, named with the chunk as the container sees
    /// it, with the script's known 2:1 shares; the summary's lua line.
    #[test]
    fn lua_frames_in_a_container() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = build_lua_rootfs(dir.path());
        let _dockerd = Dockerd::start(&[]);
        import_image_as(&rootfs, LUA_IMAGE);
        let limit = Duration::from_secs(60);
        ok(
            docker(&["run", "-d", "--name", LUA, "--network", "none", LUA_IMAGE]).args([
                "/usr/bin/luajit",
                "/two.lua",
                "600",
            ]),
            limit,
        );
        let pid: u32 = ok(
            &mut docker(&["inspect", "-f", "{{.State.Pid}}", LUA]),
            limit,
        )
        .trim()
        .parse()
        .expect("container pid");
        assert!(pid_alive(pid));
        // The script is running once it uses CPU.
        wait_busy(&[pid], 0.2, Duration::from_secs(120));
        let out = dir.path().join("lua.folded");
        let mut rec = Recorder::spawn(
            nflame()
                .args(["record", "--container", LUA, "-d", "600", "-o"])
                .arg(&out),
        );
        rec.wait_ready(Duration::from_secs(60));
        wait_busy(&[pid], 2.0, Duration::from_secs(300));
        rec.signal(libc::SIGINT);
        let res = rec.finish(Duration::from_secs(180));
        let summary = text(&res.stderr);
        eprintln!("{summary}");
        assert!(res.status.success(), "{summary}");
        assert!(summary.contains("(luajit): LuaJIT 2.1 in "), "{summary}");
        let stacks = folded(&out);
        let root = format!("[container {LUA}]");
        let mine: Vec<&(Vec<String>, u64)> = stacks
            .iter()
            .filter(|(f, _)| f[0] == root && f.get(1).is_some_and(|x| x == "luajit"))
            .collect();
        let all: u64 = mine.iter().map(|(_, n)| n).sum();
        // A busy machine can leave the recorder behind and lose Lua stacks
        // (their samples say `[lua: no stack]`): shares are of the samples
        // that carry one, and those must be most of them.
        let no_stack: u64 = mine
            .iter()
            .filter(|(f, _)| f.iter().any(|x| x.starts_with("[lua: no stack]")))
            .map(|(_, n)| n)
            .sum();
        assert!(
            no_stack * 2 < all,
            "{no_stack} of {all} samples without a Lua stack"
        );
        let total = all - no_stack;
        let count = |w: &str| -> u64 {
            mine.iter()
                .filter(|(f, _)| {
                    f.windows(2).any(|p| {
                        p[0] == "driver@/two.lua:13_[l]" && p[1].starts_with(&format!("{w}_[l"))
                    })
                })
                .map(|(_, n)| n)
                .sum()
        };
        let (a, b) = (count("work_a@/two.lua:1"), count("work_b@/two.lua:7"));
        eprintln!("{total} samples of the container's luajit: work_a {a}, work_b {b}");
        assert!(
            a + b >= 300 && (a + b) * 100 >= total * 80,
            "{a} + {b} of {total} samples in work_a/work_b under driver"
        );
        let share = 100.0 * a as f64 / (a + b) as f64;
        assert!(
            (61.7..=71.7).contains(&share),
            "work_a share {share:.1}%, expected 66.7 ± 5"
        );
        // The main chunk is named as the container sees the script.
        assert!(
            mine.iter()
                .any(|(f, _)| f.iter().any(|x| x == "@/two.lua_[l]")),
            "no @/two.lua main chunk"
        );
    }
}
