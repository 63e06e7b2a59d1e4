//! WAL checkpoints off the writer thread.
//!
//! SQLite folds the WAL back into the database (a checkpoint, with an fsync)
//! inside the commit that crosses `wal_autocheckpoint` pages: done by the
//! writer, it delays every record of that commit by the checkpoint's length.
//! A thread of its own with its own connection runs PASSIVE checkpoints
//! every [`PERIOD`] instead; PASSIVE never blocks the writer (WAL mode lets
//! one writer append while a checkpoint copies). The writer keeps a far
//! higher automatic threshold as a backstop, so the WAL stays bounded even if
//! this thread cannot keep up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::config::Durability;

/// Time between two checkpoints.
pub(crate) const PERIOD: Duration = Duration::from_millis(250);
/// The writer's own automatic checkpoint, in pages (≈ 64 MiB of 4 KiB pages).
const BACKSTOP_PAGES: i64 = 16_384;

/// The checkpoint thread.
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the thread and raises the writer connection's automatic
    /// threshold; `None` (the writer checkpoints itself as before) when the
    /// thread or its connection cannot be had.
    pub(crate) fn start(path: &Path, durability: Durability, writer: &Connection) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX).ok()?;
        super::schema::pragmas(&conn, durability).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("relais-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(PERIOD);
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        let _ = writer.query_row(&format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}"), [], |_| Ok(()));
        Some(Checkpointer { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}
