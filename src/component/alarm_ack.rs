//! Alarm acknowledgements: the seam between whoever acknowledges an alarm
//! (an MQTT command, later the app) and the task that runs the rules, which
//! owns the alarm state machines.
//!
//! ```text
//!  command ──AckRequest──► AlarmAcks::acknowledge ──► rules task (bounded queue)
//!          ◄──Result<state, reason>──                ◄── reply (after the transition is emitted)
//! ```
//!
//! # Contract
//!
//! - The rules task calls [`AlarmAcks::register`] once and serves the queue
//!   between two evaluations; registering again replaces the queue.
//! - [`AlarmAcks::acknowledge`] never fails with an error type: every
//!   problem is a reason (`no_rules`, `busy`, `unknown_rule`,
//!   `nothing_to_acknowledge`, `stopped`), `code: detail` like write reasons.
//! - A successful acknowledgement is one alarm transition `acknowledged`,
//!   emitted by the rules task as an `alarm` event like every transition
//!   (with `by`); the reply carries the state after it
//!   (`acknowledged` or `normal`).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

/// Acknowledgements the rules task's queue holds before [`AlarmAcks::acknowledge`] answers `busy`.
pub const ACK_QUEUE: usize = 64;

/// One acknowledgement asked for.
#[derive(Debug)]
pub struct AckRequest {
    /// The rule's name (`[[rule]] name`).
    pub rule: String,
    /// Who acknowledges, as recorded in the alarm event's `by`
    /// (`command "c-17" from "hmi-2"`).
    pub by: String,
    /// Where the rules task answers: the alarm state after the
    /// acknowledgement (`acknowledged`, `normal`), or the reason it was refused.
    pub reply: oneshot::Sender<Result<&'static str, String>>,
}

/// The queue of the task that owns the alarms. Clone it freely: every clone
/// sees the same registration.
#[derive(Clone, Default, Debug)]
pub struct AlarmAcks {
    tx: Arc<Mutex<Option<mpsc::Sender<AckRequest>>>>,
}

impl AlarmAcks {
    /// Registers the task that owns the alarms and returns its queue.
    pub fn register(&self) -> mpsc::Receiver<AckRequest> {
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Acknowledges the alarm of rule `rule` on behalf of `by` and waits for
    /// the rules task: the state after it, or why not (see the module docs).
    pub async fn acknowledge(&self, rule: &str, by: &str) -> Result<&'static str, String> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else {
            return Err(format!("no_rules: no [[rule]] is configured, so there is no alarm {rule:?} to acknowledge"));
        };
        let (reply, rx) = oneshot::channel();
        let req = AckRequest { rule: rule.to_string(), by: by.to_string(), reply };
        tx.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => format!("busy: {ACK_QUEUE} acknowledgements already wait for the rules task"),
            mpsc::error::TrySendError::Closed(_) => "stopped: the rules task is not running".to_string(),
        })?;
        rx.await.unwrap_or_else(|_| Err("stopped: the rules task stopped before answering".into()))
    }
}
