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
pub mod writable;

use crate::component::{ParseCx, parse_by_type};
use crate::diag::{Diag, Item};

crate::component::family! {
    /// One `[[device]]`, by protocol.
    pub enum DeviceConfig {
        /// `protocol = "modbus-tcp"`, `"modbus-rtu"` or `"modbus-rtu-over-tcp"`.
        Modbus(modbus::component::Modbus),
        /// `protocol = "opcua"`.
        OpcUa(opcua::component::OpcUa),
    }
}

crate::component::family! {
    /// One `[[source]]`, by type.
    pub enum SourceConfig {
        /// `type = "file"`: settings for `relais import`.
        File(file::component::File),
        /// `type = "watch"`.
        Watch(file::component::Watch),
        /// `type = "tail"`.
        Tail(file::component::Tail),
        /// `type = "http"`.
        Http(http::component::Http),
        /// `type = "mqtt-in"`.
        MqttIn(mqtt_in::component::MqttIn),
    }
}

impl DeviceConfig {
    /// The device name.
    pub fn name(&self) -> &str {
        self.component().name()
    }

    /// The names of its tags.
    pub fn tag_names(&self) -> Vec<String> {
        self.component().tags().into_iter().map(|(_, t)| t).collect()
    }

    /// Its tags with `writable = true`, with their limits.
    pub fn writable_tags(&self) -> Vec<(&str, &writable::TagWrite)> {
        match self {
            DeviceConfig::Modbus(d) => d.tags.iter().filter_map(|t| Some((t.name.as_str(), t.write.as_ref()?))).collect(),
            DeviceConfig::OpcUa(d) => d.tags.iter().filter_map(|t| Some((t.name.as_str(), t.write.as_ref()?))).collect(),
        }
    }
}

impl SourceConfig {
    /// True when it may name devices from its data (a CSV column, a JSON
    /// path, an MQTT topic level) besides its `device`.
    pub fn names_devices(&self) -> bool {
        let c = self.common();
        c.parse.csv.device_column.is_some()
            || c.parse.json.device.is_some()
            || matches!(self, SourceConfig::MqttIn(m) if m.device_level.is_some())
    }
}

/// What the configuration supplies (devices, their tags and writable tags,
/// the sources' devices), for the checks of rules and interlocks.
pub fn known_tags(devices: &[DeviceConfig], sources: &[SourceConfig]) -> crate::component::cond::KnownTags {
    crate::component::cond::KnownTags {
        devices: devices.iter().map(|d| (d.name().to_string(), d.tag_names())).collect(),
        writable: devices.iter().flat_map(|d| d.writable_tags().into_iter().map(move |(t, _)| format!("{}/{t}", d.name()))).collect(),
        other_devices: sources.iter().map(|s| s.common().device.clone()).chain([crate::names::HEALTH_DEVICE.to_string()]).collect(),
        open: sources.iter().any(SourceConfig::names_devices),
    }
}

/// Errors for interlocks that name a tag the configuration does not supply:
/// a tag a `[[device]]` does not have, or a device nothing supplies (the
/// interlock could never hold, every write would be refused).
pub fn check_interlocks(devices: &[DeviceConfig], known: &crate::component::cond::KnownTags, diag: &mut Diag<'_>) {
    for d in devices {
        for (tag, w) in d.writable_tags() {
            let Some(il) = &w.interlock else { continue };
            let key = format!("device {:?} / tag {tag:?} / interlock", d.name());
            for leaf in il.cond.leaves() {
                let Some((dev, t)) = leaf.tag.split_once('/') else { continue };
                let why = match known.tags_of(dev) {
                    Some(tags) if !tags.iter().any(|x| x == t) => {
                        format!("device {dev:?} has no tag {t:?} (its tags: {})", tags.join(", "))
                    }
                    None if !known.supplies(dev) => {
                        format!("no [[device]] or [[source]] supplies device {dev:?} (devices: {})", known.device_names())
                    }
                    _ => continue,
                };
                diag.error(
                    il.span.clone(),
                    &key,
                    format!("{why}: the interlock could never hold and every write of {tag:?} would be refused"),
                );
            }
        }
    }
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
    /// Where sources emit their events (`None` under `relais import`).
    pub events: Option<crate::ingest::Events>,
    /// `[[check]]`: each producing task makes its own checker.
    pub checks: crate::component::checks::Checks,
}

impl SourceCtx {
    /// The context of a family's tasks, from the component context.
    pub fn new(ctx: &crate::component::Ctx<'_>) -> anyhow::Result<SourceCtx> {
        Ok(SourceCtx {
            ingest: ctx.ingest.clone(),
            reader: ctx.buffer.reader()?,
            telemetry: ctx.telemetry.clone(),
            stop: ctx.stop.clone(),
            events: ctx.events.clone(),
            checks: ctx.checks.clone(),
        })
    }
}

/// Parses one `[[device]]` item by its `protocol`.
pub fn parse_device(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<DeviceConfig> {
    parse_by_type(item, d, cx, ("protocol", "protocol", &DeviceConfig::type_list()), DeviceConfig::parse)
}

/// Parses one `[[source]]` item by its `type`.
pub fn parse_source(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<SourceConfig> {
    parse_by_type(item, d, cx, ("type", "source type", SOURCE_TYPES), SourceConfig::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_lists_match_the_families() {
        assert_eq!(SourceConfig::type_list(), SOURCE_TYPES);
        assert_eq!(DeviceConfig::type_list(), "modbus-tcp, modbus-rtu, modbus-rtu-over-tcp, opcua");
    }
}
