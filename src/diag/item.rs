//! TOML items with their spans: deserializing a table without stopping at
//! the first wrong key, unknown keys, and tables of tables
//! (`[[device]]`, `[[device.tag]]`).

use std::collections::HashMap;
use std::ops::Range;

use super::{Diag, line_col, msg};

/// A TOML value with its span in the source.
pub type Item<'i> = toml::Spanned<toml::de::DeValue<'i>>;

/// Deserializes one TOML item into `T`, recording any error under `key`.
///
/// A value of the wrong type is reported with its key, then removed and the
/// table deserialized again, so that one mistake never hides the others; the
/// value returned then holds defaults for the removed keys (the recorded
/// errors still fail the configuration).
pub fn de_item<T: serde::de::DeserializeOwned>(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str) -> Option<T> {
    let span = item.span();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        // Which key holds which span, to name the key of a wrong-typed value.
        let spans: Vec<(String, Range<usize>)> = match item.get_ref() {
            toml::de::DeValue::Table(t) => t.iter().map(|(k, v)| (k.get_ref().to_string(), v.span())).collect(),
            _ => Vec::new(),
        };
        match T::deserialize(toml::de::ValueDeserializer::from(item.clone())) {
            Ok(v) => return Some(v),
            Err(e) => {
                let raw = e.message().trim().to_string();
                if removed.iter().any(|r| raw == format!("missing field `{r}`")) {
                    // A required key was reported already.
                    return None;
                }
                let found = e.span().and_then(|es| spans.iter().find(|(_, vs)| vs.start <= es.start && es.end <= vs.end)).cloned();
                let field = found.as_ref().map(|(k, _)| format!("{key} / {k}"));
                let message = msg::type_error(&raw, found.as_ref().map(|(k, _)| k.as_str()));
                diag.error(e.span().unwrap_or(span.clone()), field.as_deref().unwrap_or(key), message);
                match found {
                    Some((k, _)) => {
                        take_key(&mut item, &k);
                        removed.push(k);
                    }
                    None => return None,
                }
            }
        }
    }
    None
}

/// Removes `name` from a table item and returns its value.
pub fn take_key<'i>(item: &mut Item<'i>, name: &str) -> Option<Item<'i>> {
    let toml::de::DeValue::Table(t) = item.get_mut() else {
        return None;
    };
    let k = t.keys().find(|k| k.get_ref().as_ref() == name)?.clone();
    t.remove(&k)
}

/// Reads string key `name` of a table item without removing it.
pub fn peek_str<'i>(item: &Item<'i>, name: &str) -> Option<(String, Range<usize>)> {
    let toml::de::DeValue::Table(t) = item.get_ref() else {
        return None;
    };
    t.iter().find(|(k, _)| k.get_ref().as_ref() == name).and_then(|(_, v)| match v.get_ref() {
        toml::de::DeValue::String(s) => Some((s.to_string(), v.span())),
        _ => None,
    })
}

/// The elements of an array-of-tables item, or an error saying it must be
/// written `[[header]]` (e.g. `[[device.tag]]`, not `[device.tag]`).
pub fn array_items<'i>(item: Item<'i>, diag: &mut Diag<'_>, key: &str) -> Vec<Item<'i>> {
    array_items_of(item, diag, key, key)
}

/// [`array_items`] with the TOML header name given apart from the key path.
pub fn array_items_of<'i>(item: Item<'i>, diag: &mut Diag<'_>, key: &str, header: &str) -> Vec<Item<'i>> {
    let span = item.span();
    match item.into_inner() {
        toml::de::DeValue::Array(a) => a.into_iter().collect(),
        _ => {
            diag.error(span, key, msg::not_a_list_of_tables(header));
            Vec::new()
        }
    }
}

/// One entry of a table of tables, with the key its errors are reported under.
pub struct Entry<'i> {
    /// `device "pump1" / tag "temp"` when the entry has a string `name`,
    /// else `device "pump1" / tag #3` (1-based).
    pub key: String,
    /// Its `name` and where it is written, when it has one.
    pub name: Option<(String, Range<usize>)>,
    /// The entry itself.
    pub item: Item<'i>,
}

/// The entries of a table of tables: `what` is the entry's word in keys
/// (`tag`), `header` its TOML header (`device.tag`), `parent` the key of the
/// table holding the list (empty at the top level). An absent list has no
/// entries; a single table where a list is expected is an error.
pub fn entries<'i>(list: Option<Item<'i>>, diag: &mut Diag<'_>, parent: &str, what: &str, header: &str) -> Vec<Entry<'i>> {
    let Some(list) = list else { return Vec::new() };
    let prefix = if parent.is_empty() { String::new() } else { format!("{parent} / ") };
    array_items_of(list, diag, &format!("{prefix}{what}"), header)
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = peek_str(&item, "name");
            let key = name.as_ref().map_or_else(|| format!("{prefix}{what} #{}", i + 1), |(n, _)| format!("{prefix}{what} {n:?}"));
            Entry { key, name, item }
        })
        .collect()
}

/// Names met so far in one list, to report a name given twice with the line
/// of its first definition.
#[derive(Debug, Default)]
pub struct FirstSeen(HashMap<String, usize>);

impl FirstSeen {
    /// An empty list.
    pub fn new() -> Self {
        FirstSeen::default()
    }

    /// Where `name` was first met (byte offset), if it was.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.0.get(name).copied()
    }

    /// Records `name` at `span`; when it was met before, records the error
    /// `duplicate {what} (first defined on line N)` under `key` and returns false.
    pub fn insert(&mut self, diag: &mut Diag<'_>, name: &str, span: Range<usize>, key: &str, what: &str) -> bool {
        if let Some(first) = self.get(name) {
            let (line, _) = line_col(diag.source(), first);
            diag.error(span, key, msg::duplicate(what, line));
            false
        } else {
            self.0.insert(name.to_string(), span.start);
            true
        }
    }

    /// Records `name` at `offset` without checking it.
    pub fn mark(&mut self, name: &str, offset: usize) {
        self.0.entry(name.to_string()).or_insert(offset);
    }

    /// True when no name was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reports every key of a table item that is not in `known` (each with its
/// own line, and a suggestion when a known key is close, see [`closest`])
/// and removes them, so that the rest of the table is still checked. A
/// sub-table or list of tables (`[[device.tags]]`) is called a table.
pub fn reject_unknown_keys(item: &mut Item<'_>, known: &[&str], diag: &mut Diag<'_>, key: &str) {
    reject_unknown_keys_showing(item, known, known, diag, key);
}

/// [`reject_unknown_keys`] naming only `shown` in the message (and
/// suggesting only from it): the keys that apply to this entry (a Modbus TCP
/// device's, with its `tag` list), while every key of `known` is accepted
/// (and checked later with a message of its own, like a serial `port` on a
/// TCP device).
pub fn reject_unknown_keys_showing(item: &mut Item<'_>, known: &[&str], shown: &[&str], diag: &mut Diag<'_>, key: &str) {
    let toml::de::DeValue::Table(t) = item.get_mut() else {
        return;
    };
    let unknown: Vec<_> = t.keys().filter(|k| !known.contains(&k.get_ref().as_ref())).cloned().collect();
    for k in unknown {
        let name: &str = k.get_ref().as_ref();
        let table = match t.get(&k).map(|v| v.get_ref()) {
            Some(toml::de::DeValue::Table(_)) => true,
            Some(toml::de::DeValue::Array(a)) => !a.is_empty() && a.iter().all(|v| matches!(v.get_ref(), toml::de::DeValue::Table(_))),
            _ => false,
        };
        diag.error(k.span(), key, msg::unknown_entry(if table { "table" } else { "key" }, name, closest(name, shown), shown));
        t.remove(&k);
    }
}

/// The candidate closest to `name` by edit distance (Damerau-Levenshtein,
/// `strsim`), when it is close enough to be a typo: at most 1 edit for names
/// up to 4 characters, 2 for longer ones (`tags` → `tag`, `units` → `unit`,
/// `poll_intervall` → `poll_interval`).
pub fn closest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    let name = name.to_lowercase();
    candidates.iter().map(|c| (strsim::damerau_levenshtein(&name, c), *c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}
