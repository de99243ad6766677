//! Symbolizes real programs built by the test (gcc, g++, rustc) and the
//! running kernel. Needs root (reads other processes' memory maps and
//! `/proc/kallsyms` addresses), like nflame itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use nflame_recording::{Mapping, ProcessInfo, RawSample, Recording};
use nflame_symbolizer::{
    fold, FoldOptions, FrameKind, KernelSymbolizer, ProcessSymbolizer, Weight,
};

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <unistd.h>

volatile unsigned long sink;

static inline __attribute__((always_inline)) void inl_helper(unsigned long i) {
    sink = sink * 31 + i;
}

__attribute__((noinline)) void leaf_a(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) sink += i;
}

__attribute__((noinline)) void leaf_b(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) inl_helper(i);
}

__attribute__((noinline)) void middle(unsigned long n) {
    leaf_a(n);
    leaf_b(n);
}

int main(void) {
    printf("%p %p %p %p\n", (void *)leaf_a, (void *)leaf_b, (void *)middle, (void *)main);
    fflush(stdout);
    for (;;) {
        middle(100000);
        usleep(1000);
    }
}
"#;

const CPP_PROGRAM: &str = r#"
#include <cstdio>
#include <unistd.h>

namespace nflame {
template <typename T> struct Spinner {
    __attribute__((noinline)) T spin(T n) const {
        volatile T acc = 0;
        for (T i = 0; i < n; i++) acc = acc + i;
        return acc;
    }
};
__attribute__((noinline)) int spin_cpp(int n) { return Spinner<int>().spin(n); }
}

int main() {
    std::printf("%p\n", (void *)&nflame::spin_cpp);
    std::fflush(stdout);
    for (;;) { nflame::spin_cpp(1000); usleep(1000); }
}
"#;

const RUST_PROGRAM: &str = r#"
mod inner {
    #[inline(never)]
    pub fn spin_rust(n: u64) -> u64 {
        let mut acc = 0u64;
        for i in 0..n { acc = std::hint::black_box(acc.wrapping_add(i)); }
        acc
    }
}
fn main() {
    println!("{:#x}", inner::spin_rust as *const () as usize);
    loop {
        std::hint::black_box(inner::spin_rust(1000));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
"#;

/// A running test program, killed on drop.
struct Program {
    child: Child,
    exe: PathBuf,
    /// The addresses it printed on its first line.
    addrs: Vec<u64>,
    _dir: tempfile::TempDir,
}

impl Program {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process and reaps it, so `/proc/PID` is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

fn build_and_run(compiler: &str, ext: &str, source: &str, flags: &[&str]) -> Program {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(format!("prog.{ext}"));
    let exe = dir.path().join("nflame_prog");
    std::fs::write(&src, source).unwrap();
    let status = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(status.success(), "{compiler} failed");
    let mut child = Command::new(&exe).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addrs = line
        .split_whitespace()
        .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
        .collect();
    Program {
        child,
        exe,
        addrs,
        _dir: dir,
    }
}

fn c_program() -> Program {
    build_and_run(
        "gcc",
        "c",
        C_PROGRAM,
        &["-O2", "-fno-omit-frame-pointer", "-g"],
    )
}

/// Size of the function `name` in `exe`, from `nm -S`.
fn function_size(exe: &Path, name: &str) -> u64 {
    let out = Command::new("nm").arg("-S").arg(exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[3] == name).then(|| u64::from_str_radix(f[1], 16).unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not in nm output"))
}

fn names(frames: &[Vec<nflame_symbolizer::Frame>]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.last().unwrap().name.clone())
        .collect()
}

#[test]
fn names_functions_of_a_live_process() {
    let prog = c_program();
    let [leaf_a, leaf_b, middle, _] = prog.addrs[..] else {
        panic!()
    };
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    let frames = sym.symbolize(&[leaf_a, leaf_b + 3, middle + 1, leaf_a]);
    assert_eq!(names(&frames), ["leaf_a", "leaf_b", "middle", "leaf_a"]);
    assert!(frames
        .iter()
        .flatten()
        .all(|f| f.named && f.kind == FrameKind::User));
    assert!(sym.failures().is_empty(), "{:?}", sym.failures());
}

#[test]
fn stacks_are_root_first_with_return_addresses_adjusted() {
    let prog = c_program();
    let [leaf_a, _, middle, _] = prog.addrs[..] else {
        panic!()
    };
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    // A return address right after the end of `middle`'s first byte range is
    // still looked up inside `middle` (addr - 1).
    let frames = sym.symbolize_stack(&[leaf_a + 2, middle + 1]);
    let names: Vec<&str> = frames.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["middle", "leaf_a"]);
}

#[test]
fn names_frames_after_the_process_exited() {
    let mut prog = c_program();
    let [leaf_a, leaf_b, middle, _] = prog.addrs[..] else {
        panic!()
    };
    let pid = prog.pid();
    let recorded = nflame_procfs::maps::read_maps(pid).unwrap();
    prog.kill();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    let mut sym = ProcessSymbolizer::new(pid, &recorded);
    let frames = sym.symbolize(&[leaf_a + 1, leaf_b + 1, middle + 1]);
    assert_eq!(names(&frames), ["leaf_a", "leaf_b", "middle"]);
}

#[test]
fn names_frames_of_a_deleted_binary_through_map_files() {
    let prog = c_program();
    let [leaf_a, ..] = prog.addrs[..] else {
        panic!()
    };
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    std::fs::remove_file(&prog.exe).unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    assert_eq!(names(&sym.symbolize(&[leaf_a + 1])), ["leaf_a"]);
}

#[test]
fn libc_frames_are_named() {
    let prog = c_program();
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let libc = maps
        .iter()
        .find(|m| m.path.to_string_lossy().contains("libc.so"))
        .expect("libc mapped");
    // Every address of libc's text gets some name (its symbol table is not stripped
    // of dynamic symbols); sample a few hundred.
    let addrs: Vec<u64> = (libc.start..libc.end).step_by(4099).take(300).collect();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    let frames = sym.symbolize(&addrs);
    let named = frames.iter().filter(|f| f[0].named).count();
    assert!(
        named * 2 > addrs.len(),
        "only {named} of {} libc addresses named",
        addrs.len()
    );
    assert!(frames
        .iter()
        .all(|f| f[0].named || f[0].name == "[libc.so.6]"));
}

#[test]
fn addresses_outside_executable_mappings_are_unknown() {
    let prog = c_program();
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let heap = std::fs::read_to_string(format!("/proc/{}/maps", prog.pid()))
        .unwrap()
        .lines()
        .find(|l| l.contains("rw-p"))
        .map(|l| u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    let frames = sym.symbolize(&[0x10, heap + 8]);
    assert_eq!(names(&frames), ["[unknown]", "[unknown]"]);
    assert!(frames.iter().flatten().all(|f| !f.named));
}

#[test]
fn unreadable_modules_become_module_frames() {
    let mappings = [Mapping {
        start: 0x10_0000,
        end: 0x20_0000,
        offset: 0x1000,
        path: PathBuf::from("/nonexistent/dir/libfoo.so"),
        ..Mapping::default()
    }];
    // pid 0 is never a user process: no live paths are tried.
    let mut sym = ProcessSymbolizer::new(0, &mappings);
    let frames = sym.symbolize(&[0x10_0100, 0x30_0000]);
    assert_eq!(names(&frames), ["[libfoo.so]", "[unknown]"]);
    assert_eq!(sym.failures().len(), 1);
    assert_eq!(
        sym.failures()[0].path,
        Path::new("/nonexistent/dir/libfoo.so")
    );
}

#[test]
fn a_bad_module_does_not_spoil_the_batch() {
    let prog = c_program();
    let [leaf_a, ..] = prog.addrs[..] else {
        panic!()
    };
    let mut maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    // A file that is not ELF, mapped where nothing else is.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    maps.push(Mapping {
        start: 0x1000,
        end: 0x2000,
        path: junk,
        ..Mapping::default()
    });
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    let frames = sym.symbolize(&[0x1800, leaf_a + 1]);
    assert_eq!(names(&frames), ["[libjunk.so]", "leaf_a"]);
    assert_eq!(sym.failures().len(), 1);
}

#[test]
fn inlined_functions_are_expanded_on_request() {
    let prog = c_program();
    let [_, leaf_b, _, _] = prog.addrs[..] else {
        panic!()
    };
    let size = function_size(&prog.exe, "leaf_b");
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let addrs: Vec<u64> = (leaf_b..leaf_b + size).collect();

    let mut plain = ProcessSymbolizer::new(prog.pid(), &maps);
    assert!(plain
        .symbolize(&addrs)
        .iter()
        .all(|f| f.len() == 1 && f[0].name == "leaf_b"));

    let mut opts = nflame_symbolizer::SymbolizeOptions::default();
    opts.inline = true;
    let cache = std::rc::Rc::new(nflame_symbolizer::SymbolCache::new(&opts));
    let mut inline = ProcessSymbolizer::with_cache(cache, prog.pid(), &maps, true);
    let frames = inline.symbolize(&addrs);
    let expanded = frames
        .iter()
        .find(|f| f.len() == 2)
        .expect("some address of leaf_b lies in the inlined inl_helper");
    assert_eq!(expanded[0].name, "leaf_b");
    assert_eq!(expanded[1].name, "inl_helper");
    assert!(expanded[1].inlined && !expanded[0].inlined);
}

#[test]
fn cpp_names_are_demangled() {
    let prog = build_and_run(
        "g++",
        "cpp",
        CPP_PROGRAM,
        &["-O2", "-fno-omit-frame-pointer", "-g"],
    );
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    let frames = sym.symbolize(&[prog.addrs[0] + 1]);
    assert_eq!(names(&frames), ["nflame::spin_cpp(int)"]);
}

#[test]
fn rust_names_are_demangled() {
    let prog = build_and_run(
        "rustc",
        "rs",
        RUST_PROGRAM,
        &[
            "-C",
            "opt-level=1",
            "-C",
            "force-frame-pointers=yes",
            "--crate-name",
            "nflame_prog",
        ],
    );
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    let frames = sym.symbolize(&[prog.addrs[0] + 1]);
    assert_eq!(names(&frames), ["nflame_prog::inner::spin_rust"]);
}

/// A kernel function and every name kallsyms gives its address (aliases).
fn kallsyms_function(wanted: &str) -> (u64, Vec<String>) {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let entries: Vec<(u64, &str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            Some((addr, f.next()?, f.next()?))
        })
        .collect();
    let addr = entries
        .iter()
        .find(|e| e.2 == wanted && (e.1 == "T" || e.1 == "t"))
        .map(|e| e.0)
        .unwrap_or_else(|| panic!("{wanted} not in /proc/kallsyms"));
    assert_ne!(
        addr, 0,
        "kallsyms addresses hidden: run as root with kptr_restrict=0"
    );
    let aliases = entries
        .iter()
        .filter(|e| e.0 == addr)
        .map(|e| e.2.to_owned())
        .collect();
    (addr, aliases)
}

#[test]
fn kernel_addresses_are_named() {
    let (addr, aliases) = kallsyms_function("vfs_read");
    let frames = KernelSymbolizer::new()
        .symbolize(&[addr + 4, 0x1234])
        .unwrap();
    assert!(
        aliases.contains(&frames[0].name),
        "{} not among {aliases:?}",
        frames[0].name
    );
    assert_eq!(frames[0].kind, FrameKind::Kernel);
    assert_eq!(frames[0].folded_name(), format!("{}_[k]", frames[0].name));
    assert_eq!(frames[1].name, "[unknown]");
    assert!(!frames[1].named);
}

fn recording_of(prog: &Program, samples: Vec<RawSample>, comm: &str) -> Recording {
    let pid = prog.pid();
    let mut threads = BTreeMap::new();
    threads.insert(pid, "worker".to_owned());
    let info = ProcessInfo {
        pid,
        comm: comm.to_owned(),
        exe: Some(prog.exe.clone()),
        mappings: nflame_procfs::maps::read_maps(pid).unwrap(),
        threads,
        exited: false,
        ..ProcessInfo::default()
    };
    Recording {
        samples,
        processes: BTreeMap::from([(pid, info)]),
        ..Recording::default()
    }
}

#[test]
fn fold_writes_process_user_then_kernel_frames() {
    let mut prog = c_program();
    let [leaf_a, leaf_b, middle, _] = prog.addrs[..] else {
        panic!()
    };
    let (vfs_read, aliases) = kallsyms_function("vfs_read");
    let pid = prog.pid();
    let user: Arc<[u64]> = Arc::from(vec![leaf_a + 2, middle + 1]);
    let kernel: Arc<[u64]> = Arc::from(vec![vfs_read + 4]);
    let sample = |user: &Arc<[u64]>, kernel: &Arc<[u64]>, period| RawSample {
        pid,
        tid: pid,
        period,
        user: Arc::clone(user),
        kernel: Arc::clone(kernel),
        ..RawSample::default()
    };
    let other_user: Arc<[u64]> = Arc::from(vec![leaf_b + 2, middle + 1, 0x10]);
    let samples = vec![
        sample(&user, &kernel, 10),
        sample(&user, &kernel, 10),
        sample(&other_user, &Arc::from(vec![]), 5),
        // Not interned: equal content, another allocation; must still merge.
        sample(&Arc::from(vec![leaf_a + 2, middle + 1]), &kernel, 10),
    ];
    let mut rec = recording_of(&prog, samples, "cprog");
    // Symbolize after the process exited, from the recorded mappings.
    prog.kill();
    rec.processes.get_mut(&pid).unwrap().exited = true;

    let (profile, stats) = fold(&rec, &FoldOptions::default()).unwrap();
    let kname = aliases
        .iter()
        .map(|a| format!("cprog;middle;leaf_a;{a}_[k]"))
        .find(|s| profile.get(s) > 0)
        .unwrap_or_else(|| panic!("{:?}", profile.sorted()));
    assert_eq!(profile.get(&kname), 3);
    // 0x10 lies outside every executable mapping: the stack is cut there
    // and marked once (issue 4), the garbage frame is not counted.
    assert_eq!(profile.get("cprog;[truncated];middle;leaf_b"), 1);
    assert_eq!(profile.total(), 4);
    assert_eq!(stats.samples, 4);
    assert_eq!(stats.truncated_stacks, 1);
    assert_eq!(stats.frames, 3 * 3 + 2);
    assert_eq!(stats.named_frames, 3 * 3 + 2);
    assert!(
        stats.failed_modules.is_empty(),
        "{:?}",
        stats.failed_modules
    );

    let mut opts = FoldOptions::default();
    opts.per_pid = true;
    opts.per_thread = true;
    opts.kernel = false;
    opts.weight = Weight::Period;
    let (profile, _) = fold(&rec, &opts).unwrap();
    let root = format!("cprog-{pid};worker-{pid}");
    assert_eq!(profile.get(&format!("{root};middle;leaf_a")), 30);
    assert_eq!(profile.get(&format!("{root};[truncated];middle;leaf_b")), 5);
    assert_eq!(profile.total(), 35);

    opts.user = false;
    opts.kernel = true;
    opts.per_thread = false;
    opts.process_name = false;
    opts.weight = Weight::Samples;
    let (profile, stats) = fold(&rec, &opts).unwrap();
    assert_eq!(profile.len(), 2, "{:?}", profile.sorted());
    assert_eq!(profile.get("[unknown]"), 1); // the sample without kernel frames
    assert_eq!(stats.user_frames, 0);
}

#[test]
fn junk_beyond_a_threads_first_frame_is_not_truncation() {
    let prog = c_program();
    let [_, leaf_b, middle, main] = prog.addrs[..] else {
        panic!()
    };
    let pid = prog.pid();
    let sample = |user: Vec<u64>| RawSample {
        pid,
        tid: pid,
        period: 1,
        user: Arc::from(user),
        kernel: Arc::from(vec![]),
        ..RawSample::default()
    };
    let rec = recording_of(
        &prog,
        vec![
            // A frame-pointer chain that reached main, then one junk address
            // (as Go's runtime.mstart leaves on cloned threads).
            sample(vec![leaf_b + 2, middle + 1, main + 1, 0x10]),
            // The same junk right after middle: cut short, and marked.
            sample(vec![leaf_b + 2, middle + 1, 0x10]),
        ],
        "cprog",
    );
    let (profile, stats) = fold(&rec, &FoldOptions::default()).unwrap();
    assert_eq!(
        profile.get("cprog;main;middle;leaf_b"),
        1,
        "{:?}",
        profile.sorted()
    );
    assert_eq!(profile.get("cprog;[truncated];middle;leaf_b"), 1);
    assert_eq!(stats.truncated_stacks, 1);
    assert_eq!(stats.complete_user_stacks, 1);
}

#[test]
fn fold_uses_live_maps_when_none_were_recorded() {
    let prog = c_program();
    let [leaf_a, _, middle, _] = prog.addrs[..] else {
        panic!()
    };
    let pid = prog.pid();
    let mut rec = recording_of(
        &prog,
        vec![RawSample {
            pid,
            tid: pid,
            user: Arc::from(vec![leaf_a + 2, middle + 1]),
            ..RawSample::default()
        }],
        "cprog",
    );
    rec.processes.get_mut(&pid).unwrap().mappings.clear();
    let (profile, stats) = fold(&rec, &FoldOptions::default()).unwrap();
    assert_eq!(
        profile.get("cprog;middle;leaf_a"),
        1,
        "{:?}",
        profile.sorted()
    );
    assert_eq!(stats.named_share(), 1.0);
}

#[test]
fn vdso_frames_are_named_even_after_exit() {
    let mut prog = c_program();
    let pid = prog.pid();
    let maps = nflame_procfs::maps::read_maps(pid).unwrap();
    let vdso = maps
        .iter()
        .find(|m| m.path == Path::new("[vdso]"))
        .expect("vdso mapped")
        .clone();
    let addrs: Vec<u64> = (vdso.start..vdso.end).step_by(64).collect();
    prog.kill();
    let mut sym = ProcessSymbolizer::new(pid, &maps);
    let frames = sym.symbolize(&addrs);
    let named: Vec<&str> = frames
        .iter()
        .filter(|f| f[0].named)
        .map(|f| f[0].name.as_str())
        .collect();
    assert!(
        named
            .iter()
            .any(|n| n.contains("clock_gettime") || n.contains("gettimeofday")),
        "{named:?}"
    );
    assert!(frames.iter().all(|f| f[0].named || f[0].name == "[vdso]"));
}

#[test]
fn jit_code_is_named_from_the_perf_map() {
    let prog = c_program();
    let pid = prog.pid();
    let maps = nflame_procfs::maps::read_maps(pid).unwrap();
    let map_path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    std::fs::write(&map_path, "7000000000 100 LuaJIT trace #3 app.lua:12\n").unwrap();
    let mut sym = ProcessSymbolizer::new(pid, &maps);
    let frames = sym.symbolize(&[0x70_0000_0010, 0x70_0000_0100]);
    std::fs::remove_file(&map_path).unwrap();
    assert_eq!(frames[0][0].kind, FrameKind::Jit);
    assert_eq!(frames[0][0].folded_name(), "LuaJIT trace #3 app.lua:12_[j]");
    assert_eq!(frames[1][0].name, "[unknown]");
}

mod needs_docker {
    use super::*;

    /// `docker-proxy` (Debian's `docker.io`) is a stripped Go binary: perf shows
    /// `[unknown]`, `.gopclntab` names every function.
    #[test]
    fn stripped_go_binary_is_named_from_gopclntab() {
        let exe = Path::new("/usr/sbin/docker-proxy");
        assert!(
            exe.exists(),
            "{} is missing: install docker.io (scripts/install-deps.sh), or leave this test \
             out with NFLAME_SKIP=docker (scripts/test.sh)",
            exe.display()
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        // docker-proxy reports readiness on fd 3 and exits without it.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {} -proto tcp -host-ip 127.0.0.1 -host-port {port} \
                 -container-ip 127.0.0.1 -container-port 9 3>/dev/null",
                exe.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut maps = Vec::new();
        for _ in 0..100 {
            maps = nflame_procfs::maps::read_maps(pid).unwrap();
            if maps.iter().any(|m| m.path == exe) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let text = maps
            .iter()
            .find(|m| m.path == exe)
            .expect("docker-proxy text mapped")
            .clone();
        let addrs: Vec<u64> = (text.start..text.end).step_by(997).collect();
        let mut sym = ProcessSymbolizer::new(pid, &maps);
        let frames = sym.symbolize(&addrs);
        assert!(sym.failures().is_empty(), "{:?}", sym.failures());
        let _ = child.kill();
        let _ = child.wait();
        let named: Vec<&str> = frames
            .iter()
            .filter(|f| f[0].named)
            .map(|f| f[0].name.as_str())
            .collect();
        assert!(
            named.len() * 10 > addrs.len() * 9,
            "{} of {} named",
            named.len(),
            addrs.len()
        );
        assert!(
            named.iter().any(|n| n.starts_with("runtime.")),
            "{:?}",
            &named[..10]
        );
        assert!(
            named.iter().any(|n| n.starts_with("main.")),
            "no main.* among {} names",
            named.len()
        );
    }
}

#[test]
fn a_process_exiting_mid_symbolization_is_still_named() {
    let mut prog = c_program();
    let [leaf_a, leaf_b, ..] = prog.addrs[..] else {
        panic!()
    };
    let maps = nflame_procfs::maps::read_maps(prog.pid()).unwrap();
    let mut sym = ProcessSymbolizer::new(prog.pid(), &maps);
    assert_eq!(names(&sym.symbolize(&[leaf_a + 1])), ["leaf_a"]); // resolves /proc/PID/map_files
    prog.kill();
    assert_eq!(names(&sym.symbolize(&[leaf_b + 1])), ["leaf_b"]);
    assert!(sym.failures().is_empty(), "{:?}", sym.failures());
}

/// Folding a recording in parts, as its processes exit (what `nflame
/// record` does while recording), gives the profile and statistics of one
/// fold of the whole recording, whatever the options: three runs of one
/// program that exited, folded one part each or all at once, plus a live one;
/// with off-CPU samples (time rounded to microseconds per process and
/// stack, kind frames) and Lua stacks put in place of a VM's frames.
#[test]
fn folding_exited_processes_in_parts_gives_the_one_fold() {
    use nflame_recording::{LuaFrame, LuaProcess, LuaStack, LuaVmState, SampleKind};
    use nflame_symbolizer::{fold_with, IncrementalFold, LuaFold, OtherStacks, Prepared, Roots};
    use std::sync::Arc;

    let mut progs: Vec<Program> = (0..4).map(|_| c_program()).collect();
    let (vfs_read, _) = kallsyms_function("vfs_read");
    let (tcp_sendmsg, _) = kallsyms_function("tcp_sendmsg");
    let mut whole = Recording {
        kernel: true,
        user: true,
        ..Recording::default()
    };
    for (n, prog) in progs.iter().enumerate() {
        let [leaf_a, leaf_b, middle, main] = prog.addrs[..] else {
            panic!()
        };
        let mut rec = recording_of(prog, Vec::new(), "cprog");
        let pid = prog.pid();
        rec.processes
            .get_mut(&pid)
            .unwrap()
            .threads
            .insert(pid + 1, "helper".into());
        let stacks: [(&[u64], &[u64], u64); 5] = [
            (&[leaf_a + 2, middle + 1, main + 1], &[vfs_read + 4], 3),
            (&[leaf_b + 2, middle + 1, main + 1], &[], 2 + n as u64),
            (
                &[leaf_a + 2, middle + 1, 0x10],
                &[tcp_sendmsg + 8, vfs_read + 4],
                1,
            ),
            (&[], &[tcp_sendmsg + 8], 4),
            (&[0x20, 0x30], &[], 1),
        ];
        // Two of them run Lua code: `middle` is their VM's.
        let lua = n % 2 == 1;
        if lua {
            rec.processes.get_mut(&pid).unwrap().lua = Some(LuaProcess {
                build: "a LuaJIT".into(),
                vm_code: std::iter::once(middle..middle + 16).collect(),
                ..LuaProcess::default()
            });
        }
        let lua_stack = Arc::new(LuaStack {
            state: LuaVmState::Interpreted,
            frames: vec![
                LuaFrame::Named(format!("handler@/srv/app{n}.lua:3_[l]").into()),
                LuaFrame::C(leaf_b),
            ],
        });
        for (i, (user, kernel, count)) in stacks.into_iter().enumerate() {
            whole.samples.push(RawSample {
                pid,
                tid: if i % 2 == 0 { pid } else { pid + 1 },
                count,
                // Time with parts of a microsecond.
                period: count * 1000 + 400 * n as u64,
                kind: match (i + n) % 3 {
                    0 => SampleKind::OnCpu,
                    1 => SampleKind::Blocked,
                    _ => SampleKind::Preempted,
                },
                user: user.iter().copied().collect(),
                kernel: kernel.iter().copied().collect(),
                user_truncated: i == 1 && n == 2,
                lua: (lua && i == 0).then(|| Arc::clone(&lua_stack)),
                ..RawSample::default()
            });
        }
        whole.processes.extend(rec.processes);
    }
    // The first three exit (the last one lives on).
    for prog in &mut progs[..3] {
        prog.kill();
        whole.processes.get_mut(&prog.pid()).unwrap().exited = true;
    }
    let pids: Vec<u32> = progs.iter().map(Program::pid).collect();
    let part = |of: &[u32]| Recording {
        samples: whole
            .samples
            .iter()
            .filter(|s| of.contains(&s.pid))
            .cloned()
            .collect(),
        processes: whole
            .processes
            .iter()
            .filter(|(pid, _)| of.contains(pid))
            .map(|(&pid, info)| (pid, info.clone()))
            .collect(),
        kernel: true,
        user: true,
        ..Recording::default()
    };

    let mut options = vec![FoldOptions::default()];
    let mut o = FoldOptions::default();
    o.per_pid = true;
    o.per_thread = true;
    options.push(o);
    let mut o = FoldOptions::default();
    o.weight = Weight::Period;
    o.kernel = false;
    options.push(o);
    let mut o = FoldOptions::default();
    o.roots = {
        let mut roots = Roots::default();
        roots.labels = [(pids[1], "[container web]".to_string())].into();
        roots.others = OtherStacks::KernelFrom {
            functions: vec!["tcp_sendmsg".into()],
            label: "[net]".into(),
        };
        roots
    };
    options.push(o);
    let mut o = FoldOptions::default();
    o.weight = Weight::Time;
    o.kind_frames = true;
    options.push(o);
    let mut o = FoldOptions::default();
    o.lua = LuaFold::Only;
    options.push(o);
    let prepared = Prepared::default();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    for opts in &options {
        let (profile, mut stats) = fold_with(&whole, opts, &prepared).unwrap();
        let mut parts = IncrementalFold::new();
        for of in [&pids[..1], &pids[1..3], &pids[3..]] {
            parts.add(&part(of), opts, &prepared).unwrap();
        }
        let (in_parts, mut parts_stats) = parts.finish();
        assert_eq!(in_parts.sorted(), profile.sorted(), "{opts:?}");
        if opts == &options[0] {
            assert_eq!(profile.total(), whole.sample_count());
            assert!(stats.named_user_frames > 0 && stats.named_kernel_frames > 0);
            assert_eq!(stats.lua_stacks, 6);
            let stacks = profile.sorted();
            assert!(
                stacks
                    .iter()
                    .any(|(s, _)| s.contains(";handler@/srv/app1.lua:3_[l];")),
                "{stacks:?}"
            );
        }
        if opts.weight == Weight::Time {
            // Microseconds, rounded once per process and stack.
            let us = whole.total_period() as f64 / 1000.0;
            assert!(
                (profile.total() as f64 - us).abs() < 8.0,
                "{}",
                profile.total()
            );
        }
        stats.skipped = sorted(stats.skipped);
        parts_stats.skipped = sorted(parts_stats.skipped);
        stats.failed_modules.sort_by(|a, b| a.path.cmp(&b.path));
        parts_stats
            .failed_modules
            .sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(parts_stats, stats, "{opts:?}");
        assert_eq!(stats.processes, 4);
    }
}
