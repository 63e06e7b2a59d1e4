//! Timestamps in text and numbers (pure): RFC 3339 / ISO 8601 with an offset,
//! naive local times in a configured IANA zone (with the DST gap and overlap
//! handled explicitly), epoch seconds to nanoseconds (configured or inferred),
//! and strftime formats. Field cases B28 and B31.
//!
//! Inference of the epoch unit from the magnitude of the number:
//! below 1e11 → seconds (until year 5138), below 1e14 → milliseconds, below
//! 1e17 → microseconds, else nanoseconds. Every timestamp must fall in
//! 1990-01-01..2100-01-01 UTC; outside it the record is rejected with a reason
//! (a configured unit that lands after year 3000 is called a unit mismatch).

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::Timestamp;

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
    /// RFC 3339 with offset, ISO 8601 naive forms (`2020-03-09 10:14:33`,
    /// `2020-03-09T10:14:33.5`) in `timezone`, or an epoch number.
    Auto,
    /// RFC 3339 / ISO 8601 with an offset or `Z` only.
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

/// Translates the common ICU/Java date pattern letters to a chrono strftime
/// format: `yyyy yy MM dd HH mm ss`, fractions of a second (`.SSS`: any number
/// of digits after the dot; `SSS`/`SSSSSS`/`SSSSSSSSS` without a dot: exactly
/// 3, 6 or 9 digits), zone offsets (`Z` = `+0100`, `XXX` = `+01:00`) and
/// quoted literals (`'T'`). A format containing `%` is returned unchanged.
///
/// Errors: a pattern letter relais does not translate (`MMM`, `a`, `E`…), or a
/// fraction without a dot whose width is not 3, 6 or 9, with the letter named.
pub fn icu_to_strftime(f: &str) -> Result<String, String> {
    if f.contains('%') {
        return Ok(f.to_string());
    }
    let mut out = String::new();
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'literal'; '' is a quote, inside or outside a literal.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (None, _) => return Err(format!("unclosed quote in timestamp format {f:?}")),
                    (Some('\''), Some('\'')) => {
                        out.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(&x), _) => {
                        out.push(x);
                        i += 1;
                    }
                }
            }
            continue;
        }
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let tok = match (c, n) {
            ('y', 4) => "%Y",
            ('y', 2) => "%y",
            // One letter: one or two digits (chrono reads either for these).
            ('M', 1 | 2) => "%m",
            ('d', 1 | 2) => "%d",
            ('H', 1 | 2) => "%H",
            ('m', 1 | 2) => "%M",
            ('s', 1 | 2) => "%S",
            ('S', _) if out.ends_with('.') => {
                out.pop();
                "%.f"
            }
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('S', _) => return Err(format!("fraction of a second {:?} without a dot must have 3, 6 or 9 letters", "S".repeat(n))),
            ('Z', 1) => "%z",
            ('X', 1 | 2) => "%z",
            ('X', 3) => "%:z",
            // `T` unquoted is common in hand-written ISO patterns: a literal.
            (c, _) if c.is_ascii_alphabetic() && c != 'T' => {
                return Err(format!(
                    "pattern letters {:?} are not supported; use yyyy, MM, dd, HH, mm, ss, SSS, Z, XXX, quoted literals, or a strftime format with %",
                    c.to_string().repeat(n)
                ));
            }
            _ => {
                out.extend(std::iter::repeat_n(c, n));
                i += n;
                continue;
            }
        };
        out.push_str(tok);
        i += n;
    }
    Ok(out)
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

    fn rfc3339(&self, text: &str) -> Option<Result<ParsedTs, String>> {
        let dt = DateTime::parse_from_rfc3339(text).ok().or_else(|| DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1)).ok())?;
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

    /// `SSS` is milliseconds, not nanoseconds (it was translated to `%f`,
    /// which reads "123" as 123 ns).
    #[test]
    fn icu_fractions_zones_and_literals() {
        let at = |fmt: &str, text: &str| {
            let spec =
                TsSpec { format: TsFormat::Strftime(icu_to_strftime(fmt).unwrap()), timezone: Some(chrono_tz::UTC), ..Default::default() };
            utc(spec.parse_text(text))
        };
        assert_eq!(at("dd.MM.yyyy HH:mm:ss.SSS", "05.01.2026 10:00:00.123"), "2026-01-05T10:00:00.123Z");
        assert_eq!(at("dd.MM.yyyy HH:mm:ss.SSS", "05.01.2026 10:00:00.5"), "2026-01-05T10:00:00.500Z");
        assert_eq!(at("yyyyMMddHHmmssSSS", "20260105100000042"), "2026-01-05T10:00:00.042Z");
        assert_eq!(at("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2026-01-05T11:00:00.250+01:00"), "2026-01-05T10:00:00.250Z");
        assert_eq!(at("yyyy-MM-dd HH:mm:ssZ", "2026-01-05 11:00:00+0100"), "2026-01-05T10:00:00Z");
        assert_eq!(icu_to_strftime("HH 'o''clock'").unwrap(), "%H o'clock");
        assert_eq!(at("d.M.yyyy H:mm", "5.1.2026 9:07"), "2026-01-05T09:07:00Z");
        assert_eq!(at("yyyy-MM-ddTHH:mm:ss", "2026-01-05T09:07:00"), "2026-01-05T09:07:00Z");
        assert!(icu_to_strftime("dd MMM yyyy").unwrap_err().contains("\"MMM\""));
        assert!(icu_to_strftime("ssSS").unwrap_err().contains("3, 6 or 9"));
        assert!(icu_to_strftime("HH 'x").unwrap_err().contains("unclosed quote"));
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
}
