//! The line simulator: Modbus TCP stations serving signal models, CSV replays
//! (e.g. the SKAB pump data) and injected faults. See `src/sim/README.md`.
//!
//! - [`signal`]: the signal models (pure).
//! - [`config`]: `[[station]]` configuration.
//! - [`station`]: one station's register tables, signals and faults.
//! - [`server`]: the tokio-modbus service answering requests.
//! - [`opcua`]: the OPC UA server (async-opcua) serving the same stations.

pub mod config;
pub mod opcua;
pub mod server;
pub mod signal;
pub mod station;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

use config::Line;
pub use config::SimConfig;
use server::SimService;
pub use station::Station;

/// A running simulator. Dropping it stops every listener and closes every
/// client connection (like a device that is switched off).
pub struct Sim {
    stations: Vec<Arc<Station>>,
    addrs: HashMap<SocketAddr, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    /// Serial ends kept open (and their links, removed on drop).
    ptys: Vec<(tokio_serial::SerialStream, std::path::PathBuf)>,
    opcua: Option<opcua::OpcUaSim>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for (_, link) in &self.ptys {
            let _ = std::fs::remove_file(link);
        }
    }
}

#[allow(unsafe_code)] // SAFETY: see the call sites
unsafe extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

#[allow(unsafe_code)]
fn unlock(fd: i32) {
    const LOCK_UN: i32 = 8;
    // SAFETY: flock only changes the advisory lock of a descriptor we own.
    unsafe {
        flock(fd, LOCK_UN);
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
        let mut ptys = Vec::new();
        for (line, map) in groups {
            match line {
                Line::None => {}
                Line::Tcp(addr) => {
                    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("simulator cannot listen on {addr}: {e}"))?;
                    let local = listener.local_addr()?;
                    addrs.insert(addr, local);
                    let service = SimService { stations: Arc::new(map), serial: false };
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
                Line::Serial(link) => {
                    use tokio_serial::SerialPort;
                    let (master, mut slave) = tokio_serial::SerialStream::pair()
                        .map_err(|e| anyhow::anyhow!("simulator cannot create a pseudo-terminal: {e}"))?;
                    let _ = slave.set_exclusive(false);
                    // Release our lock on the serial end so a client can open it
                    // exclusively, as it would a real port.
                    unlock(std::os::fd::AsRawFd::as_raw_fd(&slave));
                    let name = slave.name().ok_or_else(|| anyhow::anyhow!("the pseudo-terminal has no name"))?;
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(&name, &link)
                        .map_err(|e| anyhow::anyhow!("simulator cannot link {} to {name}: {e}", link.display()))?;
                    let service = SimService { stations: Arc::new(map), serial: true };
                    tasks.push(tokio::spawn(async move {
                        let server = tokio_modbus::server::rtu::Server::new(master);
                        if let Err(e) = server.serve_forever(service).await {
                            tracing::error!(error = %e, "simulator RTU line stopped");
                        }
                    }));
                    tracing::info!(serial = %link.display(), pty = %name, "simulator serving Modbus RTU");
                    ptys.push((slave, link));
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
        Ok(Sim { stations, addrs, tasks, ptys, opcua })
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

    /// The address actually bound for configured `listen` (differs for port 0).
    pub fn local_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.addrs.get(&listen).copied()
    }
}
