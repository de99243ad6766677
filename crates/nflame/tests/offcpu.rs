//! Off-CPU recordings of a real event loop: nginx with
//! libnginx-mod-http-lua (OpenResty's Lua module) under wrk on loopback,
//! recorded with `nflame record --off-cpu` (and `--wall`), and the verdict
//! `nflame report` gives: a handler that blocks the worker in a child
//! process (`os.execute("sleep 0.05")`) is `blocking`, naming the Lua call
//! (`os.execute`, from the Lua frames read at the switch) and the system call
//! it waits in; a handler that yields (`ngx.sleep(0.05)`) and an idle worker
//! are not.
//!
//! Needs root (perf events), nginx, the Lua module and wrk
//! (`scripts/install-deps.sh`); `NFLAME_SKIP=nginx` or `wrk` leaves it out.
//! nginx listens on a free port, but the tests take the machine-wide lock
//! `/tmp/nflame-heavy.lock` (as the lab's do; set `NFLAME_HEAVY_LOCKED=1`
//! when the caller holds it already), so that other worktrees' servers and
//! loads do not share the two CPUs with them. Readiness is waited for
//! (nginx answering, the load reaching the worker, nflame's first status
//! line), never slept for; the assertions are on shares of the worker's
//! time, which hold on a busy machine.

mod common;

/// Off-CPU stacks of a LuaJIT process carry its Lua frames, read when the
/// thread left the CPU: upstream `luajit` running a script that waits for
/// `os.execute("sleep 0.1")` (scripts/install-deps.sh unpacks it under
/// /opt/nflame-test/luajit-upstream, or `NFLAME_UPSTREAM_LUAJIT`).
#[test]
fn off_cpu_stacks_carry_lua_frames() {
    use std::process::{Command, Stdio};
    let _s = common::serial();
    let root = std::env::var_os("NFLAME_UPSTREAM_LUAJIT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/nflame-test/luajit-upstream".into());
    let luajit = root.join("usr/bin/luajit");
    assert!(
        luajit.exists(),
        "{} is missing: run scripts/install-deps.sh",
        luajit.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("blocks.lua");
    std::fs::write(
        &script,
        "local function napper()\n  for i = 1, 10 do os.execute(\"sleep 0.1\") end\nend\n\
         local function driver() napper() end\ndriver()\n",
    )
    .unwrap();
    let out = dir.path().join("lua.folded");
    let o = Command::new(env!("CARGO_BIN_EXE_nflame"))
        .args(["record", "--off-cpu", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&luajit)
        .arg(&script)
        .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = common::text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let folded = std::fs::read_to_string(&out).unwrap();
    let chunk = script.display().to_string();
    // The wait for the child, under the Lua function that called os.execute.
    let (mut with_lua, mut all) = (0u64, 0u64);
    for line in folded
        .lines()
        .filter(|l| l.starts_with("luajit;[blocked];"))
    {
        let (stack, n) = line.rsplit_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        if stack.contains("wait4") {
            all += n;
            if stack.contains(&format!("napper@{chunk}:1_[l];os.execute_[l];")) {
                with_lua += n;
            }
        }
    }
    assert!(all > 0, "no wait for the child in {folded}");
    // The process is found to run LuaJIT at its first sample: the waits
    // before that have no Lua stack (`[lua: no stack]`).
    assert!(
        with_lua * 3 >= all * 2,
        "{with_lua} of {all} µs waiting for the child under napper → os.execute:\n{folded}"
    );
}

mod needs_nginx_wrk {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::common::{heavy_lock, serial, text, wait_busy, wait_until, Recorder};

    /// An nginx of the test's own; stopped (SIGTERM, then waited for) on drop.
    struct Nginx {
        port: u16,
        master: u32,
        worker: u32,
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

    /// A load of its own; killed on drop.
    struct Load(Child);

    impl Drop for Load {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn modules() -> PathBuf {
        ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| d.join("ngx_http_lua_module.so").exists())
            .expect(
                "ngx_http_lua_module.so is missing: install libnginx-mod-http-lua \
                 (scripts/install-deps.sh), or leave this test out with NFLAME_SKIP=nginx",
            )
    }

    /// Starts nginx (one worker) with three locations: `/execute` blocks the
    /// worker in a child process, `/yield` sleeps the Lua way, `/` answers.
    fn start_nginx(dir: &Path) -> Nginx {
        let m = modules();
        let ndk = if m.join("ndk_http_module.so").exists() {
            format!("load_module {}/ndk_http_module.so;", m.display())
        } else {
            String::new()
        };
        let port = free_port();
        let d = dir.display();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let conf = format!(
            r#"{ndk}
load_module {m}/ngx_http_lua_module.so;
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
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ content_by_lua_block {{ ngx.say("ok") }} }}
        location /execute {{
            content_by_lua_block {{
                os.execute("sleep 0.05")
                ngx.say("slept")
            }}
        }}
        location /yield {{
            content_by_lua_block {{
                ngx.sleep(0.05)
                ngx.say("slept")
            }}
        }}
    }}
}}
"#,
            m = m.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let out = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdin(Stdio::null())
            .output()
            .expect("nginx runs (install it: scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "nginx failed: {}{}",
            text(&out.stderr),
            std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
        );
        let master: u32 = std::fs::read_to_string(dir.join("nginx.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut n = Nginx {
            port,
            master,
            worker: 0,
        };
        // Ready when a request is answered.
        wait_until(Duration::from_secs(20), || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            r.starts_with("HTTP/1.1 200")
        });
        let children =
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap();
        n.worker = children
            .split_whitespace()
            .next()
            .expect("an nginx worker")
            .parse()
            .unwrap();
        n
    }

    fn wrk(port: u16, path: &str) -> Load {
        Load(
            Command::new("wrk")
                .args(["-t1", "-c4", "-d60s"])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .stdout(Stdio::null())
                .stdin(Stdio::null())
                .spawn()
                .expect("wrk runs (install it: scripts/install-deps.sh)"),
        )
    }

    fn nflame() -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nflame"));
        c.stdin(Stdio::null());
        c
    }

    /// Records `pid` with `mode` (`--off-cpu`, `--wall`) for `secs` seconds
    /// from when sampling started; returns the folded profile's path and
    /// the summary.
    fn record(dir: &Path, name: &str, mode: &str, pid: u32, secs: &str) -> (PathBuf, String) {
        let out = dir.join(format!("{name}.folded"));
        let mut r = Recorder::spawn(
            nflame()
                .args(["record", mode, "--pid", &pid.to_string(), "-d", secs, "-o"])
                .arg(&out)
                .stdout(Stdio::null()),
        );
        r.wait_ready(Duration::from_secs(60));
        let o = r.finish(Duration::from_secs(120));
        let err = text(&o.stderr);
        assert!(o.status.success(), "{err}");
        (out, err)
    }

    fn report(path: &Path) -> serde_json::Value {
        let o = nflame()
            .args(["report", "--json"])
            .arg(path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn nginx_loop(r: &serde_json::Value) -> &serde_json::Value {
        r["event_loops"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["process"] == "nginx"))
            .unwrap_or_else(|| panic!("no nginx event loop in {r:#}"))
    }

    /// `os.execute("sleep 0.05")` in a handler: the worker waits for its
    /// child in wait4 (not in epoll_wait) most of the time: `blocking`,
    /// naming that system call, with the summary's event-loop split.
    #[test]
    fn a_worker_waiting_for_a_child_process_is_blocking() {
        let _lock = heavy_lock();
        let _s = serial();
        let dir = tempfile::tempdir().unwrap();
        let nginx = start_nginx(dir.path());
        let _load = wrk(nginx.port, "/execute");
        // The load reached the worker: it started a child.
        let worker = nginx.worker;
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(format!("/proc/{worker}/task/{worker}/children"))
                .is_ok_and(|c| !c.trim().is_empty())
        });
        let (off, summary) = record(dir.path(), "execute", "--off-cpu", worker, "3");
        assert!(
            summary.contains("event loop nginx: blocked outside its event wait"),
            "{summary}"
        );
        let folded = std::fs::read_to_string(&off).unwrap();
        assert!(folded.starts_with("# unit: microseconds\n"));
        let r = report(&off);
        assert_eq!(r["unit"], "microseconds");
        assert_eq!(r["verdict"]["kind"], "blocking", "{:#}", r["verdict"]);
        let summary = r["verdict"]["summary"].as_str().unwrap();
        assert!(summary.contains("the wait4 system call"), "{summary}");
        // The Lua frames read at the switch name the handler's call.
        assert!(summary.contains("os.execute"), "{summary}");
        let fix = r["verdict"]["fix"].as_str().unwrap();
        assert!(
            fix.contains("ngx.sleep") && fix.contains("cosockets"),
            "{fix}"
        );
        let e = nginx_loop(&r);
        assert!(e["blocking_share"].as_f64().unwrap() >= 0.5, "{e:#}");
        assert_eq!(e["paths"][0]["syscall"], "wait4", "{e:#}");

        // --wall: the worker's on-CPU time joins in; still blocking, and
        // the summary gives the thread's on- and off-CPU totals.
        let (wall, summary) = record(dir.path(), "execute-wall", "--wall", worker, "3");
        assert!(
            summary.contains(&format!(
                "  thread     nginx {worker} (pid {worker}): on-CPU"
            )),
            "{summary}"
        );
        let r = report(&wall);
        assert_eq!(r["verdict"]["kind"], "blocking", "{:#}", r["verdict"]);
        let e = nginx_loop(&r);
        assert!(e["on_cpu"].as_f64().unwrap() > 0.0, "{e:#}");
    }

    /// `ngx.sleep(0.05)` under the same load: the request yields and the
    /// worker goes back to epoll_wait; it never blocks. An idle worker waits
    /// in epoll_wait only. Neither is `blocking`.
    #[test]
    fn a_yielding_or_idle_worker_is_not_blocking() {
        let _lock = heavy_lock();
        let _s = serial();
        let dir = tempfile::tempdir().unwrap();
        let nginx = start_nginx(dir.path());
        let worker = nginx.worker;

        let (idle, _) = record(dir.path(), "idle", "--off-cpu", worker, "2");
        let r = report(&idle);
        assert_ne!(r["verdict"]["kind"], "blocking", "{:#}", r["verdict"]);
        let e = nginx_loop(&r);
        assert!(e["blocking_share"].as_f64().unwrap() < 0.10, "{e:#}");
        assert!(e["idle"].as_f64().unwrap() > 0.0, "{e:#}");

        let load = wrk(nginx.port, "/yield");
        // The load reached the worker.
        wait_busy(&[worker], 0.05, Duration::from_secs(30));
        let (yields, _) = record(dir.path(), "yield", "--off-cpu", worker, "3");
        drop(load);
        let r = report(&yields);
        assert_ne!(r["verdict"]["kind"], "blocking", "{:#}", r["verdict"]);
        let e = nginx_loop(&r);
        assert!(e["blocking_share"].as_f64().unwrap() < 0.10, "{e:#}");
        assert!(
            e["idle"].as_f64().unwrap() > 5.0 * e["blocking"].as_f64().unwrap(),
            "{e:#}"
        );
    }
}
