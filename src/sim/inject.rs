//! The fault injection API of a running simulator: [`Sim::inject`],
//! [`Sim::clear`], [`Sim::detections`] (see `fault` and `ids`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinHandle;

use super::Sim;
use super::fault::{FaultId, SimFault};
use super::ids::SimDetection;

/// Where an injected fault lives.
enum Home {
    /// On station index `0`.
    Station(usize),
    /// A pending OPC UA restart (its task) and whether it renumbers.
    Restart(JoinHandle<()>, bool),
}

/// The faults injected into a simulator.
#[derive(Default)]
pub(super) struct Injected {
    next: AtomicU64,
    homes: Mutex<HashMap<FaultId, Home>>,
}

impl Sim {
    /// Injects `fault` into station `station` (its config name), on its tag
    /// `tag` or, with `None`, on the whole station; `seed` drives noise and
    /// jitter (same seed, same values). Active until [`Sim::clear`].
    /// `bad_status` and `opcua_restart` need `[opcua]`; `opcua_restart`
    /// restarts the whole OPC UA server and must be called within a tokio
    /// runtime.
    ///
    /// Errors: an unknown station or tag, invalid parameters (see
    /// [`SimFault::validate`]), an OPC UA fault without `[opcua]`.
    pub fn inject(&self, station: &str, tag: Option<&str>, fault: SimFault, seed: u64) -> Result<FaultId, String> {
        fault.validate()?;
        let s = self.stations.iter().position(|s| s.cfg.name == station).ok_or_else(|| format!("no station {station:?}"))?;
        let st = &self.stations[s];
        let t = match tag {
            None => None,
            Some(name) => {
                Some(st.cfg.tags.iter().position(|t| t.name == name).ok_or_else(|| format!("station {station:?} has no tag {name:?}"))?)
            }
        };
        let needs_opcua = matches!(fault, SimFault::BadStatus | SimFault::OpcuaRestart { .. });
        if needs_opcua && self.opcua.is_none() {
            return Err(format!("{}: the simulator serves no OPC UA ([opcua] is missing)", fault.kind()));
        }
        let id = FaultId(self.injected.next.fetch_add(1, Ordering::Relaxed) + 1);
        let home = match fault {
            SimFault::OpcuaRestart { reorder_namespaces, down } => {
                let ua = self.opcua.as_ref().ok_or("no OPC UA server")?;
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err("opcua_restart: call it within a tokio runtime".into());
                }
                Home::Restart(ua.restart_in(down, reorder_namespaces), reorder_namespaces)
            }
            fault => {
                tracing::info!(station, tag = tag.unwrap_or("*"), kind = fault.kind(), id = id.0, "simulator: fault injected");
                st.inject(id, t, fault, seed);
                Home::Station(s)
            }
        };
        self.injected.homes.lock().map_err(|_| "fault registry lock poisoned".to_string())?.insert(id, home);
        Ok(id)
    }

    /// Ends fault `id`: the station serves its live values and answers
    /// normally again; a cleared `opcua_restart` still down comes back now.
    /// An unknown or already cleared id is ignored.
    pub fn clear(&self, id: FaultId) {
        let home = self.injected.homes.lock().ok().and_then(|mut g| g.remove(&id));
        match home {
            Some(Home::Station(s)) => {
                if let Some(st) = self.stations.get(s) {
                    st.clear_fault(id);
                    tracing::info!(station = %st.cfg.name, id = id.0, "simulator: fault cleared");
                }
            }
            Some(Home::Restart(task, reorder)) if !task.is_finished() => {
                task.abort();
                if let Some(ua) = &self.opcua {
                    ua.come_back(reorder);
                }
            }
            Some(Home::Restart(..)) | None => {}
        }
    }

    /// The intrusion detections of every Modbus TCP listener from now on
    /// (a `tokio::sync::broadcast` receiver: one that lags loses the oldest).
    pub fn detections(&self) -> tokio::sync::broadcast::Receiver<SimDetection> {
        self.detections.subscribe()
    }
}
