//! The dashboard (`GET /`): one HTML page, one script and one style sheet,
//! written for relais (no framework, no build step, nothing third-party) and
//! compiled into the binary. The page holds no plant data: it asks for the
//! token (kept in `sessionStorage` for the tab), reads the JSON API with
//! `Authorization: Bearer`, and follows `/api/live` (server-sent events) for
//! live updates. Sections: line overview (devices, sinks), tags with
//! sparklines, trends, events and alarms, quarantine; English and French.
//! See `src/app/admin/dashboard/README.md`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// Headers of every dashboard file: no caching of a stale script after an
/// upgrade, no framing, no scripts but our own.
fn page(ctype: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, HeaderValue::from_static(ctype))], body).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /dashboard/{file}`: `app.js` or `style.css`.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page("text/javascript; charset=utf-8", APP_JS),
        "style.css" => page("text/css; charset=utf-8", STYLE),
        _ => super::error(StatusCode::NOT_FOUND, format!("no dashboard file {file:?}")),
    }
}
