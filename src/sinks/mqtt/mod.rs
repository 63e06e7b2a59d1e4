//! MQTT sink (rumqttc): QoS 0/1, cursor moved on PUBACK, birth and Last Will,
//! TLS, live and replay lanes after an outage.
//!
//! - [`config`]: `[[sink]]` entries with `type = "mqtt"`.
//! - [`topic`]: topic templates (pure).
//! - [`encode`]: JSON payloads (pure).
//! - [`encoder`]: records → topics and payloads (pure).
//! - [`session`]: one MQTT connection: client, event loop task, TLS.
//! - [`sink`]: MQTT's side of the shared [`crate::sinks::driver`].
//! - [`sparkplug`]: Sparkplug B output (`format = "sparkplug"`).

pub mod component;
pub mod config;
pub mod encode;
pub mod encoder;
pub mod session;
pub mod sink;
pub mod sparkplug;
pub mod topic;
