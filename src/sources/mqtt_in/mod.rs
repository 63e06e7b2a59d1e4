//! MQTT ingest: JSON payloads from subscribed topics, acknowledged to the
//! broker once committed.

pub mod component;
pub mod config;
mod source;

pub use source::spawn;
