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
//! - **The owner decides the rest**: the allow-list (`writable = true` on the
//!   tag), limits (`min`, `max`, `max_rate`), that the value fits the tag's
//!   type, the deadline (checked again when the job is taken), and the
//!   result of the device itself. It ends every job with
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
//!
//! Reasons are `code: detail` like sample reasons: `unknown_device`,
//! `unknown_tag`, `expired`, `busy`, `not_writable`, `out_of_range`,
//! `rate_exceeded`, `bad_value`, `device_exception(N)`, `timeout`,
//! `comm_failure`, `readback_mismatch`, `dry_run`, `stopped`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::ingest::Events;
use crate::model::{EventSource, Severity, Timestamp, Value, format_rfc3339};

/// Jobs an owning task's queue holds before [`Actuators::write`] answers `busy`.
pub const WRITE_QUEUE: usize = 64;

/// Who asked for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `[[rule]]` action, by the rule's id.
    Rule {
        /// The rule's id.
        id: String,
    },
    /// A command (MQTT), by its command id and the client that sent it.
    Command {
        /// The command's id (unique per command; deduplication key).
        id: String,
        /// The MQTT client id or user, when known.
        client: Option<String>,
    },
    /// `relais write` on the command line.
    Cli,
}

impl Origin {
    /// `rule`, `command` or `cli`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Rule { .. } => "rule",
            Origin::Command { .. } => "command",
            Origin::Cli => "cli",
        }
    }

    /// As JSON for events: `{"kind": "rule", "id": …}`, `{"kind": "command", "id": …, "client": …}`, `{"kind": "cli"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Origin::Rule { id } => json!({"kind": "rule", "id": id}),
            Origin::Command { id, client } => json!({"kind": "command", "id": id, "client": client}),
            Origin::Cli => json!({"kind": "cli"}),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Rule { id } => write!(f, "rule {id:?}"),
            Origin::Command { id, client: Some(c) } => write!(f, "command {id:?} from {c:?}"),
            Origin::Command { id, client: None } => write!(f, "command {id:?}"),
            Origin::Cli => f.write_str("the command line"),
        }
    }
}

/// One write asked for: a value for one tag of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    /// Device name (`[[device]] name`).
    pub device: String,
    /// Tag name of that device.
    pub tag: String,
    /// The value in engineering units (after scale and offset, like the
    /// samples of the tag): the owner encodes it with the tag's type, byte
    /// order, scale and offset, and refuses a value that does not fit.
    pub value: Value,
    /// Who asks.
    pub origin: Origin,
    /// Refused (`expired`) when the owner takes the job after this instant;
    /// `None`: no deadline.
    pub deadline: Option<Instant>,
    /// Check everything (allow-list, limits, encoding) but write nothing:
    /// the result is `ok` with reason `dry_run: …` when the write would be tried.
    pub dry_run: bool,
}

impl WriteRequest {
    /// A request without deadline, not a dry run.
    pub fn new(device: &str, tag: &str, value: Value, origin: Origin) -> WriteRequest {
        WriteRequest { device: device.into(), tag: tag.into(), value, origin, deadline: None, dry_run: false }
    }
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteResult {
    /// The device confirmed the write (and the read-back, when enabled, agreed).
    Ok,
    /// Not attempted: not allowed, out of limits, unknown tag, expired… (a security event).
    Refused,
    /// Attempted and not applied: an exception from the device, a connection
    /// that failed before the request went out, a read-back that disagrees.
    Failed,
    /// The request went out and its answer never came: it may or may not
    /// have been applied, and it is never re-sent blindly.
    Unknown,
}

impl WriteResult {
    /// `ok`, `refused`, `failed`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteResult::Ok => "ok",
            WriteResult::Refused => "refused",
            WriteResult::Failed => "failed",
            WriteResult::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for WriteResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The result.
    pub result: WriteResult,
    /// Why (`code: detail`, see the module docs); `None` for a plain `ok`.
    pub reason: Option<String>,
    /// The tag's value read before writing (read-modify-write, or read-back
    /// enabled), in engineering units; `None` when not read.
    pub old: Option<Value>,
    /// The tag's value read after writing, in engineering units; `None` when
    /// not read (read-back off, or the write did not go out).
    pub readback: Option<Value>,
    /// When [`Actuators::write`] was called (UTC).
    pub requested: Timestamp,
    /// When the write request went out to the device; `None` when it did not.
    pub sent: Option<Timestamp>,
    /// When the outcome was settled.
    pub settled: Timestamp,
}

impl WriteOutcome {
    /// An outcome with `result` and `reason`; the times are set by
    /// [`WriteJob::finish`] (or [`Actuators::write`] for early refusals).
    pub fn new(result: WriteResult, reason: Option<String>) -> WriteOutcome {
        let now = Timestamp::now();
        WriteOutcome { result, reason, old: None, readback: None, requested: now, sent: None, settled: now }
    }

    /// `refused` with `reason`.
    pub fn refused(reason: impl Into<String>) -> WriteOutcome {
        WriteOutcome::new(WriteResult::Refused, Some(reason.into()))
    }

    /// `failed` with `reason`.
    pub fn failed(reason: impl Into<String>) -> WriteOutcome {
        WriteOutcome::new(WriteResult::Failed, Some(reason.into()))
    }

    /// The reason's code (the part before `:`), `""` without reason.
    pub fn code(&self) -> &str {
        self.reason.as_deref().map_or("", |r| r.split(':').next().unwrap_or(r))
    }
}

/// One write handed to its owning task, with the way back to the caller.
#[derive(Debug)]
pub struct WriteJob {
    /// The request.
    pub request: WriteRequest,
    requested: Timestamp,
    sent: Option<Timestamp>,
    reply: Option<oneshot::Sender<WriteOutcome>>,
    events: Option<Events>,
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
        record(self.events.as_ref(), &self.request, &outcome);
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

/// Logs a settled write and emits its events.
fn record(events: Option<&Events>, req: &WriteRequest, o: &WriteOutcome) {
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
        "requested_value": req.value, "old": o.old, "readback": o.readback,
        "result": o.result.as_str(), "reason": o.reason, "dry_run": req.dry_run,
        "requested_ts": format_rfc3339(o.requested), "sent_ts": ts(o.sent), "settled_ts": format_rfc3339(o.settled),
    });
    if o.result == WriteResult::Refused {
        let m = format!("write refused: {}/{} = {} by {}: {reason}", req.device, req.tag, req.value, req.origin);
        events.emit_now("security.write_refused", Severity::Warning, source.clone(), m, details.clone());
    }
    events.emit_now("write.audit", severity, source, msg, details);
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
        Actuators { owners: Default::default(), events }
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

    /// The registered device names, sorted.
    pub fn devices(&self) -> Vec<String> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = owners.keys().cloned().collect();
        v.sort();
        v
    }

    /// Executes `req` through the task that owns its device and waits for
    /// the outcome. Never fails: every problem is an outcome with a reason,
    /// and every outcome is audited (see the module docs).
    pub async fn write(&self, req: WriteRequest) -> WriteOutcome {
        let (reply, rx) = oneshot::channel();
        let job = WriteJob { request: req, requested: Timestamp::now(), sent: None, reply: Some(reply), events: self.events.clone() };
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

#[cfg(test)]
mod tests;
