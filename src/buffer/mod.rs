//! The SQLite store-and-forward buffer.
//!
//! # Invariants
//! - **One writer.** A single thread ([`writer`]) owns the only write
//!   connection. It drains the ingest ring in batches and commits each batch in
//!   one transaction. A sample is *accepted* when that transaction commits; its
//!   `seq` is assigned in the same transaction and is strictly increasing per
//!   gateway, across restarts (the last `seq` is stored in `meta`). A new
//!   buffer starts at the current time in microseconds, so a deleted or lost
//!   buffer never makes a `seq` repeat.
//! - **Contiguous rows.** Rows are only appended (increasing `seq`) and only
//!   deleted from the oldest end, so the table always holds one contiguous `seq`
//!   range `[first, last]`.
//! - **Cursors.** Each sink has a cursor: the highest `seq` it has delivered and
//!   had acknowledged, with everything below delivered too. Sinks move their
//!   cursor in memory ([`SinkCursor`]); the writer persists cursors about once a
//!   second and at shutdown, so a crash resends at most about a second of data
//!   (duplicates are detectable by `seq`), never loses any.
//! - **Retention.** Rows at or below the slowest cursor are deleted. `max_rows`,
//!   `max_bytes` and `max_age` drop the oldest rows even if undelivered; every
//!   such drop is counted (`dropped_total`) and logged at most once per interval.
//! - The tokio runtime never blocks on SQLite: sinks read through
//!   [`Reader`], which runs its queries on the blocking pool.
//!
//! # On-disk format (`<data_dir>/buffer.db`, WAL mode)
//! ```sql
//! tags(id INTEGER PRIMARY KEY, device TEXT, tag TEXT, unit TEXT, UNIQUE(device, tag, unit))
//! samples(seq INTEGER PRIMARY KEY, tag_id INTEGER, kind INTEGER, value ANY,
//!         reason TEXT, ts INTEGER, recv_ts INTEGER,     -- ts, recv_ts: ns since epoch, UTC
//!         server_ts INTEGER, status INTEGER)        -- OPC UA ServerTimestamp, StatusCode (or NULL)
//! cursors(sink TEXT PRIMARY KEY, seq INTEGER)
//! meta(key TEXT PRIMARY KEY, value ANY)                   -- schema_version, last_seq
//! quarantine(id INTEGER PRIMARY KEY, recv_ts, source, origin, location, reason, raw)
//! progress(key TEXT PRIMARY KEY, identity, offset, line, done, updated)
//! ```
//! Samples of a file or HTTP body are committed in the same transaction as
//! the records of it that were quarantined and as its read `progress`, so a
//! restart resumes exactly after the last committed record. The quarantine
//! keeps at most 100,000 rows and no row older than `max_age`.
//! `kind` = value type (bits 0–2: 0 null, 1 bool, 2 i64, 3 u64 stored as its
//! i64 bit pattern, 4 f64, 5 text) | quality << 3 (0 good, 1 uncertain, 2 bad).
//!
//! # Crash cases
//! - `kill -9` or panic: WAL keeps every committed transaction
//!   (`durability = "normal"`); uncommitted samples were never accepted. On
//!   restart sinks resume from their persisted cursors.
//! - Power loss: `durability = "full"` (`synchronous=FULL`) keeps every commit.
//! - Corrupt file: detected at open (`quick_check`) or on a `SQLITE_CORRUPT`
//!   error; the file is renamed `buffer.db.corrupt-<unix time>` with a clear log
//!   line, and a new buffer starts with `seq` continuing above anything the old
//!   one can have issued (the current time in microseconds).
//! - "Database is locked" (another process holds a write lock) and a full disk:
//!   the batch is retried with backoff; samples wait in the bounded ring;
//!   reported once per interval. A full disk also drops the oldest rows, counted.

mod cursors;
pub mod quarantine;
mod reader;
mod registry;
mod retention;
mod schema;
mod writer;

pub use cursors::SinkCursor;
pub use reader::Reader;
pub use writer::{Buffer, BufferStats};

/// Unix time in milliseconds (the clock of [`BufferStats::heartbeat_ms`]).
pub fn unix_ms_now() -> u64 {
    writer::unix_ms()
}
