//! Southbound sources: they turn device data into [`crate::model::Sample`]s and
//! push them into the ingest ring. A source never touches SQLite or a sink.
//!
//! - [`modbus`]: Modbus TCP/RTU devices (`[[device]]`).
//! - [`opcua`]: OPC UA servers (`[[device]]`, `protocol = "opcua"`).
//! - [`file`]: `relais import`, watched folders and tailed files (`[[source]]`).
//! - [`http`]: `POST /ingest/{source}`.
//! - [`mqtt_in`]: JSON from subscribed MQTT topics.

pub mod common;
pub mod file;
pub mod http;
pub mod modbus;
pub mod mqtt_in;
pub mod opcua;
pub mod schedule;

use std::path::Path;

use crate::diag::{Diag, Item, peek_str};

/// One `[[source]]`, by type.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `type = "file"`: settings for `relais import`.
    File(file::config::FileSource),
    /// `type = "watch"`.
    Watch(file::config::WatchSource),
    /// `type = "tail"`.
    Tail(file::config::TailSource),
    /// `type = "http"`.
    Http(http::config::HttpSource),
    /// `type = "mqtt-in"`.
    MqttIn(mqtt_in::config::MqttInSource),
}

/// Source types a `[[source]]` may name.
pub const SOURCE_TYPES: &str = "file, watch, tail, http, mqtt-in";

impl SourceConfig {
    /// Name, device and parsing.
    pub fn common(&self) -> &common::SourceCommon {
        match self {
            SourceConfig::File(s) => &s.common,
            SourceConfig::Watch(s) => &s.common,
            SourceConfig::Tail(s) => &s.common,
            SourceConfig::Http(s) => &s.common,
            SourceConfig::MqttIn(s) => &s.common,
        }
    }

    /// The source name.
    pub fn name(&self) -> &str {
        &self.common().name
    }
}

/// What running sources need.
#[derive(Clone)]
pub struct SourceCtx {
    /// The ring.
    pub ingest: std::sync::Arc<crate::ingest::Ingest>,
    /// A buffer reader (stored progress of inputs).
    pub reader: crate::buffer::Reader,
    /// Counters.
    pub telemetry: std::sync::Arc<crate::telemetry::Telemetry>,
    /// Fires at shutdown.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Starts the `[[source]]` entries that run by themselves (watch, tail, http,
/// mqtt-in) and returns their tasks, and the `file` sources (for import).
pub async fn spawn_sources(
    sources: Vec<SourceConfig>,
    ctx: &SourceCtx,
) -> anyhow::Result<(Vec<tokio::task::JoinHandle<()>>, Vec<file::config::FileSource>)> {
    let mut tasks = Vec::new();
    let mut files = Vec::new();
    let mut http = Vec::new();
    for s in sources {
        match s {
            SourceConfig::File(f) => files.push(f),
            SourceConfig::Watch(w) => tasks.push(file::watch::spawn(w, ctx.clone())?),
            SourceConfig::Tail(t) => tasks.push(file::tail::spawn(t, ctx.clone())),
            SourceConfig::Http(h) => http.push(h),
            SourceConfig::MqttIn(m) => tasks.push(mqtt_in::spawn(m, ctx.clone())),
        }
    }
    tasks.extend(http::server::spawn(http, ctx.clone()).await?);
    Ok((tasks, files))
}

/// Parses one `[[source]]` item by its `type`.
pub fn parse_source(item: Item<'_>, d: &mut Diag<'_>, key: &str, gateway: &str, base: &Path) -> Option<SourceConfig> {
    let span = item.span();
    match peek_str(&item, "type") {
        Some((t, tspan)) => match t.as_str() {
            "file" => file::config::parse_file(item, d, key).map(SourceConfig::File),
            "watch" => file::config::parse_watch(item, d, key, base).map(SourceConfig::Watch),
            "tail" => file::config::parse_tail(item, d, key, base).map(SourceConfig::Tail),
            "http" => http::config::parse_http(item, d, key, base).map(SourceConfig::Http),
            "mqtt-in" => mqtt_in::config::parse_mqtt_in(item, d, key, gateway, base).map(SourceConfig::MqttIn),
            other => {
                d.error(tspan, &format!("{key} / type"), format!("unknown source type {other:?}; expected one of {SOURCE_TYPES}"));
                None
            }
        },
        None => {
            d.error(span, &format!("{key} / type"), format!("missing key `type`; expected one of {SOURCE_TYPES}"));
            None
        }
    }
}
