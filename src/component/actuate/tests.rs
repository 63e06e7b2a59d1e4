use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ingest::{Entry, Ingest};
use crate::model::{Event, Value};

fn setup() -> (Arc<Ingest>, Actuators) {
    let ingest = Arc::new(Ingest::new(256));
    let acts = Actuators::new(Some(ingest.events()));
    (ingest, acts)
}

fn events(ingest: &Ingest) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = ingest.pop() {
        if let Entry::Event(e) = e {
            v.push(*e);
        }
    }
    v
}

fn req(device: &str, tag: &str) -> WriteRequest {
    WriteRequest::new(device, tag, Value::I64(5), Origin::Command { id: "c1".into(), client: Some("hmi".into()) })
}

#[tokio::test]
async fn unknown_device_and_tag_are_refused_with_security_and_audit_events() {
    let (ingest, acts) = setup();
    let _rx = acts.register(vec![("pump1".into(), vec!["speed".into()])]);
    let o = acts.write(req("pump2", "speed")).await;
    assert_eq!(o.result, WriteResult::Refused);
    assert_eq!(o.code(), "unknown_device");
    assert!(o.reason.as_deref().unwrap().contains("pump1"), "{o:?}");
    let o = acts.write(req("pump1", "sped")).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "unknown_tag"));
    let ev = events(&ingest);
    let kinds: Vec<&str> = ev.iter().map(|e| &*e.kind).collect();
    assert_eq!(kinds, ["security.write_refused", "write.audit", "security.write_refused", "write.audit"]);
    let d = &ev[1].details;
    assert_eq!(d["result"], "refused");
    assert_eq!(d["origin"]["id"], "c1");
    assert_eq!(d["origin"]["client"], "hmi");
    assert_eq!(d["requested_value"], 5);
    assert_eq!(ev[1].source, EventSource::Tag { device: "pump2".into(), tag: "speed".into() });
}

#[tokio::test]
async fn the_owner_settles_and_only_an_audit_event_is_emitted() {
    let (ingest, acts) = setup();
    let mut rx = acts.register(vec![("pump1".into(), vec!["speed".into()])]);
    let owner = tokio::spawn(async move {
        let mut job = rx.recv().await.unwrap();
        assert_eq!(job.request.value, Value::I64(5));
        job.mark_sent();
        let mut o = WriteOutcome::new(WriteResult::Ok, None);
        o.old = Some(Value::I64(3));
        o.readback = Some(Value::I64(5));
        job.finish(o);
    });
    let o = acts.write(req("pump1", "speed")).await;
    owner.await.unwrap();
    assert_eq!(o.result, WriteResult::Ok);
    assert_eq!((o.old.clone(), o.readback.clone()), (Some(Value::I64(3)), Some(Value::I64(5))));
    assert!(o.sent.is_some() && o.requested <= o.sent.unwrap() && o.sent.unwrap() <= o.settled);
    let ev = events(&ingest);
    assert_eq!(ev.len(), 1);
    assert_eq!(&*ev[0].kind, "write.audit");
    assert_eq!(ev[0].details["old"], 3);
    assert_eq!(ev[0].details["readback"], 5);
}

#[tokio::test]
async fn a_job_dropped_after_it_went_out_is_unknown_before_it_is_failed() {
    let (_ingest, acts) = setup();
    let mut rx = acts.register(vec![("pump1".into(), vec!["speed".into()])]);
    let owner = tokio::spawn(async move {
        let mut a = rx.recv().await.unwrap();
        a.mark_sent();
        drop(a);
        let b = rx.recv().await.unwrap();
        drop(b);
    });
    let a = acts.write(req("pump1", "speed")).await;
    let b = acts.write(req("pump1", "speed")).await;
    owner.await.unwrap();
    assert_eq!((a.result, a.code()), (WriteResult::Unknown, "stopped"));
    assert_eq!((b.result, b.code()), (WriteResult::Failed, "stopped"));
    // The task is gone: its queue is closed.
    let c = acts.write(req("pump1", "speed")).await;
    assert_eq!((c.result, c.code()), (WriteResult::Failed, "stopped"));
}

#[tokio::test]
async fn a_full_queue_answers_busy_and_a_passed_deadline_expired() {
    let (_ingest, acts) = setup();
    let _rx = acts.register(vec![("pump1".into(), vec!["speed".into()])]);
    let mut waiting = Vec::new();
    for _ in 0..WRITE_QUEUE {
        let a = acts.clone();
        waiting.push(tokio::spawn(async move { a.write(req("pump1", "speed")).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let o = acts.write(req("pump1", "speed")).await;
    assert_eq!((o.result, o.code()), (WriteResult::Failed, "busy"));
    let mut r = req("pump1", "speed");
    r.deadline = Some(Instant::now() - Duration::from_millis(1));
    let o = acts.write(r).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "expired"));
    assert_eq!(acts.devices(), ["pump1"]);
}
