//! Write guards (issue 12, "Allow-list and limits"): the `interlock` of a
//! writable tag evaluated on the live table, the bad-quality refusal, each
//! refused with its reason, a security event and an audit row; the
//! configuration checks of rule writes and interlocks; the audit copy kept
//! past delivery and bounded by its own limits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use relais::buffer::Buffer;
use relais::buffer::audit::audit_events;
use relais::buffer::quarantine::open_readonly;
use relais::component::Actuators;
use relais::component::actuate::{Origin, WriteOutcome, WriteRequest, WriteResult};
use relais::component::live::LiveTable;
use relais::config::{BufferConfig, Config};
use relais::ingest::Ingest;
use relais::model::{Event, EventSource, Quality, Record, Severity, Timestamp, Value};
use relais::sim::station::ReadData;
use relais::sources::modbus::types::Table;
use relais::telemetry::Telemetry;

use crate::common::{eventually, free_port};
use crate::modbus::{devices, sim};

/// Pollers of `dev_toml` into a buffer, with the live table fed from its tap
/// and read by the write guards.
struct Rig {
    acts: Actuators,
    live: LiveTable,
    ingest: Arc<Ingest>,
    buffer: Buffer,
    stop: CancellationToken,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start(dev_toml: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Arc::new(Ingest::new(65536));
        let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
        let live = LiveTable::new();
        let stop = CancellationToken::new();
        live.spawn(buffer.tap(), stop.clone());
        let acts = Actuators::new(Some(ingest.events())).with_live(live.clone());
        let telemetry = Telemetry::default();
        relais::sources::modbus::poller::spawn_all_with(devices(dev_toml), ingest.clone(), &telemetry, stop.clone(), &acts).unwrap();
        Rig { acts, live, ingest, buffer, stop, dir }
    }

    async fn write(&self, device: &str, tag: &str, v: Value) -> WriteOutcome {
        self.acts.write(WriteRequest::new(device, tag, v, Origin::Rule { id: "guard-test".into() })).await
    }

    /// Waits until the live table shows `device`/`tag` with quality `q` (and value `v` when given).
    async fn until(&self, device: &str, tag: &str, q: Quality, v: Option<Value>) {
        let ok = eventually(Duration::from_secs(10), || {
            self.live.get(device, tag).is_some_and(|l| l.quality == q && v.as_ref().is_none_or(|v| *v == l.value))
        })
        .await;
        assert!(ok, "{device}/{tag} never read {q} {v:?}: {:?}", self.live.get(device, tag));
    }

    /// Committed events of `kind`.
    async fn events(&self, kind: &str) -> Vec<Event> {
        self.ingest.barrier().await;
        let recs = self.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
        recs.into_iter()
            .filter_map(|r| match r {
                Record::Event(e) if &*e.kind == kind => Some(e),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn device(name: &str, port: u16, tags: &str) -> String {
    format!(
        "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"50ms\"\ntimeout = \"200ms\"\n{tags}\n"
    )
}

/// The conveyor interlock and the bad-quality guard on real polls: refused
/// while the conveyor runs, allowed once it reads stopped; a device whose
/// last read failed is refused `bad_quality` (not sent), unless the tag says
/// `allow_bad_quality`. Each refusal is a security event and an audit row
/// with its reason, also in the audit copy `relais audit` reads.
#[tokio::test]
async fn interlock_and_bad_quality_refuse_with_reasons_security_events_and_audit() {
    let (port, dead) = (free_port(), free_port());
    let sim = sim(&format!(
        "[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{port}\"\nunit_id = 1\n\
         [[station.tag]]\nname = \"running\"\ntable = \"coil\"\naddress = 0\nsignal = {{ kind = \"constant\", value = 1 }}\n"
    ))
    .await;
    let line = "[[device.tag]]\nname = \"running\"\ntable = \"coil\"\naddress = 0\nwritable = true\n\
        [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nwritable = true\n\
        interlock = { tag = \"line/running\", equals = false }\ninterlock_max_age = \"2s\"\n";
    let down = "[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\nwritable = true\n\
        [[device.tag]]\nname = \"sp2\"\ntable = \"holding\"\naddress = 11\nwritable = true\nallow_bad_quality = true\n";
    let rig = Rig::start(&format!("{}{}", device("line", port, line), device("dead", dead, down)));
    rig.until("line", "running", Quality::Good, Some(Value::Bool(true))).await;
    let o = rig.write("line", "sp", Value::I64(5)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "interlock"), "{o:?}");
    let why = o.reason.clone().unwrap();
    assert!(why.contains("line/running == 0 does not hold (line/running = true ("), "names the condition and the value: {why}");
    // The conveyor stops (written here; a plant would see it stop): the write goes through.
    let o = rig.write("line", "running", Value::Bool(false)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    rig.until("line", "running", Quality::Good, Some(Value::Bool(false))).await;
    let o = rig.write("line", "sp", Value::I64(5)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    match sim.station("s").unwrap().read(Table::Holding, 10, 1).unwrap() {
        ReadData::Words(w) => assert_eq!(w[0], 5),
        _ => unreachable!(),
    }
    // The device that does not answer.
    rig.until("dead", "sp", Quality::Bad, None).await;
    let o = rig.write("dead", "sp", Value::I64(1)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "bad_quality"), "{o:?}");
    assert!(o.reason.as_deref().unwrap().contains("the last read of dead/sp is bad (comm_failure"), "{o:?}");
    assert!(o.sent.is_none(), "never sent: {o:?}");
    let o = rig.write("dead", "sp2", Value::I64(1)).await;
    assert_eq!(o.result, WriteResult::Failed, "allow_bad_quality: tried, and failed on the link: {o:?}");
    let sec: Vec<String> =
        rig.events("security.write_refused").await.iter().map(|e| e.details["reason"].as_str().unwrap().to_string()).collect();
    let codes: Vec<&str> = sec.iter().map(|r| r.split(':').next().unwrap()).collect();
    assert_eq!(codes, ["interlock", "bad_quality"], "{sec:?}");
    let audit = audit_events(&open_readonly(rig.dir.path()).unwrap(), None).unwrap();
    let rows: Vec<(String, String)> = audit
        .iter()
        .filter(|a| a.details["result"] == "refused")
        .map(|a| (a.source.clone(), a.details["reason"].as_str().unwrap().split(':').next().unwrap().to_string()))
        .collect();
    assert_eq!(rows, [("line/sp".to_string(), "interlock".to_string()), ("dead/sp".into(), "bad_quality".into())]);
    assert_eq!(audit.len(), 5, "every attempt audited: {audit:#?}");
}

fn gateway(body: &str) -> String {
    format!(
        "[gateway]\nid = \"gw\"\n\
         [[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:1502\"\n\
         [[device.tag]]\nname = \"start\"\ntable = \"coil\"\naddress = 0\nwritable = true\n\
         [[device.tag]]\nname = \"flow\"\ntable = \"holding\"\naddress = 0\n{body}"
    )
}

fn errors_of(text: &str) -> String {
    Config::parse(text, "gw.toml", Path::new(".")).map(|_| String::new()).unwrap_or_else(|e| e.to_string())
}

/// `relais check` rejects rule writes that could never succeed and
/// interlocks on tags nothing supplies, and warns for a condition on a
/// device nothing supplies (a typo).
#[test]
fn rule_writes_and_interlocks_are_checked_against_the_configured_tags() {
    let rule = |cond: &str, write: &str| format!("[[rule]]\nname = \"r\"\n{cond}\n[[rule.write]]\ntag = \"{write}\"\nvalue = 1\n");
    let e = errors_of(&gateway(&rule("tag = \"pump/flow\"\nabove = 5", "pump/flow")));
    assert!(e.contains("gw.toml:") && e.contains("rule \"r\" / write / tag"), "{e}");
    assert!(e.contains("tag \"flow\" of device \"pump\" is not writable"), "{e}");
    let e = errors_of(&gateway(&rule("tag = \"pump/flow\"\nabove = 5", "valve/open")));
    assert!(e.contains("no [[device]] \"valve\" (devices: pump)"), "{e}");
    let e = errors_of(&gateway(&rule("tag = \"pump/flow\"\nabove = 5", "pump/strat")));
    assert!(e.contains("device \"pump\" has no tag \"strat\""), "{e}");
    let cfg = Config::parse(&gateway(&rule("tag = \"pump9/flow\"\nabove = 5", "pump/start")), "gw.toml", Path::new(".")).unwrap();
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("no [[device]] or [[source]] supplies device \"pump9\"")), "{w:?}");
    // Interlocks: an unknown tag or device is an error, so are history tests.
    let il = |x: &str| gateway("").replace("address = 0\nwritable = true\n", &format!("address = 0\nwritable = true\ninterlock = {x}\n"));
    let e = errors_of(&il("{ tag = \"pump/flwo\", below = 10 }"));
    assert!(e.contains("device \"pump\" / tag \"start\" / interlock") && e.contains("device \"pump\" has no tag \"flwo\""), "{e}");
    let e = errors_of(&il("{ all = [ { tag = \"pump/flow\", below = 10 }, { tag = \"conveyor/running\", equals = false } ] }"));
    assert!(e.contains("no [[device]] or [[source]] supplies device \"conveyor\""), "{e}");
    let e = errors_of(&il("{ tag = \"pump/flow\", edge = \"rising\" }"));
    assert!(e.contains("an interlock tests current values only"), "{e}");
    let e = errors_of(&il("{ tag = \"pump/flow\", below = 10, clear_above = 12 }"));
    assert!(e.contains("an interlock tests current values only"), "{e}");
    assert_eq!(errors_of(&il("{ not = { tag = \"pump/flow\", above = 10 } }")), "");
    let e = errors_of(
        &gateway("").replace("table = \"holding\"\naddress = 0\n", "table = \"holding\"\naddress = 0\ninterlock_max_age = \"5s\"\n"),
    );
    assert!(e.contains("`interlock_max_age` applies to writable tags only"), "{e}");
}

/// The audit copy outlives buffer retention (here `max_rows`, which drops
/// the event rows) and is bounded by `audit_retention` and `audit_max_rows`.
#[tokio::test]
async fn the_audit_copy_outlives_retention_and_keeps_its_own_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Arc::new(Ingest::new(65536));
    let cfg = BufferConfig { max_rows: 20, audit_max_rows: 5, ..Default::default() };
    let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &[]).unwrap();
    let src = || EventSource::Tag { device: "d".into(), tag: "sp".into() };
    let events = ingest.events();
    for i in 0..8 {
        events.emit(Event::new("write.audit", Severity::Info, src(), format!("write {i}")).with_details(serde_json::json!({"n": i})));
    }
    // A security event 100 days old, newer by seq: past audit_retention (90 days).
    let mut old = Event::new("security.write_refused", Severity::Warning, src(), "old refusal");
    old.ts = Timestamp(Timestamp::now().as_nanos() - 100 * 86_400 * 1_000_000_000);
    events.emit(old);
    events.emit(Event::new("security.write_refused", Severity::Warning, src(), "new refusal"));
    for i in 0..100 {
        events.emit(Event::new("noise", Severity::Info, src(), format!("noise {i}")));
    }
    ingest.barrier().await;
    let c = open_readonly(dir.path()).unwrap();
    let in_events: i64 = c.query_row("SELECT count(*) FROM events WHERE kind = 'write.audit'", [], |r| r.get(0)).unwrap();
    assert_eq!(in_events, 0, "max_rows = 20 dropped the event rows");
    // The writer trims the copy at its first maintenance (within ~1 s of start).
    let trimmed = eventually(Duration::from_secs(5), || {
        let n: i64 = c.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)).unwrap();
        n == 5
    })
    .await;
    let rows: Vec<(String, String)> = c
        .prepare("SELECT kind, message FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(trimmed, "{rows:?}");
    let msgs: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(msgs, ["write 4", "write 5", "write 6", "write 7", "new refusal"], "the old one by age, then the oldest by count");
    assert_eq!(audit_events(&c, None).unwrap().len(), 4, "relais audit reads the copy");
    drop(buffer);
}

/// The end to end: a rule with hysteresis and an on-delay on the
/// simulated tank level starts the simulated pump (its start coil, guarded
/// by an interlock on the conveyor, which reads stopped), and the pump's
/// flow, polled back, rises on MQTT; the write is audited `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_starts_the_simulated_pump_and_its_flow_rises_on_mqtt() {
    use crate::common::{Mosquitto, Sub};
    use relais::app::{Gateway, RunOptions};
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let _sim = sim(&format!(
        "[[station]]\nname = \"pump\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"50ms\"\n\
         [[station.tag]]\nname = \"start\"\ntable = \"coil\"\naddress = 0\nsignal = {{ kind = \"constant\", value = 0 }}\n\
         [[station.tag]]\nname = \"conveyor\"\ntable = \"coil\"\naddress = 1\nsignal = {{ kind = \"constant\", value = 0 }}\n\
         [[station.tag]]\nname = \"flow\"\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\nsignal = {{ kind = \"lag\", input = \"start\", gain = 12.5, tau = \"300ms\" }}\n\
         [[station.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 2\nsignal = {{ kind = \"square\", low = 10, high = 90, period = \"2s\", duty = 0.5 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("guard{port}");
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
         [[device.tag]]\nname = \"start\"\ntable = \"coil\"\naddress = 0\nwritable = true\ninterlock = {{ tag = \"pump/conveyor\", equals = false }}\n\
         [[device.tag]]\nname = \"conveyor\"\ntable = \"coil\"\naddress = 1\n\
         [[device.tag]]\nname = \"flow\"\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\n\
         [[device.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 2\n\
         [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"{prefix}/{{device}}/{{tag}}\"\n\
         [[rule]]\nname = \"fill\"\ntag = \"pump/level\"\nabove = 80\nclear_below = 20\nfor = \"200ms\"\nalarm = false\n\
         [[rule.write]]\ntag = \"pump/start\"\nvalue = true\n",
        dir.path().join("data").display(),
        broker.url()
    );
    let cfg = Config::parse(&text, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut sub = Sub::new(broker.port, &format!("{prefix}/#")).await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let (mut flow, mut audits) = (Vec::<f64>::new(), Vec::<serde_json::Value>::new());
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && !flow.last().is_some_and(|x| *x > 12.0) {
        let Some(m) = sub.next(Duration::from_secs(1)).await else { continue };
        if m.topic == format!("{prefix}/pump/flow") {
            flow.push(m.json()["value"].as_f64().unwrap());
        } else if m.topic == format!("{prefix}/relais/gw/event/write.audit") {
            audits.push(m.json());
        }
    }
    // The audit of the write, published alongside the samples.
    let t1 = std::time::Instant::now();
    while t1.elapsed() < Duration::from_secs(2) && audits.is_empty() {
        let Some(m) = sub.next(Duration::from_millis(300)).await else { continue };
        if m.topic == format!("{prefix}/relais/gw/event/write.audit") {
            audits.push(m.json());
        }
    }
    gw.shutdown().await.unwrap();
    assert_eq!(flow.first(), Some(&0.0), "the pump stood still before the rule: {flow:?}");
    assert!(flow.last().is_some_and(|x| *x > 12.0), "the flow rose towards 12.5 m3/h on MQTT: {flow:?}");
    let ok: Vec<&serde_json::Value> = audits.iter().filter(|a| a["details"]["result"] == "ok").collect();
    assert!(!ok.is_empty(), "the start was audited ok: {audits:#?}");
    let d = &ok[0]["details"];
    assert_eq!(
        (d["device"].as_str(), d["tag"].as_str(), &d["origin"]),
        (Some("pump"), Some("start"), &serde_json::json!({"kind": "rule", "id": "fill"}))
    );
    assert_eq!(d["readback"], serde_json::json!(true), "{d}");
}

/// `relais write` (one shot) waits for the device's first read: a device
/// that does not answer is refused `bad_quality` with the read's error (no
/// "next attempt in …" of a link that will not try again); a value that
/// would not be written as typed is refused before anything starts.
#[test]
fn a_one_shot_write_to_a_down_device_or_of_an_inexact_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relais.toml");
    let body = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n{}",
        dir.path().join("data").display(),
        device(
            "d",
            free_port(),
            "[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\nwritable = true\n\
             [[device.tag]]\nname = \"sp2\"\ntable = \"holding\"\naddress = 11\nwritable = true\nallow_bad_quality = true\n"
        )
    );
    std::fs::write(&cfg, body).unwrap();
    let write_tag = |t: &str, v: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relais")).args(["write", "--config"]).arg(&cfg).args(["d", t, v]).output().unwrap()
    };
    let write = |v: &str| write_tag("sp", v);
    let out = write("42");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("refused: d/sp = 42") && stdout.contains("bad_quality: the last read of d/sp is bad (comm_failure"),
        "{stdout}"
    );
    assert!(!stdout.contains("next attempt"), "{stdout}");
    // allow_bad_quality: tried on the link; the one-shot command says the
    // device did not answer, not when a link it stops would retry.
    let out = write_tag("sp2", "42");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("failed: d/sp2 = 42") && !stdout.contains("next attempt"), "{stdout}");
    for (v, why) in [("1e400", "is not a finite 64-bit number"), ("99999999999999999999", "would be rounded to 100000000000000000000")] {
        let out = write(v);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("refused: d/sp = {v}")) && stderr.contains(why), "{stderr}");
    }
}
