//! `PUT /api/lab/clock` and `PUT /api/lab/disk_full`: the gateway's fault
//! switches for the fault bench, only with `[lab] faults = true` (404
//! otherwise, whatever the token; with it, the admin token is required).
//!
//! - `PUT /api/lab/clock {"offset_s": <i64>}`: the wall clock the clock guard
//!   reads becomes the system clock + `offset_s` seconds (0 clears); see
//!   `crate::model::clock` for what the guard does with it.
//! - `PUT /api/lab/disk_full {"on": <bool>}`: the buffer writer fails every
//!   commit as on a full disk while on ([`crate::buffer::Buffer::set_disk_full`]).
//!
//! Both answer 200 with the current state of both switches:
//! `{"offset_s": 0, "disk_full": false, "clock_suspect": false}`; 400 with
//! `{"error"}` for a body that does not parse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Shared, authorize, error};

/// The switches the lab routes move (present only with `[lab] faults = true`).
#[derive(Debug, Clone)]
pub struct Lab {
    /// The buffer's disk-full switch.
    pub disk_full: Arc<AtomicBool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_s: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskBody {
    on: bool,
}

/// Largest offset accepted: ±100 years, in seconds.
const MAX_OFFSET_S: i64 = 100 * 366 * 86_400;

fn state(lab: &Lab) -> Response {
    axum::Json(serde_json::json!({
        "offset_s": crate::model::clock::offset_s(),
        "disk_full": lab.disk_full.load(Ordering::Relaxed),
        "clock_suspect": crate::model::clock::status().suspect,
    }))
    .into_response()
}

/// The lab's switches when `[lab] faults = true` and the request is authorised.
#[allow(clippy::result_large_err)]
fn allowed<'a>(a: &'a Shared, headers: &HeaderMap) -> Result<&'a Lab, Response> {
    let Some(lab) = a.lab.as_ref() else {
        return Err(error(StatusCode::NOT_FOUND, "no such route: the lab switches need [lab] faults = true"));
    };
    authorize(&a.settings.auth(), headers)?;
    Ok(lab)
}

/// `PUT /api/lab/clock`.
pub(super) async fn clock(State(a): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lab = match allowed(&a, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let b: ClockBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"offset_s\": <integer seconds>}}: {e}")),
    };
    if b.offset_s.unsigned_abs() > MAX_OFFSET_S.unsigned_abs() {
        return error(StatusCode::BAD_REQUEST, format!("offset_s {} is beyond ±100 years", b.offset_s));
    }
    crate::model::clock::set_offset_s(b.offset_s);
    tracing::warn!(offset_s = b.offset_s, "lab: the gateway's wall clock is offset by {} s", b.offset_s);
    state(lab)
}

/// `PUT /api/lab/disk_full`.
pub(super) async fn disk_full(State(a): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lab = match allowed(&a, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let b: DiskBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"on\": true|false}}: {e}")),
    };
    lab.disk_full.store(b.on, Ordering::Relaxed);
    tracing::warn!(on = b.on, "lab: disk_full switch {}", if b.on { "on" } else { "off" });
    state(lab)
}
