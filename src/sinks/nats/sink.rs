//! The NATS JetStream sink: the driver's [`Sink`](driver::Sink) over
//! async-nats. See the README beside this file for the guarantees.
//!
//! # Invariants (exactly once, live records never wait behind a backlog)
//!
//! 1. **The stream is this gateway's alone** (`RELAIS_{gateway}`), and every
//!    message says which records it stores: `Nats-Msg-Id` =
//!    `{gateway}:{seq}` or `{gateway}:{first}-{last}`.
//! 2. **A message lands where the publisher says, or nowhere.** Message *i*
//!    of a connection carries `Nats-Expected-Last-Sequence` = *S₀ + i − 1*
//!    (*S₀*: the stream's last sequence at connect), so the server stores it
//!    at stream sequence *S₀ + i* or refuses it. Many are in flight at once
//!    (`max_inflight`); one refused or lost makes every later one fail, and
//!    the connection is rebuilt ([`publish`](super::publish)).
//! 3. **`known` only grows and never lies.** The sink's set of records
//!    stored in the stream or needing no sending holds what was read back on
//!    connect, each PubAck'd message's records (a `duplicate: true` PubAck
//!    too: stored before), and everything up to the driver's cursor.
//! 4. **Each message carries its own recovery point.** `Relais-Done` =
//!    `known` when it was published; `Relais-Scan-From` = the stream
//!    sequence of the oldest message of its connection still without a
//!    PubAck then. So, with *L* the stream's last message: every record the
//!    stream holds is in *L*'s `Relais-Done` or in a message between *L*'s
//!    `Relais-Scan-From` and *L* — records stored by earlier connections
//!    were in `known` when the connection started (read back, by
//!    induction), its acknowledged messages were added as their PubAcks
//!    came, the others lie at or after the oldest unacknowledged one (2),
//!    and nothing was stored after *L*. That range is normally at most
//!    `max_inflight` messages, and never more than were published within
//!    `ack_timeout`: reading it back is bounded.
//! 5. **On every connect the stream is read back** ([`stream`](super::stream))
//!    into `known`, and the driver never sends a record in it
//!    ([`driver::Sink::holds`]): its lanes move over held records and its
//!    reads leave them out. Whatever was lost (a PubAck, a leader, the
//!    whole cluster for longer than the duplicate window, relais to
//!    `kill -9` before its cursor was saved), a record is sent again only
//!    if the stream does not hold it.
//! 6. **Live and backlog publish side by side.** Above `backlog_threshold`
//!    unsent records the driver replays the backlog in a lane of its own
//!    while fresh records go out at once (`driver/lanes.rs`); 1–5 do not
//!    depend on the order of records in the stream. Consumers get, during a
//!    replay, two runs interleaved (each ascending in `seq`); otherwise
//!    strict `seq` order. `backlog_threshold = 0` keeps strict order always.
//!
//! Duplicate window: `Nats-Msg-Id` deduplication is a second net only.

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use async_nats::jetstream;
use async_nats::{ConnectOptions, Event};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{Auth, Format, NatsSinkConfig};
use super::encode::{Layout, NatsMsg};
use super::publish::Chain;
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::Record;
use crate::sinks::driver::{self, Driver, Encoder, Lost, Outcome, Prepared, SeqSet, Settings, Token};
use crate::telemetry::SinkStats;

/// The NATS sink: construct with [`NatsSink::new`], run with [`NatsSink::run`].
pub struct NatsSink {
    driver: Driver<Nats>,
}

impl NatsSink {
    /// A sink delivering rows after `cursor`, woken by `committed`.
    pub fn new(
        cfg: NatsSinkConfig,
        gateway: &str,
        reader: Reader,
        cursor: SinkCursor,
        committed: watch::Receiver<u64>,
        stats: Arc<SinkStats>,
    ) -> NatsSink {
        let nats = Nats { cfg, gateway: gateway.to_string(), known: Arc::default(), cursor: 0 };
        NatsSink { driver: Driver::new(nats, reader, cursor, committed, stats) }
    }

    /// Emits the sink's connection events.
    pub fn with_events(self, events: Events) -> NatsSink {
        NatsSink { driver: self.driver.with_events(events) }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to `grace`.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        self.driver.run(stop, grace).await
    }
}

/// NATS's side of the driver.
pub struct Nats {
    cfg: NatsSinkConfig,
    gateway: String,
    /// Records known stored in the stream or needing no sending (invariant 3).
    known: Arc<Mutex<SeqSet>>,
    /// The driver's cursor, as last told.
    cursor: u64,
}

/// One connection: the client, the publisher task and what the server said.
pub struct NatsConn {
    client: async_nats::Client,
    to_publish: mpsc::Sender<(NatsMsg, Token)>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    publisher: JoinHandle<()>,
}

impl Drop for NatsConn {
    fn drop(&mut self) {
        self.publisher.abort();
    }
}

/// The encoder: records → messages.
pub struct NatsEncoder(Layout);

impl Encoder for NatsEncoder {
    type Msg = NatsMsg;

    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<NatsMsg>>) {
        let mut msgs = Vec::new();
        self.0.encode(records, &mut msgs);
        out.extend(msgs.into_iter().map(|m| Prepared { records: m.records, msg: m }));
    }
}

fn lost(reason: impl Into<String>) -> Lost {
    Lost::new(reason)
}

impl Nats {
    async fn options(&self, events: mpsc::UnboundedSender<Outcome>) -> anyhow::Result<ConnectOptions> {
        let mut o = match &self.cfg.auth {
            Auth::None => ConnectOptions::new(),
            Auth::UserPassword(u, p) => ConnectOptions::with_user_and_password(u.clone(), p.expose().to_string()),
            Auth::Token(t) => ConnectOptions::with_token(t.expose().to_string()),
            Auth::NKey(s) => ConnectOptions::with_nkey(s.expose().to_string()),
            Auth::Creds(path) => {
                let text =
                    crate::secret::read_capped(path, crate::secret::SECRET_FILE_MAX).map_err(|e| anyhow::anyhow!("creds_file: {e}"))?;
                ConnectOptions::with_credentials(&String::from_utf8_lossy(&text))
                    .map_err(|e| anyhow::anyhow!("creds_file {}: {e}", path.display()))?
            }
        };
        if self.cfg.require_tls {
            o = o.require_tls(true).tls_client_config(self.cfg.tls.client_config()?);
        }
        let name = format!("relais-{}-{}", self.gateway, self.cfg.name);
        Ok(o.name(name).connection_timeout(Duration::from_secs(5)).event_callback(move |e| {
            let events = events.clone();
            async move {
                // The client would reconnect by itself and buffer publishes
                // meanwhile; relais rebuilds the connection instead and re-reads
                // the stream, so nothing is sent twice.
                if matches!(e, Event::Disconnected | Event::Closed | Event::LameDuckMode) {
                    let _ = events.send(Outcome::Lost(lost(format!("NATS server {e}"))));
                }
            }
        }))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, SeqSet> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl driver::Sink for Nats {
    type Conn = NatsConn;
    type Msg = NatsMsg;
    type Encoder = NatsEncoder;

    fn settings(&self) -> Settings {
        Settings {
            name: self.cfg.name.clone(),
            protocol: "NATS",
            target: self.cfg.target(),
            window: self.cfg.max_inflight,
            read_rows: self.cfg.read_rows,
            one_record_per_message: self.cfg.format == Format::Json,
            // Live records go out during a replay (invariant 6).
            backlog_threshold: self.cfg.backlog_threshold,
            backlog_alarm_age: self.cfg.backlog_alarm_age,
            ack_timeout: self.cfg.ack_timeout + Duration::from_secs(2),
            reconnect_max: self.cfg.reconnect_max,
        }
    }

    fn encoder(&self) -> NatsEncoder {
        let c = &self.cfg;
        NatsEncoder(Layout {
            gateway: self.gateway.clone(),
            format: c.format,
            subject: c.subject.clone(),
            batch_subject: c.batch_subject.clone(),
            event_subject: c.event_subject.clone(),
            batch_max_records: c.batch_max_records,
            max_bytes: c.max_message_bytes,
        })
    }

    async fn connect(&mut self) -> Result<NatsConn, Lost> {
        let (out_tx, outcomes) = mpsc::unbounded_channel();
        let opts = match self.options(out_tx.clone()).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(sink = %self.cfg.name, error = %e, "cannot set up the NATS client");
                return Err(Lost { reason: e.to_string(), retry_after: Some(self.cfg.reconnect_max) });
            }
        };
        let client = opts.connect(self.cfg.servers.clone()).await.map_err(|e| lost(format!("cannot connect: {e}")))?;
        // Set explicitly (GUIDE §8): at most max_inflight PubAcks awaited,
        // and a publish beyond that waits for a permit instead of failing.
        let js = jetstream::ContextBuilder::new()
            .timeout(self.cfg.ack_timeout)
            .max_ack_inflight(self.cfg.max_inflight)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let (start, held) = super::stream::state(&self.cfg, &self.gateway, &js).await?;
        self.known().extend(held.iter().cloned());
        let (to_publish, rx) = mpsc::channel(self.cfg.max_inflight);
        let chain = Chain { js, stream: self.cfg.stream.clone(), start, known: self.known.clone() };
        let publisher = tokio::spawn(chain.run(rx, out_tx));
        Ok(NatsConn { client, to_publish, outcomes, publisher })
    }

    fn send(&mut self, conn: &mut NatsConn, msg: NatsMsg, token: Token) -> Result<(), NatsMsg> {
        conn.to_publish.try_send((msg, token)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((m, _)) | mpsc::error::TrySendError::Closed((m, _)) => m,
        })
    }

    async fn next(&mut self, conn: &mut NatsConn) -> Outcome {
        match conn.outcomes.recv().await {
            Some(o) => o,
            None => std::future::pending().await,
        }
    }

    async fn close(&mut self, conn: NatsConn) {
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.client.flush()).await;
    }

    fn holds(&self, _conn: &NatsConn) -> SeqSet {
        self.known().clone()
    }

    fn cursor_moved(&mut self, _conn: &mut NatsConn, cursor: u64) {
        if cursor > self.cursor {
            self.cursor = cursor;
            self.known().insert(0..=cursor);
        }
    }
}
