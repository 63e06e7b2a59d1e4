//! Sparkplug B output (`format = "sparkplug"`) against a Mosquitto of the
//! test's own; every message decoded by the reference decoder (Eclipse
//! Tahu's `sparkplug-payload`) and checked against the Sparkplug 3.0 session
//! rules ([`crate::sparkplug_check`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use relais::config::{BufferConfig, Config, SinkConfig};
use relais::model::{EventSource, Sample, Severity, TagMeta, Timestamp, Value};
use relais::sinks::mqtt::config::MqttSinkConfig;
use relais::sinks::mqtt::sparkplug::sink::SparkplugSink;
use relais::telemetry::SinkStats;

use crate::common::{Mosquitto, Msg, Sub, buffer_with, counter_station, sample, spawn_relais};
use crate::sparkplug_check::{Dec, check, decode, num, prop, reference_decoder};

/// Mosquitto keeps QoS 0 messages (Sparkplug births) for a subscriber that
/// is reconnecting after a broker restart.
pub const BROKER_CONF: &str = "queue_qos0_messages true";

/// A Sparkplug sink config (name "sp", group "plant", edge node "gw").
pub fn sp_cfg(port: u16, extra: &str) -> MqttSinkConfig {
    let text = format!(
        "[gateway]\nid = \"gw\"\n[[sink]]\nname = \"sp\"\ntype = \"mqtt\"\nformat = \"sparkplug\"\ngroup_id = \"plant\"\nurl = \"mqtt://127.0.0.1:{port}\"\nreconnect_max = \"1s\"\n{extra}"
    );
    let cfg = Config::parse(&text, "sink.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let Some(SinkConfig::Mqtt(m)) = cfg.sinks.into_iter().next() else { panic!("an MQTT sink") };
    m
}

/// Messages until `n` of them match `pred`, or `t`.
async fn until(sub: &mut Sub, all: &mut Vec<Msg>, t: Duration, n: usize, pred: impl Fn(&Msg) -> bool) {
    let have = all.iter().filter(|m| pred(m)).count();
    let more = sub.collect(t, |ms| have + ms.iter().filter(|m| pred(m)).count() >= n).await;
    all.extend(more);
    assert!(all.iter().filter(|m| pred(m)).count() >= n, "timed out waiting; got {} messages", all.len());
}

fn is(kind: &str) -> impl Fn(&Msg) -> bool + '_ {
    move |m: &Msg| m.topic.split('/').nth(2) == Some(kind)
}

#[tokio::test]
async fn births_before_data_seq_wraps_quality_ddeath_and_rebirth() {
    let Some(modules) = reference_decoder() else { return };
    let Some(broker) = Mosquitto::start_conf(BROKER_CONF) else { return };
    let mut sub = Sub::new(broker.port, "spBv1.0/#").await;
    let tb = buffer_with(BufferConfig::default(), &["sp"]);
    let stop = CancellationToken::new();
    let sink = SparkplugSink::new(
        sp_cfg(broker.port, "batch_max_samples = 1"),
        "gw",
        tb.dir.path(),
        tb.buffer.reader().unwrap(),
        tb.buffer.cursor("sp").unwrap(),
        tb.buffer.committed(),
        Arc::new(SinkStats::default()),
    )
    .unwrap();
    let task = tokio::spawn(sink.run(stop.clone(), Duration::from_millis(1500)));
    let mut all = Vec::new();
    until(&mut sub, &mut all, Duration::from_secs(10), 1, is("NBIRTH")).await;

    // 300 samples, one per message (batch_max_samples = 1): seq wraps at 255.
    let (p1t, p1i) = (TagMeta::new("pump1", "temp", Some("Cel")), TagMeta::new("pump1", "count", None));
    let p2 = TagMeta::new("pump2", "flow", Some("m3/h"));
    for i in 0..150u64 {
        tb.ingest.push(sample(&p1t, i as f64 + 0.5)).await;
        tb.ingest.push(Sample::good(p1i.clone(), Value::I64(-(i as i64)), Timestamp::now())).await;
    }
    tb.ingest.push(Sample::bad(p2.clone(), "timeout: no answer within 1s".into(), Timestamp::now())).await;
    tb.ingest.barrier().await;
    until(&mut sub, &mut all, Duration::from_secs(20), 301, is("DDATA")).await;

    // pump2 goes down: DDEATH; its valueless samples stay silent; a value brings a DBIRTH back.
    let events = tb.buffer.events();
    events.emit_now("device.down", Severity::Warning, EventSource::Device("pump2".into()), "pump2 down", serde_json::Value::Null);
    tb.ingest.barrier().await;
    // One DDEATH already: pump1's first DDATA held one metric, the next one a
    // new metric (DDEATH + DBIRTH declaring both).
    until(&mut sub, &mut all, Duration::from_secs(10), 2, is("DDEATH")).await;
    tb.ingest.push(Sample::bad(p2.clone(), "timeout: no answer within 1s".into(), Timestamp::now())).await;
    tb.ingest.push(sample(&p2, 7.25)).await;
    tb.ingest.barrier().await;
    until(&mut sub, &mut all, Duration::from_secs(10), 302, is("DDATA")).await;

    // Rebirth request from a host: NBIRTH (same bdSeq) and the DBIRTHs again.
    let host = rumqttc_client(broker.port).await;
    host.publish("spBv1.0/plant/NCMD/gw", rumqttc::QoS::AtLeastOnce, false, rebirth_payload()).await.unwrap();
    until(&mut sub, &mut all, Duration::from_secs(10), 2, is("NBIRTH")).await;
    until(&mut sub, &mut all, Duration::from_secs(10), 6, is("DBIRTH")).await;
    tb.ingest.push(sample(&p1t, 99.0)).await;
    tb.ingest.barrier().await;
    until(&mut sub, &mut all, Duration::from_secs(10), 303, is("DDATA")).await;
    stop.cancel();
    task.await.unwrap();
    until(&mut sub, &mut all, Duration::from_secs(5), 1, is("NDEATH")).await;

    let decs = decode(&modules, &all);
    let r = check(&decs);
    assert_eq!(r.nbirths, [0, 0], "the rebirth keeps the session's bdSeq");
    assert_eq!(r.ndeaths, [(0, 2)], "graceful stop: NDEATH with the same bdSeq");
    assert!(r.wraps >= 1, "seq wrapped at 255");
    assert_eq!(r.ddeaths, ["pump1", "pump2"], "a new metric, then device.down");
    // Values as sent, typed, in order, each sample once.
    let temps: Vec<f64> = r.values.iter().filter(|v| v.tag == "temp").map(|v| v.value.as_f64().unwrap()).collect();
    let want: Vec<f64> = (0..150).map(|i| i as f64 + 0.5).chain([99.0]).collect();
    assert_eq!(temps, want);
    let counts: Vec<String> = r.values.iter().filter(|v| v.tag == "count").map(|v| v.value.to_string()).collect();
    assert_eq!(counts.len(), 150);
    assert_eq!(counts[7], "\"-7\"", "Int64 keeps its sign");
    let flows: Vec<&crate::sparkplug_check::Seen> = r.values.iter().filter(|v| v.device == "pump2" && v.tag == "flow").collect();
    assert_eq!(flows.len(), 2, "the valueless sample of a dead device is not published: {flows:?}");
    assert_eq!((flows[0].value.is_null(), flows[0].quality), (true, Some(0)), "bad = null + Quality BAD");
    assert_eq!((flows[1].value.as_f64(), flows[1].quality), (Some(7.25), None));
    assert!(r.values.iter().all(|v| !v.historical), "nothing was backlog");
    let seqs: Vec<u64> = r.values.iter().map(|v| v.relais_seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "relais_seq ascending, no repeat");
    assert_eq!(r.events.len(), 1, "the device.down event as NDATA");
    // The DBIRTH declares types and units; the rebirth's DBIRTH carries the last values.
    let births: Vec<&Dec> = decs.iter().filter(|d| d.kind == "DBIRTH" && d.device.as_deref() == Some("pump1")).collect();
    let last = births.last().unwrap();
    let temp = last.metric("temp").unwrap();
    assert_eq!((temp["type"].as_str(), temp["value"].as_f64()), (Some("Double"), Some(149.5)));
    assert_eq!(prop(temp, "engUnit").and_then(|u| u.as_str()), Some("Cel"));
    assert_eq!(prop(temp, "Quality").and_then(|q| q.as_i64()), Some(192));
    assert_eq!(last.metric("count").unwrap()["type"], "Int64");
    let nb = decs.iter().find(|d| d.kind == "NBIRTH").unwrap();
    assert_eq!(nb.metric("bdSeq").and_then(|m| num(&m["value"])), Some(0));
}

async fn rumqttc_client(port: u16) -> rumqttc::AsyncClient {
    let o = rumqttc::MqttOptions::new(format!("host-{}", fastrand::u32(..)), "127.0.0.1", port);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    c
}

/// An NCMD payload with `Node Control/Rebirth = true`, built with relais's
/// own messages (the reference decoder checks what relais sends).
fn rebirth_payload() -> Vec<u8> {
    use prost::Message;
    use relais::sinks::mqtt::sparkplug::proto::{Metric, MetricValue, Payload, datatype};
    let m = Metric {
        name: Some("Node Control/Rebirth".into()),
        datatype: Some(datatype::BOOLEAN),
        value: Some(MetricValue::BooleanValue(true)),
        ..Default::default()
    };
    Payload { timestamp: Some(0), metrics: vec![m], seq: None }.encode_to_vec()
}

fn write_daemon_config(dir: &Path, broker_port: u16, sim_port: u16) -> std::path::PathBuf {
    let mut tags = String::new();
    for i in 0..4 {
        tags += &format!("[[device.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\n");
    }
    let text = format!(
        "[gateway]\nid = \"gw1\"\ndata_dir = \"{data}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\n\
         [[device]]\nname = \"line\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"20ms\"\n{tags}\n\
         [[sink]]\nname = \"sp\"\ntype = \"mqtt\"\nformat = \"sparkplug\"\ngroup_id = \"plant\"\nurl = \"mqtt://127.0.0.1:{broker_port}\"\nreconnect_max = \"1s\"\n",
        data = dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// bdSeq (Sparkplug 3.0 §5.4) across 5 broker restarts and 2 `kill -9` of
/// relais: each CONNECT's NBIRTH carries the previous one plus one, each
/// NDEATH (Will or graceful) the bdSeq of its session; births precede data
/// in every session; the backlog replayed after an outage is historical;
/// every accepted record arrives.
#[tokio::test]
async fn bd_seq_across_five_broker_restarts_and_two_kill_9() {
    let Some(modules) = reference_decoder() else { return };
    let Some(mut broker) = Mosquitto::start_conf(BROKER_CONF) else { return };
    let sim_port = crate::common::free_port();
    let _sim = crate::modbus::sim(&counter_station(sim_port, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_daemon_config(dir.path(), broker.port, sim_port);
    let mut sub = Sub::with_id(broker.port, "spBv1.0/#", "sp-bdseq-sub", false).await;
    let mut all = Vec::new();
    let mut child = spawn_relais(&cfg);
    until(&mut sub, &mut all, Duration::from_secs(15), 1, is("DDATA")).await;
    let count = |all: &[Msg], kind: &str| all.iter().filter(|m| is(kind)(m)).count();
    for i in 0..5 {
        broker.stop();
        // A longer outage every other time: the refused attempts in between
        // sent no CONNECT and use no bdSeq.
        tokio::time::sleep(Duration::from_millis(if i % 2 == 0 { 700 } else { 2500 })).await;
        let n = count(&all, "NBIRTH");
        broker.restart();
        until(&mut sub, &mut all, Duration::from_secs(15), n + 1, is("NBIRTH")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..2 {
        let (deaths, births) = (count(&all, "NDEATH"), count(&all, "NBIRTH"));
        crate::common::kill(child.id(), 9);
        let _ = child.wait();
        until(&mut sub, &mut all, Duration::from_secs(15), deaths + 1, is("NDEATH")).await;
        child = spawn_relais(&cfg);
        until(&mut sub, &mut all, Duration::from_secs(15), births + 1, is("NBIRTH")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deaths = count(&all, "NDEATH");
    crate::common::kill(child.id(), 15);
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    until(&mut sub, &mut all, Duration::from_secs(10), deaths + 1, is("NDEATH")).await;
    // Let late messages arrive.
    all.extend(sub.collect(Duration::from_millis(500), |_| false).await);

    let decs = decode(&modules, &all);
    let r = check(&decs);
    assert_eq!(r.nbirths, (0..8).collect::<Vec<u64>>(), "one bdSeq per CONNECT, +1 each, across restarts and kill -9");
    // The two Wills and the graceful NDEATH each carry the bdSeq of the session they end.
    let ends: Vec<(u64, usize)> = r.ndeaths.clone();
    assert!(ends.contains(&(5, 6)) && ends.contains(&(6, 7)) && ends.contains(&(7, 8)), "NDEATH bdSeq = its NBIRTH's: {ends:?}");
    for (bd, before) in &ends {
        assert!(r.nbirths[..*before].contains(bd), "an NDEATH with a bdSeq no NBIRTH announced before it: {bd}");
    }
    assert!(r.values.iter().any(|v| v.historical), "the backlog after an outage is marked is_historical");
    // Every accepted record (samples and events) arrived, as a metric value or an NDATA event.
    let data = dir.path().join("data");
    let c = rusqlite::Connection::open(data.join("buffer.db")).unwrap();
    let meta = |k: &str| c.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get::<_, i64>(0)).unwrap() as u64;
    let (first, last) = (meta("seq_origin") + 1, meta("last_seq"));
    let got: std::collections::HashSet<u64> = r.values.iter().map(|v| v.relais_seq).chain(r.events.iter().copied()).collect();
    let missing: Vec<u64> = (first..=last).filter(|s| !got.contains(s)).take(20).collect();
    assert!(missing.is_empty(), "accepted records missing on the broker: {missing:?} of {first}..={last}");
    assert_eq!(std::fs::read_to_string(data.join("sparkplug-sp.bdseq")).unwrap().trim(), "7");
}
