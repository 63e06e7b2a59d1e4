//! One detector, row by row (pure): features, fitting policy, score, flag and
//! confidence. The daemon and `relais detect evaluate` both drive this type,
//! row by row, through [`super::rows::RowAssembler`].
//!
//! Invariants: no output before the model is fitted (fit rows are never
//! scored against a model fitted on themselves, as in SKAB's protocol);
//! a row with a missing input is reported as such and changes no state;
//! the confidence is a pure function of the score and the calibration.

use serde::{Deserialize, Serialize};

use super::config::{DetectorConfig, FitPolicy, Method};
use super::features::Features;
use super::pca::{FitError, PcaModel};
use super::zscore::RollingZ;

/// Calibration of the confidence from the fit-window scores.
///
/// confidence(s) = 1 / (1 + exp(−(ln s − ln threshold) / τ)): 0.5 on the
/// threshold; τ is set so that the 99th percentile of the fit rows' own
/// scores maps to 0.01 (and, symmetrically in log score, threshold² / p99
/// maps to 0.99). τ is kept within [0.05, 1].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    /// The flag threshold (score units).
    pub threshold: f64,
    /// 99th percentile of the fit rows' scores.
    pub fit_p99: f64,
    /// Log-score scale τ.
    pub tau: f64,
}

impl Calibration {
    /// From the fit rows' scores and the threshold.
    pub fn new(threshold: f64, fit_scores: &mut [f64]) -> Calibration {
        fit_scores.sort_by(f64::total_cmp);
        let p99 = if fit_scores.is_empty() { threshold / 2.0 } else { fit_scores[((fit_scores.len() - 1) as f64 * 0.99).round() as usize] };
        let tau = if p99 > 0.0 && p99 < threshold { (threshold / p99).ln() / 99f64.ln() } else { 1.0 };
        Calibration { threshold, fit_p99: p99, tau: tau.clamp(0.05, 1.0) }
    }

    /// The confidence in [0, 1] that a row with this score is anomalous.
    pub fn confidence(&self, score: f64) -> f64 {
        if score <= 0.0 {
            return 0.0;
        }
        let x = (score.ln() - self.threshold.ln()) / self.tau;
        1.0 / (1.0 + (-x).exp())
    }
}

/// A saved model (`relais detect fit`, loaded by `fit = { model = "…" }`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedModel {
    /// Format version (1).
    pub version: u32,
    /// Detector name it was fitted for.
    pub detector: String,
    /// Watched tags, in the model's order.
    pub tags: Vec<String>,
    /// The PCA model.
    pub pca: PcaModel,
    /// 99th percentile of the fit rows' scores (for the confidence).
    pub fit_p99: f64,
}

/// One scored row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    /// Anomaly score in units of the control limit (1 = on the limit).
    pub score: f64,
    /// score > threshold.
    pub anomaly: bool,
    /// Confidence in [0, 1] that the row is anomalous (see [`Calibration`]).
    pub confidence: f64,
}

/// What one row did.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Kept for the fit.
    Fitting,
    /// The model was fitted (on this many rows) before this row, which was scored.
    Fitted(usize, Output),
    /// Scored.
    Scored(Output),
    /// Input i was missing: not scored, no state changed.
    Missing(usize),
    /// The fit failed; fitting starts again from the next row.
    FitFailed(FitError),
}

enum Scorer {
    Pca { model: PcaModel, z: Vec<f64>, t: Vec<f64> },
    ZScore(RollingZ),
}

enum State {
    Fitting { rows: Vec<Vec<f64>>, first_ts: Option<i64> },
    Ready { scorer: Scorer, calib: Calibration },
}

/// A streaming detector.
pub struct Detector {
    cfg: DetectorConfig,
    features: Features,
    state: State,
}

impl Detector {
    /// A detector by its fitting policy: fits on its first rows (`Rows`,
    /// `Window`) or loads its model file (`Model`; errors name the file).
    pub fn build(cfg: DetectorConfig) -> Result<Detector, String> {
        match cfg.fit.clone() {
            FitPolicy::Model(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read the model: {e}", path.display()))?;
                let saved: SavedModel =
                    serde_json::from_str(&text).map_err(|e| format!("{}: not a relais detector model: {e}", path.display()))?;
                Detector::from_saved(cfg, saved).map_err(|e| format!("{}: {e}", path.display()))
            }
            _ => Ok(Detector::new(cfg)),
        }
    }

    fn new(cfg: DetectorConfig) -> Detector {
        Detector { features: Features::new(&cfg.delta, cfg.smoothing), state: State::Fitting { rows: Vec::new(), first_ts: None }, cfg }
    }

    /// A detector using a saved PCA model (its tags must match the config's).
    pub fn from_saved(cfg: DetectorConfig, saved: SavedModel) -> Result<Detector, String> {
        if saved.tags != cfg.tags {
            return Err(format!("the model was fitted on tags {:?}, the detector watches {:?}", saved.tags, cfg.tags));
        }
        let mut d = Detector::new(cfg);
        let calib = Calibration::new(d.cfg.threshold, &mut [saved.fit_p99]);
        let (z, t) = (vec![0.0; saved.pca.inputs()], vec![0.0; saved.pca.k]);
        d.state = State::Ready { scorer: Scorer::Pca { model: saved.pca, z, t }, calib };
        Ok(d)
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// The fitted PCA model with its fit-score p99 (for `relais detect fit`).
    pub fn saved_model(&self) -> Option<SavedModel> {
        match &self.state {
            State::Ready { scorer: Scorer::Pca { model, .. }, calib } => Some(SavedModel {
                version: 1,
                detector: self.cfg.name.clone(),
                tags: self.cfg.tags.clone(),
                pca: model.clone(),
                fit_p99: calib.fit_p99,
            }),
            _ => None,
        }
    }

    /// Feeds one row: timestamp (ns since the epoch), one value per watched
    /// tag in config order (NaN = missing).
    pub fn push(&mut self, ts: i64, x: &[f64]) -> Step {
        let f = match self.features.push(x) {
            Ok(f) => f,
            Err(i) => return Step::Missing(i),
        };
        match &mut self.state {
            State::Ready { scorer, calib } => match score(scorer, f) {
                Some(s) => Step::Scored(output(s, calib)),
                None => Step::Fitting,
            },
            State::Fitting { rows, first_ts } => {
                let first = *first_ts.get_or_insert(ts);
                let done = match self.cfg.fit {
                    FitPolicy::Rows(n) => rows.len() >= n,
                    FitPolicy::Window(w) => (ts - first) as u128 >= w.as_nanos() && rows.len() > x.len() + 1,
                    // `build` loads a saved model: a detector with this policy starts Ready.
                    FitPolicy::Model(_) => true,
                };
                if !done {
                    rows.push(f.to_vec());
                    return Step::Fitting;
                }
                let rows = std::mem::take(rows);
                match fit(&self.cfg, &rows) {
                    Ok((mut scorer, calib)) => {
                        let n = rows.len();
                        let s = score(&mut scorer, f).unwrap_or(0.0);
                        self.state = State::Ready { scorer, calib };
                        Step::Fitted(n, output(s, &calib))
                    }
                    Err(e) => {
                        self.state = State::Fitting { rows: Vec::new(), first_ts: None };
                        Step::FitFailed(e)
                    }
                }
            }
        }
    }
}

fn output(score: f64, calib: &Calibration) -> Output {
    Output { score, anomaly: score > calib.threshold, confidence: calib.confidence(score) }
}

fn score(scorer: &mut Scorer, f: &[f64]) -> Option<f64> {
    match scorer {
        Scorer::Pca { model, z, t } => Some(model.score(model.stats(f, z, t))),
        Scorer::ZScore(r) => r.push(f),
    }
}

/// Fits on the feature rows and calibrates the confidence on their scores.
fn fit(cfg: &DetectorConfig, rows: &[Vec<f64>]) -> Result<(Scorer, Calibration), FitError> {
    let d = cfg.tags.len();
    match cfg.method {
        Method::Pca { variance, level } => {
            let model = PcaModel::fit(rows, variance, level)?;
            let (mut z, mut t) = (vec![0.0; d], vec![0.0; model.k]);
            let mut scores: Vec<f64> = rows.iter().map(|r| model.score(model.stats(r, &mut z, &mut t))).collect();
            let calib = Calibration::new(cfg.threshold, &mut scores);
            Ok((Scorer::Pca { model, z, t }, calib))
        }
        Method::ZScore { window, level } => {
            if rows.len() < window + 2 {
                return Err(FitError::TooFewRows { rows: rows.len(), inputs: window + 2 });
            }
            let mut r = RollingZ::new(d, window, level);
            let mut scores: Vec<f64> = rows.iter().filter_map(|row| r.push(row)).collect();
            let calib = Calibration::new(cfg.threshold, &mut scores);
            Ok((Scorer::ZScore(r), calib))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg(fit: FitPolicy) -> DetectorConfig {
        DetectorConfig {
            name: "t".into(),
            tags: vec!["d/a".into(), "d/b".into(), "d/c".into()],
            delta: vec![false, false, true],
            method: Method::Pca { variance: 0.85, level: 0.999 },
            fit,
            smoothing: 3,
            threshold: 1.5,
            row_window: Duration::from_secs(1),
        }
    }

    fn row(i: usize) -> Vec<f64> {
        let x = (i as f64 * 0.7).sin() + (i as f64 * 0.13).cos() * 0.1;
        vec![x, 2.0 * x + (i as f64 * 1.3).sin() * 0.2, i as f64 * 0.01 + (i as f64 * 2.1).sin() * 0.05]
    }

    #[test]
    fn calibration_is_half_on_the_threshold_and_one_percent_at_the_fit_p99() {
        let mut scores: Vec<f64> = (1..=100).map(|i| f64::from(i) / 100.0).collect();
        let c = Calibration::new(2.0, &mut scores);
        assert_eq!(c.fit_p99, 0.99);
        assert!((c.confidence(2.0) - 0.5).abs() < 1e-12);
        assert!((c.confidence(0.99) - 0.01).abs() < 1e-9);
        assert!((c.confidence(4.0 / 0.99) - 0.99).abs() < 1e-9, "symmetric in log score");
        assert_eq!(c.confidence(0.0), 0.0);
        assert!(c.confidence(1e9) <= 1.0 && c.confidence(1e9) > 0.999);
    }

    #[test]
    fn rows_policy_fits_on_exactly_n_rows_then_scores_each_row() {
        let mut d = Detector::build(cfg(FitPolicy::Rows(50))).unwrap();
        for i in 0..50 {
            assert_eq!(d.push(i as i64, &row(i)), Step::Fitting, "row {i}");
        }
        assert!(matches!(d.push(50, &row(50)), Step::Fitted(50, _)));
        assert!(matches!(d.push(51, &row(51)), Step::Scored(_)));
        assert_eq!(d.push(52, &[1.0, f64::NAN, 0.0]), Step::Missing(1));
    }

    #[test]
    fn window_policy_fits_on_the_rows_of_the_window() {
        let s = 1_000_000_000i64;
        let mut d = Detector::build(cfg(FitPolicy::Window(Duration::from_secs(60)))).unwrap();
        // One row every 2 s: rows at 0..58 s are in the first minute (30 rows).
        for i in 0..30 {
            assert_eq!(d.push(i * 2 * s, &row(i as usize)), Step::Fitting);
        }
        assert!(matches!(d.push(60 * s, &row(30)), Step::Fitted(30, _)));
    }

    #[test]
    fn a_saved_model_scores_like_the_fitted_one() {
        let mut fitted = Detector::build(cfg(FitPolicy::Rows(60))).unwrap();
        let mut saved = None;
        let mut want = Vec::new();
        for i in 0..200 {
            match fitted.push(i as i64, &row(i)) {
                Step::Fitted(_, o) => {
                    saved = fitted.saved_model();
                    want.push(o);
                }
                Step::Scored(o) => want.push(o),
                _ => {}
            }
        }
        let saved = saved.unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, text).unwrap();
        let mut loaded = Detector::build(cfg(FitPolicy::Model(path.clone()))).unwrap();
        let mut got = Vec::new();
        for i in 0..200 {
            match loaded.push(i as i64, &row(i)) {
                Step::Scored(o) => got.push(o),
                other => panic!("row {i}: {other:?}"),
            }
        }
        assert_eq!(&got[60..], &want[..], "rows after the fit score the same");
        // A model for other tags is refused with the file named.
        let mut other = cfg(FitPolicy::Model(path.clone()));
        other.tags[0] = "d/x".into();
        let e = Detector::build(other).err().unwrap();
        assert!(e.contains("m.json") && e.contains("fitted on tags"), "{e}");
    }
}
