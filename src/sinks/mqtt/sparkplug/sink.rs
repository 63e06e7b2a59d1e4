//! The Sparkplug edge node: the shared [`Driver`] over MQTT, one Sparkplug
//! session per MQTT connection.
//!
//! Per CONNECT (Sparkplug 3.0 §5.4): a new `bdSeq` is stored ([`BdSeq`]), a
//! new client is built with the NDEATH Will carrying it (rumqttc fixes the
//! Will when the client is built, so relais never lets rumqttc reconnect by
//! itself: every connection is a fresh client from [`Sink::connect`]); after
//! CONNACK the node subscribes to its NCMD topic (QoS 1), publishes NBIRTH
//! (seq 0, the same `bdSeq`) and a DBIRTH for every device it knows.
//! Births are QoS 0 and not retained (§5.4, §5.6); they are written on the
//! same connection before any data, so a subscriber gets them first.
//!
//! Data (§5.16): each draft becomes one DDATA (or NDATA for an event),
//! preceded by a DBIRTH when its device is not born in this session, or by
//! DDEATH + DBIRTH when it brings a metric the DBIRTH did not declare. Data
//! messages use the sink's `qos` (1 by default: the cursor moves on PUBACK,
//! the guarantee of every relais sink; Sparkplug asks for QoS 0 on data,
//! which `qos = 0` gives). Records accepted before the session's NBIRTH
//! (the backlog) are sent with `is_historical = true`.
//!
//! A live `device.down` event publishes the device's DDEATH (§5.7); while
//! it is dead its samples without a value are not published (the DDEATH
//! already made every metric STALE); its first sample with a value starts
//! a new device session with a DBIRTH.
//!
//! An NCMD with `Node Control/Rebirth = true` (§5.17) publishes NBIRTH (same
//! `bdSeq`, seq 0) and the DBIRTHs again, after the data already queued.
//! A graceful stop publishes the NDEATH itself (§5.5), then DISCONNECTs.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rumqttc::{Event, Incoming, LastWill, MqttOptions, Outgoing, QoS};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::bdseq::{BdSeq, before_connect};
use super::config::SparkplugConfig;
use super::encoder::{Draft, SparkplugEncoder};
use super::node::{Births, Node, is_rebirth_request};
use super::proto::Payload;
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::{EventSource, Sample};
use crate::sinks::driver::{self, Driver, Lost, Outcome, Settings, Token};
use crate::sinks::mqtt::config::MqttSinkConfig;
use crate::sinks::mqtt::session::{self, Acks, Session, SessionEvent};
use crate::sinks::mqtt::sink::Mqtt;
use crate::telemetry::SinkStats;

/// A Sparkplug sink: construct with [`SparkplugSink::new`], run with [`SparkplugSink::run`].
pub struct SparkplugSink {
    driver: Driver<Sparkplug>,
}

impl SparkplugSink {
    /// A sink delivering rows after `cursor`, woken by `committed`; its
    /// `bdSeq` lives in `data_dir`. Errors when `cfg` is not a Sparkplug sink.
    pub fn new(
        cfg: MqttSinkConfig,
        gateway: &str,
        data_dir: &Path,
        reader: Reader,
        cursor: SinkCursor,
        committed: watch::Receiver<u64>,
        stats: Arc<SinkStats>,
    ) -> anyhow::Result<SparkplugSink> {
        let sp = cfg.sparkplug.clone().ok_or_else(|| anyhow::anyhow!("sink {:?} is not a Sparkplug sink", cfg.name))?;
        let (bdseq, problem) = BdSeq::open(data_dir, &cfg.name);
        if let Some(p) = problem {
            tracing::error!(sink = %cfg.name, "{p}");
        }
        let node = Node::new(&sp.group_id, &sp.edge_node_id);
        let sink = Sparkplug {
            ncmd: node.node_topic("NCMD"),
            node,
            sp,
            cfg,
            gateway: gateway.to_string(),
            bdseq,
            bd: 0,
            historical_upto: 0,
            committed: committed.clone(),
            dead: HashSet::new(),
        };
        Ok(SparkplugSink { driver: Driver::new(sink, reader, cursor, committed, stats) })
    }

    /// Emits the sink's connection events (see [`Driver::with_events`]).
    pub fn with_events(self, events: Events) -> SparkplugSink {
        SparkplugSink { driver: self.driver.with_events(events) }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to
    /// `grace`, publishes NDEATH, and disconnects.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        self.driver.run(stop, grace).await
    }
}

/// The Sparkplug side of the driver.
pub struct Sparkplug {
    cfg: MqttSinkConfig,
    sp: SparkplugConfig,
    gateway: String,
    node: Node,
    bdseq: BdSeq,
    /// `bdSeq` of the current session.
    bd: u64,
    /// Records up to this `seq` were accepted before the session's NBIRTH.
    historical_upto: u64,
    committed: watch::Receiver<u64>,
    ncmd: String,
    /// Devices whose DDEATH followed a live `device.down`.
    dead: HashSet<Arc<str>>,
}

/// One MQTT connection (one Sparkplug session).
pub struct SpConn {
    s: Session,
    /// Queued to rumqttc: data messages with their token, births and deaths without.
    acks: Acks,
    /// Handled without a message (see the module docs), reported next.
    done: VecDeque<Token>,
    /// The NBIRTH could not be queued yet.
    need_nbirth: bool,
    qos: QoS,
}

impl Sparkplug {
    /// MQTT options of one CONNECT: clean session (§5.4), the NDEATH Will
    /// (QoS 1, not retained) with `bd`.
    fn options(&self, bd: u64) -> anyhow::Result<MqttOptions> {
        let will = self.node.ndeath(bd).encode_to_vec();
        // Births of many devices go out at once (rebirth): room for them.
        session::options_with(&self.cfg, 4096, LastWill::new(self.node.node_topic("NDEATH"), will, QoS::AtLeastOnce, false))
    }

    /// Hands one message to rumqttc; `false` when its queue is full.
    fn publish(conn: &mut SpConn, topic: String, p: &Payload, qos: QoS, token: Option<Token>) -> bool {
        match conn.s.client.try_publish(topic, qos, false, p.encode_to_vec()) {
            Ok(()) => {
                conn.acks.queued(token, qos);
                true
            }
            Err(_) => false,
        }
    }

    /// NBIRTH (seq 0) then a DBIRTH per living device; `false` when the
    /// NBIRTH could not be queued (retried before the next message).
    fn births(&mut self, conn: &mut SpConn) -> bool {
        self.node.begin_session();
        let p = self.node.nbirth(self.bd);
        if !Self::publish(conn, self.node.node_topic("NBIRTH"), &p, QoS::AtMostOnce, None) {
            conn.need_nbirth = true;
            return false;
        }
        conn.need_nbirth = false;
        self.node.sent();
        for d in self.node.devices().into_iter().filter(|d| !self.dead.contains(d)) {
            let p = self.node.dbirth(&d);
            if !Self::publish(conn, self.node.device_topic("DBIRTH", &d), &p, QoS::AtMostOnce, None) {
                break; // born later, before its next DDATA
            }
            self.node.sent();
            self.node.born(&d);
        }
        true
    }

    /// One device draft: births as needed, then the DDATA.
    fn send_device(&mut self, conn: &mut SpConn, device: &Arc<str>, samples: &[Sample], token: Token) -> bool {
        if self.dead.contains(device) && samples.iter().all(|s| s.value.is_null()) {
            conn.done.push_back(token);
            return true;
        }
        let births = self.node.plan(device, samples);
        if births == Births::Rebirth {
            if !Self::publish(conn, self.node.device_topic("DDEATH", device), &self.node.ddeath(), QoS::AtMostOnce, None) {
                return false;
            }
            self.node.sent();
            self.node.unborn(device);
        }
        if births != Births::None {
            let p = self.node.dbirth(device);
            if !Self::publish(conn, self.node.device_topic("DBIRTH", device), &p, QoS::AtMostOnce, None) {
                return false;
            }
            self.node.sent();
            self.node.born(device);
            self.dead.remove(device);
        }
        let p = self.node.ddata(device, samples, self.historical_upto);
        if !Self::publish(conn, self.node.device_topic("DDATA", device), &p, conn.qos, Some(token)) {
            return false;
        }
        self.node.sent();
        self.node.delivered(device, samples, self.historical_upto);
        true
    }

    /// One event: an NDATA; a live `device.down` also ends the device's session.
    fn send_event(&mut self, conn: &mut SpConn, e: &crate::model::Event, json: &str, token: Token) -> bool {
        let historical = e.seq <= self.historical_upto;
        let p = self.node.ndata_event(json, e.seq, e.ts, historical);
        if !Self::publish(conn, self.node.node_topic("NDATA"), &p, conn.qos, Some(token)) {
            return false;
        }
        self.node.sent();
        if historical {
            return true;
        }
        self.node.event_delivered(json, e.ts);
        if &*e.kind == "device.down"
            && let EventSource::Device(d) = &e.source
            && self.node.devices().contains(d)
            && !self.dead.contains(d)
        {
            if Self::publish(conn, self.node.device_topic("DDEATH", d), &self.node.ddeath(), QoS::AtMostOnce, None) {
                self.node.sent();
            }
            self.node.unborn(d);
            self.dead.insert(d.clone());
        }
        true
    }
}

impl driver::Sink for Sparkplug {
    type Conn = SpConn;
    type Msg = Draft;
    type Encoder = SparkplugEncoder;

    fn settings(&self) -> Settings {
        session::settings(&self.cfg, "MQTT Sparkplug", false)
    }

    fn encoder(&self) -> SparkplugEncoder {
        SparkplugEncoder::new(&self.gateway, self.cfg.batch_max_samples, self.cfg.max_message_bytes)
    }

    async fn connect(&mut self) -> Result<SpConn, Lost> {
        let (bd, stored) = self.bdseq.for_attempt();
        if let Err(e) = stored {
            tracing::error!(sink = %self.cfg.name, file = %self.bdseq.path().display(), error = %e,
                "cannot store the Sparkplug bdSeq; a restart may use {bd} again");
        }
        let opts = self.options(bd as u64).map_err(|e| Lost { reason: e.to_string(), retry_after: Some(self.cfg.conn.reconnect_max) })?;
        let mut s = session::spawn(opts);
        if let Err(e) = Mqtt::connack(&mut s).await {
            if !before_connect(&e) {
                self.bdseq.connect_sent();
            }
            return Err(Lost::new(e));
        }
        self.bdseq.connect_sent();
        // §5.4: subscribe to NCMD before NBIRTH; the broker handles them in order.
        s.client.try_subscribe(self.ncmd.clone(), QoS::AtLeastOnce).map_err(|e| Lost::new(format!("cannot subscribe to NCMD: {e}")))?;
        self.bd = bd as u64;
        self.historical_upto = *self.committed.borrow();
        let qos = session::data_qos(&self.cfg);
        let mut conn = SpConn { s, acks: Acks::default(), done: VecDeque::new(), need_nbirth: true, qos };
        self.births(&mut conn);
        tracing::info!(sink = %self.cfg.name, group = %self.sp.group_id, edge_node = %self.sp.edge_node_id, bd_seq = bd,
            backlog = self.historical_upto, "Sparkplug session started (NBIRTH published)");
        Ok(conn)
    }

    fn send(&mut self, conn: &mut SpConn, msg: Draft, token: Token) -> Result<(), Draft> {
        if conn.need_nbirth && !self.births(conn) {
            return Err(msg);
        }
        let ok = match &msg {
            Draft::Device { device, samples } => self.send_device(conn, device, samples, token),
            Draft::Event { event, json } => self.send_event(conn, event, json, token),
        };
        if ok { Ok(()) } else { Err(msg) }
    }

    async fn next(&mut self, conn: &mut SpConn) -> Outcome {
        loop {
            if let Some(t) = conn.done.pop_front() {
                return Outcome::Acked(t);
            }
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
                Some(SessionEvent::Mqtt(Event::Incoming(Incoming::Publish(p)))) if p.topic == self.ncmd => {
                    if is_rebirth_request(&p.payload) {
                        tracing::info!(sink = %self.cfg.name, "Sparkplug rebirth requested (NCMD Node Control/Rebirth)");
                        self.births(conn);
                    }
                }
                Some(SessionEvent::Mqtt(Event::Incoming(Incoming::SubAck(a)))) => {
                    if a.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        tracing::warn!(sink = %self.cfg.name, topic = %self.ncmd, "the broker refused the NCMD subscription: rebirth requests will not arrive");
                    }
                }
                Some(SessionEvent::Closed(e)) => return Outcome::Lost(Lost::new(e)),
                None => return Outcome::Lost(Lost::new("event loop ended")),
                Some(_) => {}
            }
        }
    }

    /// Graceful end (§5.5): NDEATH with the session's `bdSeq`, its PUBACK
    /// (up to 1 s), DISCONNECT.
    async fn close(&mut self, mut conn: SpConn) {
        let death = self.node.ndeath(self.bd).encode_to_vec();
        session::goodbye(&mut conn.s, self.node.node_topic("NDEATH"), false, death).await;
        tracing::info!(sink = %self.cfg.name, bd_seq = self.bd, "Sparkplug session closed (NDEATH published)");
    }
}
