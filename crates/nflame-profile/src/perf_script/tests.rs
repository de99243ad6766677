//! Tests of the collapser, stage by stage and end to end on fixtures; the
//! shapes of `perf script` text found in the field are in `shapes`.

mod shapes;

use super::chunks::{collapse_in_chunks, sample_boundary};
use super::grammar::{classify, parse_header, Header, HeaderLine, Line};
use super::*;
use std::io::Cursor;
use std::path::{Path, PathBuf};

fn input(name: &str, text: impl Into<Vec<u8>>) -> Input {
    Input::from_reader(PathBuf::from(name), Cursor::new(text.into())).unwrap()
}

fn run_with(text: &str, opts: &CollapseOptions) -> Result<(Profile, CollapseStats), Error> {
    collapse(&mut input("t.perf", text), opts)
}

fn run(text: &str) -> Vec<(String, u64)> {
    let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
    to_vec(&p)
}

fn to_vec(p: &Profile) -> Vec<(String, u64)> {
    p.sorted()
        .into_iter()
        .map(|(s, c)| (s.to_string(), c))
        .collect()
}

fn stacks(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|&(s, c)| (s.to_string(), c)).collect()
}

const TWO_SAMPLES: &str = "\
nginx  7394 [001]  516.916284:    2004008 cpu-clock: \n\
\tffffffff8226ec67 _raw_spin_lock+0x17 ([kernel.kallsyms])\n\
\tffffffff8206e58b tcp_sendmsg+0x2b ([kernel.kallsyms])\n\
\t           fde60 __GI___writev+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
\t           1da16 [unknown] (/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0)\n\
\t    555d7fdd70e8 [unknown] ([unknown])\n\
\n\
nginx  7394 [000]  516.918289:    2004008 cpu-clock: \n\
\t           2b292 ngx_vslprintf+0x32 (/usr/sbin/nginx)\n\
\t    7f51cd73ff9f [unknown] (/tmp/perf-7394.map)\n\
\n";

/// Fuzzing found `Ok` with an empty profile when every kept sample had
/// period 0 and `period` weighting was on.
#[test]
fn zero_period_samples_are_empty_not_an_empty_success() {
    let opts = CollapseOptions {
        period: true,
        ..CollapseOptions::default()
    };
    let text = "python3 1700 1.0:          0 cpu-clock:\n\t     4005d6 main (/usr/bin/python3)\n\n";
    assert!(matches!(run_with(text, &opts), Err(Error::Empty { .. })));
    // Counting samples instead, the same input has one.
    let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
    assert_eq!(p.total(), 1);
}

#[test]
fn basic_sample_and_frame_naming() {
    assert_eq!(
        run(TWO_SAMPLES),
        stacks(&[
            ("nginx;[perf-7394.map]_[j];ngx_vslprintf", 1),
            (
                "nginx;[unknown];[libluajit-5.1.so.2.1.0];__GI___writev;tcp_sendmsg_[k];_raw_spin_lock_[k]",
                1
            ),
        ])
    );
}

#[test]
fn annotations_can_be_turned_off() {
    let opts = CollapseOptions {
        annotate_kernel: false,
        annotate_jit: false,
        ..CollapseOptions::default()
    };
    let (p, _) = run_with(TWO_SAMPLES, &opts).unwrap();
    assert_eq!(p.get("nginx;[perf-7394.map];ngx_vslprintf"), 1);
    assert!(p.iter().all(|(s, _)| !s.contains("_[k]")));
}

#[test]
fn header_variants() {
    let frame = "\tffffffff8103ce3b native_safe_halt ([kernel.kallsyms])\n\n";
    for (header, root) in [
        // TID only, no CPU, period and event.
        ("java 25607 4794564.109216: cycles:", "java"),
        ("java 12688 [002] 6544038.708352: cpu-clock:", "java"),
        // Blanks in the command name.
        (
            "V8 WorkerThread 25607 4794564.109216: cycles:",
            "V8_WorkerThread",
        ),
        (
            "V8 WorkerThread 24636/25607 [000] 94564.109216: cycles:",
            "V8_WorkerThread",
        ),
        (
            "Web Content 2 24636/25607 [000] 94564.109216: cycles:",
            "Web_Content_2",
        ),
        // PID/TID, several blanks, period, event modifiers.
        (
            "vote   913/914    72.176760:     257597 cycles:uppp:",
            "vote",
        ),
        // Right-aligned command name of older perf.
        ("            perf  1234 [000]  10.0: 1 cycles:", "perf"),
        // No time; semicolon in the command name.
        ("a;b 77 [003] 1 cycles:", "a:b"),
    ] {
        let ev = if header.contains("cpu-clock") {
            "cpu-clock"
        } else if header.contains("cycles:uppp") {
            "cycles:uppp"
        } else {
            "cycles"
        };
        let opts = CollapseOptions {
            event: Some(ev.into()),
            ..CollapseOptions::default()
        };
        let (p, s) = run_with(&format!("{header}\n{frame}"), &opts)
            .unwrap_or_else(|e| panic!("{header}: {e}"));
        assert_eq!(
            to_vec(&p),
            stacks(&[(&format!("{root};native_safe_halt_[k]"), 1)]),
            "{header}"
        );
        assert_eq!(s.samples, 1);
    }
}

fn header(line: &str) -> Header<'_> {
    match parse_header(line) {
        Some(HeaderLine::Sample(h)) => h,
        other => panic!("{line:?}: {other:?}"),
    }
}

#[test]
fn parse_header_fields() {
    let h = header("V8 WorkerThread 24636/25607 [000] 94564.109216:   250000 cpu-clock:ppp: extra");
    assert_eq!(
        h,
        Header {
            comm: "V8 WorkerThread",
            pid: Some("24636"),
            tid: "25607",
            period: Some(250000),
            event: Some("cpu-clock:ppp"),
            frame: None,
        }
    );
    let h = header("perf 1 [000] 1.5: sched:sched_switch: prev_comm=x prev_pid=1");
    assert_eq!(h.event, Some("sched:sched_switch"));
    assert_eq!(h.period, None);
    let h = header("sleep 42 1.0:");
    assert_eq!((h.pid, h.tid, h.event), (None, "42", None));
    // No time but an event (FlameGraph's perf-java-stacks-02 shape).
    let h = header("java 19983 cycles:");
    assert_eq!((h.comm, h.tid, h.event), ("java", "19983", Some("cycles")));
    assert_eq!(parse_header("no pid here: cpu-clock:"), None);
    assert_eq!(parse_header("1234 [000] 1.0: cpu-clock:"), None);
    // Neither a time nor an event: a folded line is not a header.
    assert_eq!(parse_header("main;f 12"), None);
    assert_eq!(parse_header("java 19983"), None);
    // Side-band records.
    for line in [
        "sh 10465  2996.896079: PERF_RECORD_FORK(10470:10470):(10465:10465)",
        "perf-exec     0     0.000000: PERF_RECORD_COMM: perf-exec:10465/10465",
    ] {
        assert_eq!(parse_header(line), Some(HeaderLine::Sideband), "{line}");
    }
}

#[test]
fn pid_and_tid_root_frames() {
    let text = "\
java 24636/25607 [000] 94564.109216: 10 cycles:\n\
\t7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)\n\
\n\
java 25608 [000] 94564.109217: 10 cycles:\n\
\t7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)\n\
\n";
    let pid = CollapseOptions {
        include_pid: true,
        ..CollapseOptions::default()
    };
    let (p, _) = run_with(text, &pid).unwrap();
    assert_eq!(
        to_vec(&p),
        stacks(&[
            ("java-24636;java/io/PrintStream:::print_[j]", 1),
            ("java-?;java/io/PrintStream:::print_[j]", 1),
        ])
    );
    let tid = CollapseOptions {
        include_tid: true,
        ..CollapseOptions::default()
    };
    let (p, _) = run_with(text, &tid).unwrap();
    assert_eq!(p.get("java-24636/25607;java/io/PrintStream:::print_[j]"), 1);
    assert_eq!(p.get("java-?/25608;java/io/PrintStream:::print_[j]"), 1);
}

#[test]
fn period_weighting() {
    let text = "\
a 1 1.0: 250 cpu-clock:\n\tffff f (/bin/a)\n\n\
a 1 1.1: 750 cpu-clock:\n\tffff f (/bin/a)\n\n\
a 1 1.2: 1000 cpu-clock:\n\tffff g (/bin/a)\n\n";
    assert_eq!(run(text), stacks(&[("a;f", 2), ("a;g", 1)]));
    let opts = CollapseOptions {
        period: true,
        ..CollapseOptions::default()
    };
    let (p, s) = run_with(text, &opts).unwrap();
    assert_eq!(to_vec(&p), stacks(&[("a;f", 1000), ("a;g", 1000)]));
    assert_eq!(s.samples, 3);
}

#[test]
fn event_filter() {
    let text = "\
p 1 1.0: 10 cpu-clock:\n\tffff f (/bin/p)\n\n\
p 1 1.1: 50 page-faults:\n\tffff g (/bin/p)\n\n\
p 1 1.2: 10 cpu-clock:\n\tffff h (/bin/p)\n\n\
p 1 1.3: 50 page-faults:\n\tffff g (/bin/p)\n\n";
    let (p, s) = run_with(text, &CollapseOptions::default()).unwrap();
    assert_eq!(to_vec(&p), stacks(&[("p;f", 1), ("p;h", 1)]));
    assert_eq!(s.skipped_other_events, 2);
    assert_eq!(s.event.as_deref(), Some("cpu-clock"));
    assert_eq!(s.other_events, vec!["page-faults".to_string()]);
    let opts = CollapseOptions {
        event: Some("page-faults".into()),
        ..CollapseOptions::default()
    };
    let (p, s) = run_with(text, &opts).unwrap();
    assert_eq!(to_vec(&p), stacks(&[("p;g", 2)]));
    assert_eq!(s.skipped_other_events, 2);
    let opts = CollapseOptions {
        event: Some("cycles".into()),
        ..CollapseOptions::default()
    };
    let e = run_with(text, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.perf: no samples of event \"cycles\"; the input has \"cpu-clock\", \"page-faults\""
    );
}

#[test]
fn frame_name_tidying() {
    let text = "\
prog 5 1.0: 1 cycles:\n\
\t1 std::vector<int>::push_back(int const&)+0x10 (/bin/prog)\n\
\t2 net/http.(*Client).Do+0x5 (/bin/prog)\n\
\t3 (anonymous namespace)::helper(int) (/bin/prog)\n\
\t4 weird;name+0xzz (/bin/prog)\n\
\t5 [unknown] (/memfd:doublemapper (deleted))\n\
\t6 [unknown] ([kernel.kallsyms])\n\
\t7 __vdso_clock_gettime ([vdso])\n\
\t8 ixgbe_poll ([ixgbe])\n\
\t9 tcp_sendmsg (/lib/modules/6.1/build/vmlinux)\n\
\ta  (/usr/lib/libc.so.6)\n\
\tb Lcom/a/B;.run->Lcom/a/C;.inner (/tmp/perf-9.map)\n\
\n";
    let (p, _) = run_with(text, &CollapseOptions::default()).unwrap();
    let (stack, _) = p.iter().next().unwrap();
    assert_eq!(
        stack.split(';').collect::<Vec<_>>(),
        vec![
            "prog",
            "Lcom/a/B:.run_[j]",
            "Lcom/a/C:.inner_[i]",
            "[libc.so.6]",
            "tcp_sendmsg_[k]",
            "ixgbe_poll_[k]",
            "__vdso_clock_gettime",
            "[kernel.kallsyms]_[k]",
            "[memfd:doublemapper (deleted)]",
            "weird:name+0xzz",
            "(anonymous namespace)::helper",
            "net/http.(*Client).Do",
            "std::vector<int>::push_back",
        ]
    );
}

#[test]
fn crlf_comments_and_missing_final_blank_line() {
    let text = "# ========\r\n# cmdline : perf record -g\r\n\
a 1 1.0: 1 cpu-clock:\r\n\tffff f+0x1 (/bin/a)\r\n\r\n\
a 1 1.1: 1 cpu-clock:\r\n\tffff f+0x2 (/bin/a)";
    assert_eq!(run(text), stacks(&[("a;f", 2)]));
}

#[test]
fn header_without_blank_line_starts_a_new_sample() {
    let text = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\na 1 1.1: 1 cpu-clock:\n\n";
    let (p, s) = run_with(text, &CollapseOptions::default()).unwrap();
    assert_eq!(to_vec(&p), stacks(&[("a", 1), ("a;f", 1)]));
    assert_eq!(s.samples, 2);
    assert_eq!(s.lines, 4);
}

#[test]
fn non_frame_lines_in_a_sample_are_skipped_and_counted() {
    let text = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\n  a.c:12\n\n";
    let (p, s) = run_with(text, &CollapseOptions::default()).unwrap();
    assert_eq!(to_vec(&p), stacks(&[("a;f", 1)]));
    assert_eq!(s.skipped_lines, 1);
}

fn error_of(text: impl Into<Vec<u8>>, threads: usize, chunk: usize) -> String {
    let opts = CollapseOptions {
        threads,
        ..CollapseOptions::default()
    };
    collapse_in_chunks(&mut input("bad.perf", text), &opts, chunk)
        .unwrap_err()
        .to_string()
}

#[test]
fn invalid_utf8_is_an_error_naming_file_and_line() {
    let good = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\n\n";
    for threads in [1, 3] {
        for chunk in [1, 7, 1 << 20] {
            let mut bytes = format!("{good}{good}").into_bytes();
            bytes.extend_from_slice(b"a 1 1.0: 1 cpu-clock:\n\tffff f\xff\xfe (/bin/a)\n\n");
            let e = error_of(bytes, threads, chunk);
            assert_eq!(e, "bad.perf:8: the line is not valid UTF-8");
        }
    }
}

/// Issue 15: a line that is neither a header nor a frame was dropped
/// silently, a frame with no header before it rejected the whole file. Both
/// are now skipped, counted, and the first ones kept with their line numbers,
/// whatever the chunking.
#[test]
fn unreadable_lines_are_counted_and_located() {
    let good = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\n\n";
    let text = format!(
        "\tffff orphan (/bin/a)\n{}garbage here\n{}a 1 1.0: 1 cpu-clock:\n\tTHIS_IS_A_WEIRD_LINE\n\tffff g (/bin/a)\n",
        good.repeat(50),
        good.repeat(50)
    );
    let mut want = None;
    for threads in [1, 3] {
        for chunk in [1, 7, 100, 1 << 20] {
            let opts = CollapseOptions {
                threads,
                ..CollapseOptions::default()
            };
            let (p, s) = collapse_in_chunks(&mut input("bad.perf", text.clone()), &opts, chunk)
                .unwrap_or_else(|e| panic!("threads {threads} chunk {chunk}: {e}"));
            assert_eq!(p.get("a;f"), 100);
            assert_eq!(
                p.get("a;g"),
                1,
                "the sample around the weird line keeps its frames"
            );
            assert_eq!(s.unreadable_lines, 3);
            let lines: Vec<(u64, &str)> = s
                .unreadable
                .iter()
                .map(|l| (l.line, l.text.as_str()))
                .collect();
            assert_eq!(
                lines,
                vec![
                    (1, "\tffff orphan (/bin/a)"),
                    (152, "garbage here"),
                    (304, "\tTHIS_IS_A_WEIRD_LINE"),
                ],
                "threads {threads} chunk {chunk}"
            );
            match &want {
                None => want = Some((p, s)),
                Some((wp, ws)) => {
                    assert_eq!(&p, wp);
                    assert_eq!(&s, ws);
                }
            }
        }
    }
    let (_, s) = want.unwrap();
    assert_eq!(
        s.warning(false).unwrap(),
        "3 lines of bad.perf are not `perf script` sample headers or frames and were \
         skipped; the first: bad.perf:1: \"\\tffff orphan (/bin/a)\""
    );
    assert_eq!(
        s.warning(true).unwrap().lines().skip(1).collect::<Vec<_>>(),
        vec![
            "  bad.perf:152: \"garbage here\"",
            "  bad.perf:304: \"\\tTHIS_IS_A_WEIRD_LINE\"",
        ]
    );
}

#[test]
fn unreadable_examples_are_capped_and_the_rest_counted() {
    let good = "a 1 1.0: 1 cpu-clock:\n\tffff f (/bin/a)\n";
    let text = format!("{good}{}", "?\n".repeat(25));
    let (_, s) = run_with(&text, &CollapseOptions::default()).unwrap();
    assert_eq!(s.unreadable_lines, 25);
    assert_eq!(s.unreadable.len(), 10);
    assert_eq!(s.unreadable[9].line, 12);
    let all = s.warning(true).unwrap();
    assert_eq!(all.lines().count(), 11, "{all}");
    assert!(all.ends_with("and 15 more"), "{all}");
    // Nothing unreadable, nothing to say.
    let (_, s) = run_with(good, &CollapseOptions::default()).unwrap();
    assert_eq!(s.warning(true), None);
}

/// A file with no sample header at all is not `perf script` output: an
/// error at its first line, not a profile of nothing.
#[test]
fn input_without_any_header_is_an_error_at_its_first_line() {
    for text in [
        "main;f 12\nmain;g 3\n",
        "\tffff f (/bin/a)\n\tffff g (/bin/a)\n",
    ] {
        let e = error_of(text, 1, 1 << 20);
        assert!(
            e.starts_with(
                "bad.perf:1: not `perf script` output: none of its 2 lines is a sample header"
            ),
            "{e}"
        );
    }
}

#[test]
fn empty_inputs() {
    for text in ["", "\n\n", "# only a comment\n"] {
        let e = run_with(text, &CollapseOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }), "{e:?}");
        assert!(e.to_string().starts_with("t.perf: no samples"), "{e}");
    }
}

#[test]
fn sample_boundaries() {
    assert_eq!(sample_boundary(b"a 1 1.0: x:\n\tf\n"), None);
    assert_eq!(
        sample_boundary(b"a 1 1.0: x:\n\tf\n\nb 1 1.0: x:\n\tf"),
        Some(16)
    );
    assert_eq!(
        sample_boundary(b"a 1 1.0: x:\n\tf\nb 1 1.0: x:\n\tg\n"),
        Some(15)
    );
    // A blank line is not a boundary: the frames after it may still belong
    // to the sample before it.
    assert_eq!(sample_boundary(b"a 1 1.0: x:\r\n\tf\r\n\r\n\tg\n"), None);
    // Headers are found by their grammar, not their indentation.
    assert_eq!(
        sample_boundary(b"  dd 1 1.0: x:\n\tf\n  dd 1 1.0: x:  ffff g (/bin/dd)\n\tf\n"),
        Some(18)
    );
    assert_eq!(
        sample_boundary(b"a 1 1.0: x:\nffff f (/bin/a)\nffff g (/bin/a)\n"),
        None
    );
    assert_eq!(
        sample_boundary(b"a 1 1.0: x:\n\tf\n\nsh 1 2.0: PERF_RECORD_EXIT(1:1):(0:0)\n"),
        Some(16)
    );
    assert_eq!(sample_boundary(b"no newline"), None);
}

/// Chunking and threads change nothing: every chunk size from tiny to whole.
#[test]
fn chunked_parallel_equals_sequential() {
    let text = fixture_text("nginx-lua");
    let text = &text[..text.len().min(400_000)];
    let text = &text[..text.rfind("\n\n").unwrap() + 2];
    let seq = CollapseOptions {
        threads: 1,
        ..CollapseOptions::default()
    };
    let (want, want_stats) = run_with(text, &seq).unwrap();
    for threads in [1, 2, 4] {
        for chunk in [1, 100, 4096, 65536] {
            let opts = CollapseOptions {
                threads,
                ..CollapseOptions::default()
            };
            let (p, s) = collapse_in_chunks(&mut input("t.perf", text), &opts, chunk).unwrap();
            assert_eq!(p, want, "threads {threads} chunk {chunk}");
            assert_eq!(s, want_stats, "threads {threads} chunk {chunk}");
        }
    }
}

// ------------------------------------------------------------- fixtures

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn fixture_text(name: &str) -> String {
    let path = fixtures_dir().join(format!("perf-script/{name}.perf.txt.gz"));
    let mut text = String::new();
    let mut input = Input::open(&path).unwrap();
    input.reader().read_to_string(&mut text).unwrap();
    text
}

/// Counts the headers perf printed per event, independently of the parser:
/// a header is a line that starts with neither a blank nor `#`.
fn headers_per_event(text: &str) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let event = line.trim_end().rsplit(' ').next().unwrap().to_string();
        match counts.iter_mut().find(|(e, _)| *e == event) {
            Some((_, c)) => *c += 1,
            None => counts.push((event, 1)),
        }
    }
    counts
}

/// Collapses a fixture and compares it with its golden folded file, which
/// is written when missing or when `NFLAME_BLESS=1`.
fn check_fixture(name: &str) -> Profile {
    let perf = fixtures_dir().join(format!("perf-script/{name}.perf.txt.gz"));
    let (profile, stats) = collapse(
        &mut Input::open(&perf).unwrap(),
        &CollapseOptions::default(),
    )
    .unwrap();
    let per_event = headers_per_event(&fixture_text(name));
    let (first_event, first_count) = &per_event[0];
    assert_eq!(
        stats.event.as_deref(),
        Some(first_event.trim_end_matches(':'))
    );
    assert_eq!(stats.samples, *first_count, "{name}: one stack per sample");
    assert_eq!(profile.total(), *first_count, "{name}");
    let others: u64 = per_event[1..].iter().map(|(_, c)| c).sum();
    assert_eq!(stats.skipped_other_events, others, "{name}");
    assert_eq!(stats.skipped_lines, 0, "{name}");

    let golden = fixtures_dir().join(format!("folded/{name}.folded.gz"));
    if std::env::var_os("NFLAME_BLESS").is_some() || !golden.exists() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        crate::io::write_atomically(&golden, |w| profile.write_folded(w)).unwrap();
    }
    let expected = Profile::from_path(&golden).unwrap();
    if expected != profile {
        let dump = std::env::temp_dir().join(format!("{name}.actual.folded"));
        crate::io::write_atomically(&dump, |w| profile.write_folded(w)).unwrap();
        panic!(
            "{name}: collapsed output differs from {}; actual output in {}",
            golden.display(),
            dump.display()
        );
    }
    profile
}

fn frames_of(p: &Profile) -> std::collections::HashSet<String> {
    p.iter()
        .flat_map(|(s, _)| s.split(';').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[test]
fn fixture_nginx_lua() {
    let p = check_fixture("nginx-lua");
    let frames = frames_of(&p);
    assert!(p
        .iter()
        .all(|(s, _)| s.starts_with("nginx;") || s == "nginx"));
    for f in [
        "tcp_sendmsg_[k]",
        "entry_SYSCALL_64_after_hwframe_[k]",
        "[libluajit-5.1.so.2.1.0]",
        "[nginx]",
    ] {
        assert!(frames.contains(f), "nginx-lua lacks frame {f}");
    }
    assert!(frames.iter().any(|f| f.starts_with("ngx_")));
    assert!(frames
        .iter()
        .any(|f| f.starts_with("[perf-") && f.ends_with(".map]_[j]")));
    // Kernel frames, and only they, carry the suffix.
    assert!(!frames.contains("tcp_sendmsg"));
    assert!(frames
        .iter()
        .all(|f| !f.starts_with("ngx_") || !f.ends_with("_[k]")));
}

#[test]
fn fixture_sort_gzip() {
    let p = check_fixture("sort-gzip");
    let roots: std::collections::HashSet<&str> = p
        .iter()
        .map(|(s, _)| s.split(';').next().unwrap())
        .collect();
    for comm in ["sort", "gzip", "seq", "sed"] {
        assert!(
            roots.contains(comm),
            "sort-gzip lacks process {comm}: {roots:?}"
        );
    }
    // This fixture was printed with PID/TID, so --tid names both.
    let perf = fixtures_dir().join("perf-script/sort-gzip.perf.txt.gz");
    let opts = CollapseOptions {
        include_tid: true,
        ..CollapseOptions::default()
    };
    let (p, _) = collapse(&mut Input::open(&perf).unwrap(), &opts).unwrap();
    assert!(p.iter().all(
        |(s, _)| s
            .split(';')
            .next()
            .unwrap()
            .split_once('-')
            .is_some_and(|(_, ids)| ids.split_once('/').is_some_and(|(a, b)| {
                a.bytes().all(|b| b.is_ascii_digit()) && b.bytes().all(|b| b.is_ascii_digit())
            }))
    ));
}

#[test]
fn fixture_python_multi_event() {
    // perf printed a page fault first (the exec), so that event is the default.
    let faults = check_fixture("python-multi-event");
    assert!(faults.iter().all(|(s, _)| s.starts_with("python3")));
    assert!(frames_of(&faults).contains("load_elf_binary_[k]"));
    assert!(frames_of(&faults).contains("PyUnicode_New"));
    let perf = fixtures_dir().join("perf-script/python-multi-event.perf.txt.gz");
    let opts = CollapseOptions {
        event: Some("cpu-clock".into()),
        ..CollapseOptions::default()
    };
    let (cpu, stats) = collapse(&mut Input::open(&perf).unwrap(), &opts).unwrap();
    assert_eq!(stats.skipped_other_events, faults.total());
    assert_eq!(stats.other_events, vec!["page-faults".to_string()]);
    let per_event = headers_per_event(&fixture_text("python-multi-event"));
    assert_eq!(per_event[1], ("cpu-clock:".to_string(), cpu.total()));
    assert!(frames_of(&cpu).contains("_PyEval_EvalFrameDefault"));
}
