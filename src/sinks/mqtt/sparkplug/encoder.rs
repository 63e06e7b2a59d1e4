//! Records → Sparkplug drafts (pure): one DDATA draft per device per run of
//! samples (at most `batch_max_samples`), one NDATA draft per event.
//!
//! The payload itself (aliases, births, `seq`) is built when the draft is
//! handed to the client ([`super::sink`]): `seq` must follow the order of
//! the messages on the wire, births included, and a new session starts
//! over at 0, so nothing of it can be fixed while encoding.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Event, Record, Sample};
use crate::sinks::driver::{Encoder, Prepared};
use crate::sinks::mqtt::encode::event_json;

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

/// The Sparkplug encoder.
pub struct SparkplugEncoder {
    gateway: String,
    batch_max: usize,
    /// Largest text value kept in a DDATA; a longer one is replaced by a bad
    /// `payload_too_large` sample.
    max_text: usize,
}

impl SparkplugEncoder {
    /// An encoder; `max_message_bytes` bounds text values (half of it each).
    pub fn new(gateway: &str, batch_max: usize, max_message_bytes: usize) -> SparkplugEncoder {
        SparkplugEncoder { gateway: gateway.to_string(), batch_max: batch_max.max(1), max_text: max_message_bytes / 2 }
    }

    fn push_samples(&self, run: &[&Sample], out: &mut Vec<Prepared<Draft>>) {
        let mut order: Vec<(Arc<str>, Vec<Sample>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for s in run {
            let i = *index.entry(&*s.meta.device).or_insert_with(|| {
                order.push((s.meta.device.clone(), Vec::new()));
                order.len() - 1
            });
            let s = match &s.value {
                crate::model::Value::Str(t) if t.len() > self.max_text => crate::sinks::mqtt::encoder::too_large(s, t.len(), self.max_text),
                _ => (*s).clone(),
            };
            order[i].1.push(s);
        }
        for (device, samples) in order {
            for chunk in samples.chunks(self.batch_max) {
                out.push(Prepared { msg: Draft::Device { device: device.clone(), samples: chunk.to_vec() }, records: chunk.len() });
            }
        }
    }
}

impl Encoder for SparkplugEncoder {
    type Msg = Draft;

    /// Samples grouped per device between two events; each event alone.
    /// Per device, `seq` order is kept.
    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<Draft>>) {
        let mut run: Vec<&Sample> = Vec::new();
        for r in records {
            match r {
                Record::Sample(s) => run.push(s),
                Record::Event(e) => {
                    if !run.is_empty() {
                        self.push_samples(&std::mem::take(&mut run), out);
                    }
                    let json = String::from_utf8_lossy(&event_json(&self.gateway, e)).into_owned();
                    out.push(Prepared { msg: Draft::Event { event: e.clone(), json }, records: 1 });
                }
            }
        }
        if !run.is_empty() {
            self.push_samples(&run, out);
        }
    }
}
