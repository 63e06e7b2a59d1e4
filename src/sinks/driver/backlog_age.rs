//! The backlog-age alarm of every sink (issue 13, detector `sink_backlog`):
//! `sink.backlog_old` (warning) once the oldest record the sink has not
//! delivered was accepted more than `backlog_alarm_age` ago, and
//! `sink.backlog_ok` (info) once it is younger than half that again (or
//! nothing waits): one event per transition, with hysteresis so a sink that
//! hovers around the threshold does not flap.
//!
//! - **Age on the buffer's observed clock** ([`crate::buffer::Reader::observed_age_blocking`]:
//!   the `marks` of `buffer/clock.rs`, monotonic, persisted every second),
//!   so a wall-clock jump neither raises nor hides it; precise to about 2 s.
//!   Time while the gateway is stopped does not count (as for `max_age`).
//! - **Checked every [`CHECK_EVERY`]** (or a quarter of the threshold when
//!   shorter), whatever the connection does: one indexed lookup on the
//!   buffer's reader while something waits, nothing otherwise.
//! - `backlog_alarm_age = "0s"` turns it off; default
//!   [`DEFAULT_BACKLOG_ALARM_AGE`].

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::{EventSource, Severity};

/// Default `backlog_alarm_age` of every sink.
pub const DEFAULT_BACKLOG_ALARM_AGE: Duration = Duration::from_secs(60);

/// Longest time between two checks.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Its `details.detector`.
pub const DETECTOR: &str = "sink_backlog";

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The oldest waiting record just became older than the threshold.
    Old,
    /// It is younger than half the threshold again, or nothing waits.
    Ok,
}

/// The alarm's state: pure, fed with each check's oldest age.
#[derive(Debug, Clone)]
pub struct BacklogAlarm {
    threshold: Duration,
    old: bool,
}

impl BacklogAlarm {
    /// An alarm at `threshold` (zero: never raised).
    pub fn new(threshold: Duration) -> BacklogAlarm {
        BacklogAlarm { threshold, old: false }
    }

    /// Takes the age of the oldest waiting record (`None`: nothing waits)
    /// and returns the transition, if any.
    pub fn check(&mut self, oldest: Option<Duration>) -> Option<Transition> {
        if self.threshold.is_zero() {
            return None;
        }
        match oldest {
            Some(age) if !self.old && age >= self.threshold => {
                self.old = true;
                Some(Transition::Old)
            }
            Some(age) if self.old && age >= self.threshold / 2 => None,
            _ if self.old => {
                self.old = false;
                Some(Transition::Ok)
            }
            _ => None,
        }
    }
}

/// What the watcher reads.
pub(super) struct Watch {
    pub(super) name: String,
    pub(super) threshold: Duration,
    pub(super) reader: Reader,
    pub(super) cursor: SinkCursor,
    pub(super) committed: watch::Receiver<u64>,
    pub(super) events: Events,
}

/// Checks the sink's oldest waiting record until `stop` (see the module docs).
pub(super) async fn run(w: Watch, stop: CancellationToken) {
    let every = CHECK_EVERY.min(w.threshold / 4).max(Duration::from_millis(50));
    let mut alarm = BacklogAlarm::new(w.threshold);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (head, cursor) = (*w.committed.borrow(), w.cursor.get());
        let backlog = head.saturating_sub(cursor);
        let oldest = if backlog == 0 {
            None
        } else {
            let reader = w.reader.clone();
            match tokio::task::spawn_blocking(move || reader.observed_age_blocking(cursor + 1)).await {
                Ok(Ok(Some(age))) => Some(age),
                // No clock reading yet (a fresh buffer): decide at the next check.
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => continue,
            }
        };
        let Some(t) = alarm.check(oldest) else { continue };
        let age_s = oldest.map_or(0.0, |a| a.as_secs_f64());
        let threshold = crate::units::format_duration(w.threshold);
        let (kind, severity, message) = match t {
            Transition::Old => (
                "sink.backlog_old",
                Severity::Warning,
                format!("sink {}: {backlog} records waiting, the oldest accepted {age_s:.0} s ago (backlog_alarm_age {threshold})", w.name),
            ),
            Transition::Ok => (
                "sink.backlog_ok",
                Severity::Info,
                format!("sink {}: backlog drained ({backlog} records waiting, oldest {age_s:.0} s)", w.name),
            ),
        };
        tracing::info!(sink = %w.name, backlog, oldest_age_s = age_s, "{message}");
        let details = json!({
            "detector": DETECTOR, "oldest_age_s": (age_s * 10.0).round() / 10.0, "backlog": backlog,
            "threshold_s": w.threshold.as_secs_f64(),
        });
        w.events.emit_now(kind, severity, EventSource::Sink(w.name.as_str().into()), message, details);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_once_past_the_threshold_and_cleared_below_half_of_it() {
        let s = Duration::from_secs;
        let mut a = BacklogAlarm::new(s(60));
        assert_eq!(a.check(None), None);
        assert_eq!(a.check(Some(s(59))), None);
        assert_eq!(a.check(Some(s(60))), Some(Transition::Old));
        assert_eq!(a.check(Some(s(90))), None, "one event per transition");
        assert_eq!(a.check(Some(s(31))), None, "hysteresis: still above half");
        assert_eq!(a.check(Some(s(29))), Some(Transition::Ok));
        assert_eq!(a.check(Some(s(29))), None);
        assert_eq!(a.check(Some(s(61))), Some(Transition::Old));
        assert_eq!(a.check(None), Some(Transition::Ok), "drained");
        let mut off = BacklogAlarm::new(Duration::ZERO);
        assert_eq!(off.check(Some(s(1_000_000))), None);
    }
}
