//! One polled device (a unit id on a line): its plan, its health, and how a
//! read becomes samples.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::config::{ModbusDevice, ModbusTag};
use super::decode::{apply_scale, decode, implausible_float};
use super::degrade::Health;
use super::frame::Discard;
use super::link::{ReadError, Words};
use super::planner::{ReadRequest, TagSpan};
use super::types::ByteOrder;
use crate::model::{Sample, TagMeta, Timestamp, Value, reason};
use crate::telemetry::DeviceStats;

/// A read request of a group, as currently planned.
pub struct Planned {
    /// The request.
    pub req: ReadRequest,
    /// Every part failed when this request was split: keep it whole.
    pub keep_whole: bool,
}

/// The tags of a device that share a poll interval.
pub struct Group {
    /// Poll interval.
    pub interval: Duration,
    /// When the next cycle is due.
    pub next_due: Instant,
    /// The requests, split where the device refused a merged one.
    pub requests: Vec<Planned>,
    /// The merged plan, tried again a while after a split (the device may
    /// have been fixed, or the exception was transient).
    pub original: Vec<ReadRequest>,
    /// Since when the plan is split.
    pub split_since: Option<Instant>,
}

/// One device behind a line.
pub struct Device {
    /// Its configuration.
    pub cfg: ModbusDevice,
    /// Sample metadata per tag.
    pub metas: Vec<Arc<TagMeta>>,
    /// Register spans per tag (for splitting).
    pub spans: Vec<TagSpan>,
    /// Groups by poll interval.
    pub groups: Vec<Group>,
    /// Its counters.
    pub stats: Arc<DeviceStats>,
    /// Degraded or not, and its probes.
    pub health: Health,
    /// Tags already warned about an implausible float.
    pub warned_floats: HashSet<usize>,
    /// Last warning about dropped answers (rate-limited).
    pub warned_drops: Option<Instant>,
    /// The failure of the last silent read, for the reason of its degraded
    /// cycles.
    pub last_silence: Option<ReadError>,
    /// Whether the device answered its last cycle (`None` before the first).
    pub answering: Option<bool>,
}

/// The sample reason of a failed read: `code: detail` (see `docs/payloads.md`).
pub fn reason_of(e: &ReadError) -> String {
    match e {
        ReadError::Exception(c) => reason::device_exception(*c),
        ReadError::Timeout(t) => format!("{}: no response within {t:?}", reason::TIMEOUT),
        ReadError::Comm(m) => format!("{}: {m}", reason::COMM_FAILURE),
        ReadError::InvalidFrame(m) => format!("{}: {m}", reason::INVALID_FRAME),
    }
}

/// Shortest time between two "answers dropped" warnings of a device.
const DROP_WARN_PERIOD: Duration = Duration::from_secs(60);

impl Device {
    /// Counts a dropped frame charged to this device, with a warning at
    /// most once a minute.
    pub fn count_discard(&mut self, d: &Discard) {
        let (late, mismatched) = match d {
            Discard::Late(_) => {
                (self.stats.late_responses.fetch_add(1, Ordering::Relaxed) + 1, self.stats.mismatched_responses.load(Ordering::Relaxed))
            }
            Discard::Mismatched(_) => {
                (self.stats.late_responses.load(Ordering::Relaxed), self.stats.mismatched_responses.fetch_add(1, Ordering::Relaxed) + 1)
            }
        };
        if self.warned_drops.is_some_and(|t| t.elapsed() < DROP_WARN_PERIOD) {
            return;
        }
        self.warned_drops = Some(Instant::now());
        tracing::warn!(
            device = %self.cfg.name, unit_id = self.cfg.unit_id, late_responses = late, mismatched_responses = mismatched,
            "modbus answer dropped ({d}): it does not answer the request it arrived for; counted, and never taken as a value"
        );
    }

    /// The samples of the tags of `req` from its read `result`: good with
    /// the decoded value, or bad with the reason.
    pub fn samples_of(&mut self, req: &ReadRequest, result: &Result<Words, ReadError>, out: &mut Vec<Sample>) {
        let ts = Timestamp::now();
        match result {
            Err(e) => {
                let why: Arc<str> = reason_of(e).into();
                for &i in &req.tags {
                    out.push(Sample::bad(self.metas[i].clone(), why.clone(), ts));
                }
            }
            Ok(words) => {
                for &i in &req.tags {
                    let tag = &self.cfg.tags[i];
                    let (ty, order, bit, scale, offset) = (tag.ty, tag.byte_order, tag.bit, tag.scale, tag.offset);
                    let off = (tag.address - req.start) as usize;
                    let n = ty.register_count() as usize;
                    let value = match words {
                        Words::Bits(bits) => bits.get(off).map(|b| Ok(Value::Bool(*b))),
                        Words::Registers(regs) => regs.get(off..off + n).map(|w| decode(w, ty, order, bit)),
                    };
                    out.push(match value {
                        Some(Ok(Value::F64(x))) if !x.is_finite() => {
                            Sample::bad(self.metas[i].clone(), format!("{}: {ty} decoded to {x}", reason::NON_FINITE).into(), ts)
                        }
                        Some(Ok(v)) => {
                            if let (Value::F64(x), Words::Registers(regs)) = (&v, words) {
                                self.check_float(i, *x, &regs[off..off + n]);
                            }
                            match apply_scale(v, scale, offset) {
                                Value::F64(x) if !x.is_finite() => Sample::bad(
                                    self.metas[i].clone(),
                                    format!("{}: scaled value overflows ({x})", reason::NON_FINITE).into(),
                                    ts,
                                ),
                                v => Sample::good(self.metas[i].clone(), v, ts),
                            }
                        }
                        Some(Err(e)) => Sample::bad(self.metas[i].clone(), format!("{}: {e}", reason::PARSE_ERROR).into(), ts),
                        None => Sample::bad(self.metas[i].clone(), format!("{}: response too short", reason::PARSE_ERROR).into(), ts),
                    });
                }
            }
        }
    }

    /// Field case B01 self-check: warn once per tag when a float looks like a
    /// byte-order mistake, and say which order would give a plausible value.
    fn check_float(&mut self, i: usize, x: f64, words: &[u16]) {
        if !implausible_float(x) || self.warned_floats.contains(&i) {
            return;
        }
        self.warned_floats.insert(i);
        let tag: &ModbusTag = &self.cfg.tags[i];
        let alternatives: Vec<String> = ByteOrder::ALL
            .iter()
            .filter(|o| **o != tag.byte_order)
            .filter_map(|o| match decode(words, tag.ty, *o, None) {
                Ok(Value::F64(v)) if v.is_finite() && !implausible_float(v) => Some(format!("{o} gives {v}")),
                _ => None,
            })
            .collect();
        tracing::warn!(
            device = %self.cfg.name, tag = %tag.name, value = x, byte_order = %tag.byte_order,
            "implausible {} value (subnormal or huge): check the byte order; {}",
            tag.ty,
            if alternatives.is_empty() { "no other order looks better".to_string() } else { alternatives.join(", ") }
        );
    }
}
