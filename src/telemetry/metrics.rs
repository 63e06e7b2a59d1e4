//! What the hot paths record for `/metrics` beyond the plain counters:
//! latency histograms and Modbus read errors by class.
//!
//! Histograms are handles of a [`PrometheusRecorder`] (the
//! `metrics-exporter-prometheus` crate) owned by the [`super::Telemetry`] of
//! one gateway, with no global recorder, so several gateways in one process
//! (the tests) keep their own. Recording appends the value to a lock-free
//! bucket of the handle; the admin listener drains them when it renders
//! `/metrics` and every few seconds (`run_upkeep`), so memory stays bounded
//! without a scraper. Without `[admin]` the handles are no-ops.
//!
//! Every metric is documented in `docs/metrics.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Histogram of one poll cycle of one device (all read requests of one poll
/// group, seconds); label `device`.
pub const POLL_DURATION: &str = "relais_device_poll_duration_seconds";

/// Histogram of the time from handing a message to a sink's far end to its
/// acknowledgement (seconds); label `sink`.
pub const ACK_LATENCY: &str = "relais_sink_ack_latency_seconds";

/// Bucket upper bounds of both histograms, in seconds: 1 ms (a Modbus read
/// on a LAN) to 10 s (a timeout, a broker under load).
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A recorder whose histograms have [`LATENCY_BUCKETS`] (a Prometheus
/// histogram with `_bucket`, `_sum`, `_count`), no global labels, no HTTP
/// listener of its own (the admin listener serves it).
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .expect("non-empty bucket list")
        .build_recorder()
}

/// A histogram handle; the default records nothing (no `[admin]`).
#[derive(Clone, Debug)]
pub struct Hist(metrics::Histogram);

impl Default for Hist {
    fn default() -> Self {
        Hist(metrics::Histogram::noop())
    }
}

impl Hist {
    /// The histogram `name{label="value"}` of `recorder`.
    pub fn new(recorder: &PrometheusRecorder, name: &'static str, label: &'static str, value: &str) -> Hist {
        use metrics::Recorder as _;
        static META: metrics::Metadata<'static> = metrics::Metadata::new("relais", metrics::Level::INFO, None);
        let key = metrics::Key::from_parts(name, vec![metrics::Label::new(label, value.to_string())]);
        Hist(recorder.register_histogram(&key, &META))
    }

    /// Records one duration, in seconds. Lock-free.
    pub fn record(&self, d: Duration) {
        self.0.record(d.as_secs_f64());
    }
}

/// The recorder of a gateway's telemetry, when metrics are served.
pub type SharedRecorder = Option<Arc<PrometheusRecorder>>;

/// Failed Modbus read requests by class, the `class` label of
/// `relais_device_errors_total`: `exception` (the device answered with an
/// exception code, Modbus Application Protocol v1.1b3 §7), `timeout` (no
/// answer within `timeout`), `invalid_frame` (bytes that are no valid answer
/// to the request), `comm` (connection refused, reset or closed).
#[derive(Debug, Default)]
pub struct ErrorCounts {
    /// Exception responses.
    pub exception: AtomicU64,
    /// No answer within the timeout.
    pub timeout: AtomicU64,
    /// No valid answer (framing, unit id, function code, CRC).
    pub invalid_frame: AtomicU64,
    /// Connection failures.
    pub comm: AtomicU64,
}

impl ErrorCounts {
    /// `(class, count)` for every class, in a fixed order.
    pub fn classes(&self) -> [(&'static str, u64); 4] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("exception", l(&self.exception)),
            ("timeout", l(&self.timeout)),
            ("invalid_frame", l(&self.invalid_frame)),
            ("comm", l(&self.comm)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_with_buckets_and_count() {
        let r = recorder();
        let h = Hist::new(&r, POLL_DURATION, "device", "pump1");
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(30));
        let text = r.handle().render();
        assert!(text.contains("relais_device_poll_duration_seconds_bucket{device=\"pump1\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("relais_device_poll_duration_seconds_bucket{device=\"pump1\",le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("relais_device_poll_duration_seconds_count{device=\"pump1\"} 2"), "{text}");
    }

    #[test]
    fn default_histogram_records_nothing() {
        Hist::default().record(Duration::from_secs(1));
    }
}

/// Writes settled by the actuator seam, by result (`relais_writes_total{result}`).
#[derive(Debug, Default)]
pub struct WriteCounts {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
}

impl WriteCounts {
    /// Counts one settled write whose result is `result` (`ok`, `refused`,
    /// `failed`, `unknown`; anything else counts as `unknown`).
    pub fn add(&self, result: &str) {
        let c = match result {
            "ok" => &self.ok,
            "refused" => &self.refused,
            "failed" => &self.failed,
            _ => &self.unknown,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Every result with its count.
    pub fn by_result(&self) -> [(&'static str, u64); 4] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [("ok", l(&self.ok)), ("refused", l(&self.refused)), ("failed", l(&self.failed)), ("unknown", l(&self.unknown))]
    }
}
