//! Records → Sparkplug drafts (pure): one DDATA draft per device per run of
//! samples (at most `batch_max_samples`, and cut before its encoded size
//! could pass `max_message_bytes`: a broker refusing a large message would
//! close the connection on every resend), one NDATA draft per event.
//!
//! The payload itself (aliases, births, `seq`) is built when the draft is
//! handed to the client ([`super::sink`]): `seq` must follow the order of
//! the messages on the wire, births included, and a new session starts
//! over at 0, so nothing of it can be fixed while encoding.

use std::sync::Arc;

use crate::model::{Event, Record, Sample};
use crate::sinks::driver::{Encoder, Prepared};
use crate::sinks::mqtt::encode::event_json;
use crate::sinks::mqtt::encoder::{Part, by_device, parts, too_large};

/// One message to come.
#[derive(Debug)]
pub enum Draft {
    /// A DDATA of one device (samples in `seq` order).
    Device {
        /// Device name (the last topic level).
        device: Arc<str>,
        /// Its samples.
        samples: Vec<Sample>,
    },
    /// An NDATA carrying one event.
    Event {
        /// The event.
        event: Event,
        /// Its JSON (`docs/payloads.md`).
        json: String,
    },
}

/// Bytes of a payload besides its metrics (timestamp, seq, framing), at most.
const PAYLOAD_BYTES: usize = 32;

/// Bytes of one DDATA metric, at most: alias, timestamp, flags, a number
/// value and the properties (`relais_seq`, and `Quality`, `relais_quality`
/// for a sample that is not good) take under 160; text and reason add their length.
fn metric_bytes(s: &Sample) -> usize {
    let text = match &s.value {
        crate::model::Value::Str(t) => t.len(),
        _ => 0,
    };
    160 + text + s.reason.as_deref().map_or(0, str::len)
}

fn draft(device: &Arc<str>, samples: &[Sample]) -> Prepared<Draft> {
    Prepared { msg: Draft::Device { device: device.clone(), samples: samples.to_vec() }, records: samples.len() }
}

/// The Sparkplug encoder.
pub struct SparkplugEncoder {
    gateway: String,
    batch_max: usize,
    /// Largest text value kept in a DDATA; a longer one is replaced by a bad
    /// `payload_too_large` sample.
    max_text: usize,
    /// `max_message_bytes`: a DDATA is cut before its metrics could pass it.
    max_bytes: usize,
}

impl SparkplugEncoder {
    /// An encoder; `max_message_bytes` bounds text values (half of it each).
    pub fn new(gateway: &str, batch_max: usize, max_message_bytes: usize) -> SparkplugEncoder {
        SparkplugEncoder {
            gateway: gateway.to_string(),
            batch_max: batch_max.max(1),
            max_text: max_message_bytes / 2,
            max_bytes: max_message_bytes,
        }
    }

    fn push_samples(&self, run: &[&Sample], out: &mut Vec<Prepared<Draft>>) {
        let fit = |s: &Sample| match &s.value {
            crate::model::Value::Str(t) if t.len() > self.max_text => too_large(s, t.len(), self.max_text),
            _ => s.clone(),
        };
        for (device, samples) in by_device(run) {
            let samples: Vec<Sample> = samples.into_iter().map(fit).collect();
            let mut start = 0;
            let mut bytes = PAYLOAD_BYTES;
            for (i, s) in samples.iter().enumerate() {
                let b = metric_bytes(s);
                if i > start && (i - start >= self.batch_max || bytes + b > self.max_bytes) {
                    out.push(draft(device, &samples[start..i]));
                    (start, bytes) = (i, PAYLOAD_BYTES);
                }
                bytes += b;
            }
            if start < samples.len() {
                out.push(draft(device, &samples[start..]));
            }
        }
    }
}

impl Encoder for SparkplugEncoder {
    type Msg = Draft;

    /// Samples grouped per device between two events; each event alone.
    /// Per device, `seq` order is kept.
    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<Draft>>) {
        parts(records, |part| match part {
            Part::Samples(run) => self.push_samples(&run, out),
            Part::Event(e) => {
                let json = String::from_utf8_lossy(&event_json(&self.gateway, e)).into_owned();
                out.push(Prepared { msg: Draft::Event { event: e.clone(), json }, records: 1 });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TagMeta, Timestamp, Value};
    use crate::sinks::mqtt::sparkplug::node::Node;
    use prost::Message;

    #[test]
    fn drafts_stay_under_max_message_bytes_and_batch_max() {
        let meta = TagMeta::new("pump1", "note", None);
        let records: Vec<Record> = (1..=40u64)
            .map(|i| {
                let mut s = Sample::good(meta.clone(), Value::Str("x".repeat(400)), Timestamp::from_millis(i as i64));
                s.seq = i;
                Record::Sample(s)
            })
            .collect();
        let refs: Vec<&Record> = records.iter().collect();
        let mut out = Vec::new();
        SparkplugEncoder::new("gw", 500, 4096).encode(&refs, &mut out);
        assert!(out.len() > 1, "split by size");
        assert_eq!(out.iter().map(|p| p.records).sum::<usize>(), 40, "every sample once");
        let mut node = Node::new("g", "e");
        let device: Arc<str> = "pump1".into();
        for p in &out {
            let Draft::Device { samples, .. } = &p.msg else { panic!("a DDATA draft") };
            node.plan(&device, samples);
            let size = node.ddata("pump1", samples, u64::MAX).encoded_len();
            assert!(size <= 4096, "a DDATA of {size} bytes");
        }
        let mut out = Vec::new();
        SparkplugEncoder::new("gw", 7, 1 << 20).encode(&refs, &mut out);
        assert_eq!(out.iter().map(|p| p.records).collect::<Vec<_>>(), [7, 7, 7, 7, 7, 5]);
    }
}
