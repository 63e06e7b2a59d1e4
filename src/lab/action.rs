//! A fault's kind and parameters turned into what its target's owner takes:
//! a simulator fault, a proxy toxic, an attack, or a gateway fault. The
//! `[[fault]]` table minus the lab's own keys (`at`, `duration`, `target`,
//! `expect`) is deserialized into the target's type with serde (tagged by
//! `kind`, unknown parameters refused).

use serde::Deserialize;

use super::scenario::Target;
use crate::proxy::Toxic;
use crate::sim::{Attack, SimFault};

/// What a fault does, by target.
#[derive(Debug, Clone)]
pub enum Action {
    /// A simulator fault on a station or a tag (`Sim::inject`).
    Sim(SimFault),
    /// A toxic on a proxy (`Proxy::set`).
    Proxy(Toxic),
    /// An attack from a second Modbus client (`sim::attack`).
    Attack(Attack),
    /// A fault of the gateway process or its host.
    Gateway(GatewayFault),
}

/// Faults of the gateway process and its host (`target = "gateway"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GatewayFault {
    /// `kill -9` of the gateway; it is started again after the fault's `duration` (default 2 s).
    Kill,
    /// The buffer behaves as on ENOSPC (`PUT /api/lab/disk_full`) for the fault's duration.
    DiskFull,
    /// The gateway's clock is offset by `offset_s` seconds (`PUT /api/lab/clock`), 0 when cleared.
    ClockJump {
        /// Seconds, negative: back in time (e.g. -63072000 for two years back).
        offset_s: i64,
    },
}

impl Action {
    /// The kind and parameters of a fault on `target` (`t` still holds `kind`).
    pub fn parse(target: &Target, t: toml::Table) -> Result<Action, String> {
        let msg = |e: toml::de::Error| e.message().trim_end().to_string();
        let v = toml::Value::Table(t);
        match target {
            Target::Sim { .. } => v.try_into().map(Action::Sim).map_err(msg),
            Target::Proxy(_) => v.try_into().map(Action::Proxy).map_err(msg),
            Target::Attack(_) => v.try_into().map(Action::Attack).map_err(msg),
            Target::Gateway => v.try_into().map(Action::Gateway).map_err(msg),
        }
    }
}
