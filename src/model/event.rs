//! The event record beside the sample: state changes (device up/down, sink
//! connected/disconnected), buffer drops, and later alarms, detections,
//! security events and write audits.
//!
//! An event is accepted like a sample: when the buffer writer commits it, it
//! gets a `seq` from the same sequence as the samples, so one `seq` orders
//! everything a gateway produced. Payload and JSON Schema: `docs/payloads.md`,
//! `docs/event.schema.json`.

use std::sync::Arc;

use super::{Sample, Timestamp};

/// How serious an event is (the order of syslog, RFC 5424 §6.2.1, reduced to four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Normal operation worth recording (a sink connected, a device answers again).
    Info,
    /// Something is wrong but data still flows or will be recovered.
    Warning,
    /// Data is lost or a component stopped working.
    Error,
    /// The gateway cannot do its job (the buffer cannot be written).
    Critical,
}

impl Severity {
    /// `info`, `warning`, `error`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Stored code: 0 info … 3 critical.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// From the stored code (unknown codes read as `critical`, never as less).
    pub fn from_code(c: u8) -> Severity {
        match c {
            0 => Severity::Info,
            1 => Severity::Warning,
            2 => Severity::Error,
            _ => Severity::Critical,
        }
    }
}

/// What emitted an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventSource {
    /// The gateway itself (its buffer, its start and stop).
    Gateway,
    /// A configured device (`[[device]]` or `[[source]]` name).
    Device(Arc<str>),
    /// One tag of a device.
    Tag {
        /// Device name.
        device: Arc<str>,
        /// Tag name.
        tag: Arc<str>,
    },
    /// A configured sink (`[[sink]]` name).
    Sink(Arc<str>),
    /// A rule or detector (by name).
    Rule(Arc<str>),
}

impl EventSource {
    /// `gateway`, `device`, `tag`, `sink` or `rule`.
    pub fn kind(&self) -> &'static str {
        match self {
            EventSource::Gateway => "gateway",
            EventSource::Device(_) => "device",
            EventSource::Tag { .. } => "tag",
            EventSource::Sink(_) => "sink",
            EventSource::Rule(_) => "rule",
        }
    }

    /// The name: `pump1`, `pump1/temperature`, `plant-broker`; empty for the gateway.
    pub fn name(&self) -> String {
        match self {
            EventSource::Gateway => String::new(),
            EventSource::Device(d) | EventSource::Sink(d) | EventSource::Rule(d) => d.to_string(),
            EventSource::Tag { device, tag } => format!("{device}/{tag}"),
        }
    }

    /// From the stored `(kind, name)`; unknown kinds read as the gateway.
    pub fn from_parts(kind: &str, name: &str) -> EventSource {
        match kind {
            "device" => EventSource::Device(name.into()),
            "tag" => {
                let (d, t) = name.split_once('/').unwrap_or((name, ""));
                EventSource::Tag { device: d.into(), tag: t.into() }
            }
            "sink" => EventSource::Sink(name.into()),
            "rule" => EventSource::Rule(name.into()),
            _ => EventSource::Gateway,
        }
    }
}

/// One event: what happened, how serious, who said so, when, with details.
///
/// `kind` is a short dotted name chosen by the emitter from the list in
/// `docs/payloads.md` (`device.down`, `sink.connected`, `buffer.dropped` …):
/// letters, digits, `.`, `_` and `-` only, so it can be an MQTT topic level.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Acceptance sequence number, shared with samples (0 before acceptance).
    pub seq: u64,
    /// What happened, e.g. `device.down`.
    pub kind: Arc<str>,
    /// How serious.
    pub severity: Severity,
    /// Who emitted it.
    pub source: EventSource,
    /// When it happened (UTC, gateway clock).
    pub ts: Timestamp,
    /// One human-readable line.
    pub message: String,
    /// Structured details (a JSON object; `null` when none).
    pub details: serde_json::Value,
}

impl Event {
    /// An event happening now. A `kind` with characters outside
    /// `[A-Za-z0-9._-]` has them replaced by `_` (it names an MQTT topic level).
    pub fn new(kind: &str, severity: Severity, source: EventSource, message: impl Into<String>) -> Event {
        Event {
            seq: 0,
            kind: sanitize_kind(kind).into(),
            severity,
            source,
            ts: Timestamp::now(),
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// The same event with `details` (a JSON object).
    pub fn with_details(mut self, details: serde_json::Value) -> Event {
        self.details = details;
        self
    }
}

fn sanitize_kind(k: &str) -> String {
    let s: String = k.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if s.is_empty() { "event".into() } else { s }
}

/// One committed record: a sample or an event, in one `seq` order.
#[derive(Debug, Clone)]
pub enum Record {
    /// A sample.
    Sample(Sample),
    /// An event.
    Event(Event),
}

impl Record {
    /// Its `seq`.
    pub fn seq(&self) -> u64 {
        match self {
            Record::Sample(s) => s.seq,
            Record::Event(e) => e.seq,
        }
    }

    /// When the gateway took it: a sample's `recv_ts`, an event's `ts`.
    pub fn accepted_ts(&self) -> Timestamp {
        match self {
            Record::Sample(s) => s.recv_ts,
            Record::Event(e) => e.ts,
        }
    }

    /// The sample, if it is one.
    pub fn as_sample(&self) -> Option<&Sample> {
        match self {
            Record::Sample(s) => Some(s),
            Record::Event(_) => None,
        }
    }

    /// The event, if it is one.
    pub fn as_event(&self) -> Option<&Event> {
        match self {
            Record::Event(e) => Some(e),
            Record::Sample(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_topic_safe_and_sources_round_trip() {
        let e = Event::new("device/down+#", Severity::Warning, EventSource::Gateway, "x");
        assert_eq!(&*e.kind, "device_down__");
        let t = EventSource::Tag { device: "pump1".into(), tag: "temp".into() };
        assert_eq!(EventSource::from_parts(t.kind(), &t.name()), t);
        assert_eq!(Severity::from_code(Severity::Error.code()), Severity::Error);
        assert_eq!(Severity::from_code(9), Severity::Critical);
    }
}
