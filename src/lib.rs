//! relais: an industrial IoT data-acquisition gateway.
//!
//! # Data flow
//!
//! ```text
//!  sources::modbus  ─┐                                        ┌─► sinks::mqtt (per-sink cursor,
//!  sources::opcua   ─┤                                        │    live lane / backlog lane)
//!  sources::file    ─┤ model::Sample ─► ingest ─► buffer ─────┤
//!   (import, watch, │  (+ parse for   (bounded   (SQLite     └─► buffer::Reader (relais dump,
//!    tail)          │   CSV/JSON)      lock-free   writer,         quarantine, import progress)
//!  sources::http    ─┤                 ring)      cursors,
//!  sources::mqtt_in ─┘                            retention,
//!                                                 quarantine)
//! ```
//!
//! `config` reads the TOML file into the components' own config types;
//! `app` wires the components for `relais run` (and `app::import` for
//! `relais import`, `app::status`/`app::health` for self-monitoring); `cli`
//! is the command line; `sim` is the line simulator (Modbus and OPC UA
//! servers); `demo` runs the simulator and the gateway together.
//!
//! # Layers
//!
//! A module imports only its own layer or lower ones; components (one folder
//! each under `sources/`, `sinks/`, `processors/`) never import each other.
//! `tests/it/layering.rs` enforces this table.
//!
//! | layer | modules |
//! |---|---|
//! | pure data and helpers | `model`, `units` |
//! | shared helpers | `util` (backoff, rate-limited log, supervised tasks), `diag` (config reading), `names`, `secret`, `console`, `memory` |
//! | counters | `telemetry` |
//! | the ring | `ingest` |
//! | the store | `buffer` (with its own `buffer::config`) |
//! | shared codecs | `parse` (CSV/JSON/timestamps), `mqtt` (client connection settings) |
//! | components | `sources::*`, `sinks::*`, `processors::*`, `sim` |
//! | root config | `config` (composes the components' config types) |
//! | wiring | `app`, `demo` |
//! | command line | `cli` |

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
pub mod util;
