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

/// The snapshot at `now_ms` (Unix ms): [`super::devices::list`],
/// [`super::sinks::list`], the buffer and ring, and [`super::events::recent`].
pub fn status(s: &StatusLine, now_ms: u64) -> Value {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let b = &s.buffer;
    json!({
        "devices": super::devices::list(s, now_ms),
        "sinks": super::sinks::list(s),
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
        "events": super::events::recent(s, &super::events::Query::default()),
    })
}
