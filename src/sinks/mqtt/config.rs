//! Configuration of `type = "mqtt"` sinks. See `sample.toml` beside this file.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::topic::TopicTemplate;
use crate::diag::read::{Size, Text};
use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};
pub use crate::mqtt::{BrokerUrl, ClientConn};
use crate::mqtt::{CONN_KEYS, parse_conn};
use crate::names;

/// Payload layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One sample per message on the tag's topic.
    Json,
    /// One message per device per read batch, on the batch topic.
    JsonBatch,
    /// Sparkplug B (protobuf, `spBv1.0/...` topics): see [`super::sparkplug`].
    Sparkplug,
}

/// A validated MQTT sink.
#[derive(Debug, Clone)]
pub struct MqttSinkConfig {
    /// Sink name; also the name of its cursor in the buffer.
    pub name: String,
    /// Broker, client id, credentials, TLS, keep-alive, reconnect backoff.
    pub conn: ClientConn,
    /// Per-sample topic template (format `json`).
    pub topic: TopicTemplate,
    /// Per-device topic template (format `json-batch`).
    pub batch_topic: TopicTemplate,
    /// Birth / Last Will topic (retained).
    pub status_topic: String,
    /// 0 (at most once) or 1 (at least once, default).
    pub qos: u8,
    /// Payload layout.
    pub format: Format,
    /// Retain flag of data messages (default false).
    pub retain: bool,
    /// Most unacknowledged messages at once (default 100).
    pub max_inflight: u16,
    /// Most samples in one json-batch message (default 500).
    pub batch_max_samples: usize,
    /// Rows read from the buffer per step (default 1000).
    pub read_rows: usize,
    /// Backlog size, in rows, above which live samples are sent in a lane of
    /// their own beside the replay (default 10000).
    pub backlog_threshold: u64,
    /// Age of the oldest undelivered record that raises `sink.backlog_old`
    /// (`backlog_alarm_age`, default 60 s; `"0s"`: off; `sinks::driver::backlog_age`).
    pub backlog_alarm_age: Duration,
    /// Longest wait for a PUBACK before the connection is rebuilt and the
    /// unacknowledged messages resent (default 30 s).
    pub ack_timeout: Duration,
    /// Largest payload in bytes (default 128 KiB): bigger json-batch messages
    /// are split; a single sample above it is sent as a bad
    /// `payload_too_large` sample. Many brokers and clouds limit messages
    /// (AWS IoT: 128 KiB).
    pub max_message_bytes: usize,
    /// Group and edge node IDs (`format = "sparkplug"` only).
    pub sparkplug: Option<super::sparkplug::config::SparkplugConfig>,
}

/// Keys of an MQTT `[[sink]]` besides the connection keys ([`CONN_KEYS`]).
pub const SINK_KEYS: &[&str] = &[
    "name",
    "type",
    "topic",
    "batch_topic",
    "status_topic",
    "qos",
    "format",
    "retain",
    "max_inflight",
    "batch_max_samples",
    "read_rows",
    "backlog_threshold",
    "backlog_alarm_age",
    "ack_timeout",
    "max_message_bytes",
    "group_id",
    "edge_node_id",
];

#[derive(Deserialize)]
struct RawSink {
    name: Spanned<String>,
    topic: Option<Spanned<String>>,
    batch_topic: Option<Spanned<String>>,
    status_topic: Option<Spanned<String>>,
    qos: Option<Spanned<i64>>,
    format: Option<Spanned<String>>,
    retain: Option<bool>,
    max_inflight: Option<Spanned<i64>>,
    batch_max_samples: Option<Spanned<i64>>,
    read_rows: Option<Spanned<i64>>,
    backlog_threshold: Option<Spanned<i64>>,
    backlog_alarm_age: Option<Spanned<String>>,
    ack_timeout: Text,
    max_message_bytes: Option<Spanned<Size>>,
    group_id: Option<Spanned<String>>,
    edge_node_id: Option<Spanned<String>>,
}

/// Parses one `[[sink]]` item with `type = "mqtt"`. `gateway` is the gateway
/// id (for the default client id and status topic); relative paths resolve
/// against `base_dir`, the config file's folder.
pub fn parse_sink(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str, gateway: &str, base_dir: &Path) -> Option<MqttSinkConfig> {
    let known: Vec<&str> = SINK_KEYS.iter().chain(CONN_KEYS).copied().collect();
    reject_unknown_keys(&mut item, &known, diag, key);
    let raw: RawSink = de_item(item.clone(), diag, key)?;
    let before = diag.error_count();
    let name = raw.name.get_ref().clone();
    let key = format!("sink {name:?}");
    if let Err(e) = names::check(&name) {
        diag.error(raw.name.span(), &format!("{key} / name"), e);
    }
    let conn = parse_conn(item, diag, &key, base_dir, format!("relais-{gateway}-{name}"));
    let mut r = Reader::new(diag, &key);
    let formats = [("json", Format::Json), ("json-batch", Format::JsonBatch), ("sparkplug", Format::Sparkplug)];
    let format = r.choice(&raw.format, "format", &formats, Format::Json);
    let (topic, batch_topic, status_topic) = read_topics(&mut r, &raw, format, gateway);
    let (sparkplug, status_topic) = sparkplug_keys(&raw, r.diag(), &key, gateway, status_topic);
    let qos = match &raw.qos {
        None => 1,
        Some(q) if matches!(q.get_ref(), 0 | 1) => *q.get_ref() as u8,
        Some(q) => {
            let m = format!("qos {} is not supported; use 1 (at least once, default) or 0 (at most once)", q.get_ref());
            r.error(q.span(), "qos", m);
            1
        }
    };
    let max_inflight = r.int(&raw.max_inflight, "max_inflight", 1..=65_000, 100);
    let batch_max_samples = r.int(&raw.batch_max_samples, "batch_max_samples", 1..=10_000, 500);
    let read_rows = r.int(&raw.read_rows, "read_rows", 1..=100_000, 1000);
    let backlog_threshold = r.int(&raw.backlog_threshold, "backlog_threshold", 0..=i64::MAX, 10_000);
    let backlog_alarm_age =
        r.duration(&raw.backlog_alarm_age, "backlog_alarm_age", crate::sinks::driver::backlog_age::DEFAULT_BACKLOG_ALARM_AGE);
    let ack_timeout = r.duration_in(&raw.ack_timeout, "ack_timeout", Duration::from_secs(30), Duration::from_secs(1)..=Duration::MAX);
    let max_message_bytes = r.size(&raw.max_message_bytes, "max_message_bytes", 128 * 1024, 1024..=16 << 20) as usize;
    if diag.error_count() > before {
        return None;
    }
    Some(MqttSinkConfig {
        sparkplug,
        ack_timeout,
        max_message_bytes,
        name,
        conn: conn?,
        topic: topic?,
        batch_topic: batch_topic?,
        status_topic: status_topic?,
        qos,
        format,
        retain: raw.retain.unwrap_or(false),
        max_inflight,
        batch_max_samples,
        read_rows,
        backlog_threshold,
        backlog_alarm_age,
    })
}

fn template(r: &mut Reader<'_, '_>, v: &Spanned<String>, what: &str) -> Option<TopicTemplate> {
    TopicTemplate::parse(v.get_ref()).map_err(|e| r.error(v.span(), what, e)).ok()
}

/// The data topic, the batch topic and the status topic (rendered), with
/// their defaults; each `None` when wrong.
fn read_topics(
    r: &mut Reader<'_, '_>,
    raw: &RawSink,
    format: Format,
    gateway: &str,
) -> (Option<TopicTemplate>, Option<TopicTemplate>, Option<String>) {
    let topic_span = raw.topic.as_ref().map_or(raw.name.span(), |t| t.span());
    let topic = match &raw.topic {
        Some(t) => template(r, t, "topic"),
        None => TopicTemplate::parse("relais/{gateway}/{device}/{tag}").ok(),
    };
    if format == Format::Json
        && let Some(t) = &topic
        && !t.uses_tag()
    {
        r.warn(topic_span.clone(), "topic", "format \"json\" without {tag} in the topic: every tag of a device shares one topic (retained values would overwrite each other)");
    }
    let batch_topic = match (&raw.batch_topic, &topic) {
        (Some(t), _) => {
            let bt = template(r, t, "batch_topic");
            if bt.as_ref().is_some_and(TopicTemplate::uses_tag) {
                r.error(t.span(), "batch_topic", "batch_topic carries several tags per message and may not use {tag}");
            }
            bt
        }
        (None, Some(t)) => match t.without_tag_level() {
            Some(b) => Some(b),
            None => {
                if format == Format::JsonBatch {
                    r.error(
                        topic_span,
                        "batch_topic",
                        "format = \"json-batch\" needs a topic without {tag}: set batch_topic (e.g. \"icam/line5/{device}\")",
                    );
                }
                TopicTemplate::parse("relais/{gateway}/{device}").ok()
            }
        },
        (None, None) => None,
    };
    let published = match format {
        Format::Json => topic.as_ref(),
        Format::JsonBatch => batch_topic.as_ref(),
        // Sparkplug topics name the edge node (the gateway id by default).
        Format::Sparkplug => None,
    };
    warn_shared_topics(r, raw, format, published, gateway);
    let status_topic = match (&raw.status_topic, &topic) {
        (Some(s), _) => template(r, s, "status_topic").map(|t| {
            if t.uses_device() || t.uses_tag() {
                r.error(s.span(), "status_topic", "status_topic may only use {gateway}");
            }
            t.render(gateway, "", "")
        }),
        (None, Some(t)) => Some(default_status_topic(t, gateway)),
        (None, None) => None,
    };
    (topic, batch_topic, status_topic)
}

/// A classroom (or a plant) of gateways on one broker: a published template
/// without the gateway collides as soon as two gateways share device and tag
/// names. A warning, with the template fixed.
fn warn_shared_topics(r: &mut Reader<'_, '_>, raw: &RawSink, format: Format, published: Option<&TopicTemplate>, gateway: &str) {
    let Some(t) = published.filter(|t| !t.per_gateway(gateway)) else { return };
    let (what, span) = match (format, &raw.batch_topic) {
        (Format::JsonBatch, Some(b)) => ("batch_topic", b.span()),
        _ => ("topic", raw.topic.as_ref().map_or(raw.name.span(), |t| t.span())),
    };
    r.warn(
        span,
        what,
        format!(
            "{what} {:?} has no {{gateway}} level: every gateway with the same device and tag names publishes on the same topics \
             and their values collide (thirty students on one broker); use e.g. \"{}\", or write this gateway's id as a level",
            t.as_str(),
            with_gateway_level(t.as_str())
        ),
    );
}

/// `{prefix}/relais/{gateway}/status` under the data topic's static prefix
/// (without repeating a `relais` level).
fn default_status_topic(t: &TopicTemplate, gateway: &str) -> String {
    let p = t.static_prefix();
    if p.is_empty() || p == "relais" || p.ends_with("/relais") {
        format!("{}relais/{gateway}/status", p.strip_suffix("relais").unwrap_or(""))
    } else {
        format!("{p}/relais/{gateway}/status")
    }
}

/// With `format = "sparkplug"`: the group and edge node IDs, and the NDEATH
/// topic in place of the status topic (the node's own "offline"); `retain`
/// must stay false (Sparkplug 3.0 §4.2). Otherwise the Sparkplug keys are refused.
fn sparkplug_keys(
    raw: &RawSink,
    diag: &mut Diag<'_>,
    key: &str,
    gateway: &str,
    status_topic: Option<String>,
) -> (Option<super::sparkplug::config::SparkplugConfig>, Option<String>) {
    let is_sp = raw.format.as_ref().is_some_and(|f| f.get_ref() == "sparkplug");
    if !is_sp {
        for (v, name) in [(&raw.group_id, "group_id"), (&raw.edge_node_id, "edge_node_id")] {
            if let Some(v) = v {
                diag.error(
                    v.span(),
                    &format!("{key} / {name}"),
                    format!("{name} is a Sparkplug key; set format = \"sparkplug\" or remove it"),
                );
            }
        }
        return (None, status_topic);
    }
    if raw.retain == Some(true) {
        diag.error(
            raw.name.span(),
            &format!("{key} / retain"),
            "Sparkplug messages are never retained (Sparkplug 3.0 §4.2); remove retain",
        );
    }
    for (v, name) in [(&raw.topic, "topic"), (&raw.batch_topic, "batch_topic"), (&raw.status_topic, "status_topic")] {
        if let Some(v) = v {
            diag.error(
                v.span(),
                &format!("{key} / {name}"),
                format!("format = \"sparkplug\" uses the spBv1.0/<group_id>/... topics; remove {name}"),
            );
        }
    }
    let sp = super::sparkplug::config::parse(raw.group_id.as_ref(), raw.edge_node_id.as_ref(), diag, key, gateway, raw.name.span());
    let status = sp.as_ref().map(|c| format!("spBv1.0/{}/NDEATH/{}", c.group_id, c.edge_node_id));
    (sp, status.or(status_topic))
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::JsonBatch => "json-batch",
            Format::Sparkplug => "sparkplug",
        })
    }
}

/// `template` with a `{gateway}` level before its first placeholder level
/// (`icam/line5/{device}/{tag}` → `icam/line5/{gateway}/{device}/{tag}`), for
/// the collision warning's suggestion.
fn with_gateway_level(template: &str) -> String {
    let levels: Vec<&str> = template.split('/').collect();
    let at = levels.iter().position(|l| l.contains('{')).unwrap_or(levels.len());
    let mut out: Vec<&str> = levels[..at].to_vec();
    out.push("{gateway}");
    out.extend(&levels[at..]);
    out.join("/")
}
