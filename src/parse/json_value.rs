//! JSON text into a `serde_json::Value` that refuses duplicate keys: plain
//! `serde_json` keeps the last of `{"a": 1, "a": 2}` silently, which would
//! ingest one of two conflicting readings as if it were the only one. The
//! document is still parsed by `serde_json`; only the building of objects is
//! ours. RFC 8259 §4: "The names within an object SHOULD be unique."

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as J};

/// A `serde_json::Value` whose objects had unique keys.
struct Unique(J);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<J, E> {
        Ok(J::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<J, E> {
        Ok(J::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<J, E> {
        Ok(J::from(u))
    }
    fn visit_f64<E>(self, f: f64) -> Result<J, E> {
        // serde_json refuses non-finite numbers while parsing; `from` maps
        // any that came here to null, as serde_json's own Value does.
        Ok(J::from(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<J, E> {
        Ok(J::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<J, E> {
        Ok(J::String(s))
    }
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_none<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Unique(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(J::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Unique(v) = map.next_value()?;
            match m.entry(k) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(v);
                }
                serde_json::map::Entry::Occupied(e) => {
                    let shown: String = e.key().chars().flat_map(char::escape_default).take(80).collect();
                    return Err(de::Error::custom(format!(
                        "duplicate key \"{shown}\" in one object (which value is right cannot be told; the record is rejected)"
                    )));
                }
            }
        }
        Ok(J::Object(m))
    }
}

/// Parses `text` as one JSON document, refusing an object with a repeated
/// key (the error carries serde_json's line and column, just past the
/// duplicate's value).
pub fn from_str_unique(text: &str) -> Result<J, serde_json::Error> {
    serde_json::from_str::<Unique>(text).map(|u| u.0)
}

#[cfg(test)]
mod tests {
    use super::from_str_unique;

    #[test]
    fn same_values_as_serde_json_and_duplicates_refused() {
        let t = r#"{"a": [1, -2, 1.5, 18446744073709551615, null, true, "x"], "b": {"c": {}}}"#;
        assert_eq!(from_str_unique(t).unwrap(), serde_json::from_str::<serde_json::Value>(t).unwrap());
        let e = from_str_unique(r#"{"a": 1, "b": {"x": 1, "x": 2}}"#).unwrap_err().to_string();
        assert!(e.contains("duplicate key \"x\"") && e.contains("line 1"), "{e}");
        assert!(from_str_unique(r#"[{"a": 1}, {"a": 2}]"#).is_ok(), "the same key in two objects is fine");
    }
}
