//! The buffer's view of its host: the disk it lives on.
//!
//! - **Full.** When a commit finds the disk full (`SQLITE_FULL` or an I/O
//!   error on write, see `space.rs`), or the lab's disk-full switch is on
//!   ([`crate::buffer::Buffer::set_disk_full`]), the writer emits
//!   `buffer.disk_full` (error, `details.detector = "disk_full"`) once, and
//!   `buffer.writable` (info) when it writes again: after the switch, at the
//!   next commit that succeeds; after a real full disk, when the disk has room
//!   again (the writer could make its reserve again, checked every 10 s: while
//!   the disk stays full, commits go on by dropping the oldest rows, which is
//!   not "writable" yet).
//! - **The switch** makes every commit fail as on a full disk on which
//!   nothing can be freed: the batch is held and retried every 50 ms, the
//!   ring fills and sources wait as when it is full for any reason. Unlike a
//!   real full disk nothing is deleted to make room (no reserve released, no
//!   oldest row dropped, no sample of the batch shed): the switch tests the
//!   chain's reaction, so when it goes off every sample the sources read is
//!   committed, in order, and `seq` stays gapless.
//! - **Low.** Every [`CHECK_EVERY`] the free space of the file system
//!   holding the buffer (statvfs: blocks available to unprivileged users) is
//!   compared with `[buffer] disk_low_percent` of its size (default 5 %):
//!   below it, `host.disk_low` (warning, `details.detector = "disk_low"`);
//!   back above it by one point, `host.disk_ok` (info).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::handle::OwnEvents;
use crate::model::Severity;

/// How often the free space is checked.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(3);

/// Free and total bytes of the file system holding `dir`.
fn space(dir: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize)))
}

/// The writer's host state.
#[derive(Debug)]
pub(crate) struct Host {
    /// The lab's disk-full switch.
    pub(crate) switch: Arc<AtomicBool>,
    dir: PathBuf,
    low_percent: u8,
    low: bool,
    /// Since when the disk is full, and whether by the switch.
    full_since: Option<(Instant, bool)>,
    last_check: Option<Instant>,
}

impl Host {
    pub(crate) fn new(dir: PathBuf, low_percent: u8, switch: Arc<AtomicBool>) -> Host {
        Host { switch, dir, low_percent, low: false, full_since: None, last_check: None }
    }

    /// True while the lab's disk-full switch is on.
    pub(crate) fn switched(&self) -> bool {
        self.switch.load(Ordering::Relaxed)
    }

    /// A commit found the disk full (really, or by the switch).
    pub(crate) fn full(&mut self, own: &OwnEvents, switched: bool, error: &str, pending: usize) {
        if self.full_since.is_some() {
            return;
        }
        self.full_since = Some((Instant::now(), switched));
        let how = if switched { "the lab's disk_full switch is on" } else { "the disk holding the buffer is full" };
        tracing::warn!(pending, "buffer cannot write: {how}");
        own.emit_now(
            "buffer.disk_full",
            Severity::Error,
            format!("buffer cannot write: {how}; samples wait in the ingest ring"),
            serde_json::json!({"detector": "disk_full", "switch": switched, "error": error, "pending": pending}),
        );
    }

    /// A commit succeeded: the end of a switched episode.
    pub(crate) fn written(&mut self, own: &OwnEvents) {
        if self.full_since.is_some_and(|(_, switched)| switched) {
            self.writable(own);
        }
    }

    /// The disk has room again (the reserve was made): the end of a real episode.
    pub(crate) fn room(&mut self, own: &OwnEvents) {
        if self.full_since.is_some_and(|(_, switched)| !switched) {
            self.writable(own);
        }
    }

    fn writable(&mut self, own: &OwnEvents) {
        if let Some((t, _)) = self.full_since.take() {
            let ms = t.elapsed().as_millis() as u64;
            tracing::info!(after_ms = ms, "buffer writes again");
            own.emit_now(
                "buffer.writable",
                Severity::Info,
                format!("buffer writes again after {ms} ms"),
                serde_json::json!({"detector": "disk_full", "full_ms": ms}),
            );
        }
    }

    /// Every [`CHECK_EVERY`]: `host.disk_low` / `host.disk_ok` on a crossing.
    pub(crate) fn check_space(&mut self, own: &OwnEvents) {
        if !own.on.load(Ordering::Relaxed) || self.low_percent == 0 || self.last_check.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return;
        }
        self.last_check = Some(Instant::now());
        let Some((free, total)) = space(&self.dir) else { return };
        if total == 0 {
            return;
        }
        let pct = free as f64 * 100.0 / total as f64;
        let limit = f64::from(self.low_percent);
        let details = |d: &str| {
            serde_json::json!({"detector": d, "free_bytes": free, "total_bytes": total,
                "free_percent": (pct * 10.0).round() / 10.0, "threshold_percent": self.low_percent})
        };
        if !self.low && pct < limit {
            self.low = true;
            let msg = format!(
                "the disk holding the buffer has {} free ({pct:.1} %), below {} %",
                crate::units::format_size(free),
                self.low_percent
            );
            tracing::warn!("{msg}");
            own.emit_now("host.disk_low", Severity::Warning, msg, details("disk_low"));
        } else if self.low && pct >= limit + 1.0 {
            self.low = false;
            let msg = format!("the disk holding the buffer has {} free again ({pct:.1} %)", crate::units::format_size(free));
            tracing::info!("{msg}");
            own.emit_now("host.disk_ok", Severity::Info, msg, details("disk_low"));
        }
    }
}
