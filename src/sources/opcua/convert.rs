//! OPC UA DataValues to samples (pure).
//!
//! - Quality from the StatusCode's severity bits (`code >> 30`: 0 good,
//!   1 uncertain, 2–3 bad; OPC UA Part 4 §7.39, field case B15). Info bits in a
//!   Good code (e.g. the DA quality byte `0xC0`) do not touch the value.
//! - The full 32-bit code is kept in [`Sample::status`]; an uncertain or bad
//!   sample's reason is `opcua_status(0x801F0000): BadUserAccessDenied`.
//! - A bad value is never carried: the sample's value is null (field case B14).
//! - `ts` is the SourceTimestamp when present, else the ServerTimestamp, else
//!   the gateway's acquisition time; the ServerTimestamp is kept in
//!   [`Sample::server_ts`] (Part 4 §7.11).

use std::sync::Arc;

use opcua::types::{DataValue, DateTime, StatusCode, Variant};

use crate::model::{Quality, Sample, TagMeta, Timestamp, Value, reason};

/// Reason prefix of uncertain and bad OPC UA samples.
pub const OPCUA_STATUS: &str = "opcua_status";

/// `opcua_status(0x801F0000): BadUserAccessDenied` for a StatusCode.
pub fn status_reason(code: u32) -> String {
    format!("{OPCUA_STATUS}(0x{code:08X}): {}", StatusCode::from(code))
}

/// A timestamp, or `None` for the null DateTime (year 1601, "not set").
pub fn timestamp(t: &DateTime) -> Option<Timestamp> {
    if t.is_null() {
        return None;
    }
    t.as_chrono().timestamp_nanos_opt().map(Timestamp)
}

/// The sample of one DataValue for tag `meta`, acquired at `recv`.
pub fn to_sample(meta: Arc<TagMeta>, dv: &DataValue, recv: Timestamp) -> Sample {
    let code = dv.status.map_or(0, |s| s.bits());
    let quality = Quality::from_opcua_status(code);
    let server_ts = dv.server_timestamp.as_ref().and_then(timestamp);
    let ts = dv.source_timestamp.as_ref().and_then(timestamp).or(server_ts).unwrap_or(recv);
    let mut s = Sample::bad(meta, Arc::from(""), ts);
    s.recv_ts = recv;
    s.server_ts = server_ts;
    s.status = Some(code);
    let status_text = || -> Arc<str> { status_reason(code).into() };
    match quality {
        Quality::Bad => {
            s.reason = Some(status_text());
        }
        Quality::Good | Quality::Uncertain => match dv.value.as_ref().map(value_of) {
            Some(Ok(v)) if !v.is_null() => {
                s.value = v;
                s.quality = quality;
                s.reason = if quality == Quality::Good { None } else { Some(status_text()) };
            }
            Some(Err(why)) => s.reason = Some(why.into()),
            _ => {
                s.reason = Some(
                    if quality == Quality::Good {
                        format!("{}: the server sent status Good without a value", reason::NULL)
                    } else {
                        format!("{}; no value", status_reason(code))
                    }
                    .into(),
                )
            }
        },
    }
    s
}

/// A sample's value from an OPC UA Variant (Part 6 §5.1.2 built-in types).
///
/// Integers keep their exact value; Float widens exactly to f64; NaN and
/// ±Infinity are errors (reason `non_finite`). Strings, LocalizedText,
/// QualifiedName, NodeId, Guid and DateTime become text; arrays of scalars
/// become a JSON array in text form. Empty is [`Value::Null`].
pub fn value_of(v: &Variant) -> Result<Value, String> {
    let f = |x: f64| {
        if x.is_finite() { Ok(Value::F64(x)) } else { Err(format!("{}: server sent {x}", reason::NON_FINITE)) }
    };
    Ok(match v {
        Variant::Empty => Value::Null,
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(x) => Value::I64(*x as i64),
        Variant::Int16(x) => Value::I64(*x as i64),
        Variant::Int32(x) => Value::I64(*x as i64),
        Variant::Int64(x) => Value::I64(*x),
        Variant::Byte(x) => Value::U64(*x as u64),
        Variant::UInt16(x) => Value::U64(*x as u64),
        Variant::UInt32(x) => Value::U64(*x as u64),
        Variant::UInt64(x) => Value::U64(*x),
        Variant::Float(x) => return f(*x as f64),
        Variant::Double(x) => return f(*x),
        Variant::String(s) => Value::Str(s.value().clone().unwrap_or_default()),
        Variant::LocalizedText(t) => Value::Str(t.text.value().clone().unwrap_or_default()),
        Variant::QualifiedName(q) => Value::Str(q.name.value().clone().unwrap_or_default()),
        Variant::DateTime(t) => Value::Str(t.as_chrono().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Variant::Guid(g) => Value::Str(g.to_string()),
        Variant::NodeId(n) => Value::Str(n.to_string()),
        Variant::StatusCode(c) => Value::U64(c.bits() as u64),
        Variant::Variant(inner) => return value_of(inner),
        Variant::Array(a) => {
            let mut items = Vec::with_capacity(a.values.len());
            for x in &a.values {
                items.push(match value_of(x)? {
                    Value::Null => serde_json::Value::Null,
                    Value::Bool(b) => b.into(),
                    Value::I64(i) => i.into(),
                    Value::U64(u) => u.into(),
                    Value::F64(f) => f.into(),
                    Value::Str(s) => s.into(),
                });
            }
            Value::Str(serde_json::Value::Array(items).to_string())
        }
        other => return Err(format!("{}: unsupported OPC UA type {:?}", reason::PARSE_ERROR, other.type_id())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Arc<TagMeta> {
        TagMeta::new("plc", "t", None)
    }

    fn dv(value: Option<Variant>, code: u32) -> DataValue {
        DataValue { value, status: Some(StatusCode::from(code)), ..Default::default() }
    }

    /// Field case B15: severity = code >> 30.
    #[test]
    fn status_severity_bits() {
        let cases = [
            (0x0000_0000u32, Quality::Good),
            (0x0000_00C0, Quality::Good),
            (0x4000_0000, Quality::Uncertain),
            (0x4090_0000, Quality::Uncertain),
            (0x8000_0000, Quality::Bad),
            (0x8034_0000, Quality::Bad),
            (0x801F_0000, Quality::Bad),
        ];
        for (code, q) in cases {
            let s = to_sample(meta(), &dv(Some(Variant::Double(1.0)), code), Timestamp(5));
            assert_eq!(s.quality, q, "0x{code:08X}");
            assert_eq!(s.status, Some(code));
            match q {
                Quality::Bad => assert_eq!(s.value, Value::Null),
                _ => assert_eq!(s.value, Value::F64(1.0), "0x{code:08X} must keep its value"),
            }
        }
        let s = to_sample(meta(), &dv(Some(Variant::Double(1.0)), 0x4090_0000), Timestamp(5));
        assert_eq!(s.reason.as_deref(), Some("opcua_status(0x40900000): UncertainLastUsableValue"));
    }

    /// Field case B14: a bad node has no value and names its status.
    #[test]
    fn bad_node_has_no_value() {
        let s = to_sample(meta(), &dv(None, 0x801F_0000), Timestamp(5));
        assert_eq!(s.quality, Quality::Bad);
        assert_eq!(s.value, Value::Null);
        assert_eq!(s.reason.as_deref(), Some("opcua_status(0x801F0000): BadUserAccessDenied"));
        // A bad status with a stale value attached still carries no value.
        let s = to_sample(meta(), &dv(Some(Variant::Double(10.0)), 0x8000_0000), Timestamp(5));
        assert_eq!(s.value, Value::Null);
        assert_eq!(s.quality, Quality::Bad);
    }

    #[test]
    fn timestamps_source_then_server_then_receive() {
        let src = DateTime::from(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let srv = DateTime::from(chrono::DateTime::from_timestamp(1_700_000_001, 0).unwrap());
        let mut d = dv(Some(Variant::Int32(42)), 0);
        d.source_timestamp = Some(src);
        d.server_timestamp = Some(srv);
        let s = to_sample(meta(), &d, Timestamp(5));
        assert_eq!(s.ts, Timestamp(1_700_000_000_000_000_000));
        assert_eq!(s.server_ts, Some(Timestamp(1_700_000_001_000_000_000)));
        assert_eq!(s.recv_ts, Timestamp(5));
        assert_eq!(s.value, Value::I64(42));
        d.source_timestamp = None;
        assert_eq!(to_sample(meta(), &d, Timestamp(5)).ts, Timestamp(1_700_000_001_000_000_000));
        d.server_timestamp = Some(DateTime::null());
        assert_eq!(to_sample(meta(), &d, Timestamp(5)).ts, Timestamp(5));
    }

    #[test]
    fn variants() {
        assert_eq!(value_of(&Variant::UInt64(u64::MAX)).unwrap(), Value::U64(u64::MAX));
        assert_eq!(value_of(&Variant::Int64((1 << 53) + 1)).unwrap(), Value::I64((1 << 53) + 1));
        assert_eq!(value_of(&Variant::Float(0.1)).unwrap(), Value::F64(0.1f32 as f64));
        assert!(value_of(&Variant::Double(f64::NAN)).unwrap_err().starts_with("non_finite"));
        assert_eq!(value_of(&Variant::from("abc")).unwrap(), Value::Str("abc".into()));
        assert_eq!(value_of(&Variant::from(vec![1i32, 2, 3])).unwrap(), Value::Str("[1,2,3]".into()));
        let s = to_sample(meta(), &dv(Some(Variant::Double(f64::INFINITY)), 0), Timestamp(5));
        assert_eq!((s.quality, s.value), (Quality::Bad, Value::Null));
    }
}
