//! `POST /api/alarms/{rule}/ack`: acknowledges the alarm of a `[[rule]]`,
//! through the same seam as the MQTT command ([`crate::component::AlarmAcks`]):
//! the rules task records one `alarm` event with transition `acknowledged`
//! and `by = "admin API"`, and the answer carries the state after it.
//!
//! | answer | when |
//! | --- | --- |
//! | `200 {"rule": "pump-hot", "state": "acknowledged"}` (or `normal`) | done |
//! | `404 {"error": "unknown_rule: …"}` | no such rule, or no rules at all (`no_rules`) |
//! | `409 {"error": "nothing_to_acknowledge: …"}` | the alarm is normal or already acknowledged |
//! | `503 {"error": "busy: …"}` / `stopped` | the rules task cannot take it now |
//! | `403` | `[admin] auth = "none"`: an open listener is read-only |
//! | `401` | missing or wrong token |

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use crate::config::AdminAuth;

/// Who an acknowledgement from this route is recorded as.
pub const BY: &str = "admin API";

/// The status code of a refusal reason (`code: detail`).
fn code_of(reason: &str) -> StatusCode {
    match reason.split(':').next().unwrap_or("") {
        "unknown_rule" | "no_rules" => StatusCode::NOT_FOUND,
        "nothing_to_acknowledge" => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The handler of `POST /api/alarms/{rule}/ack`.
pub(super) async fn ack(State(a): State<Arc<Shared>>, headers: HeaderMap, Path(rule): Path<String>) -> Response {
    if let Err(r) = super::authorize(&a.settings.auth(), &headers) {
        return r;
    }
    if a.settings.auth() == AdminAuth::None {
        return super::error(
            StatusCode::FORBIDDEN,
            "acknowledging needs [admin] auth = \"token\": a listener without a token is read-only",
        );
    }
    match a.acks.acknowledge(&rule, BY).await {
        Ok(state) => axum::Json(json!({"rule": rule, "state": state})).into_response(),
        Err(reason) => super::error(code_of(&reason), reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_status_codes() {
        assert_eq!(code_of("unknown_rule: no rule \"x\""), StatusCode::NOT_FOUND);
        assert_eq!(code_of("no_rules: none"), StatusCode::NOT_FOUND);
        assert_eq!(code_of("nothing_to_acknowledge: normal"), StatusCode::CONFLICT);
        assert_eq!(code_of("busy: 64 wait"), StatusCode::SERVICE_UNAVAILABLE);
    }
}
