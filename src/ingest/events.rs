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
