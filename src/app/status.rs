//! The status line: samples/s in, backlog per sink, broker state, drops.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::buffer::{BufferStats, CursorSet};
use crate::ingest::Ingest;
use crate::telemetry::Telemetry;

/// What the status line and the health samples read.
#[derive(Clone)]
pub struct StatusLine {
    /// The ingest ring.
    pub ingest: Arc<Ingest>,
    /// Buffer counters.
    pub buffer: Arc<BufferStats>,
    /// Sink cursors, in sink order (shared: a reload adds and removes sinks).
    pub cursors: Arc<CursorSet>,
    /// Component counters.
    pub telemetry: Arc<Telemetry>,
}

impl StatusLine {
    /// Backlog of each sink: committed samples not yet acknowledged.
    pub fn backlogs(&self) -> Vec<(String, u64)> {
        let last = self.buffer.last_seq.load(Ordering::Relaxed);
        let first = self.buffer.first_seq.load(Ordering::Relaxed);
        self.cursors
            .list()
            .iter()
            .map(|c| {
                let from = c.get().max(first.saturating_sub(1));
                (c.name().to_string(), last.saturating_sub(from))
            })
            .collect()
    }

    /// One line: `acquired 1520 samples/s | buffer 3400 rows, 1.2 MiB | plant-broker: connected, 0 waiting, 12 in flight | dropped 0 | quarantined 3 (esp 3) | devices 3/3 up`.
    ///
    /// *acquired*: samples accepted into the buffer per second; *buffer*: rows
    /// kept (undelivered, or delivered and not yet deleted); per sink: its
    /// state from the shared sink driver ([`crate::sinks::driver::status`]:
    /// `connected, N waiting, M in flight`, or `down since 10:14:03, retrying
    /// in 4 s, buffering 1,475 samples (oldest 35 s)`, the records the
    /// buffer limits dropped before it delivered them, those its far end
    /// refused for good, and its last error while down); *dropped*: undelivered samples dropped by the limits
    /// since start; *quarantined* (only with `[[source]]` entries): records
    /// the sources rejected since start, with the sources that rejected any;
    /// *devices* (only with `[[device]]` entries): devices answering;
    /// *answers dropped* (only when there were any): late and mismatched
    /// device answers since start, per device (`answers dropped: late 3
    /// (pump1 3), mismatched 1 (meter 1)`).
    pub fn render(&self, rate: f64) -> String {
        let mut parts = vec![format!("acquired {rate:.0} samples/s")];
        parts.push(format!(
            "buffer {} rows, {}",
            self.buffer.rows(),
            crate::units::format_size(self.buffer.bytes_used.load(Ordering::Relaxed))
        ));
        let sinks = self.telemetry.sinks();
        for (name, backlog) in self.backlogs() {
            let lost = self.cursors.get(&name).map_or(0, |c| c.dropped());
            let state = sinks.iter().find(|s| s.name == name).map(|s| crate::sinks::driver::status::render(s, backlog, lost));
            parts.push(format!("{name}: {}", state.unwrap_or_default()));
        }
        parts.push(format!("dropped {}", self.buffer.dropped_total.load(Ordering::Relaxed)));
        let sources = self.telemetry.sources();
        if !sources.is_empty() {
            let total: u64 = sources.iter().map(|s| s.quarantined.load(Ordering::Relaxed)).sum();
            let each: Vec<String> = sources
                .iter()
                .map(|s| (s.name.as_str(), s.quarantined.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            if each.is_empty() {
                parts.push(format!("quarantined {total}"));
            } else {
                parts.push(format!("quarantined {total} ({})", each.join(", ")));
            }
        }
        let (up, all) = self.telemetry.devices_up();
        if all > 0 {
            parts.push(format!("devices {up}/{all} up"));
        }
        if let Some(dropped) = self.telemetry.dropped_answers() {
            parts.push(dropped);
        }
        parts.join(" | ")
    }
}

/// The first status line comes this long after start (or after `every`, if shorter).
pub const FIRST_STATUS_AFTER: Duration = Duration::from_secs(3);

/// Logs the status line `FIRST_STATUS_AFTER` after start, then every `every` until `cancel`; `print` also writes it
/// to stdout (for `relais demo` on a terminal).
pub fn spawn_status(status: StatusLine, every: Duration, print: bool, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if every.is_zero() {
            return;
        }
        let mut last_n = status.buffer.accepted_total.load(Ordering::Relaxed);
        let mut last_t = Instant::now();
        // The first line a few seconds after start, so whoever started
        // relais sees at once whether it acquires and delivers.
        let mut wait = every.min(FIRST_STATUS_AFTER);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = every;
            let n = status.buffer.accepted_total.load(Ordering::Relaxed);
            let rate = (n - last_n) as f64 / last_t.elapsed().as_secs_f64();
            last_n = n;
            last_t = Instant::now();
            let line = status.render(rate);
            if print {
                crate::outln!("{line}");
            } else {
                tracing::info!("status: {line}");
            }
        }
    })
}
