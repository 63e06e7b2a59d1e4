//! `GET /api/quarantine?limit=N&source=S`: what could not be ingested.
//! Counts by source and reason code (the part of the reason before `:`),
//! and the latest quarantined records, newest first (`limit` default 20, at
//! most 500; `source` keeps one source's). Read from the buffer database
//! read-only, on the blocking pool.
//!
//! ```json
//! {"total": 3,
//!  "by_reason": [{"source": "lab", "reason": "parse", "count": 3}],
//!  "recent": [{"id": 3, "ts": "2026-12-06T10:14:03.1Z", "source": "lab",
//!              "origin": "in/a.csv", "location": "line 4", "reason": "parse: …", "raw": "…"}]}
//! ```
//!
//! `raw` is the record as received, cut to 2,000 characters (`relais
//! quarantine show ID` prints it whole).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use crate::buffer::quarantine;
use crate::model::{Timestamp, format_rfc3339};

/// Default and cap of `limit`.
const LIMIT: (usize, usize) = (20, 500);
/// Characters of `raw` shown.
const RAW_CHARS: usize = 2_000;

/// Query of `/api/quarantine`.
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    /// Most recent records returned.
    pub limit: Option<usize>,
    /// Only this source's.
    pub source: Option<String>,
}

/// The summary and the latest records, read from `<data_dir>/buffer.db`.
pub fn read(data_dir: &Path, q: &Query) -> anyhow::Result<Value> {
    let c = quarantine::open_readonly(data_dir)?;
    let counts = quarantine::counts(&c)?;
    let total: u64 = counts.iter().filter(|(s, _, _)| q.source.as_ref().is_none_or(|x| x == s)).map(|(_, _, n)| n).sum();
    let by_reason: Vec<Value> = counts
        .iter()
        .filter(|(s, _, _)| q.source.as_ref().is_none_or(|x| x == s))
        .map(|(s, r, n)| json!({"source": s, "reason": r, "count": n}))
        .collect();
    let limit = q.limit.unwrap_or(LIMIT.0).min(LIMIT.1);
    let rows = quarantine::list(&c, q.source.as_deref(), limit)?;
    let recent: Vec<Value> = rows
        .iter()
        .rev()
        .map(|r| {
            let raw: String = r.raw.chars().take(RAW_CHARS).collect();
            json!({
                "id": r.id,
                "ts": format_rfc3339(Timestamp(r.recv_ts)),
                "source": r.source,
                "origin": r.origin,
                "location": r.location,
                "reason": r.reason,
                "raw": raw,
            })
        })
        .collect();
    Ok(json!({"total": total, "by_reason": by_reason, "recent": recent}))
}

/// The handler of `GET /api/quarantine`.
pub(super) async fn handler(State(a): State<Arc<Shared>>, headers: HeaderMap, q: axum::extract::Query<Query>) -> Response {
    if let Err(r) = super::authorize(&a.settings.auth(), &headers) {
        return r;
    }
    let dir = a.data_dir.clone();
    match tokio::task::spawn_blocking(move || read(&dir, &q)).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => super::error(axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the quarantine: {e:#}")),
        Err(e) => super::error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("quarantine read failed: {e}")),
    }
}
