//! Our own view of a ring-buffer record: the crate's decoded [`Record`] reduced
//! to what the recorder uses, with plain integers and owned strings.
//!
//! The bytes are decoded by `perf-event-open`; this module only selects and
//! normalises (timestamps, the kernel/user split of call chains, exec flags,
//! context-switch directions), so the bookkeeping in [`crate::tracker`] can
//! be tested without a kernel.

use std::ffi::CStr;
use std::path::PathBuf;

use perf_event_open::sample::record::ctx::Switch;
use perf_event_open::sample::record::mmap::Info;
use perf_event_open::sample::record::sample::{Abi, CallChain};
use perf_event_open::sample::record::{Record, RecordId};

use nflame_procfs::maps::makedev;

/// The user registers DWARF unwinding starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserRegs {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
}

impl UserRegs {
    /// From the registers the kernel wrote for [`crate::sys::UNWIND_REGS_MASK`]
    /// (bp, sp, ip, in bit order); `None` for 32-bit tasks or another shape.
    fn from_sample(regs: &[u64], abi: Abi) -> Option<UserRegs> {
        match (regs, abi) {
            (&[bp, sp, ip], Abi::_64) => Some(UserRegs { ip, sp, bp }),
            _ => None,
        }
    }
}

/// Which counter a ring buffer belongs to, so that its samples can be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The on-CPU sampling event (`cpu-clock`, `cycles`).
    OnCpu,
    /// The `context-switches` event: a sample is a thread leaving the CPU.
    Switch,
    /// A counter of side-band records only (no samples).
    SideBand,
}

/// A sample record, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SampleEvent {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) time: u64,
    pub(crate) cpu: u32,
    /// Event counts since the previous sample: nanoseconds for
    /// `cpu-clock`, context switches for a switch sample.
    pub(crate) period: u64,
    /// Taken as the thread left the CPU (a `context-switches` sample).
    pub(crate) at_switch: bool,
    /// Leaf first.
    pub(crate) kernel: Vec<u64>,
    /// Leaf first: the kernel's frame-pointer chain (empty when not requested).
    pub(crate) user: Vec<u64>,
    /// User registers (ip, sp, bp) at the sample, when requested and the
    /// sample hit a user task.
    pub(crate) regs: Option<UserRegs>,
    /// User stack bytes copied from `regs.sp` up (empty when not requested).
    pub(crate) stack: Vec<u8>,
}

/// A `PERF_RECORD_COMM`, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommEvent {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) time: u64,
    pub(crate) comm: String,
    pub(crate) exec: bool,
}

/// A `PERF_RECORD_MMAP2`, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MmapEvent {
    pub(crate) pid: u32,
    pub(crate) time: u64,
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) pgoff: u64,
    pub(crate) path: PathBuf,
    pub(crate) dev: Option<u64>,
    pub(crate) inode: Option<u64>,
    pub(crate) executable: bool,
}

/// A side-band or sample record, reduced. Samples, comm and mmap records
/// are boxed: a busy machine hands over hundreds of thousands of
/// context-switch records per drain, and each costs the enum's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Sample(Box<SampleEvent>),
    Comm(Box<CommEvent>),
    Fork {
        pid: u32,
        ppid: u32,
        tid: u32,
        time: u64,
    },
    Exit {
        pid: u32,
        tid: u32,
        time: u64,
    },
    Mmap(Box<MmapEvent>),
    /// `PERF_RECORD_LOST`: this many records were dropped.
    Lost {
        time: u64,
        count: u64,
        /// From the buffer of stacks at context switches: only stacks were
        /// lost, not switch records.
        stacks: bool,
    },
    /// Sampling was throttled by the kernel (`perf_cpu_time_max_percent`).
    Throttle {
        time: u64,
    },
    /// `PERF_RECORD_SWITCH(_CPU_WIDE)`: `tid` left the CPU (`out`) or came
    /// back on it; `preempt`: it left while still runnable.
    Switch {
        pid: u32,
        tid: u32,
        time: u64,
        cpu: u32,
        out: bool,
        preempt: bool,
    },
}

impl Event {
    /// Timestamp for ordering across ring buffers (0 if unknown).
    pub(crate) fn time(&self) -> u64 {
        match self {
            Event::Sample(s) => s.time,
            Event::Comm(c) => c.time,
            Event::Mmap(m) => m.time,
            Event::Fork { time, .. }
            | Event::Exit { time, .. }
            | Event::Lost { time, .. }
            | Event::Switch { time, .. }
            | Event::Throttle { time } => *time,
        }
    }

    /// Reduces a decoded record from a buffer of `source`; `None` for
    /// records we do not use.
    pub(crate) fn from_record(record: Record, source: Source) -> Option<Event> {
        fn id_time(id: &Option<RecordId>) -> u64 {
            id.as_ref().and_then(|r| r.time).unwrap_or(0)
        }
        Some(match record {
            Record::Sample(s) => {
                let s = *s;
                let task = s.record_id.task?;
                let mut kernel = Vec::new();
                let mut user = Vec::new();
                for part in s.call_chain.unwrap_or_default() {
                    match part {
                        CallChain::Kernel(v) if kernel.is_empty() => kernel = v,
                        CallChain::Kernel(v) => kernel.extend(v),
                        CallChain::User(v) if user.is_empty() => user = v,
                        CallChain::User(v) => user.extend(v),
                        _ => {}
                    }
                }
                let regs = s
                    .user_regs
                    .as_ref()
                    .and_then(|(r, abi)| UserRegs::from_sample(r, *abi));
                Event::Sample(Box::new(SampleEvent {
                    pid: task.pid,
                    tid: task.tid,
                    time: s.record_id.time.unwrap_or(0),
                    cpu: s.record_id.cpu.unwrap_or(0),
                    period: s.period.unwrap_or(1),
                    at_switch: source == Source::Switch,
                    kernel,
                    user,
                    regs,
                    stack: s.user_stack.unwrap_or_default(),
                }))
            }
            Record::Comm(c) => Event::Comm(Box::new(CommEvent {
                pid: c.task.pid,
                tid: c.task.tid,
                time: id_time(&c.record_id),
                comm: cstr_lossy(&c.comm),
                exec: c.by_execve,
            })),
            Record::Fork(f) => Event::Fork {
                pid: f.task.pid,
                ppid: f.parent_task.pid,
                tid: f.task.tid,
                time: f.time,
            },
            Record::Exit(e) => Event::Exit {
                pid: e.task.pid,
                tid: e.task.tid,
                time: e.time,
            },
            Record::Mmap(m) => {
                let (dev, inode) = match m.ext.as_ref().map(|e| &e.info) {
                    Some(Info::Device {
                        major,
                        minor,
                        inode,
                        ..
                    }) if *inode != 0 => (Some(makedev(*major, *minor)), Some(*inode)),
                    _ => (None, None),
                };
                Event::Mmap(Box::new(MmapEvent {
                    pid: m.task.pid,
                    time: id_time(&m.record_id),
                    start: m.addr,
                    len: m.len,
                    pgoff: m.page_offset,
                    path: PathBuf::from(cstr_lossy(&m.file)),
                    dev,
                    inode,
                    executable: m.executable,
                }))
            }
            Record::LostRecords(l) => Event::Lost {
                time: id_time(&l.record_id),
                count: l.lost_records,
                stacks: source == Source::Switch,
            },
            Record::LostSamples(l) => Event::Lost {
                time: id_time(&l.record_id),
                count: l.lost_samples,
                stacks: source == Source::Switch,
            },
            Record::Throttle(t) => Event::Throttle { time: t.time },
            Record::CtxSwitch(c) => {
                let id = c.record_id.as_ref()?;
                let task = id.task.as_ref()?;
                let (out, preempt) = match c.info {
                    Switch::OutTo { preempt, .. } => (true, preempt),
                    Switch::InFrom(_) => (false, false),
                };
                Event::Switch {
                    pid: task.pid,
                    tid: task.tid,
                    time: id.time.unwrap_or(0),
                    cpu: id.cpu.unwrap_or(0),
                    out,
                    preempt,
                }
            }
            _ => return None,
        })
    }
}

fn cstr_lossy(c: &CStr) -> String {
    String::from_utf8_lossy(c.to_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use perf_event_open::sample::record::comm::Comm;
    use perf_event_open::sample::record::lost::LostRecords;
    use perf_event_open::sample::record::mmap::{Ext, Mmap};
    use perf_event_open::sample::record::sample::Sample;
    use perf_event_open::sample::record::task::{Exit, Fork};
    use perf_event_open::sample::record::Task;

    use super::*;

    fn ev(r: Record) -> Option<Event> {
        Event::from_record(r, Source::OnCpu)
    }

    fn rid(pid: u32, tid: u32, time: u64, cpu: u32) -> RecordId {
        RecordId {
            id: None,
            stream_id: None,
            cpu: Some(cpu),
            task: Some(Task { pid, tid }),
            time: Some(time),
        }
    }

    fn sample(chain: Vec<CallChain>) -> Record {
        Record::Sample(Box::new(Sample {
            record_id: rid(10, 11, 1234, 1),
            stat: None,
            period: Some(1_001_001),
            cgroup: None,
            call_chain: Some(chain),
            user_stack: None,
            data_addr: None,
            data_phys_addr: None,
            data_page_size: None,
            data_source: None,
            code_addr: None,
            code_page_size: None,
            user_regs: None,
            intr_regs: None,
            raw: None,
            lbr: None,
            aux: None,
            txn: None,
            weight: None,
        }))
    }

    #[test]
    fn sample_splits_kernel_and_user_leaf_first() {
        let ev = ev(sample(vec![
            CallChain::Kernel(vec![0xffff_8000_0000_0010, 0xffff_8000_0000_0020]),
            CallChain::User(vec![0x401000, 0x402000, 0x403000]),
        ]))
        .unwrap();
        assert_eq!(
            ev,
            Event::Sample(Box::new(SampleEvent {
                pid: 10,
                tid: 11,
                time: 1234,
                cpu: 1,
                period: 1_001_001,
                at_switch: false,
                kernel: vec![0xffff_8000_0000_0010, 0xffff_8000_0000_0020],
                user: vec![0x401000, 0x402000, 0x403000],
                regs: None,
                stack: Vec::new(),
            }))
        );
    }

    /// Context-switch records come by the hundred thousand per drain.
    #[test]
    fn events_are_small() {
        assert!(
            std::mem::size_of::<Event>() <= 32,
            "{}",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn sample_carries_user_registers_and_stack() {
        let Record::Sample(mut s) = sample(vec![CallChain::User(vec![0x401000])]) else {
            unreachable!()
        };
        s.user_regs = Some((vec![0x7ffd_0100, 0x7ffd_0000, 0x401000], Abi::_64));
        s.user_stack = Some(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let Some(Event::Sample(s)) = ev(Record::Sample(s)) else {
            panic!("not a sample")
        };
        let SampleEvent { regs, stack, .. } = *s;
        assert_eq!(
            regs,
            Some(UserRegs {
                ip: 0x401000,
                sp: 0x7ffd_0000,
                bp: 0x7ffd_0100
            })
        );
        assert_eq!(stack, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn sample_ignores_guest_and_unknown_contexts() {
        let ev = ev(sample(vec![
            CallChain::Guest(vec![1]),
            CallChain::User(vec![2]),
            CallChain::Unknown(vec![3]),
        ]))
        .unwrap();
        let Event::Sample(s) = ev else {
            panic!("not a sample")
        };
        let SampleEvent { kernel, user, .. } = *s;
        assert!(kernel.is_empty());
        assert_eq!(user, vec![2]);
    }

    #[test]
    fn comm_fork_exit_lost() {
        let c = ev(Record::Comm(Box::new(Comm {
            record_id: Some(rid(5, 5, 77, 0)),
            by_execve: true,
            task: Task { pid: 5, tid: 5 },
            comm: CString::new("nginx").unwrap(),
        })));
        assert_eq!(
            c,
            Some(Event::Comm(Box::new(CommEvent {
                pid: 5,
                tid: 5,
                time: 77,
                comm: "nginx".into(),
                exec: true
            })))
        );
        let f = ev(Record::Fork(Box::new(Fork {
            record_id: None,
            task: Task { pid: 6, tid: 6 },
            parent_task: Task { pid: 5, tid: 5 },
            time: 80,
        })));
        assert_eq!(
            f,
            Some(Event::Fork {
                pid: 6,
                ppid: 5,
                tid: 6,
                time: 80
            })
        );
        let e = ev(Record::Exit(Box::new(Exit {
            record_id: None,
            task: Task { pid: 6, tid: 7 },
            parent_task: Task { pid: 5, tid: 5 },
            time: 90,
        })));
        assert_eq!(
            e,
            Some(Event::Exit {
                pid: 6,
                tid: 7,
                time: 90
            })
        );
        let l = ev(Record::LostRecords(Box::new(LostRecords {
            record_id: Some(rid(0, 0, 95, 0)),
            id: 1,
            lost_records: 42,
        })));
        assert_eq!(
            l,
            Some(Event::Lost {
                time: 95,
                count: 42,
                stacks: false
            })
        );
    }

    #[test]
    fn mmap2_carries_device_and_inode() {
        let m = ev(Record::Mmap(Box::new(Mmap {
            record_id: Some(rid(5, 5, 60, 0)),
            executable: true,
            task: Task { pid: 5, tid: 5 },
            addr: 0x7f00_0000_0000,
            len: 0x1000,
            file: CString::new("/usr/lib/libc.so.6").unwrap(),
            page_offset: 0x28000,
            ext: Some(Ext {
                prot: 5,
                flags: 2,
                info: Info::Device {
                    major: 8,
                    minor: 1,
                    inode: 99,
                    inode_gen: 0,
                },
            }),
        })));
        assert_eq!(
            m,
            Some(Event::Mmap(Box::new(MmapEvent {
                pid: 5,
                time: 60,
                start: 0x7f00_0000_0000,
                len: 0x1000,
                pgoff: 0x28000,
                path: PathBuf::from("/usr/lib/libc.so.6"),
                dev: Some(0x801),
                inode: Some(99),
                executable: true,
            })))
        );
    }
}
