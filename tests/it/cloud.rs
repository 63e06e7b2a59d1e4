//! Shared by the cloud sink tests (HTTPS, PostgreSQL, NATS): a ring →
//! buffer chain with one sink's cursor, and the sink's config from TOML.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use relais::config::{BufferConfig, Config, SinkConfig};
use relais::model::TagMeta;
use relais::telemetry::SinkStats;

use crate::common::{TestBuffer, buffer_with, sample};

/// The `[[sink]]` of a config made of `[gateway] id = "gw"` and `sink`
/// (relative paths resolve against `base`).
pub fn sink_config(sink: &str, base: &Path) -> SinkConfig {
    let text = format!("[gateway]\nid = \"gw\"\n[[sink]]\n{sink}\n");
    let cfg = Config::parse(&text, "sink.toml", base).unwrap_or_else(|e| panic!("{e}"));
    cfg.sinks.into_iter().next().expect("one sink")
}

/// Ring → buffer, with the cursor of one sink named `name`.
pub struct Chain {
    pub tb: TestBuffer,
    /// The buffer's seq origin: its first record is `base + 1`.
    pub base: u64,
    pub name: String,
    pub stats: Arc<SinkStats>,
    pub stop: CancellationToken,
    pub task: Option<JoinHandle<()>>,
}

impl Chain {
    pub fn new(name: &str, bcfg: BufferConfig) -> Chain {
        let tb = buffer_with(bcfg, &[name]);
        let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
        Chain { tb, base, name: name.into(), stats: Arc::new(SinkStats::default()), stop: CancellationToken::new(), task: None }
    }

    /// The sink's cursor (absolute seq).
    pub fn cursor(&self) -> u64 {
        self.tb.buffer.cursor(&self.name).unwrap().get()
    }

    /// Last committed seq.
    pub fn head(&self) -> u64 {
        self.tb.buffer.stats().last_seq.load(Ordering::Relaxed)
    }

    /// Pushes samples with values `from..from + n`, `every` apart, and waits until committed.
    pub async fn push_n(&self, meta: &Arc<TagMeta>, from: u64, n: u64, every: Duration) {
        for i in from..from + n {
            self.tb.ingest.push(sample(meta, i as f64)).await;
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
        }
        self.tb.ingest.barrier().await;
    }

    /// Stops the sink (graceful) and waits for it.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.stop = CancellationToken::new();
    }

    /// Quarantined records of the sink (newest last).
    pub fn quarantine(&self) -> Vec<relais::buffer::quarantine::QuarantineRow> {
        let c = relais::buffer::quarantine::open_readonly(self.tb.dir.path()).unwrap();
        let mut v = relais::buffer::quarantine::list(&c, Some(&self.name), 100_000).unwrap();
        v.reverse();
        v
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
