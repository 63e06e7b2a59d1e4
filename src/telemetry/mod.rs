//! Self-monitoring: counters shared by the components. The status line and
//! the gateway's own health samples (device `_relais`) that read them are
//! composed in [`app`](../app/index.html) (`app::status`, `app::health`).

pub mod metrics;

pub use crate::names::HEALTH_DEVICE;
pub use metrics::{ErrorCounts, Hist};

/// Logs the sources' rejected records not reported yet every few seconds
/// (each source at most once per [`REJECT_LOG_PERIOD`]) until `cancel`.
pub fn spawn_reject_log(telemetry: Arc<Telemetry>, cancel: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    for s in telemetry.sources() {
                        s.report_rejects_now();
                    }
                    return;
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            telemetry.report_rejects();
        }
    })
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::escape::escape;

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
    /// Samples produced and not yet in the ring (OPC UA: bounded, see
    /// `sources::opcua::session::samples`).
    pub pending: AtomicU64,
    /// The highest `pending` seen since start.
    pub pending_peak: AtomicU64,
    /// Answers that came after their request had timed out, dropped
    /// (Modbus: recognised by transaction id, or over RTU by unit id,
    /// function code, length and CRC).
    pub late_responses: AtomicU64,
    /// Frames dropped because they matched no request of this device
    /// (foreign transaction or unit id, other function code or length, bad
    /// CRC, bytes that form no frame).
    pub mismatched_responses: AtomicU64,
    /// Read requests sent (Modbus: one per planned or split request).
    pub requests: AtomicU64,
    /// Failed read requests by class.
    pub errors: ErrorCounts,
    /// Times the device was degraded (demoted to probing in the line's idle
    /// time after silent cycles).
    pub demotions: AtomicU64,
    /// Source timestamp (Unix ms) of the newest good sample; 0 before the first.
    pub last_good_ms: AtomicU64,
    /// Duration of each poll cycle (no-op without `[admin]`).
    pub poll_duration: Hist,
    /// Duration of the latest poll cycle, in microseconds (0 before the
    /// first): the poll latency of `/api/devices` and the dashboard.
    pub last_poll_us: AtomicU64,
    /// Modbus: registers (or coils and inputs, as bits) read by successful
    /// requests, gaps between tags included.
    pub registers_read: AtomicU64,
    /// Modbus: of those, the ones some tag decodes.
    pub registers_used: AtomicU64,
    /// OPC UA: true for an OPC UA device (its session is `up`).
    pub opcua: AtomicBool,
    /// OPC UA: subscriptions the device needs (one per publishing interval,
    /// more when the server's limits split them).
    pub subscriptions_wanted: AtomicU64,
    /// OPC UA: of those, the ones created on the server in the current
    /// session (0 while the session is down).
    pub subscriptions_active: AtomicU64,
}

impl DeviceStats {
    /// Records one poll cycle's duration: the histogram and the latest value.
    pub fn polled(&self, d: Duration) {
        self.poll_duration.record(d);
        self.last_poll_us.store(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
    }

    /// Notes the newest good sample's source timestamp (Unix ns), for the
    /// data age of `/metrics` and `/readyz`.
    pub fn good_at(&self, ts_ns: i64) {
        let ms = (ts_ns / 1_000_000).max(0) as u64;
        self.last_good_ms.fetch_max(ms, Ordering::Relaxed);
    }
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
    /// Records the far end refused for good (put in the quarantine).
    pub refused: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
    /// Last connection error.
    pub last_error: Mutex<Option<String>>,
    /// Records handed to the far end and not acknowledged yet ("in flight").
    pub in_flight: AtomicU64,
    /// The current outage, if any (kept by the sink driver).
    pub outage: Mutex<Outage>,
    /// Time from handing a message over to its acknowledgement (no-op
    /// without `[admin]`).
    pub ack_latency: Hist,
    /// Unix time (ms) of the last acknowledgement; 0 before the first.
    pub last_ack_ms: AtomicU64,
}

/// A sink's outage, as the status line shows it: `down since 10:14:03,
/// retrying in 4 s, buffering 1,475 samples (oldest 35 s)`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outage {
    /// Wall-clock time of the first failed connection attempt or of the
    /// lost connection; `None` while connected (or before the first attempt ended).
    pub since: Option<std::time::SystemTime>,
    /// When the next connection attempt is due; `None` while one is under way.
    pub retry_at: Option<Instant>,
    /// Acceptance time (`recv_ts` of a sample, `ts` of an event) of the
    /// oldest record not acknowledged, read when the outage was last reported.
    pub oldest: Option<crate::model::Timestamp>,
}

impl SinkStats {
    /// Records a connection error (credentials in URLs masked: it is shown in the status).
    pub fn set_error(&self, e: impl Into<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(crate::util::redact::text(&e.into()));
        }
    }

    /// An acknowledgement came, `after` handing the message over.
    pub fn acked_now(&self, after: Duration) {
        self.ack_latency.record(after);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last_ack_ms.store(now.as_millis() as u64, Ordering::Relaxed);
    }

    /// The last connection error.
    pub fn error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// `records` handed over earlier are no longer in flight (acknowledged or refused).
    pub fn landed(&self, records: usize) {
        let _ = self.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(records as u64)));
    }

    /// A snapshot of the outage.
    pub fn outage(&self) -> Outage {
        self.outage.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Changes the outage record.
    pub fn set_outage(&self, f: impl FnOnce(&mut Outage)) {
        if let Ok(mut g) = self.outage.lock() {
            f(&mut g);
        }
    }
}

/// Shortest time between two "records rejected" warnings of one source.
pub const REJECT_LOG_PERIOD: Duration = Duration::from_secs(60);

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
    /// Requests refused 401 for a missing or wrong bearer token (HTTP ingest).
    pub refused_tokens: AtomicU64,
    /// Quarantined records by reason code.
    pub reasons: Mutex<BTreeMap<String, u64>>,
    log: Mutex<RejectLog>,
}

/// Rejected records not yet reported in the log.
#[derive(Debug, Default)]
struct RejectLog {
    last: Option<Instant>,
    counts: BTreeMap<String, u64>,
    /// Origin, location and reason of the first one.
    example: Option<(String, String, String)>,
}

impl SourceStats {
    /// Adds what one input gave (a file, a tailed chunk): records read,
    /// samples accepted, records quarantined, them by reason code, and the first
    /// quarantined record's location and reason (for the log example);
    /// `origin` names the input.
    pub fn add(
        &self,
        (records, samples, quarantined): (u64, u64, u64),
        reasons: &BTreeMap<String, u64>,
        first_reject: Option<&(String, String)>,
        origin: &str,
    ) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.samples.fetch_add(samples, Ordering::Relaxed);
        if quarantined == 0 {
            return;
        }
        self.quarantined.fetch_add(quarantined, Ordering::Relaxed);
        if let Ok(mut m) = self.reasons.lock() {
            for (k, v) in reasons {
                *m.entry(k.clone()).or_default() += v;
            }
        }
        let example = first_reject.map(|(loc, why)| (origin.to_string(), loc.clone(), why.clone()));
        self.note(reasons.iter().map(|(k, v)| (k.clone(), *v)), example);
    }

    /// Counts quarantined records (HTTP bodies, MQTT payloads) and reports
    /// them in the log (see [`SourceStats::report_rejects`]).
    pub fn rejected<'a>(&self, rejects: impl IntoIterator<Item = &'a crate::model::Quarantined>) {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut example = None;
        let mut n = 0;
        for q in rejects {
            n += 1;
            *counts.entry(crate::model::reason::code(&q.reason)).or_default() += 1;
            if example.is_none() {
                example = Some((q.origin.clone(), q.location.clone(), q.reason.clone()));
            }
        }
        if n == 0 {
            return;
        }
        self.quarantined.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut m) = self.reasons.lock() {
            for (k, v) in &counts {
                *m.entry(k.clone()).or_default() += v;
            }
        }
        self.note(counts.into_iter(), example);
    }

    fn note(&self, counts: impl Iterator<Item = (String, u64)>, example: Option<(String, String, String)>) {
        if let Ok(mut l) = self.log.lock() {
            for (k, v) in counts {
                *l.counts.entry(k).or_default() += v;
            }
            if l.example.is_none() {
                l.example = example;
            }
        }
        self.report_rejects();
    }

    /// Logs the rejected records not reported yet, as one warning with the
    /// count by reason and one example (origin, location, reason), at most
    /// once per [`REJECT_LOG_PERIOD`]. Called on every rejection and
    /// periodically, so a burst is reported at once and its tail a minute
    /// later.
    pub fn report_rejects(&self) {
        self.log_rejects(false);
    }

    /// Logs the rejected records not reported yet now (at shutdown).
    pub fn report_rejects_now(&self) {
        self.log_rejects(true);
    }

    fn log_rejects(&self, now: bool) {
        let Ok(mut l) = self.log.lock() else { return };
        if l.counts.is_empty() || (!now && l.last.is_some_and(|t| t.elapsed() < REJECT_LOG_PERIOD)) {
            return;
        }
        l.last = Some(Instant::now());
        let counts = std::mem::take(&mut l.counts);
        let (origin, location, reason) = l.example.take().unwrap_or_default();
        // File names and reasons come from data: never raw in a log line.
        let (origin, location, reason) = (escape(&origin).to_string(), escape(&location).to_string(), escape(&reason).to_string());
        let total: u64 = counts.values().sum();
        let by_reason: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        tracing::warn!(
            source = %self.name, rejected = total, reasons = %by_reason.join(", "), origin = %origin, location = %location, reason = %reason,
            "{total} record(s) rejected to the quarantine since the last report (e.g. {origin} {location}: {reason}); see `relais quarantine list --config <this config file> --source {}`",
            self.name
        );
    }
}

/// All counters of one gateway.
#[derive(Debug, Default)]
pub struct Telemetry {
    recorder: metrics::SharedRecorder,
    devices: Mutex<Vec<Arc<DeviceStats>>>,
    sinks: Mutex<Vec<Arc<SinkStats>>>,
    sources: Mutex<Vec<Arc<SourceStats>>>,
}

impl Telemetry {
    /// Counters whose histograms record into `recorder` (served at `/metrics`).
    pub fn with_recorder(recorder: Arc<metrics_exporter_prometheus::PrometheusRecorder>) -> Telemetry {
        Telemetry { recorder: Some(recorder), ..Default::default() }
    }

    /// The recorder of the histograms, when metrics are served.
    pub fn recorder(&self) -> Option<&Arc<metrics_exporter_prometheus::PrometheusRecorder>> {
        self.recorder.as_ref()
    }

    fn hist(&self, name: &'static str, label: &'static str, value: &str) -> Hist {
        self.recorder.as_ref().map(|r| Hist::new(r, name, label, value)).unwrap_or_default()
    }

    /// Registers a device and returns its counters; a device registered
    /// again (restarted by a configuration reload) keeps its counters.
    pub fn device(&self, name: &str) -> Arc<DeviceStats> {
        let mut v = self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = v.iter().find(|s| s.name == name) {
            return s.clone();
        }
        let poll_duration = self.hist(metrics::POLL_DURATION, "device", name);
        let s = Arc::new(DeviceStats { name: name.to_string(), poll_duration, ..Default::default() });
        v.push(s.clone());
        s
    }

    /// Registers a sink and returns its counters (the same ones when registered again).
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        let mut v = self.sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = v.iter().find(|s| s.name == name) {
            return s.clone();
        }
        let ack_latency = self.hist(metrics::ACK_LATENCY, "sink", name);
        let s = Arc::new(SinkStats { name: name.to_string(), ack_latency, ..Default::default() });
        v.push(s.clone());
        s
    }

    /// Registers a source and returns its counters (the same ones when registered again).
    pub fn source(&self, name: &str) -> Arc<SourceStats> {
        let mut v = self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = v.iter().find(|s| s.name == name) {
            return s.clone();
        }
        let s = Arc::new(SourceStats { name: name.to_string(), ..Default::default() });
        v.push(s.clone());
        s
    }

    /// Forgets the counters of a device, sink or source a configuration
    /// reload removed (`family`: `device`, `sink`, `source`), so the status
    /// line, `/api/status` and `/metrics` stop reporting it.
    pub fn forget(&self, family: &str, name: &str) {
        match family {
            "device" => self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|s| s.name != name),
            "sink" => self.sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|s| s.name != name),
            "source" => self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|s| s.name != name),
            _ => {}
        }
    }

    /// Snapshot of the source counters.
    pub fn sources(&self) -> Vec<Arc<SourceStats>> {
        self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Snapshot of the device counters.
    pub fn devices(&self) -> Vec<Arc<DeviceStats>> {
        self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Snapshot of the sink counters.
    pub fn sinks(&self) -> Vec<Arc<SinkStats>> {
        self.sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reports the rejected records of every source not logged yet (see
    /// [`SourceStats::report_rejects`]).
    pub fn report_rejects(&self) {
        for s in self.sources() {
            s.report_rejects();
        }
    }

    /// `late 3 (pump1 3), mismatched 1 (meter 1)`: the devices' dropped
    /// answers since start, with the devices that had any; `None` while
    /// there were none.
    pub fn dropped_answers(&self) -> Option<String> {
        let d = self.devices();
        let part = |label: &str, f: fn(&DeviceStats) -> u64| {
            let each: Vec<String> =
                d.iter().map(|d| (d.name.as_str(), f(d))).filter(|(_, n)| *n > 0).map(|(n, c)| format!("{n} {c}")).collect();
            let total: u64 = d.iter().map(|d| f(d)).sum();
            (total > 0).then(|| format!("{label} {total} ({})", each.join(", ")))
        };
        let parts: Vec<String> = [
            part("late", |d| d.late_responses.load(Ordering::Relaxed)),
            part("mismatched", |d| d.mismatched_responses.load(Ordering::Relaxed)),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| format!("answers dropped: {}", parts.join(", ")))
    }

    /// Devices currently answering, and devices in all.
    pub fn devices_up(&self) -> (usize, usize) {
        let d = self.devices();
        (d.iter().filter(|d| d.up.load(Ordering::Relaxed)).count(), d.len())
    }
}
