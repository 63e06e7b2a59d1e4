//! A fault's kind and parameters turned into what its target's owner takes:
//! a simulator fault, a proxy toxic, an attack, or a gateway fault. The
//! `[[fault]]` table minus the lab's own keys (`at`, `duration`, `target`,
//! `expect`) is deserialized into the target's type with serde (tagged by
//! `kind`, unknown parameters refused).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::scenario::Target;

/// What a fault does, by target.
#[derive(Debug, Clone)]
pub enum Action {
    /// A simulator fault on a station or a tag.
    Sim(SimKind),
    /// A toxic on a proxy (not in this build: see [`Action::parse`]).
    Proxy(toml::Table),
    /// An attack from a second Modbus client (not in this build: see [`Action::parse`]).
    Attack(toml::Table),
    /// A fault of the gateway process or its host.
    Gateway(GatewayFault),
}

/// Simulator faults this build can inject, through the station's fault switches
/// (`Station::set_faults`): the whole station only.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SimKind {
    /// The station never answers (clients time out).
    Dropout,
    /// Every answer waits `latency` first.
    Slow {
        /// Added before every answer (humantime, e.g. "300ms").
        #[serde(deserialize_with = "de_duration")]
        latency: Duration,
    },
    /// Every read of the station's holding registers is answered with exception `code`.
    Exception {
        /// Modbus exception code (2 illegal data address, 4 server device failure…).
        code: u8,
    },
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

/// A humantime duration string.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e} (write e.g. \"300ms\")")))
}

impl Action {
    /// The kind and parameters of a fault on `target` (`t` still holds `kind`).
    pub fn parse(target: &Target, t: toml::Table) -> Result<Action, String> {
        let msg = |e: toml::de::Error| e.message().trim_end().to_string();
        match target {
            Target::Sim { tag: Some(tag), .. } => {
                Err(format!("simulator faults on one tag ({tag:?}) are not in this build; target the whole station"))
            }
            Target::Sim { .. } => toml::Value::Table(t).try_into().map(Action::Sim).map_err(msg),
            Target::Proxy(_) => Err("proxy faults are not in this build (src/proxy is missing)".into()),
            Target::Attack(_) => Err("attacks are not in this build (the simulator's intrusion pack is missing)".into()),
            Target::Gateway => toml::Value::Table(t).try_into().map(Action::Gateway).map_err(msg),
        }
    }
}
