//! The CSV files `kind = "csv"` signals replay: read once with the `csv`
//! crate, the delimiter configured or detected on the header line (`,` `;`
//! tab `|`, as [`crate::parse::csv::detect_delimiter`]), and checked at
//! load: a replayed column must hold a number in every row that fits the
//! tag's data type, or the configuration is refused with the file, line and
//! value (never a skipped row, never a value clamped into a register).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::find_data_file;
use super::tags::TagCtx;
use crate::diag::Diag;
use crate::sim::signal::{CsvColumn, Signal};
use crate::sources::modbus::types::{DataType, Table};

/// A loaded CSV file: its header, the delimiter it was read with, the
/// line each data row starts on, and its columns (`None` for a cell that is
/// not a finite number, with the first such cell of each column kept as
/// (line, text) for the error).
pub(super) struct CsvTable {
    header: Vec<String>,
    delimiter: u8,
    lines: Vec<u64>,
    cols: Vec<Vec<Option<f64>>>,
    first_bad: Vec<Option<(u64, String)>>,
}

fn load_csv(
    path: &Path,
    delimiter: Option<u8>,
    cache: &mut HashMap<(PathBuf, Option<u8>), Arc<CsvTable>>,
) -> Result<Arc<CsvTable>, String> {
    if let Some(t) = cache.get(&(path.to_path_buf(), delimiter)) {
        return Ok(t.clone());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim_start_matches('\u{feff}');
    let delim = delimiter.unwrap_or_else(|| crate::parse::csv::detect_delimiter(text.lines().next().unwrap_or("")));
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).trim(csv::Trim::All).from_reader(text.as_bytes());
    let header: Vec<String> =
        rdr.headers().map_err(|e| format!("{}: bad header: {e}", path.display()))?.iter().map(str::to_string).collect();
    let mut t =
        CsvTable { cols: vec![Vec::new(); header.len()], first_bad: vec![None; header.len()], header, delimiter: delim, lines: Vec::new() };
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("{}: {e} (delimiter {:?})", path.display(), delim as char))?;
        let line = rec.position().map_or(0, csv::Position::line);
        t.lines.push(line);
        for (c, col) in t.cols.iter_mut().enumerate() {
            let cell = rec.get(c).unwrap_or("");
            let v = cell.parse::<f64>().ok().filter(|v| v.is_finite());
            if v.is_none() && t.first_bad[c].is_none() {
                t.first_bad[c] = Some((line, cell.to_string()));
            }
            col.push(v);
        }
    }
    let t = Arc::new(t);
    cache.insert((path.to_path_buf(), delimiter), t.clone());
    Ok(t)
}

/// The range of raw values data type `ty` holds (`None`: any finite value).
fn raw_range(ty: DataType) -> Option<(f64, f64)> {
    Some(match ty {
        DataType::U16 => (0.0, u16::MAX as f64),
        DataType::I16 => (i16::MIN as f64, i16::MAX as f64),
        DataType::U32 => (0.0, u32::MAX as f64),
        DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DataType::U64 => (0.0, u64::MAX as f64),
        DataType::I64 => (i64::MIN as f64, i64::MAX as f64),
        DataType::F32 => (f32::MIN as f64, f32::MAX as f64),
        DataType::Bool | DataType::F64 | DataType::String(_) => return None,
    })
}

/// The first row of `col` whose raw value `(v − offset) / scale` (rounded
/// for integer types) does not fit `ty`: the value would be clamped.
fn first_out_of_range(t: &CsvTable, col: usize, (ty, scale, offset): (DataType, f64, f64)) -> Option<(u64, f64, String)> {
    let (lo, hi) = raw_range(ty)?;
    t.cols[col].iter().zip(&t.lines).find_map(|(v, line)| {
        let v = (*v)?;
        let raw = (v - offset) / scale;
        let raw = if ty.is_float() { raw } else { raw.round() };
        (!(lo..=hi).contains(&raw)).then(|| (*line, v, format!("{ty:?}").to_lowercase()))
    })
}

/// A CSV replay: the column by name or index, every row a number that fits
/// the tag's type (`target`: table, type, scale, offset); a missing file
/// serves a random walk (0 for bits) and is listed in `ctx.missing`.
#[allow(clippy::too_many_arguments)]
pub(super) fn csv_signal(
    file: &str,
    column: &str,
    delimiter: Option<&str>,
    looped: bool,
    (span, skey): (std::ops::Range<usize>, &str),
    (table, ty, scale, offset): (Table, DataType, f64, f64),
    ctx: &mut TagCtx<'_>,
    d: &mut Diag<'_>,
) -> Option<Signal> {
    let delim = match delimiter {
        None | Some("auto") => None,
        Some("\\t" | "tab") => Some(b'\t'),
        Some(s) if s.len() == 1 && s.is_ascii() => Some(s.as_bytes()[0]),
        Some(_) => {
            d.error(span, skey, "delimiter must be one ASCII character, \"tab\" or \"auto\"");
            return None;
        }
    };
    let path = find_data_file(ctx.base_dir, file);
    let t = match load_csv(&path, delim, &mut ctx.cache) {
        Ok(t) => t,
        Err(_) if !path.exists() => {
            ctx.missing.push(file.to_string());
            return Some(if table.is_bit() {
                Signal::Constant(0.0)
            } else {
                Signal::RandomWalk { value: 0.0, step: 0.1, min: -1.0, max: 1.0, rng: fastrand::Rng::new() }
            });
        }
        Err(e) => {
            d.error(span, skey, e);
            return None;
        }
    };
    let how = if delim.is_some() { "configured" } else { "detected" };
    let Some(i) = t.header.iter().position(|h| h == column).or_else(|| column.parse::<usize>().ok().filter(|i| *i < t.header.len())) else {
        let cols = t.header.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
        let m = format!("column {column:?} not found in {} (delimiter {:?}, {how}); columns: {cols}", path.display(), t.delimiter as char);
        d.error(span, skey, m);
        return None;
    };
    if let Some((line, cell)) = &t.first_bad[i] {
        let m = format!(
            "{} line {line}: column {column:?} holds {cell:?}, not a number (empty, NaN or text; delimiter {:?}, {how}); every \
             replayed row must be a number: fix or remove that row",
            path.display(),
            t.delimiter as char
        );
        d.error(span, skey, m);
        return None;
    }
    if let Some((line, v, name)) = first_out_of_range(&t, i, (ty, scale, offset)) {
        let m = format!(
            "{} line {line}: column {column:?} holds {v}, which does not fit the tag's type {name} (scale {scale}, offset \
             {offset}): it would be clamped; widen the type or set scale/offset",
            path.display()
        );
        d.error(span, skey, m);
        return None;
    }
    Some(Signal::Csv { column: CsvColumn { values: Arc::new(t.cols[i].clone()) }, looped })
}
