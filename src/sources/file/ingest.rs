//! Reading one file into the ring: parse, group, push, report.
//!
//! Records are pushed in groups of up to 4096 samples. Each group carries the
//! records quarantined since the previous one and the input's progress (the
//! number of records consumed), committed in the same transaction: after a
//! crash, a resumed read skips exactly the committed records.
//!
//! Stopping: when the read's cancellation token fires (shutdown, Ctrl-C), the
//! reader pushes the group it holds, with its progress, and stops there; the
//! input is not marked done, so the next run resumes exactly after it. A
//! file-level error (unreadable header, wrong column name, not text) is never
//! marked done either.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Accepted, Group, Ingest, Progress};
use crate::parse::csv::FileError;
use crate::parse::spec::Format;
use crate::parse::{Mapper, ParseSpec, Quarantined, Record};

/// Samples per group pushed into the ring.
pub const GROUP_SAMPLES: usize = 4096;

/// What became of one input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    /// Records read (rows, objects, lines), skipped ones excluded.
    pub records: u64,
    /// Records skipped because an earlier run committed them.
    pub resumed: u64,
    /// Samples accepted (committed).
    pub samples: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Quarantined records by reason code.
    pub reasons: BTreeMap<String, u64>,
    /// The quarantined records (location and reason), for `.errors` reports.
    pub rejects: Vec<(String, String)>,
    /// `seq` range accepted.
    pub seqs: Option<(u64, u64)>,
    /// The read stopped early because it was cancelled (shutdown, Ctrl-C):
    /// what was read is committed with its progress, the rest is not read.
    pub interrupted: bool,
    /// A whole-input problem stopped the read (it is not recorded as done).
    pub file_error: bool,
    /// Groups whose commit was never confirmed (the buffer writer stopped):
    /// their records are not accepted and the input is not done.
    pub unconfirmed: u64,
}

impl FileReport {
    /// Adds this report to a source's counters; `origin` names the input.
    pub fn count_into(&self, stats: &crate::telemetry::SourceStats, origin: &str) {
        stats.add((self.records, self.samples, self.quarantined), &self.reasons, self.rejects.first(), origin);
    }

    /// True when the whole input was read and committed (it is recorded done).
    pub fn complete(&self) -> bool {
        !self.interrupted && !self.file_error && self.unconfirmed == 0
    }
}

impl FileReport {
    fn add(&mut self, a: Accepted) {
        if a.first <= a.last {
            self.samples += a.last - a.first + 1;
            self.seqs = Some(match self.seqs {
                None => (a.first, a.last),
                Some((f, l)) => (f.min(a.first), l.max(a.last)),
            });
        }
    }
}

pub use crate::model::reason::code as reason_code;

/// Accumulates records into groups and pushes them.
pub struct Batcher<'a> {
    ingest: &'a Ingest,
    /// `[[check]]` state of the source's tags, when its samples are checked.
    pub checker: Option<&'a mut crate::component::checks::Checker>,
    group: Group,
    waiting: Vec<oneshot::Receiver<Accepted>>,
    /// The report so far.
    pub report: FileReport,
    key: Option<(String, String)>,
    consumed: u64,
    skip: u64,
    keep_rejects: bool,
    /// Byte offset recorded with the next progress (tail).
    pub offset: u64,
    /// Push a group every [`GROUP_SAMPLES`] samples (off: one group at `finish`).
    pub auto_flush: bool,
    /// Counts records as they are read (progress bars).
    pub live_records: Option<Arc<AtomicU64>>,
    /// Stops the read at the next group when cancelled.
    pub cancel: Option<CancellationToken>,
    /// Set once the read stopped: the reader should stop feeding records.
    pub stop_reading: Arc<AtomicBool>,
    stopped: bool,
}

impl<'a> Batcher<'a> {
    /// A batcher recording progress under `key` (with `identity`) when given,
    /// skipping the first `skip` records (committed by an earlier run).
    pub fn new(ingest: &'a Ingest, key: Option<(String, String)>, skip: u64) -> Self {
        Batcher {
            ingest,
            checker: None,
            group: Group::default(),
            waiting: Vec::new(),
            report: FileReport::default(),
            key,
            consumed: 0,
            skip,
            keep_rejects: true,
            offset: 0,
            auto_flush: true,
            live_records: None,
            cancel: None,
            stop_reading: Arc::new(AtomicBool::new(false)),
            stopped: false,
        }
    }

    /// Takes one record. After a stop, records are ignored (not consumed):
    /// the next run reads them.
    pub fn record(&mut self, r: Record) {
        if self.stopped {
            return;
        }
        self.consumed += 1;
        if self.skip > 0 {
            self.skip -= 1;
            self.report.resumed += 1;
            return;
        }
        self.report.records += 1;
        if let Some(c) = &self.live_records {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match r {
            Ok(samples) => self.group.samples.extend(samples),
            Err(q) => self.quarantine(q),
        }
        if !self.auto_flush {
            return;
        }
        let full = self.group.samples.len() >= GROUP_SAMPLES || self.group.quarantine.len() >= 1024;
        if full || self.consumed.is_multiple_of(256) {
            let cancelled = self.cancel.as_ref().is_some_and(CancellationToken::is_cancelled);
            if full || cancelled {
                self.flush(false);
            }
            if cancelled {
                self.stop();
            }
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.report.interrupted = true;
        self.stop_reading.store(true, Ordering::SeqCst);
    }

    /// True once the read was stopped by its cancellation token.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Takes a whole-input problem as one quarantined record.
    pub fn quarantine(&mut self, q: Quarantined) {
        self.report.quarantined += 1;
        *self.report.reasons.entry(reason_code(&q.reason)).or_default() += 1;
        if self.keep_rejects && self.report.rejects.len() < 100_000 {
            self.report.rejects.push((q.location.clone(), q.reason.clone()));
        }
        self.group.quarantine.push(q);
    }

    /// Takes a whole-input problem that stopped the read: quarantined, and
    /// the input is not recorded as done (a corrected run reads it again).
    pub fn file_error(&mut self, q: Quarantined) {
        self.report.file_error = true;
        self.quarantine(q);
    }

    /// Pushes the current group (and the progress, marked `done` at the end).
    pub fn flush(&mut self, done: bool) {
        let mut g = std::mem::take(&mut self.group);
        if let Some((key, identity)) = &self.key {
            g.progress = Some(Progress { key: key.clone(), identity: identity.clone(), offset: self.offset, line: self.consumed, done });
        }
        if g.samples.is_empty() && g.quarantine.is_empty() && g.progress.is_none() {
            return;
        }
        if let Some(c) = self.checker.as_deref_mut() {
            c.apply_all(&mut g.samples, None);
        }
        self.waiting.push(self.ingest.push_group_blocking(g));
        // Collect what is already accepted, to keep the list short.
        let report = &mut self.report;
        self.waiting.retain_mut(|rx| match rx.try_recv() {
            Ok(a) => {
                report.add(a);
                false
            }
            Err(oneshot::error::TryRecvError::Empty) => true,
            Err(oneshot::error::TryRecvError::Closed) => {
                report.unconfirmed += 1;
                false
            }
        });
    }

    /// Records consumed so far (skipped ones included).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Continues counting from `n` records (a resumed tail).
    pub fn set_consumed(&mut self, n: u64) {
        self.consumed = n;
    }

    /// Flushes (marking the input done unless the read stopped early or
    /// failed) and waits until everything is committed, or until the buffer
    /// writer is known to be gone (never forever).
    pub fn finish(mut self) -> FileReport {
        let done = !self.stopped && !self.report.file_error;
        self.flush(done);
        for rx in std::mem::take(&mut self.waiting) {
            match rx.blocking_recv() {
                Ok(a) => self.report.add(a),
                Err(_) => self.report.unconfirmed += 1,
            }
        }
        self.report
    }
}

/// A reader that counts the bytes it has read (for progress bars) and fails
/// once told to stop (the read was cancelled).
pub struct Counting<R> {
    inner: R,
    /// Bytes read so far.
    pub count: Arc<AtomicU64>,
    /// Reads fail once this is set.
    pub stop: Arc<AtomicBool>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            // Not `Interrupted`: readers retry that kind.
            return Err(std::io::Error::other("read stopped"));
        }
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub use crate::parse::parse_input;

/// The format of `path`: the source's, else from the extension.
pub fn format_of(path: &Path, spec: &ParseSpec) -> Result<Format, FileError> {
    spec.format.or_else(|| Format::from_path(path)).ok_or_else(|| {
        FileError::Header(format!(
            "cannot tell the format of {} from its extension; set format = \"csv\", \"json\" or \"jsonl\"",
            path.display()
        ))
    })
}

/// SHA-256 of a file's content and its size: its identity for imports.
pub fn file_identity(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, size))
}

/// The progress key of a file import: its content (SHA-256 and size) and a
/// digest of the settings that change its samples ([`ParseSpec::settings`]).
/// The same content imported with the same settings is not imported again;
/// with corrected settings it is a new import.
pub fn import_key(hash: &str, size: u64, spec: &ParseSpec, format: Format, device: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(spec.settings(format, device).as_bytes());
    let settings: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("file:{hash}:{size}:{settings}")
}

/// The progress key earlier versions used (content only, settings unknown).
pub fn legacy_import_key(hash: &str, size: u64) -> String {
    format!("file:{hash}:{size}")
}

/// What an earlier run left for a file import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// Never imported with these settings.
    New,
    /// Interrupted after this many committed records.
    Resume(u64),
    /// Imported with the same content and settings.
    Done,
    /// Imported by an earlier version of relais, whose record does not say
    /// with which settings (progress key [`legacy_import_key`]).
    LegacyDone,
}

/// Looks up what earlier runs recorded under `key` (and the legacy key).
pub fn previous(reader: &crate::buffer::Reader, key: &str, legacy: &str) -> anyhow::Result<Previous> {
    Ok(match reader.progress_blocking(key)? {
        Some(p) if p.done => Previous::Done,
        Some(p) => Previous::Resume(p.line),
        // A legacy record of a file that gave no record at all is most likely
        // a file-level error, which is no longer recorded as done.
        None => match reader.progress_blocking(legacy)? {
            Some(p) if p.done && p.line > 0 => Previous::LegacyDone,
            _ => Previous::New,
        },
    })
}

/// Live counters of a file being read (progress bars), and its stop signal.
#[derive(Debug, Clone, Default)]
pub struct LiveCounters {
    /// Bytes read.
    pub bytes: Arc<AtomicU64>,
    /// Records read.
    pub records: Arc<AtomicU64>,
    /// When cancelled, the read stops at the next group: what was read is
    /// committed with its progress (see the module docs).
    pub cancel: Option<CancellationToken>,
}

/// Ingests one file (blocking): parses it and pushes its groups, waiting for
/// their commit. `key` records progress; `skip` records are skipped (resume).
/// With `checker`, samples pass the `[[check]]` checks before the ring.
#[allow(clippy::too_many_arguments)]
pub fn ingest_file<'a>(
    path: &Path,
    spec: &ParseSpec,
    mapper: &mut Mapper,
    ingest: &'a Ingest,
    key: Option<(String, String)>,
    skip: u64,
    live: &LiveCounters,
    checker: Option<&'a mut crate::component::checks::Checker>,
) -> FileReport {
    let origin = path.display().to_string();
    let mut b = Batcher::new(ingest, key, skip);
    b.checker = checker;
    b.live_records = Some(live.records.clone());
    b.cancel = live.cancel.clone();
    let bytes = live.bytes.clone();
    let stop = b.stop_reading.clone();
    let result = format_of(path, spec).and_then(|format| {
        let f = std::fs::File::open(path).map_err(|e| FileError::Io(format!("cannot open: {e}")))?;
        let input = Counting { inner: f, count: bytes, stop };
        parse_input(input, format, spec, mapper, &origin, &mut |r| b.record(r))
    });
    match result {
        // The reader failed because the read was stopped: not a file problem.
        Err(_) if b.stopped() => {}
        Err(e) => {
            let code = match e {
                FileError::NotText(_) | FileError::Header(_) => crate::model::reason::PARSE_ERROR,
                FileError::Io(_) => "read_error",
            };
            b.file_error(mapper.reject(&origin, "file".into(), format!("{code}: {e}"), ""));
        }
        Ok(_) => {}
    }
    b.finish()
}
