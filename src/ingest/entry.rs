//! What travels through the ring: samples, groups, events, barriers.

use tokio::sync::oneshot;

use crate::model::{Event, Sample};

/// One slot of the ring.
#[derive(Debug)]
pub enum Entry {
    /// A sample to accept.
    Sample(Sample),
    /// Samples accepted together, in one transaction, with what they carry.
    Group(Box<Group>),
    /// An event to accept (in the same `seq` order as samples).
    Event(Box<Event>),
    /// Answered with the last committed `seq` once every entry before it is committed.
    Barrier(oneshot::Sender<u64>),
}

/// Samples committed atomically with the quarantined records and the read
/// progress of the same input, so that a restart resumes exactly after the
/// last committed record (no loss, no duplicate).
#[derive(Debug, Default)]
pub struct Group {
    /// Samples, in order.
    pub samples: Vec<Sample>,
    /// Records that could not be ingested.
    pub quarantine: Vec<crate::model::Quarantined>,
    /// How far the input was read once these are committed.
    pub progress: Option<Progress>,
    /// Told the `seq` range once committed (`first > last` when no sample).
    pub done: Option<oneshot::Sender<Accepted>>,
    /// A file moved after its ingest: its quarantined records are updated
    /// to name the file where it now is.
    pub moved: Option<Moved>,
}

/// A file that was moved (to a watch folder's `done/` or `failed/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Source name of the quarantined records.
    pub source: String,
    /// Origin recorded while the file was read.
    pub from: String,
    /// Where the file is now.
    pub to: String,
}

/// Read progress of one input (a file, a tailed file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Key of the input, e.g. `tail:<source>` or `file:<sha256>`.
    pub key: String,
    /// What the input is (path, size, inode, hash), to detect a replaced file.
    pub identity: String,
    /// Bytes consumed.
    pub offset: u64,
    /// Lines consumed.
    pub line: u64,
    /// The input was read to its end.
    pub done: bool,
}

/// What a group became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// `seq` of the group's first sample.
    pub first: u64,
    /// `seq` of its last sample.
    pub last: u64,
}
