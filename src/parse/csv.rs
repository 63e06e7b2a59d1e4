//! CSV records into samples (over the `csv` crate).
//!
//! Dialect: a configured or detected delimiter, a fixed decimal separator,
//! quotes, CRLF, a UTF-8 byte-order mark, a header row or explicit column
//! names. Layouts: *wide* (one column per tag) and *long* (tag and value
//! columns). A row whose field count differs from the header is rejected,
//! never ingested with shifted columns (field case B28).

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use super::number::{NumError, parse_number};
use super::spec::{Layout, MissingTs, ParseSpec, Policy};
use super::{Mapper, Quarantined, Record};
use crate::model::{Quality, TagMeta, Timestamp, reason};

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

fn quality_of(s: &str) -> Option<Quality> {
    match s.trim().to_ascii_lowercase().as_str() {
        "good" | "g" | "ok" | "192" => Some(Quality::Good),
        "uncertain" | "u" | "64" => Some(Quality::Uncertain),
        "bad" | "b" | "0" => Some(Quality::Bad),
        _ => None,
    }
}

fn raw_line(rec: &csv::StringRecord, delim: u8) -> String {
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

/// Line numbers from byte offsets: the reader records where each `\n` is.
/// (The `csv` crate's own line counter is unreliable with CRLF line ends.)
#[derive(Default)]
struct LineIndex {
    /// Offsets of newlines not yet passed by a lookup.
    newlines: std::collections::VecDeque<u64>,
    /// Newlines before the first kept offset.
    passed: u64,
    /// Bytes seen.
    seen: u64,
}

impl LineIndex {
    /// 1-based line of the byte at `offset` (offsets must not decrease).
    fn line_at(&mut self, offset: u64) -> u64 {
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
const END_MARK: &str = "\u{1}relais:end-of-input\u{1}";

struct Lines<R> {
    inner: R,
    index: std::rc::Rc<std::cell::RefCell<LineIndex>>,
    /// Bytes of `"\n" + END_MARK + "\n"` not yet returned after the input ended.
    tail: Option<std::collections::VecDeque<u8>>,
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

enum Plan {
    /// Column index, its tag, and whether a `[[source.tag]]` names it.
    Wide {
        cols: Vec<(usize, Arc<TagMeta>, bool)>,
    },
    Long {
        tag: usize,
        value: usize,
        unit: Option<usize>,
        quality: Option<usize>,
    },
}

/// Wide layout, first data row: a column not named by a `[[source.tag]]`,
/// not known as numeric, whose cell is text is a text column: dropped from
/// `cols` (INFO once). The others are numeric from now on when their cell
/// holds a number.
fn classify_columns(
    cols: &mut Vec<(usize, Arc<TagMeta>, bool)>,
    rec: &csv::StringRecord,
    header: &[String],
    decimal: char,
    mapper: &Mapper,
    line: u64,
) {
    use super::{FieldKind, note_text_field};
    cols.retain(|(i, meta, configured)| {
        let cell = &rec[*i];
        let kind = mapper.fields.kind(&meta.tag);
        if *configured || kind == Some(FieldKind::Numeric) {
            return true;
        }
        if kind == Some(FieldKind::Text) || super::number::is_text(cell, decimal) {
            mapper.fields.set(&mapper.source, &meta.tag, FieldKind::Text);
            note_text_field(&mapper.source, "column", &header[*i], cell, &format!(" in line {line}"));
            return false;
        }
        if parse_number(cell, decimal).is_ok() {
            mapper.fields.set(&mapper.source, &meta.tag, FieldKind::Numeric);
        }
        true
    });
}

/// The record `rec` holds a quoted field that never closed (it ends with
/// [`END_MARK`]): quarantined with `start`, the line the record starts on,
/// and its raw text without the mark.
fn unterminated(rec: &csv::StringRecord, start: u64, delim: u8, mapper: &Mapper, origin: &str) -> Quarantined {
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

/// Reads CSV from `input`, calling `out` once per record. `origin` names the
/// input in quarantine records. Returns the number of records read.
pub fn read_csv<R: Read>(
    input: R,
    spec: &ParseSpec,
    mapper: &mut Mapper,
    origin: &str,
    out: &mut dyn FnMut(Record),
) -> Result<u64, FileError> {
    let mut br = BufReader::with_capacity(1 << 16, input);
    let head = br.fill_buf().map_err(|e| FileError::Io(e.to_string()))?;
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
    let c = &spec.csv;
    let index = std::rc::Rc::new(std::cell::RefCell::new(LineIndex::default()));
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).has_headers(c.header).flexible(true).trim(csv::Trim::All).from_reader(Lines {
        inner: br,
        index: index.clone(),
        tail: None,
    });
    let mut header: Vec<String> = if c.header {
        let h = rdr.headers().map_err(|e| FileError::Header(format!("cannot read the header: {e}")))?;
        if h.get(h.len().wrapping_sub(1)).is_some_and(|f| f.ends_with(END_MARK)) {
            return Err(FileError::Header(
                "unterminated quote in the header: a quote opened in the header never closes, so the whole file was read as \
                 one header field; nothing can be read"
                    .into(),
            ));
        }
        h.iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect()
    } else {
        Vec::new()
    };
    if let Some(cols) = &c.columns {
        header = cols.clone();
    }
    let find = |name: &str| header.iter().position(|h| h == name);
    let need = |name: &str, what: &str| {
        find(name).ok_or_else(|| {
            FileError::Header(format!(
                "{what} column {name:?} is not in the header [{}] (delimiter {:?})",
                header.join(", "),
                delim as char
            ))
        })
    };
    let ts_col = c.timestamp_column.as_deref().map(|n| need(n, "timestamp")).transpose()?;
    let dev_col = c.device_column.as_deref().map(|n| need(n, "device")).transpose()?;
    let plan = match c.layout {
        Layout::Wide => {
            let mut cols = Vec::new();
            for (i, h) in header.iter().enumerate() {
                if Some(i) == ts_col || Some(i) == dev_col || c.skip_columns.contains(h) {
                    continue;
                }
                let rule = spec.tags.iter().find(|r| r.column.as_deref().unwrap_or(&r.name) == h);
                let name = match (rule, spec.listed_only) {
                    (Some(r), _) => r.name.clone(),
                    (None, true) => continue,
                    (None, false) => h.clone(),
                };
                if crate::names::check(&name).is_err() {
                    return Err(FileError::Header(format!(
                        "column {h:?} cannot be a tag name (no '/', '+', '#'); rename it with [[source.tag]] name = \"...\" column = {h:?}, or add it to skip_columns"
                    )));
                }
                cols.push((i, mapper.meta(None, &name, None), rule.is_some()));
            }
            if spec.listed_only {
                for r in &spec.tags {
                    let col = r.column.as_deref().unwrap_or(&r.name);
                    need(col, &format!("tag {:?}", r.name))?;
                }
            }
            Plan::Wide { cols }
        }
        Layout::Long => Plan::Long {
            tag: need(&c.tag_column, "tag")?,
            value: need(&c.value_column, "value")?,
            unit: c.unit_column.as_deref().map(|n| need(n, "unit")).transpose()?,
            quality: c.quality_column.as_deref().map(|n| need(n, "quality")).transpose()?,
        },
    };
    let strict = spec.policy == Policy::Strict;
    let mut plan = plan;
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
                let bytes = e.into_byte_record();
                let line = bytes.position().map_or(0, |p| index.borrow_mut().line_at(p.byte())) + mapper.line_base;
                let raw = bytes.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(&(delim as char).to_string());
                out(Err(mapper.reject(
                    origin,
                    format!("line {line}"),
                    format!("{}: invalid UTF-8 in the record", reason::PARSE_ERROR),
                    &raw,
                )));
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
        // The reader stands just past the record's first terminator byte; the
        // record ends on the line of that byte and starts as many lines
        // earlier as its quoted fields hold newlines.
        let end = rdr.position().byte().saturating_sub(1);
        let inner: u64 = rec.iter().map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64).sum();
        let line = index.borrow_mut().line_at(end).saturating_sub(inner) + mapper.line_base;
        let loc = || format!("line {line}");
        if rec.len() == 1 && rec.get(0) == Some("") {
            continue; // blank line
        }
        if rec.len() != header.len() {
            out(Err(mapper.reject(
                origin,
                loc(),
                format!("{}: column count mismatch (header {}, row {})", reason::PARSE_ERROR, header.len(), rec.len()),
                &raw_line(rec, delim),
            )));
            continue;
        }
        if !classified {
            classified = true;
            if let Plan::Wide { cols } = &mut plan {
                classify_columns(cols, rec, &header, c.decimal, mapper, line);
            }
        }
        let recv = Timestamp::now();
        let (ts, mut uncertain) = match ts_col {
            None => (recv, None),
            Some(i) => match spec.ts.parse_text(&rec[i]) {
                Ok(p) => (p.ts, p.uncertain),
                Err(e) if spec.missing_timestamp == MissingTs::ReceiveTime => {
                    let _ = e;
                    (recv, Some("timestamp_missing"))
                }
                Err(e) => {
                    out(Err(mapper.reject(origin, loc(), format!("{}: timestamp: {e}", reason::PARSE_ERROR), &raw_line(rec, delim))));
                    continue;
                }
            },
        };
        let device = dev_col.map(|i| rec[i].to_string());
        if let Some(Err(e)) = device.as_deref().map(crate::names::check_device) {
            out(Err(mapper.reject(origin, loc(), format!("{}: device column: {e}", reason::PARSE_ERROR), &raw_line(rec, delim))));
            continue;
        }
        let mut samples = Vec::new();
        let mut failed: Option<String> = None;
        match &plan {
            Plan::Wide { cols } => {
                samples.reserve(cols.len());
                for (i, meta, _) in cols {
                    let meta = match &device {
                        Some(d) => mapper.meta(Some(d), &meta.tag, None),
                        None => meta.clone(),
                    };
                    match parse_number(&rec[*i], c.decimal) {
                        Ok(v) => samples.push(mapper.sample(meta, v, ts, recv, uncertain)),
                        Err(NumError::Empty) => samples.push(mapper.bad(meta, format!("{}: empty cell", reason::NULL), ts, recv)),
                        Err(e) if strict => {
                            failed = Some(format!("{}: column {:?}: {e}", reason::PARSE_ERROR, header[*i]));
                            break;
                        }
                        Err(e @ NumError::NonFinite(_)) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::NON_FINITE), ts, recv)),
                        Err(e) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::PARSE_ERROR), ts, recv)),
                    }
                }
            }
            Plan::Long { tag, value, unit, quality } => {
                let name = &rec[*tag];
                if let Err(e) = crate::names::check(name) {
                    failed = Some(format!("{}: tag name: {e}", reason::PARSE_ERROR));
                } else if spec.listed_only && mapper.rule(name).is_none() {
                    // Not a listed tag: skipped by configuration.
                } else {
                    let meta = mapper.meta(device.as_deref(), name, unit.map(|u| &rec[u]).filter(|u| !u.is_empty()));
                    let q = match quality.map(|q| &rec[q]) {
                        None | Some("") => Some(Quality::Good),
                        Some(t) => quality_of(t),
                    };
                    match (q, parse_number(&rec[*value], c.decimal)) {
                        (None, _) => {
                            failed = Some(format!(
                                "{}: unknown quality {:?}; expected good, uncertain or bad",
                                reason::PARSE_ERROR,
                                &rec[quality.unwrap_or(0)]
                            ))
                        }
                        (Some(Quality::Bad), _) => samples.push(mapper.bad(meta, "bad: reported by the source".into(), ts, recv)),
                        (Some(q), Ok(v)) => {
                            if q == Quality::Uncertain && uncertain.is_none() {
                                uncertain = Some("uncertain: reported by the source");
                            }
                            samples.push(mapper.sample(meta, v, ts, recv, uncertain));
                        }
                        (Some(_), Err(NumError::Empty)) => {
                            samples.push(mapper.bad(meta, format!("{}: empty cell", reason::NULL), ts, recv))
                        }
                        (Some(_), Err(e)) if strict => failed = Some(format!("{}: value: {e}", reason::PARSE_ERROR)),
                        (Some(_), Err(e @ NumError::NonFinite(_))) => {
                            samples.push(mapper.bad(meta, format!("{}: {e}", reason::NON_FINITE), ts, recv))
                        }
                        (Some(_), Err(e)) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::PARSE_ERROR), ts, recv)),
                    }
                }
            }
        }
        match failed {
            Some(why) => out(Err(mapper.reject(origin, loc(), why, &raw_line(rec, delim)))),
            None => out(Ok(samples)),
        }
    }
    Ok(n)
}
