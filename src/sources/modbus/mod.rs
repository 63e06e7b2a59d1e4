//! Modbus TCP source (tokio-modbus).
//!
//! - [`types`], [`decode`], [`planner`]: pure: tables, data types, byte orders,
//!   the value codec and the read planner.
//! - [`config`]: `[[device]]` entries with `protocol = "modbus-tcp"`.
//! - [`lint`]: address plausibility warnings (Modicon look-alikes, odd 32/64-bit addresses); pure.
//! - [`link`]: one connection per endpoint, timeouts, reconnect with backoff.
//! - [`poller`]: the poll schedule of the devices behind one endpoint.
//! - [`probe`]: `relais probe modbus`.

pub mod component;
pub mod config;
pub mod decode;
pub mod link;
pub mod lint;
pub mod planner;
pub mod poller;
pub mod probe;
pub mod types;
