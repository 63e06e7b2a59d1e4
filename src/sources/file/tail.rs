//! `type = "tail"`: a growing CSV or JSON Lines file followed like `tail -F`.
//!
//! - Only complete lines (ending in `\n`) are read; a half-written last line
//!   waits for its end.
//! - The byte offset and line count are committed with the samples they
//!   produced (key `tail:<source>`, identity = device, inode and a
//!   fingerprint of the file's head), so a restart resumes exactly there:
//!   nothing skipped, nothing read twice.
//! - Rotation by rename (`app.log` → `app.log.1`, new `app.log`): the old file
//!   is read to its end before switching. After a restart, a file whose inode
//!   differs from the stored one is looked for among its neighbours (the
//!   rotated file) and its rest is read first.
//! - Two rotations while relais was stopped: only the file read before the
//!   stop and the current file are read; the files rotated in between are
//!   named in a warning (their lines are missing). Likewise a rotated file
//!   that is gone is reported.
//! - Truncation in place (copytruncate), and a rewrite in place (truncated
//!   and written again, even longer than before, between two polls or while
//!   relais was stopped): detected by the size, or by the fingerprint of the
//!   file's head (SHA-256 of the header and up to 256 bytes after it); reading
//!   restarts at the beginning, with a warning, and line numbers restart at 1.
//! - CSV with a header: the header is the file's first line; it is re-read
//!   after each rotation.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::config::{StartAt, TailSource};
use super::ingest::{Batcher, parse_input};
use crate::parse::Mapper;
use crate::parse::spec::Format;
use crate::sources::SourceCtx;
use crate::util::escape::escape;

/// Bytes after the header covered by the head fingerprint.
pub const HEAD_BYTES: u64 = 256;

fn file_id(md: &std::fs::Metadata) -> String {
    format!("{}:{}", md.dev(), md.ino())
}

/// Fingerprint of a file's first bytes: how many, and their SHA-256 (hex,
/// 16 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    len: u64,
    hash: String,
}

impl Head {
    /// The fingerprint of the first `min(file length, body_start + HEAD_BYTES)` bytes.
    fn of(f: &mut File, body_start: u64) -> std::io::Result<Head> {
        let len = f.metadata()?.len().min(body_start + HEAD_BYTES);
        Head::first(f, len)
    }

    /// The fingerprint of the first `len` bytes (fewer if the file is shorter).
    fn first(f: &mut File, len: u64) -> std::io::Result<Head> {
        use sha2::Digest;
        f.seek(SeekFrom::Start(0))?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf)?;
        let digest = sha2::Sha256::digest(&buf);
        Ok(Head { len: buf.len() as u64, hash: digest.iter().take(16).map(|b| format!("{b:02x}")).collect() })
    }

    /// True when the file's first `self.len` bytes still have this fingerprint.
    fn matches(&self, f: &mut File) -> std::io::Result<bool> {
        Ok(Head::first(f, self.len)? == *self)
    }
}

/// The identity stored with the progress: `dev:ino head=LEN:HASH`.
fn identity(id: &str, head: &Head) -> String {
    format!("{id} head={}:{}", head.len, head.hash)
}

/// Splits a stored identity into the file id and the head fingerprint (none
/// in progress written by earlier versions).
fn parse_identity(s: &str) -> (&str, Option<Head>) {
    match s.split_once(" head=") {
        Some((id, h)) => {
            let head = h.split_once(':').and_then(|(n, hash)| Some(Head { len: n.parse().ok()?, hash: hash.to_string() }));
            (id, head)
        }
        None => (s, None),
    }
}

/// Starts following the file.
pub fn spawn(cfg: TailSource, ctx: SourceCtx) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        // An I/O error (permissions changed, a disk error, a NFS hiccup) never
        // ends the tail: it is reported and the file is opened again at the
        // committed offset, with a growing pause (up to 30 s).
        let mut pause = Duration::from_secs(1);
        let mut last: Option<String> = None;
        loop {
            match run(&cfg, &ctx) {
                Ok(()) => return,
                Err(e) => {
                    let text = e.to_string();
                    if last.as_deref() != Some(text.as_str()) {
                        tracing::error!(source = %cfg.common.name, path = %cfg.path.display(), error = %text,
                            "tail: cannot read the file; retrying from the committed offset");
                        last = Some(text);
                    }
                }
            }
            let until = std::time::Instant::now() + pause;
            while std::time::Instant::now() < until {
                if ctx.stop.is_cancelled() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    })
}

struct Open {
    path: PathBuf,
    file: File,
    /// `dev:ino`.
    id: String,
    head: Head,
    /// First byte after the header (0 without one).
    body_start: u64,
    offset: u64,
    header: Option<String>,
}

impl Open {
    fn identity(&self) -> String {
        identity(&self.id, &self.head)
    }
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
    let head = Head::of(&mut file, body_start)?;
    Ok(Some(Open { path: path.to_path_buf(), file, id: file_id(&md), head, body_start, offset, header }))
}

/// Finds a file beside `path` whose id is `id` (a rotated file).
/// The folder of `path` (`.` for a bare file name, whose parent is "").
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn find_rotated(path: &Path, id: &str) -> Option<PathBuf> {
    let dir = folder_of(path);
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p != path && std::fs::metadata(p).is_ok_and(|m| m.is_file() && file_id(&m) == id))
}

/// Files beside `path` named like its rotations (`<name>.1`, `<name>-2026…`)
/// and written after `rotated` (the file read before a restart), other than
/// `rotated` itself: rotated while relais was stopped, so never read.
fn rotated_meanwhile(path: &Path, rotated: &Path) -> Vec<PathBuf> {
    let (dir, Some(name)) = (folder_of(path), path.file_name().map(|n| n.to_string_lossy().to_string())) else { return Vec::new() };
    let Some(since) = std::fs::metadata(rotated).and_then(|m| m.modified()).ok() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != path && p != rotated)
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().len() > name.len() && n.to_string_lossy().starts_with(&name)))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.modified().is_ok_and(|t| t > since)))
        .collect();
    out.sort();
    out
}

/// Where a restart resumes: the file read before the stop (or its rotated
/// name) at the stored offset, with the line count; `None` to start afresh.
fn resume(cfg: &TailSource, p: &crate::ingest::Progress, csv_header: bool) -> anyhow::Result<(Option<Open>, u64)> {
    let name = &cfg.common.name;
    let (id, head) = parse_identity(&p.identity);
    let now = std::fs::metadata(&cfg.path).ok().map(|m| file_id(&m));
    let found = if now.as_deref() == Some(id) {
        Some(cfg.path.clone())
    } else if let Some(old) = find_rotated(&cfg.path, id) {
        tracing::info!(source = %name, rotated = %escape(&old.to_string_lossy()), "reading the rest of the rotated file first");
        for missed in rotated_meanwhile(&cfg.path, &old) {
            tracing::warn!(source = %name, file = %escape(&missed.to_string_lossy()),
                "the file was rotated more than once while relais was stopped: {} is not read, its lines are missing", escape(&missed.to_string_lossy()));
        }
        Some(old)
    } else {
        tracing::warn!(source = %name, "the file read before the restart is gone (rotated and removed?): lines written to it after the last commit may be missing; starting on the current file");
        None
    };
    let Some(path) = found else { return Ok((None, 0)) };
    let mut cur = open_at(&path, Some(p.offset), csv_header)?;
    // Same inode, but written again from the start while relais was stopped?
    if let (Some(open), Some(head)) = (cur.as_mut(), head)
        && !head.matches(&mut open.file)?
    {
        tracing::warn!(source = %name, file = %escape(&path.to_string_lossy()), "the file was rewritten while relais was stopped (its first bytes changed); reading it again from the beginning");
        return Ok((open_at(&path, None, csv_header)?, 0));
    }
    Ok((cur, p.line))
}

/// What the follow loop keeps between two reads.
struct Follow<'a> {
    cfg: &'a TailSource,
    ctx: &'a SourceCtx,
    key: String,
    format: Format,
    mapper: Mapper,
    stats: std::sync::Arc<crate::telemetry::SourceStats>,
    /// Lines read so far in the current file.
    lines: u64,
    /// `[[check]]` state of the source's tags.
    checker: crate::component::checks::Checker,
}

impl Follow<'_> {
    /// Parses the complete lines `chunk` read at `open.offset` and commits
    /// them with the new offset, as one group.
    fn ingest(&mut self, open: &mut Open, chunk: Vec<u8>) {
        let n_lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
        let complete = chunk.len() as u64;
        let mut b = Batcher::new(&self.ctx.ingest, Some((self.key.clone(), open.identity())), 0);
        b.checker = Some(&mut self.checker);
        // One group per chunk: its progress (offset) matches its samples.
        b.auto_flush = false;
        b.set_consumed(self.lines);
        // Line numbers: the parsers count from the chunk's start; the
        // header (when there is one) is line 1 of the file.
        self.mapper.line_base = self.lines;
        self.mapper.byte_base = if open.header.is_some() { 0 } else { open.offset };
        let input: Vec<u8> = match &open.header {
            Some(h) => {
                let mut v = Vec::with_capacity(h.len() + 1 + chunk.len());
                v.extend_from_slice(h.as_bytes());
                v.push(b'\n');
                v.extend_from_slice(&chunk);
                v
            }
            None => chunk,
        };
        let origin = open.path.display().to_string();
        if let Err(e) = parse_input(&input[..], self.format, &self.cfg.common.parse, &mut self.mapper, &origin, &mut |r| b.record(r)) {
            b.quarantine(self.mapper.reject(
                &origin,
                format!("line {}", self.lines + 1),
                format!("{}: {e}", crate::model::reason::PARSE_ERROR),
                "",
            ));
        }
        open.offset += complete;
        self.lines += n_lines;
        b.offset = open.offset;
        b.set_consumed(self.lines);
        let report = b.finish();
        report.count_into(&self.stats, &origin);
    }
}

fn run(cfg: &TailSource, ctx: &SourceCtx) -> anyhow::Result<()> {
    let name = &cfg.common.name;
    let format = cfg.common.parse.format.or_else(|| Format::from_path(&cfg.path)).unwrap_or(Format::Csv);
    let csv_header = format == Format::Csv && cfg.common.parse.csv.header;
    let mut mapper = Mapper::new(name, &cfg.common.device, &cfg.common.parse.tags);
    // A line that is not UTF-8 (a logger's stray byte) is one bad record; the
    // lines around it are still read.
    mapper.continuation = true;
    let key = format!("tail:{name}");
    let stored = ctx.reader.progress_blocking(&key)?;
    tracing::info!(source = %name, path = %cfg.path.display(), resume = ?stored.as_ref().map(|p| p.offset), "tailing file");
    let mut f = Follow { cfg, ctx, key, format, mapper, stats: ctx.telemetry.source(name), lines: 0, checker: ctx.checks.checker() };
    // After a restart with a rotated file: finish the old one first.
    let mut cur: Option<Open> = None;
    if let Some(p) = &stored {
        (cur, f.lines) = resume(cfg, p, csv_header)?;
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
        // Truncated in place, or rewritten (its head changed)?
        let len = open.file.metadata()?.len();
        let rewritten = len >= open.offset && !open.head.matches(&mut open.file)?;
        if len < open.offset || rewritten {
            let what = if rewritten { "file rewritten (its first bytes changed)" } else { "file truncated" };
            tracing::warn!(source = %name, file = %escape(&open.path.to_string_lossy()), "{what}; reading it again from the beginning");
            let path = open.path.clone();
            cur = open_at(&path, None, csv_header)?;
            pending.clear();
            f.lines = 0;
            continue;
        }
        // The fingerprint covers more of a file that was short when opened.
        if open.head.len < open.body_start + HEAD_BYTES && len > open.head.len {
            open.head = Head::of(&mut open.file, open.body_start)?;
        }
        open.file.seek(SeekFrom::Start(open.offset + pending.len() as u64))?;
        let mut buf = Vec::new();
        (&mut open.file).take(8 << 20).read_to_end(&mut buf)?;
        pending.extend_from_slice(&buf);
        let complete = pending.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
        if complete > 0 {
            f.ingest(open, pending.drain(..complete).collect());
            continue; // there may be more
        }
        // At the end: rotated?
        let now = std::fs::metadata(&cfg.path).ok().map(|m| file_id(&m));
        if now.is_some() && now.as_deref() != Some(open.id.as_str()) {
            if !pending.is_empty() {
                // The old file ended without a newline: take its last line too.
                pending.push(b'\n');
                continue;
            }
            tracing::info!(source = %name, "file rotated; following the new file");
            f.lines = 0;
            cur = open_at(&cfg.path, None, csv_header)?;
            continue;
        }
        std::thread::sleep(cfg.poll_interval);
    }
}
