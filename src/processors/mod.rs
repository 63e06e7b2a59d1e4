//! Processors: components that read committed samples and derive new ones
//! (detectors, rules) or keep them (history).
//!
//! - [`anomaly`]: streaming multivariate anomaly detection (PCA T² + Q,
//!   rolling z-score) with a score, a flag and a confidence per row.
//! - [`rules`]: rules and alarms: conditions on tags (hysteresis, delays,
//!   edges, rate, quality, staleness), alarm state machine, write decisions.
//! - [`live`]: the last committed sample of every tag (interlocks, admin API).
//! - [`commands`]: writes and alarm acknowledgements by MQTT command,
//!   exactly once per command id.
//! - [`history`]: local history and per-minute / per-hour rollups
//!   (`[history]`, `relais query`).

pub mod anomaly;
pub mod commands;
pub mod history;
pub mod live;
pub mod rules;
