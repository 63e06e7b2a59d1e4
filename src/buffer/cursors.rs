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
}

impl SinkCursor {
    pub(crate) fn new(name: &str, seq: u64) -> SinkCursor {
        SinkCursor { name: name.into(), acked: Arc::new(AtomicU64::new(seq)) }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current cursor.
    pub fn get(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Moves the cursor forward to `seq` (never backwards).
    pub fn advance(&self, seq: u64) {
        self.acked.fetch_max(seq, Ordering::AcqRel);
    }
}
