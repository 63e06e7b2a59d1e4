//! The NATS JetStream sink: the driver's [`Sink`](driver::Sink) over
//! async-nats. See the README beside this file for the guarantees.
//!
//! One connection = one async-nats client, one JetStream context and one
//! publisher task. On connect the stream is found (or created), and its
//! last message read: its `Nats-Msg-Id` (`{gateway}:{seq}`) is what the
//! stream holds ([`driver::Sink::holds_upto`]), and its stream sequence the
//! start of the chain: message *i* of the connection is published with
//! `Nats-Expected-Last-Sequence` = that sequence + *i*, so the server stores
//! it only right after message *i − 1*. The stream therefore always holds
//! a gap-free prefix of what was sent, in order, whatever failed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{Auth, Format, NatsSinkConfig};
use super::encode::{Layout, NatsMsg, last_seq_of_id};
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::Record;
use crate::sinks::driver::{self, Driver, Encoder, Lost, Outcome, Prepared, Settings, Token};
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
        NatsSink { driver: Driver::new(Nats { cfg, gateway: gateway.to_string() }, reader, cursor, committed, stats) }
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
}

/// One connection: the client, the publisher task and what the server said.
pub struct NatsConn {
    client: async_nats::Client,
    to_publish: mpsc::Sender<(NatsMsg, Token)>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    publisher: JoinHandle<()>,
    holds: Option<u64>,
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

    /// The stream (created when missing and allowed), its last sequence,
    /// and the last `seq` of this gateway it holds.
    async fn stream_state(&self, js: &jetstream::Context) -> Result<(u64, Option<u64>), Lost> {
        let name = &self.cfg.stream;
        let mut s = match (js.get_stream(name).await, &self.cfg.create) {
            (Ok(s), _) => s,
            (Err(e), Some(spec)) if e.to_string().contains("not found") => {
                let config = stream::Config {
                    name: name.clone(),
                    subjects: spec.subjects.clone(),
                    num_replicas: spec.replicas,
                    max_age: spec.max_age,
                    duplicate_window: spec.duplicate_window,
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                js.create_stream(config).await.map_err(|e| lost(format!("cannot create stream {name}: {e}")))?
            }
            (Err(e), None) if e.to_string().contains("not found") => {
                return Err(Lost {
                    reason: format!(
                        "stream {name} does not exist; create it (subjects {}) or set create_stream = true",
                        self.cfg.subject.filter(&self.gateway)
                    ),
                    retry_after: Some(self.cfg.reconnect_max),
                });
            }
            (Err(e), _) => return Err(lost(format!("cannot read stream {name}: {e}"))),
        };
        let info = s.info().await.map_err(|e| lost(format!("cannot read stream {name}: {e}")))?;
        let last = info.state.last_sequence;
        if info.state.messages == 0 || last == 0 {
            return Ok((last, None));
        }
        let msg = match s.get_raw_message(last).await {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => return Ok((last, None)),
            Err(e) => return Err(lost(format!("cannot read the last message of stream {name}: {e}"))),
        };
        let id = msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_string()).unwrap_or_default();
        match last_seq_of_id(&self.gateway, &id) {
            Some(seq) => Ok((last, Some(seq))),
            None => Err(Lost {
                reason: format!(
                    "stream {name} holds a message of another publisher (Nats-Msg-Id {id:?}, subject {}): give each gateway a stream of its own",
                    msg.subject
                ),
                retry_after: Some(self.cfg.reconnect_max),
            }),
        }
    }
}

/// What a failed publish means for the connection.
fn failed(kind: PublishErrorKind, e: &dyn std::fmt::Display, stream: &str) -> Lost {
    lost(match kind {
        PublishErrorKind::WrongLastSequence => {
            format!(
                "stream {stream} did not store the previous message (or another publisher wrote to it): {e}; reading its last record again"
            )
        }
        PublishErrorKind::TimedOut => format!("no PubAck in time: {e}"),
        PublishErrorKind::StreamNotFound => format!("no stream captures the subject (is {stream} configured for it?): {e}"),
        _ => format!("publish failed: {e}"),
    })
}

/// Publishes in order, chaining each message to the stream sequence of the previous one.
async fn publisher(
    js: jetstream::Context,
    stream: String,
    mut seq: u64,
    mut rx: mpsc::Receiver<(NatsMsg, Token)>,
    out: mpsc::UnboundedSender<Outcome>,
) {
    while let Some((m, token)) = rx.recv().await {
        let publish = PublishMessage::build().payload(m.payload).message_id(&m.id).expected_stream(&stream).expected_last_sequence(seq);
        match js.send_publish(m.subject, publish).await {
            Ok(ack) => {
                seq += 1;
                let (out, stream) = (out.clone(), stream.clone());
                tokio::spawn(async move {
                    let o = match ack.await {
                        // A duplicate was stored before: delivered all the same.
                        Ok(_) => Outcome::Acked(token),
                        Err(e) => Outcome::Lost(failed(e.kind(), &e, &stream)),
                    };
                    let _ = out.send(o);
                });
            }
            Err(e) if matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded) => {
                let _ = out.send(Outcome::Refused { token, reason: format!("{e} (lower max_message_bytes)") });
            }
            Err(e) => {
                let _ = out.send(Outcome::Lost(failed(e.kind(), &e, &stream)));
                return;
            }
        }
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
            // Strict seq order: the stream is the gateway's log, and its
            // last message says what it holds (see the README).
            backlog_threshold: 0,
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
        let (last, holds) = self.stream_state(&js).await?;
        let (to_publish, rx) = mpsc::channel(self.cfg.max_inflight);
        let publisher = tokio::spawn(publisher(js, self.cfg.stream.clone(), last, rx, out_tx));
        Ok(NatsConn { client, to_publish, outcomes, publisher, holds })
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

    fn holds_upto(&self, conn: &NatsConn) -> Option<u64> {
        conn.holds
    }
}
