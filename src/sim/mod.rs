//! The line simulator: Modbus TCP stations serving signal models, CSV replays
//! (e.g. the SKAB pump data) and injected faults. See `src/sim/README.md`.
//!
//! - [`signal`]: the signal models (pure).
//! - [`config`]: `[[station]]` configuration.
//! - [`station`]: one station's register tables, signals and faults.
//! - [`server`]: the tokio-modbus service answering requests.

pub mod config;
pub mod server;
pub mod signal;
pub mod station;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

pub use config::SimConfig;
use server::SimService;
pub use station::Station;

/// A running simulator. Dropping it stops every listener and closes every
/// client connection (like a device that is switched off).
pub struct Sim {
    stations: Vec<Arc<Station>>,
    addrs: HashMap<SocketAddr, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Sim {
    /// Binds every listen address and starts the stations' clocks.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Sim> {
        let mut groups: Vec<(SocketAddr, HashMap<u8, Arc<Station>>)> = Vec::new();
        let mut stations = Vec::new();
        for sc in cfg.stations {
            let st = Arc::new(Station::new(sc));
            stations.push(st.clone());
            match groups.iter_mut().find(|(a, _)| *a == st.cfg.listen) {
                Some((_, m)) => {
                    m.insert(st.cfg.unit_id, st.clone());
                }
                None => groups.push((st.cfg.listen, HashMap::from([(st.cfg.unit_id, st.clone())]))),
            }
        }
        let mut tasks = Vec::new();
        let mut addrs = HashMap::new();
        for (addr, map) in groups {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("simulator cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr()?;
            addrs.insert(addr, local);
            let service = SimService { stations: Arc::new(map) };
            tasks.push(tokio::spawn(async move {
                let server = Server::new(listener);
                let on_connected = |stream, peer| {
                    let service = service.clone();
                    async move { accept_tcp_connection(stream, peer, |_| Ok(Some(service.clone()))) }
                };
                if let Err(e) = server.serve(&on_connected, |e| tracing::debug!(error = %e, "simulator connection ended")).await {
                    tracing::error!(listen = %local, error = %e, "simulator listener stopped");
                }
            }));
            tracing::info!(listen = %local, "simulator listening");
        }
        for st in &stations {
            if st.cfg.lockstep {
                continue;
            }
            let st = st.clone();
            tasks.push(tokio::spawn(async move {
                let mut iv = tokio::time::interval(st.cfg.tick);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                iv.tick().await;
                loop {
                    iv.tick().await;
                    st.advance();
                }
            }));
        }
        Ok(Sim { stations, addrs, tasks })
    }

    /// The stations, in config order.
    pub fn stations(&self) -> &[Arc<Station>] {
        &self.stations
    }

    /// The station named `name`.
    pub fn station(&self, name: &str) -> Option<&Arc<Station>> {
        self.stations.iter().find(|s| s.cfg.name == name)
    }

    /// The address actually bound for configured `listen` (differs for port 0).
    pub fn local_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.addrs.get(&listen).copied()
    }
}
