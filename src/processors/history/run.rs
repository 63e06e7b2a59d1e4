//! The history writer in the daemon: one thread of its own, at the lowest
//! scheduling priority (nice 19), follows the committed-data tap, collects samples (see
//! [`super::collect`]) and writes them every `flush_interval` in one
//! transaction; once a minute it prunes what is older than the windows.
//!
//! Invariants:
//! - **Never slows ingest.** The writer runs at nice 19 ([`HISTORY_NICE`]):
//!   when the CPU is short (ingest at saturation on a small edge PC), the
//!   scheduler gives the buffer writer and the sources the CPU first and
//!   history lags instead. It only reads the tap; when it falls
//!   more than the tap's memory behind, the tap tells it exactly which `seq`
//!   range it missed, and it reads that range back from the buffer (a
//!   read-only connection, which never blocks the buffer's writer). What
//!   retention already deleted is lost to history and logged as a warning
//!   with its count.
//! - **Exactly once.** `last_seq` is written in the same transaction as the
//!   rows: after a restart the writer reads what the buffer committed since
//!   from the buffer first (nothing counted twice, nothing skipped while the
//!   buffer keeps it). A new database starts with what is committed from
//!   now on (no back-fill of the buffer).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::agg::{HOUR_NS, MINUTE_NS, bucket};
use super::collect::{Collector, FLUSH_ROWS};
use super::config::HistoryConfig;
use super::store::Store;
use crate::buffer::tap::TapSubscription;
use crate::buffer::{Buffer, Reader};
use crate::component::Ctx;
use crate::model::Timestamp;

/// How often old rows are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Nice value of the history thread (Linux: per thread; 19 is the lowest
/// priority). Set once on a thread of its own: an unprivileged process can
/// lower a thread's priority but never raise it back, so it must not be a
/// pooled thread that other work reuses.
pub const HISTORY_NICE: i32 = 19;

/// Samples read from the buffer per query when catching up.
const CATCH_UP_CHUNK: usize = 20_000;

/// Opens `history.db` and starts the writer (nothing when `enabled = false`).
/// It ends when `ctx.stop` fires (after a last flush) or the buffer closes.
pub fn spawn(cfg: HistoryConfig, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    spawn_with(cfg, ctx.data_dir, ctx.buffer, ctx.stop.clone())
}

/// [`spawn`] with only what it uses (the ingest bench runs it beside a bare
/// buffer). Call it inside a multi-threaded tokio runtime.
pub fn spawn_with(cfg: HistoryConfig, data_dir: &Path, buffer: &Buffer, stop: CancellationToken) -> anyhow::Result<Vec<JoinHandle<()>>> {
    if !cfg.enabled {
        return Ok(Vec::new());
    }
    let path = HistoryConfig::path(data_dir);
    let store = Store::open(&path)?;
    let reader = buffer.reader()?;
    // Subscribed before any source starts: nothing committed from now on is missed.
    let sub = buffer.tap().subscribe();
    let handle = tokio::runtime::Handle::current();
    tracing::info!(path = %path.display(), "{}", cfg.describe());
    let (done, ended) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new().name("relais-history".into()).spawn(move || {
        lower_priority();
        let mut w = Writer { cfg, store, reader, lost: 0, written: 0 };
        if let Err(e) = w.run(sub, &handle, &stop) {
            tracing::error!("history stopped: {e:#}");
        }
        let _ = done.send(());
    })?;
    Ok(vec![tokio::spawn(async move {
        let _ = ended.await;
    })])
}

/// Puts the calling thread at [`HISTORY_NICE`]; a failure is logged and the
/// writer runs at normal priority.
fn lower_priority() {
    // `None`: the calling thread (Linux keeps the nice value per thread).
    if let Err(e) = rustix::process::setpriority_process(None, HISTORY_NICE) {
        tracing::warn!("history: could not lower the writer's priority ({e}); it competes with ingest for the CPU");
    }
}

struct Writer {
    cfg: HistoryConfig,
    store: Store,
    reader: Reader,
    /// Samples lost to history (retention deleted them before it read them).
    lost: u64,
    /// `last_seq` of the last write.
    written: u64,
}

enum Got {
    Data(crate::buffer::tap::Tapped),
    Timeout,
    End,
}

impl Writer {
    fn run(&mut self, mut sub: TapSubscription, handle: &tokio::runtime::Handle, stop: &CancellationToken) -> anyhow::Result<()> {
        let mut c = self.resume(sub.next_seq())?;
        let mut flushed = Instant::now();
        let mut pruned: Option<Instant> = None;
        loop {
            let wait = self.cfg.flush_interval.saturating_sub(flushed.elapsed());
            let got = handle.block_on(async {
                tokio::select! {
                    _ = stop.cancelled() => Got::End,
                    r = tokio::time::timeout(wait, sub.recv()) => match r {
                        Ok(Some(t)) => Got::Data(t),
                        Ok(None) => Got::End,
                        Err(_) => Got::Timeout,
                    },
                }
            });
            let end = matches!(got, Got::End);
            if let Got::Data(t) = got {
                if let Some((from, to)) = t.missed_range {
                    self.catch_up(&mut c, from, to, t.missed_samples);
                }
                for r in t.records() {
                    match r.as_sample() {
                        Some(s) => c.add(s),
                        None => c.skip_to(r.seq()),
                    }
                }
            }
            if end || flushed.elapsed() >= self.cfg.flush_interval || c.pending() >= FLUSH_ROWS {
                self.flush(&mut c);
                flushed = Instant::now();
            }
            if end {
                return Ok(());
            }
            if pruned.is_none_or(|p| p.elapsed() >= PRUNE_EVERY) {
                self.prune();
                pruned = Some(Instant::now());
            }
        }
    }

    /// The collector after the stored `last_seq`, having read from the
    /// buffer what was committed since (before `next`, the tap's first).
    fn resume(&mut self, next: u64) -> anyhow::Result<Collector> {
        let tags = self.store.tags()?;
        let stored = self.store.last_seq()?;
        let start = match stored {
            Some(l) if l < next => l,
            Some(l) => {
                tracing::warn!(
                    history_last_seq = l,
                    buffer_next_seq = next,
                    "history: the buffer is newer than the history (replaced?); continuing from the buffer"
                );
                next - 1
            }
            None => next - 1,
        };
        let mut c = Collector::new(tags, start);
        self.written = stored.unwrap_or(0);
        if start + 1 < next {
            tracing::info!(from = start + 1, to = next - 1, "history: reading what was committed since the last run from the buffer");
            self.catch_up(&mut c, start + 1, next - 1, 0);
            self.flush(&mut c);
        } else if stored != Some(start) {
            self.store.set_last_seq(start)?;
        }
        Ok(c)
    }

    /// Reads samples with `from <= seq <= to` from the buffer into `c`,
    /// flushing as it goes. `expected` (0: unknown) is what the tap said it missed.
    fn catch_up(&mut self, c: &mut Collector, from: u64, to: u64, expected: u64) {
        let mut after = from.saturating_sub(1).max(c.last_seq());
        let mut read = 0u64;
        while after < to {
            match self.reader.read_blocking(after, to, CATCH_UP_CHUNK) {
                Ok(v) if v.is_empty() => break,
                Ok(v) => {
                    read += v.len() as u64;
                    after = v.last().map_or(to, |s| s.seq);
                    v.iter().for_each(|s| c.add(s));
                    if c.pending() >= FLUSH_ROWS {
                        self.flush(c);
                    }
                }
                Err(e) => {
                    tracing::warn!("history: cannot read seq {after}..={to} back from the buffer: {e:#}");
                    break;
                }
            }
        }
        c.skip_to(to);
        if expected > read {
            self.lost += expected - read;
            tracing::warn!(
                lost = expected - read,
                lost_total = self.lost,
                range = ?(from, to),
                "history: samples deleted from the buffer before history read them; their minutes count fewer samples"
            );
        } else if expected > 0 {
            tracing::debug!(samples = read, "history caught up from the buffer");
        }
    }

    fn flush(&mut self, c: &mut Collector) {
        let b = c.take();
        if b.is_empty() && b.last_seq == self.written {
            return;
        }
        match self.store.write(&b) {
            Ok(()) => self.written = b.last_seq,
            Err(e) => tracing::error!(samples = b.raw.len(), "history: write failed, these samples are not in the history: {e:#}"),
        }
    }

    fn prune(&mut self) {
        let now = Timestamp::now().0;
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let raw = now.saturating_sub(ns(self.cfg.raw));
        // Whole buckets only: a minute (hour) goes once all of it is older than the window.
        let minutes = bucket(now.saturating_sub(ns(self.cfg.minutes)), MINUTE_NS);
        let hours = bucket(now.saturating_sub(ns(self.cfg.hours)), HOUR_NS);
        match self.store.prune(raw, minutes, hours) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "history pruned"),
            Err(e) => tracing::warn!("history: pruning failed: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The writer's own thread gets nice 19; the thread that spawned it
    /// (a runtime worker, the ingest path) keeps its priority.
    #[test]
    fn the_writer_thread_runs_at_the_lowest_priority_and_only_it() {
        let before = rustix::process::getpriority_process(None).expect("getpriority");
        let inside = std::thread::spawn(|| {
            super::lower_priority();
            rustix::process::getpriority_process(None).expect("getpriority")
        })
        .join()
        .expect("thread");
        assert_eq!(inside, super::HISTORY_NICE);
        assert_eq!(rustix::process::getpriority_process(None).expect("getpriority"), before);
    }
}
