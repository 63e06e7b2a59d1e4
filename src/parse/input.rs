//! One entry point for a whole input (a file, an HTTP body, an MQTT payload):
//! its format picks the reader.

use std::io::Read;

use super::csv::{FileError, read_csv};
use super::json::{read_json_doc, read_json_lines};
use super::spec::Format;
use super::{Mapper, ParseSpec, Record};

/// Parses `input` as `format`, feeding every record to `out`. A whole-input
/// problem (not text, unreadable header, no timestamp key for this format
/// while the other format has one and `missing_timestamp = "reject"`) is
/// returned once.
pub fn parse_input<R: Read>(
    input: R,
    format: Format,
    spec: &ParseSpec,
    mapper: &mut Mapper,
    origin: &str,
    out: &mut dyn FnMut(Record),
) -> Result<u64, FileError> {
    if let Some(key) = spec.timestamp_key_missing(format)
        && spec.missing_timestamp == super::spec::MissingTs::Reject
    {
        let (this, other) = if key == "timestamp_column" { ("CSV", "timestamp_path") } else { ("JSON", "timestamp_column") };
        return Err(FileError::Header(format!(
            "the input is {this} but the source only sets {other}, so its records have no timestamp; set {key} \
             (or missing_timestamp = \"receive_time\" to stamp them with the receive time, uncertain)"
        )));
    }
    let n = match format {
        Format::Csv => read_csv(input, spec, mapper, origin, out),
        Format::JsonLines => read_json_lines(std::io::BufReader::with_capacity(1 << 16, input), spec, mapper, origin, out),
        Format::Json => {
            let mut bytes = Vec::new();
            let mut input = input;
            input.read_to_end(&mut bytes).map_err(|e| FileError::Io(e.to_string()))?;
            super::csv::check_text(&bytes[..bytes.len().min(8192)])?;
            let text = String::from_utf8(bytes)
                .map_err(|e| FileError::NotText(format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to())))?;
            Ok(read_json_doc(text.trim_start_matches('\u{feff}'), spec, mapper, origin, out))
        }
    };
    mapper.fields.report_overflow(&mapper.source);
    n
}
