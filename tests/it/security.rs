//! Gateway-side security and sink detections (issue 13, H6): rogue writes
//! on writable tags, bursts of refused HTTP ingest tokens, sink backlog age.
//! Real simulator, real Modbus clients, real HTTP, real Mosquitto.

use std::path::Path;
use std::time::{Duration, Instant};

use relais::app::{Gateway, RunOptions};
use relais::component::actuate::{Origin, WriteRequest, WriteResult};
use relais::config::Config;
use relais::model::{Event, Record, Value};

use crate::common::{eventually, free_port};
use crate::modbus::sim;

/// Committed events of `kind` in the gateway's buffer.
async fn events(gw: &Gateway, kind: &str) -> Vec<Event> {
    gw.ingest.barrier().await;
    let recs = gw.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
    recs.into_iter()
        .filter_map(|r| match r {
            Record::Event(e) if &*e.kind == kind => Some(e),
            _ => None,
        })
        .collect()
}

/// Waits until the live table shows `device/tag` = `v`.
async fn reads(gw: &Gateway, device: &str, tag: &str, v: Value) {
    let live = gw.actuators.live().clone();
    let ok = eventually(Duration::from_secs(10), || live.get(device, tag).is_some_and(|l| l.value == v)).await;
    assert!(ok, "{device}/{tag} never read {v:?}: {:?}", live.get(device, tag));
}

const POLL: Duration = Duration::from_millis(200);

fn rogue_config(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"press\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"200ms\"\ntimeout = \"500ms\"\n\
         [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\nwritable = true\n\
         [[device.tag]]\nname = \"sp2\"\ntable = \"holding\"\naddress = 11\nwritable = true\n\
         [[device.tag]]\nname = \"hmi\"\ntable = \"holding\"\naddress = 12\nwritable = true\nrogue_write = false\n\
         [[device.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 13\n\
         {extra}",
        dir.join("data").display()
    )
}

/// A second Modbus client writing a writable holding register raises one
/// `security.rogue_write` with old and new within a poll period; relais's
/// own writes (a rule's, one through the actuator seam like `relais write`
/// and MQTT commands, a one-shot `relais write`) raise none; a tag with
/// `rogue_write = false` is not watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_writing_a_writable_register_is_one_rogue_write_and_relais_writes_none() {
    let port = free_port();
    let _sim = sim(&format!(
        "[[station]]\nname = \"press\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"50ms\"\n\
         [[station.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\nsignal = {{ kind = \"constant\", value = 10 }}\n\
         [[station.tag]]\nname = \"sp2\"\ntable = \"holding\"\naddress = 11\nsignal = {{ kind = \"constant\", value = 0 }}\n\
         [[station.tag]]\nname = \"hmi\"\ntable = \"holding\"\naddress = 12\nsignal = {{ kind = \"constant\", value = 0 }}\n\
         [[station.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 13\nsignal = {{ kind = \"square\", low = 10, high = 90, period = \"1s\", duty = 0.5 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let rule = "[[rule]]\nname = \"fill\"\ntag = \"press/level\"\nabove = 80\nclear_below = 20\nalarm = false\n\
                [[rule.write]]\ntag = \"press/sp2\"\nvalue = 55\n";
    let text = rogue_config(dir.path(), port, rule);
    let cfg = Config::parse(&text, "gw.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    reads(&gw, "press", "sp", Value::U64(10)).await;
    // The rule's write.
    reads(&gw, "press", "sp2", Value::U64(55)).await;
    // A write through the seam (the path of `relais write` and MQTT commands).
    let o = gw.actuators.write(WriteRequest::new("press", "sp", Value::U64(20), Origin::Cli)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    reads(&gw, "press", "sp", Value::U64(20)).await;
    tokio::time::sleep(POLL * 3).await;
    assert_eq!(events(&gw, "security.rogue_write").await, vec![], "relais's own writes are no rogue writes");

    // The second client: the rogue write, and a write to the unwatched tag.
    let t0 = Instant::now();
    {
        use tokio_modbus::prelude::*;
        let mut ctx = tcp::connect_slave(format!("127.0.0.1:{port}").parse().unwrap(), Slave(1)).await.unwrap();
        ctx.write_single_register(12, 7).await.unwrap().unwrap();
        ctx.write_single_register(10, 42).await.unwrap().unwrap();
    }
    let mut found = Vec::new();
    while t0.elapsed() < Duration::from_secs(5) && found.is_empty() {
        found = events(&gw, "security.rogue_write").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    reads(&gw, "press", "hmi", Value::U64(7)).await;
    tokio::time::sleep(POLL * 4).await;
    let found = events(&gw, "security.rogue_write").await;
    gw.shutdown().await.unwrap();
    eprintln!("rogue write detected {} ms after the foreign write (poll {} ms)", took.as_millis(), POLL.as_millis());
    assert_eq!(found.len(), 1, "one event for one foreign change: {found:#?}");
    let e = &found[0];
    assert_eq!((e.severity.as_str(), e.source.name()), ("error", "press/sp".to_string()));
    let d = &e.details;
    assert_eq!((d["detector"].as_str(), d["device"].as_str(), d["tag"].as_str()), (Some("rogue_write"), Some("press"), Some("sp")));
    assert_eq!((d["old"].as_u64(), d["new"].as_u64()), (Some(20), Some(42)), "{d}");
    assert_eq!((d["last_write"]["value"].as_u64(), d["last_write"]["origin"]["kind"].as_str()), (Some(20), Some("cli")), "{d}");
    assert!(took <= POLL * 2, "detected within a poll period (plus commit): {took:?}");

    // The one-shot `relais write` on the same data: no rogue write either.
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["write", "--config"])
        .arg(&cfg_path)
        .args(["press", "sp", "77"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("ok: press/sp = 77"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let cfg = Config::parse(&text, "gw.toml", dir.path()).unwrap();
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    reads(&gw, "press", "sp", Value::U64(77)).await;
    tokio::time::sleep(POLL * 3).await;
    let after = events(&gw, "security.rogue_write").await;
    gw.shutdown().await.unwrap();
    assert_eq!(after.len(), 1, "still only the foreign write: {after:#?}");
}

/// Twelve requests with a wrong token are twelve 401s and exactly one
/// `security.token_refused_burst` (threshold 10 in 60 s, the defaults),
/// naming the remote address and never the token; the right token still
/// works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_wrong_tokens_are_one_burst_event_and_the_right_token_still_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "right-t0ken\n").unwrap();
    let port = free_port();
    let cfg = crate::common::gateway_config(
        dir.path(),
        &format!(
            "[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\n\
             missing_timestamp = \"receive_time\"\nformat = \"json\"\n"
        ),
    );
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let client = crate::common::http_client();
    let url = format!("http://127.0.0.1:{port}/ingest/web");
    let post = |token: Option<&'static str>| {
        let mut r = client.post(&url).body("{\"temp\": 21.5}");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let mut codes = Vec::new();
    for i in 0..12 {
        codes.push(post(if i % 3 == 0 { None } else { Some("wr0ng-secret") }).await);
    }
    assert_eq!(codes, vec![401; 12]);
    assert_eq!(post(Some("right-t0ken")).await, 200, "the right token still works after the burst");
    let found = events(&gw, "security.token_refused_burst").await;
    gw.shutdown().await.unwrap();
    assert_eq!(found.len(), 1, "one event for the burst: {found:#?}");
    let e = &found[0];
    assert_eq!((e.severity.as_str(), e.source.kind(), e.source.name()), ("warning", "device", "web".to_string()));
    let d = &e.details;
    assert_eq!((d["detector"].as_str(), d["count"].as_u64(), d["window_s"].as_f64()), (Some("token_burst"), Some(10), Some(60.0)), "{d}");
    assert_eq!(d["remote_addresses"], serde_json::json!(["127.0.0.1"]), "{d}");
    let text = format!("{} {d}", e.message);
    assert!(!text.contains("wr0ng") && !text.contains("right-t0ken"), "a token in the event: {text}");
}

/// A sink whose broker stops raises `sink.backlog_old` once its oldest
/// undelivered record is older than `backlog_alarm_age`, and
/// `sink.backlog_ok` after the broker comes back and the backlog drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_to_a_stopped_broker_raises_backlog_old_then_backlog_ok_when_it_drains() {
    let Some(mut broker) = crate::common::Mosquitto::start() else { return };
    let port = free_port();
    let _sim = sim(&format!(
        "[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"50ms\"\n\
         [[station.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\nsignal = {{ kind = \"counter\", start = 0, step = 1 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::gateway_config(
        dir.path(),
        &format!(
            "[[device]]\nname = \"s\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
             [[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n\
             [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"bl{port}/{{device}}/{{tag}}\"\nbacklog_alarm_age = \"3s\"\nreconnect_max = \"1s\"\n",
            broker.url()
        ),
    );
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    // Delivered rows leave the buffer: collect the events from the tap.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Event>::new()));
    let mut sub = gw.buffer.tap().subscribe();
    let collect = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(t) = sub.recv().await {
                seen.lock().unwrap().extend(t.records().filter_map(|r| r.as_event().cloned()));
            }
        })
    };
    let events = |kind: &'static str| {
        let seen = seen.clone();
        async move { seen.lock().unwrap().iter().filter(|e| &*e.kind == kind).cloned().collect::<Vec<Event>>() }
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events("sink.backlog_old").await, vec![], "a connected sink that keeps up");
    broker.stop();
    let t0 = Instant::now();
    let mut old = Vec::new();
    while t0.elapsed() < Duration::from_secs(15) && old.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        old = events("sink.backlog_old").await;
    }
    let took_old = t0.elapsed();
    broker.restart();
    let t1 = Instant::now();
    let mut ok = Vec::new();
    while t1.elapsed() < Duration::from_secs(20) && ok.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ok = events("sink.backlog_ok").await;
    }
    let took_ok = t1.elapsed();
    let old = events("sink.backlog_old").await;
    gw.shutdown().await.unwrap();
    collect.abort();
    eprintln!(
        "backlog_old {} ms after the broker stopped (threshold 3 s); backlog_ok {} ms after it restarted",
        took_old.as_millis(),
        took_ok.as_millis()
    );
    assert_eq!(old.len(), 1, "one event per transition: {old:#?}");
    let d = &old[0].details;
    assert_eq!((old[0].source.kind(), old[0].source.name(), d["detector"].as_str()), ("sink", "b".to_string(), Some("sink_backlog")));
    assert!(d["oldest_age_s"].as_f64().unwrap() >= 3.0 && d["backlog"].as_u64().unwrap() > 0, "{d}");
    assert!(took_old >= Duration::from_secs(2) && took_old <= Duration::from_secs(7), "raised after the threshold: {took_old:?}");
    assert_eq!(ok.len(), 1, "{ok:#?}");
    assert_eq!(ok[0].details["detector"], "sink_backlog");
    assert!(ok[0].seq > old[0].seq);
}

/// The detectors' keys: `rogue_write` only on writable tags, `token_burst`
/// within 0..=1000 with a window of at least 1 s, `backlog_alarm_age` a
/// duration on every sink type; the defaults are the documented ones.
#[test]
fn the_detector_keys_are_checked_and_default_as_documented() {
    use relais::sinks::SinkConfig;
    use relais::sources::{DeviceConfig, SourceConfig};
    let errors = |body: &str| {
        Config::parse(&format!("[gateway]\nid = \"gw\"\n{body}"), "gw.toml", Path::new("."))
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    };
    let dev = |tag: &str| {
        format!(
            "[[device]]\nname = \"d\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:1502\"\n[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 0\n{tag}\n"
        )
    };
    let e = errors(&dev("rogue_write = false"));
    assert!(e.contains("`rogue_write` applies to writable tags only"), "{e}");
    let cfg = Config::parse(&format!("[gateway]\nid = \"gw\"\n{}", dev("writable = true")), "gw.toml", Path::new(".")).unwrap();
    let DeviceConfig::Modbus(m) = &cfg.devices[0] else { panic!("modbus") };
    assert!(m.tags[0].write.as_ref().unwrap().rogue_write, "on by default");
    let cfg = Config::parse(&format!("[gateway]\nid = \"gw\"\n{}", dev("writable = true\nrogue_write = false")), "gw.toml", Path::new("."))
        .unwrap();
    let DeviceConfig::Modbus(m) = &cfg.devices[0] else { panic!("modbus") };
    assert!(!m.tags[0].write.as_ref().unwrap().rogue_write);

    let http = |extra: &str| format!("[[source]]\nname = \"h\"\ntype = \"http\"\nallow_anonymous = true\n{extra}\n");
    let e = errors(&http("token_burst = 1001"));
    assert!(e.contains("token_burst"), "{e}");
    let e = errors(&http("token_burst_window = \"10ms\""));
    assert!(e.contains("token_burst_window"), "{e}");
    let cfg = Config::parse(&format!("[gateway]\nid = \"gw\"\n{}", http("")), "gw.toml", Path::new(".")).unwrap();
    let SourceConfig::Http(h) = &cfg.sources[0] else { panic!("http") };
    assert_eq!((h.token_burst, h.token_burst_window), (10, Duration::from_secs(60)));

    let mqtt = |extra: &str| format!("[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n{extra}\n");
    let e = errors(&mqtt("backlog_alarm_age = \"soon\""));
    assert!(e.contains("backlog_alarm_age"), "{e}");
    let cfg = Config::parse(&format!("[gateway]\nid = \"gw\"\n{}", mqtt("backlog_alarm_age = \"0s\"")), "gw.toml", Path::new(".")).unwrap();
    let SinkConfig::Mqtt(s) = &cfg.sinks[0] else { panic!("mqtt") };
    assert_eq!(s.backlog_alarm_age, Duration::ZERO);
    let cfg = Config::parse(&format!("[gateway]\nid = \"gw\"\n{}", mqtt("")), "gw.toml", Path::new(".")).unwrap();
    let SinkConfig::Mqtt(s) = &cfg.sinks[0] else { panic!("mqtt") };
    assert_eq!(s.backlog_alarm_age, Duration::from_secs(60));
    for (ty, extra) in [
        ("http", "url = \"http://127.0.0.1:9/x\"\nallow_insecure = true"),
        ("postgres", "url = \"postgres://u@127.0.0.1/db\"\npassword_env = \"PG\""),
        ("nats", "url = \"nats://127.0.0.1:4222\"\nstream = \"S\""),
    ] {
        let e = errors(&format!("[[sink]]\nname = \"s\"\ntype = \"{ty}\"\n{extra}\nbacklog_alarm_age = \"soon\"\n"));
        assert!(e.contains("backlog_alarm_age"), "{ty}: {e}");
    }
}

/// The intrusion pack's rogue write (`relais::sim::attack`, what a lab
/// scenario plays) is seen by the gateway as one `security.rogue_write`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intrusion_packs_rogue_write_is_detected_by_the_gateway() {
    use relais::sim::{Attack, attack};
    let port = free_port();
    let _sim = sim(&format!(
        "[[station]]\nname = \"press\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"50ms\"\n\
         [[station.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\nsignal = {{ kind = \"constant\", value = 10 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::gateway_config(
        dir.path(),
        &format!(
            "[[device]]\nname = \"press\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"200ms\"\n\
             [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\nwritable = true\n"
        ),
    );
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    reads(&gw, "press", "sp", Value::U64(10)).await;
    let target = format!("127.0.0.1:{port}").parse().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    attack(target, Attack::RogueWrite { unit: 1, address: 10, value: 99 }, 7, stop).await.unwrap();
    reads(&gw, "press", "sp", Value::U64(99)).await;
    tokio::time::sleep(POLL * 2).await;
    let found = events(&gw, "security.rogue_write").await;
    gw.shutdown().await.unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].details["old"].as_u64(), found[0].details["new"].as_u64()), (Some(10), Some(99)));
    assert!(found[0].details["last_write"].is_null(), "relais never wrote it");
}
