//! Reading the quarantine (records that could not be ingested) and the read
//! progress of file inputs. Read-only: safe while the daemon runs.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use crate::ingest::Progress;

/// Most quarantined records kept; older ones are deleted (and counted in the log).
pub const QUARANTINE_MAX_ROWS: i64 = 100_000;

/// One quarantined record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarantineRow {
    /// Id (for `relais quarantine show ID`).
    pub id: i64,
    /// When it was quarantined (ns since the epoch, UTC).
    pub recv_ts: i64,
    /// Source name.
    pub source: String,
    /// File, topic or `http`.
    pub origin: String,
    /// Line, byte offset or record number.
    pub location: String,
    /// Why.
    pub reason: String,
    /// The raw record.
    pub raw: String,
}

/// Opens `<data_dir>/buffer.db` read-only.
pub fn open_readonly(data_dir: &Path) -> anyhow::Result<Connection> {
    let path = data_dir.join("buffer.db");
    if !path.exists() {
        anyhow::bail!("no buffer at {} (has relais run with this data_dir?)", path.display());
    }
    let c = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    c.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(c)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantineRow> {
    Ok(QuarantineRow {
        id: r.get(0)?,
        recv_ts: r.get(1)?,
        source: r.get(2)?,
        origin: r.get(3)?,
        location: r.get(4)?,
        reason: r.get(5)?,
        raw: r.get(6)?,
    })
}

/// Quarantined records, newest last, optionally of one source; at most `limit`.
pub fn list(c: &Connection, source: Option<&str>, limit: usize) -> anyhow::Result<Vec<QuarantineRow>> {
    let mut st = c.prepare(
        "SELECT id, recv_ts, source, origin, location, reason, raw FROM quarantine \
         WHERE (?1 IS NULL OR source = ?1) ORDER BY id DESC LIMIT ?2",
    )?;
    let mut rows: Vec<QuarantineRow> = st.query_map(params![source, limit as i64], row)?.collect::<Result<_, _>>()?;
    rows.reverse();
    Ok(rows)
}

/// One quarantined record.
pub fn show(c: &Connection, id: i64) -> anyhow::Result<Option<QuarantineRow>> {
    let mut st = c.prepare("SELECT id, recv_ts, source, origin, location, reason, raw FROM quarantine WHERE id = ?1")?;
    let mut it = st.query_map(params![id], row)?;
    Ok(it.next().transpose()?)
}

/// Counts by source and reason code (the part of the reason before `:`).
pub fn counts(c: &Connection) -> anyhow::Result<Vec<(String, String, u64)>> {
    let mut st = c.prepare(
        "SELECT source, CASE WHEN instr(reason, ':') > 0 THEN substr(reason, 1, instr(reason, ':') - 1) ELSE reason END AS code, \
         COUNT(*) FROM quarantine GROUP BY source, code ORDER BY source, code",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stored progress of input `key`.
pub fn progress(c: &Connection, key: &str) -> anyhow::Result<Option<Progress>> {
    let mut st = c.prepare("SELECT key, identity, offset, line, done FROM progress WHERE key = ?1")?;
    let mut it = st.query_map(params![key], |r| {
        Ok(Progress {
            key: r.get(0)?,
            identity: r.get(1)?,
            offset: r.get::<_, i64>(2)? as u64,
            line: r.get::<_, i64>(3)? as u64,
            done: r.get(4)?,
        })
    })?;
    Ok(it.next().transpose()?)
}
