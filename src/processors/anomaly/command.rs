//! `relais detect …`: evaluate a detector on labelled CSV files, or fit and
//! save its model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::config::{DetectorConfig, read_detectors};
use super::detector::{Detector, Step};
use super::evaluate::{EvalOptions, FileResult, evaluate_file, report, tradeoff};

/// `relais detect` subcommands.
#[derive(Subcommand, Debug)]
pub enum DetectCommand {
    /// Replay labelled CSV files through a detector (each fitted on its own first rows) and print precision, recall, F1, FAR, MAR and the changepoint detection delay, per file and in total.
    Evaluate {
        /// Configuration file with [[detector]] (e.g. config/detect-skab.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// The detector to evaluate (default: the only one in the file).
        #[arg(long)]
        detector: Option<String>,
        /// Label column (0 = normal), e.g. `anomaly`.
        #[arg(long)]
        labels: String,
        /// Changepoint label column, used when a file has it.
        #[arg(long, default_value = "changepoint")]
        changepoints: String,
        /// Timestamp column.
        #[arg(long, default_value = "datetime")]
        time_column: String,
        /// Take a file without the label column as normal throughout (e.g. SKAB's anomaly-free run) instead of refusing it.
        #[arg(long)]
        unlabelled_normal: bool,
        /// Write one line per scored row: file,datetime,score,anomaly_pred,confidence,<label>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also print the precision/recall trade-off at these thresholds (comma-separated).
        #[arg(long, value_delimiter = ',')]
        thresholds: Vec<f64>,
        /// CSV files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Fit a PCA detector on a CSV file (by its `fit` rows or window) and save the model as JSON, for `fit = { model = "FILE" }`.
    Fit {
        /// Configuration file with [[detector]].
        #[arg(long, short)]
        config: PathBuf,
        /// The detector (default: the only one in the file).
        #[arg(long)]
        detector: Option<String>,
        /// Timestamp column.
        #[arg(long, default_value = "datetime")]
        time_column: String,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// The CSV file to fit on.
        file: PathBuf,
    },
}

fn pick(config: &Path, name: Option<&str>) -> Result<DetectorConfig, String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: cannot read: {e}", config.display()))?;
    let base = config.parent().unwrap_or(Path::new("."));
    let all = read_detectors(&text, &config.display().to_string(), base).map_err(|e| e.to_string())?;
    match name {
        Some(n) => all.into_iter().find(|d| d.name == n).ok_or_else(|| format!("{}: no [[detector]] named {n:?}", config.display())),
        None if all.len() == 1 => Ok(all.into_iter().next().expect("one")),
        None => Err(format!(
            "{}: {} detectors ({}); choose one with --detector",
            config.display(),
            all.len(),
            all.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Runs a `relais detect` command; exit 0 on success, 2 on a config error, 1 otherwise.
pub fn run(cmd: DetectCommand) -> ExitCode {
    let r = match cmd {
        DetectCommand::Evaluate { config, detector, labels, changepoints, time_column, unlabelled_normal, out, thresholds, files } => {
            let opts = EvalOptions { label: labels, changepoint: changepoints, time_column, unlabelled_normal };
            pick(&config, detector.as_deref())
                .map_err(|e| (e, 2))
                .and_then(|cfg| evaluate(&cfg, &files, &opts, out.as_deref(), &thresholds).map_err(|e| (e, 1)))
        }
        DetectCommand::Fit { config, detector, time_column, out, file } => {
            pick(&config, detector.as_deref()).map_err(|e| (e, 2)).and_then(|cfg| fit(cfg, &file, &time_column, &out).map_err(|e| (e, 1)))
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, code)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

fn evaluate(cfg: &DetectorConfig, files: &[PathBuf], opts: &EvalOptions, out: Option<&Path>, thresholds: &[f64]) -> Result<(), String> {
    let mut writer = match out {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| format!("--out {}: {e}", p.display()))?;
            let mut w = csv::Writer::from_writer(Box::new(std::io::BufWriter::new(f)) as Box<dyn std::io::Write>);
            w.write_record(["file", "datetime", "score", "anomaly_pred", "confidence", opts.label.as_str()])
                .map_err(|e| format!("--out: {e}"))?;
            Some(w)
        }
        None => None,
    };
    let mut results: Vec<FileResult> = Vec::new();
    for f in files {
        results.push(evaluate_file(cfg, f, opts, writer.as_mut())?);
    }
    if let Some(mut w) = writer {
        w.flush().map_err(|e| format!("--out: {e}"))?;
    }
    crate::outln!("detector {:?}: {} file(s), label column {:?}, threshold {}", cfg.name, results.len(), opts.label, cfg.threshold);
    crate::out!("{}", report(&results));
    if !thresholds.is_empty() {
        crate::outln!("\nthreshold trade-off over all scored rows:");
        crate::out!("{}", tradeoff(&results, thresholds));
    }
    let missing: u64 = results.iter().map(|r| r.missing).sum();
    if missing > 0 {
        crate::outln!("\n{missing} row(s) with a missing or unreadable input were not scored");
    }
    Ok(())
}

fn fit(cfg: DetectorConfig, file: &Path, time_column: &str, out: &Path) -> Result<(), String> {
    if !matches!(cfg.method, super::Method::Pca { .. }) {
        return Err(format!("detector {:?}: only method \"pca\" has a model to save", cfg.name));
    }
    let mut det = Detector::build(cfg.clone())?;
    let mut saved = None;
    super::evaluate::replay(&cfg, file, time_column, &mut |ts, values| {
        if saved.is_none()
            && let Step::Fitted(..) = det.push(ts, values)
        {
            saved = det.saved_model();
        }
    })?;
    let saved = saved.ok_or_else(|| format!("{}: not enough rows to fit {:?}", file.display(), cfg.fit))?;
    let json = serde_json::to_string_pretty(&saved).map_err(|e| e.to_string())?;
    std::fs::write(out, json).map_err(|e| format!("{}: {e}", out.display()))?;
    crate::outln!(
        "model of detector {:?} ({} components of {}, fitted on {} rows) written to {}",
        cfg.name,
        saved.pca.k,
        saved.tags.len(),
        saved.pca.n,
        out.display()
    );
    Ok(())
}
