//! Actuator writes: the seam between whoever asks for a write (a rule, an
//! MQTT command, `relais write`) and the task that owns the device's link
//! (a Modbus line's poller, an OPC UA session), which executes it between
//! two of its own requests, never interleaved with a poll.
//!
//! ```text
//!  rule / command / CLI ──WriteRequest──► Actuators::write ──WriteJob──► owning task (bounded queue)
//!                      ◄──WriteOutcome──                   ◄─finish()──  (checks, encodes, writes, reads back)
//! ```
//!
//! # Contract
//!
//! - **Registry.** An owning task registers its devices and their tag names
//!   with [`Actuators::register`] and gets the receiving end of a bounded
//!   queue ([`WRITE_QUEUE`] jobs). Registering a device again (a restarted
//!   task) replaces the earlier queue. [`Actuators`] is cheap to clone; every
//!   component gets one in [`Ctx::actuators`](super::Ctx), the app keeps one.
//! - **Refusals before the queue.** An unknown device or tag, a deadline
//!   already passed, or a full queue settle the write at once, without
//!   reaching the device.
//! - **The owner decides the rest**, with one shared check
//!   (`sources::writable::admit`) when it takes the job: the deadline
//!   again, the allow-list (`writable = true` on the tag), limits (`min`,
//!   `max`, `max_rate`), the tag's `interlock` and its last read's quality
//!   ([`guard`], on the live table of [`Actuators::with_live`]); then that the
//!   value fits the tag's type, and the result of the device itself. It ends every job with
//!   [`WriteJob::finish`]; a job dropped unfinished (its task stopped or
//!   panicked) settles as [`WriteResult::Unknown`] when it was marked sent
//!   ([`WriteJob::mark_sent`]), else as [`WriteResult::Failed`].
//! - **Never re-sent.** A write whose request went out and whose answer never
//!   came is `unknown`; the owner never repeats it on its own. A read-back of
//!   the tag may settle it (the outcome then says `ok` or `failed`, with the
//!   read-back value and a reason saying the answer was lost).
//! - **Audit and security events.** Every settled write emits one
//!   `write.audit` event (who, device, tag, old value, requested value,
//!   result, read-back, reason, times); every refusal also emits one
//!   `security.write_refused` event. Both are stored and forwarded like
//!   every event (`docs/payloads.md`, "Events"). They are emitted where the
//!   job settles, so a caller that stops waiting loses nothing.
//! - **Rogue-write marks.** Every write that is not a dry run is marked in
//!   [`Actuators::rogue`] when asked for and when settled, so the rogue-write
//!   detector ([`crate::component::rogue`]) knows relais's own changes.
//!
//! Reasons are `code: detail` like sample reasons: `unknown_device`,
//! `unknown_tag`, `expired`, `busy`, `not_writable`, `out_of_range`,
//! `rate_exceeded`, `interlock`, `bad_quality`, `unknown_node`, `bad_value`, `device_exception(N)`, `timeout`,
//! `comm_failure`, `readback_mismatch`, `dry_run`, `stopped`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::component::live::LiveTable;
use crate::component::rogue::RogueWatch;
use crate::ingest::Events;
use crate::model::{EventSource, Severity, Timestamp, format_rfc3339};
use crate::telemetry::metrics::WriteCounts;

/// Jobs an owning task's queue holds before [`Actuators::write`] answers `busy`.
pub const WRITE_QUEUE: usize = 64;

/// One write handed to its owning task, with the way back to the caller.
#[derive(Debug)]
pub struct WriteJob {
    /// The request.
    pub request: WriteRequest,
    requested: Timestamp,
    sent: Option<Timestamp>,
    reply: Option<oneshot::Sender<WriteOutcome>>,
    events: Option<Events>,
    live: LiveTable,
    counts: Arc<WriteCounts>,
    rogue: RogueWatch,
    mark: Option<u64>,
}

impl WriteJob {
    /// Records that the request is going out to the device now: from here
    /// on, a job dropped unfinished settles as `unknown`.
    pub fn mark_sent(&mut self) {
        self.sent.get_or_insert_with(Timestamp::now);
    }

    /// Records that the request did not go out after all (the connection
    /// failed before it was written): a dropped job is `failed` again, and the
    /// audit shows no send time.
    pub fn unmark_sent(&mut self) {
        self.sent = None;
    }

    /// How long the job has waited since [`Actuators::write`] was called.
    pub fn waited(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(Timestamp::now().as_nanos().saturating_sub(self.requested.as_nanos()).max(0) as u64)
    }

    /// The last committed sample of every tag, for the interlock and
    /// bad-quality guards ([`guard`]); empty when the registry has none.
    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    /// True when the deadline passed.
    pub fn expired(&self) -> bool {
        self.request.deadline.is_some_and(|d| Instant::now() > d)
    }

    /// Settles the job: sets the times, emits `write.audit` (and
    /// `security.write_refused` for a refusal), logs it and answers the caller.
    pub fn finish(mut self, outcome: WriteOutcome) {
        self.settle(outcome);
    }

    fn settle(&mut self, mut outcome: WriteOutcome) {
        let Some(reply) = self.reply.take() else { return };
        outcome.requested = self.requested;
        outcome.sent = outcome.sent.or(self.sent);
        outcome.settled = Timestamp::now();
        if let Some(id) = self.mark {
            self.rogue.settle(&self.request, id, &outcome);
        }
        record(self.events.as_ref(), &self.counts, &self.request, &outcome, true);
        let _ = reply.send(outcome);
    }
}

impl Drop for WriteJob {
    fn drop(&mut self) {
        if self.reply.is_some() {
            let outcome = if self.sent.is_some() {
                WriteOutcome::new(WriteResult::Unknown, Some("stopped: the link's task stopped after the request went out".into()))
            } else {
                WriteOutcome::failed("stopped: the link's task stopped before the write was executed")
            };
            self.settle(outcome);
        }
    }
}

/// Logs a settled write and emits its events (`security.write_refused` for
/// a refusal only when `security`).
fn record(events: Option<&Events>, counts: &WriteCounts, req: &WriteRequest, o: &WriteOutcome, security: bool) {
    counts.add(o.result.as_str());
    let source = EventSource::Tag { device: req.device.as_str().into(), tag: req.tag.as_str().into() };
    let reason = o.reason.as_deref().unwrap_or("");
    let msg = format!(
        "write {}/{} = {} by {}: {}{}{}",
        req.device,
        req.tag,
        req.value,
        req.origin,
        o.result,
        if reason.is_empty() { "" } else { " (" },
        if reason.is_empty() { String::new() } else { format!("{reason})") }
    );
    let severity = match o.result {
        WriteResult::Ok => Severity::Info,
        WriteResult::Refused | WriteResult::Failed => Severity::Warning,
        WriteResult::Unknown => Severity::Error,
    };
    match severity {
        Severity::Info => tracing::info!(device = %req.device, tag = %req.tag, "{msg}"),
        _ => tracing::warn!(device = %req.device, tag = %req.tag, "{msg}"),
    }
    let Some(events) = events else { return };
    let ts = |t: Option<Timestamp>| t.map(format_rfc3339);
    let details = json!({
        "device": req.device, "tag": req.tag, "origin": req.origin.to_json(),
        "requested_value": req.value, "requested_text": requested_text(&req.value), "old": o.old, "readback": o.readback,
        "result": o.result.as_str(), "reason": o.reason, "dry_run": req.dry_run,
        "requested_ts": format_rfc3339(o.requested), "sent_ts": ts(o.sent), "settled_ts": format_rfc3339(o.settled),
    });
    if security && o.result == WriteResult::Refused {
        let m = format!("write refused: {}/{} = {} by {}: {reason}", req.device, req.tag, req.value, req.origin);
        events.emit_now("security.write_refused", Severity::Warning, source.clone(), m, details.clone());
    }
    events.emit_now("write.audit", severity, source, msg, details);
}

/// The requested value as typed, for the audit: text quoted (`""` stays
/// visible), numbers as written, `inf`/`NaN` kept (JSON has no such number).
fn requested_text(v: &crate::model::Value) -> String {
    match v {
        crate::model::Value::Str(s) => format!("{s:?}"),
        v => v.to_string(),
    }
}

struct Owner {
    tags: HashSet<String>,
    tx: mpsc::Sender<WriteJob>,
}

/// The devices that accept writes and the queues of the tasks that own
/// them. Clone it freely: every clone sees the same registry.
#[derive(Clone, Default)]
pub struct Actuators {
    owners: Arc<Mutex<HashMap<String, Owner>>>,
    events: Option<Events>,
    live: LiveTable,
    counts: Arc<WriteCounts>,
    rogue: RogueWatch,
}

impl std::fmt::Debug for Actuators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actuators").field("devices", &self.devices()).finish()
    }
}

impl Actuators {
    /// An empty registry whose writes emit their events to `events` (none:
    /// logged only, as under `relais import`).
    pub fn new(events: Option<Events>) -> Actuators {
        Actuators { owners: Default::default(), events, live: LiveTable::new(), counts: Arc::default(), rogue: RogueWatch::default() }
    }

    /// The same registry reading tag values from `live` for the interlock
    /// and bad-quality guards (the app feeds it from the committed data).
    pub fn with_live(mut self, live: LiveTable) -> Actuators {
        self.live = live;
        self
    }

    /// The live table the guards read.
    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    /// The rogue-write detector's registry: device sources watch their
    /// writable tags there; every write through [`Actuators::write`] is
    /// marked there ([`crate::component::rogue`]).
    pub fn rogue(&self) -> &RogueWatch {
        &self.rogue
    }

    /// Settled writes by result, shared by every clone (`/metrics`).
    pub fn counts(&self) -> Arc<WriteCounts> {
        self.counts.clone()
    }

    /// Registers the devices one task owns, each with the names of all its
    /// tags (writable or not: the owner refuses the others with a reason),
    /// and returns that task's queue. A device registered again is moved to
    /// the new queue.
    pub fn register(&self, devices: Vec<(String, Vec<String>)>) -> mpsc::Receiver<WriteJob> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        for (device, tags) in devices {
            owners.insert(device, Owner { tags: tags.into_iter().collect(), tx: tx.clone() });
        }
        rx
    }

    /// Forgets `device` (removed by a configuration reload): writes to it are
    /// refused as to an unknown device.
    pub fn unregister(&self, device: &str) {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).remove(device);
        self.rogue.unwatch(device);
    }

    /// The registered device names, sorted.
    pub fn devices(&self) -> Vec<String> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = owners.keys().cloned().collect();
        v.sort();
        v
    }

    /// Records a write refused before it reached the seam (by whoever asked:
    /// the commands layer refusing a wrong token, an expired or malformed
    /// command): one `write.audit` event with result `refused` and `reason`,
    /// like every write, so `relais audit list` shows it. No
    /// `security.write_refused`: the caller emits its own security event.
    pub fn audit_refused(&self, req: &WriteRequest, reason: &str) {
        record(self.events.as_ref(), &self.counts, req, &WriteOutcome::refused(reason), false);
    }

    /// Executes `req` through the task that owns its device and waits for
    /// the outcome. Never fails: every problem is an outcome with a reason,
    /// and every outcome is audited (see the module docs).
    pub async fn write(&self, req: WriteRequest) -> WriteOutcome {
        let (reply, rx) = oneshot::channel();
        let mark = self.rogue.begin(&req);
        let job = WriteJob {
            request: req,
            requested: Timestamp::now(),
            sent: None,
            reply: Some(reply),
            events: self.events.clone(),
            live: self.live.clone(),
            counts: self.counts.clone(),
            rogue: self.rogue.clone(),
            mark,
        };
        match self.enqueue(job) {
            Ok(()) => rx.await.unwrap_or_else(|_| WriteOutcome::failed("stopped: the write was lost (internal error)")),
            Err(refusal) => {
                let (job, outcome) = *refusal;
                job.finish(outcome);
                rx.await.unwrap_or_else(|_| WriteOutcome::failed("stopped: internal error"))
            }
        }
    }

    fn enqueue(&self, job: WriteJob) -> Result<(), Box<(WriteJob, WriteOutcome)>> {
        let tx = {
            let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
            let req = &job.request;
            let Some(owner) = owners.get(&req.device) else {
                let mut known: Vec<&str> = owners.keys().map(|s| s.as_str()).collect();
                known.sort();
                let msg = format!("unknown_device: no device {:?} accepts writes (known: {})", req.device, known.join(", "));
                return Err(Box::new((job, WriteOutcome::refused(msg))));
            };
            if !owner.tags.contains(&req.tag) {
                let msg = format!("unknown_tag: device {:?} has no tag {:?}", req.device, req.tag);
                return Err(Box::new((job, WriteOutcome::refused(msg))));
            }
            owner.tx.clone()
        };
        if job.expired() {
            return Err(Box::new((job, WriteOutcome::refused("expired: the deadline passed before the write was queued"))));
        }
        tx.try_send(job).map_err(|e| {
            Box::new(match e {
                mpsc::error::TrySendError::Full(job) => {
                    (job, WriteOutcome::failed(format!("busy: {WRITE_QUEUE} writes are already queued for this device's link")))
                }
                mpsc::error::TrySendError::Closed(job) => (job, WriteOutcome::failed("stopped: the device's link task is not running")),
            })
        })
    }
}

pub mod guard;
mod request;
pub use request::{Origin, WriteOutcome, WriteRequest, WriteResult};

#[cfg(test)]
mod tests;
