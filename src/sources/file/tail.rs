//! `type = "tail"`: a growing CSV or JSON Lines file followed like `tail -F`.
//!
//! - Only complete lines (ending in `\n`) are read; a half-written last line
//!   waits for its end.
//! - The byte offset and line count are committed with the samples they
//!   produced (key `tail:<source>`, identity = device and inode), so a restart
//!   resumes exactly there: nothing skipped, nothing read twice.
//! - Rotation by rename (`app.log` → `app.log.1`, new `app.log`): the old file
//!   is read to its end before switching. After a restart, a file whose inode
//!   differs from the stored one is looked for among its neighbours (the
//!   rotated file) and its rest is read first.
//! - Truncation in place (copytruncate): reading restarts at the beginning,
//!   with a warning.
//! - CSV with a header: the header is the file's first line; it is re-read
//!   after each rotation.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;

use super::config::{StartAt, TailSource};
use super::ingest::{Batcher, parse_input};
use crate::parse::Mapper;
use crate::parse::spec::Format;
use crate::sources::SourceCtx;

fn identity(md: &std::fs::Metadata) -> String {
    format!("{}:{}", md.dev(), md.ino())
}

/// Starts following the file.
pub fn spawn(cfg: TailSource, ctx: SourceCtx) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = run(&cfg, &ctx) {
            tracing::error!(source = %cfg.common.name, error = %e, "tail stopped");
        }
    })
}

struct Open {
    file: File,
    identity: String,
    offset: u64,
    header: Option<String>,
}

fn header_line(f: &mut File) -> std::io::Result<Option<(String, u64)>> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..p]).trim_end_matches('\r').to_string();
            return Ok(Some((line, p as u64 + 1)));
        }
        if buf.len() > 1 << 20 {
            return Ok(None);
        }
    }
}

/// Opens `path` at `offset` (0 = after the header when there is one).
fn open_at(path: &Path, offset: Option<u64>, csv_header: bool) -> std::io::Result<Option<Open>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let md = file.metadata()?;
    let (header, body_start) = if csv_header {
        match header_line(&mut file)? {
            Some((h, n)) => (Some(h), n),
            None => return Ok(None), // no complete header line yet
        }
    } else {
        (None, 0)
    };
    let offset = offset.unwrap_or(body_start).max(body_start);
    Ok(Some(Open { file, identity: identity(&md), offset, header }))
}

/// Finds a file beside `path` whose identity is `ident` (a rotated file).
fn find_rotated(path: &Path, ident: &str) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| p != path && std::fs::metadata(p).is_ok_and(|m| m.is_file() && identity(&m) == ident))
}

fn run(cfg: &TailSource, ctx: &SourceCtx) -> anyhow::Result<()> {
    let name = &cfg.common.name;
    let key = format!("tail:{name}");
    let format = cfg.common.parse.format.or_else(|| Format::from_path(&cfg.path)).unwrap_or(Format::Csv);
    let csv_header = format == Format::Csv && cfg.common.parse.csv.header;
    let stats = ctx.telemetry.source(name);
    let mut mapper = Mapper::new(name, &cfg.common.device, &cfg.common.parse.tags);
    let stored = ctx.reader.progress_blocking(&key)?;
    let mut lines = stored.as_ref().map_or(0, |p| p.line);
    tracing::info!(source = %name, path = %cfg.path.display(), resume = ?stored.as_ref().map(|p| p.offset), "tailing file");
    // After a restart with a rotated file: finish the old one first.
    let mut cur: Option<Open> = None;
    if let Some(p) = &stored {
        let now = std::fs::metadata(&cfg.path).ok().map(|m| identity(&m));
        if now.as_deref() == Some(p.identity.as_str()) {
            cur = open_at(&cfg.path, Some(p.offset), csv_header)?;
        } else if let Some(old) = find_rotated(&cfg.path, &p.identity) {
            tracing::info!(source = %name, rotated = %old.display(), "reading the rest of the rotated file first");
            cur = open_at(&old, Some(p.offset), csv_header)?;
        } else {
            tracing::warn!(source = %name, "the file read before the restart is gone; starting on the current file");
        }
    }
    if cur.is_none() {
        let start = match (stored.is_some(), cfg.start_at) {
            (false, StartAt::End) => std::fs::metadata(&cfg.path).ok().map(|m| m.len()),
            _ => None,
        };
        cur = open_at(&cfg.path, start, csv_header)?;
    }
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if ctx.stop.is_cancelled() {
            return Ok(());
        }
        let Some(open) = cur.as_mut() else {
            std::thread::sleep(cfg.poll_interval);
            cur = open_at(&cfg.path, None, csv_header)?;
            continue;
        };
        // Truncated in place?
        let len = open.file.metadata()?.len();
        if len < open.offset {
            tracing::warn!(source = %name, "file truncated; reading it again from the beginning");
            cur = open_at(&cfg.path, None, csv_header)?;
            pending.clear();
            continue;
        }
        open.file.seek(SeekFrom::Start(open.offset + pending.len() as u64))?;
        let mut buf = Vec::new();
        (&mut open.file).take(8 << 20).read_to_end(&mut buf)?;
        pending.extend_from_slice(&buf);
        let complete = pending.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
        if complete > 0 {
            let chunk: Vec<u8> = pending.drain(..complete).collect();
            let n_lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
            let mut b = Batcher::new(&ctx.ingest, Some((key.clone(), open.identity.clone())), 0);
            // One group per chunk: its progress (offset) matches its samples.
            b.auto_flush = false;
            b.set_consumed(lines);
            let input: Vec<u8> = match &open.header {
                Some(h) => {
                    // Line numbers: the header is line 1 of the file.
                    mapper.line_base = lines;
                    let mut v = Vec::with_capacity(h.len() + 1 + chunk.len());
                    v.extend_from_slice(h.as_bytes());
                    v.push(b'\n');
                    v.extend_from_slice(&chunk);
                    v
                }
                None => {
                    mapper.line_base = lines;
                    chunk
                }
            };
            let origin = cfg.path.display().to_string();
            if let Err(e) = parse_input(&input[..], format, &cfg.common.parse, &mut mapper, &origin, &mut |r| b.record(r)) {
                b.quarantine(mapper.reject(&origin, format!("line {}", lines + 1), format!("{}: {e}", crate::model::reason::PARSE_ERROR), ""));
            }
            open.offset += complete as u64;
            lines += n_lines;
            b.offset = open.offset;
            b.set_consumed(lines);
            let report = b.finish();
            stats.add(&report, &origin);
            continue; // there may be more
        }
        // At the end: rotated?
        let now = std::fs::metadata(&cfg.path).ok().map(|m| identity(&m));
        if now.is_some() && now.as_deref() != Some(open.identity.as_str()) {
            if !pending.is_empty() {
                // The old file ended without a newline: take its last line too.
                pending.push(b'\n');
                continue;
            }
            tracing::info!(source = %name, "file rotated; following the new file");
            lines = 0;
            cur = open_at(&cfg.path, None, csv_header)?;
            continue;
        }
        std::thread::sleep(cfg.poll_interval);
    }
}
