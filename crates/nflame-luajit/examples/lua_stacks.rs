//! Samples a process for a few seconds and prints its Lua stacks, folded,
//! with counts, and what walking and naming cost:
//! `lua_stacks PID [SECONDS] [--lines] [--no-probe]`.
use std::collections::BTreeMap;
use std::os::fd::AsFd;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pid: u32 = args[0].parse().expect("pid");
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let lines = args.iter().any(|a| a == "--lines");
    // --no-probe: the same counters and loop without the program (a baseline).
    let attach = !args.iter().any(|a| a == "--no-probe");
    let mut opts = nflame_luajit::ProbeOptions::default();
    opts.measure_cost = true;
    let mut probe = nflame_luajit::LuaProbe::load_with(&opts).unwrap();
    let info = probe.add_process(pid).unwrap();
    let mut namer = nflame_luajit::Namer::new();
    namer.add_process(&info).unwrap();
    let counters: Vec<_> = nflame_luajit::testing::threads(pid)
        .into_iter()
        .map(|t| nflame_luajit::testing::open_cpu_clock(t, 999).unwrap())
        .collect();
    for c in counters.iter().filter(|_| attach) {
        probe.attach(c.as_fd()).unwrap();
    }
    let t0 = std::time::Instant::now();
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    let (mut n, mut complete) = (0u64, 0u64);
    let mut naming = std::time::Duration::ZERO;
    while t0.elapsed().as_secs() < secs {
        std::thread::sleep(std::time::Duration::from_millis(100));
        namer.new_round();
        probe.drain(|raw| {
            let t = std::time::Instant::now();
            let s = namer.resolve(&raw);
            naming += t.elapsed();
            if std::env::var_os("LUA_STACKS_DEBUG").is_some()
                && s.frames
                    .iter()
                    .any(|f| f.kind == nflame_luajit::LuaFrameKind::Unreadable)
            {
                eprintln!("unreadable: {raw:x?}");
                if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/mem")) {
                    use std::os::unix::fs::FileExt;
                    for fr in &raw.frames {
                        let mut b = [0u8; 0x30];
                        let r = f.read_at(&mut b, fr.func);
                        eprintln!("  {:x}: {r:?} {b:02x?}", fr.func);
                    }
                }
            }
            n += 1;
            complete += u64::from(s.complete);
            let mut parts: Vec<String> = s
                .frames
                .iter()
                .map(|f| f.folded(lines).unwrap_or_else(|| format!("{:?}", f.kind)))
                .collect();
            parts.push(format!(
                "[{}{}]",
                s.vmstate.label(),
                if raw.status == nflame_luajit::WalkStatus::NotRunning {
                    " not running Lua"
                } else {
                    ""
                }
            ));
            *folded.entry(parts.join(";")).or_default() += 1;
        });
    }
    let mut v: Vec<_> = folded.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (k, c) in v.iter().take(30) {
        println!("{c:6} {k}");
    }
    let st = probe.stats();
    eprintln!("{n} samples, {complete} complete, {st:?}");
    eprintln!(
        "BPF walk: {} ns per run; naming: {:.2} us per sample",
        st.run_time_ns / st.runs.max(1),
        naming.as_secs_f64() * 1e6 / n.max(1) as f64
    );
}
