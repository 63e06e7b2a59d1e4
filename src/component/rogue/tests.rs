use super::*;
use crate::component::actuate::{Origin, WriteResult};
use crate::model::{Sample, TagMeta, Value};

fn sample(meta: &Arc<TagMeta>, seq: u64, v: Value) -> Record {
    let mut s = Sample::good(meta.clone(), v, Timestamp(seq as i64 * 1_000_000_000));
    s.seq = seq;
    Record::Sample(s)
}

fn watch() -> (RogueWatch, Arc<TagMeta>) {
    let w = RogueWatch::default();
    w.watch("press", &["sp".to_string()]);
    (w, TagMeta::new("press", "sp", None))
}

fn req(v: Value) -> WriteRequest {
    WriteRequest::new("press", "sp", v, Origin::Rule { id: "r1".into() })
}

fn ok(readback: Option<Value>) -> WriteOutcome {
    let mut o = WriteOutcome::new(WriteResult::Ok, None);
    o.readback = readback;
    o
}

#[test]
fn a_change_without_a_write_is_one_event_with_old_and_new() {
    let (w, m) = watch();
    assert!(w.observe(&[sample(&m, 1, Value::U64(10)), sample(&m, 2, Value::U64(10))]).is_empty(), "the first value is the reference");
    let ev = w.observe(&[sample(&m, 3, Value::U64(42)), sample(&m, 4, Value::U64(42))]);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!((&*e.kind, e.severity, e.source.name()), (KIND, Severity::Error, "press/sp".to_string()));
    let d = &e.details;
    assert_eq!((d["detector"].as_str(), d["old"].as_u64(), d["new"].as_u64()), (Some("rogue_write"), Some(10), Some(42)));
    assert!(d["last_write"].is_null(), "{d}");
    // A sample without a value (a failed read) is not an observation.
    let mut bad = Sample::bad(m.clone(), Arc::from("timeout"), Timestamp(5));
    bad.seq = 5;
    assert!(w.observe(&[Record::Sample(bad), sample(&m, 6, Value::U64(42))]).is_empty());
}

#[test]
fn relais_writes_settled_or_in_progress_raise_nothing_and_explain_one_change_each() {
    let (w, m) = watch();
    w.observe(&[sample(&m, 1, Value::F64(10.0))]);
    // In progress: the new value shows before the write settles (OPC UA).
    let r = req(Value::F64(21.3));
    let id = w.begin(&r).expect("not a dry run");
    assert!(w.observe(&[sample(&m, 2, Value::F64(21.3f32 as f64))]).is_empty(), "f32 read of 21.3 is the value written");
    w.settle(&r, id, &ok(Some(Value::F64(21.3f32 as f64))));
    // Settled with a read-back.
    let r = req(Value::F64(30.0));
    let id = w.begin(&r).unwrap();
    w.settle(&r, id, &ok(Some(Value::F64(30.0))));
    assert!(w.observe(&[sample(&m, 3, Value::F64(30.0))]).is_empty());
    // The same value again by someone else, after the change it explained: reported.
    w.observe(&[sample(&m, 4, Value::F64(5.0))]).pop().expect("5.0 is a rogue write");
    let ev = w.observe(&[sample(&m, 5, Value::F64(30.0))]);
    assert_eq!(ev.len(), 1, "a write explains one change only: {ev:?}");
    assert_eq!(ev[0].details["last_write"]["value"], 30.0);
    assert_eq!(ev[0].details["last_write"]["origin"]["id"], "r1");
}

#[test]
fn refused_dry_run_and_other_values_explain_nothing_and_unwatched_tags_are_ignored() {
    let (w, m) = watch();
    w.observe(&[sample(&m, 1, Value::I64(1))]);
    let r = req(Value::I64(2));
    let id = w.begin(&r).unwrap();
    w.settle(&r, id, &WriteOutcome::refused("out_of_range: …"));
    assert_eq!(w.observe(&[sample(&m, 2, Value::I64(2))]).len(), 1, "a refused write changed nothing");
    let mut dry = req(Value::I64(3));
    dry.dry_run = true;
    assert!(w.begin(&dry).is_none());
    assert_eq!(w.observe(&[sample(&m, 3, Value::I64(3))]).len(), 1);
    let r = req(Value::I64(4));
    let id = w.begin(&r).unwrap();
    w.settle(&r, id, &ok(Some(Value::I64(4))));
    assert_eq!(w.observe(&[sample(&m, 4, Value::I64(7))]).len(), 1, "7 is not what relais wrote");
    // A failed write whose read-back shows another value (clamped by the device) explains that value.
    let r = req(Value::I64(100));
    let id = w.begin(&r).unwrap();
    let mut o = WriteOutcome::failed("readback_mismatch: …");
    o.readback = Some(Value::I64(90));
    w.settle(&r, id, &o);
    assert!(w.observe(&[sample(&m, 5, Value::I64(90))]).is_empty());
    // Unwatched tags and devices: nothing, even on change.
    let other = TagMeta::new("press", "count", None);
    assert!(w.observe(&[sample(&other, 6, Value::I64(1)), sample(&other, 7, Value::I64(2))]).is_empty());
    w.watch("press", &[]);
    assert!(!w.watched("press", "sp"));
    assert!(w.observe(&[sample(&m, 8, Value::I64(1))]).is_empty());
    w.watch("press", &["sp".to_string()]);
    assert_eq!(w.observe(&[sample(&m, 9, Value::I64(2))]).len(), 1, "the reference was kept while unwatched");
    w.unwatch("press");
    assert!(w.observe(&[sample(&m, 10, Value::I64(3))]).is_empty());
}

#[test]
fn a_write_settled_long_before_the_previous_reading_explains_nothing() {
    let prev = Instant::now();
    let m = Mark {
        id: 0,
        value: Value::Bool(true),
        origin: Origin::Cli,
        started: prev - judge::SETTLE_WINDOW * 3,
        started_ts: Timestamp(0),
        settled: Some(prev - judge::SETTLE_WINDOW * 2),
        result: Some(WriteResult::Ok),
        readback: Some(Value::Bool(true)),
        used: false,
    };
    assert!(!explains(&m, &Value::Bool(true), prev, prev + std::time::Duration::from_secs(1)));
    let recent = Mark { settled: Some(prev - judge::SETTLE_WINDOW / 2), ..m.clone() };
    assert!(explains(&recent, &Value::Bool(true), prev, prev + std::time::Duration::from_secs(1)));
    assert!(!explains(&recent, &Value::Bool(false), prev, prev));
    assert!(same(&Value::Bool(true), &Value::U64(1)) && !same(&Value::Str("a".into()), &Value::Str("b".into())));
    assert!(!same(&Value::Null, &Value::Null));
    assert!(same(&Value::Str("42".into()), &Value::U64(42)) && !same(&Value::Str("on".into()), &Value::Bool(true)));
    assert!(same(&Value::F64(21.3), &Value::F64(21.3f32 as f64)) && !same(&Value::F64(21.3), &Value::F64(21.4)));
}
