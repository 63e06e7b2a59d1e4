//! Per-tag checks on ingest (`[[check]]`): QARTOD-style gross range, flat
//! line, spike and rate of change, plus counter reset, physical envelope
//! (response injection), stale tags and bad-quality transitions. See
//! `README.md` beside this file for the keys and what each detector flags.
//!
//! ```text
//! source ─ samples ─► Checker (owned by the source: no lock) ─► ring
//!                       │ flags the sample (value kept, quality, reason)
//!                       └ emits tag.flagged / tag.cleared on transitions
//! StaleBoard ◄─ stamped by checkers ── watcher task ─► stale sample + event
//! ```
//!
//! - **Seam.** Every source gets [`Checks`] from the component context
//!   ([`crate::component::Ctx::checks`]) and makes one [`Checker`] per
//!   producing task; it calls [`Checker::apply_all`] on its samples right
//!   before they enter the ring.
//! - **Cost.** A tag's merged limits are computed once, at its first
//!   sample; then a sample costs one hash lookup by its `TagMeta` pointer
//!   and a few comparisons, no allocation (a flagged sample allocates its
//!   reason). Without `[[check]]` a sample costs one branch.
//! - **Never upgrade, never re-flag.** A sample that is already bad is
//!   left as it is (its own reason stays); a flagged sample keeps its value
//!   (except stale samples, which carry none: nothing was read).
//! - **One event per transition.** Each detector is a bit per tag; a bit
//!   that turns on emits `tag.flagged` (`security.response_injection` for
//!   the envelope), a bit that turns off emits `tag.cleared`, with
//!   `details = {detector, reason, value}`.

pub mod config;
pub mod eval;
pub mod stale;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::ingest::Events;
use crate::model::{EventSource, Quality, Sample, Severity, TagMeta, reason};

pub use config::{CheckConfig, Limits, parse_checks};
pub use eval::{Detector, TagState, evaluate};
pub use stale::{StaleBoard, StaleSlot};

/// The configured checks of a gateway and where their events go; cheap
/// to clone. The default checks nothing.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    checks: Vec<CheckConfig>,
    events: Option<Events>,
    board: Arc<StaleBoard>,
}

impl Checks {
    /// The checks of `[[check]]`, emitting through `events` (`None`: no
    /// events, samples are still flagged).
    pub fn new(checks: Vec<CheckConfig>, events: Option<Events>) -> Checks {
        Checks { inner: Arc::new(Shared { checks, events, board: Arc::default() }) }
    }

    /// True when nothing is checked.
    pub fn is_empty(&self) -> bool {
        self.inner.checks.is_empty()
    }

    /// A checker for one producing task (its own per-tag state).
    pub fn checker(&self) -> Checker {
        Checker { shared: self.inner.clone(), slots: Vec::new(), by_ptr: HashMap::new(), by_path: HashMap::new() }
    }

    /// The stale tags' board, for the watcher ([`stale::watch`]).
    pub fn board(&self) -> Arc<StaleBoard> {
        self.inner.board.clone()
    }

    /// The configured entries.
    pub fn configs(&self) -> &[CheckConfig] {
        &self.inner.checks
    }
}

/// One tag's checks and state.
struct Slot {
    limits: Limits,
    state: TagState,
    stale: Option<Arc<StaleSlot>>,
    stale_tried: bool,
}

/// The checks of one producing task: per-tag state owned by it.
pub struct Checker {
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    /// `TagMeta` pointer → slot (the `Arc` is held so the pointer stays unique).
    by_ptr: HashMap<usize, (Arc<TagMeta>, u32)>,
    /// `device/tag` → slot: a source that makes new metas (a new file) finds its state again.
    by_path: HashMap<String, u32>,
}

/// Reason codes that say the device could not be read: covered by
/// `device.down`, not by `bad_quality`.
const COMM_REASONS: &[&str] = &[reason::COMM_FAILURE, reason::TIMEOUT, reason::INVALID_FRAME, "stale"];

impl Checker {
    /// Checks `samples` in place, in order. `poll` is the period the source
    /// polls them at (Modbus: the tags' poll interval), `None` for sources
    /// that do not poll.
    pub fn apply_all(&mut self, samples: &mut [Sample], poll: Option<Duration>) {
        if self.shared.checks.is_empty() {
            return;
        }
        for s in samples {
            self.apply(s, poll);
        }
    }

    /// Checks one sample in place (see [`Checker::apply_all`]).
    pub fn apply(&mut self, s: &mut Sample, poll: Option<Duration>) {
        if self.shared.checks.is_empty() {
            return;
        }
        let i = self.slot_of(&s.meta);
        // Disjoint borrows of the two fields: no Arc clone per sample.
        let (shared, slots) = (&self.shared, &mut self.slots);
        let Some(slot) = slots.get_mut(i) else { return };
        if slot.limits.is_empty() {
            return;
        }
        if !slot.stale_tried {
            slot.stale_tried = true;
            slot.stale = stale_slot(&shared.board, &s.meta, &slot.limits, poll);
        }
        let emit = |kind: &str, sev: Severity, d: Detector, reason: &str, value: serde_json::Value| {
            if let Some(ev) = &shared.events {
                let m = &s.meta;
                let src = EventSource::Tag { device: m.device.clone(), tag: m.tag.clone() };
                let what = if kind == "tag.cleared" { "cleared" } else { "flagged" };
                let details = serde_json::json!({"detector": d.name(), "reason": reason, "value": value});
                ev.emit_now(kind, sev, src, format!("{} {what}: {reason}", m.path()), details);
            }
        };
        if let Some(st) = &slot.stale
            && st.seen(&shared.board)
        {
            emit("tag.cleared", Severity::Info, Detector::Stale, "a new sample came", json_value(s));
        }
        let st = &mut slot.state;
        if s.quality == Quality::Bad {
            st.broken();
            let code = s.reason.as_deref().map(reason::code).unwrap_or_default();
            if slot.limits.bad_quality == Some(true)
                && !COMM_REASONS.contains(&code.as_str())
                && st.active & Detector::BadQuality.bit() == 0
            {
                st.active |= Detector::BadQuality.bit();
                let why = s.reason.as_deref().unwrap_or("bad");
                emit("tag.flagged", Severity::Warning, Detector::BadQuality, why, serde_json::Value::Null);
            }
            return;
        }
        if st.active & Detector::BadQuality.bit() != 0 && s.quality == Quality::Good {
            st.active &= !Detector::BadQuality.bit();
            emit("tag.cleared", Severity::Info, Detector::BadQuality, "good again", json_value(s));
        }
        let Some(x) = s.value.as_f64() else { return };
        let found = evaluate(&slot.limits, st, x, s.ts.as_nanos());
        let was = st.active;
        let now = found.bits();
        for d in Detector::VALUE {
            let (on_before, on_now) = (was & d.bit() != 0, now & d.bit() != 0);
            let escalated =
                d == Detector::GrossRange && on_now && !st.gross_fail && found.get(d).is_some_and(|f| f.quality == Quality::Bad);
            if let Some(f) = found.get(d).filter(|_| !on_before || escalated) {
                let (kind, sev) = match d {
                    Detector::ResponseInjection => ("security.response_injection", Severity::Error),
                    _ => ("tag.flagged", Severity::Warning),
                };
                emit(kind, sev, d, &f.reason(x), json_value(s));
            } else if on_before && !on_now {
                emit("tag.cleared", Severity::Info, d, &format!("{}: cleared", d.name()), json_value(s));
            }
        }
        st.gross_fail = found.get(Detector::GrossRange).is_some_and(|f| f.quality == Quality::Bad);
        st.active = (st.active & !value_bits()) | now;
        if let Some(w) = found.worst() {
            // Never upgrade: uncertain stays uncertain with its own reason
            // unless the check makes it bad.
            if s.quality == Quality::Good || w.quality == Quality::Bad {
                s.quality = w.quality;
                s.reason = Some(w.reason(x).into());
            }
        }
    }

    /// The slot of `meta`, made at its first sample.
    fn slot_of(&mut self, meta: &Arc<TagMeta>) -> usize {
        let key = Arc::as_ptr(meta) as usize;
        if let Some((_, i)) = self.by_ptr.get(&key) {
            return *i as usize;
        }
        let path = meta.path();
        let i = match self.by_path.get(&path) {
            Some(i) => *i,
            None => {
                let limits = config::limits_for(&self.shared.checks, &path);
                self.slots.push(Slot { limits, state: TagState::default(), stale: None, stale_tried: false });
                let i = (self.slots.len() - 1) as u32;
                self.by_path.insert(path, i);
                i
            }
        };
        // Sources that make new metas for the same tags (a file each) must
        // not grow this map forever.
        if self.by_ptr.len() > 2 * self.slots.len() + 64 {
            self.by_ptr.clear();
        }
        self.by_ptr.insert(key, (meta.clone(), i));
        i as usize
    }
}

fn value_bits() -> u16 {
    Detector::VALUE.iter().fold(0, |b, d| b | d.bit())
}

/// The value of a sample as JSON, for event details.
fn json_value(s: &Sample) -> serde_json::Value {
    match &s.value {
        crate::model::Value::Null => serde_json::Value::Null,
        crate::model::Value::Bool(b) => (*b).into(),
        crate::model::Value::I64(v) => (*v).into(),
        crate::model::Value::U64(v) => (*v).into(),
        crate::model::Value::F64(v) => serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, serde_json::Value::Number),
        crate::model::Value::Str(t) => t.as_str().into(),
    }
}

/// The stale slot of a tag with a stale rule: `stale` poll periods when the
/// source polls, else `stale_after`; `None` when neither applies.
fn stale_slot(board: &StaleBoard, meta: &Arc<TagMeta>, l: &Limits, poll: Option<Duration>) -> Option<Arc<StaleSlot>> {
    let r = l.stale?;
    let (limit, why) = match (poll, r.after) {
        (Some(p), after) if r.periods_set || after.is_none() => {
            (p * r.periods, format!("{} poll periods of {}", r.periods, crate::units::format_duration(p)))
        }
        (_, Some(a)) => (a, format!("stale_after {}", crate::units::format_duration(a))),
        _ => return None,
    };
    Some(board.register(meta.clone(), limit, why))
}

#[cfg(test)]
mod tests;
