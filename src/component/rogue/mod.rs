//! The rogue-write detector (issue 13): a writable tag whose read value
//! changes without a relais write raises one `security.rogue_write` event
//! (severity error, source the tag, `details.detector = "rogue_write"`).
//!
//! ```text
//! Actuators::write ── begin/settle ──► RogueWatch (device → tag → marks, last value)
//! buffer writer ─commit─► tap ─► rogue task ──┘ ─► security.rogue_write (Events)
//! ```
//!
//! # How it decides
//! - **Which tags.** A device source registers its writable tags whose
//!   `rogue_write` is not `false` ([`RogueWatch::watch`], with its actuator
//!   registration); a writable tag should change only by relais's writes.
//!   A tag that a local HMI or the device itself also writes says
//!   `rogue_write = false` (`sources::writable`).
//! - **What relais wrote.** The actuator seam ([`crate::component::actuate`])
//!   sees every write that is not a dry run: it marks it when asked and when
//!   settled, with its value, result and read-back ([`judge::Mark`]). Rules,
//!   MQTT commands, `relais write` and read-backs all pass there.
//! - **When.** On the committed data (the tap), in `seq` order: every sample
//!   of a watched tag that carries a value is compared with the tag's
//!   previous one. A different value is relais's when a mark explains it
//!   ([`judge::explains`]: same value, written between the two observations
//!   or at most [`judge::SETTLE_WINDOW`] before the earlier one); otherwise
//!   it is a rogue write: one event per change. Samples without a value
//!   (a failed read) are skipped, so a change made while the device did not
//!   answer is reported at its first good read.
//! - **Cheap.** One lookup per committed sample only while some tag is
//!   watched (a flag checked once per batch otherwise); one lock per batch.
//!   Times are monotonic instants taken when the detector sees a sample,
//!   so a wall-clock jump changes nothing.
//! - The first value seen after start is the reference: a change made while
//!   relais was not running is not reported.

pub mod judge;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::buffer::tap::Tap;
use crate::component::actuate::{WriteOutcome, WriteRequest};
use crate::ingest::Events;
use crate::model::{Event, EventSource, Record, Severity, Timestamp, format_rfc3339};
use judge::{Mark, Seen, TagState, explains, same};

/// The event kind.
pub const KIND: &str = "security.rogue_write";
/// Its `details.detector`.
pub const DETECTOR: &str = "rogue_write";

#[derive(Debug, Default)]
struct Tag {
    watched: bool,
    state: TagState,
}

/// Device → tag → state.
type Devices = HashMap<Arc<str>, HashMap<Arc<str>, Tag>>;

#[derive(Debug, Default)]
struct Inner {
    devices: Mutex<Devices>,
    any: AtomicBool,
    ids: AtomicU64,
}

/// The watched tags and the writes relais made to them. Cheap to clone
/// (shared); every [`crate::component::Actuators`] clone holds the same one.
#[derive(Debug, Clone, Default)]
pub struct RogueWatch {
    inner: Arc<Inner>,
}

impl RogueWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Devices> {
        self.inner.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh_any(&self, g: &Devices) {
        let any = g.values().any(|tags| tags.values().any(|t| t.watched));
        self.inner.any.store(any, Ordering::Relaxed);
    }

    /// Watches exactly `tags` of `device` (a restarted source registers
    /// again: the tags' last values and marks are kept).
    pub fn watch(&self, device: &str, tags: &[String]) {
        let mut g = self.lock();
        let dev = g.entry(device.into()).or_default();
        dev.values_mut().for_each(|t| t.watched = false);
        for t in tags {
            dev.entry(t.as_str().into()).or_default().watched = true;
        }
        self.refresh_any(&g);
    }

    /// Stops watching `device` (removed by a configuration reload).
    pub fn unwatch(&self, device: &str) {
        let mut g = self.lock();
        g.remove(device);
        self.refresh_any(&g);
    }

    /// True when `device/tag` is watched.
    pub fn watched(&self, device: &str, tag: &str) -> bool {
        self.lock().get(device).and_then(|d| d.get(tag)).is_some_and(|t| t.watched)
    }

    /// Marks a write asked for now (none for a dry run); returns its id for
    /// [`RogueWatch::settle`].
    pub fn begin(&self, req: &WriteRequest) -> Option<u64> {
        if req.dry_run {
            return None;
        }
        let id = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let mark = Mark {
            id,
            value: req.value.clone(),
            origin: req.origin.clone(),
            started: Instant::now(),
            started_ts: Timestamp::now(),
            settled: None,
            result: None,
            readback: None,
            used: false,
        };
        let mut g = self.lock();
        let dev = g.entry(req.device.as_str().into()).or_default();
        dev.entry(req.tag.as_str().into()).or_default().state.push(mark);
        Some(id)
    }

    /// Records how write `id` of `req` ended.
    pub fn settle(&self, req: &WriteRequest, id: u64, o: &WriteOutcome) {
        let mut g = self.lock();
        let Some(t) = g.get_mut(req.device.as_str()).and_then(|d| d.get_mut(req.tag.as_str())) else { return };
        if let Some(m) = t.state.marks.iter_mut().find(|m| m.id == id) {
            m.settled = Some(Instant::now());
            m.result = Some(o.result);
            m.readback = o.readback.clone();
        }
    }

    /// Compares the committed `records` (in `seq` order) with what was seen
    /// and written, and returns the rogue-write events found.
    pub fn observe<'a>(&self, records: impl IntoIterator<Item = &'a Record>) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.inner.any.load(Ordering::Relaxed) {
            return out;
        }
        let now = Instant::now();
        let mut g = self.lock();
        for s in records.into_iter().filter_map(Record::as_sample) {
            if s.value.is_null() {
                continue;
            }
            let Some(t) = g.get_mut(&*s.meta.device).and_then(|d| d.get_mut(&*s.meta.tag)) else { continue };
            if !t.watched {
                continue;
            }
            let seen = Seen { value: s.value.clone(), ts: s.ts, at: now };
            let Some(prev) = t.state.seen.replace(seen) else { continue };
            if same(&prev.value, &s.value) {
                continue;
            }
            if let Some(m) = t.state.marks.iter_mut().find(|m| explains(m, &s.value, prev.at, now)) {
                m.used = true;
                continue;
            }
            out.push(event(&s.meta.device, &s.meta.tag, &prev, &s.value, s.ts, t.state.marks.back()));
        }
        out
    }

    /// Follows `tap` until `stop` fires or the buffer closes, emitting to
    /// `events`. Subscribe before sources start so no change is missed.
    pub fn spawn(&self, tap: &Arc<Tap>, events: Option<Events>, stop: CancellationToken) -> JoinHandle<()> {
        let mut sub = tap.subscribe();
        let watch = self.clone();
        tokio::spawn(async move {
            loop {
                let t = tokio::select! {
                    _ = stop.cancelled() => return,
                    t = sub.recv() => match t { Some(t) => t, None => return },
                };
                for e in watch.observe(t.records()) {
                    tracing::error!(source = %e.source.name(), "{}", e.message);
                    if let Some(ev) = &events {
                        ev.emit(e);
                    }
                }
            }
        })
    }
}

/// The `security.rogue_write` event of `device/tag` going from `prev` to `new`.
fn event(device: &Arc<str>, tag: &Arc<str>, prev: &Seen, new: &crate::model::Value, ts: Timestamp, last: Option<&Mark>) -> Event {
    let last_txt = last.map_or("no relais write since start".to_string(), |m| {
        format!("last relais write: {} by {} at {}", m.value, m.origin, format_rfc3339(m.started_ts))
    });
    let msg = format!("rogue write: {device}/{tag} changed from {} to {new} without a relais write ({last_txt})", prev.value);
    let details = json!({
        "detector": DETECTOR, "device": &**device, "tag": &**tag, "old": prev.value, "new": new,
        "old_ts": format_rfc3339(prev.ts), "new_ts": format_rfc3339(ts), "last_write": last.map(Mark::to_json),
    });
    Event::new(KIND, Severity::Error, EventSource::Tag { device: device.clone(), tag: tag.clone() }, msg).with_details(details)
}

#[cfg(test)]
mod tests;
