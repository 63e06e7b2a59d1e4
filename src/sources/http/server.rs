//! The HTTP ingest server (axum): `POST /ingest/{source}`.
//!
//! - Body: `text/csv`, `application/json` (an object or an array of
//!   objects) or `application/x-ndjson` (JSON Lines); the source's `format`,
//!   when set, wins over the `Content-Type`.
//! - `Authorization: Bearer <token>` unless the source allows anonymous
//!   writes; 401 otherwise.
//! - All or nothing: if any record is rejected the answer is 422 with every
//!   rejected record (location and reason), nothing of the body is accepted,
//!   and the rejected records are kept in the quarantine. Otherwise the answer
//!   is 200 only after the samples are committed, with their `seq` range.
//! - 413 above `max_body`, 429 above `max_requests_per_second` or
//!   `max_concurrent` (with `Retry-After`), 503 when the commit takes longer
//!   than `commit_timeout`.
//! - Connections: `max_connections`, `header_timeout`, `idle_timeout` (see
//!   `listen.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::burst::Burst;
use super::config::HttpSource;
use super::listen::{self, Limits};
use crate::ingest::Group;
use crate::model::{EventSource, Severity};
use crate::parse::Mapper;
use crate::parse::parse_input;
use crate::parse::spec::Format;
use crate::sources::SourceCtx;
use crate::telemetry::SourceStats;

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Route {
    cfg: HttpSource,
    stats: Arc<SourceStats>,
    /// Text and numeric fields learnt from earlier bodies.
    fields: Arc<crate::parse::Fields>,
    bucket: Mutex<Bucket>,
    slots: Semaphore,
    /// Refused tokens within the burst window.
    burst: Mutex<Burst>,
    /// `[[check]]` state of this source's tags (its requests take turns).
    checker: Mutex<crate::component::checks::Checker>,
}

#[derive(Clone)]
struct AppState {
    routes: Arc<HashMap<String, Arc<Route>>>,
    ctx: SourceCtx,
}

fn reply(code: StatusCode, body: serde_json::Value) -> Response {
    (code, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Starts one server per distinct listen address.
pub async fn spawn(sources: Vec<HttpSource>, ctx: SourceCtx) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut by_addr: HashMap<SocketAddr, HashMap<String, Arc<Route>>> = HashMap::new();
    for s in sources {
        let route = Arc::new(Route {
            stats: ctx.telemetry.source(&s.common.name),
            fields: Arc::default(),
            bucket: Mutex::new(Bucket { tokens: s.max_requests_per_second.max(1.0), last: Instant::now() }),
            slots: Semaphore::new(s.max_concurrent),
            burst: Mutex::new(Burst::new(s.token_burst, s.token_burst_window)),
            checker: Mutex::new(ctx.checks.checker()),
            cfg: s,
        });
        by_addr.entry(route.cfg.listen).or_default().insert(route.cfg.common.name.clone(), route);
    }
    let mut tasks = Vec::new();
    for (addr, routes) in by_addr {
        // One server per address: the most permissive of its sources' limits.
        let limits = Limits {
            header_timeout: routes.values().map(|r| r.cfg.header_timeout).max().unwrap_or_default(),
            idle_timeout: routes.values().map(|r| r.cfg.idle_timeout).max().unwrap_or_default(),
            max_connections: routes.values().map(|r| r.cfg.max_connections).max().unwrap_or(1),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("HTTP ingest cannot listen on {addr}")))?;
        let names: Vec<String> = routes.keys().map(|n| format!("/ingest/{n}")).collect();
        tracing::info!(listen = %addr, routes = %names.join(" "), "HTTP ingest listening");
        let state = AppState { routes: Arc::new(routes), ctx: ctx.clone() };
        let app = Router::new().route("/ingest/{source}", post(ingest)).layer(axum::extract::DefaultBodyLimit::disable()).with_state(state);
        let stop = ctx.stop.clone();
        tasks.push(tokio::spawn(listen::serve(listener, app, limits, Arc::default(), stop)));
    }
    Ok(tasks)
}

/// True when reading a body failed on the `max_body` limit (not on a
/// broken connection).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = src {
        if x.to_string().contains("length limit exceeded") {
            return true;
        }
        src = x.source();
    }
    false
}

/// `POST /ingest/{source}`: checks (token, rate, concurrency, size, type),
/// reads and parses the body, then commits all of it or none (module docs).
async fn ingest(
    State(st): State<AppState>,
    Path(source): Path<String>,
    peer: Option<Extension<listen::Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(route) = st.routes.get(&source).cloned() else {
        return reply(StatusCode::NOT_FOUND, json!({"error": format!("no HTTP source named {source:?} here")}));
    };
    let cfg = &route.cfg;
    if let Err(r) = authorize(cfg, &headers) {
        refused_token(&st, &route, peer.map(|Extension(p)| p.0.ip()));
        return *r;
    }
    if let Err(r) = take_token(&route) {
        return *r;
    }
    let Ok(_slot) = route.slots.try_acquire() else {
        return busy(format!("more than {} requests at once", cfg.max_concurrent));
    };
    let (format, bytes) = match body_format(cfg, &headers) {
        Ok(f) => match read_body(cfg, body).await {
            Ok(b) => (f, b),
            Err(r) => return *r,
        },
        Err(r) => return *r,
    };
    let Ok((records, samples, rejects)) = parse_body(route.clone(), bytes, format).await else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "parser failed"}));
    };
    route.stats.records.fetch_add(records, std::sync::atomic::Ordering::Relaxed);
    if !rejects.is_empty() {
        return refuse(&st, &route, records, rejects).await;
    }
    commit(&st, &route, records, samples).await
}

/// The answer to a request refused before its body is parsed.
type Refusal = Box<Response>;

/// 429 with `Retry-After: 1`.
fn busy(error: String) -> Response {
    let mut r = reply(StatusCode::TOO_MANY_REQUESTS, json!({ "error": error }));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// 401 unless the bearer token matches (or the source needs none).
fn authorize(cfg: &HttpSource, headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(token) = &cfg.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !same(given.as_bytes(), token.expose().as_bytes()) {
            let mut r = reply(StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token"}));
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(Box::new(r));
        }
    }
    Ok(())
}

/// Counts a request refused 401 and reports a burst of them
/// ([`super::burst`]); the token sent is never logged.
fn refused_token(st: &AppState, route: &Route, peer: Option<std::net::IpAddr>) {
    route.stats.refused_tokens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let report = route.burst.lock().unwrap_or_else(|p| p.into_inner()).refused(tokio::time::Instant::now(), peer);
    let Some(b) = report else { return };
    let (name, window) = (&route.cfg.common.name, route.cfg.token_burst_window);
    let msg = format!(
        "HTTP source {name}: {} requests refused for a missing or wrong token within {} (from {})",
        b.count,
        crate::units::format_duration(window),
        if b.addresses.is_empty() { "unknown addresses".to_string() } else { b.addresses.join(", ") }
    );
    tracing::warn!(source = %name, count = b.count, "{msg}");
    if let Some(events) = &st.ctx.events {
        let details = json!({
            "detector": "token_burst", "count": b.count, "window_s": window.as_secs_f64(), "remote_addresses": b.addresses,
            "threshold": route.cfg.token_burst,
        });
        events.emit_now("security.token_refused_burst", Severity::Warning, EventSource::Device(name.as_str().into()), msg, details);
    }
}

/// Takes one token of the route's `max_requests_per_second` bucket; 429 when empty.
fn take_token(route: &Route) -> Result<(), Refusal> {
    let cfg = &route.cfg;
    if cfg.max_requests_per_second > 0.0 {
        let mut b = route.bucket.lock().expect("bucket lock");
        let rate = cfg.max_requests_per_second;
        b.tokens = (b.tokens + b.last.elapsed().as_secs_f64() * rate).min(rate.max(1.0));
        b.last = Instant::now();
        if b.tokens < 1.0 {
            return Err(Box::new(busy(format!("more than {rate} requests per second"))));
        }
        b.tokens -= 1.0;
    }
    Ok(())
}

fn too_large(cfg: &HttpSource) -> Response {
    reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": format!("body larger than max_body ({} bytes)", cfg.max_body)}))
}

/// The body's format: the source's `format`, else the `Content-Type` (415
/// when neither says); 413 first when `Content-Length` is above `max_body`.
fn body_format(cfg: &HttpSource, headers: &HeaderMap) -> Result<Format, Refusal> {
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > cfg.max_body)
    {
        return Err(Box::new(too_large(cfg)));
    }
    match cfg.common.parse.format {
        Some(f) => Ok(f),
        None => headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(Format::from_content_type).ok_or_else(|| {
            Box::new(reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "Content-Type must be text/csv, application/json or application/x-ndjson"}),
            ))
        }),
    }
}

/// The whole body within `body_timeout` and `max_body` (413, 400, 408 otherwise).
async fn read_body(cfg: &HttpSource, body: Body) -> Result<axum::body::Bytes, Refusal> {
    match tokio::time::timeout(cfg.body_timeout, axum::body::to_bytes(body, cfg.max_body as usize)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) if is_length_limit(&e) => Err(Box::new(too_large(cfg))),
        Ok(Err(e)) => Err(Box::new(reply(StatusCode::BAD_REQUEST, json!({"error": format!("could not read the body: {e}")})))),
        Err(_) => Err(Box::new(reply(
            StatusCode::REQUEST_TIMEOUT,
            json!({"error": format!("the body was not received within body_timeout ({}); nothing was accepted", crate::units::format_duration(cfg.body_timeout))}),
        ))),
    }
}

/// Parses the body off the runtime: records read, samples, rejected records.
async fn parse_body(
    route: Arc<Route>,
    bytes: axum::body::Bytes,
    format: Format,
) -> Result<(u64, Vec<crate::model::Sample>, Vec<crate::model::Quarantined>), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let c = &route.cfg.common;
        let mut mapper = Mapper::new(&c.name, &c.device, &c.parse.tags);
        mapper.fields = route.fields.clone();
        let mut samples = Vec::new();
        let mut rejects = Vec::new();
        let mut records = 0u64;
        let res = parse_input(&bytes[..], format, &c.parse, &mut mapper, "http", &mut |r| {
            records += 1;
            match r {
                Ok(s) => samples.extend(s),
                Err(q) => rejects.push(q),
            }
        });
        if let Err(e) = res {
            rejects.push(mapper.reject(
                "http",
                "body".into(),
                format!("{}: {e}", crate::model::reason::PARSE_ERROR),
                &String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]),
            ));
        }
        (records, samples, rejects)
    })
    .await
}

/// 422 with every rejected record; they go to the quarantine (best effort),
/// nothing of the body is accepted.
async fn refuse(st: &AppState, route: &Route, records: u64, rejects: Vec<crate::model::Quarantined>) -> Response {
    let cfg = &route.cfg;
    let errors: Vec<serde_json::Value> = rejects.iter().take(1000).map(|q| json!({"location": q.location, "reason": q.reason})).collect();
    let n = rejects.len();
    route.stats.rejected(&rejects);
    // Keep them in the quarantine too (best effort, not awaited for long).
    let g = Group { quarantine: rejects, ..Default::default() };
    let _ = tokio::time::timeout(cfg.commit_timeout, st.ctx.ingest.push_group(g)).await;
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"source": cfg.common.name, "records": records, "accepted": 0, "rejected": n, "errors": errors,
               "note": "nothing of this body was accepted; fix the listed records and send the body again"}),
    )
}

/// Pushes the samples and answers once committed: 200 with the `seq` range,
/// 507 when the buffer cannot store them, 503 past `commit_timeout`.
async fn commit(st: &AppState, route: &Route, records: u64, mut samples: Vec<crate::model::Sample>) -> Response {
    let cfg = &route.cfg;
    route.checker.lock().unwrap_or_else(|p| p.into_inner()).apply_all(&mut samples, None);
    let n = samples.len() as u64;
    let g = Group { samples, ..Default::default() };
    match tokio::time::timeout(cfg.commit_timeout, st.ctx.ingest.push_group(g)).await {
        Ok(Some(a)) => {
            route.stats.samples.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            let (first, last) = if a.first <= a.last { (Some(a.first), Some(a.last)) } else { (None, None) };
            reply(
                StatusCode::OK,
                json!({"source": cfg.common.name, "records": records, "accepted": n, "first_seq": first, "last_seq": last}),
            )
        }
        Ok(None) => reply(StatusCode::INSUFFICIENT_STORAGE, json!({"error": "the buffer could not store the samples (disk full?)"})),
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the buffer did not commit in time; retry later (samples may still be committed)"}),
        ),
    }
}
