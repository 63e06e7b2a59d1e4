//! The path of a device's samples to the ring: subscription callbacks (sync,
//! inside the library's event loop) and the supervisor (reads, bad samples)
//! send into one channel, in order, and one task moves them to the ring in
//! batches, counting them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::Device;
use crate::ingest::Ingest;
use crate::model::{Quality, Sample, Timestamp};
use crate::telemetry::DeviceStats;

/// The sending side, cloned into every subscription callback.
pub(super) type SampleTx = mpsc::UnboundedSender<Sample>;

/// Opens the channel and starts the task that moves its samples to the ring.
pub(super) fn spawn_forward(ingest: Arc<Ingest>, stats: Arc<DeviceStats>) -> SampleTx {
    let (tx, rx) = mpsc::unbounded_channel::<Sample>();
    tokio::spawn(forward(rx, ingest, stats));
    tx
}

/// Moves samples from the channel to the ring, in batches, counting them.
async fn forward(mut rx: mpsc::UnboundedReceiver<Sample>, ingest: Arc<Ingest>, stats: Arc<DeviceStats>) {
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 4096).await > 0 {
        let good = buf.iter().filter(|s| s.quality != Quality::Bad).count() as u64;
        stats.good.fetch_add(good, Ordering::Relaxed);
        stats.bad.fetch_add(buf.len() as u64 - good, Ordering::Relaxed);
        ingest.push_all(buf.drain(..)).await;
    }
}

impl Device {
    /// One bad sample with `why` for each of `tags` (indexes), now.
    pub(super) fn bad(&self, tags: impl IntoIterator<Item = usize>, why: &str) -> Vec<Sample> {
        let (why, ts): (Arc<str>, _) = (why.into(), Timestamp::now());
        tags.into_iter().map(|t| Sample::bad(self.metas[t].clone(), why.clone(), ts)).collect()
    }

    pub(super) fn emit(&mut self, samples: Vec<Sample>) {
        // Values flow again: the next outage is reported anew.
        if samples.iter().any(|s| s.quality != Quality::Bad) {
            self.down = None;
        }
        for s in samples {
            let _ = self.samples_tx.send(s);
        }
    }
}
