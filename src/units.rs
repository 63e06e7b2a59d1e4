//! Durations (`"500ms"`, `"2s"`, `"7d"`) and sizes (`"512MiB"`, `"1GB"`) as
//! written in relais configuration files.

use std::time::Duration;

/// Parses a human duration: a number and a unit (`ns`, `us`, `ms`, `s`, `m`,
/// `min`, `h`, `d`, `w`), several parts allowed (`"1h 30m"`). Parsing is done
/// by the `humantime` crate.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {s:?} ({e}); write a number and a unit, e.g. \"500ms\", \"2s\", \"5m\", \"7d\""))
}

/// Formats a duration the way configs write it, in whole units that
/// [`parse_duration`] reads back: `500ms`, `1s`, `1m 30s`, `24h` → `1d`, `7d`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut ms = d.as_millis();
    let mut parts = Vec::new();
    for (unit, len) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= len {
            parts.push(format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    if parts.is_empty() {
        return format!("{}us", d.as_micros());
    }
    parts.join(" ")
}

/// Parses a size: a plain number of bytes, or a number with a unit: `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024). Case-insensitive for the letters; fractional values (`"1.5GiB"`) allowed.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("invalid size {s:?}; write a number and a unit, e.g. \"512MiB\", \"1GiB\", \"10GB\""))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!("unknown size unit {other:?} in {s:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"));
        }
    };
    let v = num * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(v as u64)
}

/// Formats bytes with a binary unit: `1.0 GiB`, `512.0 MiB`, `300 B`.
pub fn format_size(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", U[i]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("2 parsecs").unwrap_err().contains("\"2 parsecs\""));
        assert!(parse_duration("10").is_err());
        // Formatted as written, and read back.
        for (d, text) in [
            (Duration::from_secs(7 * 86400), "7d"),
            (Duration::from_secs(86400), "1d"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(60 * 86400), "60d"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert!(parse_size("1 GiBi").unwrap_err().contains("unknown size unit"));
        assert_eq!(format_size(1 << 30), "1.0 GiB");
    }
}
