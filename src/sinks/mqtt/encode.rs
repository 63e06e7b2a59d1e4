//! JSON payloads (pure). Schema and examples: `docs/payloads.md`,
//! `docs/sample.schema.json`.
//!
//! - `json`: one sample per message:
//!   `{"gateway":"line5-edge01","device":"pump1","tag":"temperature","value":79.34,
//!   "unit":"Cel","quality":"good","ts":"2026-11-29T10:14:33.12Z","recv_ts":"…","seq":1234}`
//! - `json-batch`: one message per device with `samples`, each sample without
//!   `gateway` and `device`.
//!
//! OPC UA samples also carry `server_ts` (ServerTimestamp) and `status_code`
//! (the 32-bit StatusCode, OPC UA Part 4 §7.39) when the server gave them.
//!
//! Non-finite floats are written as `null` (field case B29); integers are
//! written exactly, 64-bit included (field case B03).

use serde::Serialize;

use crate::model::{Sample, Value, format_rfc3339};

#[derive(Serialize)]
struct One<'a> {
    gateway: &'a str,
    device: &'a str,
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
struct Item<'a> {
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
struct Batch<'a> {
    gateway: &'a str,
    device: &'a str,
    samples: Vec<Item<'a>>,
}

/// One sample as a `json` message body.
pub fn sample_json(gateway: &str, s: &Sample) -> Vec<u8> {
    let one = One {
        gateway,
        device: &s.meta.device,
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
    };
    serde_json::to_vec(&one).unwrap_or_default()
}

/// Samples of one device as a `json-batch` message body.
pub fn batch_json<'a>(gateway: &str, device: &str, samples: impl Iterator<Item = &'a Sample>) -> Vec<u8> {
    let batch = Batch {
        gateway,
        device,
        samples: samples
            .map(|s| Item {
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
            })
            .collect(),
    };
    serde_json::to_vec(&batch).unwrap_or_default()
}

/// Birth (`online`) or Last Will (`offline`) body of the status topic.
pub fn status_json(gateway: &str, online: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "state": if online { "online" } else { "offline" },
        "gateway": gateway,
        "version": env!("CARGO_PKG_VERSION"),
        "ts": format_rfc3339(crate::model::Timestamp::now()),
    }))
    .unwrap_or_default()
}

#[derive(Serialize)]
struct EventSourceJson<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
}

#[derive(Serialize)]
struct EventJson<'a> {
    gateway: &'a str,
    kind: &'a str,
    severity: &'static str,
    source: EventSourceJson<'a>,
    ts: String,
    message: &'a str,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    details: &'a serde_json::Value,
    seq: u64,
}

/// One event as a message body (`docs/event.schema.json`).
pub fn event_json(gateway: &str, e: &crate::model::Event) -> Vec<u8> {
    let name = e.source.name();
    let j = EventJson {
        gateway,
        kind: &e.kind,
        severity: e.severity.as_str(),
        source: EventSourceJson { kind: e.source.kind(), name: &name },
        ts: format_rfc3339(e.ts),
        message: &e.message,
        details: &e.details,
        seq: e.seq,
    };
    serde_json::to_vec(&j).unwrap_or_default()
}
