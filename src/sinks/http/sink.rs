//! The HTTPS sink: the shared [`Driver`] over reqwest (rustls, ring).
//!
//! - One POST per batch, at most `max_inflight` waiting for an answer.
//! - 2xx = acknowledged (the cursor moves). 429 and 503 = the endpoint is
//!   busy: the connection counts as lost and the next try waits for its
//!   `Retry-After` (seconds or an HTTP date, at most one hour) instead of the
//!   backoff. 5xx, 408, and the 4xx that are about the endpoint rather than
//!   the batch (401, 403, 404, 405, 407, 409, 410, 421, 423, 425) = retried
//!   with backoff: a wrong token or URL is fixed by the operator, and the
//!   data waits in the buffer meanwhile. Any other 4xx (400, 413, 415, 422 …)
//!   = the batch is refused for good: each of its records goes to the
//!   quarantine with the status and the start of the answer.
//! - Redirects are not followed (a POST would become a GET): a 3xx is
//!   reported and retried, pointing at the URL to configure.
//! - `Idempotency-Key: {gateway}:{first_seq}-{last_seq}` on every POST, so an
//!   endpoint can drop a batch it already stored (a resend after a lost
//!   answer carries the same key when the batch is the same; every record
//!   also carries its `seq`).
//! - "Connected" means the endpoint's TCP port answers; every POST then says
//!   whether it took the batch.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::HttpSinkConfig;
use super::encode::{Body, encode_batches};
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::Record;
use crate::sinks::driver::{self, Driver, Encoder, Lost, Outcome, Prepared, RefusedRecord, Settings, Token};
use crate::telemetry::SinkStats;

/// The HTTPS sink: construct with [`HttpSink::new`], run with [`HttpSink::run`].
pub struct HttpSink {
    driver: Driver<Http>,
}

impl HttpSink {
    /// A sink delivering rows after `cursor`, woken by `committed`.
    pub fn new(
        cfg: HttpSinkConfig,
        gateway: &str,
        reader: Reader,
        cursor: SinkCursor,
        committed: watch::Receiver<u64>,
        stats: Arc<SinkStats>,
    ) -> HttpSink {
        HttpSink { driver: Driver::new(Http { cfg, gateway: gateway.to_string() }, reader, cursor, committed, stats) }
    }

    /// Emits the sink's connection events and quarantines refused batches.
    pub fn with_events(self, events: Events) -> HttpSink {
        HttpSink { driver: self.driver.with_events(events) }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to `grace`.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        self.driver.run(stop, grace).await
    }
}

/// HTTP's side of the driver.
pub struct Http {
    cfg: HttpSinkConfig,
    gateway: String,
}

/// One "connection": a client and the POSTs waiting for their answer.
pub struct HttpConn {
    client: reqwest::Client,
    headers: HeaderMap,
    posts: JoinSet<Outcome>,
}

/// The encoder: records → bodies.
pub struct HttpEncoder {
    cfg: HttpSinkConfig,
    gateway: String,
}

impl Encoder for HttpEncoder {
    type Msg = Body;

    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<Body>>) {
        let mut bodies = Vec::new();
        let limits = (self.cfg.batch_max_records, self.cfg.max_body_bytes);
        encode_batches(self.cfg.format, &self.gateway, &self.cfg.measurement, records, limits, &mut bodies);
        out.extend(bodies.into_iter().map(|b| Prepared { records: b.items.len(), msg: b }));
    }
}

/// Status codes about the endpoint (or its state), not about the batch:
/// retried, never quarantined.
fn retried_4xx(s: StatusCode) -> bool {
    matches!(s.as_u16(), 401 | 403 | 404 | 405 | 407 | 408 | 409 | 410 | 421 | 423 | 425)
}

/// `Retry-After` in seconds or as an HTTP date, capped at one hour.
pub fn retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(s) = v.parse::<u64>() {
        Duration::from_secs(s)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let at = std::time::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.clamp(Duration::from_secs(1), Duration::from_secs(3600)))
}

/// The start of an answer, for logs and the quarantine.
fn excerpt(body: &str) -> String {
    let one: String = body.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect();
    one.trim().to_string()
}

/// What the answer to one POST means.
async fn outcome(token: Token, target: String, body: Body, res: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    let r = match res {
        Ok(r) => r,
        Err(e) => {
            // reqwest names the whole URL (query included) in its errors: the target says which.
            let why = if e.is_timeout() { "no answer within timeout".to_string() } else { format!("{}", e.without_url()) };
            return Outcome::Lost(Lost::new(format!("POST to {target}: {why}")));
        }
    };
    let status = r.status();
    if status.is_success() {
        return Outcome::Acked(token);
    }
    let wait = r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| retry_after(v, std::time::SystemTime::now()));
    let location = r.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(crate::util::redact::url);
    let answer = excerpt(&r.text().await.unwrap_or_default());
    let said = if answer.is_empty() { String::new() } else { format!(": {answer}") };
    match status.as_u16() {
        429 | 503 => Outcome::Lost(Lost { reason: format!("{target} answered {status} (busy){said}"), retry_after: wait }),
        300..=399 => Outcome::Lost(Lost::new(format!(
            "{target} answered {status}, a redirect to {}; relais does not follow redirects of a POST: set url to the final address",
            location.unwrap_or_else(|| "(no Location)".into())
        ))),
        400..=499 if !retried_4xx(status) => {
            let reason = format!("HTTP {status}{said}");
            let refused = body.record_texts().map(|(seq, raw)| RefusedRecord { seq, reason: reason.clone(), raw }).collect();
            Outcome::AckedExcept { token, refused }
        }
        _ => Outcome::Lost(Lost::new(format!("{target} answered {status}{said}"))),
    }
}

impl Http {
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut tls = self.cfg.tls.client_config()?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.cfg.timeout)
            .connect_timeout(Duration::from_secs(10).min(self.cfg.timeout))
            .redirect(reqwest::redirect::Policy::none())
            .tcp_keepalive(Duration::from_secs(30))
            .no_proxy()
            .user_agent(concat!("relais/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }

    fn headers(&self) -> anyhow::Result<HeaderMap> {
        let mut h = HeaderMap::new();
        for (n, v) in &self.cfg.headers {
            let mut value = HeaderValue::from_str(v.expose())?;
            value.set_sensitive(true);
            h.insert(HeaderName::from_bytes(n.as_bytes())?, value);
        }
        if let Some(t) = &self.cfg.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose()))?;
            value.set_sensitive(true);
            h.insert(AUTHORIZATION, value);
        }
        Ok(h)
    }
}

impl driver::Sink for Http {
    type Conn = HttpConn;
    type Msg = Body;
    type Encoder = HttpEncoder;

    fn settings(&self) -> Settings {
        Settings {
            name: self.cfg.name.clone(),
            protocol: "HTTP",
            target: self.cfg.target(),
            window: self.cfg.max_inflight,
            read_rows: self.cfg.batch_max_records,
            one_record_per_message: false,
            backlog_threshold: self.cfg.backlog_threshold,
            backlog_alarm_age: self.cfg.backlog_alarm_age,
            ack_timeout: self.cfg.timeout + Duration::from_secs(10),
            reconnect_max: self.cfg.reconnect_max,
        }
    }

    fn encoder(&self) -> HttpEncoder {
        HttpEncoder { cfg: self.cfg.clone(), gateway: self.gateway.clone() }
    }

    async fn connect(&mut self) -> Result<HttpConn, Lost> {
        let setup = self.client().and_then(|c| Ok((c, self.headers()?)));
        let (client, headers) = match setup {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(sink = %self.cfg.name, error = %e, "cannot set up the HTTP client");
                return Err(Lost { reason: e.to_string(), retry_after: Some(self.cfg.reconnect_max) });
            }
        };
        // Reachable means the port answers; each POST says the rest.
        let host = self.cfg.url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
        let port = self.cfg.url.port_or_known_default().unwrap_or(443);
        match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(HttpConn { client, headers, posts: JoinSet::new() }),
            Ok(Err(e)) => Err(Lost::new(format!("cannot reach {host}:{port}: {e}"))),
            Err(_) => Err(Lost::new(format!("cannot reach {host}:{port}: no answer within 10s"))),
        }
    }

    fn send(&mut self, conn: &mut HttpConn, msg: Body, token: Token) -> Result<(), Body> {
        let req = conn
            .client
            .post(self.cfg.url.clone())
            .headers(conn.headers.clone())
            .header(CONTENT_TYPE, msg.content_type)
            .header("Idempotency-Key", msg.key.as_str())
            .body(msg.bytes.clone());
        let target = self.cfg.target();
        conn.posts.spawn(async move {
            let res = req.send().await;
            outcome(token, target, msg, res).await
        });
        Ok(())
    }

    async fn next(&mut self, conn: &mut HttpConn) -> Outcome {
        match conn.posts.join_next().await {
            Some(Ok(o)) => o,
            Some(Err(e)) => Outcome::Lost(Lost::new(format!("POST task failed: {e}"))),
            None => std::future::pending().await,
        }
    }

    async fn close(&mut self, mut conn: HttpConn) {
        conn.posts.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("0", now), Some(Duration::from_secs(1)), "never a busy loop");
        assert_eq!(retry_after("999999", now), Some(Duration::from_secs(3600)));
        assert_eq!(retry_after("soon", now), None);
        assert!(retried_4xx(StatusCode::UNAUTHORIZED) && !retried_4xx(StatusCode::BAD_REQUEST));
    }
}
