//! The pure part of the rogue-write detector: what relais wrote to a tag
//! ([`Mark`]), the tag's last observed value ([`Seen`]), and the one
//! decision ([`explains`]): is a change of a watched tag's value the effect
//! of a relais write? No clock, no I/O: times are given by the caller
//! (monotonic instants, so a wall-clock jump cannot fake or hide a write).

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::component::actuate::{Origin, WriteResult};
use crate::model::{Timestamp, Value, format_rfc3339};

/// How long after a relais write settled a change to its value is still
/// the write's effect, counted from the previous observation of the tag:
/// covers an OPC UA subscription that reports the new value a publishing
/// interval later, and the commit delay of the sample that shows it.
pub const SETTLE_WINDOW: Duration = Duration::from_secs(5);

/// Marks kept per tag (the newest); older ones can no longer explain a change.
pub const MARKS_PER_TAG: usize = 8;

/// One relais write of a tag, as the actuator seam saw it.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Its id (per watch, increasing), to settle it.
    pub id: u64,
    /// The requested value (engineering units).
    pub value: Value,
    /// Who asked.
    pub origin: Origin,
    /// When the seam took the request (monotonic).
    pub started: Instant,
    /// When the seam took the request (wall clock, for the event).
    pub started_ts: Timestamp,
    /// When the write settled (monotonic); `None` while in progress.
    pub settled: Option<Instant>,
    /// The result once settled.
    pub result: Option<WriteResult>,
    /// The read-back value, when the owner read the tag after writing.
    pub readback: Option<Value>,
    /// It already explained a change (a write explains one change only).
    pub used: bool,
}

impl Mark {
    /// The mark as JSON for the event's `last_write`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "value": self.value, "readback": self.readback, "origin": self.origin.to_json(),
            "result": self.result.map_or("pending", |r| r.as_str()), "requested_ts": format_rfc3339(self.started_ts),
        })
    }
}

/// The last value observed for a watched tag.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The value (never null: samples without a value are not observations).
    pub value: Value,
    /// The sample's source time, for the event.
    pub ts: Timestamp,
    /// When the detector took it (monotonic).
    pub at: Instant,
}

/// The state of one tag: its last observation and the newest relais writes.
#[derive(Debug, Default)]
pub struct TagState {
    /// The last observed value, `None` before the first.
    pub seen: Option<Seen>,
    /// The newest writes, oldest first (at most [`MARKS_PER_TAG`]).
    pub marks: VecDeque<Mark>,
}

impl TagState {
    /// Keeps `m` among the newest marks.
    pub fn push(&mut self, m: Mark) {
        if self.marks.len() == MARKS_PER_TAG {
            self.marks.pop_front();
        }
        self.marks.push_back(m);
    }
}

/// True when `a` and `b` are the same reading: equal text, or numbers
/// (booleans as 0/1, a text that reads as a number, such as a requested
/// value given as text) within 1e-9 + 1e-6 relative (a value written as f64
/// reads back through an f32 register or a scale).
pub fn same(a: &Value, b: &Value) -> bool {
    let num = |v: &Value| match v {
        Value::Str(s) => s.trim().parse::<f64>().ok(),
        v => v.as_f64(),
    };
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 + 1e-6 * x.abs().max(y.abs()),
            _ => false,
        },
    }
}

/// True when mark `m` explains a change to `value` observed at `now`, the
/// previous observation having been taken at `prev`: the write started
/// before `now`, was in progress or settled at most [`SETTLE_WINDOW`]
/// before `prev`, and its value is the one seen: the requested value while
/// in progress or when `ok`/`unknown`, or the read-back (any settled result
/// but `refused`: a `failed` write whose read-back shows another value
/// still changed the tag to that value). A mark that already explained a
/// change explains no other.
pub fn explains(m: &Mark, value: &Value, prev: Instant, now: Instant) -> bool {
    if m.used || m.started > now {
        return false;
    }
    let Some(settled) = m.settled else { return same(&m.value, value) };
    if settled + SETTLE_WINDOW < prev {
        return false;
    }
    match m.result {
        None | Some(WriteResult::Refused) => false,
        Some(r) => {
            m.readback.as_ref().is_some_and(|rb| same(rb, value))
                || (matches!(r, WriteResult::Ok | WriteResult::Unknown) && same(&m.value, value))
        }
    }
}
