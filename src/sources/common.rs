//! What every `[[source]]` has: a name, a device name for its samples, and
//! how its input is parsed. Each source type adds its own keys.

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, de_item, reject_unknown_keys};
use crate::parse::ParseSpec;
use crate::parse::spec::{PARSE_KEYS, RawParse};

/// The common part of a `[[source]]`.
#[derive(Debug, Clone)]
pub struct SourceCommon {
    /// Source name: used in quarantine records, HTTP routes and cursors.
    pub name: String,
    /// Device name of the samples (default: the source name), unless the
    /// input names one (`device_column`, `device_path`, MQTT topic level).
    pub device: String,
    /// Parsing.
    pub parse: ParseSpec,
}

#[derive(Deserialize)]
struct RawCommon {
    name: Spanned<String>,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    ty: String,
    device: Option<Spanned<String>>,
}

/// Checks the keys of a source item (common + parse + `type_keys`), then
/// reads the common part and the parse part. Returns them with the item,
/// for the type-specific keys.
pub fn parse_common<'i>(mut item: Item<'i>, diag: &mut Diag<'_>, key: &str, type_keys: &[&str]) -> Option<(SourceCommon, Item<'i>)> {
    let mut known: Vec<&str> = vec!["name", "type", "device"];
    known.extend_from_slice(PARSE_KEYS);
    known.extend_from_slice(type_keys);
    reject_unknown_keys(&mut item, &known, diag, key);
    let span = item.span();
    let raw: RawCommon = de_item(item.clone(), diag, key)?;
    let name = raw.name.get_ref().clone();
    let key = format!("source {name:?}");
    if let Err(e) = crate::names::check(&name) {
        diag.error(raw.name.span(), &format!("{key} / name"), e);
    }
    let device = match &raw.device {
        Some(d) => {
            if let Err(e) = crate::names::check(d.get_ref()) {
                diag.error(d.span(), &format!("{key} / device"), e);
            }
            d.get_ref().clone()
        }
        None => name.clone(),
    };
    let rp: RawParse = de_item(item.clone(), diag, &key)?;
    let parse = rp.validate(diag, &key, span);
    Some((SourceCommon { name, device, parse }, item))
}

/// What `relais check` prints for a `[[source]]`: `source NAME (WHAT; format
/// …, policy …, device …)` and how its records are read (CSV delimiter,
/// decimal, layout; where timestamps come from), so a user can confirm it
/// before importing. `topic_level`: the MQTT topic level naming the device
/// (`mqtt-in` with `device_level`).
pub fn describe(c: &SourceCommon, what: &str, topic_level: Option<usize>) -> String {
    use crate::parse::spec::Format;
    let fmt = c.parse.format.map_or("by extension / Content-Type", |f| match f {
        Format::Csv => "csv",
        Format::Json => "json",
        Format::JsonLines => "jsonl",
    });
    let policy = if c.parse.policy == crate::parse::Policy::Strict { "strict" } else { "lenient" };
    let mut s = format!("source {} ({what}; format {fmt}, policy {policy}, {})\n", c.name, device_from(c, topic_level));
    let p = &c.parse;
    let mut how = Vec::new();
    if p.format != Some(Format::Json) && p.format != Some(Format::JsonLines) {
        let delim = match p.csv.delimiter {
            None => "auto (from the header)".to_string(),
            Some(b'\t') => "tab".to_string(),
            Some(d) => format!("{:?}", d as char),
        };
        how.push(format!("csv delimiter {delim}, decimal {:?}, layout {}", p.csv.decimal, format!("{:?}", p.csv.layout).to_lowercase()));
    }
    let ts_from = p
        .csv
        .timestamp_column
        .as_ref()
        .map(|c| format!("column {c:?}"))
        .or_else(|| p.json.timestamp.as_ref().map(|t| format!("path {t:?}")));
    match ts_from {
        None => how.push("timestamp: the receive time".to_string()),
        Some(from) => {
            let zone = p.ts.timezone.map_or("none (times without an offset are quarantined)".to_string(), |z| z.name().to_string());
            how.push(format!("timestamp {from}, format {}, timezone {zone}", p.ts.settings_format()));
        }
    }
    s.push_str(&format!("  {}\n", how.join("; ")));
    s
}

/// Where the samples of a source get their device name: the topic level,
/// the CSV column or the JSON path when configured, with the source's
/// `device` as default.
fn device_from(c: &SourceCommon, topic_level: Option<usize>) -> String {
    let from = match (topic_level, &c.parse.csv.device_column, &c.parse.json.device) {
        (Some(l), _, _) => Some(format!("topic level {l}")),
        (None, Some(col), Some(path)) => Some(format!("CSV column {col:?} or JSON {path}")),
        (None, Some(col), None) => Some(format!("column {col:?}")),
        (None, None, Some(path)) => Some(format!("JSON {path}")),
        (None, None, None) => None,
    };
    match from {
        Some(f) => format!("device from {f} (default {})", c.device),
        None => format!("device {}", c.device),
    }
}
