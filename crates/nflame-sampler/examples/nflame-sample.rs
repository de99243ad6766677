//! Records and prints a summary: `nflame-sample [--all | --name N | --pid P | -- CMD...] [SECONDS]`.
//! `NFLAME_FREQ` and `NFLAME_PAGES` override the frequency and ring pages.

use std::ffi::OsString;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nflame_sampler::{record, RecordOptions, Target};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut it = args.iter();
    let mut secs = None;
    let target = match it.next().and_then(|a| a.to_str()) {
        Some("--all") => Target::All,
        Some("--name") => Target::Names(vec![it.next().ok_or("name")?.to_string_lossy().into()]),
        Some("--pid") => Target::Pids(vec![it.next().ok_or("pid")?.to_string_lossy().parse()?]),
        Some("--") => Target::Command(it.by_ref().cloned().collect()),
        _ => {
            return Err(
                "usage: nflame-sample [--all | --name N | --pid P | -- CMD...] [SECONDS]".into(),
            )
        }
    };
    if let Some(s) = it.next() {
        secs = Some(Duration::from_secs_f64(s.to_string_lossy().parse()?));
    }
    let mut opts = RecordOptions::new(target);
    opts.duration = secs;
    // Overrides for experiments.
    if let Some(f) = std::env::var("NFLAME_FREQ")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.frequency = f;
    }
    if let Some(p) = std::env::var("NFLAME_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.ring_pages = p;
    }
    let stop = AtomicBool::new(false);
    let rec = record(&opts, &stop, |p| {
        eprint!(
            "\r{:>6.1}s {} samples, {} lost, {} processes   ",
            p.elapsed.as_secs_f64(),
            p.samples,
            p.lost,
            p.processes
        )
    })?;
    eprintln!();
    println!(
        "event {} freq {} duration {:.3}s samples {} lost {} stop {:?} status {:?}",
        rec.event,
        rec.frequency,
        rec.duration.as_secs_f64(),
        rec.samples.len(),
        rec.lost,
        rec.stop_reason,
        rec.command_status
    );
    for n in &rec.notes {
        println!("note: {n}");
    }
    for p in rec.processes.values() {
        let n = rec.samples.iter().filter(|s| s.pid == p.pid).count();
        println!(
            "pid {} {:?} exe {:?} samples {} threads {} mappings {} exited {}",
            p.pid,
            p.comm,
            p.exe,
            n,
            p.threads.len(),
            p.mappings.len(),
            p.exited
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for l in status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
    {
        println!("{l}");
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..]
        .split(' ')
        .collect();
    println!(
        "self cpu ticks (1/100 s): user {} sys {}",
        f.get(11).unwrap_or(&"?"),
        f.get(12).unwrap_or(&"?")
    );
    if let Some(s) = rec.samples.first() {
        println!("first sample: {s:?}");
    }
    Ok(())
}
