//! The fault bench end to end: each shipped scenario played with the real
//! binary (`relais lab run`) against a private Mosquitto; the report must grade
//! every fault as passed, with the expected detector within its bound, no seq
//! missing on the gateway's MQTT stream, and a self-contained HTML page.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::Mosquitto;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(format!("{name}.toml"))
}

/// Runs `relais lab run` on a shipped scenario; (exit code, report.json, report dir, stdout).
fn lab_run(name: &str, broker: &Mosquitto, dir: &Path) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["lab", "run", "--scenario"])
        .arg(scenario(name))
        .arg("--report")
        .arg(dir)
        .args(["--broker", &broker.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}); stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap(), stdout)
}

/// The checks every shipped scenario must pass.
fn check_report(name: &str, code: i32, r: &Value, stdout: &str, dir: &Path) {
    let faults = r["faults"].as_array().unwrap();
    for f in faults {
        assert_eq!(f["pass"], true, "{name}: fault failed: {f:#}\n{stdout}");
        let x = &f["expected"];
        if let Some(d) = x["detector"].as_str() {
            assert_eq!(f["detector"].as_str(), Some(d), "{name}: {f:#}");
            let ttd = f["time_to_detect_ms"].as_i64().unwrap();
            assert!(ttd >= -500, "{name}: detected before the injection: {f:#}");
            if let Some(w) = x["detect_within_ms"].as_i64() {
                assert!(ttd <= w, "{name}: {f:#}");
            }
        }
        if x["detected"] == false {
            assert!(f["detector"].is_null(), "{name}: {f:#}");
        }
        assert!(f["samples_lost"].as_u64().unwrap() <= x["samples_lost"].as_u64().unwrap_or(0), "{name}: {f:#}");
    }
    assert_eq!(code, 0, "{name}: exit code\n{stdout}");
    assert_eq!(r["pass"], true);
    assert_eq!(r["stream"]["missing"], 0, "{name}: seq gaps on MQTT: {:#}", r["stream"]);
    assert!(r["stream"]["samples"].as_u64().unwrap() > 50, "{name}: {:#}", r["stream"]);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains(&format!("# Lab report: {name}")) && md.contains("| pass |"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("class=\"bar pass\""), "no SVG timeline");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "the page must be self-contained");
    // The audit: one line per injection and per clearing, in time order.
    let audit = std::fs::read_to_string(dir.join("injections.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let injected = lines.iter().filter(|l| l["action"] == "inject").count();
    assert_eq!(injected, faults.len(), "{audit}");
    assert!(lines.iter().all(|l| l["result"] == "ok"), "{audit}");
    let t: Vec<u64> = lines.iter().map(|l| l["t_ms"].as_u64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "{audit}");
}

fn shipped(name: &str) -> Option<Value> {
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir().unwrap();
    let (code, r, stdout) = lab_run(name, &broker, dir.path());
    check_report(name, code, &r, &stdout, dir.path());
    Some(r)
}

fn by_kind(r: &Value, kind: &str) -> Value {
    r["faults"].as_array().unwrap().iter().find(|f| f["kind"] == kind).unwrap_or_else(|| panic!("no {kind} fault")).clone()
}

#[test]
fn device_faults_scenario() {
    let Some(r) = shipped("device-faults") else { return };
    // Each device fault by its own detector.
    for (k, d) in [
        ("stuck", "flat_line"),
        ("drift", "rate_of_change"),
        ("counter_reset", "counter_reset"),
        ("out_of_range", "gross_range"),
        ("spike", "spike"),
        ("dropout", "device_down"),
        ("noise", "spike"),
        ("byte_order", "gross_range"),
        ("exception", "bad_quality"),
    ] {
        assert_eq!(by_kind(&r, k)["detector"], d, "{k}");
    }
    // Device down within one poll period and the timeout (500 ms + 500 ms); out of range on the
    // same sample (one poll period); flat line within its window (3 s) + one poll period.
    assert!(by_kind(&r, "dropout")["time_to_detect_ms"].as_i64().unwrap() <= 1500);
    assert!(by_kind(&r, "out_of_range")["time_to_detect_ms"].as_i64().unwrap() <= 1000);
    assert!(by_kind(&r, "stuck")["time_to_detect_ms"].as_i64().unwrap() <= 3500 + 500);
    // A slow device below its timeout is not a fault of the chain.
    assert!(by_kind(&r, "slow")["detector"].is_null());
    assert!(r["unattributed"].as_array().unwrap().is_empty(), "false alarms: {:#}", r["unattributed"]);
}

#[test]
fn network_scenario() {
    let Some(r) = shipped("network") else { return };
    // The faults the gateway must absorb: nothing detected, values good right after.
    for k in ["latency", "slicer", "duplicate_response", "slow_close", "bandwidth"] {
        let f = by_kind(&r, k);
        assert!(f["detector"].is_null() && f["time_to_recover_ms"].as_i64().unwrap() < 3000, "{f:#}");
    }
    // The ones that cut the device off: device_down within a poll period and the timeout.
    for k in ["black_hole", "reset", "down", "half_open", "wrong_tid", "late_response"] {
        let f = by_kind(&r, k);
        assert!(f["detector"] == "device_down" && f["time_to_detect_ms"].as_i64().unwrap() <= 2000, "{f:#}");
    }
}

#[test]
fn uplink_scenario() {
    let Some(r) = shipped("uplink") else { return };
    // Broker gone or refusing: noticed at once; a black hole only by the keep-alive (5 s).
    for k in ["down", "refuse_connect"] {
        assert!(by_kind(&r, k)["time_to_detect_ms"].as_i64().unwrap() <= 2000);
    }
    let bh = by_kind(&r, "black_hole");
    assert!(bh["time_to_detect_ms"].as_i64().unwrap() >= 3000, "detected before the keep-alive could: {bh:#}");
    // Nothing the gateway accepted is lost across the outages (duplicates are allowed: at least once).
    assert!(r["faults"].as_array().unwrap().iter().all(|f| f["samples_lost"] == 0));
}

#[test]
fn host_scenario() {
    let Some(r) = shipped("host") else { return };
    // kill -9: the restarted gateway says its last run did not stop cleanly, and lost nothing.
    let k = by_kind(&r, "kill");
    assert_eq!((k["detector"].as_str(), k["samples_lost"].as_u64()), (Some("unclean_shutdown"), Some(0)), "{k:#}");
    // Both clock jumps (two years back, a year ahead) are seen by the clock guard.
    let jumps: Vec<&Value> = r["faults"].as_array().unwrap().iter().filter(|f| f["kind"] == "clock_jump").collect();
    assert_eq!(jumps.len(), 2);
    assert!(jumps.iter().all(|f| f["detector"] == "clock" && f["recovered_at"].is_string()), "{jumps:#?}");
    assert_eq!(by_kind(&r, "disk_full")["detector"], "disk_full");
}

#[test]
fn opcua_faults_scenario() {
    let Some(r) = shipped("opcua-faults") else { return };
    // A Bad StatusCode on a node is a bad_quality detection within a publishing interval or two.
    let b = by_kind(&r, "bad_status");
    assert_eq!(b["detector"], "bad_quality", "{b:#}");
    assert!(b["time_to_detect_ms"].as_i64().unwrap() <= 2000, "{b:#}");
    // The server restarting (namespaces reordered) is the device going down and coming back.
    let rs = by_kind(&r, "opcua_restart");
    assert_eq!(rs["detector"], "device_down", "{rs:#}");
    assert!(rs["recovered_at"].is_string(), "the gateway reads the press again after the restart: {rs:#}");
    assert!(r["unattributed"].as_array().unwrap().is_empty(), "false alarms: {:#}", r["unattributed"]);
}

/// Wall-clock fields of report.json (they differ between two runs of the same seed).
const CLOCK_FIELDS: &[&str] =
    &["injected_at", "cleared_at", "detected_at", "recovered_at", "time_to_detect_ms", "time_to_recover_ms", "timeline"];

fn without_clock(r: &Value) -> Value {
    let mut r = r.clone();
    let o = r.as_object_mut().unwrap();
    for k in ["started_at", "ended_at", "stream"] {
        o.remove(k);
    }
    for f in o["faults"].as_array_mut().unwrap() {
        for k in CLOCK_FIELDS {
            f.as_object_mut().unwrap().remove(*k);
        }
    }
    r
}

#[test]
fn intrusion_scenario_twice_gives_the_same_report() {
    let Some(broker) = Mosquitto::start() else { return };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, r1, out) = lab_run("intrusion", &broker, a.path());
    check_report("intrusion", code, &r1, &out, a.path());
    for (k, d) in [
        ("rogue_write", "rogue_write"),
        ("function_code_scan", "function_code_scan"),
        ("unit_sweep", "unit_sweep"),
        ("request_flood", "request_flood"),
        ("false_value", "response_injection"),
    ] {
        assert_eq!(by_kind(&r1, k)["detector"], d);
    }
    let (code, r2, out) = lab_run("intrusion", &broker, b.path());
    check_report("intrusion", code, &r2, &out, b.path());
    assert_eq!(without_clock(&r1), without_clock(&r2), "same seed, same report apart from the clock fields");
    // The audit files match too, apart from their times.
    let audit = |d: &Path| -> Vec<Value> {
        std::fs::read_to_string(d.join("injections.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("at");
                v.as_object_mut().unwrap().remove("t_ms");
                v
            })
            .collect()
    };
    assert_eq!(audit(a.path()), audit(b.path()));
}

#[test]
fn a_bad_scenario_names_the_fault_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
name = "bad"
seed = 1
duration = "30s"
gateway = "gw.toml"

[[fault]]
at = "1s"
kind = "dropout"
target = "sim:press"

[[fault]]
at = "5s"
kind = "slow"
latency = "200ms"
latnecy = 1
target = "sim:press"
"#;
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["lab", "run", "--scenario"])
        .arg(&path)
        .arg("--report")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml: fault #2 (slow)") && err.contains("latnecy"), "{err}");
    assert!(!dir.path().join("r").exists(), "nothing is started for a bad scenario");
}
