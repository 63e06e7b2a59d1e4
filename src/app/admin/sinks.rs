//! `GET /api/sinks`: every sink with its cursor (last `seq` the far end
//! acknowledged) and backlog (committed records not acknowledged yet).
//!
//! ```json
//! [{"name": "plant-broker", "connected": true, "cursor": 1234, "backlog": 12,
//!   "in_flight": 12, "acked": 1222, "connects": 1, "dropped": 0, "refused": 0,
//!   "state": "connected, 0 waiting, 12 in flight", "last_error": null}]
//! ```

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::Shared;
use crate::app::StatusLine;

/// The sinks, in configuration order.
pub fn list(s: &StatusLine) -> Vec<Value> {
    let stats = s.telemetry.sinks();
    let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    s.backlogs()
        .into_iter()
        .map(|(name, backlog)| {
            let cursor = s.cursors.get(&name);
            let dropped = cursor.as_ref().map_or(0, |c| c.dropped());
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
        .collect()
}

/// The handler of `GET /api/sinks`.
pub(super) async fn handler(State(a): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = super::authorize(&a.settings.auth(), &headers) {
        return r;
    }
    axum::Json(list(&a.status)).into_response()
}
