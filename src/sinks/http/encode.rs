//! HTTP bodies (pure): records → one POST body per batch.
//!
//! - `json`: `{"gateway":…,"first_seq":…,"last_seq":…,"samples":[…],"events":[…]}`;
//!   each sample is the MQTT `json` message without `gateway`, each event the
//!   MQTT event message without `gateway` (`docs/payloads.md`).
//! - `influx`: InfluxDB line protocol (influxdb-line-protocol's builder does
//!   the escaping). A sample is `{measurement},gateway=…,device=…,tag=…[,unit=…],quality=…`
//!   with one typed value field — `value` (float), `value_int` (integer),
//!   `value_uint` (unsigned, above 2^63 − 1), `value_bool` or `value_text`,
//!   so one measurement never mixes field types —, `seq` (integer) and
//!   `reason` when not good; timestamp = `ts` in ns. An event is
//!   `{measurement}_event,gateway=…,kind=…,severity=…,source_kind=…[,source=…] message=…,details=…,seq=…`.
//!   Line protocol cannot carry a line break in a value: such a text sample is
//!   sent as a bad sample with reason `unsupported_value` instead of altered
//!   (line breaks in a reason or message become spaces).
//!
//! Every body remembers where each record's own text lies in it, so a body
//! the endpoint refuses for good goes to the quarantine record by record.

use std::ops::Range;

use bytes::Bytes;
use influxdb_line_protocol::LineProtocolBuilder;

use super::config::Format;
use crate::model::{Event, Record, Sample, Value};
use crate::sinks::record_json::{write_event, write_sample};

/// One POST.
#[derive(Debug, Clone)]
pub struct Body {
    /// The body.
    pub bytes: Bytes,
    /// `application/json` or `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    /// `Idempotency-Key`: `{gateway}:{first_seq}-{last_seq}`.
    pub key: String,
    /// `seq` of each record and where its text lies in `bytes`.
    pub items: Vec<(u64, Range<usize>)>,
}

impl Body {
    /// The text of each record (for the quarantine).
    pub fn record_texts(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        self.items.iter().map(|(seq, r)| (*seq, String::from_utf8_lossy(&self.bytes[r.clone()]).into_owned()))
    }
}

/// Encodes one batch of records (in `seq` order, at least one).
pub fn encode(format: Format, gateway: &str, measurement: &str, records: &[&Record]) -> Body {
    let first = records.first().map_or(0, |r| r.seq());
    let last = records.last().map_or(0, |r| r.seq());
    let key = format!("{gateway}:{first}-{last}");
    match format {
        Format::Json => json_body(gateway, first, last, records, key),
        Format::Influx => influx_body(gateway, measurement, records, key),
    }
}

fn json_body(gateway: &str, first: u64, last: u64, records: &[&Record], key: String) -> Body {
    let mut out = Vec::with_capacity(records.len() * 220 + 128);
    out.extend_from_slice(b"{\"gateway\":");
    let _ = serde_json::to_writer(&mut out, gateway);
    out.extend_from_slice(format!(",\"first_seq\":{first},\"last_seq\":{last},\"samples\":[").as_bytes());
    let mut items = Vec::with_capacity(records.len());
    let mut n = 0;
    for r in records {
        if let Record::Sample(s) = r {
            if n > 0 {
                out.push(b',');
            }
            let at = out.len();
            write_sample(&mut out, None, s);
            items.push((s.seq, at..out.len()));
            n += 1;
        }
    }
    out.extend_from_slice(b"],\"events\":[");
    n = 0;
    for r in records {
        if let Record::Event(e) = r {
            if n > 0 {
                out.push(b',');
            }
            let at = out.len();
            write_event(&mut out, None, e);
            items.push((e.seq, at..out.len()));
            n += 1;
        }
    }
    out.extend_from_slice(b"]}");
    items.sort_by_key(|(s, _)| *s);
    Body { bytes: out.into(), content_type: "application/json", key, items }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn sample_line(buf: &mut Vec<u8>, gateway: &str, measurement: &str, s: &Sample) {
    let text_break = matches!(&s.value, Value::Str(t) if t.contains(['\n', '\r']));
    let (quality, reason) = if text_break {
        ("bad", Some("unsupported_value: a text value with a line break cannot be written in line protocol".to_string()))
    } else {
        (s.quality.as_str(), s.reason.as_deref().map(one_line))
    };
    let b = LineProtocolBuilder::new_with(std::mem::take(buf))
        .measurement(measurement)
        .tag("gateway", gateway)
        .tag("device", &s.meta.device)
        .tag("tag", &s.meta.tag);
    let b = match s.meta.unit.as_deref() {
        Some(u) if !u.is_empty() => b.tag("unit", u),
        _ => b,
    };
    let b = b.tag("quality", quality);
    let b = match (&s.value, text_break) {
        (_, true) | (Value::Null, _) => b.field("seq", s.seq as i64),
        (Value::F64(v), _) if !v.is_finite() => b.field("seq", s.seq as i64),
        (Value::F64(v), _) => b.field("value", *v).field("seq", s.seq as i64),
        (Value::I64(v), _) => b.field("value_int", *v).field("seq", s.seq as i64),
        (Value::U64(v), _) if *v <= i64::MAX as u64 => b.field("value_int", *v as i64).field("seq", s.seq as i64),
        (Value::U64(v), _) => b.field("value_uint", *v).field("seq", s.seq as i64),
        (Value::Bool(v), _) => b.field("value_bool", *v).field("seq", s.seq as i64),
        (Value::Str(t), _) => b.field("value_text", t.as_str()).field("seq", s.seq as i64),
    };
    let b = match &reason {
        Some(r) => b.field("reason", r.as_str()),
        None => b,
    };
    *buf = b.timestamp(s.ts.as_nanos()).close_line().build();
}

fn event_line(buf: &mut Vec<u8>, gateway: &str, measurement: &str, e: &Event) {
    let source = e.source.name();
    let m = format!("{measurement}_event");
    let b = LineProtocolBuilder::new_with(std::mem::take(buf))
        .measurement(&m)
        .tag("gateway", gateway)
        .tag("kind", &e.kind)
        .tag("severity", e.severity.as_str())
        .tag("source_kind", e.source.kind());
    let b = if source.is_empty() { b } else { b.tag("source", &source) };
    let details = if e.details.is_null() { String::new() } else { e.details.to_string() };
    let b = b.field("message", one_line(&e.message).as_str()).field("details", details.as_str()).field("seq", e.seq as i64);
    *buf = b.timestamp(e.ts.as_nanos()).close_line().build();
}

fn influx_body(gateway: &str, measurement: &str, records: &[&Record], key: String) -> Body {
    let mut out = Vec::with_capacity(records.len() * 160);
    let mut items = Vec::with_capacity(records.len());
    for r in records {
        let at = out.len();
        match r {
            Record::Sample(s) => sample_line(&mut out, gateway, measurement, s),
            Record::Event(e) => event_line(&mut out, gateway, measurement, e),
        }
        items.push((r.seq(), at..out.len()));
    }
    Body { bytes: out.into(), content_type: "text/plain; charset=utf-8", key, items }
}

/// Splits `records` into bodies of at most `max_records` records and, when
/// possible, `max_bytes` bytes (a batch too large is cut in halves; a single
/// record is sent whatever its size: the endpoint's 413 then quarantines it).
pub fn encode_batches(
    format: Format,
    gateway: &str,
    measurement: &str,
    records: &[&Record],
    (max_records, max_bytes): (usize, usize),
    out: &mut Vec<Body>,
) {
    for chunk in records.chunks(max_records.max(1)) {
        push_fitting(format, gateway, measurement, chunk, max_bytes, out);
    }
}

fn push_fitting(format: Format, gateway: &str, measurement: &str, chunk: &[&Record], max_bytes: usize, out: &mut Vec<Body>) {
    let body = encode(format, gateway, measurement, chunk);
    if body.bytes.len() > max_bytes && chunk.len() > 1 {
        let (a, b) = chunk.split_at(chunk.len() / 2);
        push_fitting(format, gateway, measurement, a, max_bytes, out);
        push_fitting(format, gateway, measurement, b, max_bytes, out);
    } else {
        out.push(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventSource, Severity, TagMeta, Timestamp};

    fn sample(seq: u64, v: Value) -> Record {
        let mut s = Sample::good(TagMeta::new("pump 1", "temp,in", Some("Cel")), v, Timestamp(1_796_000_000_000_000_123));
        s.seq = seq;
        Record::Sample(s)
    }

    #[test]
    fn json_body_with_ranges() {
        let mut e = Event::new("sink.connected", Severity::Info, EventSource::Sink("x".into()), "up");
        e.seq = 11;
        let recs = [sample(10, Value::F64(1.5)), Record::Event(e), sample(12, Value::I64(i64::MIN))];
        let refs: Vec<&Record> = recs.iter().collect();
        let b = encode(Format::Json, "gw", "relais", &refs);
        assert_eq!(b.key, "gw:10-12");
        let v: serde_json::Value = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(v["first_seq"], 10);
        assert_eq!(v["last_seq"], 12);
        assert_eq!(v["samples"].as_array().unwrap().len(), 2);
        assert_eq!(v["samples"][1]["value"].as_i64(), Some(i64::MIN));
        assert_eq!(v["events"][0]["kind"], "sink.connected");
        let texts: Vec<(u64, String)> = b.record_texts().collect();
        assert_eq!(texts.iter().map(|t| t.0).collect::<Vec<_>>(), vec![10, 11, 12]);
        let one: serde_json::Value = serde_json::from_str(&texts[2].1).unwrap();
        assert_eq!(one["seq"], 12);
    }

    #[test]
    fn influx_lines_are_escaped_and_typed() {
        let recs = [
            sample(1, Value::F64(2.5)),
            sample(2, Value::U64(u64::MAX)),
            sample(3, Value::Str("a\nb".into())),
            sample(4, Value::F64(f64::NAN)),
            sample(5, Value::Bool(true)),
        ];
        let refs: Vec<&Record> = recs.iter().collect();
        let b = encode(Format::Influx, "gw", "relais", &refs);
        let text = String::from_utf8(b.bytes.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], r"relais,gateway=gw,device=pump\ 1,tag=temp\,in,unit=Cel,quality=good value=2.5,seq=1i 1796000000000000123");
        assert!(lines[1].contains("value_uint=18446744073709551615u"), "{}", lines[1]);
        assert!(
            lines[2].contains("quality=bad") && lines[2].contains("unsupported_value") && !lines[2].contains("value_text"),
            "{}",
            lines[2]
        );
        assert!(!lines[3].contains("value="), "NaN is not written: {}", lines[3]);
        assert!(lines[4].contains("value_bool=true"), "{}", lines[4]);
    }

    #[test]
    fn big_batches_are_split() {
        let recs: Vec<Record> = (1..=100).map(|i| sample(i, Value::F64(i as f64))).collect();
        let refs: Vec<&Record> = recs.iter().collect();
        let mut out = Vec::new();
        encode_batches(Format::Json, "gw", "relais", &refs, (30, 4096), &mut out);
        assert!(out.len() >= 4, "{}", out.len());
        assert!(out.iter().all(|b| b.bytes.len() <= 4096));
        let n: usize = out.iter().map(|b| b.items.len()).sum();
        assert_eq!(n, 100);
    }
}
