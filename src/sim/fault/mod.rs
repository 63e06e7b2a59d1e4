//! Fault injection at run time: [`SimFault`] on a station or on one of its
//! tags, active from `Sim::inject` until `Sim::clear` (see
//! `src/sim/README.md`, "Fault injection", for what a gateway sees and what
//! should detect each kind).
//!
//! - value faults (stuck, drift, noise, spike, out_of_range, counter_reset,
//!   false_value) and byte_order change what is *served* (Modbus registers
//!   and OPC UA values alike): the station's own state (its tables, its
//!   signals, what clients wrote) is unchanged, so clearing a fault serves
//!   the live value again at once ([`values`], applied by the station);
//! - request faults (dropout, slow, exception) act on the Modbus requests
//!   that touch the station or the tag's registers, on top of the
//!   station's configured [`super::config::Faults`];
//! - bad_status and opcua_restart act on the OPC UA server.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::model::Value;

pub mod values;

/// A fault on a station or on one of its tags. Serde: tagged by `kind`
/// (snake_case), durations as humantime strings (`"250ms"`), unknown
/// fields refused; the lab parses it from a scenario's `[[fault]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SimFault {
    /// The served value is frozen at what was served when injected.
    Stuck,
    /// The served value is the live value + `per_second` × seconds since
    /// injection (engineering units per second).
    Drift {
        /// Engineering units per second (may be negative).
        per_second: f64,
    },
    /// The live value + a uniform offset in ±`amplitude`, drawn once per
    /// tick per tag from `fastrand::Rng::with_seed(seed)`: same seed, same
    /// sequence.
    Noise {
        /// Half-width of the uniform noise, engineering units.
        amplitude: f64,
    },
    /// `value` is served for the tick during which it is injected (one
    /// read with `lockstep`), then the live value again.
    Spike {
        /// Engineering value of the spike.
        value: f64,
    },
    /// A constant `value` is served (meant outside the tag's range).
    OutOfRange {
        /// Engineering value served.
        value: f64,
    },
    /// No answer to the requests that touch the station (or the tag's
    /// registers): clients time out.
    Dropout,
    /// Answers after `latency` + a uniform share of `jitter` (seeded).
    Slow {
        /// Added before every answer.
        #[serde(deserialize_with = "de_duration")]
        latency: Duration,
        /// Up to this much more, uniform, drawn per request from the seed.
        #[serde(default, deserialize_with = "de_duration")]
        jitter: Duration,
    },
    /// Modbus exception `code` (1..=255; 4 = server device failure) to every
    /// request that touches the station (or the tag's registers).
    Exception {
        /// The exception code.
        code: u8,
    },
    /// 32- and 64-bit register values served with their word order reversed
    /// (a firmware update that changed the word order); 16-bit ones and bits
    /// are unchanged.
    ByteOrder,
    /// A counter starts again from 0 at injection and keeps counting (the
    /// live value minus its value at injection, never below 0).
    CounterReset,
    /// Responses carry `value` while the station's own state is unchanged
    /// (response injection by a man in the middle).
    FalseValue {
        /// Engineering value served.
        value: f64,
    },
    /// OPC UA nodes of the station (or the tag) report BadSensorFailure
    /// (0x808B0000) with no value; Modbus is unchanged.
    BadStatus,
    /// The OPC UA server stops at injection and comes back after `down`,
    /// with its NamespaceArray reordered when `reorder_namespaces` (a padding
    /// namespace comes and goes before ours, so `ns=<index>` NodeIds move and
    /// `nsu=` ones still resolve). The whole server restarts, whatever the
    /// station.
    OpcuaRestart {
        /// Renumber our namespace when it comes back.
        #[serde(default)]
        reorder_namespaces: bool,
        /// How long the server stays down (default 2 s).
        #[serde(default = "default_down", deserialize_with = "de_duration")]
        down: Duration,
    },
}

fn default_down() -> Duration {
    Duration::from_secs(2)
}

/// A humantime duration (`"250ms"`, `"2s"`).
fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

/// The handle of an injected fault, for `Sim::clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);

/// OPC UA BadSensorFailure (OPC UA Part 4 §7.34, StatusCodes.csv).
pub const BAD_SENSOR_FAILURE: u32 = 0x808B_0000;

impl SimFault {
    /// The kind, as spelled in a scenario (`stuck`, `out_of_range`…).
    pub fn kind(&self) -> &'static str {
        match self {
            SimFault::Stuck => "stuck",
            SimFault::Drift { .. } => "drift",
            SimFault::Noise { .. } => "noise",
            SimFault::Spike { .. } => "spike",
            SimFault::OutOfRange { .. } => "out_of_range",
            SimFault::Dropout => "dropout",
            SimFault::Slow { .. } => "slow",
            SimFault::Exception { .. } => "exception",
            SimFault::ByteOrder => "byte_order",
            SimFault::CounterReset => "counter_reset",
            SimFault::FalseValue { .. } => "false_value",
            SimFault::BadStatus => "bad_status",
            SimFault::OpcuaRestart { .. } => "opcua_restart",
        }
    }

    /// Refuses parameters that cannot be served: non-finite numbers, a
    /// negative amplitude, exception code 0.
    pub fn validate(&self) -> Result<(), String> {
        let finite =
            |name: &str, x: f64| if x.is_finite() { Ok(()) } else { Err(format!("{}: {name} must be a finite number", self.kind())) };
        match self {
            SimFault::Drift { per_second } => finite("per_second", *per_second),
            SimFault::Noise { amplitude } if *amplitude < 0.0 => Err("noise: amplitude must be 0 or more".into()),
            SimFault::Noise { amplitude } => finite("amplitude", *amplitude),
            SimFault::Spike { value } | SimFault::OutOfRange { value } | SimFault::FalseValue { value } => finite("value", *value),
            SimFault::Exception { code: 0 } => Err("exception: code must be 1..=255".into()),
            _ => Ok(()),
        }
    }

    /// True for the faults that change served values.
    pub(crate) fn is_value(&self) -> bool {
        matches!(
            self,
            SimFault::Stuck
                | SimFault::Drift { .. }
                | SimFault::Noise { .. }
                | SimFault::Spike { .. }
                | SimFault::OutOfRange { .. }
                | SimFault::CounterReset
                | SimFault::FalseValue { .. }
        )
    }
}

/// A fault active on a station.
pub(crate) struct Active {
    /// Its handle.
    pub id: FaultId,
    /// The tag (index in the station's tags), or the whole station.
    pub tag: Option<usize>,
    /// What it does.
    pub fault: SimFault,
    /// When it was injected.
    pub started: Instant,
    /// The station's tick when it was injected (a spike lasts that tick).
    pub start_tick: u64,
    /// Seeded generator of noise and jitter.
    pub rng: fastrand::Rng,
    /// Per tag: the served value at injection (stuck) or the live one
    /// (counter_reset's base).
    pub captured: Vec<Value>,
    /// Per tag: the noise offset of the current tick.
    pub noise: Vec<f64>,
    /// The tick `noise` was drawn for.
    pub noise_tick: Option<u64>,
}

impl Active {
    /// True when it acts on tag `t`.
    pub fn applies(&self, t: usize) -> bool {
        self.tag.is_none_or(|x| x == t)
    }

    /// Draws the noise of tick `tick` (once per tick, in tag order).
    pub fn draw_noise(&mut self, tick: u64, tags: usize) {
        let SimFault::Noise { amplitude } = self.fault else { return };
        if self.noise_tick == Some(tick) {
            return;
        }
        self.noise_tick = Some(tick);
        self.noise = (0..tags).map(|_| (self.rng.f64() * 2.0 - 1.0) * amplitude).collect();
    }
}

/// What the request faults make of one Modbus request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// No answer.
    pub silent: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer this exception code instead.
    pub exception: Option<u8>,
}

#[cfg(test)]
mod tests;
