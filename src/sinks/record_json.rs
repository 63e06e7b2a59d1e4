//! Records as JSON objects (pure), shared by the sinks: the MQTT `json` and
//! `json-batch` messages, the HTTPS and NATS bodies and the quarantine copy
//! of a row PostgreSQL refused. The
//! fields and their meaning are those of `docs/payloads.md` (the MQTT `json`
//! message): integers exact, 64-bit included (field case B03); no NaN or
//! Infinity (`null` instead, field case B29); RFC 3339 UTC timestamps.

use serde::Serialize;

use crate::model::{Event, Sample, Value, format_rfc3339};

/// One sample as a JSON object (serialize it with `serde_json`): `gateway`
/// and `device` when given, then `tag`, `value`, `unit`, `quality`,
/// `reason`, `ts`, `recv_ts`, `server_ts`, `status_code` and `seq` (absent
/// optional fields are left out).
#[derive(Serialize)]
pub struct SampleJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    tag: &'a str,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    quality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    ts: String,
    recv_ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u32>,
    seq: u64,
}

#[derive(Serialize)]
struct SourceJson<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
}

#[derive(Serialize)]
struct EventJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<&'a str>,
    kind: &'a str,
    severity: &'static str,
    source: SourceJson<'a>,
    ts: String,
    message: &'a str,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    details: &'a serde_json::Value,
    seq: u64,
}

impl<'a> SampleJson<'a> {
    /// The fields of `s`, with `gateway` and `device` when given (a body
    /// that names them once leaves them out of each sample).
    pub fn new(gateway: Option<&'a str>, device: Option<&'a str>, s: &'a Sample) -> Self {
        SampleJson {
            gateway,
            device,
            tag: &s.meta.tag,
            value: &s.value,
            unit: s.meta.unit.as_deref(),
            quality: s.quality.as_str(),
            reason: s.reason.as_deref(),
            ts: format_rfc3339(s.ts),
            recv_ts: format_rfc3339(s.recv_ts),
            server_ts: s.server_ts.map(format_rfc3339),
            status_code: s.status,
            seq: s.seq,
        }
    }
}

/// Appends one sample as a JSON object to `out`, with its `device`; with
/// `gateway` when given (a body that names the gateway once leaves it out
/// of each sample).
pub fn write_sample(out: &mut Vec<u8>, gateway: Option<&str>, s: &Sample) {
    // Serializing these plain fields cannot fail.
    let _ = serde_json::to_writer(&mut *out, &SampleJson::new(gateway, Some(&s.meta.device), s));
}

/// Appends one event as a JSON object (`docs/event.schema.json`) to `out`.
pub fn write_event(out: &mut Vec<u8>, gateway: Option<&str>, e: &Event) {
    let name = e.source.name();
    let j = EventJson {
        gateway,
        kind: &e.kind,
        severity: e.severity.as_str(),
        source: SourceJson { kind: e.source.kind(), name: &name },
        ts: format_rfc3339(e.ts),
        message: &e.message,
        details: &e.details,
        seq: e.seq,
    };
    let _ = serde_json::to_writer(&mut *out, &j);
}

/// One record as a JSON text (with `gateway`), for the quarantine.
pub fn record_text(gateway: &str, r: &crate::model::Record) -> String {
    let mut out = Vec::new();
    match r {
        crate::model::Record::Sample(s) => write_sample(&mut out, Some(gateway), s),
        crate::model::Record::Event(e) => write_event(&mut out, Some(gateway), e),
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TagMeta, Timestamp};

    #[test]
    fn exact_integers_and_no_nan() {
        let meta = TagMeta::new("meter", "energy", Some("W.h"));
        let mut s = Sample::good(meta.clone(), Value::U64((1 << 53) + 1), Timestamp(1_796_000_000_123_000_000));
        s.seq = 42;
        let mut out = Vec::new();
        write_sample(&mut out, None, &s);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"value\":9007199254740993"), "{text}");
        assert!(text.contains("\"seq\":42") && !text.contains("gateway"), "{text}");
        let n = Sample::good(meta, Value::F64(f64::NAN), Timestamp(0));
        let mut out = Vec::new();
        write_sample(&mut out, Some("gw"), &n);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["value"].is_null() && v["gateway"] == "gw", "{v}");
    }
}
