//! Unit tests of the engine: delays on the engine clock, unknown inputs,
//! staleness by timer, acknowledgement, writes.

use std::path::Path;
use std::sync::Arc;

use super::alarm::{AlarmState, Transition};
use super::config::read_rules;
use super::engine::{Decision, Engine};
use crate::model::{Sample, TagMeta, Timestamp, Value};

const S: i64 = 1_000_000_000;

fn engine(toml: &str) -> Engine {
    Engine::new(read_rules(toml, "r.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}")))
}

fn good(m: &Arc<TagMeta>, v: f64, t: i64) -> Sample {
    Sample::good(m.clone(), Value::F64(v), Timestamp(t))
}

/// (time in s, transition) of the alarm decisions.
fn alarms(d: &[Decision]) -> Vec<(f64, Transition)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Alarm(a) => Some((a.ts.0 as f64 / S as f64, a.change.transition)),
            _ => None,
        })
        .collect()
}

#[test]
fn on_delay_and_off_delay_fire_at_their_end_from_samples_or_the_timer() {
    let mut e = engine("[[rule]]\nname = \"hot\"\ntag = \"p/t\"\nabove = 80\nclear_below = 75\nfor = \"3s\"\nclear_for = \"2s\"\n");
    let t = TagMeta::new("p", "t", None);
    // 81 at 0..1 s, then 70 at 2 s: the on-delay (3 s) never ends.
    for (v, at) in [(81.0, 0), (81.0, 1), (70.0, 2)] {
        e.on_sample(&good(&t, v, at * S));
    }
    assert!(e.take().is_empty());
    // 85 from 10 s; a sample at 14 s notices the end of the delay at 13 s.
    e.on_sample(&good(&t, 85.0, 10 * S));
    e.on_sample(&good(&t, 85.0, 14 * S));
    assert_eq!(alarms(&e.take()), [(13.0, Transition::Raised)]);
    // 76 is inside the band: still active. 74 at 20 s; the timer alone ends the off-delay at 22 s.
    e.on_sample(&good(&t, 76.0, 18 * S));
    e.on_sample(&good(&t, 74.0, 20 * S));
    e.advance(Timestamp(21 * S));
    assert!(e.take().is_empty());
    e.advance(Timestamp(30 * S));
    let d = e.take();
    assert_eq!(alarms(&d), [(22.0, Transition::Cleared)]);
    let Decision::Alarm(a) = &d[0] else { unreachable!() };
    assert_eq!((a.change.to, a.values[0].value.clone()), (AlarmState::ClearedUnacknowledged, Value::F64(74.0)));
    assert_eq!(e.acknowledge("hot", "operator", Timestamp(31 * S)), Ok(AlarmState::Normal));
    assert!(e.acknowledge("hot", "operator", Timestamp(32 * S)).is_err(), "nothing left to acknowledge");
    assert!(e.acknowledge("nope", "operator", Timestamp(32 * S)).is_err());
}

#[test]
fn an_unknown_input_neither_raises_nor_clears() {
    let mut e = engine("[[rule]]\nname = \"hot\"\ntag = \"p/t\"\nabove = 80\nfor = \"2s\"\n");
    let t = TagMeta::new("p", "t", None);
    e.on_sample(&good(&t, 90.0, 0));
    e.on_sample(&Sample::bad(t.clone(), "timeout".into(), Timestamp(S)));
    e.on_sample(&good(&t, 90.0, 2 * S));
    e.advance(Timestamp(3 * S));
    assert!(e.take().is_empty(), "the bad sample at 1 s restarted the on-delay");
    e.advance(Timestamp(4 * S));
    assert_eq!(alarms(&e.take()), [(4.0, Transition::Raised)]);
    e.on_sample(&Sample::bad(t.clone(), "timeout".into(), Timestamp(5 * S)));
    e.advance(Timestamp(60 * S));
    assert!(e.take().is_empty(), "active while the input is bad");
    assert_eq!(e.alarms()[0].1, AlarmState::Active);
}

#[test]
fn stale_by_timer_and_groups() {
    let toml = "[[rule]]\nname = \"silent\"\nany = [ { tag = \"p/t\", stale = \"5s\" }, { tag = \"p/t\", quality = \"bad\" } ]\n\
                [[rule]]\nname = \"both\"\nall = [ { tag = \"p/a\", equals = true }, { not = { tag = \"p/b\", below = 1 } } ]\n";
    let mut e = engine(toml);
    let (t, a, b) = (TagMeta::new("p", "t", None), TagMeta::new("p", "a", None), TagMeta::new("p", "b", None));
    e.on_sample(&good(&t, 1.0, 0));
    e.advance(Timestamp(5 * S));
    assert!(e.take().is_empty(), "5 s without a sample is not yet stale");
    e.advance(Timestamp(9 * S));
    assert_eq!(alarms(&e.take()), [(5.0 + 1e-9, Transition::Raised)]);
    e.on_sample(&good(&t, 1.0, 10 * S));
    assert_eq!(alarms(&e.take()), [(10.0, Transition::Cleared)]);
    e.on_sample(&Sample::bad(t.clone(), "timeout".into(), Timestamp(11 * S)));
    assert_eq!(alarms(&e.take()), [(11.0, Transition::Raised)], "quality bad");
    e.on_sample(&Sample::good(a.clone(), Value::Bool(true), Timestamp(12 * S)));
    assert!(e.take().is_empty(), "b unknown: not (unknown) is unknown");
    e.on_sample(&good(&b, 0.5, 12 * S));
    assert!(e.take().is_empty());
    e.on_sample(&good(&b, 2.0, 13 * S));
    let d = e.take();
    assert_eq!(d.len(), 1);
    let Decision::Alarm(r) = &d[0] else { unreachable!() };
    assert_eq!((&*r.rule, r.ts), ("both", Timestamp(13 * S)));
    assert_eq!(r.values.iter().map(|v| &*v.path).collect::<Vec<_>>(), ["p/a", "p/b"]);
}

#[test]
fn edges_drive_dry_run_writes_on_active_and_clear() {
    let toml = "[[rule]]\nname = \"start\"\ntag = \"p/button\"\nedge = \"rising\"\nalarm = false\ndry_run = true\n\
                [[rule.write]]\ntag = \"p/motor\"\nvalue = true\n[[rule.write]]\ntag = \"p/lamp\"\nvalue = 0\non = \"clear\"\n";
    let mut e = engine(toml);
    let btn = TagMeta::new("p", "button", None);
    for (i, v) in [false, true, true, false, true].into_iter().enumerate() {
        e.on_sample(&Sample::good(btn.clone(), Value::Bool(v), Timestamp(i as i64 * S)));
    }
    let w: Vec<(i64, String, bool)> = e
        .take()
        .into_iter()
        .map(|d| match d {
            Decision::Write(w) => (w.ts.0 / S, format!("{}={}", w.tag, w.value), w.dry_run),
            Decision::Alarm(_) => panic!("alarm = false"),
        })
        .collect();
    let want = [(1, "p/motor=true", true), (2, "p/lamp=0", true), (4, "p/motor=true", true)];
    assert_eq!(w, want.map(|(t, s, d)| (t, s.to_string(), d)));
}

#[test]
fn config_errors_name_line_column_and_key() {
    let bad = "[[rule]]\nname = \"r\"\ntag = \"p/t\"\nabove = 80\nclear_below = 85\n\
               [[rule]]\nname = \"g\"\nall = [ { tag = \"p/t\", above = 1, below = 0 } ]\n\
               [[rule]]\nname = \"w\"\ntag = \"p/t\"\nrate_above = 1\n[[rule.write]]\ntag = \"p/x\"\nvalue = 1\non = \"sometimes\"\n\
               [[rule]]\nname = \"u\"\ntag = \"nodevice\"\nabov = 3\n";
    let e = read_rules(bad, "r.toml", Path::new(".")).unwrap_err().to_string();
    for want in [
        "r.toml:5:15",
        "clear_below (85) must not be above `above` (80)",
        "one test per tag condition",
        "a rate needs `over",
        "\"sometimes\"",
        "\"nodevice\" is not a tag path",
        "abov",
    ] {
        assert!(e.contains(want), "{want:?} missing in:\n{e}");
    }
}

#[test]
fn the_sample_file_reads() {
    let rules = read_rules(include_str!("sample.toml"), "sample.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["pump-hot", "press-silent", "level-rising-fast"]);
}
