//! The gateway's own health samples, device `_relais`, sent like any data.
//!
//! Tags: `accepted_total`, `dropped_total`, `quarantined_total`,
//! `buffer_rows`, `buffer_bytes`, `ring_full_waits_total`, `devices_up`, per
//! sink `<sink>.backlog` and `<sink>.connected`, and per `[[source]]`
//! `<source>.records_total` and `<source>.quarantined_total`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StatusLine;
use crate::model::{Sample, TagMeta, Timestamp, Value};

use crate::names::HEALTH_DEVICE;

/// Pushes health samples every `every` until `cancel`.
pub fn spawn_health(status: StatusLine, every: Duration, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if every.is_zero() {
            return;
        }
        let mut metas: HashMap<String, Arc<TagMeta>> = HashMap::new();
        let mut meta = |name: &str, unit: Option<&str>| {
            metas.entry(name.to_string()).or_insert_with(|| TagMeta::new(HEALTH_DEVICE, name, unit)).clone()
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let ts = Timestamp::now();
            let b = &status.buffer;
            let mut samples = vec![
                Sample::good(meta("accepted_total", None), Value::U64(b.accepted_total.load(Ordering::Relaxed)), ts),
                Sample::good(meta("dropped_total", None), Value::U64(b.dropped_total.load(Ordering::Relaxed)), ts),
                Sample::good(meta("quarantined_total", None), Value::U64(b.quarantined_total.load(Ordering::Relaxed)), ts),
                Sample::good(meta("buffer_rows", None), Value::U64(b.rows()), ts),
                Sample::good(meta("buffer_bytes", Some("By")), Value::U64(b.bytes_used.load(Ordering::Relaxed)), ts),
                Sample::good(meta("ring_full_waits_total", None), Value::U64(status.ingest.stats.full_waits.load(Ordering::Relaxed)), ts),
                Sample::good(meta("devices_up", None), Value::U64(status.telemetry.devices_up().0 as u64), ts),
            ];
            let sinks = status.telemetry.sinks();
            for (name, backlog) in status.backlogs() {
                samples.push(Sample::good(meta(&format!("{name}.backlog"), None), Value::U64(backlog), ts));
                let up = sinks.iter().any(|s| s.name == name && s.connected.load(Ordering::Relaxed));
                samples.push(Sample::good(meta(&format!("{name}.connected"), None), Value::Bool(up), ts));
            }
            for src in status.telemetry.sources() {
                samples.push(Sample::good(
                    meta(&format!("{}.records_total", src.name), None),
                    Value::U64(src.records.load(Ordering::Relaxed)),
                    ts,
                ));
                samples.push(Sample::good(
                    meta(&format!("{}.quarantined_total", src.name), None),
                    Value::U64(src.quarantined.load(Ordering::Relaxed)),
                    ts,
                ));
            }
            status.ingest.push_all(samples).await;
        }
    })
}
