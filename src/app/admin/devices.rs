//! `GET /api/devices`: every polled device with its link state and poll
//! latency.
//!
//! ```json
//! [{"name": "pump1", "link": "up", "polls": 120, "requests": 120,
//!   "poll_latency_ms": 1.8, "samples": {"good": 1200, "bad": 0}, "data_age_s": 0.4,
//!   "errors": {"exception": 0, "timeout": 0, "invalid_frame": 0, "comm": 0},
//!   "demotions": 0}]
//! ```
//!
//! `link` is `up` while the device answers with good data, else `down`;
//! `poll_latency_ms` is the duration of the latest poll cycle (`null` before
//! the first; the full distribution is `relais_device_poll_duration_seconds`
//! on `/metrics`); `data_age_s` is now minus the source time of the newest
//! good sample (`null` before the first).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::Shared;
use crate::app::StatusLine;

/// The devices at `now_ms` (Unix ms), in start order.
pub fn list(s: &StatusLine, now_ms: u64) -> Vec<Value> {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    s.telemetry
        .devices()
        .iter()
        .map(|d| {
            let last = l(&d.last_good_ms);
            let poll = l(&d.last_poll_us);
            let errors: serde_json::Map<String, Value> = d.errors.classes().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({
                "name": d.name,
                "link": if d.up.load(Ordering::Relaxed) { "up" } else { "down" },
                "polls": l(&d.cycles),
                "requests": l(&d.requests),
                "poll_latency_ms": (poll > 0).then(|| poll as f64 / 1e3),
                "samples": {"good": l(&d.good), "bad": l(&d.bad)},
                "data_age_s": (last > 0).then(|| now_ms.saturating_sub(last) as f64 / 1e3),
                "errors": errors,
                "demotions": l(&d.demotions),
            })
        })
        .collect()
}

/// The handler of `GET /api/devices`.
pub(super) async fn handler(State(a): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = super::authorize(&a.settings.auth(), &headers) {
        return r;
    }
    axum::Json(list(&a.status, crate::buffer::unix_ms_now())).into_response()
}
