//! The live detectors: each follows the committed samples in `seq` order,
//! builds rows of its watched tags, scores them and pushes its outputs into
//! the ingest ring as samples of device `_relais`:
//!
//! | tag | value |
//! |---|---|
//! | `detector.<name>.score` | f64, the anomaly score (1 = on the control limit) |
//! | `detector.<name>.anomaly` | bool, score > threshold |
//! | `detector.<name>.confidence` | f64 in [0, 1] |
//!
//! Each output sample carries the row's timestamp (its newest input's `ts`).
//! A row with a watched tag whose latest sample was bad gives the three
//! outputs as bad samples, reason `input_bad: <device/tag>`; a row is never
//! scored with a made-up value. Crossing into and out of the anomaly state is
//! logged (WARN in, INFO out).
//!
//! Invariants: samples are read after the commit (a detector never sees
//! data that could still be lost) and in `seq` order; a detector starts at
//! the commit position it finds at start-up and fits again after a restart
//! (unless it loads a saved model); it reads no samples of its own device
//! `_relais`, so it never feeds on its own output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::DetectorConfig;
use super::detector::{Detector, Output, Step};
use super::rows::{Row, RowAssembler};
use crate::buffer::Reader;
use crate::ingest::Ingest;
use crate::model::{Quality, Sample, TagMeta, Timestamp, Value};
use crate::telemetry::HEALTH_DEVICE;

/// One detector fed sample by sample (pure apart from the clock it is given).
pub struct Live {
    det: Detector,
    rows: RowAssembler,
    index: HashMap<String, usize>,
    score: Arc<TagMeta>,
    anomaly: Arc<TagMeta>,
    confidence: Arc<TagMeta>,
    in_alarm: bool,
    fitting_logged: bool,
}

impl Live {
    /// Builds the detector (loading its model file when configured).
    pub fn new(cfg: DetectorConfig) -> Result<Live, String> {
        let meta = |what: &str| TagMeta::new(HEALTH_DEVICE, format!("detector.{}.{what}", cfg.name), None);
        let index = cfg.tags.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
        let window = cfg.row_window.as_nanos().min(i64::MAX as u128) as i64;
        Ok(Live {
            rows: RowAssembler::new(cfg.tags.len(), window),
            index,
            score: meta("score"),
            anomaly: meta("anomaly"),
            confidence: meta("confidence"),
            det: Detector::build(cfg)?,
            in_alarm: false,
            fitting_logged: false,
        })
    }

    /// One committed sample; returns the output samples it caused.
    pub fn on_sample(&mut self, s: &Sample, now: Timestamp) -> Vec<Sample> {
        if &*s.meta.device == HEALTH_DEVICE {
            return Vec::new();
        }
        let Some(&i) = self.index.get(&s.meta.path()) else { return Vec::new() };
        let value = if s.quality == Quality::Bad { None } else { s.value.as_f64() };
        let rows = self.rows.offer(i, s.ts.0, value);
        rows.into_iter().flat_map(|r| self.on_row(r, now)).collect()
    }

    /// Closes a row whose window has passed (call now and then).
    pub fn on_tick(&mut self, now: Timestamp) -> Vec<Sample> {
        match self.rows.flush(now.0) {
            Some(r) => self.on_row(r, now),
            None => Vec::new(),
        }
    }

    fn on_row(&mut self, row: Row, now: Timestamp) -> Vec<Sample> {
        let name = self.det.config().name.clone();
        let ts = Timestamp(row.ts);
        match self.det.push(row.ts, &row.values) {
            Step::Fitting => {
                if !self.fitting_logged {
                    self.fitting_logged = true;
                    tracing::info!(detector = %name, fit = ?self.det.config().fit, "detector fitting its model");
                }
                Vec::new()
            }
            Step::FitFailed(e) => {
                tracing::warn!(detector = %name, "detector fit failed ({e}); fitting again on the next rows");
                self.fitting_logged = false;
                Vec::new()
            }
            Step::Missing(i) => {
                let reason: Arc<str> = format!("input_bad: {}", self.det.config().tags[i]).into();
                [&self.score, &self.anomaly, &self.confidence]
                    .into_iter()
                    .map(|m| Sample { recv_ts: now, ..Sample::bad(m.clone(), reason.clone(), ts) })
                    .collect()
            }
            Step::Fitted(n, o) => {
                tracing::info!(detector = %name, rows = n, "detector fitted; scoring");
                self.emit(o, ts, now)
            }
            Step::Scored(o) => self.emit(o, ts, now),
        }
    }

    fn emit(&mut self, o: Output, ts: Timestamp, now: Timestamp) -> Vec<Sample> {
        if o.anomaly != self.in_alarm {
            self.in_alarm = o.anomaly;
            let name = &self.det.config().name;
            if o.anomaly {
                tracing::warn!(detector = %name, score = o.score, confidence = o.confidence, "anomaly: in");
            } else {
                tracing::info!(detector = %name, score = o.score, confidence = o.confidence, "anomaly: out");
            }
        }
        let good = |m: &Arc<TagMeta>, v: Value| Sample { recv_ts: now, ..Sample::good(m.clone(), v, ts) };
        vec![
            good(&self.score, Value::F64(o.score)),
            good(&self.anomaly, Value::Bool(o.anomaly)),
            good(&self.confidence, Value::F64(o.confidence)),
        ]
    }
}

/// Committed samples read per query.
const BATCH: usize = 2000;

/// Starts one task per detector; each ends when `stop` is cancelled.
pub fn spawn_all(
    cfgs: Vec<DetectorConfig>,
    reader: &Reader,
    committed: &watch::Receiver<u64>,
    ingest: Arc<Ingest>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for cfg in cfgs {
        let name = cfg.name.clone();
        let live = Live::new(cfg).map_err(|e| anyhow::anyhow!("detector {name:?}: {e}"))?;
        tasks.push(tokio::spawn(run(live, reader.clone(), committed.clone(), ingest.clone(), stop.clone())));
    }
    Ok(tasks)
}

async fn run(mut live: Live, reader: Reader, mut committed: watch::Receiver<u64>, ingest: Arc<Ingest>, stop: CancellationToken) {
    let mut after = *committed.borrow_and_update();
    let mut last_warn = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = committed.changed() => if r.is_err() { return },
            _ = tick.tick() => {
                let out = live.on_tick(Timestamp::now());
                ingest.push_all(out).await;
                continue;
            }
        }
        let upto = *committed.borrow_and_update();
        while after < upto {
            let batch = match reader.read(after, upto, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    // Retried on the next commit; logged at most every 10 s.
                    if last_warn.is_none_or(|t: std::time::Instant| t.elapsed() > Duration::from_secs(10)) {
                        last_warn = Some(std::time::Instant::now());
                        tracing::warn!("detector cannot read the buffer: {e:#}");
                    }
                    break;
                }
            };
            let Some(last) = batch.last() else {
                // Rows below `upto` were removed by retention before we read them.
                after = upto;
                break;
            };
            after = last.seq;
            let now = Timestamp::now();
            let out: Vec<Sample> = batch.iter().flat_map(|s| live.on_sample(s, now)).collect();
            ingest.push_all(out).await;
        }
    }
}
