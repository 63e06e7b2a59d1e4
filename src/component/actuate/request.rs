//! What a write asks for ([`WriteRequest`], from whom: [`Origin`]) and how it
//! ended ([`WriteOutcome`], [`WriteResult`]): the values that cross the
//! actuator seam (see the parent module for the contract).

use serde_json::json;
use tokio::time::Instant;

use crate::model::{Timestamp, Value};

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
