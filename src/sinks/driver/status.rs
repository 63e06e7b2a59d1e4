//! A sink's part of the status line, the same for every sink because the
//! driver keeps what it reads ([`SinkStats`]: connection state, records in
//! flight, the outage with its next attempt and its oldest waiting record).
//!
//! - Connected: `plant-broker: connected, 12 waiting, 3 in flight`.
//!   *waiting*: committed records never handed to the far end yet; *in
//!   flight*: handed over, not acknowledged yet.
//! - First attempt under way: `plant-broker: connecting, 40 waiting`.
//! - Down: `plant-broker: down since 10:14:03, retrying in 4 s, buffering
//!   1,475 samples (oldest 35 s); last error: Connection refused (os error
//!   111)`. The time is the machine's local time; `retrying now` while an
//!   attempt is under way; the backlog counts records (samples and events)
//!   kept in the buffer for this sink; *oldest* is the age of the oldest of
//!   them (when it was accepted).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::telemetry::SinkStats;

/// The sink's state and backlog for the status line (`backlog`: committed
/// records after its cursor; `dropped`: records the buffer limits dropped
/// before this sink delivered them), without the sink's name. Drops and
/// records refused for good follow the state (`, 120 dropped, 3 refused`),
/// the last error comes last.
pub fn render(stats: &SinkStats, backlog: u64, dropped: u64) -> String {
    render_at(stats, backlog, dropped, SystemTime::now(), Instant::now())
}

/// [`render`] at the given wall-clock and monotonic times.
pub fn render_at(stats: &SinkStats, backlog: u64, dropped: u64, now: SystemTime, mono: Instant) -> String {
    let mut s = state(stats, backlog, now, mono);
    if dropped > 0 {
        s.push_str(&format!(", {} dropped", count(dropped)));
    }
    let refused = stats.refused.load(Ordering::Relaxed);
    if refused > 0 {
        s.push_str(&format!(", {} refused", count(refused)));
    }
    if !stats.connected.load(Ordering::Relaxed)
        && let Some(e) = stats.error()
    {
        s.push_str(&format!("; last error: {e}"));
    }
    s
}

fn state(stats: &SinkStats, backlog: u64, now: SystemTime, mono: Instant) -> String {
    let in_flight = stats.in_flight.load(Ordering::Relaxed).min(backlog);
    let waiting = backlog - in_flight;
    if stats.connected.load(Ordering::Relaxed) {
        return format!("connected, {} waiting, {} in flight", count(waiting), count(in_flight));
    }
    let outage = stats.outage();
    let Some(since) = outage.since else {
        return format!("connecting, {} waiting", count(backlog));
    };
    let since = chrono::DateTime::<chrono::Local>::from(since).format("%H:%M:%S");
    let retry = match outage.retry_at {
        Some(t) if t > mono => format!("retrying in {} s", (t - mono).as_secs_f64().ceil() as u64),
        _ => "retrying now".to_string(),
    };
    let mut s = format!("down since {since}, {retry}, buffering {} samples", count(backlog));
    if let Some(oldest) = outage.oldest.filter(|_| backlog > 0) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(oldest.as_nanos().max(0) as u64);
        s.push_str(&format!(" (oldest {})", age(now.duration_since(at).unwrap_or_default())));
    }
    s
}

/// `1475` → `1,475`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `35 s`, `12 min`, `5 h`, `3 d`: whole units, rounded down.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    #[test]
    fn counts_and_ages_read_like_the_issue() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1475), "1,475");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(age(Duration::from_secs(35)), "35 s");
        assert_eq!(age(Duration::from_secs(600)), "10 min");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 5)), "3 h");
        assert_eq!(age(Duration::from_secs(5 * 86_400)), "5 d");
    }

    #[test]
    fn connected_connecting_and_down() {
        let stats = SinkStats { name: "b".into(), ..Default::default() };
        let (now, mono) = (SystemTime::now(), Instant::now());
        assert_eq!(render_at(&stats, 40, 0, now, mono), "connecting, 40 waiting");
        stats.connected.store(true, Ordering::Relaxed);
        stats.in_flight.store(3, Ordering::Relaxed);
        assert_eq!(render_at(&stats, 1500, 0, now, mono), "connected, 1,497 waiting, 3 in flight");
        stats.connected.store(false, Ordering::Relaxed);
        stats.set_error("Connection refused (os error 111)");
        let oldest = now - Duration::from_secs(35);
        let ns = oldest.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64;
        stats.set_outage(|o| {
            o.since = Some(now - Duration::from_secs(40));
            o.retry_at = Some(mono + Duration::from_millis(3500));
            o.oldest = Some(Timestamp(ns));
        });
        let since = chrono::DateTime::<chrono::Local>::from(now - Duration::from_secs(40)).format("%H:%M:%S");
        assert_eq!(
            render_at(&stats, 1475, 0, now, mono),
            format!(
                "down since {since}, retrying in 4 s, buffering 1,475 samples (oldest 35 s); last error: Connection refused (os error 111)"
            )
        );
        stats.set_outage(|o| o.retry_at = None);
        assert!(render_at(&stats, 0, 0, now, mono).contains("retrying now, buffering 0 samples; last"));
        stats.refused.store(3, Ordering::Relaxed);
        assert!(
            render_at(&stats, 10, 1200, now, mono)
                .contains("samples (oldest 35 s), 1,200 dropped, 3 refused; last error: Connection refused")
        );
    }
}
