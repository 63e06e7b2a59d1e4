//! The driver's task: connect, run the connection, reconnect with backoff.
//! Reading and handing over is in [`super::fill`], acknowledgements in
//! [`super::acks`], one connection's life in [`super::connection`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::held::SeqSet;
use super::lanes::Lanes;
use super::{Lost, Settings, Sink};
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::{EventSource, Severity};
use crate::telemetry::SinkStats;
use crate::util::{Backoff, RateLimited};

/// How one connection ended.
pub(super) enum End {
    /// Stop requested and done (graceful).
    Stopped,
    /// Connection lost.
    Lost(Lost),
}

/// Reconnection bookkeeping across connections.
pub(super) struct Retry {
    pub(super) backoff: Backoff,
    pub(super) failures: u64,
    pub(super) unreachable_log: RateLimited,
}

/// Runs one [`Sink`] against the buffer (see the module docs for its promises).
pub struct Driver<S: Sink> {
    pub(super) sink: S,
    pub(super) set: Settings,
    pub(super) reader: Reader,
    pub(super) cursor: SinkCursor,
    pub(super) committed: watch::Receiver<u64>,
    pub(super) stats: Arc<SinkStats>,
    pub(super) events: Option<Events>,
    pub(super) encoder: Arc<Mutex<S::Encoder>>,
    /// What the far end said it holds at the last connect ([`Sink::holds`]).
    pub(super) held: Arc<SeqSet>,
    /// Keeps the tap holding recent batches (it keeps nothing without a
    /// subscriber), so a sink that keeps up reads from memory, not SQLite.
    _live: crate::buffer::TapHold,
}

impl<S: Sink> Driver<S> {
    /// A driver delivering rows after `cursor`, woken by `committed`.
    pub fn new(sink: S, reader: Reader, cursor: SinkCursor, committed: watch::Receiver<u64>, stats: Arc<SinkStats>) -> Driver<S> {
        let set = sink.settings();
        let encoder = Arc::new(Mutex::new(sink.encoder()));
        let _live = reader.tap().hold();
        Driver { sink, set, reader, cursor, committed, stats, events: None, encoder, held: Arc::default(), _live }
    }

    /// Emits `sink.connected`, `sink.disconnected`, `sink.unreachable` and
    /// `sink.refused` events (and quarantines refused messages) through `events`.
    pub fn with_events(mut self, events: Events) -> Driver<S> {
        self.events = Some(events);
        self
    }

    pub(super) fn emit(&self, kind: &str, severity: Severity, message: String, details: serde_json::Value) {
        if let Some(e) = &self.events {
            e.emit_now(kind, severity, EventSource::Sink(self.set.name.as_str().into()), message, details);
        }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to
    /// `grace` and closes the connection.
    pub async fn run(mut self, stop: CancellationToken, grace: Duration) {
        // The backlog-age alarm runs beside the connection, as long as this does.
        let alarm_stop = stop.child_token();
        let _alarm = alarm_stop.clone().drop_guard();
        if let Some(events) = self.events.clone().filter(|_| !self.set.backlog_alarm_age.is_zero()) {
            let w = super::backlog_age::Watch {
                name: self.set.name.clone(),
                threshold: self.set.backlog_alarm_age,
                reader: self.reader.clone(),
                cursor: self.cursor.clone(),
                committed: self.committed.clone(),
                events,
            };
            tokio::spawn(super::backlog_age::run(w, alarm_stop));
        }
        let mut lanes = Lanes::resume(self.cursor.get(), self.cursor.live(), self.set.backlog_threshold);
        let mut retry = Retry {
            backoff: Backoff::new(Duration::from_secs(1), self.set.reconnect_max),
            failures: 0,
            unreachable_log: RateLimited::new(Duration::from_secs(60)),
        };
        loop {
            if stop.is_cancelled() {
                return;
            }
            self.stats.set_outage(|o| o.retry_at = None);
            let conn = tokio::select! {
                _ = stop.cancelled() => return,
                c = self.sink.connect() => c,
            };
            let end = match conn {
                Ok(c) => self.connected(c, &mut lanes, &stop, grace, &mut retry).await,
                Err(l) => End::Lost(l),
            };
            match end {
                End::Stopped => return,
                End::Lost(l) => {
                    lanes.rewind();
                    self.stats.in_flight.store(0, Ordering::Relaxed);
                    let wait = self.lost(&l, &lanes, &mut retry);
                    let oldest = self.oldest_waiting(lanes.cursor()).await;
                    self.stats.set_outage(|o| {
                        o.since.get_or_insert_with(std::time::SystemTime::now);
                        o.retry_at = Some(std::time::Instant::now() + wait);
                        o.oldest = oldest;
                    });
                    if stop.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Acceptance time of the first record after `after` (the oldest one not
    /// acknowledged), for the status line's `(oldest 35 s)`; `None` when
    /// nothing waits or the buffer cannot be read.
    async fn oldest_waiting(&self, after: u64) -> Option<crate::model::Timestamp> {
        let head = *self.committed.borrow();
        if head <= after {
            return None;
        }
        let reader = self.reader.clone();
        let rows = tokio::task::spawn_blocking(move || reader.recent_or_stored_blocking(after, head, 1)).await.ok()?.ok()?;
        rows.refs().first().map(|r| r.accepted_ts())
    }

    /// Reports a lost (or failed) connection; returns the wait before the next try.
    fn lost(&self, l: &Lost, lanes: &Lanes, retry: &mut Retry) -> Duration {
        let was_up = self.stats.connected.swap(false, Ordering::Relaxed);
        // A library's error may quote a URL with its credentials.
        let reason = crate::util::redact::text(&l.reason);
        self.stats.set_error(reason.clone());
        retry.failures += 1;
        let (name, target, proto, e) = (&self.set.name, &self.set.target, self.set.protocol, &reason);
        if was_up {
            let backlog = self.committed.borrow().saturating_sub(lanes.cursor());
            tracing::warn!(sink = %name, target = %target, error = %e, backlog,
                "{proto} connection lost; samples stay in the buffer until {target} is back");
            self.emit(
                "sink.disconnected",
                Severity::Warning,
                format!("{proto} connection to {target} lost: {e}; records stay in the buffer"),
                serde_json::json!({"target": target, "error": e, "backlog": backlog}),
            );
            retry.unreachable_log.allow_if(true);
            retry.failures = 1;
        } else if retry.unreachable_log.allow_if(retry.failures == 1).is_some() {
            tracing::warn!(sink = %name, target = %target, error = %e, attempts = retry.failures, "{proto} {target} unreachable; buffering");
            self.emit(
                "sink.unreachable",
                Severity::Warning,
                format!("{proto} {target} unreachable: {e}; buffering"),
                serde_json::json!({"target": target, "error": e, "attempts": retry.failures}),
            );
        }
        // The schedule moves on either way; the far end's own wait wins.
        let wait = retry.backoff.next_wait();
        l.retry_after.unwrap_or(wait)
    }
}
