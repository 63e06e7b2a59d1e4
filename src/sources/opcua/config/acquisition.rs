//! The acquisition keys shared by an OPC UA device (its defaults) and its
//! tags: subscription or polling, intervals, queue size, deadband.

use std::time::Duration;

use toml::Spanned;

use super::Deadband;
use crate::diag::Reader;

/// The acquisition keys as read, of a device or a tag.
pub(super) struct RawAcq<'a> {
    pub(super) mode: &'a Option<Spanned<String>>,
    pub(super) publishing_interval: &'a Option<Spanned<String>>,
    pub(super) sampling_interval: &'a Option<Spanned<String>>,
    pub(super) queue_size: &'a Option<Spanned<i64>>,
    pub(super) poll_interval: &'a Option<Spanned<String>>,
    pub(super) deadband: &'a Option<Spanned<f64>>,
    pub(super) deadband_type: &'a Option<Spanned<String>>,
}

/// The [`RawAcq`] of a raw device or tag (both have the same fields).
macro_rules! raw_acq {
    ($r:expr) => {
        $crate::sources::opcua::config::acquisition::RawAcq {
            mode: &$r.mode,
            publishing_interval: &$r.publishing_interval,
            sampling_interval: &$r.sampling_interval,
            queue_size: &$r.queue_size,
            poll_interval: &$r.poll_interval,
            deadband: &$r.deadband,
            deadband_type: &$r.deadband_type,
        }
    };
}
pub(super) use raw_acq;

/// Resolved acquisition defaults of a device, overridable per tag.
#[derive(Clone, Copy)]
pub(super) struct AcqDefaults {
    pub(super) poll: bool,
    pub(super) publishing_interval: Duration,
    /// `None`: the publishing interval.
    pub(super) sampling_interval: Option<Duration>,
    pub(super) queue_size: u32,
    pub(super) poll_interval: Duration,
    pub(super) deadband: Option<Deadband>,
}

impl Default for AcqDefaults {
    fn default() -> Self {
        AcqDefaults {
            poll: false,
            publishing_interval: Duration::from_secs(1),
            sampling_interval: None,
            queue_size: 1,
            poll_interval: Duration::from_secs(1),
            deadband: None,
        }
    }
}

/// Intervals of a subscription or a poll: 1ms to a day.
const INTERVALS: std::ops::RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(86_400);

/// Reads the acquisition keys of a device or a tag (`r` reads its table)
/// over the defaults `def`.
pub(super) fn acquisition(r: &mut Reader<'_, '_>, raw: &RawAcq<'_>, def: AcqDefaults) -> AcqDefaults {
    let modes = [("subscription", false), ("poll", true), ("subscribe", false), ("polling", true), ("read", true)];
    let mut out = def;
    out.poll = r.choice(raw.mode, "mode", &modes, def.poll);
    out.publishing_interval = r.duration_in(raw.publishing_interval, "publishing_interval", def.publishing_interval, INTERVALS);
    out.sampling_interval = match raw.sampling_interval {
        // "0" asks the server for its fastest rate (Part 4 §5.12.1.2).
        Some(s) if s.get_ref().trim() == "0" => Some(Duration::ZERO),
        None => def.sampling_interval,
        v => Some(r.duration_in(v, "sampling_interval", Duration::from_secs(1), INTERVALS)),
    };
    out.poll_interval = r.duration_in(raw.poll_interval, "poll_interval", def.poll_interval, INTERVALS);
    out.queue_size = r.int(raw.queue_size, "queue_size", 1..=u32::MAX as i64, def.queue_size);
    out.deadband = deadband(r, raw, def.deadband);
    out
}

/// `deadband` and `deadband_type` (absolute by default, or the device's type).
fn deadband(r: &mut Reader<'_, '_>, raw: &RawAcq<'_>, def: Option<Deadband>) -> Option<Deadband> {
    let percent = raw.deadband_type.as_ref().and_then(|_| {
        let before = r.error_count();
        let p = r.choice(raw.deadband_type, "deadband_type", &[("absolute", false), ("percent", true)], false);
        (r.error_count() == before).then_some(p)
    });
    if let Some(v) = raw.deadband {
        let x = *v.get_ref();
        let percent = percent.unwrap_or(matches!(def, Some(Deadband::Percent(_))));
        if !x.is_finite() || x < 0.0 || (percent && x > 100.0) {
            let m = format!("deadband {x} is out of range; expected 0 or more{}", if percent { ", at most 100 (percent)" } else { "" });
            r.error(v.span(), "deadband", m);
            return def;
        }
        return (x != 0.0).then_some(if percent { Deadband::Percent(x) } else { Deadband::Absolute(x) });
    }
    match (percent, def, raw.deadband_type) {
        (Some(p), Some(Deadband::Absolute(x) | Deadband::Percent(x)), _) => {
            Some(if p { Deadband::Percent(x) } else { Deadband::Absolute(x) })
        }
        (Some(_), None, Some(t)) => {
            r.error(t.span(), "deadband_type", "deadband_type without a `deadband` value");
            def
        }
        _ => def,
    }
}

/// Warnings for keys that do not apply to how the tag is acquired.
pub(super) fn warn_poll_keys(r: &mut Reader<'_, '_>, raw: &RawAcq<'_>, acq: &AcqDefaults) {
    if acq.poll {
        for (v, n) in [(raw.publishing_interval, "publishing_interval"), (raw.sampling_interval, "sampling_interval")] {
            if let Some(v) = v {
                r.warn(v.span(), n, format!("`{n}` applies to mode = \"subscription\"; this tag is polled (poll_interval)"));
            }
        }
        if let Some(v) = raw.deadband {
            r.warn(v.span(), "deadband", "a deadband applies to mode = \"subscription\"; this tag is polled");
        }
    } else if let Some(v) = raw.poll_interval {
        r.warn(
            v.span(),
            "poll_interval",
            "`poll_interval` applies to mode = \"poll\"; this tag is subscribed (publishing_interval, sampling_interval)",
        );
    }
}
