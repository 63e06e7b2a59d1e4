//! CSV records into samples (over the `csv` crate).
//!
//! Dialect: a configured or detected delimiter, a fixed decimal separator,
//! quotes, CRLF, a UTF-8 byte-order mark, a header row or explicit column
//! names. Layouts: *wide* (one column per tag) and *long* (tag and value
//! columns). A row whose field count differs from the header is rejected,
//! never ingested with shifted columns (field case B28).

mod lines;
mod plan;
mod row;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use super::spec::ParseSpec;
use super::{Mapper, Record};
use crate::model::reason;
use lines::{END_MARK, LineIndex, Lines, raw_line, unterminated};
use plan::{Columns, Plan};

/// A whole-file problem, reported once with the path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    /// Binary data or another encoding.
    #[error("not a UTF-8 text file ({0}); convert it to UTF-8 CSV or JSON")]
    NotText(String),
    /// The header does not hold a configured column.
    #[error("{0}")]
    Header(String),
    /// Reading failed.
    #[error("read error: {0}")]
    Io(String),
}

/// Checks that `head` (the start of a file) looks like UTF-8 text.
pub fn check_text(head: &[u8]) -> Result<(), FileError> {
    if let Some(p) = head.iter().position(|b| *b == 0) {
        return Err(FileError::NotText(format!("NUL byte at offset {p}")));
    }
    match std::str::from_utf8(head) {
        Ok(_) => Ok(()),
        // An incomplete character cut by the end of the buffer is fine.
        Err(e) if e.error_len().is_none() => Ok(()),
        Err(e) => Err(FileError::NotText(format!("invalid UTF-8 at byte {}", e.valid_up_to()))),
    }
}

/// Picks the delimiter of a header line: the most frequent of `,` `;` tab `|`
/// outside quotes (ties go to `,`).
pub fn detect_delimiter(line: &str) -> u8 {
    let mut counts = [0usize; 4];
    let cands = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = cands.iter().position(|c| *c == b) {
            counts[i] += 1;
        }
    }
    let best = (0..4).max_by_key(|i| (counts[*i], std::cmp::Reverse(*i))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { cands[best] }
}

/// The csv reader over `input`, with its line index and the delimiter
/// (configured, or detected on the first line).
#[allow(clippy::type_complexity)]
fn open<R: Read>(
    input: R,
    spec: &ParseSpec,
    mapper: &Mapper,
) -> Result<(csv::Reader<Lines<BufReader<R>>>, Rc<RefCell<LineIndex>>, u8), FileError> {
    let mut br = BufReader::with_capacity(1 << 16, input);
    let head = br.fill_buf().map_err(|e| FileError::Io(e.to_string()))?;
    if head.is_empty() && !mapper.continuation && spec.csv.header {
        return Err(FileError::Header("empty file (0 bytes): no header and no data".into()));
    }
    if !mapper.continuation {
        check_text(&head[..head.len().min(8192)])?;
    }
    let delim = match spec.csv.delimiter {
        Some(d) => d,
        None => {
            let text = String::from_utf8_lossy(head);
            detect_delimiter(text.trim_start_matches('\u{feff}').lines().next().unwrap_or(""))
        }
    };
    let index = Rc::new(RefCell::new(LineIndex::default()));
    let rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(spec.csv.header)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(Lines { inner: br, index: index.clone(), tail: None });
    Ok((rdr, index, delim))
}

/// A record that is not UTF-8, for the quarantine: its raw bytes (lossy)
/// and the line it starts on.
fn not_utf8(bytes: csv::ByteRecord, index: &RefCell<LineIndex>, delim: u8, mapper: &Mapper, origin: &str) -> Record {
    let line = bytes.position().map_or(0, |p| index.borrow_mut().line_at(p.byte())) + mapper.line_base;
    let raw = bytes.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(&(delim as char).to_string());
    Err(mapper.reject(origin, format!("line {line}"), format!("{}: invalid UTF-8 in the record", reason::PARSE_ERROR), &raw))
}

/// The line (counted in the input, from 1) a record starts on, from `end`,
/// the offset of its first terminator byte: it ends on that byte's line and
/// starts as many lines earlier as its quoted fields hold newlines.
fn first_line(rec: &csv::StringRecord, end: u64, index: &RefCell<LineIndex>) -> u64 {
    let inner: u64 = rec.iter().map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64).sum();
    index.borrow_mut().line_at(end).saturating_sub(inner)
}

/// Reads CSV from `input`, calling `out` once per record. `origin` names the
/// input in quarantine records. Returns the number of records read.
pub fn read_csv<R: Read>(
    input: R,
    spec: &ParseSpec,
    mapper: &mut Mapper,
    origin: &str,
    out: &mut dyn FnMut(Record),
) -> Result<u64, FileError> {
    let c = &spec.csv;
    let (mut rdr, index, delim) = open(input, spec, mapper)?;
    let header = plan::read_header(&mut rdr, c)?;
    let mut plan = Plan::new(spec, mapper, &header, delim)?;
    let mut classified = false;
    // The record's buffers, reused from one record to the next.
    let mut slot: Option<csv::StringRecord> = None;
    let mut n = 0u64;
    loop {
        // Read bytes, then check UTF-8 per record: a record that is not UTF-8
        // is quarantined with its raw bytes (lossy), and the next ones are read.
        let mut bytes = slot.take().map_or_else(csv::ByteRecord::new, csv::StringRecord::into_byte_record);
        match rdr.read_byte_record(&mut bytes) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| index.borrow_mut().line_at(p.byte())) + mapper.line_base;
                return Err(FileError::Io(format!("line {line}: {e}")));
            }
        }
        let rec: &csv::StringRecord = match csv::StringRecord::from_byte_record(bytes) {
            Ok(r) => slot.insert(r),
            Err(e) => {
                out(not_utf8(e.into_byte_record(), &index, delim, mapper, origin));
                n += 1;
                continue;
            }
        };
        if rec.get(rec.len().wrapping_sub(1)).is_some_and(|f| f.ends_with(END_MARK)) {
            if rec.len() == 1 && rec[0] == *END_MARK {
                break; // the end of the input
            }
            n += 1;
            let start = rec.position().map_or(0, |p| index.borrow_mut().line_at(p.byte())) + mapper.line_base;
            out(Err(unterminated(rec, start, delim, mapper, origin)));
            continue;
        }
        n += 1;
        // The reader stands just past the record's first terminator byte.
        let line = first_line(rec, rdr.position().byte().saturating_sub(1), &index) + mapper.line_base;
        if rec.len() == 1 && rec.get(0) == Some("") {
            continue; // blank line
        }
        if rec.len() != header.len() {
            out(Err(mapper.reject(
                origin,
                format!("line {line}"),
                format!("{}: column count mismatch (header {}, row {})", reason::PARSE_ERROR, header.len(), rec.len()),
                &raw_line(rec, delim),
            )));
            continue;
        }
        if !classified {
            classified = true;
            if let Columns::Wide { cols, text } = &mut plan.columns {
                plan::classify_columns(cols, text, rec, &header, c.decimal, mapper, line);
            }
        } else if let Columns::Wide { cols, text } = &mut plan.columns
            && !text.is_empty()
        {
            plan::promote_numeric(cols, text, rec, &header, c.decimal, mapper, (origin, line));
        }
        let row = row::Row { rec, line, header: &header, delim, origin };
        out(row.convert(&plan, spec, mapper));
    }
    Ok(n)
}
