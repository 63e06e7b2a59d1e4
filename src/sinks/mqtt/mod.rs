//! MQTT sink (rumqttc): QoS 0/1, cursor moved on PUBACK, birth and Last Will,
//! TLS, live and replay lanes after an outage.
//!
//! - [`config`]: `[[sink]]` entries with `type = "mqtt"`.
//! - [`topic`]: topic templates (pure).
//! - [`encode`]: JSON payloads (pure).
//! - [`lanes`]: which rows to send next and how far the cursor may move (pure).
//! - [`session`]: one MQTT connection: client, event loop task, TLS.
//! - [`sink`]: the task that ties the buffer to the broker.

pub mod config;
pub mod encode;
pub mod lanes;
pub mod session;
pub mod sink;
pub mod topic;
