//! relais: an industrial IoT data-acquisition gateway.
//!
//! Data flows one way through the modules:
//!
//! ```text
//! sources::modbus ─► model::Sample ─► ingest (lock-free ring) ─► buffer (SQLite writer,
//!                                                                 cursors, retention)
//!                                                                      │
//!                                          sinks::mqtt ◄── buffer::Reader (per-sink cursor)
//! ```
//!
//! `app` wires them for `relais run`; `sim` is the line simulator.

pub mod app;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod diag;
pub mod ingest;
pub mod memory;
pub mod model;
pub mod mqtt;
pub mod names;
pub mod parse;
pub mod processors;
pub mod secret;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod units;
