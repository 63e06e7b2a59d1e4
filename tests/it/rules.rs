//! Rules and alarms (issue 12): `relais rules test` over the SKAB
//! valve1_0.csv replay gives the alarm times this test computes itself from
//! the file; config errors are located; in the daemon, a rule over the
//! simulator raises and clears an alarm that arrives on MQTT on
//! `{prefix}/relais/{gateway}/alarm/{rule}`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use relais::app::{Gateway, RunOptions};
use relais::config::Config;

use crate::common::{Mosquitto, Sub, free_port, skab};

fn relais(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Hysteresis (on above 0.3 bar, off below 0.1) with a 3 s on-delay, by hand:
/// the alarm rises at the end of the first 3 s the value stays on, and clears
/// at the first sample below 0.1 (no off-delay). Times in seconds since the
/// epoch, naive times read as UTC.
fn expected(rows: &[(i64, f64)]) -> Vec<(i64, &'static str)> {
    let (mut on, mut active, mut since): (bool, bool, Option<i64>) = (false, false, None);
    let mut out = Vec::new();
    for &(t, v) in rows {
        // A delay that ended at or before this sample fires first, at its own time.
        if let Some(s) = since
            && !active
            && t >= s + 3
        {
            active = true;
            since = None;
            out.push((s + 3, "raised"));
        }
        on = if v > 0.3 {
            true
        } else if v < 0.1 {
            false
        } else {
            on
        };
        if active && !on {
            active = false;
            out.push((t, "cleared"));
        } else if !active {
            since = if on { since.or(Some(t)) } else { None };
        }
    }
    out
}

#[test]
fn skab_replay_alarm_times_equal_the_hand_computed_ones() {
    let Some(file) = skab("valve1_0.csv") else { return };
    let mut rdr = csv::ReaderBuilder::new().delimiter(b';').from_path(&file).unwrap();
    let h = rdr.headers().unwrap().clone();
    let (tc, pc) = (h.iter().position(|c| c == "datetime").unwrap(), h.iter().position(|c| c == "Pressure").unwrap());
    let rows: Vec<(i64, f64)> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            let t = chrono::NaiveDateTime::parse_from_str(&r[tc], "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp();
            (t, r[pc].parse().unwrap())
        })
        .collect();
    let want = expected(&rows);
    assert!(want.len() >= 10, "the file must exercise the rule: {want:?}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rules.toml");
    std::fs::write(&cfg, "[[rule]]\nname = \"pressure-high\"\ntag = \"pump/Pressure\"\nabove = 0.3\nclear_below = 0.1\nfor = \"3s\"\n")
        .unwrap();
    let (code, out, err) = relais(&["rules", "test", "--config", cfg.to_str().unwrap(), "--replay", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let got: Vec<(i64, String)> = out
        .lines()
        .filter(|l| l.contains("  alarm pressure-high "))
        .map(|l| {
            let mut w = l.split_whitespace();
            let t = chrono::DateTime::parse_from_rfc3339(w.next().unwrap()).unwrap().timestamp();
            (t, w.nth(2).unwrap().to_string())
        })
        .collect();
    let want: Vec<(i64, String)> = want.into_iter().map(|(t, s)| (t, s.to_string())).collect();
    assert_eq!(got, want, "\n{out}");
    assert!(out.contains(&format!("over {} samples", rows.len() * 10)), "every value of the file was read:\n{out}");
}

#[test]
fn rule_errors_in_a_gateway_config_are_located() {
    let text = "[gateway]\nid = \"gw\"\n[[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:5020\"\n\
                [[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n\
                [[rule]]\nname = \"a\"\ntag = \"pump/nope\"\nabove = 1\n\
                [[rule]]\nname = \"a\"\nany = [ { tag = \"pump/t\", stale = \"-1s\" } ]\nfor = \"soon\"\n";
    let e = Config::parse(text, "gw.toml", Path::new(".")).unwrap_err().to_string();
    for want in ["gw.toml:13:7", "device \"pump\" has no tag \"nope\"", "gw.toml:16:8", "rule name", "stale", "for"] {
        assert!(e.contains(want), "{want:?} missing in:\n{e}");
    }
    let ok = text
        .replace("pump/nope", "pump/t")
        .replace("name = \"a\"\nany", "name = \"b\"\nany")
        .replace("\"-1s\"", "\"5s\"")
        .replace("\"soon\"", "\"2s\"");
    let cfg = Config::parse(&ok, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.rules.len(), 2);
}

/// `relais rules test` over a gateway configuration reports its located
/// errors like `relais check` (exit 2) before replaying anything.
#[test]
fn rules_test_reports_the_config_errors_of_check_before_replaying() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r3.toml");
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n[[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:5020\"\n\
         [[device.tag]]\nname = \"Flow\"\ntable = \"holding\"\naddress = 0\n\
         [[rule]]\nname = \"x\"\ntag = \"pump/Pressure\"\nabove = 1\n",
        dir.path().join("data").display()
    );
    std::fs::write(&cfg, &text).unwrap();
    let csv = dir.path().join("data.csv");
    std::fs::write(&csv, "datetime,Pressure,Flow\n2020-01-01 00:00:00,2,1\n2020-01-01 00:00:01,3,1\n").unwrap();
    let (cfg_s, csv_s) = (cfg.to_str().unwrap(), csv.to_str().unwrap());
    let (check_code, _, check_err) = relais(&["check", "--config", cfg_s]);
    assert_eq!(check_code, 2, "{check_err}");
    let (code, out, err) = relais(&["rules", "test", "--config", cfg_s, "--replay", csv_s]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(out.is_empty(), "nothing replayed: {out}");
    assert!(err.contains("r3.toml:14:7"), "{err}");
    assert!(err.contains("rule \"x\" / tag: device \"pump\" has no tag \"Pressure\" (its tags: Flow)"), "{err}");
    assert_eq!(err, check_err, "the same report as relais check");
    // Fixed, the same file replays.
    std::fs::write(&cfg, text.replace("pump/Pressure", "pump/Flow")).unwrap();
    let (code, out, err) = relais(&["rules", "test", "--config", cfg_s, "--replay", csv_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over 4 samples of device \"pump\""), "{out}");
}

/// A square wave (10 for 1 s, 90 for 1 s) on the simulator, polled every
/// 100 ms; the rule `above = 80, clear_below = 20, for = "300ms"` raises and
/// clears once per period; both transitions arrive on MQTT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_alarm_from_the_simulator_arrives_on_mqtt_and_clears() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let _sim = crate::modbus::sim(&format!(
        "[[station]]\nname = \"line\"\nlisten = \"127.0.0.1:{port}\"\n[[station.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         signal = {{ kind = \"square\", low = 10, high = 90, period = \"2s\", duty = 0.5 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"tank\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
         [[device.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"t/{{device}}/{{tag}}\"\n\
         [[rule]]\nname = \"tank-high\"\ntag = \"tank/level\"\nabove = 80\nclear_below = 20\nfor = \"300ms\"\nseverity = \"error\"\n",
        dir.path().join("data").display(),
        broker.url()
    );
    let cfg = Config::parse(&text, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut sub = Sub::new(broker.port, "t/relais/gw/alarm/#").await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let mut got: Vec<serde_json::Value> = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && got.len() < 4 {
        if let Some(m) = sub.next(Duration::from_secs(1)).await {
            assert_eq!(m.topic, "t/relais/gw/alarm/tank-high");
            got.push(m.json());
        }
    }
    gw.shutdown().await.unwrap();
    assert!(got.len() >= 4, "two raise/clear pairs within 20 s, got {got:#?}");
    let first_raise = got.iter().position(|e| e["details"]["transition"] == "raised").unwrap();
    let pair = &got[first_raise..first_raise + 2];
    assert_eq!((pair[0]["kind"].as_str(), pair[0]["severity"].as_str()), (Some("alarm"), Some("error")));
    assert_eq!(pair[0]["source"], serde_json::json!({"kind": "rule", "name": "tank-high"}));
    assert_eq!((pair[0]["details"]["state"].as_str(), pair[0]["details"]["previous"].as_str()), (Some("active"), Some("normal")));
    assert_eq!(pair[0]["details"]["values"]["tank/level"]["value"], 90);
    assert_eq!(pair[0]["details"]["values"]["tank/level"]["quality"], "good");
    assert_eq!((pair[1]["details"]["transition"].as_str(), pair[1]["severity"].as_str()), (Some("cleared"), Some("info")));
    assert_eq!(pair[1]["details"]["state"], "cleared_unacknowledged");
    assert_eq!(pair[1]["details"]["values"]["tank/level"]["value"], 10);
    // Raised 300 ms after the first 90 was read; cleared at the first 10: about 0.7 s later (the high half is 1 s).
    let ts = |e: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap()).unwrap();
    let high_for = (ts(&pair[1]) - ts(&pair[0])).num_milliseconds();
    assert!((400..=1000).contains(&high_for), "raised → cleared took {high_for} ms");
    let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "stored and forwarded in order: {seqs:?}");
}

/// Rule writes go through the actuator seam: the task that owns the device
/// (here the test, registered for device `valve`) gets each request with
/// origin `rule`, a deadline and the rule's `dry_run`, in decision order;
/// each is audited (`write.audit`) and recorded as a `rule.write` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_rule_writes_reach_the_device_owner_in_order_and_are_audited() {
    use relais::component::actuate::{Origin, WriteOutcome, WriteResult};
    use relais::model::Value;
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let _sim = crate::modbus::sim(&format!(
        "[[station]]\nname = \"line\"\nlisten = \"127.0.0.1:{port}\"\n[[station.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         signal = {{ kind = \"square\", low = 10, high = 90, period = \"2s\", duty = 0.5 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"tank\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
         [[device.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         [[device]]\nname = \"valve\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"1s\"\n\
         [[device.tag]]\nname = \"inlet\"\ntable = \"holding\"\naddress = 5\nwritable = true\n\
         [[device.tag]]\nname = \"lamp\"\ntable = \"holding\"\naddress = 6\ntype = \"f32\"\nwritable = true\n\
         [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"t/{{device}}/{{tag}}\"\n\
         [[rule]]\nname = \"inlet\"\ntag = \"tank/level\"\nabove = 80\nclear_below = 20\nalarm = false\n\
         [[rule.write]]\ntag = \"valve/inlet\"\nvalue = false\n[[rule.write]]\ntag = \"valve/inlet\"\nvalue = 1\non = \"clear\"\n\
         [[rule]]\nname = \"lamp\"\ntag = \"tank/level\"\nabove = 80\nalarm = false\ndry_run = true\n\
         [[rule.write]]\ntag = \"valve/lamp\"\nvalue = 2.5\n",
        dir.path().join("data").display(),
        broker.url()
    );
    let cfg = Config::parse(&text, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut sub = Sub::new(broker.port, "t/relais/gw/event/#").await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    // The test takes the place of valve's poller as the owner of its writes.
    let mut jobs = gw.actuators.register(vec![("valve".into(), vec!["inlet".into(), "lamp".into()])]);
    let mut seen: Vec<(String, Value, bool, Origin)> = Vec::new();
    let t0 = Instant::now();
    while seen.iter().filter(|s| s.0 == "inlet").count() < 3 && t0.elapsed() < Duration::from_secs(20) {
        let Ok(Some(job)) = tokio::time::timeout(Duration::from_secs(1), jobs.recv()).await else { continue };
        let r = &job.request;
        assert_eq!(r.device, "valve");
        assert!(r.deadline.is_some(), "a rule's write has a deadline");
        seen.push((r.tag.clone(), r.value.clone(), r.dry_run, r.origin.clone()));
        job.finish(WriteOutcome::new(WriteResult::Ok, None));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.shutdown().await.unwrap();
    let inlet: Vec<&Value> = seen.iter().filter(|s| s.0 == "inlet").map(|s| &s.1).collect();
    assert!(inlet.len() >= 3, "{seen:?}");
    // Alternating close (on active) and open (on clear), starting with either.
    for w in inlet.windows(2) {
        assert_ne!(w[0], w[1], "decision order kept: {seen:?}");
    }
    assert!(inlet.iter().all(|v| **v == Value::Bool(false) || **v == Value::I64(1)), "{seen:?}");
    for (tag, value, dry, origin) in &seen {
        let rule = if tag == "inlet" { "inlet" } else { "lamp" };
        assert_eq!(origin, &Origin::Rule { id: rule.into() });
        assert_eq!(*dry, tag == "lamp");
        if tag == "lamp" {
            assert_eq!(value, &Value::F64(2.5));
        }
    }
    assert!(seen.iter().any(|s| s.0 == "lamp"), "the dry-run rule's write reached the owner too (checked, not written): {seen:?}");
    let mut audits = 0;
    let mut decided = 0;
    while let Some(m) = sub.next(Duration::from_millis(500)).await {
        let e = m.json();
        match e["kind"].as_str() {
            Some("write.audit") if e["details"]["device"] == "valve" => {
                assert_eq!(e["details"]["result"], "ok");
                assert_eq!(e["details"]["origin"]["kind"], "rule");
                audits += 1;
            }
            Some("rule.write") => {
                assert_eq!(e["source"]["kind"], "rule");
                assert!(e["details"]["values"]["tank/level"]["value"].is_number(), "{e}");
                decided += 1;
            }
            _ => {}
        }
    }
    assert_eq!(audits, seen.len(), "one audit per write");
    assert!(decided >= seen.len(), "a rule.write event per decision: {decided} for {} writes", seen.len());
}

/// End to end on the simulator: the rule closes a valve (a writable holding
/// register of the same station) when the level is high and opens it when it
/// clears; the station receives the FC06 writes, the poll reads the valve's
/// new values back and they arrive on MQTT, and each write is audited `ok`
/// with its read-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_rule_writes_the_simulator_and_the_new_value_arrives_on_mqtt() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let sim = crate::modbus::sim(&format!(
        "[[station]]\nname = \"line\"\nlisten = \"127.0.0.1:{port}\"\n\
         [[station.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         signal = {{ kind = \"square\", low = 10, high = 90, period = \"2s\", duty = 0.5 }}\n\
         [[station.tag]]\nname = \"valve\"\ntable = \"holding\"\naddress = 1\nsignal = {{ kind = \"constant\", value = 7 }}\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"tank\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
         [[device.tag]]\nname = \"level\"\ntable = \"holding\"\naddress = 0\n\
         [[device.tag]]\nname = \"valve\"\ntable = \"holding\"\naddress = 1\nwritable = true\nmin = 0\nmax = 1\n\
         [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"t/{{device}}/{{tag}}\"\n\
         [[rule]]\nname = \"tank-high\"\ntag = \"tank/level\"\nabove = 80\nclear_below = 20\nfor = \"200ms\"\n\
         [[rule.write]]\ntag = \"tank/valve\"\nvalue = 0\n[[rule.write]]\ntag = \"tank/valve\"\nvalue = 1\non = \"clear\"\n",
        dir.path().join("data").display(),
        broker.url()
    );
    let cfg = Config::parse(&text, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut sub = Sub::new(broker.port, "t/#").await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let (mut valve, mut audits, mut alarms) = (Vec::<u64>::new(), Vec::<serde_json::Value>::new(), 0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && audits.len() < 4 {
        let Some(m) = sub.next(Duration::from_secs(1)).await else { continue };
        match m.topic.as_str() {
            "t/tank/valve" => {
                let v = m.json()["value"].as_u64().unwrap();
                if valve.last() != Some(&v) {
                    valve.push(v);
                }
            }
            "t/relais/gw/event/write.audit" => audits.push(m.json()),
            "t/relais/gw/alarm/tank-high" => alarms += 1,
            _ => {}
        }
    }
    gw.shutdown().await.unwrap();
    let writes = sim.station("line").unwrap().take_writes();
    assert!(audits.len() >= 4, "four audited writes within 20 s: {audits:#?}");
    for a in &audits {
        let d = &a["details"];
        assert_eq!((d["device"].as_str(), d["tag"].as_str(), d["result"].as_str()), (Some("tank"), Some("valve"), Some("ok")), "{a}");
        assert_eq!(d["origin"], serde_json::json!({"kind": "rule", "id": "tank-high"}));
        assert_eq!(d["readback"], d["requested_value"], "read back equal: {a}");
    }
    // The valve starts at 7, then follows the rule: 0 when high, 1 when cleared.
    assert_eq!(valve[0], 7, "{valve:?}");
    assert!(valve.len() >= 4, "the polled valve changed with the writes: {valve:?}");
    for w in valve[1..].windows(2) {
        assert!(w == [0, 1] || w == [1, 0], "{valve:?}");
    }
    assert!(writes.len() >= audits.len(), "the station received every write: {writes:?}");
    assert!(writes.iter().all(|&w| w == (6, 1, 1)), "FC06 of the valve register only: {writes:?}");
    assert!(alarms >= 2, "alarms raised and cleared alongside");
}
