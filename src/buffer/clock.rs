//! The gateway's observed clock, which judges `max_age`.
//!
//! The wall clock can be wrong: a gateway without an RTC battery boots at
//! 1970 and jumps forward when NTP answers, and a record acquired before the
//! jump would look 56 years old. So age is measured on the time the gateway
//! itself observed: a monotonic clock (`Instant`) that runs while the
//! gateway runs, persisted in `meta('observed_ns')` every second and at
//! shutdown, so it continues across restarts (time while the gateway is
//! stopped does not count: a record is aged by the time the gateway spent
//! holding it).
//!
//! The writer records in `marks(seq, observed)` the observed time of the
//! first record it commits in each second; a record's age is that of the
//! newest mark at or before it (to within a second).

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

/// Shortest time between two marks.
pub(crate) const MARK_EVERY: Duration = Duration::from_secs(1);

/// The observed clock of one buffer.
#[derive(Debug)]
pub(crate) struct Observed {
    base_ns: i64,
    since: Instant,
    last_mark: Option<i64>,
}

impl Observed {
    /// Loads the persisted clock (0 for a new buffer); an old buffer whose
    /// rows carry no mark gets one at its first row (its rows start aging now).
    pub(crate) fn load(conn: &Connection, first_seq: u64, last_seq: u64) -> rusqlite::Result<Observed> {
        let base_ns: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'observed_ns'", [], |r| r.get(0)).unwrap_or(0);
        let o = Observed { base_ns: base_ns.max(0), since: Instant::now(), last_mark: None };
        if first_seq <= last_seq {
            conn.execute(
                "INSERT OR IGNORE INTO marks(seq, observed) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM marks WHERE seq <= ?1)",
                params![first_seq as i64, o.now()],
            )?;
        }
        Ok(o)
    }

    /// A clock starting at 0 now (when the stored one cannot be read).
    pub(crate) fn fresh() -> Observed {
        Observed { base_ns: 0, since: Instant::now(), last_mark: None }
    }

    /// Observed nanoseconds now.
    pub(crate) fn now(&self) -> i64 {
        self.base_ns.saturating_add(self.since.elapsed().as_nanos() as i64)
    }

    /// Inside the commit of records starting at `first`: a mark when the
    /// last one is older than [`MARK_EVERY`].
    pub(crate) fn mark(&mut self, conn: &Connection, first: u64) -> rusqlite::Result<()> {
        let now = self.now();
        if self.last_mark.is_some_and(|m| now - m < MARK_EVERY.as_nanos() as i64) {
            return Ok(());
        }
        conn.prepare_cached("INSERT OR REPLACE INTO marks(seq, observed) VALUES (?1, ?2)")?.execute(params![first as i64, now])?;
        self.last_mark = Some(now);
        Ok(())
    }

    /// Persists the clock.
    pub(crate) fn persist(&self, conn: &Connection) {
        let _ = conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('observed_ns', ?1)", params![self.now()]);
    }
}

/// Deletes the marks of rows up to `upto` (deleted), keeping the age of the
/// rows after it: the newest deleted mark moves to `upto + 1`.
pub(crate) fn drop_marks(conn: &Connection, upto: u64) -> rusqlite::Result<()> {
    let newest: Option<i64> = conn
        .prepare_cached("SELECT observed FROM marks WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row(params![upto as i64], |r| r.get(0))
        .ok();
    conn.prepare_cached("DELETE FROM marks WHERE seq <= ?1")?.execute(params![upto as i64])?;
    if let Some(o) = newest {
        conn.prepare_cached("INSERT OR IGNORE INTO marks(seq, observed) VALUES (?1, ?2)")?.execute(params![(upto + 1) as i64, o])?;
    }
    Ok(())
}

/// The last `seq` accepted before observed time `cutoff`, given that rows
/// up to `last` exist: everything up to it is older than `max_age`.
pub(crate) fn older_than(conn: &Connection, cutoff: i64, last: u64) -> Option<u64> {
    let keep_from: Option<i64> =
        conn.query_row("SELECT MIN(seq) FROM marks WHERE observed >= ?1", params![cutoff], |r| r.get::<_, Option<i64>>(0)).ok().flatten();
    match keep_from {
        Some(s) => Some((s as u64).saturating_sub(1)),
        None => Some(last),
    }
}

/// Persists the gateway clock's floor (`meta('clock_floor')`, ns): the
/// guarded clock now, at or after every stamp issued so far
/// (`crate::model::clock`). Called every second and at shutdown.
pub(crate) fn persist_floor(conn: &Connection) {
    let now = crate::model::Timestamp::now().0;
    let _ = conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clock_floor', ?1)", params![now]);
}

/// Raises the process clock's floor to the one persisted by the previous
/// run (before any source stamps a sample).
pub(crate) fn load_floor(conn: &Connection) {
    let floor: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key = 'clock_floor'", [], |r| r.get(0)).ok();
    if let Some(f) = floor {
        crate::model::clock::raise_floor(crate::model::Timestamp(f));
        tracing::debug!(floor = %crate::model::Timestamp(f), "clock floor loaded");
    }
}

static SUSPECT_REASON: std::sync::LazyLock<std::sync::Arc<str>> = std::sync::LazyLock::new(|| {
    format!(
        "{}: the wall clock disagreed with the gateway's clock; stamped from monotonic time since the last trusted instant",
        crate::model::clock::REASON
    )
    .into()
});

/// Flags the samples of `batch` stamped while the clock was suspect (their
/// `recv_ts` inside [`crate::model::clock::suspect_window`]): a good one
/// becomes uncertain with reason `clock_suspect`, keeping its value; an
/// uncertain or bad one keeps its own reason. One atomic load when the clock
/// was never suspect.
pub(crate) fn flag_suspect(batch: &mut [crate::model::Record]) {
    let Some((from, to)) = crate::model::clock::suspect_window() else { return };
    for r in batch.iter_mut() {
        if let crate::model::Record::Sample(s) = r
            && s.quality == crate::model::Quality::Good
            && (from..=to).contains(&s.recv_ts.0)
        {
            s.quality = crate::model::Quality::Uncertain;
            s.reason = Some(SUSPECT_REASON.clone());
        }
    }
}
