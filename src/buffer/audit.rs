//! Reading the write audit: the `write.audit` events stored in the buffer's
//! `events` table (one per settled actuator write, see `docs/payloads.md`,
//! "Events"). Read-only, through [`open_readonly`](super::quarantine::open_readonly):
//! safe while `relais run` holds the buffer (WAL readers never block the writer).
//!
//! Audit events are ordinary rows: buffer retention deletes them once every
//! sink has delivered them (or `max_rows` / `max_bytes` / `max_age` drops
//! them), so the buffer holds the recent audit only; the sinks hold the rest.

use rusqlite::{Connection, params};

/// The event kind of a settled write.
pub const AUDIT_KIND: &str = "write.audit";

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
    let mut st = c.prepare("SELECT seq, ts, source, details FROM events WHERE kind = ?1 AND (?2 IS NULL OR ts >= ?2) ORDER BY seq")?;
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
