//! Sink-side reads of committed samples, off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params};

use super::registry::TagRegistry;
use super::schema;
use crate::config::Durability;
use crate::model::{Quality, Sample, TagMeta, Timestamp, Value};

struct Inner {
    conn: Connection,
    tags: Arc<TagRegistry>,
}

/// A read connection for one sink. Cheap to clone (shared); queries run on
/// tokio's blocking pool so the runtime never waits on SQLite.
#[derive(Clone)]
pub struct Reader {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status.
type RawRow = (u64, i64, i64, Value, Option<Arc<str>>, i64, i64, Option<i64>, Option<u32>);

const SELECT: &str = "SELECT seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status FROM samples \
                      WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3";

impl Reader {
    pub(crate) fn open(path: &Path, durability: Durability, tags: Arc<TagRegistry>) -> anyhow::Result<Reader> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        schema::pragmas(&conn, durability)?;
        conn.pragma_update(None, "query_only", true)?;
        // Sequential range reads: a small page cache is enough.
        conn.pragma_update(None, "cache_size", -512)?;
        Ok(Reader { inner: Arc::new(Mutex::new(Inner { conn, tags })) })
    }

    /// Samples with `after < seq <= upto`, at most `limit`, in `seq` order
    /// (blocking; call from a thread that may block).
    pub fn read_blocking(&self, after: u64, upto: u64, limit: usize) -> anyhow::Result<Vec<Sample>> {
        let mut g = self.inner.lock().map_err(|_| anyhow::anyhow!("buffer reader poisoned"))?;
        let Inner { conn, tags } = &mut *g;
        let mut out = Vec::with_capacity(limit.min(4096));
        let mut missing: Vec<i64> = Vec::new();
        let mut rows: Vec<RawRow> = Vec::with_capacity(limit.min(4096));
        {
            let mut st = conn.prepare_cached(SELECT)?;
            let mut q = st.query(params![after.min(i64::MAX as u64) as i64, upto.min(i64::MAX as u64) as i64, limit as i64])?;
            while let Some(r) = q.next()? {
                let seq: i64 = r.get(0)?;
                let tag_id: i64 = r.get(1)?;
                let kind: i64 = r.get(2)?;
                let value = match (kind & 7, r.get_ref(3)?) {
                    (1, ValueRef::Integer(i)) => Value::Bool(i != 0),
                    (2, ValueRef::Integer(i)) => Value::I64(i),
                    (3, ValueRef::Integer(i)) => Value::U64(i as u64),
                    (4, ValueRef::Real(f)) => Value::F64(f),
                    (4, ValueRef::Integer(i)) => Value::F64(i as f64),
                    (5, ValueRef::Text(t)) => Value::Str(String::from_utf8_lossy(t).into_owned()),
                    _ => Value::Null,
                };
                let reason: Option<String> = r.get(4)?;
                if !tags.contains(tag_id) && !missing.contains(&tag_id) {
                    missing.push(tag_id);
                }
                rows.push((seq as u64, tag_id, kind, value, reason.map(Arc::from), r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?));
            }
        }
        for id in missing {
            let meta = conn
                .query_row("SELECT device, tag, unit FROM tags WHERE id = ?1", params![id], |r| {
                    let unit: String = r.get(2)?;
                    Ok(TagMeta::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?, Some(unit.as_str()).filter(|u| !u.is_empty())))
                })
                .unwrap_or_else(|_| TagMeta::new("unknown-device", format!("unknown-tag-{id}"), None));
            tags.insert(id, meta);
        }
        let metas = tags.snapshot(rows.iter().map(|r| r.1));
        for (seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status) in rows {
            out.push(Sample {
                seq,
                meta: metas[&tag_id].clone(),
                value,
                quality: Quality::from_code((kind >> 3) as u8),
                reason,
                ts: Timestamp(ts),
                recv_ts: Timestamp(recv_ts),
                server_ts: server_ts.map(Timestamp),
                status,
            });
        }
        Ok(out)
    }

    /// The stored read progress of input `key` (blocking).
    pub fn progress_blocking(&self, key: &str) -> anyhow::Result<Option<crate::ingest::Progress>> {
        let g = self.inner.lock().map_err(|_| anyhow::anyhow!("buffer reader poisoned"))?;
        let c: &Connection = &g.conn;
        super::quarantine::progress(c, key)
    }

    /// [`Reader::read_blocking`] on tokio's blocking pool.
    pub async fn read(&self, after: u64, upto: u64, limit: usize) -> anyhow::Result<Vec<Sample>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_blocking(after, upto, limit)).await?
    }
}
