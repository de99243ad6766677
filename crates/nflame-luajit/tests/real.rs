//! Lua stacks of real LuaJIT processes, sampled on the test's own cpu-clock
//! counters with the probe attached: Debian's nginx + libnginx-mod-http-lua
//! (OpenResty's luajit2) under wrk on loopback, and Debian's upstream
//! `luajit` (unpacked by scripts/install-deps.sh) running a script.
//!
//! Needs root (BPF, perf events) and the unpacked upstream luajit
//! (`scripts/install-deps.sh`); the tests in `needs_nginx_wrk` also need
//! nginx, libnginx-mod-http-lua and wrk. A missing tool fails the test that
//! needs it; `NFLAME_SKIP=nginx` or `wrk` (scripts/test.sh) leaves those out
//! on purpose. Tests that run nginx take the machine-wide lock
//! `/tmp/nflame-heavy.lock` themselves; set `NFLAME_HEAVY_LOCKED=1` when the
//! caller already holds it (e.g. under `flock`). Each test samples until it
//! has enough samples, however long the target's CPU time takes on a busy
//! machine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nflame_luajit::{LuaFrameKind, LuaProbe, LuaStack, Namer, VmState, WalkStatus};

const WORK_LUA: &str = include_str!("lua/work.lua");
const TWO_LUA: &str = include_str!("lua/two.lua");
const MORE_LUA: &str = include_str!("lua/more.lua");

/// Holds the machine-wide lock for tests that start servers.
struct HeavyLock(Option<std::fs::File>);

fn heavy_lock() -> HeavyLock {
    if std::env::var_os("NFLAME_HEAVY_LOCKED").is_some() {
        return HeavyLock(None);
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/nflame-heavy.lock")
        .unwrap();
    // SAFETY: flock on a valid fd we own; blocks until the lock is free.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock /tmp/nflame-heavy.lock");
    HeavyLock(Some(f))
}

impl Drop for HeavyLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: unlocking our own fd.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// How long a test waits for its samples: a busy machine gives the target
/// little CPU, never none.
const SAMPLING_LIMIT: Duration = Duration::from_secs(300);

/// Samples `pid`'s threads at 999 Hz with the probe attached until `want`
/// samples (a cpu-clock counter counts only while the target runs: about a
/// millisecond of its CPU time each), and names every Lua stack.
fn sample(pid: u32, want: usize) -> (Vec<LuaStack>, nflame_luajit::LuaProcessInfo) {
    let mut probe = LuaProbe::load().expect("load the BPF program (run as root)");
    let info = probe.add_process(pid).expect("LuaJIT readable");
    let mut namer = Namer::new();
    namer.add_process(&info).unwrap();
    let out = sample_with(&mut probe, &mut namer, pid, want);
    let stats = probe.stats();
    assert_eq!(stats.ring_full, 0, "{stats:?}");
    (out, info)
}

/// A child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn folded(s: &LuaStack) -> Vec<String> {
    s.frames
        .iter()
        .map(|f| f.folded(false).unwrap_or_else(|| "[C]".into()))
        .collect()
}

fn lua_names(s: &LuaStack) -> Vec<String> {
    s.frames
        .iter()
        .filter_map(|f| match &f.kind {
            LuaFrameKind::Lua { name, .. } => Some(name.as_deref().unwrap_or("?").to_string()),
            LuaFrameKind::Builtin { name } => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

fn print_top(stacks: &[LuaStack]) {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for s in stacks {
        *m.entry(format!("{};[{}]", folded(s).join(";"), s.vmstate.label()))
            .or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (k, n) in v.iter().take(12) {
        eprintln!("{n:6} {k}");
    }
}

/// Share (percent) of `a` among the samples whose leaf Lua function is `a` or `b`.
fn share(stacks: &[LuaStack], a: &str, b: &str) -> (f64, usize, usize) {
    let leaf = |s: &LuaStack| lua_names(s).last().cloned().unwrap_or_default();
    let na = stacks.iter().filter(|s| leaf(s) == a).count();
    let nb = stacks.iter().filter(|s| leaf(s) == b).count();
    (100.0 * na as f64 / (na + nb).max(1) as f64, na, nb)
}

/// Samples taken in LuaJIT code (interpreter or a trace): the ones that must
/// carry a Lua stack.
fn in_luajit(s: &LuaStack) -> bool {
    matches!(s.vmstate, VmState::Interpreted | VmState::Compiled(_))
}

/// Samples `pid` with an existing probe and namer until `want` samples of
/// `pid` (see [`sample`]).
fn sample_with(probe: &mut LuaProbe, namer: &mut Namer, pid: u32, want: usize) -> Vec<LuaStack> {
    let counters: Vec<_> = nflame_luajit::testing::threads(pid)
        .into_iter()
        .map(|t| nflame_luajit::testing::open_cpu_clock(t, 999).unwrap())
        .collect();
    for c in &counters {
        probe.attach(c.as_fd()).unwrap();
    }
    let mut out = Vec::new();
    let t0 = Instant::now();
    while out.len() < want {
        assert!(
            t0.elapsed() < SAMPLING_LIMIT,
            "{} of {want} samples of {pid} within {SAMPLING_LIMIT:?}",
            out.len()
        );
        std::thread::sleep(Duration::from_millis(50));
        namer.new_round();
        probe.drain(|raw| {
            if raw.tgid == pid {
                out.push(namer.resolve(&raw))
            }
        });
    }
    drop(counters);
    namer.new_round();
    probe.drain(|raw| {
        if raw.tgid == pid {
            out.push(namer.resolve(&raw))
        }
    });
    out
}

// ---------------------------------------------------------------- upstream

fn run_upstream(jit: bool) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("two.lua");
    std::fs::write(&script, TWO_LUA).unwrap();
    let root = nflame_luajit::testing::upstream_root();
    let mut cmd = Command::new(nflame_luajit::testing::upstream_bin());
    cmd.env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"));
    if !jit {
        cmd.arg("-joff");
    }
    let mut child = Running(
        cmd.arg(&script)
            .arg("600")
            .stdout(Stdio::piped())
            .spawn()
            .expect("run upstream luajit (scripts/install-deps.sh unpacks it)"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let (stacks, info) = sample(child.0.id(), 2000);
    drop(child);
    assert_eq!(info.layout.variant, nflame_luajit::Variant::Upstream);
    print_top(&stacks);
    let lua: Vec<&LuaStack> = stacks.iter().filter(|s| in_luajit(s)).collect();
    let complete = lua.iter().filter(|s| s.complete).count();
    eprintln!(
        "upstream jit={jit}: {} samples, {} in LuaJIT code, {} complete",
        stacks.len(),
        lua.len(),
        complete
    );
    assert!(
        lua.len() > 200,
        "too few samples in LuaJIT code: {}",
        lua.len()
    );
    assert!(
        complete * 100 >= lua.len() * 95,
        "{complete} of {} complete",
        lua.len()
    );
    let (pct, na, nb) = share(&stacks, "work_a", "work_b");
    eprintln!("work_a {pct:.1}% ({na} vs {nb})");
    assert!(
        (61.7..=71.7).contains(&pct),
        "work_a share {pct:.1}%, expected 66.7 +- 5"
    );
    let chunk = format!("{}", script.display());
    let s = stacks
        .iter()
        .find(|s| lua_names(s).last().map(String::as_str) == Some("work_a"))
        .unwrap();
    let f = folded(s);
    assert_eq!(f[f.len() - 3], format!("@{chunk}_[l]"), "{f:?}");
    assert_eq!(f[f.len() - 2], format!("driver@{chunk}:15_[l]"));
    let leaf = if jit { "_[lj]" } else { "_[l]" };
    assert!(stacks
        .iter()
        .any(|s| folded(s).last() == Some(&format!("work_a@{chunk}:3{leaf}"))));
}

#[test]
fn upstream_luajit_two_functions_jit_on() {
    run_upstream(true);
}

#[test]
fn upstream_luajit_two_functions_jit_off() {
    run_upstream(false);
}

// ---------------------------------------------------------------- nginx

struct Nginx {
    dir: PathBuf,
    port: u16,
    master: u32,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling the master we started.
        unsafe { libc::kill(self.master as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{}", self.master)).exists()
            && t0.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_nginx(dir: &Path, init: &str) -> Nginx {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::create_dir_all(dir.join("lua")).unwrap();
    std::fs::write(dir.join("lua/work.lua"), WORK_LUA).unwrap();
    std::fs::write(dir.join("lua/more.lua"), MORE_LUA).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        r#"load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    lua_package_path "{d}/lua/?.lua;;";
    init_by_lua_block {{ {init} }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            content_by_lua_block {{
                local work = require("work")
                ngx.say(work.handler(20000))
            }}
        }}
        location /sleep {{
            default_type text/plain;
            content_by_lua_block {{
                ngx.say(require("more").napper())
            }}
        }}
        location /more {{
            default_type text/plain;
            content_by_lua_block {{
                local more = require("more")
                ngx.say(more.tail_caller(20000), " ", more.in_coroutine(20000), " ",
                        more.with_ffi(2000), " ", more.with_format(300))
            }}
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let conf_path = dir.join("nginx.conf");
    let status = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .status()
        .expect("run nginx");
    assert!(
        status.success(),
        "nginx failed: {}",
        std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
    );
    let master: u32 = std::fs::read_to_string(dir.join("nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let n = Nginx {
        dir: dir.to_path_buf(),
        port,
        master,
    };
    // Ready when a request is answered.
    let t0 = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nginx did not answer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

fn worker_of(master: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap();
    children
        .split_whitespace()
        .next()
        .expect("an nginx worker")
        .parse()
        .unwrap()
}

/// wrk on `path` with `connections`, until dropped (at most 10 minutes).
fn wrk(port: u16, path: &str, connections: u32) -> Running {
    Running(
        Command::new("wrk")
            .args([
                "-t1",
                &format!("-c{connections}"),
                "-d600s",
                &format!("http://127.0.0.1:{port}{path}"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("run wrk (install wrk, or leave this test out with NFLAME_SKIP=wrk)"),
    )
}

fn run_nginx(jit: bool) {
    let _lock = heavy_lock();
    let dir = tempfile::Builder::new()
        .prefix("nflame-luajit-nginx")
        .tempdir()
        .unwrap();
    let nginx = start_nginx(dir.path(), if jit { "" } else { "jit.off()" });
    let worker = worker_of(nginx.master);
    let load = wrk(nginx.port, "/", 8);
    let (stacks, info) = sample(worker, 3000);
    drop(load);
    assert_eq!(
        info.layout.variant,
        nflame_luajit::Variant::OpenRestyLuajit2
    );
    print_top(&stacks);
    let lua: Vec<&LuaStack> = stacks.iter().filter(|s| in_luajit(s)).collect();
    let entry = |s: &LuaStack| {
        s.frames
            .first()
            .and_then(|f| f.folded(false))
            .is_some_and(|f| f.starts_with("=content_by_lua(nginx.conf:"))
    };
    let good = lua.iter().filter(|s| s.complete && entry(s)).count();
    eprintln!(
        "nginx jit={jit}: {} samples, {} in LuaJIT code, {} complete to the content_by_lua entry",
        stacks.len(),
        lua.len(),
        good
    );
    assert!(
        lua.len() > 200,
        "too few samples in LuaJIT code: {}",
        lua.len()
    );
    assert!(
        good * 100 >= lua.len() * 95,
        "{good} of {} reach the entry chunk",
        lua.len()
    );
    let (pct, na, nb) = share(&stacks, "compute_a", "compute_b");
    eprintln!("compute_a {pct:.1}% ({na} vs {nb})");
    assert!(
        (61.7..=71.7).contains(&pct),
        "compute_a share {pct:.1}%, expected 66.7 +- 5"
    );
    let module = format!("{}/lua/work.lua", nginx.dir.display());
    let s = stacks
        .iter()
        .find(|s| lua_names(s).last().map(String::as_str) == Some("compute_a"))
        .unwrap();
    let f = folded(s);
    assert!(
        f[0].starts_with("=content_by_lua(nginx.conf:") && f[0].ends_with(")_[l]"),
        "{f:?}"
    );
    assert_eq!(f[1], format!("handler@{module}:22_[l]"), "{f:?}");
    assert!(
        f[2].starts_with(&format!("compute_a@{module}:6_[l")),
        "{f:?}"
    );
    if jit {
        assert!(
            stacks
                .iter()
                .any(|s| s.frames.last().is_some_and(|f| f.compiled)),
            "no compiled frames"
        );
    } else {
        assert!(stacks
            .iter()
            .all(|s| !matches!(s.vmstate, VmState::Compiled(_))));
    }
}

/// The tests that run nginx (+ libnginx-mod-http-lua) under wrk.
mod needs_nginx_wrk {
    use super::*;

    #[test]
    fn nginx_lua_jit_on() {
        run_nginx(true);
    }

    #[test]
    fn nginx_lua_jit_off() {
        run_nginx(false);
    }

    /// A reload (HUP) makes a new VM in new workers: they are found, read and
    /// named like the first. And frame kinds: a tail call (named as LuaJIT names
    /// it: by the caller's call site, with the callee's prototype), a coroutine
    /// body (its own stack, called from C: no call-site name), a builtin.
    #[test]
    fn nginx_lua_reload_and_frame_kinds() {
        let _lock = heavy_lock();
        let dir = tempfile::Builder::new()
            .prefix("nflame-luajit-nginx")
            .tempdir()
            .unwrap();
        let nginx = start_nginx(dir.path(), "");
        let more = format!("{}/lua/more.lua", nginx.dir.display());
        let mut probe = LuaProbe::load().unwrap();
        let mut namer = Namer::new();

        let w1 = worker_of(nginx.master);
        let info1 = probe.add_process(w1).unwrap();
        namer.add_process(&info1).unwrap();
        let load = wrk(nginx.port, "/", 8);
        let before = sample_with(&mut probe, &mut namer, w1, 1500);
        drop(load);
        let g1 = probe.current_g(w1);
        assert!(g1.is_some());

        // Reload: wait for a worker other than w1.
        // SAFETY: signalling the master we started.
        unsafe { libc::kill(nginx.master as i32, libc::SIGHUP) };
        let t0 = Instant::now();
        let w2 = loop {
            let kids =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", nginx.master))
                    .unwrap();
            if let Some(w) = kids
                .split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok())
                .find(|&w| w != w1)
            {
                break w;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no new worker after HUP"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let t0 = Instant::now();
        let info2 = loop {
            match probe.add_process(w2) {
                Ok(i) if i.g.is_some() => break i,
                r => assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "new worker not readable: {r:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        namer.add_process(&info2).unwrap();
        assert_ne!(info2.g, g1, "a reload makes a new global_State");
        let load = wrk(nginx.port, "/more", 8);
        let after = sample_with(&mut probe, &mut namer, w2, 3000);
        drop(load);
        print_top(&before);
        print_top(&after);

        let named = |v: &[LuaStack], f: &dyn Fn(&str) -> bool| {
            v.iter().any(|s| folded(s).iter().any(|x| f(x)))
        };
        assert!(
            named(&before, &|x| x.starts_with("compute_a@")),
            "worker 1 named"
        );
        // Tail call: leaf_tail's prototype (line 7) under the name the caller used.
        assert!(
            named(&after, &|x| x
                .starts_with(&format!("tail_caller@{more}:7_[l"))),
            "tail call"
        );
        // The coroutine body (line 18) is the bottom of its own stack.
        let bottom = |s: &LuaStack| {
            s.frames
                .first()
                .and_then(|f| f.folded(false))
                .unwrap_or_default()
        };
        assert!(
            after
                .iter()
                .any(|s| bottom(s).starts_with(&format!("?@{more}:18_[l"))),
            "coroutine body"
        );
        // A builtin by its library name, under the interpreted with_format.
        assert!(
            after.iter().any(|s| {
                let f = folded(s);
                f.iter().any(|x| x == &format!("with_format@{more}:32_[l]"))
                    && f.last().is_some_and(|x| x == "string.format_[l]")
            }),
            "string.format under with_format"
        );
    }

    /// While a request's coroutine waits (ngx.sleep yields), nginx runs its own
    /// C code with G->cur_L still pointing at the yielded coroutine: those
    /// samples must carry no Lua frames.
    #[test]
    fn nginx_event_loop_has_no_lua_frames() {
        let _lock = heavy_lock();
        let dir = tempfile::Builder::new()
            .prefix("nflame-luajit-nginx")
            .tempdir()
            .unwrap();
        let nginx = start_nginx(dir.path(), "");
        let worker = worker_of(nginx.master);
        let load = wrk(nginx.port, "/sleep", 100);
        let (stacks, _) = sample(worker, 1000);
        drop(load);
        print_top(&stacks);
        let idle = stacks
            .iter()
            .filter(|s| s.status == WalkStatus::NotRunning)
            .count();
        eprintln!("{} samples, {idle} in nginx's own code", stacks.len());
        assert!(stacks.len() > 200, "too few samples: {}", stacks.len());
        assert!(
            idle * 5 > stacks.len(),
            "event loop samples: {idle} of {}",
            stacks.len()
        );
        assert!(stacks
            .iter()
            .filter(|s| s.status == WalkStatus::NotRunning)
            .all(|s| s.frames.is_empty()));
        // (Samples in LuaJIT code keep their frames: the other nginx tests
        // assert that 95% of them reach the entry chunk.)
    }
}
