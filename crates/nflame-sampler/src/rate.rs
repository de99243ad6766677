//! How many context switches get a stack, free of syscalls.
//!
//! Each stack counter (`context-switches`, one per thread and CPU, or one
//! per CPU system-wide) starts by sampling every switch (period 1). Every
//! control round, the recorder hands over how many times the threads of
//! each counter switched (from the switch records, which are complete) and
//! this module answers with new periods: a counter whose switches come
//! faster than the cap ([`crate::RecordOptions::switch_rate`]) samples one
//! in N, N about rate / cap. N is drawn afresh each round between half and
//! one and a half times that, so that a loop of a fixed number of switches
//! (an event loop, a ping-pong: two switches a cycle) is not sampled at the
//! same place of its cycle every time.
//!
//! A thread started during the recording counts on a copy of its creator's
//! counter, which the recorder cannot reach: the kernel applies a new
//! period to the counter itself and to later copies only. When such a
//! thread switches faster than the cap, the recorder turns to a second set
//! of stack counters in frequency mode (the kernel adapts their period to
//! the cap by itself, for every copy; enabling and disabling do reach the
//! copies), and back once those threads have been quiet for a few rounds.
//! Frequency mode alone is not used throughout because the kernel raises
//! its period on a burst of switches and lowers it only slowly: a thread
//! switching a few hundred times a second got a stack at 10 to 40% of its
//! switches instead of all of them.

/// Which set of stack counters is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Counters with a period the recorder sets.
    Count,
    /// Counters whose period the kernel adapts to the cap.
    Freq,
}

/// Decisions for the next round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// New period of each counter, in the order given.
    pub(crate) periods: Vec<u64>,
    pub(crate) mode: Mode,
}

/// The controller.
#[derive(Debug, Clone)]
pub(crate) struct RateControl {
    /// Stacks a second per counter.
    cap: u64,
    mode: Mode,
    /// Rounds in a row the unreachable threads stayed under half the cap.
    quiet: u32,
    rng: u64,
}

/// Quiet rounds before going back to [`Mode::Count`].
const QUIET_ROUNDS: u32 = 5;

impl RateControl {
    /// `cap` stacks a second per counter; `seed` for the random periods.
    pub(crate) fn new(cap: u64, seed: u64) -> Self {
        RateControl {
            cap: cap.max(1),
            mode: Mode::Count,
            quiet: 0,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// A period averaging `target` (switches per stack), drawn from
    /// `[target / 2, 3 * target / 2]`; 1 at or below one.
    fn period_for(&mut self, target: f64) -> u64 {
        if target <= 1.0 {
            return 1;
        }
        let lo = (target / 2.0).floor().max(1.0) as u64;
        let hi = (target * 1.5).ceil() as u64;
        lo + self.random() % (hi - lo + 1)
    }

    /// Plans the next round from this one, `secs` long: `switches` made by
    /// the threads of each counter the recorder reaches, and `unreached`:
    /// the most switches one thread it cannot reach made on one CPU.
    pub(crate) fn plan(&mut self, secs: f64, switches: &[u64], unreached: u64) -> Plan {
        if secs <= 0.0 {
            return Plan {
                periods: vec![1; switches.len()],
                mode: self.mode,
            };
        }
        let cap = self.cap as f64;
        let periods = switches
            .iter()
            .map(|&n| self.period_for(n as f64 / secs / cap))
            .collect();
        let peak = unreached as f64 / secs;
        if peak > 1.5 * cap {
            self.mode = Mode::Freq;
            self.quiet = 0;
        } else if self.mode == Mode::Freq {
            self.quiet = if peak < 0.5 * cap { self.quiet + 1 } else { 0 };
            if self.quiet >= QUIET_ROUNDS {
                self.mode = Mode::Count;
                self.quiet = 0;
            }
        }
        Plan {
            periods,
            mode: self.mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_counters_keep_every_switch() {
        let mut c = RateControl::new(2000, 7);
        let plan = c.plan(0.2, &[100, 0, 400], 0);
        assert_eq!(plan.periods, vec![1, 1, 1]);
        assert_eq!(plan.mode, Mode::Count);
    }

    #[test]
    fn fast_counters_are_sampled_at_random_periods_near_the_cap() {
        let mut c = RateControl::new(2000, 7);
        // 100k switches a second: target period 50.
        let mut parities = std::collections::BTreeSet::new();
        let mut sum = 0;
        for _ in 0..1000 {
            let p = c.plan(0.1, &[10_000], 0).periods[0];
            assert!((25..=75).contains(&p), "{p}");
            parities.insert(p % 2);
            sum += p;
        }
        // Both parities occur (a two-switch loop is sampled at both places)
        // and the periods average the target.
        assert_eq!(parities.len(), 2);
        assert!((45_000..=55_000).contains(&sum), "{sum}");
        // Quiet again: every switch.
        assert_eq!(c.plan(0.1, &[10], 0).periods, vec![1]);
    }

    #[test]
    fn unreachable_fast_threads_turn_to_frequency_mode_and_back() {
        let mut c = RateControl::new(2000, 7);
        // 4000 a second from a thread out of reach: over 1.5 times the cap.
        assert_eq!(c.plan(0.2, &[], 800).mode, Mode::Freq);
        // Between half and 1.5 times the cap: stays.
        for _ in 0..10 {
            assert_eq!(c.plan(0.2, &[], 300).mode, Mode::Freq);
        }
        // Quiet for a few rounds: back.
        for _ in 0..QUIET_ROUNDS - 1 {
            assert_eq!(c.plan(0.2, &[], 10).mode, Mode::Freq);
        }
        assert_eq!(c.plan(0.2, &[], 10).mode, Mode::Count);
        // No time: nothing learned.
        assert_eq!(c.plan(0.0, &[5], 1_000_000).mode, Mode::Count);
    }
}
