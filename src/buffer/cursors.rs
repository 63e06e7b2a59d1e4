//! Sink cursors: moved by sinks in memory, persisted by the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A sink's handle on its cursor.
///
/// The cursor is the highest `seq` such that the sink's far end has acknowledged
/// every sample up to it. Cloning shares the same cursor.
#[derive(Debug, Clone)]
pub struct SinkCursor {
    name: Arc<str>,
    acked: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    live: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

impl SinkCursor {
    pub(crate) fn new(name: &str, seq: u64, live: Option<(u64, u64)>) -> SinkCursor {
        SinkCursor {
            name: name.into(),
            acked: Arc::new(AtomicU64::new(seq)),
            dropped: Arc::new(AtomicU64::new(0)),
            live: Arc::new(std::sync::Mutex::new(live)),
        }
    }

    /// The live lane during a replay: `(start, acked)`, meaning every `seq` in
    /// `start + 1..=acked` was delivered too. Persisted with the cursor so a
    /// restart during a long replay does not send the live rows again.
    pub fn live(&self) -> Option<(u64, u64)> {
        self.live.lock().ok().and_then(|g| *g)
    }

    /// Records the live lane (`None` when there is no replay).
    pub fn set_live(&self, live: Option<(u64, u64)>) {
        if let Ok(mut g) = self.live.lock() {
            *g = live;
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current cursor.
    pub fn get(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Records this sink had not delivered when the buffer limits
    /// (`max_rows`, `max_bytes`, `max_age`, a full disk) dropped them, since
    /// start: this sink's own loss, whatever other sinks delivered.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Moves the cursor forward to `seq` (never backwards).
    pub fn advance(&self, seq: u64) {
        self.acked.fetch_max(seq, Ordering::AcqRel);
    }
}
