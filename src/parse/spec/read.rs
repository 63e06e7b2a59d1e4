//! Reading the parse keys of a `[[source]]` into a [`ParseSpec`].

use serde::Deserialize;
use toml::Spanned;

use super::super::timestamp::{Ambiguous, EpochUnit, TsFormat, TsSpec, check_strftime, icu_to_strftime};
use super::{CsvSpec, Format, JsonSpec, Layout, MissingTs, ParseSpec, Policy, TagRule};
use crate::diag::{Diag, Reader};

/// Parse keys of a `[[source]]` (besides its type-specific keys).
pub const PARSE_KEYS: &[&str] = &[
    "format",
    "policy",
    "select",
    "timestamp_format",
    "timezone",
    "epoch_unit",
    "ambiguous_time",
    "missing_timestamp",
    "delimiter",
    "decimal",
    "header",
    "columns",
    "layout",
    "timestamp_column",
    "device_column",
    "tag_column",
    "value_column",
    "unit_column",
    "quality_column",
    "skip_columns",
    "timestamp_path",
    "device_path",
    "tag",
];

/// The raw parse keys.
#[derive(Debug, Deserialize, Default)]
pub struct RawParse {
    format: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    select: Option<Spanned<String>>,
    timestamp_format: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    epoch_unit: Option<Spanned<String>>,
    ambiguous_time: Option<Spanned<String>>,
    missing_timestamp: Option<Spanned<String>>,
    delimiter: Option<Spanned<String>>,
    decimal: Option<Spanned<String>>,
    header: Option<bool>,
    columns: Option<Vec<String>>,
    layout: Option<Spanned<String>>,
    timestamp_column: Option<String>,
    device_column: Option<String>,
    tag_column: Option<String>,
    value_column: Option<String>,
    unit_column: Option<String>,
    quality_column: Option<String>,
    #[serde(default)]
    skip_columns: Vec<String>,
    timestamp_path: Option<Spanned<String>>,
    device_path: Option<Spanned<String>>,
    #[serde(default)]
    tag: Vec<Spanned<TagRule>>,
}

/// Turns a dotted path (`D1234.fecha`) into a JSON Pointer (`/D1234/fecha`);
/// a pointer (leading `/`) or `""` is kept.
pub fn to_pointer(path: &str) -> String {
    if path.is_empty() || path.starts_with('/') {
        return path.to_string();
    }
    path.split('.').map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect()
}

impl RawParse {
    /// Validates the parse keys of the source at `item_span`, named `key`.
    pub fn validate(self, d: &mut Diag<'_>, key: &str, item_span: std::ops::Range<usize>) -> ParseSpec {
        let mut r = Reader::new(d, key);
        let format = self.format.as_ref().map(|_| {
            let formats = [
                ("csv", Format::Csv),
                ("json", Format::Json),
                ("jsonl", Format::JsonLines),
                ("ndjson", Format::JsonLines),
                ("json-lines", Format::JsonLines),
            ];
            r.choice(&self.format, "format", &formats, Format::Csv)
        });
        let policy = r.choice(&self.policy, "policy", &[("strict", Policy::Strict), ("lenient", Policy::Lenient)], Policy::Strict);
        let listed_only = r.choice(&self.select, "select", &[("auto", false), ("listed", true)], false);
        let ts = self.timestamps(&mut r, &item_span);
        let missing_timestamp = r.choice(
            &self.missing_timestamp,
            "missing_timestamp",
            &[("reject", MissingTs::Reject), ("receive_time", MissingTs::ReceiveTime)],
            MissingTs::Reject,
        );
        let (delimiter, decimal) = self.separators(&mut r, &item_span);
        let layout = r.choice(&self.layout, "layout", &[("wide", Layout::Wide), ("long", Layout::Long)], Layout::Wide);
        let header = self.header.unwrap_or(true);
        if !header && self.columns.is_none() && format != Some(Format::Json) && format != Some(Format::JsonLines) {
            r.error(item_span.clone(), "columns", "header = false needs `columns = [...]` naming the columns");
        }
        let tags = tag_rules(&mut r, self.tag);
        if listed_only && tags.is_empty() {
            let span = self.select.as_ref().map_or(item_span.clone(), |s| s.span());
            r.error(span, "select", "select = \"listed\" needs at least one [[source.tag]]");
        }
        let spec = ParseSpec {
            format,
            policy,
            ts,
            missing_timestamp,
            listed_only,
            csv: CsvSpec {
                delimiter,
                decimal,
                header,
                columns: self.columns,
                layout,
                timestamp_column: self.timestamp_column,
                device_column: self.device_column,
                tag_column: self.tag_column.unwrap_or_else(|| "tag".into()),
                value_column: self.value_column.unwrap_or_else(|| "value".into()),
                unit_column: self.unit_column,
                quality_column: self.quality_column,
                skip_columns: self.skip_columns,
            },
            json: JsonSpec {
                timestamp: self.timestamp_path.map(|p| to_pointer(p.get_ref())),
                device: self.device_path.map(|p| to_pointer(p.get_ref())),
            },
            tags,
        };
        // `format = "csv"` with only `timestamp_path` (or JSON with only
        // `timestamp_column`) cannot give a timestamp.
        if let Some(f) = format
            && let Some(w) = spec.timestamp_warning(f)
        {
            r.warn(item_span, spec.timestamp_key_missing(f).unwrap_or("timestamp"), w);
        }
        spec
    }

    /// `timestamp_format`, `timezone`, `epoch_unit`, `ambiguous_time`, and
    /// the warning for local times that no zone will resolve.
    fn timestamps(&self, r: &mut Reader<'_, '_>, item_span: &std::ops::Range<usize>) -> TsSpec {
        let epoch_unit = match &self.epoch_unit {
            None => EpochUnit::Auto,
            Some(u) => EpochUnit::parse(u.get_ref()).unwrap_or_else(|e| {
                r.error(u.span(), "epoch_unit", e);
                EpochUnit::Auto
            }),
        };
        let format = match &self.timestamp_format {
            None => TsFormat::Auto,
            Some(f) => match f.get_ref().as_str() {
                "auto" => TsFormat::Auto,
                "rfc3339" | "iso8601" => TsFormat::Rfc3339,
                "epoch" => TsFormat::Epoch,
                // The parser's own rules, on a known instant (offsets included).
                other => match icu_to_strftime(other).and_then(|sf| check_strftime(&sf).map(|()| sf)) {
                    Ok(sf) => TsFormat::Strftime(sf),
                    Err(e) => {
                        r.error(f.span(), "timestamp_format", e);
                        TsFormat::Strftime(other.to_string())
                    }
                },
            },
        };
        let timezone = self.timezone.as_ref().and_then(|z| match z.get_ref().parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let m = format!("unknown time zone {:?}; use an IANA name such as \"Europe/Paris\" or \"UTC\"", z.get_ref());
                r.error(z.span(), "timezone", m);
                None
            }
        });
        let ambiguous = r.choice(
            &self.ambiguous_time,
            "ambiguous_time",
            &[("earlier", Ambiguous::Earlier), ("later", Ambiguous::Later)],
            Ambiguous::Earlier,
        );
        // Local times without a zone are rejected record by record: say so at load.
        let has_ts = self.timestamp_column.is_some() || self.timestamp_path.is_some();
        let offset_in_format = match &format {
            TsFormat::Strftime(f) => ["%z", "%:z", "%#z", "%+", "%s"].iter().any(|o| f.contains(o)),
            TsFormat::Rfc3339 | TsFormat::Epoch => true,
            TsFormat::Auto => false,
        };
        if has_ts && timezone.is_none() && !offset_in_format && self.timezone.is_none() {
            let span = self.timestamp_format.as_ref().map_or(item_span.clone(), |s| s.span());
            r.warn(
                span,
                "timezone",
                "no timezone: timestamps without a UTC offset (such as \"2020-03-09 10:14:33\") will be quarantined; \
                 set timezone = \"Europe/Paris\" (the IANA zone the data was recorded in) if the data has local times, \
                 or timestamp_format = \"rfc3339\" or \"epoch\" if it never does",
            );
        }
        TsSpec { format, timezone, epoch_unit, ambiguous }
    }

    /// `delimiter` (`None`: detected) and `decimal`.
    fn separators(&self, r: &mut Reader<'_, '_>, item_span: &std::ops::Range<usize>) -> (Option<u8>, char) {
        let delimiter = match &self.delimiter {
            None => None,
            Some(s) => match s.get_ref().as_str() {
                "auto" => None,
                "\\t" | "tab" | "\t" => Some(b'\t'),
                x if x.len() == 1 && x.is_ascii() => Some(x.as_bytes()[0]),
                x => {
                    r.error(s.span(), "delimiter", format!("delimiter {x:?} must be one ASCII character, \"tab\" or \"auto\""));
                    None
                }
            },
        };
        let decimal = match &self.decimal {
            None => '.',
            Some(s) if s.get_ref() == "." => '.',
            Some(s) if s.get_ref() == "," => ',',
            Some(s) => {
                r.error(s.span(), "decimal", format!("decimal separator {:?} must be \".\" or \",\"", s.get_ref()));
                '.'
            }
        };
        if decimal == ',' && delimiter == Some(b',') {
            let span = self.decimal.as_ref().map_or(item_span.clone(), |s| s.span());
            r.error(span, "decimal", "decimal \",\" needs another delimiter (\";\" or tab)");
        }
        (delimiter, decimal)
    }
}

/// The `[[source.tag]]` rules: names valid and unique, scale and offset finite.
fn tag_rules(r: &mut Reader<'_, '_>, rules: Vec<Spanned<TagRule>>) -> Vec<TagRule> {
    let mut tags: Vec<TagRule> = Vec::new();
    for t in rules {
        let span = t.span();
        let mut rule = t.into_inner();
        if let Err(e) = crate::names::check(&rule.name) {
            r.error(span.clone(), "tag", e);
        }
        if tags.iter().any(|o| o.name == rule.name) {
            r.error(span.clone(), &format!("tag {:?}", rule.name), "duplicated tag name: each [[source.tag]] needs its own name");
        }
        if !rule.scale.is_finite() || rule.scale == 0.0 || !rule.offset.is_finite() {
            r.error(span.clone(), &format!("tag {:?} / scale", rule.name), "scale must be finite and non-zero, offset finite");
        }
        rule.path = rule.path.as_deref().map(to_pointer);
        tags.push(rule);
    }
    tags
}
