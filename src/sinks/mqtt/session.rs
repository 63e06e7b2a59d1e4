//! One MQTT connection: options (Last Will, credentials, TLS), the client, and
//! the event-loop task that forwards events to the sink.
//!
//! The rumqttc `EventLoop` must be polled all the time, so it runs in its own
//! task. A session is never reused after an error: the sink builds a fresh one
//! and resends from its acknowledged cursor instead of trusting what the old
//! client still held in memory.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::MqttSinkConfig;
use super::encode::status_json;

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

/// MQTT options of a sink: the connection's options, a clean session, the
/// Last Will (retained `offline` on the status topic, QoS 1) and the windows.
pub fn options(cfg: &MqttSinkConfig, gateway: &str) -> anyhow::Result<MqttOptions> {
    let mut o = crate::mqtt::options(&cfg.conn)?;
    o.set_clean_session(true);
    // Above our own window (birth and goodbye included), so packet ids never
    // collide: rumqttc wraps ids at this value.
    o.set_inflight(cfg.max_inflight.saturating_add(2));
    o.set_request_channel_capacity(cfg.max_inflight as usize * 2 + 16);
    o.set_last_will(LastWill::new(&cfg.status_topic, status_json(gateway, false), QoS::AtLeastOnce, true));
    Ok(o)
}

/// Starts a session: the client and its event-loop task.
pub fn start(cfg: &MqttSinkConfig, gateway: &str) -> anyhow::Result<Session> {
    Ok(spawn(options(cfg, gateway)?))
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
