//! What the writer does when the database fails under it: commits are
//! retried, a corrupt file is moved aside and replaced, a batch that does not
//! fit a full disk sheds its oldest records (counted), the lab's disk-full
//! switch holds the batch (host.rs).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, params};

use super::handle::unix_ms;

use super::schema;
use super::writer::{GroupMeta, Writer};
use crate::model::{Record, Severity};

impl Writer {
    /// Commits `batch`, retrying on lock and disk errors. Returns false when the
    /// writer must stop (shutdown while the database stays unwritable).
    pub(crate) fn commit_with_retry(&mut self, batch: &mut Vec<Record>, groups: &mut Vec<GroupMeta>) -> bool {
        let mut backoff = Duration::from_millis(10);
        let mut stop_seen: Option<Instant> = None;
        super::clock::flag_suspect(batch);
        loop {
            if self.host.switched() {
                // The lab's disk-full switch: as a full disk on which nothing
                // can be freed; the batch waits (host.rs).
                self.host.full(&self.own, true, "disk_full switch (lab)", batch.len());
                if self.stop.load(Ordering::SeqCst) && stop_seen.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(2) {
                    tracing::error!(
                        lost = batch.len() + self.ingest.len(),
                        "shutting down while the disk_full switch is on: these samples were never accepted"
                    );
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
                self.stats.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
                continue;
            }
            let e = match self.commit(batch, groups) {
                Ok(()) => {
                    batch.clear();
                    groups.clear();
                    self.host.written(&self.own);
                    return true;
                }
                Err(e) => e,
            };
            let _ = self.conn.execute_batch("ROLLBACK");
            self.stats.commit_retries.fetch_add(1, Ordering::Relaxed);
            let code = e.sqlite_error_code();
            if schema::is_corruption(&e) {
                self.recover_corrupt(&e);
                continue;
            }
            // A full disk shows as SQLITE_FULL, or as an I/O error on write.
            let full = matches!(code, Some(ErrorCode::DiskFull) | Some(ErrorCode::SystemIoFailure));
            if full {
                self.host.full(&self.own, false, &e.to_string(), batch.len());
            }
            if full && self.reserve.release() {
                tracing::warn!(
                    reserve = self.reserve.size(),
                    "buffer disk full: released the disk reserve so the oldest rows can be deleted to make room"
                );
            }
            if full && !self.retention.free_space(&self.conn, &self.stats, batch.len()) && self.shed_oldest_of_batch(batch, groups) {
                return true;
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

    /// Nothing older could be dropped on a full disk: the batch itself does
    /// not fit. Drops its oldest half, counted, so acquisition goes on and the
    /// newest data lands as soon as there is room. Returns true when nothing
    /// is left to commit.
    pub(crate) fn shed_oldest_of_batch(&mut self, batch: &mut Vec<Record>, groups: &mut Vec<GroupMeta>) -> bool {
        let n = batch.len().div_ceil(2);
        batch.drain(..n);
        for g in groups.iter_mut() {
            let end = (g.start + g.len).saturating_sub(n);
            g.start = g.start.saturating_sub(n);
            g.len = end - g.start;
        }
        let total = self.stats.dropped_total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        self.retention.count_unstored(n as u64);
        if let Some(suppressed) = self.full_log.allow() {
            tracing::warn!(
                dropped = n,
                dropped_total = total,
                similar_since_last_report = suppressed,
                "buffer disk full and nothing older to drop: dropped the oldest {n} samples of the batch"
            );
            self.own.emit_now(
                "buffer.dropped",
                Severity::Error,
                format!("buffer disk full and nothing older to drop: dropped the oldest {n} samples of a batch before they were accepted"),
                serde_json::json!({"dropped": n, "dropped_total": total, "reason": "disk full", "accepted": false}),
            );
        }
        if batch.is_empty() && groups.iter().all(|g| g.quarantine.is_empty() && g.progress.is_none() && g.moved.is_none()) {
            groups.clear();
            std::thread::sleep(Duration::from_millis(20));
            return true;
        }
        false
    }

    pub(crate) fn recover_corrupt(&mut self, e: &rusqlite::Error) {
        tracing::error!(buffer = %self.path.display(), error = %e, "buffer became corrupt while running; moving it aside");
        // Close the damaged file before renaming it.
        let placeholder = Connection::open_in_memory().expect("in-memory SQLite always opens");
        let old = std::mem::replace(&mut self.conn, placeholder);
        drop(old);
        let fresh = schema::move_aside(&self.path).map_err(anyhow::Error::from).and_then(|aside| {
            tracing::error!(moved_to = %aside.display(), "corrupt buffer moved aside; its undelivered samples stay in that file");
            schema::open(&self.path, self.cfg.durability, super::config::StartupCheck::None)
        });
        match fresh {
            Ok(o) => self.adopt_fresh(o.conn),
            Err(err) => {
                tracing::error!(error = %err, "cannot replace the corrupt buffer; retrying with the old file");
                if let Ok(o) = schema::open(&self.path, self.cfg.durability, super::config::StartupCheck::None) {
                    self.conn = o.conn;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    fn adopt_fresh(&mut self, conn: Connection) {
        let origin = schema::recovery_seq_origin(&self.path).max(self.stats.last_seq.load(Ordering::Relaxed) + 1);
        let _ = conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)", params![origin as i64]);
        self.conn = conn;
        self.tag_ids.clear();
        self.registry.clear();
        self.instance = self.instance.wrapping_add(1).max(1);
        self.stats.last_seq.store(origin, Ordering::Relaxed);
        self.stats.first_seq.store(origin + 1, Ordering::Relaxed);
        self.retention.reset(origin + 1);
        self.tap.reset(origin + 1);
        // The checkpoint thread's connection still points at the old file.
        if let Some(c) = self.checkpointer.take() {
            c.stop();
        }
        self.checkpointer = super::checkpoint::Checkpointer::start(&self.path, self.cfg.durability, &self.conn);
        tracing::warn!(seq_origin = origin, "started a new buffer after corruption");
        self.own.emit_now(
            "buffer.replaced",
            Severity::Critical,
            "the buffer became corrupt while running; it was moved aside and a new one started".into(),
            serde_json::json!({"seq_origin": origin}),
        );
    }
}
