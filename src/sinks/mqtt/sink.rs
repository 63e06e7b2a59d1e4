//! The MQTT sink task: buffer rows after the cursor → MQTT → PUBACK → cursor.
//!
//! - Reads and encodes on the blocking pool; the async task only publishes and
//!   handles events, so it never blocks polling or the runtime.
//! - Hand-off to rumqttc is `try_publish` within a bounded window of
//!   unacknowledged messages, so a slow or dead broker never blocks anything
//!   (field case B22); rows simply stay in the buffer.
//! - Acknowledgement: rumqttc reports `Outgoing::Publish(pkid)` in the order
//!   requests were queued; each is matched to the message queued first, and
//!   `PubAck(pkid)` back to it. The cursor moves only over acknowledged
//!   messages (QoS 1), or over messages written to the socket (QoS 0).
//!   Field case B20.
//! - Each connection starts with a retained birth message `online` on the status
//!   topic; the Last Will is the retained `offline`; a graceful stop publishes
//!   `offline` itself before DISCONNECT (field case B24).
//! - After a disconnect, everything unacknowledged is read again from the buffer
//!   (duplicates carry the same `seq`), with backoff 1, 2, 4 … s up to
//!   `reconnect_max`, with jitter.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Event, Incoming, Outgoing, QoS};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{Format, MqttSinkConfig};
use super::encode::{batch_json, sample_json, status_json};
use super::lanes::{Lanes, ReadPlan};
use super::session::{self, Session, SessionEvent, pause};
use super::topic::TopicTemplate;
use crate::buffer::{Reader, SinkCursor};
use crate::model::{Sample, TagMeta};
use crate::telemetry::SinkStats;

/// One message ready to publish.
struct Out {
    topic: Arc<str>,
    payload: Vec<u8>,
    samples: usize,
}

/// Renders topics and payloads, caching topics per tag.
struct Encoder {
    gateway: String,
    format: Format,
    topic: TopicTemplate,
    batch_topic: TopicTemplate,
    batch_max: usize,
    max_bytes: usize,
    topics: HashMap<usize, (Arc<TagMeta>, Arc<str>)>,
    batch_topics: HashMap<String, Arc<str>>,
}

/// A sample whose message would exceed `max_message_bytes` (a huge text
/// value or reason from data) cannot be published as is, and must never
/// block the samples behind it: it is sent as a bad sample that says so,
/// keeping the start of its reason.
fn too_large(s: &Sample, size: usize, max: usize) -> Sample {
    let mut r = s.clone();
    let mut head: String = s.reason.as_deref().unwrap_or("").chars().take(200).collect();
    if !head.is_empty() {
        head = format!("; it was: {head}…");
    }
    r.value = crate::model::Value::Null;
    r.quality = crate::model::Quality::Bad;
    r.reason =
        Some(format!("payload_too_large: the message was {size} bytes, above max_message_bytes ({max}); value dropped{head}").into());
    r
}

impl Encoder {
    /// One json-batch message, split in halves until it fits `max_bytes`.
    fn push_batch(&self, device: &str, topic: &Arc<str>, chunk: &[&Sample], out: &mut Vec<Out>) {
        let payload = batch_json(&self.gateway, device, chunk.iter().copied());
        if payload.len() > self.max_bytes && chunk.len() > 1 {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            self.push_batch(device, topic, a, out);
            self.push_batch(device, topic, b, out);
        } else if payload.len() > self.max_bytes {
            let small = too_large(chunk[0], payload.len(), self.max_bytes);
            out.push(Out { topic: topic.clone(), payload: batch_json(&self.gateway, device, std::iter::once(&small)), samples: 1 });
        } else {
            out.push(Out { topic: topic.clone(), payload, samples: chunk.len() });
        }
    }

    fn topic_of(&mut self, m: &Arc<TagMeta>) -> Arc<str> {
        let key = Arc::as_ptr(m) as usize;
        if let Some((_, t)) = self.topics.get(&key) {
            return t.clone();
        }
        let t: Arc<str> = self.topic.render(&self.gateway, &m.device, &m.tag).into();
        // Holding the Arc keeps the address from being reused by another tag.
        self.topics.insert(key, (m.clone(), t.clone()));
        t
    }

    fn encode(&mut self, rows: &[Sample], out: &mut Vec<Out>) {
        match self.format {
            Format::Json => {
                for s in rows {
                    let topic = self.topic_of(&s.meta);
                    let mut payload = sample_json(&self.gateway, s);
                    if payload.len() > self.max_bytes {
                        payload = sample_json(&self.gateway, &too_large(s, payload.len(), self.max_bytes));
                    }
                    out.push(Out { topic, payload, samples: 1 });
                }
            }
            Format::JsonBatch => {
                let mut order: Vec<(&str, Vec<&Sample>)> = Vec::new();
                let mut index: HashMap<&str, usize> = HashMap::new();
                for s in rows {
                    let i = *index.entry(&*s.meta.device).or_insert_with(|| {
                        order.push((&*s.meta.device, Vec::new()));
                        order.len() - 1
                    });
                    order[i].1.push(s);
                }
                for (device, samples) in order {
                    let topic = match self.batch_topics.get(device) {
                        Some(t) => t.clone(),
                        None => {
                            let t: Arc<str> = self.batch_topic.render(&self.gateway, device, "").into();
                            self.batch_topics.insert(device.to_string(), t.clone());
                            t
                        }
                    };
                    for chunk in samples.chunks(self.batch_max) {
                        self.push_batch(device, &topic, chunk, out);
                    }
                }
            }
        }
    }
}

/// What a queued publish stands for.
#[derive(Clone, Copy)]
struct Slot {
    batch: Option<u64>,
    samples: usize,
    qos1: bool,
    /// When it was handed to rumqttc (for the acknowledgement timeout).
    since: Instant,
}

/// The MQTT sink.
pub struct MqttSink {
    cfg: MqttSinkConfig,
    gateway: String,
    reader: Reader,
    cursor: SinkCursor,
    committed: watch::Receiver<u64>,
    stats: Arc<SinkStats>,
    encoder: Arc<Mutex<Encoder>>,
}

enum End {
    /// Stop requested and done (graceful).
    Stopped,
    /// Connection lost.
    Lost(String),
}

impl MqttSink {
    /// A sink delivering rows after `cursor`, woken by `committed`.
    pub fn new(
        cfg: MqttSinkConfig,
        gateway: &str,
        reader: Reader,
        cursor: SinkCursor,
        committed: watch::Receiver<u64>,
        stats: Arc<SinkStats>,
    ) -> MqttSink {
        let encoder = Encoder {
            gateway: gateway.to_string(),
            format: cfg.format,
            topic: cfg.topic.clone(),
            batch_topic: cfg.batch_topic.clone(),
            batch_max: cfg.batch_max_samples,
            max_bytes: cfg.max_message_bytes,
            topics: HashMap::new(),
            batch_topics: HashMap::new(),
        };
        MqttSink { cfg, gateway: gateway.to_string(), reader, cursor, committed, stats, encoder: Arc::new(Mutex::new(encoder)) }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to
    /// `grace`, publishes `offline`, and disconnects.
    pub async fn run(mut self, stop: CancellationToken, grace: Duration) {
        let mut lanes = Lanes::resume(self.cursor.get(), self.cursor.live(), self.cfg.backlog_threshold);
        let mut backoff = Duration::from_secs(1);
        let mut failures: u64 = 0;
        let mut last_warn: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let session = match session::start(&self.cfg, &self.gateway) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(sink = %self.cfg.name, error = %e, "cannot set up the MQTT session");
                    self.stats.set_error(e.to_string());
                    pause(self.cfg.conn.reconnect_max, &stop).await;
                    continue;
                }
            };
            match self.connected(session, &mut lanes, &stop, grace, &mut backoff).await {
                End::Stopped => return,
                End::Lost(e) => {
                    let was_up = self.stats.connected.swap(false, Ordering::Relaxed);
                    self.stats.set_error(e.clone());
                    lanes.rewind();
                    failures += 1;
                    let now = Instant::now();
                    if was_up {
                        let backlog = self.committed.borrow().saturating_sub(lanes.cursor());
                        tracing::warn!(sink = %self.cfg.name, broker = %self.cfg.conn.broker, error = %e, backlog,
                            "MQTT connection lost; samples stay in the buffer until the broker is back");
                        last_warn = Some(now);
                        failures = 1;
                    } else if failures == 1 || last_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                        tracing::warn!(sink = %self.cfg.name, broker = %self.cfg.conn.broker, error = %e, attempts = failures,
                            "MQTT broker unreachable; buffering");
                        last_warn = Some(now);
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                    let wait = backoff.mul_f64(0.8 + fastrand::f64() * 0.4).min(self.cfg.conn.reconnect_max);
                    backoff = (backoff * 2).min(self.cfg.conn.reconnect_max);
                    pause(wait, &stop).await;
                }
            }
        }
    }

    /// Reads and encodes the next batch on the blocking pool.
    /// Returns the messages, the last row's seq, and whether the read reached
    /// `plan.upto` (fewer rows than `limit`).
    async fn prepare(&self, plan: ReadPlan, limit: usize) -> anyhow::Result<(Vec<Out>, Option<u64>, bool)> {
        let reader = self.reader.clone();
        let encoder = self.encoder.clone();
        tokio::task::spawn_blocking(move || {
            let rows = reader.read_blocking(plan.after, plan.upto, limit)?;
            let complete = rows.len() < limit;
            let last = rows.last().map(|s| s.seq);
            let mut out = Vec::new();
            encoder.lock().map_err(|_| anyhow::anyhow!("encoder poisoned"))?.encode(&rows, &mut out);
            Ok((out, last, complete))
        })
        .await?
    }

    async fn connected(
        &mut self,
        mut s: Session,
        lanes: &mut Lanes,
        stop: &CancellationToken,
        grace: Duration,
        backoff: &mut Duration,
    ) -> End {
        // Wait for CONNACK.
        let connack = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match s.events.recv().await {
                    Some(SessionEvent::Mqtt(Event::Incoming(Incoming::ConnAck(a)))) => {
                        return if a.code == rumqttc::ConnectReturnCode::Success {
                            Ok(())
                        } else {
                            Err(format!("broker refused the connection: {:?}", a.code))
                        };
                    }
                    Some(SessionEvent::Closed(e)) => return Err(e),
                    None => return Err("event loop ended".into()),
                    Some(_) => {}
                }
            }
        });
        tokio::select! {
            _ = stop.cancelled() => return End::Stopped,
            r = connack => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return End::Lost(e),
                Err(_) => return End::Lost("no CONNACK within 15s".into()),
            }
        }
        *backoff = Duration::from_secs(1);
        self.stats.connected.store(true, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        let head = *self.committed.borrow();
        tracing::info!(sink = %self.cfg.name, broker = %self.cfg.conn.broker, backlog = head.saturating_sub(lanes.cursor()), "MQTT connected");

        let mut fifo: VecDeque<Slot> = VecDeque::new();
        let mut inflight: HashMap<u16, Slot> = HashMap::new();
        // Encoded messages with their batch id, not yet handed to rumqttc.
        let mut pending: VecDeque<(Out, u64)> = VecDeque::new();
        let mut outstanding = 0usize;
        let window = self.cfg.max_inflight as usize;
        let qos = if self.cfg.qos == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };

        // Birth: retained, QoS 1, on every CONNACK.
        if let Err(e) = s.client.try_publish(&self.cfg.status_topic, QoS::AtLeastOnce, true, status_json(&self.gateway, true)) {
            return End::Lost(format!("cannot queue the birth message: {e}"));
        }
        fifo.push_back(Slot { batch: None, samples: 0, qos1: true, since: Instant::now() });
        outstanding += 1;

        let mut draining: Option<(Instant, u64)> = None;
        let mut buffer_gone = false;
        loop {
            // Publish what is ready, then read more while the window allows.
            loop {
                while outstanding < window {
                    let Some((m, batch)) = pending.pop_front() else { break };
                    match s.client.try_publish(m.topic.as_ref(), qos, self.cfg.retain, m.payload) {
                        Ok(()) => {
                            fifo.push_back(Slot {
                                batch: Some(batch),
                                samples: m.samples,
                                qos1: qos == QoS::AtLeastOnce,
                                since: Instant::now(),
                            });
                            outstanding += 1;
                            self.stats.messages.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // Request channel full (topics are always valid): keep the
                            // message, retry after the next event.
                            let payload = match e {
                                rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p))
                                | rumqttc::ClientError::Request(rumqttc::Request::Publish(p)) => p.payload.to_vec(),
                                _ => Vec::new(),
                            };
                            pending.push_front((Out { topic: m.topic, payload, samples: m.samples }, batch));
                            break;
                        }
                    }
                }
                if !pending.is_empty() || outstanding >= window || lanes.batches_in_flight() >= 2 * window {
                    break;
                }
                let head = *self.committed.borrow();
                let Some(plan) = lanes.next_read(head) else { break };
                let limit = match self.cfg.format {
                    Format::Json => self.cfg.read_rows.min(window - outstanding).max(1),
                    Format::JsonBatch => self.cfg.read_rows,
                };
                let (outs, last, complete) = match self.prepare(plan, limit).await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!(sink = %self.cfg.name, error = %e, "cannot read the buffer; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                };
                let id = lanes.record(plan, last, complete, outs.len());
                pending.extend(outs.into_iter().map(|o| (o, id)));
            }
            self.cursor.advance(lanes.cursor());
            self.cursor.set_live(lanes.live_state());
            if let Some((deadline, target)) = draining {
                let done = lanes.cursor() >= target && pending.is_empty();
                if done || Instant::now() >= deadline {
                    if !done {
                        tracing::warn!(sink = %self.cfg.name, undelivered = target.saturating_sub(lanes.cursor()),
                            "stopping before the broker acknowledged everything; the rest stays in the buffer");
                    }
                    self.goodbye(&mut s).await;
                    return End::Stopped;
                }
            }
            // A broker (or a middlebox) that swallows PUBACKs must not stall
            // the sink forever: past `ack_timeout`, reconnect and resend.
            let oldest = fifo.front().map(|s| s.since).into_iter().chain(inflight.values().map(|s| s.since)).min();
            if let Some(t) = oldest
                && t.elapsed() > self.cfg.ack_timeout
            {
                return End::Lost(format!(
                    "no PUBACK within {}; reconnecting to resend",
                    crate::units::format_duration(self.cfg.ack_timeout)
                ));
            }
            let ack_check = tokio::time::sleep(Duration::from_millis(500));
            let timer = async {
                match draining {
                    Some((d, _)) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = s.events.recv() => match ev {
                    Some(SessionEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                        let Some(slot) = fifo.pop_front() else { continue };
                        if slot.qos1 {
                            inflight.insert(pkid, slot);
                        } else {
                            outstanding = outstanding.saturating_sub(1);
                            if let Some(b) = slot.batch {
                                lanes.ack(b);
                                self.stats.acked.fetch_add(slot.samples as u64, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(SessionEvent::Mqtt(Event::Incoming(Incoming::PubAck(a)))) => {
                        if let Some(slot) = inflight.remove(&a.pkid) {
                            outstanding = outstanding.saturating_sub(1);
                            if let Some(b) = slot.batch {
                                lanes.ack(b);
                                self.stats.acked.fetch_add(slot.samples as u64, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(SessionEvent::Closed(e)) => return End::Lost(e),
                    None => return End::Lost("event loop ended".into()),
                    Some(_) => {}
                },
                r = self.committed.changed(), if !buffer_gone => {
                    if r.is_err() {
                        // The buffer is gone: deliver what is left, then stop.
                        buffer_gone = true;
                        if draining.is_none() {
                            draining = Some((Instant::now() + grace, *self.committed.borrow()));
                        }
                    }
                },
                _ = stop.cancelled(), if draining.is_none() => {
                    draining = Some((Instant::now() + grace, *self.committed.borrow()));
                },
                _ = timer => {}
                _ = ack_check, if oldest.is_some() => {}
            }
        }
    }

    /// Graceful end: retained `offline`, wait for its PUBACK, DISCONNECT.
    async fn goodbye(&self, s: &mut Session) {
        let _ = s.client.try_publish(&self.cfg.status_topic, QoS::AtLeastOnce, true, status_json(&self.gateway, false));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut published = false;
            while let Some(ev) = s.events.recv().await {
                match ev {
                    SessionEvent::Mqtt(Event::Outgoing(Outgoing::Publish(_))) => published = true,
                    SessionEvent::Mqtt(Event::Incoming(Incoming::PubAck(_))) if published => break,
                    SessionEvent::Closed(_) => return,
                    _ => {}
                }
            }
        })
        .await;
        let _ = s.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(ev) = s.events.recv().await {
                if matches!(ev, SessionEvent::Mqtt(Event::Outgoing(Outgoing::Disconnect)) | SessionEvent::Closed(_)) {
                    break;
                }
            }
        })
        .await;
        self.stats.connected.store(false, Ordering::Relaxed);
        tracing::info!(sink = %self.cfg.name, "MQTT session closed (offline published)");
    }
}
