//! The write guards that depend on what the tags read now: the `interlock`
//! of a writable tag (a [`Cond`] on other tags that must hold) and the
//! bad-quality refusal. Pure: the tags are looked up through a closure, so
//! the rules are unit-tested without a gateway; the owners of device links
//! call them through `sources::writable::admit` with the live table.
//!
//! # Invariants (fail safe)
//! - An interlock allows a write only when its condition is *known* true.
//!   A leaf whose tag has no value, whose last sample is bad or uncertain,
//!   or whose last sample is older than the interlock's `max_age` is
//!   *unknown*; unknown propagates like in the rules (Kleene logic: `all`
//!   is false as soon as one part is false, `any` true as soon as one part
//!   is true, `not` keeps unknown), and unknown refuses.
//! - Only tests on the current value are allowed in an interlock (`above`,
//!   `below`, `equals`, `quality`): the configuration rejects `edge`,
//!   `rate_*`, `stale` and hysteresis ([`interlock_tests_ok`]).
//! - The refusal names the condition and every tag it read with its value,
//!   quality and age (or why it had none).
//! - Bad quality: a tag whose *last* read is bad is refused
//!   `bad_quality: …`; a tag never read yet is not refused by this guard
//!   (a write to a device that does not answer fails on its own, and the
//!   owner reads the tag before writing when `readback` is on).

use std::time::Duration;

use crate::component::cond::{Cond, Leaf, Test};
use crate::component::live::Latest;
use crate::model::{Quality, Timestamp};

/// What an interlock leaf saw of its tag.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// No sample of the tag yet.
    Missing,
    /// The last sample, `age_ns` old.
    Sample(Latest, i64),
}

/// Checks `cond` (an interlock) at `now` on the tags `lookup` returns
/// (`device/tag` → last committed sample): `Ok` only when it is known true;
/// `Err("interlock: …")` naming the condition and the value of each tag it
/// read otherwise. A sample older than `max_age` counts as no value.
pub fn check_interlock(cond: &Cond, max_age: Duration, now: Timestamp, lookup: impl Fn(&str) -> Option<Latest>) -> Result<(), String> {
    let see = |tag: &str| match lookup(tag) {
        Some(l) => {
            let age = l.age_ns(now);
            Seen::Sample(l, age)
        }
        None => Seen::Missing,
    };
    let max_ns = i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX);
    if eval(cond, &see, max_ns) == Some(true) {
        return Ok(());
    }
    let mut read: Vec<String> = Vec::new();
    for l in cond.leaves() {
        let s = describe_seen(&l.tag, &see(&l.tag), max_age, max_ns);
        if !read.contains(&s) {
            read.push(s);
        }
    }
    Err(format!("interlock: {} does not hold ({})", cond.describe(), read.join("; ")))
}

/// Kleene evaluation: `None` is unknown.
fn eval(c: &Cond, see: &dyn Fn(&str) -> Seen, max_ns: i64) -> Option<bool> {
    match c {
        Cond::Leaf(l) => leaf(l, &see(&l.tag), max_ns),
        Cond::All(v) => {
            let r: Vec<Option<bool>> = v.iter().map(|c| eval(c, see, max_ns)).collect();
            if r.contains(&Some(false)) {
                Some(false)
            } else if r.iter().all(|x| *x == Some(true)) {
                Some(true)
            } else {
                None
            }
        }
        Cond::Any(v) => {
            let r: Vec<Option<bool>> = v.iter().map(|c| eval(c, see, max_ns)).collect();
            if r.contains(&Some(true)) {
                Some(true)
            } else if r.iter().all(|x| *x == Some(false)) {
                Some(false)
            } else {
                None
            }
        }
        Cond::Not(c) => eval(c, see, max_ns).map(|b| !b),
    }
}

fn leaf(l: &Leaf, seen: &Seen, max_ns: i64) -> Option<bool> {
    let Seen::Sample(s, age) = seen else { return None };
    if *age > max_ns {
        return None;
    }
    if let Test::Quality(q) = l.test {
        return Some(s.quality == q);
    }
    if s.quality != Quality::Good {
        return None;
    }
    // Booleans as 0/1 (`equals = false` is 0).
    let x = s.value.as_f64()?;
    match l.test {
        Test::Above { on, .. } => Some(x > on),
        Test::Below { on, .. } => Some(x < on),
        Test::Equals(v) => Some(x == v),
        // Rejected by the configuration; unknown if ever seen.
        _ => None,
    }
}

fn describe_seen(tag: &str, seen: &Seen, max_age: Duration, max_ns: i64) -> String {
    match seen {
        Seen::Missing => format!("{tag}: no value yet"),
        Seen::Sample(s, age) => {
            let age_s = *age as f64 / 1e9;
            if *age > max_ns {
                return format!(
                    "{tag} = {} is {age_s:.1}s old, older than interlock_max_age {}",
                    s.value,
                    crate::units::format_duration(max_age)
                );
            }
            match (s.quality, &s.reason) {
                (Quality::Good, _) => format!("{tag} = {} ({age_s:.1}s old)", s.value),
                (q, Some(r)) => format!("{tag} is {q} ({r})"),
                (q, None) => format!("{tag} is {q}"),
            }
        }
    }
}

/// True when every leaf of `cond` tests the current value (`above`,
/// `below` without hysteresis, `equals`, `quality`): what an interlock may use.
pub fn interlock_tests_ok(cond: &Cond) -> bool {
    cond.leaves().iter().all(|l| match l.test {
        Test::Above { on, off } | Test::Below { on, off } => on == off,
        Test::Equals(_) | Test::Quality(_) => true,
        Test::Edge(_) | Test::Rate { .. } | Test::Stale(_) => false,
    })
}

/// The bad-quality refusal: `Err("bad_quality: …")` when the last committed
/// sample `last` of `device`/`tag` is bad. A tag never read (`None`) or
/// read good or uncertain passes.
pub fn check_quality(device: &str, tag: &str, last: Option<&Latest>) -> Result<(), String> {
    match last {
        Some(l) if l.quality == Quality::Bad => Err(format!(
            "bad_quality: the last read of {device}/{tag} is bad ({}); writes are refused until it reads good \
             (allow_bad_quality = true on the tag allows them)",
            l.reason.as_deref().unwrap_or("no reason given")
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
