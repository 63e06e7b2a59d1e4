use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::Value;

const S: i64 = 1_000_000_000;

fn leaf(tag: &str, test: Test) -> Cond {
    Cond::Leaf(Leaf { tag: tag.into(), test })
}

fn latest(v: Value, q: Quality, ts_s: i64) -> Latest {
    let reason = (q != Quality::Good).then(|| Arc::from("timeout: no answer"));
    Latest { seq: 1, value: v, quality: q, reason, ts: Timestamp(ts_s * S), unit: None }
}

/// Looks tags up in `table`.
fn table(t: Vec<(&'static str, Latest)>) -> impl Fn(&str) -> Option<Latest> {
    move |tag| t.iter().find(|(n, _)| *n == tag).map(|(_, l)| l.clone())
}

const AGE: Duration = Duration::from_secs(10);

#[test]
fn holds_only_when_known_true() {
    let stopped = leaf("conveyor/running", Test::Equals(0.0));
    let now = Timestamp(100 * S);
    let t = table(vec![("conveyor/running", latest(Value::Bool(false), Quality::Good, 99))]);
    assert_eq!(check_interlock(&stopped, AGE, now, &t), Ok(()));
    let t = table(vec![("conveyor/running", latest(Value::Bool(true), Quality::Good, 99))]);
    let e = check_interlock(&stopped, AGE, now, &t).unwrap_err();
    assert_eq!(e, "interlock: conveyor/running == 0 does not hold (conveyor/running = true (1.0s old))");
}

#[test]
fn missing_bad_uncertain_or_old_inputs_refuse() {
    let stopped = leaf("conveyor/running", Test::Equals(0.0));
    let now = Timestamp(100 * S);
    let e = check_interlock(&stopped, AGE, now, table(vec![])).unwrap_err();
    assert!(e.ends_with("(conveyor/running: no value yet)"), "{e}");
    for q in [Quality::Bad, Quality::Uncertain] {
        let t = table(vec![("conveyor/running", latest(Value::Bool(false), q, 99))]);
        let e = check_interlock(&stopped, AGE, now, t).unwrap_err();
        assert!(e.contains(&format!("conveyor/running is {q} (timeout: no answer)")), "{e}");
    }
    let t = table(vec![("conveyor/running", latest(Value::Bool(false), Quality::Good, 89))]);
    let e = check_interlock(&stopped, AGE, now, &t).unwrap_err();
    assert!(e.contains("is 11.0s old, older than interlock_max_age 10s"), "{e}");
    // Exactly at the bound still holds.
    let t = table(vec![("conveyor/running", latest(Value::Bool(false), Quality::Good, 90))]);
    assert_eq!(check_interlock(&stopped, AGE, now, &t), Ok(()));
}

#[test]
fn groups_follow_kleene_logic_and_not_keeps_unknown() {
    let now = Timestamp(100 * S);
    let lvl = leaf("tank/level", Test::Below { on: 90.0, off: 90.0 });
    let run = leaf("conveyor/running", Test::Equals(1.0));
    let t = table(vec![("tank/level", latest(Value::F64(50.0), Quality::Good, 100))]);
    // any: true wins over unknown; all: unknown refuses; not(unknown) refuses.
    assert_eq!(check_interlock(&Cond::Any(vec![lvl.clone(), run.clone()]), AGE, now, &t), Ok(()));
    let e = check_interlock(&Cond::All(vec![lvl.clone(), run.clone()]), AGE, now, &t).unwrap_err();
    assert!(e.contains("(tank/level < 90 and conveyor/running == 1)") && e.contains("conveyor/running: no value yet"), "{e}");
    assert!(check_interlock(&Cond::Not(Box::new(run.clone())), AGE, now, &t).is_err());
    // all with a known false part is false even with an unknown part.
    let t = table(vec![("tank/level", latest(Value::F64(95.0), Quality::Good, 100))]);
    assert!(check_interlock(&Cond::All(vec![lvl.clone(), run]), AGE, now, &t).is_err());
    assert_eq!(check_interlock(&Cond::Not(Box::new(lvl)), AGE, now, &t), Ok(()));
    // A quality test sees bad samples.
    let q = leaf("tank/level", Test::Quality(Quality::Bad));
    let t = table(vec![("tank/level", latest(Value::Null, Quality::Bad, 100))]);
    assert_eq!(check_interlock(&q, AGE, now, &t), Ok(()));
}

#[test]
fn only_current_value_tests_are_interlocks() {
    assert!(interlock_tests_ok(&leaf("a/b", Test::Above { on: 1.0, off: 1.0 })));
    assert!(!interlock_tests_ok(&leaf("a/b", Test::Above { on: 1.0, off: 0.5 })));
    assert!(!interlock_tests_ok(&Cond::Not(Box::new(leaf("a/b", Test::Stale(Duration::from_secs(1)))))));
}

#[test]
fn a_bad_last_read_refuses_and_no_read_yet_passes() {
    assert_eq!(check_quality("d", "sp", None), Ok(()));
    assert_eq!(check_quality("d", "sp", Some(&latest(Value::I64(1), Quality::Uncertain, 1))), Ok(()));
    let e = check_quality("d", "sp", Some(&latest(Value::Null, Quality::Bad, 1))).unwrap_err();
    assert!(e.starts_with("bad_quality: the last read of d/sp is bad (timeout: no answer)"), "{e}");
}
