//! The history database (`history.db` in `data_dir`), separate from the
//! forwarding buffer: pruning one never touches the other.
//!
//! ```text
//! tags    (id, device, tag)                          one row per tag ever seen
//! raw     (tag_id, ts, seq, quality, value)          every sample, `raw` long
//! minutes (tag_id, bucket, count, good, bad, num,    one row per tag and minute,
//!          sum, min, max, last, last_ts, last_seq)     `minutes` long
//! hours   (same columns)                             one row per tag and hour, `hours` long
//! meta    (key, value)                               `last_seq`: the buffer seq written last
//! ```
//!
//! Times are Unix nanoseconds (UTC) of the sample's `ts`; `bucket` is the
//! start of the minute or hour. `value` is the numeric view of the value
//! (null for bad samples, text and null values).
//!
//! Invariants: one [`Store::write`] is one transaction: the raw rows, the
//! rollup updates and `last_seq` land together or not at all, so a restart
//! resumes exactly after the last written `seq` (nothing counted twice);
//! rollups are updated with [`Agg::merge`] semantics in SQL (counts and sums
//! add, min/max keep the extreme, `last` the greatest `(ts, seq)`).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::agg::Agg;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, device TEXT NOT NULL, tag TEXT NOT NULL, UNIQUE (device, tag));
CREATE TABLE IF NOT EXISTS raw (
  tag_id INTEGER NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL, quality INTEGER NOT NULL, value REAL,
  PRIMARY KEY (tag_id, ts, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minutes (
  tag_id INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, good INTEGER NOT NULL, bad INTEGER NOT NULL,
  num INTEGER NOT NULL, sum REAL NOT NULL, min REAL, max REAL, last REAL, last_ts INTEGER, last_seq INTEGER,
  PRIMARY KEY (tag_id, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hours (
  tag_id INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, good INTEGER NOT NULL, bad INTEGER NOT NULL,
  num INTEGER NOT NULL, sum REAL NOT NULL, min REAL, max REAL, last REAL, last_ts INTEGER, last_seq INTEGER,
  PRIMARY KEY (tag_id, bucket)) WITHOUT ROWID;
";

/// The rollup tables, finest first.
pub const ROLLUPS: [&str; 2] = ["minutes", "hours"];

/// One raw row: tag id, `ts` (ns), `seq`, quality code, numeric value.
pub type RawRow = (i64, i64, u64, u8, Option<f64>);

/// What one flush writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// Tags seen for the first time: `(id, device, tag)`.
    pub new_tags: Vec<(i64, String, String)>,
    /// Raw rows.
    pub raw: Vec<RawRow>,
    /// Rollup updates per `(tag id, bucket)`: minutes, then hours.
    pub rollups: [HashMap<(i64, i64), Agg>; 2],
    /// The last buffer `seq` this batch covers.
    pub last_seq: u64,
}

impl Batch {
    /// True when it holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.new_tags.is_empty() && self.raw.is_empty() && self.rollups.iter().all(HashMap::is_empty)
    }
}

/// The writable history database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let conn = Connection::open(path).map_err(|e| anyhow::anyhow!("history: cannot open {}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)
        };
        // SQLite opens lazily: a corrupt file is found here; name it.
        setup().map_err(|e| {
            anyhow::anyhow!(
                "history: {} is not a usable history database: {e} (move it aside: relais then starts a new one)",
                path.display()
            )
        })?;
        Ok(Store { conn })
    }

    /// Every known tag: `(device, tag) → id`.
    pub fn tags(&self) -> anyhow::Result<HashMap<(String, String), i64>> {
        read_tags(&self.conn).map(|v| v.into_iter().map(|(id, d, t)| ((d, t), id)).collect())
    }

    /// The buffer `seq` written last (`None` on a new database).
    pub fn last_seq(&self) -> anyhow::Result<Option<u64>> {
        let v: Option<i64> = self.conn.query_row("SELECT value FROM meta WHERE key = 'last_seq'", [], |r| r.get(0)).optional()?;
        Ok(v.map(|v| v as u64))
    }

    /// Sets `last_seq` alone (a new or replaced buffer).
    pub fn set_last_seq(&self, seq: u64) -> anyhow::Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?1)", [seq as i64])?;
        Ok(())
    }

    /// Writes a batch in one transaction.
    pub fn write(&mut self, b: &Batch) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT OR IGNORE INTO tags (id, device, tag) VALUES (?1, ?2, ?3)")?;
            for (id, d, t) in &b.new_tags {
                st.execute(params![id, d, t])?;
            }
            let mut st = tx.prepare_cached("INSERT OR IGNORE INTO raw (tag_id, ts, seq, quality, value) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (id, ts, seq, q, v) in &b.raw {
                st.execute(params![id, ts, *seq as i64, q, v])?;
            }
            for (table, rows) in ROLLUPS.iter().zip(&b.rollups) {
                let mut st = tx.prepare_cached(&upsert(table))?;
                for ((id, bucket), a) in rows {
                    let (lts, lseq, lv) = a.last.map_or((None, None, None), |(t, s, v)| (Some(t), Some(s as i64), Some(v)));
                    st.execute(params![
                        id,
                        bucket,
                        a.count as i64,
                        a.good as i64,
                        a.bad as i64,
                        a.num as i64,
                        a.sum,
                        a.min,
                        a.max,
                        lv,
                        lts,
                        lseq
                    ])?;
                }
            }
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?1)", [b.last_seq as i64])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes raw rows with `ts` before `raw_before`, and rollup rows whose
    /// bucket starts before `minutes_before` / `hours_before` (ns). Returns
    /// the rows deleted.
    pub fn prune(&mut self, raw_before: i64, minutes_before: i64, hours_before: i64) -> anyhow::Result<u64> {
        let ids: Vec<i64> = self.conn.prepare_cached("SELECT id FROM tags")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        let tx = self.conn.transaction()?;
        let mut n = 0;
        for (sql, before) in [
            ("DELETE FROM raw WHERE tag_id = ?1 AND ts < ?2", raw_before),
            ("DELETE FROM minutes WHERE tag_id = ?1 AND bucket < ?2", minutes_before),
            ("DELETE FROM hours WHERE tag_id = ?1 AND bucket < ?2", hours_before),
        ] {
            let mut st = tx.prepare_cached(sql)?;
            for id in &ids {
                n += st.execute(params![id, before])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

/// The upsert of one rollup row (see [`Agg::merge`]).
fn upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} (tag_id, bucket, count, good, bad, num, sum, min, max, last, last_ts, last_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (tag_id, bucket) DO UPDATE SET
           count = count + excluded.count, good = good + excluded.good, bad = bad + excluded.bad,
           num = num + excluded.num, sum = sum + excluded.sum,
           min = coalesce(min(min, excluded.min), min, excluded.min),
           max = coalesce(max(max, excluded.max), max, excluded.max),
           last = CASE WHEN excluded.last_ts IS NOT NULL AND (last_ts IS NULL OR (excluded.last_ts, excluded.last_seq) > (last_ts, last_seq))
                       THEN excluded.last ELSE last END,
           last_seq = CASE WHEN excluded.last_ts IS NOT NULL AND (last_ts IS NULL OR (excluded.last_ts, excluded.last_seq) > (last_ts, last_seq))
                       THEN excluded.last_seq ELSE last_seq END,
           last_ts = CASE WHEN excluded.last_ts IS NOT NULL AND (last_ts IS NULL OR excluded.last_ts > last_ts) THEN excluded.last_ts ELSE last_ts END"
    )
}

/// Every tag: `(id, device, tag)`.
pub fn read_tags(c: &Connection) -> anyhow::Result<Vec<(i64, String, String)>> {
    let mut st = c.prepare_cached("SELECT id, device, tag FROM tags ORDER BY device, tag")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Opens the history of `data_dir` read-only (safe beside the running
/// daemon: WAL readers never block its writer).
pub fn open_readonly(path: &Path) -> anyhow::Result<Connection> {
    if !path.exists() {
        anyhow::bail!("no history at {} (is [history] in the configuration, and has relais run with it?)", path.display());
    }
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| anyhow::anyhow!("history: cannot open {}: {e}", path.display()))?;
    c.busy_timeout(std::time::Duration::from_secs(2))?;
    // SQLite opens lazily: a corrupt file is found by the first read; name it.
    c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map_err(|e| anyhow::anyhow!("history: {} is not a usable history database: {e}", path.display()))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_history_file_is_named_by_both_openers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.db");
        std::fs::write(&path, vec![0x5a; 8192]).expect("write");
        let e = Store::open(&path).err().expect("a corrupt file is refused").to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("not a usable history database"), "{e}");
        let e = open_readonly(&path).expect_err("a corrupt file is refused").to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("not a usable history database"), "{e}");
        std::fs::remove_file(&path).expect("remove");
        Store::open(&path).expect("a new file opens");
        open_readonly(&path).expect("and reads");
    }
}
