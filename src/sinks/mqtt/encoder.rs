//! The MQTT encoder (pure): records → topics and payloads, by `format`.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{Format, MqttSinkConfig};
use super::encode::{batch_json, event_json, sample_json};
use super::topic::TopicTemplate;
use crate::model::{Event, Record, Sample, TagMeta};
use crate::sinks::driver::{Encoder, Prepared};

/// The event topic base of a sink: its status topic with the last level
/// `status` replaced by `event/` (`icam/line5/relais/line5-edge01/event/`),
/// or the status topic followed by `/event/` when it ends otherwise.
pub fn event_base(status_topic: &str) -> String {
    match status_topic.strip_suffix("/status") {
        Some(p) => format!("{p}/event/"),
        None => format!("{status_topic}/event/"),
    }
}

impl MqttEncoder {
    /// The encoder of a sink.
    pub fn new(cfg: &MqttSinkConfig, gateway: &str) -> MqttEncoder {
        MqttEncoder {
            gateway: gateway.to_string(),
            format: cfg.format,
            topic: cfg.topic.clone(),
            batch_topic: cfg.batch_topic.clone(),
            batch_max: cfg.batch_max_samples,
            max_bytes: cfg.max_message_bytes,
            topics: HashMap::new(),
            batch_topics: HashMap::new(),
            event_base: event_base(&cfg.status_topic),
            event_topics: HashMap::new(),
        }
    }
}

/// One message ready to publish.
#[derive(Debug)]
pub struct Out {
    /// Topic.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Vec<u8>,
}

fn out_msg(topic: Arc<str>, payload: Vec<u8>, records: usize) -> Prepared<Out> {
    Prepared { msg: Out { topic, payload }, records }
}

/// Renders topics and payloads, caching topics per tag.
pub struct MqttEncoder {
    gateway: String,
    format: Format,
    topic: TopicTemplate,
    batch_topic: TopicTemplate,
    batch_max: usize,
    max_bytes: usize,
    topics: HashMap<usize, (Arc<TagMeta>, Arc<str>)>,
    batch_topics: HashMap<String, Arc<str>>,
    /// `{prefix}/relais/{gateway}/event/`.
    event_base: String,
    event_topics: HashMap<Arc<str>, Arc<str>>,
}

/// A sample whose message would exceed `max_message_bytes` (a huge text
/// value or reason from data) cannot be published as is, and must never
/// block the samples behind it: it is sent as a bad sample that says so,
/// keeping the start of its reason.
pub(crate) fn too_large(s: &Sample, size: usize, max: usize) -> Sample {
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

/// A part of the records read, in `seq` order: a run of samples between two
/// events, or one event.
pub(crate) enum Part<'r> {
    /// Consecutive samples (never empty).
    Samples(Vec<&'r Sample>),
    /// One event.
    Event(&'r Event),
}

/// Cuts `records` into [`Part`]s and hands each to `f`, in order.
pub(crate) fn parts<'r>(records: &[&'r Record], mut f: impl FnMut(Part<'r>)) {
    let mut run: Vec<&'r Sample> = Vec::new();
    for r in records {
        match r {
            Record::Sample(s) => run.push(s),
            Record::Event(e) => {
                if !run.is_empty() {
                    f(Part::Samples(std::mem::take(&mut run)));
                }
                f(Part::Event(e));
            }
        }
    }
    if !run.is_empty() {
        f(Part::Samples(run));
    }
}

/// `rows` grouped per device, devices in the order they first appear, each
/// device's samples in their order.
pub(crate) fn by_device<'s>(rows: &[&'s Sample]) -> Vec<(&'s Arc<str>, Vec<&'s Sample>)> {
    let mut order: Vec<(&'s Arc<str>, Vec<&'s Sample>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for s in rows {
        let i = *index.entry(&*s.meta.device).or_insert_with(|| {
            order.push((&s.meta.device, Vec::new()));
            order.len() - 1
        });
        order[i].1.push(s);
    }
    order
}

impl MqttEncoder {
    /// One json-batch message, split in halves until it fits `max_bytes`.
    fn push_batch(&self, device: &str, topic: &Arc<str>, chunk: &[&Sample], out: &mut Vec<Prepared<Out>>) {
        let payload = batch_json(&self.gateway, device, chunk.iter().copied());
        if payload.len() > self.max_bytes && chunk.len() > 1 {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            self.push_batch(device, topic, a, out);
            self.push_batch(device, topic, b, out);
        } else if payload.len() > self.max_bytes {
            let small = too_large(chunk[0], payload.len(), self.max_bytes);
            out.push(out_msg(topic.clone(), batch_json(&self.gateway, device, std::iter::once(&small)), 1));
        } else {
            out.push(out_msg(topic.clone(), payload, chunk.len()));
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

    fn event_topic(&mut self, kind: &Arc<str>) -> Arc<str> {
        if let Some(t) = self.event_topics.get(kind) {
            return t.clone();
        }
        let t: Arc<str> = format!("{}{kind}", self.event_base).into();
        if self.event_topics.len() < 1024 {
            self.event_topics.insert(kind.clone(), t.clone());
        }
        t
    }

    /// `{prefix}/relais/{gateway}/alarm/{rule}`: the event base with its
    /// last level `event` replaced by `alarm` (rule names are topic levels,
    /// checked by `names::check`).
    fn alarm_topic(&mut self, rule: &Arc<str>) -> Arc<str> {
        let key: Arc<str> = format!("\0alarm/{rule}").into();
        if let Some(t) = self.event_topics.get(&key) {
            return t.clone();
        }
        let base = self.event_base.strip_suffix("event/").unwrap_or(&self.event_base);
        let t: Arc<str> = format!("{base}alarm/{rule}").into();
        if self.event_topics.len() < 1024 {
            self.event_topics.insert(key, t.clone());
        }
        t
    }

    fn push_samples(&mut self, rows: &[&Sample], out: &mut Vec<Prepared<Out>>) {
        match self.format {
            Format::Json => {
                for s in rows {
                    let topic = self.topic_of(&s.meta);
                    let mut payload = sample_json(&self.gateway, s);
                    if payload.len() > self.max_bytes {
                        payload = sample_json(&self.gateway, &too_large(s, payload.len(), self.max_bytes));
                    }
                    out.push(out_msg(topic, payload, 1));
                }
            }
            // Sparkplug sinks have their own encoder (super::sparkplug).
            Format::JsonBatch | Format::Sparkplug => {
                for (device, samples) in by_device(rows) {
                    let device: &str = device;
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

impl Encoder for MqttEncoder {
    type Msg = Out;

    /// Samples by `format`; each event is one message on
    /// `{prefix}/relais/{gateway}/event/{kind}`, alarm transitions (kind
    /// `alarm`, source a rule) on `{prefix}/relais/{gateway}/alarm/{rule}`. Messages keep `seq` order
    /// per topic; a run of samples between two events is encoded together.
    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<Out>>) {
        parts(records, |part| match part {
            Part::Samples(run) => self.push_samples(&run, out),
            Part::Event(e) => {
                let topic = match (&*e.kind, &e.source) {
                    // Alarm transitions: one topic per rule (`…/alarm/{rule}`).
                    ("alarm", crate::model::EventSource::Rule(rule)) => self.alarm_topic(rule),
                    _ => self.event_topic(&e.kind),
                };
                out.push(out_msg(topic, event_json(&self.gateway, e), 1));
            }
        });
    }
}
