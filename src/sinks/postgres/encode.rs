//! Records as PostgreSQL rows (pure): the column values of a sample and of
//! an event, in the order of [`super::schema::SAMPLE_COLUMNS`] and
//! [`super::schema::EVENT_COLUMNS`], and the batch handed to the connection.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::types::{ToSql, Type};

use crate::model::{Event, Record, Sample, Timestamp, Value};
use crate::sinks::driver::RefusedRecord;

/// Column types of the samples table, in COPY order.
pub const SAMPLE_TYPES: [Type; 15] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::INT8,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::INT8,
];

/// Column types of the events table, in COPY order.
pub const EVENT_TYPES: [Type; 9] =
    [Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT, Type::JSONB];

/// One message: the records of one transaction, in `seq` order.
#[derive(Debug)]
pub struct Batch {
    /// Records to load.
    pub records: Vec<Record>,
    /// Records refused before sending (a `seq` beyond PostgreSQL's bigint).
    pub refused: Vec<RefusedRecord>,
}

impl Batch {
    /// Records to load and those refused here, from `records`.
    pub fn new(gateway: &str, records: &[&Record]) -> Batch {
        let mut b = Batch { records: Vec::with_capacity(records.len()), refused: Vec::new() };
        for r in records {
            if i64::try_from(r.seq()).is_ok() {
                b.records.push((*r).clone());
            } else {
                b.refused.push(RefusedRecord {
                    seq: r.seq(),
                    reason: "seq is above 2^63-1, beyond PostgreSQL's bigint".into(),
                    raw: crate::sinks::record_json::record_text(gateway, r),
                });
            }
        }
        b
    }

    /// Records carried (loaded or refused).
    pub fn len(&self) -> usize {
        self.records.len() + self.refused.len()
    }

    /// True when the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A timestamp as PostgreSQL takes it (microseconds kept, nanoseconds cut).
pub fn system_time(ts: Timestamp) -> SystemTime {
    let ns = ts.as_nanos();
    if ns >= 0 { UNIX_EPOCH + Duration::from_nanos(ns as u64) } else { UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs()) }
}

/// A value split into the typed columns `value`, `value_int`, `value_bool`, `value_text`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueCols<'a> {
    /// Every number (booleans as 0/1); NULL for text, NULL and NaN/±Infinity.
    pub num: Option<f64>,
    /// The exact integer, when it fits in a bigint.
    pub int: Option<i64>,
    /// The boolean.
    pub boolean: Option<bool>,
    /// The text; an unsigned integer above `i64::MAX` in decimal.
    pub text: Option<Cow<'a, str>>,
}

impl<'a> ValueCols<'a> {
    /// The columns of `v`.
    pub fn of(v: &'a Value) -> ValueCols<'a> {
        let none = ValueCols { num: None, int: None, boolean: None, text: None };
        match v {
            Value::Null => none,
            Value::Bool(b) => ValueCols { num: Some(if *b { 1.0 } else { 0.0 }), boolean: Some(*b), ..none },
            Value::I64(i) => ValueCols { num: Some(*i as f64), int: Some(*i), ..none },
            Value::U64(u) => match i64::try_from(*u) {
                Ok(i) => ValueCols { num: Some(*u as f64), int: Some(i), ..none },
                Err(_) => ValueCols { num: Some(*u as f64), text: Some(Cow::Owned(u.to_string())), ..none },
            },
            Value::F64(f) if f.is_finite() => ValueCols { num: Some(*f), ..none },
            Value::F64(_) => none,
            Value::Str(s) => ValueCols { text: Some(Cow::Borrowed(s.as_str())), ..none },
        }
    }
}

/// The columns of one sample row.
pub struct SampleRow<'a> {
    gateway: &'a str,
    seq: i64,
    device: &'a str,
    tag: &'a str,
    unit: Option<&'a str>,
    reason: Option<&'a str>,
    v: ValueCols<'a>,
    quality: &'static str,
    ts: SystemTime,
    recv_ts: SystemTime,
    server_ts: Option<SystemTime>,
    status: Option<i64>,
}

impl<'a> SampleRow<'a> {
    /// The row of `s` (its `seq` was checked by [`Batch::new`]).
    pub fn new(gateway: &'a str, s: &'a Sample) -> SampleRow<'a> {
        SampleRow {
            gateway,
            seq: s.seq as i64,
            device: &s.meta.device,
            tag: &s.meta.tag,
            unit: s.meta.unit.as_deref(),
            reason: s.reason.as_deref(),
            v: ValueCols::of(&s.value),
            quality: s.quality.as_str(),
            ts: system_time(s.ts),
            recv_ts: system_time(s.recv_ts),
            server_ts: s.server_ts.map(system_time),
            status: s.status.map(i64::from),
        }
    }

    /// The values in [`SAMPLE_TYPES`] order.
    pub fn values(&self) -> [&(dyn ToSql + Sync); 15] {
        [
            &self.gateway,
            &self.seq,
            &self.device,
            &self.tag,
            &self.v.num,
            &self.v.int,
            &self.v.boolean,
            &self.v.text,
            &self.unit,
            &self.quality,
            &self.reason,
            &self.ts,
            &self.recv_ts,
            &self.server_ts,
            &self.status,
        ]
    }
}

/// The columns of one event row.
pub struct EventRow<'a> {
    gateway: &'a str,
    seq: i64,
    kind: &'a str,
    severity: &'static str,
    source_kind: &'static str,
    message: &'a str,
    source_name: String,
    ts: SystemTime,
    details: Option<&'a serde_json::Value>,
}

impl<'a> EventRow<'a> {
    /// The row of `e` (its `seq` was checked by [`Batch::new`]).
    pub fn new(gateway: &'a str, e: &'a Event) -> EventRow<'a> {
        EventRow {
            gateway,
            seq: e.seq as i64,
            kind: &e.kind,
            severity: e.severity.as_str(),
            source_kind: e.source.kind(),
            message: &e.message,
            source_name: e.source.name(),
            ts: system_time(e.ts),
            details: (!e.details.is_null()).then_some(&e.details),
        }
    }

    /// The values in [`EVENT_TYPES`] order.
    pub fn values(&self) -> [&(dyn ToSql + Sync); 9] {
        [&self.gateway, &self.seq, &self.kind, &self.severity, &self.source_kind, &self.source_name, &self.ts, &self.message, &self.details]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_to_their_typed_column_exactly() {
        let c = ValueCols::of(&Value::U64((1 << 53) + 1));
        assert_eq!(c.int, Some((1 << 53) + 1), "exact beside the rounded double");
        let big = ValueCols::of(&Value::U64(u64::MAX));
        assert_eq!((big.int, big.text.as_deref()), (None, Some("18446744073709551615")));
        let b = ValueCols::of(&Value::Bool(true));
        assert_eq!((b.num, b.boolean, b.int), (Some(1.0), Some(true), None));
        let nan = ValueCols::of(&Value::F64(f64::NAN));
        assert_eq!((nan.num, nan.text), (None, None));
        let s = Value::Str("on".into());
        assert_eq!(ValueCols::of(&s).text.as_deref(), Some("on"));
        assert_eq!(ValueCols::of(&Value::I64(-3)).int, Some(-3));
        assert_eq!(system_time(Timestamp(-1_500)), UNIX_EPOCH - Duration::from_nanos(1_500));
    }

    #[test]
    fn a_seq_beyond_bigint_is_refused_here() {
        let meta = crate::model::TagMeta::new("d", "t", None);
        let mut a = Sample::good(meta.clone(), Value::F64(1.0), Timestamp(0));
        a.seq = 7;
        let mut b = Sample::good(meta, Value::F64(2.0), Timestamp(0));
        b.seq = 1 << 63;
        let (ra, rb) = (Record::Sample(a), Record::Sample(b));
        let batch = Batch::new("gw", &[&ra, &rb]);
        assert_eq!((batch.records.len(), batch.len()), (1, 2));
        assert_eq!(batch.refused[0].seq, 1 << 63);
    }
}
