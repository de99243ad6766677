//! Issue 4: complete, named stacks for real workloads, recorded with real perf
//! events and folded: a C program built without frame pointers (DWARF
//! unwinding), a stripped Go program (`.gopclntab`), `docker-proxy` relaying
//! traffic to a server in a network namespace, and a binary plus a JIT map
//! that exist only inside a private mount and pid namespace.
//!
//! Needs root (perf events on other processes, namespaces, veth pairs), gcc
//! and util-linux's unshare; the tests in `needs_*` modules also need
//! golang-go, docker.io, nginx (+ libnginx-mod-http-lua) or wrk
//! (`scripts/install-deps.sh`). A missing tool fails the test that needs it;
//! `NFLAME_SKIP` (scripts/test.sh) leaves such tests out on purpose.
//! Recordings are serialized (two CPUs).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nflame_profile::Profile;
use nflame_sampler::{record, CallGraph, RecordOptions, Recording, Target, UnwindMethod};
use nflame_symbolizer::{fold, FoldOptions, FoldStats, TRUNCATED};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails the test when `tool` is not on the PATH, naming the Debian package.
fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: install {package} (scripts/install-deps.sh), or leave this test \
         out with NFLAME_SKIP (scripts/test.sh)"
    );
}

/// A child process killed (and its process group, when it leads one) on drop.
struct Proc {
    child: Child,
    group: bool,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` in its own process group and waits for its first stdout line.
fn spawn_ready(cmd: &mut Command) -> (Proc, String) {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc { child, group: true }, line.trim().to_owned())
}

/// Records `pids` until they gave `samples` samples (at most `limit_secs`):
/// a loaded machine gives them less CPU, so it takes longer, not fewer.
fn record_samples(
    pids: Vec<u32>,
    samples: u64,
    limit_secs: f64,
    call_graph: CallGraph,
) -> Recording {
    let mut o = RecordOptions::new(Target::Pids(pids));
    o.call_graph = call_graph;
    record_samples_with(o, samples, limit_secs)
}

/// [`record_samples`] with options of the caller's.
fn record_samples_with(mut o: RecordOptions, samples: u64, limit_secs: f64) -> Recording {
    o.duration = Some(Duration::from_secs_f64(limit_secs));
    let stop = AtomicBool::new(false);
    record(&o, &stop, |p| {
        if p.samples >= samples {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .expect("recording")
}

/// CPU time (user + system) the process `pid` used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / hz
}

/// Waits until `pid` used `secs` more CPU time: a load has reached it.
fn wait_busy(pid: u32, secs: f64) {
    let (start, t) = (cpu_seconds(pid), Instant::now());
    while cpu_seconds(pid) - start < secs {
        assert!(t.elapsed() < Duration::from_secs(60), "{pid} is not busy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops wrk (it prints its results on SIGINT) and returns its output.
fn stop_wrk(wrk: Child) -> std::process::Output {
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(wrk.id() as libc::pid_t, libc::SIGINT) };
    wrk.wait_with_output().unwrap()
}

fn record_pids(pids: Vec<u32>, secs: f64, call_graph: CallGraph) -> Recording {
    let mut o = RecordOptions::new(Target::Pids(pids));
    o.duration = Some(Duration::from_secs_f64(secs));
    o.call_graph = call_graph;
    let stop = AtomicBool::new(false);
    record(&o, &stop, |_| {}).expect("recording")
}

fn fold_all(rec: &Recording) -> (Profile, FoldStats) {
    fold(rec, &FoldOptions::default()).expect("fold")
}

/// Weight of the folded stacks containing `needle`.
fn weight_with(profile: &Profile, needle: &str) -> u64 {
    let mut out = Vec::new();
    profile.write_folded(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn folded_text(profile: &Profile) -> String {
    let mut out = Vec::new();
    profile.write_folded(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn build_c(dir: &Path, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join("prog.c");
    let exe = dir.join("nflame_unwind_prog");
    std::fs::write(&src, source).unwrap();
    let status = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc failed");
    exe
}

/// Builds `source` with `flags` and starts it; returns once it printed its
/// first line (it is ready).
fn start_c(dir: &Path, source: &str, flags: &[&str]) -> Proc {
    let exe = build_c(dir, source, flags);
    spawn_ready(&mut Command::new(&exe)).0
}

/// Folds `rec`, prints its shares under `label`, and returns the profile, its
/// statistics and its folded text.
fn fold_report(label: &str, rec: &Recording) -> (Profile, FoldStats, String) {
    let (profile, stats) = fold_all(rec);
    eprintln!(
        "{label}: {} samples, {:.2}% of user frames named, {:.2}% of user stacks complete, \
         {} truncated",
        stats.samples,
        stats.named_user_share() * 100.0,
        stats.complete_user_share() * 100.0,
        stats.truncated_stacks
    );
    let text = folded_text(&profile);
    (profile, stats, text)
}

/// The `Requests/sec` line of wrk's output.
fn wrk_rate(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("Requests/sec"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Writes `DIR/nginx.conf` for one foreground nginx process that keeps all
/// its files in DIR: `head` goes first (`load_module` lines), `server` inside
/// `http`.
fn write_nginx_conf(dir: &Path, head: &str, server: &str) -> PathBuf {
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "{head}worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             {server}\n}}\n"
        ),
    )
    .unwrap();
    conf
}

/// A known call tree, built at -O2 without frame pointers: main → outer →
/// (middle → leaf_a, leaf_b); every sample should unwind to `_start`.
const C_TREE: &str = r#"
#include <stdio.h>
#include <string.h>
volatile unsigned long sink;
__attribute__((noinline)) void leaf_a(unsigned long n) {
    volatile char buf[512];
    memset((char *)buf, (int)n, sizeof buf);
    for (unsigned long i = 0; i < n; i++) sink += i ^ buf[i & 511];
}
__attribute__((noinline)) void leaf_b(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) sink = sink * 31 + i;
}
__attribute__((noinline)) void middle(unsigned long n) {
    volatile char pad[2048];
    pad[n & 2047] = 1;
    leaf_a(n);
    leaf_b(n + pad[0]);
    sink += pad[1]; /* no tail call: middle stays on the stack */
}
__attribute__((noinline)) void outer(unsigned long n) { middle(n); sink += 1; }
int main(void) {
    printf("ready\n");
    fflush(stdout);
    for (;;) outer(200000);
}
"#;

#[test]
fn c_program_without_frame_pointers_has_complete_stacks() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let prog = start_c(dir.path(), C_TREE, &["-O2", "-fomit-frame-pointer"]);

    let rec = record_samples(vec![prog.pid()], 800, 30.0, CallGraph::Auto);
    let info = &rec.processes[&prog.pid()];
    assert_eq!(info.unwind.method(), Some(UnwindMethod::Dwarf), "{info:?}");
    let (profile, stats, text) = fold_report("auto", &rec);
    assert!(stats.user_stacks > 500, "{stats:?}");
    assert!(stats.complete_user_share() >= 0.95, "{stats:?}");
    // The known tree, root first.
    let tree = "_start;__libc_start_main_impl;__libc_start_call_main;main;outer;middle;";
    let in_tree = weight_with(&profile, tree);
    assert!(
        in_tree * 100 >= stats.samples * 95,
        "{in_tree} of {} samples under {tree}\n{text}",
        stats.samples
    );
    assert!(weight_with(&profile, "middle;leaf_a") > 0, "{text}");
    assert!(weight_with(&profile, "middle;leaf_b") > 0, "{text}");

    // Frame pointers on the same program: the walk leaves known code, is cut
    // and marked once instead of a chain of [unknown].
    let rec = record_pids(vec![prog.pid()], 1.0, CallGraph::FramePointer);
    let (_, fp, text) = fold_report("fp", &rec);
    assert!(fp.complete_user_share() < 0.5, "{fp:?}");
    assert!(!text.contains("[unknown];[unknown]"), "{text}");
    assert!(
        text.lines().all(|l| l.matches(TRUNCATED).count() <= 1
            && (!l.contains(TRUNCATED) || l.starts_with(&format!("nflame_unwind_p;{TRUNCATED}")))),
        "{text}"
    );
}

#[test]
fn dwarf_only_mode_records_no_frame_pointer_chain_and_small_stacks_truncate() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let prog = start_c(dir.path(), C_TREE, &["-O2", "-fomit-frame-pointer"]);
    // 1 KiB cannot hold middle's 2 KiB frame: the unwinder runs out of stack
    // in every sample under middle, and says so.
    let rec = record_pids(
        vec![prog.pid()],
        1.0,
        CallGraph::Dwarf { stack_bytes: 1024 },
    );
    assert_eq!(rec.stack_bytes, 1024);
    let info = &rec.processes[&prog.pid()];
    assert_eq!(info.unwind.frame_pointer, 0, "{info:?}");
    assert!(info.unwind.truncated > 0, "{info:?}");
    let (profile, stats) = fold_all(&rec);
    assert!(stats.truncated_stacks > 0);
    let text = folded_text(&profile);
    assert!(
        text.contains(&format!("{TRUNCATED};middle;leaf_a"))
            || text.contains(&format!("{TRUNCATED};leaf_a")),
        "{text}"
    );
}

const GO_PROGRAM: &str = r#"
package main

import (
	"fmt"
	"os"
)

var sink uint64

//go:noinline
func spinLeaf(n int) {
	for i := 0; i < n; i++ {
		sink = sink*31 + uint64(i)
	}
}

//go:noinline
func spinMiddle(n int) {
	spinLeaf(n)
	spinLeaf(n / 2)
}

func worker(done chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
			spinMiddle(100000)
		}
	}
}

func main() {
	done := make(chan struct{})
	go worker(done)
	fmt.Println("ready")
	os.Stdout.Sync()
	for {
		spinMiddle(50000)
	}
}
"#;

mod needs_go {
    use super::*;

    #[test]
    fn stripped_go_program_is_named() {
        require("go", "golang-go");
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.go"), GO_PROGRAM).unwrap();
        let exe = dir.path().join("spin");
        let status = Command::new("go")
            .args(["build", "-ldflags=-s -w", "-o"])
            .arg(&exe)
            .arg("main.go")
            .current_dir(dir.path())
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOPATH", dir.path().join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0")
            .status()
            .expect("go build");
        assert!(status.success(), "go build failed");
        let syms = Command::new("nm").arg(&exe).output().unwrap();
        assert!(
            !String::from_utf8_lossy(&syms.stdout).contains("spinLeaf"),
            "the binary is not stripped"
        );
        let (prog, _) = spawn_ready(&mut Command::new(&exe));
        let rec = record_pids(vec![prog.pid()], 2.0, CallGraph::Auto);
        let (profile, stats, text) = fold_report("go", &rec);
        assert!(stats.named_user_share() >= 0.99, "{stats:?}\n{text}");
        assert!(stats.complete_user_share() >= 0.95, "{stats:?}\n{text}");
        // Both goroutines, named. (A frameless Go leaf hides its caller from a
        // frame-pointer walk: `spinMiddle` is missing between them, as in perf.)
        assert!(
            weight_with(&profile, "runtime.goexit;main.main.func1;main.worker;") > 0,
            "{text}"
        );
        assert!(
            weight_with(&profile, "runtime.main;main.main;") > 0,
            "{text}"
        );
        assert!(
            weight_with(&profile, "main.spinLeaf") * 2 > stats.samples,
            "{text}"
        );
    }
}

/// A network namespace with a veth pair, removed on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create(name: &str, host_addr: &str, ns_addr: &str) -> NetNs {
        let run = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        let ns = NetNs {
            name: name.to_owned(),
        };
        let (vh, vn) = (format!("{name}h"), format!("{name}n"));
        run(&["netns", "add", name]);
        run(&["link", "add", &vh, "type", "veth", "peer", "name", &vn]);
        run(&["link", "set", &vn, "netns", name]);
        run(&["addr", "add", &format!("{host_addr}/24"), "dev", &vh]);
        run(&["link", "set", &vh, "up"]);
        run(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{ns_addr}/24"),
            "dev",
            &vn,
        ]);
        run(&["-n", name, "link", "set", &vn, "up"]);
        run(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes once no
        // process is left in it.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}h", self.name)])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn wait_for_http(addr: &str) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

mod needs_docker_nginx_wrk {
    use super::*;

    #[test]
    fn docker_proxy_relaying_to_a_namespace_is_named() {
        let proxy = Path::new("/usr/sbin/docker-proxy");
        assert!(
            proxy.exists(),
            "{} is missing: install docker.io (scripts/install-deps.sh), or leave this test \
             out with NFLAME_SKIP=docker (scripts/test.sh)",
            proxy.display()
        );
        require("nginx", "nginx");
        require("wrk", "wrk");
        require("ip", "iproute2");
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let tag = std::process::id() % 10_000;
        // Only addresses this test creates, on a veth pair into its namespace.
        let (host_addr, ns_addr) = ("10.213.91.1", "10.213.91.2");
        let ns = NetNs::create(&format!("nfl{tag}"), host_addr, ns_addr);

        let conf = write_nginx_conf(
            dir.path(),
            "",
            &format!("server {{ listen {ns_addr}:80; location / {{ return 200 \"hello from the namespace\\n\"; }} }}"),
        );
        let _nginx = Proc {
            child: Command::new("ip")
                .args(["netns", "exec", &ns.name, "nginx", "-p"])
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .spawn()
                .expect("nginx"),
            group: false,
        };
        let port = free_port();
        let _proxy = Proc {
            child: Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "exec {} -proto tcp -host-ip 127.0.0.1 -host-port {port} \
                     -container-ip {ns_addr} -container-port 80 3>/dev/null",
                    proxy.display()
                ))
                .stdout(Stdio::null())
                .spawn()
                .expect("docker-proxy"),
            group: false,
        };
        let addr = format!("127.0.0.1:{port}");
        assert!(wait_for_http(&addr), "docker-proxy does not relay to nginx");
        let proxy_pid = _proxy.pid();

        // Load through the proxy while recording it (from when the proxy is
        // busy; stopped after; 60 s at most).
        let load = Command::new("timeout")
            .args(["60", "wrk", "-t1", "-c16", "-d60s"])
            .arg(format!("http://{addr}/"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("wrk");
        wait_busy(proxy_pid, 0.1);
        let rec = record_samples(vec![proxy_pid], 1000, 30.0, CallGraph::Auto);
        let out = stop_wrk(load);
        let (_, stats, text) = fold_report("docker-proxy", &rec);
        eprintln!("{} user frames; wrk: {}", stats.user_frames, wrk_rate(&out));
        assert!(stats.samples > 200, "{stats:?}");
        assert!(stats.named_user_share() >= 0.99, "{stats:?}\n{text}");
        // Goroutines end at runtime.goexit, runtime threads at runtime.mstart
        // (whose frame-pointer chain goes on with one junk address).
        assert!(stats.complete_user_share() >= 0.95, "{stats:?}\n{text}");
        // It relays: the copy loop is there, named.
        assert!(
            text.contains("io.Copy") || text.contains("net.(*TCPConn).ReadFrom"),
            "{text}"
        );
    }
}

/// Runs an exec-able copy of itself only inside a private mount namespace,
/// plus a JIT region named by `/tmp/perf-NSPID.map` inside that namespace.
const C_JIT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
volatile unsigned long sink;
typedef void (*jit_fn)(unsigned long);
__attribute__((noinline)) void native_spin(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) sink += i;
}
__attribute__((noinline)) void call_jit(jit_fn f, unsigned long n) { f(n); sink++; }
int main(void) {
    /* push rbp; mov rbp,rsp; mov rcx,rdi; 1: dec rcx; jnz 1b; pop rbp; ret */
    static const unsigned char code[] = {0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xf9,
                                         0x48, 0xff, 0xc9, 0x75, 0xfb, 0x5d, 0xc3};
    unsigned char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    memcpy(mem, code, sizeof code);
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", (int)getpid());
    FILE *map = fopen(path, "w");
    if (!map) return 2;
    fprintf(map, "%lx %zx jit_spin_in_namespace\n", (unsigned long)mem, sizeof code);
    fclose(map);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        native_spin(300000);
        call_jit((jit_fn)mem, 300000);
    }
}
"#;

/// The host pid of the process whose command line starts with `argv0`.
fn pid_by_argv0(argv0: &str) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if cmd.split(|&b| b == 0).next() == Some(argv0.as_bytes()) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn binary_and_jit_map_only_inside_a_mount_namespace_are_named() {
    require("unshare", "util-linux");
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), C_JIT, &["-O2", "-fno-omit-frame-pointer"]);
    // Inside: a fresh tmpfs on /tmp (so the JIT map is only there), the
    // program copied to a directory that does not exist on the host.
    let inner = format!("/tmp/nflame-ns-only-{}", std::process::id());
    assert!(!Path::new(&inner).exists());
    let prog_path = format!("{inner}/nsprog");
    // The binary is opened before /tmp is covered, and copied from that fd.
    let script = format!(
        "set -e; exec 9<{exe}; mount -t tmpfs nflame-ns /tmp; mkdir -p {inner}; \
         cat <&9 >{prog_path}; exec 9<&-; chmod +x {prog_path}; exec {prog_path}",
        exe = exe.display()
    );
    let (ns_proc, line) = spawn_ready(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--mount-proc",
                "sh",
                "-c",
            ])
            .arg(&script),
    );
    let nspid: u32 = line
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .expect("ready line");
    let pid = pid_by_argv0(&prog_path).expect("the namespaced program");
    assert_ne!(pid, nspid, "not in its own pid namespace");
    assert!(
        !Path::new(&prog_path).exists(),
        "{prog_path} visible on the host"
    );
    assert!(!Path::new(&format!("/tmp/perf-{nspid}.map")).exists() || nspid == pid);

    let rec = record_pids(vec![pid], 2.0, CallGraph::Auto);
    let (profile, stats, text) = fold_report("namespace", &rec);
    eprintln!("{text}");
    assert!(
        stats.failed_modules.is_empty(),
        "{:?}",
        stats.failed_modules
    );
    assert!(weight_with(&profile, "main;native_spin") > 0, "{text}");
    assert!(
        weight_with(&profile, "jit_spin_in_namespace_[j]") > 0,
        "{text}"
    );
    assert!(
        weight_with(&profile, "main;call_jit;jit_spin_in_namespace_[j]") > 0,
        "{text}"
    );
    assert!(stats.named_user_share() >= 0.95, "{stats:?}");
    drop(ns_proc);
}

/// JIT code without frame pointers or unwind information, between two C
/// frames, the way LuaJIT's traces sit between its interpreter and the C
/// helpers they call: `main → call_jit → [JIT code] → jit_helper`. The JIT
/// code keeps spilled values on the stack, a garbage frame pointer, and
/// (nearest the top of its frame, so the scan meets it first) a stale return
/// address into `decoy_leaf` whose walk goes nowhere: the scan must pass over
/// it to the return address into `call_jit`.
const C_JIT_NO_FP: &str = r#"
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
volatile unsigned long sink;
typedef void (*helper_fn)(unsigned long);
typedef void (*jit_fn)(unsigned long, helper_fn);
__attribute__((noinline)) unsigned long decoy_leaf(unsigned long x) { return x * 3 + sink; }
__attribute__((noinline)) void jit_helper(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) sink += i ^ (sink >> 3);
}
__attribute__((noinline)) void call_jit(jit_fn f, unsigned long n) {
    f(n, jit_helper);
    sink++; /* no tail call: call_jit stays on the stack */
}
int main(void) {
    /* push rbp; push rdi x6 (spilled values); push 0x1234 (not code);
       movabs rax, decoy_leaf + 1; push rax (a stale return address);
       movabs rbp, 0xdeadd00d; call rsi; add rsp, 0x40; pop rbp; ret */
    unsigned char code[] = {
        0x55, 0x57, 0x57, 0x57, 0x57, 0x57, 0x57, 0x68, 0x34, 0x12, 0x00, 0x00,
        0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0x50,
        0x48, 0xbd, 0x0d, 0xd0, 0xad, 0xde, 0x00, 0x00, 0x00, 0x00, 0xff, 0xd6,
        0x48, 0x83, 0xc4, 0x40, 0x5d, 0xc3};
    uint64_t decoy = (uint64_t)(uintptr_t)decoy_leaf + 1;
    memcpy(code + 14, &decoy, sizeof decoy);
    unsigned char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    memcpy(mem, code, sizeof code);
    if (mprotect(mem, 4096, PROT_READ | PROT_EXEC)) return 2;
    sink += decoy_leaf(1);
    printf("ready\n");
    fflush(stdout);
    for (;;) call_jit((jit_fn)mem, 400000);
}
"#;

/// The user frames of a folded stack (after the process name), without its
/// kernel frames.
fn user_frames(stack: &str) -> Vec<&str> {
    stack
        .split(';')
        .skip(1)
        .filter(|f| !f.ends_with("_[k]"))
        .collect()
}

#[test]
fn jit_code_without_frame_pointers_is_unwound_through() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let prog = start_c(dir.path(), C_JIT_NO_FP, &["-O2", "-fomit-frame-pointer"]);

    let rec = record_samples(
        vec![prog.pid()],
        800,
        30.0,
        CallGraph::Dwarf { stack_bytes: 8192 },
    );
    let (profile, stats, text) = fold_report("JIT code without frame pointers", &rec);
    assert!(stats.user_stacks > 500, "{stats:?}");
    assert!(stats.complete_user_share() >= 0.95, "{stats:?}\n{text}");
    // The helper is reached through the JIT frame, under exactly its real
    // callers: the known call chain from the program's entry.
    let known = [
        "_start",
        "__libc_start_main_impl",
        "__libc_start_call_main",
        "main",
        "call_jit",
        "[unknown]",
        "jit_helper",
    ];
    let through: u64 = profile
        .iter()
        .filter(|(s, _)| user_frames(s) == known)
        .map(|(_, n)| n)
        .sum();
    assert!(
        through * 100 >= stats.samples * 90,
        "{through} of {} samples on {}\n{text}",
        stats.samples,
        known.join(";")
    );
    // The stale return address was passed over, never taken for a caller.
    assert_eq!(weight_with(&profile, "decoy_leaf"), 0, "{text}");
    // Every stack through the JIT frame has the real callers under it.
    let wrong: Vec<&str> = profile
        .iter()
        .map(|(s, _)| s)
        .filter(|s| s.contains("[unknown]"))
        .filter(|s| !user_frames(s).starts_with(&known[..6]))
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong callers under the JIT frame: {wrong:#?}"
    );
}

mod needs_nginx_wrk {
    use super::*;

    /// nginx (+ libnginx-mod-http-lua) with Lua hot enough for LuaJIT to compile
    /// it into traces. Traces have no unwind information and run on the
    /// interpreter's C frame; the stacks through them must still reach `_start`.
    #[test]
    fn nginx_with_compiled_lua_traces_has_complete_stacks() {
        let modules = ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"]
            .into_iter()
            .map(Path::new)
            .find(|d| d.join("ngx_http_lua_module.so").exists());
        require("nginx", "nginx");
        require("wrk", "wrk");
        let modules = modules.expect(
            "ngx_http_lua_module.so is missing: install libnginx-mod-http-lua \
             (scripts/install-deps.sh), or leave this test out with NFLAME_SKIP=nginx",
        );
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let m = modules.display();
        let ndk = if modules.join("ndk_http_module.so").exists() {
            format!("load_module {m}/ndk_http_module.so;\n")
        } else {
            String::new()
        };
        let conf = write_nginx_conf(
            dir.path(),
            &format!("{ndk}load_module {m}/ngx_http_lua_module.so;\n"),
            &format!(
                "server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain;\n\
                 content_by_lua_block {{\n\
                   local t = {{}}\n\
                   for i = 1, 200 do t[i] = string.format(\"%d:%x\", i, i * 7919) end\n\
                   ngx.say(#table.concat(t, \",\"))\n\
                 }} }} }}"
            ),
        );
        let nginx = Proc {
            child: Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .spawn()
                .expect("nginx"),
            group: false,
        };
        let addr = format!("127.0.0.1:{port}");
        assert!(wait_for_http(&addr), "nginx does not answer on {addr}");
        let load = Command::new("timeout")
            .args(["60", "wrk", "-t1", "-c16", "-d60s"])
            .arg(format!("http://{addr}/"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("wrk");
        // Hundreds of requests before recording: LuaJIT compiles the loop
        // after a few dozen.
        wait_busy(nginx.pid(), 0.3);
        // C-level stacks (`--lua off`): the native unwinding through traces
        // is what is tested here; Lua frames in their place are tested
        // through `nflame record` (crates/nflame/tests/lua.rs).
        let mut o = RecordOptions::new(Target::Pids(vec![nginx.pid()]));
        o.call_graph = CallGraph::Auto;
        o.lua = false;
        let rec = record_samples_with(o, 1200, 30.0);
        let out = stop_wrk(load);
        let (profile, stats, text) = fold_report("nginx + compiled Lua", &rec);
        eprintln!("wrk: {}", wrk_rate(&out));
        assert!(stats.user_stacks > 500, "{stats:?}");
        assert!(stats.complete_user_share() >= 0.95, "{stats:?}\n{text}");
        // Traces ran (JIT code is an anonymous mapping: `[unknown]`), and
        // their stacks went on below them to the Lua entry and its real
        // callers: the request's content phase, from nginx's event loop.
        // `[nginx]` frames are static functions of the stripped binary (the
        // event module's and HTTP core's handlers).
        let known = [
            "_start",
            "__libc_start_main_impl",
            "__libc_start_call_main",
            "main",
            "ngx_single_process_cycle",
            "ngx_process_events_and_timers",
        ];
        let entry = [
            "ngx_http_core_run_phases",
            "ngx_http_core_content_phase",
            "ngx_http_lua_content_by_chunk",
            "ngx_http_lua_run_thread",
            "[unknown]",
        ];
        let chain_ok = |s: &str| {
            let f = user_frames(s);
            let Some(at) = f.windows(entry.len()).position(|w| w == entry) else {
                return false;
            };
            f.starts_with(&known) && f[known.len()..at].iter().all(|x| *x == "[nginx]")
        };
        let (mut jit, mut through_traces) = (0, 0);
        for (s, n) in profile.iter() {
            if user_frames(s).contains(&"[unknown]") {
                jit += n;
                through_traces += if chain_ok(s) { n } else { 0 };
            }
        }
        eprintln!("{through_traces} of {jit} samples in JIT code under the known chain");
        assert!(
            through_traces * 10 >= stats.samples,
            "{through_traces} of {} samples through traces\n{text}",
            stats.samples
        );
        assert!(
            through_traces * 100 >= jit * 95,
            "{through_traces} of {jit} samples in JIT code under {}…{}\n{text}",
            known.join(";"),
            entry.join(";")
        );
    }
}
