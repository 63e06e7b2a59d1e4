//! Timestamp formats as written in a configuration: ICU/Java pattern
//! letters translated to chrono strftime, and the load-time check that
//! accepts exactly the formats the parser can read a timestamp with.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDate};

use super::{TsFormat, TsSpec};

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
            // Offsets: chrono's permissive `%#z` reads `+01:00`, `+0100`, `+01`
            // and `Z` (ICU's `X` forms read `Z` too; a `Z` in the data is UTC
            // whatever letter was written, so no reading is ever wrong).
            ('Z', 1..=3) | ('X', 1..=3) => "%#z",
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

/// Checks a strftime format (after [`icu_to_strftime`]) when the
/// configuration loads, by the parser's own rules: chrono must know every
/// specifier (else parsing fails on every line with "bad or unsupported
/// format"), and a timestamp written in the format must read back through
/// [`TsSpec::parse_text`] (a format without a date or without hours can
/// never give an instant). Offsets (`%z`, `%:z`, `%#z`), epoch seconds
/// (`%s`) and zone names are accepted as the parser accepts them.
///
/// Errors: the reason, naming the format.
pub fn check_strftime(f: &str) -> Result<(), String> {
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "invalid strftime format {f:?}: unknown % specifier (see chrono's strftime table; offsets are %z, %:z or %#z)"
        ));
    }
    // Write a known instant in the format and read it back as a line would be.
    // `%#z` is for parsing only: it is written like `%:z`.
    let written = f.replace("%#z", "%:z");
    let at: DateTime<FixedOffset> = NaiveDate::from_ymd_opt(2021, 9, 14)
        .and_then(|d| d.and_hms_micro_opt(6, 32, 7, 507_569))
        .and_then(|t| t.and_local_timezone(FixedOffset::east_opt(3600)?).single())
        .ok_or("probe instant")?;
    let mut probe = String::new();
    if std::fmt::Write::write_fmt(&mut probe, format_args!("{}", at.format(&written))).is_err() {
        return Err(format!("invalid strftime format {f:?}"));
    }
    let spec = TsSpec { format: TsFormat::Strftime(f.to_string()), timezone: Some(chrono_tz::UTC), ..Default::default() };
    spec.parse_text(&probe)
        .map(|_| ())
        .map_err(|e| format!("timestamp format {f:?} cannot be read back ({e}); it needs at least a date, hours and minutes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format_rfc3339;

    fn utc(p: Result<super::super::ParsedTs, String>) -> String {
        format_rfc3339(p.unwrap().ts)
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

    /// Issue 9 item 17: every offset form the parser reads passes the
    /// load-time check (they were all refused as "invalid strftime format"),
    /// and reads the instant it names; what the parser cannot read is refused.
    #[test]
    fn the_load_check_accepts_exactly_what_the_parser_reads() {
        let at = |fmt: &str, text: &str| {
            let sf = icu_to_strftime(fmt).unwrap();
            check_strftime(&sf).unwrap_or_else(|e| panic!("{fmt}: {e}"));
            // No timezone: an offset-less reading would be an error, not a guess.
            utc(TsSpec { format: TsFormat::Strftime(sf), ..Default::default() }.parse_text(text))
        };
        for text in ["2026-01-05T11:00:00+0100", "2026-01-05T11:00:00+01:00", "2026-01-05T11:00:00+01"] {
            assert_eq!(at("yyyy-MM-dd'T'HH:mm:ssZ", text), "2026-01-05T10:00:00Z", "{text}");
            assert_eq!(at("yyyy-MM-dd'T'HH:mm:ssXXX", text), "2026-01-05T10:00:00Z", "{text}");
            assert_eq!(at("%Y-%m-%dT%H:%M:%S%#z", text), "2026-01-05T10:00:00Z", "{text}");
        }
        assert_eq!(at("yyyy-MM-dd'T'HH:mm:ssXXX", "2026-01-05T10:00:00Z"), "2026-01-05T10:00:00Z");
        assert_eq!(at("yyyy-MM-dd'T'HH:mm:ss.SSSX", "2026-01-05T04:00:00.5-06"), "2026-01-05T10:00:00.500Z");
        assert_eq!(at("%Y-%m-%d %H:%M:%S%z", "2026-01-05 11:00:00+0100"), "2026-01-05T10:00:00Z");
        assert_eq!(at("%Y-%m-%d %H:%M:%S%:z", "2026-01-05 11:00:00+01:00"), "2026-01-05T10:00:00Z");
        assert_eq!(at("%d/%m/%Y %H:%M:%S %z", "05/01/2026 05:00:00 -0500"), "2026-01-05T10:00:00Z");
        assert_eq!(at("%s", "1767607200"), "2026-01-05T10:00:00Z");
        assert!(check_strftime("%Y-%m-%d %H:%M:%S").is_ok());
        assert!(check_strftime("%Y-%m-%d %H:%M:%S %Q").unwrap_err().contains("invalid strftime format"));
        assert!(check_strftime("%Y-%m-%d").unwrap_err().contains("cannot be read back"));
        assert!(check_strftime("%H:%M:%S").unwrap_err().contains("cannot be read back"));
    }
}
