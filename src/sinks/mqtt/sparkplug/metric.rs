//! Samples → Sparkplug metrics (pure): data types, values, quality and the
//! properties relais adds.
//!
//! - Data types (Sparkplug 3.0 §6.4.16): f64 → Double, i64 → Int64 (two's
//!   complement in `long_value`, §6.4.17), u64 → UInt64, bool → Boolean,
//!   text → String. A null value is `is_null = true` with no value field
//!   (§6.4.6), never a stand-in number.
//! - Quality (§6.4.9.1, the `Quality` property, Int32): `good` → 192 (GOOD);
//!   a reason whose code is `stale` → 500 (STALE); everything else, `uncertain`
//!   included, → 0 (BAD): Sparkplug has no "uncertain", and a doubtful value
//!   is never shown as good. relais's own words travel beside it:
//!   `relais_quality` (`uncertain` / `bad`) and `relais_reason`.
//! - `relais_seq` (UInt64): the sample's `seq`, so a consumer can drop the
//!   duplicates a replay after a lost PUBACK may bring (dedup key
//!   `(gateway, seq)`, as for every relais sink).

use super::proto::{Metric, MetricValue, PropertySet, PropertyValue, datatype};
use crate::model::{Quality, Sample, Value, reason};

/// Sparkplug quality codes (§6.4.9.1).
pub mod quality {
    /// BAD.
    pub const BAD: i32 = 0;
    /// GOOD.
    pub const GOOD: i32 = 192;
    /// STALE.
    pub const STALE: i32 = 500;
}

/// The Sparkplug data type of a value; `None` for null (it has none).
pub fn datatype_of(v: &Value) -> Option<u32> {
    match v {
        Value::Null => None,
        Value::Bool(_) => Some(datatype::BOOLEAN),
        Value::I64(_) => Some(datatype::INT64),
        Value::U64(_) => Some(datatype::UINT64),
        Value::F64(_) => Some(datatype::DOUBLE),
        Value::Str(_) => Some(datatype::STRING),
    }
}

/// The Sparkplug quality code of a relais quality and reason.
pub fn quality_code(q: Quality, why: Option<&str>) -> i32 {
    if why.is_some_and(|r| reason::code(r) == "stale") {
        return quality::STALE;
    }
    match q {
        Quality::Good => quality::GOOD,
        Quality::Uncertain | Quality::Bad => quality::BAD,
    }
}

/// Sets `m`'s value (or `is_null`) from `v`.
pub fn set_value(m: &mut Metric, v: &Value) {
    m.value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(MetricValue::BooleanValue(*b)),
        Value::I64(i) => Some(MetricValue::LongValue(*i as u64)),
        Value::U64(u) => Some(MetricValue::LongValue(*u)),
        Value::F64(f) => Some(MetricValue::DoubleValue(*f)),
        Value::Str(s) => Some(MetricValue::StringValue(s.clone())),
    };
    m.is_null = if v.is_null() { Some(true) } else { None };
}

/// Milliseconds since the Unix epoch (UTC), as Sparkplug timestamps are
/// (§6.4.5); times before 1970 become 0.
pub fn millis(ts: crate::model::Timestamp) -> u64 {
    ts.as_millis().max(0) as u64
}

/// Properties of one value: `Quality` when not good (or `always`, as births
/// carry it), `relais_quality` and `relais_reason` when not good, `engUnit`
/// when given, `relais_seq` when given.
pub fn properties(q: Quality, why: Option<&str>, seq: Option<u64>, unit: Option<&str>, always: bool) -> Option<PropertySet> {
    let mut p = PropertySet::default();
    if always || q != Quality::Good || why.is_some() {
        p.push("Quality", PropertyValue::int32(quality_code(q, why)));
    }
    if q != Quality::Good {
        p.push("relais_quality", PropertyValue::string(q.as_str()));
    }
    if let Some(r) = why {
        p.push("relais_reason", PropertyValue::string(r));
    }
    if let Some(u) = unit {
        p.push("engUnit", PropertyValue::string(u));
    }
    if let Some(s) = seq {
        p.push("relais_seq", PropertyValue::uint64(s));
    }
    (!p.keys.is_empty()).then_some(p)
}

/// One DDATA metric for a sample: alias only (no name, no datatype, §6.4.6),
/// timestamp, value, properties; `is_historical` when replayed.
pub fn data_metric(s: &Sample, alias: u64, historical: bool) -> Metric {
    let mut m = Metric {
        alias: Some(alias),
        timestamp: Some(millis(s.ts)),
        is_historical: historical.then_some(true),
        properties: properties(s.quality, s.reason.as_deref(), Some(s.seq), None, false),
        ..Default::default()
    };
    set_value(&mut m, &s.value);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TagMeta, Timestamp};

    #[test]
    fn quality_codes_never_show_doubt_as_good() {
        assert_eq!(quality_code(Quality::Good, None), 192);
        assert_eq!(quality_code(Quality::Uncertain, Some("out_of_range")), 0);
        assert_eq!(quality_code(Quality::Bad, Some("timeout: no answer")), 0);
        assert_eq!(quality_code(Quality::Uncertain, Some("stale: no change for 60s")), 500);
    }

    #[test]
    fn values_keep_their_type_and_null_is_null() {
        let meta = TagMeta::new("pump1", "t", Some("Cel"));
        let mut s = Sample::good(meta.clone(), Value::I64(-2), Timestamp::from_millis(1_700_000_000_123));
        s.seq = 7;
        let m = data_metric(&s, 5, true);
        assert_eq!(m.value, Some(MetricValue::LongValue((-2i64) as u64)));
        assert_eq!((m.alias, m.name.as_deref(), m.datatype), (Some(5), None, None));
        assert_eq!((m.timestamp, m.is_historical, m.is_null), (Some(1_700_000_000_123), Some(true), None));
        let p = m.properties.unwrap();
        assert_eq!(p.keys, ["relais_seq"]);
        let b = Sample::bad(meta, "timeout: no answer".into(), Timestamp::from_millis(1));
        let m = data_metric(&b, 5, false);
        assert_eq!((m.value, m.is_null, m.is_historical), (None, Some(true), None));
        let p = m.properties.unwrap();
        assert_eq!(p.keys, ["Quality", "relais_quality", "relais_reason", "relais_seq"]);
        assert_eq!(p.values[0], PropertyValue::int32(0));
        assert_eq!(datatype_of(&Value::U64(1)), Some(datatype::UINT64));
        assert_eq!(datatype_of(&Value::Null), None);
    }
}
