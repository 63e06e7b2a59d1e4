use chrono::{DateTime, SecondsFormat, Utc};

/// A UTC instant in nanoseconds since the Unix epoch.
///
/// i64 nanoseconds cover 1677-09-21 to 2262-04-11, enough for any process data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time on the gateway's guarded clock: the wall clock
    /// while it is trusted, never before the persisted floor, never 1970
    /// (see [`crate::model::clock`]).
    pub fn now() -> Timestamp {
        super::clock::now()
    }

    /// The raw wall clock, unguarded (for tests and diagnostics only).
    pub fn wall_now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_nanos() as i64)
    }

    /// Nanoseconds since the Unix epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch (floor).
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// From milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms.saturating_mul(1_000_000))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_rfc3339(*self))
    }
}

/// RFC 3339 in UTC with `Z`, with 0, 3, 6 or 9 fraction digits as needed:
/// `2026-11-29T10:14:33.120Z`.
pub fn format_rfc3339(ts: Timestamp) -> String {
    let dt: DateTime<Utc> = DateTime::from_timestamp_nanos(ts.0);
    dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_needed_precision() {
        assert_eq!(format_rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(Timestamp::from_millis(1_760_961_217_637)), "2025-10-20T11:53:37.637Z");
        assert_eq!(format_rfc3339(Timestamp(1_000)), "1970-01-01T00:00:00.000001Z");
    }
}
