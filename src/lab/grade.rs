//! From a played timeline and what was observed to the report: each fault's
//! subject, its judgement, and the detections no fault explains.

use std::collections::{BTreeMap, BTreeSet};

use super::attribute::{LATE_MS, Played, SeqIndex, Subject, TOLERANCE_MS, classify, judge};
use super::observe::Observed;
use super::report::{FaultReport, Report, Stream, Timeline, Unattributed, rfc3339};
use super::scenario::{FaultSpec, Scenario, Target};

/// What a fault's events and samples are about: `expect.source` when given, else the station
/// (named like its gateway device), the device or sink a proxy serves, the station or proxy an
/// attack aims at, or the gateway.
pub fn subject(f: &FaultSpec, sc: &Scenario, sinks: &[String]) -> Subject {
    let named = |n: &str| if sinks.iter().any(|s| s == n) { Subject::Sink(n.to_string()) } else { Subject::Device(n.to_string()) };
    let serves = |p: &str| sc.proxies.iter().find(|x| x.name == p).map(|x| x.serves.clone().unwrap_or_else(|| x.name.clone()));
    if let Some(s) = f.expect.as_ref().and_then(|x| x.source.as_deref()) {
        return named(s);
    }
    match &f.target {
        Target::Sim { station, tag: Some(t) } => Subject::Device(format!("{station}/{t}")),
        Target::Sim { station, tag: None } => Subject::Device(station.clone()),
        Target::Proxy(p) => named(&serves(p).unwrap_or_else(|| p.clone())),
        Target::Attack(n) => Subject::Station(serves(n).unwrap_or_else(|| n.clone())),
        Target::Gateway => Subject::Gateway,
    }
}

/// Sets each fault's `next_ms`: the injection of the next fault on the same subject (by the
/// scenario's `at`: faults injected together share their detections).
pub fn link_next(plays: &mut [Played], sc: &Scenario) {
    for i in 0..plays.len() {
        let (at, subject) = (sc.faults[i].at, plays[i].subject.clone());
        plays[i].next_ms =
            (0..plays.len()).filter(|&k| plays[k].subject == subject && sc.faults[k].at > at).map(|k| plays[k].injected_ms).min();
    }
}

/// Grades every fault and builds the report; `errors` are injections or clearings that failed
/// (the fault fails with that reason).
pub fn report(sc: &Scenario, plays: &[Played], errors: &BTreeMap<usize, String>, o: &Observed, t0_ms: i64, end_ms: i64) -> Report {
    let seqs = SeqIndex::new(o);
    let mut faults = Vec::new();
    for (i, (f, p)) in sc.faults.iter().zip(plays).enumerate() {
        let mut j = judge(p, o, &seqs, end_ms);
        if let Some(e) = errors.get(&i) {
            j.reasons.insert(0, e.clone());
            j.pass = false;
        }
        let rel = |ms: i64| ms - t0_ms;
        faults.push(FaultReport {
            index: f.index,
            kind: f.kind.clone(),
            target: f.target.to_string(),
            injected_at: rfc3339(p.injected_ms),
            cleared_at: p.cleared_ms.map(rfc3339),
            detected_at: j.detected_ms.map(rfc3339),
            detector: j.detector.clone(),
            recovered_at: j.recovered_ms.map(rfc3339),
            samples_lost: j.samples_lost,
            duplicates: j.duplicates,
            pass: j.pass,
            time_to_detect_ms: j.detected_ms.map(|d| d - p.injected_ms),
            time_to_recover_ms: j.recovered_ms.map(|r| r - p.cleared_ms.unwrap_or(p.injected_ms)),
            expected: f.expect.clone(),
            reason: (!j.reasons.is_empty()).then(|| j.reasons.join("; ")),
            params: f.params.clone(),
            timeline: Timeline {
                injected: rel(p.injected_ms),
                cleared: p.cleared_ms.map(rel),
                detected: j.detected_ms.map(rel),
                recovered: j.recovered_ms.map(rel),
            },
        });
    }
    let (first_seq, last_seq, received, missing, duplicates) = seqs.totals();
    let stream = Stream {
        first_seq,
        last_seq,
        received,
        missing,
        duplicates,
        samples: o.samples.len() as u64,
        events: o.events.iter().filter(|e| e.seq.is_some()).count() as u64,
    };
    Report {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        seed: sc.seed,
        started_at: rfc3339(t0_ms),
        ended_at: rfc3339(end_ms),
        duration_ms: sc.duration.as_millis() as u64,
        pass: faults.iter().all(|f| f.pass),
        stream,
        faults,
        unattributed: unattributed(plays, o, t0_ms, end_ms),
    }
}

/// Detections after time 0 that fall in no fault's window on its subject.
fn unattributed(plays: &[Played], o: &Observed, t0_ms: i64, end_ms: i64) -> Vec<Unattributed> {
    let mut set = BTreeSet::new();
    for e in o.events.iter().filter(|e| e.at_ms >= t0_ms) {
        let Some((detector, false)) = classify(e) else { continue };
        let explained = plays.iter().any(|p| {
            let to = p.cleared_ms.map_or(end_ms, |c| c + LATE_MS);
            e.at_ms >= p.injected_ms - TOLERANCE_MS && e.at_ms <= to && p.subject.matches_event(e)
        });
        if !explained {
            let source = if e.source_name.is_empty() { e.source_kind.clone() } else { format!("{}:{}", e.source_kind, e.source_name) };
            set.insert(Unattributed { kind: e.kind.clone(), source, detector });
        }
    }
    set.into_iter().collect()
}
