//! `/metrics`: the counters the status line reads, copied into the
//! recorder's counters and gauges at each scrape (nothing is counted twice,
//! nothing is added to the hot path), plus the histograms the hot paths
//! record themselves. Names, types, labels and units: `docs/metrics.md`.

use std::sync::atomic::Ordering;

use metrics::{Key, Label, Recorder as _, Unit};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::Admin;
use crate::app::StatusLine;
use crate::model::Timestamp;
use crate::telemetry::metrics::{ACK_LATENCY, POLL_DURATION};

static META: metrics::Metadata<'static> = metrics::Metadata::new("relais", metrics::Level::INFO, None);

/// Kind of a metric: how it is described and set.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric: name, kind, unit, help text.
const METRICS: &[(&str, Kind, Option<Unit>, &str)] = &[
    ("relais_device_polls_total", Kind::Counter, None, "Poll cycles run, per device."),
    ("relais_device_requests_total", Kind::Counter, None, "Read requests sent, per device."),
    (
        "relais_device_errors_total",
        Kind::Counter,
        None,
        "Failed read requests, per device and class (exception, timeout, invalid_frame, comm).",
    ),
    ("relais_device_demotions_total", Kind::Counter, None, "Times the device was degraded after silent cycles."),
    ("relais_device_samples_total", Kind::Counter, None, "Samples produced, per device and quality (good, bad)."),
    ("relais_device_overruns_total", Kind::Counter, None, "Poll cycles skipped because the previous one overran its interval."),
    ("relais_device_dropped_answers_total", Kind::Counter, None, "Device answers dropped, per reason (late, mismatched)."),
    ("relais_device_up", Kind::Gauge, None, "1 while the device answers with good data, else 0."),
    ("relais_device_data_age_seconds", Kind::Gauge, Some(Unit::Seconds), "Now minus the source timestamp of the newest good sample."),
    (POLL_DURATION, Kind::Histogram, Some(Unit::Seconds), "Duration of one poll cycle (all requests of one poll group)."),
    ("relais_ring_depth", Kind::Gauge, None, "Entries in the ingest ring waiting for the buffer writer."),
    ("relais_ring_capacity", Kind::Gauge, None, "Capacity of the ingest ring (buffer ring_capacity)."),
    ("relais_ring_full_waits_total", Kind::Counter, None, "Times a producer found the ingest ring full and waited."),
    (
        "relais_ring_wait_seconds_total",
        Kind::Counter,
        Some(Unit::Seconds),
        "Time producers spent waiting for room in the full ingest ring.",
    ),
    (
        "relais_device_registers_read_total",
        Kind::Counter,
        None,
        "Modbus: registers (coils and inputs: bits) read by successful requests, gaps between tags included.",
    ),
    ("relais_device_registers_used_total", Kind::Counter, None, "Modbus: of the registers read, those some tag decodes."),
    ("relais_opcua_session_up", Kind::Gauge, None, "OPC UA: 1 while the device's session is active, else 0."),
    (
        "relais_opcua_subscriptions",
        Kind::Gauge,
        None,
        "OPC UA: subscriptions per state (wanted: the device needs them; active: created in the current session).",
    ),
    ("relais_writes_total", Kind::Counter, None, "Writes settled by the actuator seam, per result (ok, refused, failed, unknown)."),
    ("relais_events_total", Kind::Counter, None, "Events emitted, per kind."),
    ("relais_events_dropped_total", Kind::Counter, None, "Events dropped because the ring and its event queue were full."),
    ("relais_buffer_rows", Kind::Gauge, None, "Rows (samples and events) held in the buffer."),
    ("relais_buffer_bytes", Kind::Gauge, Some(Unit::Bytes), "Bytes of live database pages of the buffer."),
    ("relais_buffer_oldest_age_seconds", Kind::Gauge, Some(Unit::Seconds), "Age of the oldest row held in the buffer (0 when empty)."),
    ("relais_buffer_accepted_total", Kind::Counter, None, "Samples accepted (committed) into the buffer."),
    ("relais_buffer_dropped_total", Kind::Counter, None, "Undelivered records dropped by the buffer limits."),
    ("relais_buffer_commit_retries_total", Kind::Counter, None, "Buffer commits that failed and were retried."),
    ("relais_quarantined_total", Kind::Counter, None, "Records put in the quarantine."),
    ("relais_sink_connected", Kind::Gauge, None, "1 while the sink is connected to its far end."),
    ("relais_sink_backlog", Kind::Gauge, None, "Committed records the sink has not had acknowledged."),
    ("relais_sink_in_flight", Kind::Gauge, None, "Records handed to the far end, not acknowledged yet."),
    (
        "relais_sink_replay_lag_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "Age of the oldest record the sink has not had acknowledged (0 when caught up).",
    ),
    ("relais_sink_messages_total", Kind::Counter, None, "Messages published by the sink."),
    ("relais_sink_acked_total", Kind::Counter, None, "Records acknowledged by the far end."),
    ("relais_sink_connects_total", Kind::Counter, None, "Connections established (the first one included)."),
    ("relais_sink_dropped_total", Kind::Counter, None, "Records the sink lost, per reason (buffer_limit, refused)."),
    (ACK_LATENCY, Kind::Histogram, Some(Unit::Seconds), "Time from handing a message to the far end to its acknowledgement."),
    ("relais_source_records_total", Kind::Counter, None, "Records read by a [[source]]."),
    ("relais_source_samples_total", Kind::Counter, None, "Samples accepted from a [[source]]."),
    ("relais_source_quarantined_total", Kind::Counter, None, "Records a [[source]] rejected to the quarantine, per reason."),
    ("relais_source_refused_tokens_total", Kind::Counter, None, "HTTP ingest requests refused 401 for a missing or wrong bearer token."),
];

/// The names of every metric `/metrics` may show (`docs/metrics.md` lists them all).
pub fn names() -> impl Iterator<Item = &'static str> {
    METRICS.iter().map(|m| m.0)
}

/// Gives every metric its help text (once, at start).
pub fn describe(r: &PrometheusRecorder) {
    for (name, kind, unit, help) in METRICS {
        let (n, h) = (metrics::KeyName::from(*name), metrics::SharedString::from(*help));
        match kind {
            Kind::Counter => r.describe_counter(n, *unit, h),
            Kind::Gauge => r.describe_gauge(n, *unit, h),
            Kind::Histogram => r.describe_histogram(n, *unit, h),
        }
    }
}

/// Ages read from the buffer (a query each, on the blocking pool).
#[derive(Debug, Default)]
pub struct Ages {
    /// Seconds since the oldest row held was accepted (0 when empty).
    pub buffer_oldest: f64,
    /// Per sink: seconds since the oldest record it has not had acknowledged was accepted.
    pub replay_lag: Vec<(String, f64)>,
}

impl Ages {
    /// Reads the acceptance time of the first row after the buffer's start
    /// and after each sink's cursor. Unreadable: 0.
    pub fn read(status: &StatusLine, reader: &crate::buffer::Reader) -> Ages {
        let now = Timestamp::now().0;
        let last = status.buffer.last_seq.load(Ordering::Relaxed);
        let first = status.buffer.first_seq.load(Ordering::Relaxed);
        let age_after = |after: u64| -> f64 {
            if last <= after {
                return 0.0;
            }
            let Ok(rows) = reader.recent_or_stored_blocking(after, last, 1) else { return 0.0 };
            rows.refs().first().map_or(0.0, |r| (now - r.accepted_ts().0).max(0) as f64 / 1e9)
        };
        let buffer_oldest = age_after(first.saturating_sub(1));
        let replay_lag =
            status.cursors.list().iter().map(|c| (c.name().to_string(), age_after(c.get().max(first.saturating_sub(1))))).collect();
        Ages { buffer_oldest, replay_lag }
    }
}

/// Sets a counter to `v`.
fn counter(r: &PrometheusRecorder, name: &'static str, labels: &[(&'static str, &str)], v: u64) {
    r.register_counter(&key(name, labels), &META).absolute(v);
}

/// Sets a gauge to `v`.
fn gauge(r: &PrometheusRecorder, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
    r.register_gauge(&key(name, labels), &META).set(v);
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect::<Vec<_>>())
}

/// Copies the gateway's counters into the recorder and renders everything.
pub fn render(a: &Admin, ages: &Ages) -> String {
    let r = &*a.recorder;
    devices(r, &a.status);
    core(r, &a.status, ages);
    sinks(r, &a.status, ages);
    sources(r, &a.status);
    for (result, n) in a.writes.by_result() {
        counter(r, "relais_writes_total", &[("result", result)], n);
    }
    r.handle().render()
}

fn devices(r: &PrometheusRecorder, s: &StatusLine) {
    let now_ms = crate::buffer::unix_ms_now();
    for d in s.telemetry.devices() {
        let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        let dev = [("device", d.name.as_str())];
        counter(r, "relais_device_polls_total", &dev, l(&d.cycles));
        counter(r, "relais_device_requests_total", &dev, l(&d.requests));
        counter(r, "relais_device_demotions_total", &dev, l(&d.demotions));
        counter(r, "relais_device_overruns_total", &dev, l(&d.overruns));
        for (class, n) in d.errors.classes() {
            counter(r, "relais_device_errors_total", &[("device", &d.name), ("class", class)], n);
        }
        counter(r, "relais_device_samples_total", &[("device", &d.name), ("quality", "good")], l(&d.good));
        counter(r, "relais_device_samples_total", &[("device", &d.name), ("quality", "bad")], l(&d.bad));
        counter(r, "relais_device_dropped_answers_total", &[("device", &d.name), ("reason", "late")], l(&d.late_responses));
        counter(r, "relais_device_dropped_answers_total", &[("device", &d.name), ("reason", "mismatched")], l(&d.mismatched_responses));
        gauge(r, "relais_device_up", &dev, if d.up.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
        if d.opcua.load(Ordering::Relaxed) {
            gauge(r, "relais_opcua_session_up", &dev, if d.up.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
            gauge(r, "relais_opcua_subscriptions", &[("device", &d.name), ("state", "wanted")], l(&d.subscriptions_wanted) as f64);
            gauge(r, "relais_opcua_subscriptions", &[("device", &d.name), ("state", "active")], l(&d.subscriptions_active) as f64);
        } else {
            counter(r, "relais_device_registers_read_total", &dev, l(&d.registers_read));
            counter(r, "relais_device_registers_used_total", &dev, l(&d.registers_used));
        }
        let last = l(&d.last_good_ms);
        if last > 0 {
            gauge(r, "relais_device_data_age_seconds", &dev, now_ms.saturating_sub(last) as f64 / 1e3);
        }
    }
}

fn core(r: &PrometheusRecorder, s: &StatusLine, ages: &Ages) {
    let ring = &s.ingest.stats;
    gauge(r, "relais_ring_depth", &[], s.ingest.len() as f64);
    gauge(r, "relais_ring_capacity", &[], s.ingest.capacity() as f64);
    counter(r, "relais_ring_full_waits_total", &[], ring.full_waits.load(Ordering::Relaxed));
    r.register_counter(&key("relais_ring_wait_seconds_total", &[]), &META).absolute(ring.wait_ns.load(Ordering::Relaxed) / 1_000_000_000);
    counter(r, "relais_events_dropped_total", &[], ring.events_dropped.load(Ordering::Relaxed));
    for (kind, n) in ring.event_log.by_kind() {
        counter(r, "relais_events_total", &[("kind", &kind)], n);
    }
    let b = &s.buffer;
    gauge(r, "relais_buffer_rows", &[], b.rows() as f64);
    gauge(r, "relais_buffer_bytes", &[], b.bytes_used.load(Ordering::Relaxed) as f64);
    gauge(r, "relais_buffer_oldest_age_seconds", &[], ages.buffer_oldest);
    counter(r, "relais_buffer_accepted_total", &[], b.accepted_total.load(Ordering::Relaxed));
    counter(r, "relais_buffer_dropped_total", &[], b.dropped_total.load(Ordering::Relaxed));
    counter(r, "relais_buffer_commit_retries_total", &[], b.commit_retries.load(Ordering::Relaxed));
    counter(r, "relais_quarantined_total", &[], b.quarantined_total.load(Ordering::Relaxed));
}

fn sinks(r: &PrometheusRecorder, s: &StatusLine, ages: &Ages) {
    let stats = s.telemetry.sinks();
    for (name, backlog) in s.backlogs() {
        let sink = [("sink", name.as_str())];
        gauge(r, "relais_sink_backlog", &sink, backlog as f64);
        if let Some((_, lag)) = ages.replay_lag.iter().find(|(n, _)| *n == name) {
            gauge(r, "relais_sink_replay_lag_seconds", &sink, *lag);
        }
        let lost = s.cursors.get(&name).map_or(0, |c| c.dropped());
        counter(r, "relais_sink_dropped_total", &[("sink", &name), ("reason", "buffer_limit")], lost);
        let Some(st) = stats.iter().find(|st| st.name == name) else { continue };
        let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        gauge(r, "relais_sink_connected", &sink, if st.connected.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
        gauge(r, "relais_sink_in_flight", &sink, l(&st.in_flight) as f64);
        counter(r, "relais_sink_messages_total", &sink, l(&st.messages));
        counter(r, "relais_sink_acked_total", &sink, l(&st.acked));
        counter(r, "relais_sink_connects_total", &sink, l(&st.connects));
        counter(r, "relais_sink_dropped_total", &[("sink", &name), ("reason", "refused")], l(&st.refused));
    }
}

fn sources(r: &PrometheusRecorder, s: &StatusLine) {
    for src in s.telemetry.sources() {
        let source = [("source", src.name.as_str())];
        counter(r, "relais_source_records_total", &source, src.records.load(Ordering::Relaxed));
        counter(r, "relais_source_samples_total", &source, src.samples.load(Ordering::Relaxed));
        counter(r, "relais_source_refused_tokens_total", &source, src.refused_tokens.load(Ordering::Relaxed));
        let reasons: Vec<(String, u64)> = src.reasons.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
        for (reason, n) in reasons {
            counter(r, "relais_source_quarantined_total", &[("source", &src.name), ("reason", &reason)], n);
        }
    }
}
