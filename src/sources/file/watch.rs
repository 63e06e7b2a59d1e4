//! `type = "watch"`: files dropped into a folder are ingested once, then moved
//! to `done/`, or to `failed/` with a `.errors` report when any record was
//! quarantined (the good records are accepted either way).
//!
//! A file is read only once it is complete: its size and modification time
//! must stay unchanged for `settle` (default 2 s). Names starting with `.` or
//! ending in `.tmp`, `.part` or `.partial` are never read, so writers can also
//! write under such a name and rename into place. The folder is watched with
//! inotify (the `notify` crate) and rescanned every second as a fallback.
//! A file whose content was already imported (same SHA-256 and size) is not
//! ingested twice; an import interrupted by a crash resumes after its last
//! committed record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::Watcher;
use tokio::task::JoinHandle;

use super::config::WatchSource;
use super::ingest::{FileReport, LiveCounters, file_identity, ingest_file};
use crate::parse::Mapper;
use crate::sources::SourceCtx;

fn ignored(name: &str) -> bool {
    name.starts_with('.') || [".tmp", ".part", ".partial", ".errors"].iter().any(|s| name.ends_with(s))
}

/// A free name for `name` in `dir` (adds `.1`, `.2`… before the extension).
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        return p;
    }
    for i in 1.. {
        let q = dir.join(format!("{name}.{i}"));
        if !q.exists() {
            return q;
        }
    }
    unreachable!()
}

/// Starts watching.
pub fn spawn(cfg: WatchSource, ctx: SourceCtx) -> anyhow::Result<JoinHandle<()>> {
    for d in [&cfg.folder, &cfg.done_dir, &cfg.failed_dir] {
        std::fs::create_dir_all(d).map_err(|e| anyhow::anyhow!("source {}: cannot create {}: {e}", cfg.common.name, d.display()))?;
    }
    let pattern = glob::Pattern::new(&cfg.pattern).map_err(|e| anyhow::anyhow!("source {}: pattern {:?}: {e}", cfg.common.name, cfg.pattern))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.try_send(());
    })
    .map_err(|e| anyhow::anyhow!("source {}: cannot watch {}: {e}", cfg.common.name, cfg.folder.display()))?;
    watcher
        .watch(&cfg.folder, notify::RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("source {}: cannot watch {}: {e}", cfg.common.name, cfg.folder.display()))?;
    let stats = ctx.telemetry.source(&cfg.common.name);
    tracing::info!(source = %cfg.common.name, folder = %cfg.folder.display(), pattern = %cfg.pattern, "watching folder");
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        let cfg = Arc::new(cfg);
        let mut seen: HashMap<PathBuf, (u64, SystemTime, Instant)> = HashMap::new();
        loop {
            tokio::select! {
                _ = ctx.stop.cancelled() => return,
                _ = rx.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(500).min(cfg.settle)) => {}
            }
            let Ok(entries) = std::fs::read_dir(&cfg.folder) else { continue };
            let mut present = Vec::new();
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Ok(md) = e.metadata() else { continue };
                if !md.is_file() || ignored(&name) || !pattern.matches(&name) {
                    continue;
                }
                let path = e.path();
                present.push(path.clone());
                let (size, mtime) = (md.len(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                let entry = seen.entry(path.clone()).or_insert((size, mtime, Instant::now()));
                if entry.0 != size || entry.1 != mtime {
                    *entry = (size, mtime, Instant::now());
                    continue;
                }
                if entry.2.elapsed() < cfg.settle {
                    continue;
                }
                seen.remove(&path);
                let (cfg2, ctx2, stats2) = (cfg.clone(), ctx.clone(), stats.clone());
                let done = tokio::task::spawn_blocking(move || ingest_and_move(&cfg2, &ctx2, &path, &stats2)).await;
                if let Ok(Err(e)) = done {
                    tracing::error!(source = %cfg.common.name, error = %e, "watch folder");
                }
                if ctx.stop.is_cancelled() {
                    return;
                }
            }
            seen.retain(|p, _| present.contains(p));
        }
    }))
}

/// Ingests one settled file and moves it to `done/` or `failed/`.
fn ingest_and_move(cfg: &WatchSource, ctx: &SourceCtx, path: &Path, stats: &crate::telemetry::SourceStats) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let (hash, size) = file_identity(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let key = format!("file:{hash}:{size}");
    let stored = ctx.reader.progress_blocking(&key)?;
    let report = match stored {
        Some(p) if p.done => {
            tracing::warn!(source = %cfg.common.name, file = %path.display(), "this content was already imported; not ingesting it again");
            FileReport::default()
        }
        other => {
            let skip = other.map_or(0, |p| p.line);
            let mut mapper = Mapper::new(&cfg.common.name, &cfg.common.device, &cfg.common.parse.tags);
            let r = ingest_file(path, &cfg.common.parse, &mut mapper, &ctx.ingest, Some((key, format!("{} {size}", path.display()))), skip, &LiveCounters::default());
            stats.add(&r, &path.display().to_string());
            r
        }
    };
    let failed = report.quarantined > 0;
    let dest_dir = if failed { &cfg.failed_dir } else { &cfg.done_dir };
    let dest = free_name(dest_dir, &name);
    std::fs::rename(path, &dest).or_else(|_| std::fs::copy(path, &dest).and_then(|_| std::fs::remove_file(path)))
        .map_err(|e| anyhow::anyhow!("cannot move {} to {}: {e}", path.display(), dest.display()))?;
    if failed {
        let mut text = format!(
            "# {}: {} records, {} samples accepted, {} records quarantined (see `relais quarantine list --source {}`)\n",
            name, report.records, report.samples, report.quarantined, cfg.common.name
        );
        for (loc, why) in &report.rejects {
            text.push_str(&format!("{loc}: {why}\n"));
        }
        let errors = PathBuf::from(format!("{}.errors", dest.display()));
        std::fs::write(&errors, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", errors.display()))?;
        tracing::warn!(source = %cfg.common.name, file = %name, accepted = report.samples, quarantined = report.quarantined,
            "file ingested with rejected records; moved to {}", dest.display());
    } else {
        tracing::info!(source = %cfg.common.name, file = %name, records = report.records, accepted = report.samples, "file ingested; moved to {}", dest.display());
    }
    Ok(())
}
