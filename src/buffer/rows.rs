//! Row encoding (pure-ish helpers on a connection): how a sample and an
//! event become rows of `samples` and `events`, and back.

use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, params};

use crate::model::{Event, EventSource, Quality, Sample, Severity, TagMeta, Timestamp, Value};

/// A [`Value`] as an SQLite value (non-finite floats as NULL).
pub(crate) struct SqlValue<'a>(pub &'a Value);

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

/// The value stored in a row of kind `kind`.
pub(crate) fn value_of(kind: i64, v: ValueRef<'_>) -> Value {
    match (kind & 7, v) {
        (1, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (2, ValueRef::Integer(i)) => Value::I64(i),
        (3, ValueRef::Integer(i)) => Value::U64(i as u64),
        (4, ValueRef::Real(f)) => Value::F64(f),
        (4, ValueRef::Integer(i)) => Value::F64(i as f64),
        (5, ValueRef::Text(t)) => Value::Str(String::from_utf8_lossy(t).into_owned()),
        _ => Value::Null,
    }
}

/// The quality of a row of kind `kind`.
pub(crate) fn quality_of(kind: i64) -> Quality {
    Quality::from_code((kind >> 3) as u8)
}

const INSERT_SAMPLE: &str =
    "INSERT INTO samples(seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const INSERT_EVENT: &str =
    "INSERT INTO events(seq, kind, severity, source_kind, source, ts, message, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Inserts one sample row.
pub(crate) fn insert_sample(conn: &Connection, seq: u64, tag_id: i64, s: &Sample) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_SAMPLE)?.execute(params![
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
    Ok(())
}

/// Inserts one event row.
pub(crate) fn insert_event(conn: &Connection, seq: u64, e: &Event) -> rusqlite::Result<()> {
    let details = if e.details.is_null() { None } else { Some(e.details.to_string()) };
    conn.prepare_cached(INSERT_EVENT)?.execute(params![
        seq as i64,
        &*e.kind,
        e.severity.code() as i64,
        e.source.kind(),
        e.source.name(),
        e.ts.0,
        e.message,
        details
    ])?;
    Ok(())
}

/// Events with `after < seq <= upto`, at most `limit`, in `seq` order.
pub(crate) fn read_events(conn: &Connection, after: u64, upto: u64, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut st = conn.prepare_cached(
        "SELECT seq, kind, severity, source_kind, source, ts, message, details FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = st.query_map(params![clamp(after), clamp(upto), limit as i64], |r| {
        let details: Option<String> = r.get(7)?;
        Ok(Event {
            seq: r.get::<_, i64>(0)? as u64,
            kind: Arc::from(r.get::<_, String>(1)?),
            severity: Severity::from_code(r.get::<_, i64>(2)?.clamp(0, 255) as u8),
            source: EventSource::from_parts(&r.get::<_, String>(3)?, &r.get::<_, String>(4)?),
            ts: Timestamp(r.get(5)?),
            message: r.get(6)?,
            details: details.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(serde_json::Value::Null),
        })
    })?;
    rows.collect()
}

/// A `u64` bound as an SQLite integer.
pub(crate) fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// The names of tag `id`, or a placeholder naming the id when the row is gone.
pub(crate) fn tag_meta(conn: &Connection, id: i64) -> Arc<TagMeta> {
    conn.query_row("SELECT device, tag, unit FROM tags WHERE id = ?1", params![id], |r| {
        let unit: String = r.get(2)?;
        Ok(TagMeta::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?, Some(unit.as_str()).filter(|u| !u.is_empty())))
    })
    .unwrap_or_else(|_| TagMeta::new("unknown-device", format!("unknown-tag-{id}"), None))
}

/// Writes what the groups of a batch carry (quarantined records, moved
/// files, read progress); returns the number of records quarantined.
pub(crate) fn insert_groups(conn: &Connection, groups: &[super::writer::GroupMeta]) -> rusqlite::Result<u64> {
    let now = Timestamp::now().0;
    let mut quarantined = 0u64;
    for g in groups.iter() {
        if !g.quarantine.is_empty() {
            let mut q = conn
                .prepare_cached("INSERT INTO quarantine(recv_ts, source, origin, location, reason, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            for r in &g.quarantine {
                q.execute(params![now, r.source, r.origin, r.location, r.reason, r.raw])?;
                quarantined += 1;
            }
        }
        if let Some(m) = &g.moved {
            conn.prepare_cached("UPDATE quarantine SET origin = ?3 WHERE source = ?1 AND origin = ?2")?
                .execute(params![m.source, m.from, m.to])?;
        }
        if let Some(p) = &g.progress {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO progress(key, identity, offset, line, done, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![p.key, p.identity, p.offset as i64, p.line as i64, p.done, now])?;
        }
    }
    Ok(quarantined)
}
