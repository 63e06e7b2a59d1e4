//! CSV and JSON sensor data into samples (pure: no I/O beyond the reader it
//! is given, no runtime, no database).
//!
//! - [`number`]: numbers with a fixed decimal separator, NaN spellings.
//! - [`timestamp`]: RFC 3339, naive local times in a zone, epochs, strftime.
//! - [`csv`]: wide and long layouts over the `csv` crate.
//! - [`json`]: objects, arrays, JSON Lines over `serde_json`, JSON Pointers.
//! - [`spec`]: the parsing part of a `[[source]]` configuration.
//!
//! A record either becomes samples (good ones, and bad ones with a reason for
//! values that could not be read under the lenient policy) or is rejected
//! whole as a [`Quarantined`] record with its location, raw text and reason.
//! Nothing is dropped silently.
//!
//! Text fields (`select = "auto"`): a CSV column, or a JSON field, is
//! *numeric* once it has held a number (or when a `[[source.tag]]` names
//! it), and *text* when its first value is text (see
//! [`number::is_text`]): `operator = Anna`, `"estado": "OK"`. A text field is
//! not a tag: it is skipped, with one INFO log per source and field (the
//! first 100 such lines, then at most one a minute with the count of those
//! left out; the name escaped, see [`crate::util::escape`]). Text in
//! a numeric field is an unreadable value: the record is rejected (strict
//! policy) or the value becomes a bad sample `parse_error` (lenient). A CSV
//! column is classified by its value in the first data row; a JSON field by
//! the first value seen. A text field that later holds a number is numeric
//! from then on, so its numbers are never dropped. What was learnt is kept in [`Fields`]: per file for
//! imports and watch folders, for the life of the source for `tail`, `http`
//! and `mqtt-in`, at most [`MAX_FIELDS`] names per source: names beyond are
//! not remembered (counted, and logged at most once a minute), so data with
//! ever new keys cannot grow memory without bound.

pub mod csv;
mod fields;
mod input;
pub mod json;
mod json_nonfinite;
mod json_value;
pub mod number;
pub mod spec;
pub mod timestamp;

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Quality, Sample, TagMeta, Timestamp, Value};
pub use fields::{FieldKind, Fields, MAX_FIELDS, note_text_field, text_fields_noted};
pub use input::parse_input;
pub use spec::{ParseSpec, Policy, TagRule};

pub use crate::model::Quarantined;

/// Largest raw text kept for a quarantined record.
pub const RAW_MAX: usize = 64 * 1024;

/// Longest reason kept in a quarantine record, bytes.
pub const REASON_MAX: usize = 1024;

/// Truncates `s` at a char boundary to [`RAW_MAX`] bytes.
pub fn clip(s: &str) -> String {
    if s.len() <= RAW_MAX { s.to_string() } else { format!("{}…", &s[..s.floor_char_boundary(RAW_MAX)]) }
}

/// The outcome of one record.
pub type Record = Result<Vec<Sample>, Quarantined>;

/// Builds samples for one source: names, units, scaling, and one shared
/// `TagMeta` per (device, tag).
#[derive(Debug)]
pub struct Mapper {
    /// Source name (for quarantine records).
    pub source: String,
    /// Default device name.
    pub device: Arc<str>,
    /// Added to the line numbers parsers report (tailing a file in chunks).
    pub line_base: u64,
    /// Added to the byte offsets JSON Lines parsing reports (tailing a file in chunks).
    pub byte_base: u64,
    /// The input continues a stream already known to be text (a tailed
    /// file's appended lines): an invalid line is one quarantined record, not
    /// a "not a text file" error for the whole pass.
    pub continuation: bool,
    /// Kinds of the fields learnt so far (text or numeric); share one
    /// between the mappers of a long-lived source.
    pub fields: Arc<Fields>,
    rules: HashMap<String, TagRule>,
    metas: HashMap<(Arc<str>, Arc<str>), Arc<TagMeta>>,
}

impl Mapper {
    /// A mapper for `source`, whose samples belong to `device` unless a record says otherwise.
    pub fn new(source: &str, device: &str, rules: &[TagRule]) -> Mapper {
        Mapper {
            source: source.to_string(),
            device: device.into(),
            line_base: 0,
            byte_base: 0,
            continuation: false,
            fields: Arc::default(),
            rules: rules.iter().map(|r| (r.name.clone(), r.clone())).collect(),
            metas: HashMap::new(),
        }
    }

    /// The configured rule of `tag`, if any.
    pub fn rule(&self, tag: &str) -> Option<&TagRule> {
        self.rules.get(tag)
    }

    /// The shared meta of (device, tag), unit from the rule or `unit`.
    pub fn meta(&mut self, device: Option<&str>, tag: &str, unit: Option<&str>) -> Arc<TagMeta> {
        let dev: Arc<str> = match device {
            Some(d) if *d != *self.device => d.into(),
            _ => self.device.clone(),
        };
        let key = (dev.clone(), Arc::<str>::from(tag));
        if let Some(m) = self.metas.get(&key)
            && (unit.is_none() || m.unit.as_deref() == unit)
        {
            return m.clone();
        }
        let rule_unit = self.rules.get(tag).and_then(|r| r.unit.clone());
        let m = TagMeta::new(dev, key.1.clone(), rule_unit.as_deref().or(unit));
        self.metas.insert(key, m.clone());
        m
    }

    /// A sample of `meta` from a parsed value: scale and offset of the tag's
    /// rule applied to numbers; non-finite results become bad samples.
    pub fn sample(&self, meta: Arc<TagMeta>, value: Value, ts: Timestamp, recv: Timestamp, uncertain: Option<&'static str>) -> Sample {
        let value = match self.rules.get(&*meta.tag) {
            Some(r) => crate::model::apply_scale(value, r.scale, r.offset),
            None => value,
        };
        if let Value::F64(x) = value
            && !x.is_finite()
        {
            let mut s = Sample::bad(meta, format!("{}: scaled value overflows", crate::model::reason::NON_FINITE).into(), ts);
            s.recv_ts = recv;
            return s;
        }
        let mut s = Sample::good(meta, value, ts);
        s.recv_ts = recv;
        if let Some(u) = uncertain {
            s.quality = Quality::Uncertain;
            s.reason = Some(u.into());
        }
        s
    }

    /// A bad sample of `meta` with `reason`.
    pub fn bad(&self, meta: Arc<TagMeta>, reason: String, ts: Timestamp, recv: Timestamp) -> Sample {
        let mut s = Sample::bad(meta, reason.into(), ts);
        s.recv_ts = recv;
        s
    }

    /// A quarantine record of this source.
    pub fn reject(&self, origin: &str, location: String, reason: String, raw: &str) -> Quarantined {
        // A reason may quote a value: a 150 MB field must not make a 150 MB reason.
        let reason = if reason.len() <= REASON_MAX { reason } else { format!("{}…", &reason[..reason.floor_char_boundary(REASON_MAX)]) };
        Quarantined { source: self.source.clone(), origin: origin.to_string(), location, reason, raw: clip(raw) }
    }
}
