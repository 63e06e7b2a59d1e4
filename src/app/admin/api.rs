//! `GET /api/status`: one JSON snapshot of the running gateway, for
//! `curl` and scripts: devices with their link state, sinks with cursor and
//! backlog, the buffer, and the latest events (newest first, at most
//! [`crate::ingest::RECENT_EVENTS`]).
//!
//! ```json
//! {"devices": [{"name": "pump1", "link": "up", "polls": 120, "requests": 120,
//!               "samples": {"good": 1200, "bad": 0}, "data_age_s": 0.4,
//!               "errors": {"exception": 0, "timeout": 0, "invalid_frame": 0, "comm": 0},
//!               "demotions": 0}],
//!  "sinks": [{"name": "plant-broker", "connected": true, "cursor": 1234, "backlog": 12,
//!             "in_flight": 12, "acked": 1222, "connects": 1, "dropped": 0, "refused": 0,
//!             "state": "connected, 0 waiting, 12 in flight", "last_error": null}],
//!  "buffer": {"first_seq": 1, "last_seq": 1246, "rows": 1246, "bytes": 98304,
//!             "accepted": 1200, "dropped": 0, "quarantined": 0},
//!  "ring": {"depth": 0, "capacity": 16384},
//!  "events": [{"ts": "2026-12-06T10:14:03.1Z", "kind": "sink.connected", "severity": "info",
//!              "source": "sink", "name": "plant-broker", "message": "…"}]}
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::app::StatusLine;
use crate::model::format_rfc3339;

/// The snapshot at `now_ms` (Unix ms).
pub fn status(s: &StatusLine, now_ms: u64) -> Value {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let devices: Vec<Value> = s
        .telemetry
        .devices()
        .iter()
        .map(|d| {
            let last = l(&d.last_good_ms);
            let errors: serde_json::Map<String, Value> = d.errors.classes().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({
                "name": d.name,
                "link": if d.up.load(Ordering::Relaxed) { "up" } else { "down" },
                "polls": l(&d.cycles),
                "requests": l(&d.requests),
                "samples": {"good": l(&d.good), "bad": l(&d.bad)},
                "data_age_s": (last > 0).then(|| now_ms.saturating_sub(last) as f64 / 1e3),
                "errors": errors,
                "demotions": l(&d.demotions),
            })
        })
        .collect();
    let stats = s.telemetry.sinks();
    let sinks: Vec<Value> = s
        .backlogs()
        .into_iter()
        .map(|(name, backlog)| {
            let cursor = s.cursors.iter().find(|c| c.name() == name);
            let dropped = cursor.map_or(0, |c| c.dropped());
            let mut v = json!({"name": name, "cursor": cursor.map(|c| c.get()), "backlog": backlog, "dropped": dropped});
            if let Some(st) = stats.iter().find(|st| st.name == name) {
                let extra = json!({
                    "connected": st.connected.load(Ordering::Relaxed),
                    "in_flight": l(&st.in_flight),
                    "acked": l(&st.acked),
                    "connects": l(&st.connects),
                    "refused": l(&st.refused),
                    "state": crate::sinks::driver::status::render(st, backlog, dropped),
                    "last_error": st.error(),
                });
                if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
                    a.extend(b);
                }
            }
            v
        })
        .collect();
    let b = &s.buffer;
    let events: Vec<Value> = s
        .ingest
        .stats
        .event_log
        .recent()
        .iter()
        .rev()
        .map(|e| {
            json!({
                "ts": format_rfc3339(e.ts),
                "kind": &*e.kind,
                "severity": e.severity.as_str(),
                "source": e.source.kind(),
                "name": e.source.name(),
                "message": e.message,
            })
        })
        .collect();
    json!({
        "devices": devices,
        "sinks": sinks,
        "buffer": {
            "first_seq": l(&b.first_seq),
            "last_seq": l(&b.last_seq),
            "rows": b.rows(),
            "bytes": l(&b.bytes_used),
            "accepted": l(&b.accepted_total),
            "dropped": l(&b.dropped_total),
            "quarantined": l(&b.quarantined_total),
        },
        "ring": {"depth": s.ingest.len(), "capacity": s.ingest.capacity()},
        "events": events,
    })
}
