//! The device's state changes as events beside the samples (issue 8 item 6,
//! `docs/payloads.md`): `device.up` when a session is active after none or
//! after an outage (`recovered`, `outage_s`), `device.down` with the cause
//! when it is lost. One event per transition: the reconnect attempts of one
//! outage and the re-activations of a flapping link that never reported a
//! loss do not repeat them. The log lines stay; the events are for machines.

use serde_json::json;
use tokio::time::Instant;

use super::Device;
use crate::model::{EventSource, Severity};

/// What the events last said about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Announced {
    /// Nothing yet (start).
    Nothing,
    /// `device.up`.
    Up,
    /// `device.down`, at that time.
    Down(Instant),
}

impl Device {
    /// A session is active: `device.up` unless already said.
    pub(super) fn announce_up(&mut self, new_session: bool) {
        let (recovered, outage) = match self.announced {
            Announced::Up => return,
            Announced::Nothing => (false, None),
            Announced::Down(at) => (true, Some(at.elapsed().as_secs_f64())),
        };
        self.announced = Announced::Up;
        let session = if new_session { "created" } else { "re-activated" };
        let message = match outage {
            Some(s) => format!("OPC UA session {session} with {}: back after {s:.1} s", self.dev.endpoint),
            None => format!("OPC UA session {session} with {}", self.dev.endpoint),
        };
        let mut details = json!({ "endpoint": self.dev.endpoint, "session": session, "recovered": recovered });
        if let Some(s) = outage {
            details["outage_s"] = json!((s * 10.0).round() / 10.0);
        }
        self.events.emit_now("device.up", Severity::Info, self.source(), message, details);
    }

    /// The device is down for `why` (a sample reason, e.g. `comm_failure: …`):
    /// `device.down` unless already said. `severity`: warning for a lost or
    /// refused connection, error for a configuration no retry fixes.
    pub(super) fn announce_down(&mut self, why: &str, severity: Severity) {
        if matches!(self.announced, Announced::Down(_)) {
            return;
        }
        self.announced = Announced::Down(Instant::now());
        let message = format!("OPC UA device {} down: {why}", self.dev.name);
        let details = json!({ "endpoint": self.dev.endpoint, "error": why });
        self.events.emit_now("device.down", severity, self.source(), message, details);
    }

    fn source(&self) -> EventSource {
        EventSource::Device(self.dev.name.as_str().into())
    }
}
