//! Commands over MQTT (issue 12): writes of device tags and alarm
//! acknowledgements asked for by publishing a JSON command, each executed
//! at most once per command id and answered on a result topic.
//!
//! ```text
//! broker ─publish (QoS 1)─► run (one connection) ─► handle: topic → payload → allow → token
//!        ◄─PUBACK (same connection, after the id is on disk)   → store (seen? answer again)
//!                                                              → age (expired?) → store `pending`
//!        ◄─response (QoS 1)──── job: Actuators::write / AlarmAcks::acknowledge → store `done`
//! ```
//!
//! - [`config`]: `[commands]`; [`topic`], [`payload`]: the pure parts
//!   (topics and targets, command and response JSON).
//! - [`store`]: the ids seen, in `{data_dir}/commands.sqlite`.
//! - [`handle`], [`run`], [`component`]: the daemon.
//!
//! Invariants (each module states its own in detail): a command id is
//! executed at most once, whatever is redelivered or restarted (recorded
//! before the write, acknowledged after the record; a command left pending
//! by a crash is answered `unknown`, never executed again); every command is
//! answered (`ok`, `refused`, `failed`, `unknown`), a malformed one too,
//! never with a panic; every refusal is a `security.command_refused` event
//! and, for a write, an audit line (`write.audit`); writes go only through
//! the actuator seam, which checks the tag's allow-list and limits.

pub mod component;
pub mod config;
pub mod handle;
pub mod payload;
pub mod run;
pub mod store;
pub mod topic;

pub use config::CommandsConfig;
