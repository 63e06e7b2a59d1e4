//! Where each record starts: a reader that records line ends (the `csv`
//! crate's own line counter is unreliable with CRLF line ends) and marks the
//! end of the input, to find a quote that never closes.

use std::io::Read;

use super::super::{Mapper, Quarantined};
use crate::model::reason;

/// Line numbers from byte offsets: the reader records where each `\n` is.
/// (The `csv` crate's own line counter is unreliable with CRLF line ends.)
#[derive(Default)]
pub(super) struct LineIndex {
    /// Offsets of newlines not yet passed by a lookup.
    newlines: std::collections::VecDeque<u64>,
    /// Newlines before the first kept offset.
    passed: u64,
    /// Bytes seen.
    seen: u64,
}

impl LineIndex {
    /// 1-based line of the byte at `offset` (offsets must not decrease).
    pub(super) fn line_at(&mut self, offset: u64) -> u64 {
        while self.newlines.front().is_some_and(|n| *n < offset) {
            self.newlines.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

/// Appended after the input's last byte (after a newline). Outside quotes
/// it is a line of its own, which ends the input; inside a quoted field that
/// never closed the csv reader takes it into that field, which is how an
/// unterminated quote is found (the reader itself ends such a field at the
/// end of the input without an error). Control characters keep it apart
/// from any text a file holds.
pub(super) const END_MARK: &str = "\u{1}relais:end-of-input\u{1}";

/// The input, with its line ends recorded in `index`.
pub(super) struct Lines<R> {
    pub(super) inner: R,
    pub(super) index: std::rc::Rc<std::cell::RefCell<LineIndex>>,
    /// Bytes of `"\n" + END_MARK + "\n"` not yet returned after the input ended.
    pub(super) tail: Option<std::collections::VecDeque<u8>>,
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.tail {
            Some(t) => {
                let n = t.len().min(buf.len());
                for (i, b) in t.drain(..n).enumerate() {
                    buf[i] = b;
                }
                return Ok(n);
            }
            None => self.inner.read(buf)?,
        };
        if n == 0 && !buf.is_empty() {
            self.tail = Some(format!("\n{END_MARK}\n").into_bytes().into());
            return self.read(buf);
        }
        let mut idx = self.index.borrow_mut();
        let base = idx.seen;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                idx.newlines.push_back(base + i as u64);
            }
        }
        idx.seen += n as u64;
        Ok(n)
    }
}

/// A record as CSV text again (for quarantine records).
pub(super) fn raw_line(rec: &csv::StringRecord, delim: u8) -> String {
    let d = delim as char;
    rec.iter()
        .map(
            |f| {
                if f.contains(d) || f.contains('"') || f.contains('\n') { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() }
            },
        )
        .collect::<Vec<_>>()
        .join(&d.to_string())
}

/// The record `rec` holds a quoted field that never closed (it ends with
/// [`END_MARK`]): quarantined with `start`, the line the record starts on,
/// and its raw text without the mark.
pub(super) fn unterminated(rec: &csv::StringRecord, start: u64, delim: u8, mapper: &Mapper, origin: &str) -> Quarantined {
    let cleaned: csv::StringRecord = rec.iter().map(|f| f.replace(END_MARK, "").trim_end().to_string()).collect();
    mapper.reject(
        origin,
        format!("line {start}"),
        format!(
            "{}: unterminated quote: a quote opened in the record starting on line {start} never closes, so everything after it \
             up to the end of the file was read as one field",
            reason::PARSE_ERROR
        ),
        &raw_line(&cleaned, delim),
    )
}
