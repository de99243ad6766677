//! nflame-sampler: on-CPU sampling and off-CPU time with Linux perf events.
//!
//! [`record()`] opens perf counters for a [`Target`], reads their ring buffers
//! until the duration elapses, the stop flag is set, or every target has
//! exited, and returns a [`Recording`]: raw samples (pid, tid, time, CPU,
//! kind, period, kernel and user return addresses, leaf first) and, per
//! process, its comm, executable, threads and executable mappings, so that
//! frames of processes that exited during the recording can still be
//! symbolized. With [`Measure::OffCpu`] or [`Measure::Wall`], samples are
//! also the times threads spent off the CPU (blocked or preempted), each
//! with the stack it left the CPU at, and [`ProcessInfo::times`] has every
//! thread's on-CPU, blocked and preempted totals.
//!
//! # Stages
//!
//! - `sys` is the only module making system calls: it opens counters with the
//!   `perf-event-open` crate (which also maps and decodes the ring buffers),
//!   polls their fds with `poll(2)`, and forks/execs/reaps a command.
//! - `event` reduces the crate's decoded records to the few we use.
//! - `tracker` is the bookkeeping, without syscalls: target filtering (a pid
//!   set that grows on FORK/COMM records), process metadata from `/proc` at
//!   attach then from COMM/FORK/EXIT/MMAP2 records, lost-record counts, and
//!   stack interning.
//! - `offcpu` pairs context-switch records into off-CPU intervals and
//!   per-thread times; `rate` decides how many switches get a stack;
//!   `threadstate` reads where threads wait when the recording starts.
//! - `unwind` unwinds copied user stacks with DWARF call-frame information.
//! - `adapt` decides how much user stack `Auto` copies on every CPU.
//! - `record` is the loop tying them together.
//!
//! What a recording holds is plain data defined in `nflame-recording` (and
//! re-exported here); what `/proc` says about a process comes from
//! `nflame-procfs`. Docker discovery lives in `nflame-docker`: for Docker
//! targets the caller records [`Target::All`] and labels stacks by pid when
//! folding.
//!
//! # How targets are recorded
//!
//! - [`Target::Pids`] and [`Target::Command`]: one counter per (thread, CPU)
//!   with `inherit`, as `perf record -p` does, so threads and child processes
//!   started later are sampled too. For a command, counters are opened on the
//!   forked child before it `exec`s and enable themselves at the `exec`.
//!   Works without privileges for your own processes (user space only when
//!   `perf_event_paranoid` is 2). Ends when every target has exited.
//! - [`Target::All`] and [`Target::Names`]: one system-wide counter per CPU;
//!   by name, samples are kept for processes whose comm or executable basename
//!   matches, including ones that start or `exec` later, and their children.
//!
//! The event is hardware `cycles` when available, else software `cpu-clock`
//! ([`EventChoice`]); [`Recording::event`] says which. Timestamps are
//! `CLOCK_MONOTONIC` nanoseconds.
//!
//! User stacks ([`CallGraph`], in [`RecordOptions::call_graph`]): the
//! kernel's frame-pointer chain (`FramePointer`), or DWARF unwinding
//! (`Dwarf`, and `Auto`, the default): the kernel copies the user stack
//! (8 KiB by default) and registers into each sample, and the `unwind`
//! module turns them into return addresses with `framehop` and the mapped
//! binaries' `.eh_frame` *during* the recording, in the drain loop: the stack
//! bytes are dropped once a sample is unwound, so memory does not grow with
//! the copy size, and binaries are read while their process (and its mount
//! namespace) exists. `Auto` keeps the frame-pointer chain for a sample when
//! it reaches further than the DWARF unwinding did; each process's
//! [`ProcessInfo::unwind`] says which was used. Recording every CPU, `Auto`
//! copies less, then nothing, when the recorder falls behind or loses
//! samples (the `adapt` module; [`Recording::notes`] says what it chose and
//! why). Kernel stacks always come from the kernel's call chain.
//!
//! Samples cost about 64 bytes each: identical kernel and user stacks are
//! interned (`Arc<[u64]>`), so a 60 s recording of two busy CPUs at 999 Hz
//! (120k samples) takes under 10 MB, with DWARF unwinding too.
//! A process that exits is compacted a second (of sample time) later;
//! [`record_with_exited`] then hands it, with all its samples, to the caller
//! (who folds it and drops it) instead of keeping it to the end, so memory
//! follows the live processes while programs come and go.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! use nflame_sampler::{record, RecordOptions, Target};
//!
//! let mut opts = RecordOptions::new(Target::Pids(vec![1234]));
//! opts.duration = Some(Duration::from_secs(10));
//! let stop = AtomicBool::new(false); // set it from a Ctrl-C handler
//! let rec = record(&opts, &stop, |p| eprint!("\r{} samples", p.samples))?;
//! println!("{} samples on {}, {} lost", rec.samples.len(), rec.event, rec.lost);
//! # Ok::<(), nflame_sampler::Error>(())
//! ```
//!
//! # Privileges
//!
//! Root, or `CAP_PERFMON`, can record anything. Otherwise
//! `kernel.perf_event_paranoid` decides: at 2 (the usual default) only your
//! own processes, user space only (kernel sampling is then turned off
//! automatically and noted in [`Recording::notes`]); at 1 kernel too; at
//! 0 or below, system-wide.

mod adapt;
mod error;
mod event;
#[doc(hidden)]
pub mod fuzzing;
mod lua;
mod offcpu;
mod options;
mod rate;
mod record;
mod sys;
mod threadstate;
mod tracker;
mod unwind;

pub use error::Error;
pub use nflame_recording::{
    CallGraph, LuaFrame, LuaProcess, LuaStack, LuaVmState, Mapping, Measure, OffCpuInfo,
    ParseCallGraphError, ProcessInfo, RawSample, Recording, SampleKind, StopReason, ThreadTimes,
    UnwindMethod, UnwindStats, DEFAULT_STACK_BYTES, MAX_STACK_BYTES,
};
pub use options::{EventChoice, Progress, RecordOptions, Target, DEFAULT_SWITCH_RATE};
pub use record::{record, record_with_exited};
