//! The pipeline core: the event record (same `seq` as samples, stored,
//! delivered on MQTT, seen by the tap), the committed-data tap (order, exact
//! loss accounting), per-sink drop accounting, and the ring's sample bound.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use relais::config::BufferConfig;
use relais::ingest::{Entry, Group, Ingest};
use relais::model::{Event, EventSource, Record, Sample, Severity, TagMeta, Timestamp, Value};

use crate::common::{Mosquitto, Sub, buffer_with, eventually, sample};
use crate::mqtt::{SinkChain, sink_cfg};

#[tokio::test]
async fn an_event_takes_a_seq_between_samples_and_reaches_tap_buffer_and_mqtt() {
    let Some(broker) = Mosquitto::start() else { return };
    let mut sub = Sub::with_id(broker.port, "t/#", "ev-sub", true).await;
    let chain = SinkChain::start(sink_cfg(broker.port, ""), BufferConfig::default());
    let mut tap = chain.tb.buffer.tap().subscribe();
    let m = TagMeta::new("pump1", "temp", Some("Cel"));
    for i in 0..3 {
        chain.tb.ingest.push(sample(&m, i as f64)).await;
    }
    chain.tb.buffer.events().emit_now(
        "device.down",
        Severity::Warning,
        EventSource::Device("pump1".into()),
        "pump1 stopped answering: timeout",
        serde_json::json!({"error": "timeout"}),
    );
    for i in 3..5 {
        chain.tb.ingest.push(sample(&m, i as f64)).await;
    }
    let last = chain.tb.ingest.barrier().await.unwrap();
    assert_eq!(last - chain.base, 6, "five samples and one event, one seq each");

    // The tap: every record once, in seq order, the event fourth.
    let mut got: Vec<Record> = Vec::new();
    while got.len() < 6 {
        let t = tokio::time::timeout(Duration::from_secs(5), tap.recv()).await.unwrap().unwrap();
        assert_eq!(t.missed_samples + t.missed_events, 0);
        got.extend(t.records().cloned());
    }
    let seqs: Vec<u64> = got.iter().map(|r| r.seq() - chain.base).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    let e = got[3].as_event().expect("the fourth record is the event");
    assert_eq!((&*e.kind, e.severity, e.message.as_str()), ("device.down", Severity::Warning, "pump1 stopped answering: timeout"));

    // The buffer: the same records from SQLite.
    let reader = chain.tb.buffer.reader().unwrap();
    let stored = reader.records(chain.base, last, 100).await.unwrap();
    assert_eq!(stored.len(), 6);
    assert_eq!(stored[3].as_event().unwrap().details["error"], "timeout");
    assert_eq!(reader.read(chain.base, last, 100).await.unwrap().len(), 5, "read() still returns samples only");

    // MQTT: the event on {prefix}/relais/{gateway}/event/{kind}, with its seq.
    let t0 = Instant::now();
    let mut event = None;
    let mut data = 0;
    while t0.elapsed() < Duration::from_secs(10) && (event.is_none() || data < 5) {
        let Some(msg) = sub.next(Duration::from_secs(5)).await else { break };
        if msg.topic.contains("/event/") {
            event = Some(msg);
        } else if msg.topic.starts_with("t/pump1/") {
            data += 1;
        }
    }
    let event = event.expect("the event was published");
    assert_eq!(event.topic, "t/relais/gw/event/device.down");
    let j = event.json();
    assert_eq!(j["seq"].as_u64().unwrap(), chain.base + 4);
    assert_eq!(j["kind"], "device.down");
    assert_eq!(j["severity"], "warning");
    assert_eq!(j["source"]["kind"], "device");
    assert_eq!(j["source"]["name"], "pump1");
    assert_eq!(j["gateway"], "gw");
    assert_eq!(j["details"]["error"], "timeout");
    assert_eq!(data, 5);
    assert!(eventually(Duration::from_secs(5), || chain.cursor() == 6).await, "the event is acknowledged like a sample");
}

#[tokio::test]
async fn a_tap_subscriber_that_falls_behind_is_told_exactly_what_it_missed() {
    let tb = buffer_with(BufferConfig { ring_capacity: 65536, ..Default::default() }, &[]);
    let mut slow = tb.buffer.tap().subscribe();
    let m = TagMeta::new("d", "t", None);
    let n = relais::buffer::tap::TAP_RECORDS as u64 * 2 + 1234;
    for i in 0..n {
        tb.ingest.push(sample(&m, i as f64)).await;
        if i == n / 2 {
            tb.ingest.emit(Event::new("test.marker", Severity::Info, EventSource::Gateway, "half way"));
        }
    }
    tb.ingest.barrier().await.unwrap();
    let t = slow.try_recv();
    let got_samples = t.records().filter(|r| r.as_sample().is_some()).count() as u64;
    let got_events = t.records().filter(|r| r.as_event().is_some()).count() as u64;
    assert!(t.missed_samples > 0, "fell behind");
    assert_eq!(t.missed_samples + got_samples, n, "every sample either received or counted as missed");
    assert_eq!(t.missed_events + got_events, 1, "the event too");
    let (a, b) = t.missed_range.unwrap();
    assert_eq!(b - a + 1, t.missed_samples + t.missed_events);
    let seqs: Vec<u64> = t.records().map(|r| r.seq()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "what it gets is contiguous and in order");
    assert_eq!(seqs[0], b + 1);
    assert_eq!(*seqs.last().unwrap(), tb.buffer.stats().last_seq.load(Ordering::Relaxed));
    // Retention is not held back by the slow subscriber (no sink: rows stay,
    // but the tap holds at most TAP_RECORDS records in memory).
    assert!(seqs.len() <= relais::buffer::tap::TAP_RECORDS + 8192);
}

#[tokio::test]
async fn drops_are_counted_per_sink_by_what_that_sink_had_not_delivered() {
    let tb = buffer_with(BufferConfig { max_rows: 100, ..Default::default() }, &["fast", "dead"]);
    let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
    let (fast, dead) = (tb.buffer.cursor("fast").unwrap(), tb.buffer.cursor("dead").unwrap());
    let m = TagMeta::new("d", "t", None);
    for i in 0..100 {
        tb.ingest.push(sample(&m, i as f64)).await;
    }
    let last = tb.ingest.barrier().await.unwrap();
    fast.advance(last);
    for i in 100..300 {
        tb.ingest.push(sample(&m, i as f64)).await;
    }
    let last = tb.ingest.barrier().await.unwrap();
    assert_eq!(last - base, 300);
    // 200 oldest dropped: "fast" had delivered the first 100 of them.
    assert_eq!(tb.buffer.stats().dropped_total.load(Ordering::Relaxed), 200);
    assert_eq!(dead.dropped(), 200, "the dead sink lost everything dropped");
    assert_eq!(fast.dropped(), 100, "the fast sink lost only what it had not delivered");
}

#[test]
fn the_ring_is_bounded_in_samples_not_entries() {
    let ingest = Ingest::new(4096);
    let m = TagMeta::new("d", "t", None);
    let group = |n: usize| Group {
        samples: (0..n).map(|i| Sample::good(m.clone(), Value::I64(i as i64), Timestamp(0))).collect(),
        ..Default::default()
    };
    // One group larger than the ring is let in when the ring is empty …
    assert!(ingest.try_push(Entry::Group(Box::new(group(5000)))).is_ok());
    // … and then nothing else until the writer takes it.
    assert!(ingest.try_push(Entry::Group(Box::new(group(1)))).is_err(), "the ring holds 5000 samples already");
    let ingest = Ingest::new(4096);
    assert!(ingest.try_push(Entry::Group(Box::new(group(4000)))).is_ok());
    assert!(ingest.try_push(Entry::Group(Box::new(group(4000)))).is_err(), "two 4,000-sample groups exceed 4,096 samples");
    assert_eq!(ingest.queued_samples(), 4000);
    // Events never wait: a full ring sends them to the side queue.
    ingest.emit(Event::new("x", Severity::Info, EventSource::Gateway, "m"));
    assert_eq!(ingest.stats.events_dropped.load(Ordering::Relaxed), 0);
    assert!(!ingest.is_empty());
}

#[tokio::test]
async fn tap_delivers_shortly_after_commit() {
    // Correctness of the wake-up (latency itself is measured in benches/ingest.rs).
    let tb = buffer_with(BufferConfig::default(), &[]);
    let mut sub = tb.buffer.tap().subscribe();
    let m = TagMeta::new("d", "t", None);
    let tap = tokio::spawn(async move {
        let mut n = 0;
        while n < 1000 {
            let Some(t) = sub.recv().await else { break };
            n += t.records().count();
        }
        n
    });
    for i in 0..1000 {
        tb.ingest.push(sample(&m, i as f64)).await;
    }
    tb.ingest.barrier().await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), tap).await.unwrap().unwrap(), 1000);
}
