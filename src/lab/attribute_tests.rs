//! Attribution: the detection, the recovery, losses and duplicates of a fault.

use serde_json::json;

use super::*;
use crate::lab::observe::{EventObs, SampleObs};

fn ev(at: i64, seq: u64, kind: &str, sk: &str, name: &str, details: Value) -> EventObs {
    EventObs { seq: Some(seq), kind: kind.into(), source_kind: sk.into(), source_name: name.into(), details, at_ms: at }
}

fn sample(at: i64, seq: u64, device: &str, tag: &str, good: bool) -> SampleObs {
    SampleObs { seq, device: device.into(), tag: tag.into(), good, reason: None, at_ms: at }
}

fn expect(detector: Option<&str>, within: Option<u64>, recover: Option<u64>) -> Expect {
    Expect { detector: detector.map(str::to_string), detect_within_ms: within, recover_within_ms: recover, ..Expect::default() }
}

/// A press flat line at 10 s cleared at 20 s, among other events.
fn observed() -> Observed {
    let mut o = Observed::default();
    let mut seq = 100;
    for t in 0..30 {
        let at = t * 1000;
        o.samples.push(sample(at, seq, "press", "force", !(10..21).contains(&t)));
        o.samples.push(sample(at, seq + 1, "conveyor", "speed", true));
        seq += 2;
    }
    // seq 160.. events
    o.events.push(ev(9_000, 160, "device.down", "device", "conveyor", Value::Null)); // before the fault: not it
    o.events.push(ev(12_000, 161, "tag.flagged", "tag", "press/force", json!({"detector": "spike"})));
    o.events.push(ev(13_500, 162, "tag.flagged", "tag", "press/force", json!({"detector": "flat_line"})));
    o.events.push(ev(21_000, 163, "tag.cleared", "tag", "press/force", json!({"detector": "spike"})));
    o.events.push(ev(22_000, 164, "tag.cleared", "tag", "press/force", json!({"detector": "flat_line"})));
    o
}

fn played(subject: &str, x: Expect) -> Played {
    Played { injected_ms: 10_000, cleared_ms: Some(20_000), subject: Subject::Device(subject.into()), next_ms: None, expect: Some(x) }
}

#[test]
fn the_expected_detector_and_its_recovery_event() {
    let o = observed();
    let s = SeqIndex::new(&o);
    let j = judge(&played("press/force", expect(Some("flat_line"), Some(5000), Some(5000))), &o, &s, 30_000);
    assert_eq!((j.detected_ms, j.detector.as_deref(), j.recovered_ms), (Some(13_500), Some("flat_line"), Some(22_000)));
    assert_eq!((j.samples_lost, j.duplicates, j.pass), (0, 0, true), "{:?}", j.reasons);
    // The whole device matches its tags' events; any detector is the first one.
    let j = judge(&played("press", expect(None, None, None)), &o, &s, 30_000);
    assert_eq!((j.detected_ms, j.detector.as_deref(), j.recovered_ms), (Some(12_000), Some("spike"), Some(21_000)));
    // Too slow, not recovered in time, wrong detector.
    let j = judge(&played("press/force", expect(Some("flat_line"), Some(3000), Some(1000))), &o, &s, 30_000);
    assert!(!j.pass);
    assert_eq!(
        j.reasons,
        ["detected after 3500 ms, expected within 3000 ms", "recovered 2000 ms after the fault's end, expected within 1000 ms"]
    );
    let j = judge(&played("press/force", expect(Some("gross_range"), None, None)), &o, &s, 30_000);
    assert_eq!(j.reasons, ["not detected by gross_range (detected by spike instead)"]);
    // Another device's event before the injection is not it; nothing on the conveyor after.
    let j = judge(&played("conveyor", Expect { detected: Some(false), ..Expect::default() }), &o, &s, 30_000);
    assert_eq!((j.detected_ms, j.pass), (None, true));
    // A detector without recovery event recovers at the first good sample after the end.
    let mut o2 = o.clone();
    o2.events.push(ev(15_000, 165, "security.rogue_write", "tag", "press/force", json!({"detector": "rogue_write"})));
    let j = judge(&played("press", expect(Some("rogue_write"), None, None)), &o2, &SeqIndex::new(&o2), 30_000);
    assert_eq!((j.detected_ms, j.recovered_ms), (Some(15_000), Some(21_000)));
}

#[test]
fn expected_silence_fails_on_a_detection() {
    let o = observed();
    let j = judge(&played("press", Expect { detected: Some(false), ..Expect::default() }), &o, &SeqIndex::new(&o), 30_000);
    assert_eq!(j.reasons, ["detected by spike, expected no detection"]);
}

#[test]
fn losses_and_duplicates_in_the_window_only() {
    let mut o = observed();
    // seq 130 and 131 (t = 15 s) never arrived; 140 (t = 20 s) twice; 104 (t = 2 s, outside) twice.
    o.samples.retain(|s| s.seq != 130 && s.seq != 131);
    o.samples.push(sample(20_000, 140, "press", "force", true));
    o.samples.push(sample(2_000, 104, "press", "force", true));
    let s = SeqIndex::new(&o);
    let j = judge(&played("press/force", expect(Some("flat_line"), None, None)), &o, &s, 30_000);
    assert_eq!((j.samples_lost, j.duplicates), (2, 1));
    assert_eq!(j.reasons, ["2 samples lost, expected at most 0"]);
    assert_eq!(s.totals(), (Some(100), Some(164), 63, 2, 2));
}

#[test]
fn existing_event_kinds_map_to_detectors() {
    let c = |kind: &str, d: Value| classify(&ev(0, 1, kind, "device", "x", d));
    assert_eq!(c("device.down", Value::Null), Some(("device_down".into(), false)));
    assert_eq!(c("device.up", Value::Null), Some(("device_down".into(), true)));
    assert_eq!(c("device.recovered", Value::Null), Some(("device_degraded".into(), true)));
    assert_eq!(c("sink.unreachable", Value::Null), Some(("sink_down".into(), false)));
    assert_eq!(c("gateway.started", json!({"unclean_shutdown": true})), Some(("unclean_shutdown".into(), false)));
    assert_eq!(c("gateway.started", json!({"unclean_shutdown": false})), None);
    assert_eq!(c("clock.trusted", json!({"detector": "clock"})), Some(("clock".into(), true)));
    assert_eq!(c("config.reloaded", Value::Null), None);
}

#[test]
fn a_later_fault_on_the_same_subject_takes_its_own_detections() {
    let o = observed();
    let s = SeqIndex::new(&o);
    let mut p = played("press/force", Expect { detected: Some(false), ..Expect::default() });
    p.next_ms = Some(12_000);
    let j = judge(&p, &o, &s, 30_000);
    assert_eq!((j.detected_ms, j.pass), (None, true), "{:?}", j.reasons);
}

#[test]
fn the_recovery_that_holds_and_station_detections_for_attacks_only() {
    let mut o = Observed::default();
    // A link that breaks, comes back during the fault, breaks again, and is back after its end.
    for (at, kind) in [(11_000, "device.down"), (13_000, "device.up"), (15_000, "device.down"), (21_000, "device.up")] {
        o.events.push(ev(at, at as u64, kind, "device", "conveyor", Value::Null));
    }
    o.events.push(EventObs {
        seq: None,
        kind: "sim.detection".into(),
        source_kind: "station".into(),
        source_name: "conveyor".into(),
        details: json!({"detector": "unexpected_client"}),
        at_ms: 10_500,
    });
    let s = SeqIndex::new(&o);
    let j = judge(&played("conveyor", expect(Some("device_down"), None, None)), &o, &s, 30_000);
    assert_eq!((j.detected_ms, j.recovered_ms), (Some(11_000), Some(21_000)));
    // The simulator's detection is not the device's, but it is the attacked station's.
    let j = judge(&played("conveyor", expect(None, None, None)), &o, &s, 30_000);
    assert_eq!(j.detector.as_deref(), Some("device_down"));
    let mut p = played("conveyor", expect(None, None, None));
    p.subject = Subject::Station("conveyor".into());
    assert_eq!(judge(&p, &o, &s, 30_000).detector.as_deref(), Some("unexpected_client"));
}
