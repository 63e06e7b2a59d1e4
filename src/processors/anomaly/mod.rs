//! Streaming anomaly detection at the edge (issue 15).
//!
//! ```text
//! committed samples ─► rows (latest value per watched tag, time-aligned)
//!                   ─► features (level or difference, EWMA)
//!                   ─► fit on the first rows │ score: PCA T² + Q, or rolling z
//!                   ─► score, flag (score > threshold), confidence
//! ```
//!
//! - [`config`]: the `[[detector]]` tables.
//! - [`rows`], [`features`], [`pca`], [`zscore`], [`detector`]: the pure core.
//! - [`component`]: the component contract (parse, describe, spawn).
//! - [`run`]: the live detectors in the daemon (committed samples in,
//!   `_relais` samples out).
//! - [`metrics`], [`evaluate`]: SKAB-style evaluation of labelled CSV files
//!   (`relais detect evaluate`), through the same rows and detector.
//!
//! Invariants: the core is pure (no I/O, no clock); one row costs O(d k)
//! for PCA and O(d) for the z-score, without allocation in the PCA path;
//! nothing is scored before its model is fitted; a missing input is
//! reported, never replaced by a made-up value.

pub mod command;
pub mod component;
pub mod config;
pub mod detector;
pub mod evaluate;
pub mod features;
pub mod metrics;
pub mod pca;
pub mod rows;
pub mod run;
pub mod zscore;

pub use config::{DetectorConfig, FitPolicy, Method};
pub use detector::{Calibration, Detector, Output, Step};
