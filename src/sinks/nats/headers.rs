//! relais's own headers on every JetStream message (pure): what the
//! stream held when the message was published, so that reading back one
//! message and the few before it says everything the stream holds of this
//! gateway (see `stream.rs` and the README).
//!
//! - `Relais-Done: 0-1200,5001-5120`: `seq` ranges of this gateway that
//!   were stored in the stream (PubAck received, or read back on connect)
//!   or need no sending (up to the sink's cursor: delivered, refused for
//!   good or dropped by the buffer's limits) when this message was published.
//! - `Relais-Scan-From: 48211`: the stream sequence of the oldest message of
//!   the same connection still waiting for its PubAck then (this message's
//!   own sequence when none waited). Only messages from there on can hold
//!   records that `Relais-Done` does not name.

use crate::sinks::driver::SeqSet;

/// Header naming the ranges already stored (or needing no sending).
pub const DONE: &str = "Relais-Done";
/// Header naming the first stream sequence to read back.
pub const SCAN_FROM: &str = "Relais-Scan-From";

/// `0-1200,5001-5120` (inclusive ranges, ascending; empty for an empty set).
pub fn render(set: &SeqSet) -> String {
    let mut out = String::with_capacity(24 * set.len());
    for r in set.iter() {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("{}-{}", r.start(), r.end()));
    }
    out
}

/// The set written by [`render`]; `None` when the text is not one.
pub fn parse(text: &str) -> Option<SeqSet> {
    let mut set = SeqSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.trim().split_once('-')?;
        let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        if a > b {
            return None;
        }
        set.insert(a..=b);
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_bad_text_is_refused() {
        let mut s = SeqSet::new();
        assert_eq!(render(&s), "");
        assert_eq!(parse("").map(|p| p.is_empty()), Some(true));
        s.insert(0..=1200);
        s.insert(5001..=5120);
        s.insert(1201..=1201);
        assert_eq!(render(&s), "0-1201,5001-5120");
        assert_eq!(parse("0-1201,5001-5120"), Some(s));
        for bad in ["12", "5-3", "a-b", "1-2,x", "-4"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
