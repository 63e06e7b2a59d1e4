//! Retention: cursor-based deletion, `max_rows`, `max_bytes`, `max_age`, and
//! the counted, rate-limited reporting of every undelivered sample dropped.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::config::BufferConfig;
use super::cursors::SinkCursor;
use super::handle::BufferStats;
use super::handle::OwnEvents;
use crate::model::Severity;
use crate::model::Timestamp;
use crate::util::RateLimited;

/// Rows deleted per statement, so one retention step never holds the write
/// lock for long.
const CHUNK: u64 = 50_000;
/// Delivered rows deleted per writer turn while records keep arriving: small
/// steps between commits keep live data from waiting behind a long DELETE.
const STEP_BUSY: u64 = 4_096;
/// Delivered rows are deleted once this many are waiting, or [`TRIM_PERIOD`]
/// after the last trim, not after every commit: a trim is a transaction of
/// its own (three statements, a WAL commit), and a gateway of 500 devices
/// commits 500 times a second. Delivered rows stay at most this long longer.
const TRIM_MIN: u64 = 4_096;
/// See [`TRIM_MIN`].
const TRIM_PERIOD: Duration = Duration::from_millis(250);
/// Shortest period between two "dropped" warnings.
pub(crate) const DROP_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Accumulates drops between two warnings.
#[derive(Debug)]
pub(crate) struct DropLog {
    pending: u64,
    reasons: Vec<&'static str>,
    last: Option<Instant>,
}

impl DropLog {
    fn add(&mut self, n: u64, reason: &'static str) {
        self.pending += n;
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }

    fn flush(&mut self, total: u64, force: bool, events: &OwnEvents, cursors: &[SinkCursor]) {
        if self.pending == 0 {
            return;
        }
        let due = self.last.is_none_or(|t| t.elapsed() >= DROP_LOG_PERIOD);
        if due || force {
            tracing::warn!(
                dropped = self.pending, dropped_total = total, reason = %self.reasons.join(", "),
                "buffer: dropped {} undelivered samples, oldest first ({})", self.pending, self.reasons.join(", ")
            );
            let per_sink: serde_json::Map<String, serde_json::Value> =
                cursors.iter().map(|c| (c.name().to_string(), serde_json::Value::from(c.dropped()))).collect();
            events.emit_now(
                "buffer.dropped",
                Severity::Error,
                format!("buffer: dropped {} undelivered samples, oldest first ({})", self.pending, self.reasons.join(", ")),
                serde_json::json!({"dropped": self.pending, "dropped_total": total, "reason": self.reasons.join(", "),
                    "sinks_dropped_total": per_sink, "accepted": true}),
            );
            self.pending = 0;
            self.reasons.clear();
            self.last = Some(Instant::now());
        }
    }
}

/// What was last written of a cursor: its `seq` and its live lane.
type Persisted = (u64, Option<(u64, u64)>);

pub(crate) struct Retention {
    max_rows: u64,
    max_bytes: u64,
    max_age: Duration,
    cursors: Vec<SinkCursor>,
    persisted: Vec<Persisted>,
    first: u64,
    next: u64,
    drops: DropLog,
    errors: RateLimited,
    page_size: Option<i64>,
    events: OwnEvents,
    /// The disk filled up: the file may not grow (see [`Retention::free_space`]).
    disk_capped: bool,
    /// When delivered rows were last deleted ([`TRIM_PERIOD`]).
    last_trim: Instant,
}

impl Retention {
    pub(crate) fn new(cfg: &BufferConfig, cursors: Vec<SinkCursor>, first: u64, next: u64, events: OwnEvents) -> Retention {
        let persisted = cursors.iter().map(|c| (c.get(), c.live())).collect();
        Retention {
            max_rows: cfg.max_rows,
            max_bytes: cfg.max_bytes,
            max_age: cfg.max_age,
            cursors,
            persisted,
            first,
            next,
            drops: DropLog { pending: 0, reasons: Vec::new(), last: None },
            errors: RateLimited::new(Duration::from_secs(60)),
            page_size: None,
            events,
            disk_capped: false,
            last_trim: Instant::now(),
        }
    }

    /// Records shed before they could be stored (a full disk): every sink
    /// loses them.
    pub(crate) fn count_unstored(&mut self, n: u64) {
        for c in &self.cursors {
            c.add_dropped(n);
        }
    }

    /// Deletes rows every sink has delivered, once [`TRIM_MIN`] of them wait
    /// or [`TRIM_PERIOD`] passed: at most [`STEP_BUSY`] while records keep
    /// arriving, up to [`CHUNK`] when the ring is `idle`.
    pub(crate) fn trim_delivered(&mut self, conn: &Connection, stats: &BufferStats, idle: bool) {
        if let Some(c) = self.min_cursor()
            && c >= self.first
            && (c - self.first + 1 >= TRIM_MIN || self.last_trim.elapsed() >= TRIM_PERIOD)
        {
            let step = if idle { CHUNK } else { STEP_BUSY };
            let _ = self.delete_upto(conn, c.min(self.first + step - 1), None, stats);
            self.last_trim = Instant::now();
        }
    }

    /// Rows up to `next - 1` exist now.
    pub(crate) fn appended(&mut self, next: u64) {
        self.next = next;
    }

    /// A fresh, empty buffer whose next seq is `first`.
    pub(crate) fn reset(&mut self, first: u64) {
        self.first = first;
        self.next = first;
    }

    fn rows(&self) -> u64 {
        self.next.saturating_sub(self.first)
    }

    pub(crate) fn min_cursor(&self) -> Option<u64> {
        self.cursors.iter().map(|c| c.get()).min()
    }

    /// Deletes rows with `seq <= upto`; counts undelivered ones as dropped when
    /// `reason` is given.
    /// Returns the number of rows deleted.
    fn delete_upto(&mut self, conn: &Connection, upto: u64, reason: Option<&'static str>, stats: &BufferStats) -> u64 {
        let upto = upto.min(self.next.saturating_sub(1));
        if upto < self.first {
            return 0;
        }
        let undelivered = match (reason, self.min_cursor()) {
            (Some(_), Some(c)) => upto.saturating_sub(c.max(self.first - 1)),
            _ => 0,
        };
        let start = self.first;
        while self.first <= upto {
            let end = upto.min(self.first + CHUNK - 1);
            let deleted = delete_chunk(conn, end);
            if let Err(e) = deleted {
                if let Some(n) = self.errors.allow() {
                    tracing::warn!(error = %e, suppressed = n, "buffer retention could not delete rows; will retry");
                }
                break;
            }
            self.first = end + 1;
        }
        stats.first_seq.store(self.first, Ordering::Relaxed);
        if let Some(r) = reason
            && undelivered > 0
        {
            // Count only what was really deleted.
            let deleted = self.first - start;
            let n = undelivered.min(deleted);
            let total = stats.dropped_total.fetch_add(n, Ordering::Relaxed) + n;
            // Each sink's own loss: what it had not delivered of the deleted rows.
            for c in &self.cursors {
                let own = (self.first - 1).saturating_sub(c.get().max(start - 1));
                c.add_dropped(own);
            }
            self.drops.add(n, r);
            self.drops.flush(total, false, &self.events, &self.cursors);
        }
        self.first - start
    }

    fn bytes_used(&mut self, conn: &Connection) -> Option<u64> {
        let pragma = |sql: &str| -> Option<i64> { conn.prepare_cached(sql).ok()?.query_row([], |r| r.get(0)).ok() };
        let ps = match self.page_size {
            Some(p) => p,
            None => {
                let p = pragma("PRAGMA page_size")?;
                self.page_size = Some(p);
                p
            }
        };
        // Checked after every commit: cached statements, parsed once.
        let pc = pragma("PRAGMA page_count")?;
        let fl = pragma("PRAGMA freelist_count")?;
        Some(((pc - fl).max(0) * ps) as u64)
    }

    /// Caps checked after every commit: `max_rows` and `max_bytes`.
    pub(crate) fn after_commit(&mut self, conn: &Connection, stats: &BufferStats) {
        if self.max_rows > 0 && self.rows() > self.max_rows {
            let upto = self.first + (self.rows() - self.max_rows) - 1;
            let _ = self.delete_upto(conn, upto, Some("max_rows"), stats);
        }
        // Over the cap, quarantined records (copies of bad input, kept for
        // people to look at) go first: undelivered samples are never dropped
        // to make room for them, so a producer of garbage cannot wipe the
        // buffer during a broker outage. The oldest half goes each step.
        let mut trimmed = 0usize;
        for _ in 0..24 {
            let Some(used) = self.bytes_used(conn) else { break };
            if used <= self.max_bytes {
                break;
            }
            let n = conn
                .execute(
                    "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT MAX(1, (SELECT COUNT(*) FROM quarantine) / 2))",
                    [],
                )
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            trimmed += n;
        }
        if trimmed > 0 {
            tracing::warn!(
                deleted = trimmed,
                max_bytes = self.max_bytes,
                "buffer at max_bytes: the oldest quarantined records were deleted first, to keep undelivered samples"
            );
        }
        for _ in 0..4 {
            let Some(used) = self.bytes_used(conn) else { break };
            stats.bytes_used.store(used, Ordering::Relaxed);
            if used <= self.max_bytes || self.rows() == 0 {
                break;
            }
            // Drop enough rows to get back to 90 % of the cap.
            let target = self.max_bytes as f64 * 0.9;
            let frac = ((used as f64 - target) / used as f64).clamp(0.0, 1.0);
            let n = ((self.rows() as f64 * frac).ceil() as u64).max(1);
            let upto = self.first + n - 1;
            let _ = self.delete_upto(conn, upto, Some("max_bytes"), stats);
        }
    }

    /// Takes the sinks added and removed by a configuration reload: a new
    /// cursor is written at the next persist, a removed one's row deleted.
    pub(crate) fn set_cursors(&mut self, conn: &Connection, cursors: Vec<SinkCursor>, removed: &[String]) {
        let old: Vec<(&str, Persisted)> = self.cursors.iter().zip(&self.persisted).map(|(c, p)| (c.name(), *p)).collect();
        // A cursor never persisted gets a value it cannot have: written at once.
        self.persisted = cursors.iter().map(|c| old.iter().find(|(n, _)| *n == c.name()).map_or((u64::MAX, None), |(_, p)| *p)).collect();
        self.cursors = cursors;
        for name in removed {
            if let Err(e) = conn.execute("DELETE FROM cursors WHERE sink = ?1", params![name]) {
                tracing::warn!(error = %e, sink = %name, "cannot delete the cursor of a removed sink");
            }
        }
        self.persist_cursors(conn);
    }

    /// Writes the cursors that moved.
    pub(crate) fn persist_cursors(&mut self, conn: &Connection) {
        for (i, c) in self.cursors.iter().enumerate() {
            let v = (c.get(), c.live());
            if v != self.persisted[i] {
                let (ls, la) = v.1.map_or((0, 0), |l| (l.0 as i64, l.1 as i64));
                match conn.execute(
                    "INSERT OR REPLACE INTO cursors(sink, seq, live_start, live_acked) VALUES(?1, ?2, ?3, ?4)",
                    params![c.name(), v.0 as i64, ls, la],
                ) {
                    Ok(_) => self.persisted[i] = v,
                    Err(e) => {
                        if let Some(n) = self.errors.allow() {
                            tracing::warn!(error = %e, suppressed = n, sink = c.name(), "cannot persist sink cursor; will retry");
                        }
                    }
                }
            }
        }
    }

    /// Once a second: persist cursors, `max_age`, `max_bytes`, the quarantine,
    /// and report drops.
    pub(crate) fn periodic(&mut self, conn: &Connection, stats: &BufferStats, observed_now: i64) {
        self.persist_cursors(conn);
        if !self.max_age.is_zero() && self.rows() > 0 {
            // Age on the gateway's observed clock (clock.rs), not `recv_ts`:
            // a wall clock set late (1970 at boot) must not age records.
            let cutoff = observed_now.saturating_sub(self.max_age.as_nanos().min(i64::MAX as u128) as i64);
            if cutoff > 0
                && let Some(upto) = super::clock::older_than(conn, cutoff, self.next - 1)
            {
                let _ = self.delete_upto(conn, upto, Some("max_age"), stats);
            }
        }
        self.after_commit(conn, stats);
        self.trim_quarantine(conn);
        let total = stats.dropped_total.load(Ordering::Relaxed);
        self.drops.flush(total, false, &self.events, &self.cursors);
    }

    /// Keeps the quarantine bounded: 100,000 rows, none older than `max_age`.
    fn trim_quarantine(&mut self, conn: &Connection) {
        let cutoff = if self.max_age.is_zero() { i64::MIN } else { Timestamp::now().0 - self.max_age.as_nanos() as i64 };
        let r = conn.execute(
            "DELETE FROM quarantine WHERE recv_ts < ?1 OR id <= (SELECT MAX(id) FROM quarantine) - ?2",
            params![cutoff, super::quarantine::QUARANTINE_MAX_ROWS],
        );
        match r {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "quarantine trimmed (keeps 100000 records and max_age)"),
            Ok(_) => {}
            Err(e) => {
                if let Some(n) = self.errors.allow() {
                    tracing::warn!(error = %e, suppressed = n, "cannot trim the quarantine; will retry");
                }
            }
        }
    }

    /// The disk is full: fold the WAL back, stop the file from growing
    /// (`max_page_count` = its current size, so no committed page ever needs
    /// more disk and checkpoints always complete), then drop the oldest rows,
    /// a tenth of them or as many as the batch waiting to be written,
    /// whichever is more. The WAL keeps its size (RESTART, not TRUNCATE): its
    /// space is reused instead of being given back to a full disk. Returns
    /// false when no row could be dropped.
    pub(crate) fn free_space(&mut self, conn: &Connection, stats: &BufferStats, pending: usize) -> bool {
        let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        if let Ok(pages) = conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)) {
            let _ = conn.query_row(&format!("PRAGMA max_page_count = {}", pages.max(1)), [], |_| Ok(()));
            if !self.disk_capped {
                self.disk_capped = true;
                let used = self.bytes_used(conn).unwrap_or(self.max_bytes);
                self.max_bytes = self.max_bytes.min(used / 10 * 9);
                tracing::warn!(
                    kept = self.max_bytes,
                    "buffer disk full: the buffer stops growing and keeps at most {} (oldest records dropped first) until the disk has room again",
                    crate::units::format_size(self.max_bytes)
                );
            }
        }
        if self.rows() == 0 {
            return false;
        }
        let n = (self.rows() / 10).max(pending as u64).max(1).min(self.rows());
        let upto = self.first + n - 1;
        let deleted = self.delete_upto(conn, upto, Some("disk full"), stats);
        let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        deleted > 0
    }

    /// The disk has room again (the reserve could be made): the configured
    /// limits apply again.
    pub(crate) fn disk_has_room(&mut self, conn: &Connection, max_bytes: u64) {
        if !self.disk_capped {
            return;
        }
        self.disk_capped = false;
        self.max_bytes = max_bytes;
        let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap_or(4096).max(512);
        let max_pages = (max_bytes as f64 * 1.25 / page_size as f64).ceil() as i64 + 64;
        let _ = conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| Ok(()));
        tracing::info!("buffer disk has room again: back to max_bytes {}", crate::units::format_size(max_bytes));
    }
}

/// Deletes the rows (samples, events, their age marks) with `seq <= end`, in
/// one transaction when none is open (one WAL commit, not three), with
/// statements parsed once per connection. On a full disk, where that one
/// transaction may not find room in the WAL, it falls back to one statement
/// at a time (each commits on its own and needs less room at once).
fn delete_chunk(conn: &Connection, end: u64) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        return delete_statements(conn, end);
    }
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let r = delete_statements(conn, end).and_then(|_| conn.prepare_cached("COMMIT")?.execute([]).map(|_| ()));
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let full = matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull) | Some(rusqlite::ErrorCode::SystemIoFailure));
            if full { delete_statements(conn, end) } else { Err(e) }
        }
    }
}

/// The deletes of [`delete_chunk`], in the connection's current transaction
/// (or each on its own without one).
fn delete_statements(conn: &Connection, end: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM samples WHERE seq <= ?1")?.execute(params![end as i64])?;
    conn.prepare_cached("DELETE FROM events WHERE seq <= ?1")?.execute(params![end as i64])?;
    super::clock::drop_marks(conn, end)
}
