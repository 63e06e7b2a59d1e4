//! Reconnect backoff: exponential, capped, with jitter so that gateways (or
//! the devices of one gateway) restarted together do not knock in step.

use std::time::Duration;

/// `d` scaled by a random factor in `[1 − spread, 1 + spread)`:
/// `jitter(4 s, 0.2)` is between 3.2 s and 4.8 s.
pub fn jitter(d: Duration, spread: f64) -> Duration {
    d.mul_f64(1.0 - spread + fastrand::f64() * 2.0 * spread)
}

/// The default `reconnect_max` of sinks (and of the MQTT connection settings
/// `mqtt-in` shares with them): a far end that comes back is noticed within
/// about 5 s (the last waits are 4 s to 5 s with jitter), instead of the
/// 20 s and more a 30 s cap gave.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// `first` doubled `n` times (at most 8 doublings), at most `max`: the wait
/// before attempt `n + 1` of a schedule counted in attempts.
pub fn exponential(first: Duration, n: u32, max: Duration) -> Duration {
    (first * (1u32 << n.min(8))).min(max)
}

/// A reconnect schedule: waits `first`, `2 × first`, `4 × first` … up to
/// `max`, each with ±[`Backoff::SPREAD`] jitter (never above `max`), until
/// [`Backoff::reset`] after a connection that worked.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Jitter of [`Backoff::next_wait`]: ±20 %.
    pub const SPREAD: f64 = 0.2;

    /// A schedule starting at `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max, next: first }
    }

    /// The wait before the next attempt (jittered, at most `max`); the one
    /// after it doubles.
    pub fn next_wait(&mut self) -> Duration {
        let wait = jitter(self.next, Self::SPREAD).min(self.max);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Back to `first` (the connection worked).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Changes the cap (a reconnect_max shared by several devices).
    pub fn set_max(&mut self, max: Duration) {
        self.max = max;
        self.next = self.next.min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<Duration> = (0..5).map(|_| b.next_wait()).collect();
        let bounds = [(0.8, 1.2), (1.6, 2.4), (3.2, 4.8), (4.0, 5.0), (4.0, 5.0)];
        for (w, (lo, hi)) in waits.iter().zip(bounds) {
            assert!(w.as_secs_f64() >= lo && w.as_secs_f64() <= hi, "{w:?} not in {lo}..{hi}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(1200));
    }

    #[test]
    fn exponential_is_capped() {
        assert_eq!(exponential(Duration::from_millis(250), 0, Duration::from_secs(30)), Duration::from_millis(250));
        assert_eq!(exponential(Duration::from_millis(250), 3, Duration::from_secs(30)), Duration::from_secs(2));
        assert_eq!(exponential(Duration::from_millis(250), 40, Duration::from_secs(30)), Duration::from_secs(30));
        let j = jitter(Duration::from_secs(10), 0.25);
        assert!(j >= Duration::from_millis(7500) && j < Duration::from_millis(12500));
    }
}
