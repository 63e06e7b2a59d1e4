//! What the far end said about a message: acknowledged, refused for good
//! (quarantined), or stored without some of its records.

use std::sync::atomic::Ordering;

use super::fill::Flight;
use super::lanes::Lanes;
use super::{Driver, RefusedRecord, Sink, Token};
use crate::ingest::Group;
use crate::model::Severity;
use crate::util::escape::escape;

impl<S: Sink> Driver<S> {
    pub(super) fn acked(&self, lanes: &mut Lanes, f: &mut Flight<S::Msg>, token: Token) {
        if let Some(slot) = f.outstanding.remove(&token) {
            self.stats.acked_now(slot.since.elapsed());
            lanes.ack(slot.batch);
            self.stats.landed(slot.records);
            self.stats.acked.fetch_add(slot.records as u64, Ordering::Relaxed);
        }
    }

    /// A message refused for good: quarantined, reported, and counted as handled.
    pub(super) fn refused(&self, lanes: &mut Lanes, f: &mut Flight<S::Msg>, token: Token, reason: String) {
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
    pub(super) fn acked_except(&self, lanes: &mut Lanes, f: &mut Flight<S::Msg>, token: Token, refused: Vec<RefusedRecord>) {
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
            self.stats.acked_now(slot.since.elapsed());
            lanes.ack(slot.batch);
            self.stats.landed(slot.records);
            self.stats.acked.fetch_add(slot.records.saturating_sub(n) as u64, Ordering::Relaxed);
        }
    }
}
