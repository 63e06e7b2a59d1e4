//! `relais import --config FILE PATH...`: a one-shot import of CSV and JSON
//! files into the buffer, forwarded by the configured sinks.
//!
//! An import is identified by the file's SHA-256 and size **and** the parse
//! settings that change its samples (device, format, columns, timestamp
//! settings, time zone, decimal, delimiter…; see
//! [`crate::parse::ParseSpec::settings`]): importing the same content with the
//! same settings twice does nothing the second time, while a file imported
//! with wrong settings is imported again once they are corrected. `--force`
//! reads a file regardless. A file that ended with a file-level error (wrong
//! column name, not text) is not recorded as imported. An import interrupted
//! by a crash or by Ctrl-C resumes after its last committed record.
//!
//! On a terminal a progress bar shows bytes, records/s and the ETA; a summary
//! follows: records read, samples accepted, records quarantined by reason.
//! Exit code 0 when every record was accepted, 3 when some were quarantined,
//! 1 on errors, 130 when interrupted (SIGINT/SIGTERM).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::{Gateway, RunOptions};
use crate::config::Config;
use crate::outln;
use crate::parse::Mapper;
use crate::sources::file::config::FileSource;
use crate::sources::file::ingest::{
    FileReport, LiveCounters, Previous, file_identity, format_of, import_key, ingest_file, legacy_import_key, previous,
};

/// Exit code of an interrupted import (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = crate::util::exit::INTERRUPTED;

/// Options of `relais import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The `type = "file"` source to use (default: the only one).
    pub source: Option<String>,
    /// Do not wait for the sinks to deliver.
    pub no_wait: bool,
    /// Read the files again even when they were imported before with the
    /// same content and settings (their samples get new `seq` numbers).
    pub force: bool,
    /// The configuration file, as given on the command line (for the hints
    /// printed in the summary).
    pub config_path: PathBuf,
}

/// Expands globs (`*`, `?`, `[...]`) in `paths`; a path without matches is an error.
pub fn expand(paths: &[String]) -> (Vec<PathBuf>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.contains(['*', '?', '[']) {
            match glob::glob(p) {
                Ok(it) => {
                    let before = out.len();
                    out.extend(it.flatten().filter(|f| f.is_file()));
                    if out.len() == before {
                        errors.push(format!("{p}: no file matches"));
                    }
                }
                Err(e) => errors.push(format!("{p}: bad pattern: {e}")),
            }
        } else {
            let pb = PathBuf::from(p);
            if pb.is_file() {
                out.push(pb);
            } else {
                errors.push(format!("{p}: no such file"));
            }
        }
    }
    (out, errors)
}

fn pick_source(sources: &[FileSource], name: Option<&str>) -> anyhow::Result<FileSource> {
    let names: Vec<&str> = sources.iter().map(|s| s.common.name.as_str()).collect();
    match name {
        Some(n) => sources.iter().find(|s| s.common.name == n).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "no [[source]] with type = \"file\" named {n:?}; file sources: {}",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )
        }),
        None => match sources {
            [one] => Ok(one.clone()),
            [] => anyhow::bail!("the config has no [[source]] with type = \"file\": add one (it says how the files are parsed)"),
            _ => anyhow::bail!("several file sources ({}); choose one with --source", names.join(", ")),
        },
    }
}

/// The message of the progress bar: records read and their rate. It comes
/// first on the bar's line, so a narrow terminal never cuts it.
pub fn bar_message(records: u64, per_second: f64) -> String {
    format!("{records} records, {per_second:.0}/s")
}

/// The progress bar of one file of `size` bytes drawn on `target`. Its line
/// fits 80 columns up to 9,999,999 records and 1000 MiB files; the file name
/// is printed on a line of its own before it.
pub fn progress_bar(size: u64, target: ProgressDrawTarget) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(size), target);
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:16}] {bytes}/{total_bytes} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

/// What an import has done so far, over all files.
#[derive(Default)]
struct Totals {
    /// Records, samples and quarantined records of every file, with reasons.
    report: FileReport,
    /// Files that could not be read, ended with a file-level error, or were
    /// not confirmed by the buffer.
    failed_files: usize,
    /// The file an interruption stopped in, and its records committed so far.
    stopped_in: Option<(PathBuf, u64)>,
    /// Files not started because of an interruption.
    not_started: usize,
}

impl Totals {
    fn add(&mut self, report: &FileReport) {
        self.report.records += report.records;
        self.report.samples += report.samples;
        self.report.quarantined += report.quarantined;
        for (k, v) in &report.reasons {
            *self.report.reasons.entry(k.clone()).or_default() += v;
        }
    }
}

/// What one import shares between its files.
struct Job<'a> {
    gw: &'a Gateway,
    source: &'a FileSource,
    reader: &'a crate::buffer::Reader,
    interrupted: &'a CancellationToken,
    force: bool,
    tty: bool,
}

/// Runs the import; returns the exit code.
pub async fn run(cfg: Config, paths: &[String], opts: ImportOptions) -> anyhow::Result<u8> {
    let (files, missing) = expand(paths);
    for m in &missing {
        eprintln!("relais import: {m}");
    }
    if files.is_empty() {
        anyhow::bail!("nothing to import");
    }
    let data_dir = cfg.gateway.data_dir.clone();
    let gw = match Gateway::start(cfg, RunOptions { sinks_only: true, ..Default::default() }).await {
        Ok(g) => g,
        Err(e) if e.to_string().contains("in use by another relais") => anyhow::bail!(
            "relais is running with data_dir {}: it owns the buffer. Drop the files into its watch folder or POST them to its HTTP ingest instead",
            data_dir.display()
        ),
        Err(e) => return Err(e),
    };
    let source = match pick_source(&gw.file_sources, opts.source.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            gw.shutdown().await?;
            return Err(e);
        }
    };
    let interrupted = CancellationToken::new();
    super::cancel_on_signal(interrupted.clone());
    let reader = gw.buffer.reader()?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let job = Job { gw: &gw, source: &source, reader: &reader, interrupted: &interrupted, force: opts.force, tty };
    let t0 = Instant::now();
    let mut totals = Totals::default();
    let n_files = files.len();
    for (i, path) in files.into_iter().enumerate() {
        if interrupted.is_cancelled() {
            totals.not_started = n_files - i;
            break;
        }
        if import_file(&job, &path, &mut totals).await? {
            break;
        }
    }
    summary(&totals, t0.elapsed().as_secs_f64(), &shown(&opts.config_path), &source.common.name);
    if totals.stopped_in.is_some() || totals.not_started > 0 {
        match &totals.stopped_in {
            Some((path, n)) if opts.force => {
                outln!("{}: interrupted after {n} records; run the same command without --force to resume", path.display())
            }
            Some((path, n)) => outln!("{}: interrupted after {n} records; run the same command again to resume", path.display()),
            None => outln!("interrupted before {} file(s); run the same command again to import them", totals.not_started),
        }
        gw.shutdown().await?;
        return Ok(EXIT_INTERRUPTED);
    }
    let delivered = opts.no_wait || gw.status.cursors.list().is_empty() || deliver(&gw, &interrupted, &data_dir).await;
    gw.shutdown().await?;
    Ok(if !delivered {
        EXIT_INTERRUPTED
    } else if totals.failed_files > 0 {
        1
    } else if totals.report.quarantined > 0 {
        3
    } else {
        0
    })
}

/// Imports one file (unless it was imported before), prints its report and
/// adds it to `totals`; true when an interruption stopped it.
async fn import_file(job: &Job<'_>, path: &Path, totals: &mut Totals) -> anyhow::Result<bool> {
    let source = job.source;
    let (hash, size) = match file_identity(path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            totals.failed_files += 1;
            return Ok(false);
        }
    };
    // The key needs the file's format; a file whose format cannot be
    // told is read anyway, to report that problem.
    let format = format_of(path, &source.common.parse).unwrap_or(crate::parse::spec::Format::Csv);
    let key = import_key(&hash, size, &source.common.parse, format, &source.common.device);
    let skip = match previous(job.reader, &key, &legacy_import_key(&hash, size))? {
        _ if job.force => 0,
        Previous::New => 0,
        Previous::Resume(n) => n,
        Previous::Done => {
            outln!("{}: already imported (same content, same settings); skipped (--force imports it again)", path.display());
            return Ok(false);
        }
        Previous::LegacyDone => {
            outln!(
                "{}: already imported by an earlier relais version (same content; its settings were not recorded); skipped (--force imports it again)",
                path.display()
            );
            return Ok(false);
        }
    };
    let report = read_file(job, path, size, key, skip).await?;
    if skip > 0 {
        outln!("{}: resumed after {skip} records committed by an earlier run", path.display());
    }
    outln!(
        "{}: {} records, {} samples accepted, {} quarantined{}",
        path.display(),
        report.records,
        report.samples,
        report.quarantined,
        reasons(&report.reasons)
    );
    if !report.file_error
        && let Some((loc, why)) = report.rejects.first()
    {
        // One example, so the usual cause (a missing timezone, a wrong
        // delimiter) shows without a trip to `relais quarantine show`.
        outln!("  first quarantined record: {loc}: {why}");
    }
    if report.file_error {
        totals.failed_files += 1;
        for (_, why) in report.rejects.iter().filter(|(l, _)| l == "file") {
            eprintln!("{}: {why}", path.display());
        }
    }
    if report.unconfirmed > 0 {
        totals.failed_files += 1;
        eprintln!("{}: the buffer stopped before confirming every commit; run the same command again to resume", path.display());
    }
    totals.add(&report);
    if report.interrupted {
        totals.stopped_in = Some((path.to_path_buf(), skip + report.records));
    }
    Ok(report.interrupted)
}

/// Reads one file into the ring on the blocking pool, after its first
/// `skip` records, with a progress bar on a terminal.
async fn read_file(job: &Job<'_>, path: &Path, size: u64, key: String, skip: u64) -> anyhow::Result<FileReport> {
    let live = LiveCounters { cancel: Some(job.interrupted.clone()), ..Default::default() };
    let bar = if job.tty {
        eprintln!("importing {} ({})", path.display(), crate::units::format_size(size));
        let b = progress_bar(size, ProgressDrawTarget::stderr());
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let (src, ingest, p2, live2) = (job.source.clone(), job.gw.ingest.clone(), path.to_path_buf(), live.clone());
    let identity = format!("{} {size}", path.display());
    let task = tokio::task::spawn_blocking(move || {
        let mut mapper = Mapper::new(&src.common.name, &src.common.device, &src.common.parse.tags);
        ingest_file(&p2, &src.common.parse, &mut mapper, &ingest, Some((key, identity)), skip, &live2, None)
    });
    tokio::pin!(task);
    let started = Instant::now();
    let report = loop {
        tokio::select! {
            r = &mut task => break r?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(b) = &bar {
                    let recs = live.records.load(Ordering::Relaxed);
                    b.set_position(live.bytes.load(Ordering::Relaxed));
                    b.set_message(bar_message(recs, recs as f64 / started.elapsed().as_secs_f64()));
                }
            }
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(report)
}

/// The total line, and where to see the quarantined records.
fn summary(totals: &Totals, secs: f64, config: &str, source: &str) {
    let total = &totals.report;
    outln!(
        "\ntotal: {} records, {} samples accepted ({:.0} samples/s), {} records quarantined{}",
        total.records,
        total.samples,
        total.samples as f64 / secs.max(1e-3),
        total.quarantined,
        reasons(&total.reasons)
    );
    if total.quarantined > 0 {
        outln!("see them with: relais quarantine list --config {config} --source {source}");
    }
}

/// Waits until every sink has delivered every sample; false when
/// interrupted first (the rest stays in the buffer).
async fn deliver(gw: &Gateway, interrupted: &CancellationToken, data_dir: &Path) -> bool {
    let mut last_print = Instant::now() - Duration::from_secs(10);
    loop {
        let left = gw.undelivered();
        if left == 0 {
            outln!("delivered to every sink");
            return true;
        }
        if interrupted.is_cancelled() {
            outln!(
                "interrupted: {left} samples not yet delivered; they stay in the buffer of {} and are sent by `relais run` (or the next `relais import`) with this data_dir",
                data_dir.display()
            );
            return false;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            outln!("delivering: {left} samples left (Ctrl-C stops waiting; they stay in the buffer for `relais run`)");
            last_print = Instant::now();
        }
        tokio::select! {
            _ = interrupted.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn reasons(r: &BTreeMap<String, u64>) -> String {
    if r.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(" ({})", parts.join(", "))
}

/// The config path as the user gave it (for hints), or `<config>`.
pub fn shown(config: &Path) -> String {
    if config.as_os_str().is_empty() { "<config>".into() } else { config.display().to_string() }
}
