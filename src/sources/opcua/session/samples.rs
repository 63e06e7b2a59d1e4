//! The path of a device's samples to the ring: subscription callbacks (sync,
//! inside the library's event loop) and the supervisor (reads, bad samples)
//! send into one channel, in order, and one task moves them to the ring in
//! batches, counting them.
//!
//! **Bound** (issue 8: memory never grows with load). At most
//! [`QUEUE_SAMPLES`] samples wait here, plus one Publish response:
//!
//! - every subscription asks the server for at most
//!   [`PUBLISH_SAMPLES`] notifications per Publish response
//!   (maxNotificationsPerPublish, OPC UA Part 4 §5.13.2), and the event-loop
//!   pump lets the library read the next response only when that much room
//!   is free ([`SampleTx::room_for`]); the library calls the callbacks of
//!   one response while the pump polls it, never between polls;
//! - the supervisor waits for room before it sends (a batch larger than the
//!   bound, such as one bad sample for each of more tags, waits for an
//!   empty channel).
//!
//! So when the ring is full the pump stops reading from the server, whose
//! MonitoredItem queues then keep (or discard oldest, with the Overflow bit
//! in the StatusCode, Part 4 §7.20.2) what the gateway cannot take yet.
//! Nothing is dropped here; `DeviceStats::pending` shows the fill.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

use super::Device;
use crate::component::checks::Checker;
use crate::ingest::Ingest;
use crate::model::{Quality, Sample, Timestamp};
use crate::telemetry::DeviceStats;

/// Most samples waiting between a device's producers and the ring (besides
/// one Publish response).
pub(super) const QUEUE_SAMPLES: usize = 16_384;
/// maxNotificationsPerPublish asked of the server for every subscription:
/// the room the pump keeps free for one Publish response.
pub(super) const PUBLISH_SAMPLES: u32 = 4_096;

/// The sending side, cloned into every subscription callback and the pump.
#[derive(Clone)]
pub(super) struct SampleTx {
    tx: mpsc::UnboundedSender<Sample>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Samples sent and not yet pushed to the ring.
    queued: AtomicUsize,
    /// Fired whenever the forwarder made room.
    room: Notify,
    /// A sample that is not bad was sent since [`SampleTx::take_flowed`].
    flowed: AtomicBool,
    stats: Arc<DeviceStats>,
}

/// Opens the channel and starts the task that moves its samples to the ring.
pub(super) fn spawn_forward(ingest: Arc<Ingest>, stats: Arc<DeviceStats>, checker: Checker) -> SampleTx {
    let (tx, rx) = mpsc::unbounded_channel::<Sample>();
    let shared = Arc::new(Shared { queued: AtomicUsize::new(0), room: Notify::new(), flowed: AtomicBool::new(false), stats });
    tokio::spawn(forward(rx, ingest, shared.clone(), checker));
    SampleTx { tx, shared }
}

/// Moves samples from the channel to the ring, in batches, counting them.
async fn forward(mut rx: mpsc::UnboundedReceiver<Sample>, ingest: Arc<Ingest>, shared: Arc<Shared>, mut checker: Checker) {
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 4096).await > 0 {
        let n = buf.len();
        let good = buf.iter().filter(|s| s.quality != Quality::Bad).count() as u64;
        shared.stats.good.fetch_add(good, Ordering::Relaxed);
        shared.stats.bad.fetch_add(n as u64 - good, Ordering::Relaxed);
        if let Some(ts) = buf.iter().filter(|s| s.quality == Quality::Good).map(|s| s.ts.0).max() {
            shared.stats.good_at(ts);
        }
        // `[[check]]`: OPC UA reports on change, so no poll period (stale needs `stale_after`).
        checker.apply_all(&mut buf, None);
        ingest.push_all(buf.drain(..)).await;
        let left = shared.queued.fetch_sub(n, Ordering::AcqRel) - n;
        shared.stats.pending.store(left as u64, Ordering::Relaxed);
        shared.room.notify_waiters();
    }
}

impl SampleTx {
    /// Sends one sample without waiting (subscription callbacks: the pump
    /// made room for the whole Publish response before the library read it).
    /// Never drops; after shutdown (no forwarder) there is nowhere to send.
    pub(super) fn push(&self, s: Sample) {
        if s.quality != Quality::Bad {
            self.shared.flowed.store(true, Ordering::Relaxed);
        }
        let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
        self.shared.stats.pending.store(queued as u64, Ordering::Relaxed);
        self.shared.stats.pending_peak.fetch_max(queued as u64, Ordering::Relaxed);
        if self.tx.send(s).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Sends `samples` in order once there is room for them (or the channel
    /// is empty, for a batch larger than the bound).
    pub(super) async fn send_all(&self, samples: Vec<Sample>) {
        self.room_for(samples.len()).await;
        for s in samples {
            self.push(s);
        }
    }

    /// Waits until `n` more samples fit under [`QUEUE_SAMPLES`], or nothing
    /// is queued.
    pub(super) async fn room_for(&self, n: usize) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let q = self.shared.queued.load(Ordering::Acquire);
            if q == 0 || q + n <= QUEUE_SAMPLES || self.tx.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Whether a sample that is not bad (a value) was sent since the last
    /// call: values flowed, so the next outage is a new one.
    pub(super) fn take_flowed(&self) -> bool {
        self.shared.flowed.swap(false, Ordering::Relaxed)
    }
}

impl Device {
    /// One bad sample with `why` for each of `tags` (indexes), now.
    pub(super) fn bad(&self, tags: impl IntoIterator<Item = usize>, why: &str) -> Vec<Sample> {
        let (why, ts): (Arc<str>, _) = (why.into(), Timestamp::now());
        tags.into_iter().map(|t| Sample::bad(self.metas[t].clone(), why.clone(), ts)).collect()
    }

    /// Sends the supervisor's samples (read results, bad samples) in order
    /// with the callbacks' ones, waiting for room.
    pub(super) async fn emit(&mut self, samples: Vec<Sample>) {
        self.samples_tx.send_all(samples).await;
    }
}
