//! The [`Buffer`] handle: opens the database, loads the cursors, starts the
//! writer thread, and hands out readers, cursors, the tap and counters.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use tokio::sync::watch;

use super::config::BufferConfig;
use super::cursors::{CursorSet, SinkCursor};
use super::reader::Reader;
use super::registry::TagRegistry;
use super::schema;
use super::tap::Tap;
use super::writer::Writer;
use crate::ingest::Ingest;

/// Counters and gauges of the buffer, updated by the writer.
#[derive(Debug, Default)]
pub struct BufferStats {
    /// Lowest `seq` held (equals `last_seq + 1` when empty).
    pub first_seq: AtomicU64,
    /// Last committed `seq`.
    pub last_seq: AtomicU64,
    /// Samples accepted since start.
    pub accepted_total: AtomicU64,
    /// Events accepted since start.
    pub events_total: AtomicU64,
    /// Undelivered records dropped by `max_rows`, `max_bytes`, `max_age` or a
    /// full disk: those the slowest sink had not delivered. Each sink's own
    /// loss is [`SinkCursor::dropped`].
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
    /// Rows held (samples and events).
    pub fn rows(&self) -> u64 {
        (self.last_seq.load(Ordering::Relaxed) + 1).saturating_sub(self.first_seq.load(Ordering::Relaxed))
    }
}

/// The open buffer: owns the writer thread. Dropping it stops the writer after
/// it has committed everything in the ring.
#[derive(Debug)]
pub struct Buffer {
    path: PathBuf,
    durability: super::config::Durability,
    stats: Arc<BufferStats>,
    tap: Arc<Tap>,
    cursors: Arc<CursorSet>,
    ingest: Arc<Ingest>,
    own_events: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    registry: Arc<TagRegistry>,
    salvage: Option<super::salvage::Salvage>,
    disk_full: Arc<AtomicBool>,
    _lock: File,
}

/// The buffer's own events (`buffer.dropped`, `buffer.replaced`): off until
/// [`Buffer::emit_events`] turns them on (the running gateway does; a bare
/// `Buffer` used as a library, as in tests of exact `seq` ranges, stays quiet).
#[derive(Debug, Clone)]
pub(crate) struct OwnEvents {
    pub(crate) events: crate::ingest::Events,
    pub(crate) on: Arc<AtomicBool>,
}

impl OwnEvents {
    pub(crate) fn emit_now(&self, kind: &str, severity: crate::model::Severity, message: String, details: serde_json::Value) {
        if self.on.load(Ordering::Relaxed) {
            self.events.emit_now(kind, severity, crate::model::EventSource::Gateway, message, details);
        }
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
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
    Ok(lock)
}

/// Loads the cursors of `sinks` (0 for a new sink, which then receives
/// everything retained) and removes those of sinks no longer configured.
fn load_cursors(conn: &Connection, sinks: &[&str], first_seq: u64) -> anyhow::Result<Vec<SinkCursor>> {
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
    Ok(cursors)
}

/// Makes the disk reserve, caps `max_bytes` below what the disk holding
/// `data_dir` can take (with a warning), and sets SQLite's page backstop
/// (125 % of it: past that SQLite answers SQLITE_FULL, handled like a full
/// disk). Returns the config the writer applies.
fn fit_to_disk(
    conn: &Connection,
    cfg: &BufferConfig,
    data_dir: &Path,
    path: &Path,
    reserve: &super::space::Reserve,
) -> anyhow::Result<BufferConfig> {
    // Headroom first, before anything else can take the space.
    reserve.ensure();
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let db_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut cfg = cfg.clone();
    let fits = super::space::effective_max_bytes(cfg.max_bytes, data_dir, db_bytes, reserve.size());
    if fits < cfg.max_bytes {
        tracing::warn!(
            data_dir = %data_dir.display(), max_bytes = cfg.max_bytes, kept = fits,
            "the disk holding the buffer has room for {} only (with headroom): the buffer keeps at most that, dropping the oldest records beyond",
            crate::units::format_size(fits)
        );
        cfg.max_bytes = fits;
    }
    let max_pages = (cfg.max_bytes as f64 * 1.25 / page_size as f64).ceil() as i64 + 64;
    conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| Ok(()))?;
    Ok(cfg)
}

impl Buffer {
    /// Opens `<data_dir>/buffer.db` and starts the writer draining `ingest`.
    ///
    /// `sinks` are the configured sink names: each gets its persisted cursor
    /// (0 for a new sink, which then receives everything retained); cursors of
    /// sinks no longer configured are removed so they stop pinning retention.
    /// Fails when another relais holds the data directory.
    pub fn open(cfg: &BufferConfig, data_dir: &Path, ingest: Arc<Ingest>, sinks: &[&str]) -> anyhow::Result<Buffer> {
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join("buffer.db");
        let reserve = super::space::Reserve::new(data_dir, cfg.max_bytes);
        if super::space::available(data_dir).is_some_and(|a| a < reserve.size()) && reserve.release() {
            tracing::warn!(data_dir = %data_dir.display(), "the disk holding the buffer is full: released its reserve to start");
        }
        let opened = match schema::open(&path, cfg.durability, cfg.startup_check) {
            Err(e) if reserve.release() => {
                tracing::warn!(error = %e, "cannot open the buffer; released its disk reserve and retrying");
                schema::open(&path, cfg.durability, cfg.startup_check)?
            }
            r => r?,
        };
        let salvage = opened.salvage.clone();
        let conn = opened.conn;
        // Before any source stamps a sample: the clock never reads below it.
        super::clock::load_floor(&conn);
        let cfg = &fit_to_disk(&conn, cfg, data_dir, &path, &reserve)?;

        let last_seq = opened.last_seq;
        // The oldest record kept, sample or event (MIN ignores an empty table's NULL).
        let first: i64 = conn
            .query_row("SELECT MIN(m) FROM (SELECT MIN(seq) AS m FROM samples UNION ALL SELECT MIN(seq) FROM events)", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .unwrap_or(0);
        let first_seq = if first > 0 { first as u64 } else { last_seq + 1 };
        let cursors = Arc::new(CursorSet::new(load_cursors(&conn, sinks, first_seq)?));

        let stats = Arc::new(BufferStats::default());
        stats.last_seq.store(last_seq, Ordering::Relaxed);
        stats.first_seq.store(first_seq, Ordering::Relaxed);
        stats.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
        let tap = Arc::new(Tap::new(last_seq));
        let stop = Arc::new(AtomicBool::new(false));
        let registry = Arc::new(TagRegistry::default());
        tracing::info!(
            buffer = %path.display(), rows = last_seq + 1 - first_seq, first_seq, last_seq,
            "buffer opened"
        );
        let own_events = Arc::new(AtomicBool::new(false));
        let own = OwnEvents { events: ingest.events(), on: own_events.clone() };
        let disk_full = Arc::new(AtomicBool::new(false));
        let host = super::host::Host::new(data_dir.to_path_buf(), cfg.disk_low_percent, disk_full.clone());
        let mut w = Writer::new(
            conn,
            cfg,
            &path,
            ingest.clone(),
            cursors.clone(),
            stats.clone(),
            tap.clone(),
            registry.clone(),
            stop.clone(),
            own,
            salvage.clone(),
            reserve,
            host,
        );
        let writer = std::thread::Builder::new()
            .name("relais-writer".into())
            .spawn(move || w.run())
            .map_err(|e| anyhow::anyhow!("cannot start the buffer writer thread: {e}"))?;
        Ok(Buffer {
            path,
            durability: cfg.durability,
            stats,
            tap,
            cursors,
            ingest,
            own_events,
            stop,
            writer: Some(writer),
            registry,
            salvage,
            disk_full,
            _lock: lock,
        })
    }

    /// What was salvaged when the file was found corrupt at open (`None`
    /// when it was sound).
    pub fn salvage(&self) -> Option<&super::salvage::Salvage> {
        self.salvage.as_ref()
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cursor of sink `name`, if it was passed to [`Buffer::open`] or
    /// added by [`Buffer::add_sink`].
    pub fn cursor(&self, name: &str) -> Option<SinkCursor> {
        self.cursors.get(name)
    }

    /// The cursors of the configured sinks (shared: it follows
    /// [`Buffer::add_sink`] and [`Buffer::remove_sink`]).
    pub fn cursors(&self) -> Arc<CursorSet> {
        self.cursors.clone()
    }

    /// Gives a sink added by a configuration reload its cursor: just before
    /// the oldest row kept, like a new sink at start (it receives everything
    /// retained). A sink already configured keeps its cursor.
    pub fn add_sink(&self, name: &str) -> SinkCursor {
        let first = self.stats.first_seq.load(Ordering::Relaxed);
        let c = self.cursors.add(name, first.saturating_sub(1));
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
        c
    }

    /// Forgets a sink removed by a configuration reload: its cursor stops
    /// holding retention back and its stored row is deleted (a sink of that
    /// name added later starts like a new one).
    pub fn remove_sink(&self, name: &str) {
        if self.cursors.remove(name)
            && let Some(w) = &self.writer
        {
            w.thread().unpark();
        }
    }

    /// A new read-only connection for a sink.
    pub fn reader(&self) -> anyhow::Result<Reader> {
        Reader::open(&self.path, self.durability, self.registry.clone(), self.tap.clone())
    }

    /// Watch of the last committed `seq`.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.tap.committed()
    }

    /// The committed-data tap (see [`super::tap`]).
    pub fn tap(&self) -> &Arc<Tap> {
        &self.tap
    }

    /// A handle to emit events into the ring this buffer drains.
    pub fn events(&self) -> crate::ingest::Events {
        self.ingest.events()
    }

    /// Turns on the buffer's own events: `buffer.dropped` whenever the limits
    /// or a full disk drop undelivered records (with the same text as the
    /// warning, which stays), `buffer.replaced` when a corrupt file was
    /// replaced. Events take a `seq` like samples (see the module docs).
    pub fn emit_events(&self) {
        self.own_events.store(true, Ordering::Relaxed);
    }

    /// The lab's disk-full switch (`PUT /api/lab/disk_full`, only with
    /// `[lab] faults = true`): while on, every commit fails as on a full disk
    /// on which nothing can be freed; samples wait in the ring, nothing is
    /// dropped, and `buffer.disk_full` / `buffer.writable` are emitted as for a
    /// real one (see `host.rs`).
    pub fn set_disk_full(&self, on: bool) {
        self.disk_full.store(on, Ordering::Relaxed);
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
    }

    /// A handle to the disk-full switch (the admin API holds it).
    pub fn disk_full_switch(&self) -> Arc<AtomicBool> {
        self.disk_full.clone()
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
