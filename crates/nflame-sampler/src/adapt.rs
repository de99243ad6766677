//! How much user stack `CallGraph::Auto` copies into each sample while it
//! records every CPU, decided from the samples it loses.
//!
//! A stack copy costs the kernel a memcpy and the ring buffer its size
//! (8 KiB by default, against a few hundred bytes for a frame-pointer
//! chain), and the recorder a DWARF unwinding per sample. System-wide on a
//! busy machine the recorder, itself one more busy task, can fall behind:
//! the ring buffers fill and the kernel drops samples. [`StackCopy`] watches
//! the share of samples lost and, once it is not negligible, stops copying:
//! frame-pointer chains only (a recorder that cannot keep up with 8 KiB
//! copies, measured here, loses samples with 2 KiB ones too). Samples are lost
//! only once a ring buffer is full, and the kernel says so only when the
//! recorder reads again, so falling behind is a warning too: when the
//! oldest sample of two reads in a row is older than half the time a ring
//! holds at the current copy size, the copy is quartered before anything is
//! lost (one slow read is not enough: the first ones also wait for every
//! binary's unwind tables to be read); older than all a ring holds, a busy
//! CPU's ring overflowed, whatever the kernel has said so far, and copying
//! stops.
//! It only decides;
//! the recording loop reopens the counters, and the summary gets
//! [`StackCopy::note`]. Pure: no syscalls, no clock.

use std::time::Duration;

/// Samples (kept and lost) a window needs before it is judged.
const WINDOW_EVENTS: u64 = 200;
/// A window losing at least this share of its samples stops the copies.
const SHRINK_SHARE: f64 = 0.02;
/// The smallest copy worth its cost; below it, frame pointers only.
const MIN_BYTES: u32 = 1024;
/// Bytes of a sample besides its stack copy, about (header, registers,
/// kernel and frame-pointer call chains).
const SAMPLE_BYTES: u64 = 512;

/// One change of the stack copy size, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Change {
    /// When, since the recording started.
    pub(crate) at: Duration,
    /// Bytes copied before and after (0: frame-pointer chains only).
    pub(crate) from: u32,
    pub(crate) to: u32,
    /// The window that decided it: samples kept and lost.
    pub(crate) kept: u64,
    pub(crate) lost: u64,
    /// Or, with nothing lost yet, how far behind the recorder was, and
    /// how long a ring holds a busy CPU's samples.
    pub(crate) behind: Option<(Duration, Duration)>,
}

/// The stack copy size of an `Auto` system-wide recording.
#[derive(Debug, Clone)]
pub(crate) struct StackCopy {
    bytes: u32,
    initial: u32,
    /// Totals at the start of the current window.
    base_kept: u64,
    base_lost: u64,
    changes: Vec<Change>,
    /// Ring buffer bytes per CPU, and samples per second a busy CPU gives.
    ring_bytes: u64,
    frequency: u64,
    /// The last drain was late.
    was_late: bool,
}

impl StackCopy {
    /// Starts copying `bytes` per sample into rings of `ring_bytes` per
    /// CPU, sampling at `frequency` Hz.
    pub(crate) fn new(bytes: u32, ring_bytes: u64, frequency: u64) -> StackCopy {
        StackCopy {
            bytes,
            initial: bytes,
            base_kept: 0,
            base_lost: 0,
            changes: Vec::new(),
            ring_bytes,
            frequency: frequency.max(1),
            was_late: false,
        }
    }

    /// Half the time a ring holds a busy CPU's samples at the current size.
    fn lag_limit(&self) -> Duration {
        let per_second = (u64::from(self.bytes) + SAMPLE_BYTES).saturating_mul(self.frequency);
        Duration::from_secs_f64(self.ring_bytes as f64 / per_second as f64 / 2.0)
    }

    /// Bytes copied now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Looks at the totals so far (samples kept, samples lost, both
    /// counted from the start) and at the age of the oldest sample the last
    /// drain read (`behind`); returns the new copy size when it changes.
    pub(crate) fn observe(
        &mut self,
        at: Duration,
        kept: u64,
        lost: u64,
        behind: Duration,
    ) -> Option<u32> {
        if self.bytes == 0 {
            return None;
        }
        let k = kept.saturating_sub(self.base_kept);
        let l = lost.saturating_sub(self.base_lost);
        let limit = self.lag_limit();
        let slow = behind > limit;
        let overflowed = behind > limit.saturating_mul(2);
        let late = (slow && self.was_late) || overflowed;
        self.was_late = slow;
        if !late && k.saturating_add(l) < WINDOW_EVENTS {
            return None;
        }
        self.base_kept = kept;
        self.base_lost = lost;
        let share = if k + l == 0 {
            0.0
        } else {
            l as f64 / (k + l) as f64
        };
        if share < SHRINK_SHARE && !late {
            return None;
        }
        let quarter = (self.bytes / 4) & !7;
        let to = if share >= SHRINK_SHARE || overflowed || quarter < MIN_BYTES {
            0
        } else {
            quarter
        };
        self.changes.push(Change {
            at,
            from: self.bytes,
            to,
            kept: k,
            lost: l,
            behind: (share < SHRINK_SHARE).then_some((behind, limit.saturating_mul(2))),
        });
        self.bytes = to;
        Some(to)
    }

    /// The changes made (none if no samples were lost).
    #[cfg(test)]
    pub(crate) fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// What the summary says: what was chosen and why.
    pub(crate) fn note(&self) -> String {
        let copy = |b: u32| match b {
            0 => "frame-pointer chains only".to_string(),
            b => format!("frame-pointer chains and {b}-byte stack copies"),
        };
        if self.changes.is_empty() {
            return format!(
                "call graph auto: {} throughout (the recorder kept up: no window of {} samples \
                 lost {:.0}% or more)",
                copy(self.initial),
                WINDOW_EVENTS,
                SHRINK_SHARE * 100.0
            );
        }
        let steps: Vec<String> = self
            .changes
            .iter()
            .map(|c| {
                let what = if c.from == self.initial {
                    format!("{}-byte stack copies", c.from)
                } else {
                    format!("{}-byte copies", c.from)
                };
                let why = match c.behind {
                    Some((b, holds)) => format!(
                        "put the recorder {:.2} s behind (a ring holds {:.2} s of them)",
                        b.as_secs_f64(),
                        holds.as_secs_f64()
                    ),
                    None => format!(
                        "lost {} of {} samples ({:.1}%)",
                        c.lost,
                        c.kept + c.lost,
                        c.lost as f64 * 100.0 / (c.kept + c.lost) as f64
                    ),
                };
                format!(
                    "at {:.1} s {what} {why}, so {}",
                    c.at.as_secs_f64(),
                    copy(c.to)
                )
            })
            .collect();
        format!(
            "call graph auto: started with {} on every CPU; {} (the recorder could not keep \
             up with the copies on this busy machine)",
            copy(self.initial),
            steps.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn falling_behind_quarters_the_copy_before_anything_is_lost() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        // 4 MiB hold 0.48 s of 8.7 KiB samples at 999 Hz: 0.24 s behind is
        // the limit.
        assert_eq!(a.observe(secs(1), 50, 0, ms(200)), None);
        // One slow read is not enough, two in a row are.
        assert_eq!(a.observe(secs(2), 60, 0, ms(400)), None);
        assert_eq!(a.observe(secs(2), 60, 0, ms(100)), None);
        assert_eq!(a.observe(secs(2), 60, 0, ms(300)), None);
        assert_eq!(a.observe(secs(2), 60, 0, ms(300)), Some(2048));
        // At 2 KiB a ring holds 1.6 s: 0.3 s behind is fine now.
        assert_eq!(a.observe(secs(3), 70, 0, ms(300)), None);
        assert_eq!(a.observe(secs(3), 70, 0, ms(300)), None);
        assert_eq!(a.observe(secs(4), 80, 0, ms(900)), None);
        assert_eq!(a.observe(secs(4), 80, 0, ms(900)), Some(0));
        assert_eq!(a.changes().len(), 2);
        let note = a.note();
        assert!(
            note.contains("at 2.0 s 8192-byte stack copies put the recorder 0.30 s behind"),
            "{note}"
        );
    }

    #[test]
    fn no_loss_keeps_the_copies() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        for i in 1..100 {
            assert_eq!(a.observe(secs(i), i * 1000, 0, ms(10)), None);
        }
        // A lost sample now and then is not worth stack depth.
        assert_eq!(a.observe(secs(100), 100_000, 1, ms(10)), None);
        assert_eq!(a.bytes(), 8192);
        assert!(a.note().contains("8192-byte stack copies throughout"));
    }

    #[test]
    fn small_windows_are_not_judged() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        // 50 lost of 150: a share, but too few samples to judge yet.
        assert_eq!(a.observe(secs(1), 100, 50, ms(10)), None);
        // The window grows until it is judged: 100 lost of 300.
        assert_eq!(a.observe(secs(2), 200, 100, ms(10)), Some(0));
    }

    #[test]
    fn a_loss_stops_the_copies() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        assert_eq!(a.observe(secs(1), 950, 10, ms(10)), None);
        assert_eq!(a.observe(secs(2), 1900, 60, ms(10)), Some(0));
        assert_eq!(a.observe(secs(4), 2470, 5000, ms(10)), None);
        assert_eq!(a.changes().len(), 1);
        let note = a.note();
        assert!(
            note.contains("at 2.0 s 8192-byte stack copies lost 50 of 1000"),
            "{note}"
        );
        assert!(note.contains("so frame-pointer chains only"), "{note}");
    }

    #[test]
    fn a_loss_after_falling_behind_stops_the_quartered_copies() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        assert_eq!(a.observe(secs(1), 10, 0, ms(300)), None);
        assert_eq!(a.observe(secs(1), 20, 0, ms(300)), Some(2048));
        assert_eq!(a.observe(secs(2), 1000, 100, ms(10)), Some(0));
        let note = a.note();
        assert!(
            note.contains("; at 2.0 s 2048-byte copies lost 100 of 1080"),
            "{note}"
        );
    }

    #[test]
    fn falling_behind_by_more_than_a_ring_holds_stops_copying_at_once() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        assert_eq!(a.observe(secs(1), 50, 0, ms(500)), Some(0));
        assert!(a.note().contains("put the recorder 0.50 s behind"));
    }

    #[test]
    fn a_large_loss_stops_copying_at_once() {
        let mut a = StackCopy::new(8192, 4 << 20, 999);
        assert_eq!(a.observe(secs(1), 500, 1000, ms(10)), Some(0));
        assert_eq!(a.bytes(), 0);
    }
}
