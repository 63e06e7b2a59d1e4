//! The `mqtt-in` task: subscribe, parse each JSON payload, commit, then
//! acknowledge.
//!
//! Order: payloads are parsed and pushed into the ring one after the other,
//! in arrival order, by the task that polls the connection, so their samples
//! get increasing `seq` numbers in arrival order. Only the wait for the commit
//! and the acknowledgement run beside it, in one task that acknowledges in
//! arrival order too (as MQTT requires for QoS 1).
//!
//! **A PUBACK only on the connection its publish came in on.** Each
//! connection is a new `rumqttc` client and event loop (as in the commands
//! task): after a connection error both are dropped with whatever
//! acknowledgement they still held. rumqttc keeps unsent requests across its
//! own reconnects and would send a stale PUBACK whose packet id the broker
//! may since have given to another message (rumqttc issue #849), which would
//! acknowledge, and lose, a message never committed. The broker redelivers
//! what was not acknowledged on the old connection.
//!
//! The session is persistent (clean session off, fixed client id) and
//! acknowledgements are manual: a QoS 1 message is acknowledged to the broker
//! only after its samples are committed, so a crash or a restart never loses
//! a message (the broker redelivers it; duplicates are possible, as with any
//! at-least-once chain). The device is the source's, the topic level
//! `device_level` when set, or the payload's `device_path`.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, QoS};
use tokio::task::JoinHandle;

use super::config::MqttInSource;
use std::sync::atomic::Ordering;

use rumqttc::Publish;
use tokio::sync::{mpsc, oneshot};

use crate::ingest::{Accepted, Group};
use crate::parse::parse_input;
use crate::parse::spec::Format;
use crate::parse::{Fields, Mapper};
use crate::sources::SourceCtx;
use crate::telemetry::SourceStats;
use crate::util::Backoff;

/// Bytes of an oversized message kept in its quarantine record.
const KEPT_OF_LARGE: usize = 64 << 10;

/// Incoming packet limit of the connection: the largest MQTT packet (MQTT
/// 3.1.1 §2.2.3: remaining length up to 268,435,455 bytes, plus the fixed
/// header). A smaller limit makes the client drop the connection on a larger
/// message, which the broker then redelivers forever (QoS 1, persistent
/// session): that source would be stuck. `max_payload` decides instead.
const MAX_PACKET: usize = 268_435_455 + 5;

/// A pushed payload: its acceptance, its sample count, the message to acknowledge.
type Pending = (oneshot::Receiver<Accepted>, u64, Publish);

/// Acknowledges messages once their samples are committed, in arrival order.
/// A message whose commit never comes (the buffer stopped) is not
/// acknowledged: the broker sends it again.
fn spawn_acks(client: AsyncClient, stats: Arc<SourceStats>) -> mpsc::UnboundedSender<Pending> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
    tokio::spawn(async move {
        while let Some((accepted, n, p)) = rx.recv().await {
            if accepted.await.is_ok() {
                stats.samples.fetch_add(n, Ordering::Relaxed);
                let _ = client.ack(&p).await;
            }
        }
    });
    tx
}

/// One payload into a group: its samples, or its quarantined records.
/// `fields`: the text and numeric fields learnt from earlier payloads.
fn parse_payload(cfg: &MqttInSource, fields: &Arc<Fields>, topic: &str, payload: &[u8]) -> Group {
    let c = &cfg.common;
    // The device from the topic level: a missing or invalid one is the
    // message's error, never a silent fallback to the source's device.
    let device = cfg.device_level.map(|l| match topic.split('/').nth(l) {
        Some(d) => crate::names::check_device(d).map(|()| d.to_string()),
        None => Err(format!("topic {topic:?} has no level {l} (device_level)")),
    });
    let mut mapper = Mapper::new(&c.name, device.as_ref().and_then(|d| d.as_deref().ok()).unwrap_or(&c.device), &c.parse.tags);
    mapper.fields = fields.clone();
    let mut g = Group::default();
    if let Some(Err(e)) = device {
        let why = format!("{}: device from the topic: {e}", crate::model::reason::PARSE_ERROR);
        g.quarantine.push(mapper.reject(
            topic,
            "topic".into(),
            why,
            &String::from_utf8_lossy(&payload[..payload.len().min(KEPT_OF_LARGE)]),
        ));
        return g;
    }
    if payload.len() as u64 > cfg.max_payload {
        let head = &payload[..payload.len().min(KEPT_OF_LARGE)];
        let why = format!(
            "{}: the message is {} bytes, above max_payload ({} bytes); its first {} bytes are kept here",
            crate::model::reason::PAYLOAD_TOO_LARGE,
            payload.len(),
            cfg.max_payload,
            head.len()
        );
        g.quarantine.push(mapper.reject(topic, "payload".into(), why, &String::from_utf8_lossy(head)));
        return g;
    }
    let format = c.parse.format.unwrap_or(Format::Json);
    let res = parse_input(payload, format, &c.parse, &mut mapper, topic, &mut |r| match r {
        Ok(s) => g.samples.extend(s),
        Err(q) => g.quarantine.push(q),
    });
    if let Err(e) = res {
        g.quarantine.push(mapper.reject(
            topic,
            "payload".into(),
            format!("{}: {e}", crate::model::reason::PARSE_ERROR),
            &String::from_utf8_lossy(payload),
        ));
    }
    g
}

/// The connection options: a persistent session, acknowledgements sent by
/// relais (after the commit), large packets.
fn client_options(cfg: &MqttInSource) -> anyhow::Result<rumqttc::MqttOptions> {
    let mut opts = crate::mqtt::options(&cfg.conn)?;
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(MAX_PACKET, 16 << 20);
    Ok(opts)
}

/// After a CONNACK. Subscribing again makes the broker resend every
/// matching retained message (MQTT 3.1.1 §3.8.4), which would ingest the
/// same readings once more. So: at the first connection of this process
/// (the topics may have changed since the last run), and after a reconnect
/// only when the broker lost the session.
fn subscribe(client: &AsyncClient, cfg: &MqttInSource, qos: QoS, subscribed: &mut bool, session_present: bool) {
    if !*subscribed || !session_present {
        for t in &cfg.topics {
            let _ = client.try_subscribe(t.clone(), qos);
        }
        *subscribed = true;
        tracing::info!(source = %cfg.common.name, broker = %cfg.conn.broker, topics = ?cfg.topics, "MQTT ingest subscribed");
    } else {
        tracing::info!(source = %cfg.common.name, broker = %cfg.conn.broker, "MQTT ingest reconnected; the broker kept the session and its subscriptions");
    }
}

/// Starts the subscriber.
pub fn spawn(cfg: MqttInSource, ctx: SourceCtx) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stats = ctx.telemetry.source(&cfg.common.name);
        let fields: Arc<Fields> = Arc::default();
        let cfg = Arc::new(cfg);
        let mut backoff = Backoff::new(Duration::from_secs(1), cfg.conn.reconnect_max);
        let mut logged = false;
        let mut subscribed = false;
        let mut checker = ctx.checks.checker();
        loop {
            if ctx.stop.is_cancelled() {
                return;
            }
            let opts = match client_options(&cfg) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(source = %cfg.common.name, error = %e, "cannot set up the MQTT connection");
                    tokio::select! { _ = ctx.stop.cancelled() => return, _ = tokio::time::sleep(cfg.conn.reconnect_max) => continue }
                }
            };
            let (client, mut el) = AsyncClient::new(opts, 1024);
            el.network_options.set_tcp_nodelay(true);
            let acks = spawn_acks(client.clone(), stats.clone());
            let qos = if cfg.qos == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
            loop {
                let ev = tokio::select! {
                    _ = ctx.stop.cancelled() => {
                        let _ = client.try_disconnect();
                        return;
                    }
                    ev = el.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        backoff.reset();
                        logged = false;
                        subscribe(&client, &cfg, qos, &mut subscribed, ack.session_present);
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let (cfg2, fields2) = (cfg.clone(), fields.clone());
                        let topic = p.topic.clone();
                        let payload = p.payload.clone();
                        let parsed = tokio::task::spawn_blocking(move || parse_payload(&cfg2, &fields2, &topic, &payload)).await;
                        let Ok(mut g) = parsed else { continue };
                        checker.apply_all(&mut g.samples, None);
                        stats.records.fetch_add(1, Ordering::Relaxed);
                        stats.rejected(&g.quarantine);
                        let n = g.samples.len() as u64;
                        // Pushed here, in arrival order; committed and
                        // acknowledged beside the event loop.
                        let rx = ctx.ingest.push_group_ordered(g).await;
                        if acks.send((rx, n, p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !logged {
                            tracing::warn!(source = %cfg.common.name, broker = %cfg.conn.broker, error = %e, "MQTT ingest disconnected; reconnecting");
                            logged = true;
                        }
                        break;
                    }
                }
            }
            // A new client and event loop for the next connection (see the
            // module docs); the acknowledger of this one ends with it.
            drop((client, el, acks));
            let wait = backoff.next_wait();
            tokio::select! { _ = ctx.stop.cancelled() => return, _ = tokio::time::sleep(wait) => {} }
        }
    })
}
