//! `type = "watch"`: files dropped into a folder are ingested once, then moved
//! to `done/`, or to `failed/` with a `.errors` report when any record was
//! quarantined (the good records are accepted either way).
//!
//! - A file is read only once it is complete: its size and modification time
//!   must stay unchanged for `settle` (default 2 s). A CSV or JSON Lines file
//!   whose last line has no newline yet (and a JSON document that does not
//!   end in `}` or `]`) is given more time: it is read once it ends
//!   properly, or once it has not changed for 10 × `settle`
//!   ([`INCOMPLETE_WAIT`] settles), whichever comes first.
//! - Names starting with `.` or ending in `.tmp`, `.part` or `.partial` are
//!   never read, so writers can also write under such a name and rename into
//!   place. The folder is watched with inotify (the `notify` crate) and
//!   rescanned every second as a fallback.
//! - A file whose content was already imported with the same parse settings
//!   (same SHA-256, size and settings; see [`super::ingest::import_key`]) is
//!   not ingested twice; after the source's settings are corrected (and relais
//!   restarted), a file copied back from `failed/` is ingested again.
//! - An ingest interrupted by a crash or a shutdown resumes after its last
//!   committed record: at shutdown the file is left in the folder and the
//!   read stops at the next group of records.
//! - Quarantined records name the file where it ends up (`failed/…`).
//! - Order: the files ready at one look at the folder are taken oldest
//!   modification time first, equal times by name (byte order), one after
//!   the other; so files that piled up while relais was stopped go in the
//!   order they were written. A file still being written (or waiting for
//!   its last line) does not hold back the ones that are ready.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::Watcher;
use tokio::task::JoinHandle;

use super::config::WatchSource;
use super::ingest::{LiveCounters, Previous, file_identity, format_of, import_key, ingest_file, legacy_import_key, previous};
use crate::ingest::{Group, Moved};
use crate::parse::Mapper;
use crate::parse::spec::Format;
use crate::sources::SourceCtx;
use crate::util::escape::escape;

/// How many `settle` periods a file that does not end properly (no final
/// newline) is waited for before it is read as it is.
pub const INCOMPLETE_WAIT: u32 = 10;

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

/// True when the file ends the way a complete file of `format` does: a
/// newline for CSV and JSON Lines, `}` or `]` (before trailing white space)
/// for a JSON document. An empty file is not complete.
pub fn ends_properly(path: &Path, format: Option<Format>) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else { return true };
    let Ok(len) = f.metadata().map(|m| m.len()) else { return true };
    if len == 0 {
        return false;
    }
    let n = len.min(256);
    let mut tail = vec![0u8; n as usize];
    if f.seek(SeekFrom::Start(len - n)).and_then(|_| f.read_exact(&mut tail)).is_err() {
        return true;
    }
    match format {
        Some(Format::Json) => matches!(tail.iter().rev().find(|b| !b.is_ascii_whitespace()), Some(b'}' | b']') | None),
        _ => tail.last() == Some(&b'\n'),
    }
}

/// What the folder scan knows of a file.
struct Seen {
    size: u64,
    mtime: SystemTime,
    /// Last change of size or modification time.
    since: Instant,
    /// Logged that it waits for its end.
    told: bool,
}

/// Starts watching.
pub fn spawn(cfg: WatchSource, ctx: SourceCtx) -> anyhow::Result<JoinHandle<()>> {
    for d in [&cfg.folder, &cfg.done_dir, &cfg.failed_dir] {
        std::fs::create_dir_all(d).map_err(|e| anyhow::anyhow!("source {}: cannot create {}: {e}", cfg.common.name, d.display()))?;
    }
    let pattern =
        glob::Pattern::new(&cfg.pattern).map_err(|e| anyhow::anyhow!("source {}: pattern {:?}: {e}", cfg.common.name, cfg.pattern))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Our own reads of the folder's files raise open/access/close-without-write
        // events; waking the scan on them would make it spin on its own reads.
        if matches!(&res, Ok(ev) if ev.kind.is_access()) {
            return;
        }
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
        let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
        // One checker for the source, handed to each file's blocking read.
        let checker = Arc::new(std::sync::Mutex::new(ctx.checks.checker()));
        loop {
            tokio::select! {
                _ = ctx.stop.cancelled() => return,
                _ = rx.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(500).min(cfg.settle)) => {}
            }
            for path in scan(&cfg, &pattern, &mut seen) {
                let (cfg2, ctx2, stats2, checker2) = (cfg.clone(), ctx.clone(), stats.clone(), checker.clone());
                let done = tokio::task::spawn_blocking(move || {
                    let mut checker = checker2.lock().unwrap_or_else(|p| p.into_inner());
                    ingest_and_move(&cfg2, &ctx2, &path, &stats2, &mut checker)
                })
                .await;
                if let Ok(Err(e)) = done {
                    tracing::error!(source = %cfg.common.name, error = %escape(&e.to_string()), "watch folder");
                }
                if ctx.stop.is_cancelled() {
                    return;
                }
            }
        }
    }))
}

/// Looks at the folder once: updates `seen` and returns the files that are
/// ready (settled and complete) in the order they are to be taken: oldest
/// modification time first, equal times by name (byte order). Files that
/// waited while relais was stopped thus go in the order they were written.
fn scan(cfg: &WatchSource, pattern: &glob::Pattern, seen: &mut HashMap<PathBuf, Seen>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&cfg.folder) else { return Vec::new() };
    let mut present = Vec::new();
    let mut ready: Vec<(SystemTime, String, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(md) = e.metadata() else { continue };
        if !md.is_file() || ignored(&name) || !pattern.matches(&name) {
            continue;
        }
        let path = e.path();
        present.push(path.clone());
        let (size, mtime) = (md.len(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        let entry = seen.entry(path.clone()).or_insert(Seen { size, mtime, since: Instant::now(), told: false });
        if entry.size != size || entry.mtime != mtime {
            *entry = Seen { size, mtime, since: Instant::now(), told: entry.told };
            continue;
        }
        if settled(cfg, &path, &name, entry) {
            ready.push((mtime, name, path));
        }
    }
    seen.retain(|p, _| present.contains(p));
    ready.sort();
    for (_, _, p) in &ready {
        seen.remove(p);
    }
    ready.into_iter().map(|(_, _, p)| p).collect()
}

/// Whether a file unchanged since `entry.since` is ready: quiet for
/// `settle`, and ending properly (or quiet for [`INCOMPLETE_WAIT`] settles).
fn settled(cfg: &WatchSource, path: &Path, name: &str, entry: &mut Seen) -> bool {
    let quiet = entry.since.elapsed();
    if quiet < cfg.settle {
        return false;
    }
    let format = format_of(path, &cfg.common.parse).ok();
    if !ends_properly(path, format) {
        if quiet < cfg.settle * INCOMPLETE_WAIT {
            if !entry.told {
                tracing::info!(source = %cfg.common.name, file = %escape(name),
                    "file settled but its last line is not complete yet; waiting up to {:?} for the rest", cfg.settle * INCOMPLETE_WAIT);
                entry.told = true;
            }
            return false;
        }
        tracing::info!(source = %cfg.common.name, file = %escape(name),
            "file has no complete last line after {:?} without change; reading it as it is", cfg.settle * INCOMPLETE_WAIT);
    }
    true
}

fn move_file(path: &Path, dest: &Path) -> anyhow::Result<()> {
    std::fs::rename(path, dest)
        .or_else(|_| std::fs::copy(path, dest).and_then(|_| std::fs::remove_file(path)))
        .map_err(|e| anyhow::anyhow!("cannot move {} to {}: {e}", path.display(), dest.display()))
}

/// Ingests one settled file and moves it to `done/` or `failed/`.
fn ingest_and_move(
    cfg: &WatchSource,
    ctx: &SourceCtx,
    path: &Path,
    stats: &crate::telemetry::SourceStats,
    checker: &mut crate::component::checks::Checker,
) -> anyhow::Result<()> {
    let src = &cfg.common;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let origin = path.display().to_string();
    let (hash, size) = file_identity(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let format = format_of(path, &src.parse).unwrap_or(Format::Csv);
    let key = import_key(&hash, size, &src.parse, format, &src.device);
    let skip = match previous(&ctx.reader, &key, &legacy_import_key(&hash, size))? {
        Previous::New => 0,
        Previous::Resume(n) => n,
        done @ (Previous::Done | Previous::LegacyDone) => {
            let dest = free_name(&cfg.done_dir, &name);
            move_file(path, &dest)?;
            let why = if done == Previous::Done {
                "this content was already imported with the same settings; not ingesting it again (edit the file, or correct the source's parse settings and restart relais, to ingest it again)"
            } else {
                "this content was already imported by an earlier relais version; not ingesting it again (`relais import --force` with relais stopped ingests it again)"
            };
            tracing::warn!(source = %src.name, file = %escape(&name), "{why}; moved to {}", escape(&dest.to_string_lossy()));
            return Ok(());
        }
    };
    let mut mapper = Mapper::new(&src.name, &src.device, &src.parse.tags);
    let live = LiveCounters { cancel: Some(ctx.stop.clone()), ..Default::default() };
    let report = ingest_file(
        path,
        &src.parse,
        &mut mapper,
        &ctx.ingest,
        Some((key, format!("{} {size}", path.display()))),
        skip,
        &live,
        Some(checker),
    );
    if !report.complete() && !report.file_error {
        // Stopped by the shutdown (or the buffer stopped): the file stays
        // here and the next start resumes after the committed records.
        tracing::info!(source = %src.name, file = %escape(&name), committed_records = skip + report.records,
            "ingest stopped by the shutdown; the file stays in the folder and the rest is read at the next start");
        report.count_into(stats, &origin);
        return Ok(());
    }
    let failed = report.quarantined > 0;
    let dest_dir = if failed { &cfg.failed_dir } else { &cfg.done_dir };
    let dest = free_name(dest_dir, &name);
    move_file(path, &dest)?;
    if failed {
        // The quarantined records name the file where it is now.
        let moved = Moved { source: src.name.clone(), from: origin.clone(), to: dest.display().to_string() };
        let _ = ctx.ingest.push_group_blocking(Group { moved: Some(moved), ..Default::default() }).blocking_recv();
        let mut text = format!(
            "# {}: {} records, {} samples accepted, {} records quarantined (see `relais quarantine list --config <this config file> --source {}`)\n",
            name, report.records, report.samples, report.quarantined, src.name
        );
        for (loc, why) in &report.rejects {
            text.push_str(&format!("{loc}: {why}\n"));
        }
        let errors = PathBuf::from(format!("{}.errors", dest.display()));
        std::fs::write(&errors, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", errors.display()))?;
        tracing::info!(source = %src.name, file = %escape(&name), accepted = report.samples, quarantined = report.quarantined,
            "file ingested with rejected records; moved to {}", escape(&dest.to_string_lossy()));
    } else {
        tracing::info!(source = %src.name, file = %escape(&name), records = report.records, accepted = report.samples, "file ingested; moved to {}", escape(&dest.to_string_lossy()));
    }
    report.count_into(stats, &dest.display().to_string());
    Ok(())
}
