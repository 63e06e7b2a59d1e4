//! Opening the database: pragmas, schema, start-up check, corrupt-file recovery.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use super::config::{Durability, StartupCheck};

pub(crate) const SCHEMA_VERSION: i64 = 1;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS tags(
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    tag TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    UNIQUE(device, tag, unit));
CREATE TABLE IF NOT EXISTS samples(
    seq INTEGER PRIMARY KEY,
    tag_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    value ANY,
    reason TEXT,
    ts INTEGER NOT NULL,
    recv_ts INTEGER NOT NULL,
    server_ts INTEGER,
    status INTEGER);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    severity INTEGER NOT NULL,
    source_kind TEXT NOT NULL,
    source TEXT NOT NULL,
    ts INTEGER NOT NULL,
    message TEXT NOT NULL,
    details TEXT);
CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    ts INTEGER NOT NULL,
    message TEXT NOT NULL,
    details TEXT);
CREATE TABLE IF NOT EXISTS marks(seq INTEGER PRIMARY KEY, observed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL, live_start INTEGER NOT NULL DEFAULT 0, live_acked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value ANY);
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY,
    recv_ts INTEGER NOT NULL,
    source TEXT NOT NULL,
    origin TEXT NOT NULL,
    location TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS progress(
    key TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    offset INTEGER NOT NULL,
    line INTEGER NOT NULL,
    done INTEGER NOT NULL,
    updated INTEGER NOT NULL);
";

/// Applies the connection pragmas shared by writer and readers.
pub(crate) fn pragmas(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if durability == Durability::Full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // Appends and short range reads need little cache; keep RSS small.
    conn.pragma_update(None, "cache_size", -2_000)?; // 2 MB
    conn.busy_timeout(std::time::Duration::from_millis(50))?;
    Ok(())
}

/// What [`open`] found.
pub(crate) struct Opened {
    pub conn: Connection,
    /// Highest seq ever issued by this buffer.
    pub last_seq: u64,
    /// What was salvaged of a corrupt file found at open.
    pub salvage: Option<super::salvage::Salvage>,
}

fn try_open(path: &Path, durability: Durability, check: StartupCheck) -> Result<(Connection, u64), rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    pragmas(&conn, durability)?;
    if check == StartupCheck::Quick {
        let res: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if res != "ok" {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("quick_check: {res}")),
            ));
        }
    }
    conn.execute_batch(DDL)?;
    // Buffers made before the live lane was persisted.
    let has_live: bool = conn.prepare("SELECT 1 FROM pragma_table_info('cursors') WHERE name = 'live_start'")?.exists([])?;
    if !has_live {
        conn.execute_batch(
            "ALTER TABLE cursors ADD COLUMN live_start INTEGER NOT NULL DEFAULT 0; ALTER TABLE cursors ADD COLUMN live_acked INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    // Buffers made before OPC UA server timestamps and status codes were kept.
    let has_status: bool = conn.prepare("SELECT 1 FROM pragma_table_info('samples') WHERE name = 'status'")?.exists([])?;
    if !has_status {
        conn.execute_batch("ALTER TABLE samples ADD COLUMN server_ts INTEGER; ALTER TABLE samples ADD COLUMN status INTEGER;")?;
    }
    let version: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0)).ok();
    match version {
        None => {
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?1)", params![SCHEMA_VERSION])?;
        }
        Some(v) if v != SCHEMA_VERSION => {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!("buffer schema version {v}, this relais knows {SCHEMA_VERSION}")),
            ));
        }
        Some(_) => {}
    }
    let meta_last: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key='last_seq'", [], |r| r.get(0)).ok();
    let max_seq: i64 =
        conn.query_row("SELECT MAX(COALESCE((SELECT MAX(seq) FROM samples), 0), COALESCE((SELECT MAX(seq) FROM events), 0))", [], |r| {
            r.get(0)
        })?;
    let last = match meta_last {
        Some(m) => m.max(max_seq).max(0) as u64,
        None if max_seq > 0 => max_seq as u64,
        None => {
            // A new buffer (first start, or the old one was deleted): start
            // above anything an earlier buffer of this gateway can have issued,
            // so (gateway, seq) never repeats.
            let origin = recovery_seq_origin(path);
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)", params![origin as i64])?;
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('seq_origin', ?1)", params![origin as i64])?;
            origin
        }
    };
    Ok((conn, last))
}

/// True for errors that mean the file itself is damaged or not a buffer.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt) | Some(rusqlite::ErrorCode::NotADatabase))
}

/// Moves `path` (and its `-wal`/`-shm` files) aside; returns the new name.
pub(crate) fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    std::fs::rename(path, &aside)?;
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
        }
    }
    Ok(aside)
}

/// No `seq` origin is ever below this: 2026-12-01T00:00:00Z in microseconds,
/// after this code was written. A gateway booting with its clock at 1970 (no
/// RTC battery, no NTP yet) still starts above every `seq` an earlier buffer
/// of a correctly set clock issued before that date.
pub(crate) const SEQ_FLOOR: u64 = 1_796_083_200_000_000;

/// Added to the high-water hint: more `seq`s than a gateway can issue between
/// two hint writes ([`HINT_PERIOD`] at a million samples per second is 10^7).
pub(crate) const HINT_MARGIN: u64 = 1_000_000_000;

/// How often the writer records its last `seq` in `seq.hint` beside the buffer.
pub(crate) const HINT_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

fn hint_path(db: &Path) -> PathBuf {
    db.with_file_name("seq.hint")
}

/// Records `last_seq` and the slowest cursor in `<data_dir>/seq.hint` (best
/// effort: a failed write only weakens the origin of a future new buffer to
/// the clock and the floor, and a salvage's loss count to what the file says).
pub(crate) fn write_seq_hint(db: &Path, last_seq: u64, min_cursor: Option<u64>) {
    let tmp = db.with_file_name("seq.hint.tmp");
    let text = match min_cursor {
        Some(c) => format!("{last_seq} {c}"),
        None => last_seq.to_string(),
    };
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, hint_path(db));
    }
}

/// The last `seq` recorded in `seq.hint`.
pub(crate) fn read_seq_hint(db: &Path) -> Option<u64> {
    std::fs::read_to_string(hint_path(db)).ok()?.split_whitespace().next()?.parse().ok()
}

/// The slowest cursor recorded in `seq.hint`.
pub(crate) fn read_cursor_hint(db: &Path) -> Option<u64> {
    std::fs::read_to_string(hint_path(db)).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// The `seq` origin of a new buffer at `db`, above anything a lost or
/// deleted buffer can have issued: the largest of the current time in
/// microseconds since 1970 (a buffer would need a million samples per second
/// since 1970 to get there), [`SEQ_FLOOR`] (a clock at 1970), and the
/// high-water hint the previous buffer left in `seq.hint` plus
/// [`HINT_MARGIN`] (a clock set back). It stays below 2^53 until the year
/// 2255, so JavaScript consumers read it exactly.
pub(crate) fn recovery_seq_origin(db: &Path) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    let origin = seq_origin(now, read_seq_hint(db));
    if now < SEQ_FLOOR {
        tracing::warn!(
            clock_us = now,
            seq_origin = origin,
            "the system clock is before 2026-12-01 (not set yet?): the new buffer's seq starts at the floor or the last known seq instead"
        );
    }
    origin
}

/// [`recovery_seq_origin`] at clock `now_us` with high-water `hint` (pure).
pub(crate) fn seq_origin(now_us: u64, hint: Option<u64>) -> u64 {
    now_us.max(SEQ_FLOOR).max(hint.map_or(0, |h| h.saturating_add(HINT_MARGIN)))
}

/// Opens (or creates) the buffer at `path`, moving a corrupt file aside.
pub(crate) fn open(path: &Path, durability: Durability, check: StartupCheck) -> anyhow::Result<Opened> {
    match try_open(path, durability, check) {
        Ok((conn, last_seq)) => Ok(Opened { conn, last_seq, salvage: None }),
        Err(e) if is_corruption(&e) => {
            let aside = move_aside(path)
                .map_err(|io| anyhow::anyhow!("buffer {} is corrupt ({e}) and cannot be moved aside: {io}", path.display()))?;
            tracing::error!(
                buffer = %path.display(), moved_to = %aside.display(), error = %e,
                "buffer file is corrupt; moved it aside and started a new buffer; salvaging what can be read"
            );
            let (conn, _) = try_open(path, durability, check)?;
            let origin = recovery_seq_origin(path);
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('seq_origin', ?1)", params![origin as i64])?;
            let (report, last) = super::salvage::salvage(&aside, &conn, origin, read_seq_hint(path), read_cursor_hint(path));
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)", params![last as i64])?;
            let level_msg = format!(
                "corrupt buffer salvaged: {} undelivered records copied into the new buffer (renumbered from seq {}), {} could not be read{}; the damaged file stays at {}",
                report.salvaged,
                origin + 1,
                report.lost,
                if report.unnamed > 0 {
                    format!(" ({} of them samples whose tag names were unreadable)", report.unnamed)
                } else {
                    String::new()
                },
                aside.display()
            );
            if report.lost > 0 {
                tracing::error!(salvaged = report.salvaged, lost = report.lost, unnamed = report.unnamed, "{level_msg}");
            } else {
                tracing::warn!(salvaged = report.salvaged, lost = 0, "{level_msg}");
            }
            Ok(Opened { conn, last_seq: last, salvage: Some(report) })
        }
        Err(e) => Err(anyhow::anyhow!("cannot open buffer {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_at_1970_or_set_back_never_makes_seq_repeat() {
        // Before: the origin was the clock alone, 5 s after 1970 here.
        assert!(seq_origin(5_000_000, None) >= SEQ_FLOOR, "a clock at 1970 starts at the floor");
        let issued = SEQ_FLOOR + 400 * 86_400 * 1_000_000; // a year later
        assert!(seq_origin(5_000_000, Some(issued)) > issued, "a clock at 1970 starts above the last known seq");
        assert!(seq_origin(SEQ_FLOOR + 10, Some(issued)) > issued, "a clock set back starts above the last known seq");
        let now = SEQ_FLOOR + 500 * 86_400 * 1_000_000;
        assert_eq!(seq_origin(now, Some(issued)), now, "a right clock ahead of the hint is used as it is");
    }

    #[test]
    fn the_hint_survives_beside_the_buffer() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("buffer.db");
        write_seq_hint(&db, 1_900_000_000_000_000, Some(5));
        assert_eq!(read_cursor_hint(&db), Some(5));
        assert!(recovery_seq_origin(&db) > 1_900_000_000_000_000);
    }
}
