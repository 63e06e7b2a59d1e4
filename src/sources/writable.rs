//! The write allow-list and limits of a device tag, shared by the device
//! sources that accept writes (Modbus, OPC UA): the tag keys `writable`,
//! `min`, `max`, `max_rate`, `readback`, `readback_timeout`, the limit
//! checks and the `max_rate` window. Nothing is writable unless its tag says
//! `writable = true`. See `component::actuate` for the write path.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use toml::Spanned;

use crate::diag::Reader;
use crate::model::Value;

/// The window of `max_rate`.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A writable tag's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
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
        limits.push(if self.readback {
            format!("read-back within {}", crate::units::format_duration(self.readback_timeout))
        } else {
            "no read-back".into()
        });
        limits.join(", ")
    }
}

/// The write keys of one `[[device.tag]]` as read from TOML.
#[derive(Debug, Default)]
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
}

/// The tag keys read here.
pub const WRITE_KEYS: &[&str] = &["writable", "min", "max", "max_rate", "readback", "readback_timeout"];

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
    Some(TagWrite { min, max, max_rate, readback, readback_timeout })
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
