//! What the fields of a source hold (text or numbers), learnt from the data,
//! and the one INFO line per text field, both bounded: data with ever new
//! keys (a JSON body with 20,000 distinct keys, five times) must neither
//! write a log line per key nor grow memory without end (issue 9 item 11).
//!
//! - [`Fields`] keeps at most [`MAX_FIELDS`] names per source; a new name
//!   beyond is not remembered (its kind is decided again by its next
//!   value) and counted in [`Fields::overflow`]; [`Fields::report_overflow`]
//!   (called once per input by [`crate::parse::parse_input`]) logs the
//!   names not remembered since its last line and the total, at most once
//!   a minute.
//! - [`note_text_field`] logs the first [`LOG_BURST`] text fields of the
//!   process one line each, then at most one line a minute with the number
//!   left out; it remembers at most [`NOTED_MAX`] (source, field) pairs.
//! - Names are written through [`crate::util::escape`]: a key holding a
//!   newline cannot start a forged log line.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::util::RateLimited;
use crate::util::escape::escape;

/// Most field names one source remembers.
pub const MAX_FIELDS: usize = 10_000;
/// Most (source, field) pairs remembered as already logged.
pub const NOTED_MAX: usize = 10_000;
/// Text fields logged one line each before the rate limit applies.
pub const LOG_BURST: u64 = 100;
/// At most one line per period once past the burst.
const LOG_PERIOD: Duration = Duration::from_secs(60);

/// What a field (CSV column, JSON field) was found to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Measurements: text in it is an unreadable value.
    Numeric,
    /// Text: not a tag, skipped.
    Text,
}

/// The kinds of a source's fields learnt so far (see the module docs of
/// [`crate::parse`]), at most [`MAX_FIELDS`] of them.
#[derive(Debug, Default)]
pub struct Fields {
    kinds: Mutex<HashMap<String, FieldKind>>,
    overflow: AtomicU64,
    /// `overflow` when the last line about it was written.
    reported: AtomicU64,
}

/// One rate limit for every source's "too many field names" line.
static OVERFLOW_LOG: Mutex<Option<RateLimited>> = Mutex::new(None);

impl Fields {
    /// The kind of `name`, if known.
    pub fn kind(&self, name: &str) -> Option<FieldKind> {
        self.kinds.lock().ok()?.get(name).copied()
    }

    /// Records the kind of `name` (for the source named, kept for the
    /// callers' symmetry); a new name beyond [`MAX_FIELDS`] is counted
    /// instead (see [`Fields::report_overflow`]).
    pub fn set(&self, _source: &str, name: &str, kind: FieldKind) {
        let Ok(mut k) = self.kinds.lock() else { return };
        let full = k.len() >= MAX_FIELDS;
        match k.get_mut(name) {
            Some(old) => *old = kind,
            None if !full => {
                k.insert(name.to_string(), kind);
            }
            None => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Logs (WARN, at most once a minute over all sources) how many new
    /// names were not remembered since the last such line of `source`, and
    /// in total; nothing when none were. Call once per input, after it is
    /// parsed, so the line counts the whole input (40,000 names over the cap
    /// in one body say 40,000, not 1).
    pub fn report_overflow(&self, source: &str) {
        let total = self.overflow.load(Ordering::Relaxed);
        let last = self.reported.load(Ordering::Relaxed);
        if total == last {
            return;
        }
        let Ok(mut log) = OVERFLOW_LOG.lock() else { return };
        let Some(left_out) = log.get_or_insert_with(|| RateLimited::new(LOG_PERIOD)).allow() else { return };
        drop(log);
        self.reported.store(total, Ordering::Relaxed);
        let new = total - last;
        tracing::warn!(
            source = %escape(source), not_remembered = new, total, lines_left_out = left_out,
            "more than {MAX_FIELDS} distinct field names: {new} new names were not remembered since the last line \
             ({total} in total); their kind is decided by each value. List the fields to ingest with [[source.tag]] and \
             select = \"listed\""
        );
    }

    /// Names remembered.
    pub fn len(&self) -> usize {
        self.kinds.lock().map_or(0, |k| k.len())
    }

    /// True when no name is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New names not remembered because [`MAX_FIELDS`] were already known.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Noted {
    seen: HashSet<(String, String)>,
    logged: u64,
    limit: RateLimited,
}

static NOTED: Mutex<Option<Noted>> = Mutex::new(None);

/// Logs that a text field is skipped, once per source and field (within the
/// bounds of the module docs); `what` is `column` or `field`, `value` its
/// text, `place` where it was seen.
pub fn note_text_field(source: &str, what: &str, field: &str, value: &str, place: &str) {
    let Some(left_out) = first_note(source, field) else { return };
    let more = if left_out > 0 { format!(" ({left_out} more text fields were not logged in the last minute)") } else { String::new() };
    tracing::info!(
        source = %escape(source), field = %escape(field),
        "{what} \"{}\" holds text (\"{}\"{place}): not ingested as a tag. To silence this, add it to skip_columns (CSV), \
         or list the fields to ingest with [[source.tag]] and select = \"listed\"; to ingest it, name it in a [[source.tag]] \
         (its text values are then errors){more}",
        escape(field),
        escape(clip_example(value))
    );
}

/// Logs (WARN, once per source and field, within the bounds of the module
/// docs) that a JSON field holding an array of `len` items is not ingested:
/// arrays are not flattened into tags (see [`crate::parse`]).
pub fn note_array_field(source: &str, field: &str, len: usize) {
    let Some(left_out) = first_note(source, field) else { return };
    let more = if left_out > 0 { format!(" ({left_out} more fields were not logged in the last minute)") } else { String::new() };
    tracing::warn!(
        source = %escape(source), field = %escape(field),
        "field \"{}\" holds an array ({len} items): not ingested (arrays are not flattened into tags). To ingest one item, \
         name it in a [[source.tag]] with path = \"/{}/0\"; to silence this, list the fields to ingest with select = \"listed\"{more}",
        escape(field),
        escape(&field.replace('.', "/")),
    );
}

/// `Some(lines left out)` when (source, field) is logged now: its first
/// time, within the burst or the rate limit.
fn first_note(source: &str, field: &str) -> Option<u64> {
    let Ok(mut g) = NOTED.lock() else { return None };
    let n = g.get_or_insert_with(|| Noted { seen: HashSet::new(), logged: 0, limit: RateLimited::new(LOG_PERIOD) });
    let key = (source.to_string(), field.to_string());
    if n.seen.contains(&key) {
        return None;
    }
    if n.seen.len() < NOTED_MAX {
        n.seen.insert(key);
    }
    if n.logged < LOG_BURST {
        n.logged += 1;
        Some(0)
    } else {
        n.limit.allow()
    }
}

/// (source, field) pairs remembered as logged (at most [`NOTED_MAX`]).
pub fn text_fields_noted() -> usize {
    NOTED.lock().ok().and_then(|g| g.as_ref().map(|n| n.seen.len())).unwrap_or(0)
}

fn clip_example(s: &str) -> &str {
    &s[..s.floor_char_boundary(40)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_at_most_max_fields_names_and_count_the_rest() {
        let f = Fields::default();
        for i in 0..MAX_FIELDS + 250 {
            f.set("s", &format!("k{i}"), FieldKind::Text);
        }
        assert_eq!(f.len(), MAX_FIELDS);
        assert_eq!(f.overflow(), 250);
        // Known names still change kind; unknown ones stay unknown.
        f.set("s", "k0", FieldKind::Numeric);
        assert_eq!(f.kind("k0"), Some(FieldKind::Numeric));
        assert_eq!(f.kind(&format!("k{}", MAX_FIELDS + 1)), None);
        assert_eq!(f.overflow(), 250);
    }
}
