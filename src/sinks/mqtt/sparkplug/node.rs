//! The edge node's Sparkplug state (pure): topics, `seq`, aliases, what each
//! device declared in its DBIRTH, and the payloads built from it.
//!
//! - Topics (Sparkplug 3.0 §4.1): `spBv1.0/{group_id}/{NBIRTH|NDATA|NDEATH|NCMD}/{edge_node_id}`
//!   and `spBv1.0/{group_id}/{DBIRTH|DDATA|DDEATH}/{edge_node_id}/{device}`.
//! - `seq` (§6.4.5): NBIRTH carries 0; every later message of the node
//!   (DBIRTH, DDATA, NDATA, DDEATH) carries the previous one plus one, 255
//!   wrapping to 0; NDEATH carries none. The caller takes a number only for a
//!   message actually handed to the client ([`Node::seq`], then [`Node::sent`]).
//! - Aliases (§6.4.6): unique across the node, kept for the life of the
//!   process: `bdSeq` 0, `relais/event` 1, device metrics from 2 in order of
//!   first appearance. `Node Control/Rebirth` has none (§5.17).
//! - Births (§5.16): a DBIRTH declares every metric its device will publish in
//!   the session, with its current value or `is_null`. A metric not declared
//!   yet, or one whose value changes type, ends the device's session (DDEATH)
//!   and starts a new one (DBIRTH) that declares it, before the DDATA.

use std::collections::HashMap;
use std::sync::Arc;

use super::metric::{datatype_of, millis, properties, set_value};
use super::proto::{Metric, MetricValue, Payload, datatype};
use crate::model::{Quality, Sample, Timestamp, Value};

/// Name of the node metric that carries relais events (JSON text).
pub const EVENT_METRIC: &str = "relais/event";
/// Alias of `bdSeq` in NBIRTH.
pub const BDSEQ_ALIAS: u64 = 0;
/// Alias of [`EVENT_METRIC`].
pub const EVENT_ALIAS: u64 = 1;
/// The rebirth command metric (§5.17).
pub const REBIRTH: &str = "Node Control/Rebirth";

/// One declared metric of a device.
#[derive(Debug, Clone)]
struct Declared {
    tag: Arc<str>,
    alias: u64,
    datatype: u32,
    unit: Option<Arc<str>>,
    /// The last live value sent: value, quality, reason, time.
    last: Option<(Value, Quality, Option<Arc<str>>, Timestamp)>,
}

#[derive(Debug, Default)]
struct Device {
    metrics: Vec<Declared>,
    index: HashMap<Arc<str>, usize>,
    /// A DBIRTH with the current metric set went out in this session.
    born: bool,
}

/// What must precede a DDATA for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Births {
    /// The device is born with every metric of the message.
    None,
    /// A DBIRTH first (the device is not born in this session).
    Birth,
    /// A DDEATH then a DBIRTH (new metrics or a changed type).
    Rebirth,
}

/// The node's state across sessions (aliases, declarations, last values) and
/// within one (seq, which devices are born).
#[derive(Debug)]
pub struct Node {
    group: String,
    edge: String,
    seq: u8,
    next_alias: u64,
    devices: HashMap<Arc<str>, Device>,
    /// Device names in order of first appearance (births in a stable order).
    order: Vec<Arc<str>>,
    last_event: Option<(String, Timestamp)>,
}

impl Node {
    /// A node `edge_node_id` in group `group_id`.
    pub fn new(group: &str, edge: &str) -> Node {
        Node {
            group: group.to_string(),
            edge: edge.to_string(),
            seq: 0,
            next_alias: 2,
            devices: HashMap::new(),
            order: Vec::new(),
            last_event: None,
        }
    }

    /// A node topic: `spBv1.0/{group}/{kind}/{edge}`.
    pub fn node_topic(&self, kind: &str) -> String {
        format!("spBv1.0/{}/{kind}/{}", self.group, self.edge)
    }

    /// A device topic: `spBv1.0/{group}/{kind}/{edge}/{device}`.
    pub fn device_topic(&self, kind: &str, device: &str) -> String {
        format!("spBv1.0/{}/{kind}/{}/{device}", self.group, self.edge)
    }

    /// The `seq` of the next message.
    pub fn seq(&self) -> u64 {
        self.seq as u64
    }

    /// A message carrying [`Node::seq`] was handed to the client.
    pub fn sent(&mut self) {
        self.seq = self.seq.wrapping_add(1);
    }

    /// Devices known to the node, in order of first appearance.
    pub fn devices(&self) -> Vec<Arc<str>> {
        self.order.clone()
    }

    /// A new session (or a rebirth): the next message is the NBIRTH (seq 0)
    /// and no device is born.
    pub fn begin_session(&mut self) {
        self.seq = 0;
        for d in self.devices.values_mut() {
            d.born = false;
        }
    }

    /// The device is no longer born (DDEATH sent, or its birth was not sent).
    pub fn unborn(&mut self, device: &str) {
        if let Some(d) = self.devices.get_mut(device) {
            d.born = false;
        }
    }

    /// The NDEATH payload (the Last Will): `bdSeq` only, no `seq` (§4.2.1.3).
    pub fn ndeath(&self, bd_seq: u64) -> Payload {
        let bd = Metric {
            name: Some("bdSeq".into()),
            datatype: Some(datatype::INT64),
            value: Some(MetricValue::LongValue(bd_seq)),
            ..Default::default()
        };
        Payload { timestamp: Some(millis(Timestamp::now())), metrics: vec![bd], seq: None }
    }

    /// The NBIRTH payload (§4.2.1.1, §5.4): `bdSeq` (same as the Will's),
    /// `Node Control/Rebirth` = false (no alias), `relais/event` (the last
    /// event sent, or null), seq [`Node::seq`].
    pub fn nbirth(&self, bd_seq: u64) -> Payload {
        let now = millis(Timestamp::now());
        let mut bd = Metric {
            name: Some("bdSeq".into()),
            alias: Some(BDSEQ_ALIAS),
            timestamp: Some(now),
            datatype: Some(datatype::INT64),
            ..Default::default()
        };
        set_value(&mut bd, &Value::I64(bd_seq as i64));
        let mut rebirth =
            Metric { name: Some(REBIRTH.into()), timestamp: Some(now), datatype: Some(datatype::BOOLEAN), ..Default::default() };
        set_value(&mut rebirth, &Value::Bool(false));
        let mut ev = Metric {
            name: Some(EVENT_METRIC.into()),
            alias: Some(EVENT_ALIAS),
            timestamp: Some(now),
            datatype: Some(datatype::STRING),
            ..Default::default()
        };
        match &self.last_event {
            Some((json, ts)) => {
                set_value(&mut ev, &Value::Str(json.clone()));
                ev.timestamp = Some(millis(*ts));
            }
            None => set_value(&mut ev, &Value::Null),
        }
        Payload { timestamp: Some(now), metrics: vec![bd, rebirth, ev], seq: Some(self.seq()) }
    }

    /// Declares the metrics of `samples` for `device` and says which births
    /// must precede their DDATA.
    pub fn plan(&mut self, device: &Arc<str>, samples: &[Sample]) -> Births {
        let next_alias = &mut self.next_alias;
        if !self.devices.contains_key(device) {
            self.order.push(device.clone());
        }
        let d = self.devices.entry(device.clone()).or_default();
        let mut changed = false;
        for s in samples {
            let ty = datatype_of(&s.value);
            match d.index.get(&s.meta.tag) {
                Some(&i) => {
                    if let Some(t) = ty
                        && d.metrics[i].datatype != t
                    {
                        d.metrics[i].datatype = t;
                        d.metrics[i].last = None;
                        changed = true;
                    }
                }
                None => {
                    d.index.insert(s.meta.tag.clone(), d.metrics.len());
                    d.metrics.push(Declared {
                        tag: s.meta.tag.clone(),
                        alias: *next_alias,
                        // A metric first seen without a value is declared Double
                        // until a value says otherwise (then the device is reborn).
                        datatype: ty.unwrap_or(datatype::DOUBLE),
                        unit: s.meta.unit.clone(),
                        last: None,
                    });
                    *next_alias += 1;
                    changed = true;
                }
            }
        }
        match (d.born, changed) {
            (true, false) => Births::None,
            (true, true) => Births::Rebirth,
            (false, _) => Births::Birth,
        }
    }

    /// The DBIRTH payload of a device (§4.2.2.1): every declared metric with
    /// name, alias, datatype and the last live value (or `is_null`), `Quality`
    /// always; seq [`Node::seq`].
    pub fn dbirth(&self, device: &str) -> Payload {
        let now = millis(Timestamp::now());
        let metrics = self.devices.get(device).map_or(Vec::new(), |d| {
            d.metrics
                .iter()
                .map(|m| {
                    let mut out = Metric {
                        name: Some(m.tag.to_string()),
                        alias: Some(m.alias),
                        timestamp: Some(now),
                        datatype: Some(m.datatype),
                        ..Default::default()
                    };
                    let unit = m.unit.as_deref();
                    match &m.last {
                        Some((v, q, why, ts)) => {
                            set_value(&mut out, v);
                            out.timestamp = Some(millis(*ts));
                            out.properties = properties(*q, why.as_deref(), None, unit, true);
                        }
                        None => {
                            set_value(&mut out, &Value::Null);
                            out.properties = properties(Quality::Good, None, None, unit, false);
                        }
                    }
                    out
                })
                .collect()
        });
        Payload { timestamp: Some(now), metrics, seq: Some(self.seq()) }
    }

    /// Marks a device born (its DBIRTH was handed to the client).
    pub fn born(&mut self, device: &str) {
        if let Some(d) = self.devices.get_mut(device) {
            d.born = true;
        }
    }

    /// The DDATA payload of samples already declared ([`Node::plan`]); a
    /// sample with `seq <= historical_upto` is marked `is_historical`.
    pub fn ddata(&self, device: &str, samples: &[Sample], historical_upto: u64) -> Payload {
        let d = self.devices.get(device);
        let metrics = samples
            .iter()
            .filter_map(|s| {
                let m = &d?.metrics[*d?.index.get(&s.meta.tag)?];
                Some(super::metric::data_metric(s, m.alias, s.seq <= historical_upto))
            })
            .collect();
        Payload { timestamp: Some(millis(Timestamp::now())), metrics, seq: Some(self.seq()) }
    }

    /// The DDATA went out: live values become the values of later births.
    pub fn delivered(&mut self, device: &str, samples: &[Sample], historical_upto: u64) {
        let Some(d) = self.devices.get_mut(device) else { return };
        for s in samples.iter().filter(|s| s.seq > historical_upto) {
            if let Some(&i) = d.index.get(&s.meta.tag) {
                d.metrics[i].last = Some((s.value.clone(), s.quality, s.reason.clone(), s.ts));
            }
        }
    }

    /// The DDEATH payload of a device (§4.2.2.3): no metrics, seq [`Node::seq`].
    pub fn ddeath(&self) -> Payload {
        Payload { timestamp: Some(millis(Timestamp::now())), metrics: Vec::new(), seq: Some(self.seq()) }
    }

    /// The NDATA payload of one event: `relais/event` by alias, the event's
    /// JSON as text, `relais_seq`; `is_historical` when replayed.
    pub fn ndata_event(&self, json: &str, seq: u64, ts: Timestamp, historical: bool) -> Payload {
        let mut m = Metric {
            alias: Some(EVENT_ALIAS),
            timestamp: Some(millis(ts)),
            is_historical: historical.then_some(true),
            properties: properties(Quality::Good, None, Some(seq), None, false),
            ..Default::default()
        };
        set_value(&mut m, &Value::Str(json.to_string()));
        Payload { timestamp: Some(millis(Timestamp::now())), metrics: vec![m], seq: Some(self.seq()) }
    }

    /// The event went out live: NBIRTH carries it from now on.
    pub fn event_delivered(&mut self, json: &str, ts: Timestamp) {
        self.last_event = Some((json.to_string(), ts));
    }
}

/// Whether an NCMD payload asks for a rebirth: a metric named
/// `Node Control/Rebirth` with the Boolean value true (§5.17). A payload
/// that is not Sparkplug B is not a request.
pub fn is_rebirth_request(bytes: &[u8]) -> bool {
    use prost::Message;
    Payload::decode(bytes)
        .is_ok_and(|p| p.metrics.iter().any(|m| m.name.as_deref() == Some(REBIRTH) && m.value == Some(MetricValue::BooleanValue(true))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TagMeta;

    fn s(device: &str, tag: &str, v: Value, seq: u64) -> Sample {
        let mut s = Sample::good(TagMeta::new(device, tag, None), v, Timestamp::from_millis(1000 + seq as i64));
        s.seq = seq;
        s
    }

    #[test]
    fn seq_wraps_and_a_session_starts_at_zero() {
        let mut n = Node::new("g", "e");
        for _ in 0..255 {
            n.sent();
        }
        assert_eq!(n.seq(), 255);
        n.sent();
        assert_eq!(n.seq(), 0);
        n.sent();
        n.begin_session();
        assert_eq!(n.nbirth(3).seq, Some(0));
        assert_eq!(n.ndeath(3).seq, None, "NDEATH has no seq");
        assert_eq!(n.node_topic("NBIRTH"), "spBv1.0/g/NBIRTH/e");
        assert_eq!(n.device_topic("DDATA", "pump1"), "spBv1.0/g/DDATA/e/pump1");
    }

    #[test]
    fn births_declare_new_metrics_and_types() {
        let mut n = Node::new("g", "e");
        let d: Arc<str> = "pump1".into();
        assert_eq!(n.plan(&d, &[s("pump1", "a", Value::F64(1.0), 1)]), Births::Birth);
        n.born(&d);
        assert_eq!(n.plan(&d, &[s("pump1", "a", Value::F64(2.0), 2)]), Births::None);
        assert_eq!(n.plan(&d, &[s("pump1", "b", Value::I64(2), 3)]), Births::Rebirth, "a new metric");
        assert_eq!(n.plan(&d, &[s("pump1", "a", Value::Str("x".into()), 4)]), Births::Rebirth, "a new type");
        let b = n.dbirth("pump1");
        let names: Vec<_> = b.metrics.iter().map(|m| (m.name.clone().unwrap(), m.alias.unwrap(), m.datatype.unwrap())).collect();
        assert_eq!(names, [("a".into(), 2, datatype::STRING), ("b".into(), 3, datatype::INT64)]);
        // Data by alias; historical up to the session's start.
        let data = n.ddata("pump1", &[s("pump1", "b", Value::I64(5), 9), s("pump1", "b", Value::I64(6), 10)], 9);
        assert_eq!(data.metrics.iter().map(|m| (m.alias, m.is_historical)).collect::<Vec<_>>(), [(Some(3), Some(true)), (Some(3), None)]);
        // Only live values become the birth's values.
        n.delivered("pump1", &[s("pump1", "b", Value::I64(5), 9), s("pump1", "b", Value::I64(6), 10)], 9);
        assert_eq!(n.dbirth("pump1").metrics[1].value, Some(MetricValue::LongValue(6)));
        assert_eq!(n.dbirth("pump1").metrics[0].is_null, Some(true));
    }

    #[test]
    fn rebirth_requests() {
        use prost::Message;
        let req = |name: &str, v: bool| {
            let m = Metric { name: Some(name.into()), value: Some(MetricValue::BooleanValue(v)), ..Default::default() };
            Payload { metrics: vec![m], ..Default::default() }.encode_to_vec()
        };
        assert!(is_rebirth_request(&req(REBIRTH, true)));
        assert!(!is_rebirth_request(&req(REBIRTH, false)));
        assert!(!is_rebirth_request(&req("Node Control/Reboot", true)));
        assert!(!is_rebirth_request(b"{\"not\":\"protobuf\"}"));
    }
}
