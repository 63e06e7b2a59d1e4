//! What a query asks, read from its text arguments (`relais query` and
//! `GET /api/query` share this): tag patterns, the window, the bucket width,
//! the dimensions kept and the output format. Pure; every error names the
//! argument and shows an example.

use std::time::Duration;

/// Most buckets one query may ask for (a wider window needs a larger `every`).
pub const MAX_BUCKETS: i64 = 100_000;

/// The dimensions kept besides time (the others are summed over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct By {
    /// One row per device (all its matching tags together).
    pub device: bool,
    /// One row per tag (`device` is then kept too).
    pub tag: bool,
    /// One row per quality (good, uncertain, bad).
    pub quality: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of rows.
    Json,
}

/// A validated query.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Patterns on `device/tag` (`*`, `?`, `[…]`; `*` also matches `/`).
    pub patterns: Vec<glob::Pattern>,
    /// Start of the first bucket (ns, inclusive): `from` rounded down to `every`.
    pub start: i64,
    /// End of the last bucket (ns, exclusive): `to` rounded up to `every`.
    pub end: i64,
    /// Bucket width (ns).
    pub every: i64,
    /// Dimensions kept.
    pub by: By,
}

impl Spec {
    /// Reads the arguments; `now` (ns) anchors relative times.
    pub fn parse(patterns: &[String], from: &str, to: Option<&str>, every: &str, by: Option<&str>, now: i64) -> Result<Spec, String> {
        let patterns = parse_patterns(patterns)?;
        let from_ns = parse_time(from, now, "from")?;
        let to_ns = match to {
            Some(t) => parse_time(t, now, "to")?,
            None => now,
        };
        if from_ns >= to_ns {
            return Err(format!("--from ({from}) must be before --to ({})", to.unwrap_or("now")));
        }
        let every = parse_every(every)?;
        let start = super::agg::bucket(from_ns, every);
        let end = super::agg::bucket(to_ns - 1, every).saturating_add(every);
        let n = (end - start) / every;
        if n > MAX_BUCKETS {
            return Err(format!(
                "--every {}: {n} buckets in this window (at most {MAX_BUCKETS}); choose a larger --every or a shorter window",
                crate::units::format_duration(Duration::from_nanos(every as u64))
            ));
        }
        let by = match by {
            Some(b) => parse_by(b)?,
            None => By { tag: true, ..By::default() },
        };
        Ok(Spec { patterns, start, end, every, by })
    }

    /// True when `device/tag` matches one of the patterns.
    pub fn matches(&self, device: &str, tag: &str) -> bool {
        let path = format!("{device}/{tag}");
        self.patterns.iter().any(|p| p.matches(&path))
    }
}

/// Tag patterns: globs on `device/tag` (the `glob` crate's syntax).
pub fn parse_patterns(list: &[String]) -> Result<Vec<glob::Pattern>, String> {
    if list.is_empty() {
        return Err("no tag pattern: give one or more, such as 'pump1/*' or '*/temperature' ('*' for every tag)".into());
    }
    list.iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| format!("tag pattern {p:?}: {e} (patterns look like 'pump1/*' or '*/temp?')")))
        .collect()
}

/// A time argument: `now`, a duration back from `now` (`-1h`, `-90m`,
/// `-2days`) or an RFC 3339 time (`2026-12-06T10:00:00Z`). Returns ns.
pub fn parse_time(s: &str, now: i64, what: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = |why: String| {
        format!(
            "--{what} {s:?}: {why}; expected `now`, a duration back from now such as -1h or -30m, or an RFC 3339 time such as 2026-12-06T10:00:00Z"
        )
    };
    if s == "now" {
        return Ok(now);
    }
    if let Some(d) = s.strip_prefix('-') {
        let d = humantime::parse_duration(d).map_err(|e| bad(e.to_string()))?;
        let ns = i64::try_from(d.as_nanos()).map_err(|_| bad("too far back".into()))?;
        return Ok(now.saturating_sub(ns));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| bad(e.to_string()))?;
    t.timestamp_nanos_opt().ok_or_else(|| bad("out of range".into()))
}

/// The bucket width (`1m`, `15min`, `1h`, `1day`): at least 1 ms. Returns ns.
pub fn parse_every(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("--every {s:?}: {e}; expected a duration such as 10s, 1m, 15m, 1h or 1day"))?;
    if d < Duration::from_millis(1) {
        return Err(format!("--every {s:?}: must be at least 1ms"));
    }
    i64::try_from(d.as_nanos()).map_err(|_| format!("--every {s:?}: too large"))
}

/// `--by`: a comma list of `device`, `tag`, `quality`.
pub fn parse_by(s: &str) -> Result<By, String> {
    let mut by = By::default();
    for part in s.split(',').map(str::trim) {
        match part {
            "device" => by.device = true,
            "tag" => by.tag = true,
            "quality" => by.quality = true,
            other => return Err(format!("--by {other:?}: expected device, tag or quality (or a comma list such as tag,quality)")),
        }
    }
    Ok(by)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000_000_000_000;

    #[test]
    fn times() {
        assert_eq!(parse_time("now", NOW, "to"), Ok(NOW));
        assert_eq!(parse_time("-1h", NOW, "from"), Ok(NOW - 3_600_000_000_000));
        assert_eq!(parse_time("2026-12-06T10:00:00Z", NOW, "from"), Ok(1_796_551_200_000_000_000));
        let e = parse_time("yesterday", NOW, "from").unwrap_err();
        assert!(e.starts_with("--from \"yesterday\":") && e.contains("-1h"), "{e}");
        assert!(parse_time("-1 parsec", NOW, "from").unwrap_err().contains("--from"));
    }

    #[test]
    fn every_and_by() {
        assert_eq!(parse_every("1m"), Ok(60_000_000_000));
        assert!(parse_every("0s").unwrap_err().contains("at least 1ms"));
        assert!(parse_every("soon").unwrap_err().contains("--every \"soon\""));
        assert_eq!(parse_by("tag,quality"), Ok(By { tag: true, quality: true, device: false }));
        assert!(parse_by("site").unwrap_err().contains("expected device, tag or quality"));
    }

    #[test]
    fn window_is_whole_buckets() {
        let m = 60_000_000_000;
        let s = Spec::parse(&["p/*".into()], "-90s", None, "1m", None, 10 * m + 5).unwrap();
        assert_eq!((s.start, s.end), (8 * m, 11 * m));
        assert!(s.by.tag && !s.by.quality);
        assert!(s.matches("p", "x") && !s.matches("q", "x"));
        assert!(Spec::parse(&["p/*".into()], "-1h", Some("-2h"), "1m", None, NOW).unwrap_err().contains("must be before"));
        assert!(Spec::parse(&["p/*".into()], "-400days", None, "1m", None, NOW).unwrap_err().contains("buckets"));
        assert!(Spec::parse(&[], "-1h", None, "1m", None, NOW).unwrap_err().contains("no tag pattern"));
        assert!(Spec::parse(&["p/[".into()], "-1h", None, "1m", None, NOW).unwrap_err().contains("tag pattern"));
    }
}
