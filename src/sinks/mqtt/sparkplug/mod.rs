//! Sparkplug B output (`format = "sparkplug"` on an MQTT sink): relais is a
//! Sparkplug edge node (Eclipse Sparkplug 3.0). Every device becomes a
//! Sparkplug device, every tag a metric.
//!
//! - [`config`]: `group_id`, `edge_node_id`.
//! - [`proto`]: the payload messages (prost), from the schema of §6.4.1.
//! - [`metric`]: samples → metrics: types, quality, properties (pure).
//! - [`node`]: topics, `seq`, aliases, births and the payloads (pure).
//! - [`bdseq`]: the birth/death sequence number, stored before each CONNECT.
//! - [`encoder`]: records → drafts (pure).
//! - [`sink`]: the edge node on the shared [`crate::sinks::driver`].
//!
//! Messages, QoS and their order: see [`sink`]; the user's view:
//! `src/sinks/mqtt/README.md` ("Sparkplug B").

pub mod bdseq;
pub mod config;
pub mod encoder;
pub mod metric;
pub mod node;
pub mod proto;
pub mod sink;
