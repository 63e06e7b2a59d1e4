//! The fault bench (`relais lab run`): a scenario file plays faults on a
//! timeline against the simulated line, the network path, the uplink and the
//! host, while the gateway runs as a child process; the lab collects what the
//! gateway detected (its events on MQTT) and what the simulator detected, and
//! writes a graded report. See `src/lab/README.md` and `docs/lab-guide.md`.
//!
//! - [`scenario`]: the scenario file (TOML), strict, errors naming the fault and the key.
//! - [`action`]: a fault's kind and parameters as the target's fault type.
//! - [`fill`]: the placeholders of the configs (`${port.NAME}`, `${broker}`, …).
//! - [`gateway`]: the generated gateway config, the child process, the lab switches.
//! - [`observe`]: the MQTT collector (samples, events) and the simulator's detections.
//! - [`play`]: injecting and clearing one fault.
//! - [`attribute`]: which detection and recovery belong to a fault (pure).
//! - [`grade`]: the judgement of every fault, as a [`report::Report`].
//! - [`report`]: `report.json`, `report.md`, `report.html`.
//! - [`runner`]: the whole run.

pub mod action;
pub mod attribute;
pub mod fill;
pub mod gateway;
pub mod grade;
pub mod observe;
pub mod play;
pub mod report;
pub mod runner;
pub mod scenario;

pub use report::Report;
pub use runner::{LabOptions, run};
pub use scenario::Scenario;
