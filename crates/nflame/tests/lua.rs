//! Lua-land flame graphs through `nflame record`: Debian's nginx +
//! libnginx-mod-http-lua (OpenResty's luajit2) under wrk on loopback, with a
//! Lua module of known relative costs (`tests/lua/app.lua`), the JIT on and
//! off; Debian's upstream `luajit` (unpacked by scripts/install-deps.sh)
//! running a script; a reload during a recording; a LuaJIT nflame cannot
//! read; no BPF; `--lua off`, `--lua-only`, `--lua-lines`.
//!
//! Needs root (perf events, BPF), gcc, util-linux's setpriv and the
//! unpacked upstream luajit (`scripts/install-deps.sh`); the tests in
//! `needs_nginx_wrk` also need nginx, libnginx-mod-http-lua and wrk. A
//! missing tool fails the test that needs it; `NFLAME_SKIP=nginx` or `wrk`
//! (scripts/test.sh) leaves those out on purpose. Every test takes the
//! machine-wide lock `/tmp/nflame-heavy.lock` itself; set
//! `NFLAME_HEAVY_LOCKED=1` when the caller already holds it (e.g. under
//! `flock`). Shares, not counts, and recordings that last until the targets
//! have used enough CPU: the tests hold on a busy machine.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{heavy_lock, run, text, wait_busy, wait_until, Recorder};

const APP_LUA: &str = include_str!("lua/app.lua");
/// First lines of app.lua's functions.
const COMPUTE_A: u32 = 9;
const COMPUTE_B: u32 = 17;
const HANDLER: u32 = 25;
const LEAF_TAIL: u32 = 29;
const CO_BODY: u32 = 40;
const WITH_FFI: u32 = 48;
const WITH_FORMAT: u32 = 54;
const WITH_NGX: u32 = 60;

/// The upstream luajit workload: work_a twice the cost of work_b.
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
  io.stdout:write(\"ready\\n\")
  io.stdout:flush()
  while os.clock() - t0 < secs do
    acc = acc + work_a(200000)
    acc = acc + work_b(100000)
  end
  return acc
end

driver(tonumber(arg[1]) or 5)
";

fn nflame() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
    c.stdin(Stdio::null());
    c
}

/// Reads a folded file into stack → count.
fn folded(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut m = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (stack, n) = line.rsplit_once(' ').expect("stack COUNT");
        *m.entry(stack.to_string()).or_insert(0) += n.parse::<u64>().unwrap();
    }
    m
}

fn frames(stack: &str) -> Vec<&str> {
    stack.split(';').collect()
}

fn is_lua(frame: &str) -> bool {
    frame.ends_with("_[l]") || frame.ends_with("_[lj]")
}

/// The innermost frame read from a Lua stack that names a Lua function.
fn lua_leaf(stack: &str) -> Option<&str> {
    frames(stack)
        .into_iter()
        .rev()
        .find(|f| is_lua(f) && f.contains('@'))
}

/// Share (percent) of `a` among the samples whose innermost Lua function
/// starts with `a` or `b`, and the two counts.
fn share(p: &BTreeMap<String, u64>, a: &str, b: &str) -> (f64, u64, u64) {
    let count = |name: &str| -> u64 {
        p.iter()
            .filter(|(s, _)| lua_leaf(s).is_some_and(|f| f.starts_with(name)))
            .map(|(_, n)| n)
            .sum()
    };
    let (na, nb) = (count(a), count(b));
    (100.0 * na as f64 / (na + nb).max(1) as f64, na, nb)
}

fn top(p: &BTreeMap<String, u64>, n: usize) -> String {
    let mut v: Vec<(&String, &u64)> = p.iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    v.iter()
        .take(n)
        .map(|(s, n)| format!("{n:6} {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `X% of the N in Lua code reach the entry chunk` of the summary, for the
/// process with the most Lua samples (listed first).
fn entry_share(summary: &str) -> f64 {
    let line = summary
        .lines()
        .find(|l| l.contains("in Lua code reach the entry chunk"))
        .unwrap_or_else(|| panic!("no entry-chunk line: {summary}"));
    let at = line.find("; ").unwrap() + 2;
    line[at..]
        .split('%')
        .next()
        .and_then(|x| x.trim().parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {line}"))
}

// ---------------------------------------------------------------- nginx

struct Nginx {
    dir: PathBuf,
    port: u16,
    master: u32,
    conf: String,
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

impl Nginx {
    /// nginx with one worker; `init` runs in init_by_lua (e.g. `jit.off()`).
    fn start(dir: &Path, init: &str) -> Nginx {
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::create_dir_all(dir.join("lua")).unwrap();
        std::fs::write(dir.join("lua/app.lua"), APP_LUA).unwrap();
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
                local app = require("app")
                local function inline_sum(n)
                    local s = 0
                    for i = 1, n do s = s + i % 3 end
                    return s
                end
                ngx.say(app.handler(20000), " ", inline_sum(4000))
            }}
        }}
        location /more {{
            default_type text/plain;
            content_by_lua_block {{
                local app = require("app")
                ngx.say(app.tail_caller(20000), " ", app.in_coroutine(20000), " ",
                        app.with_ffi(2000), " ", app.with_format(300), " ", app.with_ngx(300))
            }}
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), &conf).unwrap();
        let status = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .status()
            .expect(
                "run nginx (install nginx and libnginx-mod-http-lua with scripts/install-deps.sh, \
                 or leave this test out with NFLAME_SKIP=nginx)",
            );
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
            conf,
        };
        // Ready when a request is answered.
        wait_until(Duration::from_secs(10), || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            r.starts_with("HTTP/1.1 200")
        });
        n
    }

    fn workers(&self) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.master))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    }

    /// The `=content_by_lua(nginx.conf:N)` chunk name of the block under `location`.
    fn chunk(&self, location: &str) -> String {
        let at = self.conf.find(&format!("location {location} {{")).unwrap();
        let line = self.conf[..at].lines().count() + 2;
        format!("=content_by_lua(nginx.conf:{line})")
    }

    fn module(&self) -> String {
        format!("{}/lua/app.lua", self.dir.display())
    }

    /// `wrk` on `path` until the returned guard is dropped (at most 10
    /// minutes).
    fn load(&self, path: &str) -> Load {
        Load(
            Command::new("wrk")
                .args([
                    "-t1",
                    "-c8",
                    "-d600s",
                    &format!("http://127.0.0.1:{}{path}", self.port),
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("run wrk (install wrk, or leave this test out with NFLAME_SKIP=wrk)"),
        )
    }
}

/// A running wrk, stopped when dropped.
struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nflame-lua-nginx")
        .tempdir()
        .unwrap()
}

/// Records master and worker under wrk on `path` until the worker has used
/// `cpu` seconds of CPU time since sampling started.
fn record_nginx(
    nginx: &Nginx,
    path: &str,
    cpu: f64,
    extra: &[&str],
) -> (BTreeMap<String, u64>, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("nginx.folded");
    let workers = nginx.workers();
    let pids: Vec<String> = std::iter::once(nginx.master)
        .chain(workers.iter().copied())
        .map(|p| p.to_string())
        .collect();
    let mut rec = Recorder::spawn(
        nflame()
            .args(["record", "--pid", &pids.join(","), "-d", "600"])
            .args(extra)
            .arg("-o")
            .arg(&out),
    );
    rec.wait_ready(Duration::from_secs(60));
    let load = nginx.load(path);
    wait_busy(&workers, cpu, Duration::from_secs(300));
    rec.signal(libc::SIGINT);
    let res = rec.finish(Duration::from_secs(120));
    drop(load);
    let summary = text(&res.stderr);
    assert!(res.status.success(), "nflame record failed: {summary}");
    eprintln!("{summary}");
    let p = folded(&out);
    eprintln!("{}", top(&p, 12));
    (p, summary)
}

/// JIT on and off: names and first lines, shares within 5 points of the
/// known 2:1, Lua frames under the C entry, the entry chunk reached, a
/// function of the content_by_lua block and one of a module file, compiled
/// frames marked (and none with the JIT off), never `[unknown]` in Lua.
fn nginx_known_costs(jit: bool) {
    let _lock = heavy_lock();
    let dir = nginx_dir();
    let nginx = Nginx::start(dir.path(), if jit { "" } else { "jit.off()" });
    let (p, summary) = record_nginx(&nginx, "/", 3.0, &[]);
    let chunk = nginx.chunk("/");
    let module = nginx.module();

    let (pct, na, nb) = share(
        &p,
        &format!("compute_a@{module}:{COMPUTE_A}_[l"),
        &format!("compute_b@{module}:{COMPUTE_B}_[l"),
    );
    eprintln!("compute_a {pct:.1}% ({na} vs {nb})");
    assert!(
        na + nb >= 300,
        "too few samples in compute_a/b: {na} + {nb}"
    );
    assert!(
        (61.7..=71.7).contains(&pct),
        "compute_a share {pct:.1}%, expected 66.7 ± 5"
    );
    // The mixed stack: C entry, the entry chunk, the handler, the leaf.
    let want = format!(
        "ngx_http_lua_run_thread;{chunk}_[l];handler@{module}:{HANDLER}_[l];compute_a@{module}:{COMPUTE_A}_[l"
    );
    assert!(
        p.keys()
            .any(|s| s.contains(&want) && s.starts_with("nginx;")),
        "no stack with {want}"
    );
    // The content_by_lua block's own function.
    let inline = format!("inline_sum@{chunk}:3_[l");
    assert!(
        p.keys()
            .any(|s| s.contains(&format!("{chunk}_[l];{inline}"))),
        "no {inline}"
    );
    // Lua frames sit under the C entry.
    let lua_samples: u64 = p
        .iter()
        .filter(|(s, _)| frames(s).iter().any(|f| is_lua(f)))
        .map(|(_, n)| n)
        .sum();
    let under_entry: u64 = p
        .iter()
        .filter(|(s, _)| {
            let f = frames(s);
            f.iter()
                .position(|f| is_lua(f))
                .is_some_and(|i| i > 0 && f[i - 1] == "ngx_http_lua_run_thread")
        })
        .map(|(_, n)| n)
        .sum();
    assert!(
        under_entry * 100 >= lua_samples * 95,
        "{under_entry} of {lua_samples} Lua stacks under ngx_http_lua_run_thread"
    );
    // At least 95% of the samples in LuaJIT code reach the entry chunk.
    let entry = entry_share(&summary);
    assert!(entry >= 95.0, "{entry}% reach the entry chunk: {summary}");
    // Compiled frames are marked, and only with the JIT on.
    let compiled = p.keys().any(|s| s.contains("_[lj]"));
    assert_eq!(compiled, jit, "compiled frames with jit={jit}");
    assert!(summary.contains("VM: "), "{summary}");
    if jit {
        assert!(summary.contains("compiled "), "{summary}");
    } else {
        assert!(
            summary.contains("interpreted ") && !summary.contains("compiled "),
            "{summary}"
        );
    }
    // A trace is never [unknown].
    let unknown_in_lua: u64 = p
        .iter()
        .filter(|(s, _)| s.contains("_[l") && s.contains("[unknown]"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        unknown_in_lua * 100 <= lua_samples,
        "{unknown_in_lua} Lua stacks with [unknown]"
    );
}

/// The tests that run nginx (+ libnginx-mod-http-lua) under wrk.
mod needs_nginx_wrk {
    use super::*;

    #[test]
    fn nginx_lua_known_costs_jit_on() {
        nginx_known_costs(true);
    }

    #[test]
    fn nginx_lua_known_costs_jit_off() {
        nginx_known_costs(false);
    }

    /// A tail call, a coroutine, an FFI call, a builtin and an ngx API call,
    /// each where it should be.
    #[test]
    fn nginx_lua_frame_kinds() {
        let _lock = heavy_lock();
        let dir = nginx_dir();
        let nginx = Nginx::start(dir.path(), "");
        let (p, _) = record_nginx(&nginx, "/more", 3.0, &[]);
        let chunk = nginx.chunk("/more");
        let m = nginx.module();
        let has = |what: &str, f: &dyn Fn(&[&str]) -> bool| {
            assert!(p.keys().any(|s| f(&frames(s))), "no {what}");
        };
        let at =
            |f: &[&str], i: usize, prefix: &str| f.get(i).is_some_and(|x| x.starts_with(prefix));
        let pos = |f: &[&str], prefix: &str| f.iter().position(|x| x.starts_with(prefix));
        // Tail call: leaf_tail's prototype under the name its caller used.
        let tail = format!("tail_caller@{m}:{LEAF_TAIL}_[l");
        has("tail call", &|f| {
            pos(f, &tail).is_some_and(|i| i > 0 && at(f, i - 1, &format!("{chunk}_[l]")))
        });
        // The coroutine's body is the bottom of its own Lua stack, under the C
        // entry that resumed it.
        let body = format!("?@{m}:{CO_BODY}_[l");
        has("coroutine body", &|f| {
            pos(f, &body).is_some_and(|i| i > 0 && f[i - 1] == "ngx_http_lua_run_thread")
        });
        // FFI: the C function, called from with_ffi.
        let ffi = format!("with_ffi@{m}:{WITH_FFI}_[l");
        has("FFI call", &|f| {
            pos(f, &ffi).is_some_and(|i| f[i + 1..].iter().any(|x| x.contains("getpid")))
        });
        // A builtin by its library name, under the function calling it.
        let fmt = format!("with_format@{m}:{WITH_FORMAT}_[l]");
        has("string.format", &|f| {
            pos(f, &fmt).is_some_and(|i| f.get(i + 1) == Some(&"string.format_[l]"))
        });
        // An ngx API call: ngx.md5 under with_ngx (with lua-resty-core, its Lua
        // wrapper inlined into with_ngx's trace calls ngx_http_lua_ffi_md5).
        let ngx = format!("with_ngx@{m}:{WITH_NGX}_[l");
        has("ngx.md5", &|f| {
            pos(f, &ngx).is_some_and(|i| f[i + 1..].iter().any(|x| x.contains("md5")))
        });
    }

    /// A reload (HUP) during a recording: the new worker's Lua frames are named.
    #[test]
    fn nginx_reload_during_recording_names_the_new_worker() {
        let _lock = heavy_lock();
        let dir = nginx_dir();
        let nginx = Nginx::start(dir.path(), "");
        let old = nginx.workers();
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("reload.folded");
        let pids: Vec<String> = std::iter::once(nginx.master)
            .chain(old.iter().copied())
            .map(|p| p.to_string())
            .collect();
        let mut rec = Recorder::spawn(
            nflame()
                .args([
                    "record",
                    "--per-pid",
                    "--pid",
                    &pids.join(","),
                    "-d",
                    "600",
                    "-o",
                ])
                .arg(&out),
        );
        rec.wait_ready(Duration::from_secs(60));
        let load = nginx.load("/");
        wait_busy(&old, 1.0, Duration::from_secs(300));
        // SAFETY: signalling the master we started.
        unsafe { libc::kill(nginx.master as i32, libc::SIGHUP) };
        let mut new = Vec::new();
        wait_until(Duration::from_secs(30), || {
            new = nginx
                .workers()
                .into_iter()
                .filter(|w| !old.contains(w))
                .collect();
            !new.is_empty()
        });
        wait_busy(&new, 1.5, Duration::from_secs(300));
        rec.signal(libc::SIGINT);
        let res = rec.finish(Duration::from_secs(120));
        drop(load);
        let summary = text(&res.stderr);
        eprintln!("{summary}");
        assert!(res.status.success(), "{summary}");
        let p = folded(&out);
        let module = nginx.module();
        let named = |pid: u32| {
            p.iter()
                .filter(|(s, _)| {
                    s.starts_with(&format!("nginx-{pid};"))
                        && s.contains(&format!("compute_a@{module}:{COMPUTE_A}_[l"))
                })
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        let total = |pids: &[u32]| -> u64 {
            p.iter()
                .filter(|(s, _)| pids.iter().any(|w| s.starts_with(&format!("nginx-{w};"))))
                .map(|(_, n)| n)
                .sum()
        };
        // compute_a runs about 60% of a worker's time under this load; the new
        // worker's share shows its frames are read and named like the old one's.
        let (fresh, fresh_all) = (new.iter().map(|&w| named(w)).sum::<u64>(), total(&new));
        assert!(
            fresh_all >= 300 && fresh * 100 >= fresh_all * 30,
            "new worker {new:?}: {fresh} of {fresh_all} samples in compute_a\n{}",
            top(&p, 10)
        );
        let (stale, stale_all) = (old.iter().map(|&w| named(w)).sum::<u64>(), total(&old));
        assert!(
            stale * 100 >= stale_all * 30,
            "old worker {old:?}: {stale} of {stale_all} samples in compute_a"
        );
    }
}

// ---------------------------------------------------------------- luajit

/// Where scripts/install-deps.sh unpacked Debian's upstream luajit
/// (`NFLAME_UPSTREAM_LUAJIT` to use another); fails when it is missing.
fn upstream_root() -> PathBuf {
    let root = std::env::var_os("NFLAME_UPSTREAM_LUAJIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/nflame-test/luajit-upstream"));
    assert!(
        root.join("usr/bin/luajit").is_file(),
        "{}/usr/bin/luajit is missing: run scripts/install-deps.sh as root",
        root.display()
    );
    root
}

/// A running process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The script, in a directory anyone can read (for the unprivileged test).
fn two_lua() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("two.lua");
    std::fs::write(&script, TWO_LUA).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, script)
}

/// `nflame record [args] -o OUT -- luajit two.lua SECS` with `nflame` as
/// given; the folded profile and the summary.
fn record_luajit(
    mut nflame: Command,
    args: &[&str],
    jit: bool,
) -> (BTreeMap<String, u64>, String, PathBuf) {
    let (dir, script) = two_lua();
    let out_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = out_dir.path().join("luajit.folded");
    let root = upstream_root();
    nflame
        .arg("record")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(root.join("usr/bin/luajit"));
    if !jit {
        nflame.arg("-joff");
    }
    nflame
        .arg(&script)
        .arg("3")
        .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"));
    let res = run(&mut nflame, Duration::from_secs(180));
    let summary = text(&res.stderr);
    eprintln!("{summary}");
    assert!(res.status.success(), "nflame record failed: {summary}");
    let p = folded(&out);
    eprintln!("{}", top(&p, 10));
    drop(dir);
    (p, summary, script)
}

fn assert_two_lua(p: &BTreeMap<String, u64>, script: &Path, jit: bool) {
    let s = script.display();
    let (pct, na, nb) = share(p, &format!("work_a@{s}:1_[l"), &format!("work_b@{s}:7_[l"));
    eprintln!("work_a {pct:.1}% ({na} vs {nb})");
    assert!(na + nb >= 300, "too few samples: {na} + {nb}");
    assert!(
        (61.7..=71.7).contains(&pct),
        "work_a share {pct:.1}%, expected 66.7 ± 5"
    );
    let leaf = if jit { "_[lj]" } else { "_[l]" };
    let want = "lua_cpcall;";
    let chain = format!("@{s}_[l];driver@{s}:13_[l];work_a@{s}:1{leaf}");
    assert!(
        p.keys().any(|k| k.contains(want) && k.contains(&chain)),
        "no stack with {chain}"
    );
}

#[test]
fn upstream_luajit_names_and_shares() {
    let _lock = heavy_lock();
    for jit in [true, false] {
        let (p, summary, script) = record_luajit(nflame(), &[], jit);
        assert_two_lua(&p, &script, jit);
        assert!(summary.contains("LuaJIT 2.1 in "), "{summary}");
        assert!(entry_share(&summary) >= 95.0, "{summary}");
    }
}

/// System-wide (`-a`) and by name (`--name`): a LuaJIT process found at its
/// first sample gets its Lua frames too.
#[test]
fn system_wide_and_by_name_find_luajit() {
    let _lock = heavy_lock();
    let (_dir, script) = two_lua();
    let root = upstream_root();
    let mut luajit = Running(
        Command::new(root.join("usr/bin/luajit"))
            .arg(&script)
            .arg("600")
            .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = [0u8; 6];
    luajit
        .0
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    let pid = luajit.0.id();
    let s = script.display();
    // -a copies no user stacks (frame pointers): a busy machine would fill
    // the rings otherwise; the Lua frames come from the Lua stack anyway.
    for args in [
        vec!["-a", "--call-graph", "fp", "--per-pid"],
        vec!["--name", "luajit", "--per-pid"],
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("sys.folded");
        let mut rec = Recorder::spawn(
            nflame()
                .arg("record")
                .args(&args)
                .args(["-d", "600", "-o"])
                .arg(&out),
        );
        rec.wait_ready(Duration::from_secs(60));
        wait_busy(&[pid], 2.0, Duration::from_secs(300));
        rec.signal(libc::SIGINT);
        let res = rec.finish(Duration::from_secs(180));
        let summary = text(&res.stderr);
        eprintln!("{summary}");
        assert!(res.status.success(), "{summary}");
        let p = folded(&out);
        let root = format!("luajit-{pid};");
        let named: u64 = p
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&root) && k.contains(&format!("driver@{s}:13_[l];work_"))
            })
            .map(|(_, n)| n)
            .sum();
        let all: u64 = p
            .iter()
            .filter(|(k, _)| k.starts_with(&root))
            .map(|(_, n)| n)
            .sum();
        // Nearly all of the script's time is in work_a and work_b.
        assert!(
            named >= 300 && named * 100 >= all * 80,
            "{args:?}: {named} of {all} luajit samples named\n{}",
            top(&p, 8)
        );
        assert!(summary.contains("(luajit): LuaJIT 2.1 in "), "{summary}");
    }
}

/// LuaJIT processes that exit during a recording by name are folded then
/// (a second after their exit, at the next hand-out) and dropped, with what
/// their Lua frames need: three short runs, each found at its first sample,
/// keep their Lua frames in place of the VM's, and each has its `lua` line
/// in the summary.
#[test]
fn luajit_processes_that_exit_keep_their_lua_frames() {
    let _lock = heavy_lock();
    let (_dir, script) = two_lua();
    let root = upstream_root();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("runs.folded");
    let mut rec = Recorder::spawn(
        nflame()
            .args(["record", "--name", "luajit", "--per-pid", "-d", "600", "-o"])
            .arg(&out),
    );
    rec.wait_ready(Duration::from_secs(60));
    let mut pids = Vec::new();
    for _ in 0..3 {
        let run = Command::new(root.join("usr/bin/luajit"))
            .arg(&script)
            .arg("0.6")
            .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        pids.push(run.id());
        let done = common::finish(run, Duration::from_secs(120), "luajit");
        assert!(done.status.success(), "{}", text(&done.stderr));
    }
    // Long enough after the last exit for it to be handed out (a second to
    // settle, two between hand-outs).
    let now = rec.wait_status(Duration::from_secs(60), |_| true).elapsed;
    rec.wait_status(Duration::from_secs(120), |s| s.elapsed >= now + 4.0);
    rec.signal(libc::SIGINT);
    let res = rec.finish(Duration::from_secs(180));
    let summary = text(&res.stderr);
    eprintln!("{summary}");
    assert!(res.status.success(), "{summary}");
    let p = folded(&out);
    let s = script.display();
    for pid in pids {
        let root = format!("luajit-{pid};");
        let of = |keep: &dyn Fn(&str) -> bool| -> u64 {
            p.iter()
                .filter(|(k, _)| k.starts_with(&root) && keep(k))
                .map(|(_, n)| n)
                .sum()
        };
        let named = of(&|k| k.contains(&format!("driver@{s}:13_[l];work_")));
        let all = of(&|_| true);
        // Most: a process found at its first sample has no Lua stack until
        // the probe follows it (the first drain, up to 100 ms of a 0.6 s
        // run: `[lua: no stack]`); without its VM in the part, none would.
        assert!(
            named >= 100 && named * 100 >= all * 60,
            "run {pid}: {named} of {all} samples named\n{}",
            top(&p, 8)
        );
        assert!(
            summary.contains(&format!("pid {pid} (luajit): LuaJIT 2.1 in ")),
            "{summary}"
        );
    }
}

/// `--lua off`: C-level stacks, no Lua lines. `--lua-only`: Lua-land stacks
/// only. `--lua-lines`: functions split by line.
#[test]
fn lua_off_only_and_lines() {
    let _lock = heavy_lock();
    let (p, summary, _) = record_luajit(nflame(), &["--lua", "off"], true);
    assert!(
        p.keys().all(|s| !s.contains("_[l")),
        "Lua frames with --lua off"
    );
    assert!(p.keys().any(|s| s.contains(";lua_pcall;")), "C stacks");
    assert!(!summary.contains("  lua "), "{summary}");

    let (p, _, script) = record_luajit(nflame(), &["--lua-only"], true);
    let s = script.display();
    assert!(
        p.keys()
            .all(|k| k.starts_with("luajit;") && !k.contains("_[k]") && k.contains("_[l")),
        "not Lua-land only:\n{}",
        top(&p, 10)
    );
    assert!(p.keys().all(|k| !k.contains("lua_pcall")));
    let (pct, ..) = share(&p, &format!("work_a@{s}:1_[l"), &format!("work_b@{s}:7_[l"));
    assert!((61.7..=71.7).contains(&pct), "work_a share {pct:.1}%");

    let (p, _, script) = record_luajit(nflame(), &["--lua-lines"], false);
    let s = script.display();
    // work_a's loop is its line 3.
    let line = format!("work_a@{s}:1 line 3_[l]");
    assert!(
        p.keys().any(|k| k.split(';').any(|f| f == line)),
        "no {line}:\n{}",
        top(&p, 10)
    );

    let out = run(
        nflame().args(["record", "--lua", "off", "--lua-only", "-a", "-d", "1"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--lua off"),
        "{}",
        text(&out.stderr)
    );
}

/// A LuaJIT-like library nflame cannot read: one summary line says why,
/// the C stacks are recorded, the exit status is 0.
#[test]
fn unreadable_luajit_build_keeps_c_stacks() {
    let _lock = heavy_lock();
    let dir = tempfile::tempdir().unwrap();
    let lib_src = dir.path().join("fake.c");
    // The functions the layout is read from, with unrelated code.
    std::fs::write(
        &lib_src,
        "int lua_pcall(void *L, int a, int b, int c) {\n\
         volatile long s = 0; for (long i = 0; i < 1000000L * (a + 1); i++) s += i ^ b;\n\
         return (int)s + c; }\n\
         void lua_close(void *L) { (void)L; }\n\
         int lua_checkstack(void *L, int n) { return n > 0; }\n\
         void *lua_tocfunction(void *L, int i) { return (char *)L + i; }\n",
    )
    .unwrap();
    let lib = dir.path().join("libluajit-5.1.so.2");
    let main_src = dir.path().join("main.c");
    std::fs::write(
        &main_src,
        "#include <time.h>\n\
         int lua_pcall(void *L, int a, int b, int c);\n\
         int main(void) { time_t t0 = time(0); int r = 0;\n\
         while (time(0) - t0 < 3) r += lua_pcall(0, 1, 2, 3);\n\
         return r == 42; }\n",
    )
    .unwrap();
    let bin = dir.path().join("fakejit");
    for args in [
        vec![
            "-shared",
            "-fPIC",
            "-O1",
            "-o",
            lib.to_str().unwrap(),
            lib_src.to_str().unwrap(),
        ],
        vec![
            "-O1",
            "-o",
            bin.to_str().unwrap(),
            main_src.to_str().unwrap(),
            lib.to_str().unwrap(),
            &format!("-Wl,-rpath,{}", dir.path().display()),
        ],
    ] {
        let out = Command::new("gcc").args(&args).output().expect("gcc runs");
        assert!(out.status.success(), "gcc: {}", text(&out.stderr));
    }
    let folded_path = dir.path().join("fake.folded");
    let res = run(
        nflame()
            .args(["record", "-o"])
            .arg(&folded_path)
            .arg("--")
            .arg(&bin),
        Duration::from_secs(120),
    );
    let summary = text(&res.stderr);
    eprintln!("{summary}");
    assert!(res.status.success(), "{summary}");
    let off: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("Lua frames off"))
        .collect();
    assert_eq!(off.len(), 1, "{summary}");
    assert!(
        off[0].contains("(fakejit)")
            && off[0].contains(
                "cannot read the VM entry (lj_vm_pcall) from the machine code of lua_pcall"
            ),
        "{}",
        off[0]
    );
    let p = folded(&folded_path);
    assert!(p.keys().all(|s| !s.contains("_[l")), "no Lua frames");
    let in_pcall: u64 = p
        .iter()
        .filter(|(s, _)| s.contains("main;lua_pcall"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        in_pcall * 2 > p.values().sum::<u64>(),
        "C stacks:\n{}",
        top(&p, 5)
    );
}

/// Without BPF (an unprivileged user): one note says Lua frames are off and
/// why, the recording goes on with C-level stacks, exit status 0.
#[test]
fn without_bpf_lua_frames_are_off_and_recording_goes_on() {
    let _lock = heavy_lock();
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap();
    assert!(
        paranoid.trim().parse::<i32>().unwrap() <= 2,
        "perf_event_paranoid {paranoid} refuses even one's own processes"
    );
    // A copy of nflame that `nobody` can run.
    let bin_dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lua-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.join("nflame");
    std::fs::copy(env!("CARGO_BIN_EXE_nflame"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&bin)
        .env("HOME", "/")
        .current_dir("/")
        .stdin(Stdio::null());
    let (p, summary, _) = record_luajit(c, &[], true);
    let note: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("Lua frames off"))
        .collect();
    assert_eq!(note.len(), 1, "{summary}");
    assert!(note[0].contains("BPF is not permitted"), "{}", note[0]);
    assert!(note[0].contains("(luajit)"), "{}", note[0]);
    assert!(p.keys().all(|s| !s.contains("_[l")));
    assert!(p.values().sum::<u64>() > 300, "{summary}");
    assert!(p.keys().any(|s| s.contains("lua_pcall")), "C stacks");
}
