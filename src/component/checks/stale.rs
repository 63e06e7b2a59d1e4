//! Stale tags: no new sample for k poll periods (or `stale_after`).
//!
//! The producing source's [`super::Checker`] stamps a tag's slot each time
//! it passes a sample (good or bad: a device that is down produces bad
//! samples every cycle, which is not stale) with one relaxed atomic store;
//! one watcher task ([`watch`]) scans the slots at a resolution of 1/20 of
//! the shortest limit (10 ms … 250 ms) and, for each tag past its limit,
//! pushes one bad sample with value null and reason `stale` and emits one
//! `tag.flagged`; the source's next sample of the tag emits `tag.cleared`.
//! A tag is flagged no later than its limit after its last sample (a tag
//! is considered stale from `limit − resolution` on).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Events, Ingest};
use crate::model::{EventSource, Sample, Severity, TagMeta, Timestamp};

/// One watched tag.
#[derive(Debug)]
pub struct StaleSlot {
    /// The tag.
    pub meta: Arc<TagMeta>,
    /// No new sample for this long is stale.
    pub limit: Duration,
    /// How the limit was set, for the reason (`2 poll periods of 1s`).
    pub why: String,
    /// Nanoseconds since the board's epoch of the last sample.
    last_seen: AtomicU64,
    /// A stale episode is open.
    flagged: AtomicBool,
}

impl StaleSlot {
    /// A sample of the tag went by; true when this closes a stale episode.
    pub fn seen(&self, board: &StaleBoard) -> bool {
        self.last_seen.store(board.now_ns(), Ordering::Relaxed);
        self.flagged.load(Ordering::Relaxed) && self.flagged.swap(false, Ordering::AcqRel)
    }
}

/// Every watched tag of a gateway (shared by its sources and the watcher).
#[derive(Debug, Default)]
pub struct StaleBoard {
    epoch: OnceLock<Instant>,
    slots: Mutex<Vec<Arc<StaleSlot>>>,
}

impl StaleBoard {
    fn now_ns(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    /// Watches `meta` from now on (called once per tag by its checker).
    pub fn register(&self, meta: Arc<TagMeta>, limit: Duration, why: String) -> Arc<StaleSlot> {
        let slot = Arc::new(StaleSlot { meta, limit, why, last_seen: AtomicU64::new(self.now_ns()), flagged: AtomicBool::new(false) });
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).push(slot.clone());
        slot
    }

    /// Number of watched tags.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no tag is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scan period: 1/20 of the shortest limit, within 10 ms … 250 ms.
    pub fn resolution(&self) -> Duration {
        let g = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let shortest = g.iter().map(|s| s.limit).min().unwrap_or(Duration::from_secs(5));
        (shortest / 20).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }

    /// The tags that became stale (each opens an episode: returned once),
    /// with how long they have been silent.
    pub fn scan(&self, resolution: Duration) -> Vec<(Arc<StaleSlot>, Duration)> {
        let now = self.now_ns();
        let g = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for s in g.iter() {
            let age = Duration::from_nanos(now.saturating_sub(s.last_seen.load(Ordering::Relaxed)));
            if age + resolution >= s.limit && !s.flagged.swap(true, Ordering::AcqRel) {
                // A sample may have come in between: then it is not stale.
                let age2 = Duration::from_nanos(now.saturating_sub(s.last_seen.load(Ordering::Acquire)));
                if age2 + resolution < s.limit {
                    s.flagged.store(false, Ordering::Release);
                    continue;
                }
                out.push((s.clone(), age2));
            }
        }
        out
    }
}

/// The watcher: scans `board` until `stop`, pushing one stale sample and
/// one `tag.flagged` per episode.
pub fn watch(board: Arc<StaleBoard>, ingest: Arc<Ingest>, events: Option<Events>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let every = board.resolution();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            for (slot, age) in board.scan(every) {
                let reason = format!("stale: no new sample for {:.1}s (limit {})", age.as_secs_f64(), slot.why);
                let m = &slot.meta;
                tracing::info!(tag = %m.path(), "{reason}");
                ingest.push(Sample::bad(m.clone(), reason.as_str().into(), Timestamp::now())).await;
                if let Some(ev) = &events {
                    let src = EventSource::Tag { device: m.device.clone(), tag: m.tag.clone() };
                    let details = serde_json::json!({"detector": "stale", "reason": reason, "value": null});
                    ev.emit_now("tag.flagged", Severity::Warning, src, format!("{} flagged: {reason}", m.path()), details);
                }
            }
        }
    })
}
