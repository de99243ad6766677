//! How many context switches get a stack, free of syscalls.
//!
//! Each stack counter (`context-switches`, one per thread and CPU, or one
//! per CPU system-wide) samples every switch (period 1) while the recorded
//! switches stay under the budget ([`crate::RecordOptions::switch_rate`]
//! stacks a second per CPU, so that many times the CPUs in all). Every
//! control round, the recorder hands over how many times each thread (or
//! each CPU, system-wide) switched, from the switch records, which are
//! complete, and this module answers with new periods, sharing the budget
//! by water-filling: a thread switching less than its fair share keeps
//! every switch, the faster ones get the rest in equal parts and sample one
//! switch in N, N about their rate / their part, on every CPU (a thread
//! that moves to another CPU does not start there at every switch).
//! N is drawn afresh each round between half and one and a half times
//! that, so that a loop of a fixed number of switches (an event loop, a
//! ping-pong: two switches a cycle) is not sampled at the same place of its
//! cycle every time.
//!
//! This needs a recorder that keeps up, and counters it can reach. A
//! thread started during the recording counts on a copy of its creator's
//! counter: the kernel applies a new period to the counter itself and to
//! later copies only. So the recorder starts with, and turns to, a second
//! set of stack counters in frequency mode (the kernel adapts their period
//! to the cap by itself, for every copy; enabling and disabling do reach
//! the copies) when such a thread switches faster than the cap, or when
//! records were lost (the recorder fell behind, its counts are short); and
//! back to the counters with a period after a quiet round at the start,
//! after a few quiet rounds later. Frequency mode is not used throughout
//! because the kernel raises its period on a burst of switches and lowers
//! it only slowly: a thread switching a few hundred times a second got a
//! stack at 10 to 40% of its switches instead of all of them.

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
    /// Stacks a second per CPU.
    cap: u64,
    mode: Mode,
    /// Rounds in a row the unreachable threads stayed under half the cap.
    quiet: u32,
    rng: u64,
}

/// Quiet rounds before going back to [`Mode::Count`].
const QUIET_ROUNDS: u32 = 5;

/// The level L at which `rates` (sorted in place) share `budget`: the sum
/// of min(rate, L) is the budget, or L is infinite when all fit.
fn water_level(rates: &mut [f64], budget: f64) -> f64 {
    rates.sort_unstable_by(f64::total_cmp);
    let mut left = budget;
    let mut k = rates.len();
    for &r in rates.iter() {
        let share = left / k as f64;
        if r > share {
            return share;
        }
        left -= r;
        k -= 1;
    }
    f64::INFINITY
}

impl RateControl {
    /// `cap` stacks a second per CPU; `seed` for the random periods.
    pub(crate) fn new(cap: u64, seed: u64) -> Self {
        RateControl {
            cap: cap.max(1),
            mode: Mode::Freq,
            // One quiet round is enough at the start.
            quiet: QUIET_ROUNDS - 1,
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

    /// Plans the next round from this one, `secs` long, on `cpus` CPUs:
    /// for each counter the recorder reaches, its group (a thread, whose
    /// counters on every CPU share a period; or a CPU) and the switches the
    /// group made; `unreached`: the most switches one thread it cannot reach
    /// made on one CPU; and whether records or stacks were `lost` in it.
    pub(crate) fn plan(
        &mut self,
        secs: f64,
        cpus: u64,
        counters: &[(u64, u64)],
        unreached: u64,
        lost: bool,
    ) -> Plan {
        if secs <= 0.0 {
            return Plan {
                periods: vec![1; counters.len()],
                mode: self.mode,
            };
        }
        let mut groups: Vec<(u64, u64)> = counters.to_vec();
        groups.sort_unstable();
        groups.dedup();
        let mut rates: Vec<f64> = groups.iter().map(|&(_, n)| n as f64 / secs).collect();
        let level = water_level(&mut rates, self.cap as f64 * cpus.max(1) as f64);
        let periods = counters
            .iter()
            .map(|&(_, n)| self.period_for(n as f64 / secs / level))
            .collect();
        let cap = self.cap as f64;
        let peak = unreached as f64 / secs;
        if lost || peak > 1.5 * cap {
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
        let plan = c.plan(0.2, 2, &[(0, 100), (1, 0), (2, 380)], 0, false);
        assert_eq!(plan.periods, vec![1, 1, 1]);
        // One quiet round at the start is enough.
        assert_eq!(plan.mode, Mode::Count);
    }

    #[test]
    fn fast_counters_are_sampled_at_random_periods_near_the_cap() {
        let mut c = RateControl::new(2000, 7);
        // 100k switches a second: target period 50.
        let mut parities = std::collections::BTreeSet::new();
        let mut sum = 0;
        for _ in 0..1000 {
            let p = c.plan(0.1, 1, &[(0, 10_000)], 0, false).periods[0];
            assert!((25..=75).contains(&p), "{p}");
            parities.insert(p % 2);
            sum += p;
        }
        // Both parities occur (a two-switch loop is sampled at both places)
        // and the periods average the target.
        assert_eq!(parities.len(), 2);
        assert!((45_000..=55_000).contains(&sum), "{sum}");
        // Quiet again: every switch.
        assert_eq!(c.plan(0.1, 1, &[(0, 10)], 0, false).periods, vec![1]);
    }

    #[test]
    fn unreachable_fast_threads_turn_to_frequency_mode_and_back() {
        let mut c = RateControl::new(2000, 7);
        assert_eq!(c.plan(0.2, 1, &[], 0, false).mode, Mode::Count);
        // 4000 a second from a thread out of reach: over 1.5 times the cap.
        assert_eq!(c.plan(0.2, 1, &[], 800, false).mode, Mode::Freq);
        // Between half and 1.5 times the cap: stays.
        for _ in 0..10 {
            assert_eq!(c.plan(0.2, 1, &[], 300, false).mode, Mode::Freq);
        }
        // Quiet for a few rounds: back.
        for _ in 0..QUIET_ROUNDS - 1 {
            assert_eq!(c.plan(0.2, 1, &[], 10, false).mode, Mode::Freq);
        }
        assert_eq!(c.plan(0.2, 1, &[], 10, false).mode, Mode::Count);
        // No time: nothing learned.
        assert_eq!(c.plan(0.0, 1, &[(0, 5)], 1_000_000, true).mode, Mode::Count);
    }

    #[test]
    fn the_budget_is_shared_by_water_filling() {
        let mut c = RateControl::new(1000, 7);
        // Two CPUs, 2000 a second: threads at 500/s and 300/s fit whole;
        // the ones at 20k/s and 40k/s share the remaining 1200/s, 600 each:
        // periods about 33 and 67, on both CPUs (thread 3 has two counters).
        let counters = [(1, 500), (2, 300), (3, 20_000), (3, 20_000), (4, 40_000)];
        let mut sums = [0u64; 5];
        for _ in 0..400 {
            let p = c.plan(1.0, 2, &counters, 0, false);
            for (s, p) in sums.iter_mut().zip(p.periods) {
                *s += p;
            }
        }
        assert_eq!(&sums[..2], &[400, 400]);
        for s in &sums[2..4] {
            assert!((12_400..14_300).contains(s), "{s}");
        }
        assert!((25_400..28_000).contains(&sums[4]), "{}", sums[4]);
    }

    #[test]
    fn water_levels() {
        assert_eq!(water_level(&mut [1.0, 2.0], 10.0), f64::INFINITY);
        assert_eq!(water_level(&mut [100.0, 1.0, 100.0], 11.0), 5.0);
        assert_eq!(water_level(&mut [], 10.0), f64::INFINITY);
    }

    #[test]
    fn losing_records_turns_to_frequency_mode() {
        let mut c = RateControl::new(2000, 7);
        // Losses in the first round: stays in frequency mode.
        assert_eq!(c.plan(0.01, 1, &[(0, 10)], 0, true).mode, Mode::Freq);
        assert_eq!(c.plan(0.02, 1, &[(0, 10)], 0, false).mode, Mode::Freq);
        for _ in 0..QUIET_ROUNDS - 2 {
            assert_eq!(c.plan(0.2, 1, &[(0, 10)], 0, false).mode, Mode::Freq);
        }
        assert_eq!(c.plan(0.2, 1, &[(0, 10)], 0, false).mode, Mode::Count);
        assert_eq!(c.plan(0.2, 1, &[(0, 10)], 0, true).mode, Mode::Freq);
    }
}
