//! Configuration of `type = "http"` sinks. See `sample.toml` beside this file.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::read::Size;
use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};
use crate::names;
use crate::secret::{Secret, read_secret};
use crate::util::redact;
use crate::util::tls::{TlsFiles, is_loopback, read_files};

/// Body layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document per POST: `gateway`, `first_seq`, `last_seq`,
    /// `samples`, `events` (`application/json`).
    Json,
    /// InfluxDB line protocol, one line per record (`text/plain`).
    Influx,
}

/// A validated HTTPS sink.
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// Sink name; also the name of its cursor in the buffer.
    pub name: String,
    /// The endpoint every batch is POSTed to.
    pub url: reqwest::Url,
    /// Body layout.
    pub format: Format,
    /// Measurement name of `influx` lines (default `relais`; events go to `{measurement}_event`).
    pub measurement: String,
    /// Extra request headers (values never logged).
    pub headers: Vec<(String, Secret)>,
    /// Bearer token (`Authorization: Bearer …`).
    pub token: Option<Secret>,
    /// CA and client certificate files.
    pub tls: TlsFiles,
    /// Whole-request timeout (default 30 s).
    pub timeout: Duration,
    /// POSTs waiting for an answer at once (default 1: batches arrive in order).
    pub max_inflight: usize,
    /// Most records in one POST (default 1000); also the buffer read size.
    pub batch_max_records: usize,
    /// Largest body (default 4 MiB): bigger batches are split.
    pub max_body_bytes: usize,
    /// Backlog, in records, above which live records get a lane of their own (default 10000).
    pub backlog_threshold: u64,
    /// Age of the oldest undelivered record that raises `sink.backlog_old`
    /// (`backlog_alarm_age`, default 60 s; `"0s"`: off; `sinks::driver::backlog_age`).
    pub backlog_alarm_age: Duration,
    /// Longest wait between reconnect attempts (default 5 s, [`crate::util::DEFAULT_RECONNECT_MAX`]).
    pub reconnect_max: Duration,
}

impl HttpSinkConfig {
    /// The endpoint as it may be logged (no credentials, no query).
    pub fn target(&self) -> String {
        redact::url(self.url.as_str())
    }
}

/// Keys of an HTTP `[[sink]]`.
pub const KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "format",
    "measurement",
    "headers",
    "token",
    "token_file",
    "token_env",
    "ca_file",
    "client_cert",
    "client_key",
    "timeout",
    "max_inflight",
    "batch_max_records",
    "max_body_bytes",
    "backlog_threshold",
    "backlog_alarm_age",
    "reconnect_max",
];

#[derive(Deserialize)]
struct Raw {
    name: Spanned<String>,
    url: Spanned<String>,
    format: Option<Spanned<String>>,
    measurement: Option<Spanned<String>>,
    headers: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_inflight: Option<Spanned<i64>>,
    batch_max_records: Option<Spanned<i64>>,
    max_body_bytes: Option<Spanned<Size>>,
    backlog_threshold: Option<Spanned<i64>>,
    backlog_alarm_age: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
}

fn parse_url(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<reqwest::Url> {
    let url = match reqwest::Url::parse(v.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            d.error(v.span(), key, format!("{:?} is not a URL: {e}", redact::url(v.get_ref())));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        d.error(v.span(), key, format!("scheme {:?} is not supported; use https:// (or http:// on this machine)", url.scheme()));
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        d.error(v.span(), key, "the url carries credentials; use `token_file` (or `headers`) so secrets stay out of logs");
        return None;
    }
    Some(url)
}

/// Parses one `[[sink]]` item with `type = "http"` (`item_key` names it in
/// messages before its name is known); relative paths resolve against `base`.
pub fn parse_sink(mut item: Item<'_>, d: &mut Diag<'_>, item_key: &str, base: &Path) -> Option<HttpSinkConfig> {
    reject_unknown_keys(&mut item, KEYS, d, item_key);
    let raw: Raw = de_item(item.clone(), d, item_key)?;
    let before = d.error_count();
    let name = raw.name.get_ref().clone();
    let key = format!("sink {name:?}");
    let k = |s: &str| format!("{key} / {s}");
    if let Err(e) = names::check(&name) {
        d.error(raw.name.span(), &k("name"), e);
    }
    let url = parse_url(d, &raw.url, &k("url"));
    let format = Reader::new(d, &key).choice(&raw.format, "format", &[("json", Format::Json), ("influx", Format::Influx)], Format::Json);
    let measurement = raw.measurement.as_ref().map_or("relais".to_string(), |m| m.get_ref().clone());
    if measurement.is_empty() || measurement.starts_with('_') || measurement.chars().any(char::is_control) {
        let span = raw.measurement.as_ref().map_or(raw.name.span(), |m| m.span());
        d.error(span, &k("measurement"), "measurement must be non-empty text without control characters, not starting with '_'");
    }
    let mut headers = Vec::new();
    if let Some(h) = &raw.headers {
        for (n, v) in h.get_ref() {
            let ok_name = reqwest::header::HeaderName::from_bytes(n.as_bytes()).is_ok();
            let ok_value = reqwest::header::HeaderValue::from_str(v).is_ok();
            if !ok_name || !ok_value {
                d.error(h.span(), &k("headers"), format!("header {n:?} is not a valid HTTP header name and value"));
            } else if n.eq_ignore_ascii_case("idempotency-key") || n.eq_ignore_ascii_case("content-type") {
                d.error(h.span(), &k("headers"), format!("header {n:?} is set by relais itself"));
            } else {
                headers.push((n.clone(), Secret::new(v.clone())));
            }
        }
    }
    let token = read_secret(d, &key, "token", &raw.token, &raw.token_file, &raw.token_env, base).secret();
    let tls = read_files(item, d, &key, base);
    if let Some(u) = &url {
        let host = u.host_str().unwrap_or("");
        if u.scheme() == "http" && tls.any() {
            d.error(raw.url.span(), &k("url"), "TLS files are set but the url is http://; use https://");
        }
        if u.scheme() == "http" && !is_loopback(host) {
            d.error(
                raw.url.span(),
                &k("url"),
                "http:// to another machine sends the data (and any token) in clear text; use https:// (http:// is for this machine only)",
            );
        }
    }
    let mut r = Reader::new(d, &key);
    let timeout = r.duration_in(&raw.timeout, "timeout", Duration::from_secs(30), Duration::from_millis(100)..=Duration::MAX);
    let max_inflight = r.int(&raw.max_inflight, "max_inflight", 1..=64, 1);
    let batch_max_records = r.int(&raw.batch_max_records, "batch_max_records", 1..=100_000, 1000);
    let max_body_bytes = r.size(&raw.max_body_bytes, "max_body_bytes", 4 << 20, 1024..=u64::MAX) as usize;
    let backlog_threshold = r.int(&raw.backlog_threshold, "backlog_threshold", 0..=i64::MAX, 10_000);
    let backlog_alarm_age =
        r.duration(&raw.backlog_alarm_age, "backlog_alarm_age", crate::sinks::driver::backlog_age::DEFAULT_BACKLOG_ALARM_AGE);
    let reconnect_max = r.duration(&raw.reconnect_max, "reconnect_max", crate::util::DEFAULT_RECONNECT_MAX);
    if d.error_count() > before {
        return None;
    }
    Some(HttpSinkConfig {
        name,
        url: url?,
        format,
        measurement,
        headers,
        token,
        tls,
        timeout,
        max_inflight,
        batch_max_records,
        max_body_bytes,
        backlog_threshold,
        backlog_alarm_age,
        reconnect_max,
    })
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::Influx => "influx",
        })
    }
}
