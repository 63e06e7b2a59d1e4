//! `relais detect evaluate`: replays labelled CSV files through the same
//! row assembler and detector as the daemon, one fresh detector per file
//! (fitted on the file's first rows by the configured policy), and scores the
//! flags against a label column with [`super::metrics`].
//!
//! Reading: the `csv` crate, delimiter found by [`crate::parse::csv::detect_delimiter`],
//! numbers by [`crate::parse::number::parse_number`] (decimal point `.`),
//! timestamps by [`crate::parse::timestamp::TsSpec`] (naive times as UTC:
//! only differences matter here). A watched tag `device/tag` reads the
//! column named `tag` (or the whole path). An unreadable cell is a missing
//! value (the row is not scored, and counted); an unreadable timestamp or
//! label is an error naming the file, line and column.

use std::io::Write;
use std::path::Path;

use super::config::DetectorConfig;
use super::detector::{Detector, Step};
use super::metrics::{Confusion, Delays, changepoint_delays};
use super::rows::RowAssembler;
use crate::parse::timestamp::TsSpec;

/// What to evaluate against.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Label column (0 normal, anything else anomalous), e.g. `anomaly`.
    pub label: String,
    /// Changepoint label column, used when present in a file (`changepoint`).
    pub changepoint: String,
    /// Timestamp column (`datetime`).
    pub time_column: String,
    /// A file without the label column is normal throughout (e.g. SKAB's
    /// anomaly-free run); otherwise such a file is an error.
    pub unlabelled_normal: bool,
}

/// The outcome of one file.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// File name as given.
    pub file: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows used for the fit.
    pub fit_rows: u64,
    /// Rows with a missing input (not scored).
    pub missing: u64,
    /// Scored rows against the label.
    pub confusion: Confusion,
    /// Changepoint delays, when the file has the changepoint column.
    pub delays: Option<Delays>,
    /// (score, label) of every scored row, for threshold trade-offs.
    pub scores: Vec<(f64, bool)>,
}

/// One line of `--out`: `file,datetime,score,anomaly_pred,confidence,<label>`.
pub type PredSink<'a> = Option<&'a mut csv::Writer<Box<dyn Write>>>;

fn num(cell: &str) -> Option<f64> {
    crate::parse::number::parse_number(cell, '.').ok().and_then(|v| v.as_f64()).filter(|v| v.is_finite())
}

type Reader = csv::Reader<std::io::Cursor<Vec<u8>>>;

/// Opens a CSV file: its name, header and record reader.
fn open(path: &Path) -> Result<(String, Vec<String>, Reader), String> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let first = String::from_utf8_lossy(&text[..text.len().min(4096)]).lines().next().unwrap_or("").to_string();
    let delim = crate::parse::csv::detect_delimiter(first.trim_start_matches('\u{feff}'));
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).trim(csv::Trim::All).from_reader(std::io::Cursor::new(text));
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("{name}: cannot read the header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    Ok((name, header, rdr))
}

/// The column of each watched tag: `tag` of `device/tag`, or the whole path.
fn tag_columns(cfg: &DetectorConfig, header: &[String], name: &str) -> Result<Vec<usize>, String> {
    let col = |c: &str| header.iter().position(|h| h == c);
    cfg.tags
        .iter()
        .map(|t| {
            let short = t.split_once('/').map_or(t.as_str(), |(_, tag)| tag);
            col(short)
                .or_else(|| col(t))
                .ok_or_else(|| format!("{name}: no column {short:?} (or {t:?}) for watched tag {t:?} in [{}]", header.join(", ")))
        })
        .collect()
}

/// Replays a CSV file's rows (through the row assembler) into `on_row(ts, values)`.
pub fn replay(cfg: &DetectorConfig, path: &Path, time_column: &str, on_row: &mut dyn FnMut(i64, &[f64])) -> Result<(), String> {
    let (name, header, mut rdr) = open(path)?;
    let ts_col = header
        .iter()
        .position(|h| h == time_column)
        .ok_or_else(|| format!("{name}: timestamp column {time_column:?} is not in the header"))?;
    let tag_cols = tag_columns(cfg, &header, &name)?;
    let mut rows = RowAssembler::new(tag_cols.len(), cfg.row_window.as_nanos().min(i64::MAX as u128) as i64);
    let spec = TsSpec { timezone: Some(chrono_tz::UTC), ..TsSpec::default() };
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("{name}: {e}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        let ts =
            spec.parse_text(rec.get(ts_col).unwrap_or("")).map_err(|e| format!("{name}: line {line}, column {time_column:?}: {e}"))?.ts.0;
        for (i, &c) in tag_cols.iter().enumerate() {
            for row in rows.offer(i, ts, num(rec.get(c).unwrap_or(""))) {
                on_row(row.ts, &row.values);
            }
        }
    }
    Ok(())
}

/// Evaluates one file with a fresh detector built from `cfg`.
pub fn evaluate_file(cfg: &DetectorConfig, path: &Path, opts: &EvalOptions, mut out: PredSink<'_>) -> Result<FileResult, String> {
    let (name, header, mut rdr) = open(path)?;
    let col = |c: &str| header.iter().position(|h| h == c);
    let need =
        |c: &str, what: &str| col(c).ok_or_else(|| format!("{name}: {what} column {c:?} is not in the header [{}]", header.join(", ")));
    let ts_col = need(&opts.time_column, "timestamp")?;
    let label_col = match col(&opts.label) {
        None if opts.unlabelled_normal => None,
        _ => Some(need(&opts.label, "label")?),
    };
    let cp_col = col(&opts.changepoint);
    let tag_cols = tag_columns(cfg, &header, &name)?;
    let mut det = Detector::build(cfg.clone())?;
    let mut rows = RowAssembler::new(tag_cols.len(), cfg.row_window.as_nanos().min(i64::MAX as u128) as i64);
    let spec = TsSpec { timezone: Some(chrono_tz::UTC), ..TsSpec::default() };
    let mut r = FileResult {
        file: name.clone(),
        rows: 0,
        fit_rows: 0,
        missing: 0,
        confusion: Confusion::default(),
        delays: None,
        scores: Vec::new(),
    };
    let (mut ts_scored, mut flags, mut cps) = (Vec::new(), Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("{name}: {e}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        let cell = |i: usize| rec.get(i).unwrap_or("");
        let ts = spec.parse_text(cell(ts_col)).map_err(|e| format!("{name}: line {line}, column {:?}: {e}", opts.time_column))?.ts.0;
        let label = match label_col {
            Some(c) => num(cell(c))
                .ok_or_else(|| format!("{name}: line {line}, column {:?}: {:?} is not a label (0 or 1)", opts.label, cell(c)))?,
            None => 0.0,
        };
        let cp = cp_col.map(|c| num(cell(c)).is_some_and(|v| v != 0.0));
        r.rows += 1;
        let mut closed = Vec::new();
        for (i, &c) in tag_cols.iter().enumerate() {
            closed.extend(rows.offer(i, ts, num(cell(c))));
        }
        for row in closed {
            let o = match det.push(row.ts, &row.values) {
                Step::Fitting => {
                    r.fit_rows += 1;
                    continue;
                }
                Step::Missing(_) => {
                    r.missing += 1;
                    continue;
                }
                Step::FitFailed(e) => return Err(format!("{name}: line {line}: the fit failed: {e}")),
                Step::Fitted(_, o) | Step::Scored(o) => o,
            };
            r.confusion.add(o.anomaly, label != 0.0);
            r.scores.push((o.score, label != 0.0));
            ts_scored.push(row.ts);
            flags.push(o.anomaly);
            cps.push(cp.unwrap_or(false));
            if let Some(w) = out.as_deref_mut() {
                let pred = if o.anomaly { "1" } else { "0" };
                w.write_record([
                    name.as_str(),
                    cell(ts_col),
                    &o.score.to_string(),
                    pred,
                    &o.confidence.to_string(),
                    if label != 0.0 { "1" } else { "0" },
                ])
                .map_err(|e| format!("--out: {e}"))?;
            }
        }
    }
    if cp_col.is_some() {
        r.delays = Some(changepoint_delays(&ts_scored, &flags, &cps));
    }
    Ok(r)
}

/// The per-file and total table printed by `relais detect evaluate`.
pub fn report(results: &[FileResult]) -> String {
    let mut s = format!(
        "{:<36} {:>6} {:>5} {:>6} {:>9} {:>7} {:>6} {:>6} {:>6} {:>8} {:>6}\n",
        "file", "rows", "fit", "scored", "precision", "recall", "F1", "FAR", "MAR", "ADD s", "cp"
    );
    let mut total = Confusion::default();
    let mut delays = Delays::default();
    let mut any_cp = false;
    let (mut rows, mut fit) = (0, 0);
    for r in results {
        total.merge(&r.confusion);
        if let Some(d) = &r.delays {
            delays.merge(d);
            any_cp = true;
        }
        rows += r.rows;
        fit += r.fit_rows;
        let file = Path::new(&r.file).file_name().map_or(r.file.clone(), |f| f.to_string_lossy().into_owned());
        s += &line(&file, r.rows, r.fit_rows, &r.confusion, r.delays.as_ref());
    }
    s += &line("TOTAL", rows, fit, &total, any_cp.then_some(&delays));
    s
}

fn line(file: &str, rows: u64, fit: u64, c: &Confusion, d: Option<&Delays>) -> String {
    let add = d.and_then(Delays::average).map_or("-".to_string(), |a| format!("{a:.1}"));
    let cp = d.map_or("-".to_string(), |d| format!("{}/{}", d.detected.len(), d.detected.len() as u64 + d.missed));
    format!(
        "{:<36} {:>6} {:>5} {:>6} {:>9.3} {:>7.3} {:>6.3} {:>6.3} {:>6.3} {:>8} {:>6}\n",
        file,
        rows,
        fit,
        c.rows(),
        c.precision(),
        c.recall(),
        c.f1(),
        c.far(),
        c.mar(),
        add,
        cp
    )
}

/// Precision/recall trade-off over all scored rows at other thresholds.
pub fn tradeoff(results: &[FileResult], thresholds: &[f64]) -> String {
    let mut s = format!("{:>9} {:>9} {:>7} {:>6} {:>6} {:>6}\n", "threshold", "precision", "recall", "F1", "FAR", "MAR");
    for &t in thresholds {
        let mut c = Confusion::default();
        for r in results {
            for &(score, label) in &r.scores {
                c.add(score > t, label);
            }
        }
        s += &format!("{:>9} {:>9.3} {:>7.3} {:>6.3} {:>6.3} {:>6.3}\n", t, c.precision(), c.recall(), c.f1(), c.far(), c.mar());
    }
    s
}
