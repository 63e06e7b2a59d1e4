//! The in-memory side of the history writer: turns committed samples into
//! one [`Batch`] per flush (raw rows and per-minute / per-hour [`Agg`]s).
//!
//! Memory is bounded by what arrives between two flushes: one raw row per
//! sample and one `Agg` per (tag, minute) and (tag, hour) touched; the
//! writer flushes early past [`FLUSH_ROWS`] rows.

use std::collections::HashMap;

use super::agg::{HOUR_NS, MINUTE_NS, bucket};
use super::store::Batch;
use crate::model::Sample;

/// Raw rows that make the writer flush before its interval.
pub const FLUSH_ROWS: usize = 100_000;

/// Collects samples for the next flush.
#[derive(Debug, Default)]
pub struct Collector {
    /// device → tag → id (looked up by `&str`: no allocation per sample).
    ids: HashMap<String, HashMap<String, i64>>,
    next_id: i64,
    batch: Batch,
    /// The greatest `seq` taken so far: a sample at or below it is skipped.
    last_seq: u64,
}

impl Collector {
    /// A collector knowing the stored tags, resuming after `last_seq`.
    pub fn new(tags: HashMap<(String, String), i64>, last_seq: u64) -> Collector {
        let next_id = tags.values().max().copied().unwrap_or(0) + 1;
        let mut ids: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for ((d, t), id) in tags {
            ids.entry(d).or_default().insert(t, id);
        }
        Collector { ids, next_id, batch: Batch { last_seq, ..Batch::default() }, last_seq }
    }

    /// The greatest `seq` taken so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Raw rows waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.batch.raw.len()
    }

    /// Takes one committed sample (skipped when its `seq` was taken before).
    pub fn add(&mut self, s: &Sample) {
        if s.seq <= self.last_seq {
            return;
        }
        self.last_seq = s.seq;
        self.batch.last_seq = s.seq;
        let id = self.id(&s.meta.device, &s.meta.tag);
        let value = if s.quality == crate::model::Quality::Good { s.value.as_f64().filter(|v| v.is_finite()) } else { None };
        let ts = s.ts.0;
        self.batch.raw.push((id, ts, s.seq, s.quality.code(), value));
        for (i, width) in [MINUTE_NS, HOUR_NS].into_iter().enumerate() {
            self.batch.rollups[i].entry((id, bucket(ts, width))).or_default().add(s.quality, value, ts, s.seq);
        }
    }

    /// Marks everything up to `seq` as taken (records that are not samples,
    /// or a range the buffer no longer holds).
    pub fn skip_to(&mut self, seq: u64) {
        if seq > self.last_seq {
            self.last_seq = seq;
            self.batch.last_seq = seq;
        }
    }

    /// The batch collected since the last call.
    pub fn take(&mut self) -> Batch {
        std::mem::replace(&mut self.batch, Batch { last_seq: self.last_seq, ..Batch::default() })
    }

    fn id(&mut self, device: &str, tag: &str) -> i64 {
        if let Some(id) = self.ids.get(device).and_then(|t| t.get(tag)) {
            return *id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.ids.entry(device.to_string()).or_default().insert(tag.to_string(), id);
        self.batch.new_tags.push((id, device.to_string(), tag.to_string()));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Sample, TagMeta, Timestamp, Value};

    #[test]
    fn samples_go_to_raw_and_both_rollups_once() {
        let m = TagMeta::new("pump", "t", None);
        let mut c = Collector::new(HashMap::new(), 0);
        for (seq, v, ts) in [(1, 1.0, 0), (2, 3.0, MINUTE_NS - 1), (3, 10.0, MINUTE_NS)] {
            let mut s = Sample::good(m.clone(), Value::F64(v), Timestamp(ts));
            s.seq = seq;
            c.add(&s);
            c.add(&s); // again: skipped
        }
        let b = c.take();
        assert_eq!(b.raw.len(), 3);
        assert_eq!(b.new_tags, vec![(1, "pump".to_string(), "t".to_string())]);
        assert_eq!(b.last_seq, 3);
        let m0 = b.rollups[0][&(1, 0)];
        assert_eq!((m0.count, m0.sum, m0.last.map(|l| l.2)), (2, 4.0, Some(3.0)));
        assert_eq!(b.rollups[1][&(1, 0)].count, 3);
        assert!(c.take().is_empty());
    }
}
