//! `[buffer]`: the buffer's own configuration type and its reader (the root
//! config only composes it).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, de_item, reject_unknown_keys};

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

/// A size written as a string with a unit (`"512MiB"`) or a plain number of bytes.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    max_bytes: Option<Spanned<RawSize>>,
    max_age: Option<Spanned<String>>,
    max_rows: Option<Spanned<i64>>,
    durability: Option<Spanned<String>>,
    ring_capacity: Option<Spanned<i64>>,
    batch_max: Option<Spanned<i64>>,
    startup_check: Option<Spanned<String>>,
}

/// Keys of `[buffer]`.
pub const BUFFER_KEYS: &[&str] = &["max_bytes", "max_age", "max_rows", "durability", "ring_capacity", "batch_max", "startup_check"];

/// Reads `[buffer]`: every wrong key is recorded in `diag` with its span;
/// `None` when any was wrong.
pub fn parse(mut item: Item<'_>, diag: &mut Diag<'_>) -> Option<BufferConfig> {
    reject_unknown_keys(&mut item, BUFFER_KEYS, diag, "buffer");
    let raw: RawBuffer = de_item(item, diag, "buffer")?;
    let before = diag.error_count();
    let mut b = BufferConfig::default();
    if let Some(s) = &raw.max_bytes {
        let parsed = match s.get_ref() {
            RawSize::Bytes(b) if *b >= 0 => Ok(*b as u64),
            RawSize::Bytes(b) => Err(format!("size {b} is negative")),
            RawSize::Text(t) => crate::units::parse_size(t),
        };
        match parsed {
            Ok(v) if v >= 1 << 20 => b.max_bytes = v,
            Ok(_) => diag.error(s.span(), "buffer / max_bytes", "max_bytes must be at least 1MiB"),
            Err(e) => diag.error(s.span(), "buffer / max_bytes", e),
        }
    }
    b.max_age = crate::diag::duration(diag, &raw.max_age, "buffer / max_age", b.max_age);
    if let Some(r) = &raw.max_rows {
        if *r.get_ref() < 0 {
            diag.error(r.span(), "buffer / max_rows", "max_rows must be 0 (no limit) or positive");
        } else {
            b.max_rows = *r.get_ref() as u64;
        }
    }
    if let Some(d) = &raw.durability {
        match d.get_ref().as_str() {
            "normal" => b.durability = Durability::Normal,
            "full" => b.durability = Durability::Full,
            other => diag.error(
                d.span(),
                "buffer / durability",
                format!("unknown durability {other:?}; expected \"normal\" (survives a process crash) or \"full\" (survives power loss)"),
            ),
        }
    }
    if let Some(c) = &raw.startup_check {
        match c.get_ref().as_str() {
            "quick" => b.startup_check = StartupCheck::Quick,
            "none" => b.startup_check = StartupCheck::None,
            other => {
                diag.error(c.span(), "buffer / startup_check", format!("unknown startup_check {other:?}; expected \"quick\" or \"none\""))
            }
        }
    }
    if let Some(r) = &raw.ring_capacity {
        match *r.get_ref() {
            v @ 1024..=16_777_216 => b.ring_capacity = v as usize,
            v => diag.error(r.span(), "buffer / ring_capacity", format!("{v} is out of range; expected 1024..=16777216")),
        }
    }
    if let Some(r) = &raw.batch_max {
        match *r.get_ref() {
            v @ 1..=1_000_000 => b.batch_max = v as usize,
            v => diag.error(r.span(), "buffer / batch_max", format!("{v} is out of range; expected 1..=1000000")),
        }
    }
    if diag.error_count() > before {
        return None;
    }
    Some(b)
}
