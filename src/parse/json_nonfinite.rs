//! Bare non-finite tokens in JSON text (`NaN`, `-Infinity`, `nan`): not JSON
//! (RFC 8259 §6 has no such numbers), but written by Python's `json` and by
//! many PLC exporters. Before parsing, [`repair_non_finite`] rewrites each one
//! outside strings into a marked string, so the document still parses and the
//! lenient policy can turn the field into a bad sample with its reason.
//!
//! Invariant: text inside JSON strings is never changed; a document without
//! such tokens is returned as `None` (parsed as it is).

use super::number::is_non_finite_word;

/// Marks a bare non-finite token rewritten into a string by [`repair_non_finite`].
pub(super) const NONFINITE: &str = "\u{0}relais-nonfinite:";

/// Rewrites bare non-finite tokens outside strings into marked strings, so the
/// document parses; `None` when there were none.
pub fn repair_non_finite(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut last = 0;
    let mut i = 0;
    let mut in_str = false;
    let mut changed = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        if c == b'-' || c == b'+' || c.is_ascii_alphabetic() {
            let start = i;
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'(' || b[j] == b')' || b[j] == b'#' || b[j] == b'.') {
                j += 1;
            }
            let tok = &text[start..j];
            if is_non_finite_word(tok) {
                out.push_str(&text[last..start]);
                out.push('"');
                out.push_str("\\u0000relais-nonfinite:");
                out.push_str(tok);
                out.push('"');
                last = j;
                changed = true;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&text[last..]);
    Some(out)
}
