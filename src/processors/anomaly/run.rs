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
//! scored with a made-up value. Crossing into the anomaly state emits the
//! event `detector.anomaly` (warning), crossing out `detector.normal` (info),
//! source `rule` named after the detector, with the score, confidence,
//! threshold and row time in `details`; both are logged too.
//!
//! Invariants: samples come from the committed-data tap (a detector never
//! sees data that could still be lost), in `seq` order; a detector starts
//! with what is committed after the gateway starts and fits again after a restart
//! (unless it loads a saved model); it reads no samples of its own device
//! `_relais`, so it never feeds on its own output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::DetectorConfig;
use super::detector::{Detector, Output, Step};
use super::rows::{Row, RowAssembler};
use crate::buffer::tap::{Tap, TapSubscription};
use crate::ingest::{Events, Ingest};
use crate::model::{Event, EventSource, Quality, Record, Sample, Severity, TagMeta, Timestamp, Value};
use crate::names::HEALTH_DEVICE;

/// One detector fed sample by sample (pure apart from the clock it is given).
pub struct Live {
    det: Detector,
    rows: RowAssembler,
    /// device → tag → input index (looked up by `&str`, no allocation per sample).
    index: HashMap<String, HashMap<String, usize>>,
    score: Arc<TagMeta>,
    anomaly: Arc<TagMeta>,
    confidence: Arc<TagMeta>,
    in_alarm: bool,
    fitting_logged: bool,
    events: Vec<Event>,
    /// Gateway time when the open row got its first sample.
    opened: Option<Timestamp>,
    window: i64,
}

impl Live {
    /// Builds the detector (loading its model file when configured).
    pub fn new(cfg: DetectorConfig) -> Result<Live, String> {
        let meta = |what: &str| TagMeta::new(HEALTH_DEVICE, format!("detector.{}.{what}", cfg.name), None);
        let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, t) in cfg.tags.iter().enumerate() {
            let (d, tag) = t.split_once('/').unwrap_or((t.as_str(), ""));
            index.entry(d.to_string()).or_default().insert(tag.to_string(), i);
        }
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
            events: Vec::new(),
            opened: None,
            window,
        })
    }

    /// The detector's name.
    pub fn name(&self) -> &str {
        &self.det.config().name
    }

    /// The events caused since the last call (`detector.anomaly` on crossing
    /// in, `detector.normal` on crossing out).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// One committed sample; returns the output samples it caused.
    pub fn on_sample(&mut self, s: &Sample, now: Timestamp) -> Vec<Sample> {
        if &*s.meta.device == HEALTH_DEVICE {
            return Vec::new();
        }
        let Some(&i) = self.index.get(&*s.meta.device).and_then(|t| t.get(&*s.meta.tag)) else { return Vec::new() };
        let value = if s.quality == Quality::Bad { None } else { s.value.as_f64() };
        let rows = self.rows.offer(i, s.ts.0, value);
        if !rows.is_empty() || self.opened.is_none() {
            self.opened = self.rows.is_open().then_some(now);
        }
        rows.into_iter().flat_map(|r| self.on_row(r, now)).collect()
    }

    /// Closes the open row once `row_window` has passed on the gateway's
    /// clock since its first sample arrived (call now and then).
    pub fn on_tick(&mut self, now: Timestamp) -> Vec<Sample> {
        match self.opened {
            Some(t) if now.0.saturating_sub(t.0) >= self.window => {
                self.opened = None;
                match self.rows.close_open() {
                    Some(r) => self.on_row(r, now),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
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
            let name = self.det.config().name.clone();
            let (kind, severity, msg) = if o.anomaly {
                tracing::warn!(detector = %name, score = o.score, confidence = o.confidence, "anomaly: in");
                (
                    "detector.anomaly",
                    Severity::Warning,
                    format!("detector {name}: anomaly (score {:.2}, confidence {:.2})", o.score, o.confidence),
                )
            } else {
                tracing::info!(detector = %name, score = o.score, confidence = o.confidence, "anomaly: out");
                (
                    "detector.normal",
                    Severity::Info,
                    format!("detector {name}: back to normal (score {:.2}, confidence {:.2})", o.score, o.confidence),
                )
            };
            let mut e = Event::new(kind, severity, EventSource::Rule(name.as_str().into()), msg).with_details(serde_json::json!({
                "score": o.score,
                "confidence": o.confidence,
                "threshold": self.det.config().threshold,
                "row_ts": crate::model::format_rfc3339(ts),
            }));
            e.ts = ts;
            self.events.push(e);
        }
        let good = |m: &Arc<TagMeta>, v: Value| Sample { recv_ts: now, ..Sample::good(m.clone(), v, ts) };
        vec![
            good(&self.score, Value::F64(o.score)),
            good(&self.anomaly, Value::Bool(o.anomaly)),
            good(&self.confidence, Value::F64(o.confidence)),
        ]
    }
}

/// Starts one task per detector on the committed-data tap; each ends when
/// `stop` is cancelled or the buffer closes. Events go to `events` (none
/// under `relais import`).
pub fn spawn_all(
    cfgs: Vec<DetectorConfig>,
    tap: &Arc<Tap>,
    ingest: Arc<Ingest>,
    events: Option<Events>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for cfg in cfgs {
        let name = cfg.name.clone();
        let live = Live::new(cfg).map_err(|e| anyhow::anyhow!("detector {name:?}: {e}"))?;
        // Subscribed before any source starts: no row of the fit is missed.
        let sub = tap.subscribe();
        tasks.push(tokio::spawn(run(live, sub, ingest.clone(), events.clone(), stop.clone())));
    }
    Ok(tasks)
}

async fn run(mut live: Live, mut sub: TapSubscription, ingest: Arc<Ingest>, events: Option<Events>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            t = sub.recv() => match t { Some(t) => t, None => return },
            _ = tick.tick() => {
                let out = live.on_tick(Timestamp::now());
                ingest.push_all(out).await;
                continue;
            }
        };
        if got.missed_samples > 0 {
            // The detector fell more than the tap's memory behind: its rows
            // around the gap are built from what it saw (logged, never silent).
            tracing::warn!(detector = %live.name(), missed = got.missed_samples, range = ?got.missed_range, "detector missed committed samples");
        }
        let now = Timestamp::now();
        let mut out = Vec::new();
        for s in got.records().filter_map(Record::as_sample) {
            out.extend(live.on_sample(s, now));
        }
        for e in live.take_events() {
            if let Some(ev) = &events {
                ev.emit(e);
            }
        }
        ingest.push_all(out).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::processors::anomaly::{FitPolicy, Method};

    fn live() -> Live {
        Live::new(DetectorConfig {
            name: "p".into(),
            tags: vec!["pump/a".into(), "pump/b".into()],
            delta: vec![false, false],
            method: Method::ZScore { window: 4, level: 0.999 },
            fit: FitPolicy::Rows(6),
            smoothing: 1,
            threshold: 1.0,
            row_window: Duration::from_secs(1),
        })
        .unwrap()
    }

    fn s(meta: &Arc<TagMeta>, v: Option<f64>, ts: i64) -> Sample {
        match v {
            Some(v) => Sample::good(meta.clone(), Value::F64(v), Timestamp(ts)),
            None => Sample::bad(meta.clone(), "timeout: no response".into(), Timestamp(ts)),
        }
    }

    #[test]
    fn rows_from_samples_bad_inputs_own_samples_and_events() {
        let mut l = live();
        let (a, b) = (TagMeta::new("pump", "a", None), TagMeta::new("pump", "b", None));
        let other = TagMeta::new("press", "a", None);
        let own = TagMeta::new(HEALTH_DEVICE, "detector.p.score", None);
        let now = Timestamp(0);
        let sec = 1_000_000_000;
        let row = |l: &mut Live, i: i64, va: Option<f64>, vb: f64| {
            let mut out = l.on_sample(&s(&other, Some(99.0), i * sec), now);
            out.extend(l.on_sample(&s(&own, Some(99.0), i * sec), now));
            out.extend(l.on_sample(&s(&a, va, i * sec), now));
            out.extend(l.on_sample(&s(&b, Some(vb), i * sec), now));
            out
        };
        for i in 0..6 {
            assert!(row(&mut l, i, Some(10.0 + (i % 2) as f64), 5.0 + (i % 2) as f64).is_empty(), "fitting: no output");
        }
        let out = row(&mut l, 6, Some(10.0), 5.0);
        assert_eq!(out.len(), 3);
        assert_eq!((&*out[0].meta.device, &*out[0].meta.tag), ("_relais", "detector.p.score"));
        assert_eq!(out[1].value, Value::Bool(false));
        assert_eq!(out[0].ts, Timestamp(6 * sec), "the row's time");
        assert!(l.take_events().is_empty());
        // A spike: flagged, one detector.anomaly event.
        let out = row(&mut l, 7, Some(30.0), 5.0);
        assert_eq!(out[1].value, Value::Bool(true));
        let ev = l.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!((&*ev[0].kind, ev[0].severity, ev[0].ts), ("detector.anomaly", Severity::Warning, Timestamp(7 * sec)));
        // A bad input: three bad outputs naming the tag, no score, no event.
        let out = row(&mut l, 8, None, 5.0);
        assert_eq!(out.len(), 3);
        for o in &out {
            assert_eq!((o.quality, o.reason.as_deref()), (Quality::Bad, Some("input_bad: pump/a")));
            assert_eq!(o.value, Value::Null);
        }
        assert!(l.take_events().is_empty());
        // Back to normal values: the flag falls, one detector.normal event.
        let out = row(&mut l, 9, Some(10.0), 5.0);
        assert_eq!(out[1].value, Value::Bool(false));
        let ev = l.take_events();
        assert_eq!((ev.len(), &*ev[0].kind, ev[0].severity), (1, "detector.normal", Severity::Info));
        // Only tag a updates: the row closes when row_window (1 s) has passed on the gateway's
        // clock since its first sample arrived, whatever the samples' own timestamps say.
        assert!(l.on_sample(&s(&a, Some(10.0), 1_000 * sec), Timestamp(50 * sec)).is_empty());
        assert!(l.on_tick(Timestamp(50 * sec + sec / 2)).is_empty(), "window not passed yet");
        let out = l.on_tick(Timestamp(51 * sec));
        assert_eq!(out.len(), 3, "closed with tag b's latest value");
        assert_eq!(out[0].ts, Timestamp(1_000 * sec));
        assert!(l.on_tick(Timestamp(60 * sec)).is_empty(), "nothing open any more");
    }
}
