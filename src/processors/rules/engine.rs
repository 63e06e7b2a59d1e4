//! The rule engine (pure: no I/O, no clock of its own).
//!
//! # Time
//! The engine's clock is the largest time it was given: sample timestamps
//! (`ts`) and the instants passed to [`Engine::advance`] (the daemon's timer,
//! every 100 ms). A replay of a file therefore gives the same decisions at
//! the same times every run. A sample older than the clock is evaluated at
//! the clock. Delays and staleness are timers on this clock: an on-delay that
//! ends at `t` fires at `t` exactly (before any sample stamped `t` or later
//! is applied), whether a later sample or the timer notices it.
//!
//! # Evaluation
//! Per rule and leaf, O(1) state ([`LeafState`]); per sample, only the rules
//! that test its tag are evaluated. A rule turns *active* when its condition
//! has been true for `for`, and *clears* when it has been false for
//! `clear_for`. An *unknown* condition (an input without a good value)
//! neither raises nor clears: it cancels a running on- or off-delay and the
//! rule keeps its state. Transitions produce [`Decision`]s: alarm records
//! (see [`super::alarm`]) and writes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::alarm::{AlarmState, Change, Transition};
use super::cond::Cond;
use super::config::RuleConfig;
use super::leaf::{LeafState, Truth};
pub use super::record::{AlarmRecord, Decision, TagValue, WriteDecision};
use crate::model::{Quality, Sample, Severity, Timestamp, Value};

enum Node {
    Leaf(usize),
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
}

struct Rule {
    cfg: RuleConfig,
    name: Arc<str>,
    message: Arc<str>,
    leaves: Vec<LeafState>,
    /// Stale leaves with a timer in the heap.
    armed: Vec<bool>,
    tree: Node,
    /// Distinct tag slots of the rule, in first-use order.
    tags: Vec<usize>,
    active: bool,
    pending: Option<i64>,
    clearing: Option<i64>,
    alarm: AlarmState,
}

struct Slot {
    path: Arc<str>,
    latest: Option<(Value, Quality, Timestamp)>,
    /// (rule, leaf) pairs testing this tag.
    listeners: Vec<(usize, usize)>,
}

/// A timer entry: (deadline ns, rule, leaf or [`STEP`]).
type Timer = Reverse<(i64, usize, usize)>;
const STEP: usize = usize::MAX;

/// Every rule of a gateway (or of a replay), with its state.
pub struct Engine {
    rules: Vec<Rule>,
    slots: Vec<Slot>,
    index: HashMap<String, HashMap<String, usize>>,
    clock: i64,
    start: Option<i64>,
    timers: BinaryHeap<Timer>,
    out: Vec<Decision>,
    touched: Vec<usize>,
}

impl Engine {
    /// An engine over `rules` (validated by [`super::config`]).
    pub fn new(rules: Vec<RuleConfig>) -> Engine {
        let mut e = Engine {
            rules: Vec::new(),
            slots: Vec::new(),
            index: HashMap::new(),
            clock: i64::MIN,
            start: None,
            timers: BinaryHeap::new(),
            out: Vec::new(),
            touched: Vec::new(),
        };
        for cfg in rules {
            e.add(cfg);
        }
        e
    }

    fn slot(&mut self, path: &str) -> usize {
        let (d, t) = path.split_once('/').unwrap_or((path, ""));
        if let Some(&i) = self.index.get(d).and_then(|m| m.get(t)) {
            return i;
        }
        self.slots.push(Slot { path: path.into(), latest: None, listeners: Vec::new() });
        let i = self.slots.len() - 1;
        self.index.entry(d.to_string()).or_default().insert(t.to_string(), i);
        i
    }

    fn add(&mut self, cfg: RuleConfig) {
        let r = self.rules.len();
        let mut leaves = Vec::new();
        let tree = self.node(&cfg.cond, r, &mut leaves);
        let mut tags: Vec<usize> = Vec::new();
        for l in &leaves {
            if !tags.contains(&l.tag) {
                tags.push(l.tag);
            }
        }
        let message: Arc<str> = cfg.message.clone().unwrap_or_else(|| cfg.cond.describe()).into();
        self.rules.push(Rule {
            name: cfg.name.as_str().into(),
            message,
            armed: vec![false; leaves.len()],
            leaves,
            tree,
            tags,
            active: false,
            pending: None,
            clearing: None,
            alarm: AlarmState::Normal,
            cfg,
        });
    }

    fn node(&mut self, c: &Cond, rule: usize, leaves: &mut Vec<LeafState>) -> Node {
        match c {
            Cond::Leaf(l) => {
                let slot = self.slot(&l.tag);
                self.slots[slot].listeners.push((rule, leaves.len()));
                leaves.push(LeafState::new(l.test.clone(), slot));
                Node::Leaf(leaves.len() - 1)
            }
            Cond::All(v) => Node::All(v.iter().map(|c| self.node(c, rule, leaves)).collect()),
            Cond::Any(v) => Node::Any(v.iter().map(|c| self.node(c, rule, leaves)).collect()),
            Cond::Not(c) => Node::Not(Box::new(self.node(c, rule, leaves))),
        }
    }

    /// The engine's clock (`None` before the first sample or tick).
    pub fn clock(&self) -> Option<Timestamp> {
        self.start.map(|_| Timestamp(self.clock))
    }

    /// The decisions made since the last call, in order.
    pub fn take(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.out)
    }

    /// The alarm state of each rule, in configuration order.
    pub fn alarms(&self) -> Vec<(Arc<str>, AlarmState)> {
        self.rules.iter().map(|r| (r.name.clone(), r.alarm)).collect()
    }

    /// One committed sample. Samples of tags no rule tests cost one lookup.
    pub fn on_sample(&mut self, s: &Sample) {
        let Some(&slot) = self.index.get(&*s.meta.device).and_then(|m| m.get(&*s.meta.tag)) else { return };
        self.advance(s.ts);
        let now = self.clock;
        let value = if s.quality == Quality::Good { s.value.as_f64().filter(|v| v.is_finite()) } else { None };
        self.slots[slot].latest = Some((s.value.clone(), s.quality, s.ts));
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        for i in 0..self.slots[slot].listeners.len() {
            let (r, l) = self.slots[slot].listeners[i];
            let leaf = &mut self.rules[r].leaves[l];
            leaf.on_sample(s.ts.0, value, s.quality);
            if let Some(d) = leaf.stale_deadline(now)
                && !self.rules[r].armed[l]
            {
                self.rules[r].armed[l] = true;
                self.timers.push(Reverse((d, r, l)));
            }
            if !touched.contains(&r) {
                touched.push(r);
            }
        }
        for &r in &touched {
            self.step(r, now);
        }
        self.touched = touched;
    }

    /// Moves the clock to `now` (when later), firing every delay and
    /// staleness timer due by then, each at its own time.
    pub fn advance(&mut self, now: Timestamp) {
        if self.start.is_none() {
            self.start = Some(now.0);
            self.clock = now.0;
            self.arm_stale();
        }
        while let Some(&Reverse((at, r, what))) = self.timers.peek() {
            if at > now.0 {
                break;
            }
            self.timers.pop();
            self.clock = self.clock.max(at);
            if what != STEP {
                self.rules[r].armed[what] = false;
                let start = self.start.unwrap_or(at);
                match self.rules[r].leaves[what].stale_deadline(start) {
                    Some(d) if d > at => {
                        self.rules[r].armed[what] = true;
                        self.timers.push(Reverse((d, r, what)));
                        continue;
                    }
                    _ => {}
                }
            }
            self.step(r, self.clock);
        }
        self.clock = self.clock.max(now.0);
    }

    fn arm_stale(&mut self) {
        let start = self.start.unwrap_or(self.clock);
        for (r, rule) in self.rules.iter_mut().enumerate() {
            for (l, leaf) in rule.leaves.iter().enumerate() {
                if let Some(d) = leaf.stale_deadline(start) {
                    rule.armed[l] = true;
                    self.timers.push(Reverse((d, r, l)));
                }
            }
        }
    }

    /// Acknowledges the alarm of rule `name` at `now` (by `by`: an operator,
    /// a command id). Errors (`unknown_rule: …`, `nothing_to_acknowledge: …`)
    /// when there is no such rule or nothing to acknowledge.
    pub fn acknowledge(&mut self, name: &str, by: &str, now: Timestamp) -> Result<AlarmState, String> {
        let r = self.rules.iter().position(|r| &*r.name == name).ok_or_else(|| format!("unknown_rule: no rule named {name:?}"))?;
        self.advance(now);
        let state = self.rules[r].alarm;
        let change = state
            .apply(Transition::Acknowledged)
            .ok_or_else(|| format!("nothing_to_acknowledge: rule {name:?}: the alarm is {}", state.as_str()))?;
        self.record(r, change, self.clock, Some(by.to_string()));
        Ok(change.to)
    }

    fn eval(&self, r: usize, n: &Node, now: i64) -> Truth {
        let rule = &self.rules[r];
        match n {
            Node::Leaf(i) => rule.leaves[*i].truth(now, self.start.unwrap_or(now)),
            Node::All(v) => v.iter().fold(Truth::True, |acc, c| acc.and(self.eval(r, c, now))),
            Node::Any(v) => v.iter().fold(Truth::False, |acc, c| acc.or(self.eval(r, c, now))),
            Node::Not(c) => !self.eval(r, c, now),
        }
    }

    /// Re-evaluates rule `r` at `now`: runs its on- and off-delays.
    fn step(&mut self, r: usize, now: i64) {
        let truth = self.eval(r, &self.rules[r].tree, now);
        let rule = &mut self.rules[r];
        let (delay, want) = if rule.active { (rule.cfg.off_delay, Truth::False) } else { (rule.cfg.on_delay, Truth::True) };
        let delay = delay.as_nanos().min(i64::MAX as u128) as i64;
        let since = if rule.active { &mut rule.clearing } else { &mut rule.pending };
        if truth != want {
            *since = None;
            return;
        }
        let t0 = match *since {
            Some(t0) => t0,
            None => {
                *since = Some(now);
                if delay > 0 {
                    self.timers.push(Reverse((now.saturating_add(delay), r, STEP)));
                }
                now
            }
        };
        if now.saturating_sub(t0) >= delay {
            self.transition(r, t0.saturating_add(delay));
        }
    }

    fn transition(&mut self, r: usize, at: i64) {
        let rule = &mut self.rules[r];
        rule.active = !rule.active;
        rule.pending = None;
        rule.clearing = None;
        let (t, on_clear) = if rule.active { (Transition::Raised, false) } else { (Transition::Cleared, true) };
        if rule.cfg.alarm
            && let Some(change) = rule.alarm.apply(t)
        {
            self.record(r, change, at, None);
        }
        let rule = &self.rules[r];
        let writes: Vec<Decision> = rule
            .cfg
            .writes
            .iter()
            .filter(|w| w.on_clear == on_clear)
            .map(|w| {
                Decision::Write(WriteDecision {
                    rule: rule.name.clone(),
                    tag: w.tag.clone(),
                    value: w.value.clone(),
                    ts: Timestamp(at),
                    on_clear,
                    dry_run: rule.cfg.dry_run,
                    values: self.values(r),
                })
            })
            .collect();
        self.out.extend(writes);
    }

    fn record(&mut self, r: usize, change: Change, at: i64, by: Option<String>) {
        let values = self.values(r);
        let rule = &mut self.rules[r];
        rule.alarm = change.to;
        let severity = if change.transition == Transition::Raised { rule.cfg.severity } else { Severity::Info };
        self.out.push(Decision::Alarm(AlarmRecord {
            rule: rule.name.clone(),
            change,
            ts: Timestamp(at),
            severity,
            message: rule.message.clone(),
            values,
            by,
        }));
    }

    fn values(&self, r: usize) -> Vec<TagValue> {
        self.rules[r]
            .tags
            .iter()
            .map(|&i| {
                let s = &self.slots[i];
                TagValue {
                    path: s.path.clone(),
                    value: s.latest.as_ref().map_or(Value::Null, |l| l.0.clone()),
                    quality: s.latest.as_ref().map(|l| l.1),
                    ts: s.latest.as_ref().map(|l| l.2),
                }
            })
            .collect()
    }
}
