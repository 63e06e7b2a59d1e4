//! JSON records into samples (over `serde_json`): one object, an array of
//! objects, or JSON Lines. Values picked by JSON Pointer (RFC 6901) or dotted
//! paths, or every numeric and boolean field (`select = "auto"`, nested
//! objects flattened with `.`). Field cases B29 and B31.
//!
//! Bare `nan`, `-nan`, `NaN`, `Infinity`, `-Infinity` are not JSON. Under the
//! strict policy (default) such a record is rejected to quarantine with its
//! byte offset; under the lenient policy they are read as non-finite values and
//! become bad samples while the other fields are kept.

use std::io::BufRead;

use serde_json::Value as J;

use super::json_nonfinite::{NONFINITE, repair_non_finite};
use super::number::{NumError, is_non_finite_word, parse_number};
use super::spec::{MissingTs, ParseSpec, Policy};
use super::{Mapper, Record};
use crate::model::{Timestamp, Value, reason};

/// Every scalar leaf of `v` with its dotted name, nested objects flattened.
fn leaves<'a>(prefix: &str, ptr: &str, v: &'a J, out: &mut Vec<(String, String, &'a J)>) {
    match v {
        J::Object(m) => {
            for (k, x) in m {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                let p = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                leaves(&name, &p, x, out);
            }
        }
        // Arrays are leaves too: `classify` takes one only where a number
        // is expected (an error then), never as a tag of its own.
        _ => out.push((prefix.to_string(), ptr.to_string(), v)),
    }
}

enum Read {
    Value(Value),
    Null,
    Bad(NumError),
    NotScalar,
}

fn read_value(v: &J, decimal: char) -> Read {
    match v {
        J::Null => Read::Null,
        J::Bool(b) => Read::Value(Value::Bool(*b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Read::Value(Value::I64(i))
            } else if let Some(u) = n.as_u64() {
                Read::Value(Value::U64(u))
            } else {
                Read::Value(Value::F64(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        J::String(s) => match s.strip_prefix(NONFINITE) {
            Some(tok) => Read::Bad(NumError::NonFinite(tok.to_string())),
            // Numbers written as strings follow the source's `decimal`.
            None => match parse_number(s, decimal) {
                Ok(v) => Read::Value(v),
                // An empty string is no value, like an empty CSV cell.
                Err(NumError::Empty) => Read::Null,
                Err(e) => Read::Bad(e),
            },
        },
        _ => Read::NotScalar,
    }
}

/// True when `val`, read from `x`, may not be the number written: a JSON
/// number beyond 64-bit integers or with a fraction read as a float beyond
/// 2^53 (serde_json keeps no text to compare), or a number in a string that
/// [`super::number::inexact`] finds changed. Integers within 64 bits are
/// exact `I64`/`U64` (`18446744073709551615` is `U64`).
fn precision_lost(x: &J, decimal: char, val: &Value) -> bool {
    match (x, val) {
        (J::Number(_), Value::F64(f)) => f.abs() >= 9_007_199_254_740_992.0,
        (J::String(s), _) => super::number::inexact(s, decimal, val),
        _ => false,
    }
}

/// `select = "auto"`: whether field `name` holding `x` is a measurement
/// (see the rules in [`crate::parse`]). Numbers and booleans are, and make
/// the field numeric; a string is one when it holds a number (the field
/// becomes numeric), or when the field is numeric or configured (then an
/// unreadable or empty string is a bad value, not nothing). Text in a field
/// not known as numeric makes it a text field: skipped, logged once. An
/// empty string in such a field is skipped too.
fn classify(x: &J, name: &str, configured: bool, decimal: char, mapper: &Mapper) -> bool {
    use super::{FieldKind, note_text_field};
    let fields = &mapper.fields;
    match x {
        J::Number(_) | J::Bool(_) => {
            fields.set(&mapper.source, name, FieldKind::Numeric);
            true
        }
        J::String(s) if s.starts_with(NONFINITE) => true,
        J::String(s) => {
            let numeric = configured || fields.kind(name) == Some(FieldKind::Numeric);
            match parse_number(s, decimal) {
                Ok(_) => {
                    fields.set(&mapper.source, name, FieldKind::Numeric);
                    true
                }
                // "nan": a measurement without a value.
                Err(NumError::NonFinite(_)) => true,
                Err(NumError::Empty) => numeric,
                Err(NumError::Invalid(_)) if numeric => true,
                Err(NumError::Invalid(_)) if super::number::is_text(s, decimal) => {
                    fields.set(&mapper.source, name, FieldKind::Text);
                    note_text_field(&mapper.source, "field", name, s, "");
                    false
                }
                // A malformed number ("0.5" with decimal ","): reported.
                Err(NumError::Invalid(_)) => true,
            }
        }
        // An array where numbers came before (or a configured tag): an
        // unreadable value, reported; elsewhere not a tag, logged once.
        J::Array(a) => {
            let numeric = configured || fields.kind(name) == Some(FieldKind::Numeric);
            if !numeric {
                super::fields::note_array_field(&mapper.source, name, a.len());
            }
            numeric
        }
        _ => true,
    }
}

/// The record's timestamp at `timestamp_path`; `None` without one configured.
fn timestamp_of(v: &J, spec: &ParseSpec) -> Result<Option<super::timestamp::ParsedTs>, String> {
    let Some(p) = &spec.json.timestamp else { return Ok(None) };
    match v.pointer(p) {
        None | Some(J::Null) => Err(format!("no timestamp at {p}")),
        Some(J::Number(n)) => spec.ts.parse_number(n.as_f64().unwrap_or(f64::NAN)),
        Some(J::String(s)) => spec.ts.parse_text(s),
        Some(other) => Err(format!("timestamp at {p} is not a string or a number: {other}")),
    }
    .map(Some)
}

/// The record's device name at `device_path`; `None` without one configured.
fn device_of(v: &J, spec: &ParseSpec) -> Result<Option<String>, String> {
    let Some(p) = &spec.json.device else { return Ok(None) };
    match v.pointer(p) {
        Some(J::String(s)) => match crate::names::check_device(s) {
            Ok(()) => Ok(Some(s.clone())),
            Err(e) => Err(format!("device at {p}: {e}")),
        },
        _ => Err(format!("no device name (string) at {p}")),
    }
}

/// The fields that become tags, with their tag names: the listed ones
/// (`select = "listed"`, `None` when missing), else every leaf that holds a
/// value, renamed by its `[[source.tag]]`.
fn picks<'v>(v: &'v J, spec: &ParseSpec, mapper: &Mapper) -> Vec<(String, Option<&'v J>)> {
    let mut picks: Vec<(String, Option<&J>)> = Vec::new();
    if spec.listed_only {
        for r in &spec.tags {
            let p = r.path.clone().unwrap_or_else(|| format!("/{}", r.name));
            picks.push((r.name.clone(), v.pointer(&p)));
        }
        return picks;
    }
    let mut all = Vec::new();
    leaves("", "", v, &mut all);
    for (name, ptr, x) in all {
        if Some(&ptr) == spec.json.timestamp.as_ref() || Some(&ptr) == spec.json.device.as_ref() {
            continue;
        }
        // Configured rules may rename a path.
        let rule = spec.tags.iter().find(|r| r.path.as_deref() == Some(ptr.as_str()));
        let configured = rule.is_some();
        let name = rule.map_or(name, |r| r.name.clone());
        if classify(x, &name, configured, spec.csv.decimal, mapper) {
            picks.push((name, Some(x)));
        }
    }
    picks
}

/// Turns one JSON object into samples.
pub fn record(v: &J, spec: &ParseSpec, mapper: &mut Mapper, origin: &str, location: String, raw: &str) -> Record {
    let reject = |m: &Mapper, why: String| Err(m.reject(origin, location.clone(), format!("{}: {why}", reason::PARSE_ERROR), raw));
    if !v.is_object() {
        return reject(mapper, "expected a JSON object".into());
    }
    let recv = Timestamp::now();
    let (ts, uncertain) = match timestamp_of(v, spec) {
        Ok(Some(t)) => (t.ts, t.uncertain),
        // Only `timestamp_column` (CSV) is set: no timestamp for JSON
        // (`parse_input` refuses the input unless missing_timestamp = "receive_time").
        Ok(None) if spec.timestamp_key_missing(super::spec::Format::Json).is_some() => (recv, Some("timestamp_missing")),
        Ok(None) => (recv, None),
        Err(_) if spec.missing_timestamp == MissingTs::ReceiveTime => (recv, Some("timestamp_missing")),
        Err(e) => return reject(mapper, format!("timestamp: {e}")),
    };
    let device = match device_of(v, spec) {
        Ok(d) => d,
        Err(e) => return reject(mapper, e),
    };
    let strict = spec.policy == Policy::Strict;
    let decimal = spec.csv.decimal;
    let picks = picks(v, spec, mapper);
    let mut samples = Vec::with_capacity(picks.len());
    for (name, x) in picks {
        if let Err(e) = crate::names::check(&name) {
            if strict {
                return reject(mapper, format!("field {name:?}: {e}"));
            }
            continue;
        }
        let meta = mapper.meta(device.as_deref(), &name, None);
        let Some(x) = x else {
            if strict {
                return reject(mapper, format!("tag {name:?}: field missing"));
            }
            samples.push(mapper.bad(meta, format!("{}: field missing", reason::NULL), ts, recv));
            continue;
        };
        match read_value(x, decimal) {
            Read::Value(val) => {
                let u = if precision_lost(x, decimal, &val) { Some(super::number::PRECISION_LOSS) } else { uncertain };
                samples.push(mapper.sample(meta, val, ts, recv, u));
            }
            Read::Null if matches!(x, J::String(_)) => samples.push(mapper.bad(meta, format!("{}: empty string", reason::NULL), ts, recv)),
            Read::Null => samples.push(mapper.bad(meta, reason::NULL.to_string(), ts, recv)),
            Read::Bad(e) if strict => return reject(mapper, format!("tag {name:?}: {e}")),
            Read::Bad(e @ NumError::NonFinite(_)) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::NON_FINITE), ts, recv)),
            Read::Bad(e) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::PARSE_ERROR), ts, recv)),
            Read::NotScalar if strict => return reject(mapper, format!("tag {name:?}: not a number, boolean or null")),
            Read::NotScalar => samples.push(mapper.bad(meta, format!("{}: not a number, boolean or null", reason::PARSE_ERROR), ts, recv)),
        }
    }
    Ok(samples)
}

/// Parses `text` (strict JSON, or with bare non-finite tokens under the
/// lenient policy); an object with a repeated key is an error.
fn parse_text(text: &str, spec: &ParseSpec) -> Result<J, serde_json::Error> {
    use super::json_value::from_str_unique;
    match from_str_unique(text) {
        Ok(v) => Ok(v),
        Err(e) if spec.policy == Policy::Lenient => match repair_non_finite(text) {
            Some(fixed) => from_str_unique(&fixed),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

fn syntax_reason(e: &serde_json::Error, text: &str, base: usize, spec: &ParseSpec) -> (String, String) {
    // serde_json reports line and column (just past the offending character);
    // turn them into the byte offset of the offending token.
    let mut offset =
        text.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum::<usize>() + e.column().saturating_sub(1);
    let b = text.as_bytes();
    offset = offset.min(b.len());
    while offset > 0 && (b[offset - 1].is_ascii_alphanumeric() || b[offset - 1] == b'-' || b[offset - 1] == b'+') {
        offset -= 1;
    }
    let token: String =
        text[offset..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '(' | ')' | '#')).collect();
    let hint = if spec.policy == Policy::Strict && is_non_finite_word(&token) {
        format!(
            " (bare {token} is not JSON; policy = \"lenient\" reads it as a bad value with reason non_finite and keeps the other fields)"
        )
    } else {
        String::new()
    };
    (format!("byte {}", base + offset), format!("{}: invalid JSON: {e}{hint}", reason::PARSE_ERROR))
}

/// One JSON document: an object, or an array of objects (each a record).
pub fn read_json_doc(text: &str, spec: &ParseSpec, mapper: &mut Mapper, origin: &str, out: &mut dyn FnMut(Record)) -> u64 {
    match parse_text(text, spec) {
        Err(e) => {
            let (loc, why) = syntax_reason(&e, text, 0, spec);
            out(Err(mapper.reject(origin, loc, why, text)));
            1
        }
        Ok(J::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let raw = item.to_string();
                out(record(item, spec, mapper, origin, format!("record {}", i + 1), &raw));
            }
            items.len() as u64
        }
        Ok(v) => {
            out(record(&v, spec, mapper, origin, "record 1".into(), text));
            1
        }
    }
}

/// JSON Lines: one object per line; blank lines are skipped.
pub fn read_json_lines<R: BufRead>(
    input: R,
    spec: &ParseSpec,
    mapper: &mut Mapper,
    origin: &str,
    out: &mut dyn FnMut(Record),
) -> Result<u64, super::csv::FileError> {
    let mut n = 0u64;
    let mut offset = mapper.byte_base as usize;
    let base = mapper.line_base;
    for (i, line) in input.split(b'\n').enumerate() {
        let bytes = line.map_err(|e| super::csv::FileError::Io(e.to_string()))?;
        let len = bytes.len() + 1;
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(_) => {
                if i == 0 && !mapper.continuation {
                    super::csv::check_text(&bytes)?;
                }
                n += 1;
                out(Err(mapper.reject(
                    origin,
                    format!("line {}", base + i as u64 + 1),
                    format!("{}: invalid UTF-8", reason::PARSE_ERROR),
                    &String::from_utf8_lossy(&bytes),
                )));
                offset += len;
                continue;
            }
        };
        if i == 0 && !mapper.continuation {
            super::csv::check_text(text.as_bytes())?;
        }
        let text = if i == 0 { text.trim_start_matches('\u{feff}') } else { text };
        if text.trim().is_empty() {
            offset += len;
            continue;
        }
        n += 1;
        match parse_text(text, spec) {
            Ok(v) => out(record(&v, spec, mapper, origin, format!("line {}", base + i as u64 + 1), text)),
            Err(e) => {
                let (_, why) = syntax_reason(&e, text, offset, spec);
                out(Err(mapper.reject(
                    origin,
                    format!("line {} (byte {})", base + i as u64 + 1, offset + e.column().saturating_sub(1)),
                    why,
                    text,
                )));
            }
        }
        offset += len;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn repair() {
        let s = r#"{"a": 1, "b": nan, "c": -Infinity, "d": "nan x", "e": [NaN]}"#;
        let r = super::repair_non_finite(s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert!(v["b"].as_str().unwrap().starts_with(super::NONFINITE), "{r}");
        assert_eq!(v["d"], "nan x");
    }
}
