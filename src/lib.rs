//! relais: an industrial IoT data-acquisition gateway.
//!
//! # Data flow
//!
//! ```text
//!  sources::modbus  ─┐                                     ┌─► sinks::mqtt (sinks::driver: cursor,
//!  sources::opcua   ─┤                                     │    live/backlog lanes, reconnect)
//!  sources::file    ─┤ model::Sample ─► ingest ─► buffer ──┤
//!   (watch, tail,   │  model::Event    (ring,    (SQLite   ├─► buffer::tap ─► processors::anomaly, ::rules
//!    app::import)   │  (+ parse for    bounded   writer,   │   (committed     (detections back
//!  sources::http    ─┤   CSV/JSON)     in        cursors,  │    data, seq      into the ring; alarm events)
//!  sources::mqtt_in ─┘                 samples)  retention,│    order)
//!                                                quarantine)└─► buffer::Reader (relais dump,
//!                                                                quarantine, import progress)
//! ```
//!
//! Every source, sink and processor is one folder behind the contract of
//! [`component`] (type names, parse, description, claims, spawn);
//! `config` reads the TOML file into the components' own config types and
//! checks their claims for clashes; `app` wires them for `relais run` (with
//! `app::import` for `relais import`, `app::status`/`app::health` for
//! self-monitoring); `cli` is the command line; `sim` is the line simulator
//! (Modbus and OPC UA servers); `demo` runs the simulator and the gateway
//! together. `docs/new-component.md` shows how to add one.
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
//! | shared helpers | `util` (backoff, rate-limited log, supervised tasks, TLS client files), `diag` (the config reader: located errors, typed readers, error texts), `names`, `secret`, `console`, `memory` |
//! | counters | `telemetry` |
//! | the ring | `ingest` |
//! | the store | `buffer` (with its own `buffer::config`) |
//! | shared codecs | `parse` (CSV/JSON/timestamps), `mqtt` (client connection settings) |
//! | the contract | `component` (`Kind`, `Component`, claims) |
//! | components | `sources::*`, `sinks::*` (with the shared `sinks::driver`), `processors::*`, `sim`, `proxy` (the TCP fault proxy) |
//! | root config | `config` (composes the components' config types) |
//! | the fault bench | `lab` (scenarios, the timeline player, the report: it drives `sim`, `proxy` and a gateway) |
//! | wiring | `app`, `demo` |
//! | command line | `cli` |

// stdout through `outln!`/`out!` (crate::console): `println!` panics when the
// reader is gone (`relais check | head -1`, exit 101).
#![deny(clippy::print_stdout)]

pub mod app;
pub mod buffer;
pub mod cli;
pub mod component;
pub mod config;
pub mod console;
pub mod demo;
pub mod diag;
pub mod ingest;
pub mod lab;
pub mod memory;
pub mod model;
pub mod mqtt;
pub mod names;
pub mod parse;
pub mod processors;
pub mod proxy;
pub mod secret;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod units;
pub mod util;
