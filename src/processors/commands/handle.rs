//! One command, from its publish to its response.
//!
//! [`Handler::on_publish`] runs in the connection's task, one publish after
//! the other (so PUBACKs go out in arrival order, as MQTT requires), and
//! returns once the command may be acknowledged to the broker: answered
//! (refused, or a duplicate answered from the store) or durably recorded
//! `pending`. The write itself (or the alarm acknowledgement) then runs in a
//! task of its own, which records the outcome and publishes the response.
//!
//! Order of checks: topic → payload (and a `response_topic` that is no
//! command topic) → retained → allow-list → token →
//! the store (a known id is answered with its stored outcome, never run
//! again) → `require_ts` and age (`expired`, recorded) → recorded `pending`
//! → executed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as J, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, watch};

use super::config::CommandsConfig;
use super::payload::{Command, age, parse, response};
use super::store::{Seen, Store};
use super::topic::{Target, allowed};
use crate::component::actuate::{Origin, WriteRequest};
use crate::component::{Actuators, AlarmAcks};
use crate::ingest::Events;
use crate::model::{EventSource, Severity, Timestamp, Value};

/// A response to publish: topic and JSON body.
pub type Outgoing = (String, J);

/// Event kind of a refused command.
pub const REFUSED_KIND: &str = "security.command_refused";

/// What every command needs.
pub struct Handler {
    /// The configuration.
    pub cfg: Arc<CommandsConfig>,
    /// The ids seen.
    pub store: Arc<Mutex<Store>>,
    /// Writes go through here.
    pub actuators: Actuators,
    /// Alarm acknowledgements go through here.
    pub acks: AlarmAcks,
    /// Security events.
    pub events: Events,
    /// Responses to publish (by the connection's task).
    pub out: mpsc::UnboundedSender<Outgoing>,
    /// Ids being executed, with where their response will appear.
    inflight: Arc<Mutex<HashMap<String, watch::Receiver<Option<J>>>>>,
}

/// A command to answer without running it.
struct Refusal<'a> {
    target: &'a Target,
    id: Option<&'a str>,
    reason: String,
    response_topic: Option<String>,
    value: Option<Value>,
    client: Option<String>,
}

impl Handler {
    /// A handler.
    pub fn new(
        cfg: Arc<CommandsConfig>,
        store: Store,
        actuators: Actuators,
        acks: AlarmAcks,
        events: Events,
        out: mpsc::UnboundedSender<Outgoing>,
    ) -> Handler {
        Handler { cfg, store: Arc::new(Mutex::new(store)), actuators, acks, events, out, inflight: Arc::default() }
    }

    async fn db<T: Send + 'static>(&self, f: impl FnOnce(&Store) -> rusqlite::Result<T> + Send + 'static) -> Result<T, String> {
        db(&self.store, f).await
    }

    /// Handles one publish up to the moment it may be acknowledged (see the module docs).
    pub async fn on_publish(&self, topic: &str, payload: &[u8], retain: bool) {
        let received = Timestamp::now();
        let Some(target) = self.cfg.topics.route(topic) else {
            tracing::warn!(topic, "a message on a command filter that is no command topic; ignored");
            return;
        };
        let cmd = match parse(payload, &target, self.cfg.default_ttl, self.cfg.dedup_window) {
            Ok(c) => c,
            Err(m) => {
                let (id, response_topic) = (m.id.clone(), m.response_topic.clone());
                let r = Refusal { target: &target, id: id.as_deref(), reason: m.reason, response_topic, value: None, client: None };
                return self.refuse(r);
            }
        };
        let refusal = |reason: String| Refusal {
            target: &target,
            id: Some(&cmd.id),
            reason,
            response_topic: cmd.response_topic.clone(),
            value: cmd.value.clone(),
            client: cmd.client.clone(),
        };
        if let Some(rt) = cmd.response_topic.as_deref()
            && self.cfg.topics.route(rt).is_some()
        {
            // Answered on the result topic: never on a command topic.
            let reason = format!("bad_payload: `response_topic` {rt:?} is a command topic of this gateway");
            let r = Refusal { response_topic: None, ..refusal(reason) };
            return self.refuse(r);
        }
        if retain {
            return self.refuse(refusal("retained: a command must not be retained (it would run again for every new subscriber)".into()));
        }
        if let Some(a) = &self.cfg.allow
            && !allowed(a, &target)
        {
            return self.refuse(refusal(format!("not_allowed: {target} is not in [commands] allow")));
        }
        if !self.token_ok(&target, cmd.token.as_deref()) {
            let why = if cmd.token.is_some() { "the token is wrong" } else { "the command carries no `token`" };
            return self.refuse(refusal(format!("bad_token: {why}")));
        }
        let (id, t) = (cmd.id.clone(), target.clone());
        match self.db(move |s| s.lookup(&id, &t)).await {
            Err(e) => self.refuse(refusal(format!("store: the command store failed ({e}); nothing was written"))),
            Ok(Seen::OtherTarget(k)) => self.refuse(refusal(format!("duplicate_id: id {:?} was already used for {k}", cmd.id))),
            Ok(Seen::Done(r)) => self.answer(&target, &cmd, duplicate(r)),
            Ok(Seen::Pending) => self.answer_when_settled(&target, &cmd).await,
            Ok(Seen::New) => self.start(target, cmd, received).await,
        }
    }

    /// The token check: the grants that cover `target`, else `token`, else none.
    fn token_ok(&self, target: &Target, given: Option<&str>) -> bool {
        let covering: Vec<&str> = self.cfg.grants.iter().filter(|g| allowed(&g.targets, target)).map(|g| g.token.expose()).collect();
        let wanted = if covering.is_empty() { self.cfg.token.iter().map(|t| t.expose()).collect() } else { covering };
        // Every candidate compared, in constant time each.
        wanted.is_empty() || wanted.iter().fold(false, |ok, w| ok | same_token(given, w))
    }

    /// Refuses (`expired`, recorded so a redelivery answers the same) or
    /// records the id pending and starts the execution.
    async fn start(&self, target: Target, cmd: Command, received: Timestamp) {
        let now = Timestamp::now();
        let old = age(&cmd, received, now);
        let expired = if cmd.ts.is_none() && self.cfg.require_ts {
            Some("expired: the command has no `ts` and [commands] require_ts = true".to_string())
        } else {
            (old > cmd.ttl).then(|| {
                let from = if cmd.ts.is_some() { "its ts" } else { "its receipt" };
                format!("expired: the command is {} old (from {from}), its ttl is {}", fmt_d(old), fmt_d(cmd.ttl))
            })
        };
        if let Some(reason) = expired {
            let r = response(Some(&cmd.id), &target, "refused", Some(&reason), json!({"value": cmd.value}));
            let (id, r2) = (cmd.id.clone(), r.clone());
            if let Err(e) = self.db(move |s| s.finish(&id, &r2)).await {
                tracing::error!(id = %cmd.id, error = %e, "cannot record a refused command");
            }
            self.security(&target, Some(&cmd.id), &reason, cmd.client.as_deref());
            self.audit(&target, &cmd.id, cmd.value.clone(), cmd.client.clone(), &reason);
            return self.answer(&target, &cmd, r);
        }
        let (id, t) = (cmd.id.clone(), target.clone());
        if let Err(e) = self.db(move |s| s.begin(&id, &t)).await {
            let reason = format!("store: the command could not be recorded ({e}); nothing was written");
            let r = response(Some(&cmd.id), &target, "failed", Some(&reason), J::Null);
            return self.answer(&target, &cmd, r);
        }
        let (tx, rx) = watch::channel(None);
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).insert(cmd.id.clone(), rx);
        let remaining = cmd.ttl.saturating_sub(old);
        let job = Job {
            store: self.store.clone(),
            actuators: self.actuators.clone(),
            acks: self.acks.clone(),
            out: self.out.clone(),
            inflight: self.inflight.clone(),
            default_topic: self.cfg.topics.result_for(&target),
        };
        tokio::spawn(job.run(target, cmd, remaining, tx));
    }

    /// A duplicate of a command still executing: answered when it settles.
    async fn answer_when_settled(&self, target: &Target, cmd: &Command) {
        let rx = self.inflight.lock().unwrap_or_else(|e| e.into_inner()).get(&cmd.id).cloned();
        let topic = cmd.response_topic.clone().unwrap_or_else(|| self.cfg.topics.result_for(target));
        let out = self.out.clone();
        match rx {
            Some(mut rx) => {
                tokio::spawn(async move {
                    if let Ok(r) = rx.wait_for(Option::is_some).await {
                        let _ = out.send((topic, duplicate(r.clone().unwrap_or(J::Null))));
                    }
                });
            }
            // Settled between the lookup and now: read it again.
            None => {
                let (id, t) = (cmd.id.clone(), target.clone());
                let r = match self.db(move |s| s.lookup(&id, &t)).await {
                    Ok(Seen::Done(r)) => duplicate(r),
                    _ => response(Some(&cmd.id), target, "unknown", Some("pending: the command's outcome is not known"), J::Null),
                };
                let _ = out.send((topic, r));
            }
        }
    }

    fn answer(&self, target: &Target, cmd: &Command, r: J) {
        let topic = cmd.response_topic.clone().unwrap_or_else(|| self.cfg.topics.result_for(target));
        let _ = self.out.send((topic, r));
    }

    /// Answers `refused`, emits `security.command_refused` and, for a write,
    /// its audit line. Nothing is recorded: the same payload is refused the
    /// same way again.
    fn refuse(&self, r: Refusal<'_>) {
        self.security(r.target, r.id, &r.reason, r.client.as_deref());
        self.audit(r.target, r.id.unwrap_or(""), r.value.clone(), r.client.clone(), &r.reason);
        let body = response(r.id, r.target, "refused", Some(&r.reason), J::Null);
        let topic = r.response_topic.unwrap_or_else(|| self.cfg.topics.result_for(r.target));
        let _ = self.out.send((topic, body));
    }

    fn security(&self, target: &Target, id: Option<&str>, reason: &str, client: Option<&str>) {
        let msg = format!("command {:?} on {target} refused: {reason}", id.unwrap_or("(no id)"));
        tracing::warn!("{msg}");
        let source = match target {
            Target::Tag { device, tag } => EventSource::Tag { device: device.as_str().into(), tag: tag.as_str().into() },
            Target::Alarm { rule } => EventSource::Rule(rule.as_str().into()),
        };
        let details = json!({"id": id, "target": target.to_string(), "reason": reason, "client": client});
        self.events.emit_now(REFUSED_KIND, Severity::Warning, source, msg, details);
    }

    fn audit(&self, target: &Target, id: &str, value: Option<Value>, client: Option<String>, reason: &str) {
        if let Target::Tag { device, tag } = target {
            let req = WriteRequest::new(device, tag, value.unwrap_or(Value::Null), Origin::Command { id: id.to_string(), client });
            self.actuators.audit_refused(&req, reason);
        }
    }
}

/// The execution of one recorded command.
struct Job {
    store: Arc<Mutex<Store>>,
    actuators: Actuators,
    acks: AlarmAcks,
    out: mpsc::UnboundedSender<Outgoing>,
    inflight: Arc<Mutex<HashMap<String, watch::Receiver<Option<J>>>>>,
    default_topic: String,
}

impl Job {
    async fn run(self, target: Target, cmd: Command, remaining: Duration, tx: watch::Sender<Option<J>>) {
        let origin = Origin::Command { id: cmd.id.clone(), client: cmd.client.clone() };
        let r = match &target {
            Target::Tag { device, tag } => {
                let value = cmd.value.clone().unwrap_or(Value::Null);
                let mut req = WriteRequest::new(device, tag, value.clone(), origin);
                req.deadline = Some(tokio::time::Instant::now() + remaining);
                // The seam audits it (`write.audit`) and emits refusals as security events.
                let o = self.actuators.write(req).await;
                let extra = json!({"value": value, "old": o.old, "readback": o.readback});
                response(Some(&cmd.id), &target, o.result.as_str(), o.reason.as_deref(), extra)
            }
            Target::Alarm { rule } => match self.acks.acknowledge(rule, &origin.to_string()).await {
                Ok(state) => response(Some(&cmd.id), &target, "ok", None, json!({"state": state})),
                Err(e) => {
                    let refused = ["unknown_rule", "nothing_to_acknowledge", "no_rules"].iter().any(|c| e.starts_with(c));
                    response(Some(&cmd.id), &target, if refused { "refused" } else { "failed" }, Some(&e), J::Null)
                }
            },
        };
        let (id, r2) = (cmd.id.clone(), r.clone());
        if let Err(e) = db(&self.store, move |s| s.finish(&id, &r2)).await {
            // Left pending: settled `unknown` at the next start, never run again.
            tracing::error!(id = %cmd.id, error = %e, "cannot record a command's outcome");
        }
        let _ = tx.send(Some(r.clone()));
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&cmd.id);
        let _ = self.out.send((cmd.response_topic.unwrap_or(self.default_topic), r));
    }
}

async fn db<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&Store) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store.lock().unwrap_or_else(|e| e.into_inner())).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// A stored response answered again: `"duplicate": true`.
fn duplicate(mut r: J) -> J {
    if r.is_object() {
        r["duplicate"] = J::Bool(true);
    }
    r
}

/// Compares the SHA-256 of both in constant time (neither the content nor
/// the length of the token leaks through timing).
fn same_token(given: Option<&str>, want: &str) -> bool {
    let (a, b) = (Sha256::digest(given.unwrap_or("").as_bytes()), Sha256::digest(want.as_bytes()));
    given.is_some() && bool::from(a.as_slice().ct_eq(b.as_slice()))
}

fn fmt_d(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}
