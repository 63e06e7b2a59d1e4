//! The MQTT sink: the shared [`Driver`] over MQTT (rumqttc).
//!
//! - Hand-off to rumqttc is `try_publish` within the driver's bounded window
//!   of unacknowledged messages, so a slow or dead broker never blocks
//!   anything (field case B22); rows simply stay in the buffer.
//! - Acknowledgement: rumqttc reports `Outgoing::Publish(pkid)` in the order
//!   requests were queued; each is matched to the message queued first, and
//!   `PubAck(pkid)` back to it. The cursor moves only over acknowledged
//!   messages (QoS 1), or over messages written to the socket (QoS 0).
//!   Field case B20.
//! - Each connection starts with a retained birth message `online` on the status
//!   topic; the Last Will is the retained `offline`; a graceful stop publishes
//!   `offline` itself before DISCONNECT (field case B24).
//! - Events go one per message to `{prefix}/relais/{gateway}/event/{kind}`
//!   (see [`super::encoder::event_base`]).
//! - Reconnection, backoff, lanes, cursor and shutdown grace: the [`Driver`].

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Event, Incoming, Outgoing, QoS};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{Format, MqttSinkConfig};
use super::encode::status_json;
use super::encoder::{MqttEncoder, Out};
use super::session::{self, Acks, Session, SessionEvent};
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::sinks::driver::{self, Driver, Lost, Outcome, Settings, Token};
use crate::telemetry::SinkStats;

/// The MQTT sink: construct with [`MqttSink::new`], run with [`MqttSink::run`].
pub struct MqttSink {
    driver: Driver<Mqtt>,
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
        MqttSink { driver: Driver::new(Mqtt { cfg, gateway: gateway.to_string() }, reader, cursor, committed, stats) }
    }

    /// Emits the sink's connection events (see [`Driver::with_events`]).
    pub fn with_events(self, events: Events) -> MqttSink {
        MqttSink { driver: self.driver.with_events(events) }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to
    /// `grace`, publishes `offline`, and disconnects.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        self.driver.run(stop, grace).await
    }
}

/// MQTT's side of the driver.
pub struct Mqtt {
    cfg: MqttSinkConfig,
    gateway: String,
}

/// One MQTT connection and what it has queued (the birth without a token).
pub struct MqttConn {
    s: Session,
    acks: Acks,
    qos: QoS,
}

impl Mqtt {
    /// Waits up to 15 s for the CONNACK of a new session; the error says why not.
    pub(crate) async fn connack(s: &mut Session) -> Result<(), String> {
        let wait = async {
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
        };
        match tokio::time::timeout(Duration::from_secs(15), wait).await {
            Ok(r) => r,
            Err(_) => Err("no CONNACK within 15s".into()),
        }
    }
}

impl driver::Sink for Mqtt {
    type Conn = MqttConn;
    type Msg = Out;
    type Encoder = MqttEncoder;

    fn settings(&self) -> Settings {
        session::settings(&self.cfg, "MQTT", self.cfg.format == Format::Json)
    }

    fn encoder(&self) -> MqttEncoder {
        MqttEncoder::new(&self.cfg, &self.gateway)
    }

    async fn connect(&mut self) -> Result<MqttConn, Lost> {
        let mut s = match session::start(&self.cfg, &self.gateway) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(sink = %self.cfg.name, error = %e, "cannot set up the MQTT session");
                return Err(Lost { reason: e.to_string(), retry_after: Some(self.cfg.conn.reconnect_max) });
            }
        };
        Mqtt::connack(&mut s).await.map_err(Lost::new)?;
        // Birth: retained, QoS 1, on every CONNACK.
        if let Err(e) = s.client.try_publish(&self.cfg.status_topic, QoS::AtLeastOnce, true, status_json(&self.gateway, true)) {
            return Err(Lost::new(format!("cannot queue the birth message: {e}")));
        }
        let mut acks = Acks::default();
        acks.queued(None, QoS::AtLeastOnce);
        Ok(MqttConn { s, acks, qos: session::data_qos(&self.cfg) })
    }

    fn send(&mut self, conn: &mut MqttConn, msg: Out, token: Token) -> Result<(), Out> {
        match conn.s.client.try_publish(msg.topic.as_ref(), conn.qos, self.cfg.retain, msg.payload) {
            Ok(()) => {
                conn.acks.queued(Some(token), conn.qos);
                Ok(())
            }
            Err(e) => {
                // Request channel full (topics are always valid): give the
                // message back, the driver retries after the next event.
                let payload = match e {
                    rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p))
                    | rumqttc::ClientError::Request(rumqttc::Request::Publish(p)) => p.payload.to_vec(),
                    _ => Vec::new(),
                };
                Err(Out { topic: msg.topic, payload })
            }
        }
    }

    async fn next(&mut self, conn: &mut MqttConn) -> Outcome {
        loop {
            match conn.s.events.recv().await {
                Some(SessionEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(t) = conn.acks.written(pkid) {
                        return Outcome::Acked(t);
                    }
                }
                Some(SessionEvent::Mqtt(Event::Incoming(Incoming::PubAck(a)))) => {
                    if let Some(t) = conn.acks.acked(a.pkid) {
                        return Outcome::Acked(t);
                    }
                }
                Some(SessionEvent::Closed(e)) => return Outcome::Lost(Lost::new(e)),
                None => return Outcome::Lost(Lost::new("event loop ended")),
                Some(_) => {}
            }
        }
    }

    /// Graceful end: retained `offline`, wait for its PUBACK, DISCONNECT.
    async fn close(&mut self, mut conn: MqttConn) {
        session::goodbye(&mut conn.s, self.cfg.status_topic.clone(), true, status_json(&self.gateway, false)).await;
        tracing::info!(sink = %self.cfg.name, "MQTT session closed (offline published)");
    }
}
