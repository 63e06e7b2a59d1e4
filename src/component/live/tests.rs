use super::*;
use crate::model::{Record, Sample, TagMeta};

fn sample(meta: &Arc<TagMeta>, seq: u64, v: Value) -> Record {
    let mut s = Sample::good(meta.clone(), v, Timestamp(seq as i64 * 1_000_000_000));
    s.seq = seq;
    Record::Sample(s)
}

#[test]
fn keeps_the_last_sample_per_tag_and_a_bad_one_replaces_a_good_one() {
    let t = LiveTable::new();
    let a = TagMeta::new("pump1", "flow", Some("m3/h"));
    let b = TagMeta::new("pump1", "running", None);
    t.update(&[sample(&a, 1, Value::F64(1.5)), sample(&b, 2, Value::Bool(true)), sample(&a, 3, Value::F64(2.5))]);
    let l = t.get("pump1", "flow").expect("flow seen");
    assert_eq!((l.seq, &l.value, l.quality), (3, &Value::F64(2.5), Quality::Good));
    assert_eq!(l.unit.as_deref(), Some("m3/h"));
    let mut bad = Sample::bad(a.clone(), Arc::from("timeout"), Timestamp(4_000_000_000));
    bad.seq = 4;
    t.update(&[Record::Sample(bad)]);
    let l = t.get("pump1", "flow").expect("flow seen");
    assert_eq!((l.quality, &l.value, l.reason.as_deref()), (Quality::Bad, &Value::Null, Some("timeout")));
    assert_eq!(t.len(), 2);
    assert!(t.get("pump1", "nope").is_none() && t.get("pump9", "flow").is_none());
}

#[test]
fn an_older_seq_never_replaces_a_newer_one_and_the_snapshot_is_sorted() {
    let t = LiveTable::new();
    let a = TagMeta::new("b", "x", None);
    let c = TagMeta::new("a", "y", None);
    t.update(&[sample(&a, 10, Value::I64(10)), sample(&c, 11, Value::I64(1))]);
    t.update(&[sample(&a, 5, Value::I64(5))]);
    assert_eq!(t.get("b", "x").map(|l| l.value), Some(Value::I64(10)));
    let snap = t.snapshot();
    let names: Vec<_> = snap.iter().map(|(d, tg, _)| format!("{d}/{tg}")).collect();
    assert_eq!(names, ["a/y", "b/x"]);
    assert_eq!(snap[0].2.age_ns(Timestamp(12_000_000_000)), 1_000_000_000);
}
