//! The buffer writer thread: drains the ring in batches, commits each batch
//! in one transaction, assigns `seq`, publishes to the tap, and runs
//! retention and cursor persistence between batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::checkpoint::Checkpointer;
use super::clock::Observed;
use super::config::BufferConfig;
use super::cursors::CursorSet;
use super::handle::{BufferStats, unix_ms};
use super::registry::{MetaKey, TagRegistry};
use super::retention::Retention;
use super::rows::Inserts;
use super::schema;
use super::tap::Tap;
use crate::ingest::{Entry, Ingest};
use crate::model::{Record, TagMeta};
pub(crate) use crate::util::RateLimited;

/// A group's place in the pending batch and what it carries.
pub(crate) struct GroupMeta {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) quarantine: Vec<crate::model::Quarantined>,
    pub(crate) progress: Option<crate::ingest::Progress>,
    pub(crate) done: Option<oneshot::Sender<crate::ingest::Accepted>>,
    pub(crate) moved: Option<crate::ingest::Moved>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) ingest: Arc<Ingest>,
    batch_max: usize,
    pub(crate) stats: Arc<BufferStats>,
    pub(crate) tap: Arc<Tap>,
    pub(crate) tag_ids: HashMap<MetaKey, i64>,
    pub(crate) registry: Arc<TagRegistry>,
    pub(crate) instance: u32,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) path: PathBuf,
    pub(crate) cfg: BufferConfig,
    pub(crate) retention: Retention,
    /// The sinks' cursors as the gateway configures them (see [`CursorSet`]).
    cursors: Arc<CursorSet>,
    pub(crate) errors: RateLimited,
    pub(crate) full_log: RateLimited,
    ids: Vec<i64>,
    pub(crate) checkpointer: Option<Checkpointer>,
    pub(crate) own: super::handle::OwnEvents,
    pub(crate) observed: Observed,
    /// A salvage report still to emit as an event (once events are on).
    salvage: Option<super::salvage::Salvage>,
    /// Disk headroom released on a full disk (space.rs).
    pub(crate) reserve: super::space::Reserve,
    /// The disk's state and the lab's disk-full switch (host.rs).
    pub(crate) host: super::host::Host,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: Connection,
        cfg: &BufferConfig,
        path: &Path,
        ingest: Arc<Ingest>,
        cursors: Arc<CursorSet>,
        stats: Arc<BufferStats>,
        tap: Arc<Tap>,
        registry: Arc<TagRegistry>,
        stop: Arc<AtomicBool>,
        own: super::handle::OwnEvents,
        salvage: Option<super::salvage::Salvage>,
        reserve: super::space::Reserve,
        host: super::host::Host,
    ) -> Writer {
        let first = stats.first_seq.load(Ordering::Relaxed);
        let next = stats.last_seq.load(Ordering::Relaxed) + 1;
        let checkpointer = Checkpointer::start(path, cfg.durability, &conn);
        // Every statement of a commit and of retention stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        let observed = Observed::load(&conn, first, next - 1).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the buffer's observed clock; max_age counts from now");
            Observed::fresh()
        });
        Writer {
            retention: Retention::new(cfg, cursors.list(), first, next, own.clone()),
            cursors,
            own,
            observed,
            salvage,
            reserve,
            host,
            conn,
            ingest,
            batch_max: cfg.batch_max,
            stats,
            tap,
            tag_ids: HashMap::new(),
            registry,
            instance: fastrand::u32(1..),
            stop,
            path: path.to_path_buf(),
            cfg: cfg.clone(),
            errors: RateLimited::new(Duration::from_secs(60)),
            full_log: RateLimited::new(Duration::from_secs(10)),
            ids: Vec::with_capacity(cfg.batch_max),
            checkpointer,
        }
    }

    /// Pops ring entries into `batch` until it holds `batch_max` records.
    fn fill(&mut self, batch: &mut Vec<Record>, groups: &mut Vec<GroupMeta>, barriers: &mut Vec<oneshot::Sender<u64>>) {
        while batch.len() < self.batch_max {
            match self.ingest.pop() {
                Some(Entry::Sample(s)) => batch.push(Record::Sample(s)),
                Some(Entry::Event(e)) => batch.push(Record::Event(*e)),
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
                    batch.extend(g.samples.into_iter().map(Record::Sample));
                }
                Some(Entry::Barrier(b)) => barriers.push(b),
                None => break,
            }
        }
    }

    pub(crate) fn run(&mut self) {
        self.ingest.register_writer();
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch_max);
        let mut groups: Vec<GroupMeta> = Vec::new();
        let mut barriers: Vec<oneshot::Sender<u64>> = Vec::new();
        let mut last_maint = Instant::now();
        let mut last_cursor = Instant::now();
        let mut last_hint: Option<Instant> = None;
        let mut last_audit_trim: Option<Instant> = None;
        loop {
            self.stats.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
            if let Some((list, removed)) = self.cursors.take_changes() {
                self.retention.set_cursors(&self.conn, list, &removed);
            }
            self.fill(&mut batch, &mut groups, &mut barriers);
            if !batch.is_empty() || !barriers.is_empty() || !groups.is_empty() {
                self.ingest.notify_space();
            }
            if !batch.is_empty() || !groups.is_empty() {
                if !self.commit_with_retry(&mut batch, &mut groups) {
                    break;
                }
                if batch.capacity() == 0 {
                    // The tap took the records.
                    batch = Vec::with_capacity(self.batch_max);
                }
                self.retention.after_commit(&self.conn, &self.stats);
            }
            let last = self.stats.last_seq.load(Ordering::Relaxed);
            for b in barriers.drain(..) {
                let _ = b.send(last);
            }
            // Delivered rows go in small steps between commits, so no single
            // DELETE holds the writer long enough to delay live data.
            self.retention.trim_delivered(&self.conn, &self.stats, self.ingest.is_empty());
            self.tap.set_floor(self.stats.first_seq.load(Ordering::Relaxed));
            if last_hint.is_none_or(|t| t.elapsed() >= schema::HINT_PERIOD) {
                if self.reserve.ensure() {
                    self.retention.disk_has_room(&self.conn, self.cfg.max_bytes);
                    self.host.room(&self.own);
                }
                schema::write_seq_hint(&self.path, self.stats.last_seq.load(Ordering::Relaxed), self.retention.min_cursor());
                last_hint = Some(Instant::now());
            }
            if last_maint.elapsed() >= Duration::from_secs(1) {
                self.report_salvage();
                self.observed.persist(&self.conn);
                super::clock::persist_floor(&self.conn);
                self.host.check_space(&self.own);
                self.retention.periodic(&self.conn, &self.stats, self.observed.now());
                self.tap.set_floor(self.stats.first_seq.load(Ordering::Relaxed));
                if last_audit_trim.is_none_or(|t| t.elapsed() >= super::audit::TRIM_PERIOD) {
                    self.trim_audit();
                    last_audit_trim = Some(Instant::now());
                }
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
        if let Some(c) = self.checkpointer.take() {
            c.stop();
        }
        // Shutdown: persist cursors and clocks, fold the WAL back.
        self.observed.persist(&self.conn);
        super::clock::persist_floor(&self.conn);
        schema::write_seq_hint(&self.path, self.stats.last_seq.load(Ordering::Relaxed), self.retention.min_cursor());
        self.retention.periodic(&self.conn, &self.stats, self.observed.now());
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        // Leave headroom for the next start, even on a full disk.
        self.reserve.ensure_for_start();
        self.tap.close();
        tracing::debug!(last_seq = self.stats.last_seq.load(Ordering::Relaxed), "buffer writer stopped");
    }

    /// Applies `audit_retention` and `audit_max_rows` to the audit copy.
    fn trim_audit(&self) {
        let now = crate::model::Timestamp::now().as_nanos();
        match super::audit::trim(&self.conn, self.cfg.audit_retention, self.cfg.audit_max_rows, now) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "audit rows past audit_retention / audit_max_rows deleted"),
            Err(e) => tracing::warn!(error = %e, "could not trim the audit copy; will retry"),
        }
    }

    /// Emits the `buffer.salvaged` event of a salvage at open, once the
    /// gateway turned the buffer's events on.
    fn report_salvage(&mut self) {
        if !self.own.on.load(Ordering::Relaxed) {
            return;
        }
        if let Some(r) = self.salvage.take() {
            self.own.emit_now(
                "buffer.salvaged",
                if r.lost > 0 { crate::model::Severity::Error } else { crate::model::Severity::Warning },
                format!("the buffer was corrupt at start: {} undelivered records salvaged, {} could not be read", r.salvaged, r.lost),
                serde_json::json!({"salvaged": r.salvaged, "lost": r.lost, "unnamed": r.unnamed,
                    "old_range": r.range.map(|(a, b)| serde_json::json!([a, b]))}),
            );
        }
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

    /// Inserts the records with consecutive `seq`s; returns (first, samples).
    fn insert_records(&mut self, batch: &mut [Record]) -> rusqlite::Result<(u64, u64)> {
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        for r in batch.iter() {
            ids.push(match r {
                Record::Sample(s) => self.tag_id(&s.meta)?,
                Record::Event(_) => 0,
            });
        }
        let first = self.stats.last_seq.load(Ordering::Relaxed) + 1;
        let samples = Inserts::new(&self.conn).records(first, &ids, batch)?;
        self.ids = ids;
        Ok((first, samples))
    }

    pub(crate) fn commit(&mut self, batch: &mut Vec<Record>, groups: &mut [GroupMeta]) -> rusqlite::Result<()> {
        // Statements parsed once per connection (500 commits a second is common).
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let (first, samples) = self.insert_records(batch)?;
        if !batch.is_empty() {
            self.observed.mark(&self.conn, first)?;
        }
        let n = batch.len() as u64;
        let last = first + n - 1;
        let quarantined = super::rows::insert_groups(&self.conn, groups)?;
        if n > 0 {
            self.conn.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)")?.execute(params![last as i64])?;
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.stats.last_seq.store(last.max(first - 1), Ordering::Relaxed);
        self.stats.accepted_total.fetch_add(samples, Ordering::Relaxed);
        self.stats.events_total.fetch_add(n - samples, Ordering::Relaxed);
        self.stats.quarantined_total.fetch_add(quarantined, Ordering::Relaxed);
        if n > 0 {
            self.retention.appended(last + 1);
            // The tap first, then the watch that wakes sinks and subscribers.
            self.tap.publish(first, last, samples, batch);
        }
        for g in groups.iter_mut() {
            if let Some(done) = g.done.take() {
                let (a, b) =
                    if g.len == 0 { (first + n, first + n - 1) } else { (first + g.start as u64, first + (g.start + g.len) as u64 - 1) };
                let _ = done.send(crate::ingest::Accepted { first: a, last: b });
            }
        }
        Ok(())
    }
}
