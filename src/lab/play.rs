//! Injecting and clearing one fault: the simulator's faults, a proxy's
//! toxics, an attack task, or the gateway process and its lab switches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::action::{Action, GatewayFault};
use super::gateway::GatewayProcess;
use super::scenario::{FaultSpec, Target};
use crate::proxy::{Proxy, ToxicId};
use crate::sim::config::Line;
use crate::sim::{FaultId, Sim};

/// What it takes to undo an injected fault.
pub enum Undo {
    /// `Sim::clear`.
    Sim(FaultId),
    /// `Proxy::clear` on the named proxy.
    Toxic(String, ToxicId),
    /// Stop the attack (it may have finished already).
    Attack(CancellationToken, JoinHandle<()>),
    /// Start the killed gateway again.
    Restart,
    /// Switch the buffer's disk-full simulation off.
    DiskFull,
    /// Set the gateway's clock offset back to 0.
    Clock,
}

/// The running parts a fault acts on.
pub struct Bench<'a> {
    /// The simulator.
    pub sim: Option<&'a Sim>,
    /// The proxies by name.
    pub proxies: &'a BTreeMap<String, Proxy>,
    /// The gateway.
    pub gateway: &'a mut GatewayProcess,
    /// The scenario's seed (each fault gets its own, derived from it and its index).
    pub seed: u64,
}

/// How long a `kill` keeps the gateway dead when the fault gives no `duration`.
pub const KILL_DEFAULT: Duration = Duration::from_secs(2);

/// The seed of fault `index`: the scenario's, mixed with the index (SplitMix64's constant).
pub fn fault_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The address an attack aims at: a proxy's listener, or a station's Modbus TCP address.
fn attack_addr(name: &str, b: &Bench<'_>) -> Result<SocketAddr, String> {
    if let Some(p) = b.proxies.get(name) {
        return Ok(p.local_addr());
    }
    let sim = b.sim.ok_or_else(|| format!("no proxy named {name:?} and no simulator"))?;
    let st = sim.station(name).ok_or_else(|| format!("no proxy or station named {name:?}"))?;
    match &st.cfg.line {
        Line::Tcp(a) => Ok(sim.local_addr(*a).unwrap_or(*a)),
        _ => Err(format!("station {name:?} is not served over Modbus TCP")),
    }
}

/// Injects `f`; the error says why it could not be.
pub async fn inject(f: &FaultSpec, b: &mut Bench<'_>) -> Result<Undo, String> {
    let seed = fault_seed(b.seed, f.index);
    match (&f.action, &f.target) {
        (Action::Sim(fault), Target::Sim { station, tag }) => {
            let sim = b.sim.ok_or("the scenario has no simulator (`sim`)")?;
            sim.inject(station, tag.as_deref(), fault.clone(), seed).map(Undo::Sim)
        }
        (Action::Proxy(toxic), Target::Proxy(name)) => {
            let p = b.proxies.get(name).ok_or_else(|| format!("no proxy named {name:?}"))?;
            Ok(Undo::Toxic(name.clone(), p.set(toxic.clone())))
        }
        (Action::Attack(a), Target::Attack(name)) => {
            let addr = attack_addr(name, b)?;
            let stop = CancellationToken::new();
            let (a, s, index) = (a.clone(), stop.clone(), f.index);
            let task = tokio::spawn(async move {
                match crate::sim::attack(addr, a, seed, s).await {
                    Ok(r) => tracing::info!(fault = index, requests = r.requests, answers = r.answers, "lab: attack finished"),
                    Err(e) => tracing::warn!(fault = index, error = %e, "lab: attack failed"),
                }
            });
            Ok(Undo::Attack(stop, task))
        }
        (Action::Gateway(g), _) => match g {
            GatewayFault::Kill => {
                b.gateway.kill9();
                Ok(Undo::Restart)
            }
            GatewayFault::DiskFull => {
                b.gateway.put("/api/lab/disk_full", serde_json::json!({ "on": true })).await?;
                Ok(Undo::DiskFull)
            }
            GatewayFault::ClockJump { offset_s } => {
                b.gateway.put("/api/lab/clock", serde_json::json!({ "offset_s": offset_s })).await?;
                Ok(Undo::Clock)
            }
        },
        (a, t) => Err(format!("{a:?} cannot act on {t}")),
    }
}

/// Clears a fault.
pub async fn clear(u: Undo, b: &mut Bench<'_>) -> Result<(), String> {
    match u {
        Undo::Sim(id) => {
            if let Some(sim) = b.sim {
                sim.clear(id);
            }
            Ok(())
        }
        Undo::Toxic(name, id) => {
            if let Some(p) = b.proxies.get(&name) {
                p.clear(id);
            }
            Ok(())
        }
        Undo::Attack(stop, task) => {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            Ok(())
        }
        Undo::Restart => b.gateway.start().map_err(|e| format!("cannot start the gateway again: {e}")),
        Undo::DiskFull => b.gateway.put("/api/lab/disk_full", serde_json::json!({ "on": false })).await,
        Undo::Clock => b.gateway.put("/api/lab/clock", serde_json::json!({ "offset_s": 0 })).await,
    }
}
