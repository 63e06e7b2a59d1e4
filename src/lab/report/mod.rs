//! The report of a run, in `DIR`: `report.json` (the graded result),
//! `report.md`, `report.html` (self-contained, with an SVG timeline) and
//! `injections.jsonl` (written while the run goes, by the runner).
//!
//! Wall-clock fields (they differ between two runs of the same seed):
//! `started_at`, `ended_at`, `stream`, and per fault `injected_at`,
//! `cleared_at`, `detected_at`, `recovered_at`, `time_to_detect_ms`,
//! `time_to_recover_ms`, `timeline`. Everything else depends on the scenario
//! and its seed only, in the scenario's fault order.

mod html;
mod md;

use std::path::Path;

use serde::Serialize;

use super::scenario::Expect;

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's `name`.
    pub scenario: String,
    /// Its `description`.
    pub description: String,
    /// Its `seed`.
    pub seed: u64,
    /// Time 0 (the gateway's first sample), RFC 3339.
    pub started_at: String,
    /// End of the timeline, RFC 3339.
    pub ended_at: String,
    /// The scenario's duration, ms.
    pub duration_ms: u64,
    /// Every fault passed.
    pub pass: bool,
    /// The whole MQTT stream's `seq` accounting (wall-clock dependent).
    pub stream: Stream,
    /// One entry per `[[fault]]`, in file order.
    pub faults: Vec<FaultReport>,
    /// Detections no fault explains (kind, source, detector), in time order: false alarms.
    pub unattributed: Vec<Unattributed>,
}

/// The `seq` accounting of the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Stream {
    /// Lowest `seq` received.
    pub first_seq: Option<u64>,
    /// Highest `seq` received.
    pub last_seq: Option<u64>,
    /// Distinct `seq` received (samples and events).
    pub received: u64,
    /// `seq` numbers between the first and the last never received.
    pub missing: u64,
    /// Extra copies received.
    pub duplicates: u64,
    /// Samples received.
    pub samples: u64,
    /// Gateway events received.
    pub events: u64,
}

/// A detection no fault explains.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unattributed {
    /// Event kind.
    pub kind: String,
    /// `source.kind:source.name`.
    pub source: String,
    /// Detector.
    pub detector: String,
}

/// One fault's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// `[[fault]]` index, from 1.
    pub index: usize,
    /// `kind`.
    pub kind: String,
    /// `target` as written.
    pub target: String,
    /// Injection, RFC 3339.
    pub injected_at: String,
    /// Clearing, RFC 3339 (none: lasted to the end).
    pub cleared_at: Option<String>,
    /// Detection, RFC 3339.
    pub detected_at: Option<String>,
    /// The detector that detected it.
    pub detector: Option<String>,
    /// Recovery, RFC 3339.
    pub recovered_at: Option<String>,
    /// Missing `seq` in the fault's window.
    pub samples_lost: u64,
    /// Extra copies of a `seq` in the fault's window.
    pub duplicates: u64,
    /// Every expectation holds.
    pub pass: bool,
    /// Injection to detection, ms.
    pub time_to_detect_ms: Option<i64>,
    /// End of the fault to recovery, ms.
    pub time_to_recover_ms: Option<i64>,
    /// The expectations.
    pub expected: Option<Expect>,
    /// Why it failed (none when it passed).
    pub reason: Option<String>,
    /// The fault's parameters as written.
    pub params: serde_json::Value,
    /// Times from time 0, ms (for the timeline picture).
    pub timeline: Timeline,
}

/// A fault's times from time 0, ms.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Timeline {
    /// Injection.
    pub injected: i64,
    /// Clearing.
    pub cleared: Option<i64>,
    /// Detection.
    pub detected: Option<i64>,
    /// Recovery.
    pub recovered: Option<i64>,
}

/// RFC 3339 UTC with milliseconds of a Unix-ms time.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

impl Report {
    /// Writes `report.json`, `report.md` and `report.html` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join("report.json"), json + "\n")?;
        std::fs::write(dir.join("report.md"), md::render(self))?;
        std::fs::write(dir.join("report.html"), html::render(self))?;
        Ok(())
    }

    /// Faults that failed.
    pub fn failed(&self) -> usize {
        self.faults.iter().filter(|f| !f.pass).count()
    }
}

/// `12.3 s` / `850 ms` / `—`.
pub fn human_ms(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(m) if m.abs() >= 1000 => format!("{:.1} s", m as f64 / 1000.0),
        Some(m) => format!("{m} ms"),
    }
}
