//! One proxied connection: the upstream connection, the two copy loops in one
//! task, and how the connection ends (FIN, or RST for `reset`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::pipe::{Cut, Way, pump};
use super::toxic::Direction;
use super::{Protocol, Shared, mqtt};

/// Time allowed to connect to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves connection number `n` (from 1) until it ends or `stop`.
pub async fn serve(client: TcpStream, n: u64, sh: Arc<Shared>, stop: CancellationToken) {
    let t = sh.toxics.borrow().clone();
    let _ = client.set_nodelay(true);
    if t.reset() {
        reset(&client);
        return;
    }
    if sh.protocol == Protocol::Mqtt && t.refuse_connect() {
        match mqtt::refuse(client).await {
            Ok(id) => tracing::info!(client_id = %id, "proxy: MQTT CONNECT refused (CONNACK 5, not authorized)"),
            Err(e) => tracing::debug!("proxy: refuse_connect: {e}"),
        }
        return;
    }
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&sh.upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %sh.upstream, "proxy: upstream connection failed: {e}; client connection closed");
            return;
        }
        Err(_) => {
            tracing::warn!(upstream = %sh.upstream, "proxy: upstream connection timed out after {CONNECT_TIMEOUT:?}; client connection closed");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let mut client = client;
    let mut server = server;
    let requests = watch::channel(0u64).0;
    let used = AtomicU64::new(0);
    let seed = sh.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n.wrapping_mul(2));
    let cut = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let way = |way, s| Way { way, protocol: sh.protocol, rng: fastrand::Rng::with_seed(s), requests: &requests, used: &used };
        let up = pump(&mut cr, &mut sw, way(Direction::Upstream, seed), sh.toxics.subscribe());
        let down = pump(&mut sr, &mut cw, way(Direction::Downstream, seed.wrapping_add(1)), sh.toxics.subscribe());
        tokio::select! {
            r = futures::future::try_join(up, down) => r.err(),
            _ = stop.cancelled() => Some(Cut::Close),
        }
    };
    if cut == Some(Cut::Reset) {
        reset(&client);
        reset(&server);
    }
    tracing::debug!(connection = n, ?cut, "proxy: connection ended");
}

/// Makes the close of `s` a reset (RST): `SO_LINGER` 0.
fn reset(s: &TcpStream) {
    // A zero linger never blocks on drop (the deprecation is about the
    // blocking non-zero case).
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
}
