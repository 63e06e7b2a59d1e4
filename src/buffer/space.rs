//! Disk headroom, so a full disk drops the oldest records and never stops
//! the gateway.
//!
//! - **Reserve.** A file `buffer.reserve` of [`Reserve::size`] bytes (real
//!   blocks, not a sparse file) is kept beside the buffer while the disk has
//!   room for it twice. When a commit finds the disk full, the writer deletes
//!   it first: SQLite needs free space to delete rows (its WAL grows before
//!   the DELETE commits), and this is the space that lets the oldest rows go
//!   instead of the newest samples. It is made again once the disk has room.
//! - **Cap below the free space.** At open, the buffer's byte limit is
//!   lowered to what the disk can hold beside the reserve and the WAL, with a
//!   warning, so `max_bytes` retention (oldest first) acts before the disk is
//!   full at all.
//! - **Start on a full disk.** Opening deletes the reserve when the disk is
//!   full, so the buffer opens, its backlog is delivered and new records
//!   replace the oldest.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes free for unprivileged writers on the file system holding `dir`.
pub(crate) fn available(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The reserve file.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    size: u64,
}

impl Reserve {
    /// The reserve of a buffer in `data_dir` limited to `max_bytes`:
    /// 1/32 of it, between 256 KiB and 32 MiB, and at most an eighth of the
    /// disk (what is free plus a reserve already there).
    pub(crate) fn new(data_dir: &Path, max_bytes: u64) -> Reserve {
        let path = data_dir.join("buffer.reserve");
        let existing = std::fs::metadata(&path).map_or(0, |m| m.len());
        let disk = available(data_dir).map_or(u64::MAX, |a| a.saturating_add(existing));
        let size = (max_bytes / 32).clamp(256 << 10, 32 << 20).min(disk / 8).max(64 << 10);
        Reserve { path, size }
    }

    /// Its size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// True while the reserve file is in place (a partial one made at stop counts).
    pub(crate) fn held(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0)
    }

    /// Makes the reserve when it is missing and the disk has room for it
    /// twice. Returns true when it is in place.
    pub(crate) fn ensure(&self) -> bool {
        if self.held() {
            return true;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if available(dir).is_none_or(|a| a < 2 * self.size) {
            return false;
        }
        write_zeros(&self.path, self.size)
    }

    /// At stop: leaves a reserve of whatever fits (up to its size, at least
    /// 64 KiB), even on a disk too full for the whole one, so the next start
    /// has room to open the buffer (its WAL and shared-memory index) on a disk
    /// that another program filled meanwhile.
    pub(crate) fn ensure_for_start(&self) -> bool {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let size = available(dir).unwrap_or(0).min(self.size) / 4096 * 4096;
        size >= 64 << 10 && write_zeros(&self.path, size)
    }

    /// Deletes the reserve; true when there was one to free.
    pub(crate) fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

/// The byte limit the buffer can really hold on its disk: `max_bytes`, or
/// less when the disk has less room (the database's current size plus the
/// free space, minus the reserve and a WAL allowance), at most 90 % of it.
pub(crate) fn effective_max_bytes(max_bytes: u64, data_dir: &Path, db_bytes: u64, reserve: u64) -> u64 {
    let Some(free) = available(data_dir) else { return max_bytes };
    let room = db_bytes.saturating_add(free).saturating_sub(reserve);
    let wal = (room / 4).min(16 << 20);
    let fits = room.saturating_sub(wal) / 10 * 9;
    max_bytes.min(fits.max(64 << 10))
}

/// Writes `size` zero bytes to `path` (real blocks); false, and no file, on failure.
fn write_zeros(path: &Path, size: u64) -> bool {
    let made = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        let zeros = vec![0u8; 64 << 10];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made.is_ok()
}
