//! NATS messages (pure): records → subject, payload and `Nats-Msg-Id`.
//!
//! - `json`: one record per message. A sample is the MQTT `json` message
//!   (`docs/payloads.md`) on its tag's subject (`relais.{gateway}.{device}.{tag}`);
//!   an event is the MQTT event message on `{event_subject}.{kind}`
//!   (`relais.gw._event.sink.connected`). `Nats-Msg-Id` = `{gateway}:{seq}`.
//! - `json-batch`: one message per run of consecutive records (in `seq`
//!   order, all devices), on `batch_subject`:
//!   `{"gateway":…,"first_seq":…,"last_seq":…,"samples":[…],"events":[…]}`,
//!   each item without `gateway`. `Nats-Msg-Id` = `{gateway}:{first}-{last}`.
//!
//! Every message covers one run of `seq` (`first..=last`; a `json-batch`
//! never spans a record the stream already holds), so its `Nats-Msg-Id`
//! says which records it stores (see the README).
//! A payload above `max_message_bytes` (the server refuses it, which would
//! block every record behind it) is split (batches) or replaced by a bad
//! sample with reason `payload_too_large` (one sample).

use bytes::Bytes;

use super::config::Format;
use super::subject::{SubjectTemplate, token};
use crate::model::{Event, Quality, Record, Sample, Value};
use crate::sinks::record_json::{write_event, write_sample};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct NatsMsg {
    /// Subject.
    pub subject: String,
    /// JSON payload.
    pub payload: Bytes,
    /// `Nats-Msg-Id`.
    pub id: String,
    /// Records it carries.
    pub records: usize,
    /// The `seq` range it covers (`first..=last`, as in its `Nats-Msg-Id`).
    pub seqs: (u64, u64),
}

/// What the encoder needs to know.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Gateway id.
    pub gateway: String,
    /// Payload layout.
    pub format: Format,
    /// Per-record subject.
    pub subject: SubjectTemplate,
    /// Batch subject.
    pub batch_subject: SubjectTemplate,
    /// Event subject prefix.
    pub event_subject: SubjectTemplate,
    /// Most records per batch.
    pub batch_max_records: usize,
    /// Largest payload.
    pub max_bytes: usize,
}

/// The `seq` range of a `Nats-Msg-Id` written by `gateway` (`gw:17` →
/// 17..=17, `gw:10-17` → 10..=17); `None` when another publisher wrote it.
pub fn seqs_of_id(gateway: &str, id: &str) -> Option<(u64, u64)> {
    let rest = id.strip_prefix(gateway)?.strip_prefix(':')?;
    let (a, b) = rest.split_once('-').unwrap_or((rest, rest));
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

fn too_large(s: &Sample, size: usize, max: usize) -> Sample {
    let mut r = s.clone();
    r.value = Value::Null;
    r.quality = Quality::Bad;
    r.reason = Some(format!("payload_too_large: the message was {size} bytes, above max_message_bytes ({max}); value dropped").into());
    r
}

fn shorter_event(e: &Event) -> Event {
    let mut r = e.clone();
    r.details = serde_json::Value::Null;
    r.message = e.message.chars().take(1000).collect();
    r
}

impl Layout {
    /// The messages for `records` (in `seq` order), appended to `out`.
    pub fn encode(&self, records: &[&Record], out: &mut Vec<NatsMsg>) {
        match self.format {
            Format::Json => records.iter().for_each(|r| out.push(self.one(r))),
            Format::JsonBatch => {
                for chunk in records.chunks(self.batch_max_records.max(1)) {
                    self.batch(chunk, out);
                }
            }
        }
    }

    fn one(&self, r: &Record) -> NatsMsg {
        let mut buf = Vec::with_capacity(256);
        let (subject, seq) = match r {
            Record::Sample(s) => {
                write_sample(&mut buf, Some(&self.gateway), s);
                if buf.len() > self.max_bytes {
                    let size = buf.len();
                    buf.clear();
                    write_sample(&mut buf, Some(&self.gateway), &too_large(s, size, self.max_bytes));
                }
                (self.subject.render(&self.gateway, &s.meta.device, &s.meta.tag), s.seq)
            }
            Record::Event(e) => {
                write_event(&mut buf, Some(&self.gateway), e);
                if buf.len() > self.max_bytes {
                    buf.clear();
                    write_event(&mut buf, Some(&self.gateway), &shorter_event(e));
                }
                let mut subject = self.event_subject.render(&self.gateway, "", "");
                for part in e.kind.split('.') {
                    subject.push('.');
                    token(part, &mut subject);
                }
                (subject, e.seq)
            }
        };
        NatsMsg { subject, payload: buf.into(), id: format!("{}:{seq}", self.gateway), records: 1, seqs: (seq, seq) }
    }

    fn body(&self, chunk: &[&Record], first: u64, last: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() * 200 + 128);
        out.extend_from_slice(b"{\"gateway\":");
        let _ = serde_json::to_writer(&mut out, &self.gateway);
        out.extend_from_slice(format!(",\"first_seq\":{first},\"last_seq\":{last},\"samples\":[").as_bytes());
        let mut n = 0;
        for s in chunk.iter().filter_map(|r| if let Record::Sample(s) = r { Some(s) } else { None }) {
            if n > 0 {
                out.push(b',');
            }
            write_sample(&mut out, None, s);
            n += 1;
        }
        out.extend_from_slice(b"],\"events\":[");
        n = 0;
        for e in chunk.iter().filter_map(|r| if let Record::Event(e) = r { Some(e) } else { None }) {
            if n > 0 {
                out.push(b',');
            }
            write_event(&mut out, None, e);
            n += 1;
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// One batch message, split in halves until it fits `max_bytes`.
    fn batch(&self, chunk: &[&Record], out: &mut Vec<NatsMsg>) {
        let (Some(first), Some(last)) = (chunk.first().map(|r| r.seq()), chunk.last().map(|r| r.seq())) else { return };
        let mut body = self.body(chunk, first, last);
        if body.len() > self.max_bytes && chunk.len() > 1 {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            self.batch(a, out);
            self.batch(b, out);
            return;
        }
        if body.len() > self.max_bytes {
            let small = match chunk[0] {
                Record::Sample(s) => Record::Sample(too_large(s, body.len(), self.max_bytes)),
                Record::Event(e) => Record::Event(shorter_event(e)),
            };
            body = self.body(&[&small], first, last);
        }
        let subject = self.batch_subject.render(&self.gateway, "", "");
        out.push(NatsMsg {
            subject,
            payload: body.into(),
            id: format!("{}:{first}-{last}", self.gateway),
            records: chunk.len(),
            seqs: (first, last),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventSource, Severity, TagMeta, Timestamp};

    fn layout(format: Format, max_bytes: usize) -> Layout {
        let all = &["gateway", "device", "tag"];
        Layout {
            gateway: "gw".into(),
            format,
            subject: SubjectTemplate::parse("relais.{gateway}.{device}.{tag}", all).unwrap(),
            batch_subject: SubjectTemplate::parse("relais.{gateway}._batch", &["gateway"]).unwrap(),
            event_subject: SubjectTemplate::parse("relais.{gateway}._event", &["gateway"]).unwrap(),
            batch_max_records: 3,
            max_bytes,
        }
    }

    fn records() -> Vec<Record> {
        let meta = TagMeta::new("pump.1", "flow", Some("m3/h"));
        let mut out: Vec<Record> = (0..4)
            .map(|i| {
                let mut s = Sample::good(meta.clone(), Value::F64(i as f64), Timestamp(1_796_000_000_000_000_000));
                s.seq = 10 + i;
                Record::Sample(s)
            })
            .collect();
        let mut e = Event::new("sink.connected", Severity::Info, EventSource::Gateway, "up");
        e.details = serde_json::json!({"a": 1});
        e.seq = 14;
        out.push(Record::Event(e));
        out
    }

    #[test]
    fn one_record_per_message_with_its_id() {
        let recs = records();
        let refs: Vec<&Record> = recs.iter().collect();
        let mut out = Vec::new();
        layout(Format::Json, 1 << 20).encode(&refs, &mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].subject, "relais.gw.pump_1.flow");
        assert_eq!(out[0].id, "gw:10");
        let v: serde_json::Value = serde_json::from_slice(&out[1].payload).unwrap();
        assert_eq!((v["seq"].as_u64(), v["device"].as_str(), v["value"].as_f64()), (Some(11), Some("pump.1"), Some(1.0)));
        assert_eq!(out[4].subject, "relais.gw._event.sink.connected");
        assert_eq!(out[4].id, "gw:14");
        assert_eq!(out[4].seqs, (14, 14));
        assert_eq!(seqs_of_id("gw", "gw:14"), Some((14, 14)));
        assert_eq!(seqs_of_id("gw", "gw:10-17"), Some((10, 17)));
        assert_eq!(seqs_of_id("gw-2", "gw-2:10-17"), Some((10, 17)));
        assert_eq!(seqs_of_id("gw", "gw:17-10"), None);
        assert_eq!(seqs_of_id("gw", "gw:1x"), None);
        assert_eq!(seqs_of_id("gw", "other:17"), None);
        assert_eq!(seqs_of_id("g", "gw:17"), None);
    }

    #[test]
    fn batches_are_contiguous_runs_that_fit() {
        let recs = records();
        let refs: Vec<&Record> = recs.iter().collect();
        let mut out = Vec::new();
        layout(Format::JsonBatch, 1 << 20).encode(&refs, &mut out);
        let ids: Vec<&str> = out.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["gw:10-12", "gw:13-14"]);
        assert_eq!(out[1].seqs, (13, 14));
        let v: serde_json::Value = serde_json::from_slice(&out[1].payload).unwrap();
        assert_eq!(v["samples"][0]["seq"], 13);
        assert_eq!(v["events"][0]["kind"], "sink.connected");
        assert_eq!((v["first_seq"].as_u64(), v["last_seq"].as_u64()), (Some(13), Some(14)));
        assert_eq!(out[0].subject, "relais.gw._batch");
        // Too large: split down to one record, then a bad sample that says so.
        let mut out = Vec::new();
        layout(Format::JsonBatch, 150).encode(&refs[..2], &mut out);
        assert_eq!(out.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["gw:10-10", "gw:11-11"]);
        let v: serde_json::Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert!(v["samples"][0]["reason"].as_str().unwrap().starts_with("payload_too_large"), "{v}");
        assert!(v["samples"][0]["value"].is_null());
    }
}
