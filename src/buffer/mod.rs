//! The SQLite store-and-forward buffer.
//!
//! # Invariants
//! - **One writer.** A single thread ([`writer`]) owns the only write
//!   connection. It drains the ingest ring in batches and commits each batch in
//!   one transaction. A record (a sample or an event) is *accepted* when that
//!   transaction commits; its `seq` is assigned in the same transaction from
//!   one sequence shared by samples and events, strictly increasing per
//!   gateway, across restarts (the last `seq` is stored in `meta`). A new
//!   buffer starts at the current time in microseconds (never below
//!   2026-12-01, nor below the last `seq` recorded in `seq.hint` beside the
//!   buffer, so a clock at 1970 or set back is safe), so a deleted or lost
//!   buffer never makes a `seq` repeat.
//! - **Contiguous rows.** Rows are only appended (increasing `seq`) and only
//!   deleted from the oldest end, so `samples` and `events` together always
//!   hold one contiguous `seq` range `[first, last]` (each table alone has gaps
//!   where the other's rows are).
//! - **Cursors.** Each sink has a cursor: the highest `seq` it has delivered and
//!   had acknowledged, with everything below delivered too. Sinks move their
//!   cursor in memory ([`SinkCursor`]); the writer persists cursors every
//!   200 ms and at shutdown, so a crash resends at most about 200 ms of data
//!   (duplicates are detectable by `seq`), never loses any.
//! - **Retention.** Rows at or below the slowest cursor are deleted, a few
//!   thousand between two commits so no DELETE delays live data. `max_rows`,
//!   `max_bytes` and `max_age` drop the oldest rows even if undelivered
//!   (`max_age` on the gateway's observed clock, not the wall clock: see
//!   `clock.rs`); every
//!   such drop is counted (`dropped_total`: what the slowest sink had not
//!   delivered; [`SinkCursor::dropped`]: each sink's own loss), logged at most
//!   once per interval, and emitted as a `buffer.dropped` event once
//!   [`Buffer::emit_events`] is on.
//! - **Tap.** After each commit the writer publishes the batch to the
//!   [`tap`] (in memory, bounded) before it announces the new last `seq`:
//!   sinks that keep up and processors read fresh records without a query.
//! - **Checkpoints.** WAL checkpoints run on a thread of their own
//!   (`checkpoint.rs`), never inside the writer's commits.
//! - The tokio runtime never blocks on SQLite: sinks read through
//!   [`Reader`], which runs its queries on the blocking pool.
//!
//! # On-disk format (`<data_dir>/buffer.db`, WAL mode)
//! ```sql
//! tags(id INTEGER PRIMARY KEY, device TEXT, tag TEXT, unit TEXT, UNIQUE(device, tag, unit))
//! samples(seq INTEGER PRIMARY KEY, tag_id INTEGER, kind INTEGER, value ANY,
//!         reason TEXT, ts INTEGER, recv_ts INTEGER,     -- ts, recv_ts: ns since epoch, UTC
//!         server_ts INTEGER, status INTEGER)        -- OPC UA ServerTimestamp, StatusCode (or NULL)
//! events(seq INTEGER PRIMARY KEY,                    -- same sequence as samples.seq
//!        kind TEXT, severity INTEGER,               -- 0 info, 1 warning, 2 error, 3 critical
//!        source_kind TEXT, source TEXT,             -- gateway|device|tag|sink|rule, its name
//!        ts INTEGER, message TEXT, details TEXT)    -- ts: ns since epoch; details: JSON or NULL
//! marks(seq INTEGER PRIMARY KEY, observed INTEGER)  -- gateway-observed ns at acceptance, one per second (clock.rs)
//! cursors(sink TEXT PRIMARY KEY, seq INTEGER)
//! meta(key TEXT PRIMARY KEY, value ANY)   -- schema_version, last_seq, seq_origin, observed_ns, clock_floor
//! quarantine(id INTEGER PRIMARY KEY, recv_ts, source, origin, location, reason, raw)
//! progress(key TEXT PRIMARY KEY, identity, offset, line, done, updated)
//! ```
//! Beside it in `data_dir`: `relais.lock` (one process per data_dir),
//! `seq.hint` (the last `seq` and the slowest cursor, every 10 s and at
//! stop: a new or salvaged buffer's `seq` origin and loss count),
//! `buffer.reserve` (disk headroom released when the disk is full, see
//! `space.rs`), and `buffer.db.corrupt-<unix time>` files moved aside.
//!
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
//!   one can have issued (the current time in microseconds). At open, every
//!   undelivered record that can still be read is salvaged into the new
//!   buffer in order (renumbered, cursors mapped, no duplicates) and what
//!   cannot be read is counted and reported ([`salvage`]). Corruption found
//!   while running replaces the file without salvage (the old file is kept).
//! - "Database is locked" (another process holds a write lock): the batch is
//!   retried with backoff; samples wait in the bounded ring; reported once per
//!   interval.
//! - Clock (`clock.rs`, `crate::model::clock`): the gateway clock's floor
//!   is persisted in `meta('clock_floor')` every second and at shutdown and
//!   loaded at open, before any source stamps; the writer flags the samples
//!   stamped while the clock was suspect (`uncertain`, `clock_suspect`).
//! - Host (`host.rs`): `buffer.disk_full` / `buffer.writable` when commits
//!   hit a full disk (or the lab's switch, [`Buffer::set_disk_full`]) and
//!   write again; `host.disk_low` / `host.disk_ok` on free space.
//! - A full disk (`space.rs`): the byte limit is capped below the disk's free
//!   space at open; a reserve file beside the buffer is released on the first
//!   `SQLITE_FULL` so the oldest rows can be deleted (deleting needs space)
//!   and the newest samples land; every drop is counted. The buffer also opens
//!   on a full disk (the reserve is released first), so its backlog drains.

pub mod audit;
mod checkpoint;
mod clock;
pub mod config;
mod cursors;
mod handle;
mod host;
pub mod quarantine;
mod reader;
mod recovery;
mod registry;
mod retention;
mod rows;
pub mod salvage;
mod schema;
mod space;
pub mod tap;
mod writer;

pub use config::{BufferConfig, Durability, StartupCheck};
pub use cursors::{CursorSet, SinkCursor};
pub use handle::{Buffer, BufferStats};
pub use reader::{Reader, Records};
pub use tap::{Tap, TapHold, TapSubscription, Tapped};

/// Unix time in milliseconds (the clock of [`BufferStats::heartbeat_ms`]).
pub fn unix_ms_now() -> u64 {
    handle::unix_ms()
}
