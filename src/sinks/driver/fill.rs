//! Reading committed records after the lanes' position, encoding them, and
//! handing the messages over while the in-flight window allows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::held::{self, SeqSet};
use super::lanes::{Lanes, ReadPlan};
use super::{Driver, Encoder, Prepared, Sink, Token};

/// A message handed over and not yet acknowledged.
pub(super) struct Slot {
    pub(super) batch: u64,
    pub(super) records: usize,
    /// The `seq` range of the read it belongs to (for a refusal's report).
    pub(super) span: (u64, u64),
    pub(super) since: Instant,
}

/// Per-connection state: messages waiting for the window, messages in flight.
pub(super) struct Flight<M> {
    pub(super) pending: VecDeque<(Prepared<M>, u64, (u64, u64))>,
    pub(super) outstanding: BTreeMap<Token, Slot>,
    pub(super) next_token: Token,
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
    held: &SeqSet,
) -> anyhow::Result<(Vec<Prepared<E::Msg>>, Option<u64>, bool)> {
    let mut out = Vec::new();
    let mut enc = encoder.lock().map_err(|_| anyhow::anyhow!("encoder poisoned"))?;
    let refs = rows.refs();
    // Records the far end already holds are left out (see `held`).
    for run in held::runs(&refs, held) {
        enc.encode(&run, &mut out);
    }
    Ok((out, rows.last_seq(), rows.len() < limit))
}

impl<S: Sink> Driver<S> {
    /// Reads and encodes the next batch on the blocking pool.
    /// Returns the messages, the last record's seq, and whether the read reached
    /// `plan.upto` (fewer records than `limit`).
    pub(super) async fn prepare(&self, plan: ReadPlan, limit: usize) -> anyhow::Result<(Vec<Prepared<S::Msg>>, Option<u64>, bool)> {
        // A small read the tap still holds (a sink keeping up with live
        // data) is encoded right here: no query, and no hop to another
        // thread, which costs most of the latency on a loaded machine.
        if let Some(chunks) = self.reader.tap().range(plan.after, plan.upto, limit.min(INLINE_RECORDS)) {
            let rows = crate::buffer::Records::Recent(chunks);
            if rows.len() < INLINE_RECORDS {
                return encode(&self.encoder, &rows, limit, &self.held);
            }
        }
        let reader = self.reader.clone();
        let encoder = self.encoder.clone();
        let held = self.held.clone();
        tokio::task::spawn_blocking(move || {
            let rows = reader.recent_or_stored_blocking(plan.after, plan.upto, limit)?;
            encode(&encoder, &rows, limit, &held)
        })
        .await?
    }

    /// Hands pending messages over while the window allows, then reads more.
    pub(super) async fn fill(&mut self, conn: &mut S::Conn, lanes: &mut Lanes, f: &mut Flight<S::Msg>) {
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
            let free = window - f.outstanding.len();
            if self.set.one_record_per_message && free < window / 2 && plan.upto - plan.after > free as u64 {
                // A backlog, one message per record: read it in large steps
                // once half the window is free, not one record per acknowledgement.
                return;
            }
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
}
