//! Salvage of a corrupt buffer: what can still be read of the file moved
//! aside is copied into the new buffer, and what cannot is counted.
//!
//! - **What is salvaged.** Every sample and event above the slowest sink's
//!   cursor (what some sink has not delivered) that SQLite can still read,
//!   with the tag names it refers to. A sample whose tag names cannot be read
//!   is not salvaged (it would be published under a made-up name): counted.
//! - **How.** Rows are read by `seq` range; a range that fails is split in
//!   halves down to single rows, so one damaged page loses only its own rows.
//! - **Order and numbering.** Salvaged records keep their order and get new,
//!   contiguous `seq`s from the new buffer's origin (above anything the old
//!   file issued), so the new buffer's invariants hold. Each sink's cursor is
//!   mapped to the same place in the renumbered records: no sink receives
//!   again what it had delivered, and nothing is salvaged twice.
//! - **Accounting.** Records expected = the old `seq` range above the slowest
//!   cursor (`samples` and `events` are contiguous together); lost = expected −
//!   salvaged. Both are logged, kept in [`Salvage`], and reported as a
//!   `buffer.salvaged` event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, params};

/// What a salvage did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvage {
    /// Records (samples and events) copied into the new buffer.
    pub salvaged: u64,
    /// Records that were not delivered by every sink and could not be read.
    pub lost: u64,
    /// Of `lost`: samples readable but whose tag names were not.
    pub unnamed: u64,
    /// Old `seq` range examined (above the slowest cursor).
    pub range: Option<(u64, u64)>,
}

const SAMPLE_COLS: &str = "seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status";
const EVENT_COLS: &str = "seq, kind, severity, source_kind, source, ts, message, details";

/// Rows of `table` with `lo <= seq <= hi`, splitting failing ranges.
fn read_rows(old: &Connection, table: &str, cols: &str, lo: u64, hi: u64, out: &mut BTreeMap<u64, Vec<SqlValue>>) {
    let n = cols.split(',').count();
    let sql = format!("SELECT {cols} FROM {table} WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq");
    let attempt = || -> rusqlite::Result<Vec<(u64, Vec<SqlValue>)>> {
        let mut st = old.prepare(&sql)?;
        let rows = st.query_map(params![lo as i64, hi as i64], |r| {
            let row: Vec<SqlValue> = (0..n).map(|i| r.get::<_, SqlValue>(i)).collect::<rusqlite::Result<_>>()?;
            Ok((r.get::<_, i64>(0)? as u64, row))
        })?;
        rows.collect()
    };
    match attempt() {
        Ok(rows) => out.extend(rows),
        Err(_) if lo < hi => {
            let mid = lo + (hi - lo) / 2;
            read_rows(old, table, cols, lo, mid, out);
            read_rows(old, table, cols, mid + 1, hi, out);
        }
        Err(_) => {}
    }
}

/// The names of the tags `used` by salvaged samples (ids up to the largest used).
fn tags(old: &Connection, used: &HashSet<i64>) -> HashMap<i64, (String, String, String)> {
    let mut out = HashMap::new();
    let Some(max) = used.iter().max().copied() else { return out };
    let mut stack = vec![(1i64, max.max(1))];
    while let Some((lo, hi)) = stack.pop() {
        let got = old.prepare("SELECT id, device, tag, unit FROM tags WHERE id BETWEEN ?1 AND ?2").and_then(|mut st| {
            st.query_map(params![lo, hi], |r| Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
        match got {
            Ok(rows) => out.extend(rows),
            Err(_) if lo < hi => {
                let mid = lo + (hi - lo) / 2;
                stack.push((lo, mid));
                stack.push((mid + 1, hi));
            }
            Err(_) => {}
        }
    }
    out
}

fn one_u64(old: &Connection, sql: &str) -> Option<u64> {
    old.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).ok().flatten().filter(|v| *v > 0).map(|v| v as u64)
}

fn old_cursors(old: &Connection) -> Vec<(String, u64)> {
    old.prepare("SELECT sink, seq FROM cursors")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?.collect())
        .unwrap_or_default()
}

/// The old `seq` range worth salvaging: above the slowest cursor, up to the
/// highest `seq` any readable source knows (`hint`: the last `seq` recorded
/// beside the buffer).
fn range(old: &Connection, cursors: &[(String, u64)], hint: Option<u64>, cursor_hint: Option<u64>) -> Option<(u64, u64)> {
    let min_row = [one_u64(old, "SELECT MIN(seq) FROM samples"), one_u64(old, "SELECT MIN(seq) FROM events")].into_iter().flatten().min();
    let hi = [
        one_u64(old, "SELECT MAX(seq) FROM samples"),
        one_u64(old, "SELECT MAX(seq) FROM events"),
        one_u64(old, "SELECT value FROM meta WHERE key = 'last_seq'"),
        hint,
    ]
    .into_iter()
    .flatten()
    .max()?;
    let lo = match cursors.iter().map(|c| c.1).min().or(cursor_hint) {
        Some(c) => c + 1,
        None => min_row.or_else(|| one_u64(old, "SELECT value FROM meta WHERE key = 'seq_origin'").map(|o| o + 1))?,
    };
    let lo = lo.max(min_row.unwrap_or(lo).min(hi + 1));
    (lo <= hi).then_some((lo, hi))
}

fn readable(c: &Connection) -> bool {
    c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).is_ok()
}

/// Opens the damaged file read-only; when its 100-byte header is destroyed
/// ("file is not a database"), a copy with the header of a fresh buffer (same
/// page size, no freelist, page count taken from the file size) is opened instead.
fn open_old(aside: &Path) -> Option<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if let Ok(c) = Connection::open_with_flags(aside, flags)
        && readable(&c)
    {
        return Some(c);
    }
    let mut bytes = std::fs::read(aside).ok()?;
    if bytes.len() < 4096 * 2 {
        return None;
    }
    let tpl = aside.with_extension("header-template");
    let _ = std::fs::remove_file(&tpl);
    {
        let t = Connection::open(&tpl).ok()?;
        t.execute_batch("PRAGMA page_size = 4096; CREATE TABLE x(a);").ok()?;
    }
    let header = std::fs::read(&tpl).ok();
    let _ = std::fs::remove_file(&tpl);
    let header = header?;
    bytes[..100].copy_from_slice(header.get(..100)?);
    // No freelist; the change counter differs from version-valid-for so the
    // page count comes from the file size.
    bytes[32..40].fill(0);
    bytes[92..96].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let repaired = aside.with_extension("header-repaired");
    std::fs::write(&repaired, &bytes).ok()?;
    let c = Connection::open_with_flags(&repaired, flags).ok()?;
    readable(&c).then_some(c)
}

/// Copies what can be read of `aside` into `new` with `seq`s from `origin + 1`;
/// returns the report and the new last `seq`.
pub(crate) fn salvage(aside: &Path, new: &Connection, origin: u64, hint: Option<u64>, cursor_hint: Option<u64>) -> (Salvage, u64) {
    let mut report = Salvage::default();
    let Some(old) = open_old(aside) else {
        // Not even the header: all that is known is the hint's range.
        if let (Some(hi), Some(c)) = (hint, cursor_hint) {
            report.range = (c < hi).then_some((c + 1, hi));
            report.lost = hi.saturating_sub(c);
        }
        return (report, origin);
    };
    let cursors = old_cursors(&old);
    let Some((lo, hi)) = range(&old, &cursors, hint, cursor_hint) else {
        return (report, origin);
    };
    report.range = Some((lo, hi));
    let mut samples = BTreeMap::new();
    let mut events = BTreeMap::new();
    read_rows(&old, "samples", SAMPLE_COLS, lo, hi, &mut samples);
    read_rows(&old, "events", EVENT_COLS, lo, hi, &mut events);
    let used: HashSet<i64> = samples.values().filter_map(|r| if let SqlValue::Integer(t) = r[1] { Some(t) } else { None }).collect();
    let names = tags(&old, &used);
    let copied = copy(new, origin, &samples, &events, &names, &used, &mut report);
    report.lost = (hi - lo + 1).saturating_sub(report.salvaged);
    // Each sink's cursor: the same place among the renumbered records.
    for (sink, c) in &cursors {
        let before = copied.range(..=*c).count() as u64;
        let _ = new.execute(
            "INSERT OR REPLACE INTO cursors(sink, seq, live_start, live_acked) VALUES(?1, ?2, 0, 0)",
            params![sink, (origin + before) as i64],
        );
    }
    drop(old);
    let _ = std::fs::remove_file(aside.with_extension("header-repaired"));
    let last = origin + report.salvaged;
    (report, last)
}

/// Inserts the readable records in old `seq` order; returns the old seqs copied.
fn copy(
    new: &Connection,
    origin: u64,
    samples: &BTreeMap<u64, Vec<SqlValue>>,
    events: &BTreeMap<u64, Vec<SqlValue>>,
    names: &HashMap<i64, (String, String, String)>,
    used: &HashSet<i64>,
    report: &mut Salvage,
) -> std::collections::BTreeSet<u64> {
    let mut copied = std::collections::BTreeSet::new();
    let _ = new.execute_batch("BEGIN");
    for id in used {
        if let Some((d, t, u)) = names.get(id) {
            let _ = new.execute("INSERT OR IGNORE INTO tags(id, device, tag, unit) VALUES(?1, ?2, ?3, ?4)", params![id, d, t, u]);
        }
    }
    let all: BTreeMap<u64, (bool, &Vec<SqlValue>)> =
        samples.iter().map(|(k, v)| (*k, (true, v))).chain(events.iter().map(|(k, v)| (*k, (false, v)))).collect();
    let mut seq = origin;
    for (old_seq, (is_sample, row)) in all {
        if is_sample && !matches!(row[1], SqlValue::Integer(t) if names.contains_key(&t)) {
            report.unnamed += 1;
            continue;
        }
        seq += 1;
        let mut vals = row.clone();
        vals[0] = SqlValue::Integer(seq as i64);
        let sql = if is_sample {
            "INSERT OR IGNORE INTO samples(seq, tag_id, kind, value, reason, ts, recv_ts, server_ts, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        } else {
            "INSERT OR IGNORE INTO events(seq, kind, severity, source_kind, source, ts, message, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        };
        if new.execute(sql, rusqlite::params_from_iter(vals.iter())).is_ok() {
            copied.insert(old_seq);
            report.salvaged += 1;
        } else {
            seq -= 1;
        }
    }
    let _ = new.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)", params![seq as i64]);
    let _ = new.execute_batch("COMMIT");
    copied
}
