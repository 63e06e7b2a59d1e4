//! Row encoding (pure-ish helpers on a connection): how a sample and an
//! event become rows of `samples` and `events`, and back.

use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, ToSql, params};

use crate::model::{Event, EventSource, Quality, Record, Sample, Severity, TagMeta, Timestamp, Value};

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

/// Sample rows per multi-row INSERT: within one statement SQLite keeps the
/// table's cursor at the last row, so each row is appended without a
/// descent from the root (a third fewer instructions per row than one
/// statement per row).
pub(crate) const SAMPLE_CHUNK: usize = 64;

/// `INSERT INTO samples … VALUES (…), (…) …` for [`SAMPLE_CHUNK`] rows
/// (the columns of `INSERT_SAMPLE`, parameters numbered in row order).
static INSERT_SAMPLES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let head = &INSERT_SAMPLE[..INSERT_SAMPLE.find("VALUES").expect("VALUES")];
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; SAMPLE_CHUNK];
    format!("{head}VALUES {}", rows.join(", "))
});

/// The insert statements of one transaction, prepared once for all its rows.
pub(crate) struct Inserts<'c> {
    conn: &'c Connection,
    sample: Option<CachedStatement<'c>>,
    samples: Option<CachedStatement<'c>>,
    event: Option<CachedStatement<'c>>,
}

impl<'c> Inserts<'c> {
    /// Statements on `conn`, prepared when first used.
    pub(crate) fn new(conn: &'c Connection) -> Inserts<'c> {
        Inserts { conn, sample: None, samples: None, event: None }
    }

    /// Inserts `batch` with `seq`s from `first` (and sets them), tag ids
    /// `ids[i]` for samples; returns the number of samples. Runs of
    /// [`SAMPLE_CHUNK`] samples go in one statement each; the rest (events,
    /// and samples around them) one by one.
    pub(crate) fn records(&mut self, first: u64, ids: &[i64], batch: &mut [Record]) -> rusqlite::Result<u64> {
        let mut samples = 0;
        let mut run = 0;
        let mut i = 0;
        while i < batch.len() {
            let seq = first + i as u64;
            if run == 0 {
                run = batch[i..].iter().take(SAMPLE_CHUNK).take_while(|r| matches!(r, Record::Sample(_))).count();
            }
            if run == SAMPLE_CHUNK {
                let rows = &mut batch[i..i + SAMPLE_CHUNK];
                self.samples(seq, &ids[i..i + SAMPLE_CHUNK], rows)?;
                for (r, s) in rows.iter_mut().zip(seq..) {
                    if let Record::Sample(x) = r {
                        x.seq = s;
                    }
                }
                samples += SAMPLE_CHUNK as u64;
                (i, run) = (i + SAMPLE_CHUNK, 0);
                continue;
            }
            match &mut batch[i] {
                Record::Sample(s) => {
                    self.sample(seq, ids[i], s)?;
                    s.seq = seq;
                    samples += 1;
                }
                Record::Event(e) => {
                    self.event(seq, e)?;
                    e.seq = seq;
                }
            }
            run = run.saturating_sub(1);
            i += 1;
        }
        Ok(samples)
    }

    /// Inserts [`SAMPLE_CHUNK`] sample rows in one statement: `rows[i]` with
    /// `seq` `first + i` and tag id `tag_ids[i]`. Every record must be a sample.
    fn samples(&mut self, first: u64, tag_ids: &[i64], rows: &[Record]) -> rusqlite::Result<()> {
        debug_assert_eq!((rows.len(), tag_ids.len()), (SAMPLE_CHUNK, SAMPLE_CHUNK));
        let st = match &mut self.samples {
            Some(st) => st,
            None => self.samples.insert(self.conn.prepare_cached(&INSERT_SAMPLES)?),
        };
        let mut p = 1;
        for (i, (r, tag_id)) in rows.iter().zip(tag_ids).enumerate() {
            let Record::Sample(s) = r else { return Err(rusqlite::Error::InvalidQuery) };
            st.raw_bind_parameter(p, (first + i as u64) as i64)?;
            st.raw_bind_parameter(p + 1, *tag_id)?;
            st.raw_bind_parameter(p + 2, kind_of(s))?;
            st.raw_bind_parameter(p + 3, SqlValue(&s.value))?;
            st.raw_bind_parameter(p + 4, s.reason.as_deref())?;
            st.raw_bind_parameter(p + 5, s.ts.0)?;
            st.raw_bind_parameter(p + 6, s.recv_ts.0)?;
            st.raw_bind_parameter(p + 7, s.server_ts.map(|t| t.0))?;
            st.raw_bind_parameter(p + 8, s.status)?;
            p += 9;
        }
        st.raw_execute()?;
        Ok(())
    }

    /// Inserts one sample row.
    fn sample(&mut self, seq: u64, tag_id: i64, s: &Sample) -> rusqlite::Result<()> {
        let st = match &mut self.sample {
            Some(st) => st,
            None => self.sample.insert(self.conn.prepare_cached(INSERT_SAMPLE)?),
        };
        st.execute(params![
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
    fn event(&mut self, seq: u64, e: &Event) -> rusqlite::Result<()> {
        let details = if e.details.is_null() { None } else { Some(e.details.to_string()) };
        let st = match &mut self.event {
            Some(st) => st,
            None => self.event.insert(self.conn.prepare_cached(INSERT_EVENT)?),
        };
        st.execute(params![seq as i64, &*e.kind, e.severity.code() as i64, e.source.kind(), e.source.name(), e.ts.0, e.message, details])?;
        if super::audit::kept(&e.kind) {
            let mut a = self.conn.prepare_cached(super::audit::INSERT_AUDIT)?;
            a.execute(params![seq as i64, &*e.kind, e.source.name(), e.ts.0, e.message, details])?;
        }
        Ok(())
    }
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
