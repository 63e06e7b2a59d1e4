//! The driver's task: connect, read, hand over, acknowledge, reconnect.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lanes::{Lanes, ReadPlan};
use super::{Encoder, Lost, Outcome, Prepared, RefusedRecord, Settings, Sink, Token};
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::{Events, Group};
use crate::model::{EventSource, Severity};
use crate::telemetry::SinkStats;
use crate::util::escape::escape;
use crate::util::{Backoff, RateLimited};

/// A message handed over and not yet acknowledged.
struct Slot {
    batch: u64,
    records: usize,
    /// The `seq` range of the read it belongs to (for a refusal's report).
    span: (u64, u64),
    since: Instant,
}

/// Per-connection state: messages waiting for the window, messages in flight.
struct Flight<M> {
    pending: VecDeque<(Prepared<M>, u64, (u64, u64))>,
    outstanding: BTreeMap<Token, Slot>,
    next_token: Token,
}

enum End {
    /// Stop requested and done (graceful).
    Stopped,
    /// Connection lost.
    Lost(Lost),
}

/// Reconnection bookkeeping across connections.
struct Retry {
    backoff: Backoff,
    failures: u64,
    unreachable_log: RateLimited,
}

/// Reads of at most this many records found in the tap are encoded on the
/// driver's task; larger ones (and every SQLite read) on the blocking pool.
const INLINE_RECORDS: usize = 512;

/// Encodes `rows`; returns the messages, the last record's seq, and whether
/// the read reached its upper bound (fewer records than `limit`).
#[allow(clippy::type_complexity)]
fn encode<E: Encoder>(
    encoder: &Mutex<E>,
    rows: &crate::buffer::Records,
    limit: usize,
) -> anyhow::Result<(Vec<Prepared<E::Msg>>, Option<u64>, bool)> {
    let mut out = Vec::new();
    encoder.lock().map_err(|_| anyhow::anyhow!("encoder poisoned"))?.encode(&rows.refs(), &mut out);
    Ok((out, rows.last_seq(), rows.len() < limit))
}

/// Runs one [`Sink`] against the buffer (see the module docs for its promises).
pub struct Driver<S: Sink> {
    sink: S,
    set: Settings,
    reader: Reader,
    cursor: SinkCursor,
    committed: watch::Receiver<u64>,
    stats: Arc<SinkStats>,
    events: Option<Events>,
    encoder: Arc<Mutex<S::Encoder>>,
}

impl<S: Sink> Driver<S> {
    /// A driver delivering rows after `cursor`, woken by `committed`.
    pub fn new(sink: S, reader: Reader, cursor: SinkCursor, committed: watch::Receiver<u64>, stats: Arc<SinkStats>) -> Driver<S> {
        let set = sink.settings();
        let encoder = Arc::new(Mutex::new(sink.encoder()));
        Driver { sink, set, reader, cursor, committed, stats, events: None, encoder }
    }

    /// Emits `sink.connected`, `sink.disconnected`, `sink.unreachable` and
    /// `sink.refused` events (and quarantines refused messages) through `events`.
    pub fn with_events(mut self, events: Events) -> Driver<S> {
        self.events = Some(events);
        self
    }

    fn emit(&self, kind: &str, severity: Severity, message: String, details: serde_json::Value) {
        if let Some(e) = &self.events {
            e.emit_now(kind, severity, EventSource::Sink(self.set.name.as_str().into()), message, details);
        }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to
    /// `grace` and closes the connection.
    pub async fn run(mut self, stop: CancellationToken, grace: Duration) {
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

    /// Reads and encodes the next batch on the blocking pool.
    /// Returns the messages, the last record's seq, and whether the read reached
    /// `plan.upto` (fewer records than `limit`).
    async fn prepare(&self, plan: ReadPlan, limit: usize) -> anyhow::Result<(Vec<Prepared<S::Msg>>, Option<u64>, bool)> {
        // A small read the tap still holds (a sink keeping up with live
        // data) is encoded right here: no query, and no hop to another
        // thread, which costs most of the latency on a loaded machine.
        if let Some(chunks) = self.reader.tap().range(plan.after, plan.upto, limit.min(INLINE_RECORDS)) {
            let rows = crate::buffer::Records::Recent(chunks);
            if rows.len() < INLINE_RECORDS {
                return encode(&self.encoder, &rows, limit);
            }
        }
        let reader = self.reader.clone();
        let encoder = self.encoder.clone();
        tokio::task::spawn_blocking(move || {
            let rows = reader.recent_or_stored_blocking(plan.after, plan.upto, limit)?;
            encode(&encoder, &rows, limit)
        })
        .await?
    }

    /// Hands pending messages over while the window allows, then reads more.
    async fn fill(&mut self, conn: &mut S::Conn, lanes: &mut Lanes, f: &mut Flight<S::Msg>) {
        let window = self.set.window;
        loop {
            while f.outstanding.len() < window {
                let Some((p, batch, span)) = f.pending.pop_front() else { break };
                let token = f.next_token;
                match self.sink.send(conn, p.msg, token) {
                    Ok(()) => {
                        f.next_token += 1;
                        f.outstanding.insert(token, Slot { batch, records: p.records, span, since: Instant::now() });
                        self.stats.in_flight.fetch_add(p.records as u64, Ordering::Relaxed);
                        self.stats.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(msg) => {
                        // The connection's own queue is full: retry after the next outcome.
                        f.pending.push_front((Prepared { msg, records: p.records }, batch, span));
                        break;
                    }
                }
            }
            if !f.pending.is_empty() || f.outstanding.len() >= window || lanes.batches_in_flight() >= 2 * window {
                return;
            }
            let head = *self.committed.borrow();
            let Some(plan) = lanes.next_read(head) else { return };
            let limit = if self.set.one_record_per_message {
                self.set.read_rows.min(window - f.outstanding.len()).max(1)
            } else {
                self.set.read_rows
            };
            let (outs, last, complete) = match self.prepare(plan, limit).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(sink = %self.set.name, error = %e, "cannot read the buffer; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return;
                }
            };
            let id = lanes.record(plan, last, complete, outs.len());
            let span = (plan.after + 1, last.unwrap_or(plan.upto));
            f.pending.extend(outs.into_iter().map(|o| (o, id, span)));
        }
    }

    fn acked(&self, lanes: &mut Lanes, f: &mut Flight<S::Msg>, token: Token) {
        if let Some(slot) = f.outstanding.remove(&token) {
            lanes.ack(slot.batch);
            self.stats.landed(slot.records);
            self.stats.acked.fetch_add(slot.records as u64, Ordering::Relaxed);
        }
    }

    /// A message refused for good: quarantined, reported, and counted as handled.
    fn refused(&self, lanes: &mut Lanes, f: &mut Flight<S::Msg>, token: Token, reason: String) {
        let Some(slot) = f.outstanding.get(&token) else { return };
        let (a, b) = slot.span;
        tracing::warn!(sink = %self.set.name, reason = %escape(&reason), "{} refused a message of records {a}..={b}; it goes to the quarantine", self.set.target);
        self.emit(
            "sink.refused",
            Severity::Error,
            format!("{} refused a message (records {a}..={b}): {reason}", self.set.target),
            serde_json::json!({"first_seq": a, "last_seq": b, "records": slot.records, "reason": reason}),
        );
        if let Some(e) = &self.events {
            let q = crate::model::Quarantined {
                source: self.set.name.clone(),
                origin: format!("sink {}", self.set.name),
                location: format!("seq {a}..={b}"),
                reason: format!("refused_by_sink: {reason}"),
                raw: String::new(),
            };
            e.quarantine(Group { quarantine: vec![q], ..Default::default() });
        }
        self.stats.refused.fetch_add(slot.records as u64, Ordering::Relaxed);
        self.acked(lanes, f, token);
    }

    /// A message stored without some records: those are quarantined one by
    /// one (with their `seq` and the far end's reason), one event says so,
    /// and the message counts as handled.
    fn acked_except(&self, lanes: &mut Lanes, f: &mut Flight<S::Msg>, token: Token, refused: Vec<RefusedRecord>) {
        if refused.is_empty() || !f.outstanding.contains_key(&token) {
            self.acked(lanes, f, token);
            return;
        }
        let n = refused.len();
        let first = &refused[0];
        let seqs: Vec<u64> = refused.iter().map(|r| r.seq).take(100).collect();
        tracing::warn!(sink = %self.set.name, refused = n, first_seq = first.seq, reason = %escape(&first.reason),
            "{} refused {n} record(s) of a batch for good; they go to the quarantine, the rest of the batch is stored", self.set.target);
        self.emit(
            "sink.refused",
            Severity::Error,
            format!(
                "{} refused {n} record(s) (first: seq {}: {}); quarantined, the rest was stored",
                self.set.target, first.seq, first.reason
            ),
            serde_json::json!({"records": n, "seqs": seqs, "first_seq": first.seq, "reason": first.reason}),
        );
        if let Some(e) = &self.events {
            let quarantine = refused
                .into_iter()
                .map(|r| crate::model::Quarantined {
                    source: self.set.name.clone(),
                    origin: format!("sink {}", self.set.name),
                    location: format!("seq {}", r.seq),
                    reason: format!("refused_by_sink: {}", r.reason),
                    raw: r.raw,
                })
                .collect();
            e.quarantine(Group { quarantine, ..Default::default() });
        }
        self.stats.refused.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(slot) = f.outstanding.remove(&token) {
            lanes.ack(slot.batch);
            self.stats.landed(slot.records);
            self.stats.acked.fetch_add(slot.records.saturating_sub(n) as u64, Ordering::Relaxed);
        }
    }

    /// Counts and announces a new connection (log line, `sink.connected`
    /// event), and skips what the far end says it already holds.
    fn on_connect(&mut self, conn: &S::Conn, lanes: &mut Lanes) {
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
        if let Some(held) = self.sink.holds_upto(conn) {
            let head = *self.committed.borrow();
            if held > head {
                tracing::warn!(sink = %self.set.name, held, head,
                    "{target} holds records of this gateway up to seq {held}, beyond the last one accepted here ({head}): another gateway with the same id?");
            }
            let before = lanes.cursor();
            lanes.skip_to(held.min(head));
            if lanes.cursor() > before {
                tracing::info!(sink = %self.set.name, from = before, to = lanes.cursor(),
                    "{target} already holds the records up to seq {}; not sending them again", lanes.cursor());
                self.cursor.advance(lanes.cursor());
            }
        }
    }

    async fn connected(
        &mut self,
        mut conn: S::Conn,
        lanes: &mut Lanes,
        stop: &CancellationToken,
        grace: Duration,
        retry: &mut Retry,
    ) -> End {
        retry.backoff.reset();
        self.on_connect(&conn, lanes);
        let mut f = Flight { pending: VecDeque::new(), outstanding: BTreeMap::new(), next_token: 1 };
        let mut draining: Option<(Instant, u64)> = None;
        let mut buffer_gone = false;
        loop {
            self.fill(&mut conn, lanes, &mut f).await;
            self.cursor.advance(lanes.cursor());
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
