//! The rules in the daemon: one task follows the committed samples on the
//! committed-data tap in `seq` order, feeds them to one [`Engine`] holding
//! every rule, advances its clock every 100 ms on the gateway's clock (for
//! delays and staleness), and emits each decision as an event (kind `alarm`
//! or `rule.write`, see [`super::record`]) and a log line.
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
use super::engine::{Decision, Engine};
use crate::buffer::tap::{Tap, TapSubscription};
use crate::ingest::Events;
use crate::model::{Record, Severity, Timestamp};

/// Period of the clock tick (delays and staleness resolve within it).
pub const TICK: Duration = Duration::from_millis(100);

/// Starts the task of the rules; it ends when `stop` is cancelled or the buffer closes.
pub fn spawn(rules: Vec<RuleConfig>, tap: &Arc<Tap>, events: Events, stop: CancellationToken) -> JoinHandle<()> {
    let n = rules.len();
    let engine = Engine::new(rules);
    // Subscribed before any source starts: no sample is missed.
    let sub = tap.subscribe();
    tracing::info!(rules = n, "rules running");
    tokio::spawn(run(engine, sub, events, stop))
}

/// Logs and emits the decisions.
pub fn publish(decisions: Vec<Decision>, events: &Events) {
    for d in decisions {
        match &d {
            Decision::Alarm(a) if a.severity >= Severity::Warning => tracing::warn!(rule = %a.rule, "{}", a.line()),
            Decision::Alarm(a) => tracing::info!(rule = %a.rule, "{}", a.line()),
            Decision::Write(w) => tracing::info!(rule = %w.rule, "{}", w.line()),
        }
        events.emit(d.to_event());
    }
}

async fn run(mut engine: Engine, mut sub: TapSubscription, events: Events, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
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
        publish(engine.take(), &events);
    }
}
