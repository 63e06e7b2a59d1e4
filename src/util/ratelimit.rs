//! Rate-limited log lines: a repeated failure is logged at once, then at
//! most once per period, with the number of lines left out in between.

use std::time::{Duration, Instant};

/// A log line at most once per period, with the count of suppressed ones.
#[derive(Debug)]
pub struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// At most one line per `period`; the first is always allowed.
    pub fn new(period: Duration) -> Self {
        RateLimited { period, last: None, suppressed: 0 }
    }

    /// `Some(n suppressed since the last line)` when a line may be written
    /// now (and counts it as written); `None` (counted as suppressed) otherwise.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_if(false)
    }

    /// Like [`RateLimited::allow`], but always allowed when `force` (the
    /// first failure of a new outage is always logged).
    pub fn allow_if(&mut self, force: bool) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if !force && now.duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// The next line is allowed whatever the time (a new episode starts).
    pub fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_then_once_per_period_with_the_suppressed_count() {
        let mut r = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow_if(true), Some(2));
        r.reset();
        assert_eq!(r.allow(), Some(0));
    }
}
