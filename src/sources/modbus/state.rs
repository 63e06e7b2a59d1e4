//! A device's state changes, told twice: a log line for people and an event
//! for machines (`docs/payloads.md`, "Events"), both from here.
//!
//! | event | severity | when | details |
//! |---|---|---|---|
//! | `device.up` | info | the first cycle with an answer (data or exception), at start or after `device.down` | `unit_id`, `endpoint`, `protocol` |
//! | `device.down` | warning | the first cycle without any answer, at start or after `device.up` | `error` (the sample reason), `reason` (its code), `unit_id`, `endpoint`, `protocol` |
//! | `device.degraded` | warning | three silent cycles in a row: probed in idle time only | `silent_cycles`, `probe_every_ms`, `error`, … |
//! | `device.recovered` | info | a probe of a degraded device was answered | `degraded_for_ms`, … |

use serde_json::json;

use super::degrade::Transition;
use super::device::{Device, reason_of};
use super::link::ReadError;
use crate::ingest::Events;
use crate::model::{EventSource, Severity};

fn base(dev: &Device) -> serde_json::Value {
    json!({"unit_id": dev.cfg.unit_id, "endpoint": dev.cfg.endpoint, "protocol": dev.cfg.transport.protocol()})
}

fn with(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    base
}

/// Records whether `dev` answered a cycle (`cause`: the first failure when
/// it did not); logs and emits `device.up` / `device.down` on a change.
pub fn answering(events: &Events, dev: &mut Device, answered: bool, cause: Option<&ReadError>) {
    if dev.answering == Some(answered) {
        return;
    }
    let source = EventSource::Device(dev.cfg.name.as_str().into());
    if answered {
        let msg = format!("{} (unit {} on {}) answers", dev.cfg.name, dev.cfg.unit_id, dev.cfg.endpoint);
        tracing::info!(device = %dev.cfg.name, unit_id = dev.cfg.unit_id, "{msg}");
        events.emit_now("device.up", Severity::Info, source, msg, base(dev));
    } else {
        let error = cause.map(reason_of).unwrap_or_default();
        let code = error.split(':').next().unwrap_or_default().to_string();
        let msg = format!("{} (unit {} on {}) does not answer: {error}", dev.cfg.name, dev.cfg.unit_id, dev.cfg.endpoint);
        tracing::info!(device = %dev.cfg.name, unit_id = dev.cfg.unit_id, "{msg}");
        events.emit_now("device.down", Severity::Warning, source, msg, with(base(dev), json!({"error": error, "reason": code})));
    }
    dev.answering = Some(answered);
}

/// Logs and emits a change of `dev`'s degraded state.
pub fn transition(events: &Events, dev: &Device, t: Transition) {
    let source = EventSource::Device(dev.cfg.name.as_str().into());
    match t {
        Transition::Degraded { silent_cycles, every } => {
            dev.stats.demotions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let msg = format!(
                "{} did not answer {silent_cycles} cycles in a row; degraded: probed in idle time of the line until it answers",
                dev.cfg.name
            );
            tracing::warn!(device = %dev.cfg.name, unit_id = dev.cfg.unit_id, probe_every = ?every, "{msg}");
            let error = dev.last_silence.as_ref().map(reason_of).unwrap_or_default();
            let details =
                with(base(dev), json!({"silent_cycles": silent_cycles, "probe_every_ms": every.as_millis() as u64, "error": error}));
            events.emit_now("device.degraded", Severity::Warning, source, msg, details);
        }
        Transition::Recovered { after } => {
            let msg = format!("{} answers again; back to its normal poll rate", dev.cfg.name);
            tracing::info!(device = %dev.cfg.name, unit_id = dev.cfg.unit_id, degraded_for = ?after, "{msg}");
            let details = with(base(dev), json!({"degraded_for_ms": after.as_millis() as u64}));
            events.emit_now("device.recovered", Severity::Info, source, msg, details);
        }
    }
}
