//! `GET /api/events?limit=N&kind=K`: the latest events the gateway emitted
//! (device up/down, sink connects, detections, `alarm` changes of the rules
//! engine, write audits…), newest first. `limit` defaults to and is capped
//! at [`crate::ingest::RECENT_EVENTS`] (the log kept in memory; older events
//! are in the buffer and on the sinks' event topics). `kind` keeps the events
//! of that kind (`alarm`) or of that prefix (`device.`).
//!
//! ```json
//! [{"seq": 812, "ts": "2026-12-06T10:14:03.1Z", "kind": "alarm", "severity": "warning",
//!   "source": "rule", "name": "hot", "message": "…", "details": {"state": "active", …}}]
//! ```

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use crate::app::StatusLine;
use crate::model::{Event, format_rfc3339};

/// Query of `/api/events`.
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    /// Most events returned (default and cap [`crate::ingest::RECENT_EVENTS`]).
    pub limit: Option<usize>,
    /// Only this kind, or kinds starting with it when it ends with `.`.
    pub kind: Option<String>,
}

/// One event as JSON (also the `event` messages of `/api/live`).
pub fn to_json(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "ts": format_rfc3339(e.ts),
        "kind": &*e.kind,
        "severity": e.severity.as_str(),
        "source": e.source.kind(),
        "name": e.source.name(),
        "message": e.message,
        "details": e.details,
    })
}

/// The latest events matching `q`, newest first.
pub fn recent(s: &StatusLine, q: &Query) -> Vec<Value> {
    let limit = q.limit.unwrap_or(crate::ingest::RECENT_EVENTS).min(crate::ingest::RECENT_EVENTS);
    let keep = |e: &Event| match q.kind.as_deref() {
        None | Some("") => true,
        Some(k) if k.ends_with('.') => e.kind.starts_with(k),
        Some(k) => &*e.kind == k,
    };
    s.ingest.stats.event_log.recent().iter().rev().filter(|e| keep(e)).take(limit).map(to_json).collect()
}

/// The handler of `GET /api/events`.
pub(super) async fn handler(State(a): State<Arc<Shared>>, headers: HeaderMap, q: axum::extract::Query<Query>) -> Response {
    if let Err(r) = super::authorize(&a.settings.auth(), &headers) {
        return r;
    }
    axum::Json(recent(&a.status, &q)).into_response()
}
