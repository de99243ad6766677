//! The shapes of `perf script` text found in the field (issue 15, section 2):
//! real output of this machine's perf printed in several ways
//! (`fixtures/perf-script/*`, made by `scripts/record-perf-script-variants.sh`)
//! and hand-written inputs of shapes other tools' perf versions print
//! (`fixtures/perf-script/shapes/`).

use super::*;
use crate::perf_script::grammar::{module_kind, ModuleKind};

fn is_kernel_module(module: &str) -> bool {
    module_kind(module) == ModuleKind::Kernel
}

fn is_jit_module(module: &str) -> bool {
    module_kind(module) == ModuleKind::Jit
}
use crate::perf_script::names::{split_arguments, Demangler};

/// Collapses a fixture file (`perf-script/NAME`, gzip or not).
fn collapse_file(rel: &str, opts: &CollapseOptions) -> (Profile, CollapseStats) {
    let path = fixtures_dir().join("perf-script").join(rel);
    collapse(&mut Input::open(&path).unwrap(), opts)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn default_of(rel: &str) -> (Profile, CollapseStats) {
    collapse_file(rel, &CollapseOptions::default())
}

fn text_of(rel: &str) -> String {
    let path = fixtures_dir().join("perf-script").join(rel);
    let mut text = String::new();
    Input::open(&path)
        .unwrap()
        .reader()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Collapses `text` (with the default options), sequentially and in small
/// parallel chunks, and checks that both agree.
fn collapse_text(text: &str) -> (Profile, CollapseStats) {
    let one = CollapseOptions {
        threads: 1,
        ..CollapseOptions::default()
    };
    let (p, s) = run_with(text, &one).unwrap();
    let two = CollapseOptions {
        threads: 2,
        ..CollapseOptions::default()
    };
    let (p2, s2) = collapse_in_chunks(&mut input("t.perf", text), &two, 997).unwrap();
    assert_eq!(p, p2, "chunked");
    assert_eq!(s, s2, "chunked");
    (p, s)
}

/// Sample headers counted per event, independently of the parser: lines
/// that hold `EVENT: ` after a `TIME: ` (or end with `EVENT:`).
fn count_headers(text: &str, event: &str) -> u64 {
    let needle = format!(" {event}:");
    text.lines()
        .filter(|l| l.contains(&format!("{needle} ")) || l.trim_end().ends_with(&needle))
        .count() as u64
}

// ------------------------------------------------------------ lines

/// Issue 15: frame lines written without leading whitespace rejected the
/// whole file. Real output with every line's indentation removed (and,
/// the other way round, with every line indented) collapses as the original.
#[test]
fn frames_without_indentation_and_indented_headers() {
    let text = text_of("cpp-dwarf.perf.txt.gz");
    let (want, want_stats) = collapse_text(&text);
    assert_eq!(want_stats.samples, count_headers(&text, "cpu-clock"));
    let flush: String = text
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let (p, s) = collapse_text(&flush);
    assert_eq!(p, want);
    assert_eq!(s.samples, want_stats.samples);
    let indented: String = text.lines().map(|l| format!("    {l}\n")).collect();
    let (p, s) = collapse_text(&indented);
    assert_eq!(p, want);
    assert_eq!(s.unreadable_lines, 0);
}

/// Frames without any indentation and a header without a time
/// (`ticker 7311 cycles:`), as older perf versions print them; a C++ name
/// ending in `const` keeps its name.
#[test]
fn unindented_stacks_without_times() {
    let (p, s) = default_of("shapes/unindented.txt");
    assert_eq!((s.samples, s.unreadable_lines), (2, 0));
    assert_eq!(
        to_vec(&p),
        stacks(&[(
            "ticker;__libc_start_call_main;main;Ledger::post;Ledger::total;\
             asm_sysvec_apic_timer_interrupt_[k];update_process_times_[k];\
             scheduler_tick_[k];perf_event_task_tick_[k];x86_pmu_enable_[k];\
             native_apic_msr_write_[k]",
            2
        )])
    );
}

/// Issue 15: a frame line after a blank line inside a sample rejected the
/// whole file. inferno's `empty-line` input (a blank line right after a
/// header and one after a header), and real output with a blank line after every header and
/// between frames.
#[test]
fn blank_lines_inside_a_sample() {
    let (p, s) = default_of("shapes/blank-after-header.txt");
    assert_eq!(to_vec(&p), stacks(&[("tally;main;count_words", 2)]));
    assert_eq!((s.samples, s.unreadable_lines), (2, 0));

    let text = text_of("rust-gcbox.perf.txt.gz");
    let (want, _) = collapse_text(&text);
    let mut spaced = String::new();
    for (i, line) in text.lines().enumerate() {
        spaced.push_str(line);
        spaced.push('\n');
        if line.ends_with("cpu-clock: ") || i % 3 == 0 {
            spaced.push_str("\n\n");
        }
    }
    let (p, s) = collapse_text(&spaced);
    assert_eq!(p, want);
    assert_eq!(s.unreadable_lines, 0);
}

/// Issue 15: frames on the header line (no call graph) were dropped and the
/// next header swallowed. Real output of a recording without `-g`: one
/// sample per header, each with its frame, and `dd`, a command name that reads
/// as an address, is still a command.
#[test]
fn single_line_stacks() {
    let text = text_of("no-callgraph.perf.txt.gz");
    let (p, s) = collapse_text(&text);
    let headers = text.lines().count() as u64;
    assert_eq!(s.samples, headers);
    assert_eq!(p.total(), headers);
    assert_eq!(s.unreadable_lines, 0);
    assert!(
        p.iter().all(|(stack, _)| stack.split(';').count() == 2),
        "root;leaf"
    );
    let roots: std::collections::HashSet<&str> = p
        .iter()
        .map(|(s, _)| s.split(';').next().unwrap())
        .collect();
    assert!(
        roots.contains("dd") && roots.contains("std-function"),
        "{roots:?}"
    );
    assert!(p
        .iter()
        .any(|(s, _)| s.starts_with("std-function;std::_Function_handler<int (int, int), ")));
    assert!(p
        .iter()
        .any(|(s, _)| s.starts_with("dd;") && s.ends_with("_[k]")));

    // Right-aligned command names, two events: the first event is kept.
    let (p, s) = default_of("shapes/single-line.txt");
    assert_eq!(to_vec(&p), stacks(&[("true;[unknown]", 1)]));
    assert_eq!(s.other_events, vec!["instructions".to_string()]);
}

/// What perf prints besides samples is skipped, counted, and changes
/// nothing: side-band records (`--show-task-events --show-mmap-events`),
/// `-F +srcline` (`file.c:12`, `[kernel.kallsyms][ffff…]`) and `+srccode`.
#[test]
fn side_band_records_and_source_lines() {
    let (plain, plain_stats) = default_of("sh-plain.perf.txt.gz");
    let (p, s) = default_of("sh-side-band.perf.txt.gz");
    assert_eq!(p, plain);
    assert_eq!(s.samples, plain_stats.samples);
    assert_eq!(
        s.event.as_deref(),
        Some("cpu-clock"),
        "not PERF_RECORD_MMAP"
    );
    assert_eq!(s.unreadable_lines, 0);
    let text = text_of("sh-side-band.perf.txt.gz");
    let side_band = text.lines().filter(|l| l.contains("PERF_RECORD_")).count() as u64;
    let srclines = text
        .lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().is_empty())
        .count() as u64;
    assert!(side_band > 10 && srclines > 100);
    assert_eq!(s.skipped_lines, side_band + srclines);

    let (plain, _) = default_of("no-callgraph.perf.txt.gz");
    let (p, s) = default_of("no-callgraph-source.perf.txt.gz");
    assert_eq!(p, plain);
    assert_eq!(s.unreadable_lines, 0);
    assert!(text_of("no-callgraph-source.perf.txt.gz")
        .lines()
        .any(|l| l.starts_with('|')));
}

/// A line inside a sample that is no frame: unreadable and said so, the
/// samples are kept.
#[test]
fn weird_stack_line() {
    let (p, s) = default_of("shapes/weird-line.txt");
    assert_eq!(
        to_vec(&p),
        stacks(&[("tally", 1), ("tally;count_words", 1)])
    );
    assert_eq!(s.unreadable_lines, 1);
    assert_eq!(
        s.unreadable[0],
        SkippedLine {
            line: 5,
            text: "\t          NOT_A_FRAME_AT_ALL".into()
        }
    );
    let warning = s.warning(false).unwrap();
    assert!(
        warning.contains("weird-line.txt:5: \"\\t          NOT_A_FRAME_AT_ALL\""),
        "{warning}"
    );
}

#[test]
fn classify_lines() {
    let frame = |l| matches!(classify(l), Line::Frame(_));
    let header = |l| matches!(classify(l), Line::Header(_));
    assert!(frame("\t    7f60eda7a758 [unknown] ([unknown])"));
    assert!(frame(
        "ffffffff8103d0ca native_write_msr_safe ([kernel.kallsyms])"
    ));
    assert!(frame("\t            999a _dl_lookup_symbol_x"));
    assert!(frame("\t            1190"));
    // Command names that are hexadecimal words.
    assert!(header("dd 29776 666709.771979:   10101010 cpu-clock: "));
    assert!(header("              fn  4132  2867.675740:    1001001 cpu-clock:      7f20b6cd1deb do_lookup_x+0x8b (/usr/lib/ld.so)"));
    assert!(header("cc1 77 [003] 1.5: cycles:"));
    assert_eq!(
        classify("sh 10465  2996.896079: PERF_RECORD_FORK(10470:10470):(10465:10465)"),
        Line::Sideband
    );
    assert_eq!(classify("PERF_RECORD_FINISHED_ROUND"), Line::Sideband);
    for annotation in [
        "  fn.cpp:5",
        "  dl-reloc.c:190 (inlined)",
        "  ??:0",
        "  :0",
        "  [kernel.kallsyms][ffffffff816bd3ef]",
        "  gzip[4313]",
        "|12           for (long i = 0; i < 200000L * a; i++) s += i ^ b;",
    ] {
        assert_eq!(classify(annotation), Line::Annotation, "{annotation:?}");
    }
    for unreadable in [
        "THIS_IS_A_WEIRD_LINE",
        "main;f 12",
        "java 19983",
        "fn.cpp:5",
    ] {
        assert_eq!(classify(unreadable), Line::Unreadable, "{unreadable:?}");
    }
    assert_eq!(classify("   "), Line::Blank);
    assert_eq!(classify("# cmdline : perf record -g"), Line::Comment);
    // A tracepoint's arguments are not a frame; a single-line frame is.
    let Line::Header(h) = classify("perf 1 [000] 1.5: sched:sched_switch: ffff x (/bin/y)") else {
        panic!()
    };
    assert_eq!(h.frame, None);
    let Line::Header(h) = classify("a 1 1.5: 1 cycles:u:  ffffffff9b201293 [unknown] ([unknown])")
    else {
        panic!()
    };
    assert_eq!(
        h.frame.map(|f| (f.addr, f.symbol)),
        Some(("ffffffff9b201293", "[unknown]"))
    );
    // A bare number after the time is a period without an event, not a frame.
    let Line::Header(h) = classify("a 1 1.5:    1001001") else {
        panic!()
    };
    assert_eq!(h.frame, None);
}

// ------------------------------------------------------------ annotation

/// Issue 15: kernel modules (`.ko`) and versioned `vmlinux-…` paths were not
/// marked kernel. A softirq in a module under a versioned vmlinux: every
/// frame is kernel, the BPF program's too.
#[test]
fn kernel_annotation_of_modules_and_versioned_vmlinux() {
    let (p, _) = default_of("shapes/versioned-vmlinux.txt");
    let (stack, count) = p.iter().next().unwrap();
    assert_eq!(count, 1);
    let frames: Vec<&str> = stack.split(';').collect();
    assert_eq!(frames[0], "swapper");
    assert_eq!(frames[1], "secondary_startup_64_no_verify_[k]");
    assert!(frames.contains(&"ixgbe_poll_[k]"));
    assert!(frames.contains(&"net_rx_action_[k]"));
    assert_eq!(
        *frames.last().unwrap(),
        "bpf_prog_7d1e0c44ab12f3e9_xdp_drop_[k]"
    );
    assert!(
        frames[1..].iter().all(|f| f.ends_with("_[k]")),
        "{frames:?}"
    );

    for kernel in [
        "[kernel.kallsyms]",
        "[kernel.kallsyms].init.text",
        "[nf_conntrack]",
        "[guest.kernel.kallsyms]",
        "/lib/modules/6.1.0-18-amd64/build/vmlinux",
        "/usr/lib/debug/boot/vmlinux-5.4.14-cloudflare-2020.1.11",
        "/lib/modules/5.4.14/kernel/drivers/net/mlx5_core.ko",
        "/lib/modules/6.1.0/kernel/fs/xfs/xfs.ko.xz",
        "/lib/modules/6.8.0/kernel/net/netfilter/nf_tables.ko.zst",
        "bpf_prog_2b956549c660136a_uni_l4lb",
    ] {
        assert!(is_kernel_module(kernel), "{kernel}");
    }
    for user in [
        "[unknown]",
        "[vdso]",
        "[vsyscall]",
        "[heap]",
        "[stack]",
        "[stack:1234]",
        "[anon:dalvik]",
        "[uprobes]",
        "[JIT] tid 1234",
        "/usr/lib/libc.so.6",
        "/tmp/perf-1.map",
        "/usr/lib/x86_64-linux-gnu/libkmod.so.2",
    ] {
        assert!(!is_kernel_module(user), "{user}");
    }
}

/// Issue 15: JIT annotation missed what `perf inject --jit` writes. Real
/// output of node with `--perf-prof`, and a VM whose code `perf inject
/// --jit` wrote to `jitted-PID-N.so` files.
#[test]
fn jit_annotation_of_perf_inject_jit() {
    let (p, s) = default_of("node-jitdump.perf.txt.gz");
    assert_eq!(s.unreadable_lines, 0);
    let frames = frames_of(&p);
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with("JS:") && f.contains("/fib.js:4:13") && f.ends_with("_[j]")),
        "no JIT-annotated fib frame: {frames:?}"
    );
    assert!(frames
        .iter()
        .any(|f| f.starts_with("Builtin:") && f.ends_with("_[j]")));
    assert!(frames.contains("v8::internal::Execution::Call"));
    // Every frame of a jitted-PID-N.so file is marked, and only those.
    let text = text_of("node-jitdump.perf.txt.gz");
    assert!(text.contains("/jitted-"));
    let (vm, _) = default_of("shapes/jitdump.txt");
    let frames = frames_of(&vm);
    for f in ["calc::fib_[j]", "calc::main_[j]", "<vm entry stub>_[j]"] {
        assert!(frames.contains(f), "{f}: {frames:?}");
    }
    assert!(frames.contains("calcvm::Vm::invoke"));

    for jit in [
        "/tmp/perf-7394.map",
        "/proc/12/root/tmp/perf-1.map",
        "/tmp/jitted-31714-4145673320.so",
        "/root/.debug/jit/java-jit-20240101.XXXX/jitted-1234-56.so",
        "[JIT] tid 1234",
    ] {
        assert!(is_jit_module(jit), "{jit}");
    }
    for not in ["/usr/lib/libjitter.so", "/tmp/perf-x", "[kernel.kallsyms]"] {
        assert!(!is_jit_module(not), "{not}");
    }
}

/// `[vdso]` is user-mode code: no `_[k]`; quotes in names are kept (both
/// deliberate, documented in the module doc and the README).
#[test]
fn vdso_is_not_kernel_and_quotes_are_kept() {
    let text = "\
node 1 1.0: 1 cpu-clock:\n\
\t    7ffd4b1f8a05 __vdso_clock_gettime+0x75 ([vdso])\n\
\t    13a80b608e0a RegExp:[&<>\\\"\\'] (/tmp/perf-7539.map)\n\
\t    56203912306a <core::str::Split<'a, P> as core::iter::Iterator>::next (/bin/x)\n\n";
    let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
    assert_eq!(
        to_vec(&p),
        stacks(&[(
            "node;<core::str::Split<'a, P> as core::iter::Iterator>::next;\
             RegExp:[&<>\\\"\\']_[j];__vdso_clock_gettime",
            1
        )])
    );
}

// ------------------------------------------------------------ names

/// Issue 15: C++ names were cut at the first `(`. Only a trailing argument
/// list goes.
#[test]
fn cpp_names_keep_their_parentheses() {
    for (symbol, name) in [
        (
            "std::function<int (int, int)>::operator()",
            "std::function<int (int, int)>::operator()",
        ),
        (
            "std::function<int (int, int)>::operator()(int, int) const",
            "std::function<int (int, int)>::operator()",
        ),
        (
            "std::_Function_handler<int (int, int), main::{lambda(int, int)#1}>::_M_invoke",
            "std::_Function_handler<int (int, int), main::{lambda(int, int)#1}>::_M_invoke",
        ),
        (
            "__invoke_impl<int, main()::<lambda(int, int)>&, int, int>",
            "__invoke_impl<int, main()::<lambda(int, int)>&, int, int>",
        ),
        ("operator()", "operator()"),
        (
            "main::{lambda(int)#1}::operator()(int) const",
            "main::{lambda(int)#1}::operator()",
        ),
        (
            "std::vector<int>::push_back(int const&)",
            "std::vector<int>::push_back",
        ),
        ("arrayOopDesc::base(BasicType) const", "arrayOopDesc::base"),
        ("Foo::get() const &&", "Foo::get"),
        ("Foo::bar(void (*)(int), char)", "Foo::bar"),
        ("f(int)::Local::method(double)", "f(int)::Local::method"),
        (
            "(anonymous namespace)::helper(int)",
            "(anonymous namespace)::helper",
        ),
        ("(anonymous namespace)", "(anonymous namespace)"),
        ("net/http.(*Client).Do", "net/http.(*Client).Do"),
        (
            "std::operator<< <std::char_traits<char> >(std::ostream&, char const*)",
            "std::operator<< <std::char_traits<char> >",
        ),
        ("Foo::operator<(Foo const&) const", "Foo::operator<"),
        (
            "std::unique_ptr<A>::operator->() const",
            "std::unique_ptr<A>::operator->",
        ),
        (
            "LazyCompile:~body_0 evalmachine.<anonymous>:1",
            "LazyCompile:~body_0 evalmachine.<anonymous>:1",
        ),
        (
            "JS:~ node:internal/main/run_main_module:1:1",
            "JS:~ node:internal/main/run_main_module:1:1",
        ),
        ("py::f (x.py:3)", "py::f (x.py:3)"),
        ("(foo)", "(foo)"),
        ("unbalanced)", "unbalanced)"),
        ("f(", "f("),
        ("", ""),
    ] {
        let (head, tail) = split_arguments(symbol);
        assert_eq!(format!("{head}{tail}"), name, "{symbol:?}");
    }
    // A GCC clone keeps its suffix; its argument list goes.
    assert_eq!(
        split_arguments("foo(int) [clone .isra.0] [clone .cold]"),
        ("foo", " [clone .isra.0] [clone .cold]")
    );
}

/// Real output of a C++ program with DWARF call graphs: perf's demangled names
/// and, printed with `--no-demangle`, the mangled ones collapse alike.
#[test]
fn cpp_dwarf_fixture_demangled_or_not() {
    let (p, s) = default_of("cpp-dwarf.perf.txt.gz");
    assert_eq!(s.unreadable_lines, 0);
    let frames = frames_of(&p);
    for f in [
        "std::_Function_handler<int (int, int), main::{lambda(int, int)#1}>::_M_invoke",
        "std::function<int (int, int)>::operator()",
        "Box<int>::run",
    ] {
        assert!(frames.contains(f), "{f}");
    }
    assert!(!frames.iter().any(|f| f.ends_with("<int ")));
    let (mangled, _) = default_of("cpp-dwarf-mangled.perf.txt.gz");
    let text = text_of("cpp-dwarf-mangled.perf.txt.gz");
    assert!(text.contains(" _ZN3BoxIiE3runESt8functionIFiiiEE+"));
    assert_eq!(mangled, p);
}

/// Issue 15: legacy-mangled Rust names were not demangled. One recording of
/// a Rust program printed three ways (demangled by perf, `--no-demangle`, and
/// half demangled by a C++-only demangler) collapses to one profile.
#[test]
fn rust_names_demangled_however_perf_printed_them() {
    let (p, s) = default_of("rust-gcbox.perf.txt.gz");
    assert_eq!(s.unreadable_lines, 0);
    let frames = frames_of(&p);
    for f in [
        "gcbox::main",
        "gcbox::run",
        "<gcbox::GcBox<T> as gcbox::Trace>::trace",
        "std::rt::lang_start::{{closure}}",
    ] {
        assert!(frames.contains(f), "{f}: {frames:?}");
    }
    let half = text_of("rust-gcbox-half-demangled.perf.txt.gz");
    assert!(half.contains("::_$u7b$$u7b$closure$u7d$$u7d$::h"));
    assert!(half.contains("_$LT$gcbox..GcBox$LT$T$GT$$u20$as$u20$gcbox..Trace$GT$::trace::h"));
    for variant in [
        "rust-gcbox-mangled.perf.txt.gz",
        "rust-gcbox-half-demangled.perf.txt.gz",
    ] {
        let (q, _) = default_of(variant);
        assert_eq!(q, p, "{variant}");
    }
}

#[test]
fn demangler_forms() {
    let mut d = Demangler::default();
    for (symbol, want) in [
        // The example, half demangled.
        (
            "GcBox$LT$T$GT$::new::_$u7b$$u7b$closure$u7d$$u7d$::h0123456789abcdef",
            Some("GcBox<T>::new::{{closure}}"),
        ),
        (
            "_$LT$term..terminfo..TerminfoTerminal$LT$T$GT$$GT$::new::hcd1c44cd143417f6",
            Some("<term::terminfo::TerminfoTerminal<T>>::new"),
        ),
        (
            "_$LT$u8$u20$as$u20$core..clone..Clone$GT$::clone::h7bfab8630dda96cf",
            Some("<u8 as core::clone::Clone>::clone"),
        ),
        (
            "core::ptr::drop_in_place::h0123456789abcdef",
            Some("core::ptr::drop_in_place"),
        ),
        // Mangled.
        (
            "_ZN2gc14GcBox$LT$T$GT$3new17h059f7448422137a5E",
            Some("gc::GcBox<T>::new"),
        ),
        (
            "_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal",
            Some("std::rt::lang_start_internal"),
        ),
        (
            "_ZNSt17_Function_handlerIFiiiEZ4mainEUliiE_E9_M_invokeERKSt9_Any_dataOiS6_",
            Some("std::_Function_handler<int (int, int), main::{lambda(int, int)#1}>::_M_invoke"),
        ),
        // Not mangled, or not Rust's escapes.
        ("gc::GcBox<T>::new", None),
        ("Lcom/foo/Bar$Inner;::run", None),
        (
            "JS:~Module._extensions..js node:internal/modules/cjs/loader:1604:37",
            None,
        ),
        ("std::vector<int>::push_back", None),
        ("_Zgarbage", None),
        ("odd$LT$ name::h0123456789abcdef", None),
    ] {
        assert_eq!(d.demangle(symbol), want, "{symbol}");
    }
}

// ------------------------------------------------------------ options

/// FlameGraph's `--addrs`: unnamed frames keep the address perf printed.
#[test]
fn addresses_of_unnamed_frames() {
    let opts = CollapseOptions {
        include_addrs: true,
        ..CollapseOptions::default()
    };
    let (p, _) = run_with(TWO_SAMPLES, &opts).unwrap();
    assert_eq!(
        to_vec(&p),
        stacks(&[
            (
                "nginx;0x555d7fdd70e8;[libluajit-5.1.so.2.1.0+0x1da16];__GI___writev;\
                 tcp_sendmsg_[k];_raw_spin_lock_[k]",
                1
            ),
            ("nginx;[perf-7394.map+0x7f51cd73ff9f]_[j];ngx_vslprintf", 1),
        ])
    );
    let text = "a 1 1.0: 1 cpu-clock:\n\
        \tffffffff9c2009e7 [unknown] ([kernel.kallsyms])\n\
        \t7f00000000a1 [unknown] ([unknown])\n\
        \t7f00000000a2 [unknown] ([unknown])\n\
        \t4005d6  (/usr/bin/a)\n\n";
    let (p, _) = run_with(text, &opts).unwrap();
    assert_eq!(
        p.iter().next().unwrap().0,
        "a;[a+0x4005d6];0x7f00000000a2;0x7f00000000a1;[kernel.kallsyms+0xffffffff9c2009e7]_[k]"
    );
    let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
    assert_eq!(
        p.iter().next().unwrap().0,
        "a;[a];[unknown];[kernel.kallsyms]_[k]"
    );
}

/// Issue 15 §5: towers of `[unknown]` frames (perf `-g` through code built
/// without frame pointers) become one frame by default. On the real
/// recordings, keeping them gives the same samples with the runs intact, and
/// folding those runs by hand gives the default output.
#[test]
fn unknown_runs_are_folded_unless_kept() {
    let keep = CollapseOptions {
        fold_unknown_runs: false,
        ..CollapseOptions::default()
    };
    let mut longest = 0;
    for name in ["nginx-lua", "sort-gzip", "lab-proxy"] {
        let rel = format!("{name}.perf.txt.gz");
        let (folded, _) = default_of(&rel);
        let (kept, _) = collapse_file(&rel, &keep);
        assert!(!folded
            .iter()
            .any(|(s, _)| s.contains("[unknown];[unknown]")));
        longest = longest.max(
            kept.iter()
                .map(|(s, _)| s.matches("[unknown];").count())
                .max()
                .unwrap(),
        );
        assert_eq!(kept.total(), folded.total());
        let mut by_hand = Profile::new();
        for (stack, count) in kept.iter() {
            let mut out: Vec<&str> = Vec::new();
            for f in stack.split(';') {
                if f == "[unknown]" && out.last() == Some(&"[unknown]") {
                    continue;
                }
                out.push(f);
            }
            assert!(by_hand.add(&out.join(";"), count));
        }
        assert_eq!(by_hand, folded, "{name}");
    }
    assert!(longest > 100, "the recordings hold long runs: {longest}");
    // A run is consecutive `[unknown]` frames only.
    let text = "a 1 1.0: 1 cpu-clock:\n\t1 [unknown] ([unknown])\n\t2 f (/bin/a)\n\
        \t3 [unknown] ([unknown])\n\t4 [unknown] ([unknown])\n\t5 [unknown] (/bin/a)\n\
        \t6 [unknown] (/bin/a)\n\n";
    assert_eq!(run(text), stacks(&[("a;[a];[a];[unknown];f;[unknown]", 1)]));
}
