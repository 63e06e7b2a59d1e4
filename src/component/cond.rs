//! Conditions of a `[[rule]]`, as structured TOML (no expression language):
//! a *leaf* tests one tag (`tag` plus one test key), a *group* combines
//! conditions (`all = [...]`, `any = [...]`, `not = {...}`).
//!
//! ```toml
//! tag = "pump/temperature"
//! above = 80
//! clear_below = 75
//! # or: all = [ { tag = "pump/temperature", above = 80 }, { not = { tag = "pump/temperature", quality = "good" } } ]
//! ```
//!
//! Every key and its meaning is in `README.md` beside this file. Parsing is
//! serde (the `toml` crate) into [`RawCond`], then [`validate`] checks one
//! test per leaf, their combinations and ranges, recording every problem
//! with its span.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Reader};
use crate::model::Quality;

/// A validated condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// One test on one tag.
    Leaf(Leaf),
    /// True when every part is true (Kleene AND: false wins over unknown).
    All(Vec<Cond>),
    /// True when any part is true (Kleene OR: true wins over unknown).
    Any(Vec<Cond>),
    /// The negation (unknown stays unknown).
    Not(Box<Cond>),
}

/// One test on one tag (`device/tag`).
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// `device/tag`.
    pub tag: String,
    /// The test.
    pub test: Test,
}

/// What a leaf tests. Value tests use good samples only: a tag whose latest
/// sample is bad or uncertain (or that never had one) makes them *unknown*.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `above = on` (on when value > on), `clear_below = off` (off when value < off; default `on`).
    Above {
        /// Turns on strictly above this.
        on: f64,
        /// Turns off strictly below this (≤ `on`).
        off: f64,
    },
    /// `below = on` (on when value < on), `clear_above = off` (off when value > off; default `on`).
    Below {
        /// Turns on strictly below this.
        on: f64,
        /// Turns off strictly above this (≥ `on`).
        off: f64,
    },
    /// `equals = x`: value == x (booleans as 0/1).
    Equals(f64),
    /// `edge = "rising" | "falling" | "change"`: true at the sample that made the edge, false at the tag's next sample.
    Edge(Edge),
    /// `rate_above` / `rate_below` (units per second) with `over = "10s"`: the change against an anchor sample
    /// between `over` and 2×`over` old, divided by the time between them.
    Rate {
        /// True when the rate is above this.
        above: Option<f64>,
        /// True when the rate is below this.
        below: Option<f64>,
        /// The period.
        over: Duration,
    },
    /// `quality = "good" | "uncertain" | "bad"`: the latest sample's quality is this (false before any sample).
    Quality(Quality),
    /// `stale = "10s"`: no sample (of any quality) for longer than this (counted from the rules' start before the first).
    Stale(Duration),
}

/// Which edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// From zero/false to non-zero/true.
    Rising,
    /// From non-zero/true to zero/false.
    Falling,
    /// Any change of value.
    Change,
}

/// The condition keys (of a `[[rule]]` itself or of a part of a group).
pub const COND_KEYS: &[&str] = &[
    "tag",
    "above",
    "clear_below",
    "below",
    "clear_above",
    "equals",
    "edge",
    "rate_above",
    "rate_below",
    "over",
    "quality",
    "stale",
    "all",
    "any",
    "not",
];

/// A number or a boolean (`equals`, a write's `value`), keeping TOML's
/// integer / float distinction.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Lit {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Num(f64),
}

/// A condition as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCond {
    tag: Option<Spanned<String>>,
    above: Option<Spanned<f64>>,
    clear_below: Option<Spanned<f64>>,
    below: Option<Spanned<f64>>,
    clear_above: Option<Spanned<f64>>,
    equals: Option<Spanned<Lit>>,
    edge: Option<Spanned<String>>,
    rate_above: Option<Spanned<f64>>,
    rate_below: Option<Spanned<f64>>,
    over: Option<Spanned<String>>,
    quality: Option<Spanned<String>>,
    stale: Option<Spanned<String>>,
    all: Option<Spanned<Vec<Spanned<RawCond>>>>,
    any: Option<Spanned<Vec<Spanned<RawCond>>>>,
    not: Option<Box<Spanned<RawCond>>>,
}

/// Deepest nesting of groups.
const MAX_DEPTH: usize = 16;

pub use super::known_tags::KnownTags;

/// The configuration's tags, to check the tags a rule names (`None`: not known).
pub type Devices<'a> = Option<&'a KnownTags>;

/// Validates a condition written at `span` (errors under `key`); `None` when
/// any was recorded. With `devices`, a tag of a configured device that it
/// does not have is an error (the rule would never see it); other devices
/// may come from the sources' data.
pub fn validate(raw: &RawCond, span: Range<usize>, d: &mut Diag<'_>, key: &str, devices: Devices<'_>) -> Option<Cond> {
    let before = d.error_count();
    let c = check(raw, span, d, key, 0, devices);
    if d.error_count() > before { None } else { c }
}

fn check(raw: &RawCond, span: Range<usize>, d: &mut Diag<'_>, key: &str, depth: usize, devices: Devices<'_>) -> Option<Cond> {
    if depth > MAX_DEPTH {
        d.error(span, key, format!("conditions nested deeper than {MAX_DEPTH} levels"));
        return None;
    }
    let groups = raw.all.is_some() as u8 + raw.any.is_some() as u8 + raw.not.is_some() as u8;
    if groups > 0 {
        if let Some(t) = &raw.tag {
            d.error(t.span(), key, "a group (`all`, `any`, `not`) has no `tag`: put the tag tests inside it");
            return None;
        }
        if groups > 1 {
            d.error(span, key, "one of `all`, `any` or `not` per table; nest them to combine");
            return None;
        }
        let list = |l: &Spanned<Vec<Spanned<RawCond>>>, name: &str, d: &mut Diag<'_>| -> Option<Vec<Cond>> {
            if l.get_ref().is_empty() {
                d.error(l.span(), &format!("{key} / {name}"), "an empty list: give at least one condition");
                return None;
            }
            let parts: Vec<Option<Cond>> =
                l.get_ref().iter().map(|c| check(c.get_ref(), c.span(), d, &format!("{key} / {name}"), depth + 1, devices)).collect();
            parts.into_iter().collect()
        };
        return match (&raw.all, &raw.any, &raw.not) {
            (Some(l), _, _) => list(l, "all", d).map(Cond::All),
            (_, Some(l), _) => list(l, "any", d).map(Cond::Any),
            (_, _, Some(n)) => check(n.get_ref(), n.span(), d, &format!("{key} / not"), depth + 1, devices).map(|c| Cond::Not(Box::new(c))),
            _ => None,
        };
    }
    leaf(raw, span, d, key, devices).map(Cond::Leaf)
}

fn leaf(raw: &RawCond, span: Range<usize>, d: &mut Diag<'_>, key: &str, devices: Devices<'_>) -> Option<Leaf> {
    let Some(tag) = &raw.tag else {
        d.error(span, key, "a condition needs `tag = \"device/tag\"` and one test (above, below, equals, edge, rate_above, rate_below, quality, stale), or a group: all, any, not");
        return None;
    };
    if !valid_path(tag.get_ref()) {
        d.error(tag.span(), &format!("{key} / tag"), format!("{:?} is not a tag path \"device/tag\"", tag.get_ref()));
    } else if let Some(devs) = devices {
        check_known(d, devs, tag.get_ref(), tag.span(), &format!("{key} / tag"));
    }
    let tests = [
        raw.above.is_some(),
        raw.below.is_some(),
        raw.equals.is_some(),
        raw.edge.is_some(),
        raw.rate_above.is_some() || raw.rate_below.is_some(),
        raw.quality.is_some(),
        raw.stale.is_some(),
    ];
    match tests.iter().filter(|t| **t).count() {
        1 => {}
        0 => {
            d.error(tag.span(), key, "no test for this tag: add one of above, below, equals, edge, rate_above, rate_below, quality, stale");
            return None;
        }
        _ => {
            d.error(tag.span(), key, "one test per tag condition; combine several with `all = [...]` or `any = [...]`");
            return None;
        }
    }
    let misplaced = |d: &mut Diag<'_>, v: Option<Range<usize>>, name: &str, belongs: &str| {
        if let Some(s) = v {
            d.error(s, &format!("{key} / {name}"), format!("`{name}` goes with `{belongs}`"));
        }
    };
    if raw.above.is_none() {
        misplaced(d, raw.clear_below.as_ref().map(Spanned::span), "clear_below", "above");
    }
    if raw.below.is_none() {
        misplaced(d, raw.clear_above.as_ref().map(Spanned::span), "clear_above", "below");
    }
    if raw.rate_above.is_none() && raw.rate_below.is_none() {
        misplaced(d, raw.over.as_ref().map(Spanned::span), "over", "rate_above or rate_below");
    }
    let test = test(raw, d, key)?;
    Some(Leaf { tag: tag.get_ref().clone(), test })
}

fn finite(d: &mut Diag<'_>, v: &Spanned<f64>, key: &str, name: &str) -> f64 {
    if !v.get_ref().is_finite() {
        d.error(v.span(), &format!("{key} / {name}"), "a finite number");
    }
    *v.get_ref()
}

fn test(raw: &RawCond, d: &mut Diag<'_>, key: &str) -> Option<Test> {
    if let Some(a) = &raw.above {
        let on = finite(d, a, key, "above");
        let off = raw.clear_below.as_ref().map_or(on, |c| finite(d, c, key, "clear_below"));
        if off > on {
            d.error(
                raw.clear_below.as_ref().map_or(a.span(), Spanned::span),
                &format!("{key} / clear_below"),
                format!("clear_below ({off}) must not be above `above` ({on}): the hysteresis band is [clear_below, above]"),
            );
        }
        return Some(Test::Above { on, off });
    }
    if let Some(b) = &raw.below {
        let on = finite(d, b, key, "below");
        let off = raw.clear_above.as_ref().map_or(on, |c| finite(d, c, key, "clear_above"));
        if off < on {
            d.error(
                raw.clear_above.as_ref().map_or(b.span(), Spanned::span),
                &format!("{key} / clear_above"),
                format!("clear_above ({off}) must not be below `below` ({on}): the hysteresis band is [below, clear_above]"),
            );
        }
        return Some(Test::Below { on, off });
    }
    if let Some(e) = &raw.equals {
        return Some(Test::Equals(match e.get_ref() {
            Lit::Bool(b) => f64::from(u8::from(*b)),
            Lit::Int(i) => *i as f64,
            Lit::Num(n) => finite(d, &Spanned::new(e.span(), *n), key, "equals"),
        }));
    }
    if raw.edge.is_some() {
        let edges = [("rising", Edge::Rising), ("falling", Edge::Falling), ("change", Edge::Change)];
        return Some(Test::Edge(Reader::new(d, key).choice(&raw.edge, "edge", &edges, Edge::Change)));
    }
    if raw.rate_above.is_some() || raw.rate_below.is_some() {
        let above = raw.rate_above.as_ref().map(|v| finite(d, v, key, "rate_above"));
        let below = raw.rate_below.as_ref().map(|v| finite(d, v, key, "rate_below"));
        if raw.over.is_none() {
            let s = raw.rate_above.as_ref().or(raw.rate_below.as_ref()).map(Spanned::span).unwrap_or(0..0);
            d.error(s, &format!("{key} / over"), "a rate needs `over = \"10s\"`: the period the change is measured over");
        }
        let over = Reader::new(d, key).nonzero_duration(&raw.over, "over", Duration::from_secs(1));
        return Some(Test::Rate { above, below, over });
    }
    if raw.quality.is_some() {
        let q = [("good", Quality::Good), ("uncertain", Quality::Uncertain), ("bad", Quality::Bad)];
        return Some(Test::Quality(Reader::new(d, key).choice(&raw.quality, "quality", &q, Quality::Good)));
    }
    let stale = Reader::new(d, key).nonzero_duration(&raw.stale, "stale", Duration::from_secs(1));
    Some(Test::Stale(stale))
}

/// An error when `path` names a configured `[[device]]` without that tag;
/// a warning when nothing configured supplies its device (a typo such as
/// `pump9`: the condition would never see a sample).
pub fn check_known(d: &mut Diag<'_>, known: &KnownTags, path: &str, span: Range<usize>, key: &str) {
    let Some((dev, tag)) = path.split_once('/') else { return };
    if let Some(tags) = known.tags_of(dev) {
        if !tags.iter().any(|t| t == tag) {
            d.error(span, key, format!("device {dev:?} has no tag {tag:?} (its tags: {}): the rule would never see it", tags.join(", ")));
        }
    } else if !known.supplies(dev) {
        d.warn(
            span,
            key,
            format!(
                "no [[device]] or [[source]] supplies device {dev:?} (devices: {}): {path} never gets a sample, so this condition is never true",
                known.device_names()
            ),
        );
    }
}

/// `device/tag` with two valid names.
pub fn valid_path(p: &str) -> bool {
    match p.split_once('/') {
        Some((dv, t)) => crate::names::check(dv).is_ok() && crate::names::check(t).is_ok(),
        None => false,
    }
}

impl Cond {
    /// Every leaf, depth first.
    pub fn leaves(&self) -> Vec<&Leaf> {
        match self {
            Cond::Leaf(l) => vec![l],
            Cond::All(v) | Cond::Any(v) => v.iter().flat_map(Cond::leaves).collect(),
            Cond::Not(c) => c.leaves(),
        }
    }

    /// One line for `relais check` and logs: `pump/temperature > 80 (clear < 75)`.
    pub fn describe(&self) -> String {
        let join = |v: &[Cond], op: &str| format!("({})", v.iter().map(Cond::describe).collect::<Vec<_>>().join(op));
        match self {
            Cond::All(v) => join(v, " and "),
            Cond::Any(v) => join(v, " or "),
            Cond::Not(c) => format!("not {}", c.describe()),
            Cond::Leaf(Leaf { tag, test }) => match test {
                Test::Above { on, off } if on == off => format!("{tag} > {on}"),
                Test::Above { on, off } => format!("{tag} > {on} (clear < {off})"),
                Test::Below { on, off } if on == off => format!("{tag} < {on}"),
                Test::Below { on, off } => format!("{tag} < {on} (clear > {off})"),
                Test::Equals(x) => format!("{tag} == {x}"),
                Test::Edge(e) => format!("{tag} {} edge", format!("{e:?}").to_lowercase()),
                Test::Rate { above, below, over } => {
                    let o = humantime::format_duration(*over);
                    match (above, below) {
                        (Some(a), Some(b)) => format!("rate of {tag} over {o} > {a}/s or < {b}/s"),
                        (Some(a), None) => format!("rate of {tag} over {o} > {a}/s"),
                        (None, Some(b)) => format!("rate of {tag} over {o} < {b}/s"),
                        (None, None) => format!("rate of {tag}"),
                    }
                }
                Test::Quality(q) => format!("{tag} quality {q}"),
                Test::Stale(s) => format!("{tag} stale for {}", humantime::format_duration(*s)),
            },
        }
    }
}
