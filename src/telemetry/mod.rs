//! Self-monitoring: counters shared by the components, the status line, and
//! the gateway's own health samples (device `_relais`).

mod health;
mod status;

pub use health::{HEALTH_DEVICE, spawn_health};
pub use status::{StatusLine, spawn_status};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one polled device.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Device name.
    pub name: String,
    /// Poll cycles run.
    pub cycles: AtomicU64,
    /// Good samples produced.
    pub good: AtomicU64,
    /// Bad samples produced.
    pub bad: AtomicU64,
    /// Poll cycles skipped because the previous one overran its interval.
    pub overruns: AtomicU64,
    /// True while the device answers.
    pub up: AtomicBool,
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Sink name.
    pub name: String,
    /// True while connected to the far end.
    pub connected: AtomicBool,
    /// Messages published.
    pub messages: AtomicU64,
    /// Samples acknowledged by the far end.
    pub acked: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
    /// Last connection error.
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    /// Records a connection error.
    pub fn set_error(&self, e: impl Into<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.into());
        }
    }

    /// The last connection error.
    pub fn error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }
}

/// Counters of one `[[source]]` (files, HTTP, MQTT ingest).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Source name.
    pub name: String,
    /// Records read.
    pub records: AtomicU64,
    /// Samples accepted.
    pub samples: AtomicU64,
    /// Records quarantined.
    pub quarantined: AtomicU64,
    /// Quarantined records by reason code.
    pub reasons: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl SourceStats {
    /// Adds a file report.
    pub fn add(&self, r: &crate::sources::file::ingest::FileReport) {
        self.records.fetch_add(r.records, Ordering::Relaxed);
        self.samples.fetch_add(r.samples, Ordering::Relaxed);
        self.quarantined.fetch_add(r.quarantined, Ordering::Relaxed);
        if let Ok(mut m) = self.reasons.lock() {
            for (k, v) in &r.reasons {
                *m.entry(k.clone()).or_default() += v;
            }
        }
    }
}

/// All counters of one gateway.
#[derive(Debug, Default)]
pub struct Telemetry {
    devices: Mutex<Vec<Arc<DeviceStats>>>,
    sinks: Mutex<Vec<Arc<SinkStats>>>,
    sources: Mutex<Vec<Arc<SourceStats>>>,
}

impl Telemetry {
    /// Registers a device and returns its counters.
    pub fn device(&self, name: &str) -> Arc<DeviceStats> {
        let s = Arc::new(DeviceStats { name: name.to_string(), ..Default::default() });
        self.devices.lock().expect("telemetry lock").push(s.clone());
        s
    }

    /// Registers a sink and returns its counters.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        let s = Arc::new(SinkStats { name: name.to_string(), ..Default::default() });
        self.sinks.lock().expect("telemetry lock").push(s.clone());
        s
    }

    /// Registers a source and returns its counters.
    pub fn source(&self, name: &str) -> Arc<SourceStats> {
        let s = Arc::new(SourceStats { name: name.to_string(), ..Default::default() });
        self.sources.lock().expect("telemetry lock").push(s.clone());
        s
    }

    /// Snapshot of the source counters.
    pub fn sources(&self) -> Vec<Arc<SourceStats>> {
        self.sources.lock().expect("telemetry lock").clone()
    }

    /// Snapshot of the device counters.
    pub fn devices(&self) -> Vec<Arc<DeviceStats>> {
        self.devices.lock().expect("telemetry lock").clone()
    }

    /// Snapshot of the sink counters.
    pub fn sinks(&self) -> Vec<Arc<SinkStats>> {
        self.sinks.lock().expect("telemetry lock").clone()
    }

    /// Devices currently answering, and devices in all.
    pub fn devices_up(&self) -> (usize, usize) {
        let d = self.devices();
        (d.iter().filter(|d| d.up.load(Ordering::Relaxed)).count(), d.len())
    }
}
