//! Configuration reload (issue 14): `POST /api/reload`, SIGHUP and
//! `relais reload` make the running gateway read its configuration file again.
//!
//! How a reload goes (one at a time, in the task that runs the gateway):
//! 1. the file is read and validated exactly like `relais check`
//!    ([`Config::load`]): every error is collected; any error refuses the
//!    reload ([`Outcome::Invalid`]) and the running configuration stays;
//! 2. changes a running gateway cannot take (`[gateway]`, `[buffer]`,
//!    `[admin] listen`, see [`plan::needs_restart`]) refuse the whole reload
//!    ([`Outcome::NeedsRestart`]): nothing is half-applied;
//! 3. otherwise the running units are compared with the new ones
//!    ([`plan::diff`]): removed and changed units stop (sources first, then
//!    the ring is committed, then sinks), added and changed units start
//!    (sinks first). Unchanged units keep running and keep their connections;
//!    `[admin]` token and readiness settings apply at once.
//!
//! Invariants:
//! - nothing accepted is lost: a stopped source's samples already in the
//!   ring are committed before its sinks could stop (a barrier); a restarted
//!   sink resumes from its cursor (it keeps the same one, see
//!   [`crate::buffer::CursorSet`]); a removed sink's cursor is dropped so it
//!   no longer holds retention back;
//! - every reload, applied or refused, is logged and emits an event:
//!   `config.reloaded` (what changed) or `config.reload_refused` (why);
//! - secrets are compared as salted digests and never appear in a report.

pub mod plan;
mod supervisor;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::diag::ConfigError;
use crate::model::{EventSource, Severity};
pub use supervisor::Supervisor;

/// What a reload did.
#[derive(Debug)]
pub enum Outcome {
    /// The new configuration runs (an empty plan: nothing differed).
    Applied {
        /// The file read.
        file: String,
        /// What changed.
        plan: plan::Plan,
        /// Warnings of the new configuration.
        warnings: Vec<String>,
        /// Components that did not start (their error); the previous
        /// configuration of their unit was started again when there was one.
        failed: Vec<String>,
    },
    /// The file has errors: nothing changed.
    Invalid {
        /// The file read.
        file: String,
        /// Every error, with file, line, column and key.
        errors: Vec<ConfigError>,
    },
    /// The file changes what only a restart applies: nothing changed.
    NeedsRestart {
        /// The file read.
        file: String,
        /// One sentence per setting.
        reasons: Vec<String>,
    },
    /// This gateway cannot reload (it was not started from a file).
    Unavailable(String),
}

impl Outcome {
    /// The HTTP status of `POST /api/reload`: 200 applied, 422 invalid file,
    /// 409 restart needed, 503 unavailable, 500 when a component failed to start.
    pub fn http_status(&self) -> u16 {
        match self {
            Outcome::Applied { failed, .. } if failed.is_empty() => 200,
            Outcome::Applied { .. } => 500,
            Outcome::Invalid { .. } => 422,
            Outcome::NeedsRestart { .. } => 409,
            Outcome::Unavailable(_) => 503,
        }
    }

    /// The JSON body of `POST /api/reload` (see `docs/configuration.md`).
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Applied { file, plan, warnings, failed } => json!({
                "status": "applied", "file": file, "changed": plan.changed, "added": plan.added,
                "removed": plan.removed, "restarted_along": plan.along, "unchanged": plan.unchanged,
                "warnings": warnings, "failed": failed,
            }),
            Outcome::Invalid { file, errors } => json!({
                "status": "refused", "reason": "invalid", "file": file,
                "message": format!("{} error(s) in {file}; the running configuration stays", errors.len()),
                "errors": errors.iter().map(|e| json!({
                    "file": e.file, "line": e.line, "column": e.col, "key": e.key, "message": e.message, "text": e.to_string(),
                })).collect::<Vec<_>>(),
            }),
            Outcome::NeedsRestart { file, reasons } => json!({
                "status": "refused", "reason": "restart_needed", "file": file,
                "message": "these changes need a restart of relais (systemctl restart relais); nothing was applied, the running configuration stays",
                "errors": reasons,
            }),
            Outcome::Unavailable(why) => json!({"status": "refused", "reason": "unavailable", "message": why}),
        }
    }

    /// One line for the log and the event.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Applied { file, plan, failed, .. } if plan.is_empty() && failed.is_empty() => {
                format!("configuration {file} reloaded: nothing changed")
            }
            Outcome::Applied { file, plan, failed, .. } => {
                let mut parts = Vec::new();
                for (what, v) in
                    [("changed", &plan.changed), ("added", &plan.added), ("removed", &plan.removed), ("restarted along", &plan.along)]
                {
                    if !v.is_empty() {
                        parts.push(format!("{what} {}", v.join(", ")));
                    }
                }
                if !failed.is_empty() {
                    parts.push(format!("FAILED to start {}", failed.join("; ")));
                }
                format!("configuration {file} reloaded: {}; {} unchanged", parts.join("; "), plan.unchanged)
            }
            Outcome::Invalid { file, errors } => {
                format!("configuration {file} NOT reloaded: {} error(s); the running configuration stays", errors.len())
            }
            Outcome::NeedsRestart { file, reasons } => {
                format!("configuration {file} NOT reloaded, nothing applied: {}", reasons.join("; "))
            }
            Outcome::Unavailable(why) => format!("configuration NOT reloaded: {why}"),
        }
    }
}

/// A reload asked for: by whom, and where the outcome goes.
pub struct Request {
    /// `api`, `SIGHUP`.
    pub origin: &'static str,
    /// Where the outcome is sent (none for a signal).
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// Asks the running gateway for reloads (cheap to clone).
#[derive(Clone, Debug)]
pub struct Reloader(mpsc::Sender<Request>);

impl Reloader {
    /// A handle and the queue the gateway reads.
    pub fn channel() -> (Reloader, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(8);
        (Reloader(tx), rx)
    }

    /// Reloads and waits for the outcome (`Unavailable` when the gateway stopped).
    pub async fn reload(&self, origin: &'static str) -> Outcome {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Request { origin, reply: Some(reply) }).await.is_err() {
            return Outcome::Unavailable("the gateway is stopping".into());
        }
        rx.await.unwrap_or_else(|_| Outcome::Unavailable("the gateway is stopping".into()))
    }

    /// Asks for a reload without waiting (a signal; the outcome is logged).
    pub fn signal(&self, origin: &'static str) {
        if self.0.try_send(Request { origin, reply: None }).is_err() {
            tracing::warn!("{origin}: a reload is already queued");
        }
    }
}

/// Where SIGHUP goes: the gateway of `relais run` (see [`on_hangup`]).
static HANGUP: Mutex<Option<Reloader>> = Mutex::new(None);

/// The reloader SIGHUP asks, when a gateway started from a file runs.
pub(super) fn hangup_target() -> Option<Reloader> {
    HANGUP.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes SIGHUP reload through `r` until the guard is dropped.
pub fn on_hangup(r: Reloader) -> HangupGuard {
    *HANGUP.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    HangupGuard(())
}

/// Restores "SIGHUP ignored" when dropped.
pub struct HangupGuard(());

impl Drop for HangupGuard {
    fn drop(&mut self) {
        *HANGUP.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The file a gateway reloads and the configuration it runs.
pub(super) struct Source {
    /// The configuration file given to `relais run`.
    pub path: PathBuf,
    /// The running configuration.
    pub running: Config,
}

impl super::Gateway {
    /// Reads the configuration file again and applies it (see the module docs).
    pub async fn reload(&mut self, origin: &'static str) -> Outcome {
        let out = self.reload_inner().await;
        let summary = summary_line(origin, &out);
        match &out {
            Outcome::Applied { failed, .. } if failed.is_empty() => tracing::info!("{summary}"),
            Outcome::Invalid { errors, .. } => {
                for e in errors {
                    tracing::warn!("reload: {e}");
                }
                tracing::warn!("{summary}");
            }
            _ => tracing::warn!("{summary}"),
        }
        if let Some(ev) = &self.events {
            let (kind, sev) = match &out {
                Outcome::Applied { failed, .. } if failed.is_empty() => ("config.reloaded", Severity::Info),
                Outcome::Applied { .. } => ("config.reloaded", Severity::Error),
                _ => ("config.reload_refused", Severity::Warning),
            };
            let mut details = out.to_json();
            if let Value::Object(m) = &mut details {
                m.insert("origin".into(), origin.into());
            }
            ev.emit_now(kind, sev, EventSource::Gateway, summary, details);
        }
        out
    }

    async fn reload_inner(&mut self) -> Outcome {
        let Some(src) = &self.config else {
            return Outcome::Unavailable("this gateway was not started from a configuration file (relais run --config FILE)".into());
        };
        let path = src.path.clone();
        let file = path.display().to_string();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let new = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Outcome::Invalid { file, errors: e.0 },
            Err(e) => return Outcome::Unavailable(format!("reading the configuration failed: {e}")),
        };
        let mut reasons = plan::needs_restart(&src.running, &new);
        if let Err(e) = super::check_tls_files(&new.sinks, &new.sources) {
            reasons.push(format!("{e:#}"));
        }
        if !reasons.is_empty() {
            return Outcome::NeedsRestart { file, reasons };
        }
        let warnings: Vec<String> = new.warnings.iter().map(ToString::to_string).collect();
        warnings.iter().for_each(|w| tracing::warn!("config: {w}"));
        let plan = plan::diff(&self.supervisor.units(), &plan::units_of(&new));
        let failed = self.apply(&plan, &new).await;
        self.forget_removed(&src_names(&self.config), &new);
        self.admin_settings(&new);
        if let Some(src) = &mut self.config {
            src.running = new;
        }
        crate::memory::trim();
        Outcome::Applied { file, plan, warnings, failed }
    }

    /// Stops what the plan stops (sources, then a barrier, then sinks) and
    /// starts what it starts (sinks first); the components that failed.
    async fn apply(&mut self, p: &plan::Plan, new: &Config) -> Vec<String> {
        let mut old = std::collections::BTreeMap::new();
        let (sinks, others): (Vec<_>, Vec<_>) = p.stop.iter().partition(|k| k.0 == plan::Family::Sink);
        for k in others {
            old.extend(self.supervisor.stop(k).await.map(|u| (k.clone(), u)));
        }
        if tokio::time::timeout(Duration::from_secs(1), self.ingest.barrier()).await.is_err() {
            tracing::warn!(pending = self.ingest.len(), "reload: the buffer did not commit the stopped sources' samples within 1s");
        }
        for k in sinks {
            old.extend(self.supervisor.stop(k).await.map(|u| (k.clone(), u)));
        }
        let mut units = plan::units_of(new);
        let mut failed = Vec::new();
        for k in &p.start {
            let Some(unit) = units.remove(k) else { continue };
            let labels = unit.labels().join(", ");
            if let Err(e) = self.start_unit(k.clone(), unit).await {
                tracing::error!("reload: {labels} did not start: {e:#}");
                failed.push(format!("{labels}: {e:#}"));
                // Its previous configuration, when it had one, runs again.
                if let Some(prev) = old.remove(k)
                    && let Err(e) = self.start_unit(k.clone(), prev).await
                {
                    tracing::error!("reload: {labels}: the previous configuration did not start either: {e:#}");
                }
            }
        }
        failed
    }

    /// Counters, write registrations and cursors of components no longer configured.
    fn forget_removed(&self, old: &Names, new: &Config) {
        let now = names(new);
        for d in old.devices.iter().filter(|d| !now.devices.contains(d)) {
            self.telemetry.forget("device", d);
            self.actuators.unregister(d);
        }
        for s in old.sources.iter().filter(|s| !now.sources.contains(s)) {
            self.telemetry.forget("source", s);
        }
        for s in old.sinks.iter().filter(|s| !now.sinks.contains(s)) {
            self.telemetry.forget("sink", s);
            self.buffer.remove_sink(s);
        }
    }

    /// The `[admin]` settings a running listener takes: token, readiness.
    fn admin_settings(&self, new: &Config) {
        let (Some(live), Some(cfg)) = (&self.admin_settings, &new.admin) else { return };
        let devices = new.devices.iter().map(|d| (d.name().to_string(), d.component().poll_period())).collect();
        live.set(cfg.auth.clone(), super::admin::Expect { devices, periods: cfg.ready_periods, ack_within: cfg.ready_ack_within });
    }
}

/// The names of a configuration's devices, sources and sinks.
#[derive(Default)]
struct Names {
    devices: Vec<String>,
    sources: Vec<String>,
    sinks: Vec<String>,
}

fn names(c: &Config) -> Names {
    Names {
        devices: c.devices.iter().map(|d| d.name().to_string()).collect(),
        sources: c.sources.iter().map(|s| s.name().to_string()).collect(),
        sinks: c.sinks.iter().map(|s| s.name().to_string()).collect(),
    }
}

fn src_names(src: &Option<Source>) -> Names {
    src.as_ref().map(|s| names(&s.running)).unwrap_or_default()
}

fn summary_line(origin: &str, out: &Outcome) -> String {
    format!("{} ({origin})", out.summary())
}
