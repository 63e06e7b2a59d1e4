//! Attribution (pure): which observed event detected a fault, when the chain
//! recovered, how many samples were lost or received twice in its window, and
//! whether its expectations hold. The rule is documented in
//! `docs/lab-guide.md` (section "How a fault is judged").

use std::collections::BTreeMap;

use serde_json::Value;

use super::observe::{EventObs, Observed};
use super::scenario::Expect;

/// Events may be stamped slightly before the lab's own injection time (the two
/// clocks read a few ms apart; a poll already in flight): tolerance, ms.
pub const TOLERANCE_MS: i64 = 500;
/// How long after a fault's end a detection is still attributed to it, ms.
pub const LATE_MS: i64 = 10_000;

/// Event kinds that clear a detection.
pub const RECOVERY_KINDS: &[&str] = &[
    "tag.cleared",
    "clock.trusted",
    "buffer.writable",
    "host.disk_ok",
    "sink.backlog_ok",
    "device.up",
    "device.recovered",
    "sink.connected",
];

/// Detectors that have a recovery event (design13.md's table); the others recover at the
/// target's first good sample after the fault ends.
pub const WITH_RECOVERY_EVENT: &[&str] = &[
    "gross_range",
    "flat_line",
    "spike",
    "rate_of_change",
    "counter_reset",
    "stale",
    "bad_quality",
    "response_injection",
    "clock",
    "disk_full",
    "disk_low",
    "sink_backlog",
    "device_down",
    "device_degraded",
    "sink_down",
];

/// What the gateway's events and samples of a fault are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A device or a `device/tag` of the gateway (a simulator station has its device's name).
    Device(String),
    /// What an attack aims at: the gateway's events on that device and the simulator's own
    /// intrusion detections on that station.
    Station(String),
    /// A sink of the gateway (its events; any sample shows that data flows).
    Sink(String),
    /// The gateway itself (its own events; any sample).
    Gateway,
}

impl Subject {
    /// Whether event `e` is about this subject (a device matches its tags and a tag its device).
    pub fn matches_event(&self, e: &EventObs) -> bool {
        match self {
            Subject::Device(n) | Subject::Station(n) => {
                if e.source_kind == "station" && !matches!(self, Subject::Station(_)) {
                    return false;
                }
                let n = n.as_str();
                let s = e.source_name.as_str();
                s == n || s.strip_prefix(n).is_some_and(|r| r.starts_with('/')) || n.strip_prefix(s).is_some_and(|r| r.starts_with('/'))
            }
            Subject::Sink(n) => e.source_kind == "sink" && e.source_name == *n,
            Subject::Gateway => e.source_kind == "gateway",
        }
    }

    /// Whether a sample of `device`/`tag` is about this subject (any device but `_relais` for a sink or the gateway).
    pub fn matches_sample(&self, device: &str, tag: &str) -> bool {
        match self {
            Subject::Device(n) | Subject::Station(n) => match n.split_once('/') {
                Some((d, t)) => d == device && t == tag,
                None => n == device,
            },
            Subject::Sink(_) | Subject::Gateway => !device.starts_with('_'),
        }
    }
}

/// The detector an event names and whether it is a recovery; none for events that
/// detect nothing (a first `sink.connected` is still a recovery of `sink_down`).
pub fn classify(e: &EventObs) -> Option<(String, bool)> {
    let recovery = RECOVERY_KINDS.contains(&e.kind.as_str());
    if let Some(d) = e.details.get("detector").and_then(Value::as_str) {
        return Some((d.to_string(), recovery));
    }
    let d = match e.kind.as_str() {
        "device.down" | "device.up" => "device_down",
        "device.degraded" | "device.recovered" => "device_degraded",
        "sink.disconnected" | "sink.unreachable" | "sink.connected" => "sink_down",
        "security.command_refused" => "command_refused",
        "gateway.started" if e.details.get("unclean_shutdown").and_then(Value::as_bool) == Some(true) => "unclean_shutdown",
        _ => return None,
    };
    Some((d.to_string(), recovery))
}

/// One fault as played: its times (Unix ms) and what it is judged on.
#[derive(Debug, Clone)]
pub struct Played {
    /// When it was injected.
    pub injected_ms: i64,
    /// When it was cleared (none: it lasted to the end).
    pub cleared_ms: Option<i64>,
    /// What its events and samples are about.
    pub subject: Subject,
    /// When the next fault on the same subject was injected: detections from then on are not
    /// this fault's.
    pub next_ms: Option<i64>,
    /// Its expectations.
    pub expect: Option<Expect>,
}

/// The judgement of one fault.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judged {
    /// Detection time, Unix ms.
    pub detected_ms: Option<i64>,
    /// The detector that detected it.
    pub detector: Option<String>,
    /// Recovery time, Unix ms.
    pub recovered_ms: Option<i64>,
    /// Missing `seq` numbers in the window.
    pub samples_lost: u64,
    /// `seq` numbers received more than once in the window (extra copies).
    pub duplicates: u64,
    /// Every expectation holds.
    pub pass: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
}

/// Every record's first arrival by `seq` with its time, and the copies per `seq`.
pub struct SeqIndex {
    /// seq → (time of the record, Unix ms; times it was received).
    pub by_seq: BTreeMap<u64, (i64, u64)>,
}

impl SeqIndex {
    /// Indexes samples and events by `seq`.
    pub fn new(o: &Observed) -> SeqIndex {
        let mut by_seq: BTreeMap<u64, (i64, u64)> = BTreeMap::new();
        let all = o.samples.iter().map(|s| (s.seq, s.at_ms)).chain(o.events.iter().filter_map(|e| Some((e.seq?, e.at_ms))));
        for (seq, at) in all {
            by_seq.entry(seq).and_modify(|v| v.1 += 1).or_insert((at, 1));
        }
        SeqIndex { by_seq }
    }

    /// (missing, duplicates) among records timed in `[from, to]`: a gap counts when the
    /// record after it falls in the window.
    pub fn window(&self, from: i64, to: i64) -> (u64, u64) {
        let (mut lost, mut dup) = (0, 0);
        let mut prev: Option<u64> = None;
        for (&seq, &(at, n)) in &self.by_seq {
            if at >= from && at <= to {
                dup += n - 1;
                if let Some(p) = prev {
                    lost += seq - p - 1;
                }
            }
            prev = Some(seq);
        }
        (lost, dup)
    }

    /// (first, last, received, missing, duplicates) over the whole run.
    pub fn totals(&self) -> (Option<u64>, Option<u64>, u64, u64, u64) {
        let first = self.by_seq.keys().next().copied();
        let last = self.by_seq.keys().next_back().copied();
        let received = self.by_seq.len() as u64;
        let missing = match (first, last) {
            (Some(f), Some(l)) => l - f + 1 - received,
            _ => 0,
        };
        (first, last, received, missing, self.by_seq.values().map(|v| v.1 - 1).sum())
    }
}

/// Judges one fault against what was observed until `end_ms`.
pub fn judge(p: &Played, o: &Observed, seqs: &SeqIndex, end_ms: i64) -> Judged {
    let mut events: Vec<&EventObs> = o.events.iter().collect();
    events.sort_by_key(|e| (e.at_ms, e.seq.unwrap_or(0)));
    let want = p.expect.as_ref().and_then(|x| x.detector.clone());
    let late = p.cleared_ms.map_or(end_ms, |c| (c + LATE_MS).min(end_ms)).min(p.next_ms.map_or(i64::MAX, |n| n - TOLERANCE_MS));
    let candidates = || {
        events.iter().filter(|e| e.at_ms >= p.injected_ms - TOLERANCE_MS && e.at_ms <= late && p.subject.matches_event(e)).filter_map(|e| {
            let (d, rec) = classify(e)?;
            (!rec).then_some((e.at_ms, d))
        })
    };
    let detection = candidates().find(|(_, d)| want.as_ref().is_none_or(|w| w == d));
    let mut j =
        Judged { detected_ms: detection.as_ref().map(|d| d.0), detector: detection.as_ref().map(|d| d.1.clone()), ..Judged::default() };
    j.recovered_ms = match &detection {
        Some((at, d)) if WITH_RECOVERY_EVENT.contains(&d.as_str()) => {
            // The recovery that holds: a new detection by the same detector while the fault
            // lasts (a link that reconnects and breaks again) cancels the one before it.
            let mut rec = None;
            for e in events.iter().filter(|e| e.at_ms >= *at && p.subject.matches_event(e)) {
                match classify(e) {
                    Some((dd, true)) if dd == *d && rec.is_none() => rec = Some(e.at_ms),
                    Some((dd, false)) if dd == *d && e.at_ms > *at && p.cleared_ms.is_none_or(|c| e.at_ms < c) => rec = None,
                    _ => {}
                }
            }
            rec
        }
        _ => p.cleared_ms.and_then(|c| {
            let mut good: Vec<i64> = o
                .samples
                .iter()
                .filter(|s| s.good && s.at_ms >= c && p.subject.matches_sample(&s.device, &s.tag))
                .map(|s| s.at_ms)
                .collect();
            good.sort_unstable();
            good.first().copied()
        }),
    };
    let to = j.recovered_ms.unwrap_or(end_ms).max(p.cleared_ms.unwrap_or(i64::MIN));
    (j.samples_lost, j.duplicates) = seqs.window(p.injected_ms - TOLERANCE_MS, to);
    j.reasons = check(p, &j, || candidates().next().map(|c| c.1));
    j.pass = j.reasons.is_empty();
    j
}

/// The expectations that do not hold, as sentences; `other` names a detector that did fire
/// when the expected one did not.
fn check(p: &Played, j: &Judged, other: impl Fn() -> Option<String>) -> Vec<String> {
    let Some(x) = &p.expect else { return Vec::new() };
    let mut r = Vec::new();
    match (x.wants_detection(), j.detected_ms) {
        (Some(true), None) => r.push(match (&x.detector, other()) {
            (Some(w), Some(o)) => format!("not detected by {w} (detected by {o} instead)"),
            (Some(w), None) => format!("not detected (expected {w})"),
            (None, _) => "not detected".to_string(),
        }),
        (Some(true), Some(at)) => {
            if let Some(w) = x.detect_within_ms
                && at - p.injected_ms > w as i64
            {
                r.push(format!("detected after {} ms, expected within {w} ms", at - p.injected_ms));
            }
        }
        (Some(false), Some(_)) => {
            r.push(format!("detected by {}, expected no detection", j.detector.as_deref().unwrap_or("?")));
        }
        (Some(false), None) | (None, _) => {}
    }
    if let Some(w) = x.recover_within_ms {
        let from = p.cleared_ms.unwrap_or(p.injected_ms);
        match j.recovered_ms {
            None => r.push(format!("not recovered, expected within {w} ms of the fault's end")),
            Some(at) if at - from > w as i64 => r.push(format!("recovered {} ms after the fault's end, expected within {w} ms", at - from)),
            Some(_) => {}
        }
    }
    if j.samples_lost > x.samples_lost {
        r.push(format!("{} samples lost, expected at most {}", j.samples_lost, x.samples_lost));
    }
    if let Some(d) = x.duplicates
        && j.duplicates > d
    {
        r.push(format!("{} duplicates, expected at most {d}", j.duplicates));
    }
    r
}

#[cfg(test)]
#[path = "attribute_tests.rs"]
mod tests;
