//! One audit record (a stored `write.audit` event made flat), the filters
//! of `relais audit`, and the renderings: table line, JSON object, CSV row.

use serde::Serialize;
use serde_json::Value as Json;

use crate::buffer::audit::StoredAudit;
use crate::model::{Timestamp, format_rfc3339};

/// One write attempt, from the details of its `write.audit` event
/// (`docs/payloads.md`, "Events"). A field missing from the stored details
/// reads as `null` / empty, never as a made-up value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// The event's `seq` in the buffer.
    pub seq: i64,
    /// When the write settled (RFC 3339, UTC).
    pub time: String,
    /// Who asked: `rule`, `command` or `cli` (`?` when not recorded).
    pub origin: String,
    /// The rule id or the command id (`null` for `cli`).
    pub origin_id: Option<String>,
    /// The MQTT client of a command, when known.
    pub client: Option<String>,
    /// Device name.
    pub device: String,
    /// Tag name.
    pub tag: String,
    /// The value read before writing (engineering units), `null` when not read.
    pub old: Json,
    /// The value asked for (engineering units; `null` for a number JSON
    /// cannot hold, such as `inf`).
    pub requested: Json,
    /// The value asked for as typed (`"inf"`, `"\"\""` for empty text), when recorded.
    pub requested_text: Option<String>,
    /// `ok`, `refused`, `failed` or `unknown` (`?` when not recorded).
    pub result: String,
    /// The value read after writing, `null` when not read.
    pub readback: Json,
    /// `code: detail`, `null` for a plain `ok`.
    pub reason: Option<String>,
    /// A dry run (checked, nothing written).
    pub dry_run: bool,
    /// When the write was asked for (RFC 3339).
    pub requested_ts: Option<String>,
    /// When the request went out to the device, `null` when it did not.
    pub sent_ts: Option<String>,
    /// When the outcome was settled (RFC 3339).
    pub settled_ts: Option<String>,
}

fn text(v: &Json) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl AuditRecord {
    /// From a stored event; device and tag come from the details, else
    /// from the event's `device/tag` source.
    pub fn from_stored(e: &StoredAudit) -> AuditRecord {
        let d = &e.details;
        let (src_dev, src_tag) = e.source.split_once('/').unwrap_or((&e.source, ""));
        let origin = &d["origin"];
        AuditRecord {
            seq: e.seq,
            time: format_rfc3339(Timestamp(e.ts)),
            origin: text(&origin["kind"]).unwrap_or_else(|| "?".into()),
            origin_id: text(&origin["id"]),
            client: text(&origin["client"]),
            device: text(&d["device"]).unwrap_or_else(|| src_dev.to_string()),
            tag: text(&d["tag"]).unwrap_or_else(|| src_tag.to_string()),
            old: d["old"].clone(),
            requested: d["requested_value"].clone(),
            requested_text: text(&d["requested_text"]),
            result: text(&d["result"]).unwrap_or_else(|| "?".into()),
            readback: d["readback"].clone(),
            reason: text(&d["reason"]),
            dry_run: d["dry_run"].as_bool().unwrap_or(false),
            requested_ts: text(&d["requested_ts"]),
            sent_ts: text(&d["sent_ts"]),
            settled_ts: text(&d["settled_ts"]),
        }
    }

    /// Who asked, for people: `rule high-temp`, `command c-17 (client scada)`, `cli`.
    pub fn who(&self) -> String {
        let id = self.origin_id.as_deref().unwrap_or("?");
        match (self.origin.as_str(), &self.client) {
            ("rule", _) => format!("rule {id}"),
            ("command", Some(c)) => format!("command {id} (client {c})"),
            ("command", None) => format!("command {id}"),
            (o, _) => o.to_string(),
        }
    }

    /// The cells of the `list` table: time, who, device/tag, old, requested,
    /// result, read-back, reason (`-` for an empty cell).
    pub fn cells(&self) -> [String; 8] {
        let result = if self.dry_run { format!("{} (dry run)", self.result) } else { self.result.clone() };
        [
            self.time.clone(),
            self.who(),
            format!("{}/{}", self.device, self.tag),
            cell(&self.old, "-"),
            self.requested_cell("-"),
            result,
            cell(&self.readback, "-"),
            self.reason.clone().unwrap_or_else(|| "-".into()),
        ]
    }

    /// The requested value: the number or boolean stored, else the text as
    /// typed (a non-finite number, a string; `""` for empty text), else `empty`.
    fn requested_cell(&self, empty: &str) -> String {
        match (&self.requested, &self.requested_text) {
            (Json::Null | Json::String(_), Some(t)) => t.clone(),
            (v, _) => cell(v, empty),
        }
    }

    /// The record as one CSV row, in the order of [`CSV_HEADER`]; values
    /// as text (a string as is, a number or bool as JSON, `null` empty).
    pub fn csv_row(&self) -> Vec<String> {
        let o = |s: &Option<String>| s.clone().unwrap_or_default();
        vec![
            self.seq.to_string(),
            self.time.clone(),
            self.origin.clone(),
            o(&self.origin_id),
            o(&self.client),
            self.device.clone(),
            self.tag.clone(),
            cell(&self.old, ""),
            self.requested_cell(""),
            self.result.clone(),
            cell(&self.readback, ""),
            o(&self.reason),
            self.dry_run.to_string(),
            o(&self.requested_ts),
            o(&self.sent_ts),
            o(&self.settled_ts),
        ]
    }
}

/// The CSV header of `relais audit export --format csv`.
pub const CSV_HEADER: [&str; 16] = [
    "seq",
    "time",
    "origin",
    "origin_id",
    "client",
    "device",
    "tag",
    "old",
    "requested",
    "result",
    "readback",
    "reason",
    "dry_run",
    "requested_ts",
    "sent_ts",
    "settled_ts",
];

/// A value as one cell: a string as is, `null` as `empty`, an integral
/// number without a fraction (`42.0` stored for a float tag reads `42`, like
/// an integer requested value: old, requested and read-back in one format),
/// others as JSON (`21.5`, `true`).
fn cell(v: &Json, empty: &str) -> String {
    match v {
        Json::Null => empty.to_string(),
        Json::String(s) => s.clone(),
        Json::Number(n) if n.is_f64() => match n.as_f64() {
            // Exact integers only: below 2^53 every integral f64 is one.
            Some(x) if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 => format!("{}", x as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Which records to show: all `Some` fields must match exactly.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Device name.
    pub device: Option<String>,
    /// Tag name.
    pub tag: Option<String>,
    /// `ok`, `refused`, `failed` or `unknown`.
    pub result: Option<String>,
}

impl Filter {
    /// True when `r` passes every filter given.
    pub fn accepts(&self, r: &AuditRecord) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.device, &r.device) && eq(&self.tag, &r.tag) && eq(&self.result, &r.result)
    }
}

/// `--since`: a duration back from `now` (`"90s"`, `"1h"`, `"7d"`) or an
/// RFC 3339 time (`"2026-12-06T10:00:00Z"`), as ns since the epoch.
///
/// Errors: a message naming the value and both accepted forms.
pub fn parse_since(s: &str, now: Timestamp) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return t.timestamp_nanos_opt().ok_or_else(|| format!("--since {s:?}: out of range (years 1678 to 2261)"));
    }
    match crate::units::parse_duration(s) {
        Ok(d) => Ok(now.as_nanos().saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "--since {s:?}: write a duration back from now (\"30m\", \"1h\", \"7d\") or an RFC 3339 time (\"2026-12-06T10:00:00Z\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(details: Json) -> StoredAudit {
        StoredAudit { seq: 7, ts: 1_000_000_000, source: "pump/sp".into(), details }
    }

    #[test]
    fn records_take_the_details_and_never_invent_missing_fields() {
        let r = AuditRecord::from_stored(&stored(serde_json::json!({
            "device": "pump", "tag": "sp", "origin": {"kind": "command", "id": "c1", "client": "scada"},
            "requested_value": 42, "old": 0, "readback": 42, "result": "ok", "reason": null, "dry_run": false,
        })));
        assert_eq!(r.who(), "command c1 (client scada)");
        assert_eq!(r.cells()[2..7], ["pump/sp", "0", "42", "ok", "42"]);
        assert_eq!(r.time, "1970-01-01T00:00:01Z");
        let bare = AuditRecord::from_stored(&stored(Json::Null));
        assert_eq!((bare.result.as_str(), bare.origin.as_str()), ("?", "?"));
        assert_eq!((bare.device.as_str(), bare.tag.as_str()), ("pump", "sp"));
        assert_eq!(bare.cells()[3..7], ["-", "-", "?", "-"]);
        assert!(!Filter { result: Some("ok".into()), ..Default::default() }.accepts(&bare));
    }

    /// An integral float (the old value and read-back of a float tag) reads
    /// like the integer requested: `42`, not `42.0`; fractions stay.
    #[test]
    fn old_requested_and_readback_share_one_number_format() {
        let r = AuditRecord::from_stored(&stored(serde_json::json!({
            "requested_value": 42, "old": 40.0, "readback": 42.0, "result": "ok",
        })));
        assert_eq!(r.cells()[3..7], ["40", "42", "ok", "42"]);
        assert_eq!(r.csv_row()[7..11], ["40", "42", "ok", "42"]);
        let r = AuditRecord::from_stored(&stored(serde_json::json!({
            "requested_value": 21.5, "old": -0.25, "readback": 21.5, "result": "ok",
        })));
        assert_eq!(r.cells()[3..7], ["-0.25", "21.5", "ok", "21.5"]);
        let r = AuditRecord::from_stored(&stored(serde_json::json!({"old": 1e300, "requested_value": -3.0, "readback": true})));
        assert_eq!(r.cells()[3..7], ["1e+300", "-3", "?", "true"]);
    }

    /// A refused non-finite number (JSON null) and empty text keep the text as typed.
    #[test]
    fn a_requested_value_json_cannot_hold_shows_as_typed() {
        let r =
            AuditRecord::from_stored(&stored(serde_json::json!({"requested_value": null, "requested_text": "inf", "result": "refused"})));
        assert_eq!((r.cells()[4].as_str(), r.csv_row()[8].as_str()), ("inf", "inf"));
        let r =
            AuditRecord::from_stored(&stored(serde_json::json!({"requested_value": "", "requested_text": "\"\"", "result": "refused"})));
        assert_eq!(r.cells()[4], "\"\"");
        let r = AuditRecord::from_stored(&stored(serde_json::json!({"requested_value": 42, "requested_text": "42"})));
        assert_eq!(r.cells()[4], "42");
    }

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let now = Timestamp(10_000_000_000_000);
        assert_eq!(parse_since("1h", now), Ok(10_000_000_000_000 - 3_600_000_000_000));
        assert_eq!(parse_since("1970-01-01T00:00:02Z", now), Ok(2_000_000_000));
        assert_eq!(parse_since("2026-12-06T10:00:00+01:00", now), Ok(1_796_547_600_000_000_000));
        assert!(parse_since("yesterday", now).unwrap_err().contains("RFC 3339"));
    }
}
