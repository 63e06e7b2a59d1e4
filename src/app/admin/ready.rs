//! `/readyz`: is data moving from every device to every sink?

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::app::StatusLine;

/// What readiness expects.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Each `[[device]]` by name, with its poll period (`None`: produces on
    /// change, judged by whether it answers).
    pub devices: Vec<(String, Option<Duration>)>,
    /// A good sample within this many poll periods (`[admin] ready_periods`).
    pub periods: u32,
    /// An acknowledgement within this time while records wait
    /// (`[admin] ready_ack_within`).
    pub ack_within: Duration,
}

/// The `/readyz` body: `{"ready": false, "not_ready": ["device pump1: …"], "checks": […]}`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// True when every check passed.
    pub ready: bool,
    /// The reasons of the failed checks, one line each.
    pub not_ready: Vec<String>,
    /// Every check.
    pub checks: Vec<Check>,
}

/// One check of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Check {
    /// `device` or `sink`.
    pub kind: &'static str,
    /// Its name in the config.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why, in words.
    pub detail: String,
}

/// Judges every device and sink at `now_ms` (Unix ms).
pub fn check(status: &StatusLine, expect: &Expect, now_ms: u64) -> Readiness {
    let mut checks = Vec::new();
    let stats = status.telemetry.devices();
    for (name, period) in &expect.devices {
        let Some(d) = stats.iter().find(|d| &d.name == name) else {
            checks.push(Check { kind: "device", name: name.clone(), ok: false, detail: "not started".into() });
            continue;
        };
        let last = d.last_good_ms.load(Ordering::Relaxed);
        let (ok, detail) = match period {
            Some(p) => {
                let within = p.saturating_mul(expect.periods).as_millis() as u64;
                let age = now_ms.saturating_sub(last);
                if last == 0 {
                    (false, "no good sample yet".to_string())
                } else if age > within {
                    (
                        false,
                        format!(
                            "last good sample {} ago, expected within {} ({} × poll period {})",
                            ms(age),
                            ms(within),
                            expect.periods,
                            ms(p.as_millis() as u64)
                        ),
                    )
                } else {
                    (true, format!("last good sample {} ago", ms(age)))
                }
            }
            None if d.up.load(Ordering::Relaxed) => (true, "answering".into()),
            None => (false, "not answering".into()),
        };
        checks.push(Check { kind: "device", name: name.clone(), ok, detail });
    }
    let sinks = status.telemetry.sinks();
    for (name, backlog) in status.backlogs() {
        let Some(s) = sinks.iter().find(|s| s.name == name) else { continue };
        let waiting = backlog > 0 || s.in_flight.load(Ordering::Relaxed) > 0;
        let last = s.last_ack_ms.load(Ordering::Relaxed);
        let age = now_ms.saturating_sub(last);
        let bound = expect.ack_within.as_millis() as u64;
        let (ok, detail) = if !s.connected.load(Ordering::Relaxed) {
            let why = s.error().map(|e| format!(": {e}")).unwrap_or_default();
            (false, format!("not connected, {backlog} records waiting{why}"))
        } else if waiting && (last == 0 || age > bound) {
            let since = if last == 0 { "no acknowledgement yet".to_string() } else { format!("last acknowledgement {} ago", ms(age)) };
            (false, format!("{backlog} records waiting, {since} (bound {})", ms(bound)))
        } else {
            (true, format!("connected, {backlog} records waiting"))
        };
        checks.push(Check { kind: "sink", name, ok, detail });
    }
    let not_ready: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| format!("{} {}: {}", c.kind, c.name, c.detail)).collect();
    Readiness { ready: not_ready.is_empty(), not_ready, checks }
}

/// `1.2 s`, `340 ms`.
fn ms(v: u64) -> String {
    if v >= 1000 { format!("{:.1} s", v as f64 / 1000.0) } else { format!("{v} ms") }
}
