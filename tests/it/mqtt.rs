//! The MQTT sink against a real Mosquitto started by each test: store and
//! forward across outages (B20, B23, B27), PUBACK-driven cursor, birth and
//! Last Will (B24), exact integers (B03), payload formats.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use relais::config::{BufferConfig, Config, SinkConfig};
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::sinks::mqtt::config::MqttSinkConfig;
use relais::sinks::mqtt::sink::MqttSink;
use relais::telemetry::SinkStats;

use crate::common::{Mosquitto, Proxy, Sub, TestBuffer, assert_complete_in_order, buffer_with, data, eventually, sample, seqs};

/// Seqs of `msgs` relative to the chain's origin (1 = first sample).
fn rel(c: &SinkChain, msgs: &[crate::common::Msg]) -> Vec<u64> {
    seqs(msgs).into_iter().map(|s| s - c.base).collect()
}

/// An MQTT sink config from `[[sink]]` keys (name "mqtt").
pub fn sink_cfg(port: u16, extra: &str) -> MqttSinkConfig {
    let text = format!(
        "[gateway]\nid = \"gw\"\n[[sink]]\nname = \"mqtt\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic = \"t/{{device}}/{{tag}}\"\nreconnect_max = \"1s\"\n{extra}"
    );
    let cfg = Config::parse(&text, "sink.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let Some(SinkConfig::Mqtt(m)) = cfg.sinks.into_iter().next() else { panic!("an MQTT sink") };
    m
}

/// Ring → buffer → MQTT sink.
pub struct SinkChain {
    pub tb: TestBuffer,
    /// The buffer's seq origin: its first sample is `base + 1`.
    pub base: u64,
    pub stats: Arc<SinkStats>,
    pub stop: CancellationToken,
    pub task: Option<JoinHandle<()>>,
}

impl SinkChain {
    pub fn start(cfg: MqttSinkConfig, bcfg: BufferConfig) -> SinkChain {
        let tb = buffer_with(bcfg, &["mqtt"]);
        let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
        let mut c = SinkChain { tb, base, stats: Arc::new(SinkStats::default()), stop: CancellationToken::new(), task: None };
        c.spawn(cfg);
        c
    }

    pub fn spawn(&mut self, cfg: MqttSinkConfig) {
        self.stop = CancellationToken::new();
        let sink = MqttSink::new(
            cfg,
            "gw",
            self.tb.buffer.reader().unwrap(),
            self.tb.buffer.cursor("mqtt").unwrap(),
            self.tb.buffer.committed(),
            self.stats.clone(),
        );
        self.task = Some(tokio::spawn(sink.run(self.stop.clone(), Duration::from_millis(1500))));
    }

    /// The sink's cursor, relative to the buffer's first seq (0 = nothing delivered).
    pub fn cursor(&self) -> u64 {
        self.tb.buffer.cursor("mqtt").unwrap().get() - self.base
    }

    pub async fn push_n(&self, meta: &Arc<TagMeta>, from: u64, n: u64, every: Duration) {
        for i in from..from + n {
            self.tb.ingest.push(sample(meta, i as f64)).await;
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
        }
        self.tb.ingest.barrier().await;
    }

    pub async fn stop_gracefully(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), t).await.expect("sink stops within 5 s").unwrap();
        }
    }
}

impl Drop for SinkChain {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

#[tokio::test]
async fn b20_b23_broker_outage_every_seq_arrives_in_order() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let mut sub = Sub::with_id(broker.port, "t/#", "b20-sub", false).await;
    let chain = SinkChain::start(sink_cfg(broker.port, ""), BufferConfig::default());
    let m = TagMeta::new("counter", "n", None);
    chain.push_n(&m, 0, 20, Duration::from_millis(20)).await;
    assert!(eventually(Duration::from_secs(5), || chain.cursor() == 20).await, "cursor follows PUBACKs");
    broker.stop();
    chain.push_n(&m, 20, 60, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked_during = chain.stats.acked.load(Ordering::Relaxed);
    let cursor_during = chain.cursor();
    assert!(cursor_during <= 20, "nothing counted as delivered while the broker is down (cursor {cursor_during})");
    assert_eq!(chain.tb.buffer.stats().rows(), 80 - cursor_during, "the outage is buffered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chain.stats.acked.load(Ordering::Relaxed), acked_during, "no 'sent' while down");
    broker.restart();
    chain.push_n(&m, 80, 20, Duration::from_millis(10)).await;
    assert!(eventually(Duration::from_secs(10), || chain.cursor() == 100).await, "backlog drained, cursor {}", chain.cursor());
    let msgs = sub.until_seqs(Duration::from_secs(5), chain.base + 1..=chain.base + 100, |_| true).await;
    assert_complete_in_order(&rel(&chain, &msgs), 1, 100);
    // Values travel with their seq.
    for m in &data(&msgs) {
        let j = m.json();
        assert_eq!(j["value"].as_f64().unwrap() as u64 + 1, j["seq"].as_u64().unwrap() - chain.base);
        assert_eq!(m.topic, "t/counter/n");
    }
}

#[tokio::test]
async fn b27_buffer_cap_broker_down_then_exactly_the_newest_1000_arrive() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let mut sub = Sub::with_id(broker.port, "t/#", "b27-sub", false).await;
    broker.stop();
    let chain = SinkChain::start(sink_cfg(broker.port, ""), BufferConfig { max_rows: 1000, ..Default::default() });
    let m = TagMeta::new("d", "v", None);
    chain.push_n(&m, 1, 1500, Duration::ZERO).await;
    let st = chain.tb.buffer.stats();
    assert_eq!(st.dropped_total.load(Ordering::Relaxed), 500);
    assert_eq!((st.first_seq.load(Ordering::Relaxed) - chain.base, st.last_seq.load(Ordering::Relaxed) - chain.base), (501, 1500));
    broker.restart();
    assert!(eventually(Duration::from_secs(15), || chain.cursor() == 1500).await);
    let msgs = sub.until_seqs(Duration::from_secs(5), chain.base + 501..=chain.base + 1500, |_| true).await;
    assert_complete_in_order(&rel(&chain, &msgs), 501, 1500);
}

#[tokio::test]
async fn b20_no_puback_means_no_cursor_move_and_a_bounded_window() {
    let Some(broker) = Mosquitto::start() else { return };
    let proxy = Proxy::start(broker.port).await;
    let chain = SinkChain::start(sink_cfg(proxy.port, "max_inflight = 20\nkeep_alive = \"60s\""), BufferConfig::default());
    let m = TagMeta::new("d", "v", None);
    chain.push_n(&m, 0, 5, Duration::ZERO).await;
    assert!(eventually(Duration::from_secs(5), || chain.cursor() == 5).await);
    proxy.hold_answers(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    chain.push_n(&m, 5, 200, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = chain.cursor();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(chain.cursor(), held, "rows stay until acknowledged");
    assert!(held < 205);
    let sent = chain.stats.messages.load(Ordering::Relaxed);
    let acked = chain.stats.acked.load(Ordering::Relaxed);
    assert!(sent - acked <= 20, "in-flight window bounded: {sent} messages published, {acked} acknowledged");
    proxy.hold_answers(false);
    assert!(eventually(Duration::from_secs(10), || chain.cursor() == 205).await, "delivered once PUBACKs flow");
}

#[tokio::test]
async fn network_cut_resends_from_the_acknowledged_cursor() {
    let Some(broker) = Mosquitto::start() else { return };
    let mut sub = Sub::new(broker.port, "t/#").await;
    let proxy = Proxy::start(broker.port).await;
    let chain = SinkChain::start(sink_cfg(proxy.port, "max_inflight = 50"), BufferConfig::default());
    let m = TagMeta::new("d", "v", None);
    chain.push_n(&m, 0, 50, Duration::ZERO).await;
    proxy.hold_answers(true);
    chain.push_n(&m, 50, 50, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = chain.cursor();
    proxy.cut();
    proxy.hold_answers(false);
    assert!(eventually(Duration::from_secs(10), || chain.cursor() == 100).await, "cursor {} (was {before})", chain.cursor());
    let msgs = sub.until_seqs(Duration::from_secs(5), chain.base + 1..=chain.base + 100, |_| true).await;
    assert_complete_in_order(&rel(&chain, &msgs), 1, 100);
}

#[tokio::test]
async fn b24_birth_and_last_will_are_retained_and_republished() {
    let Some(mut broker) = Mosquitto::start_with(false) else { return };
    let status = "t/relais/gw/status";
    let mut chain = SinkChain::start(sink_cfg(broker.port, ""), BufferConfig::default());
    assert!(eventually(Duration::from_secs(5), || chain.stats.connected.load(Ordering::Relaxed)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = |m: &crate::common::Msg| m.json()["state"].as_str().unwrap().to_string();
    // S1: retained online.
    let mut s1 = Sub::with_id(broker.port, status, "s1", true).await;
    let m = s1.next(Duration::from_secs(3)).await.expect("retained birth");
    assert!(m.retain);
    assert_eq!(state(&m), "online");
    // Ungraceful drop: the broker publishes the retained will.
    chain.task.take().unwrap().abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut s = Sub::with_id(broker.port, status, "s-will", true).await;
    assert_eq!(state(&s.next(Duration::from_secs(3)).await.unwrap()), "offline");
    drop(s);
    // Reconnect: S2 sees online again.
    chain.spawn(sink_cfg(broker.port, ""));
    assert!(eventually(Duration::from_secs(5), || chain.stats.connected.load(Ordering::Relaxed)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s2 = Sub::with_id(broker.port, status, "s2", true).await;
    assert_eq!(state(&s2.next(Duration::from_secs(3)).await.unwrap()), "online");
    // Broker restarted without persistence: the birth is published again on CONNACK.
    broker.restart();
    tokio::time::sleep(Duration::from_millis(200)).await;
    chain.stats.connected.store(false, Ordering::Relaxed);
    assert!(eventually(Duration::from_secs(8), || chain.stats.connected.load(Ordering::Relaxed)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s3 = Sub::with_id(broker.port, status, "s3", true).await;
    assert_eq!(state(&s3.next(Duration::from_secs(3)).await.expect("online after broker restart")), "online");
    // Graceful stop: offline, retained, published by the gateway itself.
    chain.stop_gracefully().await;
    let mut s4 = Sub::with_id(broker.port, status, "s4", true).await;
    let m = s4.next(Duration::from_secs(3)).await.unwrap();
    assert!(m.retain);
    assert_eq!(state(&m), "offline");
}

#[tokio::test]
async fn payloads_keep_64_bit_integers_and_never_carry_nan() {
    let Some(broker) = Mosquitto::start() else { return };
    let mut sub = Sub::new(broker.port, "t/#").await;
    let chain = SinkChain::start(sink_cfg(broker.port, ""), BufferConfig::default());
    let ts = Timestamp::from_millis(1_764_410_073_120);
    let m = |tag: &str, unit: Option<&str>| TagMeta::new("pump1", tag, unit);
    let samples = vec![
        Sample::good(m("energy", Some("W.h")), Value::U64(9007199254740993), ts),
        Sample::good(m("min", None), Value::I64(i64::MIN), ts),
        Sample::good(m("nan", None), Value::F64(f64::NAN), ts),
        Sample::good(m("temperature", Some("Cel")), Value::F64(79.34), ts),
        Sample::bad(m("dead", None), "timeout: no response within 1s".into(), ts),
    ];
    chain.tb.ingest.push_all(samples).await;
    let msgs = sub.collect(Duration::from_secs(5), |m| data(m).len() >= 5).await;
    let raw = |tag: &str| String::from_utf8(msgs.iter().find(|m| m.topic.ends_with(tag)).unwrap().payload.clone()).unwrap();
    assert!(raw("/energy").contains("\"value\":9007199254740993"), "{}", raw("/energy"));
    assert!(raw("/min").contains("\"value\":-9223372036854775808"));
    assert!(raw("/nan").contains("\"value\":null") && !raw("/nan").to_lowercase().contains("nan,"));
    assert_eq!(
        raw("/temperature"),
        format!(
            r#"{{"gateway":"gw","device":"pump1","tag":"temperature","value":79.34,"unit":"Cel","quality":"good","ts":"2025-11-29T09:54:33.120Z","recv_ts":"2025-11-29T09:54:33.120Z","seq":{}}}"#,
            chain.base + 4
        )
    );
    let dead: serde_json::Value = serde_json::from_str(&raw("/dead")).unwrap();
    assert_eq!(dead["value"], serde_json::Value::Null);
    assert_eq!(dead["quality"], "bad");
    assert_eq!(dead["reason"], "timeout: no response within 1s");
}

#[tokio::test]
async fn json_batch_one_message_per_device() {
    let Some(broker) = Mosquitto::start() else { return };
    let mut sub = Sub::new(broker.port, "t/#").await;
    let chain = SinkChain::start(sink_cfg(broker.port, "format = \"json-batch\""), BufferConfig::default());
    let a: Vec<_> = (0..30).map(|i| TagMeta::new("press", format!("t{i}"), None)).collect();
    let b: Vec<_> = (0..30).map(|i| TagMeta::new("pump", format!("t{i}"), None)).collect();
    for (x, y) in a.iter().zip(&b) {
        chain.tb.ingest.push(sample(x, 1.0)).await;
        chain.tb.ingest.push(sample(y, 2.0)).await;
    }
    chain.tb.ingest.barrier().await;
    let msgs = data(&sub.collect(Duration::from_secs(5), |m| seqs(m).len() >= 60).await);
    assert!(msgs.iter().all(|m| m.topic == "t/press" || m.topic == "t/pump"), "{:?}", msgs.iter().map(|m| &m.topic).collect::<Vec<_>>());
    assert!(msgs.len() <= 4, "batched: {} messages for 60 samples", msgs.len());
    let j = msgs[0].json();
    assert_eq!(j["gateway"], "gw");
    assert!(j["samples"].as_array().unwrap().iter().all(|s| s["tag"].is_string() && s["seq"].is_u64()));
    assert_complete_in_order(
        &{
            let mut s = rel(&chain, &msgs);
            s.sort();
            s
        },
        1,
        60,
    );
}

#[tokio::test]
async fn long_backlog_does_not_starve_live_data() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let mut sub = Sub::with_id(broker.port, "t/#", "lane-sub", false).await;
    broker.stop();
    let chain =
        SinkChain::start(sink_cfg(broker.port, "backlog_threshold = 100\nmax_inflight = 10\nread_rows = 50"), BufferConfig::default());
    let old = TagMeta::new("line", "old", None);
    let live = TagMeta::new("line", "live", None);
    chain.push_n(&old, 0, 20_000, Duration::ZERO).await;
    broker.restart();
    // Live samples every 20 ms while the backlog drains.
    let ingest = chain.tb.ingest.clone();
    let l2 = live.clone();
    let feeder = tokio::spawn(async move {
        for i in 0..100 {
            ingest.push(sample(&l2, i as f64)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let msgs = sub.until_seqs(Duration::from_secs(60), chain.base + 1..=chain.base + 20_000, |m| m.topic == "t/line/live").await;
    feeder.abort();
    let first_live = msgs.iter().position(|m| m.topic == "t/line/live").expect("live data arrived");
    let last_old = msgs.iter().rposition(|m| m.topic == "t/line/old").unwrap();
    assert!(first_live < last_old, "live data waited behind the whole backlog (first live at {first_live}, last backlog at {last_old})");
    let old_seqs: Vec<u64> = rel(&chain, &msgs.iter().filter(|m| m.topic == "t/line/old").cloned().collect::<Vec<_>>());
    assert_complete_in_order(&old_seqs, 1, 20_000);
    let live_seqs: Vec<u64> = seqs(&msgs.iter().filter(|m| m.topic == "t/line/live").cloned().collect::<Vec<_>>());
    assert!(live_seqs.windows(2).all(|w| w[0] < w[1]), "live lane in order");
}

#[tokio::test]
async fn lost_pubacks_do_not_stall_the_sink() {
    let Some(broker) = Mosquitto::start() else { return };
    let proxy = Proxy::start(broker.port).await;
    let chain = SinkChain::start(sink_cfg(proxy.port, "ack_timeout = \"2s\"\nkeep_alive = \"60s\""), BufferConfig::default());
    let m = TagMeta::new("d", "v", None);
    chain.push_n(&m, 0, 5, Duration::ZERO).await;
    assert!(eventually(Duration::from_secs(5), || chain.cursor() == 5).await);
    let connects = chain.stats.connects.load(Ordering::Relaxed);
    proxy.drop_answers(true);
    chain.push_n(&m, 5, 50, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.drop_answers(false);
    assert!(eventually(Duration::from_secs(10), || chain.cursor() == 55).await, "resent after the ack timeout (cursor {})", chain.cursor());
    assert!(chain.stats.connects.load(Ordering::Relaxed) > connects, "the connection was rebuilt");
}

#[tokio::test]
async fn json_batch_messages_respect_max_message_bytes() {
    let Some(broker) = Mosquitto::start() else { return };
    let mut sub = Sub::new(broker.port, "t/#").await;
    let chain = SinkChain::start(
        sink_cfg(broker.port, "format = \"json-batch\"\nbatch_max_samples = 10000\nmax_message_bytes = \"2KiB\""),
        BufferConfig::default(),
    );
    let metas: Vec<_> = (0..300).map(|i| TagMeta::new("big", format!("tag{i}"), None)).collect();
    for m in &metas {
        chain.tb.ingest.push(sample(m, 1.5)).await;
    }
    chain.tb.ingest.barrier().await;
    let msgs = data(&sub.until_seqs(Duration::from_secs(10), chain.base + 1..=chain.base + 300, |_| true).await);
    assert!(msgs.iter().all(|m| m.payload.len() <= 2048), "{:?}", msgs.iter().map(|m| m.payload.len()).max());
    assert!(msgs.len() > 10);
    assert_eq!(seqs(&msgs).len(), 300);
}

/// One sample too large to publish (a 1 MB reason from data, a device name
/// with '/', and over 128 bytes) never blocks the ones behind it: it goes out
/// as a bad `payload_too_large` sample, on a topic of bounded levels, and the
/// cursor moves on (field case: a huge CSV cell under the lenient policy).
#[tokio::test]
async fn an_oversized_sample_is_replaced_and_never_jams_the_sink() {
    let Some(broker) = Mosquitto::start() else { return };
    for format in ["json", "json-batch"] {
        let mut sub = Sub::new(broker.port, "t/#").await;
        let chain = SinkChain::start(sink_cfg(broker.port, &format!("format = \"{format}\"")), BufferConfig::default());
        let ts = Timestamp::from_millis(1_764_410_073_120);
        let huge: Arc<str> = format!("parse_error: {}", "A".repeat(1_000_000)).into();
        let long_device = format!("press/{}", "x".repeat(70_000));
        chain.tb.ingest.push(Sample::bad(TagMeta::new(long_device.as_str(), "temp", None), huge, ts)).await;
        chain.tb.ingest.push(Sample::good(TagMeta::new("ok", "after", None), Value::F64(2.0), ts)).await;
        let msgs = data(&sub.until_seqs(Duration::from_secs(10), chain.base + 1..=chain.base + 2, |_| true).await);
        assert_eq!(seqs(&msgs), vec![chain.base + 1, chain.base + 2], "{format}: both delivered, in order");
        let first = &msgs[0];
        assert!(first.payload.len() <= 128 * 1024, "{format}: {} bytes", first.payload.len());
        assert!(first.topic.starts_with("t/press_xxx"), "{format}: no extra topic level: {}", &first.topic[..20]);
        assert!(first.topic.len() < 300, "{format}: topic levels are bounded");
        let j = first.json();
        let item = if format == "json" { j.clone() } else { j["samples"][0].clone() };
        assert_eq!(item["quality"], "bad");
        assert!(item["reason"].as_str().unwrap().starts_with("payload_too_large"), "{item}");
        assert!(
            eventually(Duration::from_secs(5), || chain.tb.buffer.cursor("mqtt").unwrap().get() == chain.base + 2).await,
            "the cursor moved past it"
        );
    }
}
