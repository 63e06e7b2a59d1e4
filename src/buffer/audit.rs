//! The audit copy and reading it: every `write.audit` event (one per
//! settled actuator write, see `docs/payloads.md`, "Events") and every
//! `security.*` event is also stored, in the same transaction, in the
//! buffer's `audit` table, which buffer retention (delivered rows,
//! `max_rows`, `max_bytes`, `max_age`) never touches.
//!
//! # Invariants
//! - The copy is written with the event (same `seq`, same commit): an event
//!   committed is in the audit, whatever the sinks do afterwards.
//! - It is bounded by its own limits only, applied by the writer at start
//!   and every [`TRIM_PERIOD`]: rows older than `[buffer] audit_retention`
//!   (event time, default 90 days) and beyond `audit_max_rows` (oldest
//!   first, default 100,000) are deleted.
//! - Reading is read-only, through [`open_readonly`](super::quarantine::open_readonly):
//!   safe while `relais run` holds the buffer (WAL readers never block the
//!   writer). A buffer written before the copy existed has no `audit` table
//!   until a writer opens it: its `events` rows are read instead.

use std::time::Duration;

use rusqlite::{Connection, params};

/// The event kind of a settled write.
pub const AUDIT_KIND: &str = "write.audit";

/// How often the writer trims the audit copy.
pub const TRIM_PERIOD: Duration = Duration::from_secs(60);

/// The insert of one audit row (seq, kind, source, ts, message, details).
pub(crate) const INSERT_AUDIT: &str =
    "INSERT OR REPLACE INTO audit(seq, kind, source, ts, message, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// True for the event kinds the audit keeps: `write.audit` and `security.*`.
pub fn kept(kind: &str) -> bool {
    kind == AUDIT_KIND || kind.starts_with("security.")
}

/// Deletes audit rows with event time before `now_ns - retention`, then the
/// oldest beyond `max_rows`. Returns the rows deleted.
pub(crate) fn trim(c: &Connection, retention: Duration, max_rows: u64, now_ns: i64) -> rusqlite::Result<usize> {
    let cutoff = now_ns.saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
    let old = c.execute("DELETE FROM audit WHERE ts < ?1", params![cutoff])?;
    let over = c.execute(
        "DELETE FROM audit WHERE seq <= (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
        params![i64::try_from(max_rows).unwrap_or(i64::MAX)],
    )?;
    Ok(old + over)
}

/// One stored `write.audit` event, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    /// Acceptance sequence number (shared with samples).
    pub seq: i64,
    /// When the write settled (event time, ns since the epoch, UTC).
    pub ts: i64,
    /// The event's source name, `device/tag`.
    pub source: String,
    /// The event's details (a JSON object, `Null` when the stored text is
    /// missing or not JSON).
    pub details: serde_json::Value,
}

/// The `write.audit` events with `ts >= since` (ns since the epoch; `None`:
/// all), oldest first (by `seq`).
///
/// Errors: SQLite errors (a buffer without an `events` table, a locked or
/// corrupt file), with the statement's message.
pub fn audit_events(c: &Connection, since: Option<i64>) -> anyhow::Result<Vec<StoredAudit>> {
    let has_audit: bool =
        c.query_row("SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit')", [], |r| r.get(0))?;
    let table = if has_audit { "audit" } else { "events" };
    let mut st =
        c.prepare(&format!("SELECT seq, ts, source, details FROM {table} WHERE kind = ?1 AND (?2 IS NULL OR ts >= ?2) ORDER BY seq"))?;
    let rows = st.query_map(params![AUDIT_KIND, since], |r| {
        let details: Option<String> = r.get(3)?;
        Ok(StoredAudit {
            seq: r.get(0)?,
            ts: r.get(1)?,
            source: r.get(2)?,
            details: details.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(serde_json::Value::Null),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
