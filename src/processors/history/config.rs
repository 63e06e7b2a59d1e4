//! `[history]`: the local history store (keys in `docs/configuration.md`
//! and this folder's README).
//!
//! Without the section there is no history (it doubles the disk writes per
//! sample and uses space that `[buffer] max_bytes` does not count); an empty
//! `[history]` turns it on with the defaults below.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};

/// File name of the history database inside `data_dir`.
pub const FILE_NAME: &str = "history.db";

/// `[history]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// `enabled` (default true when the section is present).
    pub enabled: bool,
    /// `raw`: how long raw samples are kept (default 24 h).
    pub raw: Duration,
    /// `minutes`: how long the per-minute rollups are kept (default 7 days).
    pub minutes: Duration,
    /// `hours`: how long the per-hour rollups are kept (default 90 days).
    pub hours: Duration,
    /// `flush_interval`: how often the collected samples are written, in one
    /// transaction (default 1 s).
    pub flush_interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            raw: Duration::from_secs(24 * 3600),
            minutes: Duration::from_secs(7 * 24 * 3600),
            hours: Duration::from_secs(90 * 24 * 3600),
            flush_interval: Duration::from_secs(1),
        }
    }
}

impl HistoryConfig {
    /// The database file for `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// What `relais check` prints.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "history: off ([history] enabled = false)".into();
        }
        let h = crate::units::format_duration;
        format!(
            "history: {FILE_NAME} in data_dir; raw samples {}, minute rollups {}, hour rollups {}; written every {}",
            h(self.raw),
            h(self.minutes),
            h(self.hours),
            h(self.flush_interval)
        )
    }
}

/// Keys of `[history]`.
pub const HISTORY_KEYS: &[&str] = &["enabled", "raw", "minutes", "hours", "flush_interval"];

#[derive(Deserialize)]
struct RawHistory {
    enabled: Option<bool>,
    raw: Option<Spanned<String>>,
    minutes: Option<Spanned<String>>,
    hours: Option<Spanned<String>>,
    flush_interval: Option<Spanned<String>>,
}

/// Reads `[history]`; every error is recorded in `diag` (file, line, key);
/// `None` when there was one.
pub fn parse_history(mut item: Item<'_>, diag: &mut Diag<'_>) -> Option<HistoryConfig> {
    reject_unknown_keys(&mut item, HISTORY_KEYS, diag, "history");
    let raw: RawHistory = de_item(item, diag, "history")?;
    let before = diag.error_count();
    let d = HistoryConfig::default();
    let mut r = Reader::new(diag, "history");
    let min = Duration::from_secs(60);
    let cfg = HistoryConfig {
        enabled: raw.enabled.unwrap_or(true),
        raw: r.duration_in(&raw.raw, "raw", d.raw, min..=Duration::MAX),
        minutes: r.duration_in(&raw.minutes, "minutes", d.minutes, min..=Duration::MAX),
        hours: r.duration_in(&raw.hours, "hours", d.hours, Duration::from_secs(3600)..=Duration::MAX),
        flush_interval: r.duration_in(
            &raw.flush_interval,
            "flush_interval",
            d.flush_interval,
            Duration::from_millis(100)..=Duration::from_secs(60),
        ),
    };
    // A query picks the coarsest table that fits its buckets: it must keep
    // at least as long as the finer ones.
    if diag.error_count() == before && !(cfg.raw <= cfg.minutes && cfg.minutes <= cfg.hours) {
        let span = raw.minutes.as_ref().or(raw.hours.as_ref()).or(raw.raw.as_ref()).map_or(0..0, Spanned::span);
        diag.error(
            span,
            "history / minutes",
            "keep raw <= minutes <= hours (a coarser rollup must be kept at least as long as a finer one)",
        );
    }
    if diag.error_count() > before {
        return None;
    }
    Some(cfg)
}
