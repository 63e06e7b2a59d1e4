//! The parsing part of a `[[source]]`: format, policy, timestamps, CSV
//! dialect and layout, JSON paths, per-tag rules. Flat keys, documented in
//! `docs/configuration.md` (section "Sources").

mod read;

use serde::Deserialize;

use super::timestamp::TsSpec;
pub use read::{PARSE_KEYS, RawParse, to_pointer};

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV (dialect below).
    Csv,
    /// One JSON object, or an array of objects.
    Json,
    /// JSON Lines: one object per line.
    JsonLines,
}

/// What to do with a record holding an unreadable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Reject the whole record to quarantine (default).
    Strict,
    /// Keep the record: the unreadable values become bad samples with a reason;
    /// bare `nan`/`Infinity` in JSON is accepted.
    Lenient,
}

/// CSV layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One column per tag, one timestamp column.
    Wide,
    /// One row per value: tag and value columns (and optional unit, quality,
    /// timestamp, device columns).
    Long,
}

/// When a configured timestamp is missing or unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingTs {
    /// Reject the record (default).
    Reject,
    /// Use the receive time and flag the samples uncertain (`timestamp_missing`).
    ReceiveTime,
}

/// Per-tag rule: which column or JSON path, unit, scaling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRule {
    /// Tag name (an MQTT topic level).
    pub name: String,
    /// CSV column (default: the tag name).
    pub column: Option<String>,
    /// JSON path: a JSON Pointer (`/D1234/fecha`) or a dotted path (`D1234.fecha`).
    pub path: Option<String>,
    /// Engineering unit.
    pub unit: Option<String>,
    /// Multiplier.
    #[serde(default = "one")]
    pub scale: f64,
    /// Added after scaling.
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

/// CSV dialect and layout.
#[derive(Debug, Clone)]
pub struct CsvSpec {
    /// Field delimiter; `None` detects it from the first line (`,` `;` tab `|`).
    pub delimiter: Option<u8>,
    /// Decimal separator, `.` or `,`; never guessed.
    pub decimal: char,
    /// First row names the columns.
    pub header: bool,
    /// Column names (override or replace the header).
    pub columns: Option<Vec<String>>,
    /// Wide or long.
    pub layout: Layout,
    /// Timestamp column (wide and long); none = receive time.
    pub timestamp_column: Option<String>,
    /// Device column (optional).
    pub device_column: Option<String>,
    /// Long layout: tag name column.
    pub tag_column: String,
    /// Long layout: value column.
    pub value_column: String,
    /// Long layout: unit column (optional).
    pub unit_column: Option<String>,
    /// Long layout: quality column (optional: good, uncertain, bad).
    pub quality_column: Option<String>,
    /// Wide layout: columns not ingested.
    pub skip_columns: Vec<String>,
}

/// JSON paths.
#[derive(Debug, Clone)]
pub struct JsonSpec {
    /// JSON Pointer of the timestamp; none = receive time.
    pub timestamp: Option<String>,
    /// JSON Pointer of the device name (optional).
    pub device: Option<String>,
}

/// Everything a source needs to turn its input into samples.
#[derive(Debug, Clone)]
pub struct ParseSpec {
    /// Input format; `None`: from the file extension (`.csv`, `.json`,
    /// `.jsonl`/`.ndjson`) or the HTTP `Content-Type`.
    pub format: Option<Format>,
    /// Strict or lenient.
    pub policy: Policy,
    /// Timestamps.
    pub ts: TsSpec,
    /// Missing or unreadable timestamps.
    pub missing_timestamp: MissingTs,
    /// Only the `[[source.tag]]` entries are ingested (`select = "listed"`);
    /// otherwise every numeric or boolean column/field (`"auto"`).
    pub listed_only: bool,
    /// CSV settings.
    pub csv: CsvSpec,
    /// JSON settings.
    pub json: JsonSpec,
    /// Per-tag rules.
    pub tags: Vec<TagRule>,
}

impl ParseSpec {
    /// The timestamp key `format` would need when only the other format's
    /// key is set (`timestamp_path` without `timestamp_column` for CSV, the
    /// reverse for JSON): its records have no timestamp, and stamping them
    /// with the receive time as `good` would be a plausible wrong value.
    /// `None` when `format` has its key, or when neither is set (receive
    /// time is then the documented timestamp).
    pub fn timestamp_key_missing(&self, format: Format) -> Option<&'static str> {
        match format {
            Format::Csv if self.csv.timestamp_column.is_none() && self.json.timestamp.is_some() => Some("timestamp_column"),
            Format::Json | Format::JsonLines if self.json.timestamp.is_none() && self.csv.timestamp_column.is_some() => {
                Some("timestamp_path")
            }
            _ => None,
        }
    }

    /// The warning `relais check` prints when [`Self::timestamp_key_missing`]
    /// holds for `format`: what happens to such input and the key to set.
    pub fn timestamp_warning(&self, format: Format) -> Option<String> {
        let key = self.timestamp_key_missing(format)?;
        let (this, other) = if key == "timestamp_column" { ("CSV", "timestamp_path") } else { ("JSON", "timestamp_column") };
        let then = match self.missing_timestamp {
            MissingTs::Reject => "refused whole (missing_timestamp = \"reject\")",
            MissingTs::ReceiveTime => "stamped with the receive time and marked uncertain (timestamp_missing)",
        };
        Some(format!(
            "{other} applies to {} only: {this} input has no timestamp and is {then}; set {key}",
            if this == "CSV" { "JSON" } else { "CSV" }
        ))
    }

    /// A stable text of every setting that changes the samples a file gives,
    /// for `format` (the file's resolved format) and `device` (the source's
    /// default device). Part of a file import's identity, so that a file
    /// imported with wrong settings is imported again once they are fixed.
    pub fn settings(&self, format: Format, device: &str) -> String {
        let c = &self.csv;
        let j = &self.json;
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let mut s = format!(
            "v1 device={device:?} format={} policy={} select={} missing_timestamp={} {} \
             delimiter={:?} decimal={:?} header={} columns={:?} layout={} timestamp_column={:?} device_column={:?} \
             tag_column={:?} value_column={:?} unit_column={:?} quality_column={:?} skip_columns={:?} \
             timestamp_path={:?} device_path={:?}",
            format.name(),
            if self.policy == Policy::Strict { "strict" } else { "lenient" },
            if self.listed_only { "listed" } else { "auto" },
            if self.missing_timestamp == MissingTs::Reject { "reject" } else { "receive_time" },
            self.ts.settings(),
            c.delimiter.map(char::from),
            c.decimal,
            c.header,
            c.columns,
            if c.layout == Layout::Wide { "wide" } else { "long" },
            opt(&c.timestamp_column),
            opt(&c.device_column),
            c.tag_column,
            c.value_column,
            opt(&c.unit_column),
            opt(&c.quality_column),
            c.skip_columns,
            opt(&j.timestamp),
            opt(&j.device),
        );
        for t in &self.tags {
            s.push_str(&format!(
                " tag={:?}:column={:?}:path={:?}:unit={:?}:scale={:?}:offset={:?}",
                t.name,
                opt(&t.column),
                opt(&t.path),
                opt(&t.unit),
                t.scale,
                t.offset
            ));
        }
        s
    }
}

impl Format {
    /// The name used in the configuration: `csv`, `json`, `jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::JsonLines => "jsonl",
        }
    }

    /// The format a file name implies: `.csv`, `.json`, `.jsonl`/`.ndjson`.
    pub fn from_path(p: &std::path::Path) -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" | "txt" | "tsv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            _ => None,
        }
    }

    /// The format an HTTP `Content-Type` names.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let ct = ct.split(';').next()?.trim().to_ascii_lowercase();
        match ct.as_str() {
            "text/csv" => Some(Format::Csv),
            "application/json" => Some(Format::Json),
            "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/jsonlines" => Some(Format::JsonLines),
            _ => None,
        }
    }
}
