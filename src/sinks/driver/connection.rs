//! One connection's life: announce it, fill the window, take the far end's
//! outcomes, follow the commits, time out silent acknowledgements, and drain
//! on stop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fill::Flight;
use super::lanes::Lanes;
use super::run::{End, Retry};
use super::{Driver, Lost, Outcome, Sink};
use crate::model::Severity;

impl<S: Sink> Driver<S> {
    /// Counts and announces a new connection (log line, `sink.connected`
    /// event), and skips what the far end says it already holds.
    pub(super) fn on_connect(&mut self, conn: &S::Conn, lanes: &mut Lanes) {
        self.stats.set_outage(|o| *o = Default::default());
        self.stats.connected.store(true, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        let backlog = self.committed.borrow().saturating_sub(lanes.cursor());
        let (proto, target) = (self.set.protocol, self.set.target.clone());
        tracing::info!(sink = %self.set.name, target = %target, backlog, "{proto} connected");
        self.emit(
            "sink.connected",
            Severity::Info,
            format!("{proto} connected to {target}; {backlog} records to deliver"),
            serde_json::json!({"target": target, "backlog": backlog}),
        );
        let held = self.sink.holds(conn);
        let head = *self.committed.borrow();
        if let Some(top) = held.last().map(|r| *r.end())
            && top > head
        {
            tracing::warn!(sink = %self.set.name, held = top, head,
                "{target} holds records of this gateway up to seq {top}, beyond the last one accepted here ({head}): another gateway with the same id?");
        }
        let before = lanes.cursor();
        lanes.skip_held(&held, head);
        if lanes.cursor() > before {
            tracing::info!(sink = %self.set.name, from = before, to = lanes.cursor(),
                "{target} already holds the records up to seq {}; not sending them again", lanes.cursor());
            self.cursor.advance(lanes.cursor());
        }
        self.held = std::sync::Arc::new(held);
    }

    pub(super) async fn connected(
        &mut self,
        mut conn: S::Conn,
        lanes: &mut Lanes,
        stop: &CancellationToken,
        grace: Duration,
        retry: &mut Retry,
    ) -> End {
        retry.backoff.reset();
        self.on_connect(&conn, lanes);
        self.sink.cursor_moved(&mut conn, lanes.cursor());
        let mut f = Flight { pending: VecDeque::new(), outstanding: BTreeMap::new(), next_token: 1 };
        let mut draining: Option<(Instant, u64)> = None;
        let mut buffer_gone = false;
        loop {
            self.fill(&mut conn, lanes, &mut f).await;
            self.cursor.advance(lanes.cursor());
            self.sink.cursor_moved(&mut conn, lanes.cursor());
            self.cursor.set_live(lanes.live_state());
            if let Some((deadline, target)) = draining {
                let done = lanes.cursor() >= target && f.pending.is_empty();
                if done || Instant::now() >= deadline {
                    if !done {
                        tracing::warn!(sink = %self.set.name, undelivered = target.saturating_sub(lanes.cursor()),
                            "stopping before {} acknowledged everything; the rest stays in the buffer", self.set.target);
                    }
                    self.sink.close(conn).await;
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.in_flight.store(0, Ordering::Relaxed);
                    return End::Stopped;
                }
            }
            // A far end (or a middlebox) that swallows acknowledgements must
            // not stall the sink forever: past `ack_timeout`, reconnect and resend.
            let oldest = f.outstanding.values().next().map(|s| s.since);
            if let Some(t) = oldest
                && t.elapsed() > self.set.ack_timeout
            {
                return End::Lost(Lost::new(format!(
                    "no acknowledgement within {}; reconnecting to resend",
                    crate::units::format_duration(self.set.ack_timeout)
                )));
            }
            let ack_check = tokio::time::sleep(Duration::from_millis(500));
            let timer = async {
                match draining {
                    Some((d, _)) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                o = self.sink.next(&mut conn) => match o {
                    Outcome::Acked(t) => self.acked(lanes, &mut f, t),
                    Outcome::Refused { token, reason } => self.refused(lanes, &mut f, token, reason),
                    Outcome::AckedExcept { token, refused } => self.acked_except(lanes, &mut f, token, refused),
                    Outcome::Lost(l) => return End::Lost(l),
                },
                r = self.committed.changed(), if !buffer_gone => {
                    if r.is_err() {
                        // The buffer is gone: deliver what is left, then stop.
                        buffer_gone = true;
                        if draining.is_none() {
                            draining = Some((Instant::now() + grace, *self.committed.borrow()));
                        }
                    }
                },
                _ = stop.cancelled(), if draining.is_none() => {
                    draining = Some((Instant::now() + grace, *self.committed.borrow()));
                },
                _ = timer => {}
                _ = ack_check, if oldest.is_some() => {}
            }
        }
    }
}
