//! `type = "http"`: `POST /ingest/{source}`. See `sample.toml` beside this file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::read::Size;
use crate::diag::{Diag, Item, Reader, de_item};
use crate::secret::{Secret, SecretKey, read_secret};
use crate::sources::common::{SourceCommon, parse_common};

/// A validated HTTP ingest source.
#[derive(Debug, Clone)]
pub struct HttpSource {
    /// Name, device, parsing. The route is `/ingest/<name>`.
    pub common: SourceCommon,
    /// Listen address (default `127.0.0.1:8080`: loopback unless configured).
    pub listen: SocketAddr,
    /// Where `listen` is in the configuration text (the source's table when
    /// it is not written), for errors found across sources.
    pub listen_span: std::ops::Range<usize>,
    /// Bearer token clients must send (`Authorization: Bearer <token>`);
    /// required unless `allow_anonymous = true`.
    pub token: Option<Secret>,
    /// Largest accepted body (default 16 MiB); larger ones get 413.
    pub max_body: u64,
    /// Requests per second allowed on this route (default 0 = no limit); the
    /// excess gets 429 with `Retry-After`.
    pub max_requests_per_second: f64,
    /// Requests processed at once (default 64); the excess gets 429.
    pub max_concurrent: usize,
    /// How long a request may wait for its samples to be committed (default 10 s; 503 after).
    pub commit_timeout: Duration,
    /// How long a client may take to send its whole body (default 30 s; 408
    /// after): a client trickling bytes never holds a slot for ever.
    pub body_timeout: Duration,
    /// How long a connection may take to deliver a complete request head
    /// (request line and headers), counted from when it opens and again
    /// after each answer on a kept-alive connection (default 10 s; then the
    /// connection is closed): idle and slow-loris connections go.
    pub header_timeout: Duration,
    /// The longest time without a byte moving either way while relais waits
    /// on the client: a half-open connection (peer gone), a client that
    /// stopped reading its answer (default 60 s; then closed). Must exceed
    /// `commit_timeout` (a request waiting for its commit is idle too).
    pub idle_timeout: Duration,
    /// Connections open at once per listen address (default 256; the
    /// largest value among the sources sharing the address applies); a new
    /// connection beyond is closed at once, and counted.
    pub max_connections: usize,
    /// Refused tokens (401) within `token_burst_window` that raise one
    /// `security.token_refused_burst` event (`token_burst`, default 10; 0: off).
    pub token_burst: u32,
    /// The window of `token_burst` (default 60 s); at most one event per window.
    pub token_burst_window: Duration,
}

/// Type-specific keys.
pub const HTTP_KEYS: &[&str] = &[
    "listen",
    "token",
    "token_file",
    "token_env",
    "allow_anonymous",
    "max_body",
    "max_requests_per_second",
    "max_concurrent",
    "commit_timeout",
    "body_timeout",
    "header_timeout",
    "idle_timeout",
    "max_connections",
    "token_burst",
    "token_burst_window",
];

#[derive(Deserialize)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    allow_anonymous: bool,
    max_body: Option<Spanned<Size>>,
    max_requests_per_second: Option<Spanned<f64>>,
    max_concurrent: Option<Spanned<i64>>,
    commit_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    token_burst: Option<Spanned<i64>>,
    token_burst_window: Option<Spanned<String>>,
}

/// Parses a `type = "http"` source.
pub fn parse_http(item: Item<'_>, d: &mut Diag<'_>, key: &str, base: &Path) -> Option<HttpSource> {
    let span = item.span();
    let (common, item) = parse_common(item, d, key, HTTP_KEYS)?;
    let key = format!("source {:?}", common.name);
    let k = |s: &str| format!("{key} / {s}");
    let raw: RawHttp = de_item(item, d, &key)?;
    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                d.error(l.span(), &k("listen"), format!("{:?} is not an address like \"127.0.0.1:8080\"", l.get_ref()));
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        },
    };
    // No `format`: the Content-Type picks CSV or JSON per request, so a
    // timestamp key for one format only leaves the other without one.
    if common.parse.format.is_none() {
        for f in [crate::parse::spec::Format::Csv, crate::parse::spec::Format::Json] {
            if let Some(w) = common.parse.timestamp_warning(f) {
                let key = common.parse.timestamp_key_missing(f).unwrap_or("timestamp");
                d.warn(span.clone(), &k(key), format!("{w} (bodies sent with that Content-Type)"));
            }
        }
    }
    let token = read_secret(d, &key, "token", &raw.token, &raw.token_file, &raw.token_env, base);
    if matches!(token, SecretKey::Absent) && !raw.allow_anonymous {
        d.error(span.clone(), &k("token"), "set token_file (or token_env) for `Authorization: Bearer <token>`, or allow_anonymous = true");
    }
    let token = token.secret();
    if token.is_some() && raw.allow_anonymous {
        d.error(span.clone(), &k("allow_anonymous"), "allow_anonymous = true and a token are exclusive");
    }
    if !listen.ip().is_loopback() {
        let s = raw.listen.as_ref().map_or(span.clone(), |l| l.span());
        if raw.allow_anonymous {
            d.warn(s, &k("listen"), "anonymous ingest open beyond this machine: anyone on the network can write data");
        } else {
            d.warn(
                s,
                &k("listen"),
                "ingest listens beyond this machine over plain HTTP: the token travels in clear text; put a TLS reverse proxy in front",
            );
        }
    }
    let mut r = Reader::new(d, &key);
    let max_body = r.size(&raw.max_body, "max_body", 16 << 20, 1..=u64::MAX);
    let max_requests_per_second = match &raw.max_requests_per_second {
        None => 0.0,
        Some(x) if x.get_ref().is_finite() && *x.get_ref() >= 0.0 => *x.get_ref(),
        Some(x) => {
            r.error(x.span(), "max_requests_per_second", "must be 0 (no limit) or positive");
            0.0
        }
    };
    let max_concurrent = r.int(&raw.max_concurrent, "max_concurrent", 1..=10_000, 64);
    let commit_timeout = r.nonzero_duration(&raw.commit_timeout, "commit_timeout", Duration::from_secs(10));
    let body_timeout = r.nonzero_duration(&raw.body_timeout, "body_timeout", Duration::from_secs(30));
    let header_timeout = r.nonzero_duration(&raw.header_timeout, "header_timeout", Duration::from_secs(10));
    let idle_timeout = r.nonzero_duration(&raw.idle_timeout, "idle_timeout", Duration::from_secs(60));
    if idle_timeout <= commit_timeout {
        let s = raw.idle_timeout.as_ref().or(raw.commit_timeout.as_ref()).map_or(span.clone(), |v| v.span());
        r.error(s, "idle_timeout", "idle_timeout must be longer than commit_timeout (a request waiting for its commit moves no byte)");
    }
    let max_connections = r.int(&raw.max_connections, "max_connections", 1..=100_000, 256);
    let token_burst = r.int(&raw.token_burst, "token_burst", 0..=1000, super::burst::DEFAULT_TOKEN_BURST);
    let token_burst_window = r.duration_in(
        &raw.token_burst_window,
        "token_burst_window",
        super::burst::DEFAULT_TOKEN_BURST_WINDOW,
        Duration::from_secs(1)..=Duration::from_secs(86_400),
    );
    let listen_span = raw.listen.as_ref().map_or(span, |l| l.span());
    Some(HttpSource {
        common,
        listen,
        listen_span,
        token,
        max_body,
        max_requests_per_second,
        max_concurrent,
        commit_timeout,
        body_timeout,
        header_timeout,
        idle_timeout,
        max_connections,
        token_burst,
        token_burst_window,
    })
}
