//! systemd: watchdog pings only while the pipeline really moves, with the
//! status line as `STATUS=`.
//!
//! The pipeline moves when the buffer writer turned its loop within the
//! watchdog period (`WatchdogSec=`) and, if the ingest ring holds entries,
//! committed some since the last ping: a writer that loops but cannot commit
//! (a database that fails every transaction) gets no ping, and systemd
//! restarts relais. A dead device or broker does not stop the pings: a
//! restart would not cure it, and the buffer keeps what comes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::StatusLine;

/// What the watchdog compares between two checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Unix ms of the writer's last loop turn.
    pub heartbeat_ms: u64,
    /// Records committed since start (samples and events).
    pub committed: u64,
    /// Entries waiting in the ring.
    pub ring: usize,
}

impl Progress {
    fn read(status: &StatusLine) -> Progress {
        let b = &status.buffer;
        Progress {
            heartbeat_ms: b.heartbeat_ms.load(Ordering::Relaxed),
            committed: b.accepted_total.load(Ordering::Relaxed) + b.events_total.load(Ordering::Relaxed),
            ring: status.ingest.len(),
        }
    }
}

/// `Ok` when the pipeline moved between `before` and `now` (checked at
/// `now_ms`, within `period`); else why not.
pub fn moving(before: Progress, now: Progress, now_ms: u64, period: Duration) -> Result<(), String> {
    let stale = now_ms.saturating_sub(now.heartbeat_ms);
    if stale >= period.as_millis() as u64 {
        return Err(format!("buffer writer is stuck (last turn {stale} ms ago)"));
    }
    if before.ring > 0 && now.ring > 0 && now.committed == before.committed {
        return Err(format!("buffer writer commits nothing while {} entries wait in the ring", now.ring));
    }
    Ok(())
}

/// Pings the watchdog every half period while [`moving`] (no-op without
/// `WATCHDOG_USEC`).
pub(super) fn spawn_systemd(status: StatusLine, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(wd) = sd_notify::watchdog_enabled() else {
            return;
        };
        let every = wd / 2;
        let mut last = (status.buffer.accepted_total.load(Ordering::Relaxed), std::time::Instant::now());
        let mut before = Progress::read(&status);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = Progress::read(&status);
            match moving(before, now, crate::buffer::unix_ms_now(), wd) {
                Ok(()) => {
                    let n = status.buffer.accepted_total.load(Ordering::Relaxed);
                    let rate = (n - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
                    last = (n, std::time::Instant::now());
                    let line = status.render(rate);
                    let _ = sd_notify::notify(&[NotifyState::Watchdog, NotifyState::Status(&line)]);
                }
                Err(why) => tracing::error!("{why}; withholding the systemd watchdog ping"),
            }
            before = now;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WD: Duration = Duration::from_secs(10);

    fn p(heartbeat_ms: u64, committed: u64, ring: usize) -> Progress {
        Progress { heartbeat_ms, committed, ring }
    }

    #[test]
    fn idle_pipeline_with_a_live_writer_moves() {
        assert_eq!(moving(p(1_000, 5, 0), p(6_000, 5, 0), 6_500, WD), Ok(()));
    }

    #[test]
    fn committing_pipeline_moves() {
        assert_eq!(moving(p(1_000, 5, 100), p(6_000, 900, 40), 6_500, WD), Ok(()));
    }

    #[test]
    fn stale_writer_gets_no_ping() {
        let e = moving(p(1_000, 5, 0), p(1_000, 5, 0), 11_000, WD).unwrap_err();
        assert!(e.contains("stuck"), "{e}");
    }

    #[test]
    fn writer_that_commits_nothing_while_the_ring_fills_gets_no_ping() {
        let e = moving(p(1_000, 5, 10), p(6_000, 5, 30), 6_500, WD).unwrap_err();
        assert!(e.contains("30 entries"), "{e}");
    }
}
