//! Sink-side reads of committed records, off the async runtime: the newest
//! from the tap's memory when it still holds them, the rest from SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, params};

use super::config::Durability;
use super::registry::TagRegistry;
use super::rows::{clamp, quality_of, read_events, tag_meta, value_of};
use super::schema;
use super::tap::{Chunk, Tap};
use crate::model::{Record, Sample, Timestamp, Value};

struct Inner {
    conn: Connection,
    tags: Arc<TagRegistry>,
}

/// A read connection for one sink. Cheap to clone (shared); queries run on
/// tokio's blocking pool so the runtime never waits on SQLite.
#[derive(Clone)]
pub struct Reader {
    inner: Arc<Mutex<Inner>>,
    tap: Arc<Tap>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// Records of one read: shared chunks of the tap, or rows read from SQLite.
#[derive(Debug)]
pub enum Records {
    /// Straight from the tap (no copy, no query).
    Recent(Vec<Chunk>),
    /// Read from the database.
    Stored(Vec<Record>),
}

impl Records {
    /// The records, in `seq` order.
    pub fn refs(&self) -> Vec<&Record> {
        match self {
            Records::Recent(c) => c.iter().flat_map(|c| c.records().iter()).collect(),
            Records::Stored(v) => v.iter().collect(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Records::Recent(c) => c.iter().map(|c| c.records().len()).sum(),
            Records::Stored(v) => v.len(),
        }
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `seq` of the last record.
    pub fn last_seq(&self) -> Option<u64> {
        match self {
            Records::Recent(c) => c.iter().rev().find_map(|c| c.records().last()).map(Record::seq),
            Records::Stored(v) => v.last().map(Record::seq),
        }
    }
}

/// seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status.
type RawRow = (u64, i64, i64, Value, Option<Arc<str>>, i64, i64, Option<i64>, Option<u32>);

const SELECT: &str = "SELECT seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status FROM samples \
                      WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3";

impl Reader {
    pub(crate) fn open(path: &Path, durability: Durability, tags: Arc<TagRegistry>, tap: Arc<Tap>) -> anyhow::Result<Reader> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        schema::pragmas(&conn, durability)?;
        conn.pragma_update(None, "query_only", true)?;
        // Sequential range reads: a small page cache is enough.
        conn.pragma_update(None, "cache_size", -512)?;
        Ok(Reader { inner: Arc::new(Mutex::new(Inner { conn, tags })), tap })
    }

    /// The buffer's committed-data tap.
    pub fn tap(&self) -> &Arc<Tap> {
        &self.tap
    }

    /// Samples with `after < seq <= upto`, at most `limit`, in `seq` order
    /// (blocking; call from a thread that may block). Events in the range are
    /// skipped: use [`Reader::records_blocking`] for both.
    pub fn read_blocking(&self, after: u64, upto: u64, limit: usize) -> anyhow::Result<Vec<Sample>> {
        let mut g = self.inner.lock().map_err(|_| anyhow::anyhow!("buffer reader poisoned"))?;
        let Inner { conn, tags } = &mut *g;
        read_samples(conn, tags, after, upto, limit)
    }

    /// Samples and events with `after < seq <= upto`, at most `limit` in all,
    /// in `seq` order, from SQLite (blocking). Fewer than `limit` means the
    /// read reached `upto`.
    pub fn records_blocking(&self, after: u64, upto: u64, limit: usize) -> anyhow::Result<Vec<Record>> {
        let mut g = self.inner.lock().map_err(|_| anyhow::anyhow!("buffer reader poisoned"))?;
        let Inner { conn, tags } = &mut *g;
        let samples = read_samples(conn, tags, after, upto, limit)?;
        let events = read_events(conn, after, upto, limit)?;
        Ok(merge(samples, events, limit))
    }

    /// Like [`Reader::records_blocking`], but served from the tap's memory
    /// when it still holds `after + 1` (the live lane of a sink that keeps
    /// up never queries SQLite).
    pub fn recent_or_stored_blocking(&self, after: u64, upto: u64, limit: usize) -> anyhow::Result<Records> {
        if let Some(c) = self.tap.range(after, upto, limit) {
            return Ok(Records::Recent(c));
        }
        self.records_blocking(after, upto, limit).map(Records::Stored)
    }

    /// How long ago record `seq` was accepted, on the buffer's observed
    /// clock (`clock.rs`: monotonic, persisted every second; time while the
    /// gateway was stopped does not count): the newest age mark at or before
    /// `seq` against the persisted clock, so to within about 2 s (blocking).
    /// `None` before the writer persisted its clock or without a mark.
    pub fn observed_age_blocking(&self, seq: u64) -> anyhow::Result<Option<std::time::Duration>> {
        let g = self.inner.lock().map_err(|_| anyhow::anyhow!("buffer reader poisoned"))?;
        let (now, at): (Option<i64>, Option<i64>) = g.conn.query_row(
            "SELECT (SELECT value FROM meta WHERE key = 'observed_ns'),                     (SELECT observed FROM marks WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1)",
            [seq as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(now.zip(at).map(|(now, at)| std::time::Duration::from_nanos(now.saturating_sub(at).max(0) as u64)))
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

    /// [`Reader::records_blocking`] on tokio's blocking pool.
    pub async fn records(&self, after: u64, upto: u64, limit: usize) -> anyhow::Result<Vec<Record>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.records_blocking(after, upto, limit)).await?
    }
}

/// Merges two `seq`-ordered reads and keeps the first `limit`.
fn merge(samples: Vec<Sample>, events: Vec<crate::model::Event>, limit: usize) -> Vec<Record> {
    if events.is_empty() {
        return samples.into_iter().map(Record::Sample).collect();
    }
    let mut out = Vec::with_capacity((samples.len() + events.len()).min(limit));
    let (mut s, mut e) = (samples.into_iter().peekable(), events.into_iter().peekable());
    while out.len() < limit {
        let take_sample = match (s.peek(), e.peek()) {
            (Some(a), Some(b)) => a.seq < b.seq,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.push(if take_sample { Record::Sample(s.next().expect("peeked")) } else { Record::Event(e.next().expect("peeked")) });
    }
    out
}

fn read_samples(conn: &Connection, tags: &TagRegistry, after: u64, upto: u64, limit: usize) -> anyhow::Result<Vec<Sample>> {
    let mut missing: Vec<i64> = Vec::new();
    let mut rows: Vec<RawRow> = Vec::with_capacity(limit.min(4096));
    {
        let mut st = conn.prepare_cached(SELECT)?;
        let mut q = st.query(params![clamp(after), clamp(upto), limit as i64])?;
        while let Some(r) = q.next()? {
            let seq: i64 = r.get(0)?;
            let tag_id: i64 = r.get(1)?;
            let kind: i64 = r.get(2)?;
            let value = value_of(kind, r.get_ref(3)?);
            let reason: Option<String> = r.get(4)?;
            if !tags.contains(tag_id) && !missing.contains(&tag_id) {
                missing.push(tag_id);
            }
            rows.push((seq as u64, tag_id, kind, value, reason.map(Arc::from), r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?));
        }
    }
    for id in missing {
        tags.insert(id, tag_meta(conn, id));
    }
    let metas = tags.snapshot(rows.iter().map(|r| r.1));
    let mut out = Vec::with_capacity(rows.len());
    for (seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status) in rows {
        out.push(Sample {
            seq,
            meta: metas[&tag_id].clone(),
            value,
            quality: quality_of(kind),
            reason,
            ts: Timestamp(ts),
            recv_ts: Timestamp(recv_ts),
            server_ts: server_ts.map(Timestamp),
            status,
        });
    }
    Ok(out)
}
