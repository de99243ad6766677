//! Records processes, folds them, and prints how complete and how well named
//! their stacks are, with the time each stage took (for `scripts/bench-dwarf.sh`).
//!
//! `nflame-unwind [--call-graph fp|dwarf|dwarf,BYTES|auto] [--freq HZ] [--out FILE] SECONDS PID...`
//!
//! Prints one `key=value` line per process and a `total` line:
//! `samples`, `user_stacks`, `complete` (share of user stacks reaching a
//! thread's outermost frame), `named_user` (share of user frames named),
//! `truncated`, the unwinding method chosen, and `record_cpu_s` (CPU time of
//! this process while recording: draining and unwinding), `fold_s`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use nflame_sampler::{record, CallGraph, RawSample, RecordOptions, Recording, Target};
use nflame_symbolizer::{fold, fold_with, warm_up, FoldOptions};

fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid, exclusively borrowed struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut call_graph = CallGraph::Auto;
    let mut freq = 999;
    let mut out = None;
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--call-graph" => call_graph = args.next().ok_or("--call-graph VALUE")?.parse()?,
            "--freq" => freq = args.next().ok_or("--freq HZ")?.parse()?,
            "--out" => out = Some(args.next().ok_or("--out FILE")?),
            _ => rest.push(a),
        }
    }
    let usage = "usage: nflame-unwind [--call-graph G] [--freq HZ] [--out FILE] SECONDS PID...";
    let secs: f64 = rest.first().ok_or(usage)?.parse()?;
    let pids: Vec<u32> = rest[1..]
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    if pids.is_empty() {
        return Err(usage.into());
    }
    let mut opts = RecordOptions::new(Target::Pids(pids));
    opts.duration = Some(Duration::from_secs_f64(secs));
    opts.frequency = freq;
    opts.call_graph = call_graph;
    let stop = AtomicBool::new(false);
    let cpu0 = cpu_seconds();
    // As `nflame record` does: kernel symbols load while sampling runs.
    let prepared = warm_up(&FoldOptions::default());
    let rec = record(&opts, &stop, |_| {})?;
    let record_cpu = cpu_seconds() - cpu0;
    let t = Instant::now();
    let (profile, stats) = fold_with(&rec, &FoldOptions::default(), &prepared)?;
    let fold_s = t.elapsed().as_secs_f64();
    if let Some(path) = out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        profile.write_folded(&mut f)?;
    }
    let mut by_pid: BTreeMap<u32, Vec<RawSample>> = BTreeMap::new();
    for s in &rec.samples {
        by_pid.entry(s.pid).or_default().push(s.clone());
    }
    for (pid, samples) in by_pid {
        let Some(info) = rec.processes.get(&pid) else {
            continue;
        };
        let one = Recording {
            samples,
            processes: BTreeMap::from([(pid, info.clone())]),
            ..Recording::default()
        };
        let (_, s) = fold(&one, &FoldOptions::default())?;
        println!(
            "pid={pid} comm={} samples={} user_stacks={} complete={:.4} named_user={:.4} \
             truncated={} method={} dwarf={} fp={}",
            info.comm,
            s.samples,
            s.user_stacks,
            s.complete_user_share(),
            s.named_user_share(),
            s.truncated_stacks,
            info.unwind.method().map_or("-", |m| m.name()),
            info.unwind.dwarf,
            info.unwind.frame_pointer,
        );
    }
    println!(
        "total samples={} lost={} complete={:.4} named_user={:.4} truncated={} \
         stack_bytes={} record_cpu_s={record_cpu:.3} fold_s={fold_s:.3} duration_s={:.2}",
        stats.samples,
        rec.lost,
        stats.complete_user_share(),
        stats.named_user_share(),
        stats.truncated_stacks,
        rec.stack_bytes,
        rec.duration.as_secs_f64(),
    );
    Ok(())
}
