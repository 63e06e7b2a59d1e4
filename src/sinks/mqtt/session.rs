//! One MQTT connection: options (Last Will, credentials, TLS), the client,
//! the event-loop task that forwards events to the sink, the matching of
//! PUBACKs to what was queued ([`Acks`]) and the goodbye before DISCONNECT.
//! Shared by the MQTT sink and the Sparkplug sink.
//!
//! The rumqttc `EventLoop` must be polled all the time, so it runs in its own
//! task. A session is never reused after an error: the sink builds a fresh one
//! and resends from its acknowledged cursor instead of trusting what the old
//! client still held in memory.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::MqttSinkConfig;
use super::encode::status_json;
use crate::sinks::driver::{Settings, Token};

/// What the event-loop task reports.
#[derive(Debug)]
pub enum SessionEvent {
    /// An MQTT event (ConnAck, PubAck, Outgoing::Publish …).
    Mqtt(Event),
    /// The connection ended with this error.
    Closed(String),
}

/// A live MQTT session.
pub struct Session {
    /// The client used to publish.
    pub client: AsyncClient,
    /// Events from the broker and the event loop, in order.
    pub events: mpsc::Receiver<SessionEvent>,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The driver settings of an MQTT or Sparkplug sink (`protocol` names it in
/// the status line).
pub fn settings(cfg: &MqttSinkConfig, protocol: &'static str, one_record_per_message: bool) -> Settings {
    Settings {
        name: cfg.name.clone(),
        protocol,
        target: cfg.conn.broker.to_string(),
        window: cfg.max_inflight as usize,
        read_rows: cfg.read_rows,
        one_record_per_message,
        backlog_threshold: cfg.backlog_threshold,
        backlog_alarm_age: cfg.backlog_alarm_age,
        ack_timeout: cfg.ack_timeout,
        reconnect_max: cfg.conn.reconnect_max,
    }
}

/// The QoS of data messages (`qos` 0 or 1).
pub fn data_qos(cfg: &MqttSinkConfig) -> QoS {
    if cfg.qos == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce }
}

/// MQTT options of a sink: the connection's options, a clean session, the
/// windows (`room` more requests than twice `max_inflight` may be queued at
/// once) and the Last Will.
pub fn options_with(cfg: &MqttSinkConfig, room: usize, will: LastWill) -> anyhow::Result<MqttOptions> {
    let mut o = crate::mqtt::options(&cfg.conn)?;
    o.set_clean_session(true);
    // Above our own window (birth and goodbye included), so packet ids never
    // collide: rumqttc wraps ids at this value.
    o.set_inflight(cfg.max_inflight.saturating_add(2));
    o.set_request_channel_capacity(cfg.max_inflight as usize * 2 + room);
    o.set_last_will(will);
    Ok(o)
}

/// MQTT options of an MQTT sink: [`options_with`] the Last Will retained
/// `offline` on the status topic, QoS 1.
pub fn options(cfg: &MqttSinkConfig, gateway: &str) -> anyhow::Result<MqttOptions> {
    options_with(cfg, 16, LastWill::new(&cfg.status_topic, status_json(gateway, false), QoS::AtLeastOnce, true))
}

/// Starts a session: the client and its event-loop task.
pub fn start(cfg: &MqttSinkConfig, gateway: &str) -> anyhow::Result<Session> {
    Ok(spawn(options(cfg, gateway)?))
}

/// Messages handed to rumqttc and not confirmed yet. rumqttc reports
/// `Outgoing::Publish(pkid)` in the order requests were queued: each is
/// matched to the message queued first, and a QoS 1 message's `PubAck(pkid)`
/// back to it. A message without a token (birth, death) is confirmed to
/// nobody.
#[derive(Default)]
pub struct Acks {
    /// Queued, waiting for `Outgoing::Publish`.
    fifo: VecDeque<(Option<Token>, QoS)>,
    /// Written at QoS 1, waiting for PUBACK.
    inflight: HashMap<u16, Option<Token>>,
}

impl Acks {
    /// A message was queued to rumqttc at `qos`.
    pub fn queued(&mut self, token: Option<Token>, qos: QoS) {
        self.fifo.push_back((token, qos));
    }

    /// rumqttc wrote a message with `pkid`: a QoS 0 message is done (its
    /// token returned), a QoS 1 message waits for its PUBACK.
    pub fn written(&mut self, pkid: u16) -> Option<Token> {
        match self.fifo.pop_front()? {
            (token, QoS::AtMostOnce) => token,
            (token, _) => {
                self.inflight.insert(pkid, token);
                None
            }
        }
    }

    /// The broker acknowledged `pkid`: the token it confirms, if any.
    pub fn acked(&mut self, pkid: u16) -> Option<Token> {
        self.inflight.remove(&pkid).flatten()
    }
}

/// Graceful end of a session: publishes `payload` on `topic` (QoS 1), waits
/// up to 1 s for its PUBACK, then DISCONNECTs (up to 500 ms more).
pub async fn goodbye(s: &mut Session, topic: String, retain: bool, payload: Vec<u8>) {
    let _ = s.client.try_publish(topic, QoS::AtLeastOnce, retain, payload);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut published = false;
        while let Some(ev) = s.events.recv().await {
            match ev {
                // pkid 0 is a QoS 0 message, never the goodbye.
                SessionEvent::Mqtt(Event::Outgoing(Outgoing::Publish(p))) if p != 0 => published = true,
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
}

/// Starts a session with these options (a Sparkplug sink's own Will).
pub fn spawn(opts: MqttOptions) -> Session {
    let cap = opts.request_channel_capacity();
    let (client, mut el) = AsyncClient::new(opts, cap);
    el.network_options.set_connection_timeout(5);
    el.network_options.set_tcp_nodelay(true);
    let (tx, events) = mpsc::channel(4096);
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(ev) => {
                    if tx.send(SessionEvent::Mqtt(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(SessionEvent::Closed(e.to_string())).await;
                    return;
                }
            }
        }
    });
    Session { client, events, task }
}

/// Waits for `d`, or less if `cancel` fires.
pub async fn pause(d: Duration, cancel: &tokio_util::sync::CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_follow_the_order_of_the_queue() {
        let mut a = Acks::default();
        a.queued(None, QoS::AtLeastOnce); // birth
        a.queued(Some(7), QoS::AtMostOnce);
        a.queued(Some(8), QoS::AtLeastOnce);
        a.queued(None, QoS::AtMostOnce); // a Sparkplug DBIRTH
        assert_eq!(a.written(1), None, "the birth waits for its PUBACK");
        assert_eq!(a.written(0), Some(7), "QoS 0: done once written");
        assert_eq!(a.written(2), None);
        assert_eq!(a.written(0), None);
        assert_eq!(a.written(3), None, "nothing queued");
        assert_eq!(a.acked(2), Some(8));
        assert_eq!(a.acked(2), None, "confirmed once");
        assert_eq!(a.acked(1), None, "the birth confirms no record");
    }
}
