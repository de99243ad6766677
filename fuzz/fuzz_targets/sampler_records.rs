//! The recorder's handling of ring-buffer records: decoded records (as
//! `perf-event-open` hands them over) reduced to events and fed to the
//! bookkeeping (targets, processes, mappings, interned stacks, lost counts),
//! with DWARF unwinding of copied user stacks against real binaries (this
//! fuzzer's own mappings) when the first byte says so, and off-CPU time
//! from context-switch records when it says so.
#![no_main]

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use nflame_sampler::fuzzing::{replay, FakeProcess, ReplayOptions};
use perf_event_open::sample::record::comm::Comm;
use perf_event_open::sample::record::ctx::{CtxSwitch, Switch};
use perf_event_open::sample::record::lost::{LostRecords, LostSamples};
use perf_event_open::sample::record::mmap::{Ext, Info, Mmap};
use perf_event_open::sample::record::sample::{Abi, CallChain, Sample};
use perf_event_open::sample::record::task::{Exit, Fork};
use perf_event_open::sample::record::throttle::Throttle;
use perf_event_open::sample::record::{Record, RecordId, Task};

#[derive(Debug, Arbitrary)]
enum Chain {
    Kernel(Vec<u64>),
    User(Vec<u64>),
    Guest(Vec<u64>),
}

#[derive(Debug, Arbitrary)]
enum Rec {
    Sample {
        pid: u8,
        tid: u8,
        time: Option<u64>,
        cpu: Option<u32>,
        period: Option<u64>,
        chain: Option<Vec<Chain>>,
        /// (ip offset into our text, sp, bp, 64-bit ABI)
        regs: Option<(u64, u64, u64, bool)>,
        stack: Option<Vec<u8>>,
        /// Rebase the user chain onto our text (so it resolves).
        rebase: bool,
    },
    Comm {
        pid: u8,
        tid: u8,
        comm: Vec<u8>,
        exec: bool,
    },
    Fork {
        pid: u8,
        ppid: u8,
        tid: u8,
        time: u64,
    },
    Exit {
        pid: u8,
        tid: u8,
        time: u64,
    },
    Mmap {
        pid: u8,
        addr: u64,
        len: u64,
        file: Vec<u8>,
        pgoff: u64,
        executable: bool,
        dev: Option<(u32, u32, u64)>,
    },
    Lost(u64),
    LostSamples(u64),
    Throttle(u64),
    Switch {
        pid: u8,
        tid: u8,
        time: Option<u64>,
        cpu: Option<u32>,
        out: bool,
        preempt: bool,
        /// The other task, as system-wide records give it.
        other: Option<(u8, u8)>,
    },
}

/// This process's text mapping (start, end) and maps text.
fn own() -> &'static ((u64, u64), String) {
    static OWN: OnceLock<((u64, u64), String)> = OnceLock::new();
    OWN.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let text = maps
            .lines()
            .find(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
            .and_then(|l| {
                let (s, e) = l.split_whitespace().next()?.split_once('-')?;
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                ))
            })
            .unwrap_or((0x1000, 0x2000));
        (text, maps)
    })
}

fn pid(p: u8) -> u32 {
    u32::from(p % 8)
}

fn rid(pid: u32, tid: u32, time: Option<u64>, cpu: Option<u32>) -> RecordId {
    RecordId {
        id: None,
        stream_id: None,
        cpu,
        task: Some(Task { pid, tid }),
        time,
    }
}

fn cstring(mut b: Vec<u8>) -> CString {
    b.retain(|&c| c != 0);
    CString::new(b).expect("no NUL")
}

fn record(r: Rec) -> Record {
    let ((text_start, text_end), _) = own();
    let text_len = (text_end - text_start).max(1);
    match r {
        Rec::Sample {
            pid: p,
            tid,
            time,
            cpu,
            period,
            chain,
            regs,
            stack,
            rebase,
        } => {
            let call_chain = chain.map(|parts| {
                parts
                    .into_iter()
                    .map(|c| match c {
                        Chain::Kernel(v) => CallChain::Kernel(v),
                        Chain::User(v) if rebase => CallChain::User(
                            v.into_iter().map(|a| text_start + a % text_len).collect(),
                        ),
                        Chain::User(v) => CallChain::User(v),
                        Chain::Guest(v) => CallChain::Guest(v),
                    })
                    .collect()
            });
            let user_regs = regs.map(|(ip, sp, bp, abi64)| {
                let abi = if abi64 { Abi::_64 } else { Abi::_32 };
                (vec![bp, sp, text_start + ip % text_len], abi)
            });
            Record::Sample(Box::new(Sample {
                record_id: rid(pid(p), pid(tid), time, cpu),
                stat: None,
                period,
                cgroup: None,
                call_chain,
                user_stack: stack,
                data_addr: None,
                data_phys_addr: None,
                data_page_size: None,
                data_source: None,
                code_addr: None,
                code_page_size: None,
                user_regs,
                intr_regs: None,
                raw: None,
                lbr: None,
                aux: None,
                txn: None,
                weight: None,
            }))
        }
        Rec::Comm {
            pid: p,
            tid,
            comm,
            exec,
        } => Record::Comm(Box::new(Comm {
            record_id: Some(rid(pid(p), pid(tid), None, None)),
            by_execve: exec,
            task: Task {
                pid: pid(p),
                tid: pid(tid),
            },
            comm: cstring(comm),
        })),
        Rec::Fork {
            pid: p,
            ppid,
            tid,
            time,
        } => Record::Fork(Box::new(Fork {
            record_id: None,
            task: Task {
                pid: pid(p),
                tid: pid(tid),
            },
            parent_task: Task {
                pid: pid(ppid),
                tid: pid(ppid),
            },
            time,
        })),
        Rec::Exit { pid: p, tid, time } => Record::Exit(Box::new(Exit {
            record_id: None,
            task: Task {
                pid: pid(p),
                tid: pid(tid),
            },
            parent_task: Task { pid: 0, tid: 0 },
            time,
        })),
        Rec::Mmap {
            pid: p,
            addr,
            len,
            file,
            pgoff,
            executable,
            dev,
        } => Record::Mmap(Box::new(Mmap {
            record_id: None,
            executable,
            task: Task {
                pid: pid(p),
                tid: pid(p),
            },
            addr,
            len,
            file: cstring(file),
            page_offset: pgoff,
            ext: dev.map(|(major, minor, inode)| Ext {
                prot: 5,
                flags: 2,
                info: Info::Device {
                    major,
                    minor,
                    inode,
                    inode_gen: 0,
                },
            }),
        })),
        Rec::Lost(n) => Record::LostRecords(Box::new(LostRecords {
            record_id: None,
            id: 1,
            lost_records: n,
        })),
        Rec::LostSamples(n) => Record::LostSamples(Box::new(LostSamples {
            record_id: None,
            lost_samples: n,
        })),
        Rec::Throttle(time) => Record::Throttle(Box::new(Throttle {
            record_id: None,
            time,
            id: 1,
            stream_id: 1,
        })),
        Rec::Switch {
            pid: p,
            tid,
            time,
            cpu,
            out,
            preempt,
            other,
        } => {
            let task = other.map(|(p, t)| Task {
                pid: pid(p),
                tid: pid(t),
            });
            Record::CtxSwitch(Box::new(CtxSwitch {
                record_id: Some(rid(pid(p), pid(tid), time, cpu)),
                info: if out {
                    Switch::OutTo { task, preempt }
                } else {
                    Switch::InFrom(task)
                },
            }))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let mut records = Vec::new();
    while !u.is_empty() && records.len() < 256 {
        match Rec::arbitrary(&mut u) {
            Ok(r) => records.push(record(r)),
            Err(_) => break,
        }
    }
    let (_, maps) = own();
    let procs = vec![
        FakeProcess {
            pid: 1,
            comm: "nginx".into(),
            exe: Some(PathBuf::from("/usr/sbin/nginx")),
            maps: maps.clone(),
        },
        FakeProcess {
            pid: 2,
            comm: "docker-proxy".into(),
            exe: None,
            maps: "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/docker-proxy\n".into(),
        },
    ];
    let opts = ReplayOptions {
        names: if flags & 1 != 0 {
            vec!["nginx".into(), "a-very-long-process-name".into()]
        } else {
            Vec::new()
        },
        attached: flags & 2 != 0,
        dwarf: flags & 4 != 0,
        targets: if flags & 8 != 0 {
            vec![1, 3]
        } else {
            Vec::new()
        },
        off_cpu: flags & 16 != 0,
    };
    let (samples, processes, _lost) = replay(&opts, &procs, records);
    // Off the CPU, the samples' time never exceeds the threads' totals
    // (the time of switches without a stack is shared, not invented), and
    // no thread spends more than its span on and off the CPU.
    let sampled: u128 = samples
        .iter()
        .filter(|s| s.kind.is_off_cpu())
        .map(|s| u128::from(s.period))
        .sum();
    let total: u128 = processes
        .iter()
        .flat_map(|p| p.times.values())
        .map(|t| u128::from(t.off_cpu()))
        .sum();
    assert!(sampled <= total, "{sampled} ns sampled, {total} ns off the CPU");
    for t in processes.iter().flat_map(|p| p.times.values()) {
        // (A saturated span, of times near 2^64, bounds nothing.)
        assert!(
            u128::from(t.on_cpu) + u128::from(t.off_cpu()) <= u128::from(t.span)
                || t.span == u64::MAX,
            "{t:?}"
        );
    }
    assert!(samples.windows(2).all(|w| w[0].time <= w[1].time));
    for p in &processes {
        // Mappings stay sorted and without overlaps.
        assert!(
            p.mappings.windows(2).all(|w| w[0].end <= w[1].start),
            "overlapping mappings: {:?}",
            p.mappings
        );
    }
});
