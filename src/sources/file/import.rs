//! `relais import --config FILE PATH...`: a one-shot import of CSV and JSON
//! files into the buffer, forwarded by the configured sinks.
//!
//! Each file is identified by its SHA-256 and size: importing the same
//! content twice does nothing the second time, and an import interrupted by a
//! crash resumes after its last committed record. On a terminal a progress
//! bar shows bytes, records/s and the ETA; a summary follows: records read,
//! samples accepted, records quarantined by reason. Exit code 0 when every
//! record was accepted, 3 when some were quarantined, 1 on errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::config::FileSource;
use super::ingest::{FileReport, LiveCounters, file_identity, ingest_file};
use crate::app::{Gateway, RunOptions};
use crate::config::Config;
use crate::parse::Mapper;

/// Options of `relais import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The `type = "file"` source to use (default: the only one).
    pub source: Option<String>,
    /// Do not wait for the sinks to deliver.
    pub no_wait: bool,
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
            anyhow::anyhow!("no [[source]] with type = \"file\" named {n:?}; file sources: {}", if names.is_empty() { "none".into() } else { names.join(", ") })
        }),
        None => match sources {
            [one] => Ok(one.clone()),
            [] => anyhow::bail!("the config has no [[source]] with type = \"file\": add one (it says how the files are parsed)"),
            _ => anyhow::bail!("several file sources ({}); choose one with --source", names.join(", ")),
        },
    }
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
    crate::app::cancel_on_signal(interrupted.clone());
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut total = FileReport::default();
    let mut failed_files = 0usize;
    let t0 = Instant::now();
    for path in files {
        if interrupted.is_cancelled() {
            break;
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (hash, size) = match file_identity(&path) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                failed_files += 1;
                let _ = size;
                continue;
            }
        };
        let key = format!("file:{hash}:{size}");
        let stored = gw.buffer.reader()?.progress_blocking(&key)?;
        if stored.as_ref().is_some_and(|p| p.done) {
            println!("{}: already imported (same content); skipped", path.display());
            continue;
        }
        let skip = stored.map_or(0, |p| p.line);
        let live = LiveCounters::default();
        let bar = if tty {
            let b = ProgressBar::new(size);
            b.set_style(
                ProgressStyle::with_template("{spinner} {wide_msg} [{bar:25}] {bytes}/{total_bytes} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            Some(b)
        } else {
            None
        };
        let (src, ingest, p2, live2) = (source.clone(), gw.ingest.clone(), path.clone(), live.clone());
        let identity = format!("{} {size}", path.display());
        let job = tokio::task::spawn_blocking(move || {
            let mut mapper = Mapper::new(&src.common.name, &src.common.device, &src.common.parse.tags);
            ingest_file(&p2, &src.common.parse, &mut mapper, &ingest, Some((key, identity)), skip, &live2)
        });
        tokio::pin!(job);
        let started = Instant::now();
        let report = loop {
            tokio::select! {
                r = &mut job => break r?,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(b) = &bar {
                        let recs = live.records.load(Ordering::Relaxed);
                        b.set_position(live.bytes.load(Ordering::Relaxed));
                        b.set_message(format!("{}: {recs} records, {:.0} records/s", path.display(), recs as f64 / started.elapsed().as_secs_f64()));
                    }
                }
            }
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if skip > 0 {
            println!("{}: resumed after {skip} records committed by an earlier run", path.display());
        }
        println!(
            "{}: {} records, {} samples accepted, {} quarantined{}",
            path.display(),
            report.records,
            report.samples,
            report.quarantined,
            reasons(&report.reasons)
        );
        if report.rejects.iter().any(|(l, _)| l == "file") {
            failed_files += 1;
            for (_, why) in report.rejects.iter().filter(|(l, _)| l == "file") {
                eprintln!("{}: {why}", path.display());
            }
        }
        total.records += report.records;
        total.samples += report.samples;
        total.quarantined += report.quarantined;
        for (k, v) in report.reasons {
            *total.reasons.entry(k).or_default() += v;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "\ntotal: {} records, {} samples accepted ({:.0} samples/s), {} records quarantined{}",
        total.records,
        total.samples,
        total.samples as f64 / secs.max(1e-3),
        total.quarantined,
        reasons(&total.reasons)
    );
    if total.quarantined > 0 {
        println!("see them with: relais quarantine list --config <config> --source {}", source.common.name);
    }
    // Deliver.
    if !opts.no_wait && !gw.status.cursors.is_empty() && !interrupted.is_cancelled() {
        let mut last_print = Instant::now() - Duration::from_secs(10);
        loop {
            let left = gw.undelivered();
            if left == 0 || interrupted.is_cancelled() {
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(5) {
                println!("delivering: {left} samples left (Ctrl-C stops waiting; they stay in the buffer for `relais run`)");
                last_print = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if gw.undelivered() == 0 {
            println!("delivered to every sink");
        }
    }
    gw.shutdown().await?;
    Ok(if failed_files > 0 { 1 } else if total.quarantined > 0 { 3 } else { 0 })
}

fn reasons(r: &BTreeMap<String, u64>) -> String {
    if r.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(" ({})", parts.join(", "))
}
