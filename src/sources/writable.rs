//! The write allow-list and limits of a device tag, shared by the device
//! sources that accept writes (Modbus, OPC UA): the tag keys ([`WRITE_KEYS`]:
//! `writable`, `min`, `max`, `max_rate`, `readback`, `readback_timeout`,
//! `interlock`, `interlock_max_age`, `allow_bad_quality`, `rogue_write`), their reading,
//! and [`admit`], the one check every owner runs on a write job before
//! encoding it. Nothing is writable unless its tag says `writable = true`.
//! See `component::actuate` for the write path.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use toml::Spanned;

use crate::component::actuate::{WriteJob, WriteOutcome, guard};
use crate::component::cond::{Cond, RawCond, validate};
use crate::diag::{Diag, Item, Reader, de_item, take_key};
use crate::model::{Timestamp, Value};

/// The window of `max_rate`.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Default `interlock_max_age`: an interlock input older than this counts as no value.
pub const INTERLOCK_MAX_AGE: Duration = Duration::from_secs(10);

/// A writable tag's `interlock`: a condition on tags that must be known true
/// for a write to go out (see `component::actuate::guard`).
#[derive(Debug, Clone, PartialEq)]
pub struct Interlock {
    /// The condition (tests on current values only).
    pub cond: Cond,
    /// Inputs older than this count as no value (`interlock_max_age`, default [`INTERLOCK_MAX_AGE`]).
    pub max_age: Duration,
    /// Where `interlock` is written in the configuration (for errors found later).
    pub span: Range<usize>,
}

/// A writable tag's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct TagWrite {
    /// Lowest value accepted, in engineering units (after scale and offset).
    pub min: Option<f64>,
    /// Highest value accepted, in engineering units.
    pub max: Option<f64>,
    /// Most writes per minute (sliding 60 s window); `None`: no limit.
    pub max_rate: Option<u32>,
    /// Read the tag before (old value) and after (confirmation) each write (default true).
    pub readback: bool,
    /// Timeout of the read-back read (default: the device timeout).
    pub readback_timeout: Duration,
    /// The interlock, if any.
    pub interlock: Option<Arc<Interlock>>,
    /// Write even when the tag's last read is bad (`allow_bad_quality`, default false).
    pub allow_bad_quality: bool,
    /// Report a change of the tag's read value that no relais write explains
    /// as `security.rogue_write` (`rogue_write`, default true; see
    /// `component::rogue`). Off for a tag a local HMI or the device also writes.
    pub rogue_write: bool,
}

impl TagWrite {
    /// Checks a numeric value `x` (of `value`) against `min` and `max` of tag
    /// `tag`: `out_of_range: …` when outside.
    pub fn check_range(&self, tag: &str, value: &Value, x: f64) -> Result<(), String> {
        if let Some(lo) = self.min.filter(|lo| x < *lo) {
            return Err(format!("out_of_range: {value} is below min {lo} of tag {tag:?}"));
        }
        if let Some(hi) = self.max.filter(|hi| x > *hi) {
            return Err(format!("out_of_range: {value} is above max {hi} of tag {tag:?}"));
        }
        Ok(())
    }
}

impl TagWrite {
    /// The limits for `relais check`: `min -5, max 50, max 6/min, read-back within 1s`.
    pub fn describe(&self) -> String {
        let mut limits = Vec::new();
        if let Some(lo) = self.min {
            limits.push(format!("min {lo}"));
        }
        if let Some(hi) = self.max {
            limits.push(format!("max {hi}"));
        }
        if let Some(r) = self.max_rate {
            limits.push(format!("max {r}/min"));
        }
        if let Some(il) = &self.interlock {
            limits.push(format!("interlock {} (inputs at most {} old)", il.cond.describe(), crate::units::format_duration(il.max_age)));
        }
        if self.allow_bad_quality {
            limits.push("written even when its last read is bad".into());
        }
        if !self.rogue_write {
            limits.push("changes by other writers not reported".into());
        }
        limits.push(if self.readback {
            format!("read-back within {}", crate::units::format_duration(self.readback_timeout))
        } else {
            "no read-back".into()
        });
        limits.join(", ")
    }
}

/// The write keys of one `[[device.tag]]` as read from TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTagWrite {
    /// `writable`.
    pub writable: Option<Spanned<bool>>,
    /// `min`.
    pub min: Option<Spanned<f64>>,
    /// `max`.
    pub max: Option<Spanned<f64>>,
    /// `max_rate`.
    pub max_rate: Option<Spanned<i64>>,
    /// `readback`.
    pub readback: Option<Spanned<bool>>,
    /// `readback_timeout`.
    pub readback_timeout: Option<Spanned<String>>,
    /// `interlock`: a condition (the rules' condition tables).
    pub interlock: Option<Spanned<RawCond>>,
    /// `interlock_max_age`.
    pub interlock_max_age: Option<Spanned<String>>,
    /// `allow_bad_quality`.
    pub allow_bad_quality: Option<Spanned<bool>>,
    /// `rogue_write`.
    pub rogue_write: Option<Spanned<bool>>,
}

/// The tags of a device to watch for rogue writes: the writable ones
/// without `rogue_write = false` (`component::rogue`).
pub fn rogue_watched<'a>(tags: impl IntoIterator<Item = (&'a str, Option<&'a TagWrite>)>) -> Vec<String> {
    tags.into_iter().filter(|(_, w)| w.is_some_and(|w| w.rogue_write)).map(|(n, _)| n.to_string()).collect()
}

/// The tag keys read here.
pub const WRITE_KEYS: &[&str] = &[
    "writable",
    "min",
    "max",
    "max_rate",
    "readback",
    "readback_timeout",
    "interlock",
    "interlock_max_age",
    "allow_bad_quality",
    "rogue_write",
];

/// A protocol's own tag keys followed by [`WRITE_KEYS`]: every key a
/// writable `[[device.tag]]` may have.
pub fn with_write_keys(own: &[&'static str]) -> Vec<&'static str> {
    own.iter().chain(WRITE_KEYS).copied().collect()
}

impl RawTagWrite {
    /// Takes the [`WRITE_KEYS`] out of the tag table `item` (so the rest is
    /// read by the protocol) and reads them; wrong types are recorded in
    /// `diag` under `key`.
    pub fn take(item: &mut Item<'_>, diag: &mut Diag<'_>, key: &str) -> RawTagWrite {
        let mut t = toml::de::DeTable::new();
        for k in WRITE_KEYS {
            if let Some(v) = take_key(item, k) {
                t.insert(Spanned::new(v.span(), Cow::Borrowed(*k)), v);
            }
        }
        if t.is_empty() {
            return RawTagWrite::default();
        }
        de_item(Spanned::new(item.span(), toml::de::DeValue::Table(t)), diag, key).unwrap_or_default()
    }
}

/// Validates a tag's write keys: the limits only with `writable = true`;
/// `read_only`: why the tag can never be written (then `writable = true` is
/// an error); `min`/`max` only when `numeric` (`kind` names the type in
/// messages), finite, `min <= max`. `None` when the tag is not writable.
pub fn read_tag_write(
    r: &mut Reader<'_, '_>,
    w: RawTagWrite,
    read_only: Option<String>,
    numeric: bool,
    kind: &str,
    device_timeout: Duration,
) -> Option<TagWrite> {
    let writable = w.writable.as_ref().is_some_and(|s| *s.get_ref());
    if !writable {
        let given = [
            ("min", w.min.as_ref().map(|s| s.span())),
            ("max", w.max.as_ref().map(|s| s.span())),
            ("max_rate", w.max_rate.as_ref().map(|s| s.span())),
            ("readback", w.readback.as_ref().map(|s| s.span())),
            ("readback_timeout", w.readback_timeout.as_ref().map(|s| s.span())),
            ("interlock", w.interlock.as_ref().map(|s| s.span())),
            ("interlock_max_age", w.interlock_max_age.as_ref().map(|s| s.span())),
            ("allow_bad_quality", w.allow_bad_quality.as_ref().map(|s| s.span())),
            ("rogue_write", w.rogue_write.as_ref().map(|s| s.span())),
        ];
        for (key, span) in given {
            if let Some(span) = span {
                r.error(span, key, format!("`{key}` applies to writable tags only; add writable = true to allow writes"));
            }
        }
        return None;
    }
    if let Some(why) = read_only {
        let span = w.writable.as_ref().map(|s| s.span()).unwrap_or_default();
        r.error(span, "writable", why);
    }
    let mut bound = |v: &Option<Spanned<f64>>, key: &str| -> Option<f64> {
        let s = v.as_ref()?;
        let x = *s.get_ref();
        if !numeric {
            r.error(s.span(), key, format!("`{key}` applies to numeric types, not {kind}"));
        } else if !x.is_finite() {
            r.error(s.span(), key, format!("{key} {x} must be finite"));
        }
        Some(x)
    };
    let min = bound(&w.min, "min");
    let max = bound(&w.max, "max");
    if let (Some(lo), Some(hi), Some(s)) = (min, max, w.max.as_ref())
        && lo > hi
    {
        r.error(s.span(), "max", format!("max {hi} is below min {lo}"));
    }
    let max_rate = r.int_opt::<u32>(&w.max_rate, "max_rate", 1..=60_000);
    let readback = w.readback.as_ref().is_none_or(|s| *s.get_ref());
    let readback_timeout =
        r.duration_in(&w.readback_timeout, "readback_timeout", device_timeout, Duration::from_millis(10)..=Duration::from_secs(600));
    let interlock = read_interlock(r, &w);
    let allow_bad_quality = w.allow_bad_quality.as_ref().is_some_and(|s| *s.get_ref());
    let rogue_write = w.rogue_write.as_ref().is_none_or(|s| *s.get_ref());
    Some(TagWrite { min, max, max_rate, readback, readback_timeout, interlock, allow_bad_quality, rogue_write })
}

/// `interlock` (validated like a rule's condition, tests on current values
/// only) and `interlock_max_age` (only with an interlock).
fn read_interlock(r: &mut Reader<'_, '_>, w: &RawTagWrite) -> Option<Arc<Interlock>> {
    let Some(raw) = &w.interlock else {
        if let Some(s) = &w.interlock_max_age {
            r.error(s.span(), "interlock_max_age", "`interlock_max_age` applies to a tag with an `interlock`");
        }
        return None;
    };
    let max_age =
        r.duration_in(&w.interlock_max_age, "interlock_max_age", INTERLOCK_MAX_AGE, Duration::from_millis(1)..=Duration::from_secs(86_400));
    let key = r.key("interlock");
    let cond = validate(raw.get_ref(), raw.span(), r.diag(), &key, None)?;
    if !guard::interlock_tests_ok(&cond) {
        r.error(
            raw.span(),
            "interlock",
            "an interlock tests current values only: above, below, equals or quality (edge, rate_above, rate_below, stale \
             and the hysteresis keys clear_below / clear_above need a history; use a [[rule]] for those)",
        );
        return None;
    }
    Some(Arc::new(Interlock { cond, max_age, span: raw.span() }))
}

/// The checks every owner runs on a write job before encoding it, in this
/// order: the deadline (`expired`), the allow-list (`not_writable`), a
/// finite number within `min`/`max` (`bad_value`, `out_of_range`), the
/// `interlock` on the live values (`interlock`), the tag's own last read
/// (`bad_quality`, unless `allow_bad_quality`), and `max_rate` against the
/// tag's `rate` log (`rate_exceeded`; the owner records a write that goes
/// out). Returns the tag's limits, or the refusal.
pub fn admit<'w>(job: &WriteJob, write: Option<&'w TagWrite>, rate: &mut RateLog) -> Result<&'w TagWrite, WriteOutcome> {
    let (device, tag, value) = (&job.request.device, &job.request.tag, &job.request.value);
    if job.expired() {
        return Err(WriteOutcome::refused("expired: the deadline passed while the write waited for the device's link"));
    }
    let Some(w) = write else {
        return Err(WriteOutcome::refused(format!(
            "not_writable: tag {tag:?} of device {device:?} is not writable (no writable = true in its [[device.tag]])"
        )));
    };
    if let Some(x) = value.as_f64().filter(|_| !matches!(value, Value::Bool(_))) {
        if !x.is_finite() {
            return Err(WriteOutcome::refused(format!("bad_value: {x} is not a finite number")));
        }
        w.check_range(tag, value, x).map_err(WriteOutcome::refused)?;
    }
    let live = job.live();
    if let Some(il) = &w.interlock {
        let look = |path: &str| path.split_once('/').and_then(|(d, t)| live.get(d, t));
        guard::check_interlock(&il.cond, il.max_age, Timestamp::now(), look).map_err(WriteOutcome::refused)?;
    }
    if !w.allow_bad_quality {
        guard::check_quality(device, tag, live.get(device, tag).as_ref()).map_err(WriteOutcome::refused)?;
    }
    if let Some(max) = w.max_rate
        && !rate.allows(max)
    {
        return Err(WriteOutcome::refused(format!("rate_exceeded: {max} write(s) per minute allowed on tag {tag:?}, already made")));
    }
    Ok(w)
}

/// When a tag's writes went out, for `max_rate`.
#[derive(Debug, Default)]
pub struct RateLog(VecDeque<Instant>);

impl RateLog {
    /// True when fewer than `max` writes were recorded in the last [`RATE_WINDOW`].
    pub fn allows(&mut self, max: u32) -> bool {
        while self.0.front().is_some_and(|x| x.elapsed() >= RATE_WINDOW) {
            self.0.pop_front();
        }
        self.0.len() < max as usize
    }

    /// Records a write going out now.
    pub fn record(&mut self) {
        self.0.push_back(Instant::now());
    }
}
