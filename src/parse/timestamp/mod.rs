//! Timestamps in text and numbers (pure): RFC 3339 / ISO 8601 with an offset,
//! naive local times in a configured IANA zone (with the DST gap and overlap
//! handled explicitly), epoch seconds to nanoseconds (configured or inferred),
//! and strftime formats. Field cases B28 and B31. ICU/Java pattern letters
//! and the load-time check of a format are in `pattern.rs`.
//!
//! Offsets: `auto` and `rfc3339` read `Z`, `+01:00` and the ISO 8601 forms
//! `+0100` and `+01`; a strftime format reads them with `%z`, `%:z` (both
//! `+0100` or `+01:00`) or `%#z` (any of the four).
//!
//! Inference of the epoch unit from the magnitude of the number:
//! below 1e11 → seconds (until year 5138), below 1e14 → milliseconds, below
//! 1e17 → microseconds, else nanoseconds. Every timestamp must fall in
//! 1990-01-01..2100-01-01 UTC; outside it the record is rejected with a reason
//! (a configured unit that lands after year 3000 is called a unit mismatch).

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::Timestamp;

mod pattern;
pub use pattern::{check_strftime, icu_to_strftime};

/// Epoch units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    /// Inferred from the magnitude (see the module docs).
    Auto,
    /// Seconds (fractions allowed).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl EpochUnit {
    fn name(self) -> &'static str {
        match self {
            EpochUnit::Auto => "auto",
            EpochUnit::S => "s",
            EpochUnit::Ms => "ms",
            EpochUnit::Us => "us",
            EpochUnit::Ns => "ns",
        }
    }

    fn nanos(self) -> f64 {
        match self {
            EpochUnit::Auto | EpochUnit::S => 1e9,
            EpochUnit::Ms => 1e6,
            EpochUnit::Us => 1e3,
            EpochUnit::Ns => 1.0,
        }
    }

    /// Parses `s`, `ms`, `us` (or `µs`), `ns`, `auto`.
    pub fn parse(s: &str) -> Result<EpochUnit, String> {
        Ok(match s {
            "auto" => EpochUnit::Auto,
            "s" => EpochUnit::S,
            "ms" => EpochUnit::Ms,
            "us" | "µs" => EpochUnit::Us,
            "ns" => EpochUnit::Ns,
            _ => return Err(format!("unknown epoch unit {s:?}; expected s, ms, us, ns or auto")),
        })
    }
}

/// Which instant a repeated local hour (autumn DST change) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    /// The first occurrence (still in summer time).
    Earlier,
    /// The second occurrence.
    Later,
}

/// How a text timestamp is written.
#[derive(Debug, Clone, PartialEq)]
pub enum TsFormat {
    /// RFC 3339 or ISO 8601 with an offset (`Z`, `+01:00`, `+0100`, `+01`), ISO 8601 naive forms (`2020-03-09 10:14:33`,
    /// `2020-03-09T10:14:33.5`) in `timezone`, or an epoch number.
    Auto,
    /// RFC 3339 / ISO 8601 with an offset (`Z`, `+01:00`, `+0100`, `+01`) only.
    Rfc3339,
    /// An epoch number.
    Epoch,
    /// A strftime format (chrono syntax), e.g. `%d.%m.%Y %H:%M:%S`.
    Strftime(String),
}

/// Everything needed to read one source's timestamps.
#[derive(Debug, Clone)]
pub struct TsSpec {
    /// Text format.
    pub format: TsFormat,
    /// Zone of naive local times.
    pub timezone: Option<Tz>,
    /// Unit of epoch numbers.
    pub epoch_unit: EpochUnit,
    /// Policy for repeated local hours.
    pub ambiguous: Ambiguous,
}

impl Default for TsSpec {
    fn default() -> Self {
        TsSpec { format: TsFormat::Auto, timezone: None, epoch_unit: EpochUnit::Auto, ambiguous: Ambiguous::Earlier }
    }
}

/// A parsed timestamp; `uncertain` names why the instant is not certain (an
/// ambiguous local time resolved by policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTs {
    /// The instant, UTC.
    pub ts: Timestamp,
    /// Set when the instant was chosen by policy.
    pub uncertain: Option<&'static str>,
}

/// ISO 8601 date-times with an offset that RFC 3339 does not allow: `+0100`
/// and `+01` (chrono's `%#z` also reads `+01:00` and `Z`).
const ISO_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"];

/// Earliest accepted instant: 1990-01-01T00:00:00Z.
pub const MIN_NS: i64 = 631_152_000_000_000_000;
/// First rejected instant: 2100-01-01T00:00:00Z.
pub const MAX_NS: i64 = 4_102_444_800_000_000_000;
const YEAR_3000_NS: f64 = 32_503_680_000e9;

fn in_range(ns: i64, what: &str) -> Result<Timestamp, String> {
    if (MIN_NS..MAX_NS).contains(&ns) {
        Ok(Timestamp(ns))
    } else {
        Err(format!("timestamp {what} is {}, outside 1990..2100", crate::model::format_rfc3339(Timestamp(ns))))
    }
}

impl TsSpec {
    /// The format as configured, for `relais check` (`auto`, `rfc3339`,
    /// `epoch`, or the strftime text).
    pub fn settings_format(&self) -> String {
        match &self.format {
            TsFormat::Auto => "auto".to_string(),
            TsFormat::Rfc3339 => "rfc3339".to_string(),
            TsFormat::Epoch => "epoch".to_string(),
            TsFormat::Strftime(f) => format!("{f:?}"),
        }
    }

    /// A stable text of every setting that changes how timestamps are read
    /// (part of a file import's identity).
    pub fn settings(&self) -> String {
        let format = match &self.format {
            TsFormat::Auto => "auto".to_string(),
            TsFormat::Rfc3339 => "rfc3339".to_string(),
            TsFormat::Epoch => "epoch".to_string(),
            TsFormat::Strftime(f) => format!("strftime:{f}"),
        };
        let zone = self.timezone.map_or("", |z| z.name());
        let ambiguous = if self.ambiguous == Ambiguous::Earlier { "earlier" } else { "later" };
        format!("format={format:?} timezone={zone:?} epoch_unit={} ambiguous={ambiguous}", self.epoch_unit.name())
    }

    fn localize(&self, naive: NaiveDateTime, text: &str) -> Result<ParsedTs, String> {
        let Some(tz) = self.timezone else {
            return Err(format!("timestamp {text:?} has no UTC offset; set `timezone` (an IANA name such as \"Europe/Paris\")"));
        };
        let (dt, uncertain) = match tz.from_local_datetime(&naive) {
            LocalResult::Single(dt) => (dt, None),
            LocalResult::Ambiguous(a, b) => {
                let pick = if self.ambiguous == Ambiguous::Earlier { a.min(b) } else { a.max(b) };
                (pick, Some("ambiguous_local_time"))
            }
            LocalResult::None => {
                return Err(format!("local time {text:?} does not exist in {tz} (skipped by the DST change)"));
            }
        };
        let ns = dt.with_timezone(&Utc).timestamp_nanos_opt().ok_or_else(|| format!("timestamp {text:?} out of range"))?;
        Ok(ParsedTs { ts: in_range(ns, &format!("{text:?}"))?, uncertain })
    }

    /// RFC 3339, and the ISO 8601 offsets it leaves out (`+0100`, `+01`),
    /// with `T` or a space between date and time.
    fn rfc3339(&self, text: &str) -> Option<Result<ParsedTs, String>> {
        let dt = DateTime::parse_from_rfc3339(text)
            .ok()
            .or_else(|| DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1)).ok())
            .or_else(|| ISO_OFFSET.iter().find_map(|f| DateTime::parse_from_str(text, f).ok()))?;
        Some(
            dt.with_timezone(&Utc)
                .timestamp_nanos_opt()
                .ok_or_else(|| format!("timestamp {text:?} out of range"))
                .and_then(|ns| in_range(ns, &format!("{text:?}")))
                .map(|ts| ParsedTs { ts, uncertain: None }),
        )
    }

    /// Reads a timestamp written as text.
    pub fn parse_text(&self, text: &str) -> Result<ParsedTs, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("timestamp is empty".into());
        }
        match &self.format {
            TsFormat::Rfc3339 => {
                self.rfc3339(t).unwrap_or_else(|| Err(format!("timestamp {t:?} is not RFC 3339 (e.g. 2026-11-29T10:14:33.120Z)")))
            }
            TsFormat::Epoch => match t.parse::<f64>() {
                Ok(n) => self.parse_number(n),
                Err(_) => Err(format!("timestamp {t:?} is not an epoch number")),
            },
            TsFormat::Strftime(f) => {
                if let Ok(dt) = DateTime::parse_from_str(t, f) {
                    let ns = dt.with_timezone(&Utc).timestamp_nanos_opt().ok_or_else(|| format!("timestamp {t:?} out of range"))?;
                    return Ok(ParsedTs { ts: in_range(ns, &format!("{t:?}"))?, uncertain: None });
                }
                match NaiveDateTime::parse_from_str(t, f) {
                    Ok(n) => self.localize(n, t),
                    Err(e) => Err(format!("timestamp {t:?} does not match format {f:?} ({e})")),
                }
            }
            TsFormat::Auto => {
                if let Some(r) = self.rfc3339(t) {
                    return r;
                }
                for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S%.f"] {
                    if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
                        return self.localize(n, t);
                    }
                }
                if let Ok(n) = t.parse::<f64>() {
                    return self.parse_number(n);
                }
                Err(format!(
                    "timestamp {t:?} is neither RFC 3339, ISO 8601 nor an epoch number; set `timestamp_format` (e.g. \"dd.MM.yyyy HH:mm:ss\" or \"%d.%m.%Y %H:%M:%S\")"
                ))
            }
        }
    }

    /// Reads an epoch number (JSON numbers, numeric cells).
    pub fn parse_number(&self, n: f64) -> Result<ParsedTs, String> {
        if !n.is_finite() {
            return Err(format!("timestamp {n} is not finite"));
        }
        let unit = match self.epoch_unit {
            EpochUnit::Auto => {
                let a = n.abs();
                if a < 1e11 {
                    EpochUnit::S
                } else if a < 1e14 {
                    EpochUnit::Ms
                } else if a < 1e17 {
                    EpochUnit::Us
                } else {
                    EpochUnit::Ns
                }
            }
            u => u,
        };
        let ns = n * unit.nanos();
        if self.epoch_unit != EpochUnit::Auto && ns >= YEAR_3000_NS {
            return Err(format!("timestamp unit mismatch: {n} read as epoch {} lands after year 3000; check `epoch_unit`", unit.name()));
        }
        if !(i64::MIN as f64..i64::MAX as f64).contains(&ns) {
            return Err(format!("timestamp {n} ({}) is out of range", unit.name()));
        }
        Ok(ParsedTs { ts: in_range(ns.round() as i64, &format!("{n} ({})", unit.name()))?, uncertain: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format_rfc3339;

    fn utc(p: Result<ParsedTs, String>) -> String {
        format_rfc3339(p.unwrap().ts)
    }

    #[test]
    fn b28_european_local_time() {
        let spec = TsSpec {
            format: TsFormat::Strftime(icu_to_strftime("dd.MM.yyyy HH:mm:ss").unwrap()),
            timezone: Some("Europe/Warsaw".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(icu_to_strftime("dd.MM.yyyy HH:mm:ss").unwrap(), "%d.%m.%Y %H:%M:%S");
        assert_eq!(utc(spec.parse_text("01.11.2017 00:00:02")), "2017-10-31T23:00:02Z");
    }

    #[test]
    fn b31_iso_and_epochs() {
        let spec = TsSpec::default();
        assert_eq!(utc(spec.parse_text("2025-10-20T11:53:37.637Z")), "2025-10-20T11:53:37.637Z");
        assert_eq!(utc(spec.parse_text("2021-09-14T06:32:07.507569+00:00")), "2021-09-14T06:32:07.507569Z");
        let ms = TsSpec { epoch_unit: EpochUnit::Ms, ..Default::default() };
        assert_eq!(utc(ms.parse_number(1669035610000.0)), "2022-11-21T13:00:10Z");
        let s = TsSpec { epoch_unit: EpochUnit::S, ..Default::default() };
        assert_eq!(utc(s.parse_number(1669035610.0)), "2022-11-21T13:00:10Z");
        let e = s.parse_number(1669035610000.0).unwrap_err();
        assert!(e.contains("unit mismatch"), "{e}");
        // Inferred units.
        assert_eq!(utc(spec.parse_number(1669035610.0)), "2022-11-21T13:00:10Z");
        assert_eq!(utc(spec.parse_number(1669035610000.0)), "2022-11-21T13:00:10Z");
        assert_eq!(utc(spec.parse_number(1669035610000000.0)), "2022-11-21T13:00:10Z");
        assert_eq!(utc(spec.parse_number(1669035610000000000.0)), "2022-11-21T13:00:10Z");
    }

    #[test]
    fn range_and_dst() {
        let spec = TsSpec::default();
        assert!(spec.parse_text("1989-12-31T23:59:59Z").unwrap_err().contains("outside 1990..2100"));
        assert!(spec.parse_text("2100-01-01T00:00:00Z").is_err());
        let paris = TsSpec { timezone: Some("Europe/Paris".parse().unwrap()), ..Default::default() };
        // Spring: 02:30 does not exist on 2026-03-29.
        assert!(paris.parse_text("2026-03-29 02:30:00").unwrap_err().contains("does not exist"));
        // Autumn: 02:30 happens twice on 2026-10-25.
        let early = paris.parse_text("2026-10-25 02:30:00").unwrap();
        assert_eq!(format_rfc3339(early.ts), "2026-10-25T00:30:00Z");
        assert_eq!(early.uncertain, Some("ambiguous_local_time"));
        let late = TsSpec { ambiguous: Ambiguous::Later, ..paris.clone() }.parse_text("2026-10-25 02:30:00").unwrap();
        assert_eq!(format_rfc3339(late.ts), "2026-10-25T01:30:00Z");
        assert!(TsSpec::default().parse_text("2026-10-25 02:30:00").unwrap_err().contains("timezone"));
        assert_eq!(utc(paris.parse_text("2020-03-09 10:14:33")), "2020-03-09T09:14:33Z");
    }

    /// Issue 9 item 17: `auto` and `rfc3339` read the ISO 8601 offsets
    /// without a colon (`+0100` was "neither RFC 3339, ISO 8601 nor an epoch").
    #[test]
    fn auto_and_rfc3339_read_offsets_without_a_colon() {
        for spec in [TsSpec::default(), TsSpec { format: TsFormat::Rfc3339, ..Default::default() }] {
            assert_eq!(utc(spec.parse_text("2026-01-05T11:00:00+0100")), "2026-01-05T10:00:00Z");
            assert_eq!(utc(spec.parse_text("2026-01-05 11:00:00.25+0100")), "2026-01-05T10:00:00.250Z");
            assert_eq!(utc(spec.parse_text("2026-01-05T04:00:00-06")), "2026-01-05T10:00:00Z");
            assert_eq!(utc(spec.parse_text("2026-01-05T11:00:00+01:00")), "2026-01-05T10:00:00Z");
            assert!(spec.parse_text("2026-01-05T11:00:00+1").is_err());
        }
    }
}
