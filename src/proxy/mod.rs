//! The TCP fault proxy (issue 13, "Network" and "Uplink"): a listener that
//! forwards every connection to one upstream and injects network faults,
//! *toxics*, into them on demand (Toxiproxy's vocabulary, plus Modbus- and
//! MQTT-aware faults). Used by `relais proxy` and by the fault bench (`lab`).
//!
//! - `toxic.rs`: [`Toxic`], [`Direction`], [`ToxicId`], the active set.
//! - `pipe.rs`: the copy loop of one direction (plain copy when no toxic is
//!   active, the toxic path otherwise); `conn.rs`: one connection.
//! - `modbus.rs`: MBAP framing (Modbus Messaging on TCP/IP Implementation
//!   Guide v1.0b §3.1.3) for `late_response`, `wrong_tid`,
//!   `duplicate_response`; `mqtt.rs`: `refuse_connect`.
//!
//! Every toxic acts on the open connections as soon as it is set and on new
//! ones, and stops when cleared. `src/proxy/README.md` lists each toxic's
//! parameters, what the gateway sees and the detection to expect.

mod conn;
mod modbus;
mod mqtt;
mod pipe;
mod toxic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use toxic::Active;
pub use toxic::{Direction, Toxic, ToxicId};

/// What the proxied connections speak: the Modbus- and MQTT-aware toxics act
/// only on their protocol (on `Tcp` they are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Any TCP protocol: bytes only.
    #[default]
    Tcp,
    /// Modbus TCP (MBAP framing): `late_response`, `wrong_tid`, `duplicate_response`.
    Modbus,
    /// MQTT 3.1.1: `refuse_connect`.
    Mqtt,
}

/// State shared by the listener and the connections.
struct Shared {
    toxics: watch::Sender<Arc<Active>>,
    next_id: AtomicU64,
    upstream: String,
    protocol: Protocol,
    seed: u64,
}

/// A running proxy; dropping it stops the listener and cuts every connection.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Proxy {
    /// Listens on `listen` (port 0: a free port, see [`Proxy::local_addr`])
    /// and forwards each connection to `upstream` (`host:port`, resolved at
    /// each connection). `seed` drives the jitter (per connection, in
    /// connection order). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The listen address cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: String, protocol: Protocol, seed: u64) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind(listen).await.with_context(|| format!("proxy: cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("proxy: listener address")?;
        let shared = Arc::new(Shared {
            toxics: watch::channel(Arc::new(Active::default())).0,
            next_id: AtomicU64::new(1),
            upstream,
            protocol,
            seed,
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, addr, shared.clone(), stop.clone()));
        Ok(Proxy { shared, addr, stop })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Activates `toxic` on the open connections and on new ones.
    pub fn set(&self, toxic: Toxic) -> ToxicId {
        let id = ToxicId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        tracing::info!(proxy = %self.addr, upstream = %self.shared.upstream, ?toxic, "proxy: toxic set");
        self.shared.toxics.send_modify(|a| {
            let mut list = a.list.clone();
            list.push((id, toxic));
            *a = Arc::new(Active { list });
        });
        id
    }

    /// Ends the toxic `id` (nothing when it is not set).
    pub fn clear(&self, id: ToxicId) {
        self.shared.toxics.send_if_modified(|a| {
            if !a.list.iter().any(|(i, _)| *i == id) {
                return false;
            }
            let list = a.list.iter().filter(|(i, _)| *i != id).cloned().collect();
            *a = Arc::new(Active { list });
            tracing::info!(proxy = %self.addr, "proxy: toxic cleared");
            true
        });
    }

    /// Ends every toxic.
    pub fn clear_all(&self) {
        self.shared.toxics.send_if_modified(|a| {
            if a.is_empty() {
                return false;
            }
            *a = Arc::new(Active::default());
            tracing::info!(proxy = %self.addr, "proxy: all toxics cleared");
            true
        });
    }

    /// The toxics set now, in the order they were set.
    pub fn toxics(&self) -> Vec<(ToxicId, Toxic)> {
        self.shared.toxics.borrow().list.clone()
    }
}

/// Accepts connections until `stop`; while `down` is set the listener is
/// closed (connections are refused) and bound again on the same address
/// when it is cleared.
async fn accept_loop(listener: TcpListener, addr: SocketAddr, sh: Arc<Shared>, stop: CancellationToken) {
    let mut toxics = sh.toxics.subscribe();
    let mut listener = Some(listener);
    let mut n = 0u64;
    loop {
        let down = toxics.borrow_and_update().down();
        if down && listener.is_some() {
            listener = None;
            tracing::info!(proxy = %addr, "proxy: down, listener closed");
        }
        if !down && listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(proxy = %addr, "proxy: up again, listening");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(proxy = %addr, "proxy: cannot listen again: {e}; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
        let accept = async {
            match &listener {
                Some(l) => l.accept().await.map(|(s, _)| s),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = accept => match r {
                Ok(s) => {
                    n += 1;
                    tokio::spawn(conn::serve(s, n, sh.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::debug!("proxy: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            c = toxics.changed() => if c.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
