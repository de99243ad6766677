//! Entry points for the fuzz targets in `fuzz/` (not part of the API): the
//! bookkeeping that ring-buffer records feed, reachable without a kernel.

use std::collections::HashMap;
use std::path::PathBuf;

use perf_event_open::sample::record::Record;

use crate::event::{Event, Source};
use crate::tracker::{Filter, StackMode, Tracker};
use crate::unwind::DwarfUnwinder;
use nflame_procfs::maps::parse_maps;
use nflame_procfs::process::{ProcSource, Snapshot};
use nflame_recording::{ProcessInfo, RawSample};

/// A process as a fake `/proc` shows it: pid, comm, exe and maps text.
#[derive(Debug, Clone)]
pub struct FakeProcess {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// `/proc/PID/exe`.
    pub exe: Option<PathBuf>,
    /// `/proc/PID/maps`.
    pub maps: String,
}

#[derive(Debug)]
struct FakeProc(HashMap<u32, Snapshot>);

impl ProcSource for FakeProc {
    fn snapshot(&self, pid: u32) -> Option<Snapshot> {
        self.0.get(&pid).cloned()
    }
    fn comm_and_exe(&self, pid: u32) -> Option<(String, Option<PathBuf>)> {
        self.0.get(&pid).map(|s| (s.comm.clone(), s.exe.clone()))
    }
    fn is_alive(&self, pid: u32) -> bool {
        self.0.contains_key(&pid)
    }
}

/// Which samples [`replay`] keeps and how it makes user stacks.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Keep processes with these names (system-wide by name); empty keeps all.
    pub names: Vec<String>,
    /// Per-task counters (`--pid`) rather than system-wide.
    pub attached: bool,
    /// Unwind copied stacks with DWARF (reading the mapped files).
    pub dwarf: bool,
    /// Targets registered before the records, as `--pid` does.
    pub targets: Vec<u32>,
    /// Record off-CPU time: samples are stacks taken at context switches,
    /// and switch records count.
    pub off_cpu: bool,
}

/// Replays decoded ring-buffer records through the recorder's reduction
/// (`Event`) and bookkeeping, as the drain loop does (in timestamp order),
/// with `procs` as `/proc`; returns the samples and processes a recording
/// would hold and the lost count.
pub fn replay(
    opts: &ReplayOptions,
    procs: &[FakeProcess],
    records: Vec<Record>,
) -> (Vec<RawSample>, Vec<ProcessInfo>, u64) {
    let table = procs
        .iter()
        .map(|p| {
            let snap = Snapshot {
                comm: p.comm.clone(),
                exe: p.exe.clone(),
                mappings: parse_maps(&p.maps),
                threads: [(p.pid, p.comm.clone())].into_iter().collect(),
            };
            (p.pid, snap)
        })
        .collect();
    let filter = if opts.attached {
        Filter::Attached
    } else if opts.names.is_empty() {
        Filter::All
    } else {
        Filter::Names(opts.names.clone())
    };
    let mut tracker = Tracker::new(filter, FakeProc(table), u32::MAX);
    if opts.dwarf {
        tracker.set_unwinding(
            StackMode::Auto { requested: 16384 },
            Box::new(DwarfUnwinder::default()),
        );
    }
    for &pid in &opts.targets {
        tracker.add_target(pid);
    }
    let source = if opts.off_cpu {
        tracker.record_off_cpu(0, 0);
        Source::Switch
    } else {
        Source::OnCpu
    };
    let mut events: Vec<Event> = records
        .into_iter()
        .filter_map(|r| Event::from_record(r, source))
        .collect();
    events.sort_by_key(Event::time);
    if opts.off_cpu {
        tracker.set_end(events.last().map_or(0, Event::time));
    }
    for ev in events {
        tracker.handle(ev);
    }
    let outcome = tracker.finish();
    (
        outcome.samples,
        outcome.processes.into_values().collect(),
        outcome.lost,
    )
}
