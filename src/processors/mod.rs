//! Processors: components that read committed samples and derive new ones
//! (detectors; later rules and history).
//!
//! - [`anomaly`]: streaming multivariate anomaly detection (PCA T² + Q,
//!   rolling z-score) with a score, a flag and a confidence per row.

pub mod anomaly;
