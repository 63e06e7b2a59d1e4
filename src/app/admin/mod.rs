//! The admin listener (`[admin]`, issue 14): one HTTP/1.1 listener,
//! loopback by default, serving
//!
//! - `GET /healthz`: `200 ok` while the process answers (no token: it says
//!   nothing about the plant);
//! - `GET /metrics`: Prometheus text exposition format 0.0.4 (every metric in
//!   `docs/metrics.md`), read from the counters the status line already uses
//!   plus the latency histograms of [`crate::telemetry::metrics`];
//! - `GET /readyz`: `200` when every polled device produced a good sample
//!   within `ready_periods` of its poll period (a device without a period,
//!   an OPC UA subscription: while its session answers) and every sink is
//!   connected and, when records wait, had an acknowledgement within
//!   `ready_ack_within`; else `503`. The JSON body lists each check;
//! - `GET /api/status`: a JSON snapshot (devices with link state, sinks with
//!   cursor and backlog, buffer, ring, latest events; see [`api`]);
//! - `GET /api/devices`, `/api/tags`, `/api/sinks`, `/api/events`,
//!   `/api/quarantine`: the parts, one file each ([`devices`], [`tags`],
//!   [`sinks`], [`events`], [`quarantine`]);
//! - `GET /api/live`: committed samples and events as server-sent events
//!   ([`live`]);
//! - `POST /api/alarms/{rule}/ack`: acknowledges an alarm ([`alarms`]);
//! - `GET /api/query?tags=pump/*&from=-1h&every=1m&by=tag`: the local
//!   history, the rows of `relais query --format json` (see [`history`]);
//! - `GET /api/openapi.json`: the OpenAPI 3 document of every route ([`openapi`]);
//! - `GET /` and its assets: the dashboard ([`dashboard`]), plain
//!   HTML/CSS/JS compiled into the binary;
//! - `PUT /api/lab/clock`, `PUT /api/lab/disk_full`: the fault switches of
//!   the fault bench, 404 unless `[lab] faults = true` ([`lab`]);
//! - `POST /api/reload`: reads the configuration file again and applies it
//!   ([`crate::app::reload`]); 200 with what changed, 422 with every error
//!   of an invalid file, 409 when a change needs a restart (nothing applied).
//!
//! With `auth = "token"` every path but `/healthz` and the dashboard's static
//! files (which hold no plant data; the page asks for the token and sends it
//! with each API call) needs `Authorization: Bearer <token>` (401 with
//! `WWW-Authenticate: Bearer` otherwise). `/api/live` also accepts it as the
//! `token` query parameter, because a browser's `EventSource` cannot set
//! headers; no request line is ever logged. The token is compared in
//! constant time and never logged.
//! Connections get the limits of the HTTP ingest listener
//! ([`crate::sources::http::listen`]): header and idle timeouts, at most 64
//! open at once.

pub mod alarms;
pub mod api;
pub mod dashboard;
pub mod devices;
pub mod events;
pub mod history;
pub mod lab;
pub mod live;
pub mod openapi;
pub mod quarantine;
mod ready;
mod scrape;
pub mod sinks;
pub mod tags;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use metrics_exporter_prometheus::PrometheusRecorder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::StatusLine;
use crate::config::{AdminAuth, AdminConfig};
use crate::sources::http::listen::{self, Limits};
pub use ready::{Expect, Readiness};
pub use scrape::names as metric_names;

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin handlers read.
pub struct Admin {
    /// Counters of the running gateway.
    pub status: StatusLine,
    /// A buffer reader, for the ages of the oldest rows.
    pub reader: crate::buffer::Reader,
    /// The recorder holding the histograms (and the gauges set at each scrape).
    pub recorder: Arc<PrometheusRecorder>,
    /// How requests are authorised and what `/readyz` expects (a reload
    /// changes them).
    pub settings: Settings,
    /// Where `POST /api/reload` goes (`None`: not started from a file).
    pub reload: Option<crate::app::reload::Reloader>,
    /// The last committed sample of every tag (`/api/tags`).
    pub live: crate::processors::live::LiveTable,
    /// The gateway's data folder (the quarantine is read from its buffer).
    pub data_dir: std::path::PathBuf,
    /// The rules task's acknowledgement queue (`POST /api/alarms/{rule}/ack`).
    pub acks: crate::component::AlarmAcks,
    /// The local history for `/api/query` (`None` without `[history]`).
    pub history: Option<history::HistoryAccess>,
    /// Writes settled by the actuator seam, by result (`/metrics`).
    pub writes: Arc<crate::telemetry::metrics::WriteCounts>,
    /// The fault switches (`None` unless `[lab] faults = true`: the
    /// `/api/lab/*` routes then answer 404).
    pub lab: Option<lab::Lab>,
}

/// The settings of a running listener that a configuration reload changes:
/// the token and what `/readyz` expects. Cheap to clone (shared).
#[derive(Clone)]
pub struct Settings(Arc<std::sync::RwLock<(AdminAuth, Expect)>>);

impl Settings {
    /// The settings at start.
    pub fn new(auth: AdminAuth, expect: Expect) -> Settings {
        Settings(Arc::new(std::sync::RwLock::new((auth, expect))))
    }

    /// Replaces them (a reload).
    pub fn set(&self, auth: AdminAuth, expect: Expect) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = (auth, expect);
    }

    pub(super) fn auth(&self) -> AdminAuth {
        self.0.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    fn expect(&self) -> Expect {
        self.0.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }
}

/// The handlers' state: [`Admin`], the open live streams and the listener's stop.
pub struct Shared {
    admin: Admin,
    streams: live::Streams,
    stop: CancellationToken,
}

impl std::ops::Deref for Shared {
    type Target = Admin;
    fn deref(&self) -> &Admin {
        &self.admin
    }
}

/// Binds `cfg.listen` and serves until `stop`. A bind failure (address in
/// use, not local) is returned as an I/O error: relais exits at start.
pub async fn spawn_admin(cfg: &AdminConfig, admin: Admin, stop: CancellationToken) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse { " (another process holds it; change [admin] listen)" } else { "" };
        anyhow::Error::new(std::io::Error::new(e.kind(), format!("[admin] cannot listen on {}: {e}{hint}", cfg.listen)))
    })?;
    let bound = listener.local_addr().unwrap_or(cfg.listen);
    scrape::describe(&admin.recorder);
    let upkeep = spawn_upkeep(admin.recorder.clone(), stop.clone());
    let app = router(Arc::new(Shared { admin, streams: live::Streams::default(), stop: stop.clone() }));
    let limits = Limits { header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(60), max_connections: 64 };
    tracing::info!(listen = %bound, "admin listener: dashboard /, /metrics, /healthz, /readyz, /api/…");
    let serve = tokio::spawn(listen::serve(listener, app, limits, Arc::default(), stop));
    Ok(vec![serve, upkeep])
}

/// Every route with its handler: the router is built from this table, and
/// [`paths`] lists it for the test that holds `/api/openapi.json` to it.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        ("/", get(dashboard::index)),
        ("/dashboard/{file}", get(dashboard::asset)),
        ("/healthz", get(|| async { "ok\n" })),
        ("/metrics", get(metrics)),
        ("/readyz", get(readyz)),
        ("/api/status", get(api_status)),
        ("/api/reload", post(api_reload)),
        ("/api/devices", get(devices::handler)),
        ("/api/tags", get(tags::handler)),
        ("/api/sinks", get(sinks::handler)),
        ("/api/events", get(events::handler)),
        ("/api/quarantine", get(quarantine::handler)),
        ("/api/query", get(api_query)),
        ("/api/live", get(live::handler)),
        ("/api/openapi.json", get(openapi::handler)),
        ("/api/alarms/{rule}/ack", post(alarms::ack)),
        ("/api/lab/clock", put(lab::clock)),
        ("/api/lab/disk_full", put(lab::disk_full)),
    ]
}

/// The path of every route the listener serves (axum syntax: `{file}`).
pub fn paths() -> Vec<&'static str> {
    routes().into_iter().map(|(p, _)| p).collect()
}

fn router(state: Arc<Shared>) -> Router {
    routes().into_iter().fold(Router::new(), |r, (p, m)| r.route(p, m)).with_state(state)
}

/// Drains the histograms' lock-free buckets every 5 s, so their memory stays
/// bounded when nobody scrapes.
fn spawn_upkeep(recorder: Arc<PrometheusRecorder>, stop: CancellationToken) -> JoinHandle<()> {
    let handle = recorder.handle();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
            }
        }
    })
}

async fn metrics(State(a): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&a.settings.auth(), &headers) {
        return r;
    }
    let a2 = a.clone();
    // The ages need a read of the buffer: on the blocking pool.
    let ages = tokio::task::spawn_blocking(move || scrape::Ages::read(&a2.status, &a2.reader)).await.unwrap_or_default();
    let text = scrape::render(&a, &ages);
    ([(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE))], text).into_response()
}

async fn readyz(State(a): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&a.settings.auth(), &headers) {
        return r;
    }
    let r = ready::check(&a.status, &a.settings.expect(), crate::buffer::unix_ms_now());
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(r)).into_response()
}

async fn api_status(State(a): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&a.settings.auth(), &headers) {
        return r;
    }
    axum::Json(api::status(&a.status, crate::buffer::unix_ms_now())).into_response()
}

async fn api_query(
    State(a): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&a.settings.auth(), &headers) {
        return r;
    }
    history::answer(a.history.clone(), params).await
}

async fn api_reload(State(a): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&a.settings.auth(), &headers) {
        return r;
    }
    let out = match &a.reload {
        Some(r) => r.reload("api").await,
        None => crate::app::reload::Outcome::Unavailable("this gateway was not started from a configuration file".into()),
    };
    let code = StatusCode::from_u16(out.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(out.to_json())).into_response()
}

/// 401 unless the bearer token matches (or `auth = "none"`).
#[allow(clippy::result_large_err)]
fn authorize(auth: &AdminAuth, headers: &HeaderMap) -> Result<(), Response> {
    authorize_with(auth, headers, None)
}

/// [`authorize`], also accepting the token given as a query parameter
/// (`/api/live` only: a browser's `EventSource` cannot set headers).
#[allow(clippy::result_large_err)]
fn authorize_with(auth: &AdminAuth, headers: &HeaderMap, query_token: Option<&str>) -> Result<(), Response> {
    let AdminAuth::Token(token) = auth else { return Ok(()) };
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(query_token).unwrap_or("");
    if same(given.as_bytes(), token.expose().as_bytes()) {
        return Ok(());
    }
    let body =
        axum::Json(serde_json::json!({"error": "missing or wrong bearer token (Authorization: Bearer <token>, see [admin] token_file)"}));
    let mut r = (StatusCode::UNAUTHORIZED, body).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(r)
}

/// A JSON error with `code`: `{"error": msg}`.
fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(serde_json::json!({"error": msg.into()}))).into_response()
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn authorize_needs_the_exact_bearer_token() {
        let auth = AdminAuth::Token(crate::secret::Secret::new("s3cret"));
        let mut h = HeaderMap::new();
        assert_eq!(authorize(&auth, &h).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert!(authorize(&auth, &h).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(authorize(&auth, &h).is_ok());
        assert!(authorize(&AdminAuth::None, &HeaderMap::new()).is_ok());
    }
}
