//! The rules in the daemon: one task follows the committed samples on the
//! committed-data tap in `seq` order, feeds them to one [`Engine`] holding
//! every rule, advances its clock every 100 ms on the gateway's clock (for
//! delays and staleness), and emits each decision as an event (kind `alarm`
//! or `rule.write`, see [`super::record`]) and a log line.
//!
//! Writes go through the actuator seam ([`crate::component::Actuators`]):
//! a second task takes them in decision order (one at a time, so two writes
//! of a rule never overtake each other) and hands each to the task that owns
//! the device's link, with origin `rule` and a deadline of [`WRITE_DEADLINE`]
//! (a write that waited longer is refused `expired`, never made late). The
//! owner checks the allow-list and limits, writes (or only checks, for
//! `dry_run = true`), logs and audits it (`write.audit`). The evaluation
//! never waits for a write: beyond [`WRITE_BACKLOG`] waiting writes, a new
//! one is dropped with an error log and a `rule.write_dropped` event.
//!
//! Alarm acknowledgements (by MQTT command, [`crate::component::AlarmAcks`])
//! are served by the evaluation task between two samples: the transition is
//! emitted as an `alarm` event like the others, then the caller gets the
//! state after it (or the reason it does not apply).
//!
//! Invariants: rules only see committed samples (never data that could still
//! be lost); their own events go through the ring and the buffer like any
//! event, so the sinks forward them; a rule state starts over at each start
//! of the gateway (alarms are not restored from the buffer: an alarm still
//! active is raised again once its condition holds for its on-delay).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::RuleConfig;
use super::engine::WriteDecision;
use super::engine::{Decision, Engine};
use crate::buffer::tap::{Tap, TapSubscription};
use crate::component::actuate::{Origin, WriteRequest};
use crate::component::alarm_ack::AckRequest;
use crate::component::{Actuators, AlarmAcks};
use crate::ingest::Events;
use crate::model::{EventSource, Record, Severity, Timestamp};

/// Period of the clock tick (delays and staleness resolve within it).
pub const TICK: Duration = Duration::from_millis(100);

/// How long a rule's write may wait before the device's task takes it.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Writes decided and not yet handed to the actuator seam.
pub const WRITE_BACKLOG: usize = 1024;

/// What the rules tasks talk to besides the tap: where events go, the
/// actuator seam for writes, the queue of alarm acknowledgements.
pub struct Links {
    /// The gateway's event emitter.
    pub events: Events,
    /// The actuator seam.
    pub actuators: Actuators,
    /// Where acknowledgements are registered.
    pub acks: AlarmAcks,
}

/// Starts the tasks of the rules (evaluation, writes); they end when `stop`
/// is cancelled or the buffer closes.
pub fn spawn(rules: Vec<RuleConfig>, tap: &Arc<Tap>, links: Links, stop: CancellationToken) -> Vec<JoinHandle<()>> {
    let n = rules.len();
    let engine = Engine::new(rules);
    // Subscribed before any source starts: no sample is missed.
    let sub = tap.subscribe();
    let acks = links.acks.register();
    tracing::info!(rules = n, "rules running");
    let (tx, rx) = tokio::sync::mpsc::channel(WRITE_BACKLOG);
    vec![tokio::spawn(run(engine, (sub, acks), links.events, tx, stop.clone())), tokio::spawn(writer(rx, links.actuators, stop))]
}

/// Logs and emits the decisions, and queues the writes.
pub fn publish(decisions: Vec<Decision>, events: &Events, writes: &tokio::sync::mpsc::Sender<WriteDecision>) {
    for d in decisions {
        match &d {
            Decision::Alarm(a) if a.severity >= Severity::Warning => tracing::warn!(rule = %a.rule, "{}", a.line()),
            Decision::Alarm(a) => tracing::info!(rule = %a.rule, "{}", a.line()),
            Decision::Write(w) => tracing::info!(rule = %w.rule, "{}", w.line()),
        }
        events.emit(d.to_event());
        if let Decision::Write(w) = d
            && let Err(e) = writes.try_send(w)
        {
            let w = match e {
                tokio::sync::mpsc::error::TrySendError::Full(w) | tokio::sync::mpsc::error::TrySendError::Closed(w) => w,
            };
            let msg = format!("rule {}: write {} = {} dropped: {WRITE_BACKLOG} writes already wait", w.rule, w.tag, w.value);
            tracing::error!("{msg}");
            events.emit_now(
                "rule.write_dropped",
                Severity::Error,
                EventSource::Rule(w.rule.clone()),
                msg,
                serde_json::json!({"tag": w.tag}),
            );
        }
    }
}

/// Hands the writes to the actuator seam, one at a time, in decision order.
async fn writer(mut rx: tokio::sync::mpsc::Receiver<WriteDecision>, actuators: Actuators, stop: CancellationToken) {
    loop {
        let w = tokio::select! {
            _ = stop.cancelled() => return,
            w = rx.recv() => match w { Some(w) => w, None => return },
        };
        let (device, tag) = w.tag.split_once('/').unwrap_or((w.tag.as_str(), ""));
        let mut req = WriteRequest::new(device, tag, w.value.clone(), Origin::Rule { id: w.rule.to_string() });
        req.deadline = Some(tokio::time::Instant::now() + WRITE_DEADLINE);
        req.dry_run = w.dry_run;
        // The seam logs and audits the outcome (`write.audit`).
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = actuators.write(req) => {}
        }
    }
}

async fn run(
    mut engine: Engine,
    (mut sub, mut acks): (TapSubscription, tokio::sync::mpsc::Receiver<AckRequest>),
    events: Events,
    writes: tokio::sync::mpsc::Sender<WriteDecision>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut answer = None;
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(a) = acks.recv() => {
                let r = engine.acknowledge(&a.rule, &a.by, Timestamp::now()).map(|s| s.as_str());
                answer = Some((a.reply, r));
            }
            t = sub.recv() => {
                let Some(t) = t else { return };
                if t.missed_samples > 0 {
                    // Fell more than the tap's memory behind: rules decided on what they saw.
                    tracing::warn!(missed = t.missed_samples, range = ?t.missed_range, "rules missed committed samples");
                }
                for s in t.records().filter_map(Record::as_sample) {
                    engine.on_sample(s);
                }
            }
            _ = tick.tick() => engine.advance(Timestamp::now()),
        }
        publish(engine.take(), &events, &writes);
        // After the transition's event: the caller sees it recorded.
        if let Some((reply, r)) = answer {
            let _ = reply.send(r);
        }
    }
}
