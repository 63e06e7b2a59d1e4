//! `[[check]]`: which tags are checked on ingest and with what limits.
//! Every key is listed in `README.md` beside this file and in `sample.toml`.
//!
//! A tag takes, key by key, the value of the first `[[check]]` (in file
//! order) whose `match` covers it and that sets the key: a broad entry
//! (`match = "**"`, `bad_quality = true`) and a narrow one (`match =
//! "press/pressure"`, `max = 250.0`) combine.

use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use toml::Spanned;

use crate::component::cond::KnownTags;
use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};

/// Keys of a `[[check]]`.
pub const CHECK_KEYS: &[&str] = &[
    "match",
    "min",
    "max",
    "suspect_min",
    "suspect_max",
    "flat_line",
    "flat_tolerance",
    "spike",
    "rate_of_change",
    "counter",
    "stale",
    "stale_after",
    "envelope",
    "bad_quality",
];

/// How staleness is judged for a tag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaleRule {
    /// `stale = k`: k poll periods of a polled source (Modbus); default 2
    /// when only `stale_after` is set.
    pub periods: u32,
    /// `stale_after`: the limit for sources without a poll period (OPC UA,
    /// files, HTTP, MQTT), and for polled ones when `stale` is not set.
    pub after: Option<Duration>,
    /// `stale` was written (it wins over `stale_after` on polled sources).
    pub periods_set: bool,
}

/// The limits of one tag (or what one `[[check]]` sets: `None` = not set).
/// Units are the tag's engineering units; rates are units per second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Fail span, low end: a value below is bad `gross_range` (QARTOD gross range "fail").
    pub min: Option<f64>,
    /// Fail span, high end.
    pub max: Option<f64>,
    /// Suspect span, low end: a value below (within the fail span) is uncertain `gross_range` (QARTOD "suspect").
    pub suspect_min: Option<f64>,
    /// Suspect span, high end.
    pub suspect_max: Option<f64>,
    /// Flat line window: a value unchanged within `flat_tolerance` this long is uncertain `flat_line`.
    pub flat_line: Option<Duration>,
    /// Largest change still counted as "unchanged" (default 0).
    pub flat_tolerance: Option<f64>,
    /// Spike threshold: a jump larger than this from the last accepted value that does not persist.
    pub spike: Option<f64>,
    /// Largest rate of change, units per second.
    pub rate_of_change: Option<f64>,
    /// The tag is a counter: a decrease is uncertain `counter_reset`.
    pub counter: Option<bool>,
    /// Staleness rule.
    pub stale: Option<StaleRule>,
    /// Physical envelope `(min, max)`: a value outside cannot be a real
    /// reading; bad `response_injection` and a security event.
    pub envelope: Option<(f64, f64)>,
    /// Emit `tag.flagged` / `tag.cleared` when the tag's quality turns bad
    /// for a reason that is not a communication failure.
    pub bad_quality: Option<bool>,
}

impl Limits {
    /// Fills every key not set here from `o` (first set wins).
    pub fn merge(&mut self, o: &Limits) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = o.$f.clone(); } )* };
        }
        fill!(min, max, suspect_min, suspect_max, flat_line, flat_tolerance, spike, rate_of_change, counter, stale, envelope, bad_quality);
    }

    /// True when no check is set (nothing to do for the tag).
    pub fn is_empty(&self) -> bool {
        self.counter != Some(true) && self.bad_quality != Some(true) && self.has_no_value_check()
    }

    fn has_no_value_check(&self) -> bool {
        self.min.is_none()
            && self.max.is_none()
            && self.suspect_min.is_none()
            && self.suspect_max.is_none()
            && self.flat_line.is_none()
            && self.spike.is_none()
            && self.rate_of_change.is_none()
            && self.stale.is_none()
            && self.envelope.is_none()
    }
}

/// One validated `[[check]]`.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// The `match` glob as written.
    pub pattern: String,
    /// The glob on `device/tag` (globset: `*` within one level, `**` across).
    pub glob: GlobMatcher,
    /// What it sets.
    pub limits: Limits,
}

impl PartialEq for CheckConfig {
    fn eq(&self, o: &Self) -> bool {
        self.pattern == o.pattern && self.limits == o.limits
    }
}

#[derive(Debug, Deserialize)]
struct RawCheck {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    suspect_min: Option<Spanned<f64>>,
    suspect_max: Option<Spanned<f64>>,
    flat_line: Option<Spanned<String>>,
    flat_tolerance: Option<Spanned<f64>>,
    spike: Option<Spanned<f64>>,
    rate_of_change: Option<Spanned<f64>>,
    counter: Option<bool>,
    stale: Option<Spanned<i64>>,
    stale_after: Option<Spanned<String>>,
    envelope: Option<Spanned<RawEnvelope>>,
    bad_quality: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    min: f64,
    max: f64,
}

/// Longest flat-line window or stale limit.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// The glob of a `match` (same syntax as `/api/tags?match=`).
pub fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("match = {pattern:?} is not a glob on device/tag: {e}"))
}

/// Reads one `[[check]]`; errors go to `diag` under `key`.
pub fn parse_check(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str) -> Option<CheckConfig> {
    let first = diag.error_count();
    reject_unknown_keys(&mut item, CHECK_KEYS, diag, key);
    let span = item.span();
    let raw: RawCheck = de_item(item, diag, key)?;
    let before = diag.error_count();
    let glob = match glob(raw.pattern.get_ref()) {
        Ok(g) => Some(g),
        Err(e) => {
            diag.error(raw.pattern.span(), &format!("{key} / match"), e);
            None
        }
    };
    let mut r = Reader::new(diag, key);
    let mut num = |v: &Option<Spanned<f64>>, name: &str, positive: bool| -> Option<f64> {
        let s = v.as_ref()?;
        let x = *s.get_ref();
        if !x.is_finite() || (positive && x <= 0.0) {
            let want = if positive { "a finite number above 0" } else { "a finite number" };
            r.error(s.span(), name, format!("{x} is not {want}"));
            return None;
        }
        Some(x)
    };
    let mut l = Limits {
        min: num(&raw.min, "min", false),
        max: num(&raw.max, "max", false),
        suspect_min: num(&raw.suspect_min, "suspect_min", false),
        suspect_max: num(&raw.suspect_max, "suspect_max", false),
        spike: num(&raw.spike, "spike", true),
        rate_of_change: num(&raw.rate_of_change, "rate_of_change", true),
        counter: raw.counter,
        bad_quality: raw.bad_quality,
        ..Limits::default()
    };
    if let Some(t) = &raw.flat_tolerance {
        let x = *t.get_ref();
        if !x.is_finite() || x < 0.0 {
            r.error(t.span(), "flat_tolerance", format!("{x} is not a finite number ≥ 0"));
        } else {
            l.flat_tolerance = Some(x);
        }
    }
    let window = r.duration_in(&raw.flat_line, "flat_line", Duration::ZERO, Duration::from_millis(1)..=MAX_WINDOW);
    l.flat_line = Some(window).filter(|d| !d.is_zero());
    let periods: Option<u32> = r.int_opt(&raw.stale, "stale", 1..=1000);
    let after = raw
        .stale_after
        .as_ref()
        .map(|_| r.duration_in(&raw.stale_after, "stale_after", Duration::ZERO, Duration::from_millis(10)..=MAX_WINDOW));
    if periods.is_some() || after.is_some_and(|d| !d.is_zero()) {
        l.stale = Some(StaleRule { periods: periods.unwrap_or(2), after: after.filter(|d| !d.is_zero()), periods_set: periods.is_some() });
    }
    if let Some(e) = &raw.envelope {
        let (lo, hi) = (e.get_ref().min, e.get_ref().max);
        if !lo.is_finite() || !hi.is_finite() || lo >= hi {
            r.error(e.span(), "envelope", format!("envelope min {lo} must be below max {hi} (both finite)"));
        } else {
            l.envelope = Some((lo, hi));
        }
    }
    let order = [
        (l.min, l.max, &raw.min, "min", "max"),
        (l.suspect_min, l.suspect_max, &raw.suspect_min, "suspect_min", "suspect_max"),
        (l.min, l.suspect_min, &raw.suspect_min, "min", "suspect_min"),
        (l.suspect_max, l.max, &raw.suspect_max, "suspect_max", "max"),
    ];
    for (lo, hi, at, a, b) in order {
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            let at = at.as_ref().map_or(span.clone(), |s| s.span());
            r.error(
                at,
                a,
                format!("{a} {lo} is above {b} {hi}: the suspect span lies within the fail span (min ≤ suspect_min ≤ suspect_max ≤ max)"),
            );
        }
    }
    if l.is_empty() && r.error_count() == first {
        r.error(span.start..span.start, "match", "this [[check]] sets no check: give min/max, suspect_min/suspect_max, flat_line, spike, rate_of_change, counter, stale, stale_after, envelope or bad_quality");
    }
    if diag.error_count() > before {
        return None;
    }
    Some(CheckConfig { pattern: raw.pattern.into_inner(), glob: glob?, limits: l })
}

/// Reads the `[[check]]` array. With `known` (the configured devices and
/// sources), a `match` that covers no tag that can come is a warning.
pub fn parse_checks(v: Item<'_>, diag: &mut Diag<'_>, known: Option<&KnownTags>) -> Vec<CheckConfig> {
    let mut out = Vec::new();
    for (i, item) in crate::diag::array_items(v, diag, "check").into_iter().enumerate() {
        let key = format!("check #{}", i + 1);
        let at = crate::diag::peek_str(&item, "match").map(|(_, s)| s);
        let Some(c) = parse_check(item, diag, &key) else { continue };
        if let (Some(k), Some(at)) = (known, at)
            && !could_match(&c, k)
        {
            diag.warn(
                at,
                &format!("{key} / match"),
                format!("match = {:?} covers no configured tag (devices: {}): this check will never run", c.pattern, k.device_names()),
            );
        }
        out.push(c);
    }
    out
}

/// Whether a sample covered by `c` can come: a configured device's tag
/// matches, or a source may name the device (any tag name may come).
fn could_match(c: &CheckConfig, k: &KnownTags) -> bool {
    if k.open {
        return true;
    }
    if k.devices.iter().any(|(d, tags)| tags.iter().any(|t| c.glob.is_match(format!("{d}/{t}")))) {
        return true;
    }
    // A source's tags come from its data: the device part must match.
    let dev_part = c.pattern.split('/').next().unwrap_or("");
    let dev_glob = if c.pattern.starts_with("**") { None } else { glob(dev_part).ok() };
    k.other_devices.iter().any(|d| dev_glob.as_ref().is_none_or(|g| g.is_match(d.as_str())))
}

/// The merged limits of `device/tag` over `checks` (empty when none matches).
pub fn limits_for(checks: &[CheckConfig], path: &str) -> Limits {
    let mut l = Limits::default();
    for c in checks.iter().filter(|c| c.glob.is_match(path)) {
        l.merge(&c.limits);
    }
    l
}
