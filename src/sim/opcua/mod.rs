//! The simulator's OPC UA server (async-opcua): the stations' signals as
//! variables, for students without a PLC and for the OPC UA source's tests.
//!
//! Address space (namespace `urn:relais:sim` unless configured):
//!
//! ```text
//! Objects
//! └─ <station>            ns=<sim>;s=<station>          Object
//!    ├─ <tag>             ns=<sim>;s=<station>.<tag>    Variable, typed after the tag (see `nodes`)
//!    └─ setpoint          ns=<sim>;s=<station>.setpoint Variable, Double, writable
//! ```
//!
//! Values are the signals' engineering values (before Modbus scaling), with
//! the station's clock as SourceTimestamp. A tag may be given a fixed
//! StatusCode (`opcua_status`): a bad one is served with no value (field case
//! B14), a good or uncertain one with the value (field case B15).
//!
//! `restart_after` stops the server after that long and starts it again
//! `down_for` later with one more namespace registered before ours, so our
//! namespace index changes, as after a PLC firmware update (field case B16).
//! Injected faults (`Sim::inject`): served values and bad_status come from
//! the stations' overlays; `opcua_restart` is [`OpcUaSim::restart_in`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opcua::server::ServerHandle;
use opcua::server::node_manager::memory::SimpleNodeManager;
use opcua::types::{DataValue, DateTime, NodeId, Variant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Station;
use nodes::{data_value, node_of};

mod endpoints;
mod nodes;

pub use endpoints::OpcUaSimConfig;
pub(crate) use nodes::SETPOINT;

struct Running {
    handle: ServerHandle,
    nm: Arc<SimpleNodeManager>,
    ns: u16,
    task: JoinHandle<()>,
}

struct Shared {
    cfg: OpcUaSimConfig,
    stations: Vec<Arc<Station>>,
    addr: SocketAddr,
    current: Mutex<Option<Running>>,
    generation: AtomicU32,
    /// Padding namespaces registered before ours: bumped by every restart
    /// that renumbers (the builder pads by its parity).
    pad: AtomicU32,
    max_sessions: AtomicU32,
    /// Sessions created by earlier server generations.
    sessions_before: AtomicU64,
    /// Status overrides by (station, tag) index.
    status: Mutex<std::collections::HashMap<(usize, usize), u32>>,
}

/// A running simulator OPC UA server.
pub struct OpcUaSim {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for OpcUaSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(mut g) = self.shared.current.lock()
            && let Some(r) = g.take()
        {
            r.handle.cancel();
            r.task.abort();
        }
    }
}

impl OpcUaSim {
    /// Binds the listen address and starts serving `stations`.
    pub async fn start(cfg: OpcUaSimConfig, stations: Vec<Arc<Station>>) -> anyhow::Result<OpcUaSim> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("simulator cannot listen for OPC UA on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let mut status = std::collections::HashMap::new();
        for (s, st) in stations.iter().enumerate() {
            for (t, tag) in st.cfg.tags.iter().enumerate() {
                if let Some(code) = tag.opcua_status {
                    status.insert((s, t), code);
                }
            }
        }
        let shared = Arc::new(Shared {
            cfg,
            stations,
            addr,
            current: Mutex::new(None),
            generation: AtomicU32::new(0),
            pad: AtomicU32::new(0),
            max_sessions: AtomicU32::new(0),
            sessions_before: AtomicU64::new(0),
            status: Mutex::new(status),
        });
        Shared::launch(&shared, listener)?;
        let mut tasks = Vec::new();
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut iv = tokio::time::interval(s.cfg.scan);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut seen: Vec<u64> = vec![u64::MAX; s.stations.len()];
            let mut last_gen = u32::MAX;
            loop {
                iv.tick().await;
                let g = s.generation.load(Ordering::Relaxed);
                if g != last_gen {
                    seen.iter_mut().for_each(|v| *v = u64::MAX);
                    last_gen = g;
                }
                s.publish(&mut seen);
                s.count_sessions();
            }
        }));
        if let Some(after) = shared.cfg.restart_after {
            let s = shared.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(after).await;
                    tracing::info!(down_for = ?s.cfg.down_for, "simulator: restarting the OPC UA server (fault injection)");
                    s.stop();
                    tokio::time::sleep(s.cfg.down_for).await;
                    if let Err(e) = s.relaunch(true).await {
                        tracing::error!(error = %e, "simulator: OPC UA server did not come back");
                    }
                }
            }));
        }
        tracing::info!(endpoint = %format!("opc.tcp://{addr}/"), namespace = %shared.cfg.namespace_uri, "simulator serving OPC UA");
        Ok(OpcUaSim { shared, tasks })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `opc.tcp://<addr>/`.
    pub fn endpoint(&self) -> String {
        format!("opc.tcp://{}/", self.shared.addr)
    }

    /// The namespace index of the stations' nodes in the running server.
    pub fn namespace_index(&self) -> Option<u16> {
        self.shared.current.lock().ok()?.as_ref().map(|r| r.ns)
    }

    /// Sessions open now (0 while stopped).
    pub fn session_count(&self) -> u32 {
        self.shared.count_sessions()
    }

    /// Most sessions open at once, sampled every scan and on every call.
    pub fn max_sessions_seen(&self) -> u32 {
        self.shared.count_sessions();
        self.shared.max_sessions.load(Ordering::Relaxed)
    }

    /// Sessions created since start, over all restarts.
    pub fn sessions_created(&self) -> u64 {
        let now = self.shared.current.lock().ok().and_then(|g| g.as_ref().map(|r| counter(&r.handle, false) as u64));
        self.shared.sessions_before.load(Ordering::Relaxed) + now.unwrap_or(0)
    }

    /// Stops the server (clients see the connection drop).
    pub fn stop(&self) {
        self.shared.stop();
    }

    /// Starts the server again after [`OpcUaSim::stop`], with one more
    /// namespace registered before ours (so our index changes).
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.shared.stop();
        self.shared.relaunch(true).await
    }

    /// True while the server is serving (not stopped).
    pub fn is_running(&self) -> bool {
        self.shared.current.lock().is_ok_and(|g| g.is_some())
    }

    /// Fault `opcua_restart`: stops the server now and starts it again
    /// after `down`, with our namespace renumbered when `reorder`. The
    /// returned task is the pending return (aborting it leaves the server
    /// down: then [`OpcUaSim::come_back`]).
    pub fn restart_in(&self, down: Duration, reorder: bool) -> JoinHandle<()> {
        tracing::info!(?down, reorder, "simulator: OPC UA server stopped (fault injection)");
        self.shared.stop();
        let s = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(down).await;
            if let Err(e) = s.relaunch(reorder).await {
                tracing::error!(error = %e, "simulator: OPC UA server did not come back");
            }
        })
    }

    /// Starts the server again now if it is stopped (a cleared
    /// `opcua_restart`), renumbering our namespace when `reorder`.
    pub fn come_back(&self, reorder: bool) {
        if self.is_running() {
            return;
        }
        let s = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = s.relaunch(reorder).await {
                tracing::error!(error = %e, "simulator: OPC UA server did not come back");
            }
        });
    }

    /// Serves tag `tag` of `station` with StatusCode `code` and no value
    /// (`None`: back to its signal).
    pub fn set_status(&self, station: &str, tag: &str, code: Option<u32>) -> anyhow::Result<()> {
        let (s, t) = self.shared.index(station, tag)?;
        let mut g = self.shared.status.lock().map_err(|_| anyhow::anyhow!("status lock"))?;
        match code {
            Some(c) => g.insert((s, t), c),
            None => g.remove(&(s, t)),
        };
        drop(g);
        // Publish now, so the change does not wait for the next tick.
        self.shared.publish_one(s, t);
        Ok(())
    }

    /// The server's certificate (DER), for clients' trust lists.
    pub fn certificate_path(&self) -> PathBuf {
        self.shared.cfg.pki_dir.join("own/cert.der")
    }

    /// The value of a node as a client would read it (for tests of writes).
    pub fn read(&self, station: &str, tag: &str) -> Option<DataValue> {
        let g = self.shared.current.lock().ok()?;
        let r = g.as_ref()?;
        let space = r.nm.address_space().read();
        let node = space.find(&node_of(r.ns, station, tag))?;
        match node {
            opcua::server::address_space::NodeType::Variable(v) => Some(v.value(
                opcua::types::TimestampsToReturn::Both,
                &opcua::types::NumericRange::None,
                &opcua::types::DataEncoding::Binary,
                0.0,
            )),
            _ => None,
        }
    }
}

impl Shared {
    fn index(&self, station: &str, tag: &str) -> anyhow::Result<(usize, usize)> {
        let s = self.stations.iter().position(|s| s.cfg.name == station).ok_or_else(|| anyhow::anyhow!("no station {station:?}"))?;
        let t = self.stations[s]
            .cfg
            .tags
            .iter()
            .position(|t| t.name == tag)
            .ok_or_else(|| anyhow::anyhow!("station {station:?} has no tag {tag:?}"))?;
        Ok((s, t))
    }

    fn count_sessions(&self) -> u32 {
        let Ok(g) = self.current.lock() else { return 0 };
        let Some(r) = g.as_ref() else { return 0 };
        let n = counter(&r.handle, true);
        self.max_sessions.fetch_max(n, Ordering::Relaxed);
        n
    }

    fn stop(&self) {
        if let Ok(mut g) = self.current.lock()
            && let Some(r) = g.take()
        {
            self.max_sessions.fetch_max(counter(&r.handle, true), Ordering::Relaxed);
            self.sessions_before.fetch_add(counter(&r.handle, false) as u64, Ordering::Relaxed);
            r.handle.cancel();
            r.task.abort();
        }
    }

    async fn relaunch(self: &Arc<Self>, reorder: bool) -> anyhow::Result<()> {
        if self.current.lock().is_ok_and(|g| g.is_some()) {
            return Ok(());
        }
        if reorder {
            self.pad.fetch_add(1, Ordering::Relaxed);
        }
        // The port is free again once the old listener is dropped; retry briefly.
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.generation.fetch_add(1, Ordering::Relaxed);
                    return Shared::launch(self, l);
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(anyhow::anyhow!("cannot listen on {} again: {}", self.addr, last.map_or(String::new(), |e| e.to_string())))
    }

    /// Builds and starts one server generation on `listener`.
    fn launch(self: &Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        let b = endpoints::builder(cfg, self.addr, self.pad.load(Ordering::Relaxed));
        let (server, handle) = b.build().map_err(|e| anyhow::anyhow!("simulator OPC UA server: {e}"))?;
        let nm = handle
            .node_managers()
            .get_by_name::<SimpleNodeManager>("relais-sim")
            .ok_or_else(|| anyhow::anyhow!("simulator OPC UA node manager missing"))?;
        let ns = handle.get_namespace_index(&cfg.namespace_uri).ok_or_else(|| anyhow::anyhow!("simulator namespace missing"))?;
        {
            let mut space = nm.address_space().write();
            nodes::build(&mut space, ns, &self.stations);
        }
        let task = tokio::spawn(async move {
            if let Err(e) = server.run_with(listener).await {
                tracing::error!(error = %e, "simulator OPC UA server stopped");
            }
        });
        if let Ok(mut g) = self.current.lock() {
            *g = Some(Running { handle, nm, ns, task });
        }
        Ok(())
    }

    /// Copies changed station values into the address space (notifying
    /// subscriptions).
    fn publish(&self, seen: &mut [u64]) {
        let Ok(g) = self.current.lock() else { return };
        let Some(r) = g.as_ref() else { return };
        let status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        let now = DateTime::now();
        let mut updates: Vec<(NodeId, DataValue)> = Vec::new();
        for (s, st) in self.stations.iter().enumerate() {
            let v = st.version();
            if v == seen[s] {
                continue;
            }
            seen[s] = v;
            for (t, (tag, value)) in st.cfg.tags.iter().zip(st.served_values().iter()).enumerate() {
                let code = st.fault_status(t).or_else(|| status.get(&(s, t)).copied());
                updates.push((node_of(r.ns, &st.cfg.name, &tag.name), data_value(tag, value, code, now)));
            }
        }
        if updates.is_empty() {
            return;
        }
        let _ = r.nm.set_values(r.handle.subscriptions(), updates.iter().map(|(id, dv)| (id, None, dv.clone())));
    }

    fn publish_one(&self, s: usize, t: usize) {
        let Ok(g) = self.current.lock() else { return };
        let Some(r) = g.as_ref() else { return };
        let st = &self.stations[s];
        let code = st.fault_status(t).or_else(|| self.status.lock().ok().and_then(|m| m.get(&(s, t)).copied()));
        let values = st.served_values();
        let dv = data_value(&st.cfg.tags[t], &values[t], code, DateTime::now());
        let _ = r.nm.set_value(r.handle.subscriptions(), &node_of(r.ns, &st.cfg.name, &st.cfg.tags[t].name), None, dv);
    }
}

/// CurrentSessionCount (`current`) or CumulatedSessionCount of the server's
/// diagnostics summary (OPC UA Part 5 §12.9).
fn counter(h: &ServerHandle, current: bool) -> u32 {
    use opcua::types::VariableId as V;
    let id = if current {
        V::Server_ServerDiagnostics_ServerDiagnosticsSummary_CurrentSessionCount
    } else {
        V::Server_ServerDiagnostics_ServerDiagnosticsSummary_CumulatedSessionCount
    };
    match h.info().diagnostics.summary.get(id).and_then(|dv| dv.value) {
        Some(Variant::UInt32(n)) => n,
        _ => 0,
    }
}
