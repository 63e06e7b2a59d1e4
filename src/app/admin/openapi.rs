//! `GET /api/openapi.json`: the OpenAPI 3.0 document of the admin listener,
//! a checked-in file (`openapi.json` beside this one) compiled into the
//! binary. `tests/it/admin_api.rs` checks that every route of the router
//! ([`super::paths`]) appears in it and that it parses. Served without the
//! token: it describes the API, not the plant.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// The handler of `GET /api/openapi.json`.
pub(super) async fn handler() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT).into_response()
}
