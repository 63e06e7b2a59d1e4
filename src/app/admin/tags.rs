//! `GET /api/tags?match=GLOB`: the last committed sample of every tag (from
//! the [`LiveTable`]), sorted by device then tag.
//!
//! ```json
//! [{"name": "pump1/flow", "device": "pump1", "tag": "flow", "seq": 1234,
//!   "value": 12.5, "unit": "m3/h", "quality": "good", "reason": null,
//!   "ts": "2026-12-06T10:14:03.1Z", "age_s": 0.4}]
//! ```
//!
//! `match` is a glob on `device/tag` (globset syntax: `*` stays within one
//! level, `**` crosses levels, `{a,b}` alternates, `[0-9]` a class):
//! `pump1/*`, `*/flow`, `pump*/{flow,speed}`. A pattern that does not parse
//! is a 400 naming it. `value` is `null` when the quality is bad; `age_s` is
//! now minus `ts` (never negative).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use crate::model::{Quality, Timestamp, format_rfc3339};
use crate::processors::live::{Latest, LiveTable};

/// Query of `/api/tags` (and `/api/live`).
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    /// Glob on `device/tag`.
    #[serde(rename = "match")]
    pub pattern: Option<String>,
}

/// The matcher of `pattern` (`None`: everything), or why it does not parse.
pub fn matcher(pattern: Option<&str>) -> Result<Option<GlobMatcher>, String> {
    let Some(p) = pattern.filter(|p| !p.is_empty()) else { return Ok(None) };
    GlobBuilder::new(p)
        .literal_separator(true)
        .build()
        .map(|g| Some(g.compile_matcher()))
        .map_err(|e| format!("match = {p:?} is not a glob on device/tag: {e}"))
}

/// True when `device/tag` matches (always without a matcher).
pub fn matches(m: Option<&GlobMatcher>, device: &str, tag: &str) -> bool {
    m.is_none_or(|m| m.is_match(format!("{device}/{tag}")))
}

/// One sample as JSON: the `/api/tags` entries and the `samples` messages of `/api/live`.
#[allow(clippy::too_many_arguments)]
pub fn sample_json(
    device: &str,
    tag: &str,
    seq: u64,
    value: &crate::model::Value,
    quality: Quality,
    reason: Option<&str>,
    unit: Option<&str>,
    ts: Timestamp,
    now: Timestamp,
) -> Value {
    json!({
        "name": format!("{device}/{tag}"),
        "device": device,
        "tag": tag,
        "seq": seq,
        "value": value,
        "unit": unit,
        "quality": quality.as_str(),
        "reason": reason,
        "ts": format_rfc3339(ts),
        "age_s": (now.as_nanos() - ts.as_nanos()).max(0) as f64 / 1e9,
    })
}

fn latest_json(device: &str, tag: &str, l: &Latest, now: Timestamp) -> Value {
    sample_json(device, tag, l.seq, &l.value, l.quality, l.reason.as_deref(), l.unit.as_deref(), l.ts, now)
}

/// The tags matching `m`, at `now`.
pub fn list(live: &LiveTable, m: Option<&GlobMatcher>, now: Timestamp) -> Vec<Value> {
    live.snapshot().iter().filter(|(d, t, _)| matches(m, d, t)).map(|(d, t, l)| latest_json(d, t, l, now)).collect()
}

/// The handler of `GET /api/tags`.
pub(super) async fn handler(State(a): State<Arc<Shared>>, headers: HeaderMap, q: axum::extract::Query<Query>) -> Response {
    if let Err(r) = super::authorize(&a.settings.auth(), &headers) {
        return r;
    }
    match matcher(q.pattern.as_deref()) {
        Ok(m) => axum::Json(list(&a.live, m.as_ref(), Timestamp::now())).into_response(),
        Err(e) => super::error(axum::http::StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_glob_stays_within_one_level_and_a_bad_one_is_named() {
        let m = matcher(Some("pump/*")).unwrap();
        assert!(matches(m.as_ref(), "pump", "flow"));
        assert!(!matches(m.as_ref(), "pump2", "flow"));
        assert!(!matches(m.as_ref(), "pump", "a/b"), "`*` does not cross `/`");
        let m = matcher(Some("pump*/{flow,speed}")).unwrap();
        assert!(matches(m.as_ref(), "pump7", "speed") && !matches(m.as_ref(), "pump7", "temp"));
        assert!(matches(matcher(None).unwrap().as_ref(), "x", "y"));
        let e = matcher(Some("pump/[")).unwrap_err();
        assert!(e.contains("pump/["), "{e}");
    }
}
