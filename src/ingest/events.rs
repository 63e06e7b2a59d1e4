//! The cheap, never-waiting handle components use to emit events.

use crate::model::{Event, EventSource, Severity};

use super::{Entry, Group, Ingest};

/// A cheap handle any component uses to emit [`Event`]s (clone it freely).
///
/// ```no_run
/// # use relais::ingest::{Ingest, Events};
/// # use relais::model::{EventSource, Severity};
/// # let ingest = std::sync::Arc::new(Ingest::new(1024));
/// let events: Events = ingest.events();
/// events.emit_now("device.down", Severity::Warning, EventSource::Device("pump1".into()),
///     "pump1 stopped answering: timeout", serde_json::json!({"error": "timeout"}));
/// ```
///
/// Emitting never waits and never fails; see [`Ingest::emit`] for what
/// happens when the ring is full. Event kinds in use are listed in
/// `docs/payloads.md`.
#[derive(Debug, Clone)]
pub struct Events {
    pub(super) ingest: std::sync::Arc<Ingest>,
}

impl Events {
    /// Emits `e`.
    pub fn emit(&self, e: Event) {
        self.ingest.emit(e);
    }

    /// Commits a group carrying only quarantined records (a sink's refused
    /// message) without waiting: dropped with a warning when the ring is full
    /// (the `sink.refused` event that goes with it still says what happened).
    pub fn quarantine(&self, g: Group) {
        if self.ingest.try_push(Entry::Group(Box::new(g))).is_err() {
            tracing::warn!("ingest ring full: a quarantine record of a refused message was not kept");
        }
    }

    /// Emits an event happening now with `details` (a JSON object, or `null`).
    pub fn emit_now(&self, kind: &str, severity: Severity, source: EventSource, message: impl Into<String>, details: serde_json::Value) {
        self.emit(Event::new(kind, severity, source, message).with_details(details));
    }
}

/// How many of the latest events [`EventLog`] keeps.
pub const RECENT_EVENTS: usize = 50;

/// Events emitted since start, counted by kind (the `/metrics` counter
/// `relais_events_total{kind}`), and the latest [`RECENT_EVENTS`] of them
/// (`/api/status`). Events are rare (state changes), so one uncontended lock
/// per event costs nothing measurable; samples never come here.
#[derive(Debug, Default)]
pub struct EventLog {
    inner: std::sync::Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    by_kind: std::collections::BTreeMap<String, u64>,
    recent: std::collections::VecDeque<Event>,
}

impl EventLog {
    /// Counts `e` and keeps a copy among the latest.
    pub fn note(&self, e: &Event) {
        let Ok(mut l) = self.inner.lock() else { return };
        match l.by_kind.get_mut(&*e.kind) {
            Some(n) => *n += 1,
            None => {
                l.by_kind.insert(e.kind.to_string(), 1);
            }
        }
        if l.recent.len() == RECENT_EVENTS {
            l.recent.pop_front();
        }
        l.recent.push_back(e.clone());
    }

    /// `(kind, count)` for every kind seen, sorted by kind.
    pub fn by_kind(&self) -> Vec<(String, u64)> {
        self.inner.lock().map(|l| l.by_kind.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
    }

    /// The latest events, oldest first (their `seq` is 0: copies taken before acceptance).
    pub fn recent(&self) -> Vec<Event> {
        self.inner.lock().map(|l| l.recent.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_keeps_the_latest() {
        let log = EventLog::default();
        for i in 0..(RECENT_EVENTS + 5) {
            let kind = if i % 2 == 0 { "sink.connected" } else { "device.degraded" };
            log.note(&Event::new(kind, Severity::Info, EventSource::Gateway, format!("e{i}")));
        }
        assert_eq!(log.by_kind(), vec![("device.degraded".to_string(), 27), ("sink.connected".to_string(), 28)]);
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT_EVENTS);
        assert_eq!(recent[0].message, "e5");
        assert_eq!(recent.last().unwrap().message, format!("e{}", RECENT_EVENTS + 4));
    }
}
