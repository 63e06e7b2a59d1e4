//! `type = "mqtt-in"`: JSON payloads from subscribed topics. See `sample.toml`.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::read::Size;
use crate::diag::{Diag, Item, Reader, de_item};
use crate::mqtt::{CONN_KEYS, ClientConn, parse_conn};
use crate::sources::common::{SourceCommon, parse_common};

/// A validated MQTT ingest source.
#[derive(Debug, Clone)]
pub struct MqttInSource {
    /// Name, device, parsing (format `json` by default).
    pub common: SourceCommon,
    /// Broker connection.
    pub conn: ClientConn,
    /// Topic filters (wildcards `+` and `#` allowed).
    pub topics: Vec<String>,
    /// Subscription QoS, 0 or 1 (default 1: a message is acknowledged to the
    /// broker only once its samples are committed).
    pub qos: u8,
    /// Topic level (0-based) that names the device, e.g. 1 for `sensors/<device>/data`.
    pub device_level: Option<usize>,
    /// Largest payload parsed, bytes (default 16 MiB). A larger message is
    /// quarantined (`payload_too_large`, with its first 64 KiB) and
    /// acknowledged, never left to be redelivered forever.
    pub max_payload: u64,
}

#[derive(Deserialize)]
struct RawIn {
    topics: Spanned<Vec<String>>,
    qos: Option<Spanned<i64>>,
    device_level: Option<Spanned<i64>>,
    max_payload: Option<Spanned<Size>>,
}

/// Type-specific keys (besides the connection keys).
pub const MQTT_IN_KEYS: &[&str] = &["topics", "qos", "device_level", "max_payload"];

/// Default `max_payload`: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: u64 = 16 << 20;

/// Parses a `type = "mqtt-in"` source.
pub fn parse_mqtt_in(item: Item<'_>, d: &mut Diag<'_>, key: &str, gateway: &str, base: &Path) -> Option<MqttInSource> {
    let keys: Vec<&str> = MQTT_IN_KEYS.iter().chain(CONN_KEYS).copied().collect();
    let (mut common, item) = parse_common(item, d, key, &keys)?;
    let key = format!("source {:?}", common.name);
    let k = |s: &str| format!("{key} / {s}");
    let raw: RawIn = de_item(item.clone(), d, &key)?;
    let span = item.span();
    let conn = parse_conn(item, d, &key, base, format!("relais-{gateway}-{}", common.name));
    if common.parse.format.is_none() {
        common.parse.format = Some(crate::parse::spec::Format::Json);
        // JSON by default: only `timestamp_column` (CSV) gives no timestamp.
        if let Some(w) = common.parse.timestamp_warning(crate::parse::spec::Format::Json) {
            d.warn(span, &k("timestamp_column"), w);
        }
    }
    if raw.topics.get_ref().is_empty() {
        d.error(raw.topics.span(), &k("topics"), "topics is empty; give at least one topic filter such as \"sensors/#\"");
    }
    for t in raw.topics.get_ref() {
        if !rumqttc::valid_filter(t) {
            d.error(raw.topics.span(), &k("topics"), format!("{t:?} is not a valid MQTT topic filter"));
        }
    }
    let mut r = Reader::new(d, &key);
    let qos = r.int(&raw.qos, "qos", 0..=1, 1);
    let device_level = r.int_opt(&raw.device_level, "device_level", 0..=32);
    let max_payload = r.size(&raw.max_payload, "max_payload", DEFAULT_MAX_PAYLOAD, 1..=u64::MAX);
    Some(MqttInSource { common, conn: conn?, topics: raw.topics.into_inner(), qos, device_level, max_payload })
}
