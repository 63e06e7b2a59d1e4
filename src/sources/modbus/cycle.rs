//! One poll cycle of a device's group: its requests, their samples, the
//! split of a merged request that drew exception 02/03, and the device's
//! health after the cycle.
//!
//! - A merged request answered with exception 02 or 03 is split (at its
//!   holes, then in halves) and the parts are read at once, within a budget of
//!   extra reads per cycle; the split is kept for later cycles (or, if every
//!   part fails, the request is kept whole and its tags stay bad). The merged
//!   plan is tried again [`REMERGE_AFTER`] later.
//! - After a timeout (or an `invalid_frame` that cost one), the device's other
//!   requests of the cycle are not sent: their tags get bad samples at once,
//!   so a silent unit costs its line one timeout per cycle, not one per
//!   request.
//! - A degraded device's cycle produces bad samples without touching the line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::degrade::Outcome;
use super::device::Planned;
use super::link::{ReadError, Words};
use super::planner::{self, ReadRequest};
use super::poller::EndpointPoller;
use crate::model::{Quality, Sample, Timestamp, reason};

/// How long a split plan is kept before the merged plan is tried again.
pub const REMERGE_AFTER: Duration = Duration::from_secs(600);
/// Most extra reads one request may cost in one cycle while it is split;
/// the split goes on in the next cycles.
const SPLIT_BUDGET: u32 = 16;

/// A request as finally executed in a cycle.
struct Leaf {
    req: ReadRequest,
    result: Result<Words, ReadError>,
    /// Split was tried and every part failed: do not split it again.
    keep_whole: bool,
}

/// The health outcome of a cycle's read results.
pub fn outcome_of(results: &[Result<Words, ReadError>]) -> Outcome {
    if results.iter().any(|r| matches!(r, Ok(_) | Err(ReadError::Exception(_)))) {
        Outcome::Answered
    } else if !results.is_empty() && results.iter().all(|r| matches!(r, Err(e) if e.is_silence())) {
        Outcome::Silent
    } else {
        Outcome::Other
    }
}

impl EndpointPoller {
    /// Runs cycle `g` of device `d` and pushes its samples.
    pub(super) async fn cycle(&mut self, d: usize, g: usize) {
        self.devices[d].stats.cycles.fetch_add(1, Ordering::Relaxed);
        if self.devices[d].health.is_degraded() {
            return self.degraded_cycle(d, g).await;
        }
        let t0 = Instant::now();
        {
            let dev = &mut self.devices[d];
            let group = &mut dev.groups[g];
            if group.split_since.is_some_and(|t| t.elapsed() >= REMERGE_AFTER) {
                tracing::debug!(device = %dev.cfg.name, "trying the merged read plan again");
                group.requests = group.original.iter().cloned().map(|req| Planned { req, keep_whole: false }).collect();
                group.split_since = None;
            }
        }
        let mut samples: Vec<Sample> = Vec::new();
        let mut results = Vec::new();
        let mut silenced: Option<ReadError> = None;
        let mut r = 0;
        while r < self.devices[d].groups[g].requests.len() {
            let (req, keep_whole) = {
                let p = &self.devices[d].groups[g].requests[r];
                (p.req.clone(), p.keep_whole)
            };
            if let Some(e) = &silenced {
                // The unit did not answer this cycle: do not spend another
                // timeout on it.
                let skipped = Err(skipped_after(e));
                self.devices[d].samples_of(&req, &skipped, &mut samples);
                r += 1;
                continue;
            }
            let mut budget = SPLIT_BUDGET;
            let leaves = self.execute(d, req.clone(), !keep_whole, &mut budget).await;
            let dev = &mut self.devices[d];
            for leaf in &leaves {
                if leaf.result.is_ok() {
                    dev.stats.registers_read.fetch_add(u64::from(leaf.req.count), Ordering::Relaxed);
                    dev.stats.registers_used.fetch_add(planner::used(&leaf.req, &dev.spans), Ordering::Relaxed);
                }
                dev.samples_of(&leaf.req, &leaf.result, &mut samples);
                if let Err(e) = &leaf.result
                    && e.is_silence()
                {
                    silenced.get_or_insert_with(|| e.clone());
                    dev.last_silence = Some(e.clone());
                }
                results.push(leaf.result.clone());
            }
            r += self.keep_split(d, g, r, &req, keep_whole, leaves);
        }
        let dev = &mut self.devices[d];
        let interval = dev.groups[g].interval;
        let outcome = outcome_of(&results);
        let cause = results.iter().find_map(|r| r.as_ref().err());
        super::state::answering(&self.events, dev, outcome == Outcome::Answered, cause);
        if let Some(t) = dev.health.after_cycle(outcome, interval, Instant::now()) {
            super::state::transition(&self.events, dev, t);
        }
        count(&dev.stats, &results, &samples, t0);
        self.checker.apply_all(&mut samples, Some(interval));
        self.ingest.push_all(samples).await;
    }

    /// Bad samples for a degraded device, without touching the line.
    async fn degraded_cycle(&mut self, d: usize, g: usize) {
        let dev = &self.devices[d];
        let next = dev.health.next_probe().map_or(0.0, |t| t.saturating_duration_since(Instant::now()).as_secs_f64());
        let why: Arc<str> = match &dev.last_silence {
            Some(ReadError::InvalidFrame(m)) => {
                format!("{}: device answers no valid frame; polled again in {next:.0}s (last: {m})", reason::INVALID_FRAME)
            }
            _ => format!("{}: device not answering; polled again in {next:.0}s", reason::COMM_FAILURE),
        }
        .into();
        let ts = Timestamp::now();
        let mut samples: Vec<Sample> = dev.groups[g]
            .requests
            .iter()
            .flat_map(|p| p.req.tags.iter())
            .map(|&i| Sample::bad(dev.metas[i].clone(), why.clone(), ts))
            .collect();
        dev.stats.bad.fetch_add(samples.len() as u64, Ordering::Relaxed);
        dev.stats.up.store(false, Ordering::Relaxed);
        let interval = dev.groups[g].interval;
        self.checker.apply_all(&mut samples, Some(interval));
        self.ingest.push_all(samples).await;
    }

    /// Keeps the split of request `r` of group `g` when it was split;
    /// returns how many requests of the group it now takes.
    fn keep_split(&mut self, d: usize, g: usize, r: usize, req: &ReadRequest, keep_whole: bool, leaves: Vec<Leaf>) -> usize {
        let dev = &mut self.devices[d];
        let group = &mut dev.groups[g];
        if leaves.len() > 1 {
            let parts: Vec<String> = leaves.iter().map(|l| format!("{}+{}", l.req.start, l.req.count)).collect();
            tracing::info!(
                device = %dev.cfg.name, table = %req.table, start = req.start, count = req.count, parts = %parts.join(" "),
                "request drew exception 02/03; split it and keeping the split"
            );
            let n = leaves.len();
            let new: Vec<Planned> = leaves.into_iter().map(|l| Planned { req: l.req, keep_whole: l.keep_whole }).collect();
            group.requests.splice(r..=r, new);
            group.split_since.get_or_insert_with(Instant::now);
            return n;
        }
        if leaves[0].keep_whole && !keep_whole {
            tracing::warn!(
                device = %dev.cfg.name, table = %req.table, start = req.start, count = req.count,
                "every part of the request failed as well; keeping it whole (its tags stay bad until the device answers)"
            );
            group.requests[r].keep_whole = true;
        }
        1
    }

    /// Reads `req`; on exception 02/03 with several tags, splits it and reads
    /// the parts. Returns the leaf requests with their results; when every
    /// part failed too, returns `req` alone, marked to be kept whole.
    fn execute<'a>(
        &'a mut self,
        d: usize,
        req: ReadRequest,
        allow_split: bool,
        budget: &'a mut u32,
    ) -> Pin<Box<dyn Future<Output = Vec<Leaf>> + Send + 'a>> {
        Box::pin(async move {
            let (unit, timeout) = (self.devices[d].cfg.unit_id, self.devices[d].cfg.timeout);
            let t0 = Instant::now();
            let result = self.link.read(unit, req.table, req.start, req.count, timeout).await;
            self.charge_discards(d);
            if matches!(result, Ok(_) | Err(ReadError::Exception(_))) {
                self.answers.record(t0.elapsed());
            }
            match result {
                Err(ReadError::Exception(2 | 3)) if allow_split && req.tags.len() > 1 => {
                    let parts = planner::split(&req, &self.devices[d].spans);
                    if parts.len() < 2 {
                        return vec![Leaf { req, result, keep_whole: true }];
                    }
                    let mut leaves = Vec::new();
                    for p in parts {
                        if *budget == 0 {
                            // Out of budget: this part fails like its parent
                            // this cycle and is split further next cycle.
                            leaves.push(Leaf { req: p, result: result.clone(), keep_whole: false });
                            continue;
                        }
                        *budget -= 1;
                        leaves.extend(self.execute(d, p, true, budget).await);
                    }
                    if leaves.iter().all(|l| matches!(l.result, Err(ReadError::Exception(_)))) {
                        return vec![Leaf { req, result, keep_whole: true }];
                    }
                    leaves
                }
                _ => vec![Leaf { req, result, keep_whole: false }],
            }
        })
    }
}

/// The error of a request skipped after `e` in the same cycle (same kind, so
/// the reason code stays `timeout` or `invalid_frame`).
fn skipped_after(e: &ReadError) -> ReadError {
    let note = "not sent: the unit did not answer the previous request of this cycle";
    match e {
        ReadError::Timeout(t) => ReadError::Timeout(*t),
        ReadError::InvalidFrame(m) => ReadError::InvalidFrame(format!("{note} ({m})")),
        other => other.clone(),
    }
}

/// Counts one cycle in the device's telemetry: its duration (started at
/// `t0`), requests and failed ones by class, good and bad samples, the
/// newest good sample's time, and whether the device answers.
fn count(stats: &crate::telemetry::DeviceStats, results: &[Result<Words, ReadError>], samples: &[Sample], t0: Instant) {
    stats.polled(t0.elapsed());
    stats.requests.fetch_add(results.len() as u64, Ordering::Relaxed);
    for r in results {
        let class = match r {
            Ok(_) => continue,
            Err(ReadError::Exception(_)) => &stats.errors.exception,
            Err(ReadError::Timeout(_)) => &stats.errors.timeout,
            Err(ReadError::InvalidFrame(_)) => &stats.errors.invalid_frame,
            Err(ReadError::Comm(_)) => &stats.errors.comm,
        };
        class.fetch_add(1, Ordering::Relaxed);
    }
    let good = samples.iter().filter(|s| s.quality == Quality::Good);
    if let Some(ts) = good.clone().map(|s| s.ts.0).max() {
        stats.good_at(ts);
    }
    let good = good.count() as u64;
    stats.good.fetch_add(good, Ordering::Relaxed);
    stats.bad.fetch_add(samples.len() as u64 - good, Ordering::Relaxed);
    stats.up.store(good > 0, Ordering::Relaxed);
}
