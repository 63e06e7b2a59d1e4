//! Degraded units and their probes (pure): how a unit that stopped answering
//! is set aside and found again without costing the other units on its line
//! their turns.
//!
//! - A unit whose poll cycles failed [`DEGRADE_AFTER`] times in a row with
//!   silence (timeouts, or nothing usable: `invalid_frame`) is *degraded*: its
//!   cycles give bad samples without touching the line.
//! - It is *probed* (one read of its first request) every `10 × interval`
//!   (at least the interval, at most 30 s). A probe waits a short timeout, 3×
//!   the slowest answer seen lately on the line and at least
//!   [`PROBE_MIN`] (never more than the device timeout); every
//!   [`FULL_PROBE_EVERY`]th probe waits the whole device timeout, so a slow
//!   device is found again too.
//! - A probe runs in an idle stretch of the line (before the next due cycle
//!   of an answering unit), or else from a [`ProbeBudget`] that refills at
//!   1/[`PROBE_SHARE`] of the time: on a busy line, probes take at most that
//!   share of its time, whatever the number of degraded units.
//! - Any answer to a probe (data or exception) ends the degraded mode.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Consecutive silent cycles before a unit is degraded.
pub const DEGRADE_AFTER: u32 = 3;
/// Shortest probe timeout.
pub const PROBE_MIN: Duration = Duration::from_millis(50);
/// Every this many probes, one waits the whole device timeout.
pub const FULL_PROBE_EVERY: u32 = 4;
/// Share of a busy line's time that probes may take: 1/50 (2 %).
pub const PROBE_SHARE: u32 = 50;
/// Longest time between two probes of a degraded unit.
pub const PROBE_EVERY_MAX: Duration = Duration::from_secs(30);

/// How a cycle (or probe) of a unit ended, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one answer (data or exception).
    Answered,
    /// Only silence: timeouts or nothing usable.
    Silent,
    /// Neither (connection down, nothing read): no change.
    Other,
}

/// A change of a unit's state, to log (and report as an event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Degraded after this many silent cycles; probed every `every`.
    Degraded {
        /// Silent cycles in a row.
        silent_cycles: u32,
        /// Probe period.
        every: Duration,
    },
    /// Answers again after being degraded for this long.
    Recovered {
        /// Time spent degraded.
        after: Duration,
    },
}

#[derive(Debug, Clone)]
struct Degraded {
    since: Instant,
    every: Duration,
    next_probe: Instant,
    probes: u32,
}

/// Health of one unit.
#[derive(Debug, Clone, Default)]
pub struct Health {
    silent_cycles: u32,
    degraded: Option<Degraded>,
}

impl Health {
    /// True while degraded.
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }

    /// When the next probe is due, while degraded.
    pub fn next_probe(&self) -> Option<Instant> {
        self.degraded.as_ref().map(|d| d.next_probe)
    }

    /// Records a cycle's outcome; `interval` is the cycle's poll interval.
    pub fn after_cycle(&mut self, outcome: Outcome, interval: Duration, now: Instant) -> Option<Transition> {
        match outcome {
            Outcome::Answered => self.recover(now),
            Outcome::Silent => {
                self.silent_cycles += 1;
                if self.silent_cycles >= DEGRADE_AFTER && self.degraded.is_none() {
                    let every = (interval * 10).min(PROBE_EVERY_MAX).max(interval);
                    self.degraded = Some(Degraded { since: now, every, next_probe: now + every, probes: 0 });
                    return Some(Transition::Degraded { silent_cycles: self.silent_cycles, every });
                }
                None
            }
            Outcome::Other => None,
        }
    }

    /// Records a probe's outcome.
    pub fn after_probe(&mut self, outcome: Outcome, now: Instant) -> Option<Transition> {
        if outcome == Outcome::Answered {
            return self.recover(now);
        }
        if let Some(d) = self.degraded.as_mut() {
            d.probes += 1;
            d.next_probe = now + d.every;
        }
        None
    }

    fn recover(&mut self, now: Instant) -> Option<Transition> {
        self.silent_cycles = 0;
        self.degraded.take().map(|d| Transition::Recovered { after: now.saturating_duration_since(d.since) })
    }

    /// The timeout of the next probe: short (3× `slowest` recent answer on
    /// the line, at least [`PROBE_MIN`]), the whole `timeout` every
    /// [`FULL_PROBE_EVERY`]th probe or when nothing answered on the line yet.
    pub fn probe_timeout(&self, timeout: Duration, slowest: Option<Duration>) -> Duration {
        let probes = self.degraded.as_ref().map_or(0, |d| d.probes);
        match slowest {
            Some(s) if probes % FULL_PROBE_EVERY != FULL_PROBE_EVERY - 1 => (s * 3).max(PROBE_MIN).min(timeout),
            _ => timeout,
        }
    }
}

/// Time probes may take on a busy line: refills at 1/[`PROBE_SHARE`] of the
/// time, up to `cap`.
#[derive(Debug, Clone)]
pub struct ProbeBudget {
    tokens: Duration,
    cap: Duration,
    at: Instant,
}

impl ProbeBudget {
    /// An empty budget holding at most `cap`.
    pub fn new(cap: Duration, now: Instant) -> ProbeBudget {
        ProbeBudget { tokens: Duration::ZERO, cap, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at) / PROBE_SHARE;
        self.tokens = (self.tokens + earned).min(self.cap);
        self.at = now;
    }

    /// When `cost` will be available (now or later).
    pub fn available_at(&mut self, cost: Duration, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= cost.min(self.cap) {
            return now;
        }
        now + (cost.min(self.cap) - self.tokens) * PROBE_SHARE
    }

    /// Takes `cost` (the longest a probe may take).
    pub fn spend(&mut self, cost: Duration, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(cost);
    }
}

/// The slowest of the last answers on a line.
#[derive(Debug, Clone, Default)]
pub struct AnswerTimes(VecDeque<Duration>);

impl AnswerTimes {
    const KEEP: usize = 32;

    /// Records how long an answer took.
    pub fn record(&mut self, t: Duration) {
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back(t);
    }

    /// The slowest recent answer, if any.
    pub fn slowest(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn degrades_after_three_silent_cycles_and_recovers_on_any_answer() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.after_cycle(Outcome::Silent, 100 * MS, t0), None);
        assert_eq!(h.after_cycle(Outcome::Other, 100 * MS, t0), None, "a connection error neither counts nor resets");
        assert_eq!(h.after_cycle(Outcome::Silent, 100 * MS, t0), None);
        assert_eq!(h.after_cycle(Outcome::Silent, 100 * MS, t0), Some(Transition::Degraded { silent_cycles: 3, every: 1000 * MS }));
        assert_eq!(h.next_probe(), Some(t0 + 1000 * MS));
        assert_eq!(h.after_probe(Outcome::Silent, t0 + 1000 * MS), None);
        assert_eq!(h.next_probe(), Some(t0 + 2000 * MS));
        assert_eq!(h.after_probe(Outcome::Answered, t0 + 2500 * MS), Some(Transition::Recovered { after: 2500 * MS }));
        assert!(!h.is_degraded());
    }

    #[test]
    fn probe_timeouts_are_short_with_a_full_one_every_fourth() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for _ in 0..3 {
            h.after_cycle(Outcome::Silent, 100 * MS, t0);
        }
        let timeout = 1000 * MS;
        assert_eq!(h.probe_timeout(timeout, None), timeout, "nothing known: the device timeout");
        assert_eq!(h.probe_timeout(timeout, Some(2 * MS)), PROBE_MIN);
        assert_eq!(h.probe_timeout(timeout, Some(40 * MS)), 120 * MS);
        assert_eq!(h.probe_timeout(100 * MS, Some(40 * MS)), 100 * MS, "never above the device timeout");
        for _ in 0..3 {
            h.after_probe(Outcome::Silent, t0);
        }
        assert_eq!(h.probe_timeout(timeout, Some(2 * MS)), timeout, "the fourth probe waits the whole timeout");
    }

    #[test]
    fn the_budget_refills_at_its_share_of_the_time() {
        let t0 = Instant::now();
        let mut b = ProbeBudget::new(1000 * MS, t0);
        assert_eq!(b.available_at(100 * MS, t0), t0 + 5000 * MS, "2 % of 5 s is 100 ms");
        assert_eq!(b.available_at(100 * MS, t0 + 5000 * MS), t0 + 5000 * MS);
        b.spend(100 * MS, t0 + 5000 * MS);
        assert_eq!(b.available_at(100 * MS, t0 + 5000 * MS), t0 + 10_000 * MS, "spent: 5 s more");
        assert_eq!(b.available_at(5000 * MS, t0 + 5000 * MS), t0 + 55_000 * MS, "a cost above the cap waits for the cap");
    }
}
