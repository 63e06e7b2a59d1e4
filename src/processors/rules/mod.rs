//! Rules and alarms (issue 12): conditions on tags, evaluated on the
//! committed samples, raising and clearing alarms and asking for writes.
//!
//! ```text
//! committed samples ─► engine (per rule: leaves with O(1) state, condition tree,
//!   (tap, seq order)           on-delay / off-delay on the engine clock)
//!                    ─► decisions: alarm transitions (alarm state machine), writes
//!                    ─► events `alarm` / `rule.write` into the ring ─► buffer ─► sinks
//! ```
//!
//! - [`cond`], [`config`]: the `[[rule]]` tables (structured TOML conditions).
//! - [`leaf`], [`alarm`], [`engine`]: the pure core (no I/O, no clock).
//! - [`record`]: decisions as events and text lines.
//! - [`component`], [`run`]: the daemon (the committed-data tap in, events out).
//! - [`command`]: `relais rules test --replay FILE.csv`, through the same engine.
//!
//! Invariants: decisions depend only on the samples and the instants given to
//! the engine (a replay is deterministic); an input without a good value
//! never raises or clears anything (three-valued logic, see [`leaf::Truth`]);
//! writes go only through the actuator seam ([`crate::component::Actuators`]),
//! whose owner checks, executes and audits them.

pub mod alarm;
pub mod command;
pub mod component;
pub mod cond;
pub mod config;
pub mod engine;
pub mod leaf;
pub mod record;
pub mod run;

#[cfg(test)]
mod engine_tests;

pub use config::RuleConfig;
pub use engine::{Decision, Engine};
