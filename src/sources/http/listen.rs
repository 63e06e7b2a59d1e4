//! The connection side of HTTP ingest: one accept loop per listen address
//! that bounds what a client can hold without sending a request (issue 9
//! item 12: 1,100 idle connections, needing no token, used up the 1,024 file
//! descriptors of the process).
//!
//! - `max_connections`: a connection beyond the limit is accepted and closed
//!   at once (the kernel's queue never fills with them), counted, and
//!   logged at most once a minute. File descriptors held by the server stay
//!   below `max_connections` + 1 (the listener).
//! - `header_timeout`: hyper's HTTP/1 `header_read_timeout`; its clock starts
//!   when hyper waits for a request head, at connect and after every answer
//!   on a kept-alive connection, so an idle connection and a head sent byte
//!   by byte are both closed when it runs out.
//! - `idle_timeout`: read and write timeouts on the socket
//!   (`tokio_io_timeout::TimeoutStream`): a peer that vanished without a
//!   FIN, or that stopped reading its answer, is closed once no byte moved
//!   for that long.
//! - Shutdown: the listener closes, connections finish the request in hand
//!   (hyper's graceful shutdown, at most [`DRAIN`]).
//!
//! HTTP/1.1 only (no HTTP/2 detection, which would read the first bytes
//! before any timeout applies).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

use crate::util::RateLimited;

/// Longest wait for requests in hand at shutdown.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The connection limits of one listen address.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`super::config::HttpSource::header_timeout`].
    pub header_timeout: Duration,
    /// See [`super::config::HttpSource::idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`super::config::HttpSource::max_connections`].
    pub max_connections: usize,
}

/// Counters of one listen address.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
}

/// The remote address of a request's connection, as an axum extension
/// (`Option<Extension<Peer>>` in a handler).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Serves `app` on `listener` within `limits` until `stop`.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stats: Arc<ConnStats>, stop: CancellationToken) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let mut full_log = RateLimited::new(Duration::from_secs(60));
    let mut accept_log = RateLimited::new(Duration::from_secs(60));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: wait, never spin.
                    if let Some(n) = accept_log.allow() {
                        tracing::warn!(listen = %addr, error = %e, suppressed = n, "HTTP ingest cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            let n = stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(left_out) = full_log.allow() {
                tracing::warn!(listen = %addr, max_connections = limits.max_connections, refused_total = n, lines_left_out = left_out,
                    "HTTP ingest at max_connections: new connections are closed at once");
            }
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_read_timeout(Some(limits.idle_timeout));
        io.set_write_timeout(Some(limits.idle_timeout));
        // Handlers may read the remote address (`Extension<Peer>`).
        let app = app.clone().layer(axum::Extension(Peer(peer)));
        let conn = http.serve_connection(TokioIo::new(Box::pin(io)), TowerToHyperService::new(app));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (timeouts, resets, bad requests).
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP ingest connection closed");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!(listen = %addr, "HTTP ingest: requests still in hand after {DRAIN:?} at shutdown; closing them");
    }
}
