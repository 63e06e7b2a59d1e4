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

/// The cursors of the configured sinks, shared by the [`super::Buffer`]
/// handle (which adds and removes sinks on a configuration reload), the
/// status line and the writer thread (which persists them and keeps
/// retention below the slowest).
///
/// Invariant: a sink's cursor is one shared [`SinkCursor`] for as long as the
/// sink stays configured, so a restarted sink resumes where it was. Changes
/// reach the writer at its next loop turn ([`CursorSet::take_changes`]).
#[derive(Debug, Default)]
pub struct CursorSet {
    list: std::sync::RwLock<Vec<SinkCursor>>,
    /// Names removed since the writer last looked (their rows are deleted).
    removed: std::sync::Mutex<Vec<String>>,
    changed: std::sync::atomic::AtomicBool,
}

impl CursorSet {
    pub(crate) fn new(cursors: Vec<SinkCursor>) -> CursorSet {
        CursorSet { list: std::sync::RwLock::new(cursors), ..Default::default() }
    }

    /// The cursors, in the order the sinks were configured (then added).
    pub fn list(&self) -> Vec<SinkCursor> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cursor of sink `name`.
    pub fn get(&self, name: &str) -> Option<SinkCursor> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).iter().find(|c| c.name() == name).cloned()
    }

    /// The cursor of `name`, made at `seq` when the sink is new.
    pub(crate) fn add(&self, name: &str, seq: u64) -> SinkCursor {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = list.iter().find(|c| c.name() == name) {
            return c.clone();
        }
        let c = SinkCursor::new(name, seq, None);
        list.push(c.clone());
        self.removed.lock().unwrap_or_else(|e| e.into_inner()).retain(|n| n != name);
        self.changed.store(true, Ordering::Release);
        c
    }

    /// Forgets sink `name`: its cursor no longer holds retention back and its
    /// stored row is deleted. False when it was not there.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|c| c.name() != name);
        if list.len() == before {
            return false;
        }
        self.removed.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
        self.changed.store(true, Ordering::Release);
        true
    }

    /// For the writer: the new list and the removed names, once after each change.
    pub(crate) fn take_changes(&self) -> Option<(Vec<SinkCursor>, Vec<String>)> {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        let removed = std::mem::take(&mut *self.removed.lock().unwrap_or_else(|e| e.into_inner()));
        Some((self.list(), removed))
    }
}
