//! The line simulator: Modbus TCP stations serving signal models, CSV replays
//! (e.g. the SKAB pump data) and injected faults. See `src/sim/README.md`.
//!
//! - [`signal`]: the signal models (pure).
//! - [`config`]: `[[station]]` configuration.
//! - [`station`]: one station's register tables, signals and faults.
//! - [`fault`]: faults injected at run time ([`SimFault`], [`Sim::inject`]).
//! - [`server`]: the tokio-modbus service answering requests.
//! - [`logs`]: a library ERROR turned into a DEBUG line (bare OPC UA connections).
//! - [`front`]: what is answered in front of tokio-modbus (exception 01 for
//!   unimplemented function codes, 03 for malformed requests), TCP front.
//! - [`attack`]: the intrusion pack (a second Modbus TCP client).
//! - [`ids`]: simulator-side intrusion detection ([`SimDetection`]).
//! - [`ident`]: FC43 / MEI 0x0E Read Device Identification (pure).
//! - [`rtu`]: the Modbus RTU lines on pseudo-terminals (framing in front of
//!   tokio-modbus, restart after a failure).
//! - [`opcua`]: the OPC UA server (async-opcua) serving the same stations.

pub mod attack;
pub mod config;
pub mod fault;
pub mod front;
pub mod ident;
pub mod ids;
mod inject;
pub mod logs;
pub mod opcua;
pub mod rtu;
pub mod server;
pub mod signal;
pub mod station;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::Server;

pub use attack::{Attack, AttackReport, attack};
use config::Line;
pub use config::SimConfig;
pub use fault::{FaultId, SimFault};
pub use ids::{IdsThresholds, SimDetection};
use server::SimService;
pub use station::Station;

/// A running simulator. Dropping it stops every listener and closes every
/// client connection (like a device that is switched off).
pub struct Sim {
    stations: Vec<Arc<Station>>,
    addrs: HashMap<SocketAddr, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    /// RTU lines: their links (removed on drop) and counters.
    lines: Vec<(PathBuf, Arc<rtu::LineStats>)>,
    opcua: Option<opcua::OpcUaSim>,
    /// Faults injected at run time (`inject.rs`).
    injected: inject::Injected,
    /// Intrusion detections of every TCP listener.
    detections: tokio::sync::broadcast::Sender<SimDetection>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for (link, _) in &self.lines {
            let _ = std::fs::remove_file(link);
        }
    }
}

impl Sim {
    /// Binds every listen address, opens every serial line, and starts the
    /// stations' clocks.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Sim> {
        let mut groups: Vec<(Line, HashMap<u8, Arc<Station>>)> = Vec::new();
        let mut stations = Vec::new();
        for sc in cfg.stations {
            let st = Arc::new(Station::new(sc));
            stations.push(st.clone());
            match groups.iter_mut().find(|(l, _)| *l == st.cfg.line) {
                Some((_, m)) => {
                    m.insert(st.cfg.unit_id, st.clone());
                }
                None => groups.push((st.cfg.line.clone(), HashMap::from([(st.cfg.unit_id, st.clone())]))),
            }
        }
        let mut tasks = Vec::new();
        let mut addrs = HashMap::new();
        let mut lines = Vec::new();
        let (detections, _) = tokio::sync::broadcast::channel(256);
        for (line, map) in groups {
            match line {
                Line::None => {}
                Line::Tcp(addr) => {
                    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("simulator cannot listen on {addr}: {e}"))?;
                    let local = listener.local_addr()?;
                    addrs.insert(addr, local);
                    let names: HashMap<u8, String> = map.iter().map(|(u, s)| (*u, s.cfg.name.clone())).collect();
                    let first =
                        stations.iter().find(|s| map.values().any(|m| Arc::ptr_eq(m, s))).map(|s| s.cfg.name.clone()).unwrap_or_default();
                    let watch = ids::Watch::new(detections.clone(), cfg.expected_clients.clone(), names, first);
                    let service = SimService { stations: Arc::new(map), serial: false, watch: Some(Arc::new(watch)) };
                    tasks.push(tokio::spawn(async move {
                        let server = Server::new(listener);
                        let on_connected = |stream, peer| {
                            let service = service.clone();
                            let _ = peer;
                            service.stations.values().for_each(|s| s.count_connection());
                            async move { std::io::Result::Ok(Some((service.clone(), front::tcp_front(stream, service)))) }
                        };
                        if let Err(e) = server.serve(&on_connected, |e| tracing::debug!(error = %e, "simulator connection ended")).await {
                            tracing::error!(listen = %local, error = %e, "simulator listener stopped");
                        }
                    }));
                    tracing::info!(listen = %local, "simulator listening");
                }
                Line::Serial(link) => {
                    let (master, slave, name) = rtu::open_pty(&link)?;
                    let stats = Arc::new(rtu::LineStats::default());
                    tasks.push(tokio::spawn(rtu::run(link.clone(), Arc::new(map), (master, slave), stats.clone())));
                    tracing::info!(serial = %link.display(), pty = %name, "simulator serving Modbus RTU");
                    lines.push((link, stats));
                }
            }
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
        let opcua = match cfg.opcua {
            Some(o) => Some(opcua::OpcUaSim::start(o, stations.clone()).await?),
            None => None,
        };
        Ok(Sim { stations, addrs, tasks, lines, opcua, injected: inject::Injected::default(), detections })
    }

    /// The stations, in config order.
    pub fn stations(&self) -> &[Arc<Station>] {
        &self.stations
    }

    /// The station named `name`.
    pub fn station(&self, name: &str) -> Option<&Arc<Station>> {
        self.stations.iter().find(|s| s.cfg.name == name)
    }

    /// The OPC UA server, when configured.
    pub fn opcua(&self) -> Option<&opcua::OpcUaSim> {
        self.opcua.as_ref()
    }

    /// Counters of the RTU line linked at `serial` (the configured path).
    pub fn rtu_stats(&self, serial: &Path) -> Option<&rtu::LineStats> {
        self.lines.iter().find(|(l, _)| l == serial).map(|(_, s)| s.as_ref())
    }

    /// The address actually bound for configured `listen` (differs for port 0).
    pub fn local_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.addrs.get(&listen).copied()
    }
}
