//! The buffer writer thread and the [`Buffer`] handle that owns it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, ToSql, params};
use tokio::sync::{oneshot, watch};

use super::cursors::SinkCursor;
use super::reader::Reader;
use super::registry::{MetaKey, TagRegistry};
use super::retention::Retention;
use super::schema;
use crate::config::BufferConfig;
use crate::ingest::{Entry, Ingest};
use crate::model::{Sample, TagMeta, Value};

/// Counters and gauges of the buffer, updated by the writer.
#[derive(Debug, Default)]
pub struct BufferStats {
    /// Lowest `seq` held (equals `last_seq + 1` when empty).
    pub first_seq: AtomicU64,
    /// Last committed `seq`.
    pub last_seq: AtomicU64,
    /// Samples accepted since start.
    pub accepted_total: AtomicU64,
    /// Undelivered samples dropped by `max_rows`, `max_bytes`, `max_age` or a full disk.
    pub dropped_total: AtomicU64,
    /// Bytes of live database pages.
    pub bytes_used: AtomicU64,
    /// Commits that failed and were retried.
    pub commit_retries: AtomicU64,
    /// Records put in quarantine since start.
    pub quarantined_total: AtomicU64,
    /// Unix time (ms) of the writer's last loop turn: its liveness.
    pub heartbeat_ms: AtomicU64,
}

impl BufferStats {
    /// Rows held.
    pub fn rows(&self) -> u64 {
        (self.last_seq.load(Ordering::Relaxed) + 1).saturating_sub(self.first_seq.load(Ordering::Relaxed))
    }
}

/// The open buffer: owns the writer thread. Dropping it stops the writer after
/// it has committed everything in the ring.
#[derive(Debug)]
pub struct Buffer {
    path: PathBuf,
    durability: crate::config::Durability,
    stats: Arc<BufferStats>,
    committed: watch::Receiver<u64>,
    cursors: Vec<SinkCursor>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    registry: Arc<TagRegistry>,
    _lock: File,
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Buffer {
    /// Opens `<data_dir>/buffer.db` and starts the writer draining `ingest`.
    ///
    /// `sinks` are the configured sink names: each gets its persisted cursor
    /// (0 for a new sink, which then receives everything retained); cursors of
    /// sinks no longer configured are removed so they stop pinning retention.
    /// Fails when another relais holds the data directory.
    pub fn open(cfg: &BufferConfig, data_dir: &Path, ingest: Arc<Ingest>, sinks: &[&str]) -> anyhow::Result<Buffer> {
        std::fs::create_dir_all(data_dir).map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", data_dir.display()))?;
        let lock_path = data_dir.join("relais.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "data_dir {} is in use by another relais process (lock {}); give each instance its own data_dir",
                data_dir.display(),
                lock_path.display()
            );
        }
        let path = data_dir.join("buffer.db");
        let opened = schema::open(&path, cfg.durability, cfg.startup_check)?;
        let conn = opened.conn;
        // Hard backstop: SQLite answers SQLITE_FULL past 125 % of max_bytes,
        // which the writer handles like a full disk.
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let max_pages = (cfg.max_bytes as f64 * 1.25 / page_size as f64).ceil() as i64 + 64;
        conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| Ok(()))?;

        // Cursors.
        let mut stored: HashMap<String, (u64, Option<(u64, u64)>)> = HashMap::new();
        {
            let mut st = conn.prepare("SELECT sink, seq, live_start, live_acked FROM cursors")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))?;
            for r in rows {
                let (k, v, ls, la) = r?;
                let live = (ls > 0 && la >= ls).then_some((ls as u64, la as u64));
                stored.insert(k, (v.max(0) as u64, live));
            }
        }
        let last_seq = opened.last_seq;
        let first: i64 = conn.query_row("SELECT COALESCE(MIN(seq), 0) FROM samples", [], |r| r.get(0))?;
        let first_seq = if first > 0 { first as u64 } else { last_seq + 1 };
        let mut cursors = Vec::new();
        for s in sinks {
            // Rows below the first one are gone: a new sink (or one behind a
            // recovered buffer) starts just before the oldest row kept.
            let (seq, live) = stored.remove(*s).unwrap_or((0, None));
            let seq = seq.max(first_seq - 1);
            let live = live.filter(|(start, _)| *start > seq);
            conn.execute(
                "INSERT OR REPLACE INTO cursors(sink, seq, live_start, live_acked) VALUES(?1, ?2, ?3, ?4)",
                params![s, seq as i64, live.map_or(0, |l| l.0 as i64), live.map_or(0, |l| l.1 as i64)],
            )?;
            cursors.push(SinkCursor::new(s, seq, live));
        }
        for (gone, (seq, _)) in stored {
            tracing::info!(sink = %gone, cursor = seq, "removing the cursor of a sink that is no longer configured");
            conn.execute("DELETE FROM cursors WHERE sink = ?1", params![gone])?;
        }

        let stats = Arc::new(BufferStats::default());
        stats.last_seq.store(last_seq, Ordering::Relaxed);
        stats.first_seq.store(first_seq, Ordering::Relaxed);
        stats.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
        let (committed_tx, committed) = watch::channel(last_seq);
        let stop = Arc::new(AtomicBool::new(false));

        let registry = Arc::new(TagRegistry::default());
        tracing::info!(
            buffer = %path.display(), rows = last_seq + 1 - first_seq, first_seq, last_seq,
            "buffer opened"
        );
        let mut w = Writer {
            retention: Retention::new(cfg, cursors.clone(), first_seq, last_seq + 1),
            conn,
            ingest,
            batch_max: cfg.batch_max,
            stats: stats.clone(),
            committed_tx,
            tag_ids: HashMap::new(),
            registry: registry.clone(),
            instance: fastrand::u32(1..),
            stop: stop.clone(),
            path: path.clone(),
            cfg: cfg.clone(),
            errors: RateLimited::new(Duration::from_secs(60)),
            full_log: RateLimited::new(Duration::from_secs(10)),
            ids: Vec::with_capacity(cfg.batch_max),
        };
        let writer = std::thread::Builder::new()
            .name("relais-writer".into())
            .spawn(move || w.run())
            .map_err(|e| anyhow::anyhow!("cannot start the buffer writer thread: {e}"))?;
        Ok(Buffer { path, durability: cfg.durability, stats, committed, cursors, stop, writer: Some(writer), registry, _lock: lock })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cursor of sink `name`, if it was passed to [`Buffer::open`].
    pub fn cursor(&self, name: &str) -> Option<SinkCursor> {
        self.cursors.iter().find(|c| c.name() == name).cloned()
    }

    /// A new read-only connection for a sink.
    pub fn reader(&self) -> anyhow::Result<Reader> {
        Reader::open(&self.path, self.durability, self.registry.clone())
    }

    /// Watch of the last committed `seq`.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &Arc<BufferStats> {
        &self.stats
    }

    /// Stops the writer once the ring is drained and waits for it.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.writer.take() {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A log line at most once per period, with the count of suppressed ones.
#[derive(Debug)]
pub(crate) struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub(crate) fn new(period: Duration) -> Self {
        RateLimited { period, last: None, suppressed: 0 }
    }

    /// `Some(n suppressed since the last line)` when a line may be written now.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

struct Writer {
    conn: Connection,
    ingest: Arc<Ingest>,
    batch_max: usize,
    stats: Arc<BufferStats>,
    committed_tx: watch::Sender<u64>,
    tag_ids: HashMap<MetaKey, i64>,
    registry: Arc<TagRegistry>,
    instance: u32,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    cfg: BufferConfig,
    retention: Retention,
    errors: RateLimited,
    full_log: RateLimited,
    ids: Vec<i64>,
}

struct SqlValue<'a>(&'a Value);

impl ToSql for SqlValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(*b as i64),
            Value::I64(v) => ValueRef::Integer(*v),
            Value::U64(v) => ValueRef::Integer(*v as i64),
            Value::F64(v) if v.is_finite() => ValueRef::Real(*v),
            Value::F64(_) => ValueRef::Null,
            Value::Str(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// `kind` column: value type in bits 0–2, quality above.
pub(crate) fn kind_of(s: &Sample) -> i64 {
    let vt = match &s.value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::I64(_) => 2,
        Value::U64(_) => 3,
        Value::F64(v) if v.is_finite() => 4,
        Value::F64(_) => 0,
        Value::Str(_) => 5,
    };
    vt | (s.quality.code() as i64) << 3
}

const INSERT: &str =
    "INSERT INTO samples(seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

impl Writer {
    fn run(&mut self) {
        self.ingest.register_writer();
        let mut batch: Vec<Sample> = Vec::with_capacity(self.batch_max);
        let mut groups: Vec<GroupMeta> = Vec::new();
        let mut barriers: Vec<oneshot::Sender<u64>> = Vec::new();
        let mut last_maint = Instant::now();
        let mut last_cursor = Instant::now();
        loop {
            self.stats.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
            while batch.len() < self.batch_max {
                match self.ingest.pop() {
                    Some(Entry::Sample(s)) => batch.push(s),
                    Some(Entry::Group(g)) => {
                        let g = *g;
                        groups.push(GroupMeta {
                            start: batch.len(),
                            len: g.samples.len(),
                            quarantine: g.quarantine,
                            progress: g.progress,
                            done: g.done,
                            moved: g.moved,
                        });
                        batch.extend(g.samples);
                    }
                    Some(Entry::Barrier(b)) => barriers.push(b),
                    None => break,
                }
            }
            if !batch.is_empty() || !barriers.is_empty() || !groups.is_empty() {
                self.ingest.notify_space();
            }
            if !batch.is_empty() || !groups.is_empty() {
                if !self.commit_with_retry(&mut batch, &mut groups) {
                    break;
                }
                self.retention.after_commit(&self.conn, &self.stats);
            }
            let last = self.stats.last_seq.load(Ordering::Relaxed);
            for b in barriers.drain(..) {
                let _ = b.send(last);
            }
            if last_maint.elapsed() >= Duration::from_secs(1) {
                self.retention.periodic(&self.conn, &self.stats);
                last_maint = Instant::now();
                last_cursor = Instant::now();
            } else if last_cursor.elapsed() >= Duration::from_millis(200) {
                // Cursors often: a crash resends at most ~200 ms of acknowledged data.
                self.retention.persist_cursors(&self.conn);
                last_cursor = Instant::now();
            }
            if batch.is_empty() && self.ingest.is_empty() {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                self.ingest.park_writer(Duration::from_millis(100));
            }
        }
        // Nothing pushed from now on can be committed: close the ring so that
        // every producer and waiter returns at once instead of blocking.
        let lost = self.ingest.close();
        if lost > 0 {
            tracing::warn!(samples = lost, "buffer writer stopped with samples still arriving in the ring; they were not accepted");
        }
        // Shutdown: persist cursors, fold the WAL back.
        self.retention.periodic(&self.conn, &self.stats);
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        tracing::debug!(last_seq = self.stats.last_seq.load(Ordering::Relaxed), "buffer writer stopped");
    }

    /// Commits `batch`, retrying on lock and disk errors. Returns false when the
    /// writer must stop (shutdown while the database stays unwritable).
    fn commit_with_retry(&mut self, batch: &mut Vec<Sample>, groups: &mut Vec<GroupMeta>) -> bool {
        let mut backoff = Duration::from_millis(10);
        let mut stop_seen: Option<Instant> = None;
        loop {
            match self.commit(batch, groups) {
                Ok(()) => {
                    batch.clear();
                    groups.clear();
                    return true;
                }
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.stats.commit_retries.fetch_add(1, Ordering::Relaxed);
                    let code = e.sqlite_error_code();
                    if schema::is_corruption(&e) {
                        self.recover_corrupt(&e);
                        continue;
                    }
                    // A full disk shows as SQLITE_FULL, or as an I/O error on write.
                    let full = matches!(code, Some(ErrorCode::DiskFull) | Some(ErrorCode::SystemIoFailure));
                    if full && !self.retention.free_space(&self.conn, &self.stats, batch.len()) {
                        // Nothing older could be dropped: the batch itself does not
                        // fit. Drop its oldest half, counted, so acquisition goes on
                        // and the newest data lands as soon as there is room.
                        let n = batch.len().div_ceil(2);
                        batch.drain(..n);
                        for g in groups.iter_mut() {
                            let end = (g.start + g.len).saturating_sub(n);
                            g.start = g.start.saturating_sub(n);
                            g.len = end - g.start;
                        }
                        let total = self.stats.dropped_total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                        if let Some(suppressed) = self.full_log.allow() {
                            tracing::warn!(
                                dropped = n,
                                dropped_total = total,
                                similar_since_last_report = suppressed,
                                "buffer disk full and nothing older to drop: dropped the oldest {n} samples of the batch"
                            );
                        }
                        if batch.is_empty() && groups.iter().all(|g| g.quarantine.is_empty() && g.progress.is_none() && g.moved.is_none()) {
                            groups.clear();
                            std::thread::sleep(Duration::from_millis(20));
                            return true;
                        }
                    }
                    if let Some(suppressed) = self.errors.allow() {
                        let what = match code {
                            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                                "buffer is locked by another connection; samples wait in the ingest ring and the commit is retried"
                            }
                            Some(ErrorCode::DiskFull) | Some(ErrorCode::SystemIoFailure) => {
                                "buffer disk is full (or failing); dropping the oldest rows and retrying"
                            }
                            _ => "buffer commit failed; retrying",
                        };
                        tracing::warn!(error = %e, pending = batch.len(), retries_since_last_report = suppressed, "{what}");
                    }
                    if self.stop.load(Ordering::SeqCst) {
                        let t = *stop_seen.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_secs(2) {
                            tracing::error!(
                                lost = batch.len() + self.ingest.len(), error = %e,
                                "shutting down while the buffer cannot be written: these samples were never accepted"
                            );
                            return false;
                        }
                    }
                    if full {
                        // Room was made (or the batch shrank): retry soon.
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    std::thread::sleep(backoff);
                    self.stats.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn recover_corrupt(&mut self, e: &rusqlite::Error) {
        tracing::error!(buffer = %self.path.display(), error = %e, "buffer became corrupt while running; moving it aside");
        // Close the damaged file before renaming it.
        let placeholder = Connection::open_in_memory().expect("in-memory SQLite always opens");
        let old = std::mem::replace(&mut self.conn, placeholder);
        drop(old);
        let fresh = schema::move_aside(&self.path).map_err(anyhow::Error::from).and_then(|aside| {
            tracing::error!(moved_to = %aside.display(), "corrupt buffer moved aside; its undelivered samples stay in that file");
            schema::open(&self.path, self.cfg.durability, crate::config::StartupCheck::None)
        });
        match fresh {
            Ok(o) => self.adopt_fresh(o.conn),
            Err(err) => {
                tracing::error!(error = %err, "cannot replace the corrupt buffer; retrying with the old file");
                if let Ok(o) = schema::open(&self.path, self.cfg.durability, crate::config::StartupCheck::None) {
                    self.conn = o.conn;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    fn adopt_fresh(&mut self, conn: Connection) {
        let origin = schema::recovery_seq_origin().max(self.stats.last_seq.load(Ordering::Relaxed) + 1);
        let _ = conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)", params![origin as i64]);
        self.conn = conn;
        self.tag_ids.clear();
        self.registry.clear();
        self.instance = self.instance.wrapping_add(1).max(1);
        self.stats.last_seq.store(origin, Ordering::Relaxed);
        self.stats.first_seq.store(origin + 1, Ordering::Relaxed);
        self.retention.reset(origin + 1);
        tracing::warn!(seq_origin = origin, "started a new buffer after corruption");
    }

    fn tag_id(&mut self, meta: &Arc<TagMeta>) -> rusqlite::Result<i64> {
        if let Some(id) = meta.cached_id(self.instance) {
            return Ok(id);
        }
        let key = MetaKey(meta.clone());
        let id = match self.tag_ids.get(&key) {
            Some(id) => *id,
            None => {
                let unit = meta.unit.as_deref().unwrap_or("");
                let (device, tag) = (&*meta.device, &*meta.tag);
                self.conn.execute("INSERT OR IGNORE INTO tags(device, tag, unit) VALUES(?1, ?2, ?3)", params![device, tag, unit])?;
                let id: i64 = self.conn.query_row(
                    "SELECT id FROM tags WHERE device = ?1 AND tag = ?2 AND unit = ?3",
                    params![device, tag, unit],
                    |r| r.get(0),
                )?;
                self.tag_ids.insert(key, id);
                self.registry.insert(id, meta.clone());
                id
            }
        };
        meta.cache_id(self.instance, id);
        Ok(id)
    }

    fn commit(&mut self, batch: &mut [Sample], groups: &mut [GroupMeta]) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        for s in batch.iter() {
            ids.push(self.tag_id(&s.meta)?);
        }
        let first = self.stats.last_seq.load(Ordering::Relaxed) + 1;
        let mut seq = first;
        {
            let mut ins = self.conn.prepare_cached(INSERT)?;
            for (s, tag_id) in batch.iter_mut().zip(ids.iter()) {
                ins.execute(params![
                    seq as i64,
                    tag_id,
                    kind_of(s),
                    SqlValue(&s.value),
                    s.reason.as_deref(),
                    s.ts.0,
                    s.recv_ts.0,
                    s.server_ts.map(|t| t.0),
                    s.status
                ])?;
                s.seq = seq;
                seq += 1;
            }
        }
        self.ids = ids;
        let last = seq - 1;
        let now = crate::model::Timestamp::now().0;
        let mut quarantined = 0u64;
        for g in groups.iter() {
            if !g.quarantine.is_empty() {
                let mut q = self.conn.prepare_cached(
                    "INSERT INTO quarantine(recv_ts, source, origin, location, reason, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for r in &g.quarantine {
                    q.execute(params![now, r.source, r.origin, r.location, r.reason, r.raw])?;
                    quarantined += 1;
                }
            }
            if let Some(m) = &g.moved {
                self.conn
                    .prepare_cached("UPDATE quarantine SET origin = ?3 WHERE source = ?1 AND origin = ?2")?
                    .execute(params![m.source, m.from, m.to])?;
            }
            if let Some(p) = &g.progress {
                self.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO progress(key, identity, offset, line, done, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![p.key, p.identity, p.offset as i64, p.line as i64, p.done, now])?;
            }
        }
        if !batch.is_empty() {
            self.conn.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)")?.execute(params![last as i64])?;
        }
        self.conn.execute_batch("COMMIT")?;
        self.stats.last_seq.store(last, Ordering::Relaxed);
        self.stats.accepted_total.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.quarantined_total.fetch_add(quarantined, Ordering::Relaxed);
        self.retention.appended(last + 1);
        if !batch.is_empty() {
            self.committed_tx.send_replace(last);
        }
        for g in groups.iter_mut() {
            if let Some(done) = g.done.take() {
                let (a, b) = if g.len == 0 { (last + 1, last) } else { (first + g.start as u64, first + (g.start + g.len) as u64 - 1) };
                let _ = done.send(crate::ingest::Accepted { first: a, last: b });
            }
        }
        Ok(())
    }
}

/// A group's place in the pending batch and what it carries.
struct GroupMeta {
    start: usize,
    len: usize,
    quarantine: Vec<crate::parse::Quarantined>,
    progress: Option<crate::ingest::Progress>,
    done: Option<oneshot::Sender<crate::ingest::Accepted>>,
    moved: Option<crate::ingest::Moved>,
}
