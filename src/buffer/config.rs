//! `[buffer]`: the buffer's own configuration type and its reader (the root
//! config only composes it).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::read::Size;
use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};

/// What survives what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// SQLite WAL with `synchronous=NORMAL`: accepted samples survive a process
    /// crash (`kill -9`); the last commits may be lost on power loss.
    Normal,
    /// SQLite WAL with `synchronous=FULL`: accepted samples survive power loss.
    Full,
}

/// How the buffer checks itself at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupCheck {
    /// `PRAGMA quick_check` (default).
    Quick,
    /// Only open and read the schema.
    None,
}

/// `[buffer]`: the SQLite store-and-forward buffer.
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Most bytes of live database pages (default 1 GiB); oldest rows dropped beyond.
    pub max_bytes: u64,
    /// Oldest sample kept, by acquisition time `recv_ts` (default 7 days); zero = no limit.
    pub max_age: Duration,
    /// Most rows (default 0 = no limit).
    pub max_rows: u64,
    /// Commit durability.
    pub durability: Durability,
    /// Capacity of the ingest ring, in samples (default 16384).
    pub ring_capacity: usize,
    /// Most samples committed in one transaction (default 8192).
    pub batch_max: usize,
    /// Check at start.
    pub startup_check: StartupCheck,
    /// How long the audit copy (`write.audit` and `security.*` events) is
    /// kept, whatever the sinks and the other limits did (default 90 days).
    pub audit_retention: Duration,
    /// Most rows of the audit copy; the oldest go first (default 100,000).
    pub audit_max_rows: u64,
    /// `host.disk_low` when the file system holding the buffer has less than
    /// this percent of its size free (default 5; 0 = off); `host.disk_ok`
    /// when it is back one point above.
    pub disk_low_percent: u8,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 86400),
            max_rows: 0,
            durability: Durability::Normal,
            ring_capacity: 16384,
            batch_max: 8192,
            startup_check: StartupCheck::Quick,
            audit_retention: Duration::from_secs(90 * 86400),
            audit_max_rows: 100_000,
            disk_low_percent: 5,
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Normal => "normal",
            Durability::Full => "full",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    max_bytes: Option<Spanned<Size>>,
    max_age: Option<Spanned<String>>,
    max_rows: Option<Spanned<i64>>,
    durability: Option<Spanned<String>>,
    ring_capacity: Option<Spanned<i64>>,
    batch_max: Option<Spanned<i64>>,
    startup_check: Option<Spanned<String>>,
    audit_retention: Option<Spanned<String>>,
    audit_max_rows: Option<Spanned<i64>>,
    disk_low_percent: Option<Spanned<i64>>,
}

/// Keys of `[buffer]`.
pub const BUFFER_KEYS: &[&str] = &[
    "max_bytes",
    "max_age",
    "max_rows",
    "durability",
    "ring_capacity",
    "batch_max",
    "startup_check",
    "audit_retention",
    "audit_max_rows",
    "disk_low_percent",
];

/// Reads `[buffer]`: every wrong key is recorded in `diag` with its span;
/// `None` when any was wrong.
pub fn parse(mut item: Item<'_>, diag: &mut Diag<'_>) -> Option<BufferConfig> {
    reject_unknown_keys(&mut item, BUFFER_KEYS, diag, "buffer");
    let raw: RawBuffer = de_item(item, diag, "buffer")?;
    let before = diag.error_count();
    let d = BufferConfig::default();
    let mut r = Reader::new(diag, "buffer");
    let b = BufferConfig {
        max_bytes: r.size(&raw.max_bytes, "max_bytes", d.max_bytes, 1 << 20..=u64::MAX),
        max_age: r.duration(&raw.max_age, "max_age", d.max_age),
        max_rows: r.int(&raw.max_rows, "max_rows", 0..=i64::MAX, d.max_rows),
        durability: r.choice(&raw.durability, "durability", &[("normal", Durability::Normal), ("full", Durability::Full)], d.durability),
        ring_capacity: r.int(&raw.ring_capacity, "ring_capacity", 1024..=16_777_216, d.ring_capacity),
        batch_max: r.int(&raw.batch_max, "batch_max", 1..=1_000_000, d.batch_max),
        startup_check: r.choice(
            &raw.startup_check,
            "startup_check",
            &[("quick", StartupCheck::Quick), ("none", StartupCheck::None)],
            d.startup_check,
        ),
        audit_retention: r.duration_in(
            &raw.audit_retention,
            "audit_retention",
            d.audit_retention,
            Duration::from_secs(60)..=Duration::from_secs(10 * 365 * 86400),
        ),
        audit_max_rows: r.int(&raw.audit_max_rows, "audit_max_rows", 1..=100_000_000, d.audit_max_rows),
        disk_low_percent: r.int(&raw.disk_low_percent, "disk_low_percent", 0..=99, d.disk_low_percent),
    };
    if diag.error_count() > before {
        return None;
    }
    Some(b)
}
