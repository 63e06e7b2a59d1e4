//! The live table: the last committed sample of every tag, for whoever must
//! know "what does this tag read now" without asking the device: write
//! interlocks and the bad-quality refusal (issue 12), the admin API's tag
//! list and the dashboard (issue 14).
//!
//! ```text
//! buffer writer ─commit─► tap ─► live task ─► LiveTable (device → tag → Latest)
//!                                              ▲ get / snapshot (any task, cheap clones)
//! ```
//!
//! # Invariants
//! - **Committed only.** The table is fed from the committed-data tap
//!   ([`crate::buffer::tap`]), so it never shows a value that could still be
//!   lost, and it follows `seq` order: a tag's entry only moves forward.
//! - **Exactly what was stored.** Value, quality and reason are the sample's,
//!   unchanged: a bad sample replaces a good one (a tag whose last read
//!   failed is not shown with an older good value); age is computed by the
//!   reader from `ts`.
//! - **Never stale without saying so.** When the task falls behind the tap's
//!   memory it records how many samples it missed ([`LiveTable::missed`]);
//!   readers that decide on a value (interlocks) also check its age.
//! - **Bounded.** One entry per tag ever seen since start (tags come from
//!   the configuration or from data; the table is not persisted).
//! - Readers take a read lock for the time of one lookup or one snapshot
//!   copy; the live task takes the write lock once per committed batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::tap::Tap;
use crate::model::{Quality, Record, Sample, Timestamp, Value};

/// The last committed sample of one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    /// Acceptance sequence number of that sample.
    pub seq: u64,
    /// Its value ([`Value::Null`] when bad).
    pub value: Value,
    /// Its quality.
    pub quality: Quality,
    /// Why it is not good, if it is not.
    pub reason: Option<Arc<str>>,
    /// Source (or acquisition) time, UTC.
    pub ts: Timestamp,
    /// Engineering unit, if configured.
    pub unit: Option<Arc<str>>,
}

impl Latest {
    fn of(s: &Sample) -> Latest {
        Latest { seq: s.seq, value: s.value.clone(), quality: s.quality, reason: s.reason.clone(), ts: s.ts, unit: s.meta.unit.clone() }
    }

    /// Age at `now`, in nanoseconds (0 when `ts` is in the future).
    pub fn age_ns(&self, now: Timestamp) -> i64 {
        (now.as_nanos() - self.ts.as_nanos()).max(0)
    }
}

type Tags = HashMap<Arc<str>, Latest>;

#[derive(Debug, Default)]
struct Inner {
    devices: RwLock<HashMap<Arc<str>, Tags>>,
    missed: AtomicU64,
}

/// The last committed sample per `device/tag`. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct LiveTable {
    inner: Arc<Inner>,
}

impl LiveTable {
    /// An empty table (fed by [`LiveTable::spawn`] or [`LiveTable::update`]).
    pub fn new() -> LiveTable {
        LiveTable::default()
    }

    /// The last committed sample of `device`/`tag`, if one was seen.
    pub fn get(&self, device: &str, tag: &str) -> Option<Latest> {
        let g = self.inner.devices.read().unwrap_or_else(|p| p.into_inner());
        g.get(device)?.get(tag).cloned()
    }

    /// Every tag, as `(device, tag, latest)`, sorted by device then tag.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<str>, Latest)> {
        let g = self.inner.devices.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = g.iter().flat_map(|(d, tags)| tags.iter().map(move |(t, l)| (d.clone(), t.clone(), l.clone()))).collect();
        drop(g);
        out.sort_by(|a, b| (&*a.0, &*a.1).cmp(&(&*b.0, &*b.1)));
        out
    }

    /// Number of tags held.
    pub fn len(&self) -> usize {
        let g = self.inner.devices.read().unwrap_or_else(|p| p.into_inner());
        g.values().map(HashMap::len).sum()
    }

    /// True when no sample was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Committed samples the table never saw (it fell behind the tap's memory).
    pub fn missed(&self) -> u64 {
        self.inner.missed.load(Ordering::Relaxed)
    }

    /// Takes in committed records (samples; events are ignored), in `seq`
    /// order. A sample older (by `seq`) than the entry held is ignored.
    pub fn update<'a>(&self, records: impl IntoIterator<Item = &'a Record>) {
        let mut g = self.inner.devices.write().unwrap_or_else(|p| p.into_inner());
        for s in records.into_iter().filter_map(Record::as_sample) {
            let tags = match g.get_mut(&*s.meta.device) {
                Some(t) => t,
                None => g.entry(s.meta.device.clone()).or_default(),
            };
            match tags.get_mut(&*s.meta.tag) {
                Some(l) if l.seq > s.seq && s.seq != 0 => {}
                Some(l) => *l = Latest::of(s),
                None => {
                    tags.insert(s.meta.tag.clone(), Latest::of(s));
                }
            }
        }
    }

    /// Follows `tap` until `stop` fires or the buffer closes. Subscribe
    /// before sources start so no sample is missed.
    pub fn spawn(&self, tap: &Arc<Tap>, stop: CancellationToken) -> JoinHandle<()> {
        let mut sub = tap.subscribe();
        let table = self.clone();
        tokio::spawn(async move {
            loop {
                let t = tokio::select! {
                    _ = stop.cancelled() => return,
                    t = sub.recv() => match t { Some(t) => t, None => return },
                };
                if t.missed_samples > 0 {
                    table.inner.missed.fetch_add(t.missed_samples, Ordering::Relaxed);
                    tracing::warn!(missed = t.missed_samples, "live table fell behind the committed data; some tags may show older values");
                }
                table.update(t.records());
            }
        })
    }
}

#[cfg(test)]
mod tests;
