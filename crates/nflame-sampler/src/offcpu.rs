//! Off-CPU time from context switches, free of syscalls.
//!
//! It follows each recorded thread through the kernel's switch records
//! (`PERF_RECORD_SWITCH`, or `_CPU_WIDE` system-wide): a switch-out starts an
//! off-CPU interval, the thread's next switch-in ends it. The stack of the
//! interval is the one the kernel took at the switch-out, in a sample of the
//! `context-switches` software event that arrives just before the switch-out
//! record; it is blocked time, or preempted time when the switch-out record
//! says the thread was still runnable (`PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`).
//!
//! Above a rate, the kernel takes a stack at only some switches (every Nth,
//! N adapted to a frequency). Every switch still has its records, so the
//! duration of every interval is known, only not its stack. The time is
//! then estimated by post-stratification: intervals are classed by kind and
//! by duration (powers of two), each class's exact total is known, and it
//! is shared among the class's intervals that have a stack, in proportion
//! to their durations ([`Stratum::scale`]). A class without any stack keeps
//! its time apart (the caller shows it without a stack). Scaling each
//! sampled interval by N instead would be unbiased only if the sampled
//! switches were like the others, and they are not: taking a stack and
//! waking the recorder lengthen the very interval that was sampled (on a
//! pipe ping-pong, such an estimate came out 8 times too high).
//! Per-thread totals ([`ThreadTimes`]) are exact whatever the sampling.
//!
//! Edges of the recording: a thread that existed at the start (listed from
//! `/proc` then) and whose first record is a switch-in was off the CPU since
//! the start (the stack and state read from `/proc` tell where and how, when
//! that snapshot is older than the switch-in); one whose first record is a
//! switch-out ran since the start; a thread still off at the end is off
//! until the end; a thread with no record at all spent the whole recording
//! as its snapshot found it. A thread's span runs from the start (or its
//! creation) to the end (or its exit). A thread neither there at the start
//! nor seen created starts at its first record: on a busy machine, some
//! processes' creation records come late or not at all (measured: `sh`
//! children of a build, system-wide), and taking them for threads running
//! since the start counted 120 s on two CPUs in 30 s. Lost records break an
//! interval: its time goes in no total and is counted in
//! [`OffCpuInfo::broken`].
//!
//! It owns no stacks: `S` is whatever the caller keeps them as.

use rustc_hash::{FxHashMap, FxHashSet};

use nflame_recording::{OffCpuInfo, SampleKind, ThreadTimes};

/// A closed off-CPU interval that carries a stack (or was off since the
/// start with no stack known), for the caller to record as a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval<S> {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    /// When the thread left the CPU (or the start of the recording).
    pub(crate) time: u64,
    pub(crate) cpu: u32,
    pub(crate) kind: SampleKind,
    /// Nanoseconds off the CPU.
    pub(crate) duration: u64,
    /// `None`: off since the start, where is unknown.
    pub(crate) stack: Option<S>,
    /// The class whose time this interval shares ([`Stratum::scale`]);
    /// `None` for the edges of the recording, which count as they are.
    pub(crate) stratum: Option<u8>,
}

/// One class of a thread's off-CPU intervals: a kind and a duration range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stratum {
    /// Bit 7: preempted; bits 0-6: the bit length of the duration in ns
    /// (durations from 2^(k-1) to 2^k - 1).
    pub(crate) key: u8,
    /// Nanoseconds in every interval of the class.
    pub(crate) total: u64,
    /// Nanoseconds in its intervals that have a stack.
    pub(crate) sampled: u64,
    /// Intervals in the class.
    pub(crate) intervals: u64,
}

impl Stratum {
    /// The class of an interval.
    pub(crate) fn key(kind: SampleKind, duration: u64) -> u8 {
        let bits = (64 - duration.leading_zeros()) as u8;
        match kind {
            SampleKind::Preempted => 0x80 | bits,
            _ => bits,
        }
    }

    /// The kind of the class's intervals.
    pub(crate) fn kind(&self) -> SampleKind {
        if self.key & 0x80 != 0 {
            SampleKind::Preempted
        } else {
            SampleKind::Blocked
        }
    }

    /// The share of the class's time of `duration` ns of sampled intervals.
    pub(crate) fn scale(&self, duration: u64) -> u64 {
        if self.sampled == 0 {
            return duration;
        }
        (u128::from(duration) * u128::from(self.total) / u128::from(self.sampled))
            .min(u128::from(u64::MAX)) as u64
    }
}

/// How a thread was found when the recording started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Initial<S> {
    /// It existed; where it was is not (yet) known.
    Exists,
    /// On a CPU, or about to be.
    Running,
    /// Off the CPU (`kind`), with the stack read from `/proc` if any.
    Off { kind: SampleKind, stack: Option<S> },
}

#[derive(Debug)]
enum State<S> {
    /// No record seen yet.
    Unknown,
    On {
        since: u64,
    },
    Off {
        since: u64,
        kind: SampleKind,
        cpu: u32,
        stack: Option<S>,
    },
    /// Created during the recording and not yet run.
    Starting {
        since: u64,
    },
    /// Exited at this time.
    Dead {
        at: u64,
    },
}

#[derive(Debug)]
struct Thread<S> {
    pid: u32,
    /// Start of its span.
    born: u64,
    state: State<S>,
    times: ThreadTimes,
    strata: Vec<Stratum>,
    /// The last stack sample taken at a switch-out: (time, stack).
    pending: Option<(u64, S)>,
    /// The `/proc` snapshot at the start, with the time it was read.
    initial: Option<(u64, Initial<S>)>,
}

/// A thread's final accounts: pid, tid, times, classes of intervals.
pub(crate) type Accounts = (u32, u32, ThreadTimes, Vec<Stratum>);

/// Per-thread switch bookkeeping for one recording.
#[derive(Debug)]
pub(crate) struct OffCpu<S> {
    start: u64,
    min_block: u64,
    threads: FxHashMap<u32, Thread<S>>,
    info: OffCpuInfo,
    intervals: Vec<Interval<S>>,
    /// Threads that exited, for the caller to collect.
    finished: Vec<Accounts>,
    /// Exits since dead threads were last purged.
    exits: usize,
    latest: u64,
}

/// How long a dead thread's entry is kept to swallow its last switch-out
/// (system-wide, the kernel reports the final switch after the exit).
const DEAD_GRACE_NS: u64 = 1_000_000_000;

/// Where closed intervals go.
struct Sink<'a, S> {
    min_block: u64,
    intervals: &'a mut Vec<Interval<S>>,
}

impl<S> Sink<'_, S> {
    /// Accounts an off-CPU interval of `t` from `since` to `end`: in the
    /// thread's times and, at least `min_block` long, in its class (a
    /// switch-out interval) or as an interval of its own (an edge).
    #[allow(clippy::too_many_arguments)]
    fn close(
        &mut self,
        t: &mut Thread<S>,
        tid: u32,
        since: u64,
        end: u64,
        kind: SampleKind,
        cpu: u32,
        stack: Option<S>,
        switched: bool,
    ) {
        let d = end.saturating_sub(since);
        add_off(&mut t.times, kind, d);
        if d < self.min_block || d == 0 {
            return;
        }
        let stratum = switched.then(|| {
            let key = Stratum::key(kind, d);
            let i = match t.strata.iter().position(|s| s.key == key) {
                Some(i) => i,
                None => {
                    t.strata.push(Stratum {
                        key,
                        ..Stratum::default()
                    });
                    t.strata.len() - 1
                }
            };
            let s = &mut t.strata[i];
            s.total = s.total.saturating_add(d);
            s.intervals += 1;
            if stack.is_some() {
                s.sampled = s.sampled.saturating_add(d);
            }
            key
        });
        if switched && stack.is_none() {
            return;
        }
        self.intervals.push(Interval {
            pid: t.pid,
            tid,
            time: since,
            cpu,
            kind,
            duration: d,
            stack,
            stratum,
        });
    }
}

impl<S: Clone> OffCpu<S> {
    /// Starts the bookkeeping of a recording that started at `start`
    /// (`CLOCK_MONOTONIC` ns); intervals shorter than `min_block` ns give
    /// no [`Interval`] and are in no [`Stratum`].
    pub(crate) fn new(start: u64, min_block: u64) -> Self {
        OffCpu {
            start,
            min_block,
            threads: FxHashMap::default(),
            info: OffCpuInfo::default(),
            intervals: Vec::new(),
            finished: Vec::new(),
            exits: 0,
            latest: start,
        }
    }

    /// What `/proc` said about a thread when the recording started (read at
    /// `time`). Ignored once the thread has records.
    pub(crate) fn initial(&mut self, pid: u32, tid: u32, time: u64, initial: Initial<S>) {
        let t = thread(&mut self.threads, self.start, pid, tid);
        if matches!(t.state, State::Unknown) {
            t.initial = Some((time, initial));
        }
    }

    /// A stack sample taken as `tid` was leaving the CPU.
    pub(crate) fn sample(&mut self, pid: u32, tid: u32, time: u64, stack: S) {
        self.latest = self.latest.max(time);
        let t = thread(&mut self.threads, self.start, pid, tid);
        if !matches!(t.state, State::Dead { .. }) {
            t.pending = Some((time, stack));
        }
    }

    /// `tid` left the CPU at `time`; `preempt`: it was still runnable.
    pub(crate) fn switch_out(&mut self, pid: u32, tid: u32, time: u64, cpu: u32, preempt: bool) {
        self.latest = self.latest.max(time);
        let t = thread(&mut self.threads, self.start, pid, tid);
        let ran_since = match t.state {
            State::Dead { .. } => return,
            State::On { since } => Some(since),
            // It ran since the start; or, not there at the start and not
            // seen created (a record missing), since when is unknown.
            State::Unknown if t.initial.is_some() => Some(t.born),
            State::Unknown => {
                t.born = time;
                Some(time)
            }
            State::Starting { since } => Some(since),
            // The switch-in in between was lost.
            State::Off { .. } => None,
        };
        match ran_since {
            Some(since) => t.times.on_cpu += time.saturating_sub(since),
            None => self.info.broken += 1,
        }
        t.times.switches += 1;
        let since = ran_since.unwrap_or(0);
        let stack = match t.pending.take() {
            Some((at, stack)) if at >= since && at <= time => Some(stack),
            _ => None,
        };
        self.info.switches += 1;
        self.info.sampled += u64::from(stack.is_some());
        let kind = if preempt {
            SampleKind::Preempted
        } else {
            SampleKind::Blocked
        };
        t.state = State::Off {
            since: time,
            kind,
            cpu,
            stack,
        };
    }

    /// `tid` came back on a CPU at `time`.
    pub(crate) fn switch_in(&mut self, pid: u32, tid: u32, time: u64) {
        self.latest = self.latest.max(time);
        let mut sink = Sink {
            min_block: self.min_block,
            intervals: &mut self.intervals,
        };
        let t = thread(&mut self.threads, self.start, pid, tid);
        let state = std::mem::replace(&mut t.state, State::On { since: time });
        match state {
            State::Dead { at } => t.state = State::Dead { at },
            State::Off {
                since,
                kind,
                cpu,
                stack,
            } => sink.close(t, tid, since, time, kind, cpu, stack, true),
            State::Unknown => {
                // Off since the start: the snapshot tells how, if it was
                // read before this switch-in. A thread not there at the
                // start and not seen created starts its span here.
                let (kind, stack) = match t.initial.take() {
                    Some((at, Initial::Off { kind, stack })) if at <= time => (kind, stack),
                    Some(_) => (SampleKind::Blocked, None),
                    None => {
                        t.born = time;
                        return;
                    }
                };
                let born = t.born;
                sink.close(t, tid, born, time, kind, 0, stack, false);
            }
            State::Starting { since } => {
                add_off(
                    &mut t.times,
                    SampleKind::Preempted,
                    time.saturating_sub(since),
                );
            }
            // The switch-out in between was lost.
            State::On { .. } => self.info.broken += 1,
        }
    }

    /// A thread (or process) was created at `time`.
    pub(crate) fn created(&mut self, pid: u32, tid: u32, time: u64) {
        self.latest = self.latest.max(time);
        let born = time.max(self.start);
        match self.threads.get(&tid) {
            // Its records came first.
            Some(t) if !matches!(t.state, State::Dead { .. } | State::Unknown) => {}
            _ => {
                self.threads.insert(
                    tid,
                    Thread {
                        pid,
                        born,
                        state: State::Starting { since: born },
                        times: ThreadTimes::default(),
                        strata: Vec::new(),
                        pending: None,
                        initial: None,
                    },
                );
            }
        }
    }

    /// `tid` (of `pid`) exited at `time`.
    pub(crate) fn exited(&mut self, pid: u32, tid: u32, time: u64) {
        self.latest = self.latest.max(time);
        let Some(t) = self.threads.get_mut(&tid) else {
            // Unknown so far: remember it is gone, so that the switches it
            // still makes on its way out are not taken for a new thread.
            self.threads.insert(
                tid,
                Thread {
                    pid,
                    born: time,
                    state: State::Dead { at: time },
                    times: ThreadTimes::default(),
                    strata: Vec::new(),
                    pending: None,
                    initial: None,
                },
            );
            return;
        };
        match t.state {
            State::Dead { .. } => return,
            State::On { since } | State::Starting { since } => {
                t.times.on_cpu += time.saturating_sub(since)
            }
            State::Unknown if t.initial.is_some() => t.times.on_cpu += time.saturating_sub(t.born),
            State::Unknown => t.born = time,
            // An exiting thread runs: the switch-in was lost.
            State::Off { .. } => self.info.broken += 1,
        }
        t.times.span = time.saturating_sub(t.born);
        t.state = State::Dead { at: time };
        t.pending = None;
        t.initial = None;
        // Its intervals went out under the pid it was first seen with.
        self.finished.push((
            t.pid,
            tid,
            std::mem::take(&mut t.times),
            std::mem::take(&mut t.strata),
        ));
        self.exits += 1;
        if self.exits >= 64 {
            self.exits = 0;
            let cutoff = self.latest.saturating_sub(DEAD_GRACE_NS);
            self.threads
                .retain(|_, t| !matches!(t.state, State::Dead { at } if at < cutoff));
        }
    }

    /// Processes with a thread still followed (not known to have exited):
    /// intervals and accounts of theirs may still come.
    pub(crate) fn followed_pids(&self) -> FxHashSet<u32> {
        self.threads
            .values()
            .filter(|t| !matches!(t.state, State::Dead { .. }))
            .map(|t| t.pid)
            .collect()
    }

    /// Forgets every thread of `pid` (the caller dropped the process).
    pub(crate) fn forget_process(&mut self, pid: u32) {
        self.threads.retain(|_, t| t.pid != pid);
        self.finished.retain(|f| f.0 != pid);
    }

    /// Closed intervals since the last call.
    pub(crate) fn take_intervals(&mut self) -> std::vec::Drain<'_, Interval<S>> {
        self.intervals.drain(..)
    }

    /// Accounts of the threads that exited since the last call.
    pub(crate) fn take_finished(&mut self) -> std::vec::Drain<'_, Accounts> {
        self.finished.drain(..)
    }

    /// Ends the recording at `end`: closes every thread's open interval and
    /// returns the last intervals, every thread's accounts, and the counts.
    pub(crate) fn finish(mut self, end: u64) -> Finished<S> {
        let mut accounts = std::mem::take(&mut self.finished);
        let mut sink = Sink {
            min_block: self.min_block,
            intervals: &mut self.intervals,
        };
        for (tid, mut t) in self.threads.drain() {
            let state = std::mem::replace(&mut t.state, State::Unknown);
            match state {
                State::Dead { .. } => continue,
                State::On { since } => t.times.on_cpu += end.saturating_sub(since),
                State::Starting { since } => add_off(
                    &mut t.times,
                    SampleKind::Preempted,
                    end.saturating_sub(since),
                ),
                State::Off {
                    since,
                    kind,
                    cpu,
                    stack,
                } => sink.close(&mut t, tid, since, end, kind, cpu, stack, true),
                State::Unknown => match t.initial.take() {
                    Some((_, Initial::Running)) => t.times.on_cpu += end.saturating_sub(t.born),
                    // Somewhere the whole time, not known where.
                    Some((_, Initial::Exists)) => {}
                    Some((_, Initial::Off { kind, stack })) => {
                        let born = t.born;
                        sink.close(&mut t, tid, born, end, kind, 0, stack, false);
                    }
                    // Only a stack sample was seen: nothing is known.
                    None => {}
                },
            }
            t.times.span = end.saturating_sub(t.born);
            accounts.push((t.pid, tid, t.times, t.strata));
        }
        accounts.sort_unstable_by_key(|a| (a.0, a.1));
        Finished {
            intervals: self.intervals,
            accounts,
            info: self.info,
        }
    }
}

/// What [`OffCpu::finish`] returns.
#[derive(Debug)]
pub(crate) struct Finished<S> {
    pub(crate) intervals: Vec<Interval<S>>,
    /// Every thread still known, sorted by pid and tid.
    pub(crate) accounts: Vec<Accounts>,
    pub(crate) info: OffCpuInfo,
}

/// The entry of `tid`, made (alive since `start`) if new.
fn thread<S>(
    threads: &mut FxHashMap<u32, Thread<S>>,
    start: u64,
    pid: u32,
    tid: u32,
) -> &mut Thread<S> {
    threads.entry(tid).or_insert_with(|| Thread {
        pid,
        born: start,
        state: State::Unknown,
        times: ThreadTimes::default(),
        strata: Vec::new(),
        pending: None,
        initial: None,
    })
}

fn add_off(t: &mut ThreadTimes, kind: SampleKind, d: u64) {
    match kind {
        SampleKind::Preempted => t.preempted = t.preempted.saturating_add(d),
        _ => t.blocked = t.blocked.saturating_add(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Off = OffCpu<&'static str>;
    type Row = (u32, SampleKind, u64, Option<&'static str>, bool);

    /// (tid, kind, duration, stack, stratified) of each interval.
    fn rows(v: &[Interval<&'static str>]) -> Vec<Row> {
        v.iter()
            .map(|i| (i.tid, i.kind, i.duration, i.stack, i.stratum.is_some()))
            .collect()
    }

    fn times(f: &Finished<&'static str>) -> FxHashMap<u32, ThreadTimes> {
        f.accounts.iter().map(|a| (a.1, a.2)).collect()
    }

    #[test]
    fn blocked_and_preempted_intervals_with_their_stacks() {
        let mut o = Off::new(1000, 0);
        o.initial(1, 1, 1000, Initial::Exists);
        o.switch_out(1, 1, 1100, 0, false);
        o.switch_in(1, 1, 1200);
        o.sample(1, 1, 1290, "read");
        o.switch_out(1, 1, 1300, 0, false);
        o.switch_in(1, 1, 1800);
        o.sample(1, 1, 1850, "spin");
        o.switch_out(1, 1, 1850, 1, true);
        o.switch_in(1, 1, 1900);
        let got = rows(&o.take_intervals().collect::<Vec<_>>());
        assert_eq!(
            got,
            vec![
                (1, SampleKind::Blocked, 500, Some("read"), true),
                (1, SampleKind::Preempted, 50, Some("spin"), true),
            ]
        );
        let f = o.finish(2000);
        let t = times(&f)[&1];
        // Ran 1000..1100, 1200..1300, 1800..1850, 1900..2000.
        assert_eq!(t.on_cpu, 100 + 100 + 50 + 100);
        // The unsampled 1100..1200 counts in the totals.
        assert_eq!(t.blocked, 100 + 500);
        assert_eq!(t.preempted, 50);
        assert_eq!(t.span, 1000);
        assert_eq!(t.unaccounted(), 0);
        assert_eq!(t.switches, 3);
        assert_eq!((f.info.switches, f.info.sampled, f.info.broken), (3, 2, 0));
    }

    #[test]
    fn classes_share_their_exact_time_among_sampled_intervals() {
        let mut o = Off::new(0, 0);
        // Four waits of 100..127 ns (one class), one with a stack; and one
        // of 1000 ns, unsampled, alone in its class.
        let mut t = 0;
        for (i, d) in [100, 110, 120, 127].into_iter().enumerate() {
            if i == 2 {
                o.sample(1, 1, t, "futex");
            }
            o.switch_out(1, 1, t, 0, false);
            o.switch_in(1, 1, t + d);
            t += d + 10;
        }
        o.switch_out(1, 1, t, 0, false);
        o.switch_in(1, 1, t + 1000);
        let f = o.finish(t + 2000);
        assert_eq!(
            rows(&f.intervals),
            vec![(1, SampleKind::Blocked, 120, Some("futex"), true)]
        );
        let strata = &f.accounts[0].3;
        let class = strata
            .iter()
            .find(|s| s.key == f.intervals[0].stratum.unwrap())
            .unwrap();
        assert_eq!((class.total, class.sampled, class.intervals), (457, 120, 4));
        assert_eq!(class.scale(120), 457);
        let alone = strata
            .iter()
            .find(|s| s.key == Stratum::key(SampleKind::Blocked, 1000));
        assert_eq!(
            alone.map(|s| (s.total, s.sampled, s.kind())),
            Some((1000, 0, SampleKind::Blocked))
        );
    }

    #[test]
    fn stratum_keys() {
        assert_eq!(Stratum::key(SampleKind::Blocked, 1), 1);
        assert_eq!(Stratum::key(SampleKind::Blocked, 1023), 10);
        assert_eq!(Stratum::key(SampleKind::Blocked, 1024), 11);
        assert_eq!(Stratum::key(SampleKind::Preempted, 1024), 0x80 | 11);
        assert_eq!(Stratum::key(SampleKind::Preempted, u64::MAX), 0x80 | 64);
        let s = Stratum {
            key: 0x85,
            total: u64::MAX,
            sampled: 1,
            intervals: 3,
        };
        assert_eq!(s.kind(), SampleKind::Preempted);
        assert_eq!(s.scale(2), u64::MAX);
    }

    #[test]
    fn a_stale_sample_is_not_used_for_a_later_switch() {
        let mut o = Off::new(0, 0);
        // The sample's switch-out record was lost; the next switch-out must
        // not take that stack.
        o.switch_in(1, 1, 5);
        o.sample(1, 1, 10, "old");
        o.switch_in(1, 1, 20);
        o.switch_out(1, 1, 30, 0, false);
        o.switch_in(1, 1, 40);
        let f = o.finish(50);
        assert!(f.intervals.iter().all(|i| i.stack != Some("old")));
    }

    #[test]
    fn min_block_drops_short_intervals_but_not_their_time() {
        let mut o = Off::new(0, 100);
        o.sample(1, 1, 10, "short");
        o.switch_out(1, 1, 10, 0, false);
        o.switch_in(1, 1, 60);
        o.sample(1, 1, 70, "long");
        o.switch_out(1, 1, 70, 0, false);
        o.switch_in(1, 1, 270);
        let f = o.finish(300);
        assert_eq!(
            rows(&f.intervals),
            vec![(1, SampleKind::Blocked, 200, Some("long"), true)]
        );
        assert_eq!(f.accounts[0].2.blocked, 250);
        // Short intervals are in no class either.
        assert_eq!(f.accounts[0].3.len(), 1);
    }

    #[test]
    fn edges_of_the_recording() {
        let mut o = Off::new(1000, 0);
        // 1: asleep at the start (snapshot read before its switch-in).
        o.initial(
            10,
            1,
            1001,
            Initial::Off {
                kind: SampleKind::Blocked,
                stack: Some("epoll_wait"),
            },
        );
        // 2: running at the start, never switches.
        o.initial(10, 2, 1001, Initial::Running);
        // 3: asleep the whole recording.
        o.initial(
            10,
            3,
            1001,
            Initial::Off {
                kind: SampleKind::Blocked,
                stack: Some("nanosleep"),
            },
        );
        // 4: snapshot read after it had already woken and slept again: its
        // stack is not the one of the start.
        o.initial(
            10,
            4,
            1500,
            Initial::Off {
                kind: SampleKind::Blocked,
                stack: Some("later"),
            },
        );
        o.switch_in(10, 4, 1200);
        o.switch_in(10, 1, 1400);
        // 5: created at 1600, runs at 1650, asleep until the end.
        o.created(10, 5, 1600);
        o.switch_in(10, 5, 1650);
        o.sample(10, 5, 1700, "poll");
        o.switch_out(10, 5, 1700, 1, false);
        // 6: created at 1100, exits at 1300.
        o.created(10, 6, 1100);
        // 8: listed at the start (state not read): off since the start.
        o.initial(10, 8, 1000, Initial::Exists);
        o.switch_in(10, 8, 1100);
        // 9: not there at the start, not seen created: starts at its first
        // record, a switch-out (no time invented before it).
        o.switch_out(10, 9, 1800, 0, false);
        o.switch_in(10, 6, 1100);
        o.exited(10, 6, 1300);
        // Its final switch-out (system-wide) is ignored.
        o.switch_out(10, 6, 1301, 0, false);
        // 7: never seen before its exit; it still switches on its way out.
        o.exited(10, 7, 1400);
        o.switch_out(10, 7, 1401, 0, false);
        let f = o.finish(2000);
        let iv = rows(&f.intervals);
        assert!(iv.contains(&(1, SampleKind::Blocked, 400, Some("epoll_wait"), false)));
        assert!(iv.contains(&(3, SampleKind::Blocked, 1000, Some("nanosleep"), false)));
        assert!(iv.contains(&(4, SampleKind::Blocked, 200, None, false)));
        assert!(iv.contains(&(5, SampleKind::Blocked, 300, Some("poll"), true)));
        assert!(iv.contains(&(8, SampleKind::Blocked, 100, None, false)));
        assert_eq!(iv.len(), 5);
        let times = times(&f);
        assert_eq!(times.len(), 8);
        assert_eq!(
            (times[&9].span, times[&9].on_cpu, times[&9].blocked),
            (200, 0, 200)
        );
        assert_eq!(times[&2].on_cpu, 1000);
        assert_eq!(times[&3].blocked, 1000);
        assert_eq!(times[&5].span, 400);
        assert_eq!(times[&5].preempted, 50);
        assert_eq!(times[&5].on_cpu, 50);
        assert_eq!(times[&6].span, 200);
        assert_eq!(times[&6].on_cpu, 200);
        for t in times.values() {
            assert_eq!(t.unaccounted(), 0, "{t:?}");
        }
    }

    #[test]
    fn lost_records_break_intervals_without_inventing_time() {
        let mut o = Off::new(0, 0);
        o.initial(1, 1, 0, Initial::Exists);
        o.switch_out(1, 1, 100, 0, false);
        // Switch-in lost; the next switch-out cannot close anything.
        o.switch_out(1, 1, 300, 0, false);
        o.switch_in(1, 1, 400);
        // Switch-out lost.
        o.switch_in(1, 1, 600);
        let f = o.finish(700);
        assert_eq!(f.info.broken, 2);
        let t = f.accounts[0].2;
        assert_eq!(t.on_cpu, 100 + 100);
        assert_eq!(t.blocked, 100);
        assert_eq!(t.unaccounted(), 400);
    }

    /// Fuzzing found an exit record naming another pid for a known thread
    /// filing its times where its samples were not.
    #[test]
    fn a_thread_accounts_under_the_pid_it_was_first_seen_with() {
        let mut o = Off::new(0, 0);
        o.initial(2, 5, 0, Initial::Exists);
        o.switch_in(2, 5, 1);
        o.exited(5, 5, 10);
        let done: Vec<Accounts> = o.take_finished().collect();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].0, done[0].1, done[0].2.blocked), (2, 5, 1));
        let iv: Vec<_> = o.take_intervals().collect();
        assert_eq!((iv[0].pid, iv[0].tid), (2, 5));
    }

    #[test]
    fn dead_threads_are_purged_after_a_grace_period() {
        let mut o = Off::new(0, 0);
        for tid in 1..=200u32 {
            let t0 = u64::from(tid) * DEAD_GRACE_NS;
            o.created(1, tid, t0);
            o.switch_in(1, tid, t0);
            o.exited(1, tid, t0 + 10);
        }
        assert!(o.threads.len() < 100, "{} entries", o.threads.len());
        assert_eq!(o.take_finished().count(), 200);
    }

    /// Random but time-ordered streams of records, including lost ones:
    /// no thread is on and off the CPU for longer than its span, and the
    /// intervals with a stack, scaled to their classes, never add up to
    /// more than the threads' off-CPU totals.
    #[test]
    fn invariants_hold_on_random_streams() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..300 {
            let mut o = Off::new(1000, next(3) * 50);
            let mut t = 1000;
            for tid in 1..4 {
                match next(3) {
                    0 => o.initial(1, tid, 1000 + next(20), Initial::Running),
                    1 => o.initial(1, tid, 1000, Initial::Exists),
                    _ => {}
                }
            }
            for _ in 0..200 {
                t += next(100);
                let tid = 1 + next(4) as u32;
                match next(7) {
                    0 => o.sample(1, tid, t, "s"),
                    1 | 2 => o.switch_out(1, tid, t, 0, next(2) == 0),
                    3 | 4 => o.switch_in(1, tid, t),
                    5 => o.created(1, tid, t),
                    _ => o.exited(1, tid, t),
                }
            }
            let f = o.finish(t + next(100));
            let mut off = 0;
            for (_, _, times, strata) in &f.accounts {
                assert!(
                    times.on_cpu + times.off_cpu() <= times.span,
                    "{round}: {times:?}"
                );
                off += times.off_cpu();
                for c in strata {
                    assert!(c.sampled <= c.total && c.intervals > 0, "{c:?}");
                }
            }
            // A thread id used twice has its classes merged, as the
            // tracker does.
            let mut classes: FxHashMap<(u32, u8), Stratum> = FxHashMap::default();
            for a in &f.accounts {
                for c in &a.3 {
                    let m = classes.entry((a.1, c.key)).or_insert(Stratum {
                        key: c.key,
                        ..Stratum::default()
                    });
                    m.total += c.total;
                    m.sampled += c.sampled;
                    m.intervals += c.intervals;
                }
            }
            let sampled: u64 = f
                .intervals
                .iter()
                .map(|i| match i.stratum {
                    Some(k) => classes[&(i.tid, k)].scale(i.duration),
                    None => i.duration,
                })
                .sum();
            assert!(sampled <= off, "{round}: {sampled} > {off}");
        }
    }
}
