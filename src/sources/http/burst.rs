//! Bursts of refused bearer tokens on an HTTP ingest route (issue 13,
//! detector `token_burst`): at least `token_burst` answers 401 within
//! `token_burst_window` raise one `security.token_refused_burst` event
//! (warning, source the HTTP source), at most one per window, with the
//! count, the window and the remote addresses (at most
//! [`MAX_ADDRESSES`]). The tokens themselves are never kept or logged.
//! Pure: the caller gives the times.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Default `token_burst`: refusals within the window that make a burst.
pub const DEFAULT_TOKEN_BURST: u32 = 10;
/// Default `token_burst_window`.
pub const DEFAULT_TOKEN_BURST_WINDOW: Duration = Duration::from_secs(60);
/// Remote addresses named in one event.
pub const MAX_ADDRESSES: usize = 10;
/// Refusals remembered per route (the oldest are forgotten first, so a
/// flood costs bounded memory; the event then says `count` ≥ this).
pub const MAX_REMEMBERED: usize = 4096;

/// One burst found.
#[derive(Debug, Clone, PartialEq)]
pub struct BurstReport {
    /// Refusals within the window (at most [`MAX_REMEMBERED`]).
    pub count: usize,
    /// Distinct remote addresses of those refusals, first seen first, at most [`MAX_ADDRESSES`].
    pub addresses: Vec<String>,
}

/// The refusals of one route within the window.
#[derive(Debug)]
pub struct Burst {
    threshold: u32,
    window: Duration,
    refusals: VecDeque<(Instant, Option<IpAddr>)>,
    last_event: Option<Instant>,
}

impl Burst {
    /// `threshold` refusals within `window` (threshold 0: never).
    pub fn new(threshold: u32, window: Duration) -> Burst {
        Burst { threshold, window, refusals: VecDeque::new(), last_event: None }
    }

    /// Records one refusal at `now` from `peer`; returns the burst to report,
    /// when this refusal completes one and none was reported in the last window.
    pub fn refused(&mut self, now: Instant, peer: Option<IpAddr>) -> Option<BurstReport> {
        if self.threshold == 0 {
            return None;
        }
        while self.refusals.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window) {
            self.refusals.pop_front();
        }
        if self.refusals.len() == MAX_REMEMBERED {
            self.refusals.pop_front();
        }
        self.refusals.push_back((now, peer));
        if self.refusals.len() < self.threshold as usize || self.last_event.is_some_and(|t| now.saturating_duration_since(t) < self.window)
        {
            return None;
        }
        self.last_event = Some(now);
        let mut addresses: Vec<String> = Vec::new();
        for a in self.refusals.iter().filter_map(|(_, p)| p.map(|ip| ip.to_string())) {
            if addresses.len() == MAX_ADDRESSES {
                break;
            }
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        Some(BurstReport { count: self.refusals.len(), addresses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_window_from_the_threshold_on() {
        let t0 = Instant::now();
        let ip = |n: u8| Some(IpAddr::from([10, 0, 0, n]));
        let mut b = Burst::new(10, Duration::from_secs(60));
        for i in 0..9 {
            assert_eq!(b.refused(t0 + Duration::from_secs(i), ip(i as u8 % 3)), None);
        }
        let r = b.refused(t0 + Duration::from_secs(9), ip(1)).expect("the 10th refusal is a burst");
        assert_eq!(r.count, 10);
        assert_eq!(r.addresses, ["10.0.0.0", "10.0.0.1", "10.0.0.2"]);
        for i in 10..68 {
            assert_eq!(b.refused(t0 + Duration::from_secs(i), ip(1)), None, "at most one per window ({i})");
        }
        // A window after the first event, refusals still coming: one more.
        let r = b.refused(t0 + Duration::from_secs(69), ip(1)).expect("a new window");
        assert_eq!(r.count, 59, "the refusals of the last 60 s: at 10..=67 s and 69 s");
        // Slow refusals never make a burst.
        let mut slow = Burst::new(10, Duration::from_secs(60));
        for i in 0..100 {
            assert_eq!(slow.refused(t0 + Duration::from_secs(7 * i), None), None);
        }
        let mut off = Burst::new(0, Duration::from_secs(60));
        assert!((0..100).all(|_| off.refused(t0, None).is_none()));
    }

    #[test]
    fn at_most_ten_addresses_and_bounded_memory() {
        let t0 = Instant::now();
        let mut b = Burst::new(MAX_REMEMBERED as u32 + 10, Duration::from_secs(60));
        for i in 0..(MAX_REMEMBERED as u32 + 100) {
            let r = b.refused(t0, Some(IpAddr::from((i + 1).to_be_bytes())));
            assert!(r.is_none());
        }
        assert_eq!(b.refusals.len(), MAX_REMEMBERED);
        let mut b = Burst::new(20, Duration::from_secs(60));
        let r = (0..20u8).filter_map(|i| b.refused(t0, Some(IpAddr::from([192, 168, 0, i])))).next().unwrap();
        assert_eq!((r.count, r.addresses.len()), (20, MAX_ADDRESSES));
    }
}
