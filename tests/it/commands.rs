//! Commands over MQTT (issue 12) against a private Mosquitto and the
//! simulator: one write per command id whatever is delivered again (a
//! duplicate, after a broker restart, after `kill -9` of relais), each
//! delivery answered; refusals with their reasons and security events;
//! alarm acknowledgement by command.

use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{Value as J, json};

use relais::app::{Gateway, RunOptions};
use relais::config::Config;
use relais::model::{Event as RelaisEvent, Record};
use relais::sim::Sim;

use crate::common::{Mosquitto, Sub, free_port, kill, spawn_relais, wait_exit};

/// Publishes `payload` at QoS 1 and waits for the broker's PUBACK.
async fn publish(port: u16, topic: &str, payload: &str) {
    let mut o = MqttOptions::new(format!("test-pub-{}", fastrand::u64(..)), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap();
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(10), "no PUBACK for {topic}");
        match tokio::time::timeout(Duration::from_secs(1), el.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => break,
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
}

/// The next response with `id` on `sub` within 10 s.
async fn response(sub: &mut Sub, id: &str) -> (String, J) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(m) = sub.next(Duration::from_millis(500)).await {
            let j = m.json();
            if j["id"] == id {
                return (m.topic, j);
            }
        }
    }
    panic!("no response to command {id:?} within 10 s");
}

/// A station on `port` with a constant `level` (holding 0) and free registers.
fn station(port: u16, level: i64) -> String {
    format!(
        "[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{port}\"\n\
         [[station.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\nsignal = {{ kind = \"constant\", value = {level} }}\n"
    )
}

/// A gateway body: device `pump` (writable `sp` at holding 10, read-only
/// `ro` at holding 11, `level` at 0) and `[commands]` with `extra` keys.
fn body(data: &Path, sim_port: u16, broker: &str, extra: &str) -> String {
    format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"200ms\"\n\
         [[device.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nwritable = true\nmin = 0\nmax = 100\n\
         [[device.tag]]\nname = \"ro\"\ntable = \"holding\"\naddress = 11\n\
         [commands]\nurl = \"{broker}\"\nprefix = \"t\"\n{extra}\n",
        data.display()
    )
}

/// The writes the simulator applied to holding 10.
fn writes(sim: &Sim) -> usize {
    sim.station("s").unwrap().take_writes().iter().filter(|w| w.1 == 10).count()
}

async fn events(gw: &Gateway, kind: &str) -> Vec<RelaisEvent> {
    gw.ingest.barrier().await;
    let recs = gw.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
    recs.into_iter()
        .filter_map(|r| match r {
            Record::Event(e) if &*e.kind == kind => Some(e),
            _ => None,
        })
        .collect()
}

const CMD: &str = "t/relais/gw/cmd/pump/sp";
const RESULT: &str = "t/relais/gw/cmd-result/#";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_writes_once_across_duplicates_and_a_broker_restart() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let port = free_port();
    let sim = crate::modbus::sim(&station(port, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(&body(&dir.path().join("data"), port, &broker.url(), ""), "gw.toml", Path::new(".")).unwrap();
    let mut sub = Sub::with_id(broker.port, RESULT, "results", false).await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c1 = r#"{"id":"c1","value":42,"client":"hmi-2"}"#;
    publish(broker.port, CMD, c1).await;
    let (topic, r) = response(&mut sub, "c1").await;
    assert_eq!(topic, "t/relais/gw/cmd-result/pump/sp");
    assert_eq!((r["result"].as_str(), r["readback"].as_i64(), r["duplicate"].as_bool()), (Some("ok"), Some(42), None), "{r}");
    // The same id again (a QoS 1 duplicate, a sender's retry): answered, not written.
    publish(broker.port, CMD, c1).await;
    let (_, r) = response(&mut sub, "c1").await;
    assert_eq!((r["result"].as_str(), r["duplicate"].as_bool()), (Some("ok"), Some(true)), "{r}");
    // After a broker restart, once more.
    broker.restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(broker.port, CMD, c1).await;
    let (_, r) = response(&mut sub, "c1").await;
    assert_eq!((r["result"].as_str(), r["duplicate"].as_bool()), (Some("ok"), Some(true)), "{r}");
    // A new id after the restart is written: the connection is back.
    publish(broker.port, CMD, r#"{"id":"c2","value":43,"response_topic":"t/answers/c2"}"#).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audits = events(&gw, "write.audit").await;
    gw.shutdown().await.unwrap();
    assert_eq!(writes(&sim), 2, "c1 once, c2 once");
    let by_c1: Vec<_> = audits.iter().filter(|e| e.details["origin"]["id"] == "c1").collect();
    assert_eq!(by_c1.len(), 1, "one write attempt for c1: {audits:#?}");
    assert_eq!(by_c1[0].details["origin"], json!({"kind": "command", "id": "c1", "client": "hmi-2"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_writes_once_across_kill_9_of_relais() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let sim = crate::modbus::sim(&station(port, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, body(&dir.path().join("data"), port, &broker.url(), "")).unwrap();
    let mut sub = Sub::with_id(broker.port, RESULT, "results-k9", false).await;
    let mut child = spawn_relais(&cfg);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = r#"{"id":"k1","value":7,"ttl":"1h"}"#;
    publish(broker.port, CMD, c).await;
    let (_, r) = response(&mut sub, "k1").await;
    assert_eq!(r["result"], "ok", "{r}");
    kill(child.id(), 9);
    let _ = child.wait();
    // Sent while relais is down: the broker keeps it for the persistent session.
    publish(broker.port, CMD, c).await;
    let mut child = spawn_relais(&cfg);
    let (_, r) = response(&mut sub, "k1").await;
    assert_eq!((r["result"].as_str(), r["duplicate"].as_bool()), (Some("ok"), Some(true)), "{r}");
    publish(broker.port, CMD, c).await;
    let (_, r) = response(&mut sub, "k1").await;
    assert_eq!(r["duplicate"], true, "{r}");
    kill(child.id(), 15);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    assert_eq!(writes(&sim), 1, "written once over three deliveries and a kill -9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_say_why_and_are_security_events() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let sim = crate::modbus::sim(&station(port, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
    let extra = format!("token_file = \"{}\"\nallow = [\"pump/*\"]", dir.path().join("token").display());
    let cfg = Config::parse(&body(&dir.path().join("data"), port, &broker.url(), &extra), "gw.toml", Path::new(".")).unwrap();
    let mut sub = Sub::with_id(broker.port, RESULT, "results-r", false).await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tok = "\"token\":\"s3cret-token\"";
    let cases = [
        ("bad1", CMD, "{\"id\":\"bad1\",\"value\":[1]}".to_string(), "bad_payload"),
        ("nojson", CMD, "{\"id\":\"nojson\",".to_string(), "bad_payload"),
        ("tok1", CMD, "{\"id\":\"tok1\",\"value\":5,\"token\":\"guess\"}".to_string(), "bad_token"),
        ("tok2", CMD, "{\"id\":\"tok2\",\"value\":5}".to_string(), "bad_token"),
        ("old1", CMD, format!("{{\"id\":\"old1\",\"value\":5,\"ttl\":\"5s\",\"ts\":\"2020-01-01T00:00:00Z\",{tok}}}"), "expired"),
        ("loop1", CMD, format!("{{\"id\":\"loop1\",\"value\":5,\"response_topic\":\"{CMD}\",{tok}}}"), "bad_payload"),
        ("ro1", "t/relais/gw/cmd/pump/ro", format!("{{\"id\":\"ro1\",\"value\":5,{tok}}}"), "not_writable"),
        ("far1", CMD, format!("{{\"id\":\"far1\",\"value\":500,{tok}}}"), "out_of_range"),
        ("ok1", CMD, format!("{{\"id\":\"ok1\",\"value\":5,{tok}}}"), ""),
    ];
    for (id, topic, payload, code) in &cases {
        publish(broker.port, topic, payload).await;
        if *id == "nojson" {
            // No id could be read: the answer has `"id": null`.
            let m = sub.next(Duration::from_secs(10)).await.expect("an answer to a payload that is not JSON");
            let r = m.json();
            assert_eq!((r["id"].clone(), r["result"].as_str()), (J::Null, Some("refused")), "{r}");
            assert!(r["reason"].as_str().unwrap().starts_with("bad_payload: not JSON"), "{r}");
            continue;
        }
        let (_, r) = response(&mut sub, id).await;
        let reason = r["reason"].as_str().unwrap_or("");
        if code.is_empty() {
            assert_eq!(r["result"], "ok", "{r}");
        } else {
            assert_eq!(r["result"], "refused", "{id}: {r}");
            assert!(reason.starts_with(code), "{id}: {code} expected: {r}");
        }
    }
    let refused = events(&gw, "security.command_refused").await;
    let write_refused = events(&gw, "security.write_refused").await;
    let audits = events(&gw, "write.audit").await;
    gw.shutdown().await.unwrap();
    assert_eq!(writes(&sim), 1, "only ok1 was written");
    let ids: Vec<&str> = refused.iter().map(|e| e.details["id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids, ["bad1", "", "tok1", "tok2", "old1", "loop1"], "the commands layer's refusals");
    let ids: Vec<&str> = write_refused.iter().map(|e| e.details["origin"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ro1", "far1"], "the tag's allow-list and limits refuse through the actuator seam");
    let audited: Vec<(&str, &str)> =
        audits.iter().map(|e| (e.details["origin"]["id"].as_str().unwrap(), e.details["result"].as_str().unwrap())).collect();
    for id in ["bad1", "tok1", "old1", "loop1", "ro1", "far1"] {
        assert!(audited.contains(&(id, "refused")), "{id} in the audit: {audited:?}");
    }
    assert!(audited.contains(&("ok1", "ok")), "{audited:?}");
    let all = format!("{refused:?}{audits:?}");
    assert!(!all.contains("s3cret") && !all.contains("guess"), "tokens are never recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_is_acknowledged_by_command_once() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let _sim = crate::modbus::sim(&station(port, 90)).await;
    let dir = tempfile::tempdir().unwrap();
    // Operators may acknowledge alarms with their own token.
    std::fs::write(dir.path().join("op.token"), "op-token\n").unwrap();
    let grant = format!("[[commands.grant]]\ntargets = [\"alarm/*\"]\ntoken_file = \"{}\"", dir.path().join("op.token").display());
    let text = format!(
        "{}[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"t/{{device}}/{{tag}}\"\n\
         [[rule]]\nname = \"tank-high\"\ntag = \"pump/level\"\nabove = 80\n",
        body(&dir.path().join("data"), port, &broker.url(), &grant),
        broker.url()
    );
    let cfg = Config::parse(&text, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut alarms = Sub::new(broker.port, "t/relais/gw/alarm/#").await;
    let mut sub = Sub::with_id(broker.port, RESULT, "results-a", false).await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let raised = alarms.next(Duration::from_secs(10)).await.expect("the alarm is raised").json();
    assert_eq!(raised["details"]["transition"], "raised");
    let ack = "t/relais/gw/cmd/alarm/tank-high";
    // Without the grant's token: refused, not recorded (the same id with the token runs).
    publish(broker.port, ack, r#"{"id":"a1","ack":true}"#).await;
    let (_, r) = response(&mut sub, "a1").await;
    assert_eq!(r["result"], "refused", "{r}");
    assert!(r["reason"].as_str().unwrap().starts_with("bad_token"), "{r}");
    publish(broker.port, ack, r#"{"id":"a1","ack":true,"client":"operator-7","token":"op-token"}"#).await;
    let (topic, r) = response(&mut sub, "a1").await;
    assert_eq!(topic, "t/relais/gw/cmd-result/alarm/tank-high");
    assert_eq!(
        (r["result"].as_str(), r["state"].as_str(), r["rule"].as_str()),
        (Some("ok"), Some("acknowledged"), Some("tank-high")),
        "{r}"
    );
    let acked = alarms.next(Duration::from_secs(10)).await.expect("the acknowledgement on the alarm topic").json();
    assert_eq!((acked["details"]["transition"].as_str(), acked["details"]["state"].as_str()), (Some("acknowledged"), Some("acknowledged")));
    assert!(acked["details"]["by"].as_str().unwrap().contains("\"a1\""), "{acked}");
    // The same id again: the stored answer, no second transition.
    publish(broker.port, ack, r#"{"id":"a1","ack":true,"token":"op-token"}"#).await;
    let (_, r) = response(&mut sub, "a1").await;
    assert_eq!((r["state"].as_str(), r["duplicate"].as_bool()), (Some("acknowledged"), Some(true)), "{r}");
    // A new id: nothing left to acknowledge; an unknown rule.
    publish(broker.port, ack, r#"{"id":"a2","ack":true,"token":"op-token"}"#).await;
    let (_, r) = response(&mut sub, "a2").await;
    assert_eq!(r["result"], "refused", "{r}");
    assert!(r["reason"].as_str().unwrap().starts_with("nothing_to_acknowledge"), "{r}");
    publish(broker.port, "t/relais/gw/cmd/alarm/nope", r#"{"id":"a3","ack":true,"token":"op-token"}"#).await;
    let (_, r) = response(&mut sub, "a3").await;
    assert!(r["reason"].as_str().unwrap().starts_with("unknown_rule"), "{r}");
    assert!(alarms.next(Duration::from_millis(800)).await.is_none(), "one acknowledgement transition");
    gw.shutdown().await.unwrap();
}

/// A duplicate that arrives while its first delivery still executes (a slow
/// device: 400 ms per answer) is answered when the write settles, with the
/// same outcome; the device is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_during_the_write_is_answered_when_it_settles() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let sim = crate::modbus::sim(&format!("{}[station.faults]\ndelay = \"400ms\"\n", station(port, 1))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(&body(&dir.path().join("data"), port, &broker.url(), ""), "gw.toml", Path::new(".")).unwrap();
    let mut sub = Sub::with_id(broker.port, RESULT, "results-d", false).await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = r#"{"id":"d1","value":9}"#;
    publish(broker.port, CMD, c).await;
    publish(broker.port, CMD, c).await;
    let (_, a) = response(&mut sub, "d1").await;
    let (_, b) = response(&mut sub, "d1").await;
    gw.shutdown().await.unwrap();
    let mut dup: Vec<bool> = [&a, &b].iter().map(|r| r["duplicate"].as_bool().unwrap_or(false)).collect();
    dup.sort();
    assert_eq!(dup, [false, true], "{a}\n{b}");
    assert_eq!((a["result"].as_str(), b["result"].as_str()), (Some("ok"), Some("ok")), "{a}\n{b}");
    assert_eq!(a["readback"], b["readback"]);
    assert_eq!(writes(&sim), 1);
}

/// An id the store holds `pending` (relais stopped between the record and
/// the outcome) is answered `unknown` at the next start and never executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_left_pending_by_a_crash_is_unknown_and_never_run() {
    use relais::processors::commands::store::Store;
    use relais::processors::commands::topic::Target;
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let sim = crate::modbus::sim(&station(port, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let (store, _) = Store::open(&data, Duration::from_secs(3600)).unwrap();
        store.begin("p1", &Target::Tag { device: "pump".into(), tag: "sp".into() }).unwrap();
    }
    let cfg = Config::parse(&body(&data, port, &broker.url(), ""), "gw.toml", Path::new(".")).unwrap();
    let mut sub = Sub::with_id(broker.port, RESULT, "results-p", false).await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(broker.port, CMD, r#"{"id":"p1","value":11}"#).await;
    let (_, r) = response(&mut sub, "p1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.shutdown().await.unwrap();
    assert_eq!((r["result"].as_str(), r["duplicate"].as_bool()), (Some("unknown"), Some(true)), "{r}");
    assert!(r["reason"].as_str().unwrap().starts_with("restart:"), "{r}");
    assert_eq!(writes(&sim), 0, "never executed");
}

#[test]
fn commands_config_errors_are_located() {
    let text = "[gateway]\nid = \"gw\"\n[commands]\nurl = \"mqtt://127.0.0.1:1883\"\ntopic = \"c/{device}\"\nallow = [\"pump\"]\nttl = 3\n\
                [[commands.grant]]\ntargets = [\"alarm/*\"]\n";
    let e = Config::parse(text, "gw.toml", Path::new(".")).unwrap_err().to_string();
    for want in [
        "gw.toml:5:9",
        "commands / topic",
        "needs the level {tag}",
        "commands / allow",
        "not an allow pattern",
        "ttl",
        "grant #1",
        "token_file",
    ] {
        assert!(e.contains(want), "{want:?} missing in:\n{e}");
    }
    // `relais check` describes the section of the shipped sample.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/processors/commands/sample.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relais")).arg("check").arg("--config").arg(&sample).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("commands mqtt://127.0.0.1:1883 on icam/line5/relais/line5-edge01/cmd/{device}/{tag}"), "{text}");
    assert!(text.contains("allow pump1/speed, alarm/*"), "{text}");
    let ok = "[gateway]\nid = \"gw\"\n[commands]\nurl = \"mqtt://127.0.0.1:1883\"\nprefix = \"plant\"\n";
    let cfg = Config::parse(ok, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.commands.unwrap().topics.command.filter(), "plant/relais/gw/cmd/+/+");
}
