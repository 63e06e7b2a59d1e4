//! Decisions as records: events for the buffer and the sinks, and text
//! lines for logs and `relais rules test` (pure).
//!
//! | decision | event kind | severity | details |
//! |---|---|---|---|
//! | alarm transition | `alarm` | the rule's `severity` when raised, `info` when cleared or acknowledged | `rule`, `transition` (`raised`, `cleared`, `acknowledged`), `state`, `previous`, `message`, `values` (`{"device/tag": {"value", "quality", "ts"}}`), `by` (acknowledgements) |
//! | write | `rule.write` | `info` | `rule`, `tag`, `value`, `on` (`active` or `clear`), `dry_run`, `values` (the outcome is the `write.audit` event of the actuator seam) |
//!
//! The event's `ts` is the decision's time (engine clock, see
//! [`super::engine`]); its source is `rule` with the rule's name. On MQTT,
//! `alarm` events go to `{prefix}/relais/{gateway}/alarm/{rule}`
//! (`docs/payloads.md`).

use serde_json::{Map, Value as J, json};

use std::sync::Arc;

use super::alarm::Change;
use crate::model::{Event, EventSource, Quality, Severity, Timestamp, Value, format_rfc3339};

/// The latest sample of a tag a rule tests, as recorded with a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct TagValue {
    /// `device/tag`.
    pub path: Arc<str>,
    /// Its latest value (`Null` when bad or none yet).
    pub value: Value,
    /// Its latest quality (`None`: no sample yet).
    pub quality: Option<Quality>,
    /// Its latest sample's timestamp.
    pub ts: Option<Timestamp>,
}

/// An alarm transition.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    /// The rule.
    pub rule: Arc<str>,
    /// What changed.
    pub change: Change,
    /// When (engine clock: the end of the on- or off-delay, or the acknowledgement).
    pub ts: Timestamp,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's message, or its condition.
    pub message: Arc<str>,
    /// The values of the rule's tags at that moment.
    pub values: Vec<TagValue>,
    /// Who acknowledged (acknowledgements only).
    pub by: Option<String>,
}

/// A write a rule asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteDecision {
    /// The rule.
    pub rule: Arc<str>,
    /// `device/tag`.
    pub tag: String,
    /// The value.
    pub value: Value,
    /// When the rule decided it.
    pub ts: Timestamp,
    /// On clearing (else on activation).
    pub on_clear: bool,
    /// Log and record only.
    pub dry_run: bool,
    /// The values of the rule's tags at that moment.
    pub values: Vec<TagValue>,
}

/// What the engine decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// An alarm transition.
    Alarm(AlarmRecord),
    /// A write.
    Write(WriteDecision),
}

/// Event kind of alarm transitions.
pub const ALARM_KIND: &str = "alarm";
/// Event kind of the writes rules decide.
pub const WRITE_KIND: &str = "rule.write";

fn values_json(values: &[TagValue]) -> J {
    let mut m = Map::new();
    for v in values {
        m.insert(
            v.path.to_string(),
            json!({
                "value": v.value,
                "quality": v.quality.map(|q| q.as_str()),
                "ts": v.ts.map(format_rfc3339),
            }),
        );
    }
    J::Object(m)
}

/// `pump/temperature = 81.5, pump/running = bad`.
pub fn values_text(values: &[TagValue]) -> String {
    values
        .iter()
        .map(|v| match v.quality {
            None => format!("{} = (no sample yet)", v.path),
            Some(Quality::Good) => format!("{} = {}", v.path, v.value),
            Some(q) => format!("{} = {} ({q})", v.path, v.value),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl AlarmRecord {
    /// The event of kind `alarm`.
    pub fn to_event(&self) -> Event {
        let mut details = json!({
            "rule": &*self.rule,
            "transition": self.change.transition.as_str(),
            "state": self.change.to.as_str(),
            "previous": self.change.from.as_str(),
            "message": &*self.message,
            "values": values_json(&self.values),
        });
        if let Some(by) = &self.by {
            details["by"] = J::String(by.clone());
        }
        let mut e = Event::new(ALARM_KIND, self.severity, EventSource::Rule(self.rule.clone()), self.line()).with_details(details);
        e.ts = self.ts;
        e
    }

    /// One line: `alarm valve-hot raised (active): pump/temperature > 80 [pump/temperature = 81.5]`.
    pub fn line(&self) -> String {
        let by = self.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
        format!(
            "alarm {} {}{by} ({}): {} [{}]",
            self.rule,
            self.change.transition.as_str(),
            self.change.to.as_str(),
            self.message,
            values_text(&self.values)
        )
    }
}

impl WriteDecision {
    /// The event of kind `rule.write`.
    pub fn to_event(&self) -> Event {
        let details = json!({
            "rule": &*self.rule,
            "tag": self.tag,
            "value": self.value,
            "on": if self.on_clear { "clear" } else { "active" },
            "dry_run": self.dry_run,
            "values": values_json(&self.values),
        });
        let mut e = Event::new(WRITE_KIND, Severity::Info, EventSource::Rule(self.rule.clone()), self.line()).with_details(details);
        e.ts = self.ts;
        e
    }

    /// One line: `write pump/start = true (rule valve-hot, on active, dry run) [values]`.
    pub fn line(&self) -> String {
        let on = if self.on_clear { "on clear" } else { "on active" };
        let dry = if self.dry_run { ", dry run" } else { "" };
        format!("write {} = {} (rule {}, {on}{dry}) [{}]", self.tag, self.value, self.rule, values_text(&self.values))
    }
}

impl Decision {
    /// Its time.
    pub fn ts(&self) -> Timestamp {
        match self {
            Decision::Alarm(a) => a.ts,
            Decision::Write(w) => w.ts,
        }
    }

    /// Its event.
    pub fn to_event(&self) -> Event {
        match self {
            Decision::Alarm(a) => a.to_event(),
            Decision::Write(w) => w.to_event(),
        }
    }

    /// Its line, prefixed with its time.
    pub fn line(&self) -> String {
        let text = match self {
            Decision::Alarm(a) => a.line(),
            Decision::Write(w) => w.line(),
        };
        format!("{}  {text}", format_rfc3339(self.ts()))
    }
}
