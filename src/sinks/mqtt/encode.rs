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

use crate::model::{Sample, format_rfc3339};
use crate::sinks::record_json::{SampleJson, write_event, write_sample};

#[derive(Serialize)]
struct Batch<'a> {
    gateway: &'a str,
    device: &'a str,
    samples: Vec<SampleJson<'a>>,
}

/// One sample as a `json` message body.
pub fn sample_json(gateway: &str, s: &Sample) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_sample(&mut out, Some(gateway), s);
    out
}

/// Samples of one device as a `json-batch` message body.
pub fn batch_json<'a>(gateway: &str, device: &str, samples: impl Iterator<Item = &'a Sample>) -> Vec<u8> {
    let batch = Batch { gateway, device, samples: samples.map(|s| SampleJson::new(None, None, s)).collect() };
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

/// One event as a message body (`docs/event.schema.json`).
pub fn event_json(gateway: &str, e: &crate::model::Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_event(&mut out, Some(gateway), e);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Quality, TagMeta, Timestamp, Value};

    #[test]
    fn json_and_json_batch_bodies() {
        let mut s = Sample::good(TagMeta::new("pump1", "temperature", Some("Cel")), Value::F64(79.5), Timestamp(1_796_000_000_120_000_000));
        s.recv_ts = Timestamp(1_796_000_000_130_000_000);
        s.seq = 1234;
        let mut b = Sample::good(TagMeta::new("pump1", "count", None), Value::Null, Timestamp(1_796_000_000_000_000_000));
        (b.quality, b.reason, b.recv_ts, b.seq, b.status) = (Quality::Bad, Some("timeout".into()), b.ts, 1235, Some(0x8000_0000));
        let one = String::from_utf8(sample_json("gw", &s)).unwrap();
        assert_eq!(
            one,
            r#"{"gateway":"gw","device":"pump1","tag":"temperature","value":79.5,"unit":"Cel","quality":"good","ts":"2026-11-30T00:53:20.120Z","recv_ts":"2026-11-30T00:53:20.130Z","seq":1234}"#
        );
        let batch = String::from_utf8(batch_json("gw", "pump1", [&s, &b].into_iter())).unwrap();
        assert_eq!(
            batch,
            r#"{"gateway":"gw","device":"pump1","samples":[{"tag":"temperature","value":79.5,"unit":"Cel","quality":"good","ts":"2026-11-30T00:53:20.120Z","recv_ts":"2026-11-30T00:53:20.130Z","seq":1234},{"tag":"count","value":null,"quality":"bad","reason":"timeout","ts":"2026-11-30T00:53:20Z","recv_ts":"2026-11-30T00:53:20Z","status_code":2147483648,"seq":1235}]}"#
        );
    }
}
