//! `[[detector]]`: which tags a detector watches, its method, parameters and
//! fitting policy. Every key is listed in `README.md` beside this file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};

/// A validated `[[detector]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Detector name: the tag level of its output samples (`_relais/detector/<name>/…`).
    pub name: String,
    /// Watched tags as `device/tag` paths, in the order of the model's variables.
    pub tags: Vec<String>,
    /// Per watched tag: watch its change from one row to the next instead of its level.
    pub delta: Vec<bool>,
    /// The scoring method and its parameters.
    pub method: Method,
    /// How the model is fitted.
    pub fit: FitPolicy,
    /// EWMA span of the inputs in rows (1: no smoothing); α = 2 / (span + 1).
    pub smoothing: u32,
    /// Flag a row when its score exceeds this (the score is in units of the control limit).
    pub threshold: f64,
    /// Live rows: a row closes when every watched tag has a fresh value, or this long after its first value.
    pub row_window: Duration,
}

/// A detection method.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// PCA on the standardised inputs: Hotelling's T² in the retained
    /// components and Q (SPE) in the residual, each divided by its control limit
    /// (Jackson & Mudholkar 1979 for Q; the F distribution for T², Tracy et al. 1992).
    Pca {
        /// Fraction of the variance the retained components explain (0 < v < 1).
        variance: f64,
        /// Probability of the control limits (e.g. 0.999).
        level: f64,
    },
    /// Rolling z-score: each input against the mean and standard deviation of
    /// its previous `window` rows; the score is the largest |z| divided by the
    /// two-sided normal limit at `level` (Bonferroni over the inputs).
    ZScore {
        /// Rows in the rolling window.
        window: usize,
        /// Probability of the limit.
        level: f64,
    },
}

/// How and on what the model is fitted.
#[derive(Debug, Clone, PartialEq)]
pub enum FitPolicy {
    /// On the first N rows.
    Rows(usize),
    /// On the rows of the first window of time (by row timestamps).
    Window(Duration),
    /// Loaded from a model file written by `relais detect fit`.
    Model(PathBuf),
}

impl DetectorConfig {
    /// What `relais check` prints: method, tags, fitting policy, outputs.
    pub fn describe(&self) -> String {
        let method = match &self.method {
            Method::Pca { variance, level } => format!("pca T² + Q, {:.0} % variance, limits at p = {level}", variance * 100.0),
            Method::ZScore { window, level } => format!("rolling z-score over {window} rows, limit at p = {level}"),
        };
        let fit = match &self.fit {
            FitPolicy::Rows(n) => format!("fitted on the first {n} rows"),
            FitPolicy::Window(w) => format!("fitted on the first {}", humantime::format_duration(*w)),
            FitPolicy::Model(p) => format!("model {}", p.display()),
        };
        let tags: Vec<String> =
            self.tags.iter().zip(&self.delta).map(|(t, d)| if *d { format!("{t} (change)") } else { t.clone() }).collect();
        format!(
            "detector {} ({method}, smoothing {} rows, threshold {}, {fit})\n  watches {}\n  -> _relais/detector.{}.score, .anomaly, .confidence; events detector.anomaly / detector.normal",
            self.name,
            self.smoothing,
            self.threshold,
            tags.join(", "),
            self.name
        )
    }
}

/// Keys of a `[[detector]]`.
pub const DETECTOR_KEYS: &[&str] =
    &["name", "tags", "delta_tags", "method", "fit", "smoothing", "threshold", "variance", "level", "window", "row_window"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFit {
    rows: Option<Spanned<i64>>,
    window: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
struct RawDetector {
    name: Spanned<String>,
    tags: Spanned<Vec<String>>,
    #[serde(default)]
    delta_tags: Vec<Spanned<String>>,
    method: Option<Spanned<String>>,
    fit: Option<Spanned<RawFit>>,
    smoothing: Option<Spanned<i64>>,
    threshold: Option<Spanned<f64>>,
    variance: Option<Spanned<f64>>,
    level: Option<Spanned<f64>>,
    window: Option<Spanned<i64>>,
    row_window: Option<Spanned<String>>,
}

/// What a gateway configuration acquires, to check watched tags against.
#[derive(Debug, Clone, Default)]
pub struct KnownTags {
    /// `[[device]]` names with their tag names.
    pub devices: Vec<(String, Vec<String>)>,
    /// The `device` of each `[[source]]` (their tags come from the data).
    pub source_devices: Vec<String>,
}

/// Checks one watched tag: an error when its device is a `[[device]]`
/// without that tag (the detector would never score), a warning when no
/// device or source has that name.
fn check_known(diag: &mut Diag<'_>, known: &KnownTags, path: &str, span: std::ops::Range<usize>, key: &str) {
    let Some((dev, tag)) = path.split_once('/') else { return };
    if let Some((_, tags)) = known.devices.iter().find(|(d, _)| d == dev) {
        if !tags.iter().any(|t| t == tag) {
            diag.error(
                span,
                key,
                format!("device {dev:?} has no tag {tag:?} (its tags: {}): the detector would never score", tags.join(", ")),
            );
        }
    } else if !known.source_devices.iter().any(|d| d == dev) {
        diag.warn(span, key, format!("no [[device]] or [[source]] named {dev:?}: its tags get values only if samples of that device arrive in a source's data (a CSV device column, an MQTT topic level)"));
    }
}

/// Reads one `[[detector]]` table; errors go to `diag` under `key`. Relative
/// model paths resolve against `base_dir`. With `known`, watched tags are
/// checked against what the gateway acquires.
pub fn parse_detector(
    mut item: Item<'_>,
    diag: &mut Diag<'_>,
    key: &str,
    base_dir: &Path,
    known: Option<&KnownTags>,
) -> Option<DetectorConfig> {
    reject_unknown_keys(&mut item, DETECTOR_KEYS, diag, key);
    let raw: RawDetector = de_item(item, diag, key)?;
    let before = diag.error_count();
    let name = raw.name.get_ref().clone();
    let key = format!("detector {name:?}");
    let k = |s: &str| format!("{key} / {s}");
    if let Err(e) = crate::names::check(&name) {
        diag.error(raw.name.span(), &k("name"), e);
    }
    let tags = raw.tags.get_ref().clone();
    if tags.is_empty() {
        diag.error(raw.tags.span(), &k("tags"), "at least one tag (\"device/tag\") to watch");
    }
    for (i, t) in tags.iter().enumerate() {
        if !valid_path(t) {
            diag.error(raw.tags.span(), &k("tags"), format!("{t:?} is not a tag path \"device/tag\""));
        } else if tags[..i].contains(t) {
            diag.error(raw.tags.span(), &k("tags"), format!("{t:?} is listed twice"));
        } else if let Some(known) = known {
            // One warning per unknown device, one error per missing tag.
            let dev = t.split_once('/').map_or("", |x| x.0);
            if !tags[..i].iter().any(|o| o.split_once('/').map_or("", |x| x.0) == dev) || known.devices.iter().any(|(d, _)| d == dev) {
                check_known(diag, known, t, raw.tags.span(), &k("tags"));
            }
        }
    }
    let mut delta = vec![false; tags.len()];
    for r in &raw.delta_tags {
        match tags.iter().position(|t| t == r.get_ref()) {
            Some(i) => delta[i] = true,
            None => diag.error(r.span(), &k("delta_tags"), format!("{:?} is not one of the watched `tags`", r.get_ref())),
        }
    }
    let level = in_open_unit(diag, &raw.level, &k("level"), 0.999);
    let method = match raw.method.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("pca", _)) => {
            refuse(diag, raw.window.as_ref().map(Spanned::span), &k("window"), "`window` belongs to method \"zscore\"");
            Method::Pca { variance: in_open_unit(diag, &raw.variance, &k("variance"), 0.85), level }
        }
        Some(("zscore", _)) => {
            refuse(diag, raw.variance.as_ref().map(Spanned::span), &k("variance"), "`variance` belongs to method \"pca\"");
            let window = Reader::new(diag, &key).int(&raw.window, "window", 3..=1_000_000, 60);
            Method::ZScore { window, level }
        }
        Some((other, span)) => {
            diag.error(span, &k("method"), format!("unknown method {other:?}; expected \"pca\" (T² + Q) or \"zscore\""));
            return None;
        }
    };
    let fit = parse_fit(diag, raw.fit.as_ref(), &k("fit"), base_dir, tags.len());
    let smoothing = Reader::new(diag, &key).int(&raw.smoothing, "smoothing", 1..=10_000, 1);
    let threshold = match &raw.threshold {
        None => 1.0,
        Some(t) if t.get_ref().is_finite() && *t.get_ref() > 0.0 => *t.get_ref(),
        Some(t) => {
            diag.error(t.span(), &k("threshold"), "a positive number (in units of the control limit: 1 = on the limit)");
            1.0
        }
    };
    let row_window = Reader::new(diag, &key).nonzero_duration(&raw.row_window, "row_window", Duration::from_secs(1));
    (diag.error_count() == before).then_some(DetectorConfig { name, tags, delta, method, fit, smoothing, threshold, row_window })
}

fn parse_fit(diag: &mut Diag<'_>, fit: Option<&Spanned<RawFit>>, key: &str, base_dir: &Path, d: usize) -> FitPolicy {
    let Some(f) = fit else { return FitPolicy::Rows(400) };
    let r = f.get_ref();
    let set = r.rows.is_some() as u8 + r.window.is_some() as u8 + r.model.is_some() as u8;
    if set != 1 {
        diag.error(f.span(), key, "exactly one of `rows = N`, `window = \"10m\"` or `model = \"FILE\"`");
        return FitPolicy::Rows(400);
    }
    if let Some(n) = &r.rows {
        let min = (d + 2) as i64;
        if *n.get_ref() < min || *n.get_ref() > 10_000_000 {
            diag.error(n.span(), key, format!("rows must be at least {min} (watched tags + 2) and at most 10000000"));
            return FitPolicy::Rows(400);
        }
        return FitPolicy::Rows(*n.get_ref() as usize);
    }
    if let Some(w) = &r.window {
        let fit = Reader::new(diag, key).nonzero_duration(&Some(w.clone()), "window", Duration::ZERO);
        return if fit.is_zero() { FitPolicy::Rows(400) } else { FitPolicy::Window(fit) };
    }
    let m = r.model.as_ref().map(|m| base_dir.join(m.get_ref())).unwrap_or_default();
    FitPolicy::Model(m)
}

fn in_open_unit(diag: &mut Diag<'_>, v: &Option<Spanned<f64>>, key: &str, default: f64) -> f64 {
    match v {
        None => default,
        Some(x) if *x.get_ref() > 0.0 && *x.get_ref() < 1.0 => *x.get_ref(),
        Some(x) => {
            diag.error(x.span(), key, "a fraction strictly between 0 and 1");
            default
        }
    }
}

fn refuse(diag: &mut Diag<'_>, span: Option<std::ops::Range<usize>>, key: &str, msg: &str) {
    if let Some(s) = span {
        diag.error(s, key, msg);
    }
}

/// `device/tag` with two non-empty valid names.
fn valid_path(p: &str) -> bool {
    match p.split_once('/') {
        Some((d, t)) => crate::names::check(d).is_ok() && crate::names::check(t).is_ok(),
        None => false,
    }
}

/// Reads the `[[detector]]` array of a configuration (names must be unique).
pub fn parse_detectors(v: Item<'_>, diag: &mut Diag<'_>, base_dir: &Path, known: Option<&KnownTags>) -> Vec<DetectorConfig> {
    let mut out: Vec<DetectorConfig> = Vec::new();
    for (i, item) in crate::diag::array_items(v, diag, "detector").into_iter().enumerate() {
        let name = crate::diag::peek_str(&item, "name");
        let key = name.as_ref().map_or_else(|| format!("detector #{}", i + 1), |(n, _)| format!("detector {n:?}"));
        if let Some((n, span)) = &name
            && out.iter().any(|d| &d.name == n)
        {
            diag.error(span.clone(), &format!("{key} / name"), "duplicate detector name");
        }
        if let Some(d) = parse_detector(item, diag, &key, base_dir, known) {
            out.push(d);
        }
    }
    out
}

/// Reads every `[[detector]]` of a configuration file, ignoring its other
/// sections (so a gateway configuration and a detector-only file both work).
/// Errors carry the file, line, column and key.
pub fn read_detectors(text: &str, file: &str, base_dir: &Path) -> Result<Vec<DetectorConfig>, crate::diag::ConfigErrors> {
    let mut diag = Diag::new(file, text);
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    for e in &syntax {
        diag.toml(e, "", 0..0);
    }
    let mut out = Vec::new();
    if syntax.is_empty() {
        let span = doc.span();
        for (k, v) in doc.into_inner() {
            if k.get_ref().as_ref() != "detector" {
                continue;
            }
            out.extend(parse_detectors(v, &mut diag, base_dir, None));
        }
        if out.is_empty() && diag.ok() {
            diag.error(span.start..span.start, "detector", "no [[detector]] in this file");
        }
    }
    diag.finish()?;
    Ok(out)
}
