//! Profiling hostile targets as root (issue 17): nflame leaks nothing of the
//! host, hangs on nothing and crashes on nothing a target controls.
//!
//! Each test plays one attack with a target of its own: a static program
//! (`common/hostile/hostile.c`) in a fake container (mount and pid
//! namespaces, a chroot on a tmpfs), a process of user `nobody`, or an ELF
//! file that lies about itself. nflame runs as root, with its address space
//! limited to 1 GiB, and each test asserts:
//!
//! - no host content in any output (folded, SVG, what nflame prints);
//! - completion within a deadline (nflame is killed and the test fails past
//!   it), exit status 0 where a recording is expected;
//! - bounded memory: no abort, peak RSS (from `wait4`) under 256 MiB;
//! - a summary line `skipped …` naming what was refused, where something is.
//!
//! | attack | test |
//! |---|---|
//! | container perf map: absolute symlink to a root-only host file | `perf_map_absolute_symlink_out_of_the_container` |
//! | the same with a relative `../..` symlink | `perf_map_relative_symlink_out_of_the_container` |
//! | symlink to a root-only file nothing parses (like /etc/shadow): not even opened | `perf_map_symlink_to_a_root_only_file_is_not_opened` |
//! | container perf map is a FIFO | `perf_map_fifo_in_a_container` |
//! | host /tmp/perf-PID.map: a FIFO planted by nobody for a root process | `host_perf_map_fifo_planted_by_nobody` |
//! | host /tmp/perf-PID.map: a file planted by nobody for a root process | `host_perf_map_planted_by_nobody_is_not_used` |
//! | host /tmp/perf-PID.map: nobody's symlink to a root-only file | `host_perf_map_symlink_planted_by_nobody` |
//! | perf map links to /dev/zero | `perf_map_links_to_dev_zero` |
//! | perf map is an 8 GiB sparse file | `perf_map_8_gib_sparse` |
//! | perf map links to /dev/tty (nflame run from a terminal) | `perf_map_links_to_dev_tty` |
//! | 40 MiB perf map with one entry `0 ffffffffffffffff` | `perf_map_entry_covering_everything` |
//! | compressed `.debug_info` claiming 128 TiB | `compressed_debug_info_claiming_128_tib` |
//! | zlib bomb in `.debug_info` | `zlib_bomb_in_debug_info` |
//! | sparse ELF: 256 MiB `.eh_frame` and `.gopclntab` | `sparse_elf_with_huge_sections` |
//! | (not in the issue) sparse ELF whose `.symtab` claims 512 MiB | `sparse_elf_with_a_huge_symtab` |
//! | map /app/lib.elf, run, unmap, replace with a symlink to a host-only ELF | `mapped_file_replaced_by_a_symlink_to_a_host_file` |
//! | `.gnu_debuglink` resolving to a FIFO (absolute, from a container) | `debuglink_to_a_host_fifo_from_a_container` |
//! | `.gnu_debuglink` resolving to a FIFO beside nobody's binary | `debuglink_to_a_fifo_beside_the_binary` |
//! | process named `a<ESC>[31m<b>x</b>` | `process_name_with_escape_and_markup` |
//! | process named `" zzz"` beside `aaa` | `process_name_with_leading_blank` |
//! | `-o userdir/out.svg`, temp file swapped for a symlink to a root file | `output_temp_file_swapped_for_a_symlink` |
//! | nobody's `dockerd` whose `config.v2.json` is a FIFO | `fake_dockerd_with_a_fifo_config` |
//!
//! The address-space limit keeps an unbounded read from taking the machine
//! down; it also makes one of today's failures graceful: reading the 8 GiB
//! perf map whole fails at once (its buffer cannot be reserved), where
//! without a limit it reads 8 GiB. That test also asserts that nflame does
//! not read the file at all (an inotify watch).
//!
//! Planted FIFOs are released when a test ends (opened for reading and
//! writing, then removed), so that no process stays blocked on them.
//! Still, while these tests run, any other system-wide recording on the
//! machine by an nflame without the fixes meets the same attacks.
//!
//! Needs root, gcc with a static libc, binutils (strip, objcopy), util-linux
//! (unshare, setpriv), a user `nobody`. Recordings run one at a time; the
//! namespaces make this a heavy test: run it under
//! `flock /tmp/nflame-heavy.lock`.

mod common;
#[path = "common/hostile/mod.rs"]
mod kit;

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serial;
use kit::{
    as_nobody, assert_skipped, bins, chmod, chown_nobody, mknod_char, parse_svg, root_only_dir,
    root_only_file, signal, spawn, token, wait_attached, Container, Fifo, Finished, OpenWatch,
    Outputs, Proc, Pty, RemoveOnDrop, Stage, DEADLINE, JIT_ADDR,
};

/// Records `pid` for 2 seconds into fresh outputs.
fn record(pid: u32) -> (Finished, Outputs) {
    let out = Outputs::new();
    let run = kit::run(&["record", "--pid", &pid.to_string(), "-d", "2"], &out);
    (run, out)
}

/// A fake container running JIT code, its perf map being `/tmp/perf-1.map`
/// (it is its namespace's pid 1).
fn jit_container() -> Container {
    Container::start(&Stage::new(), &["/app/hostile", "jit", "0"])
}

const CONTAINER_PERF_MAP: &str = "/tmp/perf-1.map";

/// A root-only host file holding a perf map that names the container's JIT
/// code with a secret; returns (directory guard, file, secret).
fn host_secret_perf_map() -> (tempfile::TempDir, PathBuf, String) {
    let dir = root_only_dir();
    let secret = token("HOSTSECRET");
    let file = dir.path().join("secret.map");
    root_only_file(&file, &format!("{JIT_ADDR:x} 1000 {secret}\n"));
    (dir, file, secret)
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn perf_map_absolute_symlink_out_of_the_container() {
    let _s = serial();
    let (_dir, host_file, secret) = host_secret_perf_map();
    let c = jit_container();
    symlink(&host_file, c.root().join("tmp/perf-1.map")).unwrap();
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, &secret);
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn perf_map_relative_symlink_out_of_the_container() {
    let _s = serial();
    let (_dir, host_file, secret) = host_secret_perf_map();
    let c = jit_container();
    let up = "../".repeat(24);
    let rel = format!(
        "{up}{}",
        host_file.display().to_string().trim_start_matches('/')
    );
    symlink(&rel, c.root().join("tmp/perf-1.map")).unwrap();
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, &secret);
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn perf_map_symlink_to_a_root_only_file_is_not_opened() {
    let _s = serial();
    // A stand-in for /etc/shadow that nothing else on the machine opens.
    let dir = root_only_dir();
    let shadow = dir.path().join("shadow");
    let secret = token("HOSTSECRET");
    root_only_file(&shadow, &format!("root:$6${secret}:19700:0:99999:7:::\n"));
    let watch = OpenWatch::new(&shadow);
    let c = jit_container();
    symlink(&shadow, c.root().join("tmp/perf-1.map")).unwrap();
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, &secret);
    assert!(
        !watch.touched(),
        "nflame opened the host's root-only file {} for the container",
        shadow.display()
    );
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn perf_map_fifo_in_a_container() {
    let _s = serial();
    let c = jit_container();
    let _fifo = Fifo::make(&c.root().join("tmp/perf-1.map"));
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

/// A root process running JIT code on the host, and the path of its perf
/// map in the host's /tmp (removed on drop).
fn root_jit_process() -> (Proc, PathBuf, RemoveOnDrop) {
    let p = Proc::start(&bins().plain, &["jit", "0"], false);
    let map = PathBuf::from(format!("/tmp/perf-{}.map", p.pid()));
    let guard = RemoveOnDrop(map.clone());
    (p, map, guard)
}

#[test]
fn host_perf_map_fifo_planted_by_nobody() {
    let _s = serial();
    let (p, map, _rm) = root_jit_process();
    run_ok(as_nobody("mkfifo").arg(&map));
    let _fifo = Fifo::adopt(&map);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &[&map.display().to_string()]);
}

#[test]
fn host_perf_map_planted_by_nobody_is_not_used() {
    let _s = serial();
    let (p, map, _rm) = root_jit_process();
    let planted = token("PLANTED");
    run_ok(
        as_nobody("sh")
            .args(["-c", r#"printf '%s\n' "$1" > "$2""#, "sh"])
            .arg(format!("{JIT_ADDR:x} 1000 {planted}"))
            .arg(&map),
    );
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, &planted);
    assert_skipped(&run.stderr, &[&map.display().to_string()]);
}

#[test]
fn host_perf_map_symlink_planted_by_nobody() {
    let _s = serial();
    let (_dir, host_file, secret) = host_secret_perf_map();
    let (p, map, _rm) = root_jit_process();
    run_ok(as_nobody("ln").arg("-s").arg(&host_file).arg(&map));
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, &secret);
    assert_skipped(&run.stderr, &[&map.display().to_string()]);
}

/// A container whose `/dev/NAME` is the device `major:minor` (as a
/// container's root may make it) and whose perf map links to it.
fn perf_map_to_device(name: &str, major: u32, minor: u32) -> Container {
    let c = jit_container();
    std::fs::create_dir_all(c.root().join("dev")).unwrap();
    mknod_char(&c.root().join("dev").join(name), major, minor);
    symlink(format!("/dev/{name}"), c.root().join("tmp/perf-1.map")).unwrap();
    c
}

#[test]
fn perf_map_links_to_dev_zero() {
    let _s = serial();
    let c = perf_map_to_device("zero", 1, 5);
    let reads = OpenWatch::reads(&c.root().join("dev/zero"));
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    assert!(!reads.touched(), "nflame read the container's /dev/zero");
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn perf_map_8_gib_sparse() {
    let _s = serial();
    let c = jit_container();
    let f = std::fs::File::create(c.root().join("tmp/perf-1.map")).unwrap();
    f.set_len(8 << 30).unwrap();
    drop(f);
    // Under the address-space limit, reading the whole file fails at once
    // (the buffer for its size cannot be reserved); nflame must not read
    // such a file at all.
    let reads = OpenWatch::reads(&c.root().join("tmp/perf-1.map"));
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    assert!(!reads.touched(), "nflame read an 8 GiB perf map");
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn perf_map_links_to_dev_tty() {
    let _s = serial();
    let c = perf_map_to_device("tty", 5, 0);
    let pty = Pty::open();
    let out = Outputs::new();
    let mut cmd = kit::nflame();
    cmd.args(["record", "--pid", &c.pid.to_string(), "-d", "2"])
        .args(out.args());
    let run = spawn(cmd, Some(&pty)).wait(DEADLINE);
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn perf_map_entry_covering_everything() {
    let _s = serial();
    let c = jit_container();
    let huge = token("COVERSALL");
    let mut text = String::with_capacity(41 << 20);
    let mut i: u64 = 0;
    while text.len() < 40 << 20 {
        text.push_str(&format!("{:x} 10 filler_{i}\n", 0x1000 + i * 0x10));
        i += 1;
    }
    text.push_str(&format!("{JIT_ADDR:x} 1000 jit_loop_fn\n"));
    // Last, so that it would win every lookup.
    text.push_str(&format!("0 ffffffffffffffff {huge}\n"));
    std::fs::write(c.root().join("tmp/perf-1.map"), text).unwrap();
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, &huge);
    assert!(
        out.folded().contains("jit_loop_fn"),
        "the JIT code was not named from the perf map:\n{}",
        run.stderr
    );
    assert_skipped(&run.stderr, &[CONTAINER_PERF_MAP]);
}

#[test]
fn compressed_debug_info_claiming_128_tib() {
    let _s = serial();
    let p = Proc::start(&bins().dwarf_claim, &["spin", "0"], true);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &["hostile-dwarf-claim", ".debug_info"]);
}

#[test]
fn zlib_bomb_in_debug_info() {
    let _s = serial();
    let p = Proc::start(&bins().dwarf_bomb, &["spin", "0"], true);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &["hostile-dwarf-bomb", ".debug_info"]);
}

#[test]
fn sparse_elf_with_huge_sections() {
    let _s = serial();
    let p = Proc::start(&bins().sparse, &["spin", "0"], true);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &["hostile-sparse", ".eh_frame"]);
    assert_skipped(&run.stderr, &["hostile-sparse", ".gopclntab"]);
}

#[test]
fn sparse_elf_with_a_huge_symtab() {
    let _s = serial();
    let p = Proc::start(&bins().sparse_symtab, &["spin", "0"], true);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &["hostile-sparse-symtab", ".symtab"]);
}

#[test]
fn mapped_file_replaced_by_a_symlink_to_a_host_file() {
    let _s = serial();
    let b = bins();
    let dir = root_only_dir();
    let host_lib = dir.path().join("lib.elf");
    std::fs::copy(&b.lib_host, &host_lib).unwrap();
    let stage = Stage::new();
    stage.copy(&b.lib_guest, "app/lib.elf");
    let offset = format!("{:#x}", b.lib_offset);
    let host = host_lib.display().to_string();
    let c = Container::start(
        &stage,
        &[
            "/app/hostile",
            "-w",
            "maprun",
            "/app/lib.elf",
            &offset,
            "1.5",
            &host,
        ],
    );
    let out = Outputs::new();
    let mut cmd = kit::nflame();
    cmd.args(["record", "--pid", &c.pid.to_string()])
        .args(out.args());
    let running = spawn(cmd, None);
    wait_attached(running.pid());
    // Run the library's code, unmap it, replace it by the link; then stop.
    signal(c.pid, libc::SIGUSR1);
    c.expect("swapped", Duration::from_secs(30));
    signal(running.pid(), libc::SIGINT);
    let run = running.wait(DEADLINE);
    run.assert_ok();
    out.assert_complete();
    out.assert_absent(&run, "hostx_only_symbol");
    assert_skipped(&run.stderr, &["/app/lib.elf"]);
}

#[test]
fn debuglink_to_a_host_fifo_from_a_container() {
    let _s = serial();
    let dir = root_only_dir();
    let fifo = Fifo::make(&dir.path().join("debug.fifo"));
    let bin = dir.path().join("hostile-debuglink");
    kit::with_debuglink(&bin, &fifo.0.display().to_string());
    let stage = Stage::new();
    stage.copy(&bin, "app/hostile");
    let c = Container::start(&stage, &["/app/hostile", "spin", "0"]);
    let (run, out) = record(c.pid);
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &["/app/hostile", ".gnu_debuglink"]);
}

#[test]
fn debuglink_to_a_fifo_beside_the_binary() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    chown_nobody(dir.path());
    let bin = dir.path().join("prog");
    kit::with_debuglink(&bin, "prog.debug");
    run_ok(as_nobody("mkfifo").arg(dir.path().join("prog.debug")));
    let _fifo = Fifo::adopt(&dir.path().join("prog.debug"));
    let p = Proc::start(&bin, &["spin", "0"], true);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    assert_skipped(&run.stderr, &["prog.debug"]);
}

/// Whether `text` holds a control character other than line breaks and tabs.
fn control_char(text: &str) -> Option<(usize, char)> {
    text.char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

#[test]
fn process_name_with_escape_and_markup() {
    let _s = serial();
    let name = "a\x1b[31m<b>x</b>";
    let p = Proc::start(&bins().plain, &["-c", name, "spin", "0"], true);
    let (run, out) = record(p.pid());
    run.assert_ok();
    out.assert_complete();
    let svg = out.svg();
    let doc = parse_svg(&svg);
    assert!(
        !doc.descendants().any(|n| n.has_tag_name("b")),
        "the process name's markup became an element"
    );
    for (what, text) in [
        ("the folded output", out.folded()),
        ("the SVG", svg.clone()),
        ("standard error", run.stderr.clone()),
    ] {
        if let Some((at, c)) = control_char(&text) {
            let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
            panic!(
                "{what} holds the control character {c:?}: {:?}",
                &text[from..(at + 40).min(text.len())]
            );
        }
    }
}

#[test]
fn process_name_with_leading_blank() {
    let _s = serial();
    let z = Proc::start(&bins().plain, &["-c", " zzz", "spin", "0"], true);
    let a = Proc::start(&bins().plain, &["-c", "aaa", "spin", "0"], true);
    let out = Outputs::new();
    let pids = format!("{},{}", z.pid(), a.pid());
    let run = kit::run(&["record", "--pid", &pids, "-d", "2"], &out);
    run.assert_ok();
    out.assert_complete();
    let svg = out.svg();
    let doc = parse_svg(&svg);
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for name in ["zzz", "aaa"] {
        assert!(
            titles.iter().any(|t| t.contains(name)),
            "no frame of {name} in the SVG: {titles:?}"
        );
    }
}

#[test]
fn output_temp_file_swapped_for_a_symlink() {
    let _s = serial();
    let secrets = root_only_dir();
    let root_file = secrets.path().join("root-only");
    root_only_file(&root_file, "root only\n");
    let userdir = tempfile::tempdir().unwrap();
    chmod(userdir.path(), 0o755);
    chown_nobody(userdir.path());
    let p = Proc::start(&bins().plain, &["spin", "0"], false);
    let mut cmd = kit::nflame();
    cmd.args(["record", "--pid", &p.pid().to_string(), "-o"])
        .arg(userdir.path().join("out.svg"));
    let running = spawn(cmd, None);
    // The temporary output appears before recording starts.
    let start = Instant::now();
    let temp = loop {
        let found = std::fs::read_dir(userdir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".out.svg.")
            });
        if let Some(t) = found {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no temporary output"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_attached(running.pid());
    // The directory's owner swaps it for a link to the root-only file.
    run_ok(as_nobody("ln").arg("-sfn").arg(&root_file).arg(&temp));
    signal(running.pid(), libc::SIGINT);
    let run = running.wait(DEADLINE);
    run.assert_survived();
    let meta = std::fs::metadata(&root_file).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o600,
        "nflame changed the mode of a root-only file through a symlink"
    );
    assert_eq!(meta.uid(), 0);
    assert_eq!(std::fs::read_to_string(&root_file).unwrap(), "root only\n");
}

#[test]
fn fake_dockerd_with_a_fifo_config() {
    let _s = serial();
    let base = tempfile::tempdir().unwrap();
    chmod(base.path(), 0o755);
    let id = "4f3c1a9e0b7d6c5e".repeat(4);
    let container = base.path().join("docker/containers").join(&id);
    std::fs::create_dir_all(&container).unwrap();
    for d in [
        base.path().join("docker"),
        base.path().join("docker/containers"),
        container.clone(),
    ] {
        chown_nobody(&d);
    }
    run_ok(as_nobody("mkfifo").arg(container.join("config.v2.json")));
    let _fifo = Fifo::adopt(&container.join("config.v2.json"));
    let data_root = format!("--data-root={}", base.path().join("docker").display());
    let fake = Proc::start(
        &bins().plain,
        &["-c", "dockerd", "spin", "0", &data_root],
        true,
    );
    let folded = base.path().join("out.folded");
    let mut cmd = kit::nflame();
    cmd.args(["record", "--container", "web", "-d", "1", "-o"])
        .arg(&folded)
        .env("DOCKER_HOST", "unix:///nonexistent/nflame-hostile.sock");
    let run = spawn(cmd, None).wait(DEADLINE);
    run.assert_survived();
    assert_skipped(&run.stderr, &["dockerd", &fake.pid().to_string()]);
}
