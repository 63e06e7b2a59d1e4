//! Which column holds what: the header (or the configured column names),
//! the timestamp and device columns, and the layout's tag columns.

use std::io::Read;
use std::sync::Arc;

use super::super::Mapper;
use super::super::number::parse_number;
use super::super::spec::{CsvSpec, Layout, ParseSpec};
use super::FileError;
use super::lines::{END_MARK, Lines};
use crate::model::TagMeta;

/// The tag columns of a layout.
pub(super) enum Columns {
    /// `cols`: column index, its tag, and whether a `[[source.tag]]` names
    /// it; `text`: the text columns (index, tag), skipped until one holds a
    /// number (then it moves to `cols`, numeric from that row on).
    Wide { cols: Vec<(usize, Arc<TagMeta>, bool)>, text: Vec<(usize, Arc<TagMeta>)> },
    /// The columns of the tag name, value, unit and quality.
    Long { tag: usize, value: usize, unit: Option<usize>, quality: Option<usize> },
}

/// What every row of a file is read with.
pub(super) struct Plan {
    /// Index of the timestamp column.
    pub(super) ts_col: Option<usize>,
    /// No timestamp column while the source sets `timestamp_path` (JSON
    /// only): rows are stamped with the receive time, uncertain
    /// (`missing_timestamp = "receive_time"`; otherwise the input is refused).
    pub(super) ts_missing: bool,
    /// Index of the device column.
    pub(super) dev_col: Option<usize>,
    /// The tag columns.
    pub(super) columns: Columns,
}

/// The header row (unless `header = false`), or the configured `columns`.
pub(super) fn read_header<R: Read>(rdr: &mut csv::Reader<Lines<R>>, c: &CsvSpec) -> Result<Vec<String>, FileError> {
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
    Ok(header)
}

impl Plan {
    /// The plan of a file with `header`; an error names a configured column
    /// the header lacks, or a column that cannot be a tag name.
    pub(super) fn new(spec: &ParseSpec, mapper: &mut Mapper, header: &[String], delim: u8) -> Result<Plan, FileError> {
        let c = &spec.csv;
        let need = |name: &str, what: &str| {
            header.iter().position(|h| h == name).ok_or_else(|| {
                FileError::Header(format!(
                    "{what} column {name:?} is not in the header [{}] (delimiter {:?})",
                    header.join(", "),
                    delim as char
                ))
            })
        };
        check_unique(header, c)?;
        let ts_col = c.timestamp_column.as_deref().map(|n| need(n, "timestamp")).transpose()?;
        let dev_col = c.device_column.as_deref().map(|n| need(n, "device")).transpose()?;
        let columns = match c.layout {
            Layout::Wide => {
                let cols = wide_columns(spec, mapper, header, &[ts_col, dev_col])?;
                if spec.listed_only {
                    for r in &spec.tags {
                        need(r.column.as_deref().unwrap_or(&r.name), &format!("tag {:?}", r.name))?;
                    }
                }
                Columns::Wide { cols, text: Vec::new() }
            }
            Layout::Long => Columns::Long {
                tag: need(&c.tag_column, "tag")?,
                value: need(&c.value_column, "value")?,
                unit: c.unit_column.as_deref().map(|n| need(n, "unit")).transpose()?,
                quality: c.quality_column.as_deref().map(|n| need(n, "quality")).transpose()?,
            },
        };
        Ok(Plan { ts_col, ts_missing: spec.timestamp_key_missing(super::super::spec::Format::Csv).is_some(), dev_col, columns })
    }
}

/// Two columns with one name (not in `skip_columns`) would give two samples
/// of one tag at one instant, or an ambiguous timestamp or device column:
/// the file is refused at its header, naming the columns.
fn check_unique(header: &[String], c: &CsvSpec) -> Result<(), FileError> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if c.skip_columns.contains(h) {
            continue;
        }
        if let Some(first) = seen.insert(h.as_str(), i) {
            let whence = if c.columns.is_some() { "the configured `columns`" } else { "the header (line 1)" };
            return Err(FileError::Header(format!(
                "{whence} names column {h:?} twice (columns {} and {}): each value would be a second sample of one tag at one \
                 instant; rename one (or list it in skip_columns)",
                first + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

/// Wide layout: every column but the timestamp, device and skipped ones is
/// a tag (only the listed ones with `select = "listed"`), named by its
/// `[[source.tag]]` or its header.
fn wide_columns(
    spec: &ParseSpec,
    mapper: &mut Mapper,
    header: &[String],
    taken: &[Option<usize>],
) -> Result<Vec<(usize, Arc<TagMeta>, bool)>, FileError> {
    let mut cols = Vec::new();
    for (i, h) in header.iter().enumerate() {
        if taken.contains(&Some(i)) || spec.csv.skip_columns.contains(h) {
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
    Ok(cols)
}

/// Wide layout, first data row: a column not named by a `[[source.tag]]`,
/// not known as numeric, whose cell is text is a text column: moved from
/// `cols` to `text` (INFO once). The others are numeric from now on when
/// their cell holds a number.
pub(super) fn classify_columns(
    cols: &mut Vec<(usize, Arc<TagMeta>, bool)>,
    text: &mut Vec<(usize, Arc<TagMeta>)>,
    rec: &csv::StringRecord,
    header: &[String],
    decimal: char,
    mapper: &Mapper,
    line: u64,
) {
    use super::super::{FieldKind, note_text_field};
    cols.retain(|(i, meta, configured)| {
        let cell = &rec[*i];
        let kind = mapper.fields.kind(&meta.tag);
        if *configured || kind == Some(FieldKind::Numeric) {
            return true;
        }
        if kind == Some(FieldKind::Text) || super::super::number::is_text(cell, decimal) {
            mapper.fields.set(&mapper.source, &meta.tag, FieldKind::Text);
            note_text_field(&mapper.source, "column", &header[*i], cell, &format!(" in line {line}"));
            text.push((*i, meta.clone()));
            return false;
        }
        if parse_number(cell, decimal).is_ok() {
            mapper.fields.set(&mapper.source, &meta.tag, FieldKind::Numeric);
        }
        true
    });
}

/// Wide layout, any data row: a text column whose cell holds a number is
/// numeric from this row on (the rule of [`crate::parse`]: a field is
/// numeric once it has held a number), so its numbers are never dropped;
/// its text cells are then unreadable values, reported like any other.
/// Logged once per column at WARN (`relais import` shows it).
pub(super) fn promote_numeric(
    cols: &mut Vec<(usize, Arc<TagMeta>, bool)>,
    text: &mut Vec<(usize, Arc<TagMeta>)>,
    rec: &csv::StringRecord,
    header: &[String],
    decimal: char,
    mapper: &Mapper,
    (origin, line): (&str, u64),
) {
    use super::super::FieldKind;
    use crate::util::escape::escape;
    let before = cols.len();
    text.retain(|(i, meta)| {
        if parse_number(&rec[*i], decimal).is_err() {
            return true;
        }
        mapper.fields.set(&mapper.source, &meta.tag, FieldKind::Numeric);
        tracing::warn!(
            source = %escape(&mapper.source), file = %escape(origin), column = %escape(&header[*i]),
            "{}: column \"{}\" held text in its first data row but holds a number (\"{}\") in line {line}: it is a numeric \
             column from this line on, and its text cells are unreadable values (rejected rows, or bad samples with \
             policy = \"lenient\")",
            escape(origin),
            escape(&header[*i]),
            escape(&rec[*i]),
        );
        cols.push((*i, meta.clone(), false));
        false
    });
    if cols.len() != before {
        cols.sort_by_key(|c| c.0);
    }
}
