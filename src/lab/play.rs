//! Injecting and clearing one fault: the simulator's fault switches, a proxy's
//! toxics, an attack task, or the gateway process and its lab switches.

use std::sync::Arc;
use std::time::Duration;

use super::action::{Action, GatewayFault, SimKind};
use super::gateway::GatewayProcess;
use super::scenario::{FaultSpec, Target};
use crate::sim::Sim;
use crate::sim::config::{ExceptionRange, Faults};
use crate::sources::modbus::types::Table;

/// What it takes to undo an injected fault.
pub enum Undo {
    /// Put the station's previous fault switches back.
    Station(Arc<crate::sim::Station>, Faults),
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
    /// The gateway.
    pub gateway: &'a mut GatewayProcess,
}

/// How long a `kill` keeps the gateway dead when the fault gives no `duration`.
pub const KILL_DEFAULT: Duration = Duration::from_secs(2);

/// Injects `f`; the error says why it could not be.
pub async fn inject(f: &FaultSpec, b: &mut Bench<'_>) -> Result<Undo, String> {
    match (&f.action, &f.target) {
        (Action::Sim(kind), Target::Sim { station, .. }) => {
            let sim = b.sim.ok_or("the scenario has no simulator (`sim`)")?;
            let st = sim.station(station).ok_or_else(|| format!("the simulator has no station {station:?}"))?.clone();
            let before = st.faults();
            let mut now = before.clone();
            match kind {
                SimKind::Dropout => now.silent = true,
                SimKind::Slow { latency } => now.delay = *latency,
                SimKind::Exception { code } => {
                    now.exceptions = [Table::Holding, Table::Input, Table::Coil, Table::DiscreteInput]
                        .into_iter()
                        .map(|table| ExceptionRange { table, start: 0, count: 65536, code: *code })
                        .collect();
                }
            }
            st.set_faults(now);
            Ok(Undo::Station(st, before))
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
        Undo::Station(st, before) => {
            st.set_faults(before);
            Ok(())
        }
        Undo::Restart => b.gateway.start().map_err(|e| format!("cannot start the gateway again: {e}")),
        Undo::DiskFull => b.gateway.put("/api/lab/disk_full", serde_json::json!({ "on": false })).await,
        Undo::Clock => b.gateway.put("/api/lab/clock", serde_json::json!({ "offset_s": 0 })).await,
    }
}
