//! Modbus TCP source (tokio-modbus).
//!
//! - [`types`], [`decode`], [`planner`]: pure: tables, data types, byte orders,
//!   the value codec and the read planner.
//! - [`component`]: the component contract (type names, parse, describe, claims, spawn).
//! - [`config`]: `[[device]]` entries with `protocol = "modbus-tcp"`.
//! - [`lint`]: address plausibility warnings (Modicon look-alikes, odd 32/64-bit addresses); pure.
//! - [`frame`]: which bytes from the wire answer the outstanding request (pure).
//! - [`exchange`]: the pump between tokio-modbus and the wire, per request.
//! - [`answer`]: what a read gives (data or error) and the answer checks.
//! - [`link`]: one connection per endpoint: requests, timeouts, when to reopen.
//! - [`connect`]: opening and reopening a link's connection, backoff, RTU line clearing.
//! - [`degrade`]: degraded units, probes and their budget (pure).
//! - [`device`]: one polled device: plan, health, samples from a read.
//! - [`cycle`]: one poll cycle of a device's group.
//! - [`poller`]: the poll schedule of the devices behind one endpoint.
//! - [`state`]: device up/down/degraded/recovered: log lines and events.
//! - [`probe`]: `relais probe modbus`.

pub mod answer;
pub mod component;
pub mod config;
pub mod connect;
pub mod cycle;
pub mod decode;
pub mod degrade;
pub mod device;
pub mod exchange;
pub mod frame;
pub mod link;
pub mod link_write;
pub mod lint;
pub mod planner;
pub mod poller;
pub mod probe;
pub mod state;
pub mod types;
pub mod write;
pub mod write_plan;
